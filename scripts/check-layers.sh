#!/bin/sh
# check-layers.sh - fail when a layer of libnxl uses a layer it may not.
#
# usage: check-layers.sh LAYER=ARCHIVE...
#   e.g. check-layers.sh util=src/libnxl_util.a md=src/libnxl_md.a ...
#
# The layers and what each may use (../shared/DESIGN.md, section 1):
#
#   util                       nothing of ours
#   md, memkind, be_<name>     util
#   core                       util, md, memkind, every be_<name>
#   kv                         util; the public functions (nxl_*) of core
#                              and memkind
#   connect                    util, md; the public functions of core and
#                              memkind
#
# Each archive's undefined symbols are looked up among the symbols the
# other archives define; a symbol found in a layer the table does not allow
# is a wrong-way dependency, printed with the object that uses it. A call
# through a public header compiles and links, so this check, run by the
# build after the archives are made, is what refuses it. Exit 0 when every
# reference is allowed, 1 otherwise, 2 on bad usage.
set -eu

if [ $# -eq 0 ]; then
  echo "usage: check-layers.sh LAYER=ARCHIVE..." >&2
  exit 2
fi
NM=${NM:-nm}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

for pair in "$@"; do
  layer=${pair%%=*}
  ar=${pair#*=}
  if [ "$layer" = "$pair" ] || [ ! -f "$ar" ]; then
    echo "check-layers: bad argument or missing archive: $pair" >&2
    exit 2
  fi
  # "archive[member]: symbol TYPE value size" -> "layer member symbol TYPE"
  "$NM" -P -g -A "$ar" | awk -v L="$layer" '
    { m = $1; sub(/^.*\[/, "", m); sub(/\]:$/, "", m); print L, m, $2, $3 }'
done >"$tmp"

awk '
  # allowed(user, owner, sym): the table in the header comment.
  function allowed(u, o, s,    pub) {
    if (u == o || o == "util") return 1
    pub = (substr(s, 1, 5) != "nxl__")
    if (u == "core") return (o == "md" || o == "memkind" || o ~ /^be_/)
    if (u == "kv") return (pub && (o == "core" || o == "memkind"))
    if (u == "connect")
      return (o == "md" || (pub && (o == "core" || o == "memkind")))
    return 0
  }
  NR == FNR {
    if ($4 != "U" && $4 != "w" && $4 != "v") owner[$3] = $1
    next
  }
  $4 == "U" && ($3 in owner) && !allowed($1, owner[$3], $3) {
    printf "layer %s (%s) uses %s of layer %s\n", $1, $2, $3, owner[$3]
    bad++
  }
  END {
    if (bad) {
      printf "check-layers: %d wrong-way reference(s); see the table in " \
             "scripts/check-layers.sh (DESIGN.md section 1)\n", bad
      exit 1
    }
  }
' "$tmp" "$tmp"
