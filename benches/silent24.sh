#!/usr/bin/env bash
# A /16 sweep of port 80 with one /24 silent: bench.sh's sweep80 on the
# shared lab while the target drops everything sent to 10.201.7.0/24, so a
# scanner must retry and wait for it (16 of its hosts are open: 4,080 open
# ports are found, not 4,096). prtip against zmap with a 1 s cooldown
# (bench.sh's WAIT=1), interleaved round by round.
#
#   sudo benches/silent24.sh [ROUNDS]     (default 3)
#
# Needs the shared lab (../shared/lab/lab.sh up, the kernel target), zmap and
# a release build. The drop rule is removed however the script ends.
set -euo pipefail

ROUNDS=${1:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB:-$HERE/../../shared/lab/lab.sh}
eval "$("$LAB" info)"
SILENT=10.201.7.0/24

nft() { ip netns exec "$LAB_TGT" nft "$@"; }
nft add table inet prtip_silent24
trap 'nft delete table inet prtip_silent24' EXIT
nft add chain inet prtip_silent24 input '{ type filter hook input priority -10; policy accept; }'
nft add rule inet prtip_silent24 input ip daddr "$SILENT" drop

echo "# $SILENT silent: 4080 open ports answer (bench.sh marks the 16 it cannot reach as MISSED)"
cd "$HERE/.."
TOOLS=${TOOLS:-"prtip-xdp prtip-raw zmap"} "$(dirname "$LAB")/bench.sh" sweep80 "$ROUNDS"
