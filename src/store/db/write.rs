//! The write path: scans begun, resumed and finished, their rows stored in
//! key order, and the books of scans that never finished closed from their journals.

use super::Db;
use crate::engine::plan::Cursor;
use crate::latency::Latency;
use crate::open_hosts::{FLAG, FlaggedHost};
use crate::output::decimal;
use crate::output::time::rfc3339_us;
use crate::result::{PortState, ScanResult};
use crate::store::StoreError;
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::journal;
use crate::store::lock::{journal_path, lock_journal, try_lock};
use rusqlite::{Connection, OptionalExtension, params};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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

/// Sorts rows into the table's key order: a new scan's rows then go to the
/// end of the table's B-tree, each one an append, where the scan's random
/// order would touch a page anywhere for each. (IPv6 keys are text, whose
/// order is not the addresses': those rows are not all appends, which costs
/// time, not correctness.)
pub(super) fn sort_rows(rows: &mut [ScanResult]) {
    rows.sort_unstable_by_key(key_order);
}

pub(super) fn key_order(r: &ScanResult) -> (u128, u16) {
    let addr = match r.ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    (addr, r.port)
}

/// Sends `rows` in key order, one commit's worth at a time: each piece is
/// split off the rest with a selection, one pass, and sorted alone, so the
/// first is ready long before all are sorted.
pub(super) fn hand_out_in_key_order<'a>(mut rows: &'a mut [ScanResult], out: &mpsc::Sender<&'a [ScanResult]>) {
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
pub(super) fn insert_rows(tx: &rusqlite::Transaction, scan_id: i64, rows: &mut [ScanResult]) -> rusqlite::Result<u64> {
    sort_rows(rows);
    insert_sorted(tx, scan_id, rows)
}

/// The protocol number a scan's rows are stored with, by its scan type:
/// TCP (6) for SYN scans, and for scans stored before there were others;
/// UDP (17); ICMP (1) for echo scans of either family.
fn proto_of(tx: &rusqlite::Transaction, scan_id: i64) -> rusqlite::Result<u8> {
    tx.query_row(
        "SELECT CASE json_extract(config, '$.scan_type') WHEN 'udp' THEN 17 WHEN 'icmp' THEN 1 ELSE 6 END \
         FROM scans WHERE id = ?1",
        [scan_id],
        |r| r.get(0),
    )
    .optional()
    .map(|proto| proto.unwrap_or(6))
}

fn insert_sorted(tx: &rusqlite::Transaction, scan_id: i64, rows: &[ScanResult]) -> rusqlite::Result<u64> {
    let proto = proto_of(tx, scan_id)?;
    let sql = |n: usize| {
        let mut sql = String::from(
            "INSERT OR IGNORE INTO scan_result_rows (scan_id, addr, port, proto, state, reason, ttl, rtt_us, time) VALUES ",
        );
        for i in 0..n {
            let comma = if i == 0 { "" } else { ", " };
            sql.push_str(&format!("{comma}(?1, ?, ?, {proto}, ?, ?, ?, ?, ?)"));
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
                stmt.raw_bind_parameter(i + 2, r.state.code())?;
                stmt.raw_bind_parameter(i + 3, r.reason.code())?;
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

/// The writer checkpoints the WAL itself once it holds this many pages
/// (8 MiB of 64 KiB pages) rather than SQLite's 1000: every small commit
/// (the cursor, each second) adds a whole page to it.
pub(super) const AUTOCHECKPOINT_PAGES: i64 = 128;

/// Rows per transaction of a large store. After each commit the
/// checkpointer copies what it wrote from the WAL into the database file on
/// the other core while the next rows go in: a million rows took 0.70-0.75 s
/// that way, 1.0-1.08 s in one transaction that checkpointed after its commit.
pub(super) const ROWS_PER_COMMIT: usize = 1 << 16;

/// A thread with a connection of its own that checkpoints the WAL (PASSIVE:
/// it never waits for the writer) whenever it is asked to.
pub(super) struct Checkpointer {
    pub(super) ask: std::sync::mpsc::Sender<()>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// None where it cannot start; the writer's own automatic checkpoints then do the work.
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
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

impl Db {
    /// Finishes the books of scans that never finished (killed, or the
    /// machine died): replays each one's journal (the unique key drops what
    /// was already stored) and marks it interrupted with the counts of what it
    /// holds. A scan whose journal is locked is alive in another process and
    /// is left alone. Returns the number of results recovered.
    pub(super) fn recover(&mut self) -> Result<u64, StoreError> {
        let fail = StoreError::database(&self.path);
        let running: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT id FROM scans WHERE status = 'running'").map_err(fail)?;
            stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(fail)?
        };
        let mut recovered = 0;
        for id in running {
            let jpath = journal_path(&self.path, id);
            let jfail = StoreError::journal(&jpath);
            let journal = match std::fs::OpenOptions::new().read(true).write(true).open(&jpath) {
                Ok(f) => {
                    if !try_lock(&f).map_err(jfail)? {
                        continue;
                    }
                    Some(f)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(jfail(e)),
            };
            let tx = self.conn.transaction().map_err(fail)?;
            let mut damaged = None;
            if let Some(mut f) = journal.as_ref() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut bytes).map_err(jfail)?;
                if let journal::Tail::Damaged { at } = journal::tail(&bytes) {
                    tracing::warn!(scan = id, at, len = bytes.len(), "a damaged journal record: replay stops there");
                    damaged = Some((at, bytes.len()));
                }
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
                 open_count = (SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1 AND state IN (1, 5)), \
                 closed_count = (SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1 AND state = 2), \
                 filtered_count = (SELECT COUNT(*) FROM scan_result_rows \
                                   WHERE scan_id = ?1 AND state IN (3, 6, 7, 8)) \
                 WHERE id = ?1",
                [id],
            )
            .map_err(fail)?;
            tx.commit().map_err(fail)?;
            if journal.is_some() {
                match damaged {
                    // Kept for whoever can read more of it; a resume would empty the journal's name.
                    Some((at, len)) => {
                        let kept = PathBuf::from(format!("{}.damaged", jpath.display()));
                        std::fs::rename(&jpath, &kept).map_err(jfail)?;
                        self.damaged.push(format!(
                            "scan {id}: replay of its journal stopped at byte {at} of {len}, at a damaged record; \
                             the journal is kept as {}",
                            kept.display()
                        ));
                    }
                    None => std::fs::remove_file(&jpath).map_err(jfail)?,
                }
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
        let fail = StoreError::database(&self.path);
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
        let fail = StoreError::database(&self.path);
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
                "UPDATE scans SET resume_pass = ?2, resume_position = ?3, probes_sent = ?4, resume_window = 1 \
                 WHERE id = ?1",
                params![id, cursor.pass, cursor.position as i64, sent as i64],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
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
        let split = rows.len() > ROWS_PER_COMMIT;
        if split && self.checkpointer.is_none() {
            self.checkpointer = Checkpointer::start(&self.path);
        }
        let helped = split && self.checkpointer.is_some();
        if helped {
            // The writer's own checkpoints would run on this thread, between the commits.
            self.conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| self.fail(e))?;
        }
        let stored = self.commit_in_key_order(scan_id, rows, last, helped);
        // Back whether or not the store failed: the connection may go on (a read, a later scan).
        let restored = match helped {
            true => self.conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES),
            false => Ok(()),
        };
        let added = stored.map_err(|e| self.fail(e))?;
        restored.map_err(|e| self.fail(e))?;
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
        flagged: &[FlaggedHost],
        rows: &mut [ScanResult],
        open_only: bool,
    ) -> Result<u64, StoreError> {
        self.store(id, rows, |tx| {
            if open_only {
                tx.execute("DELETE FROM scan_result_rows WHERE scan_id = ?1 AND state != 1", [id])?;
            }
            Self::store_latency(tx, id, latency)?;
            // A resumed scan's counts cover its earlier runs: its flags replace theirs.
            tx.execute("DELETE FROM scan_flagged_hosts WHERE scan_id = ?1", [id])?;
            let mut stmt = tx.prepare(
                "INSERT INTO scan_flagged_hosts (scan_id, ip, flag, open, probed, withheld) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for h in flagged {
                stmt.execute(params![id, h.ip.to_string(), FLAG, h.open as i64, h.probed as i64, h.withheld as i64])?;
            }
            tx.execute(
                "UPDATE scans SET ended_at = ?2, probes_sent = ?3, open_count = ?4, closed_count = ?5, \
                 filtered_count = ?6, status = ?7, resume_pass = ?8, resume_position = ?9, resume_window = 1 \
                 WHERE id = ?1",
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
            if let (Some(state), Ok(us)) = (PortState::from_code(row.get(0)?), row.get::<_, i64>(1)) {
                latency.record_us(state, us.max(0) as u64);
            }
        }
        Ok(latency)
    }
}
