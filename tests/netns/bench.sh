#!/usr/bin/env bash
# bench.sh [TESTS_BIN] [ROUNDS] - the TCP backend against iperf3 on the same
# path, interleaved so both see the same machine load: loopback, then
# across a veth pair between two namespaces (rig.sh; needs root). Prints
# iperf3's single-stream receiver rate, then the micro-bench of
# tests/test_tcp.c (NXL_TCP_BENCH=1; NXL_TCP_STREAMS picks num_streams).
#   TESTS_BIN defaults to build/tests/nxl_tests.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$top/build/tests/nxl_tests}
rounds=${2:-1}
rig=$top/tests/netns/rig.sh
secs=${IPERF_SECS:-3}

command -v iperf3 >/dev/null || { echo "bench: no iperf3"; exit 77; }
[ -x "$bin" ] || { echo "bench: no $bin"; exit 1; }

iperf_rate() { # iperf_rate CLIENT_OUTPUT -> "X Gbit/s"
  awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /bits\/sec/) print $(i-1), $i }' | tail -n 1
}

for r in $(seq 1 "$rounds"); do
  echo "== round $r: loopback"
  port=$((20000 + RANDOM % 20000))
  iperf3 -s -1 -p $port >/dev/null 2>&1 &
  sleep 0.3
  echo "iperf3 loopback single stream: $(iperf3 -c 127.0.0.1 -p $port -t $secs 2>&1 | iperf_rate)"
  wait
  NXL_TCP_BENCH=1 "$bin" tcp/bench_loopback 2>&1 | grep -E '^  |FAIL|SKIP'

  if [ "$(id -u)" = 0 ]; then
    echo "== round $r: veth between two namespaces"
    "$rig" run -- "iperf3 -s -1 -B 10.77.0.1 >/dev/null 2>&1" \
                -- "sleep 0.5; echo \"iperf3 veth single stream: \$(iperf3 -c 10.77.0.1 -t $secs 2>&1 | awk '/receiver/ { for (i = 1; i <= NF; i++) if (\$i ~ /bits\\/sec/) print \$(i-1), \$i }')\""
    NXL_TCP_BENCH=1 "$bin" tcp/bench_netns 2>&1 | grep -E '^  |FAIL|SKIP'
  fi
done
