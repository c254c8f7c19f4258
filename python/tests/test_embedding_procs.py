"""nxl.embedding across processes: an encoder process (spawned) sends,
this process receives, in every mode over SHM, TCP and UCX, with byte
checks and no registration left on either side after aclose; a sender
killed mid-transfer makes the receiver fail within 2 s without losing its
buffer; a C readable's RdmaMetadata received as a nixl-read embedding."""

import asyncio
import json
import time

import pytest
import torch

import nxl
from nxl import connect as nc
from nxl import embedding as E

from connect_peers import (AsyncPeer, CPeer, backend_arg, pattern,
                           shared_peer, stop_process)

BACKENDS = ["SHM", "TCP", "UCX"]


def need(backend):
    if backend not in nxl.plugin_names():
        pytest.skip(f"backend {backend} is not built here "
                    f"(nxl.plugin_names() = {nxl.plugin_names()})")


def expected(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(getattr(torch, dtype))


def receiver_for(mode, be):
    kw = {} if mode == "local" else {"backends": backend_arg(be)}
    if mode == "nixl-read":
        kw.update(max_items=2, max_item_mm_token=256,
                  embedding_hidden_size=8192 * 4)
    elif mode == "nixl-write":
        kw.update(buffer_size=48 << 20)
    return E.create_receiver(mode, **kw)


@pytest.fixture(scope="module", autouse=True)
def victim():
    """The encoder the kill test kills, started with the module so that
    its start-up (importing torch) overlaps the other tests."""
    p = AsyncPeer()
    yield p
    p.kill()


CASES = [("local", "SHM")] + [(m, b) for m in ("nixl-read", "nixl-write")
                              for b in BACKENDS]


@pytest.mark.parametrize("mode,be", CASES)
def test_two_processes(mode, be):
    need(be)
    peer = shared_peer(be)
    peer.call("emb_sender", mode, {})
    items = [((256, 8192), "float32", 1, False),     # 8 MiB, Dynamo's case
             ((256, 8192), "float32", 2, True),      # staged
             ((1024, 1024), "bfloat16", 3, False),   # bf16
             ((3, 7, 5), "float16", 4, True)]

    async def go():
        r = receiver_for(mode, be)
        for i, (shape, dtype, seed, stage) in enumerate(items):
            req = E.TransferRequest.model_validate(json.loads(json.dumps(
                peer.call("emb_send", mode, shape, dtype, seed, stage,
                          f"{mode}-{i}"))))
            tid, got = await asyncio.wait_for(r.receive_embeddings(req), 20)
            want = expected(shape, dtype, seed)
            assert got.dtype == want.dtype and torch.equal(got, want)
            r.release_tensor(tid)
            assert peer.call("emb_wait", f"{mode}-{i}") == "ok"
        if mode == "nixl-read":
            info = r.connector._connection_now().info()
            assert info["regs"] == info["pool"] == 2, info  # the pool only
            assert info["ops"] == 0, info
            assert info["remotes"] == 1, info     # kept loaded (LRU)
        if mode == "nixl-write":
            assert r.ring_buffer.allocated == 0
        await r.aclose()
    asyncio.run(go())
    left = peer.call("emb_close", mode,
                     {"drain_leases": False} if mode == "nixl-write" else {})
    assert left == 0                           # no sender registration


@pytest.mark.parametrize("be", ["SHM", "TCP"])
def test_nixl_read_sender_killed(be):
    """nixl-read: the sender (a C readable) is stopped while the worker's
    read is in flight (TCP) or killed between begin_read and the post
    (SHM, whose copy completes inside the post), then killed: the
    receive fails within 2 s and the pool buffer goes back to the pool."""
    need(be)
    size = (128 << 20) if be == "TCP" else (8 << 20)
    c = CPeer(be, "readable", size, 9)
    md = json.loads(c.line(timeout=60))
    req = E.TransferRequest(embeddings_shape=[size // 4],
                            embedding_dtype_str="float32",
                            serialized_request=md)

    async def go():
        r = E.create_receiver("nixl-read", backends=backend_arg(be),
                              max_items=1, max_item_mm_token=size // 1024,
                              embedding_hidden_size=1024)
        real_begin = r.connector.begin_read
        t0 = []

        async def begin_then_kill(md, local):
            op = await real_begin(md, local)
            if be == "TCP":
                stop_process(c.proc.pid)
                assert op.status == nc.OperationStatus.INITIALIZED
                for _ in range(500):                # posted, in flight
                    if op.status == nc.OperationStatus.IN_PROGRESS:
                        break
                    await asyncio.sleep(0.01)
                assert op.status == nc.OperationStatus.IN_PROGRESS
            t0.append(time.monotonic())
            c.proc.kill()
            c.proc.wait(10)                         # gone, not dying
            return op
        r.connector.begin_read = begin_then_kill
        with pytest.raises(RuntimeError, match="failed"):
            await asyncio.wait_for(r.receive_embeddings(req), 10)
        took = time.monotonic() - t0[0]
        assert len(r.warmedup_descriptors) == 1    # not lost
        info = r.connector._connection_now().info()
        assert info["ops"] == 0 and info["regs"] == info["pool"] == 1
        await r.aclose()
        return took
    try:
        assert asyncio.run(go()) < 2.0
    finally:
        c.kill()


def test_nixl_write_sender_killed(victim):
    """nixl-write over SHM and TCP at once: the encoder is stopped after its
    requests, the worker's handshakes are out, then the encoder is killed:
    both receives fail within 2 s and their ring-buffer pieces are free
    again."""
    bes = [be for be in ("SHM", "TCP") if be in nxl.plugin_names()]
    reqs = {}
    for be in bes:
        victim.call("emb_sender", "nixl-write", {}, backend=be)
        reqs[be] = E.TransferRequest.model_validate(victim.call(
            "emb_send", "nixl-write", (256, 8192), "float32", 5, True,
            f"k-{be}", backend=be))

    async def one(be, r, killed):
        task = asyncio.ensure_future(r.receive_embeddings(reqs[be]))
        for _ in range(500):                        # up to 5 s
            if r.ring_buffer.allocated == 1:
                break
            await asyncio.sleep(0.01)
        assert r.ring_buffer.allocated == 1         # handshake out
        await killed.wait()
        t0 = time.monotonic()
        with pytest.raises(ConnectionError, match="disconnected"):
            await asyncio.wait_for(task, 10)
        took = time.monotonic() - t0
        assert r.ring_buffer.allocated == 0 and r.quarantined == 0
        await r.aclose()
        return took

    async def go():
        killed = asyncio.Event()
        rs = {}
        for be in bes:                              # first contact
            rs[be] = receiver_for("nixl-write", be)
            await rs[be]._add_sender(E.NixlTransferRequest.
                                     model_validate_json(
                                         reqs[be].serialized_request),
                                     required=True)
        stop_process(victim.pid)
        tasks = [asyncio.ensure_future(one(be, rs[be], killed))
                 for be in bes]
        await asyncio.sleep(0.3)
        victim.kill()
        killed.set()
        return await asyncio.gather(*tasks)
    took = asyncio.run(go())
    assert max(took) < 2.0, dict(zip(bes, took))


@pytest.mark.parametrize("be", ["SHM", "TCP"])
def test_c_readable_as_an_embedding(be):
    """A C producer (nxl_connect_peer readable) publishes an 8 MiB float32
    embedding; its RdmaMetadata JSON, wrapped in a TransferRequest, is
    received by the Python nixl-read receiver into its pool."""
    need(be)
    shape = (256, 8192)
    size = 256 * 8192 * 4
    c = CPeer(be, "readable", size, 21)
    md = json.loads(c.line())

    async def go():
        r = receiver_for("nixl-read", be)
        req = E.TransferRequest(embeddings_shape=list(shape),
                                embedding_dtype_str="float32",
                                serialized_request=md)
        tid, got = await r.receive_embeddings(req)
        want = torch.from_numpy(pattern(size, 21)).view(torch.float32)
        assert torch.equal(got.reshape(-1).view(torch.uint8),
                           want.view(torch.uint8))
        assert r.inuse_descriptors[tid] is not None     # a pool buffer
        r.release_tensor(tid)
        await r.aclose()
    asyncio.run(go())
    assert c.finish() == []
