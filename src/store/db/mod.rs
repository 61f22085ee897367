//! The SQLite database: a versioned schema that accumulates scans
//! (`schema`), the write path of a scan (`write`), and the reads behind
//! `prtip db`, `prtip report` and `--resume` (`read`).

mod read;
mod schema;
mod services;
mod write;

pub use read::ScanRow;
pub use services::{service_json, service_of};
pub use write::{STORE_ROWS, ScanEnd, ScanStart};

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use write::{AUTOCHECKPOINT_PAGES, Checkpointer};

pub struct Db {
    conn: Connection,
    path: PathBuf,
    recovered: u64,
    /// What recovery could not replay, one line per journal.
    damaged: Vec<String>,
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

impl Db {
    /// Opens a database a user named to change it (`--resume ID`, `db
    /// recover`): one that is not there is their mistake, not a new file to create.
    pub fn open_existing(path: &Path) -> Result<Db, StoreError> {
        if !path.exists() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        Db::open(path)
    }

    /// Opens a database only to read it (`db list`, `db show`, `report`):
    /// nothing is written, not even the journal mode, so it works on a full
    /// disk and on a file prtip may not change. A database of an older prtip
    /// is named as such: a command that writes brings it up to date.
    pub fn open_read_only(path: &Path) -> Result<Db, StoreError> {
        if !path.exists() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        let err = StoreError::database(path);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let version = schema::version_of(&conn, path)?;
        if version < schema::MIGRATIONS.len() {
            return Err(StoreError::OlderSchema { path: path.to_path_buf(), version });
        }
        Ok(Db { conn, path: path.to_path_buf(), recovered: 0, damaged: Vec::new(), checkpointer: None })
    }

    /// Opens (creating if needed) and migrates the database, then replays a
    /// journal left by a scan that did not finish.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let err = StoreError::database(path);
        let conn = Connection::open(path).map_err(err)?;
        // Before anything is changed: a database that is not prtip's is left as it is.
        schema::version_of(&conn, path)?;
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
        let mut db = Db { conn, path: path.to_path_buf(), recovered: 0, damaged: Vec::new(), checkpointer: None };
        db.migrate()?;
        db.recovered = db.recover()?;
        Ok(db)
    }

    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Database { path: self.path.clone(), source }
    }

    /// Results that opening the database recovered for scans that never finished.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Journals whose replay stopped at a damaged record, and where.
    pub fn damaged(&self) -> &[String] {
        &self.damaged
    }
}

#[cfg(test)]
mod tests {
    use super::schema::{MIGRATIONS, Migration};
    use super::write::{ROWS_PER_COMMIT, hand_out_in_key_order, key_order, sort_rows};
    use super::*;
    use crate::latency::{Latency, Series};
    use crate::output::time::rfc3339_us;
    use crate::result::{PortState, Reason, ScanResult};
    use crate::store::checkpoint::Checkpoint;
    use crate::store::journal;
    use crate::store::lock::journal_path;
    use std::net::IpAddr;
    use std::sync::mpsc;

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
        assert_eq!(db.finish_scan(a, &end, &latency, &[], &mut [result(2, PortState::Closed)], false).unwrap(), 0);
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

    /// A cursor saved by this version reads back as it was; one an older
    /// prtip (retry passes) saved reads as a later pass, which starts over.
    #[test]
    fn a_saved_cursor_reads_back_and_one_of_retry_passes_starts_over() {
        use crate::engine::plan::Cursor;
        use crate::target::hosts::{Family, Hosts};
        use crate::target::ranges::{Range, RangeSet};
        let (_dir, path) = temp_db("cursor");
        let mut db = Db::open(&path).unwrap();
        let checkpoint = Checkpoint {
            arguments: vec!["-p".into(), "22".into(), "10.0.0.0/24".into()],
            seed: 5,
            hosts: Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(0x0a00_0000, 0x0a00_00ff)])),
            cursor: Cursor { pass: 0, position: 40 },
            sent: 40,
            results: None,
        };
        let (id, _journal) = db.begin_scan(&start(), Some(&checkpoint)).unwrap();
        db.save_cursor(id, checkpoint.cursor, 40).unwrap();
        let end = ScanEnd { interrupted: true, cursor: checkpoint.cursor, probes_sent: 40, ..Default::default() };
        db.finish_scan(id, &end, &Latency::default(), &[], &mut [], false).unwrap();
        assert_eq!(db.checkpoint(id).unwrap().cursor, Cursor { pass: 0, position: 40 });
        db.conn.execute("UPDATE scans SET resume_window = 0", []).unwrap();
        assert_eq!(db.checkpoint(id).unwrap().cursor, Cursor { pass: 1, position: 40 });
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
    fn a_damaged_journal_is_replayed_up_to_the_damage_and_kept() {
        let (_dir, path) = temp_db("damaged");
        let mut db = Db::open(&path).unwrap();
        let (id, journal) = db.begin_scan(&start(), None).unwrap();
        drop((db, journal));
        let mut buf = Vec::new();
        journal::encode(id, &[result(1, PortState::Open)], &mut buf);
        let at = buf.len();
        journal::encode(id, &[result(2, PortState::Open)], &mut buf);
        buf[at + 12] ^= 0xff;
        journal::encode(id, &[result(3, PortState::Open)], &mut buf);
        std::fs::write(journal_path(&path, id), &buf).unwrap();
        let db = Db::open(&path).unwrap();
        assert_eq!(db.recovered(), 1, "what comes before the damage");
        let kept = format!("{}.damaged", journal_path(&path, id).display());
        assert_eq!(std::fs::read(&kept).unwrap(), buf, "the journal is kept whole");
        assert_eq!(db.damaged().len(), 1);
        assert!(db.damaged()[0].contains(&format!("stopped at byte {at} of {}", buf.len())), "{:?}", db.damaged());
        assert_eq!(db.scan(id).unwrap().unwrap().status, "interrupted");
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

    /// A row prtip never wrote is not left out of what is read back: its
    /// port would read as one that never answered.
    #[test]
    fn damaged_rows_are_an_error_not_a_gap() {
        let (_dir, path) = temp_db("damaged");
        let mut db = Db::open(&path).unwrap();
        let (id, _journal) = db.begin_scan(&start(), None).unwrap();
        db.insert(id, &mut every_kind()).unwrap();
        drop(db);
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(conn.execute("UPDATE scan_result_rows SET state = 99 WHERE state IN (0, 1, 2)", []).unwrap(), 4);
        drop(conn);
        let db = Db::open_read_only(&path).unwrap();
        match db.results(id, false) {
            Err(StoreError::DamagedRows { scan, rows: 4 }) => assert_eq!(scan, id),
            other => panic!("{other:?}"),
        }
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
        // Their cursors were saved by retry passes (version 9 marks a send window's).
        let windows: Vec<i64> = db
            .conn
            .prepare("SELECT resume_window FROM scans ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(windows, [0, 0]);
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
        assert_eq!(db.finish_scan(id, &end, &Latency::default(), &[], &mut rows, false).unwrap(), n as u64);
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
    fn a_database_that_is_not_prtips_is_refused_and_left_as_it_was() {
        let (_dir, path) = temp_db("foreign");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE accounts (name TEXT)").unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(Db::open(&path), Err(StoreError::ForeignSchema(_))));
        assert!(matches!(Db::open_read_only(&path), Err(StoreError::ForeignSchema(_))));
        assert_eq!(std::fs::read(&path).unwrap(), before, "not migrated, not switched to WAL");
    }

    #[test]
    fn reading_changes_nothing_and_names_an_older_schema() {
        let (_dir, path) = temp_db("read");
        let conn = Connection::open(&path).unwrap();
        let Migration::Sql(first) = &MIGRATIONS[0] else { panic!("the first step is SQL") };
        conn.execute_batch(first).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(Db::open_read_only(&path), Err(StoreError::OlderSchema { version: 1, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        drop(Db::open(&path).unwrap());
        let db = Db::open_read_only(&path).unwrap();
        assert!(db.scans().unwrap().is_empty());
        let mode: String = db.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal", "the journal mode is the one a scan set");
        assert!(matches!(Db::open_read_only(&path.with_extension("none")), Err(StoreError::NoDatabase(_))));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = temp_db("newer");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Db::open(&path), Err(StoreError::NewerSchema { version: 99, .. })));
    }
}
