//! `HERDSMAN_HOME` and the files in it. The directory is created 0700: it holds the control socket, the
//! daemon's pid and log, and every app's logs. It must be herdsman's user's own ([`Home::create`]), and the
//! files in it are opened without following links (`O_NOFOLLOW`).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fchmod, fstat};

/// The locations under one home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `HERDSMAN_HOME`, or `~/.herdsman`. Relative paths are made absolute, since the daemon changes directory.
    pub fn from_env() -> Result<Home> {
        let root = match std::env::var_os("HERDSMAN_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .context("neither HERDSMAN_HOME nor HOME is set")?;
                PathBuf::from(home).join(".herdsman")
            }
        };
        let root = std::path::absolute(&root)
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        Ok(Home { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("herdsman.sock")
    }

    /// The keeper's own socket: only its controller may connect.
    pub fn keeper_socket(&self) -> PathBuf {
        self.root.join("keeper.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    /// What `save` writes and `resurrect` reads.
    pub fn dump(&self) -> PathBuf {
        self.root.join("dump.json")
    }

    /// What runs, as the keeper last recorded it: a keeper started after it was killed adopts from it.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Each scheduled job's history and state, `jobs/<name>.json`.
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Where the daemon writes the Node listen preload.
    pub fn node_preload(&self) -> PathBuf {
        self.root.join("node").join("listen.cjs")
    }

    /// An app's stdout log.
    pub fn out_log(&self, app: &str) -> PathBuf {
        self.logs_dir().join(format!("{app}-out.log"))
    }

    /// An app's stderr log.
    pub fn err_log(&self, app: &str) -> PathBuf {
        self.logs_dir().join(format!("{app}-err.log"))
    }

    /// Creates the home (0700) and its subdirectories `logs/`, `node/` and `jobs/` (0700), and checks them, as
    /// OpenSSH's StrictModes checks a home: each must be a real directory (not a link), owned by herdsman's
    /// user, and writable by no one else. Anything else is refused, naming the path and the problem: a
    /// daemon (often root) that trusted a home someone else can write would let them swap its pid file for
    /// a link, or the Node preload and the dump for their own. An existing home of ours is tightened to
    /// 0700; a home of someone else's is never changed.
    pub fn create(&self) -> Result<()> {
        use crate::secure_fs::{Dir, Owner};
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", self.root.display()));
            }
        }
        let refused = |e: crate::secure_fs::Error| {
            anyhow::anyhow!(
                "{e}: herdsman keeps its control socket, pid file and dump in its home, which must be \
                 a directory of its user's own that no one else can write (set HERDSMAN_HOME to \
                 another one, or fix this one)"
            )
        };
        let root = Dir::open_own(&self.root).map_err(refused)?;
        let mode = fstat(root.fd())
            .with_context(|| format!("cannot stat {}", self.root.display()))?
            .st_mode;
        if mode & 0o077 != 0 {
            // Opened read-only to change its mode: an O_PATH descriptor cannot.
            let dir = nix::fcntl::openat(
                root.fd(),
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .and_then(|dir| fchmod(&dir, Mode::from_bits_truncate(0o700)))
            .with_context(|| format!("cannot set the mode of {}", self.root.display()));
            dir?;
        }
        for name in ["logs", "node", "jobs"] {
            root.mkdir(name.as_ref(), 0o700).map_err(refused)?;
            let dir = root.child(name.as_ref(), false).map_err(refused)?;
            dir.check(Owner::Euid, false).map_err(refused)?;
        }
        Ok(())
    }
}
