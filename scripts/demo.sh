#!/usr/bin/env bash
# Builds prtip and scans a demo target that this script sets up and removes:
#
#   prtipdemo-s (scanner) 10.77.0.1/24 --veth-- 10.77.0.2/24 prtipdemo-t (target)
#
# The target namespace answers for every address of 10.77.1.0/24 with its own
# kernel: ports 22, 80 and 443 are open everywhere, 8443 is filtered (dropped)
# on 10.77.1.128/25, everything else is closed. Nothing leaves the machine.
# Extra arguments go to prtip, e.g. scripts/demo.sh -o ndjson --open
# PRTIP_BIN=path uses that binary instead of building one (the docs test does).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (sudo scripts/demo.sh): it builds network namespaces" >&2; exit 1; }
scripts/setup.sh
if [ -z "${PRTIP_BIN:-}" ]; then
  cargo build --release --quiet
  PRTIP_BIN=./target/release/prtip
fi

S=prtipdemo-s T=prtipdemo-t
cleanup() {
  [ -n "${LISTENER:-}" ] && kill "$LISTENER" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$T" 2>/dev/null || true
}
cleanup
trap cleanup EXIT
ip netns add "$S"
ip netns add "$T"
ip link add prtipdemo0 netns "$S" type veth peer name prtipdemo1 netns "$T"
ip -n "$S" link set lo up
ip -n "$T" link set lo up
ip -n "$S" addr add 10.77.0.1/24 dev prtipdemo0
ip -n "$T" addr add 10.77.0.2/24 dev prtipdemo1
ip -n "$S" link set prtipdemo0 up
ip -n "$T" link set prtipdemo1 up
ip -n "$S" route add 10.77.1.0/24 via 10.77.0.2
ip -n "$T" route add local 10.77.1.0/24 dev lo
ip netns exec "$T" nft -f - <<'NFT'
table inet demo {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr 10.77.1.128/25 tcp dport 8443 drop
  }
}
NFT
ip netns exec "$T" python3 -c '
import socket, time
ls = []
for p in (22, 80, 443):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(1024); ls.append(s)
time.sleep(3600)
' &
LISTENER=$!
for _ in $(seq 50); do ip netns exec "$T" ss -ltnH | grep -q ':443 ' && break; sleep 0.1; done

echo "+ prtip -s syn -p 1-1024,8443 10.77.1.0/24 $*" >&2
ip netns exec "$S" "$PRTIP_BIN" -s syn -p 1-1024,8443 10.77.1.0/24 "$@"
