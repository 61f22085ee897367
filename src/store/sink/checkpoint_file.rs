//! Without a database: the checkpoint as a small JSON file, rewritten whole,
//! and the results received so far appended to a journal beside it. The
//! results always reach the journal, and the disk, before the cursor that
//! counts on them: a power cut may lose the last second, never skip results.
//! The journal is locked while the scan runs, so that `--resume` never takes
//! over a live scan's checkpoint.

use super::{Failure, Sink, SinkFuture};
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::uring_file::UringFile;
use crate::store::{Finish, StoreError, StoreReport, journal, lock, safe_open};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The checkpoint file is rewritten at most this often while the scan runs.
const SAVE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct CheckpointFile {
    path: PathBuf,
    checkpoint: Checkpoint,
    results: UringFile,
    /// Results the journal holds: written into each checkpoint saved, so
    /// that a resume can tell a journal that lost some.
    journaled: u64,
    saved: Instant,
}

impl CheckpointFile {
    pub(super) async fn open(path: PathBuf, checkpoint: Checkpoint) -> Result<CheckpointFile, StoreError> {
        if let Some(dir) = path.parent() {
            safe_open::state_dir(dir).map_err(StoreError::checkpoint(dir))?;
        }
        let rpath = checkpoint::results_path(&path);
        let rfail = StoreError::checkpoint(&rpath);
        // A tail torn by a crash is cut off: appended after it, later records could not be read.
        let journaled = match std::fs::read(&rpath) {
            Ok(bytes) => {
                let (intact, rows) = journal::intact(&bytes);
                if intact < bytes.len() {
                    safe_open::writing().open(&rpath).and_then(|f| f.set_len(intact as u64)).map_err(rfail)?;
                }
                rows
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(rfail(e)),
        };
        let results = safe_open::writing().create(true).open(&rpath).map_err(|e| rfail(safe_open::explain(e)))?;
        lock::lock(&results).map_err(rfail)?;
        let results = UringFile::from_std(rpath.clone(), results).map_err(rfail)?;
        let mut file = CheckpointFile { path, checkpoint, results, journaled, saved: Instant::now() };
        file.save().await?;
        Ok(file)
    }

    /// Replaces the file whole, so that a crash leaves the old one or the
    /// new one, once the results it counts on are on disk.
    async fn save(&mut self) -> Result<(), StoreError> {
        self.results.file.sync_data().await.map_err(StoreError::checkpoint(&self.results.path))?;
        self.checkpoint.results = Some(self.journaled);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let fail = StoreError::checkpoint(&self.path);
        // Whatever a crash (or anyone) left at the temporary name goes; a new file is made in its place.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        let mut file = safe_open::writing().create_new(true).open(&tmp).map_err(|e| fail(safe_open::explain(e)))?;
        std::io::Write::write_all(&mut file, self.checkpoint.to_json().as_bytes()).map_err(fail)?;
        file.sync_data().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        // The rename is durable once the directory is.
        match self.path.parent() {
            Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::checkpoint(dir)),
            None => Ok(()),
        }
    }

    /// Records the cursor; written at most every `SAVE_EVERY` unless `now`
    /// (an older cursor on disk is only more work for a resume, never less).
    async fn advance(&mut self, cursor: Cursor, sent: u64, now: bool) -> Result<(), StoreError> {
        self.checkpoint.cursor = cursor;
        self.checkpoint.sent = sent;
        if now || self.saved.elapsed() >= SAVE_EVERY {
            self.saved = Instant::now();
            self.save().await?;
        }
        Ok(())
    }

    /// A completed scan has nothing to resume: both files go.
    async fn remove(self) -> Result<(), StoreError> {
        let _ = self.results.file.close().await;
        for p in [&self.path, &self.results.path] {
            std::fs::remove_file(p).map_err(StoreError::checkpoint(p))?;
        }
        Ok(())
    }
}

impl Sink for CheckpointFile {
    fn failure(&self) -> Failure {
        Failure::Resume
    }

    fn add<'a>(&'a mut self, _batch: &'a [ScanResult], answered: &'a [ScanResult]) -> SinkFuture<'a> {
        Box::pin(async move {
            if answered.is_empty() {
                return Ok(());
            }
            self.results.append_record(0, answered).await.map_err(StoreError::checkpoint(&self.results.path))?;
            self.journaled += answered.len() as u64;
            Ok(())
        })
    }

    fn checkpoint(&mut self, cursor: Cursor, sent: u64) -> SinkFuture<'_> {
        Box::pin(self.advance(cursor, sent, false))
    }

    fn finish<'a>(mut self: Box<Self>, finish: &'a Finish, _report: &'a mut StoreReport) -> SinkFuture<'a> {
        Box::pin(async move {
            match finish.scan.interrupted {
                true => self.advance(finish.scan.cursor, finish.scan.probes_sent, true).await,
                false => (*self).remove().await,
            }
        })
    }
}
