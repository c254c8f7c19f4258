"""nixl._api (NXL's NIXL-compatible layer): nixl_agent call by call, as
NIXL documents it, with agents in this process."""

import gc
import logging
import os
import socket
import tempfile
import weakref

import numpy as np
import pytest
import torch

import nixl
import nixl._bindings as nb
import nixl._utils as utils
from nixl._api import (nixl_agent, nixl_agent_config, nixl_prepped_dlist_handle,
                       nixl_thread_sync_t, nixl_xfer_handle)
from nixl.logging import get_logger

import peers

SHM = ["SHM"]


def agent(prefix, backends=SHM, **kw):
    return nixl_agent(peers.unique(prefix),
                      nixl_agent_config(backends=backends, **kw))


def wait_state(a, h, timeout=10.0):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = a.check_xfer_state(h)
        assert st in ("DONE", "PROC"), st
        if st == "DONE":
            return
    raise AssertionError("transfer still PROC")


def wait_notif(a, remote, tag, timeout=10.0, prefix=True):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if a.check_remote_xfer_done(remote, tag, tag_is_prefix=prefix):
            return
    raise AssertionError(f"no notification {tag!r} from {remote}")


@pytest.fixture
def pair():
    """Two SHM agents in this process, each with a registered 4 KiB
    buffer; the first has loaded the second's metadata."""
    a, b = agent("api-a"), agent("api-b")
    abuf, bbuf = np.zeros(4096, np.uint8), peers.pattern(4096, 9)
    ra = a.register_memory([(abuf.ctypes.data, 4096, 0, "")], "DRAM")
    rb = b.register_memory([(bbuf.ctypes.data, 4096, 0, "")], "DRAM")
    assert a.add_remote_agent(b.get_agent_metadata()) == b.name.encode()
    yield a, b, abuf, bbuf
    a.deregister_memory(ra)
    b.deregister_memory(rb)


def test_package_surface():
    assert nixl.nixl_agent is nixl_agent
    assert nixl.nixl_agent_config is nixl_agent_config
    assert nixl.__nxl__ is True  # NXL's layer, not NVIDIA's
    for name in ("nixlRegDList", "nixlXferDList", "nixlAgent",
                 "nixlAgentConfig", "DRAM_SEG", "FILE_SEG",
                 "nixlNotFoundError", "nixlInvalidParamError",
                 "nixlBackendError", "nixlRemoteDisconnectError",
                 "nixlNoTelemetryError"):
        assert hasattr(nb, name), name
    assert get_logger("_api").name == "nixl.api"
    assert "NIXL_PLUGIN_DIR" in os.environ  # NIXL's examples print it
    addr = utils.malloc_passthru(100)
    assert addr % 4096 == 0
    utils.ba_buf(addr, 100)
    other = utils.malloc_passthru(100)
    utils.ba_buf(other, 100)
    utils.verify_transfer(addr, other, 100)
    utils.ba_buf(other, 50)
    utils.free_passthru(other)
    utils.free_passthru(addr)


def test_empty_name_and_bad_sync_mode():
    with pytest.raises(ValueError):
        nixl_agent("")
    with pytest.raises(TypeError):
        nixl_agent_config(sync_mode="rw")
    with pytest.raises(TypeError):
        nixl_agent_config(sync_mode=nb.NIXL_THREAD_SYNC_RW)


def test_native_agent_config(monkeypatch):
    """nixl_agent builds its native agent with nixl._bindings.nixlAgent
    (looked up at call time) and a nixlAgentConfig in NIXL's names."""
    seen = []
    real = nb.nixlAgent

    def spy(name, cfg):
        seen.append((name, cfg.useProgThread, cfg.useListenThread,
                     cfg.listenPort, cfg.syncMode, cfg.captureTelemetry))
        return real(name, cfg)

    monkeypatch.setattr(nb, "nixlAgent", spy)
    a = nixl_agent(peers.unique("cfg"), nixl_agent_config(False, True, 0,
                                                          backends=[]))
    b = nixl_agent(peers.unique("cfg"), nixl_agent_config(backends=[]))
    c = nixl_agent(peers.unique("cfg"), nixl_agent_config(
        True, True, 0, True, 0, [],
        nixl_thread_sync_t.NIXL_THREAD_SYNC_RW))
    assert seen[0][1:] == (False, True, 0, nb.NIXL_THREAD_SYNC_STRICT, False)
    assert seen[1][1:] == (True, False, 8888, nb.NIXL_THREAD_SYNC_NONE,
                           False)
    assert seen[2][1:] == (True, True, 0, nb.NIXL_THREAD_SYNC_RW, True)
    assert a.get_listen_port() > 0 and b.get_listen_port() == 0
    assert c.agent.getEffectiveSyncMode() == nb.NIXL_THREAD_SYNC_RW


def test_plugins_and_backends(caplog):
    a = nixl_agent(peers.unique("plug"))  # NIXL's default: UCX
    assert list(a.backends) == ["UCX"]
    for p in ("SHM", "TCP", "UCX", "POSIX"):
        assert p in a.get_plugin_list()
    assert "DRAM_SEG" in a.get_plugin_mem_types("UCX")
    assert a.get_plugin_mem_types("POSIX") == ["DRAM_SEG", "FILE_SEG"]
    assert "num_workers" in a.get_plugin_params("UCX")
    assert a.get_backend_mem_types("UCX") == ["DRAM_SEG", "VRAM_SEG"]
    assert a.get_backend_params("UCX")["num_workers"] == "1"
    assert a.get_plugin_mem_types("UVX") == [] == a.get_backend_mem_types(
        "UVX")
    assert a.get_plugin_params("UVX") == {} == a.get_backend_params("UVX")
    with pytest.raises(nb.nixlNotFoundError):
        a.create_backend("UVX")
    with caplog.at_level(logging.WARNING, logger="nixl"):
        a.create_backend("TCP", {"num_streams": 2, "no_such_key": "1"})
    assert "no_such_key" in caplog.text
    assert a.get_backend_params("TCP")["num_streams"] == "2"
    missing = nixl_agent(peers.unique("plug"),
                         nixl_agent_config(backends=["NOPE", "SHM"]))
    assert list(missing.backends) == ["SHM"]  # skipped with a warning


def test_descriptor_inputs():
    a = agent("descs")
    ok3, ok4 = [(4096, 64, 0)], [(4096, 64, 0, "m")]
    assert a.get_xfer_descs([(1, 2, 3, 4)]) is None
    assert a.get_xfer_descs(ok3, mem_type=None) is None
    assert a.get_xfer_descs(ok4, "DRAM") is None
    assert a.get_reg_descs(ok3, "DRAM") is None
    assert a.get_reg_descs(ok4) is None
    with pytest.raises(KeyError):
        a.get_xfer_descs(ok3, mem_type="V-RAM")
    with pytest.raises(KeyError):
        a.get_reg_descs(ok4, mem_type="V-RAM")
    reg, xfer = nb.nixlRegDList(nb.DRAM_SEG), nb.nixlXferDList(nb.DRAM_SEG)
    assert a.get_xfer_descs(reg) is None and a.get_reg_descs(xfer) is None
    assert a.get_xfer_descs(xfer) is xfer and a.get_reg_descs(reg) is reg
    table = np.array([[4096, 64, 0], [8192, 32, 1]], dtype=np.int64)
    assert a.get_xfer_descs(table, "DRAM") == a.get_xfer_descs(
        [(4096, 64, 0), (8192, 32, 1)], "DRAM")
    assert a.get_xfer_descs(table) is None
    assert a.get_xfer_descs(table[:, :2].copy(), "DRAM") is None
    assert a.get_reg_descs(table, "cpu")[1] == (8192, 32, 1, b"")
    assert a.get_xfer_descs(ok3, "VRAM").getType() == nb.VRAM_SEG

    t = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    d = a.get_xfer_descs(t)
    assert d.getType() == nb.DRAM_SEG and d[0] == (t.data_ptr(), 32, 0)
    assert a.get_reg_descs(t)[0] == (t.data_ptr(), 32, 0, b"")
    assert a.get_xfer_descs(t.T) is None and a.get_reg_descs(t.T) is None
    rows = [t[i] for i in range(2)]
    d = a.get_xfer_descs(rows)
    assert [d[i] for i in range(2)] == [(r.data_ptr(), 16, 0) for r in rows]
    assert a.get_reg_descs([t.T, t]) is None


def test_unknown_op_is_key_error(pair):
    a, b, _, _ = pair
    with pytest.raises(KeyError):
        a.make_prepped_xfer("RD", 0, [], 0, [])
    x = nb.nixlXferDList(nb.DRAM_SEG)
    with pytest.raises(KeyError):
        a.initialize_xfer("WR", x, x, b.name)


def test_initialize_xfer_notifs_and_telemetry(pair, monkeypatch):
    a, b, abuf, bbuf = pair
    half = [(bbuf.ctypes.data, 2048, 0), (bbuf.ctypes.data + 2048, 2048, 0)]
    mine = [(abuf.ctypes.data, 2048, 0), (abuf.ctypes.data + 2048, 2048, 0)]
    local = a.get_xfer_descs(mine, "DRAM")
    remote = a.get_xfer_descs(half, "DRAM")
    h = a.initialize_xfer("READ", local, remote, b.name.encode(), b"UUID1")
    assert isinstance(h, nixl_xfer_handle) and h
    with pytest.raises(nb.nixlNoTelemetryError):
        a.get_xfer_telemetry(h)
    assert a.transfer(h) in ("DONE", "PROC")
    wait_state(a, h)
    assert np.array_equal(abuf, bbuf)
    wait_notif(b, a.name, b"UUID")  # prefix
    abuf[:] = 0
    assert a.transfer(h, b"second tag") != "ERR"  # repost, new notif
    wait_state(a, h)
    assert np.array_equal(abuf, bbuf)
    assert not b.check_remote_xfer_done(a.name, b"zzz")
    wait_notif(b, a.name, b"cond", prefix=False)  # substring
    assert a.query_xfer_backend(h) == "SHM"

    a.send_notif(b.name, b"whatever")
    a.send_notif(b.name, "text")
    wait_notif(b, a.name, b"")  # an empty tag takes any message
    wait_notif(b, a.name, b"")
    assert b.notifs.get(a.name) == []
    a.send_notif(b.name, b"fresh")
    import time
    end, got = time.monotonic() + 5, {}
    while not got and time.monotonic() < end:
        got = b.get_new_notifs()
    assert got == {a.name: [b"fresh"]}
    a.release_xfer_handle(h)
    a.release_xfer_handle(h)  # idempotent

    # Telemetry: NIXL_TELEMETRY_ENABLE=y turns it on; descriptors of
    # initialize_xfer are not merged (two here).
    monkeypatch.setenv("NIXL_TELEMETRY_ENABLE", "y")
    c = agent("telem")
    creg = c.register_memory([(abuf.ctypes.data, 4096, 0, "")], "DRAM")
    c.add_remote_agent(b.get_agent_metadata())
    h = c.initialize_xfer("READ", local, remote, b.name)
    c.transfer(h)
    wait_state(c, h)
    t = c.get_xfer_telemetry(h)
    assert (t.descCount, t.totalBytes) == (2, 4096)
    assert t.startTime > 0 and t.xferDuration >= t.postDuration > 0
    c.release_xfer_handle(h)
    c.deregister_memory(creg)


@pytest.mark.parametrize("env,cfg,on", [
    ("y", False, True), ("n", True, True), ("no", False, False),
    (None, True, True), (None, False, False)])
def test_telemetry_switch(monkeypatch, env, cfg, on):
    if env is None:
        monkeypatch.delenv("NIXL_TELEMETRY_ENABLE", raising=False)
    else:
        monkeypatch.setenv("NIXL_TELEMETRY_ENABLE", env)
    a = agent("tsw", capture_telemetry=cfg)
    assert a.agent.nxl_agent.telemetry == on


def test_prepped_xfer_loopback_indices_and_gc():
    a = agent("loop")
    buf = np.zeros(8 * 512, np.uint8)
    src = peers.pattern(8 * 512, 3)
    a.register_memory([(buf.ctypes.data, buf.nbytes, 0, ""),
                       (src.ctypes.data, src.nbytes, 0, "")], "DRAM")
    blocks = lambda arr: np.array(  # noqa: E731
        [[arr.ctypes.data + i * 512, 512, 0] for i in range(8)], np.uint64)
    lh = a.prep_xfer_dlist("", blocks(buf), "DRAM")
    rh = a.prep_xfer_dlist(a.name, blocks(src), "DRAM")  # loopback
    assert isinstance(lh, nixl_prepped_dlist_handle)
    h = a.make_prepped_xfer("READ", lh, [0, 1, 2, 3], rh,
                            np.array([7, 6, 5, 4], np.int32), b"loop")
    assert a.transfer(h) != "ERR"
    wait_state(a, h)
    for i in range(4):
        assert np.array_equal(buf[i * 512:(i + 1) * 512],
                              src[(7 - i) * 512:(8 - i) * 512])
    wait_notif(a, a.name, b"loop")
    h2 = a.make_prepped_xfer("READ", lh, np.arange(8), rh, np.arange(8),
                             skip_desc_merge=True)
    assert a.transfer(h2) != "ERR"
    wait_state(a, h2)
    assert np.array_equal(buf, src)

    # Handles are released on garbage collection.
    refs = [weakref.ref(h._handle), weakref.ref(lh._handle)]
    del h, h2, lh
    gc.collect()
    assert [r() for r in refs] == [None, None]
    a.release_dlist_handle(rh)
    a.release_dlist_handle(rh)
    # ... and so is the agent, once nothing uses it (no cycles).
    native = weakref.ref(a.agent.nxl_agent)
    h3 = a.make_prepped_xfer(
        "READ", a.prep_xfer_dlist("", blocks(buf), "DRAM"), [0],
        a.prep_xfer_dlist(a.name, blocks(src), "DRAM"), [0])
    del a, rh
    gc.collect()
    assert native() is not None  # the transfer h3 holds it
    del h3
    gc.collect()
    assert native() is None


def test_errors_give_err(pair):
    a, b, abuf, bbuf = pair
    lh = a.prep_xfer_dlist("NIXL_INIT_AGENT", [(abuf.ctypes.data, 64, 0)],
                           "DRAM")
    rh = a.prep_xfer_dlist(b.name, [(bbuf.ctypes.data, 64, 0)], "DRAM")
    h = a.make_prepped_xfer("READ", lh, [0], rh, [0])
    assert a.check_xfer_state(h) == "ERR"  # never posted
    a.remove_remote_agent(b.name)
    assert a.transfer(h) == "ERR"  # the peer was invalidated
    assert a.check_xfer_state(h) == "ERR"
    with pytest.raises(nb.nixlNotFoundError):
        a.make_prepped_xfer("READ", lh, [0], rh, [0])
    with pytest.raises(nb.nixlNotFoundError):
        a.make_connection(b.name)
    with pytest.raises(KeyError):
        a.register_memory([(abuf.ctypes.data, 8, 0, "")], "DRAM", ["UCX"])
    with pytest.raises(TypeError):
        a.register_memory([(1, 2, 3)], "DRAM")  # get_reg_descs: None
    with pytest.raises(nb.nixlNotAllowedError):  # NXL: no overlaps
        a.register_memory([(abuf.ctypes.data + 8, 8, 0, "")], "DRAM")
    a.add_remote_agent(b.get_agent_metadata())
    a.make_connection(b.name)


def test_serialized_descs_round_trip(pair):
    a, b, _, _ = pair
    x = a.get_xfer_descs(np.arange(30, dtype=np.uint64).reshape(10, 3),
                         "VRAM")
    r = a.get_reg_descs([(1, 2, 3, "path"), (4, 5, 6, b"")], "FILE")
    for d in (x, r):
        back = b.deserialize_descs(a.get_serialized_descs(d))
        assert back == d and type(back) is type(d)
    assert b.deserialize_descs(a.get_serialized_descs(r))[0][3] == b"path"


def test_partial_metadata_and_check(pair):
    a, b, abuf, bbuf = pair
    c = agent("part")
    extra = np.zeros(1024, np.uint8)
    rx = b.register_memory([(extra.ctypes.data, 512, 0, ""),
                            (extra.ctypes.data + 512, 512, 0, "")], "DRAM")
    first = b.get_reg_descs([(extra.ctypes.data, 512, 0, "")], "DRAM")
    md = b.get_partial_agent_metadata(first, True)
    assert c.add_remote_agent(md) == b.name.encode()
    cbuf = np.zeros(512, np.uint8)
    c.register_memory([(cbuf.ctypes.data, 512, 0, "")], "DRAM")
    local = c.get_xfer_descs([(cbuf.ctypes.data, 512, 0)], "DRAM")
    covered = c.get_xfer_descs([(extra.ctypes.data, 512, 0)], "DRAM")
    missing = c.get_xfer_descs([(extra.ctypes.data + 512, 512, 0)], "DRAM")
    assert c.check_remote_metadata(b.name)
    assert c.check_remote_metadata(b.name, covered)
    assert not c.check_remote_metadata(b.name, missing)
    assert not c.check_remote_metadata("nobody")
    with pytest.raises(nb.nixlNotFoundError):
        c.initialize_xfer("READ", local, missing, b.name)
    h = c.initialize_xfer("READ", local, covered, b.name)
    c.release_xfer_handle(h)
    b.deregister_memory(rx)


def test_side_channel_by_ip_and_port():
    target = agent("sc-t", enable_listen_thread=True, listen_port=0)
    port = target.get_listen_port()
    init = agent("sc-i")
    buf = np.zeros(256, np.uint8)
    reg = target.register_memory([(buf.ctypes.data, 256, 0, "")], "DRAM")
    init.fetch_remote_metadata(target.name, "127.0.0.1", port)
    assert init.check_remote_metadata(target.name)
    init.send_local_metadata("127.0.0.1", port)
    assert target.check_remote_metadata(init.name)
    init.invalidate_local_metadata("127.0.0.1", port)
    assert not target.check_remote_metadata(init.name)
    part = init.get_reg_descs([], "DRAM")
    init.send_partial_agent_metadata(part, True, [], "127.0.0.1", port)
    assert target.check_remote_metadata(init.name)
    with pytest.raises(nb.nixlNotSupportedError):  # no ip_addr, no etcd set
        init.send_local_metadata()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(nb.nixlIOError):  # NXL's status for a refusal
        init.fetch_remote_metadata(target.name, "127.0.0.1", free)
    with pytest.raises(nb.nixlMismatchError):  # not that agent's listener
        init.fetch_remote_metadata("someone-else", "127.0.0.1", port)
    target.deregister_memory(reg)


def test_query_memory():
    a = nixl_agent(peers.unique("query"), nixl_agent_config(
        False, False, 0, []))
    a.create_backend("POSIX", a.get_plugin_params("POSIX"))
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(2):
            p = os.path.join(d, f"f{i}")
            with open(p, "wb") as f:
                f.write(b"x" * (10 + i))
            paths.append(p)
        resp = a.query_memory([(0, 0, 0, paths[0]),
                               (0, 0, 0, os.path.join(d, "none")),
                               (0, 0, 0, paths[1])], "POSIX", mem_type="FILE")
    assert resp[1] is None
    assert (resp[0]["size"], resp[2]["size"]) == ("10", "11")
    assert list(a.backends) == ["UCX", "POSIX"]  # 4th argument: telemetry
    with pytest.raises(nb.nixlNotSupportedError):
        a.query_memory([(0, 0, 0, "x")], "UCX", "FILE")
    with pytest.raises(ValueError):
        a.query_memory([(0, 0, 0, "x")], "SHM", "FILE")  # not created


def test_posix_file_loopback():
    """NXL's POSIX backend through NIXL's calls: DRAM -> FILE and back
    (FILE descriptors: addr = offset, devId = fd, metaInfo = path)."""
    a = nixl_agent(peers.unique("posix"), nixl_agent_config(
        False, False, 0, backends=["POSIX"]))
    buf, back = peers.pattern(8192, 1), np.zeros(8192, np.uint8)
    fd, path = tempfile.mkstemp()
    try:
        os.ftruncate(fd, 8192)
        rd = a.register_memory([(buf.ctypes.data, 8192, 0, ""),
                                (back.ctypes.data, 8192, 0, "")], "DRAM")
        rf = a.register_memory([(0, 8192, fd, path)], "FILE")
        assert a.query_memory(rf, "POSIX")[0]["size"] == "8192"
        file = a.get_xfer_descs([(0, 8192, fd)], "FILE")
        for op, mem in (("WRITE", buf), ("READ", back)):
            h = a.initialize_xfer(op, a.get_xfer_descs(
                [(mem.ctypes.data, 8192, 0)], "DRAM"), file, a.name)
            assert a.transfer(h) != "ERR"
            wait_state(a, h)
            assert a.query_xfer_backend(h) == "POSIX"
        assert np.array_equal(buf, back)
        assert os.pread(fd, 8192, 0) == buf.tobytes()
        a.deregister_memory(rf)
        a.deregister_memory(rd)
    finally:
        os.close(fd)
        os.unlink(path)
