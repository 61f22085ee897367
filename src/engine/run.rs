//! The scan itself: a transmit thread and a receive thread over a transport,
//! with results handed to the caller's thread as they are validated.

use super::loss::{LossLog, Sample, SendHistory, in_flight};
use super::pacing::Pacer;
use super::plan::{Cursor, ScanPlan};
use super::rate::{RateControl, RateReason};
use super::state::{Answered, reply_timeout, retry_after};
use crate::result::{PortState, Reason, ScanResult};
use crate::transport::{Drops, Receive, Transmit, TransportError};
use crate::wire::cookie::{CookieKey, echo_within, unwrap_rtt_us};
use crate::wire::reply::{Rejection, Reply, ReplyKind, ReplyMatcher};
use crate::wire::template::{Probe, SYN_FRAME_LEN, SynTemplate};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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
#[derive(Debug, Default)]
pub struct StopSignal(AtomicU32);

impl StopSignal {
    pub const fn new() -> Self {
        StopSignal(AtomicU32::new(0))
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
        self.0.load(Relaxed) >= 1
    }

    fn stop_waiting(&self) -> bool {
        self.0.load(Relaxed) >= 2
    }
}

/// What the wire side needs to build and recognise probes.
#[derive(Debug, Clone)]
pub struct Wire {
    pub template: SynTemplate,
    pub src_ip: IpAddr,
    pub key: CookieKey,
}

/// Where a running scan reports, on the caller's thread.
pub trait Observer {
    /// A batch of validated, deduplicated results.
    fn results(&mut self, batch: Vec<ScanResult>);
    /// The counters, a few times a second.
    fn progress(&mut self, _progress: &Progress) {}
}

/// A running scan's counters, handed to the caller a few times a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub elapsed: Duration,
    /// Probes this run has to send in the pass it starts in: one whole pass
    /// unless it resumes another run (retries come on top).
    pub planned: u64,
    pub sent: u64,
    /// Replies this run received (not those of the runs it resumes).
    pub answered: u64,
    pub open: u64,
    pub rx_drops: u64,
    /// The send rate in force (0: no limit), and why.
    pub rate: u64,
    pub rate_reason: RateReason,
    /// How far the scan got with every reply due in: where a resumed scan
    /// would start if this one ended now.
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
    pub duplicates: u64,
    /// Replies slower than `--wait`: kept, as the truth they are, and counted.
    pub late: u64,
    /// RSTs sent to close what SYN-ACKs half opened (AF_XDP only: otherwise
    /// this host's kernel sees the SYN-ACKs and resets them itself).
    pub resets: u64,
    /// RSTs not sent because the reset thread was that far behind.
    pub resets_skipped: u64,
    /// Frames that passed the kernel filter but were not valid replies.
    pub invalid: u64,
    /// Frames the kernel dropped before prtip read them, and probes the
    /// interface dropped before they left.
    pub rx_drops: u64,
    /// Where in the send order replies may have been lost to those drops.
    pub losses: LossLog,
    /// What each loss pass that ran resent: the silent probes of the pass
    /// before it that this log marked (the loss log as it was then).
    pub resent: Vec<LossLog>,
    /// How often the send rate was lowered for drops, and the lowest it went.
    pub rate_cuts: u64,
    pub lowest_rate: Option<u64>,
    pub max_rtt: Option<Duration>,
    pub duration: Duration,
    pub interrupted: bool,
    /// Where a resumed scan starts: the end of the last pass when the scan
    /// completed, otherwise as far as transmission got with its replies in.
    pub cursor: Cursor,
}

impl ScanStats {
    pub fn answered(&self) -> u64 {
        self.open + self.closed + self.unreachable
    }

    /// Whether the silent probe at position `j` of a completed scan is
    /// undecided: its last try, in the last regular pass or the last loss
    /// pass that resent it, may have lost its reply on this host.
    pub fn undecided(&self, plan: &ScanPlan, j: u64) -> bool {
        let at = |pass| plan.linear(Cursor { pass, position: j });
        let mut pass = plan.retries;
        for log in &self.resent {
            if !log.contains(at(pass)) {
                break;
            }
            pass += 1;
        }
        self.losses.contains(at(pass))
    }
}

/// What a loss pass resends, decided once, by the first lane to get there,
/// so that every lane resends from the same loss log.
#[derive(Debug, Clone, Default)]
enum Resend {
    #[default]
    Undecided,
    /// Nothing in the pass before was marked: the scan is done.
    Nothing,
    /// The silent probes of the pass before that this log marks.
    Marked(LossLog),
}

/// Marks a thread's end in `Shared` when dropped: on return, on error and on panic.
struct EndGuard<'a> {
    shared: &'a Shared,
    transmit: bool,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.failed.store(true, Relaxed);
        }
        // The last transmit lane to end ends transmission.
        if self.transmit && self.shared.tx_running.fetch_sub(1, AcqRel) == 1 {
            // Release: whoever sees tx_done also sees the last send time stored before it.
            self.shared.tx_done.store(true, Release);
        }
    }
}

/// An RST frame and its length.
type ResetFrame = ([u8; SYN_FRAME_LEN], usize);

/// Shared between the threads; every field but the loss log and the rate's
/// reason is a counter or a flag.
#[derive(Default)]
struct Shared {
    /// The answers that complete a pass: its probes but the skipped ones
    /// that earlier runs did not have answered.
    goal: u64,
    sent: AtomicU64,
    /// Probes the kernel would not send (see `Transmit::transmit`).
    refused: AtomicU64,
    answered: AtomicU64,
    open: AtomicU64,
    zero_window: AtomicU64,
    closed: AtomicU64,
    unreachable: AtomicU64,
    duplicates: AtomicU64,
    late: AtomicU64,
    resets: AtomicU64,
    resets_skipped: AtomicU64,
    invalid: AtomicU64,
    rx_drops: AtomicU64,
    losses: Mutex<LossLog>,
    /// Per loss pass (pass `retries + 1` first), what it resends.
    resends: Mutex<Vec<Resend>>,
    /// The send rate every lane follows (0: no limit), and why it is so.
    rate: AtomicU64,
    rate_reason: Mutex<RateReason>,
    rate_cuts: AtomicU64,
    lowest_rate: AtomicU64,
    max_rtt_us: AtomicU64,
    last_send_ns: AtomicU64,
    /// Per pass, when its last lane sent its last probe of it.
    pass_end_ns: Vec<AtomicU64>,
    /// Per transmit lane, `ScanPlan::linear` of the cursor below which the
    /// lane has sent all its positions.
    cursors: Vec<AtomicU64>,
    /// Per transmit lane, the cursor below which the lane has sent or is
    /// sending (stored before a batch goes out, so that no reply can beat
    /// it): a reply to a probe past it is a forgery, whatever its cookie.
    reached: Vec<AtomicU64>,
    tx_running: AtomicUsize,
    tx_done: AtomicBool,
    failed: AtomicBool,
}

impl Shared {
    /// Every position below the returned cursor was sent: the lanes' lowest.
    fn cursor(&self) -> u64 {
        self.cursors.iter().map(|c| c.load(Acquire)).min().unwrap_or(0)
    }

    /// The place (`ScanPlan::linear`) of the last try of probe `index` from
    /// source port `sport` that went out (or is going out), if one did: the
    /// probe is this shard's, and its lane reached it in one of the passes
    /// sending from that port (`ScanPlan::passes_from`). A blind forger who
    /// guesses a cookie before the probe is sent, to have a closed port taken
    /// for the real answer, is refused here; the permutation's inverse says
    /// where the probe stands.
    fn last_try(&self, plan: &ScanPlan, index: u64, sport: u16) -> Option<u64> {
        let j = plan.rank_of(index)?;
        let reached = self.reached[(j % self.reached.len() as u64) as usize].load(Acquire);
        plan.passes_from(index, sport)
            .map(|pass| plan.linear(Cursor { pass, position: j }))
            .take_while(|&linear| linear < reached)
            .last()
    }

    /// Every position sent so far is below this: the lanes' highest, past a
    /// batch each that may be on its way without its cursor stored yet.
    fn sent_bound(&self) -> u64 {
        let lanes = self.cursors.len() as u64;
        self.cursors.iter().map(|c| c.load(Acquire)).max().unwrap_or(0) + lanes * u64::from(TX_BATCH)
    }

    /// What loss pass `pass` resends, or None when it has nothing to: the
    /// loss log as the first lane to ask finds it, for every lane.
    fn resend(&self, pass: u32, plan: &ScanPlan) -> Option<LossLog> {
        let mut resends = self.resends.lock().expect("resend lock");
        let slot = resends.get_mut((pass - plan.retries - 1) as usize)?;
        if let Resend::Undecided = slot {
            let log = self.losses.lock().expect("loss log lock").clone();
            let before = plan.linear(Cursor { pass: pass - 1, position: 0 })..plan.linear(Cursor { pass, position: 0 });
            let marked = log.first_from(before.start).is_some_and(|m| before.contains(&m));
            *slot = if marked { Resend::Marked(log) } else { Resend::Nothing };
        }
        match slot {
            Resend::Marked(log) => Some(log.clone()),
            Resend::Undecided | Resend::Nothing => None,
        }
    }

    /// A resumed scan starting at `linear` would not send the last pass's
    /// probes below it again: it must not pass one whose reply may have been
    /// lost, or that probe's silence would be taken for an answer.
    fn resumable(&self, linear: u64, plan: &ScanPlan) -> u64 {
        let last_pass = plan.linear(Cursor { pass: plan.retries, position: 0 });
        let losses = self.losses.lock().expect("loss log lock");
        losses.first_from(last_pass).map_or(linear, |lost| linear.min(lost))
    }

    fn max_rtt(&self) -> Option<Duration> {
        match self.max_rtt_us.load(Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// How long after a probe its reply may still come, by the round trips seen so far.
    fn reply_timeout(&self, plan: &ScanPlan) -> Duration {
        reply_timeout(self.max_rtt(), plan.max_wait)
    }

    /// The last sampled cursor whose replies are all due by now.
    fn checkpoint(&self, checkpoints: &mut Checkpoints, now_ns: u64, plan: &ScanPlan) -> Cursor {
        let safe = checkpoints.safe(now_ns.saturating_sub(self.reply_timeout(plan).as_nanos() as u64));
        plan.cursor_at(self.resumable(safe, plan))
    }

    /// True once no reply to the probes sent so far can still be expected.
    fn replies_due_by(&self, clock: &Clock, plan: &ScanPlan) -> bool {
        let waited = Duration::from_nanos(clock.now_ns().saturating_sub(self.last_send_ns.load(Relaxed)));
        waited >= self.reply_timeout(plan)
    }

    /// True once every lane has sent all of pass `pass` and its replies are
    /// due by the round trips measured (`retry_after`): the next pass may
    /// retry what is unanswered. A lane
    /// already retrying does not hold the others back.
    fn pass_due(&self, pass: u32, clock: &Clock, plan: &ScanPlan) -> bool {
        // The cursors first: a lane stores its pass's end before its cursor.
        if self.cursor() < plan.linear(Cursor { pass: pass + 1, position: 0 }) {
            return false;
        }
        let ended = self.pass_end_ns.get(pass as usize).map_or(0, |t| t.load(Acquire));
        Duration::from_nanos(clock.now_ns().saturating_sub(ended)) >= retry_after(self.max_rtt(), plan.max_wait)
    }

    /// Where the scan stands `now_ns` into it.
    fn progress(&self, now_ns: u64, planned: u64, answered_before: u64, checkpoint: Cursor) -> Progress {
        Progress {
            elapsed: Duration::from_nanos(now_ns),
            planned,
            sent: self.sent.load(Relaxed),
            answered: self.answered.load(Relaxed) - answered_before,
            open: self.open.load(Relaxed),
            rx_drops: self.rx_drops.load(Relaxed),
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
            duplicates: self.duplicates.load(Relaxed),
            late: self.late.load(Relaxed),
            resets: self.resets.load(Relaxed),
            resets_skipped: self.resets_skipped.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            rx_drops: self.rx_drops.load(Relaxed),
            rate_cuts: self.rate_cuts.load(Relaxed),
            lowest_rate: match self.lowest_rate.load(Relaxed) {
                0 => None,
                r => Some(r),
            },
            losses: std::mem::take(&mut *self.losses.lock().expect("loss log lock")),
            resent: std::mem::take(&mut *self.resends.lock().expect("resend lock"))
                .into_iter()
                .map_while(|r| match r {
                    Resend::Marked(log) => Some(log),
                    Resend::Undecided | Resend::Nothing => None,
                })
                .collect(),
            max_rtt: self.max_rtt(),
            duration,
            interrupted,
            cursor,
        }
    }
}

struct Clock {
    start: Instant,
    wall_start_us: u64,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { start: Instant::now(), wall_start_us: wall.as_micros() as u64 }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn wall_us(&self, mono_ns: u64) -> u64 {
        self.wall_start_us + mono_ns / 1000
    }

    /// The wall clock in microseconds since the scan began: the send time a
    /// probe carries, on the same clock as the receive timestamps of its
    /// replies (the kernel's are wall-clock times), so that a round trip is
    /// one clock's difference.
    fn stamp_us(&self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        (wall.as_micros() as u64).saturating_sub(self.wall_start_us)
    }

    /// A wall-clock time (ns since the epoch) on this clock's scale.
    fn since_start_ns(&self, wall_ns: u64) -> u64 {
        wall_ns.saturating_sub(self.wall_start_us * 1000)
    }
}

/// Runs a scan to its end and hands `observer`, on the caller's thread, every
/// batch of validated replies and the progress. Each of `txs` (one per NIC
/// queue) sends on a thread of its own, a lane of the plan's positions. Probes that never got an answer are left to the caller
/// (see `Answered`), so that reporting them costs nothing when nobody asks.
/// `resets`, when given, sends an RST for every valid SYN-ACK: needed where
/// this host's kernel never sees the replies (AF_XDP steals them). The
/// transports are borrowed: closing them can take tens of milliseconds of
/// RCU grace periods, which the caller may spend on something else.
#[allow(clippy::too_many_arguments)]
pub fn run<T: Transmit, R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    txs: &mut [T],
    rx: &mut R,
    resets: Option<&mut dyn Transmit>,
    stop: &StopSignal,
    answered: &Answered,
    observer: &mut impl Observer,
) -> Result<ScanStats, EngineError> {
    if txs.is_empty() {
        return Err(EngineError::NoTransmitter);
    }
    let clock = Clock::new();
    let lanes = txs.len() as u64;
    // A resumed scan starts with its earlier answers.
    let answered_before = answered.count();
    let total = plan.probes_per_pass();
    // Skipped probes get no answer in this run: a pass is complete without
    // those the earlier runs had no answer to. Where they are too many to
    // count, the end waits for the reply timeout, as after a silent probe.
    let goal = match plan.skipped_probes() {
        Some(skipped) if skipped > 0 => {
            let answered_skipped = answered.count_if(|index| plan.skips(plan.space.get(index).0));
            total - skipped.saturating_sub(answered_skipped)
        }
        _ => total,
    };
    let shared = Shared {
        goal,
        cursors: (0..lanes).map(|_| AtomicU64::new(plan.linear(plan.start))).collect(),
        reached: (0..lanes).map(|_| AtomicU64::new(plan.linear(plan.start))).collect(),
        tx_running: AtomicUsize::new(txs.len()),
        tx_done: AtomicBool::new(false),
        pass_end_ns: (0..=plan.last_pass()).map(|_| AtomicU64::new(0)).collect(),
        resends: Mutex::new(vec![Resend::Undecided; plan.retries as usize]),
        answered: AtomicU64::new(answered_before),
        rate: AtomicU64::new(plan.rate),
        ..Shared::default()
    };
    // The progress of this run: what is left of the pass it starts in, and its own answers.
    let planned = total - plan.start.position.min(total);
    let (results_tx, results_rx) = mpsc::channel::<Vec<ScanResult>>();
    let mut checkpoints = Checkpoints::new(plan.linear(plan.start));

    let (tx_outcome, rx_outcome) = std::thread::scope(|s| {
        let tx_threads: Vec<_> = txs
            .iter_mut()
            .enumerate()
            .map(|(lane, tx)| {
                let (shared, clock) = (&shared, &clock);
                s.spawn(move || {
                    // Whatever way transmission ends, a panic included, the receive
                    // thread must learn it, or it would wait for replies forever.
                    let _done = EndGuard { shared, transmit: true };
                    let lane = Lane { index: lane as u64, of: lanes };
                    let r = transmit(plan, lane, wire, tx, shared, clock, stop, answered);
                    shared.failed.fetch_or(r.is_err(), Relaxed);
                    r
                })
            })
            .collect();
        let resets = resets.map(|tx| spawn_resets(s, tx, &shared));
        let rx_thread = s.spawn(|| {
            let _done = EndGuard { shared: &shared, transmit: false };
            let r = receive(plan, wire, rx, resets, &shared, &clock, stop, answered, results_tx);
            shared.failed.fetch_or(r.is_err(), Relaxed);
            r
        });
        // The channel closes when the receive thread ends, so this loop cannot miss the end.
        let mut last_tick = Instant::now();
        loop {
            match results_rx.recv_timeout(PROGRESS_EVERY) {
                Ok(batch) => observer.results(batch),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= PROGRESS_EVERY {
                last_tick = Instant::now();
                // Every reply already handed over is delivered before the checkpoint that counts on it.
                while let Ok(batch) = results_rx.try_recv() {
                    observer.results(batch);
                }
                let now = clock.now_ns();
                checkpoints.sample(now, shared.cursor());
                let checkpoint = shared.checkpoint(&mut checkpoints, now, plan);
                observer.progress(&shared.progress(now, planned, answered_before, checkpoint));
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
    let interrupted = stop.stop_sending();
    let cursor = if !interrupted {
        plan.end()
    } else if stop.stop_waiting() {
        // Replies to the last probes may never have been read.
        shared.checkpoint(&mut checkpoints, clock.now_ns(), plan)
    } else {
        plan.cursor_at(shared.resumable(shared.cursor(), plan))
    };

    Ok(shared.stats(Duration::from_nanos(clock.now_ns()), interrupted, cursor))
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

/// Transmit cursors sampled over time, to find the last one whose replies
/// are all due: probes sent before it can no longer be answered.
struct Checkpoints {
    /// (time sampled, linear cursor), oldest first.
    samples: VecDeque<(u64, u64)>,
    /// The last cursor found safe, or where the run started.
    start: u64,
}

impl Checkpoints {
    fn new(start: u64) -> Self {
        Checkpoints { samples: VecDeque::new(), start }
    }

    fn sample(&mut self, now_ns: u64, linear: u64) {
        self.samples.push_back((now_ns, linear));
    }

    /// The last cursor sampled at or before `cutoff_ns`; older samples are
    /// dropped. Never goes back, even when the cutoff does (the reply
    /// timeout grew with a slower round trip).
    fn safe(&mut self, cutoff_ns: u64) -> u64 {
        while self.samples.get(1).is_some_and(|&(t, _)| t <= cutoff_ns) {
            if let Some((_, linear)) = self.samples.pop_front() {
                self.start = linear;
            }
        }
        if let Some(&(t, linear)) = self.samples.front()
            && t <= cutoff_ns
        {
            self.start = linear;
        }
        self.start
    }
}

/// One of the transmit threads.
#[derive(Debug, Clone, Copy)]
struct Lane {
    index: u64,
    of: u64,
}

#[allow(clippy::too_many_arguments)]
fn transmit<T: Transmit>(
    plan: &ScanPlan,
    lane: Lane,
    wire: &Wire,
    tx: &mut T,
    shared: &Shared,
    clock: &Clock,
    stop: &StopSignal,
    answered: &Answered,
) -> Result<(), EngineError> {
    crate::sys::reduce_timer_slack();
    let total = plan.probes_per_pass();
    // Each lane paces its share of the rate, which the receive thread may change.
    let share = |rate: u64| match rate {
        0 => 0,
        r => (r / lane.of + u64::from(lane.index < r % lane.of)).max(1),
    };
    let mut following = shared.rate.load(Relaxed);
    let mut pacer = Pacer::new(share(following), clock.now_ns());
    let mut frames = vec![[0u8; SYN_FRAME_LEN]; TX_BATCH as usize];
    let cursor = &shared.cursors[lane.index as usize];
    let reached = &shared.reached[lane.index as usize];
    for pass in plan.start.pass..=plan.last_pass() {
        let from = if pass == plan.start.pass { plan.start.position } else { 0 };
        let mut resend = None;
        if pass > 0 && from == 0 {
            // Retry only what is still unanswered once its replies were due.
            while !shared.pass_due(pass - 1, clock, plan) && shared.answered.load(Relaxed) < shared.goal {
                if stop.stop_sending() || shared.failed.load(Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if shared.answered.load(Relaxed) >= shared.goal {
                return Ok(());
            }
            if pass > plan.retries {
                match shared.resend(pass, plan) {
                    Some(log) => resend = Some(log),
                    None => return Ok(()),
                }
            }
        }
        tracing::debug!(pass, lane = lane.index, answered = shared.answered.load(Relaxed), "transmit pass");
        let mut positions = plan.lane_positions(lane.index, lane.of, from).peekable();
        while positions.peek().is_some() {
            if stop.stop_sending() || shared.failed.load(Relaxed) {
                return Ok(());
            }
            let now = clock.now_ns();
            let rate = shared.rate.load(Relaxed);
            if rate != following {
                following = rate;
                pacer = Pacer::new(share(rate), now);
            }
            let grant = pacer.grant(now, TX_BATCH);
            if grant == 0 {
                pause(Duration::from_nanos(pacer.wait_ns(now)));
                continue;
            }
            let send_us = clock.stamp_us();
            let tsval = wire.key.tsval(send_us);
            let mut count = 0usize;
            let mut next = from;
            // A batch covers at most TX_BATCH of the lane's places, sent or
            // skipped: `Shared::sent_bound` then bounds what was stamped, and
            // the receive side knows when a probe was (`plausible_send_time`).
            let span_end = positions.peek().map_or(0, |&(j, _)| j) + u64::from(TX_BATCH) * lane.of;
            while count < grant as usize
                && let Some((j, pos)) = positions.next_if(|&(j, _)| j < span_end)
            {
                next = j + lane.of;
                let (index, ip, port) = plan.target(pos);
                if plan.skips(ip) || pass > 0 && answered.contains(index) {
                    continue;
                }
                if let Some(log) = &resend
                    && !log.contains(plan.linear(Cursor { pass: pass - 1, position: j }))
                {
                    continue;
                }
                let sport = plan.source_port(index, pass);
                let seq = wire.key.seq(wire.src_ip, ip, sport, port, send_us);
                let probe = Probe { dst: ip, sport, dport: port, seq, ip_id: seq as u16, tsval };
                wire.template.write(&probe, &mut frames[count]);
                count += 1;
            }
            if count > 0 {
                reached.fetch_max(plan.linear(Cursor { pass, position: next.min(total) }), Release);
                let mut batch: [&[u8]; TX_BATCH as usize] = [&[]; TX_BATCH as usize];
                for (slot, frame) in batch.iter_mut().zip(&frames[..count]) {
                    *slot = &frame[..wire.template.frame_len()];
                }
                let accepted = tx.transmit(&batch[..count])?;
                shared.sent.fetch_add(accepted as u64, Relaxed);
                shared.refused.fetch_add((count - accepted) as u64, Relaxed);
                // fetch_max: a lane preempted between reading the clock and
                // storing must not move another lane's later send back.
                shared.last_send_ns.fetch_max(clock.now_ns(), Relaxed);
            }
            let position = next.min(total);
            cursor.store(plan.linear(Cursor { pass, position }), Release);
        }
        // Every position of this pass is done, the last ones maybe skipped as answered.
        shared.pass_end_ns[pass as usize].fetch_max(clock.now_ns(), Release);
        cursor.store(plan.linear(Cursor { pass, position: total }), Release);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn receive<R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    rx: &mut R,
    resets: Option<mpsc::SyncSender<Vec<ResetFrame>>>,
    shared: &Shared,
    clock: &Clock,
    stop: &StopSignal,
    answered: &Answered,
    results: mpsc::Sender<Vec<ScanResult>>,
) -> Result<(), EngineError> {
    // Replies are timestamped when read: sleeps between reads must be short.
    crate::sys::reduce_timer_slack();
    let matcher = ReplyMatcher { src_ip: wire.src_ip, src_ports: plan.src_ports, key: wire.key };
    let mut batch = Vec::new();
    let mut rst_frames: Vec<ResetFrame> = Vec::new();
    let mut watch = LossWatch::new(plan, clock.now_ns());
    let mut rejected = Rejected::default();
    // Once the scan may end, what has already arrived is still read: a
    // receive path that lags behind has replies waiting that are due.
    let mut ending = false;
    loop {
        let mut frames = 0u64;
        let wait = if ending { Duration::ZERO } else { RX_POLL };
        rx.receive(wait, &mut |frame, rx_wall_ns| {
            frames += 1;
            let reply = match matcher.classify(frame) {
                Ok(reply) => reply,
                Err(why) => return rejected.count(why, shared),
            };
            let Some(index) =
                plan.space.index_of(reply.ip, reply.port).filter(|&i| plan.pass_from(i, reply.from_port).is_some())
            else {
                // Our cookie, but not a probe of this plan from that port.
                return rejected.count(Rejection::NotOurs, shared);
            };
            // Nothing is sent to a skipped host: a reply from one answers no probe of this run.
            let tried = shared.last_try(plan, index, reply.from_port).filter(|_| !plan.skips(reply.ip));
            let Some(tried) = tried else {
                return rejected.count_unsent(shared);
            };
            let now = clock.since_start_ns(rx_wall_ns);
            if !plausible_send_time(&watch.history, plan, index, tried, &reply, now / 1000) {
                return rejected.count_wrong_time(shared);
            }
            // Duplicates too: a target repeats its SYN-ACK when an RST was lost.
            if resets.is_some() && reply.kind == ReplyKind::SynAck {
                let mut f = [0u8; SYN_FRAME_LEN];
                let len = wire.template.write_reset(reply.ip, reply.from_port, reply.port, reply.ack, &mut f);
                rst_frames.push((f, len));
            }
            if !answered.insert(index) {
                shared.duplicates.fetch_add(1, Relaxed);
                return;
            }
            let now_us = now / 1000;
            let rtt = match reply.sent_us {
                Some(sent_us) => u64::from((now_us as u32).wrapping_sub(sent_us)),
                // The tick wraps every 1.05 s: a probe known to be older than that goes round as often as it must.
                None => match watch.history.sent_before(tried) {
                    Some(at_ns) => unwrap_rtt_us(reply.sent.rtt_us(now_us), now.saturating_sub(at_ns) / 1000),
                    None => reply.sent.rtt_us(now_us),
                },
            };
            let rtt = (rtt <= now_us && Duration::from_micros(rtt) <= MAX_RTT).then_some(rtt);
            if rtt.is_some_and(|us| Duration::from_micros(us) > plan.max_wait) {
                shared.late.fetch_add(1, Relaxed);
            }
            if let Some(us) = rtt {
                shared.max_rtt_us.fetch_max(us.max(1), Relaxed);
            }
            let (state, reason, counter) = match reply.kind {
                ReplyKind::SynAck if reply.window == 0 => {
                    shared.zero_window.fetch_add(1, Relaxed);
                    (PortState::Open, Reason::ZeroWindow, &shared.open)
                }
                ReplyKind::SynAck => (PortState::Open, Reason::SynAck, &shared.open),
                ReplyKind::Rst => (PortState::Closed, Reason::Reset, &shared.closed),
                ReplyKind::Unreachable { code } => {
                    (PortState::Filtered, Reason::Unreachable { code }, &shared.unreachable)
                }
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
        if let Some(queue) = &resets
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
            // The receiver lives until this thread ends, so the send cannot fail.
            let _ = results.send(std::mem::take(&mut batch));
        }
        let now = clock.now_ns();
        if now.saturating_sub(watch.checked_ns) >= LOSS_CHECK.as_nanos() as u64 {
            watch.check(rx.take_drops(), rx.take_backlog(), clock, plan, shared);
        }
        if stop.stop_waiting() || shared.failed.load(Relaxed) || (ending && frames == 0) {
            watch.check(rx.take_drops(), rx.take_backlog(), clock, plan, shared);
            rejected.log();
            return Ok(());
        }
        ending = ending
            || shared.tx_done.load(Acquire)
                && (shared.answered.load(Relaxed) >= shared.goal || shared.replies_due_by(clock, plan));
    }
}

/// How far a probe's send stamp may be from the samples that bracket it:
/// the sampling thread reads the cursors and the clock a moment apart.
const STAMP_SLACK_US: u64 = 1_000;

/// Whether the send time `reply` brought back is one its probe (`index`)
/// carried: a try of it from the reply's source port (`ScanPlan::passes_from`,
/// up to the last try at `tried`) was stamped at about that time
/// (`SendHistory::send_window`). A blind forger must then also hit that
/// window: some 6 bits more for a tick, 18 for a timestamp echo. A try
/// older than the history kept (`--wait`) is not checked.
fn plausible_send_time(
    history: &SendHistory,
    plan: &ScanPlan,
    index: u64,
    tried: u64,
    reply: &Reply,
    now_us: u64,
) -> bool {
    let position = plan.cursor_at(tried).position;
    let tries = plan.passes_from(index, reply.from_port).map(|pass| plan.linear(Cursor { pass, position }));
    tries.take_while(|&linear| linear <= tried).any(|linear| {
        let Some((from, to)) = history.send_window(linear, now_us) else { return true };
        let (from, to) = (from.saturating_sub(STAMP_SLACK_US), to + STAMP_SLACK_US);
        reply.sent.within(from, to) && reply.sent_us.is_none_or(|us| echo_within(us, from, to))
    })
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
    history: SendHistory,
    rate: RateControl,
    checked_ns: u64,
}

impl LossWatch {
    fn new(plan: &ScanPlan, now_ns: u64) -> Self {
        LossWatch {
            // From where this run starts, not where its lanes stand when the
            // receive thread gets here: they start first, and at full speed
            // have sent thousands of probes whose frames may be lost too.
            history: SendHistory::new(plan.linear(plan.start)),
            rate: RateControl::new(plan.rate, !plan.fixed_rate, now_ns, 0),
            checked_ns: now_ns,
        }
    }

    fn check(&mut self, drops: Drops, backlog: f32, clock: &Clock, plan: &ScanPlan, shared: &Shared) {
        // In this order, so that each bound holds at the stamp's moment:
        // what was sent before it, and the bound of what was stamped by it.
        let sent = shared.cursor();
        let (now_ns, stamp_us) = (clock.now_ns(), clock.stamp_us());
        let bound = shared.sent_bound();
        // Kept twice as far back as the longest wait: the timeout may grow
        // later, and a late reply (slower than --wait) is still dated and checked.
        self.history.sample(Sample { at_ns: now_ns, stamp_us, sent, bound }, 2 * plan.max_wait.as_nanos() as u64);
        let lost = drops.total();
        if lost > 0 {
            shared.rx_drops.fetch_add(lost, Relaxed);
            let sent = shared.sent_bound();
            let mut losses = shared.losses.lock().expect("loss log lock");
            if drops.replies > 0 {
                // A reply lost now may answer any probe whose reply could still come.
                let timeout = shared.reply_timeout(plan).as_nanos() as u64;
                let (lo, hi) = in_flight(&self.history, self.checked_ns, timeout, sent);
                losses.mark(lo, hi);
            }
            if drops.probes > 0 {
                // A probe is dropped as it is sent: one sent since the last reading, or
                // just before it (the counters are read a moment before the cursor).
                let (lo, hi) = in_flight(&self.history, self.checked_ns, LOSS_CHECK.as_nanos() as u64, sent);
                losses.mark(lo, hi);
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

/// Sleeps for long waits and spins for short ones: a sleep wakes tens of
/// microseconds late, which at a million packets per second is a burst.
fn pause(d: Duration) {
    if d > Duration::from_micros(200) {
        std::thread::sleep(d - Duration::from_micros(100));
    } else {
        let end = Instant::now() + d;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::hosts::{Family, Hosts};
    use crate::target::ranges::{Range, RangeSet};
    use crate::target::space::TargetSpace;
    use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Mutex};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);

    /// A simulated network: open ports answer SYN-ACK, closed ones RST,
    /// filtered ones nothing. "Lossy" probes lose their first SYN; "noisy" ones
    /// are answered twice, and every SYN to a filtered port draws a forged SYN-ACK.
    #[derive(Default)]
    struct Net {
        inbox: VecDeque<Vec<u8>>,
        attempts: HashMap<(IpAddr, u16), u32>,
        /// (target, port, our source port, ack) of every genuine SYN-ACK sent:
        /// what an RST must match.
        syn_acks: HashSet<(IpAddr, u16, u16, u32)>,
        /// Replies dropped on the scanning host, not yet reported.
        drops: u64,
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
    }

    struct FakeTx(Arc<Mutex<Net>>, Arc<Truth>);
    struct FakeRx(Arc<Mutex<Net>>);
    /// Takes the engine's RSTs and checks each against a genuine SYN-ACK.
    struct FakeResets(Arc<Mutex<Net>>);

    impl Transmit for FakeResets {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let net = self.0.lock().unwrap();
            for f in frames {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let dst = match &p.net {
                    Some(etherparse::NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().destination_addr()),
                    Some(etherparse::NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().destination_addr()),
                    _ => panic!("not IP"),
                };
                let Some(TransportSlice::Tcp(rst)) = p.transport else { panic!("not TCP") };
                assert!(rst.rst() && !rst.syn() && !rst.ack());
                let key = (dst, rst.destination_port(), rst.source_port(), rst.sequence_number());
                assert!(net.syn_acks.contains(&key), "an RST for no SYN-ACK: {key:?}");
            }
            Ok(frames.len())
        }
    }

    impl Transmit for FakeTx {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let mut net = self.0.lock().unwrap();
            for f in frames {
                let p = SlicedPacket::from_ethernet(f).unwrap();
                // Whole frames and nothing after them: a raw IP socket sends every byte it is given.
                let len = if matches!(p.net, Some(etherparse::NetSlice::Ipv4(_))) { 70 } else { 90 };
                assert_eq!(f.len(), len, "frame length");
                let dst = match &p.net {
                    Some(etherparse::NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().destination_addr()),
                    Some(etherparse::NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().destination_addr()),
                    _ => panic!("not IP"),
                };
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
                    let b = match dst {
                        IpAddr::V4(dst) => b.ipv4(dst.octets(), ME.octets(), 61),
                        IpAddr::V6(dst) => b.ipv6(dst.octets(), ME6.octets(), 61),
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
                        let me = match dst {
                            IpAddr::V4(_) => IpAddr::V4(ME),
                            IpAddr::V6(_) => IpAddr::V6(ME6),
                        };
                        // A SYN-ACK with its echo, and an RST: each says the other state.
                        let ack = key.seq(me, dst, syn.source_port(), port, off).wrapping_add(1);
                        net.inbox.push_back(reply(ack, true, key.tsval(off)));
                        net.inbox.push_back(reply(ack, false, 0));
                    }
                }
                if self.1.filtered.contains(&port) {
                    // Forgeries: a wrong acknowledgement, or the right one with a made-up send time.
                    let forged = if port % 2 == 0 {
                        reply(good, true, tsval.wrapping_sub(1000))
                    } else {
                        reply(good ^ 0x55, true, tsval)
                    };
                    net.inbox.push_back(forged);
                    continue;
                }
                let open = self.1.open.contains(&port);
                if open {
                    net.syn_acks.insert((dst, port, syn.source_port(), good));
                }
                let frame = reply(good, open, tsval);
                if self.1.noisy.contains(&port) {
                    net.inbox.push_back(frame.clone());
                }
                net.inbox.push_back(frame);
            }
            Ok(frames.len())
        }
    }

    impl Receive for FakeRx {
        fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<(), TransportError> {
            let frames: Vec<Vec<u8>> = self.0.lock().unwrap().inbox.drain(..).collect();
            if frames.is_empty() {
                std::thread::sleep(timeout.min(Duration::from_millis(1)));
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
            for f in frames {
                on_frame(&f, now);
            }
            Ok(())
        }

        fn take_drops(&mut self) -> Drops {
            Drops { replies: std::mem::take(&mut self.0.lock().unwrap().drops), probes: 0 }
        }
    }

    /// The longest the fake network's scans wait for replies.
    const WAIT: Duration = Duration::from_millis(300);

    fn scan(truth: Truth, retries: u32, ports: (u32, u32)) -> (ScanStats, Vec<ScanResult>, Answered, ScanPlan) {
        scan_family(Family::V4, truth, 1, retries, ports, Cursor::default(), |_| false, WAIT)
    }

    /// A scan of hosts ::1-::4 (IPv6) or 10.0.0.1-10.0.0.4 that resumes at
    /// `start`, after an earlier run whose answers `answered_before` tells.
    // Each argument is one dimension the tests vary; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn scan_family(
        family: Family,
        truth: Truth,
        lanes: usize,
        retries: u32,
        ports: (u32, u32),
        start: Cursor,
        answered_before: impl Fn(u64) -> bool,
        max_wait: Duration,
    ) -> (ScanStats, Vec<ScanResult>, Answered, ScanPlan) {
        let first = match family {
            Family::V4 => 0x0a00_0001,
            Family::V6 => 1,
        };
        let hosts = Hosts::new(family, RangeSet::from_ranges(vec![Range::new(first, first + 3)]));
        let space = TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(ports.0, ports.1)])).unwrap();
        let plan = ScanPlan::new(space, 9, (61000, 61003), retries, 0, max_wait).starting_at(start);
        let (stats, results, answered, _) = run_plan(&plan, truth, lanes, answered_before);
        (stats, results, answered, plan)
    }

    /// How often each (address, port) was sent a probe.
    type Attempts = HashMap<(IpAddr, u16), u32>;

    /// Runs `plan` over the fake network from `ME` or `ME6`, after an
    /// earlier run whose answers `answered_before` tells.
    fn run_plan(
        plan: &ScanPlan,
        truth: Truth,
        lanes: usize,
        answered_before: impl Fn(u64) -> bool,
    ) -> (ScanStats, Vec<ScanResult>, Answered, Attempts) {
        let me = match plan.space.hosts().family() {
            Family::V4 => IpAddr::V4(ME),
            Family::V6 => IpAddr::V6(ME6),
        };
        let wire = Wire { template: SynTemplate::new([1; 6], [2; 6], me), src_ip: me, key: CookieKey::new(3, 4) };
        let net = Arc::new(Mutex::new(Net::default()));
        let truth = Arc::new(truth);
        let answered = Answered::new(plan.space.len());
        for pos in plan.positions().filter(|&pos| answered_before(pos)) {
            answered.insert(plan.target(pos).0);
        }
        let mut seen = Seen { results: Vec::new(), ticks: 0, passes: plan.last_pass() + 1 };
        let stats = run(
            plan,
            &wire,
            &mut (0..lanes).map(|_| FakeTx(net.clone(), truth.clone())).collect::<Vec<_>>(),
            &mut FakeRx(net.clone()),
            Some(&mut FakeResets(net.clone())),
            &StopSignal::new(),
            &answered,
            &mut seen,
        )
        .unwrap();
        assert!(seen.ticks <= 1 + stats.duration.as_millis() / 250, "progress at most four times a second");
        let attempts = std::mem::take(&mut net.lock().unwrap().attempts);
        (stats, seen.results, answered, attempts)
    }

    struct Seen {
        results: Vec<ScanResult>,
        ticks: u128,
        passes: u32,
    }

    impl Observer for Seen {
        fn results(&mut self, batch: Vec<ScanResult>) {
            self.results.extend(batch);
        }

        fn progress(&mut self, p: &Progress) {
            assert!(p.sent <= p.planned * u64::from(self.passes) && p.answered <= p.planned);
            self.ticks += 1;
        }
    }

    fn set(v: &[u16]) -> HashSet<u16> {
        v.iter().copied().collect()
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
        let (stats, results, answered, plan) =
            scan_family(family, truth, 1, 1, (1, 50), Cursor::default(), |_| false, WAIT);
        let hosts = 4u64;
        let host = |h: u8| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, h)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, h.into())),
        };
        let by = |state: PortState| {
            let mut v: Vec<(IpAddr, u16)> =
                results.iter().filter(|r| r.state == state).map(|r| (r.ip, r.port)).collect();
            v.sort();
            v
        };
        let expect = |ports: &[u16]| {
            let mut v: Vec<(IpAddr, u16)> = (1..=4).flat_map(|h| ports.iter().map(move |&p| (host(h), p))).collect();
            v.sort();
            v
        };
        assert_eq!(by(PortState::Open), expect(&[22, 31, 49]));
        assert_eq!(by(PortState::Closed).len() as u64, hosts * 45);
        assert!(by(PortState::Filtered).is_empty(), "silence is left to the caller");
        for h in 1..=4 {
            for p in [7u16, 8] {
                assert!(!answered.contains(plan.space.index_of(host(h), p).unwrap()));
            }
        }
        assert_eq!(stats.open, hosts * 3);
        let reasons = |port: u16| results.iter().filter(|r| r.port == port).map(|r| r.reason).collect::<Vec<_>>();
        assert_eq!(reasons(49), [Reason::ZeroWindow; 4]);
        assert_eq!(reasons(22), [Reason::SynAck; 4]);
        assert_eq!(stats.zero_window, hosts);
        assert_eq!(stats.closed, hosts * 45);
        // One pass of 200 probes, then retries for the lossy and the filtered ones.
        assert_eq!(stats.sent, plan.probes_per_pass() + hosts * 4);
        assert_eq!(stats.duplicates, hosts * 2);
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
        assert!(stats.losses.is_empty() && stats.rate_cuts == 0, "nothing was dropped on this host");
    }

    #[test]
    fn replies_dropped_on_this_host_are_retried_and_their_silence_is_never_an_answer() {
        let truth = Truth {
            open: set(&[2, 6, 9]),
            filtered: set(&[7]),
            dropped: [(2, 1), (3, 1), (6, 2), (9, u32::MAX), (4, u32::MAX)].into(),
            ..Default::default()
        };
        let (stats, results, answered, plan) = scan(truth, 1, (1, 10));
        let states = |state: PortState| {
            let mut v: Vec<u16> = results.iter().filter(|r| r.state == state).map(|r| r.port).collect();
            v.sort();
            v.dedup();
            v
        };
        // A reply dropped once comes with the retry, one dropped twice with
        // the loss pass (the retry's loss did not spend the budget), in its true state.
        assert_eq!(states(PortState::Open), [2, 6]);
        assert_eq!(states(PortState::Closed), [1, 3, 5, 8, 10]);
        assert_eq!(results.len(), 4 * 7, "one result per answered probe");
        // 4 hosts: the first replies of 2 and 3, two of 6, and the three tries each of 9 and 4.
        assert_eq!(stats.rx_drops, 4 * (1 + 1 + 2 + 3 + 3));
        // Pass 0; the retry of 2, 3, 4, 6, 7, 9; the loss pass of what the retry lost or
        // could have (4, 6, 9, and 7, silent while drops went on).
        assert_eq!(stats.sent, 40 + 4 * 6 + 4 * 4);
        assert_eq!(stats.resent.len(), 1, "one loss pass for --retries 1");
        assert!(stats.rate_cuts >= 1, "the rate went down for the drops");
        for (j, pos) in plan.positions().enumerate() {
            let (index, _, port) = plan.target(pos);
            let silent = !answered.contains(index);
            assert_eq!(silent, [9, 4, 7].contains(&port));
            if silent {
                // The filtered port was silent in passes with drops too: undecided as well.
                assert!(stats.undecided(&plan, j as u64), "port {port}: its last try lost its reply");
            }
        }
    }

    #[test]
    fn several_transmit_lanes_send_every_probe_once() {
        let truth = || Truth { open: set(&[22]), filtered: set(&[7]), lossy: set(&[31]), ..Default::default() };
        let (one, results, _, plan) = scan(truth(), 1, (1, 50));
        let (three, results3, _, _) =
            scan_family(Family::V4, truth(), 3, 1, (1, 50), Cursor::default(), |_| false, WAIT);
        let key = |r: &Vec<ScanResult>| {
            let mut v: Vec<(IpAddr, u16, PortState)> = r.iter().map(|r| (r.ip, r.port, r.state)).collect();
            v.sort();
            v
        };
        assert_eq!(key(&results3), key(&results));
        // One pass, then retries of the lossy and the filtered port on each of 4 hosts.
        assert_eq!(one.sent, plan.probes_per_pass() + 8);
        assert_eq!(three.sent, one.sent);
        assert_eq!((three.duplicates, three.cursor), (0, plan.end()));
        // A lane resumed in the middle continues its share only.
        let k = 101;
        let answered_before = |pos: u64| plan.positions().position(|p| p == pos).is_some_and(|j| (j as u64) < k);
        let (resumed, results, _, _) =
            scan_family(Family::V4, truth(), 3, 0, (1, 50), Cursor { pass: 0, position: k }, answered_before, WAIT);
        assert_eq!(resumed.sent, plan.probes_per_pass() - k);
        // Without retries the filtered port and the lossy one's first SYN stay unanswered.
        let answering = plan.positions().skip(k as usize).filter(|&p| ![7, 31].contains(&plan.target(p).2)).count();
        assert_eq!(results.len(), answering);
    }

    #[test]
    fn a_resumed_scan_sends_what_was_left_and_retries_only_the_unanswered() {
        let (k, filtered) = (37u64, 7u16);
        let truth = || Truth { open: set(&[22]), filtered: set(&[filtered]), ..Default::default() };
        let (_, _, _, whole) = scan(truth(), 1, (1, 30));
        // The interrupted run sent the first k positions of pass 0; all but the filtered answered.
        let answered_before = |pos: u64| pos < k && whole.target(pos).2 != filtered;
        let (stats, results, answered, plan) =
            scan_family(Family::V4, truth(), 1, 1, (1, 30), Cursor { pass: 0, position: k }, answered_before, WAIT);
        let mut got: Vec<(IpAddr, u16)> = results.iter().map(|r| (r.ip, r.port)).collect();
        got.sort();
        let mut expect: Vec<(IpAddr, u16)> = plan
            .positions()
            .skip(k as usize)
            .map(|p| plan.target(p))
            .filter(|t| t.2 != filtered)
            .map(|t| (t.1, t.2))
            .collect();
        expect.sort();
        assert_eq!(got, expect, "the rest of pass 0, nothing answered before");
        // The rest of pass 0, then one retry of the filtered port on every host, the interrupted run's included.
        assert_eq!(stats.sent, plan.probes_per_pass() - k + 4);
        assert_eq!(answered.count(), plan.probes_per_pass() - 4);
        assert_eq!(stats.cursor, plan.end());
    }

    #[test]
    fn a_scan_resumed_in_its_retry_pass_retries_only_the_rest_of_it() {
        let filtered = 7u16;
        let truth = || Truth { open: set(&[22]), filtered: set(&[filtered]), ..Default::default() };
        let (_, _, _, whole) = scan(truth(), 1, (1, 30));
        // Interrupted in pass 1 just after retrying the second of the four silent probes.
        let silent: Vec<u64> = whole.positions().filter(|&p| whole.target(p).2 == filtered).collect();
        let k = silent[1] + 1;
        let answered_before = |pos: u64| whole.target(pos).2 != filtered;
        let (stats, results, _, _) =
            scan_family(Family::V4, truth(), 1, 1, (1, 30), Cursor { pass: 1, position: k }, answered_before, WAIT);
        assert!(results.is_empty());
        assert_eq!(stats.sent, 2, "only the last two silent probes are retried");
    }

    /// With one source port every try leaves from it: a reply to a retry is
    /// one (its send time that of the retry), not a forgery of the first try.
    #[test]
    fn replies_to_retries_from_a_single_source_port_count() {
        let space = crate::target::space::v4_space((0x0a00_0001, 0x0a00_0004), (1, 10));
        let plan = ScanPlan::new(space, 9, (61000, 61000), 2, 0, WAIT);
        let truth = Truth { open: set(&[9]), lossy: set(&[5, 9]), ..Default::default() };
        let (stats, results, _, attempts) = run_plan(&plan, truth, 1, |_| false);
        let mut open: Vec<(IpAddr, u16)> =
            results.iter().filter(|r| r.state == PortState::Open).map(|r| (r.ip, r.port)).collect();
        open.sort();
        let hosts: Vec<IpAddr> = (1..=4).map(|h| Ipv4Addr::new(10, 0, 0, h).into()).collect();
        assert_eq!(open, hosts.iter().map(|&h| (h, 9)).collect::<Vec<_>>());
        assert_eq!(results.iter().filter(|r| r.state == PortState::Closed).count(), 4 * 9);
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
        // Resumed in pass 0: the interrupted run had the first k positions
        // answered, some of the skipped host's among them.
        let resumed = plan(Cursor { pass: 0, position: k });
        let (stats, results, answered, attempts) = run_plan(&resumed, truth(), 2, |pos| pos < k);
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
        assert_eq!(got, rest, "the rest of pass 0 but the skipped host");
        assert_eq!(stats.sent, rest.len() as u64, "each once: no retry for the skipped host's silence");
        let earlier = resumed.positions().take(k as usize).filter(|&p| resumed.target(p).1 == skipped).count();
        assert!(earlier > 0, "the earlier run had answers from the skipped host");
        assert_eq!(answered.count(), resumed.probes_per_pass() - (30 - earlier as u64));
        assert_eq!(stats.cursor, resumed.end());
        // Resumed at the retry pass, after a run in which only the skipped
        // host was silent: nothing is left to send or wait for, where the
        // host's silence would hold the end for the whole --wait.
        let resumed = plan(Cursor { pass: 1, position: 0 });
        let (stats, results, _, attempts) = run_plan(&resumed, truth(), 1, |pos| resumed.target(pos).1 != skipped);
        assert_eq!((stats.sent, results.len(), attempts.len()), (0, 0, 0));
        assert_eq!(stats.cursor, resumed.end());
        assert!(stats.duration < wait / 2, "took {:?}", stats.duration);
    }

    #[test]
    fn the_checkpoint_is_the_last_cursor_whose_replies_are_due() {
        let mut c = Checkpoints::new(5);
        assert_eq!(c.safe(1000), 5, "nothing sampled: where the run started");
        for (t, linear) in [(100, 10), (200, 20), (300, 30)] {
            c.sample(t, linear);
        }
        assert_eq!(c.safe(50), 5);
        assert_eq!(c.safe(150), 10);
        assert_eq!(c.safe(299), 20);
        assert_eq!(c.safe(10_000), 30);
        assert_eq!(c.samples.len(), 1, "samples older than the checkpoint are dropped");
        c.sample(400, 40);
        assert_eq!(c.safe(250), 30, "a later cutoff earlier in time does not go back");
    }

    /// A cookie guessed for a probe not sent yet (to have its port taken
    /// for closed before the real answer comes) is refused; once its lane
    /// reached it, in a pass that uses that source port, a reply counts.
    #[test]
    fn replies_count_only_for_probes_their_lane_has_reached() {
        let space = crate::target::space::v4_space((1, 50), (80, 81));
        let plan = ScanPlan::new(space, 3, (61000, 61003), 1, 0, WAIT);
        let lanes = 2u64;
        let shared = Shared { reached: (0..lanes).map(|_| AtomicU64::new(0)).collect(), ..Shared::default() };
        let probes: Vec<(u64, u64)> = plan.lane_positions(0, 1, 0).map(|(j, pos)| (j, plan.target(pos).0)).collect();
        let reach = |lane: u64, pass: u32, j: u64| {
            shared.reached[lane as usize].store(plan.linear(Cursor { pass, position: j }), Release)
        };
        // What the receive thread asks of a reply to `index` at `sport`.
        let tried = |index: u64, sport: u16| shared.last_try(&plan, index, sport);
        reach(0, 0, 40);
        reach(1, 0, 41);
        for &(j, index) in &probes {
            let (first, retry) = (plan.source_port(index, 0), plan.source_port(index, 1));
            assert_eq!(tried(index, first).is_some(), j < 40, "probe {j}, first pass");
            assert!(tried(index, retry).is_none(), "probe {j}: the retry pass has not begun");
        }
        reach(0, 1, 0);
        reach(1, 1, 3);
        for &(j, index) in &probes {
            let first = tried(index, plan.source_port(index, 0));
            assert_eq!(first, Some(plan.linear(Cursor { pass: 0, position: j })), "probe {j}: its first pass is over");
            let retried = tried(index, plan.source_port(index, 1)).is_some();
            assert_eq!(retried, j == 1, "probe {j}, retry pass");
        }
        // A loss pass sends again from the first pass's port: the last try is the loss pass's.
        reach(0, 2, 8);
        let (j, index) = probes[4];
        let last = tried(index, plan.source_port(index, 0));
        assert_eq!(last, Some(plan.linear(Cursor { pass: 2, position: j })));
    }

    #[test]
    fn ends_as_soon_as_everything_answered() {
        let truth = Truth { open: set(&[5]), ..Default::default() };
        let wait = Duration::from_secs(60);
        let (stats, results, _, plan) =
            scan_family(Family::V4, truth, 1, 3, (1, 10), Cursor::default(), |_| false, wait);
        assert_eq!(results.len() as u64, plan.probes_per_pass());
        assert_eq!(stats.sent, plan.probes_per_pass(), "no retry when all answered");
        // A scan that waited for silence would have taken the whole minute.
        assert!(stats.duration < wait / 2, "took {:?}", stats.duration);
    }

    #[test]
    fn without_retries_silence_costs_one_adaptive_wait() {
        let truth = Truth { open: set(&[1]), filtered: set(&[2]), ..Default::default() };
        let (stats, _, _, plan) = scan(truth, 0, (1, 3));
        assert_eq!(stats.sent, plan.probes_per_pass());
        assert_eq!(stats.open + stats.closed, 8);
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
        let wire = Wire {
            template: SynTemplate::new([1; 6], [2; 6], ME.into()),
            src_ip: ME.into(),
            key: CookieKey::new(3, 4),
        };
        let mut seen = Seen { results: Vec::new(), ticks: 0, passes: 1 };
        let started = Instant::now();
        let r = run(
            &plan,
            &wire,
            &mut [PanickingTx],
            &mut FakeRx(Arc::default()),
            None,
            &StopSignal::new(),
            &Answered::new(plan.space.len()),
            &mut seen,
        );
        assert!(matches!(r, Err(EngineError::Panicked("transmit"))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?} with --wait 30", started.elapsed());
    }
}
