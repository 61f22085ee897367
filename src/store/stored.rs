//! What `prtip db` and `prtip report` read: stored scans, from a SQLite
//! file or from a PostgreSQL, where a fleet's shards also read as one scan.

use super::StoreError;
use super::db::{Db, ScanRow};
use super::postgres_scans::PostgresScans;
use crate::banner::Service;
use crate::latency::Series;
use crate::open_hosts::FlaggedHost;
use crate::result::ScanResult;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

/// A stored scan as users name it: `7`, or `fleet:3` (`fleet:NAME`) for
/// the scans of a fleet's shards together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRef {
    Scan(i64),
    /// A fleet's id or name.
    Fleet(String),
}

impl FromStr for ScanRef {
    type Err = String;

    fn from_str(text: &str) -> Result<ScanRef, String> {
        match text.strip_prefix("fleet:") {
            Some(fleet) if !fleet.is_empty() => Ok(ScanRef::Fleet(fleet.to_string())),
            _ => text.parse().map(ScanRef::Scan).map_err(|_| {
                format!("{text}: a scan is named by its id, or a fleet's scans by fleet:ID or fleet:NAME")
            }),
        }
    }
}

impl ScanRef {
    /// The error of a scan or fleet that is not there.
    pub fn not_found(&self) -> StoreError {
        match self {
            ScanRef::Scan(id) => StoreError::NoScan(*id),
            ScanRef::Fleet(fleet) => StoreError::NoFleet(fleet.clone()),
        }
    }
}

impl fmt::Display for ScanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanRef::Scan(id) => write!(f, "scan {id}"),
            ScanRef::Fleet(fleet) => write!(f, "fleet {fleet}"),
        }
    }
}

/// Stored scans, read only.
pub trait StoredScans {
    /// Every scan (and, in PostgreSQL, every fleet) in the order stored.
    fn list(&self) -> Result<Vec<(ScanRef, ScanRow)>, StoreError>;
    fn scan(&self, scan: &ScanRef) -> Result<Option<ScanRow>, StoreError>;
    /// The configuration it was started with.
    fn config(&self, scan: &ScanRef) -> Result<Option<serde_json::Value>, StoreError>;
    fn flagged(&self, scan: &ScanRef) -> Result<Vec<FlaggedHost>, StoreError>;
    fn services(&self, scan: &ScanRef) -> Result<HashMap<(IpAddr, u16), Service>, StoreError>;
    /// Its results, ordered by address and port.
    fn results(&self, scan: &ScanRef, open_only: bool) -> Result<Vec<ScanResult>, StoreError>;
    /// Its round-trip histograms, in `Series::EVERY` order.
    fn latency(&self, scan: &ScanRef) -> Result<Vec<(Series, Histogram<u64>)>, StoreError>;
}

/// The scans of the PostgreSQL `postgres` names (`cli::postgres_to_read`),
/// or else of the SQLite file `database` (`prtip.db` if none is named), to read.
pub fn open(database: Option<&Path>, postgres: Option<&str>) -> Result<Box<dyn StoredScans>, StoreError> {
    Ok(match postgres {
        Some(url) => Box::new(PostgresScans::open(url)?),
        None => Box::new(Db::open_read_only(database.unwrap_or(Path::new(crate::commands::DEFAULT_DATABASE)))?),
    })
}

/// A SQLite file holds scans, never fleets.
fn sqlite_id(scan: &ScanRef) -> Result<i64, StoreError> {
    match scan {
        ScanRef::Scan(id) => Ok(*id),
        ScanRef::Fleet(_) => Err(StoreError::FleetsInPostgres),
    }
}

impl StoredScans for Db {
    fn list(&self) -> Result<Vec<(ScanRef, ScanRow)>, StoreError> {
        Ok(self.scans()?.into_iter().map(|s| (ScanRef::Scan(s.id), s)).collect())
    }

    fn scan(&self, scan: &ScanRef) -> Result<Option<ScanRow>, StoreError> {
        Db::scan(self, sqlite_id(scan)?)
    }

    fn config(&self, scan: &ScanRef) -> Result<Option<serde_json::Value>, StoreError> {
        Db::config(self, sqlite_id(scan)?)
    }

    fn flagged(&self, scan: &ScanRef) -> Result<Vec<FlaggedHost>, StoreError> {
        Db::flagged(self, sqlite_id(scan)?)
    }

    fn services(&self, scan: &ScanRef) -> Result<HashMap<(IpAddr, u16), Service>, StoreError> {
        self.services_of(sqlite_id(scan)?)
    }

    fn results(&self, scan: &ScanRef, open_only: bool) -> Result<Vec<ScanResult>, StoreError> {
        Db::results(self, sqlite_id(scan)?, open_only)
    }

    fn latency(&self, scan: &ScanRef) -> Result<Vec<(Series, Histogram<u64>)>, StoreError> {
        Db::latency(self, sqlite_id(scan)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_and_fleets_are_named_apart() {
        assert_eq!("7".parse(), Ok(ScanRef::Scan(7)));
        assert_eq!("fleet:3".parse(), Ok(ScanRef::Fleet("3".into())));
        assert_eq!("fleet:sweep-1".parse(), Ok(ScanRef::Fleet("sweep-1".into())));
        assert!("fleet:".parse::<ScanRef>().is_err());
        assert!("x".parse::<ScanRef>().is_err());
        assert_eq!(ScanRef::Fleet("3".into()).to_string(), "fleet 3");
    }
}
