//! A sweep of the simulated Internet (tests/common/sim.rs) through the
//! engine: every probe's result is its true state, and the duplicates and
//! late replies the engine counts are the ones the simulator sent. No root,
//! no network.

#[path = "common/sim.rs"]
mod sim;

use prtip::engine::plan::ScanPlan;
use prtip::target::hosts::{Family, Hosts};
use prtip::target::ranges::{Range, RangeSet};
use prtip::target::space::TargetSpace;
use sim::{SimNet, Truth};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Longer than every round trip of the simulated Internet but its late ones.
const WAIT: Duration = Duration::from_millis(1100);

#[test]
fn a_simulated_sweep_finds_the_truth_and_counts_what_the_network_repeated() {
    let first = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let hosts = Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(first.into(), (first + 4095).into())]));
    let space = TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(80, 80), Range::new(443, 443)])).unwrap();
    let net = SimNet::new(0x5eed, WAIT);
    let truth = net.truth(&space);
    let plan = ScanPlan::new(space, 7, (61000, 61063), 1, 0, WAIT);
    let (stats, tally) = net.sweep(&plan);

    assert_eq!(Truth { late: truth.late, ..tally.found() }, truth);
    assert!(net.exact(&truth, &tally, &plan.space, &stats));
    assert!(truth.open > 0 && truth.closed > 0 && truth.unreachable > 0 && truth.late > 0, "{truth:?}");
    assert_eq!(stats.open + stats.closed + stats.unreachable + stats.filtered, plan.space.len());
    // Every probe once, then a retry of each that had not answered when its try timed out.
    assert_eq!(stats.sent, net.syns());
    assert!(stats.sent >= plan.probe_count() + truth.silent, "{} sent", stats.sent);
    // Every delivered frame is a valid reply: the first for its probe is a
    // result; any other is a duplicate while its probe is in the send
    // window (a copy, or the reply to a retry), and late after.
    let delivered = net.delivered();
    let answered = stats.open + stats.closed + stats.unreachable;
    assert_eq!(stats.duplicates + stats.late, delivered.frames - answered);
    let copies = delivered.copies;
    assert!(copies > 0 && stats.duplicates > 0, "{copies} copies, {} duplicates", stats.duplicates);
    // A late reply to a first try is its probe's answer (the retry holds it in
    // the window): only copies, and the retries' own late replies that came
    // while the scan still listened, are late.
    assert!(stats.late <= delivered.late + copies, "{} late", stats.late);
    assert!(stats.max_rtt.is_some_and(|rtt| rtt > WAIT));
    // Every SYN-ACK delivered, copies included, drew an RST.
    assert_eq!((stats.resets, stats.resets_skipped), (delivered.syn_acks, 0));
    assert_eq!(net.resets_received(), delivered.syn_acks);
    assert_eq!((stats.invalid, stats.rx_drops), (0, 0));
}
