//! The AF_XDP transport: exact truth, the XDP program's lifetime on every way
//! prtip can end, and frames that are not replies still reaching the kernel.

mod common;

use common::{
    Lab, Running, assert_one_host_truth, assert_sweep_truth, in_netns, one_host_target, ports_in, rows, stderr_of,
    sweep_target,
};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// Whether an XDP program is attached to the scanner's interface.
fn xdp_attached(lab: &Lab) -> bool {
    let out =
        Command::new("ip").args(["-n", &lab.scan_ns, "-d", "link", "show", "dev", &lab.scan_if]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn full_port_scan_through_af_xdp_finds_exact_truth() {
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let out = lab.prtip(&["-p-", "10.201.0.1", "--transport", "xdp", "-o", "ndjson", "--wait", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // veth never grants zero-copy; the banner says which mode the kernel chose.
    assert!(stderr_of(&out).contains("(AF_XDP, copy mode, 1 queue)"), "{}", stderr_of(&out));
    assert_one_host_truth(&rows(&out.stdout));
    assert!(!xdp_attached(&lab), "XDP program left behind");
}

/// This host's kernel never sees a SYN-ACK that AF_XDP took, so it sends no
/// RST: prtip does, or every open port found would stay half open on the
/// target for a minute of SYN-ACK retries, and a later scan reusing the
/// 4-tuple would only draw that stale SYN-ACK (an open port seen filtered).
#[test]
fn af_xdp_scans_reset_the_connections_open_ports_half_open() {
    let mut lab = Lab::new(true);
    lab.listen(&[22, 443]);
    for target in ["10.201.0.1-10.201.0.8", "fd00:201::1-fd00:201::8"] {
        let out = lab
            .prtip(&["-p", "22,80,443", target, "--transport", "xdp", "-o", "ndjson", "--wait", "0.5", "-v"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let open = rows(&out.stdout).iter().filter(|r| r.state == "open").count();
        assert_eq!(open, 16, "{target}");
        assert!(stderr_of(&out).contains("; 16 RSTs sent"), "{}", stderr_of(&out));
        assert_eq!(lab.half_open(), Vec::<String>::new(), "{target}: connections left half open");
    }
}

#[test]
fn two_queues_send_a_lane_each_and_receive_on_both() {
    let mut lab = Lab::with_queues(2);
    one_host_target(&mut lab);
    for queues in [&["--queues", "2"][..], &[]] {
        let args = [&["-p-", "10.201.0.1", "--transport", "xdp", "-o", "ndjson", "--wait", "1"][..], queues].concat();
        let out = lab.prtip(&args).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        // Without --queues: the interface's two queues, one per core.
        let cores = std::thread::available_parallelism().unwrap().get();
        let expected = if queues.is_empty() && cores < 2 { "1 queue" } else { "2 queues" };
        assert!(stderr_of(&out).contains(&format!("(AF_XDP, copy mode, {expected})")), "{}", stderr_of(&out));
        assert_one_host_truth(&rows(&out.stdout));
        assert!(!xdp_attached(&lab), "XDP program left behind");
    }
    // The target's replies came in on both queues, and the program steered them all to prtip.
    let stats =
        Command::new("ip").args(["netns", "exec", &lab.scan_ns, "ethtool", "-S", &lab.scan_if]).output().unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let redirected = |queue: u32| -> u64 {
        let name = format!("rx_queue_{queue}_xdp_redirect:");
        let line = stats.lines().find(|l| l.trim_start().starts_with(&name)).unwrap_or_else(|| panic!("{stats}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(redirected(0) > 0 && redirected(1) > 0, "{stats}");
    assert!(redirected(0) + redirected(1) >= 2 * 65534, "{stats}");
    let out = lab.prtip(&["-p", "80", "10.201.0.1", "--transport", "xdp", "--queues", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("has 2 receive and 2 transmit queues: --queues must be 1 to 2"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn sweep_of_a_16_through_af_xdp_finds_exact_truth() {
    let mut lab = Lab::new(false);
    sweep_target(&mut lab);
    let out = lab
        .prtip(&["-p", "80", "10.201.0.0/16", "--transport", "xdp", "-o", "ndjson", "--wait", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_sweep_truth(&rows(&out.stdout));
}

/// The kernel lets go of a closed AF_XDP socket's queue a moment after
/// the socket's process exits, and a small scan binds its own within
/// milliseconds of starting: a scan right after another finds the queue
/// still held (EBUSY), about four times in ten here, and waits for it.
#[test]
fn scans_one_after_another_each_bind_the_queue_the_last_let_go() {
    let mut lab = Lab::new(false);
    lab.listen(&[22]);
    for run in 0..10 {
        let out = lab.prtip(&["-p", "22", "10.201.0.1", "--transport", "xdp", "-o", "ndjson"]).output().unwrap();
        assert!(out.status.success(), "run {run}: {}", stderr_of(&out));
        let rows = rows(&out.stdout);
        assert_eq!(rows.len(), 1, "run {run}");
        assert_eq!(rows[0].state, "open", "run {run}");
    }
}

/// A slow AF_XDP scan (about 16 s), started and seen attached.
fn slow_scan(lab: &Lab) -> Running {
    slow_scan_with(lab, &[])
}

fn slow_scan_with(lab: &Lab, extra: &[&str]) -> Running {
    let args = ["-p", "80", "10.201.0.0/17", "--transport", "xdp", "--rate", "2000", "-o", "ndjson", "--open", "-q"];
    let mut scan = lab.start(&[&args[..], extra].concat());
    scan.wait_until("the XDP program attached", |_| xdp_attached(lab));
    scan
}

#[test]
fn the_xdp_program_never_outlives_prtip() {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    // A normal end.
    let out = lab.prtip(&["-p", "80", "10.201.0.0/24", "--transport", "xdp", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!xdp_attached(&lab), "after a normal end");
    // SIGINT, SIGTERM and SIGKILL in the middle of a scan.
    for (signal, status) in [(libc::SIGINT, Some(130)), (libc::SIGTERM, Some(130)), (libc::SIGKILL, None)] {
        let mut scan = slow_scan(&lab);
        // In the middle of the scan: it has results.
        scan.wait_for_rows(1);
        scan.signal(signal);
        let out = scan.finish();
        assert_eq!(out.status.code(), status, "signal {signal}: {}", stderr_of(&out));
        assert!(!xdp_attached(&lab), "after signal {signal}");
    }
    // An error after the program was attached: the database file is no database,
    // which only opening it as one finds.
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let junk = lab.state_dir.join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let junk = junk.to_str().unwrap();
    let out = lab.prtip(&["-p", "80", "10.201.0.1", "--transport", "xdp", "--database", junk]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&format!("database {junk}: file is not a database")), "{}", stderr_of(&out));
    assert!(!xdp_attached(&lab), "after an error");
    // A panic after the program was attached (debug builds can be told to panic
    // there). The BPF link makes any exit detach it; this guards that choice.
    let out =
        lab.prtip(&["-p", "80", "10.201.0.1", "--transport", "xdp"]).env("PRTIP_TEST_PANIC", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(101), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("PRTIP_TEST_PANIC is set"), "{}", stderr_of(&out));
    assert!(!xdp_attached(&lab), "after a panic");
}

#[test]
fn an_interface_with_an_xdp_program_is_left_alone() {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    let first = slow_scan(&lab);
    // --transport xdp refuses; auto falls back to raw sockets and says why.
    let out = lab.prtip(&["-p", "80", "10.201.0.1", "--transport", "xdp"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("already has an XDP program"), "{}", stderr_of(&out));
    // Its own source ports: the first scan's program steers replies to the default ones.
    let out = lab.prtip(&["-p", "80", "10.201.0.16", "-o", "ndjson", "--source-port", "62000-62063"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("notice: using raw sockets"), "{}", stderr_of(&out));
    assert_eq!(ports_in(&rows(&out.stdout), "open"), [80]);
    // The first scan's program is still attached and still working, and doctor says so.
    assert!(xdp_attached(&lab));
    let doctor = lab.prtip(&["doctor", "--interface", &lab.scan_if]).output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert_eq!(doctor.status.code(), Some(1), "{text}");
    let line = text.lines().find(|l| l.contains("xdp program")).expect(&text);
    assert!(
        line.starts_with("FAIL") && line.contains("(native); prtip does not replace it -> use --transport raw"),
        "{line}"
    );
    first.signal(libc::SIGINT);
    first.finish();
    assert!(!xdp_attached(&lab));
}

#[test]
fn frames_that_are_not_replies_still_reach_the_kernel() {
    // No neighbour entry: the kernel's own ARP must get through too.
    let mut lab = Lab::new(false);
    lab.listen(&[22, 80]);
    // A service on the scanner host on one of the scan's source ports (a
    // clash prtip refuses unless told to go ahead).
    lab.listen_in_scanner(&[61010], "10.200.0.1");
    let refused = lab.prtip(&["-p", "80", "10.201.0.1", "--transport", "xdp"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert!(stderr_of(&refused).contains("this host listens on 61010"), "{}", stderr_of(&refused));
    let mut scan = slow_scan_with(&lab, &["--allow-port-overlap"]);
    // The scanner host's own TCP connection, to a port and from a port that are not the scan's.
    let connected = in_netns(&lab.scan_ns, || {
        TcpStream::connect_timeout(&"10.201.0.9:22".parse().unwrap(), Duration::from_secs(3)).is_ok()
    });
    // A connection to that service: its SYN and ACK are no replies to the scan.
    let served = in_netns(&lab.target_ns, || {
        TcpStream::connect_timeout(&"10.200.0.1:61010".parse().unwrap(), Duration::from_secs(3)).is_ok()
    });
    // And a ping.
    let ping = Command::new("ip")
        .args(["netns", "exec", &lab.scan_ns, "ping", "-c", "2", "-W", "2", "10.200.0.2"])
        .output()
        .expect("ping (iputils-ping) must be installed");
    assert!(xdp_attached(&lab), "the scan's program was not attached during the checks");
    // Its own replies came through while the program ran, as well as the host's.
    scan.wait_for_rows(1);
    scan.signal(libc::SIGINT);
    let out = scan.finish();
    assert!(connected, "a TCP connection from the scanner host failed while the scan ran");
    assert!(served, "a connection to a service on one of the scan's source ports failed while the scan ran");
    assert!(ping.status.success(), "ping failed while the scan ran: {}", String::from_utf8_lossy(&ping.stdout));
    assert!(!rows(&out.stdout).is_empty(), "the scan itself found nothing");
}

/// Field 1 (the status) and 2 (the check) of each line of `prtip doctor`.
fn doctor_verdicts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = if f[1] == "xdp" { format!("xdp {}", f[2]) } else { f[1].to_string() };
            (f[0].to_string(), name)
        })
        .collect()
}

#[test]
fn doctor_reports_what_the_interface_supports_and_attaches_nothing() {
    let lab = Lab::new(true);
    let out = lab.prtip(&["doctor", "--interface", &lab.scan_if]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr_of(&out));
    let want = [
        ("ok", "kernel"),
        ("ok", "capabilities"),
        ("ok", "interface"),
        ("ok", "xdp program"),
        ("ok", "xdp mode"),
        ("warn", "af_xdp"),
        ("ok", "io_uring"),
    ]
    .map(|(s, n)| (s.to_string(), n.to_string()));
    assert_eq!(doctor_verdicts(&text), want, "{text}");
    // veth runs XDP natively but never offers zero-copy.
    assert!(text.contains(&format!("{}: up, 1 receive and 1 transmit queues", lab.scan_if)), "{text}");
    assert!(text.contains("native: the driver runs XDP itself"), "{text}");
    assert!(text.contains("copy mode only"), "{text}");
    assert!(!xdp_attached(&lab));

    // No default route in the scanner namespace: doctor says how to name an interface.
    let out = lab.prtip(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  interface     no default route") && text.contains("-> name one with --interface"));

    // Without capabilities every transport is out, and the line says what to do.
    let script = format!(
        "exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all {} doctor -i {}",
        env!("CARGO_BIN_EXE_prtip"),
        lab.scan_if
    );
    let out = Command::new("ip").args(["netns", "exec", &lab.scan_ns, "sh", "-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr_of(&out));
    let caps = text.lines().find(|l| l.contains("capabilities")).expect(&text);
    assert!(caps.starts_with("FAIL  capabilities  missing CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF"), "{caps}");
    assert!(caps.contains("-> run prtip as root, or `setcap"), "{caps}");
}
