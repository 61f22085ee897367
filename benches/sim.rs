//! The engine over the simulated Internet (tests/common/sim.rs): a sweep of
//! an IPv4 prefix on one port, checked against the simulator's truth, with
//! its time and this process's peak memory. One process per size, so that
//! the peak is that sweep's:
//!
//!   cargo bench --bench sim -- 10.0.0.0/8
//!
//! Prints one line: prefix, probes, probes sent (retries included), wall
//! time, probes sent per second, peak RSS, the most replies the simulator
//! held at once, the most probes the engine's send window held, the late
//! replies it counted, and whether every probe's result was its true state
//! (`SimNet::exact`). Exits 1 if one was not.

#[path = "../tests/common/sim.rs"]
mod sim;

use prtip::engine::plan::ScanPlan;
use prtip::target::hosts::{Family, Hosts};
use prtip::target::ranges::{Range, RangeSet};
use prtip::target::space::TargetSpace;
use prtip::target::spec::{TargetSpec, parse_target};
use sim::SimNet;
use std::time::{Duration, Instant};

/// Longer than every round trip of the simulated Internet but its late ones.
const WAIT: Duration = Duration::from_millis(1100);
/// What a run without a prefix (`cargo test --benches`) sweeps.
const DEFAULT_PREFIX: &str = "10.0.0.0/16";

fn main() {
    // `cargo bench` adds `--bench` to the arguments.
    let prefix = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_else(|| DEFAULT_PREFIX.into());
    let range = match parse_target(&prefix) {
        Ok(TargetSpec::Range(r)) if r.family == Family::V4 => r.range,
        _ => {
            eprintln!("usage: cargo bench --bench sim -- IPV4_PREFIX (e.g. 10.0.0.0/8)");
            std::process::exit(2);
        }
    };
    let hosts = Hosts::new(Family::V4, RangeSet::from_ranges(vec![range]));
    let space = TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(80, 80)])).expect("one port of IPv4");
    let net = SimNet::new(0x5eed, WAIT);
    // The CLI's defaults: source ports 61000-61063, one retry, no rate limit.
    let plan = ScanPlan::new(space, 7, (61000, 61063), 1, 0, WAIT);
    let started = Instant::now();
    let (stats, tally) = net.sweep(&plan);
    let wall = started.elapsed().as_secs_f64();
    let truth = net.truth(&plan.space);
    let exact = net.exact(&truth, &tally, &plan.space, &stats);
    println!(
        "{prefix} x 1 port: {} probes, {} sent, {wall:.2} s, {:.2} M probes/s, peak RSS {:.1} MiB, \
         most replies in flight {}, window peak {} probes ({:.1} MiB), results waiting at most {}, late {}, exact: {}",
        plan.space.len(),
        stats.sent,
        stats.sent as f64 / wall / 1e6,
        peak_rss_kib() as f64 / 1024.0,
        net.most_in_flight(),
        stats.window_peak,
        stats.window_bytes as f64 / (1 << 20) as f64,
        stats.backlog_peak,
        stats.late,
        if exact { "yes" } else { "NO" }
    );
    if !exact {
        eprintln!("found {:?}", tally.found());
        eprintln!("truth {truth:?}");
        eprintln!("{stats:?}");
        eprintln!("delivered {:?}", net.delivered());
        std::process::exit(1);
    }
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
