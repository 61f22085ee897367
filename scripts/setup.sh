#!/usr/bin/env bash
# Installs the system packages that building, testing and the demo need.
# Idempotent: does nothing when they are all present already.
set -euo pipefail
PACKAGES=(
  iproute2     # ip netns / ip link: the tests' and the demo's network namespaces
  nftables     # nft: filtered ports on test targets
  util-linux   # setpriv: the missing-privilege test
  python3      # the demo target's listeners
  sqlite3      # the tests query stored scans as a user would
  libxml2-utils  # xmllint: -oX output is validated against nmap's DTD
  nmap         # nmap.dtd, and the lab benchmark's comparison
  ndiff        # nmap's own XML differ reads -oX output
  iputils-ping # the XDP test pings through a running scan
  ethtool      # the latency test's delay line turns checksum offload off
  chromium     # the latency test renders the SVG plot headless
  gcc          # linker for cargo
  clang        # compiles the XDP program in bpf/ (build.rs)
  libelf-dev   # libbpf, built by libbpf-sys
  zlib1g-dev   # libbpf
  m4           # libbpf's build
  pkg-config   # libbpf-sys and libxdp-sys find their libraries
  dnsmasq-base # a real DNS server for the UDP scan tests
  chrony       # chronyd: a real NTP server for the UDP scan tests
  snmpd        # a real SNMP agent for the UDP scan tests
  openssh-server # sshd, vsftpd and nginx (HTTP and HTTPS): real services
  vsftpd         # for the banner tests
  nginx-light
  openssl        # the HTTPS test server's certificate
  postgresql     # --postgres: the tests run a throwaway cluster of their own
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${PRTIP_APT_UPDATE:-0}" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ "${#missing[@]}" -gt 0 ] && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust 1.85 or newer) is required" >&2; exit 1; }
