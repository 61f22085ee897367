//! The storage task's body, on the tokio-uring runtime of its own thread.
//!
//! The loop has one exit: `recv_many()` returning no message, which tokio's
//! channel does only once every sender is gone and every queued message was
//! received. Nothing can be left in the channel when the task ends, and no
//! `select!` can lose a message to a timer: the sync timer wraps
//! `recv_many()` itself and never takes a message away.

use super::sink::{self, Failure, Sink};
use super::{Failed, Finish, Msg, StoreConfig, StoreError, StoreReport};
use crate::banner::Service;
use crate::engine::plan::Cursor;
use crate::result::{Reason, ScanResult};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages taken from the channel at once; their results go to the journal
/// in one write. Taking in a million rows took 100-175 ms with a write for
/// each batch, 67-90 ms this way, and 45-60 ms with no journal at all.
const MESSAGES_AT_ONCE: usize = 64;

/// The sinks still working, and the first failure of each kind. A sink that
/// fails is dropped; the others, and the draining of the channel, go on.
struct Sinks {
    live: Vec<Box<dyn Sink>>,
    /// Reported at the end as the scan's error.
    error: Option<StoreError>,
    /// Told the engine's side as soon as `error` is set.
    told: Arc<OnceLock<Failed>>,
    /// Why the scan cannot be resumed: it goes on regardless.
    resume_lost: Option<StoreError>,
}

/// What every sink is asked to do, one message at a time.
enum Op<'a> {
    Add {
        batch: &'a [ScanResult],
        answered: &'a [ScanResult],
    },
    Replay(&'a [ScanResult]),
    Services(&'a [(ScanResult, Service)]),
    Checkpoint(Cursor, u64),
    Flush,
    /// Sync the sinks whose sync is due by then.
    SyncDue(Instant),
}

impl Sinks {
    async fn apply(&mut self, op: &Op<'_>) {
        let mut i = 0;
        while i < self.live.len() {
            let sink = &mut self.live[i];
            let done = match *op {
                Op::Add { batch, answered } => sink.add(batch, answered).await,
                Op::Replay(batch) => sink.replay(batch).await,
                Op::Services(batch) => sink.services(batch).await,
                Op::Checkpoint(cursor, sent) => sink.checkpoint(cursor, sent).await,
                Op::Flush => sink.flush().await,
                Op::SyncDue(now) if sink.sync_due().is_some_and(|due| due <= now) => sink.sync().await,
                Op::SyncDue(_) => Ok(()),
            };
            match done {
                Ok(()) => i += 1,
                Err(e) => {
                    let failed = self.live.remove(i);
                    self.keep(failed.failure(), e);
                }
            }
        }
    }

    fn keep(&mut self, failure: Failure, e: StoreError) {
        match failure {
            Failure::Results => {
                let shard_lost = matches!(e, StoreError::LeaseLost { .. });
                let _ = self.told.set(Failed { why: e.to_string(), shard_lost });
                self.error.get_or_insert(e)
            }
            Failure::Resume => self.resume_lost.get_or_insert(e),
        };
    }

    fn sync_due(&self) -> Option<Instant> {
        self.live.iter().filter_map(|s| s.sync_due()).min()
    }
}

pub(super) async fn run(
    config: StoreConfig,
    mut rx: mpsc::Receiver<Msg>,
    ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
    told: Arc<OnceLock<Failed>>,
) -> Result<StoreReport, StoreError> {
    let sink::Opened { sinks: live, resume_lost, scan_id } = match sink::open(&config).await {
        Ok(opened) => opened,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(StoreReport::default());
        }
    };
    let _ = ready.send(Ok(()));
    let mut sinks = Sinks { live, error: None, told, resume_lost };

    let mut finish: Option<Finish> = None;
    // Where the scan stands if it ends without saying how (its sender dropped).
    let mut last = config.checkpoint.as_ref().map_or((Cursor::default(), 0), |c| (c.cursor, c.sent));
    let mut msgs = Vec::with_capacity(MESSAGES_AT_ONCE);
    loop {
        let taken = match sinks.sync_due() {
            Some(at) => match tokio::time::timeout_at(at, rx.recv_many(&mut msgs, MESSAGES_AT_ONCE)).await {
                Ok(taken) => taken,
                Err(_elapsed) => {
                    sinks.apply(&Op::SyncDue(Instant::now())).await;
                    continue;
                }
            },
            None => rx.recv_many(&mut msgs, MESSAGES_AT_ONCE).await,
        };
        if taken == 0 {
            break;
        }
        for msg in msgs.drain(..) {
            match msg {
                Msg::Results(batch) => {
                    // Silent ports come in batches of their own (a window concluded them): most batches are all answers.
                    let answered: Cow<[ScanResult]> = match batch.iter().all(|r| r.reason != Reason::NoResponse) {
                        true => Cow::Borrowed(&batch),
                        false => batch.iter().filter(|r| r.reason != Reason::NoResponse).copied().collect(),
                    };
                    sinks.apply(&Op::Add { batch: &batch, answered: &answered }).await;
                }
                Msg::Replay(batch) => sinks.apply(&Op::Replay(&batch)).await,
                Msg::Services(batch) => sinks.apply(&Op::Services(&batch)).await,
                Msg::Checkpoint { cursor, sent } => {
                    last = (cursor, sent);
                    sinks.apply(&Op::Checkpoint(cursor, sent)).await;
                }
                Msg::Finish(f) => finish = Some(*f),
            }
        }
        sinks.apply(&Op::Flush).await;
        // A channel that never empties never lets the timer above fire.
        sinks.apply(&Op::SyncDue(Instant::now())).await;
    }

    // The channel is closed and empty: store the rest and close the books.
    // A scan whose end was never announced (the sender was dropped) is interrupted.
    let finish = finish.unwrap_or_else(|| {
        let mut f = Finish::default();
        f.scan.interrupted = true;
        f.run.interrupted = true;
        (f.scan.cursor, f.scan.probes_sent) = last;
        f
    });
    let mut report = StoreReport { scan_id, ..StoreReport::default() };
    for s in std::mem::take(&mut sinks.live) {
        let failure = s.failure();
        if let Err(e) = s.finish(&finish, &mut report).await {
            sinks.keep(failure, e);
        }
    }
    report.checkpoint_lost = sinks.resume_lost.map(|e| e.to_string());
    match sinks.error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
