#!/usr/bin/env bash
# Soak: a 3-server pool under mixed TCP and UDP for an hour (not in CI),
# with `headroomctl reload` every 2 minutes and a peer's headroomd killed
# and restarted every 5 minutes. Samples each headroomd's RSS every 10 s and
# reports the RSS slope per node after a 5-minute warm-up, frame-ledger
# violations, the UDP job's count against what the client sent (exact),
# and failures the exchange declared beyond the restarts. Needs root
# (namespaces, XDP). The lab and every process are removed at the end, on
# error and on Ctrl-C.
# Usage: perf/soak.sh [--duration SECS] [other `headroom-lab soak` options]
#   (report in perf/results/<date>/soak.md; exits 1 when it found a problem)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the soak needs root (namespaces, XDP)" >&2; exit 1; }
name=hrsoak
named=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --name) name="${args[$((i + 1))]:-$name}"; named=1 ;;
    --name=*) name="${args[$i]#--name=}"; named=1 ;;
  esac
done
[ -n "$named" ] || set -- --name "$name" "$@"
cargo build --release -q --bin headroomd --bin headroomctl --bin headroom-lab
bin="${CARGO_TARGET_DIR:-target}/release"
pid=
cleanup() {
  trap - INT TERM EXIT
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # The soak tears its lab down on SIGTERM (and still writes its report).
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever is left (a soak killed outright): its namespaces and their processes.
  "$bin/headroom-lab" down --name "$name" >/dev/null 2>&1 || true
  rm -rf "${TMPDIR:-/tmp}/$name-soak"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT
"$bin/headroom-lab" soak "$@" &
pid=$!
set +e
wait "$pid"
rc=$?
set -e
pid=
exit "$rc"
