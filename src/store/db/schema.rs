//! The schema, and the steps that bring a database of any earlier version up to date.

use super::Db;
use super::write::{STORE_ROWS, insert_rows};
use crate::result::{PortState, Reason, ScanResult};
use crate::store::StoreError;
use rusqlite::Connection;
use std::path::Path;

/// One step of the schema, from the previous version to the next.
pub(super) enum Migration {
    Sql(&'static str),
    /// A step SQL alone cannot take (parsing the text of older rows).
    Code(fn(&rusqlite::Transaction) -> rusqlite::Result<()>),
}

/// Each entry takes the schema from the previous version to the next;
/// `PRAGMA user_version` records how many have been applied.
pub(super) const MIGRATIONS: &[Migration] = &[
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
    // Version 5: the view names the `undecided` state and its reason.
    Migration::Code(refresh_view),
    // Version 6: the view names each ICMP unreachable code.
    Migration::Code(refresh_view),
    // Version 7: the view names the `zero-window` reason.
    Migration::Code(refresh_view),
    // Version 8: hosts that answered SYN-ACK on most ports probed, or were capped.
    Migration::Sql(
        r#"
CREATE TABLE scan_flagged_hosts (
    scan_id  INTEGER NOT NULL REFERENCES scans(id),
    ip       TEXT NOT NULL,
    flag     TEXT NOT NULL,
    open     INTEGER NOT NULL,
    probed   INTEGER NOT NULL,
    withheld INTEGER NOT NULL,
    PRIMARY KEY (scan_id, ip)
) WITHOUT ROWID;
"#,
    ),
    // Version 9: a checkpoint saved by a send window, where every probe before
    // it is concluded, says so; one saved by retry passes (an older prtip,
    // still running or not) resumes from the start with what was stored
    // skipped, as one past its first pass always did.
    Migration::Sql("ALTER TABLE scans ADD COLUMN resume_window INTEGER NOT NULL DEFAULT 0;"),
    // Version 10: the view names the echo and UDP scans' states, reasons and protocols.
    Migration::Code(refresh_view),
    // Version 11: the view names the connect scan's `conn-refused`.
    Migration::Code(refresh_view),
    // Version 12: what banners saw on open ports.
    Migration::Sql(super::services::SCHEMA),
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

/// `scan_results`: the rows as every output shows them, for people with
/// `sqlite3`. The names of states and reasons come from their types.
fn results_view() -> String {
    let states: String = PortState::ALL.iter().map(|s| format!(" WHEN {} THEN '{}'", s.code(), s.as_str())).collect();
    let unreachable = (0..=u8::MAX).map(|code| Reason::Unreachable { code });
    let reasons: String = Reason::WITHOUT_CODE
        .into_iter()
        .chain(unreachable)
        .map(|r| format!(" WHEN {} THEN '{}'", r.code(), r.as_str()))
        .collect();
    format!(
        r#"
CREATE VIEW scan_results AS
SELECT scan_id,
       CASE WHEN typeof(addr) = 'integer'
            THEN (addr >> 24) || '.' || ((addr >> 16) & 255) || '.' || ((addr >> 8) & 255) || '.' || (addr & 255)
            ELSE addr END AS ip,
       port,
       CASE proto WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp' WHEN 1 THEN 'icmp' ELSE proto END AS proto,
       CASE state{states} END AS state,
       CASE reason{reasons} END AS reason,
       ttl,
       rtt_us,
       strftime('%Y-%m-%dT%H:%M:%S', time / 1000000, 'unixepoch') || printf('.%06dZ', time % 1000000) AS time
FROM scan_result_rows;
"#
    )
}

/// The view made anew from the names the types give states and reasons (in
/// version 6 each ICMP unreachable code got its own, `admin-prohibited`,
/// `port-unreach`, ..., where the view said `host-unreach` for all).
fn refresh_view(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch("DROP VIEW scan_results")?;
    tx.execute_batch(&results_view())
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
    tx.execute_batch(&results_view())
}

/// A row of the text schema (versions 1 to 3), if it reads as one.
fn text_row(r: &rusqlite::Row) -> rusqlite::Result<Option<ScanResult>> {
    let (ip, state, reason, time): (String, String, String, String) = (r.get(1)?, r.get(3)?, r.get(4)?, r.get(7)?);
    let (Ok(ip), Some(state), Some(time_us)) =
        (ip.parse(), PortState::parse(&state), crate::output::time::parse_rfc3339_us(&time))
    else {
        return Ok(None);
    };
    Ok(Some(ScanResult {
        ip,
        port: r.get(2)?,
        state,
        // The text schema knew three reasons and silence.
        reason: Reason::parse(&reason).unwrap_or(Reason::NoResponse),
        ttl: r.get(5)?,
        rtt_us: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
        time_us,
    }))
}

/// The schema version of the database at `path`, refusing one this prtip
/// does not know: newer, or not prtip's at all (version 0 with tables of
/// its own, which prtip must not extend).
pub(super) fn version_of(conn: &Connection, path: &Path) -> Result<usize, StoreError> {
    let fail = StoreError::database(path);
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
    let v = usize::try_from(v).unwrap_or(usize::MAX);
    if v > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), version: v });
    }
    if v == 0 {
        let objects: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).map_err(fail)?;
        if objects > 0 {
            return Err(StoreError::ForeignSchema(path.to_path_buf()));
        }
    }
    Ok(v)
}

impl Db {
    /// Brings the schema up to date in one transaction, which reads the
    /// version again once it holds the write lock, so that two processes
    /// opening a new database do not both migrate it.
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let fail = StoreError::database(&self.path);
        let path = self.path.clone();
        let version_of = |conn: &Connection| version_of(conn, &path);
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
}
