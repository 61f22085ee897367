//! The ICMP echo and UDP probe modules end to end, in network namespaces,
//! over both transports and both address families: ICMP sweeps against a
//! target whose silent and unreachable hosts are known, and UDP scans of
//! real DNS, NTP and SNMP servers (dnsmasq, chronyd, snmpd, from Debian's
//! packages) beside closed and filtered ports.

mod common;

use common::services::{self, Service};
use common::{Lab, Row, path_in, ports_in, rows_of, stderr_of, temp_dir};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn hosts(rows: &[Row], state: &str) -> BTreeSet<IpAddr> {
    rows.iter().filter(|r| r.state == state).map(|r| r.ip.parse().unwrap()).collect()
}

fn v4(a: u32) -> IpAddr {
    Ipv4Addr::from(0x0ac9_0000 + a).into()
}

/// 10.201.0.0/16: the target's kernel answers echo requests for the lower
/// /17, except 10.201.0.0/24, whose requests are dropped, and 10.201.1.0/24,
/// which is answered with host unreachable; the upper /17 is not local, and
/// its requests are dropped without a word.
#[test]
fn icmp_sweeps_of_a_16_find_exact_up_unreachable_and_down_hosts_on_both_transports() {
    let lab = Lab::new(true);
    lab.target_rules(
        "ip daddr 10.201.0.0/24 icmp type echo-request drop\n\
         ip daddr 10.201.1.0/24 icmp type echo-request reject with icmp type host-unreachable",
    );
    let up: BTreeSet<IpAddr> = (512..32768).map(v4).collect();
    let unreachable: BTreeSet<IpAddr> = (256..512).map(v4).collect();
    let down: BTreeSet<IpAddr> = (0..256).chain(32768..65536).map(v4).collect();
    let dir = temp_dir();
    let db = path_in(&dir, "scans.db");
    for transport in ["raw", "xdp"] {
        let base = path_in(&dir, transport);
        let args = [
            "-s",
            "icmp",
            "10.201.0.0/16",
            "--transport",
            transport,
            "-o",
            "ndjson",
            "--wait",
            "1",
            "-oA",
            &base,
            "--database",
            &db,
            "--store-silent",
        ];
        let out = lab.prtip(&args).output().unwrap();
        assert!(out.status.success(), "{transport}: {}", stderr_of(&out));
        let rows = rows_of(&out.stdout, "icmp");
        assert_eq!(rows.len(), 65536, "{transport}: one row per host");
        assert_eq!(hosts(&rows, "up"), up, "{transport}");
        assert_eq!(hosts(&rows, "unreachable"), unreachable, "{transport}");
        assert_eq!(hosts(&rows, "down"), down, "{transport}");
        for r in &rows {
            match r.state.as_str() {
                // Every echo reply brings its send time back.
                "up" => assert!(r.reason == "echo-reply" && r.ttl == Some(64) && r.rtt_us.is_some(), "{r:?}"),
                "unreachable" => assert_eq!(r.reason, "host-unreach", "{r:?}"),
                _ => assert!(r.reason == "no-response" && r.ttl.is_none(), "{r:?}"),
            }
        }
        let err = stderr_of(&out);
        assert!(err.contains("ICMP echo scan of 65536 hosts = 65536 probes"), "{err}");
        assert!(err.contains("32256 up, 256 unreachable, 33024 down"), "{err}");
        // The reports say it too: nmap's XML with each host's status, and grepable status lines.
        common::assert_valid_nmap_xml(&format!("{base}.xml"));
        let xml = std::fs::read_to_string(format!("{base}.xml")).unwrap();
        assert_eq!(xml.matches(r#"<status state="up" reason="echo-reply""#).count(), up.len());
        assert_eq!(xml.matches(r#"<status state="down" reason="host-unreach""#).count(), 256);
        assert!(!xml.contains("<port ") && !xml.contains("<scaninfo"), "a ping scan has no ports");
        let gnmap = std::fs::read_to_string(format!("{base}.gnmap")).unwrap();
        assert_eq!(gnmap.matches("\tStatus: Up").count(), up.len());
        let csv = std::fs::read_to_string(format!("{base}.csv")).unwrap();
        assert_eq!(csv.lines().filter(|l| l.starts_with("10.201.2.1,,icmp,,up,echo-reply,64,")).count(), 1);
    }
    // The database holds each host once per scan, by protocol and state.
    let stored = common::sql(&db, "SELECT proto, state, COUNT(*) FROM scan_results GROUP BY scan_id, proto, state");
    let each = "icmp|down|33024\nicmp|unreachable|256\nicmp|up|32256";
    assert_eq!(stored, [each, each].join("\n"));
}

/// fd00:201::/120: answered by the target's kernel, but for ::0-::f (dropped)
/// and ::10-::1f (answered with ICMPv6 administratively prohibited).
#[test]
fn icmpv6_sweeps_find_exact_up_unreachable_and_down_hosts_on_both_transports() {
    let lab = Lab::new(true);
    lab.target_rules(
        "ip6 daddr fd00:201::-fd00:201::f icmpv6 type echo-request drop\n\
         ip6 daddr fd00:201::10-fd00:201::1f icmpv6 type echo-request reject with icmpv6 type admin-prohibited",
    );
    let v6 = |a: u16| IpAddr::from(Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, a));
    for transport in ["raw", "xdp"] {
        let args = ["-sn", "fd00:201::/120", "--transport", transport, "-o", "ndjson", "--wait", "1"];
        let out = lab.prtip(&args).output().unwrap();
        assert!(out.status.success(), "{transport}: {}", stderr_of(&out));
        let rows = rows_of(&out.stdout, "icmp");
        assert_eq!(rows.len(), 256, "{transport}");
        assert_eq!(hosts(&rows, "up"), (32..256).map(v6).collect(), "{transport}");
        assert_eq!(hosts(&rows, "unreachable"), (16..32).map(v6).collect(), "{transport}");
        assert_eq!(hosts(&rows, "down"), (0..16).map(v6).collect(), "{transport}");
        assert!(rows.iter().filter(|r| r.state == "unreachable").all(|r| r.reason == "admin-prohibited"));
        assert!(rows.iter().filter(|r| r.state == "up").all(|r| r.rtt_us.is_some() && r.ttl == Some(64)));
    }
}

/// The target's 10.201.0.1 and fd00:201::1, with a DNS, an NTP and an SNMP
/// server on them; port 7000 dropped, 7001 answered with administratively
/// prohibited, and every other port closed (the kernel's port unreachable).
struct UdpTarget {
    lab: Lab,
    _dir: tempfile::TempDir,
    servers: Vec<Service>,
}

const UDP_PORTS: &str = "9,53,123,161,7000,7001";

fn udp_target() -> UdpTarget {
    let lab = Lab::new(true);
    lab.add_target_address("10.201.0.1/32");
    lab.add_target_address("fd00:201::1/128");
    lab.target_rules(
        "udp dport 7000 drop\n\
         ip daddr 10.201.0.1 udp dport 7001 reject with icmp type admin-prohibited\n\
         ip6 daddr fd00:201::1 udp dport 7001 reject with icmpv6 type admin-prohibited",
    );
    let dir = temp_dir();
    let ns = lab.target_ns.clone();
    let servers = vec![
        services::dnsmasq(&ns, dir.path(), &["10.201.0.1", "fd00:201::1"]),
        services::chronyd(&ns, dir.path(), &["10.201.0.1", "fd00:201::1"]),
        services::snmpd(&ns, dir.path(), &["udp:10.201.0.1:161", "udp6:[fd00:201::1]:161"]),
    ];
    // Each server is up once it answers the payload prtip sends it (its identifier zeroed).
    for port in [53u16, 123, 161] {
        let payload = prtip::probe::udp::payload::builtin(port).unwrap().bytes;
        for addr in ["10.201.0.1", "[fd00:201::1]"] {
            services::wait_for_answer(&lab.scan_ns, &format!("{addr}:{port}"), &payload);
        }
    }
    UdpTarget { lab, _dir: dir, servers }
}

/// The servers are found open by their answers to prtip's own payloads,
/// each reply matched by the identifier it echoes (DNS ID, NTP origin
/// timestamp, SNMP request-id) and timed; the closed, filtered and silent
/// ports get nmap's states. Both transports, both families, one set of
/// servers.
#[test]
fn udp_scans_find_real_dns_ntp_and_snmp_servers_and_exact_closed_filtered_and_silent_ports() {
    let mut t = udp_target();
    let dir = temp_dir();
    let db = path_in(&dir, "scans.db");
    for target in ["10.201.0.1", "fd00:201::1"] {
        for transport in ["raw", "xdp"] {
            let args = [
                "-sU",
                "-p",
                UDP_PORTS,
                target,
                "--transport",
                transport,
                "-o",
                "ndjson",
                "--wait",
                "1",
                "--database",
                &db,
                "--store-silent",
            ];
            let out = t.lab.prtip(&args).output().unwrap();
            let what = format!("{target} over {transport}");
            assert!(out.status.success(), "{what}: {}", stderr_of(&out));
            let rows = rows_of(&out.stdout, "udp");
            assert_eq!(rows.len(), 6, "{what}: {}", stderr_of(&out));
            assert!(rows.iter().all(|r| r.ip == target));
            assert_eq!(ports_in(&rows, "open"), [53, 123, 161], "{what}");
            assert_eq!(ports_in(&rows, "closed"), [9], "{what}");
            assert_eq!(ports_in(&rows, "filtered"), [7001], "{what}");
            assert_eq!(ports_in(&rows, "open|filtered"), [7000], "{what}");
            let reason = |p: u16| rows.iter().find(|r| r.port == p).unwrap().reason.clone();
            assert_eq!(
                [reason(53), reason(9), reason(7001), reason(7000)],
                ["udp-response", "port-unreach", "admin-prohibited", "no-response"],
                "{what}"
            );
            // Every reply is timed, from the send window's stamp of the try it answers.
            assert!(rows.iter().all(|r| r.rtt_us.is_some() == (r.port != 7000)), "{what}: {rows:?}");
            let err = stderr_of(&out);
            assert!(err.contains("3 open, 1 closed, 1 filtered, 1 open|filtered"), "{what}: {err}");
        }
    }
    let stored = common::sql(&db, "SELECT proto, state, COUNT(*) FROM scan_results GROUP BY proto, state");
    assert_eq!(stored, "udp|closed|4\nudp|filtered|4\nudp|open|12\nudp|open|filtered|4");
    // A payload of the user's replaces prtip's: its SNMP request with another
    // community of the same length, which snmpd does not answer.
    let hex: String =
        prtip::probe::udp::payload::builtin(161).unwrap().bytes.iter().map(|b| format!("{b:02x}")).collect();
    let public: String = b"public".iter().map(|b| format!("{b:02x}")).collect();
    let secret: String = b"secret".iter().map(|b| format!("{b:02x}")).collect();
    assert!(hex.contains(&public));
    let payload = format!("161:{}", hex.replacen(&public, &secret, 1));
    let args = ["-sU", "-p", "161", "10.201.0.1", "--udp-payload", &payload, "-o", "ndjson"];
    let out = t.lab.prtip(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(ports_in(&rows_of(&out.stdout, "udp"), "open|filtered"), [161], "{}", stderr_of(&out));
    for s in &mut t.servers {
        s.assert_running();
    }
}

/// `--top-ports` scans the most common ports of the scan's protocol: from
/// nmap's table, which CI installs with nmap.
#[test]
fn top_ports_scan_the_most_common_ports_of_the_protocol() {
    let lab = Lab::new(true);
    for (scan, proto) in [("-sS", "tcp"), ("-sU", "udp")] {
        let out = lab.prtip(&[scan, "--top-ports", "20", "10.201.0.1", "-o", "ndjson", "--wait", "0.5"]).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let rows = rows_of(&out.stdout, proto);
        let ports: BTreeSet<u16> = rows.iter().map(|r| r.port).collect();
        assert_eq!(ports.len(), 20, "{proto}: {ports:?}");
        let common = if proto == "tcp" { [80, 443] } else { [53, 161] };
        assert!(common.iter().all(|p| ports.contains(p)), "{proto}: {ports:?}");
    }
}
