"""Peer processes for the nxl tests, started with multiprocessing's "spawn"
method: an agent with registered numpy buffers that serves commands from
the test over a pipe (read its buffer, wait for a notification, send one,
load metadata, exit)."""

import multiprocessing as mp
import os
import signal
import time

import numpy as np

SIZE = 4 << 20          # bytes of each of the peer's src and dst buffers
SRC_SEED = 11


def pattern(n, seed):
    """n bytes: (7 i + seed) mod 256."""
    return (np.arange(n, dtype=np.uint32) * 7 + seed).astype(np.uint8)


def serve(conn, name, backends, progress_thread):
    """The peer's main loop (in the spawned process)."""
    import nxl

    agent = nxl.Agent(name, listen_thread=True, listen_port=0,
                      progress_thread=progress_thread, backends=backends)
    src = pattern(SIZE, SRC_SEED)
    dst = np.zeros(SIZE, np.uint8)
    regs = [agent.register(src), agent.register(dst)]
    conn.send(dict(pid=os.getpid(), port=agent.listen_port,
                   md=agent.metadata(), backends=agent.backends,
                   src=src.ctypes.data, dst=dst.ctypes.data))
    notifs = []
    while True:
        cmd, *args = conn.recv()
        try:
            res = None
            if cmd == "exit":
                break
            elif cmd == "dst":
                off, n = args
                res = bytes(dst[off:off + n])
            elif cmd == "clear":
                dst[:] = 0
            elif cmd == "wait_notif":
                sender, msg, timeout = args
                end = time.monotonic() + timeout
                res = False
                while time.monotonic() < end:
                    notifs += agent.get_notif_pairs()
                    if (sender, msg) in notifs:
                        notifs.remove((sender, msg))
                        res = True
                        break
                    time.sleep(0.002)
            elif cmd == "send_notif":
                agent.send_notif(*args)
            elif cmd == "load_md":
                res = agent.load_metadata(args[0])
            conn.send(("ok", res))
        except Exception as e:  # reported to the test
            conn.send(("err", f"{type(e).__name__}: {e}"))
    for r in regs:
        r.deregister()
    agent.close()
    conn.send(("ok", None))


class Peer:
    """The test's handle on a peer process."""

    def __init__(self, name, backends, progress_thread=True):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.name = name
        self.proc = ctx.Process(target=serve, daemon=True,
                                args=(child, name, tuple(backends),
                                      progress_thread))
        self.proc.start()
        child.close()
        if not self.conn.poll(60):
            self.kill()
            raise RuntimeError(f"peer {name} did not start")
        info = self.conn.recv()
        self.pid = info["pid"]
        self.port = info["port"]
        self.md = info["md"]
        self.backends = info["backends"]
        self.src = info["src"]
        self.dst = info["dst"]
        self.stopped = False

    def call(self, *cmd, timeout=20):
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"peer {self.name}: no answer to {cmd[0]}")
        status, res = self.conn.recv()
        if status != "ok":
            raise AssertionError(f"peer {self.name}: {cmd[0]}: {res}")
        return res

    def stop(self):
        """SIGSTOP, and wait until every thread of the peer is stopped."""
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True
        end = time.monotonic() + 5
        while time.monotonic() < end:
            states = []
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except OSError:
                    pass
            if states and all(s in "tT" for s in states):
                return
            time.sleep(0.001)
        raise RuntimeError(f"peer {self.name} did not stop")

    def cont(self):
        os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def kill(self):
        self.stopped = False
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)

    def close(self):
        if self.stopped:
            self.cont()
        try:
            if self.proc.is_alive():
                self.call("exit", timeout=10)
        except Exception:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()


_count = [0]


def unique(prefix):
    """A name no other agent of this test run has (peers remember names)."""
    _count[0] += 1
    return f"{prefix}-{os.getpid()}-{_count[0]}"


def wait_notif(agent, sender, msg, timeout=5.0):
    """Waits on agent.fd (an agent without a progress thread) until
    (sender, msg) arrives; returns the other notifications seen."""
    import select

    seen = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for pair in agent.get_notif_pairs():
            if pair == (sender, msg):
                return seen
            seen.append(pair)
        select.select([agent.fd], [], [], 0.05)
        agent.progress()
    raise AssertionError(f"no notification {msg!r} from {sender} in "
                         f"{timeout} s (got {seen})")
