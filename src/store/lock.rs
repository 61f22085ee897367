//! The lock a running scan holds on its journal, in the database's
//! directory or beside its checkpoint: whoever finds it taken knows the scan
//! is alive in another process, and leaves its books alone.

use super::StoreError;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Where a scan's journal lives: beside its database, with a name SQLite does not use.
pub fn journal_path(db: &Path, scan_id: i64) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(format!(".{scan_id}.prtip-journal"));
    PathBuf::from(p)
}

/// Takes the exclusive lock a running scan holds on its journal; false if a
/// live process holds it. The kernel drops the lock when its holder dies.
pub fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    crate::sys::try_lock_exclusive(file.as_fd())
}

/// Takes a running scan's lock on `file`, or says why it cannot: another
/// prtip holds it.
pub fn lock(file: &std::fs::File) -> std::io::Result<()> {
    match try_lock(file)? {
        true => Ok(()),
        false => Err(std::io::Error::other("in use by a running prtip")),
    }
}

/// Creates (or empties) a scan's journal, holding its lock.
pub fn lock_journal(db: &Path, id: i64) -> Result<std::fs::File, StoreError> {
    let path = journal_path(db, id);
    let fail = StoreError::journal(&path);
    let file = super::safe_open::writing()
        .read(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(super::safe_open::explain(e)))?;
    lock(&file).map_err(fail)?;
    file.set_len(0).map_err(fail)?;
    Ok(file)
}
