#!/usr/bin/env python3
"""media_read.py: a frontend process decodes an image and registers its
pixels (nxl.media.MediaProducer, over the C producer); a worker process
reads it with ``read_decoded_media_via_nixl`` (Dynamo's consumer) and gets
an RGB view of the RGBA pixels, zero-copy:

    PYTHONPATH=build/python python3 examples/media_read.py
    PYTHONPATH=build/python python3 examples/media_read.py --image cat.png \\
        --backend TCP --iters 20

Without --image the frontend encodes a 3840x2160 RGBA test pattern as PNG
first. The worker checks the content hash of what it read against the
descriptor's, then times --iters reads (median) and one memcpy of the same
bytes into a fresh buffer, and prints one row.
"""

import argparse
import asyncio
import io
import multiprocessing as mp
import statistics
import sys
import time


def backends_of(name):
    if name == "TCP":
        return {"TCP": {"bind_addr": "127.0.0.1"}}
    return (name,)


def test_png(width, height):
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width]
    px = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 //
                   max(height - 1, 1)), (x ^ y) & 255,
                   np.full_like(x, 200)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "RGBA").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def frontend(conn, backend, image_path, width, height):
    """Decode, register, hand the descriptor over, serve until told."""
    from nxl import media
    data = (open(image_path, "rb").read() if image_path
            else test_png(width, height))
    with media.MediaProducer(backends=backends_of(backend)) as producer:
        t0 = time.perf_counter()
        published = producer.publish(data)
        decode_s = time.perf_counter() - t0
        conn.send((published.descriptor, decode_s))
        conn.recv()                        # the worker is done
        producer.discard_notifications()
        published.close()


async def worker(descriptor, backend, iters):
    import numpy as np
    from nxl import connect, media
    # keep_remotes: the frontend stays loaded (and mapped) between reads.
    conn = connect.Connector(backends=backends_of(backend), keep_remotes=4)
    try:
        full = await media.read_decoded_media_via_nixl(
            conn, descriptor, trim_alpha=False)
        if media.content_hash(full) != descriptor.get("content_hash"):
            raise AssertionError("the pixels read differ from the frontend's")
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            rgb = await media.read_decoded_media_via_nixl(conn, descriptor)
            times.append(time.perf_counter() - t0)
        assert rgb.shape[:2] == full.shape[:2]
        # One memcpy of the same bytes into a fresh buffer of the same
        # kind (numpy's, as the read's destination).
        src = np.ascontiguousarray(full)
        copies = []
        for _ in range(max(3, iters // 2)):
            dst = np.empty_like(src)
            t0 = time.perf_counter()
            np.copyto(dst, src)
            copies.append(time.perf_counter() - t0)
        return statistics.median(times), statistics.median(copies), \
            full.shape, rgb.shape
    finally:
        conn.close()


def run(backend="SHM", image=None, width=3840, height=2160, iters=10):
    """(descriptor metadata, decode s, read s, memcpy s, shapes)."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=frontend, daemon=True,
                       args=(there, backend, image, width, height))
    proc.start()
    there.close()
    try:
        if not here.poll(300):
            raise TimeoutError("the frontend did not publish")
        descriptor, decode_s = here.recv()
        read_s, copy_s, shape, rgb_shape = asyncio.run(
            worker(descriptor, backend, iters))
        here.send("done")
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return descriptor, decode_s, read_s, copy_s, shape, rgb_shape


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="SHM")
    ap.add_argument("--image", help="an image file (default: a test PNG)")
    ap.add_argument("--width", type=int, default=3840)
    ap.add_argument("--height", type=int, default=2160)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args(argv)
    d, decode_s, read_s, copy_s, shape, rgb = run(a.backend, a.image,
                                                  a.width, a.height, a.iters)
    nbytes = d["nixl_descriptor"]["size"]
    meta = d.get("metadata") or {}
    kind = next(iter(meta.values()), {}) if meta else {}
    print(f"media {'x'.join(map(str, shape))} "
          f"{kind.get('format')} {kind.get('color_type')} -> view "
          f"{'x'.join(map(str, rgb))} (frontend decode "
          f"{decode_s * 1e3:.0f} ms)")
    print(f"{'backend':<8} {'size':>10} {'GB/s':>7} {'latency (ms)':>13} "
          f"{'memcpy (ms)':>12} {'vs memcpy':>10}")
    print(f"{a.backend:<8} {nbytes / (1 << 20):>6.1f} MiB "
          f"{nbytes / read_s / 1e9:>7.2f} {read_s * 1e3:>13.2f} "
          f"{copy_s * 1e3:>12.2f} {read_s / copy_s:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
