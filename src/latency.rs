//! Round-trip times in HDR histograms: one for every reply that carried our
//! send time back, one per reply type. Values are microseconds, 1 us to 60 s,
//! three significant digits.

use crate::result::{Reason, ScanResult};
use hdrhistogram::Histogram;
use std::fmt::Write as _;

const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 3;
/// Percentile steps per halving of the distance to 100%, as HdrHistogram's own tools use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

pub struct Latency {
    pub all: Histogram<u64>,
    pub syn_ack: Histogram<u64>,
    pub reset: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        let new = || Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid histogram bounds");
        Latency { all: new(), syn_ack: new(), reset: new() }
    }
}

impl Latency {
    pub fn record(&mut self, r: &ScanResult) {
        let Some(us) = r.rtt_us else { return };
        // Bounded above by the engine's own plausibility check; clamp, never fail.
        let us = us.clamp(LOWEST_US, HIGHEST_US);
        self.all.saturating_record(us);
        match r.reason {
            Reason::SynAck => self.syn_ack.saturating_record(us),
            Reason::Reset => self.reset.saturating_record(us),
            Reason::Unreachable { .. } | Reason::NoResponse => {}
        }
    }

    /// One line for the end of a scan, or nothing when no reply carried a time.
    pub fn summary(&self) -> Option<String> {
        let h = &self.all;
        (!h.is_empty()).then(|| {
            let q = |p: f64| h.value_at_quantile(p);
            format!(
                "round trip (us): p50 {} p90 {} p99 {} p99.9 {} max {} over {} replies",
                q(0.50),
                q(0.90),
                q(0.99),
                q(0.999),
                h.max(),
                h.len()
            )
        })
    }
}

/// The percentile distribution in HdrHistogram's text format (`.hgrm`), in
/// milliseconds as HdrHistogram's plotters expect.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        // TotalCount is cumulative: the samples at or below the row's value.
        let mut total = 0u64;
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let p = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / SCALE;
            if p < 1.0 {
                let _ = writeln!(out, "{value:12.3} {p:2.12} {total:10} {:14.2}", 1.0 / (1.0 - p));
            } else {
                let _ = writeln!(out, "{value:12.3} {p:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / SCALE, h.stdev() / SCALE);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / SCALE, h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::PortState;

    fn reply(reason: Reason, rtt: Option<u64>) -> ScanResult {
        ScanResult {
            ip: "10.0.0.1".parse().unwrap(),
            port: 22,
            state: PortState::Open,
            reason,
            ttl: Some(64),
            rtt_us: rtt,
            time_us: 0,
        }
    }

    #[test]
    fn records_per_reply_type_and_skips_replies_without_a_time() {
        let mut l = Latency::default();
        assert_eq!(l.summary(), None);
        for us in 1..=1000 {
            l.record(&reply(Reason::SynAck, Some(us)));
        }
        l.record(&reply(Reason::Reset, Some(5000)));
        l.record(&reply(Reason::Reset, None));
        l.record(&reply(Reason::SynAck, Some(u64::MAX)));
        assert_eq!((l.all.len(), l.syn_ack.len(), l.reset.len()), (1002, 1001, 1));
        assert_eq!(
            l.summary().unwrap(),
            "round trip (us): p50 501 p90 902 p99 992 p99.9 5003 max 60030975 over 1002 replies"
        );
    }

    /// Parses the table back and checks it against the histogram it came from.
    #[test]
    fn the_percentile_table_reads_back_as_the_histogram() {
        let mut l = Latency::default();
        for us in [120u64, 150, 150, 200, 950, 20_000, 20_100, 20_250] {
            l.record(&reply(Reason::SynAck, Some(us)));
        }
        let text = percentile_distribution(&l.all);
        let rows: Vec<(f64, f64, u64)> = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty() && !line.contains("Value"))
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect();
        assert!(!rows.is_empty());
        assert!(rows.windows(2).all(|w| w[0].2 <= w[1].2), "TotalCount is cumulative");
        assert_eq!(rows.last().unwrap().2, l.all.len(), "the last row counts every sample");
        for (value_ms, p, total) in &rows {
            let value_us = (value_ms * 1000.0).round() as u64;
            assert_eq!(l.all.count_between(0, value_us), *total, "at {value_ms} ms");
            assert!(*total as f64 >= p * l.all.len() as f64, "p{p}: only {total} samples at or below {value_ms} ms");
        }
        assert_eq!(rows.last().unwrap().1, 1.0);
        assert!(text.contains(&format!("Total count    = {:12}", 8)));
        assert!(text.contains(&format!("Max     = {:12.3}", l.all.max() as f64 / 1000.0)));
    }
}
