//! Opening an app's log for writing: by the daemon at `start` (so a path that cannot be used fails the
//! start) and for a worker that writes its file directly, by the keeper, and by `flush`.
//!
//! The daemon and the keeper usually run as root, while an app's user may own the directory its log is in.
//! So a log is never opened by its path: its directory is walked from `/` without following links, and
//! must be owned by root or the daemon's user and writable by no one else (unless sticky, as /tmp); the
//! file is opened in it with `O_NOFOLLOW|O_NONBLOCK` and must be a regular file (see
//! [`crate::secure_fs`]). A FIFO, a device or a link is refused with an error naming the path, before
//! anything blocks on it. `/dev/null` is the one exception: it discards the lines.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::secure_fs::{Dir, Error};

/// The path that discards a stream's lines.
pub const DISCARD: &str = "/dev/null";

/// True for `/dev/null`: the lines are dropped (nothing is opened, rotated or flushed).
pub fn discards(path: &Path) -> bool {
    path == Path::new(DISCARD)
}

/// A log's directory, checked (created if missing and `create`), and the log's name in it.
pub fn locate(path: &Path, create: bool) -> Result<(Dir, OsString), Error> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Io {
            action: "open",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        });
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    Ok((Dir::walk(parent, create)?, name.to_os_string()))
}

/// Says why a log cannot be used, and for a directory others can write, what to do about it.
pub fn explain(path: &Path, error: &Error) -> String {
    let hint = if error.is_untrusted() {
        "; another user could replace the log with a link to any file: make the directory owned by \
         root (or herdsman's user) and writable by no one else, or keep the log in HERDSMAN_HOME/logs \
         (the default)"
    } else {
        ""
    };
    format!("cannot use the log {}: {error}{hint}", path.display())
}

/// Opens a log for appending, creating it and its missing directories.
pub fn open_append(path: &Path) -> Result<File, String> {
    if discards(path) {
        return OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(DISCARD)
            .map_err(|e| format!("cannot open {DISCARD}: {e}"));
    }
    let (dir, name) = locate(path, true).map_err(|e| explain(path, &e))?;
    dir.open_append(&name, true).map_err(|e| explain(path, &e))
}
