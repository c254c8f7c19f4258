#!/usr/bin/python3
"""blk_times.py PERF_SCRIPT_TEXT [MIN_SECTORS] - device time and host
turnaround of large block requests, from block tracepoints.

Record while one benchmark runs (the disk is otherwise quiet), e.g.

    perf record -a -e block:block_rq_issue -e block:block_rq_complete \\
        -o p.data -- sleep 2
    perf script -i p.data > p.txt
    bench/posix/blk_times.py p.txt

For requests of at least MIN_SECTORS (default 256, i.e. 128 KiB) prints
the time from issue to completion (the device's service time, matched by
start sector) and, at depth 1, the time from a completion to the next issue
while nothing was in flight (the host's turnaround: reap, wake up,
submit), in microseconds: count, median, mean, 10th and 90th percentile.
"""
import re
import statistics
import sys

PAT = re.compile(r"\s(\d+\.\d+):\s+block:(block_rq_issue|block_rq_complete):"
                 r" \d+,\d+ \S+ .*?(\d+) \+ (\d+)")


def summary(v):
    """Returns a one-line summary of the list of microsecond values v."""
    if not v:
        return "n=0"
    s = sorted(v)
    return "n=%d median %.0f mean %.0f p10 %.0f p90 %.0f" % (
        len(v), statistics.median(v), statistics.mean(v), s[len(s) // 10],
        s[len(s) * 9 // 10])


def main():
    min_sectors = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    issued, device, gaps = {}, [], []
    last_complete, inflight = None, 0
    with open(sys.argv[1]) as f:
        for line in f:
            m = PAT.search(line)
            if not m or int(m.group(4)) < min_sectors:
                continue
            t, sector = float(m.group(1)) * 1e6, int(m.group(3))
            if m.group(2) == "block_rq_issue":
                if last_complete is not None and inflight == 0:
                    gaps.append(t - last_complete)
                issued[sector] = t
                inflight += 1
            else:
                if sector in issued:
                    device.append(t - issued.pop(sector))
                    inflight = max(0, inflight - 1)
                last_complete = t
    print("device (issue -> complete) us:", summary(device))
    print("host (complete -> next issue, nothing in flight) us:",
          summary(gaps))


if __name__ == "__main__":
    main()
