#!/bin/sh
# Transmit ceiling: prtip sends 4,194,304 SYNs (a /16, ports 1-64) over a veth
# pair whose far end drops every frame in XDP, once per queue count given
# (default: 1 2), through AF_XDP and once through raw sockets, and prints the
# probes/s of the sending phase (the last progress line, before the final wait).
#
#   sudo benches/tx-ceiling/run.sh [QUEUES...]
#
# Everything runs in two network namespaces made here and removed at the end;
# no frame leaves them. The target's veth runs its NAPI in a kernel thread
# (threaded NAPI): otherwise the drop program runs in softirq on the sending
# CPU, inside prtip's own sendto, and the measurement is of both sides at once.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prtip=${PRTIP_BIN:-$here/../../target/release/prtip}
[ -x "$prtip" ] || { echo "build first: cargo build --release" >&2; exit 1; }
tmp=$(mktemp -d)
obj=$tmp/drop.bpf.o
clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$here/drop.bpf.c" -o "$obj"
queues=${*:-1 2}
max=1
for q in $queues; do [ "$q" -gt "$max" ] && max=$q; done

s=txc$$s; t=txc$$t
cleanup() { ip netns del $s 2>/dev/null || true; ip netns del $t 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add $s; ip netns add $t
ip link add txc0 numtxqueues "$max" numrxqueues "$max" netns $s type veth \
    peer name txc1 numtxqueues "$max" numrxqueues "$max" netns $t
ip -n $s addr add 10.200.0.1/24 dev txc0
ip -n $t addr add 10.200.0.2/24 dev txc1
ip -n $s link set txc0 up; ip -n $t link set txc1 up
ip -n $s route add 10.201.0.0/16 via 10.200.0.2
ip -n $s neigh replace 10.200.0.2 lladdr "$(ip -n $t -br link show txc1 | awk '{print $3}')" dev txc0 nud permanent
ip -n $t link set dev txc1 xdp obj "$obj" sec xdp
ip netns exec $t sh -c 'echo 1 > /sys/class/net/txc1/threaded'

rate() {
    ip netns exec $s "$prtip" -p 1-64 10.201.0.0/16 --retries 0 --wait 0.1 --status-json "$@" 2>&1 >/dev/null |
        grep '^{' | tail -1 | sed 's/.*"probes_per_s":\([0-9]*\).*/\1/'
}
for q in $queues; do
    echo "xdp, $q queue(s): $(rate --transport xdp --queues "$q") probes/s"
done
echo "raw: $(rate --transport raw) probes/s"
