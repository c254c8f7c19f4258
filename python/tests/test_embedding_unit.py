"""nxl.embedding and nxl.safetensors_fmt in one process: the safetensors
format against its published examples, the ring buffer's allocation rules
(wrap and fail cases), the request models, dtype strings and the mode
switch, Dynamo's correctness case for every mode, and the nixl-write
protocol's edges: lease expiry, unclaimed expiry, retries with back-off,
terminal ERR for unknown ids, cancel mid-transfer with quarantine, aclose
that fails unclaimed sends and leaks nothing (§14.5 and §14.4)."""

import asyncio
import base64
import json
import time

import numpy as np
import pytest
import torch

from nxl import embedding as E
from nxl import safetensors_fmt as sf

SHM = ("SHM",)


def run(coro):
    return asyncio.run(coro)


# ---- safetensors -----------------------------------------------------------

# The format's published examples (the reference implementation's tests).
ATTN0 = bytes([
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58,
    123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34,
    115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34,
    100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91,
    48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64,
    0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64])
ATTN0_ALIGNED = bytes([
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123,
    34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115,
    104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34,
    100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91,
    48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0,
    0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64])
EMPTY = bytes([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
EMPTY_META = bytes([
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97,
    116, 97, 95, 95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111,
    114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32])
I32_2x2 = (b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32",'
           b'"shape":[2,2],"data_offsets":[0,16]}}' + b"\x00" * 16)


def test_safetensors_published_examples():
    data = np.arange(6, dtype=np.float32)
    assert sf.serialize({"attn.0": data.reshape(1, 2, 3)}) == ATTN0
    assert sf.serialize({"attn0": torch.from_numpy(data).reshape(1, 1, 2, 3)
                         }) == ATTN0_ALIGNED
    assert sf.serialize({}) == EMPTY
    assert sf.serialize({}, {"framework": "pt"}) == EMPTY_META
    t = sf.load(ATTN0)["attn.0"]
    assert t.dtype == torch.float32 and torch.equal(
        t, torch.arange(6.0).reshape(1, 2, 3))
    assert sf.load(ATTN0_ALIGNED)["attn0"].shape == (1, 1, 2, 3)
    tensors, meta = sf.deserialize(EMPTY_META)
    assert tensors == {} and meta == {"framework": "pt"}
    t = sf.load(I32_2x2)["test"]
    assert t.dtype == torch.int32 and t.shape == (2, 2) and not t.any()
    # Zero-sized tensors, empty shapes and whitespace-padded headers.
    assert sf.load(b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32",'
                   b'"shape":[2,0],"data_offsets":[0, 0]}}')["test"].shape \
        == (2, 0)
    assert sf.load(b'8\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32",'
                   b'"shape":[],"data_offsets":[0,4]}}\x00\x00\x00\x00'
                   )["test"].shape == ()
    assert sf.deserialize(b"\x06\x00\x00\x00\x00\x00\x00\x00{}\x0d\x20"
                          b"\x09\x0a") == ({}, None)


@pytest.mark.parametrize("blob,kind", [
    (b"", "HeaderTooSmall"),
    (b"<\x00\x00\x00\x00\x00\x00\x00", "InvalidHeaderLength"),
    (b"\x01\x00\x00\x00\x00\x00\x00\x00\xff", "InvalidHeader"),
    (b"\x01\x00\x00\x00\x00\x00\x00\x00{", "InvalidHeaderDeserialization"),
    (b"<\x00\x00\x00\x00\xff\xff\xff" + I32_2x2[8:], "HeaderTooLarge"),
    (b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,2],'
     b'"data_offsets":[0, 4]}}', "TensorInvalidInfo"),
    (b'O\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,'
     b'18446744073709551614],"data_offsets":[0,16]}}' + b"\x00" * 16,
     "ValidationOverflow"),
    (b'N\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,'
     b'9223372036854775807],"data_offsets":[0,16]}}' + b"\x00" * 16,
     "ValidationOverflow"),
    (I32_2x2 + b"extra_bogus_data_for_polyglot_file",
     "MetadataIncompleteBuffer"),
    (I32_2x2[:-2], "MetadataIncompleteBuffer"),
])
def test_safetensors_refusals(blob, kind):
    with pytest.raises(sf.SafetensorError) as e:
        sf.deserialize(blob)
    assert e.value.kind == kind


def test_safetensors_offsets_attack_and_dtypes(tmp_path):
    header = {f"weight_{i}": {"dtype": "F32", "shape": [2, 2],
                              "data_offsets": [0, 16]} for i in range(10)}
    text = json.dumps(header).encode()
    blob = len(text).to_bytes(8, "little") + text + b"\x00" * 16
    with pytest.raises(sf.SafetensorError) as e:
        sf.deserialize(blob)
    assert e.value.kind == "InvalidOffset"
    ts = {"bf": torch.randn(33, 7).to(torch.bfloat16),
          "f16": torch.randn(5).half(), "i64": torch.arange(9),
          "b": torch.tensor([True, False]),
          "u8": torch.arange(200, dtype=torch.uint8)}
    path = tmp_path / "t.safetensors"
    sf.save_file(ts, path, {"k": "v"})
    back = sf.load_file(path)
    assert set(back) == set(ts)
    for k in ts:
        assert back[k].dtype == ts[k].dtype and torch.equal(back[k], ts[k])
    assert sf.deserialize(path.read_bytes())[1] == {"k": "v"}
    raw = path.read_bytes()
    assert (8 + int.from_bytes(raw[:8], "little")) % 8 == 0  # aligned data


# ---- ring buffer -----------------------------------------------------------

def test_ring_buffer_allocation_rules():
    rb = E.RingBuffer(100)
    assert rb.get_buffer(101) == (None, None)    # larger than the ring
    a, ta = rb.get_buffer(40)
    b, tb = rb.get_buffer(40)
    assert (a, b) == (0, 1) and ta.numel() == 40
    assert tb.data_ptr() == ta.data_ptr() + 40
    assert rb.get_buffer(30) == (None, None)     # 80+30 > 100, start < 30
    assert rb.free_start_idx == 80 and not rb.wrapped_around
    rb.release_buffer(a)                          # [0, 40) free
    c, tc = rb.get_buffer(30)                     # wraps: filler [80, 100)
    assert tc.data_ptr() == ta.data_ptr() and rb.wrapped_around
    assert rb.freed_list == {80: 100}
    assert rb.get_buffer(20) == (None, None)      # 30+20 > allocated_start 40
    d, td = rb.get_buffer(10)                     # [30, 40) fits exactly
    assert td.data_ptr() == ta.data_ptr() + 30
    rb.release_buffer(b)                          # flush through the filler
    assert rb.allocated_start_idx == 0 and not rb.wrapped_around
    rb.release_buffer(c)
    rb.release_buffer(d)
    assert rb.allocated == 0 and rb.free_start_idx == 0 and \
        rb.allocated_start_idx == 0               # reset when empty
    e, te = rb.get_buffer(100)                    # the whole ring
    assert te.data_ptr() == ta.data_ptr()
    rb.release_buffer(e)
    rb.release_buffer(12345)                      # unknown: ignored


def test_ring_buffer_releases_out_of_order():
    rb = E.RingBuffer(64)
    ids = [rb.get_buffer(16)[0] for _ in range(4)]
    assert rb.get_buffer(1) == (None, None)
    rb.release_buffer(ids[2])                     # not at allocated_start
    assert rb.allocated_start_idx == 0 and rb.freed_list == {32: 48}
    rb.release_buffer(ids[0])
    assert rb.allocated_start_idx == 16
    rb.release_buffer(ids[1])                     # flushes 16..48
    assert rb.allocated_start_idx == 48
    got, _ = rb.get_buffer(16)                    # wraps to 0
    assert rb.allocated_buffer_id_to_range[got] == (0, 16)


# ---- requests, dtypes, modes -----------------------------------------------

def test_requests_and_dtypes():
    assert E.torch_dtype_to_string(torch.bfloat16) == "bfloat16"
    assert E.torch_dtype_from_string("torch.float16") is torch.float16
    for bad in ("floaty", "Tensor", "nn"):
        with pytest.raises(ValueError, match="Unsupported torch dtype"):
            E.torch_dtype_from_string(bad)
    r = E.TransferRequest(embeddings_shape=[2, 3], embedding_dtype_str="int8",
                          serialized_request={"a": 1})
    assert E.TransferRequest.model_validate_json(r.model_dump_json()) == r
    with pytest.raises(ValueError, match="Extra inputs"):
        E.TransferRequest.model_validate(dict(r.model_dump(), x=1))
    n = E.NixlTransferRequest(sender_agent_id="s", agent_metadata=None,
                              tensor_id=3, tensor_size=10)
    assert json.loads(n.model_dump_json()) == {
        "sender_agent_id": "s", "agent_metadata": None, "tensor_id": 3,
        "tensor_size": 10, "expires_at_unix": None}
    with pytest.raises(ValueError):
        E.NixlTransferRequest.model_validate_json('{"sender_agent_id": 1}')


def test_mode_switch(monkeypatch):
    assert [m.value for m in E.EmbeddingTransferMode] == [
        "local", "nixl-write", "nixl-read"]
    monkeypatch.delenv("DYN_SGL_EMBEDDING_TRANSFER_MODE", raising=False)
    assert E.mode_from_env() == E.EmbeddingTransferMode.NIXL_WRITE
    monkeypatch.setenv("DYN_SGL_EMBEDDING_TRANSFER_MODE", "nixl-read")
    assert E.mode_from_env() == E.EmbeddingTransferMode.NIXL_READ
    assert isinstance(E.create_sender("local"), E.LocalEmbeddingSender)
    with pytest.raises(ValueError):
        E.create_receiver("carrier-pigeon")


# ---- Dynamo's correctness case, every mode ----------------------------------

def _kw(mode):
    if mode == "local":
        return {}, {}
    if mode == "nixl-read":
        return {"backends": SHM}, {"backends": SHM, "max_items": 2,
                                   "max_item_mm_token": 256,
                                   "embedding_hidden_size": 8192 * 4}
    return {"backends": SHM}, {"backends": SHM, "buffer_size": 64 << 20}


@pytest.mark.parametrize("mode", ["local", "nixl-read", "nixl-write"])
@pytest.mark.parametrize("stage", [False, True])
def test_correctness(mode, stage):
    skw, rkw = _kw(mode)

    async def go():
        s = E.create_sender(mode, **skw)
        r = E.create_receiver(mode, **rkw)
        ts = [torch.randn(256, 8192) for _ in range(3)]
        ts.append(torch.randn(64, 333).to(torch.bfloat16))
        sent = [await s.send_embeddings(t, stage_embeddings=stage)
                for t in ts]
        for t, (req, fut) in zip(ts, sent):
            wire = E.TransferRequest.model_validate_json(
                json.dumps(req.model_dump()))
            tid, got = await r.receive_embeddings(wire)
            assert got.dtype == t.dtype and torch.equal(got, t)
            r.release_tensor(tid)
            await asyncio.wait_for(fut, 10)
        await s.aclose()
        await r.aclose()
    run(go())


def test_local_files_are_removed(tmp_path):
    async def go():
        s = E.LocalEmbeddingSender(tmpdir=tmp_path)
        r = E.LocalEmbeddingReceiver()
        req, _ = await s.send_embeddings(torch.ones(4))
        name = req.serialized_request.rsplit("/", 1)[1]
        assert name.startswith(f"encoder_cache.{s.sender_id}_0.") and \
            name.endswith(".safetensors")
        tid, t = await r.receive_embeddings(req)
        r.release_tensor(tid)
        req2, _ = await s.send_embeddings(torch.ones(4))
        await r.cancel_embeddings(req2)
        await r.cancel_embeddings(req2)           # missing file: fine
        assert list(tmp_path.iterdir()) == []
    run(go())


def test_nixl_read_pool_and_dynamic_fallback():
    async def go():
        s = E.NixlReadEmbeddingSender(backends=SHM)
        r = E.NixlReadEmbeddingReceiver(embedding_hidden_size=1024,
                                        max_item_mm_token=4, max_items=1,
                                        backends=SHM)
        conn = r.connector._connection_now()
        assert conn.info()["pool"] == 1
        small = [torch.randn(2, 256) for _ in range(2)]
        big = torch.randn(8, 1024)                # > a pool buffer
        got = []
        for t in small + [big]:
            req, fut = await s.send_embeddings(t)
            tid, out = await r.receive_embeddings(req)
            assert torch.equal(out, t)
            got.append(tid)
            await fut
        assert r.inuse_descriptors[got[0]] is not None    # pooled
        assert r.inuse_descriptors[got[1]] is None        # pool empty
        assert r.inuse_descriptors[got[2]] is None        # too big
        for tid in got:
            r.release_tensor(tid)
        assert len(r.warmedup_descriptors) == 1
        info = conn.info()
        assert info["regs"] == 1 and info["pool"] == 1    # only the pool
        await s.aclose()
        await r.aclose()
    run(go())


# ---- nixl-write edges ------------------------------------------------------

def _write_pair(buffer_size=8 << 20, **skw):
    return (E.NixlWriteEmbeddingSender(backends=SHM, **skw),
            E.NixlWriteEmbeddingReceiver(buffer_size, backends=SHM))


def test_write_lease_expiry_and_validation():
    async def go():
        s, r = _write_pair()
        req, fut = await s.send_embeddings(torch.ones(16))
        inner = E.NixlTransferRequest.model_validate_json(
            req.serialized_request)
        assert inner.expires_at_unix > time.time() + 50
        assert base64.b64decode(inner.agent_metadata) == s.agent_metadata
        expired = E.TransferRequest(
            embeddings_shape=[16], embedding_dtype_str="float32",
            serialized_request=E.NixlTransferRequest(
                **dict(inner.model_dump(), expires_at_unix=time.time() - 1)
            ).model_dump_json())
        with pytest.raises(TimeoutError, match="NIXL WRITE descriptor lease "
                                               "expired"):
            await r.receive_embeddings(expired)
        for shape, dtype, size, text in [
                ([16, 0], "float32", 64, "only positive dimensions"),
                ([16], "float32", 0, "must be positive"),
                ([16], "float64", 64, "does not match shape and dtype"),
                ([16], "complex_thing", 64, "Unsupported torch dtype")]:
            bad = E.TransferRequest(
                embeddings_shape=shape, embedding_dtype_str=dtype,
                serialized_request=E.NixlTransferRequest(
                    **dict(inner.model_dump(), tensor_size=size)
                ).model_dump_json())
            with pytest.raises(ValueError, match=text):
                await r.receive_embeddings(bad)
        nometa = E.TransferRequest(
            embeddings_shape=[16], embedding_dtype_str="float32",
            serialized_request=E.NixlTransferRequest(
                **dict(inner.model_dump(), agent_metadata=None,
                       sender_agent_id="someone-else")).model_dump_json())
        with pytest.raises(ValueError, match="Missing agent metadata"):
            await r.receive_embeddings(nometa)
        assert r.ring_buffer.allocated == 0
        tid, t = await r.receive_embeddings(req)  # the real one still works
        r.release_tensor(tid)
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


def test_write_unclaimed_expiry_and_aclose_fails_unclaimed():
    async def go():
        s, r = _write_pair(transfer_timeout=0.3)
        _, fut = await s.send_embeddings(torch.ones(8), stage_embeddings=True)
        with pytest.raises(TimeoutError, match="not claimed before expiry"):
            await asyncio.wait_for(fut, 5)
        assert not s.registered_descs
        s2 = E.NixlWriteEmbeddingSender(backends=SHM)
        keep = torch.ones(32)
        _, f1 = await s2.send_embeddings(keep, stage_embeddings=True)
        _, f2 = await s2.send_embeddings(keep, stage_embeddings=True)
        assert s2.registered_descs[(keep.data_ptr(), -1)][1] == 2  # ref count
        await s2.aclose(drain_leases=False)
        for f in (f1, f2):
            with pytest.raises(RuntimeError, match="shutting down"):
                f.result()
        assert not s2.registered_descs and s2.nixl_agent.closed
        with pytest.raises(RuntimeError, match="shutting down"):
            await s2.send_embeddings(keep)
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


def test_write_retry_backoff_schedule():
    s = E.NixlWriteEmbeddingSender(backends=SHM)
    key = ("rcv", 1, 2)
    delays = []
    for _ in range(10):
        t0 = time.monotonic()
        s._defer(key, "test")
        delays.append(round(s.pending_write_retry_after[key] - t0, 2))
    assert delays == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0,
                      1.0]
    run(s.aclose())


def test_write_handshake_without_metadata_is_retried_then_served():
    """A receiver the sender does not know and that sent no metadata is
    retried with back-off; once its metadata is known the WRITE goes."""
    async def go():
        s, r = _write_pair()
        t = torch.randn(64)
        req, fut = await s.send_embeddings(t, stage_embeddings=True)
        inner = E.NixlTransferRequest.model_validate_json(
            req.serialized_request)
        await r._add_sender(inner, required=True)  # the receiver knows s
        noreq = E.TransferRequest(
            embeddings_shape=[64], embedding_dtype_str="float32",
            serialized_request=E.NixlTransferRequest(
                **dict(inner.model_dump(), agent_metadata=None)
            ).model_dump_json())                  # handshake without md
        task = asyncio.ensure_future(r.receive_embeddings(noreq))
        for _ in range(100):
            if s.pending_write_retry_attempts:
                break
            await asyncio.sleep(0.01)
        assert s.pending_write_retry_attempts     # deferred, not dropped
        s.nixl_agent.load_metadata(r.agent_metadata)
        s.remote_agents.add(r.receiver_id)
        tid, got = await asyncio.wait_for(task, 5)
        assert torch.equal(got, t)
        await fut
        r.release_tensor(tid)
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


def test_write_terminal_err_for_retired_id():
    async def go():
        s, r = _write_pair()
        req, fut = await s.send_embeddings(torch.ones(16))
        tid, _ = await r.receive_embeddings(req)
        r.release_tensor(tid)
        with pytest.raises(RuntimeError, match="NIXL WRITE failed"):
            await r.receive_embeddings(req)       # the id is retired
        assert r.ring_buffer.allocated == 0
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


def test_write_cancel_mid_transfer_quarantines_then_releases():
    async def go():
        s, r = _write_pair()
        t = torch.randn(1024)
        req, fut = await s.send_embeddings(t, stage_embeddings=True)
        # Hold the sender (its task and its fd reader) so that the
        # handshake is not served yet.
        s._task.cancel()
        try:
            await s._task
        except asyncio.CancelledError:
            pass
        s._task = None
        s._waker.disarm()
        task = asyncio.ensure_future(r.receive_embeddings(req))
        # receive_embeddings allocates its slot and sends the handshake
        # without yielding in between, so a slot seen here means the
        # handshake is out. Wait for it, up to 5 s (a fixed 50 ms was too
        # short under ASan on a loaded host).
        for _ in range(500):
            if r.ring_buffer.allocated == 1:
                break
            await asyncio.sleep(0.01)
        assert r.ring_buffer.allocated == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert r.quarantined == 1 and r.ring_buffer.allocated == 1
        s._start()                                # the sender comes back
        with pytest.raises(RuntimeError, match="cancelled by receiver"):
            await asyncio.wait_for(fut, 5)
        for _ in range(200):
            if r.quarantined == 0:
                break
            await asyncio.sleep(0.01)
        assert r.quarantined == 0 and r.ring_buffer.allocated == 0
        await s.aclose(drain_leases=False)
        assert not s.registered_descs
        await r.aclose()
    run(go())


def test_write_cancel_embeddings_before_claim():
    async def go():
        s, r = _write_pair()
        req, fut = await s.send_embeddings(torch.ones(4),
                                           stage_embeddings=True)
        await r.cancel_embeddings(req)
        with pytest.raises(RuntimeError, match="cancelled by receiver"):
            await asyncio.wait_for(fut, 5)
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


def test_write_buffer_timeout_when_ring_is_full():
    async def go():
        s, r = _write_pair(buffer_size=4096)
        req1, _ = await s.send_embeddings(torch.ones(768))    # 3072 bytes
        req2, _ = await s.send_embeddings(torch.ones(768))
        tid, _ = await r.receive_embeddings(req1)
        with pytest.raises(TimeoutError, match="waiting for available "
                                               "buffer"):
            await r.receive_embeddings(req2, receive_timeout=0.1)
        r.release_tensor(tid)
        tid, got = await r.receive_embeddings(req2)
        assert torch.equal(got, torch.ones(768))
        r.release_tensor(tid)
        await s.aclose(drain_leases=False)
        await r.aclose()
    run(go())


@pytest.mark.parametrize("mode", ["nixl-read", "nixl-write"])
def test_cuda_tensors(mode):
    """CUDA embeddings where a GPU is present (CPU tensors everywhere
    else): the sender registers device memory (nixl-read falls back to a
    host copy if it cannot), the receiver gets the same values."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    skw, rkw = _kw(mode)

    async def go():
        s = E.create_sender(mode, **skw)
        r = E.create_receiver(mode, **rkw)
        t = torch.randn(256, 8192, device="cuda")
        req, fut = await s.send_embeddings(t, stage_embeddings=True)
        tid, got = await r.receive_embeddings(req)
        assert torch.equal(got.cpu(), t.cpu())
        r.release_tensor(tid)
        await asyncio.wait_for(fut, 10)
        await s.aclose()
        await r.aclose()
    run(go())
