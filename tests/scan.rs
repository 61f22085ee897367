//! End-to-end scans in network namespaces against targets whose truth is known.
//! Run as root (CI does); each test builds and removes its own namespaces.

mod common;

use common::{
    Lab, Running, SCANNER_IP, SCANNER_IP6, assert_one_host_truth, assert_sweep_truth, in_netns, one_host_target,
    path_in, ports_in, rows, stderr_of, sweep_target, temp_dir, wait_until,
};
use prtip::wire::sources::Sources;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

#[test]
fn full_port_scan_of_one_host_finds_exact_truth() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let dir = temp_dir();
    let hgrm = path_in(&dir, "latency.hgrm");
    let out = lab
        .prtip(&[
            "-s",
            "syn",
            "-p-",
            "10.201.0.1",
            "--transport",
            "raw",
            "-o",
            "ndjson",
            "--wait",
            "1",
            "--latency-file",
            &hgrm,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_one_host_truth(&rows);
    // Every reply brings its send time back: all but the silent port 7000 are timed.
    assert!(rows.iter().filter(|r| r.state == "open").all(|r| r.ttl == Some(64)));
    assert!(rows.iter().all(|r| r.rtt_us.is_some() == (r.port != 7000)));
    let err = stderr_of(&out);
    assert!(err.contains("6 open, 65527 closed, 2 filtered"), "{err}");
    // The 65534 replies' round trips, as a percentile line and an .hgrm table.
    assert!(err.contains("round trip (us): p50 ") && err.contains(" over 65534 replies"), "{err}");
    let table = std::fs::read_to_string(&hgrm).unwrap();
    assert!(table.contains(&format!("Total count    = {:12}", 65534)), "{table}");
}

#[test]
fn sweep_of_a_16_finds_exact_open_closed_and_filtered_hosts() {
    // No neighbour entry: the next hop is resolved by prtip's own ARP request.
    let mut lab = Lab::new(false);
    sweep_target(&mut lab);
    let out = lab
        .prtip(&[
            "-sS",
            "-p",
            "80",
            "10.201.0.0/16",
            "-o",
            "ndjson",
            "--retries",
            "1",
            "--wait",
            "1",
            "--transport",
            "raw",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_sweep_truth(&rows(&out.stdout));
}

#[test]
fn target_files_exclusions_and_open_only() {
    let mut lab = Lab::new(true);
    lab.listen(&[22]);
    let dir = temp_dir();
    let list = path_in(&dir, "targets.txt");
    std::fs::write(&list, "# lab hosts\n10.201.3.0/24\n10.201.4.1-10.201.4.10, 10.201.9.9\n").unwrap();
    let out = lab
        .prtip(&["-sS", "-p", "22,23", "-iL", &list, "--exclude", "10.201.3.0/25,10.201.4.5", "-o", "ndjson", "--open"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    let got: BTreeSet<(String, u16)> = rows.iter().map(|r| (r.ip.clone(), r.port)).collect();
    let mut want = BTreeSet::new();
    for i in 128..256 {
        want.insert((format!("10.201.3.{i}"), 22));
    }
    for i in (1..=10).filter(|i| *i != 5) {
        want.insert((format!("10.201.4.{i}"), 22));
    }
    want.insert(("10.201.9.9".to_string(), 22));
    assert_eq!(got, want);
    assert!(rows.iter().all(|r| r.state == "open"));
    assert!(stderr_of(&out).contains("129 addresses excluded"), "{}", stderr_of(&out));
}

#[test]
fn loopback_scan_finds_exact_open_ports() {
    let mut lab = Lab::new(true);
    let open = [22u16, 80, 631, 5432, 9999];
    lab.listen_in_scanner(&open, "127.0.0.1");
    let out = lab.prtip(&["-s", "syn", "-p", "1-10000", "127.0.0.1", "-o", "ndjson"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_eq!(ports_in(&rows, "open"), open);
    assert_eq!(ports_in(&rows, "closed").len(), 10000 - open.len());
    assert!(ports_in(&rows, "filtered").is_empty());

    // The default text output: one host block listing exactly the open ports.
    let out = lab.prtip(&["-s", "syn", "-p", "1-10000", "127.0.0.1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = text.lines().filter(|l| l.contains("/tcp")).collect();
    assert_eq!(
        listed,
        [
            "22/tcp    open      ssh        syn-ack",
            "80/tcp    open      http       syn-ack",
            "631/tcp   open      ipp        syn-ack",
            "5432/tcp  open      postgresql syn-ack",
            "9999/tcp  open      abyss      syn-ack"
        ]
    );
    assert!(text.starts_with("prtip scan report for 127.0.0.1\n"));
    assert!(text.contains("Not shown: 9995 closed tcp ports (reset)"));
}

/// Sends `count` SYN-ACKs from 10.201.0.1:7000 to the scanner's port 62000 with
/// acknowledgement numbers that match the scan's cookie key only by a 2^-16
/// chance each (the MAC), and only after the probe was sent, from inside the
/// target namespace.
fn forge_syn_acks(ns: &str, count: u32) {
    in_netns(ns, move || {
        // SAFETY: plain socket(2); closed at the end of the closure.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        for i in 0..count {
            let mut pkt = Vec::new();
            etherparse::PacketBuilder::ipv4([10, 201, 0, 1], [10, 200, 0, 1], 64)
                .tcp(7000, 62000, 1000 + i, 1024)
                .syn()
                .ack(0x5eed_0000 ^ i.wrapping_mul(2_654_435_761))
                .write(&mut pkt, &[])
                .unwrap();
            // SAFETY: sockaddr_in is plain integers, valid all zero.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from_ne_bytes([10, 200, 0, 1]);
            // SAFETY: pkt and sa are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            assert_eq!(n as usize, pkt.len(), "sendto: {}", std::io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    });
}

#[test]
fn forged_syn_acks_never_become_results() {
    let lab = Lab::new(true);
    // Port 7000 never answers, so only forged replies can arrive for it.
    lab.target_rules("tcp dport 7000 drop");
    let mut scan = lab.start(&[
        "-p",
        "7000",
        "10.201.0.1",
        "--source-port",
        "62000",
        "--retries",
        "0",
        "--wait",
        "2",
        "-o",
        "ndjson",
        "-v",
    ]);
    // The banner comes after the receive socket is open, so the forgeries cannot arrive before it.
    scan.wait_for_stderr("the banner", |l| l.starts_with("prtip: SYN scan of "));
    forge_syn_acks(&lab.target_ns, 20);
    let out = scan.finish();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].port, rows[0].state.as_str(), rows[0].reason.as_str()), (7000, "filtered", "no-response"));
    // The forged frames did reach prtip, and were counted as invalid.
    let err = stderr_of(&out);
    let invalid: u64 = err
        .split("; ")
        .find_map(|part| part.strip_suffix(" frames failed validation"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no validation count in {err}"));
    assert!(invalid >= 15, "only {invalid} of 20 forged frames seen: {err}");
}

#[test]
fn interrupt_stops_sending_and_keeps_what_was_received() {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    let mut scan =
        lab.start(&["-p", "80", "10.201.0.0/17", "--rate", "2000", "-o", "ndjson", "--open", "--status-json"]);
    // Stopped with results printed and its progress reported at least once.
    scan.wait_for_rows(1000);
    scan.wait_for_stderr("a status line", |l| l.starts_with("{\"elapsed_s\""));
    scan.signal(libc::SIGINT);
    let started = std::time::Instant::now();
    let out = scan.finish();
    assert!(started.elapsed() < Duration::from_secs(3), "did not stop promptly");
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    // Stopped after its first status line (a second in, at 2000 probes/s), all open; far fewer than 32768.
    assert!(rows.len() >= 1000 && rows.len() < 10_000, "{} results", rows.len());
    assert!(rows.iter().all(|r| r.state == "open"));
    let err = stderr_of(&out);
    assert!(err.contains("interrupted"), "{err}");
    // Progress came once a second while it ran, as JSON lines.
    let status: Vec<serde_json::Value> = err.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!status.is_empty(), "no status lines in {err}");
    assert!(status.iter().all(|v| v["planned"] == 32768 && v["sent"].as_u64().unwrap() <= 32768));
}

/// `-q --status-json`: the JSON lines, and nothing else, on standard error.
#[test]
fn quiet_status_json_writes_the_json_lines_alone() {
    let lab = Lab::new(true);
    let out = lab.prtip(&["-p", "1-3000", "10.201.0.1", "--rate", "2000", "-q", "--status-json"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.lines().count() >= 1, "no status line: {err}");
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(v["planned"], 3000, "{line}");
    }
}

/// The first Ctrl-C stops sending and waits for the replies still due; the
/// second ends that wait at once.
#[test]
fn a_second_interrupt_ends_the_wait_for_replies() {
    let lab = Lab::new(true);
    // The upper /17 is routed to the target and dropped there: no reply ever
    // comes, so after the first Ctrl-C the scan waits --wait's whole minute,
    // twice READY_WITHIN.
    let args = ["-p", "80", "10.201.128.0/17", "--rate", "1000", "--wait", "60", "-o", "ndjson", "--status-json"];
    let mut scan = lab.start(&args);
    let sent = |r: &Running| -> Vec<u64> {
        r.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["sent"].as_u64().unwrap())
            .collect()
    };
    scan.wait_until("a status line", |r| sent(r).iter().any(|&n| n > 0));
    let before = sent(&scan).len();
    scan.signal(libc::SIGINT);
    // Still running, and no longer sending: two status lines after the signal count the same probes.
    scan.wait_until("two status lines alike after the first Ctrl-C", |r| {
        let s = sent(r);
        s.len() >= before + 2 && s[s.len() - 1] == s[s.len() - 2]
    });
    assert!(!scan.ended(), "the first Ctrl-C ended the wait");
    scan.signal(libc::SIGINT);
    wait_until("the scan ends at the second Ctrl-C", || scan.ended());
    let out = scan.finish();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("interrupted") && err.contains("prtip: resume with: prtip --resume "), "{err}");
    // No reply came and an interrupted scan reports no silence: nothing is printed.
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn scanner_address_is_used_as_source() {
    let mut lab = Lab::new(true);
    lab.listen(&[22]);
    let out = lab
        .prtip(&["-p", "22", "10.201.0.7", "-o", "ndjson", "--source-ip", SCANNER_IP, "-i", &lab.scan_if.clone()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(ports_in(&rows(&out.stdout), "open"), [22]);
}

/// `--source-ip` as a list and a range: probes leave from every address,
/// each target host hears from the one `Sources::pick` gives it, and the
/// replies to all of them count, through AF_XDP (the XDP program's address
/// loop, RSTs from the address each SYN-ACK came to) and raw sockets (the
/// classic BPF filter), for both families; the banner stage's connections
/// leave from the same address as the host's probes. The target counts the
/// SYNs from each address.
#[test]
fn probes_spread_over_the_source_addresses_and_replies_to_each_count() {
    let mut lab = Lab::new(true);
    lab.listen(&[22, 80]);
    let v4: Vec<String> = (11..=17).map(|h| format!("10.200.0.{h}")).collect();
    let v6: Vec<String> = (0x11..=0x17).map(|h| format!("fd00:200::{h:x}")).collect();
    let mut rules = Vec::new();
    for (addrs, mine, prefix, family) in [(&v4, SCANNER_IP, 24, "ip"), (&v6, SCANNER_IP6, 64, "ip6")] {
        for a in addrs.iter() {
            lab.add_scanner_address(&format!("{a}/{prefix}"));
        }
        for a in std::iter::once(mine).chain(addrs.iter().map(String::as_str)) {
            rules.push(format!("  {family} saddr {a} tcp flags & (syn | ack) == syn counter"));
        }
    }
    lab.target_rules(&rules.join("\n"));
    let (sources4, sources6) = ("10.200.0.1,10.200.0.11-10.200.0.17", "fd00:200::1,fd00:200::11-fd00:200::17");
    let (mine4, mine6): (Vec<String>, Vec<String>) = (
        [SCANNER_IP.to_string()].into_iter().chain(v4).collect(),
        [SCANNER_IP6.to_string()].into_iter().chain(v6).collect(),
    );
    let cases = [
        ("xdp", "10.201.0.0/24", sources4, &mine4, false),
        ("raw", "10.201.0.0/24", sources4, &mine4, false),
        ("xdp", "fd00:201::/120", sources6, &mine6, false),
        ("raw", "fd00:201::/120", sources6, &mine6, false),
        ("raw", "10.201.0.0/24", sources4, &mine4, true),
    ];
    let mut before = lab.target_counters();
    for (transport, targets, sources, mine, banners) in cases {
        let args = ["-p", "22,80,443", targets, "--source-ip", sources, "--transport", transport, "-o", "ndjson"];
        let extra: &[&str] = if banners { &["--wait", "0.5", "-v", "--banners"] } else { &["--wait", "0.5", "-v"] };
        let out = lab.prtip(&[&args[..], extra].concat()).output().unwrap();
        let what = format!("{transport} {targets} banners {banners}");
        assert!(out.status.success(), "{what}: {}", stderr_of(&out));
        let rows = rows(&out.stdout);
        let count = |state: &str, port: u16| rows.iter().filter(|r| r.state == state && r.port == port).count();
        assert_eq!(
            (rows.len(), count("open", 22), count("open", 80), count("closed", 443)),
            (768, 256, 256, 256),
            "{what}"
        );
        assert!(stderr_of(&out).contains(&format!("from {sources} on")), "{what}: {}", stderr_of(&out));
        // The hosts each address serves, as prtip picks them.
        let addrs: Vec<IpAddr> = mine.iter().map(|a| a.parse().unwrap()).collect();
        let picked = Sources::new(&addrs).unwrap();
        let mut hosts = vec![0u64; 8];
        for r in rows.iter().filter(|r| r.port == 22) {
            hosts[picked.pick(r.ip.parse().unwrap())] += 1;
        }
        assert!(hosts.iter().all(|&n| n > 0), "{what}: every address serves some hosts: {hosts:?}");
        let after = lab.target_counters();
        let sent: Vec<u64> = mine.iter().map(|a| after[a] - before[a]).collect();
        // Three probes per host, all from its own address.
        let probes: Vec<u64> = hosts.iter().map(|n| n * 3).collect();
        if !banners {
            assert_eq!(sent, probes, "{what}: SYNs from each address");
        } else {
            // And a connection to each of its two open ports, from the same
            // address. A connection's SYN may be sent again (a listener's
            // full backlog drops one), so a few more are allowed; a
            // connection from another address would leave one address
            // short and another far over.
            for ((a, &got), n) in mine.iter().zip(&sent).zip(&hosts) {
                assert!((n * 5..=n * 5 + 8).contains(&got), "{what}: {got} SYNs from {a}, which serves {n} hosts");
            }
        }
        if transport == "xdp" {
            assert_eq!(lab.half_open(), Vec::<String>::new(), "{what}: an RST left from another address");
        }
        before = after;
    }
}

#[test]
fn shards_together_find_exactly_what_one_scan_finds() {
    let mut lab = Lab::new(true);
    lab.listen(&[80, 443]);
    lab.target_rules(
        "ip daddr 10.201.0.0/25 tcp dport 443 drop\ntcp dport 80 ip daddr & 0.0.0.3 != 0.0.0.0 reject with tcp reset",
    );
    let scan = |extra: &[&str]| {
        let args = [&["-p", "80,443", "10.201.0.0/24", "-o", "ndjson", "--seed", "4242", "--wait", "0.3", "-q"], extra]
            .concat();
        let out = lab.prtip(&args).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        rows(&out.stdout).into_iter().map(|r| (r.ip, r.port, r.state)).collect::<Vec<_>>()
    };
    let whole: BTreeSet<_> = scan(&[]).into_iter().collect();
    assert_eq!(whole.len(), 512);
    assert_eq!(whole.iter().filter(|r| r.2 == "filtered").count(), 128);
    assert_eq!(whole.iter().filter(|r| r.2 == "open").count(), 64 + 128);
    let mut union = BTreeSet::new();
    for shard in ["1/3", "2/3", "3/3"] {
        for r in scan(&["--shard", shard]) {
            assert!(union.insert(r.clone()), "{r:?} reported by two shards");
        }
    }
    assert_eq!(union, whole);
}

#[test]
fn hosts_on_the_link_itself_are_each_reached_directly() {
    // 10.200.0.0/29 is the veth's own subnet: .1 is the scanner itself, .2 the
    // target namespace, the rest nobody (ARP fails, so they stay silent).
    let mut lab = Lab::new(false);
    lab.listen_in_target(&[22], "10.200.0.2");
    lab.listen_in_scanner(&[80], "10.200.0.1");
    let out = lab.prtip(&["-p", "22,80", "10.200.0.0/29", "-o", "ndjson", "--wait", "0.5"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    let of = |state: &str| -> BTreeSet<(String, u16)> {
        rows.iter().filter(|r| r.state == state).map(|r| (r.ip.clone(), r.port)).collect()
    };
    let pairs = |v: &[(&str, u16)]| v.iter().map(|(a, p)| (a.to_string(), *p)).collect::<BTreeSet<_>>();
    assert_eq!(of("open"), pairs(&[("10.200.0.1", 80), ("10.200.0.2", 22)]));
    assert_eq!(of("closed"), pairs(&[("10.200.0.1", 22), ("10.200.0.2", 80)]));
    assert_eq!(of("filtered").len(), 12);
}

/// A host that answers SYN-ACK on every port (its SYNs redirected to one
/// listener, as an all-ports-open middlebox does) is flagged in every
/// output and the summary, and `--max-open-per-host` caps what it adds;
/// a real host beside it is reported as it is.
#[test]
fn a_host_open_on_every_port_is_flagged_and_capped() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    lab.target_all_open("10.201.0.9", "1-300", 22);
    let dir = temp_dir();
    let (xml, db) = (path_in(&dir, "scan.xml"), path_in(&dir, "scan.db"));
    let flag_line = |stdout: &[u8]| -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(stdout).into_owned();
        text.lines().filter(|l| l.contains("\"flag\"")).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let results = |stdout: &[u8]| {
        let text = String::from_utf8_lossy(stdout).into_owned();
        let kept: String = text.lines().filter(|l| !l.contains("\"flag\"")).map(|l| format!("{l}\n")).collect();
        rows(kept.as_bytes())
    };

    let args =
        ["-p", "1-300", "10.201.0.1,10.201.0.9", "-o", "ndjson", "--open", "-oX", &xml, "--with-db", "--database", &db];
    let out = lab.prtip(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = results(&out.stdout);
    let open_of =
        |ip: &str| rows.iter().filter(|r| r.ip == ip && r.state == "open").map(|r| r.port).collect::<BTreeSet<_>>();
    assert_eq!(open_of("10.201.0.9"), (1..=300).collect());
    assert_eq!(open_of("10.201.0.1"), [1, 22].into());
    assert_eq!(
        flag_line(&out.stdout),
        [serde_json::json!({"ip": "10.201.0.9", "flag": "most-ports-open", "open": 300, "probed": 300, "withheld": 0})]
    );
    let stderr = stderr_of(&out);
    assert!(stderr.contains("warning: 1 hosts answered SYN-ACK on most ports probed"), "{stderr}");
    assert!(stderr.contains("10.201.0.9 (300 of 300)"), "{stderr}");
    common::assert_valid_nmap_xml(&xml);
    let xml_text = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(
        xml_text.matches(r#"<script id="prtip-most-ports-open" output="SYN-ACK on 300 of 300 ports probed"/>"#).count(),
        1
    );
    assert_eq!(
        common::sql(&db, "SELECT ip, flag, open, probed, withheld FROM scan_flagged_hosts"),
        "10.201.0.9|most-ports-open|300|300|0"
    );

    // Capped: 50 of its open ports reported, the rest counted; the database keeps them all.
    let (csv, db) = (path_in(&dir, "capped.csv"), path_in(&dir, "capped.db"));
    let args = ["-p", "1-300", "10.201.0.1,10.201.0.9", "-o", "ndjson", "--max-open-per-host", "50", "-oC", &csv];
    let out = lab.prtip(&[&args[..], &["--database", &db]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = results(&out.stdout);
    let open_of = |ip: &str| rows.iter().filter(|r| r.ip == ip && r.state == "open").count();
    assert_eq!((open_of("10.201.0.9"), open_of("10.201.0.1")), (50, 2));
    assert_eq!(rows.iter().filter(|r| r.ip == "10.201.0.1" && r.state == "closed").count(), 298);
    assert_eq!(flag_line(&out.stdout)[0]["withheld"], 250);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("302 open"), "{stderr}");
    assert!(stderr.contains("note: --max-open-per-host withheld 250 open ports of 1 hosts"), "{stderr}");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.lines().any(|l| l.starts_with("10.201.0.9,,tcp,,flagged,most-ports-open,,,")), "{csv_text}");
    assert_eq!(csv_text.lines().filter(|l| l.starts_with("10.201.0.9,") && l.contains(",open,")).count(), 50);
    assert_eq!(common::sql(&db, "SELECT COUNT(*) FROM scan_results WHERE ip = '10.201.0.9' AND state = 'open'"), "300");
    assert_eq!(common::sql(&db, "SELECT withheld FROM scan_flagged_hosts"), "250");
}
