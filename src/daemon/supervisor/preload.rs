//! Where a Node worker finds the listen preload it `--require`s.
//!
//! The daemon writes it into its home (`node/listen.cjs`) at start. A worker that runs as another user
//! (`--user`) cannot read it there: the home is 0700, and a root daemon's home is usually under `/root`,
//! which is 0700 too, so opening the home up (0711) would not be enough. Such workers get a copy in
//! [`SHARED_DIR`], `/run/herdsman`: created by the daemon (root) 0755 in the root-owned `/run`, refused if
//! it exists as anything but a directory of root's that no one else can write. Nobody else can create or
//! replace anything there (unlike `/tmp`, where any user could take the name first), and no tmp cleaner
//! ages it (it is a tmpfs emptied at boot, when no worker runs). Each home has its own copy,
//! `listen-<hash of the home's path>.cjs` (0644), so daemons of different versions do not overwrite each
//! other's.
//!
//! The copy is written when an app is prepared, and [`ensure`] writes it again before a worker starts if it
//! has gone missing (someone removed it), so the worker does not crash-loop on "Cannot find module".

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::home::Home;
use crate::secure_fs::{Dir, Owner};

/// The directory of the shared copies: `herdsman` in `/run`.
pub const SHARED_DIR: &str = "/run/herdsman";
const RUN: &str = "/run";
const SHARED_NAME: &str = "herdsman";

/// The preload itself.
const SOURCE: &[u8] = crate::daemon::NODE_PRELOAD.as_bytes();

/// The copy of the preload that workers running as another user read: written now.
pub(super) fn shared(home: &Home) -> Result<PathBuf, String> {
    let problem = |e: crate::secure_fs::Error| {
        format!(
            "cannot keep the Node preload for apps that run as another user in {SHARED_DIR}: {e}"
        )
    };
    let dir = Dir::walk(Path::new(RUN), false)
        .and_then(|run| run.child(OsStr::new(SHARED_NAME), true))
        .map_err(problem)?;
    dir.check(Owner::Euid, false).map_err(problem)?;
    let file = Path::new(SHARED_DIR).join(format!("listen-{:016x}.cjs", fnv1a(home.root())));
    write(&dir, &file).map_err(problem)?;
    Ok(file)
}

/// Writes the preload at `path` again if it is missing. Its directory was checked when the app was
/// prepared (the home's `node/`, or [`SHARED_DIR`]); it is opened without following a link and must still
/// be the daemon's user's own.
pub(super) fn ensure(path: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let write_again = || {
        let parent = path.parent().unwrap_or_else(|| Path::new("/"));
        write(&Dir::open_own(parent)?, path)
    };
    write_again().map_err(|e| format!("cannot write the Node preload again: {e}"))?;
    tracing::info!(path = %path.display(), "the Node preload was missing: written again");
    Ok(())
}

/// Writes the preload atomically (a temporary file, renamed) at `path` in `dir`, 0644.
fn write(dir: &Dir, path: &Path) -> Result<(), crate::secure_fs::Error> {
    let name = path.file_name().unwrap_or(path.as_os_str());
    let mut temporary = name.to_os_string();
    temporary.push(".tmp");
    dir.remove(&temporary)?;
    let mut file = dir.create_new(&temporary, 0o644)?;
    file.write_all(SOURCE)
        .map_err(|source| crate::secure_fs::Error::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })?;
    dir.rename(&temporary, name)
}

/// A stable 64-bit hash of a path (FNV-1a), to name a home's copy.
fn fnv1a(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_preload_is_written_again_and_a_present_one_left_alone() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let path = scratch.path().join("listen.cjs");
        ensure(&path).expect("write it");
        assert_eq!(std::fs::read(&path).expect("read"), SOURCE);
        std::fs::write(&path, "kept").expect("write");
        ensure(&path).expect("present");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "kept");
    }

    #[test]
    fn each_home_has_its_own_name() {
        assert_ne!(
            fnv1a(Path::new("/root/.herdsman")),
            fnv1a(Path::new("/srv/h"))
        );
        assert_eq!(fnv1a(Path::new("")), 0xcbf2_9ce4_8422_2325);
    }
}
