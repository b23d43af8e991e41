#!/usr/bin/env bash
# Deployment disruption: the longest gap in a 1 ms ping and in a TCP stream
# while `headroomctl attach` and `headroomctl detach` put a lab server's host
# stack behind headroomd's interfaces and back. Needs root (namespaces).
# Usage: perf/deploy_gap.sh [rounds]   (report in perf/results/<date>/deploy-gap.md)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -q
exec target/release/headroom-lab bench-deploy --rounds "${1:-5}"
