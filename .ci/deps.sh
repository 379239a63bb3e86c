#!/usr/bin/env bash
# Installs every Debian 12 package esad needs to build, run and test, if missing.
# Usage: .ci/deps.sh [build|test]   (test adds the interop peers and tools, and for the
# system tier systemd-nspawn, debootstrap and lintian)
set -euo pipefail
want=(cmake g++ make pkg-config libuv1-dev libc-ares-dev libssl-dev nlohmann-json3-dev
      libspdlog-dev libfmt-dev catch2 libtomlplusplus-dev libcli11-dev libsystemd-dev
      libedit-dev libidn2-dev libpcap-dev libmicrohttpd-dev)
if [ "${1:-build}" = test ]; then
    # librocksdb-dev: the test build has the opt-in rocksdb spool layout (-DESAD_ROCKSDB=ON)
    want+=(librocksdb-dev python3 swaks openssl postfix iproute2 strace systemd procps util-linux curl groff-base
           binutils systemd-container debootstrap lintian init-system-helpers
           python3-aiosmtpd python3-flufl.bounce libnss-wrapper clang libclang-rt-14-dev
           tshark chromium chromium-driver python3-selenium
           # the libraries of Exim's daemon, which is unpacked below, never installed
           libidn12 libgnutls30 libgnutls-dane0 libdb5.3 libnsl2 libpcre2-8-0 libcrypt1)
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then echo "run as root to install packages" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture: no (esad-capture does that).
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The interop tests run Exim 4 next to the installed Postfix: its Debian packages are
# downloaded and unpacked (dpkg -x) into a cache folder, never installed, so Postfix stays.
# tests/interop skips the Exim cases when this folder is missing.
if [ "${1:-build}" = test ]; then
    cache=${ESAD_INTEROP_CACHE:-/var/cache/esad-interop}
    if [ ! -x "$cache/exim/usr/sbin/exim4" ]; then
        if [ "$(id -u)" != 0 ]; then echo "run as root to unpack exim4 into $cache" >&2; exit 1; fi
        dl=$(mktemp -d)
        chown _apt "$dl" 2>/dev/null || true  # apt's download sandbox user
        (cd "$dl" && { apt-get download -q exim4-daemon-light exim4-base ||
                       { apt-get update -q && apt-get download -q exim4-daemon-light exim4-base; }; })
        rm -rf "$cache/exim.new"
        mkdir -p "$cache/exim.new"
        for deb in "$dl"/*.deb; do dpkg -x "$deb" "$cache/exim.new"; done
        # Run unprivileged from its -C configuration: no setuid bit on the private copy.
        chmod u-s "$cache/exim.new/usr/sbin/exim4"
        rm -rf "$dl" "$cache/exim"
        mv "$cache/exim.new" "$cache/exim"
        echo "exim4 unpacked into $cache/exim"
    fi
fi
