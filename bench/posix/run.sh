#!/bin/sh
# bench/posix/run.sh - the POSIX backend against fio on the same file, runs
# interleaved (fio, nxl, nxl, fio, ...) so that both see the same device
# weather; prints every run, the medians and the median per-round ratio.
#
#   bench/posix/run.sh [BUILD_DIR] [FILE] [ROUNDS] [SECONDS]
#
# CASES (environment) picks cases: read1 read16 write1 write16 rand32.
# FILE (default /tmp/nxl-posix-bench/f1g) is created with fio if missing
# (1 GiB). Cases: 1 MiB sequential read and write with O_DIRECT at queue
# depth 1 and 16, and 4 KiB random reads with O_DIRECT at queue depth 32
# (nxl: transfers of 64 x 1 MiB or 1024 x 4 KiB descriptors, two in
# flight, the backend's queue_depth set to fio's iodepth).
# Needs fio; O_DIRECT needs a file system that supports it (not tmpfs or
# overlay on older kernels): point FILE at one that does. Environment:
# FIO_EXTRA adds fio options (e.g. "--fixedbufs=1 --registerfiles=1", what
# nxl does by default); NXL_EXTRA adds bench options (e.g. "-a threads -j 32"
# or "-o fixed_buffers=0").
#
# Buffers: with O_DIRECT the device gets one segment per physically
# contiguous run of a buffer, and on the development VM's virtio disk that
# count, not the program, decided the comparison (docs/performance.md,
# "POSIX (issue 5)"). BUFFERS (environment) picks them, for both sides:
#   huge (default)  nxl: 2 MiB-aligned, MADV_HUGEPAGE (bench_map_huge);
#                   fio: --iomem_align=2M with GLIBC_TUNABLES=
#                   glibc.malloc.hugetlb=1, which makes its malloc mark the
#                   buffer MADV_HUGEPAGE (bench/posix/segments.py PID shows
#                   both on huge pages; needs THP "always" or "madvise")
#   pages           4 KiB pages as before: nxl -P (MAP_POPULATE), fio's
#                   plain malloc
#   equal           huge pages, and nxl's descriptors cycle through fio's
#                   buffer size (depth x block, -M depth) instead of a slot
#                   each (64-128 MiB): on the VM a 1 MiB read into memory
#                   last touched 64 MiB ago takes the device ~20% longer
#                   than one into the buffer just used, as fio's is
#   several, e.g. "pages huge equal": all in every round (order flipping),
#                   for before/after in one run; adds each kind's per-round
#                   ratios to the first kind's.
set -eu

BUILD=${1:-build}
FILE=${2:-/tmp/nxl-posix-bench/f1g}
ROUNDS=${3:-11}
SECS=${4:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/$BUILD/bench/nxl_posix_bench
BUFFERS=${BUFFERS:-huge}
T=/tmp/nxl-posix-bench

command -v fio >/dev/null || { echo "run.sh: fio not found" >&2; exit 1; }
for b in $BUFFERS; do
  case $b in
  huge | pages | equal) ;;
  *) echo "run.sh: BUFFERS: huge, pages, equal or several" >&2; exit 1 ;;
  esac
done
mkdir -p "$(dirname "$FILE")"
cmake --build "$ROOT/$BUILD" --target nxl_posix_bench >/dev/null
if [ ! -s "$FILE" ]; then
  fio --name=prep --filename="$FILE" --size=1G --rw=write --bs=1M \
      --ioengine=psync --direct=1 >/dev/null
fi
echo "file: $FILE on $(df -T "$FILE" | awk 'NR==2 {print $2, $1}')"

# fio_run runs fio and prints KiB/s and IOPS.
fio_run() { # buffers rw bs depth
  if [ "$1" != pages ]; then
    tun=glibc.malloc.hugetlb=1 al=--iomem_align=2M
  else
    tun=${GLIBC_TUNABLES:-} al=
  fi
  shift
  GLIBC_TUNABLES=$tun fio $al --name=b --filename="$FILE" --size=1G \
      --rw="$1" --bs="$2" --iodepth="$3" --ioengine=io_uring --direct=1 \
      --runtime="$SECS" --time_based ${FIO_EXTRA:-} --output-format=terse --terse-version=3 \
      2>/dev/null |
    awk -F';' -v rw="$1" '{ if (rw ~ /write/) { print $48, $49 }
                            else { print $7, $8 } }'
}

# nxl_run runs the bench and prints KiB/s and IOPS.
nxl_run() { # buffers mode bs depth blocks-per-xfer xfers
  case $1 in
  huge) pg= ;;
  pages) pg=-P ;;
  equal) pg="-M $4" ;;
  esac
  shift
  "$BIN" -f "$FILE" -m "$1" -b "$2" -q "$3" -n "$4" -r "$5" -d -t "$SECS" \
    $pg ${NXL_EXTRA:-} |
    sed -n 's/.*: \([0-9.]*\) MiB\/s, \([0-9]*\) IOPS.*/\1 \2/p' |
    awk '{ printf "%d %d\n", $1 * 1024, $2 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ratio prints a / b with three decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a / b }'; }

# put_vals keeps a round's fio and nxl IOPS of one buffer kind; get_vals
# prints them.
put_vals() { # kind fio nxl
  case $1 in
  pages) vp="$2 $3" ;;
  huge) vh="$2 $3" ;;
  equal) ve="$2 $3" ;;
  esac
}
get_vals() { # kind
  case $1 in
  pages) echo "$vp" ;;
  huge) echo "$vh" ;;
  equal) echo "$ve" ;;
  esac
}

# vs_first appends a kind's per-round ratios to the first kind's.
vs_first() { # first-fio first-nxl fio nxl kind
  ratio "$3" "$1" >>$T.$5.vsf
  ratio "$4" "$2" >>$T.$5.vsn
}

# run_case alternates fio and nxl (the order flips every round), for each
# buffer kind of BUFFERS (their order flips too), and reports per kind the
# median IOPS of each and the median of the per-round ratios: the device's
# speed drifts, so only runs next to each other are compared.
run_case() { # label rw bs depth blocks xfers
  first=$(echo $BUFFERS | awk '{ print $1 }')
  for b in $BUFFERS; do
    : >$T.$b.fio
    : >$T.$b.nxl
    : >$T.$b.ratio
    : >$T.$b.vsf
    : >$T.$b.vsn
  done
  i=0
  while [ $i -lt "$ROUNDS" ]; do
    if [ $((i % 2)) -eq 0 ]; then
      order=$BUFFERS
    else
      order=$(echo "$BUFFERS" | awk '{ for (k = NF; k > 0; k--) printf "%s ", $k }')
    fi
    for b in $order; do
      if [ $((i % 2)) -eq 0 ]; then
        f=$(fio_run $b "$2" "$3" "$4")
        n=$(nxl_run $b "$2" "$3" "$4" "$5" "$6")
      else
        n=$(nxl_run $b "$2" "$3" "$4" "$5" "$6")
        f=$(fio_run $b "$2" "$3" "$4")
      fi
      echo "  $1 round $i $b: fio $f | nxl $n (KiB/s IOPS)"
      fi_=$(echo "$f" | awk '{print $2}')
      ni_=$(echo "$n" | awk '{print $2}')
      echo "$fi_" >>$T.$b.fio
      echo "$ni_" >>$T.$b.nxl
      ratio "$ni_" "$fi_" >>$T.$b.ratio
      put_vals $b "$fi_" "$ni_"
    done
    for b in $BUFFERS; do
      vs_first $(get_vals $first) $(get_vals $b) $b
    done
    i=$((i + 1))
  done
  for b in $BUFFERS; do
    echo "$1 $b: median IOPS fio $(median <$T.$b.fio)," \
         "nxl $(median <$T.$b.nxl);" \
         "median nxl/fio ratio $(median <$T.$b.ratio)"
    if [ $b != "$first" ]; then
      echo "$1 $b/$first per round: fio $(median <$T.$b.vsf)," \
           "nxl $(median <$T.$b.vsn)"
    fi
  done
}

CASES=${CASES:-"read1 read16 write1 write16 rand32"}
for c in $CASES; do
  case $c in
  read1) run_case "read 1M qd1" read 1M 1 64 1 ;;
  read16) run_case "read 1M qd16" read 1M 16 64 2 ;;
  write1) run_case "write 1M qd1" write 1M 1 64 1 ;;
  write16) run_case "write 1M qd16" write 1M 16 64 2 ;;
  rand32) run_case "randread 4k qd32" randread 4k 32 1024 2 ;;
  *) echo "run.sh: unknown case $c" >&2; exit 1 ;;
  esac
done
for b in $BUFFERS; do
  rm -f $T.$b.fio $T.$b.nxl $T.$b.ratio $T.$b.vsf $T.$b.vsn
done
