#!/usr/bin/env bash
# run.sh BUILD_DIR [SECONDS] - build the libFuzzer targets with clang and
# run each for SECONDS (default 60). Seeds come from the golden files and
# the kept corpora in fuzz/corpus/<target>; the
# corpus grows in BUILD_DIR/fuzz-corpus/<target> across runs and crashing
# inputs land in BUILD_DIR/fuzz-artifacts/. Exits non-zero on a finding.
# FUZZ_TARGETS="fuzz_api" runs only the targets named; FUZZ_RUNS=N stops
# each target after N executions (SECONDS 0: no time limit). fuzz_api reads
# FUZZ_API_SKIP / FUZZ_API_LAX_REMOTE / FUZZ_API_KEEP (see fuzz/fuzz_api.c);
# with FUZZ_API_KEEP=1 its per-input leak checks are off (-detect_leaks=0:
# the kept agents' threads free across inputs, which would set off a full
# LeakSanitizer scan after most inputs; the check at exit stays).
set -euo pipefail

build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

CC=clang cmake -S . -B "$build" -G Ninja -DNXL_FUZZ=ON -DNXL_SANITIZE= \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=${FUZZ_TARGETS:-fuzz_md fuzz_sc fuzz_tcp fuzz_kvjson fuzz_api fuzz_connect fuzz_etcd fuzz_lstream}
# shellcheck disable=SC2086
cmake --build "$build" --target $targets

seeds="$build/fuzz-seeds"
rm -rf "$seeds"
mkdir -p "$seeds/fuzz_md" "$seeds/fuzz_sc" "$seeds/fuzz_tcp" "$seeds/fuzz_kvjson" \
    "$seeds/fuzz_api" "$seeds/fuzz_connect" "$seeds/fuzz_etcd" "$seeds/fuzz_lstream" \
    "$build/fuzz-artifacts"
# The kept corpora (fuzz/corpus/<target>: fuzz_api's hand-made API call
# sequences, fuzz_etcd's gateway answers and watch streams, and every
# target's inputs merged from earlier runs, docs/reliability.md "Fuzzing").
for t in fuzz_md fuzz_sc fuzz_tcp fuzz_kvjson fuzz_api fuzz_connect fuzz_etcd fuzz_lstream; do
    if [ -d "$top/fuzz/corpus/$t" ]; then
        cp "$top"/fuzz/corpus/"$t"/* "$seeds/$t/"
    fi
done
# KV layout JSON: the golden v1 / v2 files.
cp "$top"/tests/data/kv_layout_*.json "$seeds/fuzz_kvjson/"
# Tensor-connector JSON: the golden RdmaMetadata / descriptor files.
cp "$top"/tests/data/connect_*.json "$seeds/fuzz_connect/"
# Seeds: the golden blob, a future-minor copy, a few prefixes; for the
# side channel a LOAD frame carrying it and OK / error ACK replies.
/usr/bin/python3 - "$top/tests/data/md_golden_v1.bin" "$seeds" <<'PY'
import struct, sys
golden = open(sys.argv[1], "rb").read()
out = sys.argv[2]
def put(target, name, data):
    open(f"{out}/{target}/{name}", "wb").write(data)
put("fuzz_md", "golden", golden)
put("fuzz_md", "minor7", golden[:6] + struct.pack("<H", 7) + golden[8:])
for cut in (12, 33, 100, 200):
    put("fuzz_md", f"cut{cut}", golden[:8] + struct.pack("<I", cut) + golden[12:cut])
def frame(t, payload):
    return b"NXSC" + bytes([1, t, 0, 0]) + struct.pack("<I", len(payload)) + payload
def ack(status, msg):
    return struct.pack("<iI", status, len(msg)) + msg
put("fuzz_sc", "load", frame(1, golden))
put("fuzz_sc", "send", frame(2, b""))
put("fuzz_sc", "invl", frame(3, b"prefill-0"))
put("fuzz_sc", "ack_ok", frame(4, ack(0, b"")))
put("fuzz_sc", "ack_err", frame(4, ack(-6, b"md: agent B: conn info changed")))
put("fuzz_sc", "md", frame(5, golden))
# TCP backend: a hello, a READ request, a WRITE with an inline notif, a
# READ reply; and a conn-info blob with two addresses.
def th(t, fl=0, st=0, nd=0, aux=0, i=0, d=0):
    return struct.pack("<HBBiIIQQ", 0x584e, t, fl, st, nd, aux, i, d)
h = struct.pack("<IHHHHH", 0x54435458, 1, 0, 1, 0, 7) + b"agent-a"
put("fuzz_tcp", "stream", th(1, aux=len(h)) + h + th(3, nd=1, i=1) +
    struct.pack("<QQ", 4096, 64) + th(5, 1, nd=1, aux=2, i=2, d=4) +
    struct.pack("<QQ", 8192, 4) + b"hi" + b"data" + th(4, i=1, d=3) + b"abc")
# Version 3: a hello offering 3, a READ and a WRITE whose descriptors
# carry region keys (flag 4, 24 bytes each), a reply.
h3 = struct.pack("<IHHHHH", 0x54435458, 1, 0, 1, 3, 7) + b"agent-c"
put("fuzz_tcp", "stream_v3", th(1, aux=len(h3)) + h3 + th(3, 4, nd=2, i=1) +
    struct.pack("<QQQQQQ", 4096, 64, 0x1234567, 8192, 8, 0) +
    th(5, 4, nd=1, i=2, d=4) + struct.pack("<QQQ", 8192, 4, 0x1234568) +
    b"data" + th(4, i=1, d=72) + bytes(72))
# Local notification streams: mode byte, then a hello and two frames
# (one of an unknown type), in both modes and through a real stream.
ls = struct.pack("<IBBH", 0x4e53584e, 1, 0, 7) + b"agent-b" + \
    bytes([1, 0, 0, 0]) + struct.pack("<I", 5) + b"hello" + \
    bytes([9, 0, 0, 0]) + struct.pack("<I", 2) + b"xx"
for mode in range(4):
    put("fuzz_lstream", f"hello{mode}", bytes([mode]) + ls)
put("fuzz_tcp", "conninfo", struct.pack("<BBHQ", 1, 2, 4242, 99) + bytes([9]) +
    b"10.77.0.1" + bytes([9]) + b"127.0.0.1")
PY

rc=0
for t in $targets; do
    corpus="$build/fuzz-corpus/$t"
    mkdir -p "$corpus"
    log="$build/fuzz-$t.log"
    extra=
    if [ "$t" = fuzz_api ] && [ "${FUZZ_API_KEEP:-0}" = 1 ]; then
        extra=-detect_leaks=0
    fi
    echo "== $t: ${secs}s"
    # shellcheck disable=SC2086
    if "$build/fuzz/$t" -max_total_time="$secs" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} $extra -print_final_stats=1 \
           -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
           -artifact_prefix="$build/fuzz-artifacts/$t-" \
           "$corpus" "$seeds/$t" >"$log" 2>&1; then
        execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
        cov=$(awk '$2 == "DONE" {for (i = 3; i < NF; i++) if ($i == "cov:") c = $(i + 1)} END {print c}' "$log")
        echo "$t: ${execs:-?} execs, cov ${cov:-?}, corpus $(ls "$corpus" | wc -l) files, no finding"
    else
        rc=1
        echo "$t: FINDING (log $log)"
        grep -E 'ERROR|fuzz_(md|sc|tcp|kvjson|api|connect|etcd|lstream):|SUMMARY|Test unit written' "$log" | head -n 20 || true
    fi
done
exit $rc
