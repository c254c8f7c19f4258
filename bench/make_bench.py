#!/usr/bin/python3
"""make_bench.py - regenerate the tables of docs/performance.md in one run.

    bench/make_bench.py [--build DIR] [--out DIR] [--rounds N]
                        [--only shm,tcp,...] [--quick] [--posix-dir DIR]
                        [--no-lock]

Runs each table's benchmark with the command docs/performance.md records,
--rounds times (default 3), and writes OUT/results.json (machine, commit,
load before and after, and per table: the command lines, every round's raw
rows, the medians and the ratios to the baseline measured in the same run)
and OUT/<table>.png (matplotlib, Agg). The house rule: compare ratios
measured in the same run, take medians of repeated runs. A ratio is the
median of the per-round ratios, never a ratio of medians.

A table whose tool or baseline is missing (ucx_perftest, fio, iperf3,
network namespaces) is skipped with the reason printed and recorded; no
number is ever made up. Exit status: 0 when every table ran or was
skipped, 1 when one failed, 2 on a usage error.
"""
import argparse
import datetime
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ["shm", "shm_shared", "ucx", "tcp", "posix", "kv", "scale"]
TITLES = {
    "shm": "SHM, private pools (CMA) vs process_vm_readv/writev",
    "shm_shared": "SHM, shared pools vs one-core NT memcpy",
    "ucx": "UCX (--hot --shared) vs ucx_perftest",
    "tcp": "TCP across two network namespaces vs iperf3",
    "posix": "POSIX O_DIRECT, depth 8 vs fio io_uring",
    "kv": "KV executor (System FC -> FC) vs memcpy loop",
    "scale": "Registration and metadata at scale (us per region)",
}


class Skip(Exception):
    """A table cannot run here; the message says why."""


class Fail(Exception):
    """A table's command failed; the message says how."""


def log(msg):
    print(msg, flush=True)


def size_label(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d%s" % (n >> shift, unit)
    return str(n)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine_info():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass

    def git(*args):
        try:
            return subprocess.run(["git", "-C", TOP] + list(args),
                                  capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "mem_bytes": mem,
        "kernel": platform.release(),
        "os": platform.platform(),
        "hostname": platform.node(),
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


class Runner:
    """Runs commands one at a time under the benchmark lock."""

    def __init__(self, args):
        self.args = args
        self.lock_path = None if args.no_lock else args.lock

    def run(self, argv, timeout, env=None):
        """run returns (rc, stdout, stderr) of argv, holding the lock."""
        lock_fd = None
        if self.lock_path:
            # flock needs no write access: a lock file another user made
            # works as well.
            try:
                lock_fd = os.open(self.lock_path, os.O_CREAT | os.O_RDONLY,
                                  0o666)
            except OSError as e:
                log("  (no lock, %s: %s)" % (self.lock_path, e.strerror))
                self.lock_path = None
        if lock_fd is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log("  (waiting for %s: another benchmark holds it)" %
                    self.lock_path)
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=timeout, env=env, cwd=TOP)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else ""
            raise Fail("timed out after %d s: %s%s" %
                       (timeout, shlex.join(argv),
                        "\n" + out[-500:] if out else ""))
        finally:
            if lock_fd is not None:
                os.close(lock_fd)


def last_lines(text, n=6):
    return "\n".join(text.strip().splitlines()[-n:])


# ---- nxl-bench sweeps (SHM, SHM shared, UCX, TCP, POSIX) ------------------

def bench_rows(stdout):
    """bench_rows returns nxl-bench's --json sweep rows from stdout."""
    rows = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "bench" in r or "block_size" not in r:
            continue
        rows.append(r)
    return rows


def sweep_table(t, runner, rounds, argv, timeout, base_key, base_name,
                ratio_of=None, env=None):
    """sweep_table runs argv rounds times and folds the rows per (op, size).

    base_key is the row field of the same-run baseline; ratio_of(row)
    gives a round's ratio (default: the tool's own ratio column)."""
    t["commands"] = [shlex.join(argv)]
    t["baseline"] = base_name
    raw = []
    notes = {}  # nxl-bench's lines on stderr, in order, once each
    for i in range(rounds):
        t0 = time.time()
        rc, out, err = runner.run(argv, timeout, env)
        if rc == 77:
            raise Skip(last_lines(err or out, 3))
        if rc != 0:
            raise Fail("exit %d: %s" % (rc, last_lines(err + out)))
        rows = bench_rows(out)
        if not rows:
            raise Fail("no rows in the output: %s" % last_lines(err + out))
        said = [line.strip() for line in err.splitlines()
                if line.startswith("nxl-bench:")]
        notes.update(dict.fromkeys(said))
        raw.append({"round": i + 1, "seconds": round(time.time() - t0, 2),
                    "rows": rows, "stderr_notes": said})
        log("  round %d/%d: %d rows, %.1f s" %
            (i + 1, rounds, len(rows), time.time() - t0))
    t["rounds"] = raw
    t["notes"] = list(notes)
    keys = []
    for r in raw[0]["rows"]:
        k = (r["op"], r["block_size"], r.get("batch_size", 1))
        if k not in keys:
            keys.append(k)
    medians = []
    for k in keys:
        per = [r for rd in raw for r in rd["rows"]
               if (r["op"], r["block_size"], r.get("batch_size", 1)) == k]
        bws = [r.get("bw_gbs") for r in per]
        bases = [r.get(base_key) for r in per]
        if ratio_of:
            ratios = [ratio_of(r) for r in per]
        else:
            ratios = [r.get("ratio") for r in per]
        medians.append({
            "op": k[0], "block_size": k[1], "batch_size": k[2],
            "nxl_gbs": median(bws), "base_gbs": median(bases),
            "ratio": median(ratios),
            "ratio_min": min([x for x in ratios if x is not None],
                             default=None),
            "ratio_max": max([x for x in ratios if x is not None],
                             default=None),
            "nxl_gbs_rounds": bws, "base_gbs_rounds": bases,
            "ratio_rounds": ratios,
        })
    t["medians"] = medians
    missing = [m for m in medians if m["base_gbs"] is None]
    if missing:
        t["notes"].append("no baseline for %d of %d rows (see notes)" %
                          (len(missing), len(medians)))


def nxl_bench(args):
    return os.path.join(args.build, "tools", "nxl-bench", "nxl-bench")


def sweep_sizes(args, full_max="64M"):
    if args.quick:
        return ["--start_block_size", "4K", "--max_block_size", "4M",
                "--num_iter", "50", "--warmup_iter", "5",
                "--large_blk_iter_ftr", "4"]
    return ["--start_block_size", "4K", "--max_block_size", full_max]


def run_shm(t, args, runner, shared):
    argv = [nxl_bench(args), "--backend", "SHM", "--op_type", "READ,WRITE"]
    argv += sweep_sizes(args) + (["--shared"] if shared else []) + ["--json"]
    sweep_table(t, runner, args.rounds, argv, args.timeout, "base_bw_gbs",
                "one-core NT memcpy (same run)" if shared else
                "one-thread process_vm_readv/writev (same run)")


def run_ucx(t, args, runner):
    if shutil.which("ucx_perftest") is None:
        raise Skip("ucx_perftest not in PATH (Debian: ucx-utils)")
    argv = [nxl_bench(args), "--backend", "UCX", "--op_type", "READ,WRITE"]
    if args.quick:
        argv += ["--start_block_size", "1M", "--max_block_size", "4M",
                 "--num_iter", "20", "--large_blk_iter_ftr", "4"]
    else:
        argv += ["--start_block_size", "1M", "--max_block_size", "64M",
                 "--num_iter", "200", "--large_blk_iter_ftr", "4"]
    argv += ["--hot", "--shared", "--json"]
    # A build without UCX does not know the backend: a skip, not a failure.
    probe = runner.run(argv[:3] + ["--op_type", "READ", "--start_block_size",
                                   "4K", "--max_block_size", "4K",
                                   "--num_iter", "1", "--warmup_iter", "0",
                                   "--json"], 60)
    if probe[0] != 0 and "unknown backend" in probe[1] + probe[2]:
        raise Skip("this build has no UCX backend: " +
                   last_lines(probe[1] + probe[2], 2))
    sweep_table(t, runner, args.rounds, argv, args.timeout, "base_bw_gbs",
                "ucx_perftest ucp_get / ucp_put_bw (same run)")


def run_tcp(t, args, runner):
    if os.geteuid() != 0:
        raise Skip("network namespaces need root (tests/netns/rig.sh)")
    if shutil.which("ip") is None:
        raise Skip("no 'ip' command (iproute2) for the namespace rig")
    if shutil.which("iperf3") is None:
        raise Skip("iperf3 not in PATH (the baseline; Debian: iperf3)")
    b = shlex.quote(os.path.abspath(nxl_bench(args)))
    if args.quick:
        flags = ("--start_block_size 1M --max_block_size 4M --num_iter 20 "
                 "--large_blk_iter_ftr 1")
    else:
        flags = "--start_block_size 1M --max_block_size 64M --num_iter 100"
    target = "%s --backend TCP --listen 10.77.0.1:8888" % b
    init = ("sleep 0.5; %s --backend TCP --target_host 10.77.0.1 "
            "--op_type READ,WRITE %s --json" % (b, flags))
    argv = [os.path.join(TOP, "tests", "netns", "rig.sh"), "run", "--",
            target, "--", init]
    sweep_table(t, runner, args.rounds, argv, args.timeout, "base_bw_gbs",
                "iperf3, one stream, same path (same run)")


def run_posix(t, args, runner):
    if shutil.which("fio") is None:
        raise Skip("fio not in PATH (the baseline; Debian: fio)")
    d = tempfile.mkdtemp(prefix="nxl-bench-posix.", dir=args.posix_dir)
    try:
        argv = [nxl_bench(args), "--backend", "POSIX", "--filepath", d,
                "--storage_enable_direct", "--op_type", "READ,WRITE",
                "--start_block_size", "1M", "--max_block_size", "1M",
                "--pipeline_depth", "8", "--large_blk_iter_ftr", "1"]
        if args.quick:
            argv += ["--num_iter", "32", "--warmup_iter", "4",
                     "--total_buffer_size", "32M"]
        else:
            argv += ["--num_iter", "512", "--warmup_iter", "32",
                     "--total_buffer_size", "256M"]
        argv += ["--json"]

        def vs_fio(r):
            if r.get("bw_gbs") and r.get("fio_gbs"):
                return r["bw_gbs"] / r["fio_gbs"]
            return None

        sweep_table(t, runner, args.rounds, argv, args.timeout, "fio_gbs",
                    "fio io_uring, same block size, depth and bytes "
                    "(same run)", ratio_of=vs_fio)
        for m in t["medians"]:
            per = [r.get("base_bw_gbs") for rd in t["rounds"]
                   for r in rd["rows"] if r["op"] == m["op"]]
            m["pread_gbs"] = median(per)
        t["files_on"] = d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- kv-exec-bench --------------------------------------------------------

KV_RE = re.compile(r"^(consecutive|shuffled)\s+executor\s+([\d.]+) ms .*?"
                   r"memcpy loop\s+([\d.]+) ms .*ratio ([\d.]+)")


def run_kv(t, args, runner):
    exe = os.path.join(args.build, "tools", "kv-bench", "kv-exec-bench")
    argv = [exe] + (["--blocks", "1024", "--reps", "5", "--sets", "2"]
                    if args.quick else [])
    t["commands"] = [shlex.join(argv)]
    t["baseline"] = "plain memcpy loop over the same blocks (same run)"
    raw = []
    for i in range(args.rounds):
        rc, out, err = runner.run(argv, args.timeout)
        if rc == 77:
            raise Skip(last_lines(err or out, 2))
        if rc != 0:
            raise Fail("exit %d: %s" % (rc, last_lines(err + out)))
        rows = []
        for line in out.splitlines():
            m = KV_RE.match(line.strip())
            if m:
                rows.append({"ids": m.group(1),
                             "executor_ms": float(m.group(2)),
                             "memcpy_ms": float(m.group(3)),
                             "ratio": float(m.group(4))})
        if not rows:
            raise Fail("no rows in the output: %s" % last_lines(out + err))
        raw.append({"round": i + 1, "rows": rows, "output": out})
        log("  round %d/%d: %s" % (i + 1, args.rounds, ", ".join(
            "%s %.3f" % (r["ids"], r["ratio"]) for r in rows)))
    t["rounds"] = raw
    t["medians"] = []
    for ids in ("consecutive", "shuffled"):
        per = [r for rd in raw for r in rd["rows"] if r["ids"] == ids]
        if not per:
            continue
        t["medians"].append({
            "ids": ids,
            "executor_ms": median([r["executor_ms"] for r in per]),
            "memcpy_ms": median([r["memcpy_ms"] for r in per]),
            "ratio": median([r["ratio"] for r in per]),
            "ratio_rounds": [r["ratio"] for r in per],
        })
    t["ratio_meaning"] = "executor time / memcpy time (below 1: faster)"


# ---- nxl-scale-bench ------------------------------------------------------

def run_scale(t, args, runner):
    exe = os.path.join(args.build, "tools", "scale-bench", "nxl-scale-bench")
    argv = [exe] + (["--counts", "1000", "--reps", "1"] if args.quick else
                    ["--counts", "1000,10000,100000", "--reps", "3"])
    t["commands"] = [shlex.join(argv)]
    t["baseline"] = None
    t["notes"] = ["no baseline: microseconds per region, absolute; the "
                  "issue's bound is 2 us per region at 100,000"]
    t["bound_us"] = 2.0
    raw = []
    for i in range(args.rounds):
        rc, out, err = runner.run(argv, args.timeout)
        if rc != 0:
            raise Fail("exit %d: %s" % (rc, last_lines(err + out)))
        steps, rows = None, []
        for line in out.splitlines():
            f = line.split()
            if not f or f[0] == "#":
                continue
            if f[0] == "backend":
                steps = f[2:]
                continue
            if steps is None or len(f) != len(steps) + 2:
                continue  # "(not built)" rows
            rows.append({"backend": f[0], "regions": int(f[1]),
                         "us": {s: (None if v == "-" else float(v))
                                for s, v in zip(steps, f[2:])}})
        if not rows:
            raise Fail("no rows in the output: %s" % last_lines(out + err))
        raw.append({"round": i + 1, "rows": rows})
        log("  round %d/%d: %d rows" % (i + 1, args.rounds, len(rows)))
    t["rounds"] = raw
    t["steps"] = steps
    t["medians"] = []
    for r0 in raw[0]["rows"]:
        per = [r for rd in raw for r in rd["rows"]
               if (r["backend"], r["regions"]) ==
               (r0["backend"], r0["regions"])]
        t["medians"].append({
            "backend": r0["backend"], "regions": r0["regions"],
            "us": {s: median([r["us"].get(s) for r in per]) for s in steps},
        })


# ---- figures --------------------------------------------------------------

FOOTER = [""]


def save(fig, path, plt):
    """save writes fig with the run's footer (machine, date, rounds)."""
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.text(0.01, 0.005, FOOTER[0], fontsize=7, color="#555555")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(t, path, plt, base_label):
    ops = []
    for m in t["medians"]:
        if m["op"] not in ops:
            ops.append(m["op"])
    nsizes = max(sum(1 for m in t["medians"] if m["op"] == op) for op in ops)
    fig, axes = plt.subplots(len(ops), 1, squeeze=False,
                             figsize=(max(6, 0.75 * nsizes + 3.5),
                                      3.6 * len(ops)))
    # Series: NXL, the baseline, and POSIX's pread/pwrite (same run).
    series = [("nxl_gbs", "NXL", "#1f77b4"),
              ("base_gbs", base_label, "#aaaaaa")]
    if any(m.get("pread_gbs") is not None for m in t["medians"]):
        series.append(("pread_gbs", "pread/pwrite", "#ff7f0e"))
    for ax, op in zip(axes[:, 0], ops):
        ms = [m for m in t["medians"] if m["op"] == op]
        x = list(range(len(ms)))
        w = 0.8 / len(series)
        ys = [[m.get(k) or 0 for m in ms] for k, _, _ in series]
        for j, (k, label, color) in enumerate(series):
            ax.bar([i - 0.4 + w * (j + 0.5) for i in x], ys[j], w,
                   label=label, color=color)
        top = max([y for col in ys for y in col] + [0.001])
        for i, m in enumerate(ms):
            txt = "-" if m["ratio"] is None else "%.2fx" % m["ratio"]
            ax.text(i, max(col[i] for col in ys) + top * 0.02, txt,
                    ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, top * 1.3)
        ax.set_xticks(x)
        ax.set_xticklabels([size_label(m["block_size"]) for m in ms])
        ax.set_ylabel("GB/s (median)")
        ax.set_title("%s: %s\nratio = median of the per-round NXL / %s" %
                     (TITLES[t["name"]], op, base_label), fontsize=10)
        ax.legend(loc="upper left", fontsize=8, ncol=len(series))
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("block size")
    save(fig, path, plt)


def plot_kv(t, path, plt):
    ms = t["medians"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = list(range(len(ms)))
    w = 0.4
    ex = [m["executor_ms"] for m in ms]
    mc = [m["memcpy_ms"] for m in ms]
    ax.bar([i - w / 2 for i in x], ex, w, label="executor", color="#1f77b4")
    ax.bar([i + w / 2 for i in x], mc, w, label="memcpy loop",
           color="#aaaaaa")
    top = max(ex + mc + [0.001])
    for i, m in enumerate(ms):
        ax.text(i, max(ex[i], mc[i]) + top * 0.02, "%.3fx" % m["ratio"],
                ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, top * 1.18)
    ax.set_xticks(x)
    ax.set_xticklabels([m["ids"] + " ids" for m in ms])
    ax.set_ylabel("ms per transfer (median)")
    ax.set_title(TITLES["kv"] + "\nratio = executor / memcpy", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save(fig, path, plt)


def plot_scale(t, path, plt):
    counts = sorted({m["regions"] for m in t["medians"]})
    backends = []
    for m in t["medians"]:
        if m["backend"] not in backends:
            backends.append(m["backend"])
    steps = t["steps"]
    fig, axes = plt.subplots(len(counts), 1, figsize=(11, 3.6 * len(counts)),
                             squeeze=False)
    w = 0.8 / max(len(backends), 1)
    for ax, n in zip(axes[:, 0], counts):
        for j, be in enumerate(backends):
            m = next((m for m in t["medians"]
                      if m["backend"] == be and m["regions"] == n), None)
            if m is None:
                continue
            ys = [m["us"].get(s) or 0 for s in steps]
            ax.bar([i - 0.4 + w * (j + 0.5) for i in range(len(steps))], ys,
                   w, label=be)
        ax.axhline(t["bound_us"], color="red", linestyle="--", linewidth=1,
                   label="bound %.0f us" % t["bound_us"])
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps)
        ax.set_ylabel("us per region (median)")
        ax.set_title("%s, %s regions" % (TITLES["scale"], format(n, ",")),
                     fontsize=10)
        ax.legend(fontsize=8, ncol=len(backends) + 1)
        ax.grid(axis="y", alpha=0.3)
    save(fig, path, plt)


def plot(t, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        t["png"] = None
        t.setdefault("notes", []).append(
            "no figure: matplotlib missing (Debian: python3-matplotlib)")
        return
    path = os.path.join(out, t["name"] + ".png")
    if t["name"] == "kv":
        plot_kv(t, path, plt)
    elif t["name"] == "scale":
        plot_scale(t, path, plt)
    else:
        label = {"shm": "process_vm_*", "shm_shared": "NT memcpy",
                 "ucx": "ucx_perftest", "tcp": "iperf3",
                 "posix": "fio"}[t["name"]]
        plot_sweep(t, path, plt, label)
    t["png"] = os.path.basename(path)


# ---- main -----------------------------------------------------------------

RUNNERS = {
    "shm": lambda t, a, r: run_shm(t, a, r, False),
    "shm_shared": lambda t, a, r: run_shm(t, a, r, True),
    "ucx": run_ucx,
    "tcp": run_tcp,
    "posix": run_posix,
    "kv": run_kv,
    "scale": run_scale,
}


def main():
    ap = argparse.ArgumentParser(
        description="Regenerate the tables of docs/performance.md: "
        "results.json and one PNG per table.")
    ap.add_argument("--build", default="build", help="build folder (build)")
    ap.add_argument("--out", default="bench-results",
                    help="output folder (bench-results)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per table (3); medians over them")
    ap.add_argument("--only", default="",
                    help="comma-separated tables: " + ",".join(TABLES))
    ap.add_argument("--quick", action="store_true",
                    help="few sizes and iterations: a smoke run")
    ap.add_argument("--posix-dir", default="/var/tmp",
                    help="where POSIX's files go; must allow O_DIRECT "
                    "(not tmpfs) (/var/tmp)")
    ap.add_argument("--timeout", type=int, default=0,
                    help="seconds per command (600, quick 120)")
    ap.add_argument("--lock", default="/tmp/nxl-bench.lock",
                    help="flock held around every command, so benchmarks "
                    "on a shared host run one at a time")
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()

    only = [s.strip() for s in args.only.split(",") if s.strip()] or TABLES
    bad = [s for s in only if s not in TABLES]
    if bad or args.rounds < 1:
        ap.error("unknown table %s (tables: %s)" %
                 (",".join(bad), ",".join(TABLES)) if bad else
                 "--rounds must be >= 1")
    if not args.timeout:
        args.timeout = 120 if args.quick else 600
    args.build = os.path.abspath(args.build)
    if not os.path.isfile(nxl_bench(args)):
        print("make_bench: %s not built (make all)" % nxl_bench(args),
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)

    res = {
        "format": "nxl-bench-results/1",
        "date_utc": datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "load_before": list(os.getloadavg()),
        "options": {"rounds": args.rounds, "quick": args.quick,
                    "only": only, "build": args.build},
        "rule": "ratios are measured in the same run as their baseline; "
        "each ratio is the median of the per-round ratios",
        "tables": {},
    }
    runner = Runner(args)
    failed = 0
    for name in only:
        t = {"name": name, "title": TITLES[name]}
        res["tables"][name] = t
        log("== %s: %s" % (name, TITLES[name]))
        t["load_before"] = list(os.getloadavg())
        t0 = time.time()
        try:
            RUNNERS[name](t, args, runner)
            t["status"] = "ok"
        except Skip as e:
            t["status"] = "skipped"
            t["reason"] = str(e)
            log("  SKIP %s: %s" % (name, e))
        except Fail as e:
            t["status"] = "failed"
            t["reason"] = str(e)
            failed += 1
            log("  FAIL %s: %s" % (name, e))
        t["seconds"] = round(time.time() - t0, 1)
        t["load_after"] = list(os.getloadavg())
        if t["status"] == "ok":
            FOOTER[0] = "%s, %d cores, %s; %s UTC, git %s; %d round(s)%s, " \
                "load %.1f -> %.1f" % (
                    res["machine"]["cpu_model"], res["machine"]["cores"],
                    res["machine"]["kernel"], res["date_utc"],
                    (res["machine"]["git_commit"] or "?")[:8], args.rounds,
                    ", quick" if args.quick else "", t["load_before"][0],
                    t["load_after"][0])
            plot(t, args.out)
            for m in t["medians"]:
                if "ratio" in m and "op" in m:
                    log("  %-5s %6s  NXL %s  base %s  ratio %s" % (
                        m["op"], size_label(m["block_size"]),
                        fmt(m["nxl_gbs"]), fmt(m["base_gbs"]),
                        fmt(m["ratio"])))
                elif "ids" in m:
                    log("  %-11s executor %.3f ms  memcpy %.3f ms  ratio "
                        "%.3f" % (m["ids"], m["executor_ms"], m["memcpy_ms"],
                                  m["ratio"]))
                else:
                    log("  %-6s %7d  %s" % (m["backend"], m["regions"], "  ".join(
                        "%s %s" % (s, fmt(v)) for s, v in m["us"].items())))
            if t.get("png"):
                log("  figure: %s" % os.path.join(args.out, t["png"]))
    res["load_after"] = list(os.getloadavg())
    path = os.path.join(args.out, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    summary = ", ".join("%s %s" % (n, t["status"])
                        for n, t in res["tables"].items())
    log("make_bench: %s; wrote %s" % (summary, path))
    return 1 if failed else 0


def fmt(v):
    return "-" if v is None else "%.3g" % v


if __name__ == "__main__":
    sys.exit(main())
