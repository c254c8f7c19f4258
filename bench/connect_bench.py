#!/usr/bin/env python3
"""connect_bench.py: the figures of docs/performance.md, "Tensor connector
(Python)", in one run:

    PYTHONPATH=build/python python3 bench/connect_bench.py [--build build]

1. nxl-bench READ and WRITE over SHM at 8 MiB and 32 MiB, run right
   before the embedding mode it is compared with (the baseline: one C
   transfer of the same size, cold data, median);
2. embeddings 256x8192 float32 (8 MiB) and 4096x4096 bfloat16 (32 MiB) from
   an encoder process to a worker process in each mode (local, nixl-read,
   nixl-write) over SHM: median receive_embeddings time
   (examples/embedding_transfer.py), and its ratio to nxl-bench;
3. passive completion latency: a ReadableOperation in one process, a
   ReadOperation in another; median time from the reader's completion to
   the readable's wait_for_completion returning;
4. media: a 3840x2160 RGBA image read with read_decoded_media_via_nixl and
   returned as an RGB view, against one memcpy of its bytes into a fresh
   buffer (examples/media_read.py).
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pathlib
import statistics
import subprocess
import sys
import time

TOP = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "examples"))


def nxl_bench(build, op, size, iters):
    exe = pathlib.Path(build) / "tools" / "nxl-bench" / "nxl-bench"
    out = subprocess.run(
        [str(exe), "--backend", "SHM", "--op_type", op, "--start_block_size",
         str(size), "--max_block_size", str(size), "--num_iter", str(iters),
         "--warmup_iter", "4", "--large_blk_iter_ftr", "1", "--json"],
        check=True, capture_output=True, text=True, timeout=600).stdout
    row = json.loads([line for line in out.splitlines()
                      if line.startswith("{")][-1])
    return row["med_tx_us"] * 1e-6, row["bw_gbs"]


# ---- passive completion latency -------------------------------------------

def passive_side(conn, n):
    import torch
    from nxl import connect

    async def main():
        c = connect.Connector("bench-passive", backends=("SHM",))
        buf = torch.zeros(4096, dtype=torch.uint8)
        for _ in range(n):
            r = await c.create_readable(connect.Descriptor(buf))
            conn.send(r.metadata().model_dump())
            await r.wait_for_completion()
            conn.send(time.perf_counter())     # CLOCK_MONOTONIC: shared
            r.release()
        c.close()
    asyncio.run(main())


def passive_latency(n):
    import torch
    from nxl import connect
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=passive_side, args=(there, n), daemon=True)
    p.start()
    there.close()

    async def main():
        c = connect.Connector("bench-active", backends=("SHM",))
        dst = torch.zeros(4096, dtype=torch.uint8)
        lat = []
        for _ in range(n):
            md = connect.RdmaMetadata.model_validate(
                await asyncio.to_thread(here.recv))
            op = await c.begin_read(md, connect.Descriptor(dst))
            await op.wait_for_completion()
            done = time.perf_counter()
            op.release()
            woke = await asyncio.to_thread(here.recv)
            lat.append(woke - done)
        c.close()
        return lat
    lat = asyncio.run(main())
    p.join(30)
    return statistics.median(lat), max(lat)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("NXL_BUILD", "build"))
    ap.add_argument("--iters", type=int, default=30)
    a = ap.parse_args(argv)

    import embedding_transfer as et
    import media_read

    print(f"# {os.uname().nodename}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    print("\n## Embeddings over SHM (median receive_embeddings)\n")
    print("| embedding | mode | GB/s | latency (ms) | nxl-bench same size "
          "(GB/s) | ratio |")
    print("|---|---|---|---|---|---|")
    enc = et.Encoder("SHM")
    try:
        for shape, dtype in (((256, 8192), "float32"),
                             ((4096, 4096), "bfloat16")):
            for mode in ("local", "nixl-read", "nixl-write"):
                op = {"nixl-read": "READ", "nixl-write": "WRITE"}.get(mode)
                nbytes = 2 if dtype == "bfloat16" else 4
                for d in shape:
                    nbytes *= d
                if op:
                    # The baseline right before, so that both see the
                    # same machine (its load moves).
                    bmed, _ = nxl_bench(a.build, op, nbytes, a.iters)
                _, _, nbytes, med, gbs = et.run_mode(enc, mode, "SHM", shape,
                                                     dtype, a.iters)
                if op:
                    bgbs = nbytes / bmed / 1e9
                    cmp_ = f"{op} {bgbs:.2f} | {gbs / bgbs:.2f}x"
                else:
                    cmp_ = "- | -"
                print(f"| {'x'.join(map(str, shape))} {dtype} | {mode} | "
                      f"{gbs:.2f} | {med * 1e3:.2f} | {cmp_} |")
    finally:
        enc.close()

    med, worst = passive_latency(max(50, a.iters * 4))
    print(f"\n## Passive completion latency (SHM)\n\nmedian "
          f"{med * 1e6:.0f} us, max {worst * 1e6:.0f} us (Dynamo's loop "
          f"polls every 100 ms: ~50 ms median)")

    d, decode_s, read_s, copy_s, shape, rgb = media_read.run(
        "SHM", iters=a.iters)
    nbytes = d["nixl_descriptor"]["size"]
    print(f"\n## Media 3840x2160 RGBA -> RGB view (SHM)\n\nread "
          f"{read_s * 1e3:.2f} ms ({nbytes / read_s / 1e9:.2f} GB/s), one "
          f"memcpy {copy_s * 1e3:.2f} ms: {read_s / copy_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
