//! `--banners` against real services from Debian's packages (sshd, vsftpd,
//! nginx with HTTP and HTTPS), started once for this binary in a target
//! namespace: every service identified with its banner, HTTP head and
//! certificate through SYN scans over both transports and connect scans,
//! also as an unprivileged user; and a /16 that answers every connection and
//! then sends forever, which must cost bounded memory and descriptors.

mod common;

use common::services::{self, wait_for_listener};
use common::{Lab, assert_valid_nmap_xml, in_netns, path_in, sql, stderr_of, temp_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// What a banner grab gets depends on how soon the target's servers
/// answer, on two shared cores: the tests of this file take turns.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TARGET: &str = "10.201.0.1";
/// 23 is closed: no banner is asked there.
const PORTS: &str = "21,22,23,80,443,8800,9444";
const TITLE: &str = "prtip banner test";

/// Each port's ndjson object.
fn by_port(stdout: &[u8]) -> BTreeMap<u64, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .map(|v| (v["port"].as_u64().unwrap(), v))
        .collect()
}

/// What every scan must have found: each service with its fields.
fn assert_identified(what: &str, ports: &BTreeMap<u64, Value>, sha256: &str) {
    let keys: Vec<u64> = ports.keys().copied().collect();
    assert_eq!(keys, [21, 22, 23, 80, 443, 8800, 9444], "{what}");
    let p = |n: u64| &ports[&n];
    assert_eq!(p(23)["state"], "closed", "{what}");
    assert!(p(23).get("banner").is_none(), "{what}: a closed port is not asked");
    for n in [21, 22, 80, 443, 8800, 9444] {
        assert_eq!(p(n)["state"], "open", "{what}: {n}");
        assert_eq!(p(n)["grab"], "grabbed", "{what}: {n}: {}", p(n));
    }
    assert_eq!(p(21)["service"], "ftp", "{what}");
    assert_eq!(p(21)["banner"], r"220 (vsFTPd 3.0.3)\r\n", "{what}");
    assert_eq!(p(22)["service"], "ssh", "{what}");
    assert!(p(22)["product"].as_str().unwrap().starts_with("OpenSSH_9"), "{what}: {}", p(22));
    assert!(p(22)["banner"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH_9"), "{what}: {}", p(22));
    assert_eq!(p(80)["service"], "http", "{what}");
    assert_eq!(p(80)["http"]["status"], 200, "{what}");
    assert_eq!(p(80)["http"]["title"], TITLE, "{what}");
    assert!(p(80)["http"]["server"].as_str().unwrap().starts_with("nginx/"), "{what}: {}", p(80));
    assert!(p(80)["tls"].is_null(), "{what}");
    // An HTTP server on a port of no HTTP convention: identified by its answer once it stayed quiet.
    assert_eq!(p(8800)["service"], "http", "{what}");
    assert_eq!(p(8800)["http"]["status"], 301, "{what}");
    assert!(p(8800)["http"]["location"].as_str().unwrap().ends_with("/moved"), "{what}: {}", p(8800));
    // HTTPS on its port (TLS 1.3), and TLS 1.2 alone on one where a plain
    // request is answered as TLS servers answer it.
    for (n, version) in [(443, "TLSv1.3"), (9444, "TLSv1.2")] {
        let tls = &p(n)["tls"];
        assert_eq!(p(n)["service"], "http", "{what}: {n}");
        assert_eq!(tls["version"], version, "{what}: {n}");
        assert_eq!(tls["subject"], "CN=prtip.test, O=prtip", "{what}: {n}");
        assert_eq!(tls["issuer"], "CN=prtip.test, O=prtip", "{what}: {n}");
        assert_eq!(tls["san"], serde_json::json!(["prtip.test", "10.201.0.1"]), "{what}: {n}");
        assert_eq!(tls["sha256"], sha256, "{what}: {n}");
        assert!(tls["not_after"].as_str().unwrap() > tls["not_before"].as_str().unwrap(), "{what}: {n}");
        assert_eq!(p(n)["http"]["status"], 200, "{what}: {n}");
        assert_eq!(p(n)["http"]["title"], TITLE, "{what}: {n}");
    }
}

#[test]
fn every_real_service_is_identified_by_syn_and_connect_scans_and_by_an_unprivileged_user() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(true);
    let dir = temp_dir();
    let mut sshd = services::sshd(&lab.target_ns, dir.path());
    let mut vsftpd = services::vsftpd(&lab.target_ns, dir.path());
    let (mut nginx, sha256) = services::nginx(&lab.target_ns, dir.path(), &[80, 8800], &[443, 9444], TITLE);
    for port in [21, 22, 80, 443, 8800, 9444] {
        wait_for_listener(&lab.scan_ns, &format!("{TARGET}:{port}"));
    }
    let scan = ["-p", PORTS, TARGET, "--banners", "-o", "ndjson"];
    for (what, kind) in [("-sS raw", ["-sS", "--transport", "raw"]), ("-sS xdp", ["-sS", "--transport", "xdp"])] {
        let before = kernel_tcp(&lab.scan_ns);
        let out = lab.prtip(&[&scan[..], &kind].concat()).output().unwrap();
        let after = kernel_tcp(&lab.scan_ns);
        assert!(out.status.success(), "{what}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("banners: 6 of 6 open ports answered"), "{what}: {}", stderr_of(&out));
        assert_identified(what, &by_port(&out.stdout), &sha256);
        let counted = |k: &str| after[k] - before[k];
        if kind[2] == "xdp" {
            // prtip held every connection itself, in the scan's pass: the
            // scanner's kernel opened none, and reset none of prtip's.
            assert_eq!((counted("ActiveOpens"), counted("OutRsts")), (0, 0), "{what}");
        } else {
            // The kernel sees raw sockets' replies: a stage of its own connections asks (9444 twice).
            assert_eq!(counted("ActiveOpens"), 7, "{what}");
            assert!(stderr_of(&out).contains("notice: --banners over raw sockets asks open ports"), "{what}");
        }
    }
    let db = path_in(&dir, "scans.db");
    let out = lab.prtip(&[&scan[..], &["-sT", "--database", &db]].concat()).output().unwrap();
    assert!(out.status.success(), "-sT: {}", stderr_of(&out));
    assert_identified("-sT", &by_port(&out.stdout), &sha256);
    assert_eq!(
        sql(&db, "SELECT port, name, status FROM scan_services ORDER BY port"),
        "21|ftp|grabbed\n22|ssh|grabbed\n80|http|grabbed\n443|http|grabbed\n8800|http|grabbed\n9444|http|grabbed"
    );
    // What the database keeps reads back as the scan printed it.
    let export = Command::new(env!("CARGO_BIN_EXE_prtip"))
        .args(["db", "export", "1", "-o", "ndjson", "--database", &db])
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr_of(&export));
    assert_identified("db export", &by_port(&export.stdout), &sha256);
    let show = Command::new(env!("CARGO_BIN_EXE_prtip")).args(["db", "show", "1", "--database", &db]).output().unwrap();
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(show.contains("443/tcp   open      ssl/http syn-ack    nginx/1.22.1\n"), "{show}");
    assert!(show.contains(&format!("| http-title: {TITLE}")), "{show}");

    // nobody, whose only writable place is a world-writable directory.
    let files = tempfile::Builder::new().prefix("prtip-nobody").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(files.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let xml = files.path().join("banners.xml").display().to_string();
    let out = lab.as_nobody(&[&scan[..], &["-sT", "-oX", &xml]].concat()).output().unwrap();
    assert!(out.status.success(), "nobody: {}", stderr_of(&out));
    assert_identified("-sT as nobody", &by_port(&out.stdout), &sha256);
    assert_valid_nmap_xml(&xml);
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert!(xml.contains(r#"<service name="ssh" product="OpenSSH_9"#), "{xml}");
    assert!(xml.contains(r#"<service name="http" product="nginx/"#), "{xml}");
    assert!(xml.contains(r#"tunnel="ssl" method="probed" conf="10"/>"#), "{xml}");
    assert!(xml.contains(r#"<script id="ssl-cert" output="Subject: CN=prtip.test, O=prtip;"#), "{xml}");
    for server in [&mut sshd, &mut vsftpd, &mut nginx] {
        server.assert_running();
    }
}

/// The TCP counters of the kernel of namespace `ns` (/proc/net/snmp), by name.
fn kernel_tcp(ns: &str) -> BTreeMap<String, i64> {
    let snmp = Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]).output().unwrap();
    let snmp = String::from_utf8(snmp.stdout).unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| (n.to_string(), v.parse().unwrap()))
        .collect()
}

/// A server that accepts every connection and sends to each, forever, a
/// byte every 10 ms or so: what holds a banner grabber's memory and
/// descriptors if anything does.
fn trickle_forever(ns: &str, port: u16) {
    let listener = in_netns(ns, move || std::net::TcpListener::bind(("0.0.0.0", port)).unwrap());
    listener.set_nonblocking(true).unwrap();
    // std listens with a backlog of 128, which a connect scan of a /16 overflows.
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket this function owns; it touches no memory.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4096) }, 0);
    std::thread::spawn(move || {
        let mut peers = Vec::new();
        loop {
            while let Ok((peer, _)) = listener.accept() {
                peer.set_nonblocking(true).unwrap();
                peers.push(peer);
            }
            peers.retain_mut(|p| !matches!(p.write(b"x"), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock));
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// VmHWM of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches(" kB").trim().parse().ok()
}

#[test]
fn a_16_that_answers_every_connection_and_sends_forever_costs_bounded_memory_and_descriptors() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(true);
    trickle_forever(&lab.target_ns, 7777);
    lab.target_all_open("10.201.0.0/17", "1-65535", 7777);
    // Connections prtip holds itself over AF_XDP, and a connect scan's stage.
    for kind in [&["-sS", "--transport", "xdp"][..], &["-sT"]] {
        let mut child = lab
            .prtip(
                &[kind, &["-p", "80", "10.201.0.0/16", "--banners", "--banner-timeout", "0.2", "-o", "ndjson", "-v"]]
                    .concat(),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
        let err_reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
        let (mut peak, mut most_fds) = (0, 0);
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
            most_fds = most_fds.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()));
            if started.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                panic!("the scan did not end");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (stdout, err) = (reader.join().unwrap(), err_reader.join().unwrap());
        assert!(child.wait().unwrap().success(), "{err}");
        let rows: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let open = rows.iter().filter(|r| r["state"] == "open").count();
        assert_eq!(open, 32768, "every local host answers: {err}");
        // Each open port is reported with how its conversation went; a busy
        // server may not have sent its first byte within the 0.2 s.
        let grab = |g: &str| rows.iter().filter(|r| r["state"] == "open" && r["grab"] == g).count();
        let (grabbed, silent) = (grab("grabbed"), grab("silent"));
        assert_eq!(grabbed + silent, 32768, "{err}");
        // Both pace the handshakes by the stage's 1,024 conversations: the
        // connect stage by its connections, a SYN scan's pass by sending no
        // probe more while as many handshakes wait for the stage, so none
        // waits long enough to be reset. The trickle's first byte comes as
        // soon as the target's one thread accepts, which on shared cores
        // is not always within the 0.2 s.
        assert!(!err.contains("handshakes waited for the stage too long"), "{err}");
        assert!(grabbed >= 32768 * 4 / 5, "{grabbed} grabbed: {err}");
        let banner = |r: &Value| r["banner"].as_str().map_or(0, str::len);
        assert!(rows.iter().all(|r| banner(r) <= 4096), "the byte cap holds");
        assert!(err.contains(&format!("banners: {grabbed} of 32768 open ports answered")), "{err}");
        let counted = |what: &str| -> u64 {
            let at = err.find(what).unwrap_or_else(|| panic!("no {what}: {err}"));
            err[..at].rsplit([' ', ';']).find(|w| !w.is_empty()).unwrap().parse().unwrap()
        };
        assert!(counted(" ended at --banner-timeout") >= grabbed as u64 / 2, "{err}");
        assert_eq!(counted(" at --banner-bytes)"), 0, "{err}");
        // The documented cap (docs/ARCHITECTURE.md): 128 MiB, and a descriptor per
        // attempt in flight (16,384), per conversation (1,024), per connection
        // waiting for one (as many) and per close queued on either io_uring
        // until its next submit (256 entries each), and the program's own.
        assert!(peak < 128 * 1024, "peak RSS {peak} KiB");
        assert!(most_fds < 16_384 + 2 * 1024 + 2 * 256 + 64, "{most_fds} descriptors");
    }

    // What fills the byte cap ends there.
    let out = lab
        .prtip(&["-sT", "-p", "80", "10.201.0.0/24", "--banners", "--banner-bytes", "8", "-o", "ndjson", "-v"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("banners: 256 of 256 open ports answered"), "{err}");
    assert!(err.contains("0 ended at --banner-timeout, 256 at --banner-bytes)"), "{err}");
    let rows: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.iter().all(|r| r["banner"] == "xxxxxxxx"), "{rows:?}");

    // Ctrl-C while every conversation still waits (a minute's timeout, and
    // a byte cap the trickle fills in 40 s) ends them all at once, each
    // port reported with what it had said.
    let args = ["-sS", "--transport", "raw", "-p", "80", "10.201.0.0/24", "--banners", "--banner-timeout", "60"];
    let mut scan = lab.start(&[&args[..], &["-o", "ndjson"]].concat());
    std::thread::sleep(Duration::from_secs(3));
    scan.signal(libc::SIGINT);
    common::wait_until("the scan ends at Ctrl-C", || scan.ended());
    let out = scan.finish();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let rows: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 256, "{err}");
    let said = |r: &Value| r["banner"].as_str().filter(|b| b.bytes().all(|c| c == b'x')).map_or(0, str::len);
    assert!(rows.iter().all(|r| r["state"] == "open" && r["grab"] == "grabbed"), "{rows:?}");
    assert!(rows.iter().all(|r| (1..4096).contains(&said(r))), "{rows:?}");
    assert!(err.contains("banners: 256 of 256 open ports answered; 256 conversations were stopped"), "{err}");
}
