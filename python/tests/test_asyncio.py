"""asyncio: `await transfer` and notifications, driven by the agent's fd
(no polling), and the executor fallback for agents with a progress
thread."""

import asyncio
import time

import numpy as np
import pytest

import nxl
from peers import SIZE, SRC_SEED, pattern, unique


class CountingAgent(nxl.Agent):
    """Counts the progress() calls the asyncio driver makes."""

    progress_calls = 0

    def progress(self):
        self.progress_calls += 1
        return super().progress()


def test_await_transfers(stoppable_peer):
    """Four READs in flight while the peer is stopped; the peer resumes
    from another thread, so the awaits can only end through the agent's
    fd waking the loop."""
    p = stoppable_peer
    n = 1 << 20
    src = pattern(SIZE, SRC_SEED)

    async def main(a, bufs):
        loop = asyncio.get_running_loop()
        xs = [a.xfer(nxl.READ, bufs[i], [(p.src + i * n, n, 0)], p.name)
              for i in range(4)]
        p.stop()
        assert [x.post() for x in xs] == [nxl.IN_PROG] * 4
        resume = loop.run_in_executor(
            None, lambda: (time.sleep(0.1), p.cont()))
        assert await asyncio.wait_for(xs[0], 10) == nxl.OK
        assert await asyncio.wait_for(asyncio.gather(*xs[1:]), 10) == \
            [nxl.OK] * 3
        await resume
        # A re-posted transfer is awaited again; a finished one at once.
        bufs[0][:] = 0
        xs[0].post()
        assert await xs[0] == nxl.OK
        assert await xs[0] == nxl.OK
        d = next(iter(a._aio_drivers.values()), None)
        assert d is None or not d.armed
        for x in xs:
            x.release()

    with CountingAgent(unique("aio"), backends=("TCP",)) as a:
        bufs = [np.zeros(n, np.uint8) for _ in range(4)]
        regs = [a.register(b) for b in bufs]
        a.load_metadata(p.md)
        t0 = time.process_time()
        asyncio.run(main(a, bufs))
        cpu = time.process_time() - t0
        for i in range(4):
            assert np.array_equal(bufs[i], src[i * n:(i + 1) * n])
        # Woken by the fd, not spinning: a handful of wake-ups per
        # transfer, and the reader is gone once nothing waits.
        assert 0 < a.progress_calls < 400, a.progress_calls
        assert cpu < 2.0
        assert a._aio_drivers == {}      # idle drivers are dropped
        for r in regs:
            r.deregister()


def test_await_notifications(peer):
    name = unique("aio-notif")

    async def main(a):
        loop = asyncio.get_running_loop()

        def later(msg):
            time.sleep(0.1)           # the await is already waiting
            peer.call("send_notif", name, msg)

        sender = loop.run_in_executor(None, later, b"first")
        assert await asyncio.wait_for(a.recv_notif(), 5) == \
            (peer.name, b"first")
        await sender
        got = []
        sender = loop.run_in_executor(
            None, lambda: [later(m) for m in (b"n1", b"n2", b"n3")])
        async for pair in a.notifications():
            got.append(pair)
            if len(got) == 3:
                break
        await sender
        assert got == [(peer.name, m) for m in (b"n1", b"n2", b"n3")]
        # Nothing waits: no timeout-driven polling is left behind.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.recv_notif(), 0.1)

    with CountingAgent(name) as a:
        a.send_metadata("127.0.0.1", peer.port, timeout=5)
        asyncio.run(main(a))
        assert a.progress_calls < 200, a.progress_calls
        a.invalidate_local("127.0.0.1", peer.port, timeout=5)


def test_await_with_progress_thread(peer):
    name = unique("aio-pt")

    async def main(a, buf):
        t = a.xfer(nxl.READ, buf, [(peer.src, buf.nbytes, 0)], peer.name)
        t.post()
        assert await t == nxl.OK
        loop = asyncio.get_running_loop()
        sender = loop.run_in_executor(
            None, lambda: (time.sleep(0.05),
                           peer.call("send_notif", name, b"pt")))
        assert await asyncio.wait_for(a.recv_notif(), 5) == (peer.name, b"pt")
        await sender
        t.release()

    with nxl.Agent(name, progress_thread=True, backends=("TCP",)) as a:
        buf = np.zeros(1 << 20, np.uint8)
        with a.register(buf):
            a.load_metadata(peer.md)
            a.send_metadata("127.0.0.1", peer.port, timeout=5)
            asyncio.run(main(a, buf))
            assert np.array_equal(buf, pattern(buf.nbytes, SRC_SEED))
            a.invalidate_local("127.0.0.1", peer.port, timeout=5)


def test_await_failure(stoppable_peer):
    p = stoppable_peer

    async def main(t):
        return await t

    with nxl.Agent(unique("aio-fail"), backends=("TCP",)) as a:
        buf = np.zeros(1 << 16, np.uint8)
        with a.register(buf):
            a.load_metadata(p.md)
            t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
            p.stop()
            assert t.post() == nxl.IN_PROG
            p.kill()
            with pytest.raises(nxl.RemoteDisconnectError):
                asyncio.run(asyncio.wait_for(main(t), 10))
