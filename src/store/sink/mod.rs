//! Where the storage task puts a scan's results: each destination is one
//! `Sink`. SQLite, the output files and the checkpoint file are the sinks
//! today; another database is one more file here and one more line in `open`.

mod checkpoint_file;
mod output_file;
pub(super) mod postgres;
mod sqlite;

pub use postgres::{Recovered as PostgresRecovered, recover as recover_postgres};
pub(super) use sqlite::SqliteSink;

use super::{Finish, StoreConfig, StoreError, StoreReport};
use crate::banner::Service;
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use checkpoint_file::CheckpointFile;
use output_file::OutputFile;
use std::future::Future;
use std::pin::Pin;
use tokio::time::Instant;

/// The futures of a sink's work: on the task's one thread, never sent anywhere.
pub(super) type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'a>>;

fn done<'a>() -> SinkFuture<'a> {
    Box::pin(std::future::ready(Ok(())))
}

/// What a sink's failure costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The scan's results: the scan ends in an error (once every other sink has its rows).
    Results,
    /// Only the chance to resume the scan: it goes on, and says so at the end.
    Resume,
}

/// One destination of a scan's results. The task hands every sink the same
/// messages in order; a sink that fails is dropped and the others go on.
pub(super) trait Sink {
    fn failure(&self) -> Failure;

    /// Takes a batch: `batch` as the engine sent it (silent probes too) and
    /// `answered`, the same without the probes nothing answered.
    fn add<'a>(&'a mut self, batch: &'a [ScanResult], answered: &'a [ScanResult]) -> SinkFuture<'a>;

    /// Results an interrupted run stored, shown again by the run that resumes it.
    fn replay<'a>(&'a mut self, _batch: &'a [ScanResult]) -> SinkFuture<'a> {
        done()
    }

    /// What banners saw on open ports added before.
    fn services<'a>(&'a mut self, _batch: &'a [(ScanResult, Service)]) -> SinkFuture<'a> {
        done()
    }

    /// Every result before this was added: a resume may start at `cursor`.
    fn checkpoint(&mut self, _cursor: Cursor, _sent: u64) -> SinkFuture<'_> {
        done()
    }

    /// The end of a round of messages: what was buffered for them goes out.
    fn flush(&mut self) -> SinkFuture<'_> {
        done()
    }

    /// When `sync` is next due: data written but not yet durable.
    fn sync_due(&self) -> Option<Instant> {
        None
    }

    fn sync(&mut self) -> SinkFuture<'_> {
        done()
    }

    /// The scan ended as `finish` says: store the rest, close, and say in `report` what was kept.
    fn finish<'a>(self: Box<Self>, finish: &'a Finish, report: &'a mut StoreReport) -> SinkFuture<'a>;
}

/// The sinks of a scan, as opened.
pub(super) struct Opened {
    pub(super) sinks: Vec<Box<dyn Sink>>,
    /// Why there is no checkpoint file: the scan goes on, but cannot be resumed.
    pub(super) resume_lost: Option<StoreError>,
    /// The scan's id in the database.
    pub(super) scan_id: Option<i64>,
}

/// Opens every sink the configuration asks for. A sink whose failure costs
/// the results fails the whole start; one that costs only the resume is
/// left out, with why.
pub(super) async fn open(config: &StoreConfig) -> Result<Opened, StoreError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let mut scan_id = None;
    if let Some(path) = &config.database {
        let db = SqliteSink::open(path, config)?;
        scan_id = Some(db.scan_id);
        sinks.push(Box::new(db));
    }
    if let Some(url) = &config.postgres {
        sinks.push(Box::new(postgres::PostgresSink::open(url, config).await?));
    }
    let mut files: Vec<Box<dyn Sink>> = Vec::new();
    for file in &config.files {
        files.push(Box::new(OutputFile::create(file, config).await?));
    }
    // Last: a start that fails leaves no checkpoint behind for `--resume` to find.
    let mut resume_lost = None;
    if let (None, Some(c), Some(path)) = (&config.database, &config.checkpoint, &config.checkpoint_file) {
        match CheckpointFile::open(path.clone(), c.clone()).await {
            Ok(file) => sinks.push(Box::new(file)),
            Err(e) => resume_lost = Some(e),
        }
    }
    sinks.extend(files);
    Ok(Opened { sinks, resume_lost, scan_id })
}
