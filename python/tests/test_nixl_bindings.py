"""nixl._bindings (NXL's NIXL-compatible layer): enums, exception classes,
descriptor lists and the low-level nixlAgent, in one process."""

import os
import pickle
import tempfile

import numpy as np
import pytest

import nxl
import nixl._bindings as nb
import peers


def test_enums_and_constants():
    assert [int(m) for m in (nb.DRAM_SEG, nb.VRAM_SEG, nb.BLK_SEG,
                             nb.OBJ_SEG, nb.FILE_SEG)] == [0, 1, 2, 3, 4]
    assert (int(nb.NIXL_READ), int(nb.NIXL_WRITE)) == (0, 1)
    assert (nb.NIXL_SUCCESS, nb.NIXL_IN_PROG) == (0, 1)
    assert nb.NIXL_ERR_NOT_FOUND == -4 and nb.NIXL_ERR_NO_TELEMETRY == -12
    assert nb.NIXL_INIT_AGENT == "" and nb.DEFAULT_COMM_PORT == 8888
    assert nb.NIXL_THREAD_SYNC_DEFAULT == nb.NIXL_THREAD_SYNC_NONE
    assert int(nb.NIXL_THREAD_SYNC_RW) == int(nxl.Sync.RW)


@pytest.mark.parametrize("name,status", [
    ("nixlNotPostedError", -1), ("nixlInvalidParamError", -2),
    ("nixlBackendError", -3), ("nixlNotFoundError", -4),
    ("nixlMismatchError", -5), ("nixlNotAllowedError", -6),
    ("nixlRepostActiveError", -7), ("nixlUnknownError", -8),
    ("nixlNotSupportedError", -9), ("nixlRemoteDisconnectError", -10),
    ("nixlCancelledError", -11), ("nixlNoTelemetryError", -12)])
def test_one_exception_class_per_status(name, status):
    cls = getattr(nb, name)
    assert issubclass(cls, Exception) and cls.status == status
    assert issubclass(cls, nxl.errors[status])  # nxl's handlers catch it
    # What the layer raises for an nxl error of that status:
    err = nb._nixl_error(nxl.errors[status]("boom"))
    assert type(err) is cls and "boom" in str(err)


def test_empty_lists_and_edits(capsys):
    reg, xfer = nb.nixlRegDList(nb.DRAM_SEG), nb.nixlXferDList(nb.DRAM_SEG)
    for dl in (reg, xfer):
        assert dl.descCount() == 0 and dl.isEmpty() and bool(dl)
        assert dl.getType() == nb.DRAM_SEG
    descs = [(1000, 105, 0), (2000, 30, 0), (1010, 20, 0)]
    dl = nb.nixlXferDList(nb.DRAM_SEG, descs)
    assert dl.descCount() == 3 and dl[0] == descs[0] and dl[-1] == descs[2]
    assert dl.index((2000, 30, 0)) == 1
    with pytest.raises(nb.nixlNotFoundError):
        dl.index((2000, 31, 0))
    assert dl.remDesc(1) == nb.NIXL_SUCCESS and dl.descCount() == 2
    assert dl.remDesc(7) == nb.NIXL_ERR_INVALID_PARAM
    dl.addDesc((3000, 8, 1))
    dl[0] = (4000, 8, 0)
    assert [dl[i] for i in range(3)] == [(4000, 8, 0), (1010, 20, 0),
                                         (3000, 8, 1)]
    with pytest.raises(IndexError):
        dl[3]
    dl.print()
    assert "DescList of mem type DRAM_SEG" in capsys.readouterr().out
    dl.clear()
    assert dl.isEmpty()
    with pytest.raises(ValueError):
        dl.addDesc((1, 2))
    assert nb.nixlXferDList(nb.VRAM_SEG, 2)[1] == (0, 0, 0)  # init_size


def test_reg_list_meta_trim_and_equality():
    rows = [(0x1000, 64, 0, "a"), (0x2000, 64, 0, b"b")]
    reg = nb.nixlRegDList(nb.DRAM_SEG, rows)
    assert reg[0] == (0x1000, 64, 0, b"a") and reg[1][3] == b"b"
    trimmed = reg.trim()
    assert isinstance(trimmed, nb.nixlXferDList)
    assert [trimmed[i] for i in range(2)] == [(0x1000, 64, 0),
                                              (0x2000, 64, 0)]
    # As in NIXL, list equality compares type and (addr, len, devId).
    from_np = nb.nixlRegDList(nb.DRAM_SEG,
                              np.array([r[:3] for r in rows], np.uint64))
    assert reg == from_np and from_np[0][3] == b""
    assert reg != nb.nixlRegDList(nb.VRAM_SEG, rows)
    assert reg != trimmed  # different classes
    reg.addDesc((0x3000, 8, 0, "c"))
    assert reg.descCount() == 3 and reg[2][3] == b"c"
    assert reg.index((0x3000, 8, 0, "c")) == 2


def test_pickle_round_trip():
    reg = nb.nixlRegDList(nb.FILE_SEG, [(0, 0, 5, "/tmp/x"), (4096, 8, 5,
                                                               "")])
    back = pickle.loads(pickle.dumps(reg))
    assert type(back) is nb.nixlRegDList and back == reg
    assert back.getType() == nb.FILE_SEG and back[0][3] == b"/tmp/x"
    table = np.arange(3000, dtype=np.uint64).reshape(-1, 3)
    xfer = nb.nixlXferDList(nb.DRAM_SEG, table)
    back = pickle.loads(pickle.dumps(xfer))
    assert back == xfer and back[999] == tuple(table[999].tolist())


def test_numpy_inputs():
    for dtype in (np.uint64, np.int64):
        dl = nb.nixlXferDList(nb.DRAM_SEG, np.array([[1, 2, 3]], dtype))
        assert dl[0] == (1, 2, 3)
    with pytest.raises(ValueError):
        nb.nixlXferDList(nb.DRAM_SEG, np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError):
        nb.nixlXferDList(nb.DRAM_SEG, np.zeros((2, 4), np.uint64))
    with pytest.raises(TypeError):
        nb.nixlXferDList(nb.DRAM_SEG, "descs")


def test_agent_config_positional():
    c = nb.nixlAgentConfig(True, True, 0, nb.NIXL_THREAD_SYNC_RW, 1, 7,
                           100000, True)
    assert (c.useProgThread, c.useListenThread, c.listenPort, c.syncMode,
            c.pthrDelay, c.captureTelemetry) == (True, True, 0,
                                                 nb.NIXL_THREAD_SYNC_RW, 7,
                                                 True)
    d = nb.nixlAgentConfig()
    assert not d.useProgThread and d.syncMode == nb.NIXL_THREAD_SYNC_NONE


def _pair(backend="SHM", **kw):
    cfg = nb.nixlAgentConfig(False)
    a = nb.nixlAgent(peers.unique("nb-a"), cfg)
    b = nb.nixlAgent(peers.unique("nb-b"), cfg)
    return a, b, a.createBackend(backend, {}), b.createBackend(backend, {})


def test_low_level_agent_flow(monkeypatch):
    monkeypatch.setenv("NIXL_TELEMETRY_ENABLE", "y")
    a, b, ba, bb = _pair()
    with pytest.raises(ValueError):
        nb.nixlAgent("", nb.nixlAgentConfig(False))
    with pytest.raises(nb.nixlNotFoundError):
        a.createBackend("UVX", {})
    src = peers.pattern(256, 5)
    dst = np.zeros(256, np.uint8)
    r1 = nb.nixlRegDList(nb.DRAM_SEG)
    r1.addDesc((src.ctypes.data, 256, 0, "dead"))
    r2 = nb.nixlRegDList(nb.DRAM_SEG)
    r2.addDesc((dst.ctypes.data, 256, 0, "dead"))
    assert a.registerMem(r1, [ba]) == nb.NIXL_SUCCESS
    assert b.registerMem(r2, [bb]) == nb.NIXL_SUCCESS
    name_b = b._name
    assert a.loadRemoteMD(b.getLocalMD()) == name_b.encode()
    s = nb.nixlXferDList(nb.DRAM_SEG, [(src.ctypes.data + 8, 8, 0)])
    d = nb.nixlXferDList(nb.DRAM_SEG, [(dst.ctypes.data + 8, 8, 0)])
    h = a.createXferReq(nb.NIXL_WRITE, s, d, name_b, "n\0tification")
    assert h != 0
    st = a.postXferReq(h)
    notifs = {}
    while st != nb.NIXL_SUCCESS or not notifs:
        if st != nb.NIXL_SUCCESS:
            st = a.getXferStatus(h)
        if not notifs:
            notifs = b.getNotifs(notifs)
        assert st in (nb.NIXL_SUCCESS, nb.NIXL_IN_PROG)
    assert notifs == {a._name: [b"n\0tification"]}
    assert bytes(dst[8:16]) == bytes(src[8:16])
    t = a.getXferTelemetry(h)
    assert (t.descCount, t.totalBytes) == (1, 8)
    assert t.startTime > 0 and t.xferDuration >= t.postDuration > 0
    assert a.queryXferBackend(h) == "SHM"
    assert a.releaseXferReq(h) == nb.NIXL_SUCCESS
    assert a.deregisterMem(r1, [ba]) == nb.NIXL_SUCCESS
    with pytest.raises(nb.nixlNotFoundError):
        a.deregisterMem(r1, [ba])
    assert b.deregisterMem(r2, [bb]) == nb.NIXL_SUCCESS
    assert a.invalidateRemoteMD(name_b) == nb.NIXL_SUCCESS
    assert a.invalidateRemoteMD(name_b) == nb.NIXL_ERR_NOT_FOUND
    assert a.checkRemoteMD(name_b, None) == nb.NIXL_ERR_NOT_FOUND
    with pytest.raises(nb.nixlNotSupportedError):
        a.estimateXferCost(h)


def test_failed_transfer_raises_in_bindings():
    a, b, ba, bb = _pair()
    buf = np.zeros(64, np.uint8)
    reg = nb.nixlRegDList(nb.DRAM_SEG, [(buf.ctypes.data, 64, 0, "")])
    a.registerMem(reg)
    b.registerMem(reg)  # the same memory, as b's own (one process)
    a.loadRemoteMD(b.getLocalMD())
    x = reg.trim()
    lh = a.prepXferDlist(x)  # NIXL's local overload
    rh = a.prepXferDlist(b._name, x)
    h = a.makeXferReq(nb.NIXL_READ, lh, [0], rh, [0], "", [], False)
    a.invalidateRemoteMD(b._name)
    with pytest.raises(nb.nixlNotFoundError):
        a.postXferReq(h)
    with pytest.raises(nb.nixlNotFoundError):
        a.getXferStatus(h)


def test_query_mem_posix_files():
    cfg = nb.nixlAgentConfig(False, False)
    agent = nb.nixlAgent(peers.unique("nb-q"), cfg)
    params, mems = agent.getPluginParams("POSIX")
    assert "FILE_SEG" in mems
    backend = agent.createBackend("POSIX", params)
    shm = agent.createBackend("SHM", {})
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"0123456789")
    try:
        descs = nb.nixlRegDList(nb.FILE_SEG)
        assert agent.queryMem(descs, backend) == []
        descs.addDesc((0, 0, 0, f.name))
        descs.addDesc((0, 0, 0, f.name + ".missing"))
        resp = agent.queryMem(descs, backend)
        assert resp[1] is None
        assert resp[0]["size"] == "10" and {"mode", "mtime"} <= set(resp[0])
        with pytest.raises(nb.nixlNotSupportedError):
            agent.queryMem(descs, shm)
    finally:
        os.unlink(f.name)
