#!/usr/bin/env bash
# Long stability run of the goal loop against the deterministic queueing
# model (not in CI): two goal jobs on one core with load steps, then the
# pool-size sweep. Usage: perf/goal_stability.sh [periods] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p headroom-control --example goal_sim -- "${1:-50000}" "${2:-42}"
