"""Every status maps to its exception class (status, name, message), and
the calls that fail raise the right one."""

import builtins
import socket
import threading

import numpy as np
import pytest

import nxl
from nxl import _nxl
from peers import unique

# The class of every error status: the status name in CamelCase, except
# where that would shadow a builtin (TimeoutError, IOError, MemoryError).
EXPECTED = {
    -1: ("NotPostedError", None),
    -2: ("InvalidParamError", ValueError),
    -3: ("BackendError", None),
    -4: ("NotFoundError", LookupError),
    -5: ("MismatchError", None),
    -6: ("NotAllowedError", None),
    -7: ("RepostActiveError", None),
    -8: ("UnknownError", None),
    -9: ("NotSupportedError", None),
    -10: ("RemoteDisconnectError", None),
    -11: ("CanceledError", None),
    -12: ("NoTelemetryError", None),
    -13: ("TimedOutError", TimeoutError),
    -14: ("NoMemoryError", MemoryError),
    -15: ("IOFailureError", None),
    -16: ("ProtocolError", None),
}


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_status_class(status):
    cname, extra = EXPECTED[status]
    cls = nxl.errors[status]
    assert cls is getattr(nxl, cname)
    assert cls.__name__ == cname and cls.__module__ == "nxl"
    assert not hasattr(builtins, cname)
    assert issubclass(cls, nxl.Error) and issubclass(cls, Exception)
    if extra is not None:
        assert issubclass(cls, extra)
    assert cls.status == status == nxl.Status[cls.name[4:]]
    assert cls.name == nxl.status_name(status)
    with pytest.raises(cls) as ei:
        _nxl._raise_status(status, "detail text")
    e = ei.value
    assert type(e) is cls
    assert str(e) == "detail text"
    assert e.status == status and e.name == cls.name
    with pytest.raises(cls, match=nxl.strerror(status)):
        _nxl._raise_status(status)


def test_every_status_is_mapped():
    errs = [s for s in nxl.Status if s < 0]
    assert sorted(nxl.errors) == sorted(int(s) for s in errs)
    assert len(set(nxl.errors.values())) == len(errs)
    assert nxl.Error.status is None
    # A status without a class of its own raises nxl.Error itself.
    with pytest.raises(nxl.Error) as ei:
        _nxl._raise_status(-99, "x")
    assert type(ei.value) is nxl.Error


@pytest.fixture
def agent():
    with nxl.Agent(unique("err")) as a:
        yield a


def test_invalid_param(agent):
    with pytest.raises(nxl.InvalidParamError, match="non-empty") as ei:
        nxl.Agent("")
    assert ei.value.status == nxl.Status.ERR_INVALID_PARAM
    assert ei.value.name == "NXL_ERR_INVALID_PARAM"
    with pytest.raises(ValueError):          # also a ValueError
        nxl.Agent("")
    with pytest.raises(nxl.InvalidParamError):
        agent.xfer("MOVE", [], [], agent.name)
    with pytest.raises(nxl.InvalidParamError):
        nxl.Agent("x", sync="sometimes")
    buf = np.zeros(64, np.uint8)
    with agent.register(buf):
        lp = agent.prep(buf)
        rp = agent.prep(buf, remote=agent.name)
        with pytest.raises(nxl.InvalidParamError, match="out of range"):
            agent.make_xfer(nxl.READ, lp, [0], rp, [5])
        with pytest.raises(nxl.InvalidParamError, match="negative"):
            agent.make_xfer(nxl.READ, lp, [0], rp, [-1])
        with pytest.raises(nxl.InvalidParamError):
            agent.make_xfer(nxl.READ, lp, np.array([0], np.int64), rp,
                            np.array([-1], np.int64))
        with pytest.raises(nxl.InvalidParamError, match="1 local and 2"):
            agent.make_xfer(nxl.READ, lp, [0], rp, [0, 0])
        with pytest.raises(nxl.InvalidParamError, match="read-only"):
            agent.xfer(nxl.READ, b"x" * 64, buf, agent.name)


def test_not_found(agent):
    with pytest.raises(nxl.NotFoundError):
        agent.create_backend("NO_SUCH_BACKEND")
    with pytest.raises(LookupError):
        nxl.plugin_info("no_such_backend")
    with pytest.raises(nxl.NotFoundError):
        agent.invalidate("ghost")
    with pytest.raises(nxl.NotFoundError):
        agent.prep([(1, 2, 0)], remote="ghost")
    with pytest.raises(nxl.NotFoundError, match="UCX"):
        agent.register(np.zeros(8), backends=["UCX"])
    with pytest.raises(nxl.NotFoundError):
        agent.prep(np.zeros(8))          # not registered


def test_not_allowed_mismatch_proto(agent):
    buf = np.zeros(4096, np.uint8)
    r = agent.register(buf)
    with pytest.raises(nxl.NotAllowedError):
        agent.register(buf)
    md = agent.metadata()
    with nxl.Agent(unique("err2")) as b:
        with pytest.raises(nxl.MismatchError):
            b.load_metadata(b"not nxl metadata at all, not at all")
        with pytest.raises(nxl.ProtocolError):
            b.load_metadata(md[:len(md) // 2])
        with pytest.raises(nxl.InvalidParamError):
            b.load_metadata(b.metadata())     # its own
    r.deregister()


def test_backend_error():
    with nxl.Agent(unique("tcp-only"), backends=("TCP",)) as a, \
            nxl.Agent(unique("posix-only"), backends=("POSIX",)) as b:
        with pytest.raises(nxl.BackendError):
            b.load_metadata(a.metadata())


def test_not_supported(agent):
    with pytest.raises(nxl.NotSupportedError):
        agent.register([(4096, 4096, 3)], mem="FILE")   # no FILE backend


def test_not_posted_no_telemetry_telemetry(agent):
    buf = np.zeros(256, np.uint8)
    with agent.register(buf):
        t = agent.xfer(nxl.WRITE, buf[:128], buf[128:], agent.name)
        with pytest.raises(nxl.NotPostedError):
            t.status
        assert t.raw_status == nxl.Status.ERR_NOT_POSTED
        t.post()
        t.wait(5)
        with pytest.raises(nxl.NoTelemetryError):
            t.telemetry
    with nxl.Agent(unique("telem"), telemetry=True) as a:
        with a.register(buf):
            buf[:128] = 9
            t = a.xfer(nxl.WRITE, buf[:128], buf[128:], a.name)
            t.post()
            t.wait(5)
            tm = t.telemetry
            assert isinstance(tm, nxl.Telemetry)
            assert tm.total_bytes == 128 and tm.desc_count == 1
            assert tm.start_us > 0
            assert (buf[128:] == 9).all()


def test_timeout_and_io(agent):
    # A listener that accepts and never answers: the side channel times
    # out. A closed port: connection refused, an I/O error.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    conns = []
    th = threading.Thread(target=lambda: conns.append(srv.accept()),
                          daemon=True)
    th.start()
    with pytest.raises(nxl.TimedOutError) as ei:
        agent.fetch_metadata("127.0.0.1", port, timeout=0.3)
    assert isinstance(ei.value, TimeoutError)
    srv.close()
    for c, _ in conns:
        c.close()
    with pytest.raises(nxl.IOFailureError):
        agent.fetch_metadata("127.0.0.1", port, timeout=1)


def test_repost_active_and_wait_timeout(stoppable_peer):
    p = stoppable_peer
    with nxl.Agent(unique("repost"), backends=("TCP",)) as a:
        buf = np.zeros(1 << 16, np.uint8)
        with a.register(buf):
            a.load_metadata(p.md)
            t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
            p.stop()
            try:
                assert t.post() == nxl.IN_PROG
                with pytest.raises(nxl.RepostActiveError):
                    t.post()
                with pytest.raises(nxl.TimedOutError, match="in progress"):
                    t.wait(0.2)
                assert t.status == nxl.IN_PROG
            finally:
                p.cont()
            assert t.wait(10) == nxl.OK


def test_remote_disconnect(stoppable_peer):
    p = stoppable_peer
    with nxl.Agent(unique("disc"), backends=("TCP",)) as a:
        buf = np.zeros(1 << 16, np.uint8)
        with a.register(buf):
            a.load_metadata(p.md)
            t = a.xfer(nxl.READ, buf, [(p.src, buf.nbytes, 0)], p.name)
            t.post()
            t.wait(5)
            p.kill()
            with pytest.raises(nxl.RemoteDisconnectError) as ei:
                t.post()
                t.wait(5)
            assert ei.value.name == "NXL_ERR_REMOTE_DISCONNECT"
            # Then the peer is gone: NIXL's order, disconnect once, then
            # not found.
            with pytest.raises(nxl.NotFoundError):
                t.post()
