"""nxl.connect in one process: Dynamo's enums, Device, Descriptor, the wire
models and their texts, every state transition and error text of the
operations, notification demultiplexing, reference-counted remotes, pool
descriptors, and no registration left after close (Dynamo's §12.7 cases
as NXL's own tests)."""

import asyncio
import threading
import time
import uuid

import numpy as np
import pytest
import torch

import nxl
from nxl import _nxl
from nxl import connect as nc

TCP = {"TCP": {"bind_addr": "127.0.0.1"}}


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def pair():
    """Two connectors of this process (SHM): passive side p, active a."""
    p = nc.Connector("passive", backends=("SHM",))
    a = nc.Connector("active", backends=("SHM",))
    yield p, a
    a.close()
    p.close()


@pytest.fixture
def tcp_pair():
    p = nc.Connector("tpassive", backends=TCP)
    a = nc.Connector("tactive", backends=TCP)
    yield p, a
    a.close()
    p.close()


# ---- enums and Device ------------------------------------------------------

def test_enum_values_and_str():
    assert [int(k) for k in nc.DeviceKind] == [0, 1, 2]
    assert [str(k) for k in nc.DeviceKind] == ["<invalid>", "cpu", "cuda"]
    assert [int(k) for k in nc.OperationKind] == [0, 1, 2]
    assert [str(k) for k in nc.OperationKind] == ["<invalid>", "READ",
                                                  "WRITE"]
    assert [int(s) for s in nc.OperationStatus] == list(range(6))
    assert [str(s) for s in nc.OperationStatus] == [
        "<invalid>", "INIT", "PROC", "DONE", "STOP", "ERR"]


def test_device_kind_nixl_mem_type():
    assert nc.DeviceKind.HOST.nixl_mem_type == "DRAM"
    assert nc.DeviceKind.CUDA.nixl_mem_type == "VRAM"
    assert str(nc.DeviceKind.HOST) == "cpu"      # str unchanged
    with pytest.raises(ValueError):
        nc.DeviceKind.UNSPECIFIED.nixl_mem_type


def test_device_parsing():
    for s, kind, i, text in [("cuda:1", nc.DeviceKind.CUDA, 1, "cuda:1"),
                             (" GPU ", nc.DeviceKind.CUDA, 0, "cuda:0"),
                             ("cuda", nc.DeviceKind.CUDA, 0, "cuda:0"),
                             ("cpu", nc.DeviceKind.HOST, 0, "cpu"),
                             ("Host", nc.DeviceKind.HOST, 0, "cpu")]:
        d = nc.Device(s)
        assert (d.kind, d.id, str(d)) == (kind, i, text)
    assert nc.Device((nc.DeviceKind.CUDA, 3)) == nc.Device("cuda:3")
    with pytest.raises(ValueError, match="must be in the format"):
        nc.Device("tpu:0")
    with pytest.raises(ValueError):
        nc.Device(None)
    with pytest.raises(TypeError):
        nc.Device(3)


# ---- Descriptor ------------------------------------------------------------

def test_descriptor_sources():
    t = torch.arange(10, dtype=torch.float32)
    d = nc.Descriptor(t)
    assert (d.ptr, d.size, str(d.device)) == (t.data_ptr(), 40, "cpu")
    a = np.zeros(7, np.uint16)
    d = nc.Descriptor((a, "cpu"))
    assert (d.ptr, d.size) == (a.ctypes.data, 14)
    b = b"hello world"
    d = nc.Descriptor(b)
    assert d.size == 11 and d.ptr != id(b)       # the buffer, not the object
    ba = bytearray(16)
    d = nc.Descriptor(ba)
    with pytest.raises(BufferError):
        ba.extend(b"x")                          # held while described
    d = nc.Descriptor((0x1000, 64, "cuda:2", None))
    assert (d.ptr, d.size, str(d.device)) == (0x1000, 64, "cuda:2")
    m = d.metadata()
    assert m is d.metadata()                     # cached
    assert m.model_dump() == {"device": "cuda:2", "ptr": 4096, "size": 64}
    with pytest.raises(ValueError, match="cannot be `None`"):
        nc.Descriptor(None)
    with pytest.raises(TypeError):
        nc.Descriptor(3.5)
    with pytest.raises(TypeError):
        nc.Descriptor((1, 2, 3))


def test_descriptor_registration_rules(pair):
    p, a = pair
    t = torch.zeros(1024, dtype=torch.uint8)
    d = nc.Descriptor(t)
    assert not d.is_registered
    d.register_with_connector(p._connection_now())
    d.register_with_connector(p)                 # same connection: no-op
    assert d.is_registered
    assert p._connection_now().info()["pool"] == 1
    with pytest.raises(RuntimeError, match="another connection"):
        d.register_with_connector(a._connection_now())
    with pytest.raises(RuntimeError, match="another connection"):
        d.deregister_with_connector(a._connection_now())
    d.deregister_with_connector(p._connection_now())
    assert p._connection_now().info()["regs"] == 0
    with pytest.raises(ValueError, match="null pointer"):
        nc.Descriptor((0, 8, "cpu")).register_with_connector(p)


# ---- wire models -----------------------------------------------------------

def test_serialized_descriptor_validators():
    d = nc.SerializedDescriptor(device=" CUDA:1 ", ptr=5, size=0)
    assert d.device == "cuda:1"
    with pytest.raises(ValueError, match="must be one of 'cpu' or "
                                         "'cuda:<device_id>'"):
        nc.SerializedDescriptor(device="gpu", ptr=1, size=1)
    with pytest.raises(ValueError, match="cannot be zero"):
        nc.SerializedDescriptor(ptr=0, size=1)
    with pytest.raises(ValueError, match="greater than or equal to zero"):
        nc.SerializedDescriptor(ptr=1, size=-1)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        nc.SerializedDescriptor(ptr=1, size=1, extra=2)
    with pytest.raises(TypeError):
        d.ptr = 3                                # frozen
    assert nc.SerializedDescriptor.model_validate(d.model_dump()) == d


def test_rdma_metadata_validators_and_defaults():
    md = nc.RdmaMetadata(operation_kind=1)        # Dynamo's defaults
    assert md.descriptors == [] and md.nixl_metadata == ""
    with pytest.raises(ValueError, match="at least one serialized"):
        md.to_descriptors()
    for k in (0, 4, -1):
        with pytest.raises(ValueError, match="OperationKind"):
            nc.RdmaMetadata(operation_kind=k)
    with pytest.raises(ValueError, match="Extra inputs"):
        nc.RdmaMetadata.model_validate({"operation_kind": 1, "x": 1})
    with pytest.raises(ValueError, match="descriptors.1: .*cannot be zero"):
        nc.RdmaMetadata(operation_kind=1, descriptors=[
            {"device": "cpu", "ptr": 1, "size": 1},
            {"device": "cpu", "ptr": 0, "size": 1}])
    md = nc.RdmaMetadata(operation_kind=2, nixl_metadata="b64:eJwDAAAAAAE=",
                         notification_key="k", descriptors=[
                             {"device": "cpu", "ptr": 1, "size": 2}])
    assert isinstance(md.to_descriptors(), nc.Descriptor)
    assert nc.RdmaMetadata.model_validate(md.model_dump()) == md
    assert hash(md) == hash(nc.RdmaMetadata.model_validate(md.model_dump()))


def _sample_md():
    descs = [(0x7f0000001000, 4096, 1, 0), (0x7f0000100000, 123, 2, 1)]
    raw = bytes(range(200)) * 3
    s = _nxl.connect_md_encode(raw)
    return descs, raw, s


def test_wire_python_to_c_and_back():
    import base64
    import zlib
    descs, raw, s = _sample_md()
    # The metadata string: C == Python's zlib level 6 + base64, both ways.
    assert s == "b64:" + base64.b64encode(zlib.compress(raw, 6)).decode()
    assert _nxl.connect_md_encode(raw, hex=True) == zlib.compress(raw,
                                                                  6).hex()
    assert _nxl.connect_md_decode(s) == raw
    assert _nxl.connect_md_decode(zlib.compress(raw, 6).hex().upper()) == raw
    # Python model -> JSON -> C decoder.
    md = nc.RdmaMetadata(descriptors=[
        nc.SerializedDescriptor(device="cpu", ptr=descs[0][0], size=4096),
        nc.SerializedDescriptor(device="cuda:1", ptr=descs[1][0], size=123)],
        nixl_metadata=s, notification_key=str(uuid.uuid4()),
        operation_kind=1)
    got = _nxl.rdma_metadata_decode(md.model_dump_json())
    assert got == (descs, s, md.notification_key, 1)
    # C encoder -> JSON -> Python model, byte-identical to Python's dump.
    js = _nxl.rdma_metadata_encode(descs, s, md.notification_key, 1)
    assert js == md.model_dump_json()
    assert nc.RdmaMetadata.model_validate_json(js) == md
    one = _nxl.connect_desc_encode(5, 6, 2, 3)
    assert one == '{"device":"cuda:3","ptr":5,"size":6}'
    assert nc.SerializedDescriptor.model_validate_json(one).device == "cuda:3"


# Dynamo's pydantic models, restated with pydantic 1.10 (Debian's): what
# they accept, NXL accepts; what they refuse, NXL refuses.
def _dynamo_models():
    pydantic = pytest.importorskip("pydantic")
    from typing import List

    class SerializedDescriptor(pydantic.BaseModel):
        class Config:
            extra = "forbid"
            frozen = True
        device: str = "cpu"
        ptr: int = 0
        size: int = 0

        @pydantic.validator("device")
        def _d(cls, v):
            v = v.strip().lower()
            if not (v.startswith("cuda") or v == "cpu"):
                raise ValueError("Argument `device` must be one of 'cpu' or "
                                 "'cuda:<device_id>'.")
            return v

        @pydantic.validator("ptr")
        def _p(cls, v):
            if v == 0:
                raise ValueError("Argument `ptr` cannot be zero (aka `null` "
                                 "or `None`).")
            return v

        @pydantic.validator("size")
        def _s(cls, v):
            if v < 0:
                raise ValueError("Argument `size` must be an integer greater "
                                 "than or equal to zero.")
            return v

    class RdmaMetadata(pydantic.BaseModel):
        class Config:
            extra = "forbid"
            frozen = True
        descriptors: List[SerializedDescriptor] = []
        nixl_metadata: str = ""
        notification_key: str = ""
        operation_kind: int = 0

        @pydantic.validator("operation_kind")
        def _k(cls, v):
            if v < 1 or v > 3:
                raise ValueError("Argument `operation_kind` must be an "
                                 "integer value of `dynamo.nixl_connect."
                                 "OperationKind`.")
            return v

    return pydantic, RdmaMetadata


def test_json_accepted_and_refused_like_dynamo(pair):
    pydantic, DynamoMd = _dynamo_models()
    p, _ = pair
    t = torch.zeros(64)
    op = run(p.create_readable(nc.Descriptor(t)))
    ours = op.metadata().model_dump_json()
    theirs = DynamoMd.parse_raw(ours)             # Dynamo accepts ours
    assert theirs.dict() == op.metadata().model_dump()
    assert nc.RdmaMetadata.model_validate_json(theirs.json()) == \
        op.metadata()                             # and we accept theirs
    key = op.metadata().notification_key
    s = op.metadata().nixl_metadata
    good = {"descriptors": [{"device": "cpu", "ptr": 1, "size": 8}],
            "nixl_metadata": s, "notification_key": key, "operation_kind": 1}
    import json
    refused_by_both = [
        dict(good, extra=1),
        dict(good, operation_kind=0), dict(good, operation_kind=4),
        dict(good, descriptors=[{"device": "tpu", "ptr": 1, "size": 8}]),
        dict(good, descriptors=[{"device": "cpu", "ptr": 0, "size": 8}]),
        dict(good, descriptors=[{"device": "cpu", "ptr": 1, "size": -8}]),
        dict(good, descriptors=[{"device": "cpu", "ptr": 1, "size": 8,
                                 "x": 1}]),
        dict(good, descriptors="nope"),
    ]
    for bad in refused_by_both:
        text = json.dumps(bad)
        with pytest.raises(pydantic.ValidationError):
            DynamoMd.parse_raw(text)
        with pytest.raises(ValueError):
            nc.RdmaMetadata.model_validate_json(text)
        with pytest.raises(ValueError):
            nc.RdmaMetadata.model_validate(bad)
    # Stricter than pydantic (docs/connect.md §1.4): missing fields and
    # lax coercion are refused on the wire.
    for strict in (dict((k, v) for k, v in good.items()
                        if k != "notification_key"),
                   dict(good, operation_kind="1"),
                   dict(good, nixl_metadata="b64:not base64!")):
        DynamoMd.parse_raw(json.dumps(strict))
        with pytest.raises(ValueError):
            nc.RdmaMetadata.model_validate_json(json.dumps(strict))
    op.release()


# ---- connector and connection ----------------------------------------------

def test_connector_arguments():
    c = nc.Connector()
    assert len(c.name) == 32 and "-" not in c.name
    with pytest.raises(TypeError, match="non-empty `str`"):
        nc.Connector(worker_id="")
    with pytest.raises(TypeError, match="non-empty `str`"):
        nc.Connector(worker_id=5)
    with pytest.raises(TypeError, match="enable_progress_thread"):
        nc.Connector(enable_progress_thread="yes")
    pc = nc.Connector("actively-polled", enable_progress_thread=True,
                      backends=("SHM",))
    conn = run(pc._create_connection())
    assert conn.name == "actively-polled-1"
    assert conn.agent.name == "actively-polled-1"
    assert conn.agent.progress_thread
    assert run(pc._create_connection()) is conn   # one shared connection
    pc.close()
    c.close()


def test_agent_cannot_close_under_connection(pair):
    p, _ = pair
    conn = p._connection_now()
    with pytest.raises(nxl.NotAllowedError):
        conn.agent.close()


# ---- passive and active state machines --------------------------------------

def test_read_states_and_bytes(pair):
    p, a = pair

    async def go():
        src = torch.arange(4096, dtype=torch.int32)
        dst = torch.zeros_like(src)
        readable = await p.create_readable(nc.Descriptor(src))
        assert readable.status == nc.OperationStatus.INITIALIZED
        assert readable.operation_kind == nc.OperationKind.READ
        md = readable.metadata()
        assert md.operation_kind == 1 and md.nixl_metadata.startswith("b64:")
        assert readable.metadata(hex_encode=True).nixl_metadata[:4] != "b64:"
        op = await a.begin_read(md, nc.Descriptor(dst))
        assert op._status == nc.OperationStatus.UNINITIALIZED  # lazy post
        assert op.remote.name == "passive-1"
        with pytest.raises(RuntimeError, match="not completed yet"):
            op.results()
        await op.wait_for_completion()
        assert op.status == nc.OperationStatus.COMPLETE
        assert op.results()[0].size == 16384
        await readable.wait_for_completion()
        assert readable.status == nc.OperationStatus.COMPLETE
        assert torch.equal(src, dst)
        op.cancel()                              # COMPLETE: no effect
        assert op.status == nc.OperationStatus.COMPLETE
        op.release()
        readable.release()
    run(go())


def test_write_states_and_bytes(pair):
    p, a = pair

    async def go():
        dst = torch.zeros(3, 1000, dtype=torch.float64)
        srcs = [torch.full((1000,), float(i)) .double() for i in range(3)]
        writable = await p.create_writable(
            [nc.Descriptor(dst[i]) for i in range(3)])
        md = writable.metadata()
        assert md.operation_kind == 2 and len(md.descriptors) == 3
        op = await a.begin_write([nc.Descriptor(s) for s in srcs], md)
        await asyncio.gather(op.wait_for_completion(),
                             writable.wait_for_completion())
        for i in range(3):
            assert torch.equal(dst[i], srcs[i])
        op.release()
        writable.release()
    run(go())


def test_begin_errors_have_dynamo_texts(pair):
    p, a = pair

    async def go():
        t = torch.zeros(100, dtype=torch.uint8)
        readable = await p.create_readable(nc.Descriptor(t))
        writable = await p.create_writable(nc.Descriptor(t[:50]))
        with pytest.raises(RuntimeError, match="to read from a remote "
                                               "`dynamo.nixl_connect."
                                               "WritableOperation`"):
            await a.begin_read(writable.metadata(), nc.Descriptor(t))
        with pytest.raises(RuntimeError, match="Cannot create a "
                                               "`WriteOperation`"):
            await a.begin_write(nc.Descriptor(t), readable.metadata())
        with pytest.raises(TypeError, match="RdmaMetadata"):
            await a.begin_read({"operation_kind": 1}, nc.Descriptor(t))
        small = torch.zeros(10, dtype=torch.uint8)
        with pytest.raises(ValueError, match="Local and remote descriptors "
                                             "must be the same size. 10 != "
                                             "100."):
            await a.begin_read(readable.metadata(), nc.Descriptor(small))
        with pytest.raises(ValueError, match="must be either lists or "
                                             "single descriptors"):
            await a.begin_read(readable.metadata(),
                               [nc.Descriptor(small), nc.Descriptor(small)])
        two = await p.create_readable([nc.Descriptor(t[:10]),
                                       nc.Descriptor(t[10:30])])
        with pytest.raises(ValueError, match="descriptor at 1 must have the "
                                             "same size. 10 != 20."):
            await a.begin_read(two.metadata(),
                               [nc.Descriptor(small), nc.Descriptor(small)])
        with pytest.raises(ValueError, match="same length. 3 != 2."):
            await a.begin_read(two.metadata(), [nc.Descriptor(small)] * 3)
        with pytest.raises(ValueError, match="must not be an empty list"):
            await a.create_readable([])
        with pytest.raises(ValueError, match="same memory type"):
            await p.create_readable([nc.Descriptor(t),
                                     nc.Descriptor((t.data_ptr(), 10,
                                                    "cuda:0"))])
        # Nothing was left registered or loaded by the refusals.
        info = a._connection_now().info()
        assert info["regs"] == 0 and info["remotes"] == 0
        for o in (readable, writable, two):
            o.release()
    run(go())


def test_cancel_and_released_handle(pair):
    p, a = pair

    async def go():
        t = torch.zeros(256, dtype=torch.uint8)
        readable = await p.create_readable(nc.Descriptor(t))
        op = await a.begin_read(readable.metadata(),
                                nc.Descriptor(torch.zeros_like(t)))
        op.cancel()                              # before the lazy post
        assert op.status == nc.OperationStatus.CANCELLED
        await op.wait_for_completion()           # returns (Dynamo)
        op.cancel()                              # no effect
        op.release()
        op2 = await a.begin_read(readable.metadata(),
                                 nc.Descriptor(torch.zeros_like(t)))
        op2.release()                            # never polled: CANCELLED
        assert op2.status == nc.OperationStatus.CANCELLED
        op3 = await a.begin_read(readable.metadata(),
                                 nc.Descriptor(torch.zeros_like(t)))
        op3._native.release()                    # the handle goes away
        with pytest.raises(RuntimeError, match="NIXL transfer handle is "
                                               "invalid."):
            op3.status
        # A cancelled passive operation stops claiming its key: the late
        # notification goes to the connection.
        readable.cancel()
        assert readable.status == nc.OperationStatus.CANCELLED
        key = readable.notification_key
        a._connection_now().agent.load_metadata(
            p._connection_now().metadata)
        a._connection_now().agent.send_notif("passive-1", key)
        for _ in range(200):
            if p._connection_now().consume_notification(key):
                break
            time.sleep(0.005)
        else:
            raise AssertionError("the cancelled key did not arrive")
        readable.release()
    run(go())


def test_errored_raises_and_cannot_cancel(tcp_pair):
    p, a = tcp_pair

    async def go():
        t = torch.zeros(1 << 16, dtype=torch.uint8)
        readable = await p.create_readable(nc.Descriptor(t))
        md = readable.metadata()
        op = await a.begin_read(md, nc.Descriptor(torch.zeros_like(t)))
        p.close()                                # the peer goes away
        with pytest.raises(RuntimeError, match="READ failed"):
            await op.wait_for_completion()
        assert op.status == nc.OperationStatus.ERRORED
        assert str(op.status) == "ERR"
        with pytest.raises(RuntimeError, match="Operation is errored, "
                                               "unable to cancel the "
                                               "operation."):
            op.cancel()
        op.release()
    run(go())


# ---- notifications ---------------------------------------------------------

def test_64_concurrent_passive_operations(pair):
    p, a = pair

    async def go():
        srcs = [torch.full((1024,), i, dtype=torch.int32) for i in range(64)]
        passive = [await p.create_readable(nc.Descriptor(s)) for s in srcs]
        dsts = [torch.zeros(1024, dtype=torch.int32) for _ in range(64)]
        waits = [asyncio.ensure_future(op.wait_for_completion())
                 for op in passive]
        order = list(range(64))
        order.reverse()
        for i in order:
            op = await a.begin_read(passive[i].metadata(),
                                    nc.Descriptor(dsts[i]))
            await op.wait_for_completion()
            op.release()
        await asyncio.wait_for(asyncio.gather(*waits), 10)
        for i in range(64):
            assert passive[i].status == nc.OperationStatus.COMPLETE
            assert torch.equal(srcs[i], dsts[i])
        info = p._connection_now().info()
        assert info["keys"] == 0 and info["queued"] == 0  # no build-up
        for op in passive:
            op.release()
        assert p._connection_now().info()["regs"] == 0
    run(go())


def test_notifications_consumed_without_touching_others(pair):
    p, a = pair
    pc, ac = p._connection_now(), a._connection_now()

    async def go():
        t = torch.zeros(64)
        readable = await p.create_readable(nc.Descriptor(t))
        key = readable.notification_key
        ac.agent.load_metadata(pc.metadata)
        for msg in ("first", "second", key[:10], key + "x", "first"):
            ac.agent.send_notif("passive-1", msg)
        for _ in range(400):
            if pc.info()["queued"] == 5:
                break
            pc.consume_notification("none")
            time.sleep(0.002)
        assert readable.status == nc.OperationStatus.INITIALIZED
        assert pc.consume_notification("first")
        assert pc.consume_notification("second")
        assert not pc.consume_notification("second")
        ac.agent.send_notif("passive-1", key)
        await asyncio.wait_for(readable.wait_for_completion(), 5)
        left = [m for _, m in pc.get_notifications()]
        assert left == [key[:10].encode(), (key + "x").encode(), b"first"]
        readable.release()
    run(go())


def test_concurrent_pollers_do_not_resurrect(pair):
    p, a = pair
    pc = p._connection_now()

    async def make():
        return [await p.create_readable(nc.Descriptor(torch.zeros(16)))
                for _ in range(16)]
    ops = run(make())
    a._connection_now().agent.load_metadata(pc.metadata)
    stop = []
    seen = []

    def poll():
        while not stop:
            for op in ops:
                op.status
            seen.append(pc.info()["queued"])

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for th in threads:
        th.start()
    for op in ops:
        a._connection_now().agent.send_notif("passive-1",
                                             op.notification_key)
    end = time.monotonic() + 5
    while time.monotonic() < end and not all(
            op._status == nc.OperationStatus.COMPLETE for op in ops):
        time.sleep(0.01)
    stop.append(True)
    for th in threads:
        th.join()
    assert all(op.status == nc.OperationStatus.COMPLETE for op in ops)
    assert set(seen) == {0} and pc.info()["queued"] == 0
    for op in ops:
        op.release()


# ---- remotes and registrations ---------------------------------------------

def test_remote_refcounts(pair):
    p, a = pair
    ac = a._connection_now()

    async def go():
        bufs = [torch.full((512,), i, dtype=torch.uint8) for i in range(2)]
        rs = [await p.create_readable(nc.Descriptor(b)) for b in bufs]
        ops = [await a.begin_read(
            r.metadata(), nc.Descriptor(torch.zeros(512, dtype=torch.uint8)))
               for r in rs]
        assert ac.remote_refs("passive-1") == 2  # loaded once, two refs
        assert ac.info()["remotes"] == 1
        await ops[0].wait_for_completion()
        ops[0].release()
        assert ac.remote_refs("passive-1") == 1
        assert ac.agent.check("passive-1")      # not removed: ops[1] holds
        r = nc.Remote(ac, rs[0].metadata().nixl_metadata)
        assert r.name == "passive-1" and ac.remote_refs("passive-1") == 2
        await ops[1].wait_for_completion()
        ops[1].release()
        assert ac.agent.check("passive-1")      # the Remote holds it
        r.release()
        r.release()                              # once only
        assert ac.remote_refs("passive-1") == 0
        assert not ac.agent.check("passive-1")
        with pytest.raises(ValueError, match="expected"):
            nc.Remote(ac, rs[1].metadata().nixl_metadata,
                      expected_name="other")
        assert ac.remote_refs("passive-1") == 0
        for x in rs:
            x.release()
    run(go())


def test_racing_remote_add_and_retire(pair):
    p, a = pair
    ac = a._connection_now()
    md = p._connection_now().metadata
    holder = nc.Remote(ac, md)
    errors = []

    def churn():
        try:
            for _ in range(200):
                nc.Remote(ac, md).release()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert ac.remote_refs("passive-1") == 1     # {"peer": 1}
    holder.release()
    assert ac.remote_refs("passive-1") == 0
    assert not ac.agent.check("passive-1")


def test_pool_descriptors_outlive_operations(pair):
    p, a = pair
    ac = a._connection_now()

    async def go():
        src = torch.arange(256, dtype=torch.uint8)
        readable = await p.create_readable(nc.Descriptor(src))
        pool = torch.zeros(4096, dtype=torch.uint8)
        pd = nc.Descriptor(pool)
        pd.register_with_connector(ac)
        for off in (0, 1024):                    # spans inside the pool
            sub = nc.Descriptor((pool.data_ptr() + off, 256, "cpu", pool))
            op = await a.begin_read(readable.metadata(), sub)
            await op.wait_for_completion()
            op.release()
            assert ac.info()["pool"] == 1 and ac.info()["regs"] == 1
            assert torch.equal(pool[off:off + 256], src)
        # A duplicate descriptor in one operation registers once and is
        # deregistered once.
        two = await p.create_readable([nc.Descriptor(src[:128]),
                                       nc.Descriptor(src[128:])])
        dup = torch.zeros(128, dtype=torch.uint8)
        op = await a.begin_read(two.metadata(), [nc.Descriptor(dup)] * 2)
        assert ac.info()["regs"] == 2
        await op.wait_for_completion()
        op.release()
        assert ac.info()["regs"] == 1
        pd.deregister_with_connector(ac)
        assert ac.info()["regs"] == 0
        readable.release()
        two.release()
    run(go())


def test_no_registration_left_after_close():
    p = nc.Connector("leak-p", backends=("SHM",))
    a = nc.Connector("leak-a", backends=("SHM",))

    async def go():
        src = torch.ones(1000)
        r = await p.create_readable(nc.Descriptor(src))
        w = await p.create_writable(nc.Descriptor(torch.zeros(1000)))
        op = await a.begin_read(r.metadata(), nc.Descriptor(torch.zeros(1000)))
        await op.wait_for_completion()
        return r, w, op
    r, w, op = run(go())
    assert p._connection_now().info()["regs"] == 2
    p.close()
    a.close()
    for o in (r, w, op):                          # detached by close
        o.release()
    assert p._connection._native.closed and a._connection._agent.closed


def test_progress_thread_connector_waits():
    p = nc.Connector("pt-p", enable_progress_thread=True, backends=("SHM",))
    a = nc.Connector("pt-a", enable_progress_thread=True, backends=("SHM",))

    async def go():
        src = torch.arange(1 << 16, dtype=torch.int32)
        dst = torch.zeros_like(src)
        r = await p.create_readable(nc.Descriptor(src))
        op = await a.begin_read(r.metadata(), nc.Descriptor(dst))
        await asyncio.wait_for(asyncio.gather(op.wait_for_completion(),
                                              r.wait_for_completion()), 10)
        assert torch.equal(src, dst)
        op.release()
        r.release()
    run(go())
    p.close()
    a.close()


def test_passive_completion_latency_is_event_driven(pair):
    """Not a timing test of the machine: the completion must be seen far
    sooner than Dynamo's 100 ms poll period (median of 20)."""
    p, a = pair

    async def go():
        lat = []
        for _ in range(20):
            t = torch.zeros(4096, dtype=torch.uint8)
            r = await p.create_readable(nc.Descriptor(t))
            done = []
            w = asyncio.ensure_future(r.wait_for_completion())
            w.add_done_callback(lambda _: done.append(time.perf_counter()))
            await asyncio.sleep(0)
            op = await a.begin_read(r.metadata(),
                                    nc.Descriptor(torch.zeros_like(t)))
            await op.wait_for_completion()
            t0 = time.perf_counter()
            await asyncio.wait_for(w, 5)
            lat.append(done[0] - t0)
            op.release()
            r.release()
        lat.sort()
        assert lat[10] < 0.05, lat
    run(go())


def test_keep_remotes_lru():
    p1 = nc.Connector("keep-p1", backends=("SHM",))
    p2 = nc.Connector("keep-p2", backends=("SHM",))
    a = nc.Connector("keep-a", backends=("SHM",), keep_remotes=1)
    with pytest.raises(TypeError, match="keep_remotes"):
        nc.Connector(keep_remotes=-1)
    ac = a._connection_now()

    async def read_from(p):
        r = await p.create_readable(nc.Descriptor(torch.ones(8)))
        op = await a.begin_read(r.metadata(), nc.Descriptor(torch.zeros(8)))
        await op.wait_for_completion()
        op.release()
        r.release()

    run(read_from(p1))
    assert ac.remote_refs("keep-p1-1") == 1 and ac.agent.check("keep-p1-1")
    run(read_from(p1))
    assert ac.remote_refs("keep-p1-1") == 1
    run(read_from(p2))                          # evicts p1
    assert ac.remote_refs("keep-p1-1") == 0
    assert not ac.agent.check("keep-p1-1")
    assert ac.remote_refs("keep-p2-1") == 1
    a.close()
    p1.close()
    p2.close()


def test_threads_cannot_free_under_a_waiter(pair):
    """A thread waiting on an operation (GIL released) keeps it and its
    connector alive: release and close refuse until it is done."""
    p, a = pair
    pc = p._connection_now()
    r = run(p.create_readable(nc.Descriptor(torch.zeros(64))))
    done = []
    th = threading.Thread(target=lambda: done.append(r._native.wait(10)))
    th.start()
    time.sleep(0.1)
    with pytest.raises(nxl.NotAllowedError, match="another thread"):
        r._native.release()
    with pytest.raises(nxl.NotAllowedError, match="another thread"):
        pc._native.close()
    a._connection_now().agent.load_metadata(pc.metadata)
    a._connection_now().agent.send_notif("passive-1", r.notification_key)
    th.join(10)
    assert done == [None] and r.status == nc.OperationStatus.COMPLETE
    r.release()


def test_failed_remote_add_keeps_the_existing_one(pair):
    p, a = pair
    ac = a._connection_now()
    held = nc.Remote(ac, p._connection_now().metadata)
    with pytest.raises(ValueError):
        nc.Remote(ac, "b64:AAAA")                 # not metadata
    with pytest.raises(ValueError):
        nc.Remote(ac, b"\x00garbage")
    assert ac.remote_refs("passive-1") == 1 and ac.agent.check("passive-1")
    held.release()


def test_reused_descriptor_keeps_its_registration(pair):
    """Two operations over the same local memory: releasing the first
    keeps the registration the second still uses."""
    p, a = pair
    ac = a._connection_now()

    async def go():
        src = torch.arange(100, dtype=torch.uint8)
        r1 = await p.create_readable(nc.Descriptor(src))
        r2 = await p.create_readable(nc.Descriptor(src))
        dst = nc.Descriptor(torch.zeros(100, dtype=torch.uint8))
        op1 = await a.begin_read(r1.metadata(), dst)
        op2 = await a.begin_read(r2.metadata(), dst)
        assert ac.info()["regs"] == 1
        await op1.wait_for_completion()
        op1.release()
        assert ac.info()["regs"] == 1             # op2 still uses it
        await op2.wait_for_completion()
        assert torch.equal(dst._data_ref, src)
        op2.release()
        assert ac.info()["regs"] == 0
        r1.release()
        r2.release()
    run(go())
