#!/usr/bin/env bash
# ICMP echo, UDP and TCP connect scans on the shared lab, prtip beside
# zmap, masscan and nmap, interleaved round by round (as ../shared/lab/bench.sh
# does for SYN scans). Every tool runs in the lab's scanner namespace.
#
#   sudo benches/probes.sh WORKLOAD [ROUNDS]       (ROUNDS default 3)
#
# WORKLOAD   what is scanned                                  expected found
#   icmp16   echo requests to 10.201.0.0/16 (every address    65536 up
#            of the target's AnyIP route answers)
#   udp16    UDP port 53 on 10.201.0.0/16, dnsmasq on the      65536 open
#            target answering on every address; every tool
#            sends at RATE (default 15000/s, what one dnsmasq
#            answering for all 65536 addresses keeps up with
#            here beside the scanner; above it drops queries)
#   udphost  UDP ports 1-65535 of 10.201.0.1: dnsmasq (53),    3 open
#            chronyd (123) and snmpd (161); the other 65532
#            answer port unreachable
#   connhost TCP connect (-sT) to ports 1-65535 of 10.201.0.1   15 open
#   conn80   TCP connect (-sT) to port 80 of 10.201.0.0/16      4096 open
#            (these two need the kernel target, lab.sh up: the
#            reflector answers SYNs, not the handshake's ACK)
#   banners  what answers on ports 21, 2222, 8800 and 8443 of    1024 banners
#            10.201.0.0/24, where vsftpd, sshd, nginx (HTTP)
#            and nginx (HTTPS) answer on every address: prtip
#            --banners (SYN over AF_XDP, and connect), masscan
#            --banners (from a spare address, 10.200.0.99, so
#            that the kernel does not reset its connections, as
#            its documentation asks) and nmap -sV. Found: ports
#            with a banner (prtip: grab "grabbed"; masscan: a
#            banner line; nmap: a version). Kernel target only.
#   banners16 what answers on port 8888 of 10.201.0.0/16, where  65536 banners
#            nginx answers HTTP on every address: prtip as for
#            banners, masscan --banners --hello=http (8888 is
#            no port it asks HTTP on by itself). Kernel target only.
#
# For the run, the target namespace sends ICMP errors without its rate limit
# (a closed UDP port answers, as an unfiltered host's would), and dnsmasq,
# chronyd and snmpd (or vsftpd, sshd and nginx) are started there.
# All of it is undone however the script ends.
#
# Environment: PRTIP (default target/release/prtip), TOOLS (default: every
# tool that can run the workload), RUN_TIMEOUT (seconds, default 120: a run
# killed at the limit counts the limit), WAIT (zmap and masscan's wait for
# late replies, default 1 s), MASSCAN_RATE (default 500000), NMAP_FLAGS
# (default -T4). Needs the shared lab (lab.sh up, kernel or reflector
# target: neither answers these probes from XDP), a release build, zmap,
# masscan, nmap, dnsmasq-base, chrony and snmpd.
#
# Prints one row per tool: median wall seconds, probes per wall second, the
# worst round's count of found hosts or open ports, expected, peak RSS.
set -euo pipefail

WL=${1:?usage: probes.sh icmp16|udp16|udphost|connhost|conn80|banners|banners16 [ROUNDS]}
ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
PRTIP=${PRTIP:-$HERE/../target/release/prtip}
LAB=${LAB:-$HERE/../../shared/lab/lab.sh}
WAIT=${WAIT:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
eval "$("$LAB" info)"

# version.bind TXT in class CHAOS (RFC 1035 §4.1, CHAOS class 3): what zmap
# sends, as masscan and prtip send a query of their own making to port 53.
DNS_QUERY=1234010000010000000000000776657273696f6e0462696e640000100003

case $WL in
  icmp16)  TGT=10.201.0.0/16; PORTS=;       PROBES=65536;  EXPECT=65536; CAN="prtip-xdp prtip-raw zmap masscan nmap"; RATE= ;;
  udp16)   TGT=10.201.0.0/16; PORTS=53;     PROBES=65536;  EXPECT=65536; CAN="prtip-xdp prtip-raw zmap masscan"; RATE=${RATE:-15000} ;;
  udphost) TGT=10.201.0.1;    PORTS=1-65535; PROBES=65535; EXPECT=3;     CAN="prtip-xdp prtip-raw masscan nmap"; RATE= ;;
  connhost) TGT=10.201.0.1;   PORTS=1-65535; PROBES=65535; EXPECT=15;    CAN="prtip-connect nmap"; RATE= ;;
  conn80)  TGT=10.201.0.0/16; PORTS=80;     PROBES=65536;  EXPECT=4096;  CAN="prtip-connect nmap"; RATE= ;;
  banners) TGT=10.201.0.0/24; PORTS=21,2222,8800,8443; PROBES=1024; EXPECT=1024; CAN="prtip-xdp prtip-connect masscan nmap"; RATE= ;;
  banners16) TGT=10.201.0.0/16; PORTS=8888; PROBES=65536; EXPECT=65536; CAN="prtip-xdp prtip-connect masscan"; RATE= ;;
  *) echo "probes.sh: unknown workload $WL" >&2; exit 2 ;;
esac

tools=()
for t in ${TOOLS:-$CAN}; do
  case " $CAN " in *" $t "*) ;; *) echo "# $t cannot run $WL" >&2; continue ;; esac
  case $t in
    prtip-*) [ -x "$PRTIP" ] || { echo "probes.sh: no prtip binary at $PRTIP" >&2; exit 1; } ;;
    *) command -v "$t" >/dev/null || { echo "probes.sh: $t is not installed" >&2; exit 1; } ;;
  esac
  tools+=("$t")
done

out=$(mktemp -d)
in_tgt() { ip netns exec "$LAB_TGT" "$@"; }
# Destroys every connection on the target but its listeners (TIME-WAIT ones
# cannot be, and cost nothing): see run_one.
clear_target() { in_tgt ss -K state connected >/dev/null 2>&1 || true; }
SYSCTLS=(net.ipv4.icmp_ratelimit net.ipv4.icmp_msgs_per_sec net.ipv4.icmp_msgs_burst)
declare -A saved
for s in "${SYSCTLS[@]}"; do saved[$s]=$(in_tgt sysctl -n "$s"); done
servers=()
cleanup() {
  for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
  for s in "${SYSCTLS[@]}"; do in_tgt sysctl -qw "$s=${saved[$s]}" || true; done
  rm -rf "$out"
}
trap cleanup EXIT
in_tgt sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000000 \
  net.ipv4.icmp_msgs_burst=100000000

if [ "$WL" = udp16 ] || [ "$WL" = udphost ]; then
  # Wildcard sockets: with the AnyIP route each answers on every address, from the address asked.
  ip netns exec "$LAB_TGT" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
    --pid-file="$out/dnsmasq.pid" --dns-forward-max=10000 >/dev/null 2>&1 &
  servers+=($!)
  printf 'allow all\nlocal stratum 8\ncmdport 0\nbindcmdaddress /\npidfile %s\n' "$out/chronyd.pid" >"$out/chrony.conf"
  ip netns exec "$LAB_TGT" chronyd -d -x -u root -f "$out/chrony.conf" >/dev/null 2>&1 &
  servers+=($!)
  echo "rocommunity public default" >"$out/snmpd.conf"
  ip netns exec "$LAB_TGT" snmpd -f -Lo -C -c "$out/snmpd.conf" -p "$out/snmpd.pid" udp:161 >/dev/null 2>&1 &
  servers+=($!)
  # Ready once dnsmasq answers on the first host (chronyd and snmpd start faster).
  for _ in $(seq 50); do
    ip netns exec "$LAB_SCAN" python3 -c "
import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.1)
s.sendto(bytes.fromhex('$DNS_QUERY'),('10.201.0.1',53)); s.recv(512)" 2>/dev/null && break
    sleep 0.1
  done
fi

if [ "${WL#banners}" != "$WL" ]; then
  mkdir -p "$out/empty"
  printf 'listen=YES\nlisten_port=21\nbackground=NO\nanonymous_enable=YES\nanon_root=%s\nlocal_enable=NO\nseccomp_sandbox=NO\nsecure_chroot_dir=%s\nrun_as_launching_user=YES\nmax_clients=2000\nmax_per_ip=2000\nidle_session_timeout=5\n' \
    "$out/empty" "$out/empty" >"$out/vsftpd.conf"
  ip netns exec "$LAB_TGT" vsftpd "$out/vsftpd.conf" >/dev/null 2>&1 &
  servers+=($!)
  ssh-keygen -q -t ed25519 -N '' -f "$out/hostkey"
  printf 'Port 2222\nListenAddress 0.0.0.0\nHostKey %s\nPidFile %s\nUsePAM no\nMaxStartups 2000\nLoginGraceTime 5\n' "$out/hostkey" "$out/sshd.pid" >"$out/sshd_config"
  mkdir -p /run/sshd
  ip netns exec "$LAB_TGT" /usr/sbin/sshd -D -f "$out/sshd_config" >/dev/null 2>&1 &
  servers+=($!)
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=prtip.bench -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
  cat >"$out/nginx.conf" <<NGINX
user root; worker_processes 1; pid $out/nginx.pid; error_log $out/nginx.log;
worker_rlimit_nofile 20000; events { worker_connections 16384; }
http { access_log off; client_body_temp_path $out/b; proxy_temp_path $out/p; fastcgi_temp_path $out/f;
  uwsgi_temp_path $out/u; scgi_temp_path $out/s; default_type text/html;
  server { listen 8800; location / { return 200 '<title>prtip bench</title>'; } }
  server { listen 8888 backlog=65535; location / { return 200 '<title>prtip bench</title>'; } }
  server { listen 8443 ssl; ssl_certificate $out/cert.pem; ssl_certificate_key $out/key.pem;
    location / { return 200 '<title>prtip bench</title>'; } } }
NGINX
  ip netns exec "$LAB_TGT" nginx -c "$out/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
  servers+=($!)
  # Nothing an earlier run left on the target is there for the first tool.
  clear_target
  sleep 1
fi

run_one() { # tool -> prints "wall_s maxrss_kb found"
  local t=$1 f=$out/res cmd
  case $t:$WL in
    prtip-connect:banners*) cmd="$PRTIP -sT -p $PORTS $TGT --banners -o ndjson --open" ;;
    prtip-*:banners*) cmd="$PRTIP -sS -p $PORTS $TGT --banners --transport ${t#prtip-} --interface $LAB_IF -o ndjson --open" ;;
    prtip-connect:*) cmd="$PRTIP -sT -p $PORTS $TGT -o ndjson --open" ;;
    prtip-*:icmp16) cmd="$PRTIP -s icmp $TGT --transport ${t#prtip-} --interface $LAB_IF -o ndjson --open" ;;
    prtip-*:*)      cmd="$PRTIP -s udp -p $PORTS $TGT --transport ${t#prtip-} --interface $LAB_IF -o ndjson --open" ;;
    zmap:icmp16)    cmd="zmap -M icmp_echoscan $TGT -i $LAB_IF -S $LAB_SRC_IP -G $LAB_GW_MAC -r 0 -b /dev/null --cooldown-time $WAIT -q -o -" ;;
    zmap:udp16)     cmd="zmap -M udp -p 53 --probe-args=hex:$DNS_QUERY $TGT -i $LAB_IF -S $LAB_SRC_IP -G $LAB_GW_MAC -r 0 -b /dev/null --cooldown-time $WAIT -q -o -" ;;
    masscan:icmp16) cmd="masscan $TGT --ping" ;;
    masscan:banners) cmd="masscan $TGT -p$PORTS --banners" ;;
    masscan:banners16) cmd="masscan $TGT -p$PORTS --banners --hello=http" ;;
    masscan:*)      cmd="masscan $TGT -pU:$PORTS" ;;
    nmap:icmp16)    cmd="nmap -sn -PE -n ${NMAP_FLAGS:--T4} $TGT -oG -" ;;
    nmap:conn*)     cmd="nmap -sT -n -Pn ${NMAP_FLAGS:--T4} -p $PORTS $TGT -oG -" ;;
    nmap:banners)   cmd="nmap -sV -n -Pn ${NMAP_FLAGS:--T4} -p $PORTS $TGT -oG -" ;;
    nmap:*)         cmd="nmap -sU -n -Pn ${NMAP_FLAGS:--T4} -p $PORTS $TGT -oG -" ;;
  esac
  case $t in
    prtip-connect) ;;
    prtip-*) [ -n "$RATE" ] && cmd="$cmd --rate $RATE" ;;
    zmap) [ -n "$RATE" ] && cmd="${cmd/-r 0/-r $RATE}" ;;
  esac
  # With --banners, masscan's own TCP stack needs an address this host's kernel does not reset from.
  local mip=$LAB_SRC_IP
  [ "${WL#banners}" != "$WL" ] && mip=10.200.0.99
  [ "$t" = masscan ] && cmd="$cmd --rate ${RATE:-${MASSCAN_RATE:-500000}} --adapter $LAB_IF --adapter-ip $mip --adapter-mac $LAB_SRC_MAC --router-mac $LAB_GW_MAC --wait $WAIT -oL -"
  # masscan's receive loop blocks until a frame arrives: a trickle of pings ends its --wait.
  local keepalive=
  if [ "$t" = masscan ]; then
    ip netns exec "$LAB_TGT" ping -q -i 0.2 "$LAB_SRC_IP" >/dev/null 2>&1 &
    keepalive=$!
  fi
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %M" -o "$out/time" timeout "$RUN_TIMEOUT" ip netns exec "$LAB_SCAN" $cmd >"$f" 2>"$out/err" || true
  [ -n "$keepalive" ] && { kill "$keepalive" 2>/dev/null; wait "$keepalive" 2>/dev/null || true; }
  # What a tool left behind on the target goes before the next tool's
  # turn. masscan leaves tens of thousands of connections from its spare
  # address, which nobody answers once it exits: established ones that
  # hold nginx's connections, half-open ones that fill the listeners'
  # queues, and orphans that retransmit for minutes; the next scan then
  # finds ports silent or filtered. They are destroyed, and the servers
  # let go of what they held (LoginGraceTime, idle_session_timeout 5 s).
  if [ "${WL#banners}" != "$WL" ]; then
    clear_target
    sleep 6
  fi
  local found
  case $t:$WL in
    prtip-*:icmp16) found=$(grep -c '"state":"up"' "$f" || true) ;;
    prtip-*:banners*) found=$(grep -c '"grab":"grabbed"' "$f" || true) ;;
    masscan:banners*) found=$(awk '$1 == "banner" { print $3, $4 }' "$f" | sort -u | wc -l) ;;
    nmap:banners)   found=$(grep -oE '[0-9]+/open/tcp//[^/]*//[^/]+/' "$f" | wc -l) ;;
    prtip-*:*)      found=$(grep -c '"state":"open"' "$f" || true) ;;
    zmap:*)         found=$(grep -cE '^[0-9]' "$f" || true) ;;
    masscan:*)      found=$(grep -c '^open' "$f" || true) ;;
    nmap:icmp16)    found=$(grep -c 'Status: Up' "$f" || true) ;;
    nmap:conn*)     found=$(grep -o '/open/tcp' "$f" | wc -l) ;;
    nmap:*)         found=$(grep -o '/open/udp' "$f" | wc -l) ;;
  esac
  echo "$(tail -n1 "$out/time") $found"
}

declare -A walls rss worst
for t in "${tools[@]}"; do walls[$t]=""; rss[$t]=0; worst[$t]=999999999; done
for _ in $(seq "$ROUNDS"); do
  for t in "${tools[@]}"; do
    read -r w m fnd < <(run_one "$t")
    walls[$t]="${walls[$t]} $w"
    (( m > rss[$t] )) && rss[$t]=$m
    (( fnd < worst[$t] )) && worst[$t]=$fnd
  done
done

printf '%-10s %9s %12s %9s %9s %9s  %s\n' tool wall_s probes/s found expected rss_MiB note
for t in "${tools[@]}"; do
  med=$(tr ' ' '\n' <<<"${walls[$t]}" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  pps=$(awk -v p="$PROBES" -v w="$med" 'BEGIN { if (w > 0) printf "%.0f", p / w; else print "-" }')
  note=""; (( worst[$t] < EXPECT )) && note=MISSED; (( worst[$t] > EXPECT )) && note=EXTRA
  printf '%-10s %9s %12s %9s %9s %9s  %s\n' "$t" "$med" "$pps" "${worst[$t]}" "$EXPECT" "$(( rss[$t] / 1024 ))" "$note"
done
