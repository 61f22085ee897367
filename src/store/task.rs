//! The storage task's body, on the tokio-uring runtime of its own thread.
//!
//! The loop has one exit: `recv()` returning `None`, which tokio's channel
//! does only once every sender is gone and every queued message was
//! received. Nothing can be left in the channel when the task ends, and no
//! `select!` can lose a message to a timer: the commit timer wraps `recv()`
//! itself and never takes a message away.

use super::db::{self, Db};
use super::{Finish, Msg, StoreConfig, StoreError, StoreReport, journal};
use crate::latency::Latency;
use crate::output::{self, OutputFile, ResultWriter};
use crate::result::{PortState, Reason, ScanResult};
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_uring::fs::File;

/// A transaction commits when this many rows wait, or when the oldest has waited `COMMIT_AFTER`.
const COMMIT_ROWS: usize = 4096;
const COMMIT_AFTER: Duration = Duration::from_millis(100);
/// The journal is fsynced at most this often: a sync costs milliseconds, and a
/// killed process loses nothing already written; the sync is for power loss.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Output files are written in chunks of about this size.
const FILE_CHUNK: usize = 256 * 1024;

/// A `Write` that collects bytes for the next io_uring write.
#[derive(Clone, Default)]
struct Spool(Rc<RefCell<Vec<u8>>>);

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An append-only file written through io_uring.
struct UringFile {
    path: PathBuf,
    file: File,
    offset: u64,
}

impl UringFile {
    async fn create(path: PathBuf) -> std::io::Result<UringFile> {
        let file = File::create(&path).await?;
        Ok(UringFile { path, file, offset: 0 })
    }

    async fn append(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        let (res, _) = self.file.write_all_at(bytes, self.offset).await;
        res?;
        self.offset += len;
        Ok(())
    }
}

struct FileSink {
    out: UringFile,
    spool: Spool,
    writer: Box<dyn ResultWriter>,
}

impl FileSink {
    async fn drain_spool(&mut self, at_least: usize) -> Result<(), StoreError> {
        if self.spool.0.borrow().len() < at_least.max(1) {
            return Ok(());
        }
        let bytes = std::mem::take(&mut *self.spool.0.borrow_mut());
        self.out.append(bytes).await.map_err(|e| StoreError::Output { path: self.out.path.clone(), source: e })
    }
}

struct DbSink {
    db: Db,
    scan_id: i64,
    journal: UringFile,
    pending: Vec<ScanResult>,
    oldest: Option<Instant>,
    last_sync: Instant,
    /// Round trips of every stored reply, stored with the scan at its end.
    latency: Latency,
}

impl DbSink {
    async fn add(&mut self, rows: &[ScanResult]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        // The journal first: once appended, a crash before the commit loses nothing.
        let mut buf = Vec::with_capacity(16 + rows.len() * 24);
        journal::encode(self.scan_id, rows, &mut buf);
        self.journal
            .append(buf)
            .await
            .map_err(|e| StoreError::Journal { path: self.journal.path.clone(), source: e })?;
        self.pending.extend_from_slice(rows);
        for r in rows {
            self.latency.record(r);
        }
        self.oldest.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.oldest = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.db.insert(self.scan_id, &self.pending)?;
        tracing::debug!(rows = self.pending.len(), took = ?started.elapsed(), "committed");
        self.pending.clear();
        if self.last_sync.elapsed() >= SYNC_EVERY {
            tracing::trace!("journal synced");
            self.journal
                .file
                .sync_data()
                .await
                .map_err(|e| StoreError::Journal { path: self.journal.path.clone(), source: e })?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}

async fn open(config: &StoreConfig) -> Result<(Option<DbSink>, Vec<FileSink>), StoreError> {
    let db = match &config.database {
        Some(path) => {
            let db = Db::open(path)?;
            let scan_id = db.begin_scan(&config.start)?;
            let jpath = db::journal_path(path, scan_id);
            let jfail = |e| StoreError::Journal { path: jpath.clone(), source: e };
            let journal = UringFile::create(jpath.clone()).await.map_err(jfail)?;
            // Held until this process ends: it tells any other open of the database that we are alive.
            {
                use std::os::fd::AsRawFd;
                db::try_lock(journal.file.as_raw_fd()).map_err(jfail)?;
            }
            Some(DbSink {
                db,
                scan_id,
                journal,
                pending: Vec::new(),
                oldest: None,
                last_sync: Instant::now(),
                latency: Latency::default(),
            })
        }
        None => None,
    };
    let mut files = Vec::new();
    for OutputFile { format, path } in &config.files {
        let out =
            UringFile::create(path.clone()).await.map_err(|e| StoreError::Output { path: path.clone(), source: e })?;
        let spool = Spool::default();
        let writer = output::writer(*format, spool.clone(), &config.info, true);
        files.push(FileSink { out, spool, writer });
    }
    Ok((db, files))
}

pub(super) async fn run(
    config: StoreConfig,
    mut rx: mpsc::Receiver<Msg>,
    ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
) -> Result<StoreReport, StoreError> {
    let (mut db, mut files) = match open(&config).await {
        Ok(sinks) => sinks,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(StoreReport::default());
        }
    };
    let scan_id = db.as_ref().map(|d| d.scan_id);
    let _ = ready.send(Ok(()));

    let mut report = StoreReport { scan_id, ..StoreReport::default() };
    // The first failure is reported at the end; the failed sink is dropped and
    // the others, and the draining of the channel, go on.
    let mut error: Option<StoreError> = None;
    let mut finish: Option<Finish> = None;
    loop {
        let deadline = db.as_ref().and_then(|d| d.oldest).map(|t| t + COMMIT_AFTER);
        let msg = match deadline {
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(msg) => msg,
                Err(_elapsed) => {
                    commit(&mut db, &mut error).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break };
        match msg {
            Msg::Results(batch) => {
                if let Some(d) = &mut db {
                    let keep: Vec<ScanResult> = if config.store_silent {
                        batch.clone()
                    } else {
                        batch.iter().filter(|r| r.reason != Reason::NoResponse).copied().collect()
                    };
                    if let Err(e) = d.add(&keep).await {
                        error.get_or_insert(e);
                        db = None;
                    } else if d.pending.len() >= COMMIT_ROWS {
                        commit(&mut db, &mut error).await;
                    }
                }
                let mut i = 0;
                while i < files.len() {
                    let sink = &mut files[i];
                    let mut result = Ok(());
                    for r in batch.iter().filter(|r| !config.open_only || r.state == PortState::Open) {
                        if let Err(e) = sink.writer.write(r) {
                            result = Err(StoreError::Output { path: sink.out.path.clone(), source: e });
                            break;
                        }
                    }
                    if result.is_ok() {
                        result = sink.drain_spool(FILE_CHUNK).await;
                    }
                    match result {
                        Ok(()) => i += 1,
                        Err(e) => {
                            error.get_or_insert(e);
                            files.remove(i);
                        }
                    }
                }
            }
            Msg::Finish(f) => finish = Some(f),
        }
    }

    // The channel is closed and empty: store the rest and close the books.
    // A scan whose end was never announced (the sender was dropped) is interrupted.
    let finish = finish.unwrap_or_else(|| {
        let mut f = Finish::default();
        f.scan.interrupted = true;
        f.run.interrupted = true;
        f
    });
    commit(&mut db, &mut error).await;
    if let Some(mut d) = db {
        let started = Instant::now();
        match d.db.finish_scan(d.scan_id, &finish.scan, &d.latency) {
            Ok(rows) => {
                tracing::info!(scan_id = d.scan_id, rows, took = ?started.elapsed(), "scan merged and closed");
                report.rows_stored = rows;
                let _ = d.journal.file.close().await;
                if let Err(e) = std::fs::remove_file(&d.journal.path) {
                    error.get_or_insert(StoreError::Journal { path: d.journal.path.clone(), source: e });
                }
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    for mut sink in files {
        let done = match sink.writer.finish(&finish.run) {
            Ok(()) => sink.drain_spool(0).await,
            Err(e) => Err(StoreError::Output { path: sink.out.path.clone(), source: e }),
        };
        let synced = match done {
            Ok(()) => sink
                .out
                .file
                .sync_data()
                .await
                .map_err(|e| StoreError::Output { path: sink.out.path.clone(), source: e }),
            Err(e) => Err(e),
        };
        if let Err(e) = synced {
            error.get_or_insert(e);
        }
        let _ = sink.out.file.close().await;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

async fn commit(db: &mut Option<DbSink>, error: &mut Option<StoreError>) {
    if let Some(d) = db {
        match d.commit().await {
            Ok(()) => {}
            Err(e) => {
                error.get_or_insert(e);
                *db = None;
            }
        }
    }
}
