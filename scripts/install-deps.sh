#!/usr/bin/env bash
# Installs the system packages Headroom builds and runs with (Debian/Ubuntu).
# Idempotent: does nothing when everything is present.
set -euo pipefail
# systemd (systemd-analyze), man-db, dpkg-dev (dpkg-shlibdeps) and binutils (strip, objcopy) are
# for the Debian package and its test; util-linux has setpriv (the unit's capabilities); nftables
# holds the fail-open VIP guard (src/vip_guard.rs); chromium and chromium-driver run the web
# console's browser test (tests/console/).
PKGS=(clang llvm m4 make pkg-config libelf-dev zlib1g-dev libpcap-dev iproute2 ethtool iputils-ping socat procps iperf3
      systemd man-db dpkg-dev binutils util-linux nftables chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
# cargo-deb builds the Debian package (scripts/package.sh); built from crates.io once.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
