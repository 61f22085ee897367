//! Frames dropped on the scanning host. A receive path slower than the
//! replies (prtip's receive thread stalled after every read, a fault that
//! debug builds can inject) makes the kernel drop replies for real; the same
//! fault drops every 97th of the first 20,000 probes on their way out,
//! counted as an interface counts them, so that drops happen however the
//! machine's load paces the scan. prtip must retry what they could have answered, slow down, and never
//! report a port whose probe or reply was lost as filtered.

mod common;

use common::{Lab, Row, assert_sweep_truth, rows, stderr_of, sweep_target};
use std::net::Ipv4Addr;

/// A read of at most 256 replies every 20 ms: about 13k replies a second,
/// a tenth of what the target's kernel answers.
const STALL_MS: &str = "20";

fn sweep(lab: &Lab, extra: &[&str]) -> (Vec<Row>, String) {
    let args = [&["-p", "80", "10.201.0.0/16", "--transport", "xdp", "-o", "ndjson", "-v"][..], extra].concat();
    let out = lab
        .prtip(&args)
        .env("PRTIP_TEST_RX_STALL_MS", STALL_MS)
        .env("PRTIP_TEST_TX_DROPS", "97,20000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    (rows(&out.stdout), stderr_of(&out))
}

/// How many frames prtip's summary says this host dropped.
fn dropped(stderr: &str) -> u64 {
    const NOTE: &str = "prtip: note: this host dropped ";
    let Some(at) = stderr.find(NOTE) else { return 0 };
    stderr[at + NOTE.len()..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn replies_lost_to_a_slow_receive_path_are_retried_until_the_truth_is_exact() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let (rows, stderr) = sweep(&lab, &["--retries", "3"]);
    assert!(dropped(&stderr) > 0, "the stalled receive path dropped nothing:\n{stderr}");
    assert!(stderr.contains("send rate lowered to"), "{stderr}");
    assert_sweep_truth(&rows);
}

#[test]
fn at_a_fixed_rate_without_retries_a_lost_reply_is_undecided_never_filtered() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let (rows, stderr) = sweep(&lab, &["--retries", "0", "--fixed-rate"]);
    assert!(dropped(&stderr) > 0, "{stderr}");
    assert!(!stderr.contains("send rate lowered"), "--fixed-rate kept the rate:\n{stderr}");
    assert_eq!(rows.len(), 65536, "one row per host");
    // Every answer found is the truth, and silence is filtered only where the target is silent.
    let mut undecided = 0;
    for r in &rows {
        let a: Ipv4Addr = r.ip.parse().unwrap();
        let local = a.octets()[2] < 128;
        let truth = match (local, a.octets()[3].is_multiple_of(16)) {
            (false, _) => "filtered",
            (true, true) => "open",
            (true, false) => "closed",
        };
        if r.state == "undecided" {
            assert_eq!(r.reason, "frames-dropped");
            undecided += 1;
        } else {
            assert_eq!(r.state, truth, "{}", r.ip);
        }
    }
    assert!(undecided > 0, "replies were dropped, yet every port was decided");
    assert!(stderr.contains(&format!(", {undecided} undecided")), "{stderr}");
}
