//! The daemon's own log, `HERDSMAN_HOME/daemon.log`, kept from growing without end.
//!
//! A command that starts the daemon opens `daemon.log` (append) as the daemon's stdout and stderr. The
//! daemon is then the only one that writes to it for long, so it rotates it itself: when it starts, and
//! every [`EVERY`] after, if its stderr is that file (not the journal, a terminal or `herdsman run`'s
//! output) and it has reached [`MAX_SIZE`], `daemon.log.2` becomes `daemon.log.3` (the oldest of
//! [`KEEP`]), ..., `daemon.log` becomes `daemon.log.1`, and a new `daemon.log` (0600) is put on the
//! daemon's fds 1 and 2 with `dup2`. Nothing is lost: a line is written to the old file or to the new one.
//!
//! The log keeper inherited the daemon's stderr when it was started, and goes on writing its (rare)
//! warnings to the file it was given, renamed, until a new keeper is started.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `daemon.log` is rotated once it has reached this size.
pub const MAX_SIZE: u64 = 10 << 20;
/// Rotated files kept: `daemon.log.1` (the most recent) to `daemon.log.3`.
pub const KEEP: u32 = 3;
/// How often the size is looked at.
pub const EVERY: Duration = Duration::from_secs(60);

/// Rotates the daemon's log now if needed, then every [`EVERY`]; runs until the daemon stops.
pub async fn keep_small(path: PathBuf) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        match rotate_if_large(&path, MAX_SIZE, KEEP, &[1, 2]) {
            Ok(true) => tracing::info!(path = %path.display(), "daemon log rotated"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot rotate the daemon log");
                return;
            }
        }
    }
}

/// If the file at `path` is at least `max` bytes and is what one of `fds` writes to, renames it to
/// `path.1` (shifting older ones up to `path.keep`) and puts a new file on those fds. Returns whether it
/// did.
pub fn rotate_if_large(path: &Path, max: u64, keep: u32, fds: &[RawFd]) -> io::Result<bool> {
    let current = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() >= max => meta,
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let ours: Vec<RawFd> = fds
        .iter()
        .copied()
        .filter(|&fd| file_id(fd) == Some((current.dev(), current.ino())))
        .collect();
    if ours.is_empty() {
        return Ok(false);
    }
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    for n in (1..keep.max(1)).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))?;
    let fresh = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    for fd in ours {
        // SAFETY: dup2 onto a descriptor of this process that already refers to the old log; both are
        // valid, and the new one stays open (the old file is closed there, atomically).
        if unsafe { libc::dup2(fresh.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(true)
}

/// (device, inode) of what a descriptor of this process refers to, if it is open.
fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat fills the zeroed buffer, or fails (EBADF for a descriptor that is not open).
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut stat) == 0).then_some((stat.st_dev, stat.st_ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::IntoRawFd;

    #[test]
    fn a_large_log_is_rotated_and_its_writer_goes_on_in_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.log");
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        let fd = writer.into_raw_fd();
        // SAFETY: `fd` was just taken from a File; it is given back to one below.
        let mut writer = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        writer.write_all(b"0123456789\n").expect("write");
        assert!(!rotate_if_large(&path, 100, 2, &[fd]).expect("small"));
        assert!(
            !rotate_if_large(&path, 5, 2, &[]).expect("not written by us"),
            "a log that is not ours is left alone"
        );
        for round in 1..=3 {
            assert!(rotate_if_large(&path, 5, 2, &[fd]).expect("rotate"));
            writeln!(writer, "after rotation {round}").expect("write");
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(path.clone()), "after rotation 3\n");
        assert_eq!(read(dir.path().join("daemon.log.1")), "after rotation 2\n");
        assert_eq!(read(dir.path().join("daemon.log.2")), "after rotation 1\n");
        assert!(!dir.path().join("daemon.log.3").exists());
    }
}
