//! The SQLite database: a versioned schema that accumulates scans, batched
//! inserts, and the reads behind `prtip db`.

use super::StoreError;
use super::checkpoint::{self, Checkpoint};
use super::journal;
use crate::engine::plan::Cursor;
use crate::latency::{self, Latency, Series};
use crate::output::decimal;
use crate::output::time::rfc3339_us;
use crate::result::{PortState, Reason, ScanResult};
use hdrhistogram::Histogram;
use rusqlite::{Connection, OptionalExtension, params};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// One step of the schema, from the previous version to the next.
enum Migration {
    Sql(&'static str),
    /// A step SQL alone cannot take (parsing the text of older rows).
    Code(fn(&rusqlite::Transaction) -> rusqlite::Result<()>),
}

/// Each entry takes the schema from the previous version to the next;
/// `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(
        r#"
CREATE TABLE scans (
    id             INTEGER PRIMARY KEY,
    started_at     TEXT NOT NULL,
    ended_at       TEXT,
    command_line   TEXT NOT NULL,
    config         TEXT NOT NULL,
    transport      TEXT NOT NULL,
    seed           INTEGER NOT NULL,
    probes_sent    INTEGER NOT NULL DEFAULT 0,
    open_count     INTEGER NOT NULL DEFAULT 0,
    closed_count   INTEGER NOT NULL DEFAULT 0,
    filtered_count INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'interrupted'))
);
CREATE TABLE scan_results (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    ip      TEXT NOT NULL,
    port    INTEGER NOT NULL,
    proto   TEXT NOT NULL,
    state   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    ttl     INTEGER,
    rtt_us  INTEGER,
    time    TEXT NOT NULL,
    PRIMARY KEY (scan_id, ip, port, proto)
) WITHOUT ROWID;
CREATE INDEX scan_results_state ON scan_results (scan_id, state, port);
CREATE TABLE pending_results (
    scan_id INTEGER NOT NULL,
    ip      TEXT NOT NULL,
    port    INTEGER NOT NULL,
    proto   TEXT NOT NULL,
    state   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    ttl     INTEGER,
    rtt_us  INTEGER,
    time    TEXT NOT NULL
);
"#,
    ),
    Migration::Sql(
        r#"
CREATE TABLE scan_latency (
    scan_id   INTEGER NOT NULL REFERENCES scans(id),
    series    TEXT NOT NULL,
    histogram BLOB NOT NULL,
    PRIMARY KEY (scan_id, series)
) WITHOUT ROWID;
"#,
    ),
    // What `--resume` needs: the arguments, the resolved targets, how far the scan got.
    Migration::Sql(
        r#"
ALTER TABLE scans ADD COLUMN arguments TEXT;
ALTER TABLE scans ADD COLUMN hosts TEXT;
ALTER TABLE scans ADD COLUMN resume_pass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN resume_position INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    Migration::Code(packed_results),
    Migration::Code(undecided_state),
];

/// Results as integers, keyed by the address as an integer: SQLite takes
/// rows of integers in key order about three times as fast as rows keyed by
/// address text (docs/PERFORMANCE.md). An IPv6 address, which no SQLite
/// integer holds, is kept as its RFC 5952 text. `scan_results`, a view,
/// shows them the way every output does, for people with `sqlite3`.
const PACKED_RESULTS: &str = r#"
CREATE TABLE scan_result_rows (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    addr    NOT NULL,
    port    INTEGER NOT NULL,
    proto   INTEGER NOT NULL,
    state   INTEGER NOT NULL,
    reason  INTEGER NOT NULL,
    ttl     INTEGER,
    rtt_us  INTEGER,
    time    INTEGER NOT NULL,
    PRIMARY KEY (scan_id, addr, port, proto)
) WITHOUT ROWID;
"#;

const RESULTS_VIEW: &str = r#"
CREATE VIEW scan_results AS
SELECT scan_id,
       CASE WHEN typeof(addr) = 'integer'
            THEN (addr >> 24) || '.' || ((addr >> 16) & 255) || '.' || ((addr >> 8) & 255) || '.' || (addr & 255)
            ELSE addr END AS ip,
       port,
       CASE proto WHEN 6 THEN 'tcp' ELSE proto END AS proto,
       CASE state WHEN 1 THEN 'open' WHEN 2 THEN 'closed' WHEN 3 THEN 'filtered' WHEN 4 THEN 'undecided' END AS state,
       CASE WHEN reason = 1 THEN 'syn-ack' WHEN reason = 2 THEN 'reset' WHEN reason = 3 THEN 'no-response'
            WHEN reason = 4 THEN 'frames-dropped'
            WHEN reason >= 256 THEN 'host-unreach' END AS reason,
       ttl,
       rtt_us,
       strftime('%Y-%m-%dT%H:%M:%S', time / 1000000, 'unixepoch') || printf('.%06dZ', time % 1000000) AS time
FROM scan_result_rows;
"#;

/// Version 5: the view names the `undecided` state and its reason.
fn undecided_state(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch("DROP VIEW scan_results")?;
    tx.execute_batch(RESULTS_VIEW)
}

/// Version 4: rows of text become rows of integers, and `scan_results` the view of them.
fn packed_results(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(PACKED_RESULTS)?;
    // Stored rows first, so that where a pending row repeats one, the stored one stays;
    // pending rows of scans that ended belong to no one, as they did before.
    let mut skipped = 0;
    for sql in [
        "SELECT scan_id, ip, port, state, reason, ttl, rtt_us, time FROM scan_results ORDER BY scan_id",
        "SELECT scan_id, ip, port, state, reason, ttl, rtt_us, time FROM pending_results \
         WHERE scan_id IN (SELECT id FROM scans WHERE status = 'running') ORDER BY scan_id",
    ] {
        let mut stmt = tx.prepare(sql)?;
        let mut q = stmt.query([])?;
        let mut chunk: Vec<ScanResult> = Vec::new();
        let mut chunk_scan = None;
        while let Some(r) = q.next()? {
            let scan: i64 = r.get(0)?;
            if chunk_scan != Some(scan) || chunk.len() == STORE_ROWS {
                if let Some(id) = chunk_scan {
                    insert_rows(tx, id, &mut chunk)?;
                }
                chunk.clear();
                chunk_scan = Some(scan);
            }
            match text_row(r)? {
                Some(row) => chunk.push(row),
                None => skipped += 1,
            }
        }
        if let Some(id) = chunk_scan {
            insert_rows(tx, id, &mut chunk)?;
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, "rows no prtip could read were left out of the new schema");
    }
    tx.execute_batch("DROP TABLE pending_results; DROP INDEX scan_results_state; DROP TABLE scan_results;")?;
    tx.execute_batch(RESULTS_VIEW)
}

/// A row of the text schema (versions 1 to 3), if it reads as one.
fn text_row(r: &rusqlite::Row) -> rusqlite::Result<Option<ScanResult>> {
    let (ip, state, reason, time): (String, String, String, String) = (r.get(1)?, r.get(3)?, r.get(4)?, r.get(7)?);
    let (Ok(ip), Some(state), Some(time_us)) =
        (ip.parse(), parse_state(&state), crate::output::time::parse_rfc3339_us(&time))
    else {
        return Ok(None);
    };
    Ok(Some(ScanResult {
        ip,
        port: r.get(2)?,
        state,
        reason: match reason.as_str() {
            "syn-ack" => Reason::SynAck,
            "reset" => Reason::Reset,
            "host-unreach" => Reason::Unreachable { code: 1 },
            _ => Reason::NoResponse,
        },
        ttl: r.get(5)?,
        rtt_us: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
        time_us,
    }))
}

/// Rows wait in memory (48 bytes each) until the scan ends or this many
/// wait, and then go into SQLite sorted: in key order a row is an append,
/// in the scan's order it rewrites a page anywhere in the table. Their
/// journal records are written before they reach SQLite, so waiting loses
/// nothing that a crash would not.
/// Migration and recovery insert in chunks of this size too. (Small in unit
/// tests, which then store a million rows in several goes.)
pub const STORE_ROWS: usize = if cfg!(test) { 1 << 16 } else { 1 << 20 };

/// Rows per INSERT: one statement per row spends as long in SQLite's
/// per-statement work as in storing the row.
const ROWS_PER_INSERT: usize = 256;

/// How a state and a reason are stored, and back.
fn state_code(s: PortState) -> i64 {
    match s {
        PortState::Open => 1,
        PortState::Closed => 2,
        PortState::Filtered => 3,
        PortState::Undecided => 4,
    }
}

fn state_of(code: i64) -> Option<PortState> {
    match code {
        1 => Some(PortState::Open),
        2 => Some(PortState::Closed),
        3 => Some(PortState::Filtered),
        4 => Some(PortState::Undecided),
        _ => None,
    }
}

/// An ICMP unreachable keeps its code: 256 + code.
fn reason_code(r: Reason) -> i64 {
    match r {
        Reason::SynAck => 1,
        Reason::Reset => 2,
        Reason::NoResponse => 3,
        Reason::FramesDropped => 4,
        Reason::Unreachable { code } => 256 + i64::from(code),
    }
}

fn reason_of(code: i64) -> Option<Reason> {
    match code {
        1 => Some(Reason::SynAck),
        2 => Some(Reason::Reset),
        3 => Some(Reason::NoResponse),
        4 => Some(Reason::FramesDropped),
        256..=511 => Some(Reason::Unreachable { code: (code - 256) as u8 }),
        _ => None,
    }
}

fn addr_of(v: rusqlite::types::ValueRef) -> Option<IpAddr> {
    match v {
        rusqlite::types::ValueRef::Integer(i) => u32::try_from(i).ok().map(|v| std::net::Ipv4Addr::from(v).into()),
        rusqlite::types::ValueRef::Text(t) => {
            std::str::from_utf8(t).ok()?.parse::<std::net::Ipv6Addr>().ok().map(Into::into)
        }
        _ => None,
    }
}

/// Sorts rows into the table's key order: a new scan's rows then go to the
/// end of the table's B-tree, each one an append, where the scan's random
/// order would touch a page anywhere for each. (IPv6 keys are text, whose
/// order is not the addresses': those rows are not all appends, which costs
/// time, not correctness.)
fn sort_rows(rows: &mut [ScanResult]) {
    rows.sort_unstable_by_key(key_order);
}

fn key_order(r: &ScanResult) -> (u128, u16) {
    let addr = match r.ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    (addr, r.port)
}

/// Sends `rows` in key order, one commit's worth at a time: each piece is
/// split off the rest with a selection, one pass, and sorted alone, so the
/// first is ready long before all are sorted.
fn hand_out_in_key_order<'a>(mut rows: &'a mut [ScanResult], out: &mpsc::Sender<&'a [ScanResult]>) {
    while !rows.is_empty() {
        let n = rows.len().min(ROWS_PER_COMMIT);
        if n < rows.len() {
            rows.select_nth_unstable_by_key(n, key_order);
        }
        let (piece, rest) = std::mem::take(&mut rows).split_at_mut(n);
        sort_rows(piece);
        if out.send(piece).is_err() {
            return;
        }
        rows = rest;
    }
}

/// Inserts a scan's rows in key order; a row whose key is already stored is
/// dropped. Returns how many rows were added.
fn insert_rows(tx: &rusqlite::Transaction, scan_id: i64, rows: &mut [ScanResult]) -> rusqlite::Result<u64> {
    sort_rows(rows);
    insert_sorted(tx, scan_id, rows)
}

fn insert_sorted(tx: &rusqlite::Transaction, scan_id: i64, rows: &[ScanResult]) -> rusqlite::Result<u64> {
    let sql = |n: usize| {
        let mut sql = String::from(
            "INSERT OR IGNORE INTO scan_result_rows (scan_id, addr, port, proto, state, reason, ttl, rtt_us, time) VALUES ",
        );
        for i in 0..n {
            sql.push_str(if i == 0 { "(?1, ?, ?, 6, ?, ?, ?, ?, ?)" } else { ", (?1, ?, ?, 6, ?, ?, ?, ?, ?)" });
        }
        sql
    };
    let mut added = 0;
    let mut v6 = vec![String::new(); ROWS_PER_INSERT];
    let full = rows.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
    let (bulk, rest) = rows.split_at(full);
    for (chunks, n) in [(bulk, ROWS_PER_INSERT), (rest, 1)] {
        if chunks.is_empty() {
            continue;
        }
        let mut stmt = tx.prepare_cached(&sql(n))?;
        stmt.raw_bind_parameter(1, scan_id)?;
        for chunk in chunks.chunks_exact(n) {
            let mut i = 2;
            for (r, text) in chunk.iter().zip(v6.iter_mut()) {
                match r.ip {
                    IpAddr::V4(a) => stmt.raw_bind_parameter(i, i64::from(u32::from(a)))?,
                    IpAddr::V6(a) => {
                        text.clear();
                        decimal::push_ip(text, a.into());
                        stmt.raw_bind_parameter(i, text.as_str())?
                    }
                }
                stmt.raw_bind_parameter(i + 1, r.port)?;
                stmt.raw_bind_parameter(i + 2, state_code(r.state))?;
                stmt.raw_bind_parameter(i + 3, reason_code(r.reason))?;
                stmt.raw_bind_parameter(i + 4, r.ttl)?;
                stmt.raw_bind_parameter(i + 5, r.rtt_us.map(|v| v.min(i64::MAX as u64) as i64))?;
                stmt.raw_bind_parameter(i + 6, r.time_us.min(i64::MAX as u64) as i64)?;
                i += 7;
            }
            added += stmt.raw_execute()? as u64;
        }
    }
    Ok(added)
}

fn parse_state(text: &str) -> Option<PortState> {
    match text {
        "open" => Some(PortState::Open),
        "closed" => Some(PortState::Closed),
        "filtered" => Some(PortState::Filtered),
        "undecided" => Some(PortState::Undecided),
        _ => None,
    }
}

/// What is known of a scan when it starts.
#[derive(Debug, Clone)]
pub struct ScanStart {
    pub started_us: u64,
    pub command_line: String,
    pub config_json: String,
    pub transport: String,
    pub seed: u64,
}

/// What is known of a scan when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanEnd {
    pub ended_us: u64,
    pub probes_sent: u64,
    pub open: u64,
    pub closed: u64,
    pub filtered: u64,
    pub interrupted: bool,
    /// Where a resumed scan would start.
    pub cursor: Cursor,
}

/// One row of `scans`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRow {
    pub id: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub command_line: String,
    pub transport: String,
    pub probes_sent: i64,
    pub open: i64,
    pub closed: i64,
    pub filtered: i64,
    pub status: String,
}

/// The writer checkpoints the WAL itself once it holds this many pages
/// (8 MiB of 64 KiB pages) rather than SQLite's 1000: every small commit
/// (the cursor, each second) adds a whole page to it.
const AUTOCHECKPOINT_PAGES: i64 = 128;

/// Rows per transaction of a large store. After each commit the
/// checkpointer copies what it wrote from the WAL into the database file on
/// the other core while the next rows go in: a million rows took 0.70-0.75 s
/// that way, 1.0-1.08 s in one transaction that checkpointed after its commit.
const ROWS_PER_COMMIT: usize = 1 << 16;

/// A thread with a connection of its own that checkpoints the WAL (PASSIVE:
/// it never waits for the writer) whenever it is asked to.
struct Checkpointer {
    ask: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// None where it cannot start; the writer's own automatic checkpoints then do the work.
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.execute_batch("PRAGMA synchronous = NORMAL").ok()?;
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("prtip-checkpoint".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    while asked.try_recv().is_ok() {}
                    // A failed checkpoint leaves the WAL longer, nothing else: the next one takes it.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer { ask, thread })
    }
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
    recovered: u64,
    checkpointer: Option<Checkpointer>,
}

impl Drop for Db {
    /// Waits for the checkpointer's last checkpoint, so that closing the
    /// connection (which checkpoints what is left and removes the WAL) finds little to do.
    fn drop(&mut self) {
        if let Some(Checkpointer { ask, thread }) = self.checkpointer.take() {
            drop(ask);
            let _ = thread.join();
        }
    }
}

/// Where a scan's journal lives: beside its database, with a name SQLite does not use.
pub fn journal_path(db: &Path, scan_id: i64) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(format!(".{scan_id}.prtip-journal"));
    PathBuf::from(p)
}

/// Takes the exclusive lock a running scan holds on its journal; false if a
/// live process holds it. The kernel drops the lock when its holder dies.
pub fn try_lock(fd: std::os::fd::RawFd) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor the caller keeps open.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(e) }
}

/// Takes a running scan's lock on `fd`, or says why it cannot: another
/// prtip holds it.
pub fn lock(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    match try_lock(fd)? {
        true => Ok(()),
        false => Err(std::io::Error::other("in use by a running prtip")),
    }
}

/// Creates (or empties) a scan's journal, holding its lock.
fn lock_journal(db: &Path, id: i64) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let path = journal_path(db, id);
    let fail = |e| StoreError::Journal { path: path.clone(), source: e };
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(fail)?;
    lock(file.as_raw_fd()).map_err(fail)?;
    file.set_len(0).map_err(fail)?;
    Ok(file)
}

impl Db {
    /// Opens a database a user named for reading: one that is not there is
    /// their mistake, not a new file to create.
    pub fn open_existing(path: &Path) -> Result<Db, StoreError> {
        if !path.exists() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        Db::open(path)
    }

    /// Opens (creating if needed) and migrates the database, then replays a
    /// journal left by a scan that did not finish.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let err = |e| StoreError::Database { path: path.to_path_buf(), source: e };
        let conn = Connection::open(path).map_err(err)?;
        // The page size takes only in a new database, before its first table:
        // 64 KiB pages took a million rows in 0.83 s where 4 KiB pages took
        // 1.14 s (docs/PERFORMANCE.md). Foreign keys are not enforced (the
        // bundled SQLite enforces them unless told): every row prtip writes
        // carries the id of a scan it has just created or read, and enforcing
        // the reference cost each row a lookup in `scans` and each INSERT a
        // statement journal.
        conn.execute_batch(
            "PRAGMA page_size = 65536; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -16384;",
        )
        .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let mut db = Db { conn, path: path.to_path_buf(), recovered: 0, checkpointer: None };
        db.migrate()?;
        db.recovered = db.recover()?;
        Ok(db)
    }

    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Database { path: self.path.clone(), source }
    }

    /// Brings the schema up to date in one transaction, which reads the
    /// version again once it holds the write lock, so that two processes
    /// opening a new database do not both migrate it.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |e| StoreError::Database { path: path.clone(), source: e };
        let version_of = |conn: &Connection| -> Result<usize, StoreError> {
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
            let v = usize::try_from(v).unwrap_or(usize::MAX);
            if v > MIGRATIONS.len() {
                return Err(StoreError::NewerSchema { path: path.clone(), version: v });
            }
            Ok(v)
        };
        // Read without a lock first: a current database (read-only ones too) needs none.
        if version_of(&self.conn)? == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        let version = version_of(&tx)?;
        if version == MIGRATIONS.len() {
            return Ok(());
        }
        for step in &MIGRATIONS[version..] {
            match step {
                Migration::Sql(sql) => tx.execute_batch(sql),
                Migration::Code(f) => f(&tx),
            }
            .map_err(fail)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64).map_err(fail)?;
        tx.commit().map_err(fail)?;
        // The WAL holds every page the steps wrote: 64 KiB each.
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").map_err(fail)
    }

    /// Results that opening the database recovered for scans that never finished.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Finishes the books of scans that never finished (killed, or the
    /// machine died): replays each one's journal (the unique key drops what
    /// was already stored) and marks it interrupted with the counts of what it
    /// holds. A scan whose journal is locked is alive in another process and
    /// is left alone. Returns the number of results recovered.
    fn recover(&mut self) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e| StoreError::Database { path: path.clone(), source: e };
        let running: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT id FROM scans WHERE status = 'running'").map_err(fail)?;
            stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(fail)?
        };
        let mut recovered = 0;
        for id in running {
            let jpath = journal_path(&self.path, id);
            let jfail = |e| StoreError::Journal { path: jpath.clone(), source: e };
            let journal = match std::fs::OpenOptions::new().read(true).write(true).open(&jpath) {
                Ok(f) => {
                    use std::os::fd::AsRawFd;
                    if !try_lock(f.as_raw_fd()).map_err(jfail)? {
                        continue;
                    }
                    Some(f)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(jfail(e)),
            };
            let tx = self.conn.transaction().map_err(fail)?;
            if let Some(mut f) = journal.as_ref() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut bytes).map_err(jfail)?;
                let mut rows = journal::rows_of(&bytes, id);
                loop {
                    let mut chunk: Vec<ScanResult> = rows.by_ref().take(STORE_ROWS).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    recovered += insert_rows(&tx, id, &mut chunk).map_err(fail)?;
                }
            }
            let latency = Self::latency_of_rows(&tx, id).map_err(fail)?;
            Self::store_latency(&tx, id, &latency).map_err(fail)?;
            tx.execute(
                "UPDATE scans SET status = 'interrupted', \
                 open_count = (SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1 AND state = 1), \
                 closed_count = (SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1 AND state = 2), \
                 filtered_count = (SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1 AND state = 3) \
                 WHERE id = ?1",
                [id],
            )
            .map_err(fail)?;
            tx.commit().map_err(fail)?;
            if journal.is_some() {
                std::fs::remove_file(&jpath).map_err(jfail)?;
            }
        }
        Ok(recovered)
    }

    /// Records a new scan as running and returns its id with its journal,
    /// created and locked in the same transaction: another process that
    /// sees the scan running also finds its journal locked, and leaves both alone.
    pub fn begin_scan(
        &mut self,
        s: &ScanStart,
        resume: Option<&Checkpoint>,
    ) -> Result<(i64, std::fs::File), StoreError> {
        let path = self.path.clone();
        let fail = |e| StoreError::Database { path: path.clone(), source: e };
        let arguments = resume.map(|c| serde_json::Value::from(c.arguments.clone()).to_string());
        let hosts = resume.map(|c| checkpoint::hosts_json(&c.hosts).to_string());
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        tx.execute(
            "INSERT INTO scans (started_at, command_line, config, transport, seed, status, arguments, hosts) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
            params![
                rfc3339_us(s.started_us),
                s.command_line,
                s.config_json,
                s.transport,
                s.seed as i64,
                arguments,
                hosts
            ],
        )
        .map_err(fail)?;
        let id = tx.last_insert_rowid();
        let journal = lock_journal(&self.path, id)?;
        tx.commit().map_err(fail)?;
        Ok((id, journal))
    }

    /// Marks an interrupted scan running again, for the run that resumes
    /// it, and returns its new journal, locked as `begin_scan`'s is.
    pub fn reopen_scan(&mut self, id: i64) -> Result<std::fs::File, StoreError> {
        let path = self.path.clone();
        let fail = |e| StoreError::Database { path: path.clone(), source: e };
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        let changed = tx
            .execute(
                "UPDATE scans SET status = 'running', ended_at = NULL WHERE id = ?1 AND status = 'interrupted'",
                [id],
            )
            .map_err(fail)?;
        if changed != 1 {
            return Err(StoreError::NotResumable(id));
        }
        let journal = lock_journal(&self.path, id)?;
        tx.commit().map_err(fail)?;
        Ok(journal)
    }

    /// Records how far a running scan got.
    pub fn save_cursor(&self, id: i64, cursor: Cursor, sent: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE scans SET resume_pass = ?2, resume_position = ?3, probes_sent = ?4 WHERE id = ?1",
                params![id, cursor.pass, cursor.position as i64, sent as i64],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// What `--resume ID` needs of an interrupted scan.
    pub fn checkpoint(&self, id: i64) -> Result<Checkpoint, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT status, arguments, seed, hosts, resume_pass, resume_position, probes_sent FROM scans WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.fail(e))?
            .ok_or(StoreError::NoScan(id))?;
        let (status, arguments, seed, hosts, pass, position, sent) = row;
        let arguments: Option<Vec<String>> = arguments.and_then(|a| serde_json::from_str(&a).ok());
        let hosts = hosts
            .and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok())
            .and_then(|v| checkpoint::hosts_from_json(&v).ok());
        match (status.as_str(), arguments, hosts) {
            ("interrupted", Some(arguments), Some(hosts)) => Ok(Checkpoint {
                arguments,
                seed: seed as u64,
                hosts,
                cursor: Cursor { pass: u32::try_from(pass).unwrap_or(u32::MAX), position: position.max(0) as u64 },
                sent: sent.max(0) as u64,
            }),
            _ => Err(StoreError::NotResumable(id)),
        }
    }

    /// Stores rows of a scan; returns how many were new.
    pub fn insert(&mut self, scan_id: i64, rows: &mut [ScanResult]) -> Result<u64, StoreError> {
        self.store(scan_id, rows, |_| Ok(()))
    }

    /// Stores rows sorted, in transactions of `ROWS_PER_COMMIT` with the
    /// checkpointer copying each into the database file behind them; `last`
    /// runs in the transaction of the last rows. Returns how many were new.
    fn store(
        &mut self,
        scan_id: i64,
        rows: &mut [ScanResult],
        last: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e| StoreError::Database { path: path.clone(), source: e };
        let split = rows.len() > ROWS_PER_COMMIT;
        if split && self.checkpointer.is_none() {
            self.checkpointer = Checkpointer::start(&self.path);
        }
        let helped = split && self.checkpointer.is_some();
        if helped {
            // The writer's own checkpoints would run on this thread, between the commits.
            self.conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(fail)?;
        }
        let stored = self.commit_in_key_order(scan_id, rows, last, helped);
        // Back whether or not the store failed: the connection may go on (a read, a later scan).
        let restored = match helped {
            true => self.conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES),
            false => Ok(()),
        };
        let added = stored.map_err(fail)?;
        restored.map_err(fail)?;
        Ok(added)
    }

    /// Commits rows as a thread on the other core hands them out in key
    /// order: sorting a million rows on this thread took about a tenth of the
    /// time that storing them did. Rows for one commit, with nothing to
    /// overlap, and rows no thread could be started for, are ordered here first.
    fn commit_in_key_order(
        &mut self,
        scan_id: i64,
        rows: &mut [ScanResult],
        last: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
        helped: bool,
    ) -> rusqlite::Result<u64> {
        let total = rows.len();
        std::thread::scope(|s| {
            let (out, ordered) = mpsc::channel();
            let unordered = match total > ROWS_PER_COMMIT {
                true => {
                    let (give, take) = mpsc::channel::<&mut [ScanResult]>();
                    let sorter_out = out.clone();
                    // A thread that fails to start drops its closure, and with it `take`: the rows come back.
                    let _ = std::thread::Builder::new().name("prtip-sort".into()).spawn_scoped(s, move || {
                        if let Ok(rows) = take.recv() {
                            hand_out_in_key_order(rows, &sorter_out);
                        }
                    });
                    give.send(rows).err().map(|mpsc::SendError(rows)| rows)
                }
                false => Some(rows),
            };
            if let Some(rows) = unordered {
                hand_out_in_key_order(rows, &out);
            }
            drop(out);
            let mut last = Some(last);
            let (mut added, mut left) = (0, total);
            loop {
                // No rows still make one transaction: `last` records the scan's end.
                let piece: &[ScanResult] = match left {
                    0 => &[],
                    // Only a sorter that panicked stops short; the scope raises its panic.
                    _ => match ordered.recv() {
                        Ok(piece) => piece,
                        Err(_) => return Ok(added),
                    },
                };
                left -= piece.len();
                let tx = self.conn.transaction()?;
                added += insert_sorted(&tx, scan_id, piece)?;
                if left == 0
                    && let Some(f) = last.take()
                {
                    f(&tx)?;
                }
                tx.commit()?;
                if helped && let Some(c) = &self.checkpointer {
                    let _ = c.ask.send(());
                }
                if left == 0 {
                    return Ok(added);
                }
            }
        })
    }

    /// Stores the scan's last rows and records how it ended; with
    /// `open_only`, the scan's rows that are not open go (an earlier run of
    /// it kept them for its resume). The end is recorded in the transaction
    /// of the last rows. Returns how many of `rows` were new.
    pub fn finish_scan(
        &mut self,
        id: i64,
        e: &ScanEnd,
        latency: &Latency,
        rows: &mut [ScanResult],
        open_only: bool,
    ) -> Result<u64, StoreError> {
        self.store(id, rows, |tx| {
            if open_only {
                tx.execute("DELETE FROM scan_result_rows WHERE scan_id = ?1 AND state != 1", [id])?;
            }
            Self::store_latency(tx, id, latency)?;
            tx.execute(
                "UPDATE scans SET ended_at = ?2, probes_sent = ?3, open_count = ?4, closed_count = ?5, \
                 filtered_count = ?6, status = ?7, resume_pass = ?8, resume_position = ?9 WHERE id = ?1",
                params![
                    id,
                    rfc3339_us(e.ended_us),
                    e.probes_sent as i64,
                    e.open as i64,
                    e.closed as i64,
                    e.filtered as i64,
                    if e.interrupted { "interrupted" } else { "completed" },
                    e.cursor.pass,
                    e.cursor.position as i64
                ],
            )?;
            Ok(())
        })
    }

    /// How many result rows a scan holds.
    pub fn rows_of(&self, id: i64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1", [id], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }

    fn store_latency(tx: &rusqlite::Transaction, scan_id: i64, latency: &Latency) -> rusqlite::Result<()> {
        let mut stmt =
            tx.prepare("INSERT OR REPLACE INTO scan_latency (scan_id, series, histogram) VALUES (?1, ?2, ?3)")?;
        for (series, bytes) in latency.encode() {
            stmt.execute(params![scan_id, series.name(), bytes])?;
        }
        Ok(())
    }

    /// The round-trip times of a scan's stored rows: what a scan that never
    /// finished gets in place of the histograms it would have stored.
    fn latency_of_rows(tx: &rusqlite::Transaction, scan_id: i64) -> rusqlite::Result<Latency> {
        let mut latency = Latency::default();
        let mut stmt =
            tx.prepare("SELECT state, rtt_us FROM scan_result_rows WHERE scan_id = ?1 AND rtt_us IS NOT NULL")?;
        let mut rows = stmt.query([scan_id])?;
        while let Some(row) = rows.next()? {
            if let (Some(state), Ok(us)) = (state_of(row.get(0)?), row.get::<_, i64>(1)) {
                latency.record_us(state, us.max(0) as u64);
            }
        }
        Ok(latency)
    }

    /// The stored round-trip histograms of a scan, in `Series::EVERY` order.
    pub fn latency(&self, id: i64) -> Result<Vec<(Series, Histogram<u64>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT series, histogram FROM scan_latency WHERE scan_id = ?1")
            .map_err(|e| self.fail(e))?;
        let stored: Vec<(String, Vec<u8>)> = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))?;
        let latency_fail = |source| StoreError::Latency { path: self.path.clone(), source };
        let mut out = Vec::new();
        for (name, bytes) in stored {
            let series = Series::parse(&name).map_err(latency_fail)?;
            out.push((series, latency::decode(series, &bytes).map_err(latency_fail)?));
        }
        out.sort_by_key(|(s, _)| *s);
        Ok(out)
    }

    pub fn scans(&self) -> Result<Vec<ScanRow>, StoreError> {
        self.scan_rows(
            "SELECT id, started_at, ended_at, command_line, transport, probes_sent, open_count, \
                        closed_count, filtered_count, status FROM scans ORDER BY id",
            None,
        )
    }

    pub fn scan(&self, id: i64) -> Result<Option<ScanRow>, StoreError> {
        Ok(self
            .scan_rows(
                "SELECT id, started_at, ended_at, command_line, transport, probes_sent, open_count, \
                 closed_count, filtered_count, status FROM scans WHERE id = ?1",
                Some(id),
            )?
            .pop())
    }

    fn scan_rows(&self, sql: &str, id: Option<i64>) -> Result<Vec<ScanRow>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.fail(e))?;
        let map = |r: &rusqlite::Row| {
            Ok(ScanRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                command_line: r.get(3)?,
                transport: r.get(4)?,
                probes_sent: r.get(5)?,
                open: r.get(6)?,
                closed: r.get(7)?,
                filtered: r.get(8)?,
                status: r.get(9)?,
            })
        };
        let rows = match id {
            Some(id) => stmt.query_map([id], map),
            None => stmt.query_map([], map),
        };
        rows.and_then(|rows| rows.collect()).map_err(|e| self.fail(e))
    }

    /// The configuration a scan was started with, as stored.
    pub fn config(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> =
            match self.conn.query_row("SELECT config FROM scans WHERE id = ?1", [id], |r| r.get(0)) {
                Ok(t) => Some(t),
                Err(rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(self.fail(e)),
            };
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The stored results of a scan, ordered by address and port.
    pub fn results(&self, id: i64, open_only: bool) -> Result<Vec<ScanResult>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT addr, port, state, reason, ttl, rtt_us, time FROM scan_result_rows \
                 WHERE scan_id = ?1 AND (?2 = 0 OR state = 1)",
            )
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        let mut rows = stmt.query(params![id, open_only as i64]).map_err(|e| self.fail(e))?;
        while let Some(r) = rows.next().map_err(|e| self.fail(e))? {
            let row = || -> rusqlite::Result<Option<ScanResult>> {
                let (Some(ip), Some(state), Some(reason)) =
                    (addr_of(r.get_ref(0)?), state_of(r.get(2)?), reason_of(r.get(3)?))
                else {
                    return Ok(None);
                };
                Ok(Some(ScanResult {
                    ip,
                    port: r.get(1)?,
                    state,
                    reason,
                    ttl: r.get(4)?,
                    rtt_us: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                    time_us: r.get::<_, i64>(6)?.max(0) as u64,
                }))
            };
            out.extend(row().map_err(|e| self.fail(e))?);
        }
        out.sort_by_key(|r| (r.ip, r.port));
        Ok(out)
    }

    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let s: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| self.fail(e))?;
        Ok(s == "ok")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal;

    /// A database path in a directory that goes when the test ends.
    fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new().prefix(&format!("prtip-db-{name}-")).tempdir().unwrap();
        let path = dir.path().join("t.db");
        (dir, path)
    }

    fn start() -> ScanStart {
        ScanStart {
            started_us: 1_000_000,
            command_line: "prtip -p 22 10.0.0.1".into(),
            config_json: "{}".into(),
            transport: "raw".into(),
            seed: 5,
        }
    }

    fn result(i: u8, state: PortState) -> ScanResult {
        ScanResult {
            ip: std::net::Ipv4Addr::new(10, 0, 0, i).into(),
            port: 22,
            state,
            reason: if state == PortState::Open { Reason::SynAck } else { Reason::Reset },
            ttl: Some(64),
            rtt_us: Some(100),
            time_us: 2_000_000,
        }
    }

    #[test]
    fn scans_accumulate_and_rows_are_unique_per_scan() {
        let (_dir, path) = temp_db("accumulate");
        let mut db = Db::open(&path).unwrap();
        let (a, _journal) = db.begin_scan(&start(), None).unwrap();
        assert_eq!(db.insert(a, &mut [result(2, PortState::Closed), result(1, PortState::Open)]).unwrap(), 2);
        assert_eq!(db.insert(a, &mut [result(1, PortState::Open)]).unwrap(), 0, "the duplicate is dropped");
        let end = ScanEnd { ended_us: 3_000_000, probes_sent: 2, open: 1, closed: 1, ..Default::default() };
        let mut latency = Latency::default();
        latency.record(&result(1, PortState::Open));
        latency.record(&result(2, PortState::Closed));
        assert_eq!(db.finish_scan(a, &end, &latency, &mut [result(2, PortState::Closed)], false).unwrap(), 0);
        assert_eq!(db.rows_of(a).unwrap(), 2);
        drop(db);
        let mut db = Db::open(&path).unwrap();
        let (b, _journal) = db.begin_scan(&start(), None).unwrap();
        db.insert(b, &mut [result(1, PortState::Open)]).unwrap();
        let scans = db.scans().unwrap();
        assert_eq!(scans.len(), 2);
        assert_eq!(scans[0].status, "completed");
        assert_eq!((scans[0].open, scans[0].closed), (1, 1));
        assert_eq!(db.results(a, false).unwrap().len(), 2);
        assert_eq!(db.results(a, true).unwrap(), vec![result(1, PortState::Open)]);
        let stored = db.latency(a).unwrap();
        assert_eq!(
            stored.iter().map(|(s, h)| (*s, h.len())).collect::<Vec<_>>(),
            [(Series::All, 2), (Series::Open, 1), (Series::Closed, 1)]
        );
        assert!(stored.iter().all(|(s, h)| *h == latency.get(*s)));
        assert!(db.latency(b).unwrap().is_empty(), "a running scan has no histograms yet");
        assert!(db.integrity_ok().unwrap());
    }

    #[test]
    fn journal_replay_restores_rows_and_marks_the_scan_interrupted() {
        let (_dir, path) = temp_db("replay");
        let mut db = Db::open(&path).unwrap();
        let (id, journal) = db.begin_scan(&start(), None).unwrap();
        // Stored before the crash, and journaled too.
        db.insert(id, &mut [result(1, PortState::Open)]).unwrap();
        drop((db, journal));
        // A crash after the journal write and before the SQLite commit.
        let mut buf = Vec::new();
        journal::encode(id, &[result(1, PortState::Open), result(2, PortState::Closed)], &mut buf);
        journal::encode(id, &[result(3, PortState::Open)], &mut buf);
        buf.extend_from_slice(&[1, 2, 3]); // a torn tail
        std::fs::write(journal_path(&path, id), &buf).unwrap();
        let db = Db::open(&path).unwrap();
        assert_eq!(db.recovered(), 2, "the row stored before the crash is not counted again");
        assert!(!journal_path(&path, id).exists(), "journal removed after replay");
        let scan = db.scan(id).unwrap().unwrap();
        assert_eq!(scan.status, "interrupted");
        assert_eq!((scan.open, scan.closed), (2, 1));
        assert_eq!(db.results(id, false).unwrap().len(), 3);
        let counts: Vec<(Series, u64)> = db.latency(id).unwrap().iter().map(|(s, h)| (*s, h.len())).collect();
        assert_eq!(counts, [(Series::All, 3), (Series::Open, 2), (Series::Closed, 1)], "rebuilt from the rows");
        assert!(db.integrity_ok().unwrap());
    }

    #[test]
    fn a_live_scan_is_left_alone() {
        let (_dir, path) = temp_db("live");
        let mut db = Db::open(&path).unwrap();
        let (id, journal) = db.begin_scan(&start(), None).unwrap();
        db.insert(id, &mut [result(1, PortState::Open)]).unwrap();
        // Another open of the database, while the scan runs: nothing changes under it.
        let other = Db::open(&path).unwrap();
        assert_eq!(other.recovered(), 0);
        assert_eq!(other.scan(id).unwrap().unwrap().status, "running");
        assert!(journal_path(&path, id).exists());
        drop(journal);
        // Its process gone, the lock goes with it and the scan is recovered.
        let after = Db::open(&path).unwrap();
        assert_eq!(after.recovered(), 0, "its one row was stored, and its journal is empty");
        assert_eq!(after.scan(id).unwrap().unwrap().status, "interrupted");
        drop(db);
    }

    /// Every kind of row, IPv4 and IPv6.
    fn every_kind() -> Vec<ScanResult> {
        let v6: IpAddr = "fd00:201::8000".parse().unwrap();
        let reasons = [Reason::SynAck, Reason::Reset, Reason::NoResponse, Reason::Unreachable { code: 13 }];
        let states = [PortState::Open, PortState::Closed, PortState::Filtered, PortState::Filtered];
        let mut rows = Vec::new();
        for (i, (state, reason)) in states.into_iter().zip(reasons).enumerate() {
            for ip in [std::net::Ipv4Addr::new(255, 0, 10, 200).into(), v6] {
                rows.push(ScanResult {
                    ip,
                    port: 65535 - i as u16,
                    state,
                    reason,
                    ttl: (reason != Reason::NoResponse).then_some(64),
                    rtt_us: (reason == Reason::SynAck).then_some(1234),
                    time_us: 1_795_912_496_000_007 + i as u64,
                });
            }
        }
        rows
    }

    /// What the `scan_results` view shows of a row: what the outputs write.
    fn as_text(r: &ScanResult) -> String {
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        format!(
            "{}|{}|tcp|{}|{}|{}|{}|{}",
            r.ip,
            r.port,
            r.state.as_str(),
            r.reason.as_str(),
            opt(r.ttl.map(u64::from)),
            opt(r.rtt_us),
            rfc3339_us(r.time_us)
        )
    }

    fn view(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT ip || '|' || port || '|' || proto || '|' || state || '|' || reason || '|' || \
                 ifnull(ttl, '') || '|' || ifnull(rtt_us, '') || '|' || time FROM scan_results",
            )
            .unwrap();
        let mut rows: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        rows.sort();
        rows
    }

    #[test]
    fn rows_read_back_exactly_and_the_view_shows_them_as_the_outputs_do() {
        let (_dir, path) = temp_db("view");
        let mut db = Db::open(&path).unwrap();
        let (id, _journal) = db.begin_scan(&start(), None).unwrap();
        let rows = every_kind();
        assert_eq!(db.insert(id, &mut rows.clone()).unwrap(), 8);
        let mut sorted = rows.clone();
        sorted.sort_by_key(|r| (r.ip, r.port));
        assert_eq!(db.results(id, false).unwrap(), sorted);
        assert_eq!(db.results(id, true).unwrap().len(), 2);
        let mut text: Vec<String> = rows.iter().map(as_text).collect();
        text.sort();
        assert_eq!(view(&path), text);
    }

    #[test]
    fn a_version_3_database_keeps_its_rows() {
        let (_dir, path) = temp_db("v3");
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for step in &MIGRATIONS[..3] {
            let Migration::Sql(sql) = step else { panic!("the first three steps are SQL") };
            tx.execute_batch(sql).unwrap();
        }
        tx.execute_batch(
            "PRAGMA user_version = 3; \
             INSERT INTO scans (started_at, command_line, config, transport, seed, status) \
             VALUES ('2026-11-29T00:00:00.000000Z', 'prtip', '{}', 'raw', 1, 'running'); \
             INSERT INTO scans (started_at, command_line, config, transport, seed, status) \
             VALUES ('2026-11-29T00:00:00.000000Z', 'prtip', '{}', 'raw', 1, 'completed'); \
             INSERT INTO scan_results VALUES (1, '10.0.0.2', 80, 'tcp', 'open', 'syn-ack', 64, 150, '2026-11-29T00:34:56.000001Z'); \
             INSERT INTO scan_results VALUES (1, 'fd00::1', 81, 'tcp', 'filtered', 'host-unreach', 63, NULL, '2026-11-29T00:34:56.000002Z'); \
             INSERT INTO scan_results VALUES (1, 'no address', 82, 'tcp', 'open', 'syn-ack', 64, 1, '2026-11-29T00:34:56.000002Z'); \
             INSERT INTO pending_results VALUES (1, '10.0.0.1', 22, 'tcp', 'closed', 'reset', 64, 90, '2026-11-29T00:34:56.000003Z'); \
             INSERT INTO pending_results VALUES (1, '10.0.0.2', 80, 'tcp', 'open', 'syn-ack', 64, 999, '2026-11-29T00:34:56.000001Z'); \
             INSERT INTO pending_results VALUES (2, '10.0.0.9', 22, 'tcp', 'open', 'syn-ack', 64, 90, '2026-11-29T00:34:56.000003Z');",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);
        // Scan 1 was running: its pending rows are its own, and a stored row
        // wins over a pending one with its key. Scan 2 had ended: its pending
        // row belonged to no one. A row no prtip can read is left out.
        let db = Db::open(&path).unwrap();
        assert_eq!(
            view(&path),
            [
                "10.0.0.1|22|tcp|closed|reset|64|90|2026-11-29T00:34:56.000003Z",
                "10.0.0.2|80|tcp|open|syn-ack|64|150|2026-11-29T00:34:56.000001Z",
                "fd00::1|81|tcp|filtered|host-unreach|63||2026-11-29T00:34:56.000002Z",
            ]
        );
        assert_eq!(db.results(1, true).unwrap().len(), 1);
        let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        assert!(db.integrity_ok().unwrap());
    }

    /// A store larger than one commit goes in several, the checkpointer
    /// copying them into the database file, and the last one records the end.
    #[test]
    fn a_large_store_commits_in_parts_and_keeps_every_row() {
        let (_dir, path) = temp_db("large");
        let mut db = Db::open(&path).unwrap();
        let (id, _journal) = db.begin_scan(&start(), None).unwrap();
        let n = 2 * ROWS_PER_COMMIT + 1000;
        let mut rows: Vec<ScanResult> = (0..n as u32)
            .rev()
            .map(|i| ScanResult {
                ip: std::net::Ipv4Addr::from(0x0a00_0000 + i / 4).into(),
                port: (i % 4) as u16 + 1,
                ..result(0, PortState::Open)
            })
            .collect();
        let end = ScanEnd { ended_us: 3_000_000, probes_sent: n as u64, open: n as u64, ..Default::default() };
        assert_eq!(db.finish_scan(id, &end, &Latency::default(), &mut rows, false).unwrap(), n as u64);
        assert!(db.checkpointer.is_some(), "the store was split and helped");
        let autocheckpoint: i64 = db.conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(autocheckpoint, AUTOCHECKPOINT_PAGES, "the writer's own checkpoints are back");
        assert_eq!(db.rows_of(id).unwrap(), n as u64);
        assert_eq!(db.scan(id).unwrap().unwrap().status, "completed");
        drop(db);
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        assert!(!wal.exists(), "closing checkpointed everything and removed the WAL");
        let db = Db::open(&path).unwrap();
        assert_eq!(db.results(id, true).unwrap().len(), n);
        assert!(db.integrity_ok().unwrap());
    }

    #[test]
    fn rows_are_handed_out_in_key_order_a_commit_at_a_time() {
        let n = 2 * ROWS_PER_COMMIT + 7;
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rows: Vec<ScanResult> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let ip: IpAddr = match x % 3 {
                    0 => std::net::Ipv6Addr::from(u128::from(x) << 64).into(),
                    _ => std::net::Ipv4Addr::from((x >> 32) as u32).into(),
                };
                ScanResult { ip, port: x as u16, ..result(0, PortState::Open) }
            })
            .collect();
        let mut sorted = rows.clone();
        sort_rows(&mut sorted);
        let (out, ordered) = mpsc::channel();
        hand_out_in_key_order(&mut rows, &out);
        drop(out);
        let pieces: Vec<&[ScanResult]> = ordered.iter().collect();
        assert_eq!(pieces.iter().map(|p| p.len()).collect::<Vec<_>>(), [ROWS_PER_COMMIT, ROWS_PER_COMMIT, 7]);
        let keys = |rows: &[ScanResult]| rows.iter().map(key_order).collect::<Vec<_>>();
        assert_eq!(keys(&pieces.concat()), keys(&sorted));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = temp_db("newer");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Db::open(&path), Err(StoreError::NewerSchema { version: 99, .. })));
    }
}
