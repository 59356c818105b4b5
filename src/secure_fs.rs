//! Paths opened without following links, in directories no other user can write.
//!
//! A root daemon writes where other users can reach: app logs in directories an app's user may own, a home
//! another user may have created. A path opened by name can be swapped at any moment for a link (to
//! `/etc/shadow`) or a FIFO (whose `open` blocks until a reader comes). So:
//!
//! - [`Dir::walk`] opens a directory one component at a time from `/`, each relative to the one before with
//!   `O_NOFOLLOW`, so no link is followed anywhere in the path. Every directory on the way must be owned by
//!   root or by the daemon's user, and not writable by its group or others unless it is sticky (as `/tmp`,
//!   where nobody can rename or remove what is not theirs): OpenSSH's StrictModes. Missing directories are
//!   created on the way (`mkdirat`, 0755) when asked, never through a link.
//! - [`Dir::open_own`] opens one directory with `O_NOFOLLOW` on its last component and requires it to be
//!   the daemon's user's own and writable by nobody else (the home, `/run/herdsman`).
//! - [`Dir::open_append`] opens a file relative to its directory with `O_NOFOLLOW|O_NONBLOCK|O_NOCTTY`
//!   (a FIFO, a terminal or a device never blocks the opener), and accepts only a regular file. In a sticky
//!   directory others can write (such as `/tmp`), where anyone can create a name before us, only a file of
//!   the daemon's user with a single link.
//! - [`Dir::rename`], [`Dir::remove`] and [`Dir::names`] work relative to the same directory, so a rotation
//!   renames in the directory that was checked, whatever its path names since.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, geteuid, unlinkat};

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("{path} is a symbolic link (herdsman does not follow links here)")]
    Link { path: PathBuf },
    #[error("{path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("{path} is not a regular file (it is {kind})")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is in a directory every user can write to, and is not herdsman's own file \
         (owned by uid {uid}, {links} link(s))"
    )]
    Foreign { path: PathBuf, uid: u32, links: u64 },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl Error {
    /// The path (or a directory of it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Another user could replace what the path names (a directory's owner or mode).
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Error::Untrusted { .. } | Error::Foreign { .. })
    }

    fn io(action: &'static str, path: &Path, errno: Errno) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source: io::Error::from(errno),
        }
    }
}

/// Who may own a directory that is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The daemon's user only (its own home).
    Euid,
    /// The daemon's user or root (a log directory).
    RootOrEuid,
}

/// Why a directory with this status cannot be trusted, if it cannot: another user owns it, or its group or
/// others can write it (a sticky directory is fine when `sticky_ok`: nobody can rename what is not theirs).
///
/// A log directory matters only to a root daemon: a daemon of another user writes nothing its user could
/// not write anyway, so for it any log directory is trusted (its own home is still checked).
pub fn untrusted(stat: &FileStat, owner: Owner, sticky_ok: bool) -> Option<String> {
    let euid = geteuid().as_raw();
    if owner == Owner::RootOrEuid && euid != 0 {
        return None;
    }
    let uid = stat.st_uid;
    if uid != euid && !(owner == Owner::RootOrEuid && uid == 0) {
        let expected = match (euid, owner) {
            (0, _) => "root".to_string(),
            (euid, Owner::Euid) => format!("herdsman's user (uid {euid})"),
            (euid, Owner::RootOrEuid) => format!("root or herdsman's user (uid {euid})"),
        };
        return Some(format!("is owned by uid {uid}, not by {expected}"));
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o022 != 0 && !(sticky_ok && mode & libc::S_ISVTX != 0) {
        return Some(format!(
            "is writable by its group or others (mode {mode:o})"
        ));
    }
    None
}

/// (device, inode) of a status.
pub fn id(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

/// An open directory that was checked, and the path it was opened by (for messages).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Dir {
    /// Opens the directory `path` names, each directory on the way owned by root or the daemon's user and
    /// writable by no one else unless sticky (checked for a root daemon only, see [`untrusted`]). Missing
    /// directories are created (0755) if `create`, never through a link. A link on the way (a deploy's
    /// `current`) is followed only out of a directory that passed that check, so only root or the daemon's
    /// user can have put it there; no other link is ever followed.
    pub fn walk(path: &Path, create: bool) -> Result<Dir, Error> {
        /// As many links as the kernel follows in one path (MAXSYMLINKS).
        const MAX_LINKS: usize = 40;
        let path = std::path::absolute(path).map_err(|source| Error::Io {
            action: "resolve",
            path: path.to_path_buf(),
            source,
        })?;
        let root = Path::new("/");
        let open_root = || -> Result<Dir, Error> {
            let fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())
                .map_err(|e| Error::io("open", root, e))?;
            let dir = Dir {
                fd,
                path: root.to_path_buf(),
            };
            dir.check(Owner::RootOrEuid, true)?;
            Ok(dir)
        };
        let mut dir = open_root()?;
        let mut rest: std::collections::VecDeque<OsString> = components(&path).collect();
        let mut links = 0;
        while let Some(name) = rest.pop_front() {
            let next = match dir.child(&name, create) {
                Err(Error::Link { path: link }) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::io("resolve", &link, Errno::ELOOP));
                    }
                    // In a directory others can write (sticky, or any for a daemon that is not
                    // root), only a link of root's or the daemon's user's own is followed, as the
                    // kernel's protected_symlinks does for sticky directories.
                    let here = fstat(&dir.fd).map_err(|e| Error::io("stat", &dir.path, e))?;
                    let owner = dir
                        .stat(&name)
                        .map_err(|e| Error::io("stat", &link, e))?
                        .st_uid;
                    let euid = geteuid().as_raw();
                    if here.st_mode & 0o022 != 0 && owner != euid && owner != 0 {
                        return Err(Error::Untrusted {
                            path: link,
                            why: format!(
                                "is a link of uid {owner} in a directory others can write"
                            ),
                        });
                    }
                    let target = nix::fcntl::readlinkat(&dir.fd, name.as_os_str())
                        .map_err(|e| Error::io("read the link", &link, e))?;
                    let target = PathBuf::from(target);
                    for component in components(&target).collect::<Vec<_>>().into_iter().rev() {
                        rest.push_front(component);
                    }
                    if target.is_absolute() {
                        dir = open_root()?;
                    }
                    continue;
                }
                other => other?,
            };
            next.check(Owner::RootOrEuid, true)?;
            dir = next;
        }
        Ok(dir)
    }

    /// Opens `path` itself as a directory (a link there is refused; its parents are taken as they are) and
    /// requires it to be the daemon's user's own and writable by nobody else.
    pub fn open_own(path: &Path) -> Result<Dir, Error> {
        let fd = match nix::fcntl::open(path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => return Err(not_a_directory(None, path, e)),
        };
        let dir = Dir {
            fd,
            path: path.to_path_buf(),
        };
        dir.check(Owner::Euid, false)?;
        Ok(dir)
    }

    /// The directory `name` in this one (created 0755 if missing and `create`), never through a link. Not
    /// checked: call [`Dir::check`].
    pub fn child(&self, name: &OsStr, create: bool) -> Result<Dir, Error> {
        let path = self.path.join(name);
        let open = || openat(&self.fd, name, DIR_FLAGS, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(&self.fd, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Error::io("create", &path, e)),
                }
                open().map_err(|e| not_a_directory(Some(self), &path, e))?
            }
            Err(e) => return Err(not_a_directory(Some(self), &path, e)),
        };
        Ok(Dir { fd, path })
    }

    /// Creates the directory `name` in this one with exactly `mode`, unless something by that name exists.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> Result<(), Error> {
        let path = self.path.join(name);
        match mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => {
                let created = self.child(name, false)?;
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                openat(&created.fd, ".", flags, Mode::empty())
                    .and_then(|dir| fchmod(&dir, Mode::from_bits_truncate(mode)))
                    .map_err(|e| Error::io("set the mode of", &path, e))
            }
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(Error::io("create", &path, e)),
        }
    }

    /// Requires the directory to be owned by `owner` and writable by no one else (unless sticky and
    /// `sticky_ok`). Its status now, so a directory that changed hands since it was opened is refused.
    pub fn check(&self, owner: Owner, sticky_ok: bool) -> Result<FileStat, Error> {
        let stat = fstat(&self.fd).map_err(|e| Error::io("stat", &self.path, e))?;
        match untrusted(&stat, owner, sticky_ok) {
            Some(why) => Err(Error::Untrusted {
                path: self.path.clone(),
                why,
            }),
            None => Ok(stat),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the regular file `name` in this directory for appending (created 0600 if missing and
    /// `create`): never through a link, never blocking (a FIFO is refused, not waited on). The directory is
    /// checked again first (owned by root or the daemon's user, writable by no one else unless sticky).
    pub fn open_append(&self, name: &OsStr, create: bool) -> Result<File, Error> {
        let path = self.path.join(name);
        let dir = self.check(Owner::RootOrEuid, true)?;
        let shared = dir.st_mode & 0o022 != 0 && geteuid().is_root();
        // Looked at before opening, so that a device is not even opened.
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => regular(&stat, &path)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::io("stat", &path, e)),
        }
        let mut flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = match openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(Error::Link { path }),
            Err(Errno::ENXIO) => {
                return Err(Error::NotRegular {
                    path,
                    kind: "a FIFO",
                });
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let stat = fstat(&fd).map_err(|e| Error::io("stat", &path, e))?;
        regular(&stat, &path)?;
        if shared && (stat.st_uid != geteuid().as_raw() || stat.st_nlink != 1) {
            return Err(Error::Foreign {
                path,
                uid: stat.st_uid,
                links: stat.st_nlink,
            });
        }
        // A regular file ignores O_NONBLOCK, but whoever gets the descriptor (a worker) sees the flag.
        let status = fcntl(&fd, FcntlArg::F_GETFL).map_err(|e| Error::io("open", &path, e))?;
        let status = OFlag::from_bits_truncate(status) & !OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(status)).map_err(|e| Error::io("open", &path, e))?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `name` in this directory for reading: never through a link, never blocking.
    pub fn open_read(&self, name: &OsStr) -> Result<File, Error> {
        let path = self.path.join(name);
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(Error::Link { path }),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let stat = fstat(&fd).map_err(|e| Error::io("stat", &path, e))?;
        regular(&stat, &path)?;
        Ok(File::from(fd))
    }

    /// Another handle on the same directory (for another thread).
    pub fn try_clone(&self) -> Result<Dir, Error> {
        let fd = self.fd.try_clone().map_err(|e| Error::Io {
            action: "duplicate",
            path: self.path.clone(),
            source: e,
        })?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    /// Creates the new file `name` (which must not exist) with exactly `mode`, for writing.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> Result<File, Error> {
        let path = self.path.join(name);
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(mode);
        let fd = openat(&self.fd, name, flags, mode).map_err(|e| Error::io("create", &path, e))?;
        // The umask may have taken bits away.
        fchmod(&fd, mode).map_err(|e| Error::io("set the mode of", &path, e))?;
        Ok(File::from(fd))
    }

    /// The status of `name` in this directory (a link's own, not its target's).
    pub fn stat(&self, name: &OsStr) -> Result<FileStat, Errno> {
        fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// Renames `from` to `to`, both in this directory (`to` is replaced; a link is renamed, not followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), Error> {
        renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| Error::io("rename", &self.path.join(from), e))
    }

    /// Removes the file `name` from this directory; one that does not exist is already removed.
    pub fn remove(&self, name: &OsStr) -> Result<(), Error> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", &self.path.join(name), e)),
        }
    }

    /// The names in this directory (without `.` and `..`).
    pub fn names(&self) -> Result<Vec<OsString>, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, ".", flags, Mode::empty())
            .map_err(|e| Error::io("read", &self.path, e))?;
        let raw = fd.into_raw_fd();
        // SAFETY: fdopendir takes ownership of `raw` when it succeeds; it is closed here when it fails.
        let stream = unsafe { libc::fdopendir(raw) };
        if stream.is_null() {
            let errno = Errno::last();
            // SAFETY: `raw` is still ours: fdopendir failed.
            unsafe { libc::close(raw) };
            return Err(Error::io("read", &self.path, errno));
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: `stream` is an open directory stream; the entry stays valid until the next readdir.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                break;
            }
            // SAFETY: d_name is a NUL-terminated string inside the entry.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        // SAFETY: closes the stream (and its descriptor) opened above, once.
        unsafe { libc::closedir(stream) };
        Ok(names)
    }
}

/// The names a path goes through (`..` included, `.` and `/` left out).
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Requires a status to be a regular file's.
fn regular(stat: &FileStat, path: &Path) -> Result<(), Error> {
    let kind = match SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT) {
        SFlag::S_IFREG => return Ok(()),
        SFlag::S_IFLNK => return Err(Error::Link { path: path.into() }),
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        _ => "not a file",
    };
    Err(Error::NotRegular {
        path: path.into(),
        kind,
    })
}

/// What an open of a directory (with `O_NOFOLLOW|O_DIRECTORY`) that failed with `errno` means: a link,
/// something else than a directory, or the error itself.
fn not_a_directory(parent: Option<&Dir>, path: &Path, errno: Errno) -> Error {
    if !matches!(errno, Errno::ENOTDIR | Errno::ELOOP) {
        return Error::io("open", path, errno);
    }
    let stat = match (parent, path.file_name()) {
        (Some(parent), Some(name)) => parent.stat(name).ok(),
        _ => nix::sys::stat::lstat(path).ok(),
    };
    match stat {
        Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            Error::Link { path: path.into() }
        }
        Some(_) => Error::NotDirectory { path: path.into() },
        None => Error::io("open", path, errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_walk_creates_missing_directories_and_follows_only_trusted_links() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let base = scratch.path();
        let made = Dir::walk(&base.join("a/b/c"), true).expect("walk with create");
        assert!(base.join("a/b/c").is_dir());
        let file = made.open_append(OsStr::new("x.log"), true).expect("open");
        assert_eq!(
            file.metadata().expect("stat").permissions().mode() & 0o777,
            0o600
        );

        // A link in a directory only its owner can write (a deploy's `current`) is followed, relative or
        // absolute.
        std::fs::create_dir(base.join("elsewhere")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("link")).expect("symlink");
        std::os::unix::fs::symlink("elsewhere", base.join("relative")).expect("symlink");
        let followed = Dir::walk(&base.join("link/new"), true).expect("a trusted link");
        assert!(base.join("elsewhere/new").is_dir());
        assert!(
            followed.path().ends_with("elsewhere/new"),
            "{:?}",
            followed.path()
        );
        Dir::walk(&base.join("relative/new"), false).expect("a relative trusted link");
        std::os::unix::fs::symlink("loop", base.join("loop")).expect("symlink");
        let error = Dir::walk(&base.join("loop/x"), false).expect_err("a loop");
        assert!(error.to_string().contains("symbolic links"), "{error}");

        // In a sticky directory others can write, another user's link is not followed.
        if geteuid().is_root() {
            let shared = base.join("shared");
            std::fs::create_dir(&shared).expect("mkdir");
            chmod(&shared, 0o1777);
            std::os::unix::fs::symlink(base.join("elsewhere"), shared.join("theirs"))
                .expect("symlink");
            std::os::unix::fs::lchown(shared.join("theirs"), Some(65534), None).expect("lchown");
            let error = Dir::walk(&shared.join("theirs/x"), true).expect_err("another user's link");
            assert!(error.is_untrusted(), "{error}");
            assert!(!base.join("elsewhere/x").exists());
        }

        std::fs::write(base.join("file"), "").expect("write");
        let error = Dir::walk(&base.join("file/x"), true).expect_err("a file in the path");
        assert!(matches!(error, Error::NotDirectory { .. }), "{error}");

        let error = Dir::walk(&base.join("missing/x"), false).expect_err("missing");
        assert!(error.is_not_found(), "{error}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join("logs");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o775);
        let error = Dir::walk(&dir, false).expect_err("group-writable");
        assert!(error.is_untrusted(), "{error}");
        assert!(
            error
                .to_string()
                .contains("writable by its group or others"),
            "{error}"
        );

        chmod(&dir, 0o1777);
        let open = Dir::walk(&dir, false).expect("a sticky directory");
        let mut file = open
            .open_append(OsStr::new("own.log"), true)
            .expect("own file");
        file.write_all(b"line\n").expect("write");
        // In a shared directory, a second link to a file is refused (it could name anything).
        std::fs::hard_link(dir.join("own.log"), dir.join("other.log")).expect("link");
        let error = open
            .open_append(OsStr::new("other.log"), true)
            .expect_err("two links");
        assert!(matches!(error, Error::Foreign { links: 2, .. }), "{error}");

        // A directory that becomes writable by others after it was opened is refused at the next open.
        chmod(&dir, 0o777);
        let error = open
            .open_append(OsStr::new("own.log"), true)
            .expect_err("now loose");
        assert!(error.is_untrusted(), "{error}");
    }

    #[test]
    fn only_a_regular_file_is_opened_and_a_fifo_never_blocks() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = Dir::walk(scratch.path(), false).expect("walk");
        nix::unistd::mkfifo(
            &scratch.path().join("fifo"),
            Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let error = dir
            .open_append(OsStr::new("fifo"), true)
            .expect_err("a FIFO");
        assert!(
            matches!(error, Error::NotRegular { kind: "a FIFO", .. }),
            "{error}"
        );

        std::fs::write(scratch.path().join("target"), "kept\n").expect("write");
        std::os::unix::fs::symlink(scratch.path().join("target"), scratch.path().join("link"))
            .expect("symlink");
        let error = dir
            .open_append(OsStr::new("link"), true)
            .expect_err("a link");
        assert!(matches!(error, Error::Link { .. }), "{error}");
        std::os::unix::fs::symlink(scratch.path().join("none"), scratch.path().join("dangling"))
            .expect("symlink");
        let error = dir
            .open_append(OsStr::new("dangling"), true)
            .expect_err("a dangling link");
        assert!(matches!(error, Error::Link { .. }), "{error}");
        assert!(!scratch.path().join("none").exists());

        let file = dir
            .open_append(OsStr::new("plain"), true)
            .expect("a new file");
        let flags = fcntl(&file, FcntlArg::F_GETFL).expect("F_GETFL");
        assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK is cleared");
    }

    #[test]
    fn names_rename_and_remove_work_in_the_directory() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = Dir::walk(scratch.path(), false).expect("walk");
        dir.create_new(OsStr::new("a"), 0o644).expect("create");
        assert_eq!(
            std::fs::metadata(scratch.path().join("a"))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        dir.rename(OsStr::new("a"), OsStr::new("b"))
            .expect("rename");
        assert_eq!(dir.names().expect("names"), [OsString::from("b")]);
        dir.remove(OsStr::new("b")).expect("remove");
        dir.remove(OsStr::new("b")).expect("removing nothing");
        assert!(dir.names().expect("names").is_empty());
    }
}
