//! How prtip opens the files it writes, usually as root: never through a
//! symbolic link (another user could have planted one where a file is about
//! to be written), readable by their owner only (results say what answers
//! where), and in the state directory only when no other user owns it
//! (`sudo -E` keeps the user's `HOME` and `XDG_STATE_HOME`).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Files prtip creates are its user's alone.
const MODE: u32 = 0o600;
/// The state directory, likewise.
const DIR_MODE: u32 = 0o700;

/// Options for writing a file: no symbolic link followed, created `0600`.
pub fn writing() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).mode(MODE).custom_flags(libc::O_NOFOLLOW);
    o
}

/// Opens a file for writing with `options` (from `writing`) as `open`
/// would, but a FIFO no process reads is refused where `open` would wait
/// for a reader, past Ctrl-C: a scan must not hang before it starts.
pub fn open_now(options: &mut OpenOptions, path: &Path) -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    // ENXIO is also a socket's, or a device's that is not there.
    let fifo = || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    let file =
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) if fifo() => {
                io::Error::other("it is a FIFO that no process reads: start its reader first")
            }
            _ => explain(e),
        })?;
    crate::sys::set_blocking(file.as_fd())?;
    Ok(file)
}

/// Says what a refused symbolic link is, where the kernel says only ELOOP.
pub fn explain(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other("it is a symbolic link, and prtip writes through none"),
        _ => e,
    }
}

/// Creates the state directory (`0700`) if need be. A directory another
/// user owns is refused: that user could swap the files prtip is about to
/// write, or read them.
pub fn state_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("it is not a directory (a symbolic link is not followed)"));
    }
    let me = crate::sys::effective_uid();
    if meta.uid() != me {
        let whom = if me == 0 { "root".to_string() } else { format!("user {me}") };
        return Err(io::Error::other(format!(
            "user {} owns it, and prtip runs as {whom}: set XDG_STATE_HOME to a directory {whom} owns",
            meta.uid()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_no_link_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = writing().create(true).truncate(true).open(&link).map_err(explain).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep", "the link's target is untouched");
        let new = dir.path().join("new");
        writing().create(true).truncate(true).open(&new).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_state_directory_is_created_private_and_a_link_to_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/prtip");
        state_dir(&state).unwrap();
        assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
        let link = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert!(state_dir(&link).is_err());
    }

    #[test]
    fn running_as_root_a_state_directory_another_user_owns_is_refused() {
        assert_eq!(crate::sys::effective_uid(), 0, "the tests run as root (sudo scripts/test.sh)");
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(1000), Some(1000)).unwrap();
        let e = state_dir(&theirs).unwrap_err();
        assert!(e.to_string().contains("user 1000 owns it"), "{e}");
    }
}
