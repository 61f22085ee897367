//! The storage task: a thread of its own running a tokio-uring runtime, fed
//! result batches through a bounded channel. It appends each batch to a
//! journal (io_uring), stores it in SQLite sorted into key order, and
//! streams the output files (io_uring). It drains everything it was sent
//! before it reports back, whatever way the scan ended.

pub mod checkpoint;
pub mod db;
pub mod fleet;
pub mod journal;
pub mod lock;
pub mod postgres_scans;
pub mod safe_open;
mod sink;
pub mod stored;
mod task;
mod uring_file;

use crate::banner::Service;
use crate::engine::plan::Cursor;
use crate::latency::Latency;
use crate::output::{OutputFile, RunEnd, RunInfo};
use crate::result::ScanResult;
use checkpoint::Checkpoint;
use db::{ScanEnd, ScanStart};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use thiserror::Error;
use tokio::sync::mpsc;

pub use sink::PostgresRecovered;

/// A fleet scan's shard, leased by the worker that runs it (`prtip fleet work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetShard {
    pub fleet_id: i64,
    /// 1 to the fleet's shard count.
    pub shard: i32,
    /// The shard's scan, where an earlier worker began it.
    pub scan_id: Option<i64>,
    /// Who holds the lease (host and process), and for how long it holds
    /// without being renewed.
    pub worker: String,
    pub lease: std::time::Duration,
    /// Which lease of the shard this is (`fleet_shards.leases`): only its
    /// holder writes, whatever another worker's name.
    pub lease_no: i32,
}

/// `prtip db recover --postgres`: stores what killed scans' journals still
/// held in the server at `url`.
pub fn recover_postgres(url: &str) -> Result<Vec<PostgresRecovered>, StoreError> {
    tokio_uring::start(sink::recover_postgres(url))
}

/// Batches in flight between the engine and the task before the engine waits.
const CHANNEL_BATCHES: usize = 256;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("--database and --postgres name two places to read scans from: give one")]
    TwoStores,
    #[error("scan {0} is interrupted, but what --resume needs of it (its arguments, targets or cursor) is damaged")]
    DamagedCheckpoint(i64),
    #[error(
        "scan {scan}: {rows} stored results are damaged (an address, state or reason prtip never writes): not read"
    )]
    DamagedRows { scan: i64, rows: u64 },
    #[error("database {}: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {}: {source}", path.display())]
    DatabaseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {} was not written by prtip (it has tables of its own): name another file with --database", .0.display())]
    ForeignSchema(PathBuf),
    #[error("database {} was written by an older prtip (schema version {version}): `prtip db recover --database {}` brings it up to date", path.display(), path.display())]
    OlderSchema { path: PathBuf, version: usize },
    #[error("database {} has schema version {version}, newer than this prtip understands", path.display())]
    NewerSchema { path: PathBuf, version: usize },
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("output file {}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("io_uring is not available ({0}): storage and output files need it (is kernel.io_uring_disabled set?)")]
    NoUring(#[source] std::io::Error),
    #[error(
        "PostgreSQL: shard {shard} of fleet {fleet} passed to another worker (this one missed its lease): its results are that worker's to store"
    )]
    LeaseLost { fleet: i64, shard: i32 },
    #[error("fleets are kept in PostgreSQL: read them with --postgres URL")]
    FleetsInPostgres,
    #[error("no fleet {0} in the database")]
    NoFleet(String),
    #[error("no scan {0} in the database")]
    NoScan(i64),
    #[error("no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("database {}: {source}", path.display())]
    Latency {
        path: PathBuf,
        #[source]
        source: crate::latency::LatencyError,
    },
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scan {0} is not an interrupted scan: only those can be resumed")]
    NotResumable(i64),
    #[error("the storage task stopped unexpectedly")]
    TaskDied,
}

impl StoreError {
    /// Whether the user named a database or scan that cannot be read as
    /// asked: bad input (status 2), not a failure.
    pub fn names_the_wrong_database(&self) -> bool {
        matches!(
            self,
            StoreError::NoDatabase(_)
                | StoreError::TwoStores
                | StoreError::DamagedCheckpoint(_)
                | StoreError::NoScan(_)
                | StoreError::NoFleet(_)
                | StoreError::FleetsInPostgres
                // A PostgreSQL that cannot be used, as a database file that cannot be opened.
                | StoreError::Postgres(_)
                | StoreError::ForeignSchema(_)
                | StoreError::OlderSchema { .. }
                | StoreError::NewerSchema { .. }
        )
    }

    /// For `map_err`: an error of the database at `path`.
    pub(crate) fn database(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
        move |source| StoreError::Database { path: path.to_path_buf(), source }
    }

    /// For `map_err`: an error of the journal at `path`.
    pub(crate) fn journal(path: &Path) -> impl Fn(std::io::Error) -> StoreError + Copy + '_ {
        move |source| StoreError::Journal { path: path.to_path_buf(), source }
    }

    /// For `map_err`: an error of the output file at `path`.
    pub(crate) fn output(path: &Path) -> impl Fn(std::io::Error) -> StoreError + Copy + '_ {
        move |source| StoreError::Output { path: path.to_path_buf(), source }
    }

    /// For `map_err`: an error of the checkpoint file at `path`.
    pub(crate) fn checkpoint(path: &Path) -> impl Fn(std::io::Error) -> StoreError + Copy + '_ {
        move |source| StoreError::Checkpoint { path: path.to_path_buf(), source }
    }
}

/// What the task is asked to do.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite database, if results are to be stored.
    pub database: Option<PathBuf>,
    /// PostgreSQL connection string (`--postgres`), if results go there.
    pub postgres: Option<String>,
    /// The fleet scan's shard this run works on.
    pub fleet: Option<FleetShard>,
    /// Also store probes that got no answer (otherwise only counted on the scan).
    pub store_silent: bool,
    /// Output files show open ports only.
    pub open_only: bool,
    /// Output files show at most this many open ports of a host (the
    /// database keeps them all).
    pub max_open_per_host: Option<u64>,
    pub files: Vec<OutputFile>,
    pub start: ScanStart,
    pub info: RunInfo,
    /// What `--resume` needs, kept up to date while the scan runs: in the
    /// scan's row with a database, otherwise in `checkpoint_file`.
    pub checkpoint: Option<Checkpoint>,
    pub checkpoint_file: Option<PathBuf>,
    /// The interrupted scan in the database that this run finishes.
    pub resume_scan: Option<i64>,
}

/// How a scan ended, for the database and the files.
#[derive(Default)]
pub struct Finish {
    pub scan: ScanEnd,
    pub run: RunEnd,
    /// The whole scan's round trips, stored with it.
    pub latency: Latency,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreReport {
    pub scan_id: Option<i64>,
    /// Result rows the scan holds in the database.
    pub rows_stored: u64,
    /// Times the engine found the channel full and had to wait.
    pub backpressure: u64,
    /// Why the scan's checkpoint file could not be kept, if it could not.
    pub checkpoint_lost: Option<String>,
    /// The scan's id in PostgreSQL, and the times the sink lost its
    /// connection there (and connected again).
    pub postgres_scan: Option<i64>,
    pub postgres_lost: u64,
}

enum Msg {
    Results(Vec<ScanResult>),
    /// Results an interrupted run already stored, for the output files of the run that resumes it.
    Replay(Vec<ScanResult>),
    /// Open ports sent before, with what banners saw there.
    Services(Vec<(ScanResult, Service)>),
    /// Every result up to this point was sent; a resumed scan may start at `cursor`.
    Checkpoint {
        cursor: Cursor,
        sent: u64,
    },
    Finish(Box<Finish>),
}

/// The engine's side of the storage task.
pub struct Store {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<Result<StoreReport, StoreError>>,
    backpressure: u64,
    /// The first failure of a sink that keeps results, as soon as it happens.
    failed: Arc<OnceLock<Failed>>,
}

/// A sink's failure, as the scan's side learns of it while the scan runs.
#[derive(Debug)]
pub struct Failed {
    pub why: String,
    /// The fleet shard passed to another worker: nothing more this scan
    /// finds is kept, and the other worker probes the same targets.
    pub shard_lost: bool,
}

impl Store {
    /// Starts the task and waits until the database and every file are open,
    /// so that a bad path fails before the first probe is sent.
    pub fn start(config: StoreConfig) -> Result<Store, StoreError> {
        io_uring::IoUring::new(8).map_err(StoreError::NoUring)?;
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let failed = Arc::new(OnceLock::new());
        let told = failed.clone();
        let thread = std::thread::Builder::new()
            .name("prtip-store".into())
            .spawn(move || tokio_uring::start(task::run(config, rx, ready_tx, told)))
            .map_err(|e| StoreError::Output { path: "storage thread".into(), source: e })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Store { tx, thread, backpressure: 0, failed }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(thread.join().map_or(StoreError::TaskDied, |r| r.err().unwrap_or(StoreError::TaskDied))),
        }
    }

    /// Why results stopped reaching the database or a file, once one failed
    /// (a full disk, a fleet shard taken over).
    pub fn failure(&self) -> Option<&Failed> {
        self.failed.get()
    }

    /// Times `send` found the channel full so far.
    pub fn backpressure(&self) -> u64 {
        self.backpressure
    }

    /// Hands a batch to the task; waits (and counts it) when the channel is full.
    pub fn send(&mut self, batch: Vec<ScanResult>) {
        if !batch.is_empty() {
            self.push(Msg::Results(batch));
        }
    }

    /// Hands over what banners saw on open ports that were sent before:
    /// the database stores it, and the output files write those ports now.
    pub fn services(&mut self, batch: Vec<(ScanResult, Service)>) {
        if !batch.is_empty() {
            self.push(Msg::Services(batch));
        }
    }

    /// Hands the output files results that an interrupted run already stored.
    pub fn replay(&mut self, batch: Vec<ScanResult>) {
        if !batch.is_empty() {
            self.push(Msg::Replay(batch));
        }
    }

    /// Records how far the scan got; everything sent before is stored first.
    pub fn checkpoint(&mut self, cursor: Cursor, sent: u64) {
        self.push(Msg::Checkpoint { cursor, sent });
    }

    fn push(&mut self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.backpressure += 1;
                // A closed channel means the task died; finish() reports why.
                let _ = self.tx.blocking_send(msg);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Tells the task how the scan ended, closes the channel and waits until
    /// everything sent was stored and written.
    pub fn finish(self, end: Finish) -> Result<StoreReport, StoreError> {
        let _ = self.tx.blocking_send(Msg::Finish(Box::new(end)));
        drop(self.tx);
        let mut report = self.thread.join().map_err(|_| StoreError::TaskDied)??;
        report.backpressure = self.backpressure;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PortState, Reason};
    use std::net::Ipv4Addr;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("prtip-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(super) fn config(d: &std::path::Path, files: bool) -> StoreConfig {
        StoreConfig {
            postgres: None,
            fleet: None,
            database: Some(d.join("s.db")),
            store_silent: false,
            open_only: false,
            max_open_per_host: None,
            files: if files { OutputFile::all(&d.join("out")) } else { vec![] },
            start: ScanStart {
                started_us: 1,
                command_line: "prtip test".into(),
                config_json: "{}".into(),
                transport: "raw".into(),
                seed: 1,
            },
            info: RunInfo {
                command_line: "prtip test".into(),
                scan_type: Default::default(),
                start_us: 1,
                ports: "1-65535".into(),
                port_count: 65535,
                hosts_total: 16,
                services: Default::default(),
                banners: false,
            },
            checkpoint: None,
            checkpoint_file: None,
            resume_scan: None,
        }
    }

    pub(super) fn results(n: u32) -> Vec<ScanResult> {
        (0..n)
            .map(|i| ScanResult {
                ip: Ipv4Addr::from(0x0a00_0000 + (i >> 16)).into(),
                port: (i & 0xffff) as u16,
                state: if i % 7 == 0 { PortState::Open } else { PortState::Closed },
                reason: if i % 7 == 0 { Reason::SynAck } else { Reason::Reset },
                ttl: Some(64),
                rtt_us: Some(10),
                time_us: 1_000_000,
            })
            .collect()
    }

    fn count(d: &std::path::Path) -> i64 {
        rusqlite::Connection::open(d.join("s.db"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM scan_results", [], |r| r.get(0))
            .unwrap()
    }

    /// Every queued result is stored, for 0, 1 and a million of them, with the
    /// channel closed while batches are still queued and flushes under way.
    #[test]
    fn drains_everything_it_was_sent() {
        for n in [0u32, 1, 1_000_000] {
            let d = dir(&format!("drain{n}"));
            let mut store = Store::start(config(&d, n == 1)).unwrap();
            let all = results(n);
            for chunk in all.chunks(4096) {
                store.send(chunk.to_vec());
            }
            // finish() immediately: the task is still behind.
            let report = store.finish(Finish::default()).unwrap();
            assert_eq!(report.rows_stored, u64::from(n), "n={n}");
            assert_eq!(count(&d), i64::from(n), "n={n}");
            assert!(!lock::journal_path(&d.join("s.db"), 1).exists(), "journal left behind");
            if n == 1 {
                let csv = std::fs::read_to_string(d.join("out.csv")).unwrap();
                assert_eq!(csv.lines().count(), 2);
                let xml = std::fs::read_to_string(d.join("out.xml")).unwrap();
                assert!(xml.trim_end().ends_with("</nmaprun>"));
            }
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    /// With `--open` a completed scan keeps its open ports; an interrupted
    /// one keeps every answer, which its resume needs, until the run that
    /// resumes it completes.
    #[test]
    fn open_only_keeps_every_answer_until_the_scan_completes() {
        let d = dir("open-only");
        let mut c = config(&d, false);
        c.open_only = true;
        let run = |c: StoreConfig, rows: Vec<ScanResult>, interrupted: bool| {
            let mut store = Store::start(c).unwrap();
            store.send(rows);
            let mut end = Finish::default();
            end.scan.interrupted = interrupted;
            store.finish(end).unwrap().rows_stored
        };
        let all = results(700);
        assert_eq!(run(c.clone(), all.clone(), false), 100, "a completed scan: the open ports");
        assert_eq!(run(c.clone(), all[..350].to_vec(), true), 350, "an interrupted one: every answer");
        c.resume_scan = Some(2);
        assert_eq!(run(c, all[350..].to_vec(), false), 100, "resumed to the end: the open ports");
        let db = rusqlite::Connection::open(d.join("s.db")).unwrap();
        let per_scan: Vec<(i64, i64)> = db
            .prepare("SELECT scan_id, COUNT(*) FROM scan_results WHERE state = 'open' GROUP BY scan_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(per_scan, [(1, 100), (2, 100)]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_database_fails_before_the_scan() {
        let d = dir("unwritable");
        let mut c = config(&d, false);
        c.database = Some(d.join("no/such/dir/s.db"));
        assert!(matches!(Store::start(c), Err(StoreError::Database { .. })));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
