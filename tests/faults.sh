#!/usr/bin/env bash
# faults.sh BUILD [SPEC]: runs the C suite with fault injection on
# (NXL_FAULT=SPEC, default all=0.01; docs/reliability.md) and judges the
# run by what matters under injected failures: cases may fail (calls fail
# on purpose), but none may crash, hang, or trip the sanitizers. BUILD
# should be an ASan+UBSan build (make faults uses build-asan). Prints the
# counts and exits 1 on a crash, a hang or a sanitizer report.
set -u
build=${1:-build-asan}
spec=${2:-all=0.01}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== C suite with NXL_FAULT=$spec (seed ${NXL_FAULT_SEED:-default})"
NXL_FAULT="$spec" "$build/tests/nxl_tests" >"$log" 2>&1
total=$(grep -cE '^(ok|FAIL|SKIP) ' "$log")
failed=$(grep -cE '^FAIL ' "$log")
crashed=$(grep -E 'killed by signal' "$log" | grep -vc 'timeout')
hung=$(grep -c '(timeout)' "$log")
san=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log")
echo "cases: $total, failed (allowed): $failed, crashed: $crashed, hung: $hung, sanitizer reports: $san"
if [ "$crashed" -gt 0 ] || [ "$hung" -gt 0 ] || [ "$san" -gt 0 ]; then
  grep -E -B2 -A25 'killed by signal|ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -200
  echo "faults: FAILED"
  exit 1
fi
echo "faults: ok"
