//! Opening an app's log for writing: by the daemon at `start` (so a path that cannot be used fails the
//! start) and for a worker that writes its file directly, by the keeper, and by `flush`.
//!
//! The daemon and the keeper usually run as root, while an app's user may own the directory its log is in.
//! So a log is never opened by its path: its directory is walked from `/` without following links, and
//! must be owned by root or the daemon's user and writable by no one else (unless sticky, as /tmp); the
//! file is opened in it with `O_NOFOLLOW|O_NONBLOCK` and must be a regular file (see
//! [`crate::secure_fs`]). A FIFO, a device or a link is refused with an error naming the path, before
//! anything blocks on it. `/dev/null` is the one exception: it discards the lines.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::secure_fs::{Dir, Error};

/// The path that discards a stream's lines.
pub const DISCARD: &str = "/dev/null";

/// True for `/dev/null`: the lines are dropped (nothing is opened, rotated or flushed).
pub fn discards(path: &Path) -> bool {
    path == Path::new(DISCARD)
}

/// A log's directory, checked (created if missing and `create`), and the log's name in it.
pub fn locate(path: &Path, create: bool) -> Result<(Dir, OsString), Error> {
    let (parent, name) = split(path)?;
    Ok((Dir::walk(parent, create)?, name.to_os_string()))
}

/// A log's directory (`.` for a bare name) and its name.
fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr), Error> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Io {
            action: "open",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        });
    };
    if parent.as_os_str().is_empty() {
        return Ok((Path::new("."), name));
    }
    Ok((parent, name))
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
    Opener::default().open_append(path)
}

/// Opens logs like [`open_append`], walking (and checking) each directory once: a file of a thousand apps
/// has two thousand logs, most of them in one directory. For one request: a directory checked now is not
/// checked again for the next log in it.
#[derive(Default)]
pub struct Opener {
    dirs: HashMap<PathBuf, Dir>,
}

impl Opener {
    pub fn open_append(&mut self, path: &Path) -> Result<File, String> {
        if discards(path) {
            return OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(DISCARD)
                .map_err(|e| format!("cannot open {DISCARD}: {e}"));
        }
        let (dir, name) = self.locate(path)?;
        dir.open_append(name, true).map_err(|e| explain(path, &e))
    }

    /// The log's directory, walked and checked (and created if missing) once per request, and its name.
    fn locate<'a>(&mut self, path: &'a Path) -> Result<(&Dir, &'a std::ffi::OsStr), String> {
        let (parent, name) = split(path).map_err(|e| explain(path, &e))?;
        let dir = match self.dirs.entry(parent.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(Dir::walk(parent, true).map_err(|e| explain(path, &e))?)
            }
        };
        Ok((dir, name))
    }

    /// Checks that a log can be used, as [`Opener::open_append`] would, without creating it: its
    /// directory is walked and checked (and created if missing), and a log that exists is opened as
    /// there. A missing one is left to whoever writes it first (the log keeper, when it is handed the
    /// worker's pipe), which creates it with the same checks: a thousand apps started at once do not
    /// wait for two thousand files to be created one after another.
    pub fn check(&mut self, path: &Path) -> Result<(), String> {
        if discards(path) {
            return Ok(());
        }
        let (dir, name) = self.locate(path)?;
        if matches!(dir.stat(name), Err(nix::errno::Errno::ENOENT)) {
            return Ok(());
        }
        dir.open_append(name, true)
            .map(drop)
            .map_err(|e| explain(path, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::Opener;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_opener_checks_each_directory_once_and_refuses_what_a_single_open_refuses() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let mut opener = Opener::default();
        for name in ["a-out.log", "a-err.log", "deeper/b-out.log"] {
            opener
                .open_append(&root.path().join(name))
                .expect("a log in a directory of our own");
            assert!(root.path().join(name).is_file(), "{name} was created");
        }
        assert_eq!(opener.dirs.len(), 2, "one walk per directory");
        // A link where the log should be is refused, by the cached directory too.
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link.log")).expect("link");
        let error = opener
            .open_append(&root.path().join("link.log"))
            .expect_err("never through a link");
        assert!(error.contains("link.log"), "{error}");
        let single = super::open_append(&root.path().join("link.log")).expect_err("refused");
        assert_eq!(error, single);
    }

    #[test]
    fn a_check_creates_the_directory_not_the_log_and_refuses_what_an_open_refuses() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let mut opener = Opener::default();
        let log = root.path().join("deeper/a-out.log");
        opener.check(&log).expect("a log in a directory of our own");
        assert!(root.path().join("deeper").is_dir(), "the directory is made");
        assert!(!log.exists(), "the log is left to its writer");
        std::fs::write(&log, "").expect("write");
        opener.check(&log).expect("an existing log");
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link.log")).expect("link");
        let error = opener
            .check(&root.path().join("link.log"))
            .expect_err("never through a link");
        let single = super::open_append(&root.path().join("link.log")).expect_err("refused");
        assert_eq!(error, single);
        std::fs::create_dir(root.path().join("dir.log")).expect("mkdir");
        opener
            .check(&root.path().join("dir.log"))
            .expect_err("a directory is no log");
    }
}
