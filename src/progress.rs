//! The status line: how far a scan is, refreshed in place on a terminal,
//! as plain periodic lines elsewhere, or as JSON lines for machines.

use crate::engine::rate::RateReason;
use crate::engine::run::Progress;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// Redrawn in place (`\r`), a few times a second.
    Terminal,
    /// One line every few seconds, for logs.
    Lines,
    /// One JSON object per line, every second.
    Json,
}

impl Mode {
    fn every(self) -> Duration {
        match self {
            Mode::Off => Duration::MAX,
            Mode::Terminal => Duration::from_millis(250),
            Mode::Lines => Duration::from_secs(5),
            Mode::Json => Duration::from_secs(1),
        }
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Time left at the average rate so far, if there is a rate to go by.
fn eta(p: &Progress) -> Option<Duration> {
    let rate = per_second(p.sent, p.elapsed);
    (rate > 0.0).then(|| Duration::from_secs_f64(p.planned.saturating_sub(p.sent) as f64 / rate))
}

pub fn line(p: &Progress, backpressure: u64) -> String {
    let done = if p.planned == 0 { 100.0 } else { (p.sent.min(p.planned) as f64 * 100.0) / p.planned as f64 };
    let mut s = format!(
        "{done:5.1}% {:.0} probes/s {:.0} replies/s {} open, {} elapsed, ETA {}",
        per_second(p.sent, p.elapsed),
        per_second(p.answered, p.elapsed),
        p.open,
        clock(p.elapsed),
        eta(p).map_or_else(|| "-".to_string(), clock)
    );
    if p.rate_reason != RateReason::Configured {
        s.push_str(&format!(", rate {} ({})", rate_text(p.rate), p.rate_reason.as_str()));
    }
    if p.rx_drops > 0 || backpressure > 0 {
        s.push_str(&format!(", {} receive drops, storage backpressure {backpressure}", p.rx_drops));
    }
    if p.late > 0 {
        s.push_str(&format!(", {} late replies", p.late));
    }
    s
}

fn rate_text(rate: u64) -> String {
    if rate == 0 { "unlimited".into() } else { format!("{rate}/s") }
}

pub fn json(p: &Progress, backpressure: u64) -> String {
    format!(
        r#"{{"elapsed_s":{:.3},"planned":{},"sent":{},"answered":{},"open":{},"probes_per_s":{:.0},"replies_per_s":{:.0},"eta_s":{},"rx_drops":{},"late":{},"rate":{},"rate_reason":"{}","backpressure":{}}}"#,
        p.elapsed.as_secs_f64(),
        p.planned,
        p.sent,
        p.answered,
        p.open,
        per_second(p.sent, p.elapsed),
        per_second(p.answered, p.elapsed),
        eta(p).map_or_else(|| "null".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
        p.rx_drops,
        p.late,
        if p.rate == 0 { "null".to_string() } else { p.rate.to_string() },
        p.rate_reason.as_str(),
        backpressure
    )
}

/// Writes the status to standard error at the pace its mode asks for.
pub struct Reporter {
    mode: Mode,
    next: Duration,
    drawn: bool,
}

impl Reporter {
    pub fn new(mode: Mode) -> Self {
        Reporter { mode, next: mode.every(), drawn: false }
    }

    pub fn update(&mut self, p: &Progress, backpressure: u64) {
        if self.mode == Mode::Off || p.elapsed < self.next {
            return;
        }
        self.next = p.elapsed + self.mode.every();
        let mut err = std::io::stderr().lock();
        let _ = match self.mode {
            Mode::Terminal => write!(err, "\r\x1b[Kprtip: {}", line(p, backpressure)),
            Mode::Lines => writeln!(err, "prtip: {}", line(p, backpressure)),
            Mode::Json => writeln!(err, "{}", json(p, backpressure)),
            Mode::Off => Ok(()),
        };
        self.drawn = true;
    }

    /// A warning that cannot wait for the summary, on a line of its own (in
    /// `--status-json`, an object of its own); nothing with `-q`.
    pub fn warn(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = match self.mode {
            Mode::Terminal => writeln!(err, "\r\x1b[Kprtip: warning: {text}"),
            Mode::Lines => writeln!(err, "prtip: warning: {text}"),
            Mode::Json => writeln!(err, "{}", serde_json::json!({ "warning": text })),
            Mode::Off => Ok(()),
        };
        // The status line drawn in place was cleared with it; the next update draws it again.
        self.drawn = false;
    }

    /// Clears a line drawn in place, so the summary starts on a clean line.
    pub fn finish(&mut self) {
        if self.mode == Mode::Terminal && self.drawn {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress {
            elapsed: Duration::from_secs(10),
            planned: 1_000_000,
            sent: 250_000,
            answered: 200_000,
            open: 1234,
            rx_drops: 0,
            late: 0,
            rate: 0,
            rate_reason: RateReason::Configured,
            checkpoint: Default::default(),
        }
    }

    #[test]
    fn the_line_says_how_far_how_fast_and_how_long() {
        assert_eq!(
            line(&progress(), 0),
            " 25.0% 25000 probes/s 20000 replies/s 1234 open, 0:00:10 elapsed, ETA 0:00:30"
        );
        let troubled = Progress { rx_drops: 3, ..progress() };
        assert!(line(&troubled, 7).ends_with("ETA 0:00:30, 3 receive drops, storage backpressure 7"));
        let slowed = Progress { rx_drops: 3, rate: 250_000, rate_reason: RateReason::Dropped(3), ..progress() };
        assert!(
            line(&slowed, 0).ends_with(", rate 250000/s (frames dropped), 3 receive drops, storage backpressure 0")
        );
        let start = Progress { elapsed: Duration::ZERO, sent: 0, ..progress() };
        assert!(line(&start, 0).ends_with("ETA -"));
    }

    #[test]
    fn json_is_one_parseable_object() {
        let v: serde_json::Value = serde_json::from_str(&json(&progress(), 2)).unwrap();
        assert_eq!(v["sent"], 250_000);
        assert_eq!(v["eta_s"], 30.0);
        assert_eq!(v["backpressure"], 2);
        assert_eq!(v["rate"], serde_json::Value::Null, "no limit");
        assert_eq!(v["rate_reason"], "configured");
        let slowed = Progress { rate: 250_000, rate_reason: RateReason::Dropped(3), ..progress() };
        let v: serde_json::Value = serde_json::from_str(&json(&slowed, 0)).unwrap();
        assert_eq!((v["rate"].as_u64(), v["rate_reason"].as_str()), (Some(250_000), Some("frames dropped")));
    }

    #[test]
    fn reporters_keep_their_pace() {
        let mut r = Reporter::new(Mode::Lines);
        let at = |s: u64| Progress { elapsed: Duration::from_secs(s), ..progress() };
        r.update(&at(1), 0);
        assert!(!r.drawn, "nothing before five seconds");
        r.update(&at(5), 0);
        assert!(r.drawn);
        assert_eq!(r.next, Duration::from_secs(10));
    }
}
