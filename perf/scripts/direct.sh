#!/usr/bin/env bash
# pktgen -> sink over one veth pair between two namespaces, every engine and
# sink mode, SECS seconds each. Namespaces carry the pid and are deleted on
# exit, also on failure or Ctrl-C.
#
# usage: perf/scripts/direct.sh [SECS] [extra pktgen args...]
set -euo pipefail
SECS=${1:-3}
shift || true
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
for t in pktgen sink; do
	[[ -x "$BIN/$t" ]] || { echo "missing $BIN/$t: cargo build --release -p headroom-perf" >&2; exit 2; }
done
G=hrdg-$$ S=hrds-$$ VG=hrdg$$ VS=hrds$$
SINK_PID=""
cleanup() {
	[[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null || true
	ip netns del "$G" 2>/dev/null || true
	ip netns del "$S" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$G"
ip netns add "$S"
ip link add "$VG" netns "$G" type veth peer name "$VS" netns "$S"
ip -n "$G" link set "$VG" up
ip -n "$S" link set "$VS" up
ip -n "$S" addr add 198.18.1.1/24 dev "$VS"
MAC=$(ip netns exec "$S" cat "/sys/class/net/$VS/address")

run() { # engine sink-mode
	local out
	out=$(mktemp)
	if [[ $2 == udp ]]; then
		ip netns exec "$S" ethtool -K "$VS" gro on >/dev/null
		ip netns exec "$S" taskset -c 1 "$BIN/sink" -m udp --bind 198.18.1.1:9 -q 1 -d $((SECS + 5)) --json >"$out" 2>&1 &
	else
		ip netns exec "$S" taskset -c 1 "$BIN/sink" -i "$VS" -m "$2" -q 1 -d $((SECS + 5)) --json >"$out" 2>&1 &
	fi
	SINK_PID=$!
	sleep 1
	echo "== pktgen -e $1 -> sink -m $2"
	ip netns exec "$G" taskset -c 0 "$BIN/pktgen" -i "$VG" -e "$1" -d "$SECS" --flows 16 --dst-mac "$MAC" "${EXTRA[@]}" | head -2
	wait "$SINK_PID" || true
	SINK_PID=""
	grep -v '^{' "$out" | grep -v ready
	rm -f "$out"
	if [[ $2 == udp ]]; then ip netns exec "$S" ethtool -K "$VS" gro off >/dev/null; fi
}
EXTRA=("$@")
set --
for engine in live afxdp; do
	for mode in xdp afxdp udp; do
		run "$engine" "$mode"
	done
done
