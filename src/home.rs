//! `HERDSMAN_HOME` and the files in it. The directory is created 0700: it holds the control socket, the
//! daemon's pid and log, and every app's logs.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    /// What `save` writes and `resurrect` reads.
    pub fn dump(&self) -> PathBuf {
        self.root.join("dump.json")
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

    /// Creates the home (0700) and its subdirectories. An existing home is tightened to 0700.
    pub fn create(&self) -> Result<()> {
        for dir in [self.root.clone(), self.logs_dir(), self.root.join("node")] {
            match fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", self.root.display()))
    }
}
