//! The banner stage: open ports, handed over by a scan as it finds them,
//! each asked what answers there through a `Conversations` backend, on a
//! thread of its own. A bounded queue stands between the scan and the
//! stage: a port the queue refuses is reported as such (`queue-full`),
//! never dropped. Memory is bounded by the queue, the connections at once
//! and the bytes kept per connection, whatever the services send.

use crate::banner::{Grab, Service, Status, Step, Wait};
use crate::result::ScanResult;
use crate::transport::stream::{Conversations, Ended, NO_TCP_STACK};
use crate::wire::sources::Sources;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ports waiting for a connection: about 3 MiB of results at most.
pub const QUEUE: usize = 65_536;
/// The most conversations at once, whatever the descriptor limit.
pub const MAX_CONNECTIONS: u32 = 1024;
/// How long the loop waits for a step to end.
const POLL: Duration = Duration::from_millis(20);
/// How long the rest of a message may keep us waiting once it has begun.
const REST_WAIT: Duration = Duration::from_millis(500);

/// How the stage talks to ports.
#[derive(Debug, Clone)]
pub struct BannerConfig {
    /// The longest one port's conversation lasts, connect included.
    pub timeout: Duration,
    /// How long a quiet service is listened to before it is asked, and an
    /// answer waited for.
    pub answer_wait: Duration,
    /// Bytes kept of what a service says.
    pub bytes: usize,
    /// Names the targets were given by, for SNI and the Host header.
    pub hostnames: Arc<HashMap<IpAddr, String>>,
    /// The scan's `--source-ip` addresses: a connection leaves from the one
    /// its target's probes left from. Without them, the kernel picks.
    pub sources: Option<Sources>,
    /// Those of `sources` that are not this host's (the network routes
    /// their replies here): the kernel picks for their targets too.
    pub not_local: Vec<IpAddr>,
}

impl BannerConfig {
    fn source_for(&self, target: IpAddr) -> Option<IpAddr> {
        self.sources.map(|s| s.get(s.pick(target))).filter(|a| !self.not_local.contains(a))
    }
}

/// Counts of the stage's work, for the scan's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BannerStats {
    pub asked: u64,
    pub grabbed: u64,
    pub refused: u64,
    /// The most conversations that were open at once.
    pub peak: u64,
    /// Conversations the timeout ended, and the byte cap.
    pub timed_out: u64,
    pub capped: u64,
    /// Conversations, and ports not yet asked, that a stop ended.
    pub interrupted: u64,
    /// Peers that acknowledged bytes never sent (`acks-everything`).
    pub acks_everything: u64,
    /// Over prtip's own TCP: handshakes that waited for the stage too long,
    /// reset (their ports opened again with a SYN when their turn came).
    pub handshakes_expired: u64,
}

/// The scan's side of the stage.
pub struct BannerStage {
    jobs: Option<SyncSender<Job>>,
    /// Sockets handed over and not yet taken in by the stage, and how many may be.
    held: Arc<AtomicUsize>,
    most_held: usize,
    done: Receiver<(ScanResult, Service)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<BannerStats>>>,
    refused: u64,
}

impl BannerStage {
    /// Starts the stage's thread over `conversations`, which has room for
    /// `connections` at once.
    pub fn start<C: Conversations + Send + 'static>(
        conversations: C,
        connections: u32,
        config: BannerConfig,
    ) -> io::Result<BannerStage> {
        let (jobs, jobs_rx) = mpsc::sync_channel(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (stopped, taken) = (stop.clone(), held.clone());
        let thread = std::thread::Builder::new()
            .name("prtip-banners".into())
            .spawn(move || run(conversations, &config, &jobs_rx, &done_tx, &stopped, &taken))?;
        Ok(BannerStage {
            jobs: Some(jobs),
            held,
            most_held: connections as usize,
            done,
            stop,
            thread: Some(thread),
            refused: 0,
        })
    }

    /// Hands over an open port, with the connect scan's connection to it
    /// where there is one; gives it back, reported as `queue-full`, where
    /// the queue is full. Connections wait in the queue only while as many
    /// as the stage has room for are waiting (each is a descriptor); past
    /// that one is closed, and the stage connects again when the port's turn comes.
    pub fn offer(&mut self, result: ScanResult, socket: Option<OwnedFd>) -> Option<(ScanResult, Service)> {
        let jobs = self.jobs.as_ref()?;
        let socket = socket.and_then(|s| match self.held.load(Ordering::Relaxed) < self.most_held {
            true => Some(s),
            false => {
                crate::sys::connect::abort(s);
                None
            }
        });
        let holds = socket.is_some();
        match jobs.try_send(Job { result, socket }) {
            Ok(()) => {
                if holds {
                    self.held.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Err(mpsc::TrySendError::Full(job)) => {
                self.refused += 1;
                if let Some(socket) = job.socket {
                    crate::sys::connect::abort(socket);
                }
                Some((job.result, Service::not_asked(Status::QueueFull)))
            }
            // The stage failed; finish says why.
            Err(mpsc::TrySendError::Disconnected(job)) => {
                if let Some(socket) = job.socket {
                    crate::sys::connect::abort(socket);
                }
                Some((job.result, Service::not_asked(Status::Interrupted)))
            }
        }
    }

    /// The ports whose conversations ended since the last call.
    pub fn ready(&mut self) -> Vec<(ScanResult, Service)> {
        self.done.try_iter().collect()
    }

    /// Waits for the conversations under way and queued (each ends by its
    /// timeout), or ends them now where the scan was stopped, or is stopped
    /// while this waits (`stopping`); hands every port still held to `on`.
    pub fn finish(
        mut self,
        stopped: bool,
        stopping: &dyn Fn() -> bool,
        on: &mut dyn FnMut(ScanResult, Service),
    ) -> io::Result<BannerStats> {
        if stopped {
            self.stop.store(true, Ordering::Relaxed);
        }
        drop(self.jobs.take());
        loop {
            match self.done.recv_timeout(POLL) {
                Ok((r, s)) => on(r, s),
                Err(mpsc::RecvTimeoutError::Timeout) if stopping() => self.stop.store(true, Ordering::Relaxed),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut stats = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(stats)) => stats?,
            _ => return Err(io::Error::other("the banner stage's thread failed")),
        };
        stats.refused = self.refused;
        Ok(stats)
    }
}

impl Drop for BannerStage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An open port waiting for its conversation.
struct Job {
    result: ScanResult,
    /// The connect scan's connection, where it was handed over.
    socket: Option<OwnedFd>,
}

/// One conversation under way.
struct Conversation {
    result: ScanResult,
    grab: Grab,
    deadline: Instant,
    /// What is still to be sent of the last `Step::Send`.
    unsent: Vec<u8>,
    /// The address its connections leave from, where the scan chose one.
    from: Option<IpAddr>,
}

fn run<C: Conversations>(
    mut conns: C,
    config: &BannerConfig,
    jobs: &Receiver<Job>,
    done: &mpsc::Sender<(ScanResult, Service)>,
    stop: &AtomicBool,
    held: &AtomicUsize,
) -> io::Result<BannerStats> {
    let mut stats = BannerStats::default();
    let mut live: HashMap<u32, Conversation> = HashMap::new();
    let mut no_more = false;
    let mut ended: Vec<(u32, Ending)> = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            abandon(&mut conns, &mut live, jobs, done, &mut stats);
            conns.count(&mut stats);
            return Ok(stats);
        }
        while !no_more && conns.room() > 0 {
            let next = match live.is_empty() {
                true => jobs.recv_timeout(POLL).map_err(|e| e == RecvTimeoutError::Disconnected),
                false => jobs.try_recv().map_err(|e| e == TryRecvError::Disconnected),
            };
            match next {
                Ok(Job { result, socket }) => {
                    stats.asked += 1;
                    let hostname = config.hostnames.get(&result.ip).map(String::as_str);
                    let grab = Grab::new(result.ip, result.port, hostname, config.bytes);
                    let now = Instant::now();
                    let from = config.source_for(result.ip);
                    let deadline = now + config.timeout;
                    let c = Conversation { result, grab, deadline, unsent: Vec::new(), from };
                    let adopted = socket.is_some();
                    let opened = match socket {
                        Some(socket) => {
                            held.fetch_sub(1, Ordering::Relaxed);
                            conns.adopt(socket)
                        }
                        None => conns.open(SocketAddr::new(result.ip, result.port), from, config.timeout),
                    };
                    match opened {
                        // Connected already: the conversation starts now.
                        Ok(id) if adopted => {
                            let mut c = c;
                            let step = c.grab.start();
                            if let Some((id, c)) =
                                take_step(&mut conns, id, c, step, now, answer_wait(config), &mut stats, done)
                            {
                                live.insert(id, c);
                            }
                        }
                        Ok(id) => {
                            live.insert(id, c);
                        }
                        Err(e) => {
                            let errno = e.raw_os_error().unwrap_or(libc::EIO);
                            let _ = done.send((result, Service::not_asked(Status::NoConnection(errno))));
                        }
                    }
                }
                Err(true) => no_more = true,
                Err(false) => break,
            }
        }
        stats.peak = stats.peak.max(live.len() as u64);
        if no_more && live.is_empty() {
            conns.count(&mut stats);
            return Ok(stats);
        }
        let wait = if live.is_empty() { Duration::ZERO } else { POLL };
        if let Err(e) = conns.complete(wait, &mut |id, e| ended.push((id, Ending::from(e)))) {
            abandon(&mut conns, &mut live, jobs, done, &mut stats);
            // Every port the scan still hands over is reported, until it ends.
            for job in jobs.iter() {
                if let Some(socket) = job.socket {
                    crate::sys::connect::abort(socket);
                }
                let _ = done.send((job.result, Service::not_asked(Status::Interrupted)));
            }
            return Err(e);
        }
        for (id, e) in ended.drain(..) {
            let Some(mut c) = live.remove(&id) else { continue };
            let now = Instant::now();
            let step = match e {
                Ending::Connected(Err(NO_TCP_STACK))
                | Ending::Sent(Err(NO_TCP_STACK))
                | Ending::Received(Err(NO_TCP_STACK)) => {
                    conns.close(id);
                    let mut service = c.grab.finish();
                    service.status = Status::AcksEverything;
                    stats.acks_everything += 1;
                    let _ = done.send((c.result, service));
                    continue;
                }
                Ending::Connected(Ok(())) => c.grab.start(),
                Ending::Connected(Err(errno)) => {
                    conns.close(id);
                    let mut service = c.grab.finish();
                    if service.status == Status::Silent {
                        service.status = Status::NoConnection(errno);
                    }
                    let _ = done.send((c.result, service));
                    continue;
                }
                Ending::Sent(Ok(n)) if n < c.unsent.len() => {
                    c.unsent.drain(..n);
                    Step::Send(std::mem::take(&mut c.unsent))
                }
                Ending::Sent(Ok(_)) => Step::Read(Wait::Answer),
                Ending::Received(Ok(bytes)) if bytes.is_empty() => c.grab.on_closed(),
                Ending::Received(Ok(bytes)) => c.grab.on_data(&bytes),
                Ending::Received(Err(libc::ECANCELED)) if now < c.deadline => c.grab.on_quiet(),
                Ending::Received(Err(libc::ECANCELED)) => {
                    stats.timed_out += 1;
                    Step::Done
                }
                Ending::Sent(Err(_)) | Ending::Received(Err(_)) => c.grab.on_closed(),
            };
            if let Some((id, c)) = take_step(&mut conns, id, c, step, now, answer_wait(config), &mut stats, done) {
                live.insert(id, c);
            }
        }
    }
}

/// How long each kind of read may stay empty.
fn answer_wait(config: &BannerConfig) -> impl Fn(Wait) -> Duration + '_ {
    |w| match w {
        Wait::Answer => config.answer_wait,
        Wait::Rest => REST_WAIT,
    }
}

/// Ends every conversation now, and hands back every port held, with what
/// was learnt of it: the scan reports each of them all the same.
fn abandon<C: Conversations>(
    conns: &mut C,
    live: &mut HashMap<u32, Conversation>,
    jobs: &Receiver<Job>,
    done: &mpsc::Sender<(ScanResult, Service)>,
    stats: &mut BannerStats,
) {
    for (id, c) in live.drain() {
        conns.close(id);
        let mut service = c.grab.finish();
        match service.status {
            Status::Grabbed => stats.grabbed += 1,
            Status::Silent => service.status = Status::Interrupted,
            _ => {}
        }
        stats.interrupted += 1;
        let _ = done.send((c.result, service));
    }
    for job in jobs.try_iter() {
        if let Some(socket) = job.socket {
            crate::sys::connect::abort(socket);
        }
        stats.interrupted += 1;
        let _ = done.send((job.result, Service::not_asked(Status::Interrupted)));
    }
}

/// A step's end, owned (a receive's bytes are the backend's until then).
enum Ending {
    Connected(Result<(), i32>),
    Sent(Result<usize, i32>),
    Received(Result<Vec<u8>, i32>),
}

impl From<Ended<'_>> for Ending {
    fn from(e: Ended) -> Ending {
        match e {
            Ended::Connected(r) => Ending::Connected(r),
            Ended::Sent(r) => Ending::Sent(r),
            Ended::Received(r) => Ending::Received(r.map(<[u8]>::to_vec)),
        }
    }
}

/// Does what the conversation asked; returns it, and its connection's
/// number, while it goes on.
#[allow(clippy::too_many_arguments)]
fn take_step<C: Conversations>(
    conns: &mut C,
    id: u32,
    mut c: Conversation,
    step: Step,
    now: Instant,
    wait: impl Fn(Wait) -> Duration,
    stats: &mut BannerStats,
    done: &mpsc::Sender<(ScanResult, Service)>,
) -> Option<(u32, Conversation)> {
    let left = c.deadline.saturating_duration_since(now);
    let went_on = match step {
        Step::Done => Err(()),
        _ if left.is_zero() => {
            stats.timed_out += 1;
            Err(())
        }
        Step::Send(bytes) if bytes.is_empty() => conns.receive(id, wait(Wait::Answer).min(left)).map_err(drop),
        Step::Send(bytes) => {
            let sent = conns.send(id, &bytes, left).map_err(drop);
            c.unsent = bytes;
            sent
        }
        Step::Read(w) => conns.receive(id, wait(w).min(left)).map_err(drop),
        Step::Reconnect => {
            conns.close(id);
            return match conns.open(SocketAddr::new(c.result.ip, c.result.port), c.from, left) {
                Ok(id) => Some((id, c)),
                Err(_) => {
                    end(c, stats, done);
                    None
                }
            };
        }
    };
    match went_on {
        Ok(()) => Some((id, c)),
        Err(()) => {
            conns.close(id);
            end(c, stats, done);
            None
        }
    }
}

fn end(c: Conversation, stats: &mut BannerStats, done: &mpsc::Sender<(ScanResult, Service)>) {
    stats.capped += u64::from(c.grab.is_full());
    let service = c.grab.finish();
    if service.status == Status::Grabbed {
        stats.grabbed += 1;
    }
    let _ = done.send((c.result, service));
}
