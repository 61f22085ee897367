//! IPv6 end to end, over both transports: the lab's fd00:201::/113 is answered
//! by the target namespace's own kernel, fd00:201::8000/113 is routed there
//! and dropped without a word, and listeners and nftables rules set the rest.
//! Results name addresses in std's compressed form ("fd00:201::5"), in every
//! output format and the database, and an interrupted IPv6 scan resumes.

mod common;

use common::{
    Lab, ONE_HOST_OPEN, Row, SCANNER_IP6, TARGET_IP6, TARGET_NET6, assert_files_hold, assert_one_host_truth_of,
    ports_in, rows, sql, stderr_of,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

/// The IPv6 twin of `common::one_host_target`'s 10.201.0.1.
const ONE_HOST: &str = "fd00:201::5";

/// `ONE_HOST`: `ONE_HOST_OPEN` open, 7000 silently dropped, 7001 answered with
/// ICMPv6 administratively prohibited, every other port closed.
fn one_host_target(lab: &mut Lab) {
    lab.listen(&ONE_HOST_OPEN);
    lab.target_rules(
        "ip6 daddr fd00:201::5 tcp dport 7000 drop\n\
         ip6 daddr fd00:201::5 tcp dport 7001 reject with icmpv6 type admin-prohibited",
    );
}

fn full_port_scan(transport: &str) {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let out = lab
        .prtip(&["-s", "syn", "-p-", ONE_HOST, "--transport", transport, "-o", "ndjson", "--wait", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    if transport == "xdp" {
        assert!(err.contains("(AF_XDP, copy mode, 1 queue)"), "{err}");
    }
    let rows = rows(&out.stdout);
    assert_one_host_truth_of(&rows, ONE_HOST);
    // The hop limit is reported as the TTL; every reply brings its send time back.
    assert!(rows.iter().filter(|r| r.state == "open").all(|r| r.ttl == Some(64)));
    assert!(rows.iter().all(|r| r.rtt_us.is_some() == (r.port != 7000)));
    assert!(err.contains("6 open, 65527 closed, 2 filtered"), "{err}");
}

#[test]
fn full_port_scan_of_one_ipv6_host_over_raw_sockets_finds_exact_truth() {
    full_port_scan("raw");
}

#[test]
fn full_port_scan_of_one_ipv6_host_over_af_xdp_finds_exact_truth() {
    full_port_scan("xdp");
}

/// A connect scan of the IPv6 host: the kernel's own handshakes, the same
/// truth. The kernel does not end a connecting socket for ICMPv6's
/// administratively prohibited: 7001 times out, filtered as it should be.
#[test]
fn connect_scan_of_one_ipv6_host_finds_exact_truth() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let out = lab.prtip(&["-sT", "-p-", ONE_HOST, "-o", "ndjson", "--wait", "1"]).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    let rows = rows(&out.stdout);
    assert_eq!(ports_in(&rows, "open"), ONE_HOST_OPEN);
    assert_eq!(ports_in(&rows, "filtered"), [7000, 7001]);
    assert_eq!(rows.len(), 65535);
    assert!(rows.iter().all(|r| r.ip == ONE_HOST));
    let reason = |p: u16| rows.iter().find(|r| r.port == p).unwrap().reason.clone();
    assert_eq!([reason(80), reason(7000), reason(7001)], ["conn-refused", "no-response", "no-response"]);
    assert!(err.contains("6 open, 65527 closed, 2 filtered"), "{err}");
}

const SWEEP_PORTS: &str = "22,23,25,80";

/// `TARGET_NET6` on `SWEEP_PORTS`: in the local half 22 is open, 23 closed,
/// 25 dropped by nftables, and 80 open where the last hex digit is 0 and
/// closed elsewhere; the other half is silent on every port.
fn sweep_target(lab: &mut Lab) {
    lab.listen(&[22, 80]);
    lab.target_rules("tcp dport 25 drop\ntcp dport 80 ip6 daddr & ::f != :: reject with tcp reset");
}

/// What `sweep_target` answers for the host part `host` of fd00:201::/112 on `port`.
fn sweep_truth(host: u16, port: u16) -> (&'static str, &'static str) {
    const SILENT: (&str, &str) = ("filtered", "no-response");
    match port {
        _ if host >= 0x8000 => SILENT,
        22 => ("open", "syn-ack"),
        23 => ("closed", "reset"),
        25 => SILENT,
        80 if host.is_multiple_of(16) => ("open", "syn-ack"),
        80 => ("closed", "reset"),
        _ => unreachable!("port {port} is not swept"),
    }
}

/// The rows by address and port, checking that each names its address in the
/// compressed form and that no probe is reported twice.
fn by_probe(rows: &[Row]) -> BTreeMap<(Ipv6Addr, u16), (String, String)> {
    let mut map = BTreeMap::new();
    for r in rows {
        let ip: Ipv6Addr = r.ip.parse().unwrap_or_else(|e| panic!("{:?}: {e}", r.ip));
        assert_eq!(r.ip, ip.to_string(), "not in compressed form");
        let old = map.insert((ip, r.port), (r.state.clone(), r.reason.clone()));
        assert!(old.is_none(), "{} port {} reported twice", r.ip, r.port);
    }
    map
}

fn host_of(ip: Ipv6Addr) -> u16 {
    let base = u128::from(Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 0));
    let offset = u128::from(ip) - base;
    u16::try_from(offset).unwrap_or_else(|_| panic!("{ip} is outside {TARGET_NET6}"))
}

fn sweep(transport: &str) {
    // No neighbour entry: prtip finds the next hop by neighbour discovery.
    let mut lab = Lab::new(false);
    sweep_target(&mut lab);
    let out = lab
        .prtip(&[
            "-sS",
            "-p",
            SWEEP_PORTS,
            TARGET_NET6,
            "-o",
            "ndjson",
            "--retries",
            "1",
            "--wait",
            "1",
            "--transport",
            transport,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 4 * 65536, "one row per probe");
    let got = by_probe(&rows);
    let mut open = BTreeSet::new();
    for ((ip, port), (state, reason)) in &got {
        let want = sweep_truth(host_of(*ip), *port);
        assert_eq!((state.as_str(), reason.as_str()), want, "{ip} port {port}");
        if state == "open" {
            open.insert((host_of(*ip), *port));
        }
    }
    let expected_open: BTreeSet<(u16, u16)> =
        (0..0x8000).map(|h| (h, 22)).chain((0..0x8000).step_by(16).map(|h| (h, 80))).collect();
    assert_eq!(open, expected_open);
    let count = |state: &str| rows.iter().filter(|r| r.state == state).count();
    assert_eq!((count("open"), count("closed"), count("filtered")), (34816, 63488, 163840));
    let err = stderr_of(&out);
    assert!(err.contains("34816 open, 63488 closed, 163840 filtered"), "{err}");
}

#[test]
fn sweep_of_an_ipv6_112_over_raw_sockets_finds_exact_truth() {
    sweep("raw");
}

#[test]
fn sweep_of_an_ipv6_112_over_af_xdp_finds_exact_truth() {
    sweep("xdp");
}

#[test]
fn probes_into_the_silent_half_are_filtered() {
    let mut lab = Lab::new(true);
    lab.listen(&[22]);
    // 16 addresses on each side of the boundary between the halves.
    for transport in ["raw", "xdp"] {
        let out = lab
            .prtip(&[
                "-p",
                "22",
                "fd00:201::7ff0-fd00:201::800f",
                "--transport",
                transport,
                "-o",
                "ndjson",
                "--wait",
                "0.5",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{transport}: {}", stderr_of(&out));
        let rows = rows(&out.stdout);
        assert_eq!(rows.len(), 32, "{transport}");
        for ((ip, port), (state, reason)) in by_probe(&rows) {
            let want = if host_of(ip) < 0x8000 { ("open", "syn-ack") } else { ("filtered", "no-response") };
            assert_eq!((port, state.as_str(), reason.as_str()), (22, want.0, want.1), "{transport}: {ip}");
        }
        assert!(rows.iter().all(|r| r.rtt_us.is_some() == (r.state == "open")), "{transport}");
    }
}

#[test]
fn ipv6_hosts_on_the_link_itself_are_each_reached_directly() {
    // fd00:200::/125 is the veth's own subnet: ::1 is the scanner itself, ::2
    // the target namespace, the rest nobody (neighbour discovery fails, so
    // they stay silent).
    let mut lab = Lab::new(false);
    lab.listen_in_target(&[22], TARGET_IP6);
    lab.listen_in_scanner(&[80], SCANNER_IP6);
    let out = lab.prtip(&["-p", "22,80", "fd00:200::/125", "-o", "ndjson", "--wait", "0.5"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    let of = |state: &str| -> BTreeSet<(String, u16)> {
        rows.iter().filter(|r| r.state == state).map(|r| (r.ip.clone(), r.port)).collect()
    };
    let pairs = |v: &[(&str, u16)]| v.iter().map(|(a, p)| (a.to_string(), *p)).collect::<BTreeSet<_>>();
    assert_eq!(of("open"), pairs(&[(SCANNER_IP6, 80), (TARGET_IP6, 22)]));
    assert_eq!(of("closed"), pairs(&[(SCANNER_IP6, 22), (TARGET_IP6, 80)]));
    assert_eq!(of("filtered").len(), 12);
}

/// An IPv6 sweep stopped by SIGINT in pass 0 and resumed from its checkpoint
/// finds what one uninterrupted sweep finds, each probe once, in the resumed
/// run's output alone: the checkpoint keeps IPv6 hosts and its journal IPv6
/// rows, which the resumed run prints first.
#[test]
fn an_interrupted_ipv6_sweep_resumes_to_exact_truth() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    // 65,536 probes at 20,000/s: about 3.3 s, interrupted after a sixth of the answers.
    let scan = ["-p", "22", TARGET_NET6, "--rate", "20000", "--wait", "0.5", "--transport", "raw", "-o", "ndjson"];
    let first = lab.interrupt_after_rows(&scan, 5000);
    assert_eq!(first.status.code(), Some(130), "{}", stderr_of(&first));
    let before = by_probe(&rows(&first.stdout));
    assert!(before.len() < 65536, "not interrupted: {} rows", before.len());
    assert_eq!(lab.checkpoints().len(), 2, "a checkpoint and its results: {:?}", lab.checkpoints());
    let resumed = lab.prtip(&["--resume", "-v"]).output().unwrap();
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    let taken = format!("prtip: {} results of the interrupted runs were printed first", before.len());
    assert!(stderr_of(&resumed).contains(&taken), "{taken}: {}", stderr_of(&resumed));
    let got = by_probe(&rows(&resumed.stdout));
    assert_eq!(got.len(), 65536);
    assert!(before.iter().all(|(k, v)| got.get(k) == Some(v)), "the resumed run says what the first said");
    for ((ip, port), (state, reason)) in got {
        assert_eq!((state.as_str(), reason.as_str()), sweep_truth(host_of(ip), port), "{ip} port {port}");
    }
    assert!(lab.checkpoints().is_empty(), "{:?}", lab.checkpoints());
}

/// IPv6 results in every output file and in the database: XML that nmap's
/// DTD accepts (addrtype ipv6), and the same rows everywhere.
#[test]
fn ipv6_results_reach_every_output_format_and_the_database() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let base = lab.state_dir.join("six");
    let db = lab.state_dir.join("six.db");
    let (base, db) = (base.to_str().unwrap(), db.to_str().unwrap());
    let out = lab
        .prtip(&[
            "-p",
            "22,80,7000",
            ONE_HOST,
            "-oA",
            base,
            "--with-db",
            "--database",
            db,
            "--wait",
            "0.5",
            "-q",
            "-o",
            "ndjson",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let printed = rows(&out.stdout);
    assert_eq!(printed.len(), 3);
    assert_files_hold(base, &printed);
    let read = |ext: &str| std::fs::read_to_string(format!("{base}.{ext}")).unwrap();
    let xml = read("xml");
    assert!(xml.contains(r#"<address addr="fd00:201::5" addrtype="ipv6"/>"#), "{xml}");
    assert!(read("gnmap").contains("Host: fd00:201::5 ()\tPorts: 22/open/tcp//"), "{}", read("gnmap"));
    assert!(read("nmap").contains("prtip scan report for fd00:201::5"), "{}", read("nmap"));
    assert!(read("csv").contains("\nfd00:201::5,22,tcp,ssh,open,syn-ack,64,"), "{}", read("csv"));
    let json = rows(read("json").as_bytes());
    let states: BTreeSet<(u16, String)> = json.iter().map(|r| (r.port, r.state.clone())).collect();
    let want = [(22, "open"), (80, "closed"), (7000, "filtered")].map(|(p, s)| (p, s.to_string()));
    assert_eq!(states, want.into_iter().collect());
    assert!(json.iter().all(|r| r.ip == ONE_HOST));
    let stored = sql(db, "SELECT ip || ' ' || port || ' ' || state FROM scan_results ORDER BY port");
    assert_eq!(stored, "fd00:201::5 22 open\nfd00:201::5 80 closed", "answered ports are rows");
}
