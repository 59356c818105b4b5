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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{rotated, rotated_files};

pub struct Output {
    path: PathBuf,
    file: File,
    /// (device, inode) of `file`.
    id: (u64, u64),
    /// The file's size, as of the start of the batch plus what this keeper wrote since.
    size: u64,
    /// Rotate before the file grows past this; 0 never rotates.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// The rotation lock was busy in this batch: rotation waits for the next one.
    busy: bool,
    /// Whole lines not written yet.
    queue: Vec<u8>,
    /// The last write failed (reported once until one succeeds).
    failing: bool,
}

impl Output {
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<Output> {
        let (file, id, size) = open(path)?;
        Ok(Output {
            path: path.to_path_buf(),
            file,
            id,
            size,
            max_size,
            keep,
            busy: false,
            queue: Vec::new(),
            failing: false,
        })
    }

    /// Queues one whole line (newline included), writing the queue and rotating first if the line
    /// would take the file past `max_size`. The first line of a batch looks at the file first.
    pub fn push(&mut self, line: &[u8]) {
        if self.queue.is_empty() {
            self.refresh();
        }
        let pending = self.size + self.queue.len() as u64;
        if !self.busy
            && self.max_size > 0
            && pending > 0
            && pending + line.len() as u64 > self.max_size
        {
            self.write_queue();
            self.rotate_if_full(line.len() as u64);
        }
        self.queue.extend_from_slice(line);
    }

    /// Writes the queued lines in one write; this ends a batch.
    pub fn flush(&mut self) {
        self.write_queue();
        self.busy = false;
    }

    /// Follows the file the path names now, if it is another one (rotated, or removed, by someone
    /// else), and takes its real size (another keeper's lines, or a flush).
    fn refresh(&mut self) {
        if path_id(&self.path) != Some(self.id) {
            self.reopen();
        } else if let Ok(meta) = self.file.metadata() {
            self.size = meta.len();
        }
    }

    fn write_queue(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        match self.file.write_all(&self.queue) {
            Ok(()) => {
                self.size += self.queue.len() as u64;
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write to the log; lines are dropped");
                }
                self.failing = true;
            }
        }
        self.queue.clear();
    }

    /// Rotates the file unless, under the lock, it turns out another keeper did, or a flush emptied it.
    /// If the lock is busy, the rotation is left for the next batch.
    fn rotate_if_full(&mut self, incoming: u64) {
        let fd = self.file.as_raw_fd();
        // SAFETY: flock on a descriptor `self.file` owns; released when it is unlocked or closed.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if !matches!(error.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EINTR)) {
                tracing::warn!(path = %self.path.display(), %error, "cannot lock the log to rotate it");
            }
            self.busy = true;
            return;
        }
        if path_id(&self.path) != Some(self.id) {
            self.reopen();
        } else {
            self.size = self.file.metadata().map_or(self.size, |m| m.len());
            if self.size > 0 && self.size + incoming > self.max_size {
                if let Err(e) = self.shift() {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot rotate the log");
                }
                self.reopen();
            }
        }
        // A file replaced by `reopen` was closed, which released its lock; one still open is unlocked here.
        // (The new file is opened before the old one is closed, so it cannot have the old number.)
        if self.file.as_raw_fd() == fd {
            // SAFETY: as above.
            unsafe { libc::flock(fd, libc::LOCK_UN) };
        }
    }

    /// Renames the chain: `path.(keep-1)` -> `path.keep`, ..., `path` -> `path.1`; removes what is beyond.
    fn shift(&self) -> io::Result<()> {
        for (n, old) in rotated_files(&self.path) {
            if n >= self.keep {
                remove(&old)?;
            }
        }
        if self.keep == 0 {
            return remove(&self.path);
        }
        for n in (1..self.keep).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }

    /// Opens the file the path names now (creating it).
    fn reopen(&mut self) {
        match open(&self.path) {
            Ok((file, id, size)) => {
                self.file = file;
                self.id = id;
                self.size = size;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot reopen the log")
            }
        }
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn open(path: &Path) -> io::Result<(File, (u64, u64), u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino()), meta.len()))
}

#[cfg(test)]
mod tests {
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
}
