#!/usr/bin/env bash
# A few seconds of every benchmark scenario so the tooling never rots: the
# baselines and headroomd (classifying, and pacing an unconstrained pipe) as
# devices under test, a short pacing-accuracy run, and the kernel pktgen
# driver's detection. No thresholds: the numbers of a smoke run mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins -q
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for cfg in perf/dut/headroomd-classify.toml perf/dut/headroomd-pacer.toml; do
  target/debug/bench --smoke --out "$out" --dut headroomd \
    --headroomd-bin target/debug/headroomd --headroomd-config "$cfg"
done
target/debug/bench --smoke --out "$out" --dut xdpfwd,redirect,bridge,kernel-fwd
target/debug/headroom-lab bench-pacing --rates 5 --seconds 1 --out "$out"
rc=0; scripts/kernel-pktgen.sh -i lo -n 1 >/dev/null 2>&1 || rc=$?
case $rc in 0|2) ;; *) echo "kernel-pktgen.sh failed unexpectedly ($rc)" >&2; exit 1 ;; esac
echo "perf smoke: ok"
