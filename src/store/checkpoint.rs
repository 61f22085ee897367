//! What an interrupted scan leaves behind so that `--resume` can finish it:
//! the arguments it was started with, its seed, its targets as they were
//! resolved (a target file or a hostname may have changed since), and how far
//! it got. With `--with-db` this lives in the scan's row; without, in a small
//! JSON file whose results are appended, in the journal's record format, to a
//! second file beside it.

use super::journal;
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use crate::target::hosts::{Family, Hosts, value};
use crate::target::ranges::{Range, RangeSet};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// 2: the cursor is where every probe before it is concluded (a send
/// window). 1 also had retry passes: its cursor, read as pass 1 or later,
/// starts its scan over with what its runs stored skipped.
const FORMAT: u64 = 2;
const PASSES_FORMAT: u64 = 1;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a prtip checkpoint ({why})", path.display())]
    Invalid { path: PathBuf, why: String },
    #[error("no checkpoint to resume in {}: give a checkpoint file or a scan id", .0.display())]
    NoneLeft(PathBuf),
    #[error("checkpoint {} belongs to a prtip that is still running", .0.display())]
    InUse(PathBuf),
    #[error(
        "{} holds {found} of the {expected} results its checkpoint counts on (missing or damaged): not resumed, as the rest would be reported filtered",
        path.display()
    )]
    ResultsLost { path: PathBuf, found: u64, expected: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The command line after the program name, as typed.
    pub arguments: Vec<String>,
    pub seed: u64,
    /// The targets as resolved, exclusions applied.
    pub hosts: Hosts,
    pub cursor: Cursor,
    /// Probes sent so far, retries included.
    pub sent: u64,
    /// The answered results its journal held when it was written (a
    /// checkpoint file's; a database holds its own): `None` in checkpoints
    /// that did not count them.
    pub results: Option<u64>,
}

impl Checkpoint {
    pub fn to_json(&self) -> String {
        json!({
            "prtip_checkpoint": FORMAT,
            "arguments": self.arguments,
            "seed": self.seed,
            "hosts": hosts_json(&self.hosts),
            "pass": self.cursor.pass,
            "position": self.cursor.position,
            "sent": self.sent,
            "results": self.results,
        })
        .to_string()
    }

    /// Reads what `to_json` wrote; `Err` says what is wrong.
    pub fn from_json(text: &str) -> Result<Checkpoint, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let format = v["prtip_checkpoint"].as_u64().filter(|f| [FORMAT, PASSES_FORMAT].contains(f));
        let Some(format) = format else {
            return Err(format!("format version {} is not {FORMAT}", v["prtip_checkpoint"]));
        };
        let number = |key: &str| v[key].as_u64().ok_or_else(|| format!("'{key}' is missing"));
        let arguments = v["arguments"]
            .as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .ok_or("'arguments' is not a list of strings")?;
        Ok(Checkpoint {
            arguments,
            seed: number("seed")?,
            hosts: hosts_from_json(&v["hosts"])?,
            cursor: Cursor {
                pass: u32::try_from(number("pass")?)
                    .ok()
                    .and_then(|pass| pass.checked_add(u32::from(format == PASSES_FORMAT)))
                    .ok_or("'pass' is out of range")?,
                position: number("position")?,
            },
            sent: number("sent")?,
            results: match &v["results"] {
                Value::Null => None,
                r => Some(r.as_u64().ok_or("'results' is not a count")?),
            },
        })
    }
}

/// The hosts as `[[first, last], ...]`, addresses as text.
pub fn hosts_json(hosts: &Hosts) -> Value {
    Value::from(hosts.ranges().map(|r| json!([r.first().to_string(), r.last().to_string()])).collect::<Vec<_>>())
}

/// Reads what `hosts_json` wrote, and the numbers (IPv4 only) that earlier
/// checkpoints held.
pub fn hosts_from_json(v: &Value) -> Result<Hosts, String> {
    let bad = || "'hosts' is not a list of [first, last] addresses of one family".to_string();
    let address = |v: &Value| match v {
        Value::String(s) => s.parse().ok().map(value),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).map(|n| (Family::V4, n.into())),
        _ => None,
    };
    let ranges = v
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|pair| match (pair.get(0).and_then(address), pair.get(1).and_then(address)) {
            (Some((f, first)), Some((g, last))) if f == g && first <= last => Ok((f, Range::new(first, last))),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let family = ranges.first().ok_or_else(bad)?.0;
    if ranges.iter().any(|(f, _)| *f != family) {
        return Err(bad());
    }
    Ok(Hosts::new(family, RangeSet::from_ranges(ranges.into_iter().map(|(_, r)| r).collect())))
}

/// Where checkpoints of scans without a database go:
/// `$XDG_STATE_HOME/prtip`, else `~/.local/state/prtip`, else, for a user
/// whose home is missing or not theirs to write (`nobody`'s is
/// `/nonexistent`), `prtip-UID` in the temporary directory.
pub fn dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("prtip");
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/prtip"));
    match home {
        Some(dir) if super::safe_open::state_dir(&dir).is_ok() => dir,
        _ => std::env::temp_dir().join(format!("prtip-{}", crate::sys::effective_uid())),
    }
}

/// The results journal that belongs to a checkpoint file.
pub fn results_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".results");
    PathBuf::from(p)
}

/// Whether a running prtip holds the checkpoint (it locks the results journal).
pub fn in_use(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .open(results_path(path))
        .is_ok_and(|f| matches!(super::lock::try_lock(&f), Ok(false)))
}

/// The most recently written checkpoint in `dir` that no running prtip holds.
pub fn newest(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let none = || CheckpointError::NoneLeft(dir.to_path_buf());
    let entries = std::fs::read_dir(dir).map_err(|_| none())?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json") && !in_use(&e.path()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
        .ok_or_else(none)
}

/// A checkpoint file and the results its scan had received.
pub fn load(path: &Path) -> Result<(Checkpoint, Vec<ScanResult>), CheckpointError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| CheckpointError::Read { path: p.to_path_buf(), source: e });
    let text = String::from_utf8(read(path)?)
        .map_err(|_| CheckpointError::Invalid { path: path.to_path_buf(), why: "not UTF-8 text".into() })?;
    let checkpoint =
        Checkpoint::from_json(&text).map_err(|why| CheckpointError::Invalid { path: path.to_path_buf(), why })?;
    let rpath = results_path(path);
    let bytes = match std::fs::read(&rpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(CheckpointError::Read { path: rpath, source: e }),
    };
    let results: Vec<ScanResult> = journal::decode(&bytes).flat_map(|(_, rows)| rows).collect();
    // Silence is what a checkpoint does not record: a result the journal
    // lost would come back from the resumed scan as a filtered port.
    if let Some(expected) = checkpoint.results.filter(|&n| n > results.len() as u64) {
        return Err(CheckpointError::ResultsLost { path: rpath, found: results.len() as u64, expected });
    }
    Ok((checkpoint, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let c = Checkpoint {
            arguments: vec!["-p".into(), "1-1000".into(), "10.201.0.0/16".into()],
            seed: u64::MAX,
            hosts: Hosts::new(
                Family::V4,
                RangeSet::from_ranges(vec![Range::new(1, 5), Range::new(u32::MAX.into(), u32::MAX.into())]),
            ),
            cursor: Cursor { pass: 2, position: 1 << 40 },
            sent: 12345,
            results: Some(77),
        };
        assert_eq!(Checkpoint::from_json(&c.to_json()), Ok(c.clone()));
        // What earlier checkpoints held: IPv4 addresses as numbers.
        let numbers = c.to_json().replace(r#""0.0.0.1","0.0.0.5""#, "1,5");
        assert_ne!(numbers, c.to_json());
        assert_eq!(Checkpoint::from_json(&numbers), Ok(c.clone()));
        let v6 = Checkpoint {
            hosts: Hosts::new(Family::V6, RangeSet::from_ranges(vec![Range::new(1 << 127, (1 << 127) + 0xffff)])),
            ..c.clone()
        };
        assert_eq!(Checkpoint::from_json(&v6.to_json()), Ok(v6.clone()));
        assert!(v6.to_json().contains(r#"["8000::","8000::ffff"]"#), "{}", v6.to_json());
        // Checkpoints that did not count their results.
        let uncounted = c.to_json().replace(r#","results":77"#, "");
        assert_ne!(uncounted, c.to_json());
        assert_eq!(Checkpoint::from_json(&uncounted), Ok(Checkpoint { results: None, ..c.clone() }));
        for bad in [
            "",
            "{}",
            "[1]",
            r#"{"prtip_checkpoint":2}"#,
            r#"{"prtip_checkpoint":3}"#,
            &c.to_json().replace("\"seed\"", "\"sead\""),
            &c.to_json().replace(r#"["255.255.255.255","255.255.255.255"]"#, r#"["0.0.0.5","0.0.0.4"]"#),
            &c.to_json().replace(r#"["255.255.255.255","255.255.255.255"]"#, "[4294967296,4294967296]"),
            &c.to_json().replace(r#"["255.255.255.255","255.255.255.255"]"#, r#"["::1","::2"]"#),
            &c.to_json().replace(r#"["255.255.255.255","255.255.255.255"]"#, r#"["10.0.0.1","::2"]"#),
            &c.to_json().replace(r#"["255.255.255.255","255.255.255.255"]"#, r#"["10.0.0.300","10.0.0.301"]"#),
            &c.to_json().replace("\"-p\"", "7"),
            &c.to_json().replace(r#""results":77"#, r#""results":-1"#),
        ] {
            assert!(Checkpoint::from_json(bad).is_err(), "{bad}");
        }
    }

    /// A checkpoint of a small scan, 40 probes in.
    fn small() -> Checkpoint {
        Checkpoint {
            arguments: vec!["-p".into(), "80".into(), "10.0.0.0/24".into()],
            seed: 7,
            hosts: Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(1, 5)])),
            cursor: Cursor { pass: 0, position: 40 },
            sent: 40,
            results: None,
        }
    }

    /// A journal that lost results its checkpoint counts on is refused:
    /// resumed, the scan would report those ports filtered.
    #[test]
    fn a_journal_short_of_its_checkpoints_results_is_refused() {
        let dir = tempfile::Builder::new().prefix("prtip-checkpoint-").tempdir().unwrap();
        let path = dir.path().join("scan.json");
        let c = Checkpoint { results: Some(5), ..small() };
        std::fs::write(&path, c.to_json()).unwrap();
        let mut journal = Vec::new();
        journal::encode(0, &journal::tests::sample(3), &mut journal);
        let whole = journal.len();
        journal::encode(0, &journal::tests::sample(2), &mut journal);
        let results = results_path(&path);
        for (bytes, found) in
            [(&[][..], 0), (&journal[..whole], 3), (&journal[..journal.len() - 1], 3), (&[0u8; 64][..], 0)]
        {
            std::fs::write(&results, bytes).unwrap();
            match load(&path) {
                Err(CheckpointError::ResultsLost { found: f, expected: 5, .. }) => assert_eq!(f, found),
                other => panic!("{found} of 5 results: {other:?}"),
            }
        }
        std::fs::remove_file(&results).unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::ResultsLost { found: 0, .. })), "no journal at all");
        std::fs::write(&results, &journal).unwrap();
        assert_eq!(load(&path).unwrap().1.len(), 5);
        // A checkpoint that did not count its results takes what there is.
        std::fs::write(&path, Checkpoint { results: None, ..c }.to_json()).unwrap();
        std::fs::write(&results, &journal[..whole]).unwrap();
        assert_eq!(load(&path).unwrap().1.len(), 3);
    }

    /// A checkpoint of a version that retried in passes: even at its first
    /// pass, its cursor did not conclude the probes before it, so it reads
    /// as a later pass, which starts the scan over.
    #[test]
    fn a_checkpoint_of_retry_passes_reads_as_one_past_the_first_pass() {
        let c = small();
        let old = c.to_json().replace(r#""prtip_checkpoint":2"#, r#""prtip_checkpoint":1"#);
        assert_ne!(old, c.to_json());
        let read = Checkpoint::from_json(&old).unwrap();
        assert_eq!(read.cursor, Cursor { pass: 1, position: 40 });
        assert_eq!(Checkpoint { cursor: c.cursor, ..read }, c);
    }
}
