//! The storage task's body, on the tokio-uring runtime of its own thread.
//!
//! The loop has one exit: `recv_many()` returning no message, which tokio's
//! channel does only once every sender is gone and every queued message was
//! received. Nothing can be left in the channel when the task ends, and no
//! `select!` can lose a message to a timer: the sync timer wraps
//! `recv_many()` itself and never takes a message away.

use super::checkpoint::{self, Checkpoint};
use super::db::{self, Db, STORE_ROWS};
use super::{Finish, Msg, StoreConfig, StoreError, StoreReport, journal};
use crate::engine::plan::Cursor;
use crate::output::{self, OutputFile, ResultWriter};
use crate::result::{PortState, Reason, ScanResult};
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_uring::fs::File;

/// The journal is fsynced this long after its first unsynced write at the
/// latest, and the cursor saved after that: a sync costs milliseconds, and a
/// killed process loses nothing already written; the sync is for power loss.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The checkpoint file is rewritten at most this often while the scan runs.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Output files are written in chunks of about this size.
const FILE_CHUNK: usize = 256 * 1024;
/// Messages taken from the channel at once; their results go to the journal
/// in one write. Taking in a million rows took 100-175 ms with a write for
/// each batch, 67-90 ms this way, and 45-60 ms with no journal at all.
const MESSAGES_AT_ONCE: usize = 64;

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

    /// Opens a file to append to, creating it if needed.
    async fn append_to(path: PathBuf) -> std::io::Result<UringFile> {
        let file = tokio_uring::fs::OpenOptions::new().write(true).create(true).open(&path).await?;
        let offset = std::fs::metadata(&path)?.len();
        Ok(UringFile { path, file, offset })
    }

    /// Appends `rows` as one journal record.
    async fn append_record(&mut self, scan_id: i64, rows: &[ScanResult]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(16 + rows.len() * 24);
        journal::encode(scan_id, rows, &mut buf);
        self.append(buf).await.map(drop)
    }

    /// Appends `bytes`; hands the buffer back, emptied, for the next ones.
    async fn append(&mut self, bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        if bytes.is_empty() {
            return Ok(bytes);
        }
        let len = bytes.len() as u64;
        let (res, mut bytes) = self.file.write_all_at(bytes, self.offset).await;
        res?;
        self.offset += len;
        bytes.clear();
        Ok(bytes)
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
        self.out
            .append(bytes)
            .await
            .map(drop)
            .map_err(|e| StoreError::Output { path: self.out.path.clone(), source: e })
    }
}

struct DbSink {
    db: Db,
    scan_id: i64,
    /// Every answered port (and with `--store-silent` every probe), whatever
    /// `--open` says: what a crash recovery or a resume needs.
    journal: UringFile,
    /// Journal records not written yet: written once the messages taken
    /// with them are handled, and always before the cursor is saved.
    unwritten: Vec<u8>,
    /// What the database keeps of a scan that completes: with `--open`, the open ports only.
    waiting: Vec<ScanResult>,
    open_only: bool,
    /// Whether the scan may hold rows from before its end: it resumes an
    /// interrupted one, or rows were stored while it ran.
    earlier: bool,
    /// When the journal was first written since its last sync.
    unsynced: Option<Instant>,
    /// The scan's cursor, saved once the journal is synced: the results it
    /// counts on must be as durable as it is.
    cursor: Option<(Cursor, u64)>,
}

impl DbSink {
    /// Opens the database and begins (or takes up again) the scan.
    fn open(path: &Path, config: &StoreConfig) -> Result<DbSink, StoreError> {
        let mut db = Db::open(path)?;
        let (scan_id, journal) = match config.resume_scan {
            Some(id) => (id, db.reopen_scan(id)?),
            None => db.begin_scan(&config.start, config.checkpoint.as_ref())?,
        };
        // Held until this process ends: it tells any other open of the database that we are alive.
        let journal = UringFile { path: db::journal_path(path, scan_id), file: File::from_std(journal), offset: 0 };
        Ok(DbSink {
            db,
            scan_id,
            journal,
            unwritten: Vec::new(),
            waiting: Vec::new(),
            open_only: config.open_only,
            earlier: config.resume_scan.is_some(),
            unsynced: None,
            cursor: None,
        })
    }

    async fn add(&mut self, rows: &[ScanResult]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        journal::encode(self.scan_id, rows, &mut self.unwritten);
        let open_only = self.open_only;
        let mut keep = rows.iter().filter(|r| !open_only || r.state == PortState::Open).copied();
        loop {
            if self.waiting.capacity() == 0 {
                // All at once: growing by doubling copied the rows twice over. Untouched, the memory costs nothing.
                self.waiting.reserve_exact(STORE_ROWS);
            }
            self.waiting.extend(keep.by_ref().take(STORE_ROWS - self.waiting.len()));
            if self.waiting.len() < STORE_ROWS {
                return Ok(());
            }
            // The journal first: a crash or a failed insert must find these rows there.
            self.write_journal().await?;
            let started = Instant::now();
            self.db.insert(self.scan_id, &mut self.waiting)?;
            self.earlier = true;
            tracing::debug!(rows = self.waiting.len(), took = ?started.elapsed(), "stored");
            self.waiting.clear();
        }
    }

    /// Once written, a crash before the rows reach SQLite loses nothing.
    async fn write_journal(&mut self) -> Result<(), StoreError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.unwritten);
        self.unwritten = self
            .journal
            .append(bytes)
            .await
            .map_err(|e| StoreError::Journal { path: self.journal.path.clone(), source: e })?;
        self.unsynced.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The rows that go into the database when the scan ends. A scan
    /// interrupted with `--open` keeps every answered port, read back from
    /// the journal, until the run that resumes it completes: the resume
    /// must not ask again what was answered, and counts it.
    fn last_rows(&mut self, interrupted: bool) -> Result<Vec<ScanResult>, StoreError> {
        if !(self.open_only && interrupted) {
            return Ok(std::mem::take(&mut self.waiting));
        }
        let bytes = std::fs::read(&self.journal.path)
            .map_err(|e| StoreError::Journal { path: self.journal.path.clone(), source: e })?;
        Ok(journal::rows_of(&bytes, self.scan_id).collect())
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        self.write_journal().await?;
        if self.unsynced.take().is_some() {
            tracing::trace!("journal synced");
            self.journal
                .file
                .sync_data()
                .await
                .map_err(|e| StoreError::Journal { path: self.journal.path.clone(), source: e })?;
        }
        if let Some((cursor, sent)) = self.cursor.take() {
            self.db.save_cursor(self.scan_id, cursor, sent)?;
        }
        Ok(())
    }

    /// Saves the cursor now if the journal has nothing unsynced, otherwise
    /// with its next sync: syncing a journal that grows by megabytes a
    /// second at every checkpoint (four a second) slowed the scan itself.
    async fn checkpoint(&mut self, cursor: Cursor, sent: u64) -> Result<(), StoreError> {
        self.cursor = Some((cursor, sent));
        self.write_journal().await?;
        if self.unsynced.is_none() { self.sync().await } else { Ok(()) }
    }
}

/// Without a database: the checkpoint as a small JSON file, rewritten whole,
/// and the results received so far appended to a journal beside it. The
/// results always reach the journal before the cursor that counts on them.
/// The journal is locked while the scan runs, so that `--resume` never takes
/// over a live scan's checkpoint.
struct CheckpointFile {
    path: PathBuf,
    checkpoint: Checkpoint,
    results: UringFile,
    saved: Instant,
}

impl CheckpointFile {
    async fn open(path: PathBuf, checkpoint: Checkpoint) -> Result<CheckpointFile, StoreError> {
        let fail = |e| StoreError::Checkpoint { path: path.clone(), source: e };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let rpath = checkpoint::results_path(&path);
        let rfail = |e| StoreError::Checkpoint { path: rpath.clone(), source: e };
        // A tail torn by a crash is cut off: appended after it, later records could not be read.
        match std::fs::read(&rpath) {
            Ok(bytes) => {
                let intact = journal::intact_len(&bytes);
                if intact < bytes.len() {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&rpath)
                        .and_then(|f| f.set_len(intact as u64))
                        .map_err(rfail)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(rfail(e)),
        }
        let results = UringFile::append_to(rpath.clone()).await.map_err(rfail)?;
        {
            use std::os::fd::AsRawFd;
            db::lock(results.file.as_raw_fd()).map_err(rfail)?;
        }
        let mut file = CheckpointFile { path, checkpoint, results, saved: Instant::now() };
        file.save()?;
        Ok(file)
    }

    fn fail(&self, source: std::io::Error) -> StoreError {
        StoreError::Checkpoint { path: self.path.clone(), source }
    }

    async fn add(&mut self, rows: &[ScanResult]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.results
            .append_record(0, rows)
            .await
            .map_err(|e| StoreError::Checkpoint { path: self.results.path.clone(), source: e })
    }

    /// Replaces the file whole, so that a crash leaves the old one or the new one.
    fn save(&mut self) -> Result<(), StoreError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.checkpoint.to_json()).map_err(|e| self.fail(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.fail(e))
    }

    /// Records the cursor; written at most every `SAVE_EVERY` unless `now`
    /// (an older cursor on disk is only more work for a resume, never less).
    fn advance(&mut self, cursor: Cursor, sent: u64, now: bool) -> Result<(), StoreError> {
        self.checkpoint.cursor = cursor;
        self.checkpoint.sent = sent;
        if now || self.saved.elapsed() >= SAVE_EVERY {
            self.saved = Instant::now();
            self.save()?;
        }
        Ok(())
    }

    /// A completed scan has nothing to resume: both files go.
    async fn remove(self) -> Result<(), StoreError> {
        let _ = self.results.file.close().await;
        for p in [&self.path, &self.results.path] {
            std::fs::remove_file(p).map_err(|e| StoreError::Checkpoint { path: p.clone(), source: e })?;
        }
        Ok(())
    }
}

struct Sinks {
    db: Option<DbSink>,
    files: Vec<FileSink>,
    checkpoint: Option<CheckpointFile>,
    /// Why there is no checkpoint file: the scan goes on, but cannot be resumed.
    checkpoint_lost: Option<StoreError>,
}

async fn open(config: &StoreConfig) -> Result<Sinks, StoreError> {
    let db = match &config.database {
        Some(path) => Some(DbSink::open(path, config)?),
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
    let (checkpoint, checkpoint_lost) = match (&db, &config.checkpoint, &config.checkpoint_file) {
        (None, Some(c), Some(path)) => match CheckpointFile::open(path.clone(), c.clone()).await {
            Ok(file) => (Some(file), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    Ok(Sinks { db, files, checkpoint, checkpoint_lost })
}

pub(super) async fn run(
    config: StoreConfig,
    mut rx: mpsc::Receiver<Msg>,
    ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
) -> Result<StoreReport, StoreError> {
    let Sinks { mut db, mut files, mut checkpoint, mut checkpoint_lost } = match open(&config).await {
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
    // Where the scan stands if it ends without saying how (its sender dropped).
    let mut last = config.checkpoint.as_ref().map_or((Cursor::default(), 0), |c| (c.cursor, c.sent));
    let mut msgs = Vec::with_capacity(MESSAGES_AT_ONCE);
    loop {
        let deadline = db.as_ref().and_then(|d| d.unsynced).map(|t| t + SYNC_EVERY);
        let taken = match deadline {
            Some(at) => match tokio::time::timeout_at(at, rx.recv_many(&mut msgs, MESSAGES_AT_ONCE)).await {
                Ok(taken) => taken,
                Err(_elapsed) => {
                    sync(&mut db, &mut error).await;
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
                    // Silent ports come in batches of their own at the end of a scan: most batches are all answers.
                    let answered: Cow<[ScanResult]> = match batch.iter().all(|r| r.reason != Reason::NoResponse) {
                        true => Cow::Borrowed(&batch),
                        false => batch.iter().filter(|r| r.reason != Reason::NoResponse).copied().collect(),
                    };
                    if let Some(d) = &mut db
                        && let Err(e) = d.add(if config.store_silent { &batch } else { &answered }).await
                    {
                        error.get_or_insert(e);
                        db = None;
                    }
                    if let Some(c) = &mut checkpoint
                        && let Err(e) = c.add(&answered).await
                    {
                        checkpoint_lost.get_or_insert(e);
                        checkpoint = None;
                    }
                    write_files(&mut files, &batch, config.open_only, &mut error).await;
                }
                Msg::Replay(batch) => write_files(&mut files, &batch, config.open_only, &mut error).await,
                Msg::Checkpoint { cursor, sent } => {
                    last = (cursor, sent);
                    if let Some(d) = &mut db
                        && let Err(e) = d.checkpoint(cursor, sent).await
                    {
                        error.get_or_insert(e);
                        db = None;
                    }
                    if let Some(c) = &mut checkpoint
                        && let Err(e) = c.advance(cursor, sent, false)
                    {
                        checkpoint_lost.get_or_insert(e);
                        checkpoint = None;
                    }
                }
                Msg::Finish(f) => finish = Some(*f),
            }
        }
        if let Some(d) = &mut db
            && let Err(e) = d.write_journal().await
        {
            error.get_or_insert(e);
            db = None;
        }
        // A channel that never empties never lets the timer above fire.
        if db.as_ref().and_then(|d| d.unsynced).is_some_and(|t| t.elapsed() >= SYNC_EVERY) {
            sync(&mut db, &mut error).await;
        }
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
    if let Some(mut d) = db {
        let started = Instant::now();
        let interrupted = finish.scan.interrupted;
        // Only a resumed scan can hold rows that `--open` drops: its earlier runs' closed ports.
        let drop_closed = d.open_only && !interrupted && config.resume_scan.is_some();
        let stored = d
            .last_rows(interrupted)
            .and_then(|mut rows| d.db.finish_scan(d.scan_id, &finish.scan, &finish.latency, &mut rows, drop_closed))
            .and_then(|added| if d.earlier { d.db.rows_of(d.scan_id) } else { Ok(added) });
        match stored {
            Ok(rows) => {
                tracing::info!(scan_id = d.scan_id, rows, took = ?started.elapsed(), "scan stored and closed");
                report.rows_stored = rows;
                let DbSink { db, journal, .. } = d;
                // Closing, as the last connection, checkpoints the WAL into the database file and syncs
                // it: only then would the rows outlive a power cut without the journal.
                drop(db);
                let _ = journal.file.close().await;
                if let Err(e) = std::fs::remove_file(&journal.path) {
                    error.get_or_insert(StoreError::Journal { path: journal.path, source: e });
                }
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    if let Some(c) = checkpoint {
        let done = if finish.scan.interrupted {
            let mut c = c;
            c.advance(finish.scan.cursor, finish.scan.probes_sent, true)
        } else {
            c.remove().await
        };
        if let Err(e) = done {
            checkpoint_lost.get_or_insert(e);
        }
    }
    report.checkpoint_lost = checkpoint_lost.map(|e| e.to_string());
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

/// Writes a batch to every output file; a file that fails is dropped and its error kept.
async fn write_files(files: &mut Vec<FileSink>, batch: &[ScanResult], open_only: bool, error: &mut Option<StoreError>) {
    let mut i = 0;
    while i < files.len() {
        let sink = &mut files[i];
        let mut result = Ok(());
        for r in batch.iter().filter(|r| !open_only || r.state == PortState::Open) {
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

async fn sync(db: &mut Option<DbSink>, error: &mut Option<StoreError>) {
    if let Some(d) = db {
        match d.sync().await {
            Ok(()) => {}
            Err(e) => {
                error.get_or_insert(e);
                *db = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{config, results};

    /// Rows that go into SQLite while the scan runs are in the journal
    /// first: a crash, or an insert that fails, must find them there.
    #[test]
    fn rows_stored_while_scanning_were_journaled_first() {
        let dir = tempfile::tempdir().unwrap();
        let rows = results(STORE_ROWS as u32);
        tokio_uring::start(async {
            let mut sink = DbSink::open(&dir.path().join("s.db"), &config(dir.path(), false)).unwrap();
            sink.add(&rows).await.unwrap();
            assert_eq!(sink.db.rows_of(sink.scan_id).unwrap(), STORE_ROWS as u64, "stored while scanning");
            let journal = std::fs::read(&sink.journal.path).unwrap();
            assert_eq!(journal::rows_of(&journal, sink.scan_id).count(), STORE_ROWS, "journaled first");
        });
    }
}
