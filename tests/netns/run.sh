#!/usr/bin/env bash
# run.sh [BUILD] - the multi-host checks: the C suite's cases that run
# across network namespaces (tcp/netns*: a target in NAME-a, the initiator
# in NAME-b, made by rig.sh; conformance/<NAME>@netns/*: the conformance
# cases with the peer in NAME-b). They are part of `nxl_tests` already;
# this runs just them. Ends with the harness's "N passed, N failed, N
# skipped" line; exits 77 where namespaces cannot be made (not root).
# For numbers against iperf3 use bench.sh.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build;; esac
[ "$(id -u)" = 0 ] || { echo "netns: skip: needs root"; exit 77; }
command -v ip >/dev/null 2>&1 || { echo "netns: skip: no ip"; exit 77; }
exec "$build/tests/nxl_tests" tcp/netns @netns/
