"""python3 -m nxl.bench: the Python binding against the same C calls, in one
run, on the same handles.

Rows (medians of samples, Python and C samples alternating; --repeats R
gives 3R-12R samples a row, R for the million-row lists):
  Transfer.status on a finished handle        vs nxl_xfer_status in a C loop
  post -> done, prepared 4 KiB SHM READ       vs nxl_xfer_post/_wait in C
  make_xfer, 32,768 indices (numpy / list)    vs nxl_xfer_make
  DescList of 1,000,000 rows (Nx3 numpy / list of tuples)
  register + deregister 1,000 numpy arrays (and torch tensors)
                                              vs nxl_mem_register/_deregister
  64 MiB SHM READ bandwidth                   vs the C post/wait loop
                                              (per-transfer medians)

The C loops are hidden functions of the native module (nxl._nxl._bench_c_*)
that run the library calls the Python API makes, without the binding.
The READs go to a peer process (multiprocessing, "spawn") on this host.
"""

import argparse
import gc
import json
import multiprocessing as mp
import statistics
import sys
import time

import numpy as np

import nxl
from nxl import _nxl

BIG = 64 << 20
SMALL = 4096
NIDX = 32768
NROWS = 1_000_000
NREG = 1000


def _peer_main(conn):
    """The peer: an SHM agent with a 64 MiB and a 4 KiB region."""
    a = nxl.Agent("bench-peer", backends=("SHM",))
    big = np.full(BIG, 7, np.uint8)
    small = np.full(SMALL, 9, np.uint8)
    regs = [a.register(big), a.register(small)]
    conn.send((a.metadata(), big.ctypes.data, small.ctypes.data))
    conn.recv()
    for r in regs:
        r.close()
    a.close()


def _median(fn, repeats):
    return statistics.median(fn() for _ in range(repeats))


def _pair(py, c, repeats):
    """Medians of py() and c(), repeats times each, alternating which goes
    first."""
    ps, cs = [], []
    for i in range(repeats):
        if i % 2:
            cs.append(c())
            ps.append(py())
        else:
            ps.append(py())
            cs.append(c())
    return statistics.median(ps), statistics.median(cs)


def run(quick=False, repeats=5):
    """Runs every measurement; returns a list of row dicts."""
    scale = 10 if quick else 1
    rows = []
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_peer_main, args=(child,), daemon=True)
    proc.start()
    md, rbig, rsmall = conn.recv()
    a = nxl.Agent("bench", backends=("SHM",))
    try:
        peer = a.load_metadata(md)
        small = np.zeros(SMALL, np.uint8)
        big = np.zeros(BIG, np.uint8)
        regs = [a.register(small), a.register(big)]

        # --- Transfer.status on a finished handle ---------------------------
        lp = a.prep(small)
        rp = a.prep([(rsmall, SMALL, 0)], remote=peer)
        t = a.make_xfer(nxl.READ, lp, None, rp, None)
        t.post()
        t.wait(5)
        n = 200_000 // scale

        def py_status():
            t0 = time.perf_counter()
            for _ in range(n):
                t.status
            return (time.perf_counter() - t0) / n

        def py_loop():  # the bare Python loop, for reference
            t0 = time.perf_counter()
            for _ in range(n):
                pass
            return (time.perf_counter() - t0) / n

        py, c = _pair(py_status, lambda: _nxl._bench_c_status(t, n) / n,
                      3 * repeats)
        loop = _median(py_loop, 3 * repeats)
        rows.append(dict(name="Transfer.status, finished handle",
                         py_us=py * 1e6, c_us=c * 1e6, goal="<= 0.3 us",
                         met=py * 1e6 <= 0.3,
                         note=f"incl. {loop * 1e6:.3f} us of Python loop"))

        # --- post -> done of a prepared 4 KiB SHM READ ----------------------
        n = 2500 // scale

        def py_post():
            post, wait = t.post, t.wait
            t0 = time.perf_counter()
            for _ in range(n):
                if post():
                    wait()
            return (time.perf_counter() - t0) / n

        py, c = _pair(py_post, lambda: _nxl._bench_c_post_wait(t, n) / n,
                      4 * repeats)
        rows.append(dict(name="post->done, prepared 4 KiB SHM READ",
                         py_us=py * 1e6, c_us=c * 1e6, ratio=py / c,
                         goal="<= 1.3x C", met=py / c <= 1.3))
        t.release()

        # --- make_xfer with 32,768 indices ----------------------------------
        bs = 256
        lbuf = np.zeros(NIDX * bs, np.uint8)
        regs.append(a.register(lbuf))
        lp2 = a.prep(np.column_stack([
            lbuf.ctypes.data + np.arange(NIDX, dtype=np.uint64) * bs,
            np.full(NIDX, bs, np.uint64), np.zeros(NIDX, np.uint64)]))
        rp2 = a.prep(np.column_stack([
            rbig + np.arange(NIDX, dtype=np.uint64) * bs,
            np.full(NIDX, bs, np.uint64), np.zeros(NIDX, np.uint64)]),
            remote=peer)
        lidx = np.arange(NIDX, dtype=np.int64)
        ridx = np.random.default_rng(7).permutation(NIDX).astype(np.int64)
        llist, rlist = lidx.tolist(), ridx.tolist()

        def py_make(li, ri):
            def f():
                t0 = time.perf_counter()
                x = a.make_xfer(nxl.READ, lp2, li, rp2, ri)
                dt = time.perf_counter() - t0
                x.release()
                return dt
            return f

        def c_make():
            return _nxl._bench_c_make(a, nxl.READ, lp2, lidx, rp2, ridx)

        py_np, c1 = _pair(py_make(lidx, ridx), c_make, 4 * repeats)
        py_ls, c2 = _pair(py_make(llist, rlist), c_make, 4 * repeats)
        rows.append(dict(name="make_xfer, 32,768 indices, numpy int64",
                         py_us=py_np * 1e6, c_us=c1 * 1e6,
                         delta_ms=(py_np - c1) * 1e3,
                         goal="<= C + 0.2 ms", met=py_np - c1 <= 0.2e-3))
        rows.append(dict(name="make_xfer, 32,768 indices, Python lists",
                         py_us=py_ls * 1e6, c_us=c2 * 1e6,
                         delta_ms=(py_ls - c2) * 1e3,
                         goal="<= 2 ms", met=py_ls <= 2e-3,
                         note=f"{(py_ls - c2) * 1e3:.2f} ms above C"))
        lp2.release()
        rp2.release()
        del llist, rlist

        # --- DescList of 1,000,000 rows -------------------------------------
        nrows = NROWS // scale
        table = np.column_stack([
            np.arange(nrows, dtype=np.uint64) * 4096 + 0x100000,
            np.full(nrows, 4096, np.uint64), np.zeros(nrows, np.uint64)])
        tuples = [tuple(r) for r in table.tolist()]

        def py_dlist(src):
            def f():
                gc.collect()
                t0 = time.perf_counter()
                d = nxl.DescList(src)
                dt = time.perf_counter() - t0
                del d
                return dt
            return f

        dn = _median(py_dlist(table), repeats)
        dl = _median(py_dlist(tuples), repeats)
        rows.append(dict(name=f"DescList, {nrows:,} rows, Nx3 numpy",
                         py_us=dn * 1e6, goal="<= 10 ms", met=dn <= 10e-3))
        rows.append(dict(name=f"DescList, {nrows:,} rows, list of tuples",
                         py_us=dl * 1e6, goal="<= 70 ms", met=dl <= 70e-3))
        del table, tuples

        # --- register + deregister 1,000 arrays / tensors -------------------
        arrays = [np.zeros(4096, np.uint8) for _ in range(NREG)]

        def py_reg(objs):
            def f():
                t0 = time.perf_counter()
                r = a.register(objs)
                r.deregister()
                return time.perf_counter() - t0
            return f

        d_arrays = nxl.DescList(arrays)
        py, c = _pair(py_reg(arrays),
                      lambda: _nxl._bench_c_register(a, d_arrays),
                      4 * repeats)
        rows.append(dict(name="register+deregister, 1,000 numpy arrays",
                         py_us=py * 1e6, c_us=c * 1e6, goal="<= 3 ms",
                         met=py <= 3e-3))
        try:
            import torch
        except Exception:  # noqa: BLE001
            torch = None
        if torch is not None:
            tensors = [torch.zeros(1024) for _ in range(NREG)]
            d_t = nxl.DescList(tensors)
            py, c = _pair(py_reg(tensors),
                          lambda: _nxl._bench_c_register(a, d_t),
                          4 * repeats)
            rows.append(dict(name="register+deregister, 1,000 torch tensors",
                             py_us=py * 1e6, c_us=c * 1e6, goal="<= 3 ms",
                             met=py <= 3e-3, note="DLPack"))

        # --- 64 MiB SHM READ bandwidth --------------------------------------
        size = BIG // scale
        t = a.xfer(nxl.READ, big[:size], [(rbig, size, 0)], peer)
        n = 12 * repeats // (2 if quick else 1)

        def py_one():
            t0 = time.perf_counter()
            if t.post():
                t.wait()
            return time.perf_counter() - t0

        # One transfer at a time, Python and C alternating, medians of the
        # per-transfer times: a load spike on this shared machine then
        # hits one sample, not one side.
        py_t, c_t = _pair(py_one, lambda: _nxl._bench_c_post_wait(t, 1), n)
        py, c = size / py_t / 1e9, size / c_t / 1e9
        rows.append(dict(name=f"{size >> 20} MiB SHM READ, GB/s",
                         py_gbs=py, c_gbs=c, ratio=py / c,
                         goal=">= 0.97x C", met=py / c >= 0.97))
        t.release()
        for r in regs:
            r.close()
    finally:
        a.close()
        conn.send("exit")
        proc.join(10)
    return rows


def _fmt_row(r):
    if "py_gbs" in r:
        py, c = f"{r['py_gbs']:.2f} GB/s", f"{r['c_gbs']:.2f} GB/s"
    else:
        py = _fmt_time(r["py_us"])
        c = _fmt_time(r["c_us"]) if "c_us" in r else "-"
    if "ratio" in r:
        vs = f"{r['ratio']:.2f}x"
    elif "delta_ms" in r:
        vs = f"{r['delta_ms']:+.3f} ms"
    else:
        vs = "-"
    return [r["name"], py, c, vs, r["goal"], "yes" if r["met"] else "NO",
            r.get("note", "")]


def _fmt_time(us):
    if us < 10:
        return f"{us:.3f} us"
    if us < 10000:
        return f"{us / 1000:.3f} ms"
    return f"{us / 1000:.1f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m nxl.bench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5,
                    help="sampling rounds (medians; default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="a tenth of the iterations and sizes (smoke test)")
    ap.add_argument("--json", action="store_true", help="JSON lines")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick, repeats=args.repeats)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    head = ["measurement", "Python", "C", "vs C", "goal", "met", "note"]
    table = [head] + [_fmt_row(r) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("| " + " | ".join(s.ljust(w) for s, w in zip(row, widths)) +
              " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(f"nxl {nxl.version}, medians, --repeats {args.repeats}"
          f"{', quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
