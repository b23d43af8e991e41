#!/usr/bin/env bash
# The test suite, in two parts:
#   scripts/test.sh                 everything: formatting, lints, unit and
#                                   simulation tests, the system tests (real
#                                   namespaces, AF_XDP sockets and cgroups:
#                                   needs root) and a perf smoke run.
#   scripts/test.sh --unprivileged  formatting, lints, and the unit and
#                                   simulation tests of every crate: no root,
#                                   so lints gate wherever this runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in
  "") ;;
  --unprivileged) mode=unprivileged ;;
  *) echo "usage: $0 [--unprivileged]" >&2; exit 2 ;;
esac
if [ "$mode" = all ] && [ "$(id -u)" != 0 ]; then
  echo "the system tests need root (namespaces, XDP, cgroups); run $0 --unprivileged for the rest" >&2
  exit 1
fi
[ "$mode" = all ] && scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if [ "$mode" = unprivileged ]; then
  # Every crate's unit, simulation and doc tests; the root crate's system
  # tests (tests/) and the cgroup tests of the process scheduler need root.
  HEADROOM_SKIP_CGROUP_TESTS=1 cargo test --workspace --exclude headroom --no-fail-fast
  cargo test -p headroom --lib --bins --no-fail-fast
  exit 0
fi
cargo test --workspace --no-fail-fast
# The system tests that move traffic, again with the XDP fast path on.
HEADROOM_TEST_FAST_PATH=on cargo test -p headroom --no-fail-fast \
  --test traffic --test pipes --test director --test real_server --test fail_open
if [ -x scripts/perf-smoke.sh ]; then scripts/perf-smoke.sh; fi
