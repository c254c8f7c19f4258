#!/usr/bin/env bash
# check-format.sh [--fix]: every C file of the tree against .clang-format
# (clang-format 14, STYLE.md 3.10). Without --fix, prints the files that
# differ and ends with a "N passed, N failed, N skipped" line (one check);
# with --fix, rewrites them in place. Exit 77 (skip) without clang-format
# 14, since another version formats differently.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
fmt=
for c in clang-format-14 clang-format; do
  if command -v "$c" >/dev/null 2>&1 &&
     "$c" --version 2>/dev/null | grep -q 'version 14\.'; then
    fmt=$c; break
  fi
done
if [ -z "$fmt" ]; then
  echo "SKIP format: clang-format 14 is not installed (apt-get install clang-format)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 77
fi
files=$(git ls-files -- '*.c' '*.h' 2>/dev/null || find src include tests tools bench fuzz python -name '*.[ch]')
if [ "${1:-}" = "--fix" ]; then
  printf '%s\n' $files | xargs "$fmt" -i
  exit 0
fi
bad=0
for f in $files; do
  if ! "$fmt" "$f" | cmp -s - "$f"; then
    echo "format: $f differs from .clang-format (scripts/check-format.sh --fix)"
    bad=$((bad + 1))
  fi
done
if [ "$bad" -gt 0 ]; then
  echo "FAIL format: $bad file(s)"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "ok   format: $(printf '%s\n' $files | wc -l) files"
echo "1 passed, 0 failed, 0 skipped"
