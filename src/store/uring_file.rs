//! An append-only file written through io_uring: the journals and the output files.

use super::{journal, safe_open};
use crate::result::ScanResult;
use std::path::PathBuf;
use tokio_uring::fs::File;

pub(super) struct UringFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    offset: u64,
    /// The descriptor that holds the file's lock, where it has one, apart
    /// from the one io_uring writes through: a write or sync in flight when
    /// the process is killed holds that one until the kernel tears the ring
    /// down, after the process is gone, and a lock on it would outlive the
    /// scan for that moment and hide its checkpoint from `--resume`.
    _lock: Option<std::fs::File>,
}

impl UringFile {
    pub(super) fn create(path: PathBuf) -> std::io::Result<UringFile> {
        let file = safe_open::open_now(safe_open::writing().create(true).truncate(true), &path)?;
        Ok(UringFile { path, file: File::from_std(file), offset: 0, _lock: None })
    }

    /// Takes over a file opened and locked elsewhere, to append to it
    /// through an open of its own.
    pub(super) fn from_std(path: PathBuf, locked: std::fs::File) -> std::io::Result<UringFile> {
        use std::os::fd::AsRawFd;
        let offset = locked.metadata()?.len();
        // The same file whatever its path leads to now: /proc reopens the descriptor.
        let writer = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", locked.as_raw_fd()))?;
        Ok(UringFile { path, file: File::from_std(writer), offset, _lock: Some(locked) })
    }

    /// Appends `rows` as one journal record.
    pub(super) async fn append_record(&mut self, scan_id: i64, rows: &[ScanResult]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(16 + rows.len() * 24);
        journal::encode(scan_id, rows, &mut buf);
        self.append(buf).await.map(drop)
    }

    /// Appends `bytes`; hands the buffer back, emptied, for the next ones.
    pub(super) async fn append(&mut self, bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        if bytes.is_empty() {
            return Ok(bytes);
        }
        let len = bytes.len() as u64;
        let (res, mut bytes) = self.file.write_all_at(bytes, self.offset).await;
        res?;
        self.offset += len;
        bytes.clear();
        Ok(bytes)
    }
}
