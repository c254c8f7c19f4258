#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages NXL builds and tests with.
# Idempotent: packages already present are not touched, and apt is not run at
# all when nothing is missing. Uses sudo when not root.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev          # libFuzzer + sanitizers (make fuzz, make asan)
  libucx-dev ucx-utils              # UCX backend and ucx_perftest baseline
  liburing-dev                      # POSIX backend (io_uring)
  zlib1g-dev libcurl4-openssl-dev libjson-c-dev libxxhash-dev
  libssl-dev                        # libcrypto: side-channel HMAC
  iproute2 iperf3                   # multi-host rig and its baseline
  python3 python3-pytest python3-numpy
  python3-dev python3-torch         # the nxl Python package (headers) and its torch tests
  python3-msgpack python3-pil python3-pydantic  # nxl.embedding (nixl-write), nxl.media, wire-form tests
  procps                            # ps/pgrep in tests
  etcd-server etcd-client           # the etcd metadata store's tests
  fio                               # nxl-bench --backend POSIX: the fio io_uring baseline
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
