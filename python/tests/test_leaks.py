"""Reference counts and memory over 10,000 create/release cycles of every
handle (descriptor lists, registrations, prepared lists, transfers,
metadata, notifications, raised errors): tracemalloc for what Python
allocates, the resident set (/proc/self/statm) for what the library
does (not judged under AddressSanitizer, whose quarantine keeps freed
memory resident; LeakSanitizer is off there because the interpreter
itself leaks at exit)."""

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import nxl
from peers import unique

CYCLES = 10_000
PAGE = os.sysconf("SC_PAGE_SIZE")



def _asan_loaded():
    with open("/proc/self/maps") as f:
        return any("libasan" in l or "clang_rt.asan" in l for l in f)


ASAN = _asan_loaded()


def check_rss(grown):
    if ASAN:
        print(f"RSS not judged under AddressSanitizer (grew by {grown} bytes)")
        return
    assert grown < 8 << 20, f"RSS grew by {grown} bytes"


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(fn, cycles=CYCLES, warmup=500):
    """Runs fn warmup times, then cycles times under tracemalloc; returns
    (growth of traced Python memory, growth of the RSS) in bytes."""
    for _ in range(warmup):
        fn()
    gc.collect()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    rss0 = rss()
    for _ in range(cycles):
        fn()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    return traced, rss() - rss0


def test_handles_do_not_leak():
    a = nxl.Agent(unique("leak"))
    arr = np.zeros(2 * 4096, np.uint8)
    rows = [(0x10000 + 4096 * i, 4096, 0) for i in range(64)]
    table = np.array(rows, np.uint64)
    idx = np.zeros(1, np.int64)
    refs = (sys.getrefcount(a), sys.getrefcount(arr), sys.getrefcount(rows),
            sys.getrefcount(table), sys.getrefcount(idx))

    def cycle():
        d1 = nxl.DescList(rows)
        d2 = nxl.DescList(table)
        assert len(d1) == len(d2) == 64
        with a.register(arr):
            lp = a.prep(arr[:4096])
            rp = a.prep([(arr.ctypes.data + 4096, 4096, 0)], remote=a.name)
            t = a.make_xfer(nxl.WRITE, lp, idx, rp, [0], notif=b"n")
            if t.post() == nxl.IN_PROG:
                t.wait(5)
            assert t.status == nxl.OK and t.backend == "SHM"
            t.release()
            t2 = a.xfer(nxl.READ, arr[:4096], arr[4096:], a.name)
            t2.post()
            del t2                            # released by its finalizer
            lp.release()
            del rp                            # likewise
        a.get_notifs()
        a.get_notif_pairs()
        try:
            a.invalidate("ghost")
        except nxl.NotFoundError as e:
            assert e.status == nxl.Status.ERR_NOT_FOUND
        assert len(a.metadata()) > 0

    traced, grown = measure(cycle)
    assert traced < 256 << 10, f"Python memory grew by {traced} bytes"
    check_rss(grown)
    assert (sys.getrefcount(a), sys.getrefcount(arr), sys.getrefcount(rows),
            sys.getrefcount(table), sys.getrefcount(idx)) == refs
    a.close()


def test_agents_and_tensors_do_not_leak():
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torch is not importable: {e}")
    a = nxl.Agent(unique("leak-t"))
    tensors = [torch.zeros(256) for _ in range(4)]
    refs = [sys.getrefcount(t) for t in tensors]

    def cycle():
        with a.register(tensors) as r:        # DLPack capsules
            assert len(r.descs) == 4
        d = nxl.DescList(tensors[0])
        assert d[0][1] == 1024

    traced, grown = measure(cycle)
    assert traced < 256 << 10, f"Python memory grew by {traced} bytes"
    check_rss(grown)
    assert [sys.getrefcount(t) for t in tensors] == refs

    def agent_cycle():
        with nxl.Agent("churn", backends=("SHM",)) as b:
            b.register(np.zeros(64)).close()

    traced, grown = measure(agent_cycle, cycles=1000, warmup=50)
    assert traced < 256 << 10, f"Python memory grew by {traced} bytes"
    check_rss(grown)
    a.close()
