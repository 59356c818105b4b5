//! The dump: what `save` remembers and `resurrect` starts again.
//!
//! `HERDSMAN_HOME/dump.json` holds a format tag, a version and each app's spec (the spec includes the
//! environment the app was started with, and nothing else of the caller's). It is written atomically: a
//! temporary file (mode 0600) is written and fsynced, then renamed over the old dump and the directory
//! fsynced, so a crash mid-write leaves the previous dump intact. A dump of another format or version is
//! refused with a message saying so, never misread. Both files are opened with `O_NOFOLLOW`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::AppSpec;

const FORMAT: &str = "herdsman-dump";
/// The version this herdsman writes and reads.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Dump {
    format: String,
    version: u32,
    apps: Vec<AppSpec>,
}

/// Writes the dump atomically with mode 0600.
pub fn save(path: &Path, apps: &[AppSpec]) -> Result<(), String> {
    let dump = Dump {
        format: FORMAT.into(),
        version: VERSION,
        apps: apps.to_vec(),
    };
    let bytes =
        serde_json::to_vec_pretty(&dump).map_err(|e| format!("cannot encode the dump: {e}"))?;
    write_private(path, &bytes, true)
        .map_err(|e| format!("cannot write the dump {}: {e}", path.display()))
}

/// Replaces `path` with `bytes` atomically (a temporary file of mode 0600, renamed over it), never following
/// a link. `durable`: fsync the file and its directory, so the new content also survives a power loss.
pub fn write_private(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&temporary, path)?;
        if durable && let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

/// Reads a file written by [`write_private`], never following a link; `Ok(None)` when there is none.
pub fn read_private(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the dump; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<Vec<AppSpec>>, String> {
    let bytes = match read_private(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read the dump {}: {e}", path.display())),
    };
    decode(&bytes, path).map(Some)
}

/// The apps of a dump's bytes, read from `path` (which the errors name).
pub fn decode(bytes: &[u8], path: &Path) -> Result<Vec<AppSpec>, String> {
    let refused = |why: String| format!("the dump {} was not loaded: {why}", path.display());
    // Look at the header alone first, so a dump of another version is named as such.
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        version: Option<u32>,
    }
    let header: Header = serde_json::from_slice(bytes).map_err(|e| {
        refused(format!(
            "it is damaged or cut short ({e}); save again with `herdsman save`"
        ))
    })?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(refused("it is not a herdsman dump".into()));
    }
    match header.version {
        Some(VERSION) => {}
        Some(v) if v > VERSION => {
            return Err(refused(format!(
                "it was written by a newer herdsman (dump version {v}; this one reads version {VERSION})"
            )));
        }
        Some(v) => {
            return Err(refused(format!(
                "it was written by an older herdsman (dump version {v}, which this one cannot read); \
                 start the apps again and `herdsman save`"
            )));
        }
        None => return Err(refused("it has no version".into())),
    }
    let dump: Dump = serde_json::from_slice(bytes)
        .map_err(|e| refused(format!("its apps cannot be read ({e})")))?;
    Ok(dump.apps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_dump_round_trips_privately_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dump.json");
        assert_eq!(load(&path), Ok(None));
        save(&path, &[]).expect("save");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path), Ok(Some(Vec::new())));

        let text = fs::read_to_string(&path).expect("read");
        fs::write(&path, &text[..text.len() / 2]).expect("truncate");
        let error = load(&path).expect_err("a truncated dump is refused");
        assert!(error.contains("damaged or cut short"), "{error}");

        fs::write(&path, r#"{"format":"herdsman-dump","version":9,"apps":[]}"#).expect("write");
        let error = load(&path).expect_err("a newer dump is refused");
        assert!(error.contains("newer herdsman"), "{error}");

        fs::write(&path, r#"{"apps":[]}"#).expect("write");
        assert!(
            load(&path)
                .expect_err("not ours")
                .contains("not a herdsman dump")
        );
    }
}
