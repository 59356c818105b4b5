//! App logs: how lines are written, rotated, flushed and read back.
//!
//! A worker's stdout and stderr are pipes whose read ends belong to one log keeper per daemon
//! (`herdsman log-keeper`, [`keeper`]): the daemon hands it each pipe over a control channel ([`handle`]).
//! The keeper splits the output into lines and appends each to the app's file with its time and instance:
//!
//! ```text
//! 2026-11-24T01:02:03.456Z [0] the line as the app wrote it
//! ```
//!
//! (UTC with milliseconds, the instance in brackets, one space, the text.) It rotates a file that would
//! grow past the app's `log_max_size` into `<file>.1` .. `<file>.<log_keep>` ([`output`]). Readers
//! (`logs`, `run`, monit) parse the prefix back ([`parse_line`]); a line without it (a file from before,
//! or written by a worker that got its file directly because no keeper could be started) has no time and
//! no instance. [`follow`] reads the last lines of a set of files merged by time, and follows them across
//! rotation and truncation.
//!
//! - `mod.rs`: times, rotated file names (`.N`, `.N.gz`), [`flush`].
//! - `format.rs`: the line formats an app can ask for, and [`parse_line`] for all of them.
//! - `filter.rs`: `logs --since/--until/--grep`.
//! - `compress.rs`: gzipping rotated files, in a thread of the keeper.
//! - `open.rs`: opening a log for writing: never through a link, never a FIFO, never in a directory
//!   another user can write.
//! - `output.rs`: one file the keeper appends to, and its rotation.
//! - `keeper.rs`: the keeper process.
//! - `handle.rs`: the daemon's side: starting the keeper and handing it pipes.
//! - `follow.rs`: reading: [`tail`] and [`Follower`].
//! - `daemon_log.rs`: the daemon's own log, rotated by the daemon.

mod compress;
pub mod daemon_log;
mod epoll;
pub mod filter;
pub mod follow;
pub mod format;
pub mod handle;
pub mod keeper;
pub mod open;
mod output;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use filter::Filter;
pub use follow::{Follower, Source, tail};
pub use format::{LineFormat, LogStyle, LogTimezone, parse_line, parse_line_as};
pub use handle::Keeper;
pub use output::RotateEvery;

/// Lines longer than this are split: the keeper never holds more of one line.
pub const MAX_LINE: usize = 64 * 1024;

/// Which of a worker's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an app's log, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub app: String,
    /// The worker's instance, when the line carries it.
    pub instance: Option<u32>,
    pub stream: Stream,
    /// When the keeper read it, in milliseconds since the Unix epoch.
    pub time: Option<u64>,
    pub text: String,
}

/// The length of a formatted time: `2026-11-24T01:02:03.456Z`.
const TIME_LEN: usize = 24;

/// Formats milliseconds since the Unix epoch as `2026-11-24T01:02:03.456Z` (UTC).
pub fn format_time(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Parses what [`format_time`] writes.
pub fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != TIME_LEN || [b[4], b[7], b[10], b[13], b[16], b[19], b[23]] != *b"--T::.Z" {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, millis) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second.min(60);
    Some(secs * 1000 + millis)
}

/// The `n`th rotated file of a log: `app-out.log.1` is the most recent.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of a log that exist, by number (most recent first), compressed ones (`.N.gz`)
/// included; when both `.N` and `.N.gz` exist (a compression finishing), the plain one.
pub fn rotated_files(path: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let file = entry.ok()?.file_name();
            Some((rotation_number(&file, name)?, dir.join(&file)))
        })
        .collect();
    found.sort();
    found.dedup_by_key(|(n, _)| *n);
    found
}

/// True for a compressed rotated file (`.gz`).
pub fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The `n`th rotated name of a log's file name.
fn rotated_name(name: &OsStr, n: u32) -> OsString {
    let mut rotated = name.to_os_string();
    rotated.push(format!(".{n}"));
    rotated
}

/// The rotated files of the log `name` in an open directory, by number (most recent first).
fn rotated_in(
    dir: &crate::secure_fs::Dir,
    name: &OsStr,
) -> Result<Vec<(u32, OsString)>, crate::secure_fs::Error> {
    let mut found: Vec<(u32, OsString)> = dir
        .names()?
        .into_iter()
        .filter_map(|file| Some((rotation_number(&file, name)?, file)))
        .collect();
    found.sort();
    Ok(found)
}

/// `n` when `file` is `<name>.<n>` or `<name>.<n>.gz`.
fn rotation_number(file: &OsStr, name: &OsStr) -> Option<u32> {
    let n = file
        .as_bytes()
        .strip_prefix(name.as_bytes())?
        .strip_prefix(b".")?;
    let n = n.strip_suffix(b".gz").unwrap_or(n);
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// Empties a log: removes its rotated files and truncates the current file (a keeper appending to it goes
/// on at its new end). A file that does not exist is already empty.
///
/// This is done under the lock a keeper rotates under (`flock(LOCK_EX)` on the current file), once the
/// path is seen to still name the file locked: no rotation can then move lines written after the
/// truncation into a rotated file that is removed, or leave lines from before it in the current file.
///
/// The daemon runs it, usually as root, so the log is opened as the keeper opens it ([`open`]): in a
/// directory no other user can write, never through a link, only a regular file; and everything is done
/// relative to that directory. `/dev/null` is left alone.
pub fn flush(path: &Path) -> Result<(), String> {
    flush_with(path, &mut |_| {})
}

/// Where [`flush_with`] is, for a test to act there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushStep {
    /// The current file is open, not locked yet.
    Opened,
    /// The current file is locked and the path names it.
    Locked,
}

fn flush_with(path: &Path, step: &mut dyn FnMut(FlushStep)) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    /// Looks at a path that names another file by the time it is locked (rotated meanwhile), or no file
    /// while rotated ones exist (between a rotation's rename and the new file's creation).
    const ATTEMPTS: u32 = 5;
    if open::discards(path) {
        return Ok(());
    }
    let explain = |e: crate::secure_fs::Error| open::explain(path, &e);
    let (dir, name) = match open::locate(path, false) {
        Ok(found) => found,
        // No directory, no log.
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(explain(e)),
    };
    let remove_rotated = || -> Result<(), String> {
        for (_, old) in rotated_in(&dir, &name).map_err(explain)? {
            dir.remove(&old).map_err(explain)?;
        }
        Ok(())
    };
    for attempt in 1..=ATTEMPTS {
        let file = match dir.open_append(&name, false) {
            Ok(file) => file,
            Err(e) if e.is_not_found() => {
                if attempt < ATTEMPTS && !rotated_in(&dir, &name).map_err(explain)?.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                return remove_rotated();
            }
            Err(e) => return Err(explain(e)),
        };
        step(FlushStep::Opened);
        lock(&file).map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        let locked = file
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        let named = dir.stat(&name).ok().map(|s| crate::secure_fs::id(&s));
        if named != Some((locked.dev(), locked.ino())) {
            // Rotated before it was locked: closing the file releases the lock.
            continue;
        }
        step(FlushStep::Locked);
        let flushed = remove_rotated().and_then(|()| {
            file.set_len(0)
                .map_err(|e| format!("cannot truncate {}: {e}", path.display()))
        });
        // SAFETY: flock on a descriptor `file` owns (closing it would release the lock too).
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return flushed;
    }
    Err(format!(
        "cannot flush {}: it is rotated again and again",
        path.display()
    ))
}

/// Takes `flock(LOCK_EX)` on a log file, waiting a few seconds at most for a keeper that holds it (it
/// does only while it renames files): a stuck holder makes the flush fail rather than hang.
fn lock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        // SAFETY: flock on a descriptor `file` owns; released when it is unlocked or closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EWOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return Err(error),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_and_parse_back() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-24T01:02:03.456Z
        let ms = 1_795_482_123_456;
        assert_eq!(format_time(ms), "2026-11-24T01:02:03.456Z");
        assert_eq!(parse_time("2026-11-24T01:02:03.456Z"), Some(ms));
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [0, 86_399_999, 951_782_400_001, 4_102_444_800_000, ms] {
            assert_eq!(parse_time(&format_time(ms)), Some(ms));
        }
        assert_eq!(parse_time("2026-11-24 01:02:03.456Z"), None);
        assert_eq!(parse_time("2026-13-24T01:02:03.456Z"), None);
        assert_eq!(parse_time("2026-11-24T01:02:03.45xZ"), None);
    }

    #[test]
    fn rotated_names_and_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web-out.log");
        assert_eq!(rotated(&path, 3), dir.path().join("web-out.log.3"));
        for file in [
            "web-out.log",
            "web-out.log.1",
            "web-out.log.2",
            "web-out.log.10",
            "web-out.log.11.gz",
            "web-out.log.x",
            "web-out.log.",
            "web-out.logs.1",
            "web-err.log.1",
        ] {
            std::fs::write(dir.path().join(file), "line\n").expect("write");
        }
        let found: Vec<u32> = rotated_files(&path).into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, [1, 2, 10, 11]);
        flush(&path).expect("flush");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
        assert!(rotated_files(&path).is_empty());
        for kept in [
            "web-out.log.x",
            "web-out.log.",
            "web-out.logs.1",
            "web-err.log.1",
        ] {
            assert!(dir.path().join(kept).exists(), "{kept} was removed");
        }
        flush(&dir.path().join("none.log")).expect("flushing a missing log");
    }

    fn lock_is_free(path: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).expect("open");
        // SAFETY: flock on a descriptor `file` owns; released when it is closed.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }

    #[test]
    fn flush_holds_the_rotation_lock_and_follows_a_rotation_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web-out.log");
        std::fs::write(&path, "old\n").expect("write");
        std::fs::write(rotated(&path, 1), "older\n").expect("write");
        let mut steps = Vec::new();
        flush_with(&path, &mut |step| {
            steps.push(step);
            match step {
                // A keeper rotates the file between the flush's open and its lock, and writes to the
                // new one: the flush must empty that one.
                FlushStep::Opened if steps.len() == 1 => {
                    std::fs::rename(rotated(&path, 1), rotated(&path, 2)).expect("rename");
                    std::fs::rename(&path, rotated(&path, 1)).expect("rename");
                    std::fs::write(&path, "new\n").expect("write");
                }
                // No keeper can rotate (or flush) while the rotated files are removed and the file
                // truncated.
                FlushStep::Locked => assert!(!lock_is_free(&path), "flush without the lock"),
                FlushStep::Opened => {}
            }
        })
        .expect("flush");
        assert_eq!(
            steps,
            [FlushStep::Opened, FlushStep::Opened, FlushStep::Locked]
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        assert!(rotated_files(&path).is_empty());
        assert!(lock_is_free(&path), "the lock is released");
    }
}
