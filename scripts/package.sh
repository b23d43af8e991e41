#!/usr/bin/env bash
# Builds the Debian package: release binaries, man pages and shell
# completions generated from the real command lines (headroom-docgen), then
# cargo-deb (metadata in Cargo.toml's [package.metadata.deb]). Prints the
# path of the .deb (a -dbgsym .ddeb with the debug symbols lands beside it).
#   scripts/package.sh [OUT_DIR]     (default target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
command -v cargo-deb >/dev/null || {
  echo "cargo-deb not found: run scripts/install-deps.sh" >&2; exit 1; }
cargo build --release --locked -q -p headroom --bin headroomd --bin headroomctl --bin headroom-docgen
assets=target/release/assets
rm -rf "$assets"
target/release/headroom-docgen "$assets" >/dev/null
# Debian ships man pages gzip-compressed, without timestamps.
gzip -9n "$assets"/man/*.8
mkdir -p "$out"
cargo deb --no-build --locked -p headroom --output "$out" -q >/dev/null
ls -t "$out"/headroom_*.deb | head -1
