#!/usr/bin/env bash
# Builds or removes a lab of network namespaces (see `headroom-lab --help`).
#   scripts/lab.sh up   [--name NAME] [--servers N] [--clients M]
#   scripts/lab.sh down [--name NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin headroom-lab -q
exec target/release/headroom-lab "$@"
