#!/usr/bin/env bash
# readme_examples.sh BUILD: compiles the C programs of README.md (every
# ```c block whose first line is "/* NAME.c - ..."), from the README text
# itself, against BUILD's library and the tree's headers, and runs them:
# prefill + decode as two processes (SHM), kv_tiers with the POSIX backend.
# Exits 0 when every program built and ran, 1 otherwise.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
lib=$(cd "$build/src" && pwd)
# A sanitizer build's library needs its runtime in the program too: build
# the examples with the build's compiler and -fsanitize flags.
cc=cc
san=$(sed -n 's/^NXL_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
bcc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
[ -n "$san" ] && [ -n "$bcc" ] && cc=$bcc

/usr/bin/python3 - "$top/README.md" "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"```c\n(.*?)```", text, re.S):
    m = re.match(r"/\* (\w+\.c) - ", block)
    if m:
        open(f"{sys.argv[2]}/{m.group(1)}", "w").write(block)
PY
for p in prefill decode kv_tiers; do
  if [ ! -f "$tmp/$p.c" ]; then
    echo "readme_examples: README.md has no $p.c block"; exit 1
  fi
  if ! "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$top/include" \
       ${san:+-fsanitize=$san} "$tmp/$p.c" -o "$tmp/$p" -L"$lib" -lnxl \
       -Wl,-rpath,"$lib"; then
    echo "readme_examples: $p.c does not build"; exit 1
  fi
done

"$tmp/prefill" 0 >"$tmp/prefill.out" 2>&1 &
pf=$!
for _ in $(seq 1 100); do
  [ -s "$tmp/prefill.out" ] && break
  sleep 0.1
done
read -r port addr len <"$tmp/prefill.out" || true
if ! timeout 30 "$tmp/decode" 127.0.0.1 "$port" "$addr" "$len"; then
  echo "readme_examples: decode failed"; cat "$tmp/prefill.out"; exit 1
fi
for _ in $(seq 1 100); do
  kill -0 $pf 2>/dev/null || break
  sleep 0.1
done
if kill -0 $pf 2>/dev/null; then
  echo "readme_examples: prefill did not exit after the decode finished"; exit 1
fi
if ! wait $pf; then
  echo "readme_examples: prefill failed"; cat "$tmp/prefill.out"; exit 1
fi
if ! TMPDIR="$tmp" DYN_KVBM_NIXL_BACKEND_POSIX=true timeout 60 "$tmp/kv_tiers"; then
  echo "readme_examples: kv_tiers failed"; exit 1
fi
echo "readme_examples: prefill/decode and kv_tiers built from README.md and ran"
