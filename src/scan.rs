//! One scan from a checked configuration to results on standard output and a
//! summary on standard error.

use crate::config::{OutputFormat, ScanConfig, TransportChoice, Verbosity};
use crate::engine::plan::{Cursor, ScanPlan};
use crate::engine::run::{self, EngineError, Observer, Progress, ScanStats, StopSignal, Wire};
use crate::engine::state::Answered;
use crate::latency::{self, Latency, Series};
use crate::net::{self, NetError, Path};
use crate::output::{self, Format, ResultWriter, RunEnd, RunInfo, decimal};
use crate::progress;
use crate::result::{PortState, Reason, ScanResult};
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::db::{ScanEnd, ScanStart};
use crate::store::{Finish, Store, StoreConfig, StoreError, StoreReport};
use crate::target::hosts::Hosts;
use crate::transport::xdp::{self, XdpAttachment};
use crate::transport::{Receive, Transmit, TransportError, WithLinkDrops, raw};
use crate::wire::cookie::CookieKey;
use crate::wire::template::SynTemplate;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
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
    #[error("storing results: {0}")]
    Store(#[from] StoreError),
    #[error("writing {}: {source}", path.display())]
    LatencyFile {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
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
    let space = cfg.space.clone();
    let start = cfg.resume.as_ref().map_or(Cursor::default(), |r| r.cursor);
    let plan = ScanPlan::new(space, cfg.seed, cfg.src_ports, cfg.retries, cfg.rate, cfg.max_wait)
        .with_shard(cfg.shard)
        .with_fixed_rate(cfg.fixed_rate)
        .starting_at(start);
    let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if cfg.dry_run {
        return dry_run(&plan, cfg, out, stop);
    }

    let path = net::resolve_path(&route_samples(cfg.space.hosts()), &cfg.path)?;
    tracing::info!(
        ifname = %path.ifname,
        src = %path.src_ip,
        next_hop_mac = ?path.next_hop_mac,
        via_ip_stack = path.via_ip_stack,
        "path resolved"
    );
    let Opened { txs, mut rx, resets, _attachment, kind } = open_transport(cfg, &path)?;
    if let Some(link) = net::interface::LinkDrops::open(&path.ifname, path.ifindex) {
        rx = Box::new(WithLinkDrops { inner: rx, link });
    }
    // Fault injection for the tests of a receive path slower than the replies
    // (tests/drops.rs); release builds do not have it.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("PRTIP_TEST_RX_STALL_MS").ok().and_then(|v| v.parse().ok()) {
        rx = Box::new(crate::transport::Stalled { inner: rx, stall: Duration::from_millis(ms) });
    }
    // Fault injection for the test that a panic leaves no XDP program behind
    // (tests/xdp.rs); there is no other way to make prtip panic, and release
    // builds do not have it.
    #[cfg(debug_assertions)]
    if std::env::var_os("PRTIP_TEST_PANIC").is_some() {
        panic!("PRTIP_TEST_PANIC is set");
    }
    tracing::info!(transport = %kind, probes_per_pass = plan.probes_per_pass(), seed = cfg.seed, "transport open");
    let wire = Wire {
        template: SynTemplate::new(path.src_mac, path.next_hop_mac, path.src_ip),
        src_ip: path.src_ip,
        key: CookieKey::new(crate::random::u64(), crate::random::u64()),
    };
    let info = RunInfo {
        command_line: cfg.command_line.clone(),
        start_us: now_us(),
        ports: cfg.ports_spec.clone(),
        port_count: cfg.space.port_count(),
        hosts_total: cfg.space.host_count(),
    };
    let (store, checkpoint_file) = start_store(cfg, &plan, &info)?;
    let prior_sent = cfg.resume.as_ref().map_or(0, |r| r.sent);
    let mut sinks = Sinks {
        open_only: cfg.open_only,
        writer: output::writer(stdout_format(cfg.format), TimedFlush::new(out), &info, false),
        output_error: None,
        store,
        reporter: progress::Reporter::new(progress_mode(cfg)),
        latency: Latency::default(),
        checkpoint: start,
        checkpoint_sent: prior_sent,
        prior_sent,
    };
    if cfg.verbosity >= Verbosity::Normal {
        if let Some(note) = special_note(cfg) {
            eprintln!("prtip: {note}");
        }
        eprintln!("prtip: {}", banner(cfg, &plan, &path, &kind));
    }
    let answered = Answered::default();
    let prior = take_over(cfg, &answered, &mut sinks);
    let outcome = run::run(&plan, &wire, txs, rx, resets, stop, &answered, &mut sinks);
    sinks.reporter.finish();
    let Sinks { mut writer, output_error, mut store, latency, checkpoint, checkpoint_sent, .. } = sinks;
    let mut stats = match outcome {
        Ok(stats) => stats,
        Err(e) => {
            // Keep what was received: the stored scan ends as interrupted, at its last checkpoint.
            if let Some(s) = store {
                let failed = ScanStats { interrupted: true, cursor: checkpoint, ..prior.clone() };
                let _ = s.finish(finish(&failed, 0, checkpoint_sent, latency));
            }
            return Err(e.into());
        }
    };
    // The scan's counts are the union of its runs'.
    stats.open += prior.open;
    stats.closed += prior.closed;
    stats.unreachable += prior.unreachable;
    let output_open = output_error.is_none();
    if let Some(e) = output_error {
        finish_output(Err(e))?;
    }

    // Probes never answered are filtered, or undecided where their last
    // attempt may have lost its reply to a drop on this host. After an
    // interrupted scan some were never sent, so none are reported then.
    let silent = if stats.interrupted {
        Silent::default()
    } else {
        let stdout_writer = if output_open { Some(writer.as_mut()) } else { None };
        // Silent probes reach the store only to be stored or written.
        let stored = if cfg.database.is_some() || !cfg.files.is_empty() { store.as_mut() } else { None };
        report_silent(&plan, &answered, &stats, cfg.open_only, stdout_writer, stored)?
    };
    let end = finish(&stats, silent.filtered, prior_sent, latency.clone());
    if output_open {
        finish_output(writer.finish(&end.run))?;
    }
    let stored = store.map(|s| s.finish(end)).transpose()?;
    if cfg.verbosity >= Verbosity::Normal {
        eprintln!("prtip: {}", summary(&plan, &stats, silent));
        if silent.undecided > 0 {
            eprintln!(
                "prtip: warning: {} probes are undecided: this host dropped frames while their replies were due, on every try (raise --retries, or lower --rate with --fixed-rate)",
                silent.undecided
            );
        }
        if stats.refused > 0 {
            eprintln!(
                "prtip: warning: the kernel refused to send {} probes (broadcast addresses, firewall rules or no route); they are reported as filtered",
                stats.refused
            );
        }
        if stats.rx_drops > 0 {
            let adapted = match stats.lowest_rate {
                Some(r) => {
                    format!("; the send rate was lowered {} times, to {r} probes/s at the least", stats.rate_cuts)
                }
                None => String::new(),
            };
            let retried = if plan.retries > 0 { ", and were retried" } else { "" };
            eprintln!(
                "prtip: note: this host dropped {} frames; probes whose replies were due then were not taken as silent{retried}{adapted}",
                stats.rx_drops
            );
        }
        if let Some(note) = stored.as_ref().map(|r| stored_note(cfg, r)).filter(|n| !n.is_empty()) {
            eprintln!("prtip: {note}");
        }
        if let Some(why) = stored.as_ref().and_then(|r| r.checkpoint_lost.as_ref()) {
            eprintln!("prtip: warning: no checkpoint was kept, so this scan cannot be resumed: {why}");
        }
        if let Some(line) = latency.summary() {
            eprintln!("prtip: {line}");
        }
    }
    if cfg.latency_table || cfg.latency_file.is_some() {
        let table = latency::percentile_distribution(&latency.get(Series::All));
        if cfg.latency_table {
            eprint!("{table}");
        }
        if let Some(path) = &cfg.latency_file {
            std::fs::write(path, table).map_err(|e| ScanError::LatencyFile { path: path.clone(), source: e })?;
        }
    }
    if cfg.verbosity >= Verbosity::Verbose {
        eprintln!("prtip: {}", details(&path, &stats, stored.as_ref()));
    }
    if stats.interrupted && cfg.verbosity >= Verbosity::Normal {
        let kept = stored.as_ref().is_some_and(|r| r.checkpoint_lost.is_none());
        match (&cfg.database, stored.as_ref().and_then(|r| r.scan_id), checkpoint_file.as_ref().filter(|_| kept)) {
            (Some(db), Some(id), _) => {
                eprintln!("prtip: resume with: prtip --resume {id} --database {}", db.display())
            }
            (None, _, Some(file)) => eprintln!("prtip: resume with: prtip --resume {}", file.display()),
            _ => {}
        }
    }
    Ok(if stats.interrupted { Outcome::Interrupted } else { Outcome::Completed })
}

/// Where a scan's results go while it runs: standard output, the storage
/// task, and the status line.
struct Sinks<'a> {
    open_only: bool,
    writer: Box<dyn ResultWriter + 'a>,
    /// Set when standard output failed (a closed pipe); writing stops there.
    output_error: Option<io::Error>,
    store: Option<Store>,
    reporter: progress::Reporter,
    latency: Latency,
    /// The last checkpoint handed to the store, and the probes sent by then.
    checkpoint: Cursor,
    checkpoint_sent: u64,
    /// Probes sent by the runs this one resumes.
    prior_sent: u64,
}

impl Observer for Sinks<'_> {
    fn results(&mut self, batch: Vec<ScanResult>) {
        for r in &batch {
            self.latency.record(r);
        }
        if self.output_error.is_none() {
            for r in batch.iter().filter(|r| !self.open_only || r.state == PortState::Open) {
                if let Err(e) = self.writer.write(r) {
                    self.output_error = Some(e);
                    break;
                }
            }
        }
        if let Some(s) = &mut self.store {
            s.send(batch);
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.reporter.update(p, self.store.as_ref().map_or(0, Store::backpressure));
        if let Some(s) = &mut self.store
            && p.checkpoint != self.checkpoint
        {
            self.checkpoint = p.checkpoint;
            self.checkpoint_sent = self.prior_sent.saturating_add(p.sent);
            s.checkpoint(p.checkpoint, self.checkpoint_sent);
        }
    }
}

fn progress_mode(cfg: &ScanConfig) -> progress::Mode {
    use std::io::IsTerminal;
    if cfg.verbosity == Verbosity::Quiet {
        progress::Mode::Off
    } else if cfg.status_json {
        progress::Mode::Json
    } else if io::stderr().is_terminal() {
        progress::Mode::Terminal
    } else {
        progress::Mode::Lines
    }
}

/// The transport halves (a sending half per queue used), and the XDP
/// program's attachment while it is in use.
struct Opened {
    txs: Vec<Box<dyn Transmit>>,
    rx: Box<dyn Receive>,
    /// Where RSTs for SYN-ACKs go when this host's kernel never sees them.
    resets: Option<Box<dyn Transmit>>,
    _attachment: Option<XdpAttachment>,
    kind: String,
}

fn open_transport(cfg: &ScanConfig, path: &Path) -> Result<Opened, ScanError> {
    let raw = || -> Result<Opened, ScanError> {
        let (tx, rx) = raw::open(path.ifindex, path.next_hop_mac, path.via_ip_stack, path.src_ip, cfg.src_ports)?;
        // This host's kernel sees the SYN-ACKs too, and resets them itself.
        let resets = None;
        Ok(Opened { txs: vec![Box::new(tx)], rx: Box::new(rx), resets, _attachment: None, kind: "raw sockets".into() })
    };
    let xdp = || -> Result<Opened, TransportError> {
        if path.via_ip_stack {
            return Err(TransportError::Xdp {
                what: "choosing the transport",
                why: format!(
                    "targets on {}'s own subnet or this host's own addresses need the kernel's IP stack",
                    path.ifname
                ),
            });
        }
        let (rx, tx) = net::interface::queues(&path.ifname, path.ifindex).ok_or_else(|| TransportError::Xdp {
            what: "counting queues",
            why: format!(
                "/sys does not show {} of this network namespace (enter it with `ip netns exec`)",
                path.ifname
            ),
        })?;
        let available = xdp::Queues { rx, tx };
        let mut queues = cfg.queues.unwrap_or_else(|| default_queues(available));
        // Each sending queue paces at least one probe a second.
        if cfg.rate > 0 {
            queues = queues.min(u32::try_from(cfg.rate).unwrap_or(u32::MAX));
        }
        let (txs, rx, attachment) =
            xdp::open(&path.ifname, path.ifindex, available, path.src_ip, cfg.src_ports, queues)?;
        let mode = if attachment.zero_copy { "zero-copy" } else { "copy mode" };
        let kind = format!("AF_XDP, {mode}, {queues} {}", if queues == 1 { "queue" } else { "queues" });
        let txs = txs.into_iter().map(|t| Box::new(t) as Box<dyn Transmit>).collect();
        let resets: Box<dyn Transmit> = Box::new(raw::frame_sender(path.ifindex, path.next_hop_mac, path.src_ip)?);
        Ok(Opened { txs, rx: Box::new(rx), resets: Some(resets), _attachment: Some(attachment), kind })
    };
    match cfg.transport {
        TransportChoice::Raw => raw(),
        TransportChoice::Xdp => Ok(xdp()?),
        TransportChoice::Auto => xdp().or_else(|e| {
            tracing::debug!(error = %e, "AF_XDP unavailable, falling back to raw sockets");
            if cfg.verbosity >= Verbosity::Normal {
                eprintln!("prtip: notice: using raw sockets: {e}");
            }
            raw()
        }),
    }
}

/// As many transmit queues as the interface has (its combined queues), at
/// most one per core, as the AF_XDP issue asks. On two cores shared with the
/// receive thread and a local target, two sent 35% less than one
/// (docs/PERFORMANCE.md); `--queues 1` is the remedy there.
fn default_queues(xdp::Queues { rx, tx }: xdp::Queues) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    rx.min(tx).min(cores).min(xdp::MAX_QUEUES)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

fn stdout_format(format: OutputFormat) -> Format {
    match format {
        OutputFormat::Text => Format::Text,
        OutputFormat::Ndjson => Format::Ndjson,
    }
}

/// What the earlier runs of a resumed scan received: their answers are not
/// asked for again, count in the scan's totals and its round trips, and go
/// into the output files, which are written anew. Standard output carries
/// on from where the last run's stopped, so they are not printed again.
fn take_over(cfg: &ScanConfig, answered: &Answered, sinks: &mut Sinks) -> ScanStats {
    let mut counts = ScanStats::default();
    let Some(resume) = &cfg.resume else { return counts };
    // What a hostile or stale checkpoint holds outside the scan is not taken.
    let mut taken = Vec::new();
    for r in resume.prior.iter().filter(|r| r.reason.is_reply()) {
        let Some(index) = cfg.space.index_of(r.ip, r.port) else { continue };
        if !answered.insert(index) {
            continue;
        }
        sinks.latency.record(r);
        match r.state {
            PortState::Open => counts.open += 1,
            PortState::Closed => counts.closed += 1,
            // A reply's state; a hostile checkpoint's mismatch counts as the reply it names.
            PortState::Filtered | PortState::Undecided => counts.unreachable += 1,
        }
        taken.push(*r);
    }
    if let Some(s) = &mut sinks.store {
        for chunk in taken.chunks(4096) {
            s.replay(chunk.to_vec());
        }
    }
    counts
}

/// Starts the storage task, which also keeps the scan's checkpoint; returns
/// it with the checkpoint file it keeps when there is no database. A scan
/// that asked for no database and no files still runs when its checkpoint
/// cannot be kept, with a warning.
fn start_store(
    cfg: &ScanConfig,
    plan: &ScanPlan,
    info: &RunInfo,
) -> Result<(Option<Store>, Option<PathBuf>), ScanError> {
    let targets: Vec<String> = cfg
        .space
        .hosts()
        .ranges()
        .map(|r| match r.range.first == r.range.last {
            true => r.first().to_string(),
            false => format!("{}-{}", r.first(), r.last()),
        })
        .collect();
    let config_json = serde_json::json!({
        "targets": targets,
        "hosts": cfg.space.host_count(),
        // Above 2^64 (an IPv6 exclusion can be) only as text: JSON numbers stop there.
        "excluded": u64::try_from(cfg.excluded).map_or_else(|_| cfg.excluded.to_string().into(), serde_json::Value::from),
        "ports": cfg.ports_spec,
        "port_count": cfg.space.port_count(),
        "source_ports": format!("{}-{}", cfg.src_ports.0, cfg.src_ports.1),
        "rate": cfg.rate,
        "retries": cfg.retries,
        "wait_s": cfg.max_wait.as_secs_f64(),
        "seed": cfg.seed,
        "open_only": cfg.open_only,
        "store_silent": cfg.store_silent,
    });
    let resume = cfg.resume.as_ref();
    let checkpoint_file = match (&cfg.database, resume.and_then(|r| r.file.clone())) {
        (Some(_), _) => None,
        (None, Some(file)) => Some(file),
        (None, None) => {
            Some(checkpoint::dir().join(format!("{}-{}.json", info.start_us / 1_000_000, std::process::id())))
        }
    };
    let started = Store::start(StoreConfig {
        database: cfg.database.clone(),
        store_silent: cfg.store_silent,
        open_only: cfg.open_only,
        files: cfg.files.clone(),
        start: ScanStart {
            started_us: info.start_us,
            command_line: cfg.command_line.clone(),
            config_json: config_json.to_string(),
            transport: "raw".into(),
            seed: cfg.seed,
        },
        info: info.clone(),
        checkpoint: Some(Checkpoint {
            arguments: cfg.arguments.clone(),
            seed: cfg.seed,
            hosts: cfg.space.hosts().clone(),
            cursor: plan.start,
            sent: resume.map_or(0, |r| r.sent),
        }),
        checkpoint_file: checkpoint_file.clone(),
        resume_scan: resume.and_then(|r| r.scan_id),
    });
    match started {
        Ok(store) => Ok((Some(store), checkpoint_file)),
        Err(e) if cfg.database.is_none() && cfg.files.is_empty() && resume.is_none() => {
            if cfg.verbosity >= Verbosity::Normal {
                eprintln!("prtip: warning: no checkpoint, so this scan cannot be resumed: {e}");
            }
            Ok((None, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// How the scan ended; `prior_sent` counts the probes of the runs it resumes.
fn finish(stats: &ScanStats, silent: u64, prior_sent: u64, latency: Latency) -> Finish {
    let end_us = now_us();
    Finish {
        scan: ScanEnd {
            ended_us: end_us,
            probes_sent: prior_sent.saturating_add(stats.sent),
            open: stats.open,
            closed: stats.closed,
            filtered: stats.unreachable + silent,
            interrupted: stats.interrupted,
            cursor: stats.cursor,
        },
        run: RunEnd { end_us, interrupted: stats.interrupted },
        latency,
    }
}

fn stored_note(cfg: &ScanConfig, r: &StoreReport) -> String {
    let mut parts = Vec::new();
    if let (Some(db), Some(id)) = (&cfg.database, r.scan_id) {
        parts.push(format!("stored {} results as scan {id} in {}", r.rows_stored, db.display()));
    }
    if !cfg.files.is_empty() {
        let names: Vec<String> = cfg.files.iter().map(|f| f.path.display().to_string()).collect();
        parts.push(format!("wrote {}", names.join(", ")));
    }
    parts.join("; ")
}

/// Flushes a buffered standard output at most every `FLUSH_EVERY`, so that
/// streamed results show up promptly without a system call per line.
struct TimedFlush<W: Write> {
    inner: W,
    last: Instant,
}

impl<W: Write> TimedFlush<W> {
    fn new(inner: W) -> Self {
        TimedFlush { inner, last: Instant::now() }
    }
}

impl<W: Write> Write for TimedFlush<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.last.elapsed() >= FLUSH_EVERY {
            self.inner.flush()?;
            self.last = Instant::now();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A closed standard output (`prtip ... | head`) ends the output, not the program.
fn finish_output(r: io::Result<()>) -> Result<(), ScanError> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The probes of a completed scan that never got an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Silent {
    filtered: u64,
    /// Silent on a last try whose reply may have been dropped on this host.
    undecided: u64,
}

fn report_silent(
    plan: &ScanPlan,
    answered: &Answered,
    stats: &ScanStats,
    open_only: bool,
    mut writer: Option<&mut (dyn ResultWriter + '_)>,
    mut store: Option<&mut Store>,
) -> Result<Silent, ScanError> {
    const BATCH: usize = 4096;
    let now = now_us();
    let mut silent = Silent::default();
    let mut batch = Vec::new();
    for (j, pos) in plan.positions().enumerate() {
        let (index, ip, port) = plan.target(pos);
        if answered.contains(index) {
            continue;
        }
        let (state, reason) = if stats.undecided(plan, j as u64) {
            silent.undecided += 1;
            (PortState::Undecided, Reason::FramesDropped)
        } else {
            silent.filtered += 1;
            (PortState::Filtered, Reason::NoResponse)
        };
        let r = ScanResult { ip, port, state, reason, ttl: None, rtt_us: None, time_us: now };
        if !open_only
            && let Some(w) = &mut writer
            && let Err(e) = w.write(&r)
        {
            finish_output(Err(e))?;
            writer = None;
        }
        if let Some(s) = &mut store {
            batch.push(r);
            if batch.len() == BATCH {
                s.send(std::mem::take(&mut batch));
            }
        }
    }
    if let Some(s) = store {
        s.send(batch);
    }
    Ok(silent)
}

fn dry_run(plan: &ScanPlan, cfg: &ScanConfig, mut out: impl Write, stop: &StopSignal) -> Result<Outcome, ScanError> {
    const CHUNK: usize = 1 << 16;
    let mut interrupted = false;
    let mut write_all = || -> io::Result<()> {
        let mut line = Vec::with_capacity(CHUNK + 128);
        for (n, pos) in plan.positions().enumerate() {
            // A dry run of the whole internet prints billions of lines: Ctrl-C ends it like a scan.
            if n % 65536 == 0 && stop.stop_sending() {
                interrupted = true;
                break;
            }
            let (index, ip, port) = plan.target(pos);
            let sport = plan.source_port(index, 0);
            match cfg.format {
                OutputFormat::Ndjson => {
                    line.extend_from_slice(br#"{"ip":""#);
                    decimal::push_ip(&mut line, ip);
                    line.extend_from_slice(br#"","port":"#);
                    decimal::push_u16(&mut line, port);
                    line.extend_from_slice(br#","proto":"tcp","sport":"#);
                    decimal::push_u16(&mut line, sport);
                    line.extend_from_slice(b"}\n");
                }
                OutputFormat::Text => {
                    line.extend_from_slice(b"SYN ");
                    push_endpoint(&mut line, ip);
                    line.push(b':');
                    decimal::push_u16(&mut line, port);
                    line.extend_from_slice(b" from port ");
                    decimal::push_u16(&mut line, sport);
                    line.push(b'\n');
                }
            }
            if line.len() >= CHUNK {
                out.write_all(&line)?;
                line.clear();
            }
        }
        out.write_all(&line)?;
        out.flush()
    };
    finish_output(write_all())?;
    if cfg.verbosity >= Verbosity::Normal {
        if let Some(note) = special_note(cfg) {
            eprintln!("prtip: {note}");
        }
        eprintln!(
            "prtip: dry run: {} probes ({} hosts x {} ports{}), {}; nothing sent",
            plan.probes_per_pass(),
            plan.space.host_count(),
            plan.space.port_count(),
            excluded_note(cfg.excluded),
            rate_note(cfg.rate, plan.probes_per_pass())
        );
    }
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Completed })
}

/// An address as the host part of `host:port`: IPv6 in brackets (RFC 3986).
fn push_endpoint(line: &mut Vec<u8>, ip: IpAddr) {
    if ip.is_ipv6() {
        line.push(b'[');
    }
    decimal::push_ip(line, ip);
    if ip.is_ipv6() {
        line.push(b']');
    }
}

/// A few addresses spread over the targets, to check that one route serves them all.
fn route_samples(hosts: &Hosts) -> Vec<IpAddr> {
    let ranges: Vec<_> = hosts.ranges().collect();
    let step = ranges.len().div_ceil(ROUTE_SAMPLES).max(1);
    let mut v: Vec<IpAddr> = ranges.iter().step_by(step).map(|r| r.first()).collect();
    if let Some(last) = ranges.last() {
        v.push(last.last());
    }
    v
}

/// The rate, and at a set rate how long one pass takes: the budget a user
/// reads before anything is sent.
fn rate_note(rate: u64, probes: u64) -> String {
    match rate {
        0 => "rate unlimited".to_string(),
        r => {
            let secs = probes.div_ceil(r);
            format!("rate {r} pps, about {}h{:02}m{:02}s per pass", secs / 3600, secs / 60 % 60, secs % 60)
        }
    }
}

fn excluded_note(excluded: u128) -> String {
    if excluded == 0 { String::new() } else { format!("; {excluded} addresses excluded by --exclude") }
}

/// Says which special-purpose addresses a wide target lost, and how to keep them.
fn special_note(cfg: &ScanConfig) -> Option<String> {
    let s = &cfg.special;
    (s.total > 0).then(|| {
        let parts: Vec<String> = s.by_range.iter().map(|(name, n)| format!("{name}: {n}")).collect();
        format!(
            "skipped {} addresses in special-purpose ranges ({}); --no-default-excludes probes them",
            s.total,
            parts.join(", ")
        )
    })
}

fn banner(cfg: &ScanConfig, plan: &ScanPlan, path: &Path, transport: &str) -> String {
    let rate = rate_note(cfg.rate, plan.probes_per_pass());
    format!(
        "SYN scan of {} hosts x {} ports = {} probes{}, from {} on {} ({transport}), {rate}",
        plan.space.host_count(),
        plan.space.port_count(),
        plan.probes_per_pass(),
        excluded_note(cfg.excluded),
        path.src_ip,
        path.ifname
    )
}

fn summary(plan: &ScanPlan, s: &ScanStats, silent: Silent) -> String {
    let secs = s.duration.as_secs_f64();
    let pps = if secs > 0.0 { s.sent as f64 / secs } else { 0.0 };
    let mut line = format!(
        "{} probes sent in {secs:.2} s ({pps:.0} probes/s): {} open, {} closed, {} filtered",
        s.sent,
        s.open,
        s.closed,
        s.unreachable + silent.filtered
    );
    if silent.undecided > 0 {
        line.push_str(&format!(", {} undecided", silent.undecided));
    }
    if s.interrupted {
        let left = plan.probes_per_pass() - s.answered().min(plan.probes_per_pass());
        line.push_str(&format!("; interrupted, {left} probes without a result"));
    }
    line
}

fn details(path: &Path, s: &ScanStats, stored: Option<&StoreReport>) -> String {
    let mac = path.next_hop_mac.map(|b| format!("{b:02x}")).join(":");
    let rtt = s.max_rtt.map_or("none measured".to_string(), |d| format!("{} us", d.as_micros()));
    let mut line = format!(
        "next hop {mac}; slowest round trip {rtt}; {} duplicate replies; {} frames failed validation; {} receive drops; {} RSTs sent",
        s.duplicates, s.invalid, s.rx_drops, s.resets
    );
    if s.resets_skipped > 0 {
        line.push_str(&format!(" ({} skipped: the reset thread fell behind)", s.resets_skipped));
    }
    if let Some(r) = stored {
        line.push_str(&format!("; storage backpressure {} times", r.backpressure));
    }
    line
}
