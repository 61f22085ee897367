//! `prtip db merge OUT IN...`: the databases of a sharded scan's shards,
//! run on several machines without a shared database, made one scan again.
//! Each input holds one completed shard (`--shard I/N`, the same seed,
//! targets, ports and scan type); together they must be shards 1 to N, each
//! once. The shards' probes are disjoint, so the merged scan is their
//! union: its rows, counts, round-trip histograms, flagged hosts and what
//! banners saw.

use crate::latency::Latency;
use crate::output::time::parse_rfc3339_us;
use crate::result::ScanResult;
use crate::store::StoreError;
use crate::store::db::{Db, ScanEnd, ScanStart};
use crate::store::lock::journal_path;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MergeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} holds {1} scans: db merge takes one shard's database per file")]
    NotOneScan(PathBuf, usize),
    #[error("{0} holds no sharded scan (run each shard with --shard I/N --seed S --database FILE)")]
    NotSharded(PathBuf),
    #[error("{0} holds a scan that did not complete ({1}): finish it with --resume first")]
    Unfinished(PathBuf, String),
    #[error("{0} is a shard of another scan than {1}: their seed, targets, ports or scan type differ")]
    OtherScan(PathBuf, PathBuf),
    #[error("{0} and {1} both hold shard {2}")]
    SameShard(PathBuf, PathBuf, String),
    #[error("shards missing from the merge: {0}")]
    Missing(String),
    #[error("the shards' round-trip histograms do not add up: {0}")]
    Latency(String),
    #[error("{0} is one of the shards: merge into another file")]
    OutIsInput(PathBuf),
}

impl MergeError {
    /// Whether the user named files that do not make one scan: status 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            MergeError::Store(e) => e.names_the_wrong_database(),
            MergeError::Latency(_) => false,
            _ => true,
        }
    }
}

/// One input's shard: what the merge checks of it.
#[derive(Debug, Clone)]
pub struct Shard {
    pub path: PathBuf,
    pub status: String,
    pub config: Value,
}

/// The scan the shards make together: its configuration without the shard.
fn whole(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("shard");
    }
    c
}

/// Checks that `shards` are shards 1 to N of one completed scan, each once;
/// returns N and that scan's configuration.
pub fn check(shards: &[Shard]) -> Result<(u64, Value), MergeError> {
    let mut seen: BTreeMap<u64, &Path> = BTreeMap::new();
    let mut count = None;
    let first = shards.first().ok_or_else(|| MergeError::Missing("all".into()))?;
    for s in shards {
        let spec = s.config["shard"].as_str().ok_or_else(|| MergeError::NotSharded(s.path.clone()))?;
        let shard = crate::config::parse_shard(spec).map_err(|_| MergeError::NotSharded(s.path.clone()))?;
        if shard.count == 1 {
            return Err(MergeError::NotSharded(s.path.clone()));
        }
        if s.status != "completed" {
            return Err(MergeError::Unfinished(s.path.clone(), s.status.clone()));
        }
        if whole(&s.config) != whole(&first.config) || *count.get_or_insert(shard.count) != shard.count {
            return Err(MergeError::OtherScan(s.path.clone(), first.path.clone()));
        }
        if let Some(other) = seen.insert(shard.index + 1, &s.path) {
            return Err(MergeError::SameShard(other.to_path_buf(), s.path.clone(), spec.to_string()));
        }
    }
    let n = count.unwrap_or(1);
    let missing: Vec<String> = (1..=n).filter(|i| !seen.contains_key(i)).map(|i| format!("{i}/{n}")).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing(missing.join(", ")));
    }
    let mut config = whole(&first.config);
    if let Some(o) = config.as_object_mut() {
        o.insert("merged_shards".into(), n.into());
    }
    Ok((n, config))
}

/// Merges the shard databases `inputs` into one new scan of `out` (created
/// if need be); returns its id and row count.
pub fn merge(out: &Path, inputs: &[PathBuf]) -> Result<(i64, u64), MergeError> {
    let same = |a: &Path, b: &Path| a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
    if inputs.iter().any(|i| same(i, out)) {
        return Err(MergeError::OutIsInput(out.to_path_buf()));
    }
    let mut shards = Vec::new();
    let mut dbs = Vec::new();
    for path in inputs {
        let db = Db::open_read_only(path)?;
        let scans = db.scans()?;
        let [scan] = scans.as_slice() else { return Err(MergeError::NotOneScan(path.clone(), scans.len())) };
        let config = db.config(scan.id)?.ok_or_else(|| MergeError::NotSharded(path.clone()))?;
        shards.push(Shard { path: path.clone(), status: scan.status.clone(), config });
        dbs.push((db, scan.clone()));
    }
    let (_, config) = check(&shards)?;
    let mut rows: Vec<ScanResult> = Vec::new();
    let mut series = Vec::new();
    let mut flagged = Vec::new();
    let mut services = Vec::new();
    let mut end = ScanEnd::default();
    let mut started_us = u64::MAX;
    let mut transports: Vec<String> = Vec::new();
    let seed = config["seed"].as_u64().unwrap_or(0);
    for (db, scan) in &dbs {
        rows.extend(db.results(scan.id, false)?);
        series.extend(db.latency(scan.id)?);
        flagged.extend(db.flagged(scan.id)?);
        services.extend(db.services_of(scan.id)?);
        started_us = started_us.min(parse_rfc3339_us(&scan.started_at).unwrap_or(0));
        end.ended_us = end.ended_us.max(scan.ended_at.as_deref().and_then(parse_rfc3339_us).unwrap_or(0));
        end.probes_sent += scan.probes_sent as u64;
        end.open += scan.open as u64;
        end.closed += scan.closed as u64;
        end.filtered += scan.filtered as u64;
        end.cursor.position += db.cursor(scan.id)?.position;
        if !transports.contains(&scan.transport) {
            transports.push(scan.transport.clone());
        }
    }
    flagged.sort_by_key(|h| h.ip);
    let latency = Latency::from_series(series).map_err(MergeError::Latency)?;
    let mut db = Db::open(out)?;
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let start = ScanStart {
        started_us,
        command_line: format!("prtip db merge {} {}", out.display(), names.join(" ")),
        config_json: config.to_string(),
        transport: transports.join("+"),
        seed,
    };
    let (id, journal) = db.begin_scan(&start, None)?;
    let count = rows.len() as u64;
    db.finish_scan(id, &end, &latency, &flagged, &mut rows, false)?;
    db.insert_services(id, services.iter().map(|((ip, port), s)| (*ip, *port, s)))?;
    // Nothing went through the journal: the rows were stored with the end.
    drop(journal);
    let _ = std::fs::remove_file(journal_path(out, id));
    Ok((id, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shard(path: &str, spec: &str) -> Shard {
        Shard {
            path: path.into(),
            status: "completed".into(),
            config: json!({"seed": 7, "ports": "1-100", "scan_type": "syn", "shard": spec}),
        }
    }

    #[test]
    fn shards_one_to_n_each_once_of_one_scan_merge_and_nothing_else_does() {
        let (n, config) = check(&[shard("a", "2/3"), shard("b", "1/3"), shard("c", "3/3")]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(config, json!({"seed": 7, "ports": "1-100", "scan_type": "syn", "merged_shards": 3}));
        let err = |s: &[Shard]| check(s).unwrap_err().to_string();
        assert_eq!(err(&[shard("a", "1/3"), shard("c", "3/3")]), "shards missing from the merge: 2/3");
        assert_eq!(err(&[shard("a", "1/2"), shard("b", "1/2")]), "a and b both hold shard 1/2");
        assert!(err(&[shard("a", "1/2"), shard("b", "2/3")]).starts_with("b is a shard of another scan than a"));
        let mut other = shard("b", "2/2");
        other.config["seed"] = 8.into();
        assert!(err(&[shard("a", "1/2"), other]).starts_with("b is a shard of another scan"));
        let mut unfinished = shard("b", "2/2");
        unfinished.status = "interrupted".into();
        assert!(err(&[shard("a", "1/2"), unfinished]).contains("did not complete (interrupted)"));
        assert!(err(&[shard("a", "1/1")]).starts_with("a holds no sharded scan"));
        let mut unsharded = shard("a", "");
        unsharded.config.as_object_mut().unwrap().remove("shard");
        assert!(err(&[unsharded]).starts_with("a holds no sharded scan"));
    }
}
