"""Two processes (the `peer` fixture, spawned) doing READ and WRITE with
notifications over SHM, TCP and UCX, with byte checks on numpy arrays and
torch tensors."""

import pickle

import numpy as np
import pytest

import nxl
from peers import SIZE, SRC_SEED, pattern, unique, wait_notif

BACKENDS = ["SHM", "TCP", "UCX"]


def need_backend(name):
    if name not in nxl.plugin_names():
        pytest.skip(f"backend {name} is not built here "
                    f"(nxl.plugin_names() = {nxl.plugin_names()})")


def need_torch():
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torch is not importable: {e}")
    return torch


def connect(agent, peer, backend):
    """Loads the peer's metadata: through the side channel for TCP, from
    the bytes for the others."""
    if backend == "TCP":
        agent.fetch_metadata("127.0.0.1", peer.port, remote=peer.name,
                             timeout=5)
    else:
        assert agent.load_metadata(peer.md) == peer.name
    assert agent.check(peer.name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_write_numpy(peer, backend):
    need_backend(backend)
    name = unique("np-" + backend)
    n = 1 << 20
    with nxl.Agent(name, backends=(backend,)) as a:
        local = np.zeros(n, np.uint8)
        with a.register(local):
            connect(a, peer, backend)
            assert a.check(peer.name, [(peer.src + 4096, n, 0)])
            assert not a.check(peer.name, [(peer.src + SIZE, 4096, 0)])

            # READ: the peer's src (from offset 4096) into local.
            t = a.xfer(nxl.READ, local, [(peer.src + 4096, n, 0)],
                       peer.name, notif=b"read done")
            assert t.backend == backend
            assert t.post() in (nxl.OK, nxl.IN_PROG)
            assert t.wait(10) == nxl.OK
            assert t.status == nxl.OK
            expect = pattern(SIZE, SRC_SEED)[4096:4096 + n]
            assert np.array_equal(local, expect)
            assert peer.call("wait_notif", name, b"read done", 5)

            # WRITE: a new pattern into the peer's dst (at 8192); the
            # notification is delivered after the data is visible.
            local[:] = pattern(n, 99)
            t2 = a.xfer("write", local, [(peer.dst + 8192, n, 0)], peer.name,
                        notif="write done")
            t2.post()
            t2.wait(10)
            assert peer.call("wait_notif", name, b"write done", 5)
            assert peer.call("dst", 8192, n) == local.tobytes()

            # Re-post with another notification (the steady-state loop).
            local[:] = pattern(n, 5)
            t2.post(b"again")
            t2.wait(10)
            assert peer.call("wait_notif", name, b"again", 5)
            assert peer.call("dst", 8192, n) == local.tobytes()

            # Notifications from the peer: it needs our metadata first.
            a.send_metadata("127.0.0.1", peer.port, timeout=5)
            peer.call("send_notif", name, b"from peer")
            wait_notif(a, peer.name, b"from peer")
            a.send_notif(peer.name, b"standalone")
            assert peer.call("wait_notif", name, b"standalone", 5)

            t.release()
            t2.release()
            a.invalidate_local("127.0.0.1", peer.port, timeout=5)
            a.invalidate(peer.name)
            assert not a.check(peer.name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepped_blocks_torch(peer, backend):
    """64 blocks of 16 KiB between a torch tensor and the peer, through
    prepared lists and make_xfer with numpy and list indices."""
    need_backend(backend)
    torch = need_torch()
    name = unique("torch-" + backend)
    bs, nb = 16384, 64
    with nxl.Agent(name, backends=(backend,)) as a:
        local = torch.zeros(nb * bs // 4, dtype=torch.float32)
        reg = a.register(local)                 # DLPack
        assert reg.descs.mem == nxl.DRAM
        assert reg.descs[0] == (local.data_ptr(), nb * bs, 0)
        connect(a, peer, backend)
        base = local.data_ptr()
        lp = a.prep([(base + i * bs, bs, 0) for i in range(nb)])
        rows = np.array([(peer.src + i * bs, bs, 0) for i in range(nb)],
                        dtype=np.uint64)
        rp = a.prep(rows, remote=peer.name)     # Nx3 array
        assert len(lp) == len(rp) == nb

        ridx = np.random.default_rng(1).permutation(nb).astype(np.int64)
        t = a.make_xfer(nxl.Op.READ, lp, np.arange(nb), rp, ridx,
                        notif=b"blocks")
        if t.post() == nxl.IN_PROG:
            t.wait(10)
        got = local.numpy().view(np.uint8).reshape(nb, bs)
        src = pattern(SIZE, SRC_SEED)[:nb * bs].reshape(nb, bs)
        assert np.array_equal(got, src[ridx])
        assert peer.call("wait_notif", name, b"blocks", 5)

        # WRITE blocks 0..7 of local into the peer's dst blocks 20..27,
        # indices from Python lists.
        local.view(torch.uint8)[:] = torch.from_numpy(
            pattern(nb * bs, 3).copy())
        drows = np.array([(peer.dst + i * bs, bs, 0) for i in range(nb)],
                         dtype=np.uint64)
        dp = a.prep(drows, remote=peer.name)
        t2 = a.make_xfer("WRITE", lp, list(range(8)), dp,
                         list(range(20, 28)), notif=b"wblocks")
        t2.post()
        t2.wait(10)
        assert peer.call("wait_notif", name, b"wblocks", 5)
        assert peer.call("dst", 20 * bs, 8 * bs) == \
            local.numpy().view(np.uint8)[:8 * bs].tobytes()

        # A tensor registered as a list of tensors, and a bfloat16 one.
        parts = [torch.full((1024,), float(i)) for i in range(4)]
        with a.register(parts) as r:
            assert [d[1] for d in r.descs] == [4096] * 4
        bf = torch.ones(512, dtype=torch.bfloat16)
        with a.register(bf) as r:
            assert r.descs[0] == (bf.data_ptr(), 1024, 0)
        with pytest.raises(nxl.InvalidParamError, match="contiguous"):
            a.register(torch.zeros(8, 8)[:, ::2])
        t.release()
        t2.release()
        reg.deregister()
        a.invalidate(peer.name)


def test_descriptor_inputs():
    """DescList from every kind of input, with the memory kinds."""
    a = np.zeros(100, np.uint8)
    rows = [(1000, 10, 0), (2000, 20, 1)]
    assert list(nxl.DescList(rows)) == rows
    assert list(nxl.DescList([list(r) for r in rows])) == rows
    assert list(nxl.DescList((5, 6, 7))) == [(5, 6, 7)]
    assert list(nxl.DescList(np.array(rows, np.uint64))) == rows
    assert list(nxl.DescList(np.array(rows, np.int64))) == rows
    strided = np.repeat(np.array(rows, np.uint64), 2, axis=0)[::2]
    assert list(nxl.DescList(strided)) == rows
    assert nxl.DescList(rows, mem="VRAM").mem == nxl.VRAM
    assert nxl.DescList(rows, mem=nxl.Mem.FILE).mem == nxl.FILE
    assert nxl.DescList(rows, mem="cuda").mem == nxl.VRAM
    d = nxl.DescList([a, (7, 8, 0), bytearray(5)])
    assert d[0] == (a.ctypes.data, 100, 0)
    assert d[1] == (7, 8, 0)
    assert d[2][1] == 5
    assert not d.readonly
    assert nxl.DescList(b"abc").readonly
    assert nxl.DescList(memoryview(b"abcd")).nbytes == 4
    # numpy sees the descriptors as an Nx3 uint64 array.
    v = np.asarray(nxl.DescList(rows))
    assert v.dtype == np.uint64 and v.shape == (2, 3)
    assert v.tolist() == [list(r) for r in rows]
    assert len(nxl.DescList()) == 0
    # Pickled as descriptors (not memory): NIXL's serialized descriptors.
    p = pickle.loads(pickle.dumps(nxl.DescList(rows, mem="VRAM")))
    assert list(p) == rows and p.mem == nxl.VRAM

    class AI:  # __array_interface__ only
        def __init__(self, arr):
            self.arr = arr
            self.__array_interface__ = arr.__array_interface__

    class CAI:  # __cuda_array_interface__ only: VRAM
        __cuda_array_interface__ = {"data": (12345, False), "shape": (4, 2),
                                    "typestr": "<f4", "strides": None,
                                    "version": 3}

    x = np.arange(12, dtype=np.float64)
    assert nxl.DescList(AI(x))[0] == (x.ctypes.data, 96, 0)
    c = nxl.DescList(CAI())
    assert c.mem == nxl.VRAM and c[0] == (12345, 32, 0)
    with pytest.raises(nxl.InvalidParamError, match="contiguous"):
        nxl.DescList(AI(x[::2]))
    with pytest.raises(nxl.InvalidParamError, match="contiguous"):
        nxl.DescList(x[::2])
    with pytest.raises(nxl.InvalidParamError):
        nxl.DescList([(1, 2)])
    with pytest.raises(nxl.InvalidParamError):
        nxl.DescList([(-1, 2, 0)])
    with pytest.raises(nxl.InvalidParamError, match="memory kind"):
        nxl.DescList([a, CAI()])
    with pytest.raises(nxl.InvalidParamError):
        nxl.DescList(rows, mem="HBM")
    with pytest.raises(nxl.InvalidParamError, match="does not describe"):
        nxl.DescList([object()])


def test_dlpack_devices():
    """DLPack device types map to memory kinds: CPU -> DRAM, CUDA -> VRAM
    with its device id (a CUDA capsule is made by hand: no GPU needed)."""
    torch = need_torch()
    t = torch.arange(10, dtype=torch.int16)
    d = nxl.DescList(t)
    assert d.mem == nxl.DRAM and d[0] == (t.data_ptr(), 20, 0)
    d2 = nxl.DescList(t[2:])          # byte_offset / data pointer
    assert d2[0] == (t.data_ptr() + 4, 16, 0)
    assert nxl.DescList(t.reshape(2, 5).t().contiguous())[0][1] == 20
    w = torch.zeros(10, requires_grad=True)    # Tensor.__dlpack__ refuses
    assert nxl.DescList(w)[0] == (w.data_ptr(), 40, 0)
    with pytest.raises(nxl.InvalidParamError, match="contiguous"):
        nxl.DescList(t.reshape(2, 5).t())
    cuda = FakeDLPack(device_type=2, device_id=3)
    d3 = nxl.DescList([cuda])
    assert d3.mem == nxl.VRAM and d3[0] == (0x70000000 + 64, 128, 3)
    assert nxl.DescList(FakeDLPack(device_type=3, device_id=0)).mem == \
        nxl.DRAM                       # kDLCUDAHost: pinned host memory
    with pytest.raises(nxl.NotSupportedError, match="device type 7"):
        nxl.DescList(FakeDLPack(device_type=7, device_id=0))
    with pytest.raises(nxl.InvalidParamError, match="memory kind"):
        nxl.DescList([t, cuda])


class FakeDLPack:
    """An exporter of a hand-made DLPack capsule (4x8 float32 at
    0x70000000 + 64 on a given device), so that the device mapping is
    tested without a GPU. The capsule has no destructor."""

    def __init__(self, device_type, device_id):
        import ctypes as c

        class Dev(c.Structure):
            _fields_ = [("type", c.c_int32), ("id", c.c_int32)]

        class DType(c.Structure):
            _fields_ = [("code", c.c_uint8), ("bits", c.c_uint8),
                        ("lanes", c.c_uint16)]

        class Tensor(c.Structure):
            _fields_ = [("data", c.c_void_p), ("device", Dev),
                        ("ndim", c.c_int32), ("dtype", DType),
                        ("shape", c.POINTER(c.c_int64)),
                        ("strides", c.POINTER(c.c_int64)),
                        ("byte_offset", c.c_uint64)]

        class Managed(c.Structure):
            _fields_ = [("t", Tensor), ("ctx", c.c_void_p),
                        ("deleter", c.c_void_p)]

        self.c = c
        self.shape = (c.c_int64 * 2)(4, 8)
        self.m = Managed(Tensor(0x70000000, Dev(device_type, device_id), 2,
                                DType(2, 32, 1), self.shape, None, 64),
                         None, None)

    def __dlpack__(self):
        new = self.c.pythonapi.PyCapsule_New
        new.restype = self.c.py_object
        new.argtypes = [self.c.c_void_p, self.c.c_char_p, self.c.c_void_p]
        return new(self.c.addressof(self.m), b"dltensor", None)


def test_backends_and_plugins():
    names = nxl.plugin_names()
    assert names[:2] == ["SHM", "TCP"] and "POSIX" in names
    info = nxl.plugin_info("shm")
    assert info.name == "SHM" and info.local and info.remote and info.notif
    assert nxl.Mem.DRAM in info.mem_kinds
    assert "split_threshold" in info.defaults
    assert nxl.plugin_info("POSIX").mem_kinds == (nxl.Mem.DRAM, nxl.Mem.FILE)
    assert nxl.version.count(".") == 2
    with nxl.Agent(unique("params"), backends={
            "TCP": None, "SHM": {"num_threads": 1, "split_threshold": 4096}}
            ) as a:
        assert a.backends == ("TCP", "SHM")
        assert a.has_backend("shm") and not a.has_backend("UCX")
        with pytest.raises(nxl.InvalidParamError):
            a.create_backend("SHM")                 # one per type
        with pytest.raises(nxl.InvalidParamError):
            a.create_backend("POSIX", {"no_such_param": "1"})
        assert a.create_backend("POSIX") == "POSIX"
        assert a.backends == ("TCP", "SHM", "POSIX")
        # The first backend (creation order) that covers both sides runs
        # a transfer, unless backends= restricts it.
        buf = np.zeros(8192, np.uint8)
        with a.register(buf):
            t = a.xfer(nxl.WRITE, buf[:4096], buf[4096:], a.name)
            assert t.backend == "TCP"
            t2 = a.xfer(nxl.WRITE, buf[:4096], buf[4096:], a.name,
                        backends=["SHM"])
            assert t2.backend == "SHM"
    with pytest.raises(nxl.NotFoundError):
        nxl.Agent(unique("nobe"), backends=("SHM", "NOPE"))
