#!/usr/bin/env bash
# Drive Linux kernel pktgen (/proc/net/pktgen) with the same parameters as
# headroom's `pktgen` binary, for kernels that have it.
#
# Exit codes: 0 ok, 1 pktgen run failed, 2 kernel pktgen unavailable
# (module missing / /proc/net/pktgen absent), 64 usage error.
#
# Example:
#   scripts/kernel-pktgen.sh -i veth0 -n 1000000 -s 60 -d 198.18.1.1 -m 02:00:00:00:00:02
set -euo pipefail

usage() {
	cat <<USAGE
usage: $0 -i DEV [-n COUNT] [-s SIZE] [-d DST_IP] [-m DST_MAC] [-S SRC_IP_MIN-SRC_IP_MAX]
          [-p SRC_PORT_MIN-SRC_PORT_MAX] [-P DST_PORT] [-r RATE_PPS] [-b BURST] [-t THREADS]
  -i DEV      device (required)         -n COUNT   frames per thread (0 = forever; default 1000000)
  -s SIZE     frame size w/o FCS (60)   -d DST_IP  destination (198.18.1.1)
  -m DST_MAC  destination MAC           -S RANGE   source address range
  -p RANGE    source port range         -P PORT    destination port (9)
  -r PPS      rate limit per thread     -b BURST   clone_skb/burst (1)
  -t THREADS  kernel threads (1)
USAGE
}

DEV="" COUNT=1000000 SIZE=60 DST=198.18.1.1 DMAC="" SRC="" SPORT="" DPORT=9 RATE=0 BURST=1 THREADS=1
while getopts "i:n:s:d:m:S:p:P:r:b:t:h" o; do
	case "$o" in
	i) DEV=$OPTARG ;; n) COUNT=$OPTARG ;; s) SIZE=$OPTARG ;; d) DST=$OPTARG ;;
	m) DMAC=$OPTARG ;; S) SRC=$OPTARG ;; p) SPORT=$OPTARG ;; P) DPORT=$OPTARG ;;
	r) RATE=$OPTARG ;; b) BURST=$OPTARG ;; t) THREADS=$OPTARG ;;
	h) usage; exit 0 ;; *) usage >&2; exit 64 ;;
	esac
done
[[ -n "$DEV" ]] || { echo "error: -i DEV is required" >&2; usage >&2; exit 64; }
for v in COUNT SIZE DPORT RATE BURST THREADS; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a number, got '${!v}'" >&2; exit 64; }
done

if [[ ! -d /proc/net/pktgen ]]; then
	if ! modprobe pktgen 2>/dev/null || [[ ! -d /proc/net/pktgen ]]; then
		echo "kernel pktgen is not available on this kernel ($(uname -r)):" \
			"'modprobe pktgen' failed or /proc/net/pktgen is missing." >&2
		echo "Use the headroom generator instead: target/release/pktgen -i $DEV -e live ..." >&2
		exit 2
	fi
fi
[[ -e "/sys/class/net/$DEV" ]] || { echo "error: no device $DEV in this network namespace" >&2; exit 64; }

pgset() { # file command
	echo "$2" >"$1"
	if ! grep -q "Result: OK" "$1" 2>/dev/null && grep -q "Result:" "$1" 2>/dev/null; then
		echo "pktgen: '$2' -> $(grep Result: "$1")" >&2
	fi
}

CPUS=$(nproc)
[[ "$THREADS" -le "$CPUS" ]] || { echo "error: -t $THREADS exceeds $CPUS CPUs" >&2; exit 64; }
cleanup() { echo "reset" >/proc/net/pktgen/pgctrl 2>/dev/null || true; }
trap cleanup EXIT

for ((t = 0; t < THREADS; t++)); do
	pgset /proc/net/pktgen/kpktgend_$t "rem_device_all"
	pgset /proc/net/pktgen/kpktgend_$t "add_device $DEV@$t"
	f=/proc/net/pktgen/$DEV@$t
	pgset "$f" "count $COUNT"
	pgset "$f" "pkt_size $SIZE"
	pgset "$f" "dst $DST"
	pgset "$f" "udp_dst_min $DPORT"
	pgset "$f" "udp_dst_max $DPORT"
	pgset "$f" "burst $BURST"
	[[ -n "$DMAC" ]] && pgset "$f" "dst_mac $DMAC"
	if [[ -n "$SRC" ]]; then pgset "$f" "src_min ${SRC%-*}"; pgset "$f" "src_max ${SRC#*-}"; fi
	if [[ -n "$SPORT" ]]; then pgset "$f" "udp_src_min ${SPORT%-*}"; pgset "$f" "udp_src_max ${SPORT#*-}"; fi
	[[ "$RATE" -gt 0 ]] && pgset "$f" "ratep $RATE"
done
echo "start" >/proc/net/pktgen/pgctrl || { echo "pktgen run failed" >&2; exit 1; }
for ((t = 0; t < THREADS; t++)); do
	echo "== $DEV@$t"
	grep -A2 "Result:" "/proc/net/pktgen/$DEV@$t"
done
