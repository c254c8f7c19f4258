"""asyncio support: ``await transfer`` and notifications, driven by the
agent's file descriptor (nxl_agent_fd) through ``loop.add_reader``.

One driver per (agent, loop) keeps a reader on the agent's fd while
something waits. When the fd becomes readable the driver calls
``agent.progress()`` once and then checks the transfers it watches and
fetches notifications. Nothing polls with sleeps.

An agent with ``progress_thread=True`` is different: its own thread drains
the fd, so the loop could miss the wake-up. There a transfer is awaited by
``Transfer.wait`` in the loop's default executor (the library sleeps on the
backends' fds), and notifications by a worker that sleeps on the fd with a
50 ms cap per round (docs/python.md, "asyncio").
"""

import asyncio
import select
import weakref

from . import _nxl

_IN_PROG = _nxl.IN_PROG


class _Driver:
    """The reader on one agent's fd for one event loop."""

    def __init__(self, agent, loop):
        self.agent = weakref.ref(agent)
        self.loop = loop
        self.fd = agent.fd
        self.xfers = {}          # Transfer -> [Future]
        self.notifs = asyncio.Queue()
        self.consumers = 0       # coroutines waiting for notifications
        self.armed = False

    def arm(self):
        if not self.armed:
            self.loop.add_reader(self.fd, self.on_ready)
            self.armed = True
        # Whatever completed before the reader was armed is seen at once.
        self.loop.call_soon(self.poll)

    def disarm_if_idle(self):
        if self.xfers or self.consumers > 0:
            return
        if self.armed:
            self.loop.remove_reader(self.fd)
            self.armed = False
        # An idle driver with nothing queued is dropped, so that the agent
        # does not keep the loops of finished asyncio.run() calls.
        agent = self.agent()
        if agent is not None and self.notifs.empty():
            drivers = agent.__dict__.get("_aio_drivers", {})
            if drivers.get(self.loop) is self:
                del drivers[self.loop]

    def on_ready(self):
        agent = self.agent()
        if agent is None or agent.closed:
            self.fail_all()
            return
        agent.progress()
        self.poll()

    def fail_all(self):
        for futs in self.xfers.values():
            for f in futs:
                if not f.done():
                    f.set_exception(_nxl.InvalidParamError(
                        "the agent was closed"))
        self.xfers.clear()
        if self.armed:
            self.loop.remove_reader(self.fd)
            self.armed = False

    def poll(self):
        agent = self.agent()
        if agent is None or agent.closed:
            self.fail_all()
            return
        for t, futs in list(self.xfers.items()):
            if t.released:
                st = _nxl.ERR_CANCELED
            else:
                st = t.raw_status
            if st == _IN_PROG:
                continue
            del self.xfers[t]
            for f in futs:
                if f.done():
                    continue
                if st >= 0:
                    f.set_result(st)
                else:
                    f.set_exception(_error_of(t, st))
        if self.consumers > 0:
            for pair in agent.get_notif_pairs():
                self.notifs.put_nowait(pair)
        self.disarm_if_idle()

    def watch(self, t, fut):
        self.xfers.setdefault(t, []).append(fut)
        self.arm()

    def unwatch(self, t, fut):
        futs = self.xfers.get(t)
        if futs is not None and fut in futs:
            futs.remove(fut)
            if not futs:
                del self.xfers[t]
        self.disarm_if_idle()


def _error_of(t, st):
    """The exception a failed transfer raises."""
    try:
        t.status
    except _nxl.Error as e:
        return e
    except Exception as e:  # released in between
        return e
    return _nxl.errors.get(st, _nxl.Error)(_nxl.strerror(st))


def _driver(agent, loop):
    drivers = agent.__dict__.setdefault("_aio_drivers", {})
    d = drivers.get(loop)
    if d is None or d.fd != agent.fd:
        d = drivers[loop] = _Driver(agent, loop)
    return d


def _wait_in_thread(t, cancelled):
    """Transfer.wait in an executor thread, in slices so that a cancelled
    await stops waiting."""
    while not cancelled:
        try:
            return t.wait(0.2)
        except _nxl.TimedOutError:
            continue
    return None


async def _await_transfer(t):
    st = t.raw_status
    if st == _IN_PROG:
        loop = asyncio.get_running_loop()
        agent = t.agent
        if agent.progress_thread:
            cancelled = []
            try:
                await loop.run_in_executor(None, _wait_in_thread, t, cancelled)
            finally:
                cancelled.append(True)
        else:
            fut = loop.create_future()
            d = _driver(agent, loop)
            d.watch(t, fut)
            try:
                await fut
            finally:
                d.unwatch(t, fut)
    return t.status  # raises the transfer's error


def await_hook(t):
    """Transfer.__await__: the awaitable's iterator."""
    return _await_transfer(t).__await__()


def _poll_fd(fd, ms):
    p = select.poll()
    p.register(fd, select.POLLIN)
    p.poll(ms)


async def next_notif(agent):
    """The next (sender, message) notification of agent."""
    loop = asyncio.get_running_loop()
    if agent.progress_thread:
        d = _driver(agent, loop)
        while d.notifs.empty():
            for pair in agent.get_notif_pairs():
                d.notifs.put_nowait(pair)
            if d.notifs.empty():
                await loop.run_in_executor(None, _poll_fd, agent.fd, 50)
        return d.notifs.get_nowait()
    d = _driver(agent, loop)
    if not d.notifs.empty():
        return d.notifs.get_nowait()
    d.consumers += 1
    try:
        d.arm()
        return await d.notifs.get()
    finally:
        d.consumers -= 1
        d.disarm_if_idle()


async def notifications(agent):
    """Async iterator of (sender, message) notifications."""
    while True:
        yield await next_notif(agent)
