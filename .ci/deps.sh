#!/usr/bin/env bash
# Installs every Debian 12 package esad needs to build, run and test, if missing.
# Usage: .ci/deps.sh [build|test]   (test adds the interop peers and tools)
set -euo pipefail
want=(cmake g++ make pkg-config libuv1-dev libc-ares-dev libssl-dev nlohmann-json3-dev
      libspdlog-dev libfmt-dev catch2 libtomlplusplus-dev libcli11-dev libsystemd-dev
      libedit-dev)
if [ "${1:-build}" = test ]; then
    want+=(python3 swaks openssl postfix iproute2 strace systemd procps util-linux curl groff-base
           clang libclang-rt-14-dev)
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then echo "run as root to install packages" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
