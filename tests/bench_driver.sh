#!/bin/sh
# bench_driver.sh - make bench's driver end to end, small: bench/make_bench.py
# --quick --only shm,scale --rounds 1 into a temporary folder, then checks
# that results.json parses, names the machine and the commit, holds a
# median and a ratio per row, and that both PNGs exist; then that a table
# whose baseline tool is missing is skipped with its reason (about 10 s).
# Usage: tests/bench_driver.sh [BUILD_DIR]   (default: build)
# Prints "N passed, N failed, N skipped"; exit 0, 1 on a failure, 77 (skip,
# reason printed) without matplotlib.
set -u

BUILD=${1:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
if ! $PY -c 'import matplotlib' 2>/dev/null; then
    echo "skip: no matplotlib for $PY (Debian: python3-matplotlib)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nxl-bench-driver.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

if ! timeout 120 $PY "$TOP/bench/make_bench.py" --build "$BUILD" \
        --out "$TMP/out" --quick --only shm,scale --rounds 1 --no-lock \
        >"$TMP/log" 2>&1; then
    cat "$TMP/log"
    echo "FAIL bench/make_bench.py exited non-zero"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
tail -n 1 "$TMP/log"

# Missing baselines: with a PATH that holds neither ucx_perftest nor fio,
# both tables are skipped with a reason and no numbers (checked below).
mkdir -p "$TMP/bin"
ln -s "$(command -v git)" "$TMP/bin/git"
PATH="$TMP/bin" $PY "$TOP/bench/make_bench.py" --build "$BUILD" \
    --out "$TMP/skip" --quick --only ucx,posix --rounds 1 --no-lock \
    >"$TMP/skip.log" 2>&1
echo "(without ucx_perftest and fio: exit $?) $(tail -n 1 "$TMP/skip.log")"

$PY - "$TMP/out" "$TMP/skip" <<'EOF'
import json, os, sys

out, skip = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL " + what)


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


try:
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
except (OSError, ValueError) as e:
    print("FAIL results.json: %s" % e)
    print("0 passed, 1 failed, 0 skipped")
    sys.exit(1)
m = r.get("machine", {})
check(m.get("cpu_model") and num(m.get("cores")) and m.get("kernel"),
      "machine info (cpu_model, cores, kernel)")
check(len(m.get("git_commit") or "") == 40, "git commit")
check(len(r.get("load_before", [])) == 3 and len(r.get("load_after", [])) == 3,
      "load average before and after")
check(r.get("date_utc", "").endswith("Z"), "date")
t = r.get("tables", {})
check(sorted(t) == ["scale", "shm"], "tables shm and scale: %s" % sorted(t))
shm = t.get("shm", {})
check(shm.get("status") == "ok", "shm ran: %s" % shm.get("reason"))
rows = shm.get("medians", [])
check({x.get("op") for x in rows} == {"READ", "WRITE"} and len(rows) >= 4,
      "shm rows for READ and WRITE")
check(all(num(x.get("nxl_gbs")) and num(x.get("base_gbs")) and
          num(x.get("ratio")) for x in rows),
      "shm: every row has NXL, baseline and ratio numbers")
check(all(len(x.get("ratio_rounds", [])) == 1 for x in rows),
      "shm: one raw ratio per round")
check(len(shm.get("rounds", [])) == 1 and shm.get("commands"),
      "shm: raw round and command line recorded")
sc = t.get("scale", {})
check(sc.get("status") == "ok", "scale ran: %s" % sc.get("reason"))
srows = sc.get("medians", [])
check(any(x.get("backend") == "SHM" for x in srows) and
      all(num(x["us"].get("register")) for x in srows),
      "scale: register us per region for every backend row")
for name in ("shm", "scale"):
    p = os.path.join(out, name + ".png")
    head = b""
    if os.path.isfile(p):
        with open(p, "rb") as f:
            head = f.read(8)
    check(head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 10000,
          "%s.png written" % name)
try:
    with open(os.path.join(skip, "results.json")) as f:
        st = json.load(f).get("tables", {})
except (OSError, ValueError) as e:
    st = {}
    print("results.json of the run without tools: %s" % e)
for name, tool in (("ucx", "ucx_perftest"), ("posix", "fio")):
    x = st.get(name, {})
    check(x.get("status") == "skipped" and tool in x.get("reason", "") and
          "medians" not in x and
          not os.path.exists(os.path.join(skip, name + ".png")),
          "%s without %s: skipped with the reason, no numbers" % (name, tool))
print("%d passed, %d failed, 0 skipped" % (passed, failed))
sys.exit(1 if failed else 0)
EOF
