#!/bin/sh
# bench_modes.sh - nxl-bench --smoke in the modes beyond a local DRAM pair:
#   1. an etcd group of two processes (pairwise) on a real etcd server
#      started here on free loopback ports in a temporary directory, then
#      groups of three with --scheme manytoone and onetomany;
#   2. --backend POSIX with --filepath in a mktemp directory (O_DIRECT
#      too, when that directory's file system has it);
#   3. VRAM pools through the fake device (--vram_device fake);
#   4. the errors that name their fix (unknown flag, max < start block,
#      POSIX as a network pair, etcd not reachable);
#   5. --backend TCP's raw ping-pong baseline: --lat_bench's baseline
#      (table and CSV) and the PP columns of a --json sweep (batch-1 rows
#      up to 64 KiB have them, with --pipeline_depth; the others null).
# Usage: tests/bench_modes.sh [BUILD_DIR]   (default: build)
# Exit 0 when every mode passed, 1 when one failed; the etcd mode is
# skipped, with the reason printed, when no etcd binary is installed.
set -u

BUILD=${1:-build}
BENCH=$BUILD/tools/nxl-bench/nxl-bench
if [ ! -x "$BENCH" ]; then
    echo "bench_modes: $BENCH not built" >&2
    exit 1
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nxl-bench-modes.XXXXXX") || exit 1
ETCD_PID=
cleanup() {
    if [ -n "$ETCD_PID" ]; then
        kill "$ETCD_PID" 2>/dev/null
        wait "$ETCD_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fails=0
passes=0
skips=0
ok() { echo "ok    $1"; passes=$((passes + 1)); }
bad() { echo "FAIL  $1"; fails=$((fails + 1)); }
skip() { echo "skip  $1: $2"; skips=$((skips + 1)); }

# smoke NAME LOG ARGS...: runs nxl-bench --smoke ARGS, expects exit 0 and
# the "--smoke: ok" line.
smoke() {
    name=$1
    log=$2
    shift 2
    if "$BENCH" --smoke "$@" >"$log" 2>&1 &&
        grep -q -- '--smoke: ok' "$log"; then
        ok "$name"
    else
        bad "$name (log below)"
        sed 's/^/    /' "$log" | tail -25
    fi
}

# expect_err NAME WORDS ARGS...: nxl-bench ARGS must fail within 20 s and
# say WORDS (a fixed string) on stderr.
expect_err() {
    name=$1
    words=$2
    shift 2
    if timeout 20 "$BENCH" "$@" >"$TMP/err.out" 2>"$TMP/err.log"; then
        bad "$name (exit 0)"
    elif grep -q -F -- "$words" "$TMP/err.log"; then
        ok "$name"
    else
        bad "$name (no '$words'; stderr below)"
        sed 's/^/    /' "$TMP/err.log" | tail -5
    fi
}

# free_port prints a TCP port free on 127.0.0.1 now.
free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# group3 SCHEME INITS: three processes of --scheme SCHEME in a fresh group
# on the etcd at $EP, with --check_consistency. Every process must exit 0
# and print its --smoke ok line, and INITS initiators must report
# verified data.
group3() {
    scheme=$1
    inits=$2
    g="bm-$scheme-$$"
    pids=""
    for r in 0 1 2; do
        timeout 600 "$BENCH" --smoke --check_consistency \
            --etcd_endpoints "$EP" --benchmark_group "$g" --world_size 3 \
            --scheme "$scheme" >"$TMP/$scheme-$r.log" 2>&1 &
        pids="$pids $!"
    done
    rcs=""
    good=1
    for p in $pids; do
        rc=0
        wait "$p" || rc=$?
        rcs="$rcs $rc"
        [ $rc -eq 0 ] || good=0
    done
    verified=0
    for r in 0 1 2; do
        lg="$TMP/$scheme-$r.log"
        grep -q -- '--smoke.*: ok$' "$lg" || good=0
        if grep -q -- '^nxl-bench --smoke: ' "$lg"; then
            # an initiator: its data must have been checked
            if grep -q -- '--check_consistency: verified' "$lg"; then
                verified=$((verified + 1))
            else
                good=0
            fi
        fi
    done
    [ $verified -eq "$inits" ] || good=0
    if [ $good -eq 1 ]; then
        ok "etcd $scheme (3 processes, $inits initiator(s) verified)"
    else
        bad "etcd $scheme (exits$rcs, $verified/$inits verified; logs below)"
        for r in 0 1 2; do
            sed "s/^/    $r: /" "$TMP/$scheme-$r.log" | tail -15
        done
    fi
}

# --- 1. etcd pair -------------------------------------------------------
ETCD=$(command -v etcd 2>/dev/null || true)
if [ -z "$ETCD" ] && [ -x /usr/bin/etcd ]; then
    ETCD=/usr/bin/etcd
fi
if [ -z "$ETCD" ]; then
    skip "etcd pair" "no etcd binary (Debian/Ubuntu: apt-get install etcd-server)"
else
    CP=$(free_port)
    PP=$(free_port)
    "$ETCD" --name bm --data-dir "$TMP/etcd" \
        --listen-client-urls "http://127.0.0.1:$CP" \
        --advertise-client-urls "http://127.0.0.1:$CP" \
        --listen-peer-urls "http://127.0.0.1:$PP" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
        --initial-cluster "bm=http://127.0.0.1:$PP" \
        --heartbeat-interval 50 --election-timeout 500 \
        --log-level warn >"$TMP/etcd.log" 2>&1 &
    ETCD_PID=$!
    up=0
    i=0
    while [ $i -lt 100 ]; do
        if /usr/bin/python3 - "$CP" <<'PY' 2>/dev/null; then
import sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/v3/kv/range" % sys.argv[1],
                             data=b'{"key":"AA=="}')
urllib.request.urlopen(req, timeout=1).read()
PY
            up=1
            break
        fi
        i=$((i + 1))
        sleep 0.1
    done
    if [ $up -ne 1 ]; then
        bad "etcd pair (etcd did not start; its log below)"
        sed 's/^/    /' "$TMP/etcd.log" | tail -10
    else
        EP="http://127.0.0.1:$CP"
        G="bm-$$"
        "$BENCH" --smoke --etcd_endpoints "$EP" --benchmark_group "$G" \
            --world_size 2 >"$TMP/rank-a.log" 2>&1 &
        A=$!
        "$BENCH" --smoke --etcd_endpoints "$EP" --benchmark_group "$G" \
            --world_size 2 >"$TMP/rank-b.log" 2>&1 &
        B=$!
        ra=0
        rb=0
        wait $A || ra=$?
        wait $B || rb=$?
        if [ $ra -eq 0 ] && [ $rb -eq 0 ] &&
            grep -q -- '--smoke.*: ok$' "$TMP/rank-a.log" &&
            grep -q -- '--smoke.*: ok$' "$TMP/rank-b.log" &&
            cat "$TMP/rank-a.log" "$TMP/rank-b.log" |
            grep -q -- '--check_consistency: verified'; then
            ok "etcd pair (2 processes, group $G at $EP)"
        else
            bad "etcd pair (exit $ra and $rb; logs below)"
            sed 's/^/    a: /' "$TMP/rank-a.log" | tail -15
            sed 's/^/    b: /' "$TMP/rank-b.log" | tail -15
        fi
        expect_err "etcd: odd --world_size" "even --world_size" \
            --etcd_endpoints "$EP" --world_size 3
        group3 manytoone 2
        group3 onetomany 1
    fi
fi
# etcd not reachable: a closed port on loopback
DEAD=$(free_port)
expect_err "etcd not reachable" "is etcd running at" --smoke \
    --etcd_endpoints "http://127.0.0.1:$DEAD" --benchmark_group dead

# --- 2. POSIX with --filepath -----------------------------------------------
mkdir -p "$TMP/files"
smoke "POSIX --filepath (buffered)" "$TMP/posix.log" --backend POSIX \
    --filepath "$TMP/files" --num_files 2
if grep -q 'fio column is' "$TMP/posix.log"; then
    echo "      (no fio column: $(grep 'fio column is' "$TMP/posix.log"))"
fi
probe="$TMP/files/.direct-probe"
if dd if=/dev/zero of="$probe" bs=4096 count=1 oflag=direct 2>/dev/null; then
    rm -f "$probe"
    smoke "POSIX --filepath --storage_enable_direct" "$TMP/posix-direct.log" \
        --backend POSIX --filepath "$TMP/files" --storage_enable_direct
else
    rm -f "$probe"
    skip "POSIX O_DIRECT" "the file system of $TMP has no O_DIRECT (tmpfs?)"
fi
if [ -n "$(ls -A "$TMP/files")" ]; then
    bad "POSIX files removed after the run (left: $(ls "$TMP/files"))"
fi

# --- 3. VRAM through the fake device -------------------------------------
smoke "VRAM -> VRAM (fake device)" "$TMP/vram.log" --vram_device fake \
    --initiator_seg_type VRAM --target_seg_type VRAM
smoke "VRAM -> shared DRAM (fake device)" "$TMP/vram2.log" \
    --vram_device fake --initiator_seg_type VRAM --shared

# --- 4. errors that name the fix ------------------------------------------
expect_err "unknown flag" "unknown flag --no_such_flag" --no_such_flag 1
expect_err "max block under start" "raise --max_block_size" \
    --start_block_size 64K --max_block_size 4K
expect_err "POSIX as a network pair" "Drop --target_host" \
    --backend POSIX --filepath "$TMP" --target_host 127.0.0.1
expect_err "POSIX without --filepath" "needs --filepath DIR" --backend POSIX
expect_err "unknown backend" "this build has:" --backend NOPE

# --- 5. TCP: the raw ping-pong baseline ---------------------------------------
if timeout 120 "$BENCH" --backend TCP --lat_bench --op_type READ,WRITE \
        --num_iter 200 --total_buffer_size 16M >"$TMP/pp-lat.log" 2>&1 &&
    [ "$(grep -c 'baseline (raw TCP ping-pong):  median [0-9]' \
        "$TMP/pp-lat.log")" -eq 2 ] &&
    [ "$(grep -c 'ratio (baseline median / NXL median): [0-9]' \
        "$TMP/pp-lat.log")" -eq 2 ]; then
    ok "TCP --lat_bench: raw ping-pong baseline, READ and WRITE"
else
    bad "TCP --lat_bench ping-pong baseline (log below)"
    sed 's/^/    /' "$TMP/pp-lat.log" | tail -15
fi
if timeout 120 "$BENCH" --backend TCP --lat_bench --csv --num_iter 100 \
        --total_buffer_size 16M >"$TMP/pp-lat.csv" 2>"$TMP/pp-lat.err" &&
    /usr/bin/python3 - "$TMP/pp-lat.csv" <<'PY'; then
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 1, rows
r = rows[0]
assert float(r["base_med_us"]) > 0 and float(r["base_p99_us"]) > 0, r
assert abs(float(r["ratio"]) - float(r["base_med_us"]) / float(r["med_us"])) < 0.01, r
PY
    ok "TCP --lat_bench --csv: base_med_us, base_p99_us and ratio"
else
    bad "TCP --lat_bench --csv (output below)"
    sed 's/^/    /' "$TMP/pp-lat.csv" "$TMP/pp-lat.err" | tail -15
fi
if timeout 300 "$BENCH" --backend TCP --json --op_type READ,WRITE \
        --start_block_size 32K --max_block_size 128K \
        --max_batch_size 2 --pipeline_depth 4 --num_iter 50 \
        --warmup_iter 5 --total_buffer_size 16M --check_consistency \
        >"$TMP/pp.json" 2>"$TMP/pp.err" &&
    /usr/bin/python3 - "$TMP/pp.json" <<'PY'; then
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(rows) == 12, len(rows)
for r in rows:
    small = r["batch_size"] == 1 and r["block_size"] <= 65536
    if small:
        assert r["pp_bw_gbs"] > 0 and r["pp_med_tx_us"] > 0, r
        assert r["pp_p99_tx_us"] >= r["pp_med_tx_us"], r
        assert abs(r["pp_ratio"] - r["bw_gbs"] / r["pp_bw_gbs"]) < 0.01, r
    else:
        assert r["pp_bw_gbs"] is None and r["pp_ratio"] is None, r
PY
    if grep -q -- '--check_consistency: verified' "$TMP/pp.err"; then
        ok "TCP --json sweep: PP columns on batch-1 rows up to 64 KiB (depth 4)"
    else
        bad "TCP --json sweep: data not verified (stderr below)"
        sed 's/^/    /' "$TMP/pp.err" | tail -10
    fi
else
    bad "TCP --json sweep with PP columns (output below)"
    sed 's/^/    /' "$TMP/pp.json" "$TMP/pp.err" | tail -20
fi

echo "bench_modes: $passes passed, $fails failed, $skips skipped"
[ $fails -eq 0 ]
