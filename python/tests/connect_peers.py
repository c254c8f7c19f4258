"""Peers for the nxl.connect / nxl.embedding / nxl.media tests.

- AsyncPeer: a process started with multiprocessing's "spawn" method that
  runs an asyncio loop all the time (a nixl-write sender must serve
  handshakes while the test does other work) and executes commands from
  the test concurrently: submit() returns a handle, result() waits for it.
- CPeer: tests/nxl_connect_peer (the C library's public API only), driven
  through JSON lines on stdin/stdout.
- pattern(): the bytes both kinds of peer (and the C suites) write.
"""

import json
import multiprocessing as mp
import os
import pathlib
import signal
import subprocess
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]


def build_dir():
    return pathlib.Path(os.environ.get("NXL_BUILD") or TOP / "build")


def pattern(n, seed):
    """Byte i of seed s: ((i * 131 + s * 7 + (i >> 8)) ^ s) mod 256."""
    i = np.arange(n, dtype=np.uint64)
    return (((i * np.uint64(131) + np.uint64(seed * 7) + (i >> np.uint64(8)))
             ^ np.uint64(seed)) & np.uint64(0xFF)).astype(np.uint8)


def bytes_hash(buf):
    """The C peer's HASH: nxl_media_content_hash with shape [len]."""
    from nxl import _nxl
    mv = memoryview(buf).cast("B")
    return f"{_nxl.media_content_hash([mv.nbytes], mv):016x}"


def backend_arg(backend):
    """An nxl.Agent backends argument: TCP bound to 127.0.0.1."""
    if backend == "TCP":
        return {"TCP": {"bind_addr": "127.0.0.1"}}
    return (backend,)


# ---- the spawned asyncio peer ---------------------------------------------

def _serve(conn):
    import asyncio

    import torch

    from nxl import connect as nc
    from nxl import embedding as emb

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    st = {"ops": {}, "futs": {}, "senders": {}, "keep": {}}

    st["conns"] = {}

    def connector():
        be = st["be"]
        if be not in st["conns"]:
            st["conns"][be] = nc.Connector(backends=backend_arg(be))
        return st["conns"][be]

    async def handle(cmd, args):
        st["be"], args = args[0], args[1:]
        backend = st["be"]
        if cmd == "readable":
            size, seed, tag = args
            t = torch.from_numpy(pattern(size, seed))
            op = await connector().create_readable(nc.Descriptor(t))
            st["ops"][tag] = (op, t)
            return op.metadata().model_dump()
        if cmd == "writable":
            size, tag = args
            t = torch.zeros(size, dtype=torch.uint8)
            op = await connector().create_writable(nc.Descriptor(t))
            st["ops"][tag] = (op, t)
            return op.metadata().model_dump()
        if cmd == "wait_op":
            (tag,) = args
            op, t = st["ops"].pop(tag)
            await op.wait_for_completion()
            res = (str(op.status), bytes_hash(t.numpy()))
            op.release()
            return res
        if cmd == "read":
            md, size = args
            t = torch.zeros(size, dtype=torch.uint8)
            op = await connector().begin_read(
                nc.RdmaMetadata.model_validate(md), nc.Descriptor(t))
            with op:
                await op.wait_for_completion()
            return bytes_hash(t.numpy())
        if cmd == "write":
            md, size, seed = args
            t = torch.from_numpy(pattern(size, seed))
            op = await connector().begin_write(
                nc.Descriptor(t), nc.RdmaMetadata.model_validate(md))
            with op:
                await op.wait_for_completion()
            return "DONE"
        if cmd == "info":
            return connector()._connection_now().info()
        if cmd == "emb_sender":
            mode, kw = args
            if mode != "local":
                kw = dict(kw, backends=backend_arg(backend))
            st["senders"][(mode, backend)] = emb.create_sender(mode, **kw)
            return True
        if cmd == "emb_send":
            mode, shape, dtype, seed, stage, tag = args
            g = torch.Generator().manual_seed(seed)
            t = torch.randn(shape, generator=g).to(getattr(torch, dtype))
            req, fut = await st["senders"][(mode, backend)].send_embeddings(
                t, stage_embeddings=stage)
            st["futs"][tag] = fut
            st["keep"][tag] = t
            return req.model_dump()
        if cmd == "emb_wait":
            (tag,) = args
            fut = st["futs"].pop(tag)
            st["keep"].pop(tag, None)
            try:
                await fut
                return "ok"
            except Exception as e:  # noqa: BLE001 (reported)
                return f"{type(e).__name__}: {e}"
        if cmd == "emb_close":
            mode, kw = args
            s = st["senders"].pop((mode, backend))
            if mode == "nixl-write":
                await s.aclose(**kw)
                return len(s.registered_descs)
            await s.aclose()
            return 0
        if cmd == "sleep":
            await asyncio.sleep(args[0])
            return True
        raise ValueError(f"unknown command {cmd}")

    async def run(cid, cmd, args):
        try:
            res = await handle(cmd, args)
            conn.send((cid, "ok", res))
        except Exception as e:  # noqa: BLE001 (reported to the test)
            conn.send((cid, "err", f"{type(e).__name__}: {e}"))

    done = loop.create_future()
    tasks = set()

    def on_cmd():
        while conn.poll():
            try:
                cid, cmd, args = conn.recv()
            except EOFError:
                if not done.done():
                    done.set_result(None)
                return
            if cmd == "exit":
                if not done.done():
                    done.set_result(None)
                return
            t = loop.create_task(run(cid, cmd, args))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    loop.add_reader(conn.fileno(), on_cmd)
    conn.send((0, "ok", os.getpid()))
    loop.run_until_complete(done)
    for c in st["conns"].values():
        c.close()
    os._exit(0)


class AsyncPeer:
    """The test's handle on a spawned asyncio peer. Every command names the
    backend it uses (a connector and senders per backend in the peer);
    on(backend) returns a view that fills it in."""

    def __init__(self, backend="SHM"):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.backend = backend
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self._next = 1
        self._results = {}
        self._pid = None

    @property
    def pid(self):
        """The peer's pid, once it has started (waits for it)."""
        if self._pid is None:
            if not self.conn.poll(60):
                self.kill()
                raise RuntimeError("the peer did not start")
            _, _, self._pid = self.conn.recv()
        return self._pid

    def on(self, backend):
        """A view of this peer whose commands use backend."""
        return _PeerView(self, backend)

    def submit(self, cmd, *args, backend=None):
        self.pid  # started
        cid = self._next
        self._next += 1
        self.conn.send((cid, cmd, (backend or self.backend,) + args))
        return cid

    def result(self, cid, timeout=30):
        end = time.monotonic() + timeout
        while cid not in self._results:
            left = end - time.monotonic()
            if left <= 0 or not self.conn.poll(left):
                raise TimeoutError(f"peer: no answer to command {cid}")
            rid, status, res = self.conn.recv()
            self._results[rid] = (status, res)
        status, res = self._results.pop(cid)
        if status != "ok":
            raise AssertionError(f"peer: {res}")
        return res

    def call(self, cmd, *args, timeout=30, backend=None):
        return self.result(self.submit(cmd, *args, backend=backend), timeout)

    def kill(self):
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.join(10)

    def close(self):
        if self.proc.is_alive():
            try:
                self.conn.send((0, "exit", ()))
            except (OSError, BrokenPipeError):
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.kill()


class _PeerView:
    """An AsyncPeer with a backend filled in."""

    def __init__(self, peer, backend):
        self.peer = peer
        self.backend = backend

    @property
    def pid(self):
        return self.peer.pid

    def submit(self, cmd, *args):
        return self.peer.submit(cmd, *args, backend=self.backend)

    def result(self, cid, timeout=30):
        return self.peer.result(cid, timeout)

    def call(self, cmd, *args, timeout=30):
        return self.peer.call(cmd, *args, timeout=timeout,
                              backend=self.backend)


_SHARED = {}


def shared_peer(backend):
    """A view on one AsyncPeer shared by the whole test session (a spawned
    process takes a second or more to import torch), using backend;
    closed when the interpreter exits."""
    p = _SHARED.get("peer")
    if p is None or not p.proc.is_alive():
        p = _SHARED["peer"] = AsyncPeer()
    return p.on(backend)


def stop_process(pid, timeout=5):
    """SIGSTOP pid and wait until every thread of it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(st in "tT" for st in states):
            return
        time.sleep(0.001)
    raise RuntimeError(f"process {pid} did not stop")


def _close_shared():
    for p in _SHARED.values():
        p.close()


import atexit  # noqa: E402

atexit.register(_close_shared)


# ---- the C peer ------------------------------------------------------------

class CPeer:
    """tests/nxl_connect_peer BACKEND MODE ARGS..."""

    def __init__(self, backend, mode, *args):
        exe = build_dir() / "tests" / "nxl_connect_peer"
        if not exe.exists():
            raise FileNotFoundError(f"{exe} is not built")
        self.proc = subprocess.Popen(
            [str(exe), backend, mode, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def line(self, timeout=20):
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("the C peer printed nothing")
        s = self.proc.stdout.readline().rstrip("\n")
        if s.startswith("ERR"):
            raise AssertionError(f"C peer: {s}; stderr: "
                                 f"{self.proc.stderr.read()}")
        return s

    def json(self, timeout=20):
        return json.loads(self.line(timeout))

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=20):
        """Close stdin and collect the remaining lines (the last is
        DONE)."""
        out, err = self.proc.communicate(timeout=timeout)  # closes stdin
        lines = out.splitlines()
        assert self.proc.returncode == 0 and lines and lines[-1] == "DONE", \
            (self.proc.returncode, out, err)
        return lines[:-1]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
