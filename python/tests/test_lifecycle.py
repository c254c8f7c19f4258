"""Handles and garbage collection: transfers in flight released by GC,
objects keeping their agent alive, close() with live children, exporters
kept alive by registrations, cycles."""

import gc
import threading
import time
import weakref

import numpy as np
import pytest

import nxl
from peers import pattern, SRC_SEED, unique


def loopback(a, n=4096):
    """A registered buffer pair and a WRITE from its first to its second
    half on agent a (SHM loopback)."""
    buf = np.zeros(2 * n, np.uint8)
    reg = a.register(buf)
    t = a.xfer(nxl.WRITE, buf[:n], buf[n:], a.name)
    return buf, reg, t


def test_transfer_in_flight_released_by_gc(stoppable_peer):
    p = stoppable_peer
    a = nxl.Agent(unique("gc"), backends=("TCP",))
    buf = np.zeros(1 << 20, np.uint8)
    reg = a.register(buf)
    a.load_metadata(p.md)
    t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
    wt = weakref.ref(t)
    p.stop()
    try:
        assert t.post() == nxl.IN_PROG
        del t
        gc.collect()
        assert wt() is None                   # released: canceled
    finally:
        p.cont()
    # The agent still works after the cancel.
    t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
    t.post()
    t.wait(10)
    assert np.array_equal(buf, pattern(buf.nbytes, SRC_SEED))
    # Dropping the agent's last reference with a transfer in flight: the
    # transfer keeps the agent; dropping both releases both.
    wa = weakref.ref(a)
    p.stop()
    try:
        assert t.post() == nxl.IN_PROG
        del a, reg
        gc.collect()
        assert wa() is not None
        assert t.agent is wa()
        del t
        gc.collect()
        assert wa() is None
    finally:
        p.cont()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_registration_collected_in_flight_deregistered_later(stoppable_peer):
    """A Registration collected while a transfer in flight uses its memory:
    the library refuses the deregistration (NOT_ALLOWED), so the agent
    keeps it and deregisters it when the transfer is released: no
    unraisable error, nothing left registered."""
    p = stoppable_peer
    a = nxl.Agent(unique("gcreg"), backends=("TCP",))
    buf = np.zeros(1 << 20, np.uint8)
    reg = a.register(buf)
    a.load_metadata(p.md)
    t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
    p.stop()
    try:
        assert t.post() == nxl.IN_PROG
        del reg
        gc.collect()
        with pytest.raises(nxl.NotAllowedError):  # still registered
            a.register(buf)
    finally:
        p.cont()
    t.wait(10)
    t.release()                                   # deregisters it
    with a.register(buf):                         # free again
        pass
    a.close()


def test_objects_keep_agent_alive():
    a = nxl.Agent(unique("keep"))
    wa = weakref.ref(a)
    buf, reg, t = loopback(a)
    lp = a.prep(buf[:4096])
    del a
    gc.collect()
    assert wa() is not None
    buf[:4096] = 3
    t.post()
    t.wait(5)
    assert (buf[4096:] == 3).all()
    assert t.agent is wa() and lp.agent is wa() and reg.agent is wa()
    del t, lp
    gc.collect()
    assert wa() is not None                   # the registration holds it
    del reg
    gc.collect()
    assert wa() is None


def test_close_with_live_children():
    a = nxl.Agent(unique("close"))
    buf, reg, t = loopback(a)
    lp = a.prep(buf[:4096])
    a.close()
    assert a.closed and t.released and not reg.registered
    with pytest.raises(nxl.InvalidParamError, match="agent is closed"):
        t.post()
    with pytest.raises(nxl.InvalidParamError, match="closed"):
        t.status
    with pytest.raises(nxl.InvalidParamError, match="closed"):
        a.register(buf)
    with pytest.raises(nxl.InvalidParamError, match="closed"):
        a.metadata()
    t.release()                               # no-ops
    reg.deregister()
    lp.release()
    a.close()
    # A second Agent object of the same name is a new agent.
    with nxl.Agent(a.name) as b:
        b2, r2, t2 = loopback(b)
        t2.post()
        t2.wait(5)


def test_close_refused_while_another_thread_waits(stoppable_peer):
    p = stoppable_peer
    a = nxl.Agent(unique("busy"), backends=("TCP",))
    buf = np.zeros(1 << 16, np.uint8)
    reg = a.register(buf)
    a.load_metadata(p.md)
    t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
    p.stop()
    out = []
    try:
        t.post()
        th = threading.Thread(target=lambda: out.append(t.wait(10)))
        th.start()
        time.sleep(0.2)
        with pytest.raises(nxl.NotAllowedError, match="other threads"):
            a.close()
        with pytest.raises(nxl.NotAllowedError, match="waiting"):
            t.release()
    finally:
        p.cont()
    th.join(10)
    assert out == [nxl.OK]
    t.release()
    reg.deregister()
    a.close()


def test_cycles_are_collected():
    a = nxl.Agent(unique("cycle"))
    buf, reg, t = loopback(a)
    a.keep = [t, reg, a]                      # agent -> dict -> children
    wa, wt, wr = weakref.ref(a), weakref.ref(t), weakref.ref(reg)
    del a, t, reg
    gc.collect()
    assert wa() is None and wt() is None and wr() is None


def test_registration_keeps_exporter():
    a = nxl.Agent(unique("exporter"))
    arr = np.zeros(1 << 16, np.uint8)
    warr = weakref.ref(arr)
    reg = a.register(arr)
    del arr
    gc.collect()
    assert warr() is not None                 # the registration holds it
    reg.deregister()
    gc.collect()
    assert warr() is None
    # A bytearray cannot be resized (moved) while registered.
    ba = bytearray(4096)
    with a.register(ba):
        with pytest.raises(BufferError):
            ba.extend(b"x" * 100000)
    ba.extend(b"x")                           # deregistered: allowed
    # A prepared local list also keeps its memory.
    arr = np.zeros(4096, np.uint8)
    warr = weakref.ref(arr)
    reg = a.register(arr)
    lp = a.prep([arr])
    reg.deregister()
    del reg, arr
    gc.collect()
    assert warr() is not None
    del lp
    gc.collect()
    assert warr() is None
    a.close()


def test_registration_context_and_idempotence():
    with nxl.Agent(unique("reg")) as a:
        buf = np.zeros(4096, np.uint8)
        with a.register(buf) as r:
            assert r.registered and len(r.descs) == 1
            with pytest.raises(nxl.NotAllowedError):
                a.register(buf)
        assert not r.registered and r.descs is None
        r.deregister()
        r2 = a.register(buf)                  # registrable again
        del r2
        gc.collect()
        a.register(buf).close()
        with a.register(buf) as r3:
            with a.prep(buf) as lp:
                assert not lp.released
            assert lp.released
            assert r3.registered


def test_shared_buffer():
    with nxl.Agent(unique("shared")) as a:
        sb = nxl.SharedBuffer(8192)
        v = np.frombuffer(sb, np.uint8)
        assert len(sb) == 8192 and v.ctypes.data == sb.address
        assert not v.any()
        with a.register(sb):
            v[:4096] = 5
            t = a.xfer(nxl.WRITE, [(sb.address, 4096, 0)],
                       [(sb.address + 4096, 4096, 0)], a.name)
            t.post()
            t.wait(5)
            assert (v[4096:] == 5).all()
            t.release()
