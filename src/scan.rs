//! One scan from a checked configuration to results on standard output and a
//! summary on standard error.

use crate::config::{OutputFormat, ScanConfig, TransportChoice, Verbosity};
use crate::engine::plan::ScanPlan;
use crate::engine::run::{self, EngineError, ScanStats, StopSignal, Wire};
use crate::engine::state::Answered;
use crate::net::{self, NetError, Path};
use crate::output::ResultWriter;
use crate::output::ndjson::NdjsonWriter;
use crate::output::text::TextWriter;
use crate::result::{PortState, Reason, ScanResult};
use crate::target::ranges::RangeSet;
use crate::target::space::TargetSpace;
use crate::transport::{TransportError, raw};
use crate::wire::cookie::CookieKey;
use crate::wire::template::SynTemplate;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("writing results: {0}")]
    Output(#[from] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Interrupted,
}

/// How often streamed results are flushed to standard output.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How many target addresses are checked to share one route.
const ROUTE_SAMPLES: usize = 16;

pub fn execute(cfg: &ScanConfig, stop: &StopSignal) -> Result<Outcome, ScanError> {
    let space = TargetSpace::new(cfg.hosts.clone(), cfg.ports.clone());
    let plan = ScanPlan::new(space, cfg.seed, cfg.src_ports, cfg.retries, cfg.rate, cfg.max_wait);
    let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if cfg.dry_run {
        return dry_run(&plan, cfg, out).map(|()| Outcome::Completed);
    }

    let path = net::resolve_path(&route_samples(&cfg.hosts), &cfg.path)?;
    let (tx, rx) = raw::open(path.ifindex, path.next_hop_mac, path.local, path.src_ip, cfg.src_ports)?;
    let wire = Wire {
        template: SynTemplate::new(path.src_mac, path.next_hop_mac, path.src_ip),
        src_ip: path.src_ip,
        key: CookieKey::new(crate::random::u64(), crate::random::u64()),
    };
    if cfg.verbosity >= Verbosity::Normal {
        eprintln!("prtip: {}", banner(cfg, &plan, &path));
    }

    let mut writer = writer_for(cfg.format, out);
    let mut write_error = None;
    let mut last_flush = Instant::now();
    let answered = Answered::default();
    let stats = run::run(&plan, &wire, tx, rx, stop, &answered, |r| {
        if write_error.is_some() || (cfg.open_only && r.state != PortState::Open) {
            return;
        }
        let mut step = || -> io::Result<()> {
            writer.write(&r)?;
            if last_flush.elapsed() >= FLUSH_EVERY {
                writer.flush()?;
                last_flush = Instant::now();
            }
            Ok(())
        };
        write_error = step().err();
    })?;
    // A closed pipe ends the output but not the scan's summary.
    let output_open = match write_error {
        Some(e) => finish_output(Err(e)).map(|()| false)?,
        None => true,
    };

    // Probes never answered are filtered. After an interrupted scan some were
    // never sent, so none are reported as filtered then.
    let silent = if stats.interrupted {
        0
    } else {
        report_silent(&plan.space, &answered, cfg.open_only || !output_open, writer.as_mut())?
    };
    if output_open {
        finish_output(writer.finish())?;
    }
    if cfg.verbosity >= Verbosity::Normal {
        eprintln!("prtip: {}", summary(&plan, &stats, silent));
        if stats.rx_drops > 0 {
            eprintln!(
                "prtip: warning: the kernel dropped {} received frames; replies may be missing (lower --rate)",
                stats.rx_drops
            );
        }
    }
    if cfg.verbosity >= Verbosity::Verbose {
        eprintln!("prtip: {}", details(&path, &stats));
    }
    Ok(if stats.interrupted { Outcome::Interrupted } else { Outcome::Completed })
}

type Writer<'a> = Box<dyn FlushingWriter + 'a>;

/// A result writer that can also be flushed mid-scan.
trait FlushingWriter: ResultWriter {
    fn flush(&mut self) -> io::Result<()>;
}

impl<W: Write> FlushingWriter for NdjsonWriter<W> {
    fn flush(&mut self) -> io::Result<()> {
        ResultWriter::finish(self)
    }
}

impl<W: Write> FlushingWriter for TextWriter<W> {
    fn flush(&mut self) -> io::Result<()> {
        // Text is written per host at the end; nothing to flush before.
        Ok(())
    }
}

fn writer_for<'a, W: Write + 'a>(format: OutputFormat, out: W) -> Writer<'a> {
    match format {
        OutputFormat::Text => Box::new(TextWriter::new(out)),
        OutputFormat::Ndjson => Box::new(NdjsonWriter::new(out)),
    }
}

/// A closed standard output (`prtip ... | head`) ends the output, not the program.
fn finish_output(r: io::Result<()>) -> Result<(), ScanError> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn report_silent(
    space: &TargetSpace,
    answered: &Answered,
    open_only: bool,
    writer: &mut dyn FlushingWriter,
) -> Result<u64, ScanError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
    let mut silent = 0u64;
    for index in 0..space.len() {
        let (ip, port) = space.get(index);
        if answered.contains(ip, port) {
            continue;
        }
        silent += 1;
        if !open_only {
            let r = ScanResult {
                ip,
                port,
                state: PortState::Filtered,
                reason: Reason::NoResponse,
                ttl: None,
                rtt_us: None,
                time_us: now,
            };
            if let Err(e) = writer.write(&r) {
                finish_output(Err(e))?;
                break;
            }
        }
    }
    Ok(silent)
}

fn dry_run(plan: &ScanPlan, cfg: &ScanConfig, mut out: impl Write) -> Result<(), ScanError> {
    let mut write_all = || -> io::Result<()> {
        for pos in 0..plan.probes_per_pass() {
            let (index, ip, port) = plan.target(pos);
            let sport = plan.source_port(index, 0);
            match cfg.format {
                OutputFormat::Ndjson => {
                    writeln!(out, r#"{{"ip":"{ip}","port":{port},"proto":"tcp","sport":{sport}}}"#)?
                }
                OutputFormat::Text => writeln!(out, "SYN {ip}:{port} from port {sport}")?,
            }
        }
        out.flush()
    };
    finish_output(write_all())?;
    if cfg.verbosity >= Verbosity::Normal {
        eprintln!(
            "prtip: dry run: {} probes ({} hosts x {} ports{}), nothing sent",
            plan.probes_per_pass(),
            plan.space.hosts().len(),
            plan.space.ports().len(),
            excluded_note(cfg.excluded)
        );
    }
    Ok(())
}

/// A few addresses spread over the targets, to check that one route serves them all.
fn route_samples(hosts: &RangeSet) -> Vec<Ipv4Addr> {
    let ranges = hosts.ranges();
    let step = ranges.len().div_ceil(ROUTE_SAMPLES).max(1);
    let mut v: Vec<Ipv4Addr> = ranges.iter().step_by(step).map(|r| Ipv4Addr::from(r.first)).collect();
    if let Some(last) = ranges.last() {
        v.push(Ipv4Addr::from(last.last));
    }
    v
}

fn excluded_note(excluded: u64) -> String {
    if excluded == 0 { String::new() } else { format!("; {excluded} addresses excluded") }
}

fn banner(cfg: &ScanConfig, plan: &ScanPlan, path: &Path) -> String {
    let transport = match cfg.transport {
        TransportChoice::Auto | TransportChoice::Raw => "raw",
    };
    let rate = if cfg.rate == 0 { "unlimited".to_string() } else { format!("{} pps", cfg.rate) };
    format!(
        "SYN scan of {} hosts x {} ports = {} probes{}, from {} on {} ({transport} socket), rate {rate}",
        plan.space.hosts().len(),
        plan.space.ports().len(),
        plan.probes_per_pass(),
        excluded_note(cfg.excluded),
        path.src_ip,
        path.ifname
    )
}

fn summary(plan: &ScanPlan, s: &ScanStats, silent: u64) -> String {
    let secs = s.duration.as_secs_f64();
    let pps = if secs > 0.0 { s.sent as f64 / secs } else { 0.0 };
    let mut line = format!(
        "{} probes sent in {secs:.2} s ({pps:.0} probes/s): {} open, {} closed, {} filtered",
        s.sent,
        s.open,
        s.closed,
        s.unreachable + silent
    );
    if s.interrupted {
        let left = plan.probes_per_pass() - s.answered().min(plan.probes_per_pass());
        line.push_str(&format!("; interrupted, {left} probes without a result"));
    }
    line
}

fn details(path: &Path, s: &ScanStats) -> String {
    let mac = path.next_hop_mac.map(|b| format!("{b:02x}")).join(":");
    let rtt = s.max_rtt.map_or("none measured".to_string(), |d| format!("{} us", d.as_micros()));
    format!(
        "next hop {mac}; slowest round trip {rtt}; {} duplicate replies; {} frames failed validation; {} receive drops",
        s.duplicates, s.invalid, s.rx_drops
    )
}
