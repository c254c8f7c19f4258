"""Threads: four threads posting on one agent at once, and blocking calls
(a side-channel fetch, Transfer.wait) that release the GIL so the others
progress meanwhile."""

import socket
import threading
import time

import numpy as np
import pytest

import nxl
from peers import SRC_SEED, pattern, unique


def silent_listener():
    """A TCP listener that accepts and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def accept():
        try:
            while True:
                conns.append(srv.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return srv, conns


def test_four_threads_post_concurrently(peer):
    n = 256 << 10
    src = pattern(4 << 20, SRC_SEED)
    with nxl.Agent(unique("threads")) as a:   # SHM + TCP, sync "rw"
        a.load_metadata(peer.md)
        bufs = [np.zeros(n, np.uint8) for _ in range(4)]
        regs = [a.register(b) for b in bufs]
        # Threads 0, 1 go through SHM, 2, 3 through TCP.
        xfers = [a.xfer(nxl.READ, bufs[i], [(peer.src + i * n, n, 0)],
                        peer.name, backends=["SHM" if i < 2 else "TCP"])
                 for i in range(4)]
        assert [t.backend for t in xfers] == ["SHM", "SHM", "TCP", "TCP"]
        counts = [0] * 4
        errors = []
        stop = threading.Event()
        start = threading.Barrier(5)

        def worker(i):
            start.wait()
            try:
                while not stop.is_set():
                    bufs[i][:16] = 0
                    if xfers[i].post() == nxl.IN_PROG:
                        xfers[i].wait(10)
                    counts[i] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,))
                   for i in range(4)]
        for th in threads:
            th.start()
        start.wait()
        time.sleep(0.05)
        # A blocking call on the same agent: a fetch from a listener that
        # never answers. The GIL is released, so the posters go on.
        srv, conns = silent_listener()
        before = list(counts)
        t0 = time.monotonic()
        with pytest.raises(nxl.TimedOutError):
            a.fetch_metadata("127.0.0.1", srv.getsockname()[1], timeout=0.5)
        blocked = time.monotonic() - t0
        during = [c - b for c, b in zip(counts, before)]
        stop.set()
        for th in threads:
            th.join(10)
        srv.close()
        for c in conns:
            c.close()
        assert not errors, errors
        assert blocked >= 0.45
        assert all(d >= 3 for d in during), during
        for i in range(4):
            assert np.array_equal(bufs[i], src[i * n:(i + 1) * n]), i
        for t in xfers:
            t.release()
        for r in regs:
            r.deregister()


def test_wait_releases_gil(stoppable_peer):
    """A wait on a transfer that cannot finish (its peer is stopped) blocks
    one thread for 0.5 s while a pure-Python thread keeps counting."""
    p = stoppable_peer
    with nxl.Agent(unique("gil"), backends=("TCP",)) as a:
        buf = np.zeros(1 << 16, np.uint8)
        with a.register(buf):
            a.load_metadata(p.md)
            t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
            count = [0]
            stop = threading.Event()

            def spin():
                while not stop.is_set():
                    count[0] += 1

            p.stop()
            try:
                assert t.post() == nxl.IN_PROG
                th = threading.Thread(target=spin)
                th.start()
                time.sleep(0.05)
                before = count[0]
                with pytest.raises(nxl.TimedOutError):
                    t.wait(0.5)
                during = count[0] - before
                stop.set()
                th.join()
            finally:
                p.cont()
            # Holding the GIL for 0.5 s would leave the counter near 0;
            # released, it counts hundreds of thousands.
            assert during > 10000, during
            assert t.wait(10) == nxl.OK
            assert np.array_equal(buf, pattern(buf.nbytes, SRC_SEED))
