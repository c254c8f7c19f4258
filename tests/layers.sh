#!/bin/sh
# layers.sh BUILD - the layer test (issue 12): libnxl's archives pass
# scripts/check-layers.sh, and the check refuses wrong-way references made
# on purpose (util calling core, a backend calling md, kv calling an
# internal function of core), so it can fail. Ends with one
# "N passed, N failed, N skipped" line.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
check="$top/scripts/check-layers.sh"
src="$build/src"
P=0 F=0 S=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The real archives, in the order the build passes them.
set --
for a in "$src"/libnxl_*.a; do
  l=$(basename "$a" .a)
  set -- "$@" "${l#libnxl_}=$a"
done
if [ $# -lt 5 ]; then
  echo "FAIL layers: no layer archives in $src"; F=$((F + 1))
elif sh "$check" "$@" >"$tmp/real.log" 2>&1; then
  echo "ok   layers/real_archives ($# layers)"; P=$((P + 1))
else
  cat "$tmp/real.log"; echo "FAIL layers/real_archives"; F=$((F + 1))
fi

# wrong_way NAME LAYER SYMBOL EXPECT: an archive posing as LAYER that calls
# SYMBOL (defined by a real archive) must be refused with EXPECT printed.
wrong_way() {
  name=$1 layer=$2 sym=$3 expect=$4
  printf 'extern int %s(void);\nint nxl__posing_%s(void) { return %s(); }\n' \
    "$sym" "$name" "$sym" >"$tmp/$name.c"
  if ! cc -c -o "$tmp/$name.o" "$tmp/$name.c" 2>"$tmp/$name.cc" ||
     ! ar rcs "$tmp/lib_$name.a" "$tmp/$name.o"; then
    cat "$tmp/$name.cc"; echo "FAIL layers/$name: cannot build the probe"
    F=$((F + 1)); return
  fi
  # Replace the real archive of LAYER by the probe.
  set --
  for a in "$src"/libnxl_*.a; do
    l=$(basename "$a" .a); l=${l#libnxl_}
    if [ "$l" = "$layer" ]; then
      set -- "$@" "$l=$tmp/lib_$name.a"
    else
      set -- "$@" "$l=$a"
    fi
  done
  if sh "$check" "$@" >"$tmp/$name.log" 2>&1; then
    cat "$tmp/$name.log"; echo "FAIL layers/$name: the check accepted it"
    F=$((F + 1))
  elif grep -q "$expect" "$tmp/$name.log"; then
    echo "ok   layers/$name ($(head -n 1 "$tmp/$name.log"))"; P=$((P + 1))
  else
    cat "$tmp/$name.log"; echo "FAIL layers/$name: no \"$expect\""
    F=$((F + 1))
  fi
}

wrong_way util_calls_core util nxl_agent_name "uses nxl_agent_name of layer core"
wrong_way md_calls_memkind md nxl_memkind_device "of layer memkind"
if [ -f "$src/libnxl_be_tcp.a" ]; then
  wrong_way backend_calls_md be_tcp nxl__md_encode "of layer md"
  wrong_way backend_calls_backend be_tcp nxl__be_shm_ops "of layer be_shm"
else
  echo "SKIP layers/backend_calls_*: the TCP backend is not built"
  S=$((S + 2))
fi
# Any internal (nxl__) function core defines will do.
core_internal=$(nm -P -g "$src/libnxl_core.a" 2>/dev/null |
                awk '$2 == "T" && $1 ~ /^nxl__/ { print $1; exit }')
if [ -n "$core_internal" ]; then
  wrong_way kv_calls_core_internal kv "$core_internal" "of layer core"
else
  echo "FAIL layers/kv_calls_core_internal: core defines no nxl__ function"
  F=$((F + 1))
fi

# Core without loops: no file of core calls into a file that calls back
# into it, directly or around a cycle (tsort reports a loop).
nm -P -g -A "$src/libnxl_core.a" | awk '
  { m = $1; sub(/^.*\[/, "", m); sub(/\]:$/, "", m) }
  $3 != "U" { owner[$2] = m; next }
  { use[NR] = m " " $2 }
  END { for (i in use) { split(use[i], u, " ");
          if ((u[2] in owner) && owner[u[2]] != u[1]) print u[1], owner[u[2]] } }
' | sort -u >"$tmp/core.pairs"
if [ ! -s "$tmp/core.pairs" ]; then
  echo "FAIL layers/core_no_loops: no calls between core files found"
  F=$((F + 1))
elif tsort "$tmp/core.pairs" >/dev/null 2>"$tmp/core.tsort"; then
  echo "ok   layers/core_no_loops ($(wc -l <"$tmp/core.pairs") calls between files)"
  P=$((P + 1))
else
  cat "$tmp/core.tsort"; echo "FAIL layers/core_no_loops"; F=$((F + 1))
fi
echo "$P passed, $F failed, $S skipped"
