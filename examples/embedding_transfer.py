#!/usr/bin/env python3
"""embedding_transfer.py: an encoder process sends multimodal embeddings to
an LLM-worker process with nxl.embedding, in each of Dynamo's modes
(local, nixl-read, nixl-write), and the worker prints one row per mode:

    PYTHONPATH=build/python python3 examples/embedding_transfer.py
    PYTHONPATH=build/python python3 examples/embedding_transfer.py \\
        --backend TCP --shape 4096x4096 --dtype bfloat16 --iters 20

The encoder (a process started with multiprocessing's "spawn") makes
--iters tensors, sends each with ``send_embeddings(t,
stage_embeddings=True)`` and hands the TransferRequest to the worker as a
plain dict over a pipe (a request plane in a real deployment). The worker
times ``receive_embeddings`` (median), checks every byte against the
encoder's tensor (same seed) and releases it. GB/s is the tensor's bytes
over the median receive time.
"""

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time

MODES = ("local", "nixl-read", "nixl-write")


def backends_of(name):
    """An nxl.Agent backends argument (TCP on 127.0.0.1 here)."""
    if name == "TCP":
        return {"TCP": {"bind_addr": "127.0.0.1"}}
    return (name,)


def make_tensor(shape, dtype, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(getattr(torch, dtype))


# ---- the encoder process ---------------------------------------------------

def encoder(conn, backend):
    """Serves ("send", mode, shape, dtype, n) and ("close", mode) while its
    asyncio loop runs (a nixl-write sender answers handshakes in it)."""
    from nxl import embedding

    async def main():
        loop = asyncio.get_running_loop()
        senders, futs, keep = {}, [], []
        done = loop.create_future()

        async def handle(cmd, *args):
            if cmd == "send":
                mode, shape, dtype, n = args
                kw = {} if mode == "local" else {
                    "backends": backends_of(backend)}
                s = senders.setdefault(mode, embedding.create_sender(mode,
                                                                     **kw))
                reqs = []
                for i in range(n):
                    t = make_tensor(shape, dtype, i)
                    keep.append(t)                    # staged: keep alive
                    req, fut = await s.send_embeddings(
                        t, stage_embeddings=True)
                    futs.append(fut)
                    reqs.append(req.model_dump())
                return reqs
            if cmd == "close":
                (mode,) = args
                await asyncio.gather(*futs)           # every send settled
                futs.clear()
                keep.clear()
                s = senders.pop(mode)
                if mode == "nixl-write":
                    await s.aclose(drain_leases=False)
                else:
                    await s.aclose()
                return "closed"
            raise ValueError(cmd)

        async def run(cmd, args):
            try:
                conn.send(("ok", await handle(cmd, *args)))
            except Exception as e:  # noqa: BLE001 (reported)
                conn.send(("err", f"{type(e).__name__}: {e}"))

        def on_cmd():
            while conn.poll():
                try:
                    cmd, *args = conn.recv()
                except EOFError:
                    cmd = "exit"
                if cmd == "exit":
                    if not done.done():
                        done.set_result(None)
                    return
                loop.create_task(run(cmd, args))

        loop.add_reader(conn.fileno(), on_cmd)
        conn.send(("ok", "ready"))
        await done

    asyncio.run(main())


class Encoder:
    def __init__(self, backend):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=encoder, args=(child, backend),
                                daemon=True)
        self.proc.start()
        child.close()
        self.call_wait()

    def call_wait(self, timeout=120):
        if not self.conn.poll(timeout):
            raise TimeoutError("the encoder does not answer")
        status, res = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"encoder: {res}")
        return res

    def call(self, *cmd, timeout=120):
        self.conn.send(cmd)
        return self.call_wait(timeout)

    def close(self):
        try:
            self.conn.send(("exit",))
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# ---- the worker ------------------------------------------------------------

def receiver_kwargs(mode, backend, nbytes):
    if mode == "local":
        return {}
    kw = {"backends": backends_of(backend)}
    if mode == "nixl-read":
        # A small pool of buffers that fit the embeddings (Dynamo's
        # default is 1024 x 8 MiB).
        kw.update(max_items=4, embedding_hidden_size=1024,
                  max_item_mm_token=-(-nbytes // 1024))
    else:
        kw.update(buffer_size=4 * nbytes)
    return kw


async def receive_all(mode, backend, reqs, shape, dtype, check=True):
    """Receive every request; returns the receive times (seconds)."""
    import torch
    from nxl import embedding
    nbytes = make_tensor((1,), dtype, 0).element_size()
    for d in shape:
        nbytes *= d
    r = embedding.create_receiver(mode, **receiver_kwargs(mode, backend,
                                                          nbytes))
    times = []
    try:
        for i, d in enumerate(reqs):
            req = embedding.TransferRequest.model_validate(d)
            t0 = time.perf_counter()
            tid, t = await r.receive_embeddings(req)
            times.append(time.perf_counter() - t0)
            if check and not torch.equal(t, make_tensor(shape, dtype, i)):
                raise AssertionError(f"{mode}: embedding {i} differs")
            r.release_tensor(tid)
    finally:
        await r.aclose()
    return times


def run_mode(enc, mode, backend, shape, dtype, iters, check=True):
    """One row: (mode, backend, bytes, median s, GB/s)."""
    reqs = enc.call("send", mode, shape, dtype, iters)
    times = asyncio.run(receive_all(mode, backend, reqs, shape, dtype,
                                    check))
    enc.call("close", mode)
    nbytes = make_tensor((1,), dtype, 0).element_size()
    for d in shape:
        nbytes *= d
    med = statistics.median(times)
    return mode, backend, nbytes, med, nbytes / med / 1e9


def print_table(rows, shape, dtype):
    print(f"embedding {'x'.join(map(str, shape))} {dtype}")
    print(f"{'mode':<11} {'backend':<8} {'size':>10} {'GB/s':>7} "
          f"{'latency (ms)':>13}")
    for mode, be, nbytes, med, gbs in rows:
        size = f"{nbytes / (1 << 20):.1f} MiB"
        be = "file" if mode == "local" else be
        print(f"{mode:<11} {be:<8} {size:>10} {gbs:>7.2f} {med * 1e3:>13.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="SHM", help="SHM, TCP or UCX")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--shape", default="256x8192",
                    help="embedding shape (256x8192 = 8 MiB of float32)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split("x"))
    enc = Encoder(args.backend)
    try:
        rows = [run_mode(enc, m, args.backend, shape, args.dtype, args.iters)
                for m in args.modes.split(",")]
    finally:
        enc.close()
    print_table(rows, shape, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
