//! The read side: what `prtip db`, `prtip report` and `--resume` read of stored scans.

use super::Db;
use crate::engine::plan::Cursor;
use crate::latency::{self, Series};
use crate::open_hosts::FlaggedHost;
use crate::result::{PortState, Reason, ScanResult};
use crate::store::StoreError;
use crate::store::checkpoint::{self, Checkpoint};
use hdrhistogram::Histogram;
use rusqlite::{OptionalExtension, params};
use std::net::IpAddr;

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

pub(super) fn addr_of(v: rusqlite::types::ValueRef) -> Option<IpAddr> {
    match v {
        rusqlite::types::ValueRef::Integer(i) => u32::try_from(i).ok().map(|v| std::net::Ipv4Addr::from(v).into()),
        rusqlite::types::ValueRef::Text(t) => {
            std::str::from_utf8(t).ok()?.parse::<std::net::Ipv6Addr>().ok().map(Into::into)
        }
        _ => None,
    }
}

impl Db {
    /// What `--resume ID` needs of an interrupted scan.
    pub fn checkpoint(&self, id: i64) -> Result<Checkpoint, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT status, arguments, seed, hosts, resume_pass, resume_position, probes_sent, resume_window \
                 FROM scans WHERE id = ?1",
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
                        r.get::<_, i64>(7)? != 0,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.fail(e))?
            .ok_or(StoreError::NoScan(id))?;
        let (status, arguments, seed, hosts, pass, position, sent, window) = row;
        // A cursor of retry passes reads as a later pass, which starts over (`Cursor`).
        let pass = pass.saturating_add(i64::from(!window));
        // Scans stored before databases kept them have no arguments or hosts:
        // not resumable. Ones that do not read back are damaged.
        let kept = arguments.is_some() && hosts.is_some();
        let arguments: Option<Vec<String>> = arguments.and_then(|a| serde_json::from_str(&a).ok());
        let hosts = hosts
            .and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok())
            .and_then(|v| checkpoint::hosts_from_json(&v).ok());
        match (status.as_str(), arguments, hosts) {
            ("interrupted", ..) if kept && (position < 0 || pass < 0 || sent < 0) => {
                Err(StoreError::DamagedCheckpoint(id))
            }
            ("interrupted", Some(arguments), Some(hosts)) => Ok(Checkpoint {
                arguments,
                seed: seed as u64,
                hosts,
                cursor: Cursor { pass: u32::try_from(pass).unwrap_or(u32::MAX), position: position as u64 },
                sent: sent as u64,
                results: None,
            }),
            ("interrupted", ..) if kept => Err(StoreError::DamagedCheckpoint(id)),
            _ => Err(StoreError::NotResumable(id)),
        }
    }

    /// How many result rows a scan holds.
    pub fn rows_of(&self, id: i64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM scan_result_rows WHERE scan_id = ?1", [id], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
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

    /// How far a scan got: its end, for one that completed.
    pub fn cursor(&self, id: i64) -> Result<Cursor, StoreError> {
        self.conn
            .query_row("SELECT resume_pass, resume_position FROM scans WHERE id = ?1", [id], |r| {
                Ok(Cursor { pass: r.get(0)?, position: r.get::<_, i64>(1)? as u64 })
            })
            .map_err(|e| self.fail(e))
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

    /// The hosts a scan flagged, in address order.
    pub fn flagged(&self, id: i64) -> Result<Vec<FlaggedHost>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ip, open, probed, withheld FROM scan_flagged_hosts WHERE scan_id = ?1")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(|e| self.fail(e))?;
        let mut hosts = Vec::new();
        for row in rows {
            let (ip, open, probed, withheld) = row.map_err(|e| self.fail(e))?;
            // A row that is no address was not written by prtip: left out, as foreign rows are.
            let Ok(ip) = ip.parse() else { continue };
            let n = |v: i64| v.max(0) as u64;
            hosts.push(FlaggedHost { ip, open: n(open), probed: n(probed), withheld: n(withheld) });
        }
        hosts.sort_unstable_by_key(|h| h.ip);
        Ok(hosts)
    }

    /// The stored results of a scan, ordered by address and port.
    pub fn results(&self, id: i64, open_only: bool) -> Result<Vec<ScanResult>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT addr, port, state, reason, ttl, rtt_us, time FROM scan_result_rows \
                 WHERE scan_id = ?1 AND (?2 = 0 OR state IN (1, 5))",
            )
            .map_err(|e| self.fail(e))?;
        let (mut out, mut damaged) = (Vec::new(), 0u64);
        let mut rows = stmt.query(params![id, open_only as i64]).map_err(|e| self.fail(e))?;
        while let Some(r) = rows.next().map_err(|e| self.fail(e))? {
            let row = || -> rusqlite::Result<Option<ScanResult>> {
                let (Some(ip), Some(state), Some(reason)) =
                    (addr_of(r.get_ref(0)?), PortState::from_code(r.get(2)?), Reason::from_code(r.get(3)?))
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
            match row().map_err(|e| self.fail(e))? {
                Some(result) => out.push(result),
                None => damaged += 1,
            }
        }
        // Left out, a damaged row's port would read as never answered.
        if damaged > 0 {
            return Err(StoreError::DamagedRows { scan: id, rows: damaged });
        }
        out.sort_by_key(|r| (r.ip, r.port));
        Ok(out)
    }

    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let s: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| self.fail(e))?;
        Ok(s == "ok")
    }
}
