//! Connect scans: the plan's probes as connection attempts through a
//! `Connect` backend, as many at once as the descriptor limit allows,
//! paced by the rate. One thread: the kernel makes the handshakes and ends
//! every attempt at its timeout, so this loop only starts attempts and
//! reads how they ended. Each attempt's round trip is the time from its
//! start to its outcome.

use super::pacing::Pacer;
use super::plan::{Cursor, ScanPlan};
use super::run::{EngineError, Observer, Progress, ScanStats, StopSignal};
use super::state::reply_timeout;
use super::time::Time;
use crate::probe::connect::{Outcome, outcome};
use crate::result::{PortState, Reason, ScanResult};
use crate::transport::TransportError;
use crate::transport::connect::Connect;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// The most attempts in flight, whatever the descriptor limit: each holds
/// a socket in the kernel (a few KiB), and 16,384 at a 250 ms timeout are
/// 65,536 silent ports a second.
pub const MAX_CONNECTIONS: u64 = 16_384;
/// Descriptors left to the rest of prtip (output files, the database, the
/// storage task's ring).
const RESERVED_FILES: u64 = 64;
/// Attempts started in one batch, between two readings of outcomes. The
/// batch's attempts leave one after the other in one submitting call, and
/// each one's round trip counts from the call: with a near host the kernel
/// makes each handshake inside it (15 us each in the lab), so a batch of 4
/// adds at most three of those to the last one's, where 16 added 230 us to
/// the median, for no more speed than the run-to-run spread.
const START_BATCH: u64 = 4;
/// The longest the loop waits for an outcome when it could start more.
const POLL: Duration = Duration::from_millis(5);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How many attempts may be in flight with `limit` descriptors, of which
/// `open` are taken: never more than `MAX_CONNECTIONS`, never so many that
/// a socket cannot be had ("too many open files"), and at least one.
pub fn connections(limit: u64, open: u64) -> u64 {
    limit.saturating_sub(open + RESERVED_FILES).clamp(1, MAX_CONNECTIONS)
}

/// Linux's initial retransmission timeout of a SYN (TCP_TIMEOUT_INIT).
const SYN_RTO: Duration = Duration::from_secs(1);

/// How often an attempt may fail for want of a local port, buffer or
/// memory before its probe is concluded silent, as a probe the kernel
/// refused to send is in a SYN scan.
const MAX_SHORTAGES: u32 = 8;

/// One probe between its first attempt and its result.
#[derive(Debug, Clone, Copy)]
struct Pending {
    attempt: u32,
    shortages: u32,
    /// When its attempt in flight started (ns on the scan's clock); None
    /// while it waits to be tried again.
    started: Option<u64>,
}

/// Where the attempts stand: which ranks are pending, which wait to be
/// tried (again), and the counts.
struct Book<'p> {
    plan: &'p ScanPlan,
    next: u64,
    total: u64,
    pending: BTreeMap<u64, Pending>,
    again: VecDeque<u64>,
    /// Probes whose attempt this host could not make: tried again after the
    /// fresh ones, so that one that always fails holds nothing up.
    short: VecDeque<u64>,
    stats: ScanStats,
    max_rtt_us: u64,
    in_flight: u64,
    /// The most attempts in flight at once: lowered when this host runs
    /// out of descriptors or local ports, raised again by one per answer
    /// up to `ceiling`.
    capacity: u64,
    ceiling: u64,
    /// The most that were in flight at once.
    peak: u64,
}

impl Book<'_> {
    /// Every probe below this rank is concluded and its result handed over.
    fn trail(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.next)
    }

    /// How long attempt `rank`'s try may wait. A connection attempt cut
    /// short cannot take a late answer: every first try waits as long as the
    /// last one would. A retry also waits out this host's own SYN
    /// retransmission (the kernel's first, after `SYN_RTO`): a server whose
    /// accept queue was full dropped the first SYN, not the port, and takes
    /// the second once it has caught up.
    fn timeout(&self, rank: u64) -> Duration {
        let rtt = (self.max_rtt_us > 0).then(|| Duration::from_micros(self.max_rtt_us));
        let first = reply_timeout(rtt, self.plan.max_wait);
        match self.pending.get(&rank).map_or(0, |p| p.attempt) {
            0 => first,
            _ => first + SYN_RTO,
        }
    }

    fn address(&self, rank: u64) -> SocketAddr {
        let (_, ip, port) = self.plan.target(self.plan.position_of_rank(rank));
        SocketAddr::new(ip, port)
    }

    /// The next rank to try, a retry before a fresh probe; fresh ones that
    /// earlier runs concluded or whose host is skipped are passed over.
    fn take(&mut self, skip: &impl Fn(u64) -> bool) -> Option<u64> {
        if let Some(rank) = self.again.pop_front() {
            return Some(rank);
        }
        while self.next < self.total {
            let rank = self.next;
            self.next += 1;
            if !skip(rank) {
                self.pending.insert(rank, Pending { attempt: 0, shortages: 0, started: None });
                return Some(rank);
            }
        }
        self.short.pop_front()
    }

    /// What attempt `rank`'s outcome `errno` at `now` (ns) says: a result, a
    /// retry, or nothing yet.
    fn ended(&mut self, rank: u64, errno: i32, now: u64, wall_us: u64, stopping: bool) -> Option<ScanResult> {
        self.in_flight -= 1;
        let p = self.pending.get_mut(&rank)?;
        let started = p.started.take().unwrap_or(now);
        let rtt_us = now.saturating_sub(started) / 1000;
        let (_, ip, port) = self.plan.target(self.plan.position_of_rank(rank));
        tracing::trace!(rank, errno, "attempt ended");
        let (state, reason, rtt_us) = match outcome(errno) {
            Outcome::Answer(state, reason) => {
                self.max_rtt_us = self.max_rtt_us.max(rtt_us);
                self.capacity = (self.capacity + 1).min(self.ceiling);
                (state, reason, Some(rtt_us))
            }
            Outcome::Local if p.shortages + 1 < MAX_SHORTAGES => {
                self.stats.refused += 1;
                p.shortages += 1;
                self.capacity = self.capacity.min(self.in_flight + 1);
                // Stopping, it stays unconcluded, for a resumed run to try.
                if !stopping {
                    self.short.push_back(rank);
                }
                return None;
            }
            // A try left: stopping, it stays unconcluded, as a SYN scan's
            // send window leaves such a probe.
            Outcome::Silent if p.attempt < self.plan.retries => {
                if !stopping {
                    p.attempt += 1;
                    self.again.push_back(rank);
                }
                return None;
            }
            Outcome::Local => {
                self.stats.refused += 1;
                (PortState::Filtered, Reason::NoResponse, None)
            }
            Outcome::Silent => (PortState::Filtered, Reason::NoResponse, None),
        };
        self.pending.remove(&rank);
        match (state, reason) {
            (PortState::Open, _) => self.stats.open += 1,
            (PortState::Closed, _) => self.stats.closed += 1,
            (_, Reason::NoResponse) => self.stats.filtered += 1,
            _ => self.stats.unreachable += 1,
        }
        Some(ScanResult { ip, port, state, reason, ttl: None, rtt_us, time_us: wall_us })
    }
}

/// Runs a connect scan to its end (or to `stop`) through `backend`, with
/// at most `capacity` attempts in flight, and hands `observer` every batch
/// of results and the progress. `prior` holds the space indices that earlier
/// runs of a resumed scan concluded: they are not tried again.
pub fn run<C: Connect>(
    plan: &ScanPlan,
    backend: &mut C,
    capacity: u64,
    stop: &StopSignal,
    prior: &HashSet<u64>,
    observer: &mut impl Observer,
    time: &dyn Time,
) -> Result<ScanStats, EngineError> {
    let origin = time.monotonic_ns();
    let now = || time.monotonic_ns() - origin;
    let wall_us = || time.wall_ns() / 1000;
    let total = plan.probe_count();
    let start = plan.start.position.min(total);
    let mut book = Book {
        plan,
        next: start,
        total,
        pending: BTreeMap::new(),
        again: VecDeque::new(),
        short: VecDeque::new(),
        stats: ScanStats::default(),
        max_rtt_us: 0,
        in_flight: 0,
        capacity: capacity.max(1),
        ceiling: capacity.max(1),
        peak: 0,
    };
    let skip = |rank: u64| plan.passes_over(rank, prior);
    let mut pacer = Pacer::new(plan.rate, now());
    let mut last_progress = 0;
    let mut batch = Vec::new();
    let mut batch_ranks = Vec::with_capacity(START_BATCH as usize);
    loop {
        if stop.stop_waiting() {
            break;
        }
        let stopping = stop.stop_sending();
        if stopping {
            book.again.clear();
            book.short.clear();
        }
        let room = book.capacity.saturating_sub(book.in_flight).min(backend.room() as u64).min(START_BATCH);
        let grant = if stopping || room == 0 { 0 } else { pacer.grant(now(), room as u32) };
        let mut started = 0;
        batch_ranks.clear();
        while started < grant {
            let Some(rank) = book.take(&skip) else { break };
            let timeout = book.timeout(rank);
            match backend.start(rank, book.address(rank), timeout) {
                Ok(()) => {
                    started += 1;
                    book.in_flight += 1;
                    book.peak = book.peak.max(book.in_flight);
                    book.stats.sent += 1;
                    batch_ranks.push(rank);
                }
                // The descriptor limit is lower than it said (another
                // process of the user's holds some): fewer at once, never
                // "too many open files".
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EBUSY)
                    ) && book.in_flight > 0 =>
                {
                    book.capacity = book.in_flight;
                    book.again.push_front(rank);
                    tracing::debug!(book.capacity, "connections capped by the descriptor limit");
                    break;
                }
                Err(e) => return Err(TransportError::Io { what: "connect", source: e }.into()),
            }
        }
        pacer.unused(grant - started);
        if started > 0 {
            // Stamped before: the kernel may make a whole handshake with a
            // near host inside the submitting call.
            let at = now();
            backend.submit().map_err(|e| TransportError::Io { what: "connect", source: e })?;
            for rank in &batch_ranks {
                if let Some(p) = book.pending.get_mut(rank) {
                    p.started = Some(at);
                }
            }
        }
        if book.pending.is_empty() && book.next >= book.total {
            break;
        }
        if stopping && book.in_flight == 0 {
            break;
        }
        // Wait for outcomes when nothing more can start now (the room is
        // taken, or nothing is left to start), otherwise until the rate's
        // next slot.
        let nothing_to_start = book.again.is_empty() && book.short.is_empty() && book.next >= book.total;
        let wait = if stopping || nothing_to_start || book.in_flight >= book.capacity {
            POLL
        } else if started == grant && grant > 0 {
            // Only the batch held it back.
            Duration::ZERO
        } else {
            Duration::from_nanos(pacer.wait_ns(now())).min(POLL)
        };
        if book.in_flight == 0 {
            time.sleep(wait);
        } else {
            let wall = wall_us();
            backend
                .complete(wait, &mut |rank, errno, socket| {
                    let result = book.ended(rank, errno, now(), wall, stopping);
                    if let (Some(r), Some(socket)) = (&result, socket) {
                        observer.adopt(r.ip, r.port, socket);
                    }
                    batch.extend(result);
                })
                .map_err(|e| TransportError::Io { what: "connect", source: e })?;
        }
        if !batch.is_empty() {
            observer.results(std::mem::take(&mut batch));
        }
        if now().saturating_sub(last_progress) >= PROGRESS_EVERY.as_nanos() as u64 {
            last_progress = now();
            observer.progress(&progress(&book, now(), total - start, plan.rate));
        }
    }
    let trail = book.trail();
    let interrupted = stop.stop_sending() && trail < total;
    let mut stats = book.stats;
    stats.max_rtt = (book.max_rtt_us > 0).then(|| Duration::from_micros(book.max_rtt_us));
    stats.window_peak = book.peak;
    stats.duration = Duration::from_nanos(now());
    stats.interrupted = interrupted;
    stats.cursor = Cursor { pass: 0, position: if interrupted { trail } else { total } };
    Ok(stats)
}

fn progress(book: &Book, now: u64, planned: u64, rate: u64) -> Progress {
    let s = &book.stats;
    Progress {
        elapsed: Duration::from_nanos(now),
        planned,
        sent: s.sent,
        answered: s.answered(),
        open: s.open,
        rx_drops: 0,
        late: 0,
        rate,
        rate_reason: Default::default(),
        checkpoint: Cursor { pass: 0, position: book.trail() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::time::SystemClocks;
    use crate::target::space::v4_space;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    /// A network whose every attempt ends at the next `complete`, with the
    /// error number `truth` gives its port and try; it checks that no more
    /// than `capacity` are ever in flight, and refuses sockets past `sockets`.
    struct FakeNet {
        truth: fn(u16, u32) -> i32,
        capacity: usize,
        sockets: usize,
        in_flight: Vec<(u64, SocketAddr)>,
        tries: HashMap<SocketAddr, u32>,
    }

    impl FakeNet {
        fn new(truth: fn(u16, u32) -> i32) -> Self {
            FakeNet { truth, capacity: 1000, sockets: usize::MAX, in_flight: Vec::new(), tries: HashMap::new() }
        }
    }

    impl Connect for FakeNet {
        fn room(&self) -> usize {
            self.capacity - self.in_flight.len()
        }

        fn start(&mut self, token: u64, to: SocketAddr, _timeout: Duration) -> std::io::Result<()> {
            if self.in_flight.len() >= self.sockets {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
            assert!(self.in_flight.len() < self.capacity, "more in flight than there is room for");
            self.in_flight.push((token, to));
            Ok(())
        }

        fn submit(&mut self) -> std::io::Result<()> {
            Ok(())
        }

        fn complete(
            &mut self,
            _wait: Duration,
            on: &mut dyn FnMut(u64, i32, Option<std::os::fd::OwnedFd>),
        ) -> std::io::Result<()> {
            for (token, to) in std::mem::take(&mut self.in_flight) {
                let tries = self.tries.entry(to).or_default();
                on(token, (self.truth)(to.port(), *tries), None);
                *tries += 1;
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Seen {
        results: Vec<ScanResult>,
    }

    impl Observer for Seen {
        fn results(&mut self, batch: Vec<ScanResult>) {
            self.results.extend(batch);
        }
    }

    /// Port 22 open, 25 refused, 7000 silent, 7001 host-unreachable, 8080
    /// silent on its first try only, 9000 reset after the handshake; the
    /// rest refused.
    fn truth(port: u16, attempt: u32) -> i32 {
        match (port, attempt) {
            (22, _) | (8080, 1..) => 0,
            (9000, _) => libc::ECONNRESET,
            (7000, _) | (8080, 0) => libc::ECANCELED,
            (7001, _) => libc::EHOSTUNREACH,
            _ => libc::ECONNREFUSED,
        }
    }

    const PORTS: (u32, u32) = (20, 9010);

    fn scan(net: &mut FakeNet, capacity: u64, plan: &ScanPlan, prior: &HashSet<u64>) -> (ScanStats, Vec<ScanResult>) {
        let mut seen = Seen::default();
        let stats = run(plan, net, capacity, &StopSignal::new(), prior, &mut seen, &SystemClocks::new()).unwrap();
        (stats, seen.results)
    }

    fn plan(retries: u32) -> ScanPlan {
        let space = v4_space((0x0a00_0001, 0x0a00_0002), PORTS);
        ScanPlan::new(space, 7, (61000, 61000), retries, 0, Duration::from_secs(1))
    }

    fn states(results: &[ScanResult]) -> HashMap<(IpAddr, u16), (PortState, Reason)> {
        let mut m = HashMap::new();
        for r in results {
            assert!(m.insert((r.ip, r.port), (r.state, r.reason)).is_none(), "{r:?} twice");
        }
        m
    }

    #[test]
    fn every_probe_gets_the_state_its_attempts_say_once_and_silence_is_retried() {
        let plan = plan(1);
        let mut net = FakeNet::new(truth);
        net.capacity = 16;
        let (stats, results) = scan(&mut net, 16, &plan, &HashSet::new());
        let got = states(&results);
        assert_eq!(got.len() as u64, plan.probe_count());
        for host in [1, 2] {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, host));
            assert_eq!(got[&(ip, 22)], (PortState::Open, Reason::SynAck));
            assert_eq!(got[&(ip, 9000)], (PortState::Open, Reason::SynAck));
            assert_eq!(got[&(ip, 8080)], (PortState::Open, Reason::SynAck), "open on its retry");
            assert_eq!(got[&(ip, 7000)], (PortState::Filtered, Reason::NoResponse));
            assert_eq!(got[&(ip, 7001)], (PortState::Filtered, Reason::Unreachable { code: 1 }));
            assert_eq!(got[&(ip, 6990)], (PortState::Closed, Reason::ConnRefused));
        }
        assert_eq!((stats.open, stats.filtered, stats.unreachable), (6, 2, 2));
        assert_eq!(stats.closed, plan.probe_count() - 10);
        assert_eq!(stats.sent, plan.probe_count() + 4, "one retry each for 7000 and 8080 of both hosts");
        assert!(results.iter().all(|r| r.rtt_us.is_some() == (r.reason != Reason::NoResponse)));
        assert_eq!(stats.cursor, Cursor { pass: 0, position: plan.probe_count() });
        // No retries: 8080's first silence is its result.
        let (stats, results) = scan(&mut FakeNet::new(truth), 1000, &super::tests::plan(0), &HashSet::new());
        assert_eq!(states(&results).values().filter(|s| s.0 == PortState::Filtered).count(), 6);
        assert_eq!(stats.sent, plan.probe_count());
    }

    #[test]
    fn a_resumed_scan_tries_only_what_earlier_runs_did_not_conclude() {
        let (k, plan) = (100u64, plan(1));
        let resumed = super::tests::plan(1).starting_at(Cursor { pass: 0, position: k });
        // The interrupted run concluded everything before k and every third position after it.
        let prior: HashSet<u64> = (k..plan.probe_count()).filter(|p| p % 3 == 0).map(|p| plan.target(p).0).collect();
        let (stats, results) = scan(&mut FakeNet::new(truth), 1000, &resumed, &prior);
        let mut got: Vec<u64> = results.iter().map(|r| plan.space.index_of(r.ip, r.port).unwrap()).collect();
        let mut expect: Vec<u64> =
            (k..plan.probe_count()).map(|p| plan.target(p).0).filter(|i| !prior.contains(i)).collect();
        got.sort();
        expect.sort();
        assert_eq!(got, expect);
        assert_eq!(stats.cursor, Cursor { pass: 0, position: plan.probe_count() });
    }

    #[test]
    fn fewer_attempts_at_once_when_sockets_run_out_and_never_a_failure() {
        let plan = plan(1);
        let mut net = FakeNet::new(truth);
        net.sockets = 3;
        let (stats, results) = scan(&mut net, 1000, &plan, &HashSet::new());
        assert_eq!(states(&results).len() as u64, plan.probe_count());
        assert_eq!(stats.window_peak, 3, "the most in flight once sockets ran out");
    }

    #[test]
    fn a_local_shortage_is_tried_again_and_is_no_try() {
        fn short(port: u16, attempt: u32) -> i32 {
            if port == 22 && attempt < 3 { libc::EADDRNOTAVAIL } else { truth(port, attempt) }
        }
        let (stats, results) = scan(&mut FakeNet::new(short), 1000, &plan(0), &HashSet::new());
        let got = states(&results);
        assert_eq!(got[&(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 22)], (PortState::Open, Reason::SynAck));
        assert_eq!(stats.refused, 6, "three shortages for each host's port 22");
    }

    #[test]
    fn a_probe_this_host_can_never_try_ends_silent_and_holds_nothing_up() {
        fn never(port: u16, attempt: u32) -> i32 {
            if port == 22 { libc::EADDRNOTAVAIL } else { truth(port, attempt) }
        }
        let (stats, results) = scan(&mut FakeNet::new(never), 1000, &plan(1), &HashSet::new());
        let got = states(&results);
        assert_eq!(got.len() as u64, plan(1).probe_count());
        assert_eq!(got[&(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 22)], (PortState::Filtered, Reason::NoResponse));
        assert_eq!(stats.refused, 2 * u64::from(MAX_SHORTAGES));
        assert!(stats.window_peak > 1, "the shortages' cut grew back: {}", stats.window_peak);
    }

    #[test]
    fn attempts_at_once_follow_the_descriptor_limit() {
        assert_eq!(connections(1024, 10), 1024 - 10 - RESERVED_FILES);
        assert_eq!(connections(1 << 20, 10), MAX_CONNECTIONS);
        assert_eq!(connections(50, 10), 1);
    }
}
