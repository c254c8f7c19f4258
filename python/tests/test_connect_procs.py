"""nxl.connect across processes: a spawned Python peer and the C peer
(tests/nxl_connect_peer, the C library's public API) on the other side of
READ and WRITE over SHM, TCP and UCX, with byte checks; JSON forms both
ways (Python readable -> C reader, C readable -> Python reader, and the
same for writables); a reader whose peer is killed mid-read fails within
2 s."""

import asyncio
import os
import signal
import time

import pytest
import torch

import nxl
from nxl import connect as nc

from connect_peers import (CPeer, backend_arg, bytes_hash, pattern,
                           shared_peer, stop_process)

BACKENDS = ["SHM", "TCP", "UCX"]
SIZE = 3 << 20


def need(backend):
    if backend not in nxl.plugin_names():
        pytest.skip(f"backend {backend} is not built here "
                    f"(nxl.plugin_names() = {nxl.plugin_names()})")


@pytest.fixture(scope="module", params=BACKENDS)
def peer(request):
    need(request.param)
    return shared_peer(request.param)


def test_python_peers_read_and_write(peer):
    be = peer.backend
    conn = nc.Connector(f"procs-{be}", backends=backend_arg(be))

    async def go():
        # The peer's readable, read here.
        h = peer.submit("readable", SIZE, 7, "r1")
        md = nc.RdmaMetadata.model_validate(peer.result(h))
        dst = torch.zeros(SIZE, dtype=torch.uint8)
        op = await conn.begin_read(md, nc.Descriptor(dst))
        wait = peer.submit("wait_op", "r1")
        await op.wait_for_completion()
        op.release()
        assert bytes_hash(dst.numpy()) == bytes_hash(pattern(SIZE, 7))
        assert peer.result(wait)[0] == "DONE"
        # A readable here, read by the peer.
        src = torch.from_numpy(pattern(SIZE, 9))
        r = await conn.create_readable(nc.Descriptor(src))
        h = peer.submit("read", r.metadata().model_dump(), SIZE)
        await asyncio.wait_for(r.wait_for_completion(), 20)
        assert peer.result(h) == bytes_hash(src.numpy())
        r.release()
        # The peer's writable, written here.
        h = peer.submit("writable", SIZE, "w1")
        md = nc.RdmaMetadata.model_validate(peer.result(h))
        src = torch.from_numpy(pattern(SIZE, 11))
        op = await conn.begin_write(nc.Descriptor(src), md)
        wait = peer.submit("wait_op", "w1")
        await op.wait_for_completion()
        op.release()
        assert peer.result(wait) == ("DONE", bytes_hash(src.numpy()))
        # A writable here, written by the peer.
        dst = torch.zeros(SIZE, dtype=torch.uint8)
        w = await conn.create_writable(nc.Descriptor(dst))
        h = peer.submit("write", w.metadata().model_dump(), SIZE, 13)
        await asyncio.wait_for(w.wait_for_completion(), 20)
        assert peer.result(h) == "DONE"
        assert bytes_hash(dst.numpy()) == bytes_hash(pattern(SIZE, 13))
        w.release()
        info = conn._connection_now().info()
        assert info["regs"] == 0 and info["remotes"] == 0, info
    asyncio.run(go())
    conn.close()


@pytest.mark.parametrize("be", BACKENDS)
def test_c_peer_both_ways(be):
    need(be)
    conn = nc.Connector(f"cpeer-{be}", backends=backend_arg(be))
    size = 1 << 20

    async def go():
        # C readable -> Python ReadOperation.
        c = CPeer(be, "readable", size, 3)
        md = nc.RdmaMetadata.model_validate_json(c.line())
        dst = torch.zeros(size, dtype=torch.uint8)
        op = await conn.begin_read(md, nc.Descriptor(dst))
        await op.wait_for_completion()
        op.release()
        assert c.finish() == []
        assert bytes_hash(dst.numpy()) == bytes_hash(pattern(size, 3))
        # Python readable -> C reader.
        src = torch.from_numpy(pattern(size, 4))
        r = await conn.create_readable(nc.Descriptor(src))
        c = CPeer(be, "read", size)
        c.send(r.metadata().model_dump_json())
        await asyncio.wait_for(r.wait_for_completion(), 20)
        assert c.finish() == [f"HASH {bytes_hash(src.numpy())}"]
        r.release()
        # C writable <- Python WriteOperation (the legacy hex form too).
        c = CPeer(be, "writable", size)
        md = nc.RdmaMetadata.model_validate_json(c.line())
        src = torch.from_numpy(pattern(size, 5))
        op = await conn.begin_write(nc.Descriptor(src), md)
        await op.wait_for_completion()
        op.release()
        assert c.finish() == [f"HASH {bytes_hash(src.numpy())}"]
        # Python writable (hex metadata) <- C writer.
        dst = torch.zeros(size, dtype=torch.uint8)
        w = await conn.create_writable(nc.Descriptor(dst))
        c = CPeer(be, "write", size, 6)
        c.send(w.metadata(hex_encode=True).model_dump_json())
        await asyncio.wait_for(w.wait_for_completion(), 20)
        assert c.finish() == []
        assert bytes_hash(dst.numpy()) == bytes_hash(pattern(size, 6))
        w.release()
    asyncio.run(go())
    conn.close()


@pytest.mark.parametrize("be", ["SHM", "TCP", "UCX"])
def test_reader_fails_within_2s_when_the_peer_dies(be):
    """TCP: the peer is stopped so that the posted read stays in flight,
    then killed. SHM and UCX (whose same-host copies finish within the
    post): the peer is killed between begin_read and the post. Either way
    the reader's wait raises within 2 s and nothing stays registered."""
    need(be)
    size = (256 << 20) if be == "TCP" else (16 << 20)
    c = CPeer(be, "readable", size, 1)
    md = nc.RdmaMetadata.model_validate_json(c.line(timeout=60))
    conn = nc.Connector(f"killed-{be}", backends=backend_arg(be))
    dst = torch.empty(size, dtype=torch.uint8)

    async def go():
        op = await conn.begin_read(md, nc.Descriptor(dst))
        if be == "TCP":
            stop_process(c.proc.pid)
            assert op.status == nc.OperationStatus.INITIALIZED   # posted
            for _ in range(500):                    # up to 5 s
                if op.status == nc.OperationStatus.IN_PROGRESS:
                    break
                await asyncio.sleep(0.01)
            assert op.status == nc.OperationStatus.IN_PROGRESS
        t0 = time.monotonic()
        os.kill(c.proc.pid, signal.SIGKILL)
        c.proc.wait(10)
        with pytest.raises(RuntimeError, match="failed"):
            await asyncio.wait_for(op.wait_for_completion(), 10)
        took = time.monotonic() - t0
        assert op.status == nc.OperationStatus.ERRORED
        op.release()
        return took
    took = asyncio.run(go())
    assert took < 2.0, took
    info = conn._connection_now().info()
    assert info["regs"] == 0 and info["remotes"] == 0
    conn.close()
