#!/usr/bin/env bash
# Flow director benchmark: established-flow packet rate and new connections
# per second through the director vs plain forwarding (same lab, same run,
# interleaved), and owner failover time. Needs root (network namespaces,
# XDP). Usage: perf/director_bench.sh [seconds-per-measurement]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin headroomd
cargo build --release -p headroom-lab --example director_bench
exec target/release/examples/director_bench target/release/headroomd "${1:-4}"
