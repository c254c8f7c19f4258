#!/usr/bin/python3
"""segments.py PID [MIN_KIB] - the physical layout of a process's buffers.

For every private writable mapping of PID with at least MIN_KIB (default
512) resident, prints its address range, resident KiB, AnonHugePages (from
/proc/PID/smaps) and the number of physically contiguous runs of its
resident pages (from /proc/PID/pagemap; needs root, else page frame numbers
read as 0), also per MiB resident. An O_DIRECT transfer hands the device
one segment per run it covers (docs/performance.md, "nxl-bench POSIX vs
fio: buffer memory"), so runs per MiB near 1 is what a huge-page buffer
looks like and ~100+ what a 4 KiB-page pool prefaulted page by page looks
like on this VM.
"""
import struct
import sys

PAGE = 4096


def vmas(pid):
    """Yields (start, end, perms, AnonHugePages kB) per mapping of pid."""
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                if cur:
                    yield cur
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = [lo, hi, head[1], 0, len(head) > 5]
            elif head[0] == "AnonHugePages:" and cur:
                cur[3] = int(head[1])
    if cur:
        yield cur


def runs(pm, lo, hi):
    """Returns (resident pages, contiguous runs) of [lo, hi) via pagemap."""
    pm.seek(lo // PAGE * 8)
    data = pm.read((hi - lo) // PAGE * 8)
    n = nruns = 0
    prev = None
    for (e,) in struct.iter_unpack("<Q", data):
        if not e >> 63:  # not present
            prev = None
            continue
        pfn = e & ((1 << 55) - 1)
        n += 1
        if prev is None or pfn != prev + 1:
            nruns += 1
        prev = pfn
    return n, nruns


def main():
    pid = sys.argv[1]
    min_kib = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for lo, hi, perms, thp, named in vmas(pid):
            if not perms.startswith("rw") or named:
                continue
            n, nr = runs(pm, lo, hi)
            if n * PAGE < min_kib * 1024:
                continue
            mib = n * PAGE / (1 << 20)
            print(f"{lo:x}-{hi:x} resident {n * 4} KiB AnonHugePages "
                  f"{thp} kB runs {nr} ({nr / mib:.1f} per MiB)")


if __name__ == "__main__":
    main()
