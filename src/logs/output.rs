//! One log file the keeper appends to, and its rotation.
//!
//! Lines are queued with [`Output::push`] and written by [`Output::flush`] in one `write` (O_APPEND), so
//! whole lines never interleave with another writer's. Before a line that would take the file past
//! `max_size`, the queue is written and the file rotated: `path.(keep-1)` -> `path.keep` ... `path` ->
//! `path.1`, then a new `path`. A file therefore does not grow past `max_size`, except by a single line
//! longer than that, by a batch of lines while the rotation lock is busy (see below), or by what two
//! keepers write at the same moment.
//!
//! Two keepers may append to the same file for a while (after a daemon restart, the old keeper drains
//! the old workers). So before each batch of lines (one read of a pipe), a keeper looks at what the path
//! names (`stat`) and at its file's size (`fstat`): it follows a rotation (or a removed file) it did not
//! do at once, and counts the other keeper's lines (or a flush) in the size it rotates by. Rotation
//! takes `flock(LOCK_EX)` on the current file and first checks that the path still names the file this
//! keeper has open: if another keeper rotated it already, this one just opens the new file. The lock is
//! taken without waiting: if another process holds it (the other keeper rotating, or `flush`), the
//! rotation is left for the next batch, so a stuck holder cannot stall the keeper and, through full
//! pipes, the workers.
//!
//! The file is opened in its directory (checked, see [`super::open`]) and everything after that (what
//! the path names, the rotation's renames and removals, a new file) is done relative to that directory,
//! never by following the path again, so an app's user who can write there cannot redirect the lines.
//! A rotation that fails (a directory that became read-only, `chattr +a`, ...) is reported once and
//! tried again [`ROTATION_RETRY`] later; meanwhile the lines go on being written in batches. A write that
//! fails part-way (ENOSPC) leaves the file in the middle of a line: the next batch starts with a newline.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::LogTimezone;
use super::open::{discards, explain, locate};
use super::{rotated_in, rotated_name};
use crate::secure_fs::{self, Dir};

/// How long a rotation that failed waits before it is tried again (the file grows past its limit
/// meanwhile, and the failure is reported once).
const ROTATION_RETRY: Duration = Duration::from_secs(10);

/// What the log keeper tells the daemon about one log's lost lines (see [`Output::pending_report`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropReport {
    pub path: PathBuf,
    /// Lines dropped since the last report.
    pub dropped: u64,
    /// Why writes fail, while they do; `None` once one works again.
    pub failing: Option<String>,
}

pub struct Output {
    path: PathBuf,
    /// Where the lines go; `None` drops them (`/dev/null`, or a log that cannot be opened).
    target: Option<Target>,
    /// The file's size, as of the start of the batch plus what this keeper wrote since.
    size: u64,
    /// Rotate before the file grows past this; 0 never rotates.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Also rotate the first time a line is written in a new hour or day (`log_rotate`).
    pub every: Option<RotateEvery>,
    /// The zone whose midnight starts a day.
    pub zone: LogTimezone,
    /// gzip the rotated files from `.2` on (`log_compress`).
    pub compress: bool,
    /// When this batch started (read at its first line).
    batch_ms: u64,
    /// When the file was last written: by this keeper, else its modification time when it was opened
    /// (`None`: empty). Kept here rather than read from the file, whose time is the kernel's.
    written_ms: Option<u64>,
    /// No rotation in this batch: the lock was busy, or a failed rotation waits for its retry.
    busy: bool,
    /// Whole lines not written yet.
    queue: Vec<u8>,
    /// The last write failed (reported once until one succeeds).
    failing: bool,
    /// Why the last write failed, while it does.
    error: Option<String>,
    /// Lines dropped because a write failed: since the last report to the daemon, and since the writes
    /// started failing (for the log line when they work again).
    unreported: u64,
    dropped_while_failing: u64,
    /// The failure the daemon was last told about.
    reported_error: Option<String>,
    /// A write that failed part-way left the file in the middle of a line.
    mid_line: bool,
    /// A rotation failed: when to try again (reported once until one succeeds).
    rotation_retry: Option<Instant>,
    /// Opening the file the path names failed (reported once until it succeeds).
    reopen_failing: bool,
}

/// The file being appended to, in its checked directory.
struct Target {
    dir: Dir,
    name: OsString,
    file: File,
    /// (device, inode) of `file`.
    id: (u64, u64),
}

impl Target {
    /// Whether the log's name still names the file held open (not rotated or removed by someone else).
    fn still_named(&self) -> bool {
        self.dir
            .stat(&self.name)
            .is_ok_and(|stat| secure_fs::id(&stat) == self.id)
    }
}

impl Output {
    /// Opens the log at `path` (its directory and file checked, see [`super::open`]); `/dev/null` drops
    /// the lines.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<Output, String> {
        let mut output = Output::discard(path, max_size, keep);
        if !discards(path) {
            let (dir, name) = locate(path, true).map_err(|e| explain(path, &e))?;
            let file = dir
                .open_append(&name, true)
                .map_err(|e| explain(path, &e))?;
            let (id, size) = identify(&file, path).map_err(|e| explain(path, &e))?;
            output.target = Some(Target {
                dir,
                name,
                file,
                id,
            });
            output.size = size;
            output.written_ms = output.target.as_ref().and_then(|t| last_written(&t.file));
        }
        Ok(output)
    }

    /// An output that drops every line.
    pub fn discard(path: &Path, max_size: u64, keep: u32) -> Output {
        Output {
            path: path.to_path_buf(),
            target: None,
            size: 0,
            max_size,
            keep,
            every: None,
            zone: LogTimezone::Utc,
            compress: false,
            batch_ms: 0,
            written_ms: None,
            busy: false,
            queue: Vec::new(),
            failing: false,
            error: None,
            unreported: 0,
            dropped_while_failing: 0,
            reported_error: None,
            mid_line: false,
            rotation_retry: None,
            reopen_failing: false,
        }
    }

    /// Queues one whole line (newline included), writing the queue and rotating first if the line
    /// would take the file past `max_size`. The first line of a batch looks at the file first.
    pub fn push(&mut self, line: &[u8]) {
        if self.target.is_none() {
            return;
        }
        if self.queue.is_empty() {
            self.refresh();
        }
        let pending = self.size + self.queue.len() as u64;
        let by_size =
            self.max_size > 0 && pending > 0 && pending + line.len() as u64 > self.max_size;
        // The first line of a batch in a new period, to a file last written in an earlier one.
        let by_time = self.queue.is_empty() && self.size > 0 && self.new_period();
        if !self.busy && (by_size || by_time) {
            if self.rotation_retry.is_some_and(|at| Instant::now() < at) {
                self.busy = true;
            } else {
                self.write_queue();
                self.rotate_if_full(line.len() as u64);
            }
        }
        self.queue.extend_from_slice(line);
    }

    /// Writes the queued lines in one write; this ends a batch.
    pub fn flush(&mut self) {
        self.write_queue();
        self.busy = false;
    }

    /// Opens the file the path names now (creating it) if it is not the file open: after an external
    /// rotator renamed it (`herdsman reloadLogs`). Lines go on to the file open until then.
    pub fn reopen_by_path(&mut self) {
        if self.queue.is_empty() {
            self.refresh();
        }
    }

    /// Follows the file the path names now, if it is another one (rotated, or removed, by someone
    /// else), and takes its real size (another keeper's lines, or a flush).
    fn refresh(&mut self) {
        let Some(target) = &self.target else {
            return;
        };
        let same = target.still_named();
        if !same {
            self.reopen();
        } else if let Ok(meta) = target.file.metadata() {
            self.size = meta.len();
        }
        self.batch_ms = super::now_ms();
    }

    /// With `log_rotate`: the batch is in a later hour or day than the file's last write.
    fn new_period(&self) -> bool {
        match (self.every, self.written_ms) {
            (Some(every), Some(written)) => {
                every.period(written, self.zone) < every.period(self.batch_ms, self.zone)
            }
            _ => false,
        }
    }

    fn write_queue(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        if let Some(target) = &mut self.target {
            let prefix = u64::from(self.mid_line);
            let (written, result) = write_lines(&mut target.file, &self.queue, &mut self.mid_line);
            self.size += written;
            if written > 0 {
                self.written_ms = Some(self.batch_ms);
            }
            match result {
                Ok(()) => {
                    if self.failing {
                        tracing::info!(path = %self.path.display(), dropped = self.dropped_while_failing, "writing to the log again; {} lines were dropped meanwhile", self.dropped_while_failing);
                    }
                    self.failing = false;
                    self.error = None;
                    self.dropped_while_failing = 0;
                }
                Err(e) => {
                    // Every line not written whole is lost (the one cut short too).
                    let kept =
                        usize::try_from(written.saturating_sub(prefix)).unwrap_or(usize::MAX);
                    let lost = self.queue[kept.min(self.queue.len())..]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count() as u64;
                    self.unreported += lost;
                    self.dropped_while_failing += lost;
                    if !self.failing {
                        tracing::warn!(path = %self.path.display(), error = %e, "cannot write to the log; lines are dropped (counted in `herdsman describe`) until a write works again");
                    }
                    self.failing = true;
                    self.error = Some(e.to_string());
                }
            }
        }
        self.queue.clear();
    }

    /// What the daemon has not been told yet: lines dropped since the last report, or a change of the
    /// failure (one began, or ended).
    pub fn pending_report(&self) -> Option<DropReport> {
        (self.unreported > 0 || self.error != self.reported_error).then(|| DropReport {
            path: self.path.clone(),
            dropped: self.unreported,
            failing: self.error.clone(),
        })
    }

    /// The daemon was told `report`.
    pub fn reported(&mut self, report: &DropReport) {
        self.unreported -= report.dropped.min(self.unreported);
        self.reported_error = report.failing.clone();
    }

    /// Rotates the file unless, under the lock, it turns out another keeper did, or a flush emptied it.
    /// If the lock is busy, the rotation is left for the next batch; if the rotation fails, for
    /// [`ROTATION_RETRY`].
    fn rotate_if_full(&mut self, incoming: u64) {
        let Some(target) = &self.target else {
            return;
        };
        let fd = target.file.as_raw_fd();
        // SAFETY: flock on a descriptor the target's file owns; released when it is unlocked or closed.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if !matches!(error.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EINTR)) {
                self.rotation_failed(&format!("cannot lock it: {error}"));
            }
            self.busy = true;
            return;
        }
        let same = target.still_named();
        if !same {
            self.reopen();
        } else {
            self.size = target.file.metadata().map_or(self.size, |m| m.len());
            let by_size = self.max_size > 0 && self.size + incoming > self.max_size;
            let by_time = self.new_period();
            if self.size > 0 && (by_size || by_time) {
                match self.shift() {
                    Ok(()) => {
                        if self.rotation_retry.take().is_some() {
                            tracing::info!(path = %self.path.display(), "the log rotates again");
                        }
                        if self.compress
                            && self.keep >= 2
                            && let Some(target) = &self.target
                            && let Ok(dir) = target.dir.try_clone()
                        {
                            super::compress::queue(super::compress::Job {
                                dir,
                                name: target.name.clone(),
                            });
                        }
                        self.reopen();
                    }
                    Err(e) => self.rotation_failed(&e.to_string()),
                }
            }
        }
        // A file replaced by `reopen` was closed, which released its lock; one still open is unlocked here.
        // (The new file is opened before the old one is closed, so it cannot have the old number.)
        if self
            .target
            .as_ref()
            .is_some_and(|t| t.file.as_raw_fd() == fd)
        {
            // SAFETY: as above.
            unsafe { libc::flock(fd, libc::LOCK_UN) };
        }
    }

    /// A rotation failed: warn at the first failure of a streak, and wait before trying again. Meanwhile
    /// lines go on being written, in batches, to the current file.
    fn rotation_failed(&mut self, error: &str) {
        if self.rotation_retry.is_none() {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "cannot rotate the log; it grows past its limit, and rotating is tried again every {} s",
                ROTATION_RETRY.as_secs()
            );
        }
        self.rotation_retry = Some(Instant::now() + ROTATION_RETRY);
        self.busy = true;
    }

    /// Renames the chain: `path.(keep-1)` -> `path.keep`, ..., `path` -> `path.1`; removes what is beyond.
    fn shift(&self) -> Result<(), secure_fs::Error> {
        let Some(Target { dir, name, .. }) = &self.target else {
            return Ok(());
        };
        for (n, old) in rotated_in(dir, name)? {
            if n >= self.keep {
                dir.remove(&old)?;
            }
        }
        if self.keep == 0 {
            return dir.remove(name);
        }
        for n in (1..self.keep).rev() {
            let (from, to) = (rotated_name(name, n), rotated_name(name, n + 1));
            let gz = |name: &OsString| {
                let mut gz = name.clone();
                gz.push(".gz");
                gz
            };
            for (from, to) in [(gz(&from), gz(&to)), (from, to)] {
                match dir.rename(&from, &to) {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
        dir.rename(name, &rotated_name(name, 1))
    }

    /// Opens the file the path names now (creating it), in the directory already open; if that directory
    /// is gone, in the one the path names now. On failure the file open is kept.
    fn reopen(&mut self) {
        let Some(target) = &mut self.target else {
            return;
        };
        let opened = match target.dir.open_append(&target.name, true) {
            Err(e) if e.is_not_found() => locate(&self.path, true).and_then(|(dir, name)| {
                let file = dir.open_append(&name, true)?;
                target.dir = dir;
                Ok(file)
            }),
            opened => opened,
        };
        match opened.and_then(|file| Ok((identify(&file, &self.path)?, file))) {
            Ok(((id, size), file)) => {
                if id != target.id {
                    self.mid_line = false;
                }
                self.written_ms = last_written(&file);
                target.file = file;
                target.id = id;
                self.size = size;
                if self.reopen_failing {
                    tracing::info!(path = %self.path.display(), "the log can be opened again");
                }
                self.reopen_failing = false;
            }
            Err(e) => {
                if !self.reopen_failing {
                    tracing::warn!(
                        error = %explain(&self.path, &e),
                        "cannot open the file the log's path names now; writing on to the file already open"
                    );
                }
                self.reopen_failing = true;
            }
        }
    }
}

/// How often a log rotates by time (`log_rotate`), besides by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotateEvery {
    Hourly,
    Daily,
}

impl RotateEvery {
    /// The number of the hour or day `ms` falls in, counted in `zone` (a local day starts at local
    /// midnight).
    pub fn period(self, ms: u64, zone: LogTimezone) -> i64 {
        let mut ms = ms as i64;
        if zone == LogTimezone::Local
            && let Ok(at) = jiff::Timestamp::from_millisecond(ms)
        {
            ms += i64::from(jiff::tz::TimeZone::system().to_offset(at).seconds()) * 1000;
        }
        match self {
            RotateEvery::Hourly => ms.div_euclid(3_600_000),
            RotateEvery::Daily => ms.div_euclid(86_400_000),
        }
    }
}

impl std::str::FromStr for RotateEvery {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "hourly" => Ok(RotateEvery::Hourly),
            "daily" => Ok(RotateEvery::Daily),
            _ => Err(format!(
                "invalid log_rotate '{text}': expected \"daily\" or \"hourly\""
            )),
        }
    }
}

/// When a file just opened was last written (`None`: it is empty).
fn last_written(file: &File) -> Option<u64> {
    file.metadata()
        .ok()
        .filter(|m| m.len() > 0)
        .and_then(|m| m.modified().ok())
        .map(ms_of)
}

fn ms_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// (device, inode) and size of an open file.
fn identify(file: &File, path: &Path) -> Result<((u64, u64), u64), secure_fs::Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|source| secure_fs::Error::Io {
        action: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(((meta.dev(), meta.ino()), meta.len()))
}

/// Writes whole lines in one `write` (more only if the kernel takes part of it). A write that failed
/// part-way may have left the file in the middle of a line (`mid_line`): the next batch then starts with
/// a newline, so that its first line is not glued onto the fragment. Returns the bytes written.
fn write_lines(out: &mut impl Write, lines: &[u8], mid_line: &mut bool) -> (u64, io::Result<()>) {
    let joined;
    let bytes = if *mid_line {
        joined = [b"\n".as_slice(), lines].concat();
        joined.as_slice()
    } else {
        lines
    };
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => {
                *mid_line |= written > 0 && bytes[written - 1] != b'\n';
                return (written as u64, Err(io::ErrorKind::WriteZero.into()));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if written > 0 {
                    *mid_line = bytes[written - 1] != b'\n';
                }
                return (written as u64, Err(e));
            }
        }
    }
    *mid_line = false;
    (written as u64, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::super::{rotated, rotated_files};
    use super::*;

    #[test]
    fn rotation_keeps_every_line_and_at_most_keep_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut output = Output::open(&path, 100, 2).expect("open");
        for i in 0..40 {
            output.push(format!("line {i:02} .........\n").as_bytes()); // 18 bytes
            if i % 3 == 0 {
                output.flush();
            }
        }
        output.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        let files = [rotated(&path, 2), rotated(&path, 1), path.clone()];
        let text: String = files.iter().map(|p| read(p)).collect();
        let numbers: Vec<u32> = text
            .lines()
            .map(|l| l[5..7].parse().expect("number"))
            .collect();
        let first = numbers[0];
        assert_eq!(numbers, (first..40).collect::<Vec<_>>());
        for p in &files {
            assert!(read(p).len() <= 100, "{} is too large", p.display());
        }
        assert!(!rotated(&path, 3).exists());
        assert_eq!(read(&rotated(&path, 1)).len(), 90);
    }

    #[test]
    fn a_second_writer_follows_a_rotation_it_did_not_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut a = Output::open(&path, 50, 3).expect("open a");
        a.push(b"a1 ......................................\n"); // 42 bytes
        a.flush();
        let mut b = Output::open(&path, 50, 3).expect("open b");
        b.push(b"b1 ......\n"); // would cross 50: b rotates
        b.flush();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b1 ......\n");
        a.push(b"a2 ......\n"); // a's file is now .1: a sees it under the lock and reopens
        a.flush();
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "b1 ......\na2 ......\n"
        );
        assert!(!rotated(&path, 2).exists(), "rotated twice");
    }

    #[test]
    fn a_writer_follows_another_writers_rotation_at_its_next_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut a = Output::open(&path, 50, 3).expect("open a");
        a.push(b"a1 ......\n");
        a.flush();
        let mut b = Output::open(&path, 50, 3).expect("open b");
        b.push(b"b1 ......................................\n"); // 42 bytes: b rotates
        b.flush();
        a.push(b"a2\n"); // fits: no rotation of a's own, yet it goes to the new file
        a.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&rotated(&path, 1)), "a1 ......\n");
        assert_eq!(
            read(&path),
            "b1 ......................................\na2\n"
        );
    }

    #[test]
    fn a_writer_counts_the_other_writers_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut a = Output::open(&path, 50, 3).expect("open a");
        let mut b = Output::open(&path, 50, 3).expect("open b");
        a.push(b"a1 ..........................\n"); // 30 bytes
        a.flush();
        b.push(b"b1 ..........\n"); // 14: 44 in all
        b.flush();
        a.push(b"a2 ..........\n"); // 14 more would make 58
        a.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(
            read(&rotated(&path, 1)),
            "a1 ..........................\nb1 ..........\n"
        );
        assert_eq!(read(&path), "a2 ..........\n");
    }

    #[test]
    fn a_busy_lock_leaves_the_rotation_for_a_later_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut output = Output::open(&path, 20, 2).expect("open");
        output.push(b"line 1 .......\n"); // 15 bytes
        output.flush();
        let holder = File::open(&path).expect("open");
        // SAFETY: flock on a descriptor `holder` owns; released when it is closed.
        assert_eq!(
            unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        // Would rotate, but the lock is held: written to the current file without waiting.
        output.push(b"line 2 .......\n");
        output.push(b"line 3 .......\n");
        output.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&path).len(), 45);
        assert!(rotated_files(&path).is_empty());
        drop(holder);
        output.push(b"line 4 .......\n");
        output.flush();
        assert_eq!(read(&rotated(&path, 1)).len(), 45);
        assert_eq!(read(&path), "line 4 .......\n");
    }

    #[test]
    fn a_file_last_written_in_an_earlier_period_rotates_at_the_first_line_of_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        std::fs::write(&path, "yesterday\n").expect("write");
        let day = std::time::Duration::from_secs(86_400);
        let set_mtime = |ago: std::time::Duration| {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            file.set_modified(std::time::SystemTime::now() - ago)
                .expect("mtime");
        };
        set_mtime(day);
        let mut output = Output::open(&path, 0, 3).expect("open");
        output.every = Some(RotateEvery::Daily);
        output.compress = true;
        output.push(b"today 1\n");
        output.push(b"today 2\n");
        output.flush();
        output.push(b"today 3\n");
        output.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&rotated(&path, 1)), "yesterday\n");
        assert_eq!(read(&path), "today 1\ntoday 2\ntoday 3\n");
        // Once more a day later (as this keeper knows it: the file's own time is the kernel's): `.1`
        // moves to `.2` and is compressed (off this thread).
        output.written_ms = output.written_ms.map(|ms| ms - 86_400_000);
        output.push(b"tomorrow\n");
        output.flush();
        assert_eq!(read(&path), "tomorrow\n");
        assert_eq!(read(&rotated(&path, 1)), "today 1\ntoday 2\ntoday 3\n");
        super::super::compress::finish();
        let gz = dir.path().join("app-out.log.2.gz");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&gz).expect("open .2.gz")),
            &mut text,
        )
        .expect("gunzip");
        assert_eq!(text, "yesterday\n");
        assert!(!rotated(&path, 2).exists());
        assert_eq!(
            RotateEvery::Hourly.period(3_600_000 * 5 + 1, LogTimezone::Utc),
            5
        );
    }

    #[test]
    fn keep_zero_rotates_into_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let mut output = Output::open(&path, 10, 0).expect("open");
        output.push(b"123456789\n");
        output.push(b"abcdefghi\n");
        output.flush();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "abcdefghi\n");
        assert!(rotated_files(&path).is_empty());
    }

    /// Takes `room` bytes, then fails with ENOSPC until given more room.
    struct Disk {
        bytes: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room).min(7); // short writes, as a kernel may do
            self.bytes.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_cut_short_does_not_glue_the_next_line_onto_half_a_line() {
        let mut disk = Disk {
            bytes: Vec::new(),
            room: 20,
        };
        let mut mid_line = false;
        let (written, result) = write_lines(&mut disk, b"first line\nsecond line\n", &mut mid_line);
        assert_eq!(written, 20);
        assert!(result.is_err());
        assert!(mid_line, "the file ends in the middle of `second line`");
        let (_, result) = write_lines(&mut disk, b"third\n", &mut mid_line);
        assert!(result.is_err(), "still no room");
        assert!(mid_line);
        disk.room = 100;
        let (written, result) = write_lines(&mut disk, b"fourth\n", &mut mid_line);
        assert!(result.is_ok());
        assert_eq!(written, 8);
        assert!(!mid_line);
        assert_eq!(disk.bytes, b"first line\nsecond li\nfourth\n");

        // A write that failed right after a whole line needs no newline.
        let mut disk = Disk {
            bytes: Vec::new(),
            room: 11,
        };
        let (_, result) = write_lines(&mut disk, b"first line\nsecond\n", &mut mid_line);
        assert!(result.is_err());
        assert!(!mid_line);
    }

    #[test]
    fn a_failing_rotation_is_tried_again_only_after_a_while() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        // A directory where the rotation must remove a file: every rotation fails.
        std::fs::create_dir(rotated(&path, 1)).expect("mkdir");
        let mut output = Output::open(&path, 20, 1).expect("open");
        for i in 0..10 {
            output.push(format!("line {i} .......\n").as_bytes()); // 15 bytes
            output.flush();
        }
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&path).lines().count(), 10, "every line is written");
        let retry = output.rotation_retry.expect("waiting to retry");
        // The obstacle goes away: the rotation waits for its time all the same.
        std::fs::remove_dir(rotated(&path, 1)).expect("rmdir");
        output.push(b"line 10 ......\n");
        output.flush();
        assert!(!rotated(&path, 1).exists(), "retried before its time");
        assert_eq!(output.rotation_retry, Some(retry));
        output.rotation_retry = Some(Instant::now());
        output.push(b"line 11 ......\n");
        output.flush();
        assert_eq!(read(&rotated(&path, 1)).lines().count(), 11);
        assert_eq!(read(&path), "line 11 ......\n");
        assert_eq!(output.rotation_retry, None);
    }

    #[test]
    fn dev_null_drops_the_lines() {
        let mut output = Output::open(Path::new("/dev/null"), 10, 1).expect("open");
        output.push(b"a line longer than the limit\n");
        output.flush();
        assert!(output.target.is_none());
    }

    #[test]
    fn the_keeper_does_not_follow_a_link_put_in_place_of_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-out.log");
        let target = dir.path().join("target");
        std::fs::write(&target, "kept\n").expect("write");
        let mut output = Output::open(&path, 0, 1).expect("open");
        output.push(b"one\n");
        output.flush();
        std::fs::rename(&path, dir.path().join("moved")).expect("rename");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        output.push(b"two\n");
        output.flush();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&target), "kept\n");
        assert_eq!(read(&dir.path().join("moved")), "one\ntwo\n");
        assert!(output.reopen_failing);
    }
}
