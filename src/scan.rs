//! One scan from a checked configuration to results on standard output, and
//! what it has to say (its banner, summary and warnings) as `Notes` for
//! `main.rs` to print on standard error.

use crate::banner::Service;
use crate::config::{BannerOptions, OutputFormat, ScanConfig, TransportChoice, Verbosity};
use crate::engine::banners::{self, BannerConfig, BannerStage, BannerStats};
use crate::engine::plan::{Cursor, ScanPlan};
use crate::engine::run::{self, EngineError, Observer, Progress, ScanStats, StopSignal, Wire};
use crate::engine::time::SystemClocks;
use crate::latency::{self, Latency, Series};
use crate::net::{self, NetError, Path};
use crate::open_hosts::{FLAG, FlaggedHost, OpenHosts};
use crate::output::{self, Format, ResultWriter, RunEnd, RunInfo, decimal};
use crate::probe::{ScanType, Templates};
use crate::progress;
use crate::result::{PortState, Reason, ScanResult};
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::db::{ScanEnd, ScanStart};
use crate::store::{Finish, Store, StoreConfig, StoreError, StoreReport, safe_open};
use crate::target::hosts::Hosts;
use crate::transport::own_tcp::{self, OwnTcp};
use crate::transport::xdp::{self, XdpAttachment};
use crate::transport::{Receive, Replies, Resent, Transmit, TransportError, WithLinkDrops, raw};
use crate::wire::cookie::CookieKey;
use std::collections::HashSet;
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
    #[error(
        "source ports {ports} clash with this host's own: {why}; choose --source-port elsewhere, or add --allow-port-overlap"
    )]
    PortOverlap { ports: String, why: String },
    #[error(
        "connect scans need io_uring, which this system refuses ({0}): check the sysctl kernel.io_uring_disabled, or a container's seccomp profile"
    )]
    Uring(io::Error),
    #[error("writing {}: {source}", path.display())]
    LatencyFile {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ScanError {
    /// Whether the user named something that cannot be used (an interface,
    /// a file, a database): exit status 2 when `prepare` finds it, as for
    /// any other bad input. The same error later, mid-scan, is a failure.
    pub fn is_bad_input(&self) -> bool {
        // A path that names nothing usable; a full disk or a failing one is no mistake of the user's.
        let unusable = |e: &io::Error| {
            matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory)
                || e.raw_os_error().is_none()
                || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO))
        };
        match self {
            ScanError::Net(e) => matches!(
                e,
                NetError::NoInterface(_)
                    | NetError::SourceFamily { .. }
                    | NetError::NotEthernet { .. }
                    | NetError::MixedInterfaces { .. }
            ),
            ScanError::Store(StoreError::Output { source, .. } | StoreError::DatabaseFile { source, .. }) => {
                unusable(source)
            }
            ScanError::Store(StoreError::Database { source, .. }) => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::CannotOpen)
            ),
            ScanError::Store(e) => e.names_the_wrong_database(),
            ScanError::LatencyFile { source, .. } => unusable(source),
            ScanError::PortOverlap { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Interrupted,
}

/// How long a quiet service is listened to before it is asked, at most.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How often streamed results are flushed to standard output.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How many target addresses are checked to share one route.
const ROUTE_SAMPLES: usize = 16;

/// One thing a scan has to say on standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A line, printed as `prtip: LINE`.
    Line(String),
    /// A table (the percentile distribution of `--latency`), printed as it is.
    Table(String),
}

/// What a scan has to say on standard error, in order; `main.rs` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes(pub Vec<Note>);

impl Notes {
    fn line(&mut self, text: impl Into<String>) {
        self.0.push(Note::Line(text.into()));
    }

    fn lines(&mut self, lines: impl IntoIterator<Item = String>) {
        self.0.extend(lines.into_iter().map(Note::Line));
    }

    /// On standard error, each line after `prtip: `.
    pub fn print(&self) {
        for note in &self.0 {
            match note {
                Note::Line(line) => eprintln!("prtip: {line}"),
                Note::Table(table) => eprint!("{table}"),
            }
        }
    }
}

/// How a scan ended, and what it has to say about it.
#[derive(Debug)]
pub struct ScanReport {
    pub outcome: Outcome,
    pub notes: Notes,
}

/// A scan ready to run: its transport open, its storage started, and what
/// it says before the first probe in `notes`.
pub struct Scan<'a> {
    cfg: &'a ScanConfig,
    plan: ScanPlan,
    out: BufWriter<io::StdoutLock<'static>>,
    /// None for a dry run.
    ready: Option<Ready>,
    pub notes: Notes,
}

/// How a scan's probes leave: frames of its own module through a
/// transport, or connection attempts the kernel makes.
enum Sender {
    Frames { path: Box<Path>, opened: Opened, wire: Wire },
    Connect { backend: crate::sys::connect::Connector, capacity: u64 },
}

/// What a scan that sends holds between `prepare` and `run`.
struct Ready {
    sender: Sender,
    info: RunInfo,
    store: Option<Store>,
    checkpoint_file: Option<PathBuf>,
    /// `--latency-file`, created before the scan so that a bad path fails first.
    latency_file: Option<std::fs::File>,
    banners: Option<BannerStage>,
    /// Output files that are FIFOs, held open from the first check to the
    /// end: closed in between, they would end their readers' input.
    fifos: Vec<std::fs::File>,
}

/// Resolves the path, opens the transport and starts the storage task: a
/// bad interface, database or file fails here, before anything is sent.
pub fn prepare(cfg: &ScanConfig) -> Result<Scan<'_>, ScanError> {
    let space = cfg.space.clone();
    // A checkpoint of a version that retried in passes, past its first pass,
    // starts over: what its runs stored is taken over and not sent again.
    let start = cfg.resume.as_ref().map_or(Cursor::default(), |r| match r.cursor.pass {
        0 => r.cursor,
        _ => Cursor::default(),
    });
    let mut plan = ScanPlan::new(space, cfg.seed, cfg.src_ports, cfg.retries, cfg.rate, cfg.max_wait)
        .with_shard(cfg.shard)
        .with_fixed_rate(cfg.fixed_rate)
        .starting_at(start);
    if let Some(resume) = &cfg.resume {
        plan = plan.skipping(resume.skipped.clone());
    }
    let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut notes = Notes::default();
    if cfg.dry_run {
        return Ok(Scan { cfg, plan, out, ready: None, notes });
    }

    // Files first: a path that cannot be written fails before the network is asked anything.
    let latency_file = match &cfg.latency_file {
        Some(path) => Some(
            safe_open::open_now(safe_open::writing().create(true).truncate(true), path)
                .map_err(|e| ScanError::LatencyFile { path: path.clone(), source: e })?,
        ),
        None => None,
    };
    let fifos = can_write(cfg)?;
    let banner_connections = match cfg.banners {
        Some(_) => banner_connections().map_err(ScanError::Uring)?,
        None => 0,
    };
    let (mut sender, transport, via) = match cfg.scan_type.sends_frames() {
        true => open_frames(cfg, plan.probe_count(), &mut notes)?,
        false => open_connect(banner_connections)?,
    };
    tracing::info!(transport, probe_count = plan.probe_count(), seed = cfg.seed, "scan ready");
    let info = RunInfo {
        command_line: cfg.command_line.clone(),
        scan_type: cfg.scan_type,
        start_us: now_us(),
        ports: cfg.ports_spec.clone(),
        port_count: cfg.space.port_count(),
        hosts_total: cfg.space.host_count(),
        services: std::sync::Arc::new(match cfg.scan_type.has_ports() {
            true => crate::service_names::ServiceNames::system(),
            false => Default::default(),
        }),
        banners: cfg.banners.is_some(),
    };
    let own_tcp = match &mut sender {
        Sender::Frames { opened, .. } => opened.own_tcp.take(),
        Sender::Connect { .. } => None,
    };
    let banners = match cfg.banners {
        Some(options) => Some(start_banners(cfg, options, banner_connections, own_tcp, &mut notes)?),
        None => None,
    };
    let (store, checkpoint_file) = start_store(cfg, &plan, &info, transport, &mut notes)?;
    if cfg.verbosity >= Verbosity::Normal {
        notes.lines(special_note(cfg));
        notes.line(banner(cfg, &plan, &via));
    }
    if cfg.verbosity >= Verbosity::Verbose
        && let Some(skipped) = &plan.skipped
    {
        notes.line(skipped_note(skipped.hosts().len()));
    }
    let ready = Ready { sender, info, store, checkpoint_file, latency_file, banners, fifos };
    Ok(Scan { cfg, plan, out, ready: Some(ready), notes })
}

impl Scan<'_> {
    /// Runs the scan to its end (or to `stop`): results on standard output
    /// as they come, and what the scan has to say at the end in the report.
    pub fn run(self, stop: &StopSignal) -> Result<ScanReport, ScanError> {
        let Scan { cfg, plan, out, ready, .. } = self;
        match ready {
            None => dry_run(&plan, cfg, out, stop),
            Some(ready) => send(cfg, &plan, out, ready, stop),
        }
    }
}

fn send(
    cfg: &ScanConfig,
    plan: &ScanPlan,
    out: BufWriter<io::StdoutLock<'static>>,
    ready: Ready,
    stop: &StopSignal,
) -> Result<ScanReport, ScanError> {
    let Ready { sender, info, store, checkpoint_file, latency_file, banners, fifos: _held } = ready;
    let start = plan.start;
    let prior_sent = cfg.resume.as_ref().map_or(0, |r| r.sent);
    let mut sinks = Sinks {
        open_only: cfg.open_only,
        store_silent: cfg.database.is_some() || cfg.postgres.is_some() || !cfg.files.is_empty(),
        writer: output::writer(stdout_format(cfg.format), TimedFlush::new(out), &info, false),
        output_error: None,
        store,
        reporter: progress::Reporter::new(progress_mode(cfg)),
        latency: Latency::default(),
        checkpoint: start,
        checkpoint_sent: prior_sent,
        prior_sent,
        store_failure_told: false,
        stop,
        open_hosts: OpenHosts::new(ports_per_host(plan), cfg.max_open_per_host),
        banners,
        adopted: Default::default(),
    };
    let (prior, concluded, taken_over) = take_over(cfg, plan, &mut sinks);
    let mut banner_stats = None;
    let (outcome, path, _closing) = match sender {
        Sender::Frames { path, opened, wire } => {
            let Opened { mut txs, mut rx, mut resets, handover, _attachment: attachment, .. } = opened;
            let mut outcome = run::run(
                plan,
                &wire,
                &mut txs,
                &mut rx,
                resets.as_mut().map(|r| r.as_mut() as _),
                handover.clone(),
                stop,
                &concluded,
                &mut sinks,
                &SystemClocks::new(),
            );
            // The conversations on connections of prtip's own outlive the
            // probes: their segments are read, through the XDP program still
            // attached, until the last one ends.
            if let Some(handover) = handover {
                let done = std::sync::atomic::AtomicBool::new(false);
                let (stats, dropped) = std::thread::scope(|s| {
                    let tail = s.spawn(|| run::hand_over_until(rx.as_mut(), &wire, plan, &handover, &done));
                    let stats = {
                        // Set however the stage ends, a panic included: the scope waits for the reader.
                        let _ending = SetOnDrop(&done);
                        finish_banners(&mut sinks, &outcome, stop)
                    };
                    (stats, tail.join().unwrap_or(0))
                });
                banner_stats = stats;
                if let Ok(outcome) = outcome.as_mut() {
                    outcome.handover_dropped += dropped;
                }
            }
            (outcome, Some(path), Some(Closing::start(txs, rx, resets, attachment)))
        }
        Sender::Connect { mut backend, capacity } => {
            let clocks = SystemClocks::new();
            let outcome =
                crate::engine::connect::run(plan, &mut backend, capacity, stop, &concluded, &mut sinks, &clocks);
            (outcome, None, None)
        }
    };
    drop(concluded);
    sinks.reporter.finish();
    if banner_stats.is_none() {
        banner_stats = finish_banners(&mut sinks, &outcome, stop);
    }
    let flagged = sinks.flagged();
    let Sinks { mut writer, output_error, store, latency, checkpoint, checkpoint_sent, .. } = sinks;
    let mut stats = match outcome {
        Ok(stats) => stats,
        Err(e) => {
            // Keep what was received: the stored scan ends as interrupted, at its last checkpoint.
            if let Some(s) = store {
                let failed = ScanStats { interrupted: true, cursor: checkpoint, ..prior.clone() };
                let _ = s.finish(finish(&failed, checkpoint_sent, latency, flagged));
            }
            return Err(e.into());
        }
    };
    // The scan's counts are the union of its runs'.
    stats.open += prior.open;
    stats.zero_window += prior.zero_window;
    stats.closed += prior.closed;
    stats.unreachable += prior.unreachable;
    stats.filtered += prior.filtered;
    stats.undecided += prior.undecided;
    // Stopped while ports were still being asked: the scan is interrupted,
    // although every probe has its result.
    stats.interrupted |= matches!(&banner_stats, Some(Ok(b)) if b.interrupted > 0);
    let output_open = output_error.is_none();
    if let Some(e) = output_error {
        finish_output(Err(e))?;
    }
    let end = finish(&stats, prior_sent, latency.clone(), flagged.clone());
    if output_open {
        finish_output(writer.finish(&end.run))?;
    }
    let stored = store.map(|s| s.finish(end)).transpose()?;
    let mut notes = Notes::default();
    if cfg.verbosity >= Verbosity::Normal {
        notes.lines(ending(cfg.scan_type, plan, &stats, &flagged));
        notes.lines(stored.as_ref().map(|r| stored_note(cfg, r)).filter(|n| !n.is_empty()));
        if let Some(why) = stored.as_ref().and_then(|r| r.checkpoint_lost.as_ref()) {
            notes.line(format!("warning: no checkpoint was kept, so this scan cannot be resumed: {why}"));
        }
        notes.lines(latency.summary());
        notes.lines(banner_stats.map(|s| banner_note(&s)));
    }
    if cfg.latency_table || latency_file.is_some() {
        let table = latency::percentile_distribution(&latency.get(Series::All));
        if let (Some(mut file), Some(path)) = (latency_file, &cfg.latency_file) {
            file.write_all(table.as_bytes()).map_err(|e| ScanError::LatencyFile { path: path.clone(), source: e })?;
        }
        if cfg.latency_table {
            notes.0.push(Note::Table(table));
        }
    }
    if cfg.verbosity >= Verbosity::Verbose {
        if cfg.resume.is_some() {
            notes.line(format!("{taken_over} results of the interrupted runs were printed first"));
        }
        notes.line(match &path {
            Some(path) => details(path, &stats, stored.as_ref()),
            None => connect_details(&stats, stored.as_ref()),
        });
    }
    if stats.interrupted && cfg.verbosity >= Verbosity::Normal {
        let kept = stored.as_ref().is_some_and(|r| r.checkpoint_lost.is_none());
        match (&cfg.database, stored.as_ref().and_then(|r| r.scan_id), checkpoint_file.as_ref().filter(|_| kept)) {
            (Some(db), Some(id), _) => {
                notes.line(format!("resume with: prtip --resume {id} --database {}", db.display()))
            }
            (None, _, Some(file)) => notes.line(format!("resume with: prtip --resume {}", file.display())),
            _ => {}
        }
    }
    let outcome = if stats.interrupted { Outcome::Interrupted } else { Outcome::Completed };
    Ok(ScanReport { outcome, notes })
}

/// The summary of a scan that sent, and what a user must know of how it went.
fn ending(scan_type: ScanType, plan: &ScanPlan, stats: &ScanStats, flagged: &[FlaggedHost]) -> Vec<String> {
    let mut lines = vec![summary(scan_type, plan, stats)];
    lines.extend(flagged_notes(flagged));
    if stats.undecided > 0 {
        lines.push(format!(
            "warning: {} probes are undecided: this host dropped frames while their replies were due, on every try (raise --retries, or lower --rate with --fixed-rate)",
            stats.undecided
        ));
    }
    if stats.refused > 0 {
        lines.push(format!(
            "warning: the kernel refused to send {} probes (broadcast addresses, firewall rules or no route); they are reported as {}",
            stats.refused,
            scan_type.silent_state().as_str()
        ));
    }
    if stats.zero_window > 0 {
        lines.push(format!(
            "note: {} open ports answered with a SYN-ACK that offers no receive window (reason zero-window): SYN proxies and tarpits answer so, and a service behind them is not certain",
            stats.zero_window
        ));
    }
    if stats.rx_drops > 0 {
        let adapted = match stats.lowest_rate {
            Some(r) => format!("; the send rate was lowered {} times, to {r} probes/s at the least", stats.rate_cuts),
            None => String::new(),
        };
        let retried = if plan.retries > 0 { ", and were retried" } else { "" };
        lines.push(format!(
            "note: this host dropped {} frames; probes whose replies were due then were not taken as silent{retried}{adapted}",
            stats.rx_drops
        ));
    }
    lines
}

/// Where a scan's results go while it runs: standard output, the storage
/// task, and the status line.
struct Sinks<'a> {
    open_only: bool,
    /// Whether probes concluded silent go to the store: only where it keeps
    /// or writes them (a database or output files), not to the journal alone.
    store_silent: bool,
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
    /// Whether the user was told that storing failed.
    store_failure_told: bool,
    /// Where a scan whose results can no longer be kept is stopped.
    stop: &'a StopSignal,
    /// Open ports per host, where a host may be flagged or capped.
    open_hosts: Option<OpenHosts>,
    /// Where open ports are asked what answers there (`--banners`).
    banners: Option<BannerStage>,
    /// A connect scan's connections to open ports, until their results come.
    adopted: std::collections::HashMap<(IpAddr, u16), std::os::fd::OwnedFd>,
}

impl Sinks<'_> {
    /// Counts the open ports of each host; false for one over
    /// `--max-open-per-host`, which standard output does not show. The
    /// storage task gets every result (the journal must hold every answer
    /// for `--resume`), and its output files apply the same cap.
    fn shown(&mut self, r: &ScanResult) -> bool {
        self.open_hosts.as_mut().is_none_or(|hosts| hosts.shows(r))
    }

    fn write(&mut self, batch: &[ScanResult]) {
        for r in batch {
            self.write_one(r, None);
        }
    }

    fn write_one(&mut self, r: &ScanResult, service: Option<&Service>) {
        if self.shown(r) && self.output_error.is_none() && (!self.open_only || r.state.is_found()) {
            self.output_error = self.writer.write(r, service).err();
        }
    }

    /// Open ports back from the banner stage: written now, with what answered there.
    fn write_services(&mut self, batch: Vec<(ScanResult, Service)>) {
        if batch.is_empty() {
            return;
        }
        for (r, s) in &batch {
            self.write_one(r, Some(s));
        }
        if let Some(store) = &mut self.store {
            store.services(batch);
        }
    }

    fn flagged(&self) -> Vec<FlaggedHost> {
        self.open_hosts.as_ref().map_or_else(Vec::new, OpenHosts::flagged)
    }
}

impl Observer for Sinks<'_> {
    fn results(&mut self, batch: Vec<ScanResult>) {
        for r in &batch {
            self.latency.record(r);
        }
        // Open ports wait for their banners; one the stage cannot take is written at once, saying so.
        let mut refused = Vec::new();
        match self.banners.is_some() {
            true => {
                for r in &batch {
                    // A zero window takes no request: a SYN proxy's or a tarpit's, not a service's.
                    match (r.state == PortState::Open && r.reason != Reason::ZeroWindow, &mut self.banners) {
                        (true, Some(stage)) => {
                            let socket = self.adopted.remove(&(r.ip, r.port));
                            refused.extend(stage.offer(*r, socket));
                        }
                        _ => self.write_one(r, None),
                    }
                }
            }
            false => self.write(&batch),
        }
        if let Some(s) = &mut self.store {
            let mut batch = batch;
            // Silent probes reach the store only to be stored or written; the
            // undecided always, as a resumed run cannot tell them from filtered.
            if !self.store_silent {
                batch.retain(|r| r.reason != Reason::NoResponse);
            }
            if !batch.is_empty() {
                s.send(batch);
            }
        }
        self.write_services(refused);
    }

    fn adopt(&mut self, ip: IpAddr, port: u16, socket: std::os::fd::OwnedFd) {
        self.adopted.insert((ip, port), socket);
    }

    fn progress(&mut self, p: &Progress) {
        if let Some(ready) = self.banners.as_mut().map(BannerStage::ready) {
            self.write_services(ready);
        }
        if !self.store_failure_told
            && let Some(failed) = self.store.as_ref().and_then(Store::failure)
        {
            self.store_failure_told = true;
            if failed.shard_lost {
                // Another worker scans this shard now: probing on would only double its traffic.
                self.stop.abandon();
                self.reporter.warn(&format!("{}: stopping", failed.why));
            } else {
                self.reporter.warn(&format!(
                    "storing results failed ({}); the scan goes on, and standard output still gets every result",
                    failed.why
                ));
            }
        }
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
    // -q --status-json: the JSON lines alone, for a program to read.
    if cfg.status_json {
        progress::Mode::Json
    } else if cfg.verbosity == Verbosity::Quiet {
        progress::Mode::Off
    } else if io::stderr().is_terminal() {
        progress::Mode::Terminal
    } else {
        progress::Mode::Lines
    }
}

/// Transports closing on threads of their own, joined when this is dropped.
/// An AF_XDP socket, the XDP program's link and a packet socket each wait out
/// RCU grace periods as they close (10-20 ms each on a veth): side by side,
/// and while the results are finished, rather than one after the other.
struct Closing(Vec<std::thread::JoinHandle<()>>);

impl Closing {
    fn start(
        txs: Vec<Box<dyn Transmit>>,
        rx: Box<dyn Receive>,
        resets: Option<Box<dyn Transmit>>,
        attachment: Option<XdpAttachment>,
    ) -> Self {
        let mut threads = Vec::new();
        let mut close = |what: Box<dyn Send>| {
            // Where no thread can be made, the closure and what it holds are dropped here instead.
            if let Ok(thread) = std::thread::Builder::new().name("prtip-close".into()).spawn(move || drop(what)) {
                threads.push(thread);
            }
        };
        close(Box::new((txs, rx)));
        if let Some(resets) = resets {
            close(Box::new(resets));
        }
        if let Some(attachment) = attachment {
            close(Box::new(attachment));
        }
        Closing(threads)
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        // prtip never exits with its XDP program attached: the link is closed by then.
        for thread in self.0.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Resolves the path to the targets and opens the transport of a scan that
/// sends frames; returns it, the database's name for the transport, and
/// what the banner says of where the probes leave from.
/// `probes` is the scan's count, which bounds the replies it can draw.
fn open_frames(cfg: &ScanConfig, probes: u64, notes: &mut Notes) -> Result<(Sender, &'static str, String), ScanError> {
    if !cfg.allow_port_overlap
        && let Some(why) = net::local_ports::used().clash(cfg.src_ports)
    {
        let (lo, hi) = cfg.src_ports;
        return Err(ScanError::PortOverlap {
            ports: if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") },
            why,
        });
    }
    let path = net::resolve_path(&route_samples(cfg.space.hosts()), &cfg.path)?;
    tracing::info!(
        ifname = %path.ifname,
        src = %path.sources,
        next_hop_mac = ?path.next_hop_mac,
        via_ip_stack = path.via_ip_stack,
        "path resolved"
    );
    let mut opened = open_transport(cfg, &path, probes, notes)?;
    if let Some(link) = net::interface::LinkDrops::open(&path.ifname, path.ifindex) {
        opened.rx = Box::new(WithLinkDrops::new(opened.rx, link, opened.resent.clone()));
    }
    // Fault injection for the tests of a host that drops frames (tests/drops.rs);
    // release builds do not have it.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("PRTIP_TEST_RX_STALL_MS").ok().and_then(|v| v.parse().ok()) {
        use crate::transport::fault::{LossyTx, StalledRx};
        // EVERY,UNTIL: every EVERY-th of the first UNTIL probes of each sending half.
        let drops = std::env::var("PRTIP_TEST_TX_DROPS").unwrap_or_default();
        let (drop_every, drop_until) =
            drops.split_once(',').map_or((0, 0), |(e, u)| (e.parse().unwrap_or(0), u.parse().unwrap_or(0)));
        let probes_dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stall = Duration::from_millis(ms);
        opened.rx = Box::new(StalledRx { inner: opened.rx, stall, probes_dropped: probes_dropped.clone() });
        opened.txs = std::mem::take(&mut opened.txs)
            .into_iter()
            .map(|inner| {
                let probes_dropped = probes_dropped.clone();
                Box::new(LossyTx { inner, drop_every, drop_until, seen: 0, probes_dropped }) as Box<dyn Transmit>
            })
            .collect();
    }
    // Fault injection for the test that a panic leaves no XDP program behind
    // (tests/xdp.rs); there is no other way to make prtip panic, and release
    // builds do not have it.
    #[cfg(debug_assertions)]
    if std::env::var_os("PRTIP_TEST_PANIC").is_some() {
        panic!("PRTIP_TEST_PANIC is set");
    }
    tracing::info!(transport = %opened.kind, "transport open");
    let templates = Templates::new(cfg.scan_type, path.src_mac, path.next_hop_mac, path.sources, &cfg.udp_payloads)
        .expect("a scan type that sends frames has a probe module");
    let key = CookieKey::new(crate::random::u64(), crate::random::u64());
    if holds_connections(cfg) && opened._attachment.is_some() {
        let (handover, handed) = own_tcp::handover();
        let tx = Box::new(raw::frame_sender(path.ifindex, path.next_hop_mac, path.sources.first(), &opened.resent)?);
        opened.own_tcp = Some(Box::new(OwnTcp::new(handed, tx, templates.clone(), cfg.src_ports)));
        opened.handover = Some(handover);
    } else if holds_connections(cfg) {
        notes.line(
            "notice: --banners over raw sockets asks open ports in a stage of connections after their SYN-ACKs: this host's kernel sees the scan's replies and would reset a handshake prtip completed itself",
        );
    }
    let wire = Wire { templates, key };
    let via = format!("from {} on {} ({})", path.sources, path.ifname, opened.kind);
    let name = opened.name;
    Ok((Sender::Frames { path: Box::new(path), opened, wire }, name, via))
}

/// Whether open ports are asked what answers there on connections prtip
/// holds itself, over AF_XDP where the kernel never sees them.
fn holds_connections(cfg: &ScanConfig) -> bool {
    cfg.banners.is_some() && cfg.scan_type == ScanType::Syn
}

/// Sets up a connect scan's attempts: as many at once as the descriptor
/// limit allows (raised to its hard limit first), less `reserved` for banners.
fn open_connect(reserved: u32) -> Result<(Sender, &'static str, String), ScanError> {
    let limit = crate::sys::connect::raise_open_files().map_err(ScanError::Uring)?;
    // The stage's conversations, and as many connections waiting for it.
    let open = crate::sys::connect::open_files() as u64 + 2 * u64::from(reserved);
    let capacity = crate::engine::connect::connections(limit, open);
    // With --banners, the banner stage takes over each open port's connection.
    let backend = crate::sys::connect::Connector::new(capacity as u32, reserved > 0).map_err(ScanError::Uring)?;
    tracing::info!(limit, capacity, "connect scan");
    let via = format!("through this host's TCP stack (io_uring, up to {capacity} connections at once)");
    Ok((Sender::Connect { backend, capacity }, "connect", via))
}

/// How many banner conversations may be open at once: a quarter of the
/// descriptors this process may have (raised to its hard limit first), at
/// most `banners::MAX_CONNECTIONS`; a connect scan has the rest.
fn banner_connections() -> io::Result<u32> {
    let limit = crate::sys::connect::raise_open_files()?;
    let free = crate::engine::connect::connections(limit, crate::sys::connect::open_files() as u64);
    Ok((free / 4).clamp(1, u64::from(banners::MAX_CONNECTIONS)) as u32)
}

/// Starts the banner stage: its connections are this host's own, whatever
/// the scan's transport, from the `--source-ip` address of their target
/// where that address is this host's.
fn start_banners(
    cfg: &ScanConfig,
    options: BannerOptions,
    connections: u32,
    own_tcp: Option<Box<OwnTcp>>,
    notes: &mut Notes,
) -> Result<BannerStage, ScanError> {
    let config = BannerConfig {
        timeout: options.timeout,
        answer_wait: (options.timeout / 2).min(ANSWER_WAIT),
        bytes: options.bytes,
        hostnames: std::sync::Arc::new(cfg.hostnames.clone()),
        sources: cfg.path.source_ip,
        not_local: Vec::new(),
    };
    if let Some(own_tcp) = own_tcp {
        tracing::info!(connections = own_tcp::MOST_TAKEN, "banner stage on connections of prtip's own");
        return BannerStage::start(*own_tcp, own_tcp::MOST_TAKEN as u32, config).map_err(ScanError::Uring);
    }
    let streams = crate::sys::stream::Streams::new(connections).map_err(ScanError::Uring)?;
    let sources = cfg.path.source_ip;
    let not_local: Vec<IpAddr> = sources
        .iter()
        .flat_map(|s| s.as_slice())
        .copied()
        .filter(|&a| !crate::sys::connect::can_connect_from(a))
        .collect();
    if !not_local.is_empty() {
        let list: Vec<String> = not_local.iter().map(IpAddr::to_string).collect();
        notes.line(format!(
            "notice: --banners connects from the address the kernel picks for the targets of {}: this host cannot connect from it",
            list.join(", ")
        ));
    }
    let config = BannerConfig { not_local, ..config };
    tracing::info!(connections, "banner stage");
    BannerStage::start(streams, connections, config).map_err(ScanError::Uring)
}

/// Waits for the banner stage's conversations, and writes every port it held.
fn finish_banners(
    sinks: &mut Sinks,
    outcome: &Result<ScanStats, EngineError>,
    stop: &StopSignal,
) -> Option<io::Result<BannerStats>> {
    sinks.banners.take().map(|stage| {
        let stopped = outcome.as_ref().map_or(true, |s| s.interrupted);
        let mut held = Vec::new();
        let stats = stage.finish(stopped, &|| stop.stop_sending(), &mut |r, s| held.push((r, s)));
        sinks.write_services(held);
        stats
    })
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the banner stage did, for the summary.
fn banner_note(stats: &io::Result<BannerStats>) -> String {
    let mut note = banner_counts(stats);
    if let Ok(s) = stats {
        if s.acks_everything > 0 {
            note += &format!(
                "; {} peers acknowledged bytes never sent (grab \"acks-everything\"): middleboxes that answer for every port, not services",
                s.acks_everything
            );
        }
        if s.handshakes_expired > 0 {
            note += &format!(
                "; {} handshakes waited for the stage too long and were reset, their ports opened again when their turn came",
                s.handshakes_expired
            );
        }
    }
    note
}

fn banner_counts(stats: &io::Result<BannerStats>) -> String {
    match stats {
        Ok(s) if s.refused > 0 => format!(
            "banners: {} of {} open ports answered; {} open ports were not asked, as the stage's queue was full (reported with grab \"queue-full\")",
            s.grabbed,
            s.asked + s.refused,
            s.refused
        ),
        Ok(s) if s.interrupted > 0 => format!(
            "banners: {} of {} open ports answered; {} conversations were stopped before they ended",
            s.grabbed, s.asked, s.interrupted
        ),
        Ok(s) => format!(
            "banners: {} of {} open ports answered ({} conversations at once at most; {} ended at --banner-timeout, {} at --banner-bytes)",
            s.grabbed, s.asked, s.peak, s.timed_out, s.capped
        ),
        Err(e) => {
            format!("warning: the banner stage failed ({e}); the open ports it held are reported without banners")
        }
    }
}

/// The transport halves (a sending half per queue used), and the XDP
/// program's attachment while it is in use.
struct Opened {
    txs: Vec<Box<dyn Transmit>>,
    rx: Box<dyn Receive>,
    /// Where RSTs for SYN-ACKs go when this host's kernel never sees them.
    resets: Option<Box<dyn Transmit>>,
    /// With banners over AF_XDP: where the receive thread hands the
    /// segments of the connections prtip holds itself, and those connections.
    handover: Option<own_tcp::Handover>,
    own_tcp: Option<Box<OwnTcp>>,
    _attachment: Option<XdpAttachment>,
    /// What the database's `transport` column says: `af_xdp` or `raw`.
    name: &'static str,
    /// What the banner says: the transport and how it runs.
    kind: String,
    /// Probes the interface dropped that the sending halves sent again.
    resent: Resent,
}

fn open_transport(cfg: &ScanConfig, path: &Path, probes: u64, notes: &mut Notes) -> Result<Opened, ScanError> {
    let protocol = cfg.scan_type.ip_protocol(!path.sources.is_ipv4());
    let replies = Replies { to: path.sources, ports: cfg.src_ports, protocol };
    let raw = || -> Result<Opened, ScanError> {
        let resent = Resent::default();
        let (tx, rx) = raw::open(path.ifindex, path.next_hop_mac, path.via_ip_stack, replies, &resent)?;
        // This host's kernel sees the SYN-ACKs too, and resets them itself.
        let resets = None;
        let kind = "raw sockets".into();
        Ok(Opened {
            txs: vec![Box::new(tx)],
            rx: Box::new(rx),
            resets,
            handover: None,
            own_tcp: None,
            _attachment: None,
            name: "raw",
            kind,
            resent,
        })
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
        let queues = cfg.queues.unwrap_or_else(|| default_queues(available));
        let resent = Resent::default();
        let draw = match holds_connections(cfg) {
            true => xdp::Draw::Segments,
            false => xdp::Draw::Replies(probes.saturating_mul(u64::from(cfg.retries) + 1)),
        };
        let (txs, rx, attachment) = xdp::open(&path.ifname, path.ifindex, available, replies, draw, queues, &resent)?;
        let mode = if attachment.zero_copy { "zero-copy" } else { "copy mode" };
        let kind = format!("AF_XDP, {mode}, {queues} {}", if queues == 1 { "queue" } else { "queues" });
        let txs = txs.into_iter().map(|t| Box::new(t) as Box<dyn Transmit>).collect();
        let resets: Box<dyn Transmit> =
            Box::new(raw::frame_sender(path.ifindex, path.next_hop_mac, path.sources.first(), &resent)?);
        Ok(Opened {
            txs,
            rx: Box::new(rx),
            resets: Some(resets),
            handover: None,
            own_tcp: None,
            _attachment: Some(attachment),
            name: "af_xdp",
            kind,
            resent,
        })
    };
    match cfg.transport {
        TransportChoice::Raw => raw(),
        TransportChoice::Xdp => Ok(xdp()?),
        TransportChoice::Auto => xdp().or_else(|e| {
            tracing::debug!(error = %e, "AF_XDP unavailable, falling back to raw sockets");
            if cfg.verbosity >= Verbosity::Normal {
                notes.line(format!("notice: using raw sockets: {e}"));
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

/// The ports this scan probes on a host: all of them, or a shard's share.
fn ports_per_host(plan: &ScanPlan) -> u64 {
    plan.probe_count().div_ceil(plan.space.host_count().max(1))
}

/// What the earlier runs of a resumed scan concluded: their results count
/// in the scan's totals and its round trips, and are printed first and go
/// into the output files, which are written anew. The resumed run's output
/// alone is then the whole scan, also when a killed run's last results
/// never left its buffer. Every probe before the checkpoint was concluded:
/// one without a stored result was silent (filtered: an undecided one is
/// always stored), and is reported so again. The probes they concluded at
/// or after where this run starts (a lane ahead of the checkpoint got
/// there) are not sent again. Returns their counts, the space indices of
/// those probes, and how many results were taken over.
fn take_over(cfg: &ScanConfig, plan: &ScanPlan, sinks: &mut Sinks) -> (ScanStats, HashSet<u64>, u64) {
    let mut counts = ScanStats::default();
    let mut concluded = HashSet::new();
    let Some(resume) = &cfg.resume else { return (counts, concluded, 0) };
    // What a hostile or stale checkpoint holds outside the scan is not taken.
    let mut seen = HashSet::new();
    let mut taken = Vec::new();
    for r in &resume.prior {
        let Some(index) = cfg.space.index_of(r.ip, r.port) else { continue };
        if !seen.insert(index) {
            continue;
        }
        if plan.rank_of(index).is_some_and(|j| j >= plan.start.position) {
            concluded.insert(index);
        }
        sinks.latency.record(r);
        counts.zero_window += u64::from(r.reason == Reason::ZeroWindow);
        match (r.reason.is_reply(), r.state) {
            (true, s) if s.is_found() => counts.open += 1,
            (true, PortState::Closed) => counts.closed += 1,
            // A reply's state; a hostile checkpoint's mismatch counts as the reply it names.
            (true, _) => counts.unreachable += 1,
            (false, PortState::Undecided) => counts.undecided += 1,
            (false, _) => counts.filtered += 1,
        }
        taken.push(*r);
    }
    sinks.write(&taken);
    if let Some(s) = &mut sinks.store {
        for chunk in taken.chunks(4096) {
            s.replay(chunk.to_vec());
        }
    }
    let stored = taken.len() as u64;
    drop(taken);
    let mut walked = 0;
    // The silent probes before the checkpoint that were not stored.
    let now = now_us();
    let mut silent = Vec::new();
    for pos in plan.positions().take(usize::try_from(plan.start.position).unwrap_or(usize::MAX)) {
        let (index, ip, port) = plan.target(pos);
        if seen.contains(&index) || plan.skips(ip) {
            continue;
        }
        let reason = Reason::NoResponse;
        silent.push(ScanResult { ip, port, state: PortState::Filtered, reason, ttl: None, rtt_us: None, time_us: now });
        if silent.len() == 4096 {
            walked += replay_silent(sinks, std::mem::take(&mut silent));
        }
    }
    walked += replay_silent(sinks, silent);
    counts.filtered += walked;
    (counts, concluded, stored + walked)
}

/// Prints and stores again silent probes of the runs a resumed scan
/// continues; returns how many.
fn replay_silent(sinks: &mut Sinks, batch: Vec<ScanResult>) -> u64 {
    let n = batch.len() as u64;
    sinks.write(&batch);
    if sinks.store_silent
        && let Some(s) = &mut sinks.store
    {
        s.replay(batch);
    }
    n
}

/// Checks that the output files and the database can be opened for
/// writing, creating the ones that are not there (as nmap does), before
/// the path and transport are set up; the storage task opens them again.
/// Returns the FIFOs among them, to be held open meanwhile.
fn can_write(cfg: &ScanConfig) -> Result<Vec<std::fs::File>, ScanError> {
    let mut fifos = Vec::new();
    for file in &cfg.files {
        let path = &file.path;
        let opened = safe_open::open_now(safe_open::writing().create(true), path);
        let opened = opened.map_err(|e| StoreError::Output { path: path.clone(), source: e })?;
        if opened.metadata().is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type())) {
            fifos.push(opened);
        }
    }
    if let Some(db) = &cfg.database {
        let opened = safe_open::open_now(safe_open::writing().create(true), db);
        opened.map_err(|e| StoreError::DatabaseFile { path: db.clone(), source: e })?;
    }
    Ok(fifos)
}

/// Starts the storage task, which also keeps the scan's checkpoint; returns
/// it with the checkpoint file it keeps when there is no database. A scan
/// that asked for no database and no files still runs when its checkpoint
/// cannot be kept, with a warning.
fn start_store(
    cfg: &ScanConfig,
    plan: &ScanPlan,
    info: &RunInfo,
    transport: &str,
    notes: &mut Notes,
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
        "scan_type": cfg.scan_type.as_str(),
        "ports": cfg.ports_spec,
        "port_count": cfg.space.port_count(),
        "source_ports": format!("{}-{}", cfg.src_ports.0, cfg.src_ports.1),
        "rate": cfg.rate,
        "retries": cfg.retries,
        "wait_s": cfg.max_wait.as_secs_f64(),
        "seed": cfg.seed,
        "shard": format!("{}/{}", cfg.shard.index + 1, cfg.shard.count),
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
        postgres: cfg.postgres.clone(),
        fleet: cfg.fleet.clone(),
        store_silent: cfg.store_silent,
        open_only: cfg.open_only,
        max_open_per_host: cfg.max_open_per_host,
        files: cfg.files.clone(),
        start: ScanStart {
            started_us: info.start_us,
            command_line: cfg.command_line.clone(),
            config_json: config_json.to_string(),
            transport: transport.into(),
            seed: cfg.seed,
        },
        info: info.clone(),
        checkpoint: Some(Checkpoint {
            arguments: cfg.arguments.clone(),
            seed: cfg.seed,
            hosts: cfg.space.hosts().clone(),
            cursor: plan.start,
            sent: resume.map_or(0, |r| r.sent),
            results: None,
        }),
        checkpoint_file: checkpoint_file.clone(),
        resume_scan: resume.and_then(|r| r.scan_id),
    });
    match started {
        Ok(store) => Ok((Some(store), checkpoint_file)),
        Err(e) if cfg.database.is_none() && cfg.postgres.is_none() && cfg.files.is_empty() && resume.is_none() => {
            if cfg.verbosity >= Verbosity::Normal {
                notes.line(format!("warning: no checkpoint, so this scan cannot be resumed: {e}"));
            }
            Ok((None, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// What the summary says of hosts that answered on most ports, or were capped.
fn flagged_notes(flagged: &[FlaggedHost]) -> Vec<String> {
    const LISTED: usize = 10;
    let mut lines = Vec::new();
    let most: Vec<&FlaggedHost> = flagged.iter().filter(|h| h.most_ports_open()).collect();
    if !most.is_empty() {
        let listed: Vec<String> =
            most.iter().take(LISTED).map(|h| format!("{} ({} of {})", h.ip, h.open, h.probed)).collect();
        let more = if most.len() > LISTED { format!(" and {} more", most.len() - LISTED) } else { String::new() };
        lines.push(format!(
            "warning: {} hosts answered SYN-ACK on most ports probed, as tarpits, SYN proxies and middleboxes that accept every connection do; their open ports are doubtful, and flagged {FLAG} in every output: {}{more}",
            most.len(),
            listed.join(", ")
        ));
    }
    let capped: Vec<&FlaggedHost> = flagged.iter().filter(|h| h.withheld > 0).collect();
    if !capped.is_empty() {
        let withheld: u64 = capped.iter().map(|h| h.withheld).sum();
        lines.push(format!(
            "note: --max-open-per-host withheld {withheld} open ports of {} hosts; the counts above include them",
            capped.len()
        ));
    }
    lines
}

/// How the scan ended; `prior_sent` counts the probes of the runs it resumes.
fn finish(stats: &ScanStats, prior_sent: u64, latency: Latency, flagged: Vec<FlaggedHost>) -> Finish {
    let end_us = now_us();
    Finish {
        scan: ScanEnd {
            ended_us: end_us,
            probes_sent: prior_sent.saturating_add(stats.sent),
            open: stats.open,
            closed: stats.closed,
            filtered: stats.unreachable + stats.filtered,
            interrupted: stats.interrupted,
            cursor: stats.cursor,
        },
        run: RunEnd { end_us, interrupted: stats.interrupted, flagged },
        latency,
    }
}

fn stored_note(cfg: &ScanConfig, r: &StoreReport) -> String {
    let mut parts = Vec::new();
    if let (Some(db), Some(id)) = (&cfg.database, r.scan_id) {
        parts.push(format!("stored {} results as scan {id} in {}", r.rows_stored, db.display()));
    }
    if let Some(id) = r.postgres_scan {
        let lost = match r.postgres_lost {
            0 => String::new(),
            n => format!(" (the connection was lost {n} times, and made again: nothing was lost)"),
        };
        parts.push(format!("stored as scan {id} in PostgreSQL{lost}"));
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

fn dry_run(plan: &ScanPlan, cfg: &ScanConfig, mut out: impl Write, stop: &StopSignal) -> Result<ScanReport, ScanError> {
    const CHUNK: usize = 1 << 16;
    let mut interrupted = false;
    let scan_type = cfg.scan_type;
    let (name, proto): (&[u8], &[u8]) = match scan_type {
        ScanType::Syn => (b"SYN ", b"tcp"),
        ScanType::Connect => (b"CONNECT ", b"tcp"),
        ScanType::Icmp => (b"ECHO ", b"icmp"),
        ScanType::Udp => (b"UDP ", b"udp"),
    };
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
                    line.extend_from_slice(b"\",");
                    if scan_type.has_ports() {
                        line.extend_from_slice(br#""port":"#);
                        decimal::push_u16(&mut line, port);
                        line.push(b',');
                    }
                    line.extend_from_slice(br#""proto":""#);
                    line.extend_from_slice(proto);
                    line.extend_from_slice(br#"","sport":"#);
                    decimal::push_u16(&mut line, sport);
                    line.extend_from_slice(b"}\n");
                }
                OutputFormat::Text => {
                    line.extend_from_slice(name);
                    if scan_type.has_ports() {
                        push_endpoint(&mut line, ip);
                        line.push(b':');
                        decimal::push_u16(&mut line, port);
                        line.extend_from_slice(b" from port ");
                    } else {
                        decimal::push_ip(&mut line, ip);
                        line.extend_from_slice(b" with identifier ");
                    }
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
    let mut notes = Notes::default();
    if cfg.verbosity >= Verbosity::Normal {
        notes.lines(special_note(cfg));
        let ports =
            if cfg.scan_type.has_ports() { format!(" x {} ports", plan.space.port_count()) } else { String::new() };
        notes.line(format!(
            "dry run: {} probes ({} hosts{ports}{}), {}; nothing sent",
            plan.probe_count(),
            plan.space.host_count(),
            excluded_note(cfg.excluded),
            rate_note(cfg.rate, plan.probe_count())
        ));
    }
    let outcome = if interrupted { Outcome::Interrupted } else { Outcome::Completed };
    Ok(ScanReport { outcome, notes })
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
            format!("rate {r} pps, about {}h{:02}m{:02}s to send each once", secs / 3600, secs / 60 % 60, secs % 60)
        }
    }
}

/// What a resumed scan does with the saved hosts that are excluded now.
fn skipped_note(hosts: u128) -> String {
    format!(
        "{hosts} of the checkpoint's hosts are excluded now: nothing more is sent to them, their earlier results are kept"
    )
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

fn banner(cfg: &ScanConfig, plan: &ScanPlan, via: &str) -> String {
    let rate = rate_note(cfg.rate, plan.probe_count());
    let what = match cfg.scan_type {
        ScanType::Syn => format!("SYN scan of {} hosts x {} ports", plan.space.host_count(), plan.space.port_count()),
        ScanType::Connect => {
            format!("Connect scan of {} hosts x {} ports", plan.space.host_count(), plan.space.port_count())
        }
        ScanType::Udp => format!("UDP scan of {} hosts x {} ports", plan.space.host_count(), plan.space.port_count()),
        ScanType::Icmp => format!("ICMP echo scan of {} hosts", plan.space.host_count()),
    };
    format!("{what} = {} probes{}, {via}, {rate}", plan.probe_count(), excluded_note(cfg.excluded))
}

fn summary(scan_type: ScanType, plan: &ScanPlan, s: &ScanStats) -> String {
    let secs = s.duration.as_secs_f64();
    let pps = if secs > 0.0 { s.sent as f64 / secs } else { 0.0 };
    let counts = match scan_type {
        ScanType::Syn | ScanType::Connect => {
            format!("{} open, {} closed, {} filtered", s.open, s.closed, s.unreachable + s.filtered)
        }
        ScanType::Icmp => format!("{} up, {} unreachable, {} down", s.open, s.unreachable, s.filtered),
        ScanType::Udp => {
            format!("{} open, {} closed, {} filtered, {} open|filtered", s.open, s.closed, s.unreachable, s.filtered)
        }
    };
    let mut line = format!("{} probes sent in {secs:.2} s ({pps:.0} probes/s): {counts}", s.sent);
    if s.undecided > 0 {
        line.push_str(&format!(", {} undecided", s.undecided));
    }
    if s.interrupted {
        let decided = s.answered() + s.filtered + s.undecided;
        let left = plan.probe_count() - decided.min(plan.probe_count());
        line.push_str(&format!("; interrupted, {left} probes without a result"));
    }
    line
}

fn connect_details(s: &ScanStats, stored: Option<&StoreReport>) -> String {
    let rtt = s.max_rtt.map_or("none measured".to_string(), |d| format!("{} us", d.as_micros()));
    let mut line = format!(
        "slowest connect {rtt}; up to {} connections at once; {} attempts this host could not make (made again)",
        s.window_peak, s.refused
    );
    if let Some(r) = stored {
        line.push_str(&format!("; storage backpressure {} times", r.backpressure));
    }
    line
}

fn details(path: &Path, s: &ScanStats, stored: Option<&StoreReport>) -> String {
    let mac = path.next_hop_mac.map(|b| format!("{b:02x}")).join(":");
    let rtt = s.max_rtt.map_or("none measured".to_string(), |d| format!("{} us", d.as_micros()));
    let mut line = format!(
        "next hop {mac}; slowest round trip {rtt}; {} duplicate replies; {} late replies (after their probe was concluded, not results); {} frames failed validation; {} receive drops; {} RSTs sent",
        s.duplicates, s.late, s.invalid, s.rx_drops, s.resets
    );
    if s.resets_skipped > 0 {
        line.push_str(&format!(" ({} skipped: the reset thread fell behind)", s.resets_skipped));
    }
    if s.handover_dropped > 0 {
        line.push_str(&format!(
            "; {} segments of banner connections dropped (the banner stage fell behind)",
            s.handover_dropped
        ));
    }
    if s.output_holds > 0 {
        line.push_str(&format!(
            "; sending waited {} times for the output to take its results (up to {} waiting)",
            s.output_holds, s.backlog_peak
        ));
    }
    if let Some(r) = stored {
        line.push_str(&format!("; storage backpressure {} times", r.backpressure));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::wire::sources::Sources;
    use clap::Parser;

    fn config(args: &[&str]) -> ScanConfig {
        let argv = std::iter::once("prtip").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().into_config(Vec::new(), None).unwrap()
    }

    fn plan(cfg: &ScanConfig) -> ScanPlan {
        ScanPlan::new(cfg.space.clone(), cfg.seed, cfg.src_ports, cfg.retries, cfg.rate, cfg.max_wait)
    }

    fn path() -> Path {
        Path {
            ifindex: 2,
            ifname: "eth0".into(),
            sources: Sources::one("10.200.0.1".parse().unwrap()),
            src_mac: [2, 0, 0, 0, 0, 1],
            next_hop_mac: [2, 0, 0, 0, 0, 0xfe],
            via_ip_stack: false,
        }
    }

    #[test]
    fn the_banner_says_what_will_be_sent_from_where_and_how_fast() {
        let cfg = config(&["-p", "22,80", "--rate", "1000", "--exclude", "10.0.0.8/29", "10.0.0.0/24"]);
        assert_eq!(
            banner(&cfg, &plan(&cfg), "from 10.200.0.1 on eth0 (raw sockets)"),
            "SYN scan of 248 hosts x 2 ports = 496 probes; 8 addresses excluded by --exclude, \
             from 10.200.0.1 on eth0 (raw sockets), rate 1000 pps, about 0h00m01s to send each once"
        );
        let cfg = config(&["-p", "1-65535", "10.0.0.1"]);
        assert_eq!(
            banner(&cfg, &plan(&cfg), "from 10.200.0.1 on eth0 (AF_XDP, copy mode, 1 queue)"),
            "SYN scan of 1 hosts x 65535 ports = 65535 probes, from 10.200.0.1 on eth0 (AF_XDP, copy mode, 1 queue), rate unlimited"
        );
    }

    #[test]
    fn the_summary_counts_every_state_and_what_an_interruption_left() {
        let cfg = config(&["-p", "1-100", "10.0.0.1"]);
        let plan = plan(&cfg);
        let stats = ScanStats {
            sent: 100,
            open: 3,
            closed: 90,
            unreachable: 2,
            filtered: 4,
            undecided: 1,
            duration: Duration::from_millis(500),
            ..ScanStats::default()
        };
        assert_eq!(
            ending(ScanType::Syn, &plan, &stats, &[]),
            [
                "100 probes sent in 0.50 s (200 probes/s): 3 open, 90 closed, 6 filtered, 1 undecided",
                "warning: 1 probes are undecided: this host dropped frames while their replies were due, on every try \
                 (raise --retries, or lower --rate with --fixed-rate)",
            ]
        );
        let stopped = ScanStats { interrupted: true, refused: 2, filtered: 0, undecided: 0, ..stats };
        let lines = ending(ScanType::Syn, &plan, &stopped, &[]);
        assert_eq!(
            lines[0],
            "100 probes sent in 0.50 s (200 probes/s): 3 open, 90 closed, 2 filtered; interrupted, 5 probes without a result"
        );
        assert_eq!(
            lines[1],
            "warning: the kernel refused to send 2 probes (broadcast addresses, firewall rules or no route); they are reported as filtered"
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn the_note_on_hosts_excluded_since_says_their_results_are_kept() {
        assert_eq!(
            skipped_note(1),
            "1 of the checkpoint's hosts are excluded now: nothing more is sent to them, their earlier results are kept"
        );
    }

    #[test]
    fn drops_on_this_host_are_told_with_what_the_rate_did() {
        let cfg = config(&["-p", "1-100", "10.0.0.1"]);
        let stats =
            ScanStats { sent: 100, rx_drops: 7, rate_cuts: 2, lowest_rate: Some(250_000), ..ScanStats::default() };
        assert_eq!(
            ending(ScanType::Syn, &plan(&cfg), &stats, &[])[1],
            "note: this host dropped 7 frames; probes whose replies were due then were not taken as silent, \
             and were retried; the send rate was lowered 2 times, to 250000 probes/s at the least"
        );
    }

    #[test]
    fn details_and_storage_notes_name_what_was_kept() {
        let stats = ScanStats {
            duplicates: 1,
            late: 7,
            invalid: 2,
            rx_drops: 3,
            resets: 4,
            resets_skipped: 5,
            ..ScanStats::default()
        };
        let report = StoreReport {
            scan_id: Some(9),
            rows_stored: 42,
            backpressure: 6,
            checkpoint_lost: None,
            ..Default::default()
        };
        assert_eq!(
            details(&path(), &stats, Some(&report)),
            "next hop 02:00:00:00:00:fe; slowest round trip none measured; 1 duplicate replies; \
             7 late replies (after their probe was concluded, not results); 2 frames failed validation; \
             3 receive drops; 4 RSTs sent (5 skipped: the reset thread fell behind); storage backpressure 6 times"
        );
        let cfg = config(&["--with-db", "--database", "/tmp/x.db", "--output-grepable", "/tmp/x.gnmap", "10.0.0.1"]);
        assert_eq!(stored_note(&cfg, &report), "stored 42 results as scan 9 in /tmp/x.db; wrote /tmp/x.gnmap");
        assert_eq!(stored_note(&config(&["10.0.0.1"]), &report), "");
    }
}
