#!/usr/bin/env bash
# Installs the system packages Headroom builds and runs with (Debian/Ubuntu).
# Idempotent: does nothing when everything is present.
set -euo pipefail
PKGS=(clang llvm m4 make pkg-config libelf-dev zlib1g-dev libpcap-dev iproute2 ethtool iputils-ping socat procps)
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
