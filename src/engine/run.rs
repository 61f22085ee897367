//! The scan itself: a transmit thread and a receive thread over a transport,
//! with results handed to the caller's thread as they are validated.

use super::pacing::Pacer;
use super::plan::ScanPlan;
use super::state::{reply_timeout, Answered};
use crate::result::{PortState, Reason, ScanResult};
use crate::transport::{Receive, Transmit, TransportError};
use crate::wire::cookie::CookieKey;
use crate::wire::reply::{ReplyKind, ReplyMatcher};
use crate::wire::template::{Probe, SynTemplate, SYN_FRAME_LEN};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

const TX_BATCH: u32 = 64;
const RX_POLL: Duration = Duration::from_millis(5);
const DROP_CHECK: Duration = Duration::from_millis(100);
/// Round trips above this are not believed: the echo was mangled or forged.
const MAX_RTT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Asks a running scan to stop: the first request stops transmission (replies
/// in flight are still collected), the second also skips the wait for them.
#[derive(Debug, Default)]
pub struct StopSignal(AtomicU32);

impl StopSignal {
    pub const fn new() -> Self {
        StopSignal(AtomicU32::new(0))
    }

    pub fn request(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    fn stop_sending(&self) -> bool {
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
    pub src_ip: Ipv4Addr,
    pub key: CookieKey,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub sent: u64,
    pub open: u64,
    pub closed: u64,
    /// Answered with ICMP unreachable.
    pub unreachable: u64,
    pub duplicates: u64,
    /// Frames that passed the kernel filter but were not valid replies.
    pub invalid: u64,
    /// Frames the kernel dropped before prtip read them.
    pub rx_drops: u64,
    pub max_rtt: Option<Duration>,
    pub duration: Duration,
    pub interrupted: bool,
}

impl ScanStats {
    pub fn answered(&self) -> u64 {
        self.open + self.closed + self.unreachable
    }
}

/// Shared between the two threads; every field is a counter or a flag.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    answered: AtomicU64,
    open: AtomicU64,
    closed: AtomicU64,
    unreachable: AtomicU64,
    duplicates: AtomicU64,
    invalid: AtomicU64,
    rx_drops: AtomicU64,
    max_rtt_us: AtomicU64,
    last_send_ns: AtomicU64,
    tx_done: AtomicBool,
    failed: AtomicBool,
}

impl Shared {
    fn max_rtt(&self) -> Option<Duration> {
        match self.max_rtt_us.load(Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// True once no reply to the probes sent so far can still be expected.
    fn replies_due_by(&self, clock: &Clock, plan: &ScanPlan) -> bool {
        let waited = Duration::from_nanos(clock.now_ns().saturating_sub(self.last_send_ns.load(Relaxed)));
        waited >= reply_timeout(self.max_rtt(), plan.max_wait)
    }
}

struct Clock {
    start: Instant,
    wall_start_us: u64,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock {
            start: Instant::now(),
            wall_start_us: wall.as_micros() as u64,
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn wall_us(&self, mono_ns: u64) -> u64 {
        self.wall_start_us + mono_ns / 1000
    }

    /// A wall-clock time (ns since the epoch) on this clock's scale.
    fn since_start_ns(&self, wall_ns: u64) -> u64 {
        wall_ns.saturating_sub(self.wall_start_us * 1000)
    }
}

/// Runs a scan to its end and calls `on_result` on the caller's thread for every
/// validated reply. Probes that never got an answer are left to the caller
/// (see `Answered`), so that reporting them costs nothing when nobody asks.
pub fn run<T: Transmit, R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    mut tx: T,
    mut rx: R,
    stop: &StopSignal,
    answered: &Answered,
    mut on_result: impl FnMut(ScanResult),
) -> Result<ScanStats, EngineError> {
    let clock = Clock::new();
    let shared = Shared::default();
    let total = plan.probes_per_pass();
    let (results_tx, results_rx) = mpsc::channel::<Vec<ScanResult>>();

    let (tx_outcome, rx_outcome) = std::thread::scope(|s| {
        let tx_thread = s.spawn(|| {
            let r = transmit(plan, wire, &mut tx, &shared, &clock, stop, answered);
            if r.is_err() {
                shared.failed.store(true, Relaxed);
            }
            shared.tx_done.store(true, Relaxed);
            r
        });
        let rx_thread = s.spawn(|| {
            let r = receive(plan, wire, &mut rx, &shared, &clock, stop, answered, total, results_tx);
            if r.is_err() {
                shared.failed.store(true, Relaxed);
            }
            r
        });
        // The channel closes when the receive thread ends, so this loop cannot miss the end.
        for batch in results_rx {
            batch.into_iter().for_each(&mut on_result);
        }
        (
            tx_thread.join().expect("transmit thread panicked"),
            rx_thread.join().expect("receive thread panicked"),
        )
    });
    tx_outcome?;
    rx_outcome?;

    Ok(ScanStats {
        sent: shared.sent.load(Relaxed),
        open: shared.open.load(Relaxed),
        closed: shared.closed.load(Relaxed),
        unreachable: shared.unreachable.load(Relaxed),
        duplicates: shared.duplicates.load(Relaxed),
        invalid: shared.invalid.load(Relaxed),
        rx_drops: shared.rx_drops.load(Relaxed),
        max_rtt: shared.max_rtt(),
        duration: Duration::from_nanos(clock.now_ns()),
        interrupted: stop.stop_sending(),
    })
}

fn transmit<T: Transmit>(
    plan: &ScanPlan,
    wire: &Wire,
    tx: &mut T,
    shared: &Shared,
    clock: &Clock,
    stop: &StopSignal,
    answered: &Answered,
) -> Result<(), EngineError> {
    reduce_timer_slack();
    let total = plan.probes_per_pass();
    let mut pacer = Pacer::new(plan.rate, clock.now_ns());
    let mut frames = vec![[0u8; SYN_FRAME_LEN]; TX_BATCH as usize];
    for pass in 0..=plan.retries {
        if pass > 0 {
            // Retry only what is still unanswered once its replies were due.
            while !shared.replies_due_by(clock, plan) && shared.answered.load(Relaxed) < total {
                if stop.stop_sending() || shared.failed.load(Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if shared.answered.load(Relaxed) >= total {
                return Ok(());
            }
        }
        let mut pos = 0u64;
        while pos < total {
            if stop.stop_sending() || shared.failed.load(Relaxed) {
                return Ok(());
            }
            let now = clock.now_ns();
            let grant = pacer.grant(now, TX_BATCH);
            if grant == 0 {
                pause(Duration::from_nanos(pacer.wait_ns(now)));
                continue;
            }
            let tsval = (now / 1000) as u32;
            let mut count = 0usize;
            while count < grant as usize && pos < total {
                let (index, ip, port) = plan.target(pos);
                pos += 1;
                if pass > 0 && answered.contains(ip, port) {
                    continue;
                }
                let sport = plan.source_port(index, pass);
                let seq = wire.key.seq(wire.src_ip, ip, sport, port);
                let probe = Probe {
                    dst: ip,
                    sport,
                    dport: port,
                    seq,
                    ip_id: (seq >> 16) as u16,
                    tsval,
                };
                wire.template.write(&probe, &mut frames[count]);
                count += 1;
            }
            if count > 0 {
                let batch: Vec<&[u8]> = frames[..count].iter().map(|f| &f[..]).collect();
                tx.transmit(&batch)?;
                shared.sent.fetch_add(count as u64, Relaxed);
                shared.last_send_ns.store(clock.now_ns(), Relaxed);
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn receive<R: Receive>(
    plan: &ScanPlan,
    wire: &Wire,
    rx: &mut R,
    shared: &Shared,
    clock: &Clock,
    stop: &StopSignal,
    answered: &Answered,
    total: u64,
    results: mpsc::Sender<Vec<ScanResult>>,
) -> Result<(), EngineError> {
    let matcher = ReplyMatcher {
        src_ip: wire.src_ip,
        src_ports: plan.src_ports,
        key: wire.key,
    };
    let mut batch = Vec::new();
    let mut last_drop_check = Instant::now();
    loop {
        rx.receive(RX_POLL, &mut |frame, rx_wall_ns| {
            let Some(reply) = matcher.classify(frame) else {
                shared.invalid.fetch_add(1, Relaxed);
                return;
            };
            if !plan.space.contains(reply.ip, reply.port) {
                shared.invalid.fetch_add(1, Relaxed);
                return;
            }
            if !answered.insert(reply.ip, reply.port) {
                shared.duplicates.fetch_add(1, Relaxed);
                return;
            }
            let now = clock.since_start_ns(rx_wall_ns);
            let rtt = reply.ts_echo.and_then(|echo| {
                let us = u64::from(((now / 1000) as u32).wrapping_sub(echo));
                (us <= now / 1000 && Duration::from_micros(us) <= MAX_RTT).then_some(us)
            });
            if let Some(us) = rtt {
                shared.max_rtt_us.fetch_max(us.max(1), Relaxed);
            }
            let (state, reason, counter) = match reply.kind {
                ReplyKind::SynAck => (PortState::Open, Reason::SynAck, &shared.open),
                ReplyKind::Rst => (PortState::Closed, Reason::Reset, &shared.closed),
                ReplyKind::Unreachable { code } => (PortState::Filtered, Reason::Unreachable { code }, &shared.unreachable),
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
        if !batch.is_empty() {
            // One hand-over per receive call, not per result: waking the
            // caller's thread for every reply costs more than handling it.
            // The receiver lives until this thread ends, so the send cannot fail.
            let _ = results.send(std::mem::take(&mut batch));
        }
        if last_drop_check.elapsed() >= DROP_CHECK {
            shared.rx_drops.fetch_add(rx.take_drops(), Relaxed);
            last_drop_check = Instant::now();
        }
        if stop.stop_waiting() || shared.failed.load(Relaxed) {
            shared.rx_drops.fetch_add(rx.take_drops(), Relaxed);
            return Ok(());
        }
        if shared.tx_done.load(Relaxed)
            && (shared.answered.load(Relaxed) >= total || shared.replies_due_by(clock, plan))
        {
            shared.rx_drops.fetch_add(rx.take_drops(), Relaxed);
            return Ok(());
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

fn reduce_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer rounding.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}
