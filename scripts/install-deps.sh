#!/usr/bin/env bash
# install-deps.sh [PROFILE...]: installs the Debian packages a make target
# needs. Profiles (default: all):
#   build  compile the library, tools and Python extension (make all)
#   run    build + what `make run` needs (nxl-bench on SHM: nothing more)
#   test   run + what every suite needs (make test, make asan, make soak)
#   tsan   test + clang and its sanitizer runtime (make tsan)
#   fuzz   build + clang and libFuzzer (make fuzz)
#   bench  build + the external baselines (iperf3, ucx_perftest, fio) and
#          matplotlib for make bench's figures
#   all    everything above
# Idempotent: packages already present are not touched, and apt is not run
# at all when nothing is missing. Runs apt-get directly as root, through
# sudo otherwise.
set -euo pipefail

BUILD=(
  build-essential cmake ninja-build pkg-config git
  libucx-dev                        # UCX backend
  liburing-dev                      # POSIX backend (io_uring)
  zlib1g-dev libcurl4-openssl-dev libjson-c-dev libxxhash-dev
  libssl-dev                        # libcrypto: side-channel HMAC
  python3 python3-dev               # the nxl Python extension
)
BENCH=(
  iperf3 ucx-utils                  # TCP and UCX baselines (iperf3, ucx_perftest)
  fio                               # nxl-bench --backend POSIX: the fio io_uring baseline
  iproute2                          # make bench's TCP table: the network-namespace rig
  python3-matplotlib                # make bench: one PNG per table
)
TEST=(
  "${BENCH[@]}"
  python3-pytest python3-numpy python3-torch
  python3-msgpack python3-pil python3-pydantic  # nxl.embedding, nxl.media, wire-form tests
  procps                            # ps/pgrep in tests
  gdb                               # the soak's backtraces of a hung agent
  clang-format                      # scripts/check-format.sh (clang-format 14)
  etcd-server etcd-client           # the etcd metadata store's tests
)
CLANG=(clang libclang-rt-14-dev)    # libFuzzer and ThreadSanitizer

want=()
[ $# -gt 0 ] || set -- all
for profile in "$@"; do
  case $profile in
    build | run) want+=("${BUILD[@]}") ;;
    test) want+=("${BUILD[@]}" "${TEST[@]}") ;;
    tsan) want+=("${BUILD[@]}" "${TEST[@]}" "${CLANG[@]}") ;;
    fuzz) want+=("${BUILD[@]}" "${CLANG[@]}") ;;
    bench) want+=("${BUILD[@]}" "${BENCH[@]}") ;;
    all) want+=("${BUILD[@]}" "${TEST[@]}" "${CLANG[@]}") ;;
    *)
      echo "install-deps: unknown profile '$profile' (build, run, test, tsan, fuzz, bench, all)" >&2
      exit 2
      ;;
  esac
done

missing=()
for p in $(printf '%s\n' "${want[@]}" | sort -u); do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and no sudo: install these as root: ${missing[*]}" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
