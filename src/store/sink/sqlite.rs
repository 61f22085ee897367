//! The SQLite sink: every result journaled first (io_uring), then stored
//! in SQLite in large sorted batches, and the scan's cursor saved once the
//! results it counts on are durable.

use super::{Failure, Sink, SinkFuture};
use crate::banner::Service;
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use crate::store::db::{Db, STORE_ROWS};
use crate::store::uring_file::UringFile;
use crate::store::{Finish, StoreConfig, StoreError, StoreReport, journal, lock};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// The journal is fsynced this long after its first unsynced write at the
/// latest, and the cursor saved after that: a sync costs milliseconds, and a
/// killed process loses nothing already written; the sync is for power loss.
const SYNC_EVERY: Duration = Duration::from_secs(1);

pub(in crate::store) struct SqliteSink {
    pub(in crate::store) db: Db,
    pub(in crate::store) scan_id: i64,
    /// Every answered port (and with `--store-silent` every probe), whatever
    /// `--open` says: what a crash recovery or a resume needs.
    pub(in crate::store) journal: UringFile,
    /// Journal records not written yet: written once the messages taken
    /// with them are handled, and always before the cursor is saved.
    unwritten: Vec<u8>,
    /// What the database keeps of a scan that completes: with `--open`, the open ports only.
    waiting: Vec<ScanResult>,
    open_only: bool,
    store_silent: bool,
    /// The run finishes an interrupted scan.
    resumes: bool,
    /// Whether the scan may hold rows from before its end: it resumes an
    /// interrupted one, or rows were stored while it ran.
    earlier: bool,
    /// When the journal was first written since its last sync.
    unsynced: Option<Instant>,
    /// The scan's cursor, saved once the journal is synced: the results it
    /// counts on must be as durable as it is.
    cursor: Option<(Cursor, u64)>,
}

impl SqliteSink {
    /// Opens the database and begins (or takes up again) the scan.
    pub(in crate::store) fn open(path: &Path, config: &StoreConfig) -> Result<SqliteSink, StoreError> {
        let mut db = Db::open(path)?;
        let (scan_id, journal) = match config.resume_scan {
            Some(id) => (id, db.reopen_scan(id)?),
            None => db.begin_scan(&config.start, config.checkpoint.as_ref())?,
        };
        // Held until this process ends: it tells any other open of the database that we are alive.
        let jpath = lock::journal_path(path, scan_id);
        let journal = UringFile::from_std(jpath.clone(), journal).map_err(StoreError::journal(&jpath))?;
        Ok(SqliteSink {
            db,
            scan_id,
            journal,
            unwritten: Vec::new(),
            waiting: Vec::new(),
            open_only: config.open_only,
            store_silent: config.store_silent,
            resumes: config.resume_scan.is_some(),
            earlier: config.resume_scan.is_some(),
            unsynced: None,
            cursor: None,
        })
    }

    pub(in crate::store) async fn store(&mut self, rows: &[ScanResult]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        journal::encode(self.scan_id, rows, &mut self.unwritten);
        let open_only = self.open_only;
        let mut keep = rows.iter().filter(|r| !open_only || r.state.is_found()).copied();
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
        self.unwritten = self.journal.append(bytes).await.map_err(StoreError::journal(&self.journal.path))?;
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
        let bytes = std::fs::read(&self.journal.path).map_err(StoreError::journal(&self.journal.path))?;
        Ok(journal::rows_of(&bytes, self.scan_id).collect())
    }

    async fn sync_journal(&mut self) -> Result<(), StoreError> {
        self.write_journal().await?;
        if self.unsynced.take().is_some() {
            tracing::trace!("journal synced");
            self.journal.file.sync_data().await.map_err(StoreError::journal(&self.journal.path))?;
        }
        if let Some((cursor, sent)) = self.cursor.take() {
            self.db.save_cursor(self.scan_id, cursor, sent)?;
        }
        Ok(())
    }

    /// Saves the cursor now if the journal has nothing unsynced, otherwise
    /// with its next sync: syncing a journal that grows by megabytes a
    /// second at every checkpoint (four a second) slowed the scan itself.
    async fn save_cursor(&mut self, cursor: Cursor, sent: u64) -> Result<(), StoreError> {
        self.cursor = Some((cursor, sent));
        self.write_journal().await?;
        if self.unsynced.is_none() { self.sync_journal().await } else { Ok(()) }
    }

    async fn close(mut self, finish: &Finish, report: &mut StoreReport) -> Result<(), StoreError> {
        let started = Instant::now();
        let interrupted = finish.scan.interrupted;
        // Only a resumed scan can hold rows that `--open` drops: its earlier runs' closed ports.
        let drop_closed = self.open_only && !interrupted && self.resumes;
        let mut rows = self.last_rows(interrupted)?;
        let added = self.db.finish_scan(
            self.scan_id,
            &finish.scan,
            &finish.latency,
            &finish.run.flagged,
            &mut rows,
            drop_closed,
        )?;
        let rows = if self.earlier { self.db.rows_of(self.scan_id)? } else { added };
        tracing::info!(scan_id = self.scan_id, rows, took = ?started.elapsed(), "scan stored and closed");
        report.rows_stored = rows;
        let SqliteSink { db, journal, .. } = self;
        // Closing, as the last connection, checkpoints the WAL into the database file and syncs
        // it: only then would the rows outlive a power cut without the journal.
        drop(db);
        let _ = journal.file.close().await;
        std::fs::remove_file(&journal.path).map_err(StoreError::journal(&journal.path))
    }
}

impl Sink for SqliteSink {
    fn failure(&self) -> Failure {
        Failure::Results
    }

    fn add<'a>(&'a mut self, batch: &'a [ScanResult], answered: &'a [ScanResult]) -> SinkFuture<'a> {
        Box::pin(self.store(if self.store_silent { batch } else { answered }))
    }

    fn services<'a>(&'a mut self, batch: &'a [(ScanResult, Service)]) -> SinkFuture<'a> {
        let services = batch.iter().map(|(r, s)| (r.ip, r.port, s));
        Box::pin(std::future::ready(self.db.insert_services(self.scan_id, services)))
    }

    fn checkpoint(&mut self, cursor: Cursor, sent: u64) -> SinkFuture<'_> {
        Box::pin(self.save_cursor(cursor, sent))
    }

    fn flush(&mut self) -> SinkFuture<'_> {
        Box::pin(self.write_journal())
    }

    fn sync_due(&self) -> Option<Instant> {
        self.unsynced.map(|t| t + SYNC_EVERY)
    }

    fn sync(&mut self) -> SinkFuture<'_> {
        Box::pin(self.sync_journal())
    }

    fn finish<'a>(self: Box<Self>, finish: &'a Finish, report: &'a mut StoreReport) -> SinkFuture<'a> {
        Box::pin((*self).close(finish, report))
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
            let mut sink = SqliteSink::open(&dir.path().join("s.db"), &config(dir.path(), false)).unwrap();
            sink.store(&rows).await.unwrap();
            assert_eq!(sink.db.rows_of(sink.scan_id).unwrap(), STORE_ROWS as u64, "stored while scanning");
            let journal = std::fs::read(&sink.journal.path).unwrap();
            assert_eq!(journal::rows_of(&journal, sink.scan_id).count(), STORE_ROWS, "journaled first");
        });
    }
}
