#!/usr/bin/env bash
# rig.sh - a multi-host test rig made of network namespaces joined by veth
# pairs. Every address lives inside namespaces this script creates
# (10.77.0.0/24 by default); nothing is routed anywhere else.
#
#   rig.sh up NAME [HOSTS] [--delay D] [--loss P] [--rate R] [--mtu M]
#             [--subnet S]
#       HOSTS 2: NAME-a (S.1) <-veth-> NAME-b (S.2)
#       HOSTS 3: NAME-a, NAME-b, NAME-c (S.1..3) on a bridge in NAME-hub
#       --delay/--loss add tc netem on every host link (a warning, not a
#       failure, when the kernel has no netem)
#       --rate shapes every host's egress with tc tbf (e.g. 40mbit; a
#       5 ms queue that a TCP flow overflows: the link drops packets and
#       TCP retransmits, iperf3 at 40mbit: 479 drops in 2 s);
#       netem, where it exists, goes below it. A warning when tbf is
#       missing; tests check with `tc qdisc show` before relying on it.
#   rig.sh down NAME        remove everything `up NAME` made (idempotent)
#   rig.sh addr NAME a|b|c  print that host's address
#   rig.sh run [--delay D] [--loss P] [--mtu M] -- CMD_A -- CMD_B [-- CMD_C]
#       (a CMD of one word is a shell script, of several words an argv)
#       make a rig with a unique name (pid suffix), run CMD_A in NAME-a,
#       CMD_B in NAME-b, ... in parallel (each sees NXL_RIG_NAME, NXL_RIG_SELF
#       = its address, NXL_RIG_PEER_A/B/C = every host's address), wait for
#       all, remove the rig (also when a command fails or we get a signal),
#       exit with the first non-zero status.
#
# Exits 77 (skip) with a reason when namespaces cannot be made here: not
# root, no `ip`, or the kernel refuses.
set -u

SUBNET=10.77.0
HOSTS=2
DELAY=""
LOSS=""
RATE=""
MTU=""

skip() { echo "rig: skip: $*" >&2; exit 77; }
die() { echo "rig: $*" >&2; exit 1; }

need_tools() {
  [ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
  command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"
}

letter() { case $1 in 1) echo a;; 2) echo b;; 3) echo c;; esac; }
addr_of() { case $1 in a) echo "$SUBNET.1";; b) echo "$SUBNET.2";; c) echo "$SUBNET.3";; *) die "no host $1";; esac; }

parse_opts() { # sets globals from --delay/--loss/--rate/--mtu/--subnet/--hosts
  while [ $# -gt 0 ]; do
    case $1 in
      --delay) DELAY=$2; shift 2;;
      --loss) LOSS=$2; shift 2;;
      --rate) RATE=$2; shift 2;;
      --mtu) MTU=$2; shift 2;;
      --subnet) SUBNET=$2; shift 2;;
      --hosts) HOSTS=$2; shift 2;;
      *) die "unknown option $1";;
    esac
  done
  case $HOSTS in 2|3) ;; *) die "HOSTS must be 2 or 3";; esac
}

netem() { # netem NS DEV: --rate (tbf at the root), then --delay/--loss
  local args="" where="root"
  if [ -n "$RATE" ]; then
    if tc -n "$1" qdisc add dev "$2" root handle 1: tbf rate "$RATE" \
         burst 16kb latency 5ms 2>/dev/null; then
      where="parent 1:1"
    else
      echo "rig: warning: tc tbf unavailable here; running without rate $RATE" >&2
    fi
  fi
  [ -n "$DELAY" ] && args="$args delay $DELAY"
  [ -n "$LOSS" ] && args="$args loss $LOSS"
  [ -z "$args" ] && return 0
  if ! ip -n "$1" link show "$2" >/dev/null 2>&1 ||
     ! tc -n "$1" qdisc add dev "$2" $where netem $args 2>/dev/null; then
    echo "rig: warning: tc netem unavailable here; running without$args" >&2
  fi
}

host_setup() { # host_setup NAME LETTER DEV
  local ns=$1-$2
  ip -n "$ns" link set lo up || return 1
  ip -n "$ns" addr add "$(addr_of "$2")/24" dev "$3" || return 1
  [ -n "$MTU" ] && { ip -n "$ns" link set "$3" mtu "$MTU" || return 1; }
  ip -n "$ns" link set "$3" up || return 1
  netem "$ns" "$3"
}

up() { # up NAME
  local name=$1 i l
  [ -n "$name" ] || die "up: no name"
  if ! ip netns add "$name-a" 2>/dev/null; then
    skip "cannot create network namespaces (ip netns add failed)"
  fi
  ip netns add "$name-b" || { down "$name"; return 1; }
  if [ "$HOSTS" = 2 ]; then
    ip link add veth0 netns "$name-a" type veth peer name veth0 netns "$name-b" ||
      { down "$name"; return 1; }
    host_setup "$name" a veth0 && host_setup "$name" b veth0 || { down "$name"; return 1; }
  else
    ip netns add "$name-c" && ip netns add "$name-hub" || { down "$name"; return 1; }
    ip -n "$name-hub" link add br0 type bridge && ip -n "$name-hub" link set br0 up ||
      { down "$name"; return 1; }
    for i in 1 2 3; do
      l=$(letter $i)
      ip link add veth0 netns "$name-$l" type veth peer name "p$l" netns "$name-hub" &&
        ip -n "$name-hub" link set "p$l" master br0 &&
        ip -n "$name-hub" link set "p$l" up &&
        host_setup "$name" "$l" veth0 || { down "$name"; return 1; }
    done
  fi
}

wait_running() { # wait_running NAME: every host link reports operstate UP
  # The kernel sets operstate (and IFF_RUNNING, which UCX requires of a
  # device) from a deferred worker that runs at most once a second, so a
  # link can lag its carrier by up to 1 s when rigs are made back to back.
  local name=$1 l i
  for l in a b c; do
    ip netns list | grep -q "^$name-$l\b" || continue
    for i in $(seq 1 100); do
      ip -n "$name-$l" -o link show veth0 2>/dev/null | grep -q "state UP" && break
      sleep 0.05
    done
    ip -n "$name-$l" -o link show veth0 2>/dev/null | grep -q "state UP" ||
      echo "rig: warning: veth0 of $name-$l not running after 5 s" >&2
  done
  return 0
}

down() { # down NAME: remove every namespace of the rig (veths go with them)
  local name=$1 s
  for s in a b c hub; do
    ip netns del "$name-$s" 2>/dev/null
  done
  return 0
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up)
    [ $# -ge 1 ] || die "usage: rig.sh up NAME [HOSTS] [options]"
    name=$1; shift
    if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then HOSTS=$1; shift; fi
    parse_opts "$@"
    need_tools
    up "$name" || die "could not set up rig $name"
    wait_running "$name"
    ;;
  down)
    [ $# -ge 1 ] || die "usage: rig.sh down NAME"
    need_tools
    down "$1"
    ;;
  addr)
    [ $# -ge 2 ] || die "usage: rig.sh addr NAME a|b|c"
    addr_of "$2"
    ;;
  run)
    opts=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] || die "usage: rig.sh run [options] -- CMD_A -- CMD_B"
    shift
    # A command of one word is a shell script (bash -c); several words are
    # an argv, quoted as given.
    cmds=(); cur=""; nw=0; first=""
    for a in "$@" --; do
      if [ "$a" = "--" ]; then
        [ $nw = 1 ] && cur=$first
        cmds+=("$cur"); cur=""; nw=0
      else
        [ $nw = 0 ] && first=$a
        cur="$cur ${a@Q}"; nw=$((nw + 1))
      fi
    done
    HOSTS=${#cmds[@]}
    parse_opts "${opts[@]+"${opts[@]}"}"
    need_tools
    name="nxlrig$$"
    pids=()
    cleanup() {
      local p
      for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null; done
      wait 2>/dev/null
      down "$name"
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    up "$name" || die "could not set up rig $name"
    wait_running "$name"
    export NXL_RIG_NAME=$name NXL_RIG_PEER_A=$(addr_of a) NXL_RIG_PEER_B=$(addr_of b)
    [ "$HOSTS" = 3 ] && export NXL_RIG_PEER_C=$(addr_of c)
    for i in $(seq 1 "$HOSTS"); do
      l=$(letter "$i")
      NXL_RIG_SELF=$(addr_of "$l") ip netns exec "$name-$l" bash -c "${cmds[$((i - 1))]}" &
      pids+=($!)
    done
    rc=0
    for p in "${pids[@]}"; do
      wait "$p"; s=$?
      [ $rc = 0 ] && rc=$s
    done
    pids=()
    exit $rc
    ;;
  *)
    sed -n '2,25p' "$0" >&2
    exit 2
    ;;
esac
