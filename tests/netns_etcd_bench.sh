#!/bin/sh
# netns_etcd_bench.sh - two nxl-bench processes on two "hosts" (network
# namespaces of tests/netns/rig.sh, joined by a veth pair) find each other
# through etcd alone and run a checked READ/WRITE sweep over TCP: a real
# etcd server runs in the first namespace on its address, rank 0 there,
# rank 1 in the second namespace; neither is told the other's address.
# Usage: tests/netns_etcd_bench.sh [BUILD_DIR]   (default: build)
# Exit 0 on success, 1 on a failure, 77 (skip, reason printed) without
# root/namespaces or without etcd.
set -u

BUILD=${1:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "$BUILD" && pwd)/tools/nxl-bench/nxl-bench
RIG=$TOP/tests/netns/rig.sh
NAME=nxeb$$
command -v etcd >/dev/null 2>&1 || { echo "skip: etcd is not installed (Debian: etcd-server)"; exit 77; }
[ -x "$BENCH" ] || { echo "netns_etcd_bench: $BENCH not built"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nxl-netns-etcd.XXXXXX") || exit 1
ETCD_PID=
cleanup() {
    [ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null
    "$RIG" down "$NAME" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$RIG" up "$NAME" 2 >"$TMP/rig.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
    echo "skip: $(cat "$TMP/rig.log")"
    exit 77
elif [ $rc -ne 0 ]; then
    cat "$TMP/rig.log"; exit 1
fi
A=$("$RIG" addr "$NAME" a)
B=$("$RIG" addr "$NAME" b)
EP=http://$A:2379

ip netns exec "$NAME-a" etcd --name nxeb --data-dir "$TMP/etcd" \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://$A:2380" \
    --initial-advertise-peer-urls "http://$A:2380" \
    --initial-cluster "nxeb=http://$A:2380" >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
i=0
until ip netns exec "$NAME-b" etcdctl --endpoints "$EP" endpoint health \
        >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$ETCD_PID" 2>/dev/null; then
        echo "FAIL etcd did not come up at $EP"; tail -5 "$TMP/etcd.log"; exit 1
    fi
    sleep 0.1
done

args="--etcd_endpoints $EP --benchmark_group g$$ --world_size 2 --backend TCP
  --op_type READ,WRITE --start_block_size 4K --max_block_size 4M
  --num_iter 20 --warmup_iter 2 --total_buffer_size 64M --check_consistency"
# shellcheck disable=SC2086
ip netns exec "$NAME-a" "$BENCH" $args --backend_params "bind_addr=$A" \
    >"$TMP/a.log" 2>&1 &
pa=$!
# shellcheck disable=SC2086
ip netns exec "$NAME-b" "$BENCH" $args --backend_params "bind_addr=$B" \
    >"$TMP/b.log" 2>&1 &
pb=$!
ra=0; rb=0
wait $pa || ra=$?
wait $pb || rb=$?
for s in a b; do echo "--- rank in $NAME-$s"; tail -14 "$TMP/$s.log"; done
if [ $ra -ne 0 ] || [ $rb -ne 0 ]; then
    echo "FAIL netns etcd pair: exit $ra / $rb"; exit 1
fi
if ! grep -q -- '--check_consistency: verified' "$TMP/a.log" "$TMP/b.log"; then
    echo "FAIL netns etcd pair: no consistency line"; exit 1
fi
echo "ok    two namespaces found each other through etcd at $EP (TCP $A <-> $B)"
