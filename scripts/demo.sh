#!/usr/bin/env bash
# Installs what is needed, builds Headroom, and runs the demo: a lab of three
# servers and two clients in network namespaces, headroomd on every server
# with the embedded default configuration, real TCP and UDP traffic, and a
# report of what each server saw. Everything is torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the demo needs root (namespaces, XDP)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --bins
exec target/release/headroom-lab demo "$@"
