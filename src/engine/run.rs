//! The scan itself: a transmit thread per lane and a receive thread over a
//! transport, with results handed to the caller's thread as they are
//! decided. Each lane's probes go through its send window (`engine::window`),
//! which decides retries and when silence is a result; this module runs the
//! threads around it.

use super::pacing::Pacer;
use super::plan::{Cursor, ScanPlan};
use super::rate::{RateControl, RateReason};
use super::state::{reply_timeout, retry_after};
use super::time::Time;
use super::window::{Lookup, Silent, Timeouts, Try, Verdict, Window, timed_out};
use crate::probe::syn::SYN_FRAME_LEN;
use crate::probe::{Matcher, Probe, Templates};
use crate::result::{PortState, Reason, ScanResult};
use crate::transport::own_tcp::{Handed, Handover};
use crate::transport::{Drops, Receive, Transmit, TransportError};
use crate::wire::cookie::{CookieKey, echo_within, unwrap_rtt_us};
use crate::wire::reply::{Rejection, Reply, ReplyKind};
use crate::wire::segment::Segment;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;
use thiserror::Error;

const TX_BATCH: u32 = 64;
/// Batches of RSTs that may wait for the reset thread; more are not sent.
const RESET_QUEUE: usize = 256;
const RX_POLL: Duration = Duration::from_millis(5);
/// How often the kernel's drop counters are read: a loss marks what was in
/// flight since the last reading, so short is precise.
const LOSS_CHECK: Duration = Duration::from_millis(10);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Round trips above this are not believed: the echo was mangled or forged.
const MAX_RTT: Duration = Duration::from_secs(60);
/// The longest a lane with nothing due sleeps: the receive side's progress
/// may conclude probes, and let the window take fresh ones, at any time.
const IDLE: Duration = Duration::from_millis(1);
/// How much longer than a reply timeout a stopped lane waits for the
/// receive side to read what arrived: a receive path that never catches up
/// (a flood of frames that pass the filter) must not hold Ctrl-C forever.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// The most probes a lane's window holds (16 bytes each: 64 MiB): at a
/// million probes a second, four seconds of them, far more than a reply
/// timeout. Past it, fresh probes wait.
const WINDOW_CAPACITY: usize = 1 << 22;
/// Results that may wait for the caller's thread before the lanes stop
/// sending (48 bytes each: 6 MiB), a third of a second at 400,000
/// replies a second: an output slower than the scan (a pipe, a database)
/// holds the scan back instead of filling memory.
pub const RESULT_BACKLOG: u64 = 1 << 17;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the {0} thread panicked (a bug: please report it)")]
    Panicked(&'static str),
    #[error("no transmit queue to send on")]
    NoTransmitter,
}

/// Asks a running scan to stop: the first request stops transmission (replies
/// in flight are still collected), the second also skips the wait for them.
/// A scan whose results can no longer be kept is abandoned: it stops at
/// once, and the next scan run with the signal is not stopped by it.
#[derive(Debug, Default)]
pub struct StopSignal(AtomicU32, AtomicBool);

impl StopSignal {
    pub const fn new() -> Self {
        StopSignal(AtomicU32::new(0), AtomicBool::new(false))
    }

    /// Stops the running scan, sending and waiting alike.
    pub fn abandon(&self) {
        self.1.store(true, Relaxed);
    }

    /// Lets the next scan run with the signal go on where the last was abandoned.
    pub fn clear_abandoned(&self) {
        self.1.store(false, Relaxed);
    }

    /// Ctrl-C, SIGTERM or SIGHUP stops sending; a second one also stops waiting for replies.
    pub fn stop_on_signals(&'static self) -> std::io::Result<()> {
        // SIGHUP too: a closed terminal or SSH connection ends the scan as Ctrl-C does, its files whole.
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            crate::sys::count_signal(signal, &self.0)?;
        }
        Ok(())
    }

    pub fn stop_sending(&self) -> bool {
        self.0.load(Relaxed) >= 1 || self.1.load(Relaxed)
    }

    pub fn stop_waiting(&self) -> bool {
        self.0.load(Relaxed) >= 2 || self.1.load(Relaxed)
    }
}

/// What the wire side needs to build and recognise probes.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The scan type's probe module, with a frame template per source address.
    pub templates: Templates,
    pub key: CookieKey,
}

/// Where a running scan reports, on the caller's thread.
pub trait Observer {
    /// A batch of results: validated, deduplicated replies, and probes
    /// concluded silent (`filtered` or `undecided`, reason `no-response` or
    /// `frames-dropped`).
    fn results(&mut self, batch: Vec<ScanResult>);
    /// How many results may wait for this observer, handed over and not yet
    /// taken, before the scan stops sending until it catches up.
    fn backlog_limit(&self) -> u64 {
        RESULT_BACKLOG
    }
    /// The counters, a few times a second.
    fn progress(&mut self, _progress: &Progress) {}
    /// A connect scan's connection to an open port, handed over before the
    /// port's result (where the backend keeps connections for `--banners`).
    fn adopt(&mut self, _ip: IpAddr, _port: u16, socket: std::os::fd::OwnedFd) {
        crate::sys::connect::abort(socket);
    }
}

/// A running scan's counters, handed to the caller a few times a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub elapsed: Duration,
    /// Probes this run has to send: one whole pass over the targets unless
    /// it resumes another run (retries come on top).
    pub planned: u64,
    pub sent: u64,
    /// Replies this run received (not those of the runs it resumes).
    pub answered: u64,
    pub open: u64,
    pub rx_drops: u64,
    /// Replies whose probe had left the send window: not results.
    pub late: u64,
    /// The send rate in force (0: no limit), and why.
    pub rate: u64,
    pub rate_reason: RateReason,
    /// How far the scan got with every probe before it concluded: where a
    /// resumed scan would start if this one ended now.
    pub checkpoint: Cursor,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub sent: u64,
    /// Probes the kernel refused to send (a broadcast address, a firewall rule).
    pub refused: u64,
    pub open: u64,
    /// Of the open, those whose SYN-ACK offered no receive window.
    pub zero_window: u64,
    pub closed: u64,
    /// Answered with ICMP unreachable.
    pub unreachable: u64,
    /// Silent through every try.
    pub filtered: u64,
    /// Silent, but the last try may have lost its reply on this host.
    pub undecided: u64,
    pub duplicates: u64,
    /// Replies whose probe had left the send window (concluded without
    /// them): counted, not results.
    pub late: u64,
    /// RSTs sent to close what SYN-ACKs half opened (AF_XDP only: otherwise
    /// this host's kernel sees the SYN-ACKs and resets them itself).
    pub resets: u64,
    /// RSTs not sent because the reset thread was that far behind.
    pub resets_skipped: u64,
    /// Segments of connections prtip holds itself dropped on a full queue.
    pub handover_dropped: u64,
    /// Frames that passed the kernel filter but were not valid replies.
    pub invalid: u64,
    /// Frames the kernel dropped before prtip read them, and probes the
    /// interface dropped before they left.
    pub rx_drops: u64,
    /// How often the send rate was lowered for drops, and the lowest it went.
    pub rate_cuts: u64,
    pub lowest_rate: Option<u64>,
    pub max_rtt: Option<Duration>,
    /// The most probes the send windows held at once, and their bytes then.
    pub window_peak: u64,
    pub window_bytes: u64,
    /// How often sending stopped because the caller's thread had
    /// `Observer::backlog_limit` results waiting, and the most that waited.
    pub output_holds: u64,
    pub backlog_peak: u64,
    pub duration: Duration,
    pub interrupted: bool,
    /// Where a resumed scan starts: the end when the scan completed,
    /// otherwise the first probe not concluded.
    pub cursor: Cursor,
}

impl ScanStats {
    pub fn answered(&self) -> u64 {
        self.open + self.closed + self.unreachable
    }
}

/// Marks a thread's end in `Shared` when dropped: on return, on error and on panic.
struct EndGuard<'a> {
    shared: &'a Shared,
    transmit: bool,
    time: &'a dyn Time,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.shared.fail_if_panicking();
        // The last transmit lane to end ends transmission.
        if self.transmit && self.shared.tx_running.fetch_sub(1, AcqRel) == 1 {
            self.shared.tx_done.store(true, Release);
        }
        self.time.leave();
    }
}

/// Ends the scan's threads if the caller's thread panics: they would
/// otherwise wait forever for it to take the results they hold back for.
struct CallerGuard<'a>(&'a Shared);

impl Drop for CallerGuard<'_> {
    fn drop(&mut self) {
        self.0.fail_if_panicking();
    }
}

/// An RST frame and its length.
type ResetFrame = ([u8; SYN_FRAME_LEN], usize);

/// The transmit lanes of a plan: lane `l` of `count` sends the shard's
/// probes of rank `j = k * count + l`, its `k`-th.
#[derive(Debug, Clone, Copy)]
struct Lanes {
    count: u64,
    /// Probes of the shard: ranks run below it.
    ranks: u64,
}

impl Lanes {
    /// The lane and the seq within it of rank `j`.
    fn of(&self, j: u64) -> (usize, u64) {
        ((j % self.count) as usize, j / self.count)
    }

    fn rank(&self, lane: usize, seq: u64) -> u64 {
        seq * self.count + lane as u64
    }

    /// The first seq of lane `lane` at rank `from` or after: with `from` the
    /// end, the lane's probe count.
    fn seq_from(&self, lane: usize, from: u64) -> u64 {
        from.saturating_sub(lane as u64).div_ceil(self.count)
    }

    /// Every rank below this is before lane `lane`'s seq `trail`, for its part.
    fn trail_rank(&self, lane: usize, trail: u64) -> u64 {
        self.rank(lane, trail).min(self.ranks)
    }
}

/// Shared between the threads: the lanes' windows, and counters and flags.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    /// Probes the kernel would not send (see `Transmit::transmit`).
    refused: AtomicU64,
    answered: AtomicU64,
    open: AtomicU64,
    zero_window: AtomicU64,
    closed: AtomicU64,
    unreachable: AtomicU64,
    filtered: AtomicU64,
    undecided: AtomicU64,
    duplicates: AtomicU64,
    late: AtomicU64,
    resets: AtomicU64,
    resets_skipped: AtomicU64,
    handover_dropped: AtomicU64,
    invalid: AtomicU64,
    rx_drops: AtomicU64,
    /// The send rate every lane follows (0: no limit), and why it is so.
    rate: AtomicU64,
    rate_reason: Mutex<RateReason>,
    rate_cuts: AtomicU64,
    lowest_rate: AtomicU64,
    max_rtt_us: AtomicU64,
    window_peak: AtomicU64,
    window_bytes: AtomicU64,
    /// Results handed to the caller's thread and not yet taken, and the limit.
    backlog: AtomicU64,
    backlog_limit: u64,
    backlog_peak: AtomicU64,
    output_held: AtomicBool,
    output_holds: AtomicU64,
    windows: Vec<Mutex<Window>>,
    /// Per lane, the rank below which it has concluded every probe, stored
    /// after the results of those probes were handed over.
    trails: Vec<AtomicU64>,
    /// Every frame that arrived before this time (ns on the scan's clock)
    /// has been read, and its result handed over.
    caught_up: AtomicU64,
    tx_running: AtomicUsize,
    tx_done: AtomicBool,
    failed: AtomicBool,
    /// The connections prtip holds itself, whose handshakes pace the lanes.
    banners: Option<Handover>,
}

impl Shared {
    /// A thread of the scan that unwinds ends the others.
    fn fail_if_panicking(&self) {
        if std::thread::panicking() {
            self.failed.store(true, Relaxed);
        }
    }

    /// Hands results to the caller's thread, where they count until taken.
    fn to_caller(&self, results: &mpsc::Sender<Vec<ScanResult>>, batch: Vec<ScanResult>) {
        let n = batch.len() as u64;
        let waiting = self.backlog.fetch_add(n, Relaxed) + n;
        self.backlog_peak.fetch_max(waiting, Relaxed);
        // The receiver lives until every sender is gone, so the send cannot fail.
        let _ = results.send(batch);
    }

    fn window(&self, lane: usize) -> MutexGuard<'_, Window> {
        self.windows[lane].lock().expect("window lock")
    }

    /// Every probe below this rank is concluded and its result handed over.
    fn trail(&self) -> u64 {
        self.trails.iter().map(|t| t.load(Acquire)).min().unwrap_or(0)
    }

    fn max_rtt(&self) -> Option<Duration> {
        match self.max_rtt_us.load(Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The waits of a try, by the round trips seen so far.
    fn timeouts(&self, plan: &ScanPlan) -> Timeouts {
        let rtt = self.max_rtt();
        Timeouts {
            retry_after: retry_after(rtt, plan.max_wait).as_nanos() as u64,
            reply_timeout: reply_timeout(rtt, plan.max_wait).as_nanos() as u64,
        }
    }

    /// Where the scan stands `now_ns` into it.
    fn progress(&self, now_ns: u64, planned: u64, checkpoint: Cursor) -> Progress {
        Progress {
            elapsed: Duration::from_nanos(now_ns),
            planned,
            sent: self.sent.load(Relaxed),
            answered: self.answered.load(Relaxed),
            open: self.open.load(Relaxed),
            rx_drops: self.rx_drops.load(Relaxed),
            late: self.late.load(Relaxed),
            rate: self.rate.load(Relaxed),
            rate_reason: *self.rate_reason.lock().expect("rate reason lock"),
            checkpoint,
        }
    }

    /// What the scan did, once every thread has ended.
    fn stats(&self, duration: Duration, interrupted: bool, cursor: Cursor) -> ScanStats {
        ScanStats {
            sent: self.sent.load(Relaxed),
            refused: self.refused.load(Relaxed),
            open: self.open.load(Relaxed),
            zero_window: self.zero_window.load(Relaxed),
            closed: self.closed.load(Relaxed),
            unreachable: self.unreachable.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            undecided: self.undecided.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            late: self.late.load(Relaxed),
            resets: self.resets.load(Relaxed),
            resets_skipped: self.resets_skipped.load(Relaxed),
            handover_dropped: self.handover_dropped.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            rx_drops: self.rx_drops.load(Relaxed),
            rate_cuts: self.rate_cuts.load(Relaxed),
            lowest_rate: match self.lowest_rate.load(Relaxed) {
                0 => None,
                r => Some(r),
            },
            max_rtt: self.max_rtt(),
            window_peak: self.window_peak.load(Relaxed),
            window_bytes: self.window_bytes.load(Relaxed),
            output_holds: self.output_holds.load(Relaxed),
            backlog_peak: self.backlog_peak.load(Relaxed),
            duration,
            interrupted,
            cursor,
        }
    }
}

/// The scan's times, from its start.
struct Clock<'t> {
    time: &'t dyn Time,
    start_ns: u64,
    wall_start_us: u64,
}

impl<'t> Clock<'t> {
    fn new(time: &'t dyn Time) -> Self {
        Clock { time, start_ns: time.monotonic_ns(), wall_start_us: time.wall_ns() / 1000 }
    }

    fn now_ns(&self) -> u64 {
        self.time.monotonic_ns().saturating_sub(self.start_ns)
    }

    fn pause(&self, d: Duration) {
        self.time.sleep(d);
    }

    fn wall_us(&self, mono_ns: u64) -> u64 {
        self.wall_start_us + mono_ns / 1000
    }

    /// The wall clock in microseconds since the scan began: the send time a
    /// probe carries, on the same clock as the receive timestamps of its
    /// replies (the kernel's are wall-clock times), so that a round trip is
    /// one clock's difference.
    fn stamp_us(&self) -> u64 {
        (self.time.wall_ns() / 1000).saturating_sub(self.wall_start_us)
    }

    /// A wall-clock time (ns since the epoch) on this clock's scale.
    fn since_start_ns(&self, wall_ns: u64) -> u64 {
        wall_ns.saturating_sub(self.wall_start_us * 1000)
    }
}

/// Runs a scan to its end and hands `observer`, on the caller's thread, every
/// batch of results and the progress. Each of `txs` (one per NIC queue)
/// sends on a thread of its own, a lane of the plan's probes. `prior` holds
/// the space indices of probes that earlier runs of a resumed scan concluded:
/// they are not sent again. `resets`, when given, sends an RST for every
/// valid SYN-ACK: needed where this host's kernel never sees the replies
/// (AF_XDP steals them). `handover`, when given, takes instead every valid
/// SYN-ACK that offers a window, and every other segment with its ACK bit
/// set to the scan's ports: prtip holds those connections itself
/// (`transport::own_tcp`). The transports are borrowed: closing them can take
/// tens of milliseconds of RCU grace periods, which the caller may spend on
/// something else. The lanes and the receive thread read the time and wait
/// only through `time`.
#[allow(clippy::too_many_arguments)]
pub fn run<T: Transmit, R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    txs: &mut [T],
    rx: &mut R,
    resets: Option<&mut dyn Transmit>,
    handover: Option<Handover>,
    stop: &StopSignal,
    prior: &HashSet<u64>,
    observer: &mut impl Observer,
    time: &dyn Time,
) -> Result<ScanStats, EngineError> {
    if txs.is_empty() {
        return Err(EngineError::NoTransmitter);
    }
    let clock = Clock::new(time);
    let lanes = Lanes { count: txs.len() as u64, ranks: plan.probe_count() };
    let start = plan.start.position.min(lanes.ranks);
    let shared = Shared {
        windows: (0..txs.len())
            .map(|lane| {
                let (total, first) = (lanes.seq_from(lane, lanes.ranks), lanes.seq_from(lane, start));
                Mutex::new(Window::new(total, first, plan.retries, WINDOW_CAPACITY))
            })
            .collect(),
        trails: (0..txs.len())
            .map(|lane| AtomicU64::new(lanes.trail_rank(lane, lanes.seq_from(lane, start))))
            .collect(),
        tx_running: AtomicUsize::new(txs.len()),
        rate: AtomicU64::new(plan.rate),
        backlog_limit: observer.backlog_limit().max(1),
        banners: handover.clone(),
        ..Shared::default()
    };
    let planned = lanes.ranks - start;
    let (results_tx, results_rx) = mpsc::channel::<Vec<ScanResult>>();

    let (tx_outcome, rx_outcome) = std::thread::scope(|s| {
        let tx_threads: Vec<_> = txs
            .iter_mut()
            .enumerate()
            .map(|(lane, tx)| {
                let (shared, clock, results) = (&shared, &clock, results_tx.clone());
                s.spawn(move || {
                    // Whatever way transmission ends, a panic included, the receive
                    // thread must learn it, or it would wait for replies forever.
                    let _done = EndGuard { shared, transmit: true, time };
                    let lane = Lane { index: lane, lanes };
                    let r = transmit(plan, lane, wire, tx, shared, clock, stop, prior, results);
                    shared.failed.fetch_or(r.is_err(), Relaxed);
                    r
                })
            })
            .collect();
        let resets = resets.map(|tx| spawn_resets(s, tx, &shared));
        let rx_thread = s.spawn(|| {
            let _done = EndGuard { shared: &shared, transmit: false, time };
            let closing = Closing { resets, handover };
            let r = receive(plan, wire, lanes, rx, closing, &shared, &clock, stop, results_tx);
            shared.failed.fetch_or(r.is_err(), Relaxed);
            r
        });
        let _caller = CallerGuard(&shared);
        // The channel closes when the last thread holding a sender ends, so this loop cannot miss the end.
        let mut last_tick = clock.now_ns();
        loop {
            match results_rx.recv_timeout(PROGRESS_EVERY) {
                Ok(batch) => take(observer, &shared, batch),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if clock.now_ns().saturating_sub(last_tick) >= PROGRESS_EVERY.as_nanos() as u64 {
                last_tick = clock.now_ns();
                // The trail first: the results it counts on were handed over before it was stored.
                let checkpoint = Cursor { pass: 0, position: shared.trail() };
                while let Ok(batch) = results_rx.try_recv() {
                    take(observer, &shared, batch);
                }
                observer.progress(&shared.progress(clock.now_ns(), planned, checkpoint));
            }
        }
        let joined =
            |r: std::thread::Result<Result<(), EngineError>>, which| r.unwrap_or(Err(EngineError::Panicked(which)));
        // Every lane is joined, the first failure kept.
        let mut tx_outcome = Ok(());
        for t in tx_threads {
            let r = joined(t.join(), "transmit");
            if tx_outcome.is_ok() {
                tx_outcome = r;
            }
        }
        (tx_outcome, joined(rx_thread.join(), "receive"))
    });
    tx_outcome?;
    rx_outcome?;
    let trail = shared.trail();
    let interrupted = stop.stop_sending() && trail < lanes.ranks;
    let cursor = Cursor { pass: 0, position: if interrupted { trail } else { lanes.ranks } };
    Ok(shared.stats(Duration::from_nanos(clock.now_ns()), interrupted, cursor))
}

/// Gives the caller's thread's observer a batch, which stops counting as waiting once taken.
fn take(observer: &mut impl Observer, shared: &Shared, batch: Vec<ScanResult>) {
    let n = batch.len() as u64;
    observer.results(batch);
    shared.backlog.fetch_sub(n, Relaxed);
}

/// RSTs leave from a thread of their own: on a veth, sending one runs the
/// peer's receive processing in the sender's context, which the receive
/// thread cannot afford while replies arrive at line rate.
fn spawn_resets<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    tx: &'scope mut dyn Transmit,
    shared: &'scope Shared,
) -> mpsc::SyncSender<Vec<ResetFrame>> {
    let (queue, batches) = mpsc::sync_channel::<Vec<ResetFrame>>(RESET_QUEUE);
    s.spawn(move || {
        for batch in batches {
            let frames: Vec<&[u8]> = batch.iter().map(|(f, len)| &f[..*len]).collect();
            // An RST is a courtesy to the target: one the kernel refuses costs no result.
            let sent = tx.transmit(&frames).unwrap_or(0);
            shared.resets.fetch_add(sent as u64, Relaxed);
        }
    });
    queue
}

/// One of the transmit threads.
#[derive(Debug, Clone, Copy)]
struct Lane {
    index: usize,
    lanes: Lanes,
}

#[allow(clippy::too_many_arguments)]
fn transmit<T: Transmit>(
    plan: &ScanPlan,
    lane: Lane,
    wire: &Wire,
    tx: &mut T,
    shared: &Shared,
    clock: &Clock<'_>,
    stop: &StopSignal,
    prior: &HashSet<u64>,
    results: mpsc::Sender<Vec<ScanResult>>,
) -> Result<(), EngineError> {
    crate::sys::reduce_timer_slack();
    let Lane { index: l, lanes } = lane;
    // Each lane paces its share of the rate, which the receive thread may change.
    let mut following = shared.rate.load(Relaxed);
    let mut pacer = Pacer::share(following, lanes.count, clock.now_ns());
    // The frames of prtip's own connections counted so far.
    let mut charged = 0;
    tracing::debug!(lane = l, from = shared.window(l).trail(), "transmit lane");
    // Frames side by side, each as long as the module's longest: a SYN
    // scan's batch fits in a few kilobytes.
    let stride = wire.templates.module().max_frame_len();
    let mut frames = vec![0u8; TX_BATCH as usize * stride];
    let mut lens = [0usize; TX_BATCH as usize];
    let mut tries: Vec<Try> = Vec::with_capacity(TX_BATCH as usize);
    let mut silent: Vec<Silent> = Vec::new();
    let mut retrying = false;
    let mut stopped_at = None;
    // The probes concluded silent go to the caller, and then the lane's trail,
    // which the caller's checkpoint reads, moves past them.
    let hand_over = |silent: &mut Vec<Silent>, trail: u64| {
        if !silent.is_empty() {
            let time_us = clock.wall_us(clock.now_ns());
            let silent_state = wire.templates.module().scan_type().silent_state();
            let batch =
                silent.drain(..).map(|s| silent_result(plan, lanes, l, s, silent_state, time_us, shared)).collect();
            shared.to_caller(&results, batch);
        }
        shared.trails[l].store(lanes.trail_rank(l, trail), Release);
    };
    // Nothing is sent to skipped hosts, nor again what earlier runs
    // concluded; a scan without either does not look its probes up twice.
    let skip = |seq: u64| plan.passes_over(lanes.rank(l, seq), prior);
    loop {
        // Another thread failed: the scan ends with its error, and nothing more is read.
        if shared.failed.load(Relaxed) {
            return Ok(());
        }
        let stopping = stop.stop_sending();
        let now = clock.now_ns();
        let rate = shared.rate.load(Relaxed);
        if rate != following {
            following = rate;
            pacer = Pacer::share(rate, lanes.count, now);
        }
        // As many handshakes wait as the banner stage has conversations:
        // no probe more until it takes some, or their peers send their SYN-ACKs again.
        let held_by_banners = shared.banners.as_ref().is_some_and(Handover::full);
        // Nor while the caller's thread has as many results to take as it lets wait.
        let held_by_output = shared.backlog.load(Relaxed) >= shared.backlog_limit;
        // Counted once however many lanes it holds, and only where it is what holds them.
        if !held_by_output {
            shared.output_held.store(false, Relaxed);
        } else if !stopping && !held_by_banners && !shared.output_held.swap(true, Relaxed) {
            shared.output_holds.fetch_add(1, Relaxed);
        }
        // Their frames count against --rate too, each lane paying its share.
        if let Some(sent) = shared.banners.as_ref().map(Handover::sent).filter(|&n| n > charged) {
            let n = sent - charged;
            charged = sent;
            pacer.charge(now, n / lanes.count + u64::from((l as u64) < n % lanes.count));
        }
        let held = stopping || held_by_banners || held_by_output;
        let grant = if held { 0 } else { pacer.grant(now, TX_BATCH) };
        let timeouts = shared.timeouts(plan);
        let send_us = clock.stamp_us();
        let (done, trail, due, last_send, fresh) = {
            let mut window = shared.window(l);
            // Silent probes wait in the window while the caller's thread has no
            // room for them; each lane takes its share of the room, and one
            // result at least when nothing waits (a limit below the lanes).
            let waiting = shared.backlog.load(Relaxed);
            let room = (shared.backlog_limit.saturating_sub(waiting) / lanes.count).max(u64::from(waiting == 0));
            window.settle(shared.caught_up.load(Acquire), timeouts, &mut silent, room as usize);
            tries.clear();
            window.allow_skips();
            while tries.len() < grant as usize
                && let Some(t) = window.next(now, send_us, timeouts, &skip)
            {
                tries.push(t);
            }
            let (held, bytes) = (window.len() as u64, window.bytes() as u64);
            if shared.window_peak.fetch_max(held, Relaxed) < held {
                shared.window_bytes.store(bytes, Relaxed);
            }
            let due = window.next_due(now, timeouts);
            (window.is_done(), window.trail(), due, window.last_send(), window.fresh_waiting())
        };
        pacer.unused(grant - tries.len() as u32);
        if !retrying && let Some(t) = tries.iter().find(|t| t.attempt > 0) {
            retrying = true;
            tracing::debug!(lane = l, seq = t.seq, "first retry");
        }
        if !tries.is_empty() {
            for ((t, frame), len) in tries.iter().zip(frames.chunks_exact_mut(stride)).zip(lens.iter_mut()) {
                let (index, ip, port) = plan.target(plan.position_of_rank(lanes.rank(l, t.seq)));
                let sport = plan.source_port(index, t.attempt);
                let probe = Probe { dst: ip, sport, dport: port, send_us };
                *len = wire.templates.write(&wire.key, &probe, frame);
            }
            let mut batch: [&[u8]; TX_BATCH as usize] = [&[]; TX_BATCH as usize];
            for ((slot, frame), len) in batch.iter_mut().zip(frames.chunks_exact(stride)).zip(lens) {
                *slot = &frame[..len];
            }
            let accepted = tx.transmit(&batch[..tries.len()])?;
            shared.sent.fetch_add(accepted as u64, Relaxed);
            shared.refused.fetch_add((tries.len() - accepted) as u64, Relaxed);
        }
        hand_over(&mut silent, trail);
        if done || stop.stop_waiting() {
            return Ok(());
        }
        if stopping {
            // Replies to what was sent are still read; then what is due is
            // concluded, and what is left stays unconcluded for a resumed run.
            let stopped_at = *stopped_at.get_or_insert(now);
            let caught_up = shared.caught_up.load(Acquire);
            let due = timed_out(caught_up, last_send, timeouts.reply_timeout) || shared.window(l).is_empty();
            if due || gave_up(now, stopped_at, timeouts) {
                let mut window = shared.window(l);
                window.stop();
                // Whatever waits: the lane ends here, and the caller takes it all.
                window.settle(shared.caught_up.load(Acquire), timeouts, &mut silent, usize::MAX);
                let trail = window.trail();
                drop(window);
                hand_over(&mut silent, trail);
                return Ok(());
            }
        }
        if tries.is_empty() && !(fresh && grant > 0) {
            let now = clock.now_ns();
            let held_by_rate = grant == 0 && !held;
            clock.pause(idle(held_by_rate, pacer.wait_ns(now), due, now));
        }
    }
}

/// Whether a scan stopped at `stopped_at` has waited for its replies as long
/// as it will (times in ns): a reply timeout, and `STOP_GRACE` for a receive
/// side that does not catch up.
fn gave_up(now: u64, stopped_at: u64, t: Timeouts) -> bool {
    Duration::from_nanos(now.saturating_sub(stopped_at)) >= Duration::from_nanos(t.reply_timeout) + STOP_GRACE
}

/// How long a lane that sent nothing waits (times in ns): until the rate
/// grants again where the rate held it back, otherwise until its window has
/// a retry due; never longer than `IDLE`, since the receive side may
/// conclude probes, and make room for fresh ones, at any time.
fn idle(held_by_rate: bool, until_grant: u64, due: Option<u64>, now: u64) -> Duration {
    let wait = match (held_by_rate, due) {
        (true, _) => Duration::from_nanos(until_grant),
        (false, Some(due)) if due > now => Duration::from_nanos(due - now),
        // Due already, and still nothing to send: the result at the trail
        // waits for the receive side to read up to its time.
        (false, _) => IDLE,
    };
    wait.min(IDLE)
}

/// The result of a probe concluded silent: `silent_state` (the scan
/// type's), or undecided.
fn silent_result(
    plan: &ScanPlan,
    lanes: Lanes,
    lane: usize,
    s: Silent,
    silent_state: PortState,
    time_us: u64,
    shared: &Shared,
) -> ScanResult {
    let (_, ip, port) = plan.target(plan.position_of_rank(lanes.rank(lane, s.seq)));
    let (state, reason, counter) = if s.undecided {
        (PortState::Undecided, Reason::FramesDropped, &shared.undecided)
    } else {
        (silent_state, Reason::NoResponse, &shared.filtered)
    };
    counter.fetch_add(1, Relaxed);
    ScanResult { ip, port, state, reason, ttl: None, rtt_us: None, time_us }
}

#[allow(clippy::too_many_arguments)]
fn receive<R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    lanes: Lanes,
    rx: &mut R,
    closing: Closing,
    shared: &Shared,
    clock: &Clock<'_>,
    stop: &StopSignal,
    results: mpsc::Sender<Vec<ScanResult>>,
) -> Result<(), EngineError> {
    // Replies are timestamped when read: sleeps between reads must be short.
    crate::sys::reduce_timer_slack();
    let matcher = Matcher { sources: *wire.templates.sources(), src_ports: plan.src_ports, key: wire.key };
    let module = wire.templates.module();
    let mut batch = Vec::new();
    let mut rst_frames: Vec<ResetFrame> = Vec::new();
    let mut watch = LossWatch::new(plan, clock.now_ns());
    let mut rejected = Rejected::default();
    let mut stopped_at = None;
    loop {
        let ending = shared.tx_done.load(Acquire);
        let started = clock.now_ns();
        let wait = if ending { Duration::ZERO } else { RX_POLL };
        let caught_up = rx.receive(wait, &mut |frame, rx_wall_ns| {
            let reply = match module.classify(&matcher, frame) {
                Ok(reply) => reply,
                Err(_) if closing.hand_over(frame, &matcher, plan, shared, false) => return,
                Err(why) => return rejected.count(why, shared),
            };
            let Some((index, j)) = plan
                .space
                .index_of(reply.ip, reply.port)
                .filter(|&i| plan.pass_from(i, reply.from_port).is_some())
                .and_then(|i| Some((i, plan.rank_of(i)?)))
            else {
                // Our cookie, but not a probe of this plan and shard from that port.
                return rejected.count(Rejection::NotOurs, shared);
            };
            let now = clock.since_start_ns(rx_wall_ns);
            let now_us = now / 1000;
            let (lane, seq) = lanes.of(j);
            let mut window = shared.window(lane);
            let (tries, first_us, last_us) = match window.lookup(seq) {
                Lookup::Sent { tries, first_us, last_us, .. } => (tries, first_us, last_us),
                // Nothing was sent to it yet, or ever: a forgery.
                Lookup::Unsent | Lookup::Skipped => return rejected.count_unsent(shared),
                Lookup::Left => {
                    drop(window);
                    shared.late.fetch_add(1, Relaxed);
                    // Its round trip still counts where it echoed its send time:
                    // later probes wait longer for replies that slow, up to --wait.
                    if let Some(sent_us) = reply.sent_us {
                        let rtt = u64::from((now_us as u32).wrapping_sub(sent_us));
                        if rtt <= now_us && Duration::from_micros(rtt) <= MAX_RTT {
                            shared.max_rtt_us.fetch_max(rtt.max(1), Relaxed);
                        }
                    }
                    // A connection prtip holds may outlive its probe's place in
                    // the window: never reset here, even where the queue is full
                    // (the peer sends it again).
                    if !closing.hand_over_segment(frame, &reply, &matcher, plan, shared) && closing.handover.is_none() {
                        reset(&mut rst_frames, wire, &reply, closing.resets.is_some());
                    }
                    return;
                }
            };
            let stamps = (unwrap_stamp(now_us, first_us), unwrap_stamp(now_us, last_us));
            let mut spans = try_stamps(plan, index, reply.from_port, tries, stamps).peekable();
            if spans.peek().is_none() {
                // No try left from that port yet.
                return rejected.count_unsent(shared);
            }
            let Some(span) = spans.find(|&span| plausible_send_time(&reply, span)) else {
                // A held connection's SYN-ACK, repeated after a later try of its probe.
                closing.hand_over_segment(frame, &reply, &matcher, plan, shared);
                return rejected.count_wrong_time(shared);
            };
            let verdict = window.answer(seq, started);
            drop(window);
            // Duplicates too: a target repeats its SYN-ACK when an RST (or our
            // ACK) was lost. Only a port's first SYN-ACK begins a handshake of
            // prtip's own: a repeat may come after its connection ended.
            let first_syn_ack = reply.kind == ReplyKind::SynAck && verdict == Verdict::New;
            let held = match first_syn_ack && reply.window > 0 {
                true => closing.hand_over(frame, &matcher, plan, shared, true),
                // Not a port's first RST: that is the port's answer, of no connection.
                false if reply.kind == ReplyKind::SynAck || verdict != Verdict::New => {
                    closing.hand_over_segment(frame, &reply, &matcher, plan, shared)
                }
                false => false,
            };
            // Where a full queue dropped it, only a first SYN-ACK is reset
            // here: a repeat may be of a connection prtip holds.
            if !held && (closing.handover.is_none() || first_syn_ack) {
                reset(&mut rst_frames, wire, &reply, closing.resets.is_some());
            }
            let counter = match verdict {
                Verdict::New => None,
                Verdict::Duplicate => Some(&shared.duplicates),
                Verdict::Late => Some(&shared.late),
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Relaxed);
                return;
            }
            let rtt = match (reply.sent_us, reply.sent, span) {
                (Some(sent_us), _, _) => Some(u64::from((now_us as u32).wrapping_sub(sent_us))),
                // The tick wraps every 1.05 s: the send stamp says how often it went round.
                (None, Some(tick), (_, stamp_us)) => {
                    Some(unwrap_rtt_us(tick.rtt_us(now_us), now_us.saturating_sub(stamp_us)))
                }
                // A reply without a time of ours: the window's stamp of the try it answers, if one try has it.
                (None, None, (from, to)) => (from == to).then(|| now_us.saturating_sub(from).max(1)),
            };
            let rtt = rtt.filter(|&rtt| rtt <= now_us && Duration::from_micros(rtt) <= MAX_RTT);
            if let Some(us) = rtt {
                shared.max_rtt_us.fetch_max(us.max(1), Relaxed);
            }
            let (state, reason) = module.state(&reply);
            if reason == Reason::ZeroWindow {
                shared.zero_window.fetch_add(1, Relaxed);
            }
            let counter = match state {
                PortState::Closed => &shared.closed,
                _ if state.is_found() => &shared.open,
                _ => &shared.unreachable,
            };
            counter.fetch_add(1, Relaxed);
            shared.answered.fetch_add(1, Relaxed);
            batch.push(ScanResult {
                ip: reply.ip,
                port: reply.port,
                state,
                reason,
                ttl: Some(reply.ttl),
                rtt_us: rtt,
                time_us: clock.wall_us(now),
            });
        })?;
        if let Some(queue) = &closing.resets
            && !rst_frames.is_empty()
        {
            let n = rst_frames.len() as u64;
            // Never wait for the reset thread: a reply read late may be a reply dropped.
            if queue.try_send(std::mem::take(&mut rst_frames)).is_err() {
                shared.resets_skipped.fetch_add(n, Relaxed);
            }
        }
        if !batch.is_empty() {
            // One hand-over per receive call, not per result: waking the
            // caller's thread for every reply costs more than handling it.
            shared.to_caller(&results, std::mem::take(&mut batch));
        }
        let now = clock.now_ns();
        if now.saturating_sub(watch.checked_ns) >= LOSS_CHECK.as_nanos() as u64 {
            watch.check(rx.take_drops(), rx.take_backlog(), now, plan, shared);
        }
        if caught_up {
            // After the hand-over: a lane concludes on this, and its checkpoint
            // counts on the results. Not past the last reading of the drop
            // counters: a reply dropped since is not marked yet.
            shared.caught_up.fetch_max(started.min(watch.checked_ns), Release);
        }
        // Stopped, it reads no longer than the lanes wait: a receive side that
        // never catches up (a flood) must not hold the scan.
        if stop.stop_sending() && stopped_at.is_none() {
            stopped_at = Some(clock.now_ns());
        }
        let given_up = stopped_at.is_some_and(|at| gave_up(clock.now_ns(), at, shared.timeouts(plan)));
        if stop.stop_waiting() || shared.failed.load(Relaxed) || ending && (caught_up || given_up) {
            watch.check(rx.take_drops(), rx.take_backlog(), clock.now_ns(), plan, shared);
            rejected.log();
            return Ok(());
        }
    }
}

/// Hands over, once the scan's probes are done, the segments of the
/// connections prtip still holds itself, until `done`; returns how many a
/// full queue dropped (their peers send them again).
pub fn hand_over_until(
    rx: &mut dyn Receive,
    wire: &Wire,
    plan: &ScanPlan,
    handover: &Handover,
    done: &AtomicBool,
) -> u64 {
    let mut dropped = 0;
    while !done.load(Relaxed) {
        let read = rx.receive(RX_POLL, &mut |frame, _| {
            if let Some(segment) = Segment::in_frame(frame, wire.templates.sources(), plan.src_ports) {
                dropped += u64::from(handover.queue.try_send(Handed::Segment(segment)).is_err());
            }
        });
        if read.is_err() {
            break;
        }
    }
    dropped
}

/// What the receive thread does with the connections SYN-ACKs half open
/// where this host's kernel never sees them.
struct Closing {
    /// Batches of RSTs to send.
    resets: Option<mpsc::SyncSender<Vec<ResetFrame>>>,
    /// Where the segments of the connections prtip holds itself go.
    handover: Option<Handover>,
}

impl Closing {
    /// Hands `frame` over where its TCP segment may be one of the
    /// connections prtip holds itself (an `answer`, whose cookie was valid,
    /// opens one); true if it was. A full queue drops it (the peer sends it
    /// again, and a SYN-ACK is reset instead).
    fn hand_over(&self, frame: &[u8], matcher: &Matcher, plan: &ScanPlan, shared: &Shared, answer: bool) -> bool {
        let Some(Handover { queue, .. }) = &self.handover else { return false };
        let Some(segment) = Segment::in_frame(frame, &matcher.sources, plan.src_ports) else { return false };
        let handed = if answer { Handed::Answer(segment) } else { Handed::Segment(segment) };
        match queue.try_send(handed) {
            Ok(()) => true,
            Err(_) => {
                shared.handover_dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Hands over, as any other segment, a SYN-ACK or an RST that may be of
    /// a connection prtip holds, which decides whether to reset it; true if it was.
    fn hand_over_segment(
        &self,
        frame: &[u8],
        reply: &Reply,
        matcher: &Matcher,
        plan: &ScanPlan,
        shared: &Shared,
    ) -> bool {
        matches!(reply.kind, ReplyKind::SynAck | ReplyKind::Rst) && self.hand_over(frame, matcher, plan, shared, false)
    }
}

/// Queues an RST for a valid SYN-ACK where this host's kernel will not send one.
fn reset(frames: &mut Vec<ResetFrame>, wire: &Wire, reply: &Reply, wanted: bool) {
    if wanted {
        let mut f = [0u8; SYN_FRAME_LEN];
        if let Some(len) = wire.templates.write_close(reply, &mut f) {
            frames.push((f, len));
        }
    }
}

/// A send stamp the window keeps modulo 2^32 microseconds (71 minutes),
/// as the microseconds on the scan's wall clock nearest `now_us`.
fn unwrap_stamp(now_us: u64, stamp: u32) -> u64 {
    let ago = i64::from((now_us as u32).wrapping_sub(stamp) as i32);
    (now_us as i64).saturating_sub(ago).max(0) as u64
}

/// When the tries of probe `index` that left from `sport` were stamped, as
/// spans of microseconds on the scan's wall clock: `tries` were sent so
/// far, the first and the latest stamped `stamps`, and one between them
/// was stamped between them. Empty if none left from that port: a reply
/// to it is forged.
fn try_stamps(
    plan: &ScanPlan,
    index: u64,
    sport: u16,
    tries: u32,
    stamps: (u64, u64),
) -> impl Iterator<Item = (u64, u64)> + '_ {
    let (first, last) = stamps;
    plan.tries_from(index, sport, tries).map(move |attempt| match (attempt == 0, attempt + 1 == tries) {
        (true, _) => (first, first),
        (false, true) => (last, last),
        (false, false) => (first, last),
    })
}

/// Whether the send time `reply` brought back is one a try of its probe
/// was stamped with (`try_stamps`): a blind forger who holds a valid cookie
/// must also hit that time, some 6 bits more for a tick and 18 for a
/// timestamp echo.
fn plausible_send_time(reply: &Reply, (from, to): (u64, u64)) -> bool {
    reply.sent.is_none_or(|tick| tick.within(from, to)) && reply.sent_us.is_none_or(|us| echo_within(us, from, to))
}

/// Frames that passed the kernel's filter but were not replies, by cause:
/// with -v a scan that finds nothing says what it did read.
#[derive(Debug, Default)]
struct Rejected {
    malformed: u64,
    not_ours: u64,
    bad_cookie: u64,
    /// A valid cookie for a probe not sent yet: a forgery.
    unsent: u64,
    /// A valid cookie whose send time is not when its probe was sent: a forgery.
    wrong_time: u64,
}

impl Rejected {
    fn count(&mut self, why: Rejection, shared: &Shared) {
        shared.invalid.fetch_add(1, Relaxed);
        *match why {
            Rejection::Malformed => &mut self.malformed,
            Rejection::NotOurs => &mut self.not_ours,
            Rejection::BadCookie => &mut self.bad_cookie,
        } += 1;
    }

    fn count_unsent(&mut self, shared: &Shared) {
        shared.invalid.fetch_add(1, Relaxed);
        self.unsent += 1;
    }

    fn count_wrong_time(&mut self, shared: &Shared) {
        shared.invalid.fetch_add(1, Relaxed);
        self.wrong_time += 1;
    }

    fn log(&self) {
        let Rejected { malformed, not_ours, bad_cookie, unsent, wrong_time } = *self;
        if malformed + not_ours + bad_cookie + unsent + wrong_time > 0 {
            tracing::info!(
                bad_cookie,
                unsent,
                wrong_time,
                not_ours,
                malformed,
                "frames read that were not replies to this scan"
            );
        }
    }
}

/// The receive thread's reading of the kernel's drop counters: marks what was
/// in flight when frames were lost, and sets the send rate.
struct LossWatch {
    rate: RateControl,
    checked_ns: u64,
}

impl LossWatch {
    fn new(plan: &ScanPlan, now_ns: u64) -> Self {
        LossWatch { rate: RateControl::new(plan.rate, !plan.fixed_rate, now_ns, 0), checked_ns: now_ns }
    }

    fn check(&mut self, drops: Drops, backlog: f32, now_ns: u64, plan: &ScanPlan, shared: &Shared) {
        let lost = drops.total();
        if lost > 0 {
            shared.rx_drops.fetch_add(lost, Relaxed);
            // A reply lost now may answer any try whose reply could still
            // come; a probe is dropped as it is sent: one sent since the last
            // reading, or just before it (the counters are read a moment
            // before the windows).
            let reply_timeout = shared.timeouts(plan).reply_timeout;
            let since = if drops.replies > 0 {
                self.checked_ns.saturating_sub(reply_timeout)
            } else {
                self.checked_ns.saturating_sub(LOSS_CHECK.as_nanos() as u64)
            };
            for lane in 0..shared.windows.len() {
                shared.window(lane).mark_lost(since, now_ns);
            }
        }
        self.checked_ns = now_ns;
        let Some(rate) = self.rate.update(now_ns, shared.sent.load(Relaxed), lost, backlog) else { return };
        shared.rate.store(rate, Relaxed);
        *shared.rate_reason.lock().expect("rate reason lock") = self.rate.reason();
        let shown = if rate == 0 { "no limit".to_string() } else { format!("{rate} probes/s") };
        match self.rate.reason() {
            RateReason::Dropped(_) | RateReason::Behind => {
                shared.rate_cuts.fetch_add(1, Relaxed);
                let lowest = shared.lowest_rate.load(Relaxed);
                shared.lowest_rate.store(if lowest == 0 { rate } else { lowest.min(rate) }, Relaxed);
                if lost > 0 {
                    tracing::info!("send rate lowered to {shown}: this host dropped {lost} frames");
                } else {
                    tracing::info!("send rate lowered to {shown}: the receive path fell behind");
                }
            }
            RateReason::Recovering | RateReason::Configured => {
                tracing::info!("send rate raised to {shown}: no frames dropped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ScanType;
    use crate::target::hosts::{Family, Hosts};
    use crate::target::ranges::{Range, RangeSet};
    use crate::target::space::TargetSpace;
    use crate::wire::sources::Sources;
    use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
    use std::collections::{HashMap, VecDeque};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// A clock that passes only while every thread of the scan waits on it,
    /// and then straight to the earliest time one of them waits for: the
    /// engine's tests run on it, not on the wall clock. A thread busy with
    /// work (or waiting on a lock) holds time still, so the scan cannot
    /// outrun a thread the machine did not schedule.
    struct VirtualTime {
        state: Mutex<Waits>,
        woken: std::sync::Condvar,
    }

    struct Waits {
        now: u64,
        /// Threads that wait on this time and have not left it.
        threads: usize,
        /// The times the waiting threads wait for.
        until: Vec<u64>,
    }

    /// Its wall clock: 2026-12-01, as seconds since the epoch.
    const EPOCH_NS: u64 = 1_764_547_200 * 1_000_000_000;

    impl VirtualTime {
        /// For a scan of `threads` threads that wait: its lanes and its receive thread.
        fn new(threads: usize) -> Self {
            VirtualTime { state: Mutex::new(Waits { now: 0, threads, until: Vec::new() }), woken: Default::default() }
        }

        /// Moves the clock on when every thread waits.
        fn advance(&self, w: &mut Waits) {
            if w.until.len() >= w.threads
                && let Some(&next) = w.until.iter().min()
            {
                w.now = w.now.max(next);
                self.woken.notify_all();
            }
        }
    }

    impl Time for VirtualTime {
        fn monotonic_ns(&self) -> u64 {
            self.state.lock().unwrap().now
        }

        fn wall_ns(&self) -> u64 {
            EPOCH_NS + self.monotonic_ns()
        }

        fn sleep(&self, d: Duration) {
            let mut w = self.state.lock().unwrap();
            let until = w.now + (d.as_nanos() as u64).max(1000);
            w.until.push(until);
            self.advance(&mut w);
            while w.now < until {
                w = self.woken.wait(w).unwrap();
            }
            let i = w.until.iter().position(|&u| u == until).expect("this wait");
            w.until.swap_remove(i);
        }

        fn leave(&self) {
            let mut w = self.state.lock().unwrap();
            w.threads = w.threads.saturating_sub(1);
            self.advance(&mut w);
        }
    }

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);

    /// A simulated network: open ports answer SYN-ACK, closed ones RST,
    /// filtered ones nothing. "Lossy" probes lose their first SYN; "noisy" ones
    /// are answered twice, "slow" ones that much later, and every SYN to a
    /// filtered port draws a forged SYN-ACK.
    #[derive(Default)]
    struct Net {
        /// Frames on their way, and when each arrives (ns on the test's clock).
        inbox: VecDeque<(u64, Vec<u8>)>,
        attempts: HashMap<(IpAddr, u16), u32>,
        /// The addresses each target heard from.
        heard_from: HashMap<IpAddr, HashSet<IpAddr>>,
        /// (our address, target, port, our source port, ack) of every
        /// genuine SYN-ACK sent: what an RST must match.
        syn_acks: HashSet<(IpAddr, IpAddr, u16, u16, u32)>,
        /// Replies dropped on the scanning host, not yet reported.
        drops: u64,
        /// RSTs the scan sent.
        resets: u64,
    }

    #[derive(Default)]
    struct Truth {
        open: HashSet<u16>,
        filtered: HashSet<u16>,
        lossy: HashSet<u16>,
        noisy: HashSet<u16>,
        /// Replies this host drops, and says it dropped: to the first N tries of a port.
        dropped: HashMap<u16, u32>,
        /// Open ports whose SYN-ACK offers no window, as a SYN proxy's does.
        zero_window: HashSet<u16>,
        /// Ports whose real reply follows forged replies that hold the key (as
        /// a forger who guessed the MAC has) but send times 300 and 700 ms off.
        forged_in_time: HashSet<u16>,
        /// Ports whose replies take this long.
        slow: HashMap<u16, Duration>,
    }

    struct FakeTx(Arc<Mutex<Net>>, Arc<Truth>, Arc<VirtualTime>);
    struct FakeRx(Arc<Mutex<Net>>, Arc<VirtualTime>);
    /// Takes the engine's RSTs and checks each against a genuine SYN-ACK.
    struct FakeResets(Arc<Mutex<Net>>);

    impl Transmit for FakeResets {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let mut net = self.0.lock().unwrap();
            net.resets += frames.len() as u64;
            for f in frames {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let (src, dst) = addresses(&p);
                let Some(TransportSlice::Tcp(rst)) = p.transport else { panic!("not TCP") };
                assert!(rst.rst() && !rst.syn() && !rst.ack());
                let key = (src, dst, rst.destination_port(), rst.source_port(), rst.sequence_number());
                assert!(net.syn_acks.contains(&key), "an RST for no SYN-ACK: {key:?}");
            }
            Ok(frames.len())
        }
    }

    /// A frame's source and destination addresses.
    fn addresses(p: &SlicedPacket) -> (IpAddr, IpAddr) {
        match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                (ip.header().source_addr().into(), ip.header().destination_addr().into())
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                (ip.header().source_addr().into(), ip.header().destination_addr().into())
            }
            _ => panic!("not IP"),
        }
    }

    fn wire_from(scan_type: ScanType, sources: Sources) -> Wire {
        Wire { templates: Templates::new(scan_type, [1; 6], [2; 6], sources, &[]).unwrap(), key: CookieKey::new(3, 4) }
    }

    impl Transmit for FakeTx {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let mut net = self.0.lock().unwrap();
            let now = self.2.monotonic_ns();
            for f in frames {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                // Whole frames and nothing after them: a raw IP socket sends every byte it is given.
                let len = if matches!(p.net, Some(etherparse::NetSlice::Ipv4(_))) { 70 } else { 90 };
                assert_eq!(f.len(), len, "frame length");
                let (me, dst) = addresses(&p);
                net.heard_from.entry(dst).or_default().insert(me);
                let Some(TransportSlice::Tcp(syn)) = p.transport else { panic!("not TCP") };
                assert!(syn.syn() && !syn.ack());
                let port = syn.destination_port();
                let attempt = net.attempts.entry((dst, port)).or_default();
                *attempt += 1;
                if self.1.lossy.contains(&port) && *attempt == 1 {
                    continue;
                }
                if self.1.dropped.get(&port).is_some_and(|&tries| *attempt <= tries) {
                    net.drops += 1;
                    continue;
                }
                let tsval = syn.options_iterator().find_map(|o| match o {
                    Ok(TcpOptionElement::Timestamp(v, _)) => Some(v),
                    _ => None,
                });
                let reply = |ack: u32, open: bool, echo: u32| {
                    let b = PacketBuilder::ethernet2([2; 6], [1; 6]);
                    let b = match (dst, me) {
                        (IpAddr::V4(dst), IpAddr::V4(me)) => b.ipv4(dst.octets(), me.octets(), 61),
                        (IpAddr::V6(dst), IpAddr::V6(me)) => b.ipv6(dst.octets(), me.octets(), 61),
                        _ => panic!("mixed families"),
                    };
                    let window = if self.1.zero_window.contains(&port) { 0 } else { 1024 };
                    let mut b = b.tcp(port, syn.source_port(), 777, window).ack(ack);
                    b = if open { b.syn().options(&[TcpOptionElement::Timestamp(5, echo)]).unwrap() } else { b.rst() };
                    let mut out = Vec::new();
                    b.write(&mut out, &[]).unwrap();
                    out
                };
                let good = syn.sequence_number().wrapping_add(1);
                let tsval = tsval.unwrap();
                if self.1.forged_in_time.contains(&port) {
                    let key = CookieKey::new(3, 4);
                    let sent_us = u64::from(tsval.wrapping_sub(key.tsval(0)));
                    // Later than sent: a probe sent early in the scan has no time before it 300 ms off.
                    for off in [sent_us + 300_000, sent_us + 700_000] {
                        // A SYN-ACK with its echo, and an RST: each says the other state.
                        let ack = key.seq(me, dst, syn.source_port(), port, off).wrapping_add(1);
                        net.inbox.push_back((now, reply(ack, true, key.tsval(off))));
                        net.inbox.push_back((now, reply(ack, false, 0)));
                    }
                }
                if self.1.filtered.contains(&port) {
                    // Forgeries: a wrong acknowledgement, or the right one with a made-up send time.
                    let forged = if port % 2 == 0 {
                        reply(good, true, tsval.wrapping_sub(1000))
                    } else {
                        reply(good ^ 0x55, true, tsval)
                    };
                    net.inbox.push_back((now, forged));
                    continue;
                }
                let open = self.1.open.contains(&port);
                if open {
                    net.syn_acks.insert((me, dst, port, syn.source_port(), good));
                }
                let frame = reply(good, open, tsval);
                let due = now + self.1.slow.get(&port).map_or(0, |d| d.as_nanos() as u64);
                if self.1.noisy.contains(&port) {
                    net.inbox.push_back((due, frame.clone()));
                }
                net.inbox.push_back((due, frame));
            }
            Ok(frames.len())
        }
    }

    impl Receive for FakeRx {
        fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
            let now = self.1.monotonic_ns();
            let frames: Vec<Vec<u8>> = {
                let mut net = self.0.lock().unwrap();
                let (due, later): (VecDeque<_>, VecDeque<_>) = net.inbox.drain(..).partition(|(at, _)| *at <= now);
                net.inbox = later;
                due.into_iter().map(|(_, f)| f).collect()
            };
            if frames.is_empty() {
                self.1.sleep(timeout.min(Duration::from_millis(1)));
            }
            let wall = self.1.wall_ns();
            for f in frames {
                on_frame(&f, wall);
            }
            // Every frame due when the call began was handed over.
            Ok(true)
        }

        fn take_drops(&mut self) -> Drops {
            Drops { replies: std::mem::take(&mut self.0.lock().unwrap().drops), probes: 0 }
        }
    }

    /// The longest the fake network's scans wait for replies.
    const WAIT: Duration = Duration::from_millis(300);

    fn scan(truth: Truth, retries: u32, ports: (u32, u32)) -> (ScanStats, Vec<ScanResult>, ScanPlan) {
        scan_family(Family::V4, truth, 1, retries, ports, Cursor::default(), |_| false, WAIT)
    }

    /// A scan of hosts ::1-::4 (IPv6) or 10.0.0.1-10.0.0.4 that resumes at
    /// `start`, after an earlier run that concluded the positions `concluded_before` accepts.
    // Each argument is one dimension the tests vary; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn scan_family(
        family: Family,
        truth: Truth,
        lanes: usize,
        retries: u32,
        ports: (u32, u32),
        start: Cursor,
        concluded_before: impl Fn(u64) -> bool,
        max_wait: Duration,
    ) -> (ScanStats, Vec<ScanResult>, ScanPlan) {
        let first = match family {
            Family::V4 => 0x0a00_0001,
            Family::V6 => 1,
        };
        let hosts = Hosts::new(family, RangeSet::from_ranges(vec![Range::new(first, first + 3)]));
        let space = TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(ports.0, ports.1)])).unwrap();
        let plan = ScanPlan::new(space, 9, (61000, 61003), retries, 0, max_wait).starting_at(start);
        let (stats, results, _) = run_plan(&plan, truth, lanes, concluded_before);
        (stats, results, plan)
    }

    /// How often each (address, port) was sent a probe.
    type Attempts = HashMap<(IpAddr, u16), u32>;

    /// Runs `plan` over the fake network from `ME` or `ME6`, after an
    /// earlier run that concluded the positions `concluded_before` accepts.
    fn run_plan(
        plan: &ScanPlan,
        truth: Truth,
        lanes: usize,
        concluded_before: impl Fn(u64) -> bool,
    ) -> (ScanStats, Vec<ScanResult>, Attempts) {
        let me = match plan.space.hosts().family() {
            Family::V4 => IpAddr::V4(ME),
            Family::V6 => IpAddr::V6(ME6),
        };
        let (stats, results, net) = run_from(plan, truth, lanes, concluded_before, Sources::one(me), None);
        (stats, results, net.attempts)
    }

    /// Runs `plan` over the fake network from `sources`; returns the network as the scan left it.
    fn run_from(
        plan: &ScanPlan,
        truth: Truth,
        lanes: usize,
        concluded_before: impl Fn(u64) -> bool,
        sources: Sources,
        handover: Option<Handover>,
    ) -> (ScanStats, Vec<ScanResult>, Net) {
        let wire = wire_from(ScanType::Syn, sources);
        let net = Arc::new(Mutex::new(Net::default()));
        let truth = Arc::new(truth);
        let time = Arc::new(VirtualTime::new(lanes + 1));
        let prior: HashSet<u64> =
            plan.positions().filter(|&pos| concluded_before(pos)).map(|pos| plan.target(pos).0).collect();
        let mut seen = Seen { results: Vec::new(), ticks: 0, ranks: plan.probe_count() };
        let stats = run(
            plan,
            &wire,
            &mut (0..lanes).map(|_| FakeTx(net.clone(), truth.clone(), time.clone())).collect::<Vec<_>>(),
            &mut FakeRx(net.clone(), time.clone()),
            Some(&mut FakeResets(net.clone())),
            handover,
            &StopSignal::new(),
            &prior,
            &mut seen,
            &*time,
        )
        .unwrap();
        assert!(seen.ticks <= 1 + stats.duration.as_millis() / 250, "progress at most four times a second");
        let net = std::mem::take(&mut *net.lock().unwrap());
        (stats, seen.results, net)
    }

    struct Seen {
        results: Vec<ScanResult>,
        ticks: u128,
        /// The probes of the scan's shard: the checkpoint never passes them.
        ranks: u64,
    }

    impl Observer for Seen {
        fn results(&mut self, batch: Vec<ScanResult>) {
            self.results.extend(batch);
        }

        fn progress(&mut self, p: &Progress) {
            self.ticks += 1;
            assert!(p.checkpoint.position <= self.ranks);
        }
    }

    fn set(v: &[u16]) -> HashSet<u16> {
        v.iter().copied().collect()
    }

    /// Every reply of `ProbeTx`'s network arrives this long after its probe.
    const PROBE_NET_RTT: Duration = Duration::from_millis(5);
    /// An address the scans of `ProbeTx` do not target.
    const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 99);

    /// A fake network for the UDP and echo modules of 10.0.0.1-10.0.0.4:
    /// UDP port 53 answers by repeating the datagram (as a DNS server repeats
    /// the query's ID), port 9 is closed (an ICMP port unreachable quoting
    /// the datagram), other ports are silent; hosts .1 and .2 answer echo
    /// requests, a router sends host unreachable for .3, and .4 is silent.
    /// Each probe also draws forgeries, counted in the third field, that
    /// must never become results: replies from a stranger, with another
    /// identifier, to another of our ports, and ICMP errors quoting probes
    /// never sent.
    struct ProbeTx(Arc<Mutex<Net>>, Arc<VirtualTime>, Arc<AtomicU64>);

    impl ProbeTx {
        fn ip(from: Ipv4Addr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
            PacketBuilder::ethernet2([2; 6], [1; 6]).ipv4(from.octets(), ME.octets(), 61)
        }

        fn unreachable(code: u8, quoted: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let header = etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap();
            Self::ip(Ipv4Addr::new(10, 0, 0, 254))
                .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(header))
                .write(&mut out, quoted)
                .unwrap();
            out
        }
    }

    impl Transmit for ProbeTx {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let mut net = self.0.lock().unwrap();
            let due = self.1.monotonic_ns() + PROBE_NET_RTT.as_nanos() as u64;
            let mut replies: Vec<Vec<u8>> = Vec::new();
            let mut forged: Vec<Vec<u8>> = Vec::new();
            for f in frames {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
                let dst = ip.header().destination_addr();
                let quoted = &f[14..];
                match p.transport.unwrap() {
                    TransportSlice::Udp(udp) => {
                        let (sport, dport, payload) = (udp.source_port(), udp.destination_port(), udp.payload());
                        let datagram = |from: Ipv4Addr, sport_from: u16, to: u16, payload: &[u8]| {
                            let mut out = Vec::new();
                            Self::ip(from).udp(sport_from, to).write(&mut out, payload).unwrap();
                            out
                        };
                        let other_port = 61000 + (sport - 61000 + 1) % 4;
                        if dport == 53 {
                            replies.push(datagram(dst, 53, sport, payload));
                            let mut wrong_id = payload.to_vec();
                            wrong_id[0] ^= 1;
                            forged.push(datagram(dst, 53, sport, &wrong_id));
                            forged.push(datagram(STRANGER, 53, sport, payload));
                            forged.push(datagram(dst, 53, other_port, payload));
                            // A port without an identifier, from a host not scanned.
                            forged.push(datagram(STRANGER, 7777, sport, b"hello"));
                        } else if dport == 9 {
                            replies.push(Self::unreachable(3, quoted));
                            // The same datagram, but from a port this probe never left from.
                            let mut never_sent = quoted.to_vec();
                            never_sent[20..22].copy_from_slice(&other_port.to_be_bytes());
                            forged.push(Self::unreachable(3, &never_sent));
                        }
                    }
                    TransportSlice::Icmpv4(icmp) => {
                        let etherparse::Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else { panic!("not an echo") };
                        let reply = |from: Ipv4Addr, payload: &[u8]| {
                            let mut out = Vec::new();
                            Self::ip(from).icmpv4_echo_reply(echo.id, echo.seq).write(&mut out, payload).unwrap();
                            out
                        };
                        match dst.octets()[3] {
                            1 | 2 => replies.push(reply(dst, icmp.payload())),
                            3 => replies.push(Self::unreachable(1, quoted)),
                            _ => {}
                        }
                        let mut wrong_cookie = icmp.payload().to_vec();
                        wrong_cookie[3] ^= 1;
                        forged.push(reply(dst, &wrong_cookie));
                        forged.push(reply(STRANGER, icmp.payload()));
                        // A request with another sequence number: never sent.
                        let mut never_sent = quoted.to_vec();
                        never_sent[20 + 7] ^= 1;
                        forged.push(Self::unreachable(1, &never_sent));
                    }
                    _ => panic!("neither UDP nor ICMP"),
                }
            }
            self.2.fetch_add(forged.len() as u64, Relaxed);
            // Forgeries first: a forger races the genuine reply.
            net.inbox.extend(forged.into_iter().chain(replies).map(|f| (due, f)));
            Ok(frames.len())
        }
    }

    /// Scans 10.0.0.1-10.0.0.4 (ports `ports`; the echo module's port 0)
    /// with `scan_type` over `ProbeTx`'s network; returns the results, and
    /// the forgeries sent.
    fn probe_scan(scan_type: ScanType, ports: &[u32]) -> (ScanStats, Vec<ScanResult>, u64) {
        let hosts = Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(0x0a00_0001, 0x0a00_0004)]));
        let ports = RangeSet::from_ranges(ports.iter().map(|&p| Range::new(p, p)).collect());
        let plan = ScanPlan::new(TargetSpace::new(hosts, ports).unwrap(), 9, (61000, 61003), 0, 0, WAIT);
        let me = IpAddr::V4(ME);
        let wire = wire_from(scan_type, Sources::one(me));
        let net = Arc::new(Mutex::new(Net::default()));
        let time = Arc::new(VirtualTime::new(2));
        let forged = Arc::new(AtomicU64::new(0));
        let mut seen = Seen { results: Vec::new(), ticks: 0, ranks: plan.probe_count() };
        let stats = run(
            &plan,
            &wire,
            &mut [ProbeTx(net.clone(), time.clone(), forged.clone())],
            &mut FakeRx(net.clone(), time.clone()),
            None,
            None,
            &StopSignal::new(),
            &HashSet::new(),
            &mut seen,
            &*time,
        )
        .unwrap();
        (stats, seen.results, forged.load(Relaxed))
    }

    fn hosts_in(results: &[ScanResult], state: PortState, port: u16) -> Vec<u8> {
        let mut v: Vec<u8> = results
            .iter()
            .filter(|r| r.state == state && r.port == port)
            .map(|r| match r.ip {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(_) => panic!("not IPv4"),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn udp_replies_are_matched_by_identifier_and_port_and_forgeries_are_nothing() {
        let (stats, results, forged) = probe_scan(ScanType::Udp, &[7, 9, 53]);
        assert_eq!(results.len(), 12, "one result per probe: {results:?}");
        assert_eq!(hosts_in(&results, PortState::Open, 53), [1, 2, 3, 4]);
        assert_eq!(hosts_in(&results, PortState::Closed, 9), [1, 2, 3, 4]);
        assert_eq!(hosts_in(&results, PortState::OpenFiltered, 7), [1, 2, 3, 4]);
        assert!(results.iter().filter(|r| r.port == 53).all(|r| r.reason == Reason::UdpResponse));
        assert!(results.iter().filter(|r| r.port == 9).all(|r| r.reason == Reason::Unreachable { code: 3 }));
        assert_eq!((stats.open, stats.closed, stats.filtered), (4, 4, 4));
        // A UDP reply carries no time of ours: the send window's stamp of the try times it.
        let rtt = PROBE_NET_RTT.as_micros() as u64;
        for r in results.iter().filter(|r| r.port != 7) {
            let got = r.rtt_us.expect("every reply is timed");
            assert!((rtt..rtt + 1_100).contains(&got), "{r:?}");
        }
        assert_eq!(forged, 4 * 4 + 4);
        assert_eq!(stats.invalid, forged, "every forgery was refused");
        assert_eq!(stats.sent, 12, "no retries");
    }

    #[test]
    fn echo_replies_are_matched_by_cookie_and_forgeries_are_nothing() {
        let (stats, results, forged) = probe_scan(ScanType::Icmp, &[0]);
        assert_eq!(results.len(), 4, "one result per host: {results:?}");
        assert_eq!(hosts_in(&results, PortState::Up, 0), [1, 2]);
        assert_eq!(hosts_in(&results, PortState::Unreachable, 0), [3]);
        assert_eq!(hosts_in(&results, PortState::Down, 0), [4]);
        let up: Vec<&ScanResult> = results.iter().filter(|r| r.state == PortState::Up).collect();
        assert!(up.iter().all(|r| r.reason == Reason::EchoReply && r.ttl == Some(61)));
        let rtt = PROBE_NET_RTT.as_micros() as u64;
        assert!(up.iter().all(|r| r.rtt_us.is_some_and(|us| (rtt..rtt + 1_100).contains(&us))), "{up:?}");
        assert_eq!((stats.open, stats.unreachable, stats.filtered), (2, 1, 1));
        assert_eq!(forged, 4 * 3);
        assert_eq!(stats.invalid, forged, "every forgery was refused");
    }

    /// The (address, port) pairs of `results` in `state`, sorted.
    fn pairs(results: &[ScanResult], state: PortState) -> Vec<(IpAddr, u16)> {
        let mut v: Vec<(IpAddr, u16)> = results.iter().filter(|r| r.state == state).map(|r| (r.ip, r.port)).collect();
        v.sort();
        v
    }

    #[test]
    fn classifies_retries_and_deduplicates() {
        for family in [Family::V4, Family::V6] {
            let truth = Truth {
                open: set(&[22, 49, 31]),
                filtered: set(&[7, 8]),
                lossy: set(&[31, 40]),
                noisy: set(&[22, 45]),
                zero_window: set(&[49]),
                forged_in_time: set(&[22, 44]),
                ..Default::default()
            };
            classifies_retries_and_deduplicates_in(family, truth);
        }
    }

    fn classifies_retries_and_deduplicates_in(family: Family, truth: Truth) {
        let (stats, results, plan) = scan_family(family, truth, 1, 1, (1, 50), Cursor::default(), |_| false, WAIT);
        let hosts = 4u64;
        let host = |h: u8| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, h)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, h.into())),
        };
        let expect = |ports: &[u16]| {
            let mut v: Vec<(IpAddr, u16)> = (1..=4).flat_map(|h| ports.iter().map(move |&p| (host(h), p))).collect();
            v.sort();
            v
        };
        assert_eq!(pairs(&results, PortState::Open), expect(&[22, 31, 49]));
        assert_eq!(pairs(&results, PortState::Closed).len() as u64, hosts * 45);
        // Silent through both tries: filtered, said once each.
        assert_eq!(pairs(&results, PortState::Filtered), expect(&[7, 8]));
        assert!(results.iter().filter(|r| r.state == PortState::Filtered).all(|r| r.reason == Reason::NoResponse));
        assert_eq!(results.len() as u64, plan.probe_count(), "one result per probe");
        assert_eq!(stats.open, hosts * 3);
        let reasons = |port: u16| results.iter().filter(|r| r.port == port).map(|r| r.reason).collect::<Vec<_>>();
        assert_eq!(reasons(49), [Reason::ZeroWindow; 4]);
        assert_eq!(reasons(22), [Reason::SynAck; 4]);
        assert_eq!(stats.zero_window, hosts);
        assert_eq!((stats.closed, stats.filtered, stats.undecided), (hosts * 45, hosts * 2, 0));
        // Every probe once, and a retry of the lossy and the filtered ones.
        assert_eq!(stats.sent, plan.probe_count() + hosts * 4);
        assert_eq!((stats.duplicates, stats.late), (hosts * 2, 0));
        // Each genuine SYN-ACK, the noisy port's second one too, drew an RST; no forgery did.
        assert_eq!(stats.resets, hosts * 4);
        // Every SYN to a filtered port drew a forged SYN-ACK (port 8's with the
        // right acknowledgement but a tampered timestamp), and each to ports 22
        // and 44 a SYN-ACK and an RST with valid cookies for send times 300
        // and 700 ms after its own; none became a result.
        assert_eq!(stats.invalid, hosts * 2 * 2 + hosts * 2 * 4);
        assert!(results.iter().filter(|r| r.state == PortState::Open).all(|r| r.rtt_us.is_some() && r.ttl == Some(61)));
        assert!(stats.max_rtt.is_some());
        assert!(!stats.interrupted);
        assert_eq!(stats.cursor, Cursor { pass: 0, position: plan.probe_count() });
        assert_eq!(stats.rate_cuts, 0, "nothing was dropped on this host");
        assert!(stats.window_peak > 0 && stats.window_peak <= plan.probe_count());
    }

    #[test]
    fn replies_dropped_on_this_host_are_retried_and_their_silence_is_never_an_answer() {
        let truth = Truth {
            open: set(&[2, 6, 9]),
            filtered: set(&[7]),
            dropped: [(2, 1), (3, 1), (6, 2), (9, u32::MAX), (4, u32::MAX)].into(),
            ..Default::default()
        };
        let (stats, results, _) = scan(truth, 1, (1, 10));
        let ports = |state: PortState| {
            let mut v: Vec<u16> = results.iter().filter(|r| r.state == state).map(|r| r.port).collect();
            v.sort();
            v.dedup();
            v
        };
        // A reply dropped once comes with a free retry, one dropped twice
        // with the regular retry after it, in its true state.
        assert_eq!(ports(PortState::Open), [2, 6]);
        assert_eq!(ports(PortState::Closed), [1, 3, 5, 8, 10]);
        // Silent while drops went on, on every try: undecided, never filtered
        // (the filtered port too: its tries were in flight while replies were dropped).
        assert_eq!(ports(PortState::Undecided), [4, 7, 9]);
        assert!(results.iter().filter(|r| r.state == PortState::Undecided).all(|r| r.reason == Reason::FramesDropped));
        assert_eq!((stats.undecided, stats.filtered), (4 * 3, 0));
        assert_eq!(results.len(), 4 * 10, "one result per probe");
        // 4 hosts: the first replies of 2 and 3, two of 6, and the three tries each of 9 and 4.
        assert_eq!(stats.rx_drops, 4 * (1 + 1 + 2 + 3 + 3));
        // Per host: 1, 5, 8 and 10 once; 2 and 3 twice (a free retry); 6, 9,
        // 4 and 7 three times (a free retry and the regular one).
        assert_eq!(stats.sent, 4 * (4 + 2 * 2 + 4 * 3));
        assert!(stats.rate_cuts >= 1, "the rate went down for the drops");
    }

    #[test]
    fn probes_spread_over_the_sources_and_replies_count_at_whichever_they_reach() {
        let hosts = Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(0x0a00_0101, 0x0a00_0140)]));
        let space = TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(20, 25)])).unwrap();
        let plan = ScanPlan::new(space, 9, (61000, 61003), 1, 0, WAIT);
        let mine: Vec<IpAddr> = (100..103).map(|h| IpAddr::V4(Ipv4Addr::new(10, 0, 0, h))).collect();
        let sources = Sources::new(&mine).unwrap();
        let truth = Truth { open: set(&[22, 24]), noisy: set(&[22]), lossy: set(&[23]), ..Default::default() };
        let (stats, results, net) = run_from(&plan, truth, 2, |_| false, sources, None);
        assert_eq!(results.len() as u64, plan.probe_count(), "one result per probe");
        assert_eq!(pairs(&results, PortState::Open).len(), 64 * 2);
        assert_eq!((stats.open, stats.closed, stats.filtered), (64 * 2, 64 * 4, 0));
        // The lossy port's first SYN went unanswered: its retry left from the same address.
        assert_eq!(stats.sent, plan.probe_count() + 64);
        assert_eq!(net.heard_from.len(), 64);
        for (dst, heard) in &net.heard_from {
            assert_eq!(heard.iter().copied().collect::<Vec<_>>(), [sources.get(sources.pick(*dst))], "{dst}");
        }
        let used: HashSet<IpAddr> = net.heard_from.values().flatten().copied().collect();
        assert_eq!(used.len(), 3, "every source sent");
        // Each SYN-ACK drew an RST from the address it came to (the fake network checks which).
        assert_eq!(stats.resets, 64 * 3);
        assert_eq!((stats.invalid, stats.duplicates), (0, 64));
    }

    #[test]
    fn several_transmit_lanes_send_every_probe_once() {
        let truth = || Truth { open: set(&[22]), filtered: set(&[7]), lossy: set(&[31]), ..Default::default() };
        let (one, results, plan) = scan(truth(), 1, (1, 50));
        let (three, results3, _) = scan_family(Family::V4, truth(), 3, 1, (1, 50), Cursor::default(), |_| false, WAIT);
        let key = |r: &Vec<ScanResult>| {
            let mut v: Vec<(IpAddr, u16, PortState)> = r.iter().map(|r| (r.ip, r.port, r.state)).collect();
            v.sort();
            v
        };
        assert_eq!(key(&results3), key(&results));
        // Every probe once, then retries of the lossy and the filtered port on each of 4 hosts.
        assert_eq!(one.sent, plan.probe_count() + 8);
        assert_eq!(three.sent, one.sent);
        assert_eq!((three.duplicates, three.cursor), (0, Cursor { pass: 0, position: plan.probe_count() }));
        // Lanes resumed in the middle continue from the checkpoint, each its share.
        let k = 101;
        let start = Cursor { pass: 0, position: k };
        let (resumed, results, _) = scan_family(Family::V4, truth(), 3, 0, (1, 50), start, |_| false, WAIT);
        assert_eq!(resumed.sent, plan.probe_count() - k);
        let rest: Vec<(IpAddr, u16)> =
            plan.positions().skip(k as usize).map(|p| plan.target(p)).map(|t| (t.1, t.2)).collect();
        let mut got: Vec<(IpAddr, u16)> = results.iter().map(|r| (r.ip, r.port)).collect();
        got.sort();
        let mut rest_sorted = rest.clone();
        rest_sorted.sort();
        assert_eq!(got, rest_sorted, "a result for each probe from the checkpoint on, and no other");
        // Without retries the filtered port and the lossy one's first SYN stay unanswered.
        let silent = rest.iter().filter(|t| [7, 31].contains(&t.1)).count() as u64;
        assert_eq!(resumed.filtered, silent);
    }

    /// A resumed scan starts at its checkpoint: every probe before it was
    /// concluded. Those after it that a lane ahead had concluded too are not
    /// sent again; the rest are sent, retried, and concluded.
    #[test]
    fn a_resumed_scan_sends_from_its_checkpoint_what_was_not_concluded() {
        let (k, filtered) = (37u64, 7u16);
        let truth = || Truth { open: set(&[22]), filtered: set(&[filtered]), ..Default::default() };
        let (_, _, whole) = scan(truth(), 1, (1, 30));
        // The interrupted run concluded everything before k, and every third position after it.
        let concluded_before = |pos: u64| pos < k || pos.is_multiple_of(3);
        let start = Cursor { pass: 0, position: k };
        let (stats, results, plan) = scan_family(Family::V4, truth(), 1, 1, (1, 30), start, concluded_before, WAIT);
        let left: Vec<(IpAddr, u16)> =
            whole.positions().filter(|&p| !concluded_before(p)).map(|p| whole.target(p)).map(|t| (t.1, t.2)).collect();
        let mut got: Vec<(IpAddr, u16)> = results.iter().map(|r| (r.ip, r.port)).collect();
        got.sort();
        let mut expect = left.clone();
        expect.sort();
        assert_eq!(got, expect, "a result for each probe left, and no other");
        let silent = left.iter().filter(|t| t.1 == filtered).count() as u64;
        assert!(silent > 0);
        assert_eq!(stats.filtered, silent);
        assert_eq!(stats.sent, left.len() as u64 + silent, "what was left, and a retry of the silent ones");
        assert_eq!(stats.cursor, Cursor { pass: 0, position: plan.probe_count() });
    }

    /// With one source port every try leaves from it: a reply to a retry is
    /// one (its send time that of the retry), not a forgery of the first try.
    #[test]
    fn replies_to_retries_from_a_single_source_port_count() {
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 10));
        let plan = ScanPlan::new(space, 9, (61000, 61000), 2, 0, WAIT);
        let truth = Truth { open: set(&[9]), lossy: set(&[5, 9]), ..Default::default() };
        let (stats, results, attempts) = run_plan(&plan, truth, 1, |_| false);
        let hosts: Vec<IpAddr> = (1..=4).map(|h| Ipv4Addr::new(10, 0, 0, h).into()).collect();
        assert_eq!(pairs(&results, PortState::Open), hosts.iter().map(|&h| (h, 9)).collect::<Vec<_>>());
        assert_eq!(pairs(&results, PortState::Closed).len(), 4 * 9);
        assert_eq!(attempts[&(hosts[0], 5)], 2, "answered on its retry");
        assert_eq!(stats.invalid, 0);
    }

    /// Hosts excluded since the interrupted run keep their place in the
    /// order but are sent nothing, and the scan does not wait for them.
    #[test]
    fn a_resumed_scan_sends_nothing_to_skipped_hosts_and_does_not_wait_for_them() {
        let (k, wait) = (37u64, Duration::from_secs(60));
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 30));
        let skipped: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        let plan = |start: Cursor| {
            ScanPlan::new(space.clone(), 9, (61000, 61003), 3, 0, wait)
                .starting_at(start)
                .skipping(Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(0x0a00_0002, 0x0a00_0002)])))
        };
        let truth = || Truth { open: set(&[22]), ..Default::default() };
        let resumed = plan(Cursor { pass: 0, position: k });
        let (stats, results, attempts) = run_plan(&resumed, truth(), 2, |_| false);
        assert!(attempts.keys().all(|(ip, _)| *ip != skipped), "a probe went to the skipped host");
        let mut rest: Vec<(IpAddr, u16)> = resumed
            .positions()
            .skip(k as usize)
            .map(|p| resumed.target(p))
            .map(|t| (t.1, t.2))
            .filter(|t| t.0 != skipped)
            .collect();
        let mut got: Vec<(IpAddr, u16)> = results.iter().map(|r| (r.ip, r.port)).collect();
        rest.sort();
        got.sort();
        assert_eq!(got, rest, "the rest but the skipped host, which is not reported silent");
        assert_eq!(stats.sent, rest.len() as u64, "each once: no retry for the skipped host's silence");
        assert_eq!(stats.cursor, Cursor { pass: 0, position: resumed.probe_count() });
        // Resumed after a run that concluded all but the skipped host's
        // probes: nothing is left to send or wait for, where the host's
        // silence would hold the end for the whole --wait.
        let resumed = plan(Cursor::default());
        let (stats, results, attempts) = run_plan(&resumed, truth(), 1, |pos| resumed.target(pos).1 != skipped);
        assert_eq!((stats.sent, results.len(), attempts.len()), (0, 0, 0));
        assert_eq!(stats.cursor, Cursor { pass: 0, position: resumed.probe_count() });
        assert!(stats.duration < wait / 2, "took {:?}", stats.duration);
    }

    /// A reply slower than the wait comes after its probe was concluded
    /// silent: it is counted late, and is no result.
    #[test]
    fn a_reply_after_its_probe_left_the_window_is_late_not_a_result() {
        let slow = 5u16;
        let truth =
            Truth { open: set(&[slow]), slow: [(slow, WAIT + Duration::from_millis(50))].into(), ..Default::default() };
        // Twenty probes a second: the scan lasts two seconds, long enough to read most late replies.
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 10));
        let plan = ScanPlan::new(space, 9, (61000, 61003), 0, 20, WAIT).with_fixed_rate(true);
        let (stats, results, _) = run_plan(&plan, truth, 1, |_| false);
        assert_eq!(pairs(&results, PortState::Open), [], "no reply in time");
        let filtered: Vec<u16> = results.iter().filter(|r| r.state == PortState::Filtered).map(|r| r.port).collect();
        assert_eq!(filtered, [slow; 4]);
        assert_eq!(results.len(), 40, "one result per probe");
        assert!((1..=4).contains(&stats.late), "{} late", stats.late);
        assert_eq!(stats.duplicates, 0);
        assert!(stats.max_rtt.is_some_and(|rtt| rtt > WAIT), "a late reply's round trip counts");
    }

    /// With connections of prtip's own (banners over AF_XDP), every SYN-ACK
    /// goes to them, and the receive thread resets none: a port's first
    /// valid one begins a handshake; its repeats, one whose probe left the
    /// window, or one that offers no window, are theirs to reset or not.
    #[test]
    fn syn_acks_go_to_the_connections_prtip_holds_late_and_repeated_ones_included() {
        let (noisy, slow, zero) = (2u16, 5u16, 7u16);
        let truth = Truth {
            open: set(&[noisy, slow, zero]),
            noisy: set(&[noisy]),
            zero_window: set(&[zero]),
            slow: [(slow, WAIT + Duration::from_millis(50))].into(),
            ..Default::default()
        };
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 10));
        let plan = ScanPlan::new(space, 9, (61000, 61003), 0, 20, WAIT).with_fixed_rate(true);
        let (handover, handed) = crate::transport::own_tcp::handover();
        let (stats, results, net) = run_from(&plan, truth, 1, |_| false, Sources::one(IpAddr::V4(ME)), Some(handover));
        assert_eq!(pairs(&results, PortState::Open).len(), 8, "the noisy and zero-window ports of 4 hosts");
        assert_eq!(net.resets, 0);
        let (mut answers, mut others) = (HashMap::<u16, u32>::new(), HashMap::<u16, u32>::new());
        for h in handed.drain() {
            let (Handed::Answer(s) | Handed::Segment(s)) = &h;
            assert!(s.syn, "only SYN-ACKs: {h:?}");
            let counts = if matches!(h, Handed::Answer(_)) { &mut answers } else { &mut others };
            *counts.entry(s.peer.port()).or_default() += 1;
        }
        assert_eq!(answers, [(noisy, 4)].into(), "each noisy port's first SYN-ACK");
        assert_eq!((others.get(&noisy), others.get(&zero)), (Some(&4), Some(&4)), "their repeats, and no window");
        assert!((1..=4).contains(&others.get(&slow).copied().unwrap_or(0)), "{others:?}");
        assert_eq!(stats.late, u64::from(others[&slow]));
    }

    #[test]
    fn lanes_split_the_ranks_and_their_trails_bound_the_checkpoint() {
        for (count, ranks) in [(1u64, 10u64), (3, 10), (4, 8), (5, 3)] {
            let lanes = Lanes { count, ranks };
            let mut seen = Vec::new();
            for lane in 0..count as usize {
                let total = lanes.seq_from(lane, ranks);
                for seq in 0..total {
                    let j = lanes.rank(lane, seq);
                    assert_eq!(lanes.of(j), (lane, seq));
                    seen.push(j);
                }
                for from in 0..=ranks {
                    let first = lanes.seq_from(lane, from);
                    // The lane's first seq from `from` is its first rank at or after it.
                    assert!(first == total || lanes.rank(lane, first) >= from);
                    assert!(first == 0 || lanes.rank(lane, first - 1) < from);
                }
                assert_eq!(lanes.trail_rank(lane, total), ranks, "a lane done holds no checkpoint back");
            }
            seen.sort();
            assert_eq!(seen, (0..ranks).collect::<Vec<_>>(), "{count} lanes over {ranks}");
        }
    }

    /// A reply counts only for a try that left from its port: one to a retry
    /// not sent yet is forged, whatever its cookie.
    #[test]
    fn replies_count_only_for_tries_sent_from_their_port() {
        let space = crate::target::space::v4_space((1, 50), (80, 81));
        let plan = ScanPlan::new(space, 3, (61000, 61003), 1, 0, WAIT);
        for index in 0..plan.space.len() {
            let (first, retry) = (plan.source_port(index, 0), plan.source_port(index, 1));
            let spans = |plan: &ScanPlan, sport, tries, stamps| {
                try_stamps(plan, index, sport, tries, stamps).collect::<Vec<_>>()
            };
            assert_eq!(spans(&plan, first, 1, (100, 100)), [(100, 100)]);
            assert_eq!(spans(&plan, retry, 1, (100, 100)), [], "the retry was not sent");
            assert_eq!(spans(&plan, retry, 2, (100, 200)), [(200, 200)]);
            assert_eq!(spans(&plan, first, 2, (100, 200)), [(100, 100)]);
            // A third try, sent again for a lost one, leaves from the first try's port.
            assert_eq!(spans(&plan, first, 3, (100, 300)), [(100, 100), (300, 300)]);
        }
        // With a single port, a middle try was stamped between the first and the last.
        let single = ScanPlan::new(plan.space.clone(), 3, (61000, 61000), 2, 0, WAIT);
        let spans: Vec<_> = try_stamps(&single, 0, 61000, 3, (100, 300)).collect();
        assert_eq!(spans, [(100, 100), (100, 300), (300, 300)]);
    }

    #[test]
    fn a_lane_that_sent_nothing_waits_for_the_rate_or_its_window() {
        const US: u64 = 1000;
        // Held back by the rate: the next grant, however soon, even with nothing due.
        assert_eq!(idle(true, 50 * US, None, 0), Duration::from_micros(50));
        assert_eq!(idle(true, 50 * US, Some(10 * US), 0), Duration::from_micros(50));
        // Granted, but the window had nothing: its next retry, or a while.
        assert_eq!(idle(false, 0, Some(300 * US), 100 * US), Duration::from_micros(200));
        assert_eq!(idle(false, 0, Some(50 * US), 100 * US), IDLE, "due, and still nothing: not a spin");
        assert_eq!(idle(false, 0, None, 0), IDLE);
        assert_eq!(idle(false, 0, Some(u64::MAX), 0), IDLE);
        assert_eq!(idle(true, u64::MAX, None, 0), IDLE);
    }

    #[test]
    fn ends_as_soon_as_everything_answered() {
        let truth = Truth { open: set(&[5]), ..Default::default() };
        let wait = Duration::from_secs(60);
        let (stats, results, plan) = scan_family(Family::V4, truth, 1, 3, (1, 10), Cursor::default(), |_| false, wait);
        assert_eq!(results.len() as u64, plan.probe_count());
        assert_eq!(stats.sent, plan.probe_count(), "no retry when all answered");
        // A scan that waited for silence would have taken the whole minute.
        assert!(stats.duration < wait / 2, "took {:?}", stats.duration);
    }

    /// Takes no result until the scan's clock reaches `until`, and notes
    /// how many probes had gone out by then.
    struct Stalled {
        seen: Seen,
        time: Arc<VirtualTime>,
        net: Arc<Mutex<Net>>,
        until: u64,
        sent_by_then: Option<u32>,
    }

    impl Observer for Stalled {
        fn results(&mut self, batch: Vec<ScanResult>) {
            if self.sent_by_then.is_none() {
                // Until then, or until the scan's threads have ended without it.
                let waiting = || {
                    let w = self.time.state.lock().unwrap();
                    w.now < self.until && w.threads > 0
                };
                while waiting() {
                    std::thread::yield_now();
                }
                self.sent_by_then = Some(self.net.lock().unwrap().attempts.values().sum());
            }
            self.seen.results(batch);
        }

        fn progress(&mut self, p: &Progress) {
            self.seen.progress(p);
        }

        fn backlog_limit(&self) -> u64 {
            16
        }
    }

    /// A scan of 10.0.0.1-10.0.0.4, ports 1-64, at a thousand probes a
    /// second over `net` on `time`, that reports to `observer`.
    fn run_paced(
        truth: Truth,
        net: &Arc<Mutex<Net>>,
        time: &Arc<VirtualTime>,
        observer: &mut impl Observer,
    ) -> (ScanPlan, Result<ScanStats, EngineError>) {
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 64));
        let plan = ScanPlan::new(space, 9, (61000, 61003), 0, 1000, WAIT).with_fixed_rate(true);
        let wire = wire_from(ScanType::Syn, Sources::one(ME.into()));
        let stats = run(
            &plan,
            &wire,
            &mut [FakeTx(net.clone(), Arc::new(truth), time.clone())],
            &mut FakeRx(net.clone(), time.clone()),
            None,
            None,
            &StopSignal::new(),
            &HashSet::new(),
            observer,
            &**time,
        );
        (plan, stats)
    }

    /// `run_paced` with a caller that takes nothing until `stall` has passed
    /// on the scan's clock (and at most 16 results waiting).
    fn run_stalled(truth: Truth, stall: Duration) -> (ScanPlan, ScanStats, Stalled) {
        let (net, time) = (Arc::new(Mutex::new(Net::default())), Arc::new(VirtualTime::new(2)));
        let seen = Seen { results: Vec::new(), ticks: 0, ranks: 256 };
        let until = stall.as_nanos() as u64;
        let mut stalled = Stalled { seen, time: time.clone(), net: net.clone(), until, sent_by_then: None };
        let (plan, stats) = run_paced(truth, &net, &time, &mut stalled);
        (plan, stats.unwrap(), stalled)
    }

    /// An output slower than the scan (a full pipe, a busy database) holds
    /// the sending back, rather than results piling up in memory for it.
    #[test]
    fn results_the_caller_has_not_taken_hold_the_sending_back() {
        let truth = Truth { open: set(&[3, 30]), ..Default::default() };
        // All 256 probes would be out in a quarter of the second the caller stalls.
        let (plan, stats, stalled) = run_stalled(truth, Duration::from_secs(1));
        let sent = stalled.sent_by_then.expect("results came");
        assert!((16..32).contains(&sent), "{sent} probes sent while 16 results waited");
        assert!(stats.output_holds >= 1 && (16..32).contains(&stats.backlog_peak), "{stats:?}");
        let results = stalled.seen.results;
        assert_eq!(results.len() as u64, plan.probe_count(), "one result per probe");
        assert_eq!(pairs(&results, PortState::Open).len(), 8);
        assert_eq!(stats.sent, plan.probe_count());
        assert_eq!(size_of::<ScanResult>(), 48, "RESULT_BACKLOG's memory, as its comment states it");
    }

    /// Silent probes whose results the caller cannot take yet wait in the
    /// window: the results waiting stay within the caller's limit however
    /// many probes time out meanwhile.
    #[test]
    fn silent_probes_wait_in_the_window_for_a_caller_that_stalls() {
        let truth = Truth { filtered: (1..=64).collect(), ..Default::default() };
        // Every probe is out, and has timed out, long before the caller takes anything.
        let (plan, stats, stalled) = run_stalled(truth, Duration::from_secs(3));
        assert_eq!(stalled.sent_by_then, Some(256), "silence holds nothing back");
        assert!(stats.backlog_peak <= 16, "{stats:?}");
        let results = stalled.seen.results;
        assert_eq!(results.len() as u64, plan.probe_count(), "one result per probe");
        assert!(results.iter().all(|r| r.state == PortState::Filtered), "{results:?}");
    }

    /// Panics on the first results it is given.
    struct PanickingCaller;

    impl Observer for PanickingCaller {
        fn results(&mut self, _batch: Vec<ScanResult>) {
            panic!("output bug");
        }

        fn backlog_limit(&self) -> u64 {
            1
        }
    }

    /// The lanes hold back for results the caller's thread will never take
    /// once it panicked: the scan must end, not wait for it.
    #[test]
    fn a_panicking_caller_ends_the_scan_not_a_hang() {
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (net, time) = (Arc::new(Mutex::new(Net::default())), Arc::new(VirtualTime::new(2)));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_paced(Truth::default(), &net, &time, &mut PanickingCaller)
            }));
            done.send(r.is_err()).unwrap();
        });
        assert_eq!(ended.recv_timeout(Duration::from_secs(30)), Ok(true), "the caller's panic, in time");
    }

    struct PanickingTx;

    impl Transmit for PanickingTx {
        fn transmit(&mut self, _frames: &[&[u8]]) -> Result<usize, TransportError> {
            panic!("transport bug");
        }
    }

    #[test]
    fn a_panicking_transport_ends_the_scan_with_an_error_not_a_hang() {
        let space = crate::target::space::v4_space((1, 10), (80, 80));
        let plan = ScanPlan::new(space, 1, (61000, 61003), 0, 0, Duration::from_secs(30));
        let wire = wire_from(ScanType::Syn, Sources::one(ME.into()));
        let mut seen = Seen { results: Vec::new(), ticks: 0, ranks: plan.probe_count() };
        let time = Arc::new(VirtualTime::new(2));
        let started = Instant::now();
        let r = run(
            &plan,
            &wire,
            &mut [PanickingTx],
            &mut FakeRx(Arc::default(), time.clone()),
            None,
            None,
            &StopSignal::new(),
            &HashSet::new(),
            &mut seen,
            &*time,
        );
        assert!(matches!(r, Err(EngineError::Panicked("transmit"))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?} with --wait 30", started.elapsed());
    }
}
