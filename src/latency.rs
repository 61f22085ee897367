//! Round-trip times in HDR histograms: one for every reply, one per state
//! (which is one per reply type). Values are microseconds, 1 us to 60 s,
//! three significant digits.

use crate::result::{PortState, ScanResult};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 3;
/// Percentile steps per halving of the distance to 100%, as HdrHistogram's own tools use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

#[derive(Debug, Error)]
pub enum LatencyError {
    #[error("unknown latency series `{0}` (expected all, open, closed or filtered)")]
    UnknownSeries(String),
    #[error("a stored {series} histogram is damaged: {reason}")]
    Damaged { series: &'static str, reason: String },
}

/// Which replies a histogram holds. Each state has one reply type, so a
/// series per state is also a series per reply type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Series {
    All,
    /// SYN-ACKs, echo replies, UDP answers: what a scan looks for.
    Open,
    /// RSTs, and a UDP scan's ICMP port unreachables.
    Closed,
    /// ICMP destination unreachable.
    Filtered,
}

impl Series {
    pub const EVERY: [Series; 4] = [Series::All, Series::Open, Series::Closed, Series::Filtered];

    pub fn name(self) -> &'static str {
        match self {
            Series::All => "all",
            Series::Open => "open",
            Series::Closed => "closed",
            Series::Filtered => "filtered",
        }
    }

    pub fn parse(name: &str) -> Result<Series, LatencyError> {
        Series::EVERY.into_iter().find(|s| s.name() == name).ok_or_else(|| LatencyError::UnknownSeries(name.into()))
    }

    pub fn of(state: PortState) -> Series {
        match state {
            PortState::Open | PortState::Up => Series::Open,
            PortState::Closed => Series::Closed,
            // ICMP unreachables, and silence, which has no round trip.
            PortState::Filtered
            | PortState::Undecided
            | PortState::Unreachable
            | PortState::Down
            | PortState::OpenFiltered => Series::Filtered,
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid histogram bounds")
}

/// One histogram per state; the whole scan's is their sum, made when asked
/// for, so that a reply costs one record.
#[derive(Clone)]
pub struct Latency {
    states: [Histogram<u64>; 3],
}

impl Default for Latency {
    fn default() -> Self {
        Latency { states: std::array::from_fn(|_| new_histogram()) }
    }
}

impl Latency {
    /// The sum of stored series' histograms, per series (`All` aside: it
    /// is the sum of the others).
    pub fn from_series(series: impl IntoIterator<Item = (Series, Histogram<u64>)>) -> Result<Latency, String> {
        let mut l = Latency::default();
        for (s, h) in series.into_iter().filter(|(s, _)| *s != Series::All) {
            l.states[s as usize - 1].add(&h).map_err(|e| e.to_string())?;
        }
        Ok(l)
    }

    pub fn record(&mut self, r: &ScanResult) {
        if let Some(us) = r.rtt_us {
            self.record_us(r.state, us);
        }
    }

    pub fn record_us(&mut self, state: PortState, us: u64) {
        // Bounded above by the engine's own plausibility check; clamp, never fail.
        self.states[Series::of(state) as usize - 1].saturating_record(us.clamp(LOWEST_US, HIGHEST_US));
    }

    pub fn get(&self, series: Series) -> Histogram<u64> {
        match series {
            Series::All => {
                let mut all = new_histogram();
                for h in &self.states {
                    all.add(h).expect("histograms of the same bounds add");
                }
                all
            }
            state => self.states[state as usize - 1].clone(),
        }
    }

    /// Every series that holds a sample, in HdrHistogram's V2 deflate encoding.
    pub fn encode(&self) -> Vec<(Series, Vec<u8>)> {
        Series::EVERY
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|(_, h)| !h.is_empty())
            .map(|(s, h)| {
                let mut bytes = Vec::new();
                V2DeflateSerializer::new()
                    .serialize(&h, &mut bytes)
                    .expect("a histogram within its bounds always encodes into memory");
                (s, bytes)
            })
            .collect()
    }

    /// One line for the end of a scan, or nothing when no reply carried a time.
    pub fn summary(&self) -> Option<String> {
        let h = self.get(Series::All);
        (!h.is_empty()).then(|| format!("round trip (us): {}", percentiles(&h)))
    }
}

pub fn decode(series: Series, bytes: &[u8]) -> Result<Histogram<u64>, LatencyError> {
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| LatencyError::Damaged { series: series.name(), reason: format!("{e:?}") })
}

/// The compact percentile line: p50, p90, p99, p99.9, max and the count.
pub fn percentiles(h: &Histogram<u64>) -> String {
    let q = |p: f64| h.value_at_quantile(p);
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} over {} replies",
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        h.max(),
        h.len()
    )
}

/// How `slowest` groups targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Host,
    /// The /24 network around each IPv4 address (the /64 around an IPv6 one).
    Net24,
}

/// The round trips of one host or network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLatency {
    pub group: String,
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub max: u64,
}

/// The `top` groups with the highest median round trip, slowest first.
/// Percentiles are exact (nearest rank), since a group's samples are few.
pub fn slowest(samples: impl IntoIterator<Item = (IpAddr, u64)>, by: GroupBy, top: usize) -> Vec<GroupLatency> {
    let mut groups: BTreeMap<(IpAddr, u8), Vec<u64>> = BTreeMap::new();
    for (ip, us) in samples {
        let key = match (by, ip) {
            (GroupBy::Host, _) => (ip, 0),
            (GroupBy::Net24, IpAddr::V4(a)) => (IpAddr::V4(Ipv4Addr::from(u32::from(a) & 0xffff_ff00)), 24),
            (GroupBy::Net24, IpAddr::V6(a)) => (IpAddr::V6(Ipv6Addr::from(u128::from(a) & !(u128::MAX >> 64))), 64),
        };
        groups.entry(key).or_default().push(us);
    }
    let mut out: Vec<GroupLatency> = groups
        .into_iter()
        .map(|((ip, prefix), mut v)| {
            v.sort_unstable();
            let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
            GroupLatency {
                group: match by {
                    GroupBy::Host => ip.to_string(),
                    GroupBy::Net24 => format!("{ip}/{prefix}"),
                },
                count: v.len(),
                p50: rank(0.5),
                p90: rank(0.9),
                max: v[v.len() - 1],
            }
        })
        .collect();
    // Stable on ties: the earlier address first.
    out.sort_by(|a, b| b.p50.cmp(&a.p50).then(b.max.cmp(&a.max)));
    out.truncate(top);
    out
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
    use crate::result::Reason;

    fn reply(reason: Reason, rtt: Option<u64>) -> ScanResult {
        let state = match reason {
            Reason::SynAck | Reason::ZeroWindow => PortState::Open,
            Reason::EchoReply => PortState::Up,
            Reason::UdpResponse => PortState::Open,
            Reason::Reset | Reason::ConnRefused => PortState::Closed,
            Reason::Unreachable { .. } | Reason::NoResponse => PortState::Filtered,
            Reason::FramesDropped => PortState::Undecided,
        };
        ScanResult { ip: "10.0.0.1".parse().unwrap(), port: 22, state, reason, ttl: Some(64), rtt_us: rtt, time_us: 0 }
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
        l.record(&reply(Reason::Unreachable { code: 13 }, Some(70)));
        let lens = Series::EVERY.map(|s| l.get(s).len());
        assert_eq!(lens, [1003, 1001, 1, 1]);
        assert_eq!(
            l.summary().unwrap(),
            "round trip (us): p50 501 p90 902 p99 992 p99.9 5003 max 60030975 over 1003 replies"
        );
    }

    #[test]
    fn the_stored_encoding_reads_back_as_the_same_histograms() {
        let mut l = Latency::default();
        for us in [3u64, 150, 20_000, 20_001, 999_999] {
            l.record(&reply(Reason::SynAck, Some(us)));
        }
        l.record(&reply(Reason::Reset, Some(42)));
        let encoded = l.encode();
        let series: Vec<Series> = encoded.iter().map(|(s, _)| *s).collect();
        assert_eq!(series, [Series::All, Series::Open, Series::Closed], "empty series are not stored");
        for (s, bytes) in &encoded {
            assert_eq!(decode(*s, bytes).unwrap(), l.get(*s));
        }
        assert!(decode(Series::All, &encoded[0].1[..10]).is_err());
        assert!(decode(Series::All, b"garbage").is_err());
        assert_eq!(Series::parse("closed").unwrap(), Series::Closed);
        assert!(Series::parse("rst").is_err());
    }

    #[test]
    fn the_slowest_hosts_and_networks_come_first() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let samples = [
            (ip("10.0.0.1"), 100),
            (ip("10.0.0.1"), 300),
            (ip("10.0.0.2"), 5000),
            (ip("10.0.1.7"), 200),
            (ip("10.0.1.7"), 200),
            (ip("10.0.1.7"), 900),
        ];
        let hosts = slowest(samples, GroupBy::Host, 2);
        assert_eq!(
            hosts,
            [
                GroupLatency { group: "10.0.0.2".into(), count: 1, p50: 5000, p90: 5000, max: 5000 },
                GroupLatency { group: "10.0.1.7".into(), count: 3, p50: 200, p90: 900, max: 900 },
            ]
        );
        let nets = slowest(samples, GroupBy::Net24, 10);
        assert_eq!(
            nets,
            [
                GroupLatency { group: "10.0.0.0/24".into(), count: 3, p50: 300, p90: 5000, max: 5000 },
                GroupLatency { group: "10.0.1.0/24".into(), count: 3, p50: 200, p90: 900, max: 900 },
            ]
        );
        assert!(slowest([], GroupBy::Host, 5).is_empty());
        let v6 = [(ip("fd00:201::1:5"), 10), (ip("fd00:201::ffff:1"), 30), (ip("fd00:202::1"), 20)];
        let nets = slowest(v6, GroupBy::Net24, 10);
        let groups: Vec<(&str, usize)> = nets.iter().map(|g| (g.group.as_str(), g.count)).collect();
        assert_eq!(groups, [("fd00:202::/64", 1), ("fd00:201::/64", 2)]);
    }

    /// Parses the table back and checks it against the histogram it came from.
    #[test]
    fn the_percentile_table_reads_back_as_the_histogram() {
        let mut l = Latency::default();
        for us in [120u64, 150, 150, 200, 950, 20_000, 20_100, 20_250] {
            l.record(&reply(Reason::SynAck, Some(us)));
        }
        let all = l.get(Series::All);
        let text = percentile_distribution(&all);
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
        assert_eq!(rows.last().unwrap().2, all.len(), "the last row counts every sample");
        for (value_ms, p, total) in &rows {
            let value_us = (value_ms * 1000.0).round() as u64;
            assert_eq!(all.count_between(0, value_us), *total, "at {value_ms} ms");
            assert!(*total as f64 >= p * all.len() as f64, "p{p}: only {total} samples at or below {value_ms} ms");
        }
        assert_eq!(rows.last().unwrap().1, 1.0);
        assert!(text.contains(&format!("Total count    = {:12}", 8)));
        assert!(text.contains(&format!("Max     = {:12.3}", all.max() as f64 / 1000.0)));
    }
}
