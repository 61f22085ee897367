//! The lock a running scan holds on its journal, in the database's
//! directory or beside its checkpoint: whoever finds it taken knows the scan
//! is alive in another process, and leaves its books alone.

use super::StoreError;
use std::path::{Path, PathBuf};

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
pub fn lock_journal(db: &Path, id: i64) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let path = journal_path(db, id);
    let fail = StoreError::journal(&path);
    let file = super::safe_open::writing()
        .read(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(super::safe_open::explain(e)))?;
    lock(file.as_raw_fd()).map_err(fail)?;
    file.set_len(0).map_err(fail)?;
    Ok(file)
}
