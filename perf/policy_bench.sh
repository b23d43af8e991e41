#!/usr/bin/env bash
# Pool policy benchmark: time from `headroomctl policy apply` to the version
# active on every server, in a 3-server lab (median and max over N applies),
# then the same in the deterministic simulation at 16-256 nodes with 1%
# loss. Needs root (network namespaces, XDP). Usage: perf/policy_bench.sh [applies]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
target/release/headroom-lab bench-policy --applies "${1:-20}"
cargo run --release -q -p headroom-control --example policy_rollout
