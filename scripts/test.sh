#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, simulation and system tests
# (real namespaces, AF_XDP sockets and cgroups: needs root), and a perf smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the system tests need root (namespaces, XDP, cgroups)" >&2; exit 1; }
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
if [ -x scripts/perf-smoke.sh ]; then scripts/perf-smoke.sh; fi
