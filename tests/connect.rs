//! Connect scans (`-sT`): the kernel's own handshakes through io_uring,
//! against a target whose truth is known; resumed after an interruption;
//! and run by an unprivileged user. Run as root (CI does): the labs are
//! network namespaces, and the unprivileged runs drop to `nobody` in them.

mod common;

use common::{
    Lab, ONE_HOST_OPEN, assert_sweep_truth, one_host_target, path_in, ports_in, rows, sql, stderr_of, sweep_target,
    temp_dir,
};
use std::process::Command;

#[test]
fn a_connect_scan_finds_the_exact_truth_of_every_port_with_its_round_trips() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let dir = temp_dir();
    let db = path_in(&dir, "scans.db");
    let out = lab
        .prtip(&["-sT", "-p-", "10.201.0.1", "-o", "ndjson", "--database", &db, "--store-silent", "-v"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 65535, "one row per port");
    assert_eq!(ports_in(&rows, "open"), ONE_HOST_OPEN);
    assert_eq!(ports_in(&rows, "filtered"), [7000, 7001]);
    assert_eq!(ports_in(&rows, "closed").len(), 65535 - ONE_HOST_OPEN.len() - 2);
    let reason = |p: u16| rows.iter().find(|r| r.port == p).unwrap().reason.clone();
    // The kernel reports an ICMP administratively-prohibited as host unreachable.
    assert_eq!(
        [reason(22), reason(80), reason(7000), reason(7001)],
        ["syn-ack", "conn-refused", "no-response", "host-unreach"]
    );
    assert!(rows.iter().all(|r| r.rtt_us.is_some() == (r.port != 7000)), "a round trip for every answer");
    assert!(rows.iter().all(|r| r.ttl.is_none()), "a connect scan sees no TTL");
    assert!(err.contains("Connect scan of 1 hosts x 65535 ports"), "{err}");
    assert!(err.contains("6 open, 65527 closed, 2 filtered"), "{err}");
    assert!(err.contains("round trip (us): p50"), "{err}");
    assert_eq!(
        sql(&db, "SELECT state, reason, COUNT(*) FROM scan_results WHERE port IN (22, 80, 7000, 7001) GROUP BY 1, 2"),
        "closed|conn-refused|1\nfiltered|host-unreach|1\nfiltered|no-response|1\nopen|syn-ack|1"
    );
    assert_eq!(sql(&db, "SELECT transport, open_count, closed_count FROM scans"), "connect|6|65527");
    // Flags about frames prtip does not send are refused, not ignored.
    for flag in [&["--transport", "raw"][..], &["--source-port", "40000"], &["-i", "eth0"], &["--fixed-rate"]] {
        let args = [&["-sT", "-p", "22", "10.201.0.1"][..], flag].concat();
        let out = lab.prtip(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
        assert!(stderr_of(&out).contains("does not apply to a connect scan"), "{}", stderr_of(&out));
    }
}

#[test]
fn an_interrupted_connect_sweep_resumes_to_the_exact_truth() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let args = ["-sT", "-p", "80", "10.201.0.0/16", "--rate", "20000", "--wait", "0.5", "-o", "ndjson"];
    let out = lab.interrupt_after_rows(&args, 5000);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let first = rows(&out.stdout);
    assert!(first.len() < 65536, "not interrupted: {} rows", first.len());
    assert!(stderr_of(&out).contains("resume with: prtip --resume"), "{}", stderr_of(&out));
    let out = lab.prtip(&["--resume", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let all = rows(&out.stdout);
    assert_sweep_truth(&all);
    assert!(lab.checkpoints().is_empty(), "a completed scan leaves no checkpoint");
}

#[test]
fn an_unprivileged_user_runs_connect_scans_and_keeps_every_file() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let dir = temp_dir();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let xml = path_in(&dir, "scan.xml");
    let out =
        lab.as_nobody(&["-sT", "-p", "1-1000,7000,7001", "10.201.0.1", "-o", "ndjson", "-oX", &xml]).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "no file refused for want of a directory: {err}");
    let rows = rows(&out.stdout);
    assert_eq!(ports_in(&rows, "open"), [1, 22, 443]);
    assert_eq!(ports_in(&rows, "filtered"), [7000, 7001]);
    assert_eq!(rows.len(), 1002);
    common::assert_valid_nmap_xml(&xml);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&xml).unwrap().uid(), 65534);
    // A SYN scan needs a raw socket: one line says so, and names -sT.
    let out = lab.as_nobody(&["-p", "22", "10.201.0.1", "--transport", "raw"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_NET_RAW") && err.contains("-sT"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("error")).count(), 1, "{err}");
}

/// nmap's own ndiff finds no difference between nmap's connect scan and
/// prtip's connect and SYN scans of the same ports: the same states, and
/// the same service names (nmap's table, which CI installs with nmap).
#[test]
fn ndiff_finds_no_difference_between_nmaps_report_and_prtips() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let dir = temp_dir();
    let ports = "1-1100,7000,7001,8080,31337,65535";
    let theirs = path_in(&dir, "nmap.xml");
    let nmap = Command::new("ip")
        .args(["netns", "exec", &lab.scan_ns, "nmap", "-sT", "-n", "-Pn", "-T4", "-p", ports, "10.201.0.1"])
        .args(["-oX", &theirs])
        .output()
        .expect("nmap must be installed");
    assert!(nmap.status.success(), "{}", stderr_of(&nmap));
    for scan in ["-sT", "-sS"] {
        let ours = path_in(&dir, &format!("prtip{scan}.xml"));
        let out = lab.prtip(&[scan, "-p", ports, "10.201.0.1", "-oX", &ours, "-q"]).output().unwrap();
        assert!(out.status.success(), "{scan}: {}", stderr_of(&out));
        let xml = std::fs::read_to_string(&ours).unwrap();
        assert!(xml.contains(r#"portid="22"><state state="open""#) && xml.contains(r#"<service name="ssh""#), "{xml}");
        let diff = Command::new("ndiff").args([&theirs, &ours]).output().expect("ndiff must be installed");
        assert_eq!(diff.status.code(), Some(0), "{scan}: {}", String::from_utf8_lossy(&diff.stdout));
    }
}
