//! Reading logs: the last lines of a set of files merged by time ([`tail`]), and following them like
//! `tail -F` ([`Follower`]).
//!
//! Each file is read on its own, in order; lines of several files are merged by their time (a line
//! without one takes the time of the line before it in its file), so the order within a file is never
//! changed. History reaches into the rotated files (`<file>.1`, ...) when the current one has too few
//! lines.
//!
//! A follower holds each file open. On each [`Follower::poll`] it first looks at what the path names
//! now, then reads its open file to the end: a file that shrank, or whose first bytes changed, was
//! truncated (a flush) and is read again from its start; a path that names another file was rotated,
//! and once the old file is read to its end the files written since are read from their start, in
//! order. A path that names no file (a rotation between its rename and the new file's creation) leaves
//! the old file followed until it does again. So no line is lost or repeated across a rotation.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::filter::Filter;
use super::{LogLine, Stream, parse_line_as, rotated_files};

/// One log file to read: an app's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub app: String,
    pub stream: Stream,
    pub path: PathBuf,
    /// Only the lines of this instance.
    pub instance: Option<u32>,
    /// How the app writes its lines, when known (see [`super::parse_line_as`]).
    pub format: super::LineFormat,
}

/// The last `count` lines of the sources, merged by time, oldest first.
pub fn tail(sources: &[Source], count: usize) -> Vec<LogLine> {
    let (lines, _) = Follower::with_history(sources.to_vec(), count);
    lines
}

/// Follows a set of log files.
pub struct Follower {
    files: Vec<Followed>,
    /// The lines shown, history and new ones alike.
    filter: Filter,
}

struct Followed {
    source: Source,
    file: Option<File>,
    /// (device, inode) of `file`.
    id: (u64, u64),
    offset: u64,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
    /// The first bytes of `file` (up to [`HEAD`]), as read: if they change, the file was truncated and
    /// written again, however long it is now.
    head: Vec<u8>,
}

/// How many of a file's first bytes tell it from what a truncation leaves: a keeper's line starts with
/// its time, in milliseconds.
const HEAD: usize = 64;

impl Follower {
    /// Follows the sources from their current ends.
    pub fn new(sources: Vec<Source>) -> Follower {
        Follower::with_history(sources, 0).1
    }

    /// The last `count` lines of the sources, merged by time, and a follower that goes on right after
    /// them: nothing between the two is lost or repeated.
    pub fn with_history(sources: Vec<Source>, count: usize) -> (Vec<LogLine>, Follower) {
        Follower::with_history_between(sources, count, Filter::default(), &mut || {})
    }

    /// [`Follower::with_history`] of the lines a filter selects: the last `count` of them, and a
    /// follower that shows only those.
    pub fn with_history_filtered(
        sources: Vec<Source>,
        count: usize,
        filter: Filter,
    ) -> (Vec<LogLine>, Follower) {
        Follower::with_history_between(sources, count, filter, &mut || {})
    }

    /// [`Follower::with_history`], calling `between` after each current file is opened and before its
    /// rotated files are (a test makes a rotation happen there).
    fn with_history_between(
        sources: Vec<Source>,
        count: usize,
        filter: Filter,
        between: &mut dyn FnMut(),
    ) -> (Vec<LogLine>, Follower) {
        let mut per_file = Vec::new();
        let mut files = Vec::new();
        for source in sources {
            let mut followed = Followed {
                source,
                file: None,
                id: (0, 0),
                offset: 0,
                partial: Vec::new(),
                head: Vec::new(),
            };
            let (current, rotated) = open_with_rotated(&followed.source.path, between);
            let mut lines = Vec::new();
            if let Some((file, meta)) = current {
                let (last, end) =
                    followed
                        .source
                        .last(&Body::File(&file, meta.len()), count, &filter);
                lines = last;
                followed.id = (meta.dev(), meta.ino());
                followed.offset = end;
                let mut head = vec![0; end.min(HEAD as u64) as usize];
                if file.read_exact_at(&mut head, 0).is_ok() {
                    followed.head = head;
                }
                followed.file = Some(file);
            }
            // Older lines from the rotated files, most recent first.
            for (file, compressed) in rotated {
                if lines.len() >= count {
                    break;
                }
                let meta = file.metadata().ok();
                // A file last written before `since` holds only older lines, and so do the ones after it.
                let written = meta.as_ref().and_then(|m| m.modified().ok()).map(ms_of);
                if let (Some(since), Some(written)) = (filter.since, written)
                    && written < since
                {
                    break;
                }
                let len = meta.map_or(0, |m| m.len());
                let wanted = count - lines.len();
                let (mut older, _) = if compressed {
                    let text = gunzip(&file);
                    followed.source.last(&Body::Bytes(&text), wanted, &filter)
                } else {
                    followed
                        .source
                        .last(&Body::File(&file, len), wanted, &filter)
                };
                older.append(&mut lines);
                lines = older;
            }
            per_file.push(lines);
            files.push(followed);
        }
        let mut merged = merge(per_file);
        let skip = merged.len().saturating_sub(count);
        merged.drain(..skip);
        (merged, Follower { files, filter })
    }

    /// Follows one more source from its start (a new app's file, which holds only new lines); a path
    /// already followed for that stream is left as it is.
    pub fn add(&mut self, source: Source) {
        if self
            .files
            .iter()
            .any(|f| f.source.path == source.path && f.source.stream == source.stream)
        {
            return;
        }
        self.files.push(Followed {
            source,
            file: None,
            id: (0, 0),
            offset: 0,
            partial: Vec::new(),
            head: Vec::new(),
        });
    }

    /// The lines written since the last call, merged by time.
    pub fn poll(&mut self) -> Vec<LogLine> {
        let per_file = self
            .files
            .iter_mut()
            .map(|followed| {
                let lines = followed.read_new();
                let lines = lines.iter().map(|l| followed.source.line(l));
                lines
                    .filter(|l| followed.source.wants(l) && self.filter.accepts(l))
                    .collect()
            })
            .collect();
        merge(per_file)
    }
}

impl Source {
    fn wants(&self, line: &LogLine) -> bool {
        self.instance.is_none_or(|i| line.instance == Some(i))
    }

    /// The last `count` lines of a body that this source wants (and the filter selects), and the
    /// offset just past the last complete line.
    fn last(&self, body: &Body<'_>, count: usize, filter: &Filter) -> (Vec<LogLine>, u64) {
        let mut wanted = count;
        loop {
            let (raw, end) = match body {
                Body::File(file, len) => last_lines(file, *len, wanted),
                Body::Bytes(bytes) => last_lines_of(bytes, wanted),
            };
            let exhausted = raw.len() < wanted;
            let mut lines: Vec<LogLine> = raw
                .iter()
                .map(|l| self.line(l))
                .filter(|l| self.wants(l) && filter.accepts(l))
                .collect();
            if lines.len() >= count || exhausted || wanted >= 1 << 20 {
                let skip = lines.len().saturating_sub(count);
                return (lines.split_off(skip), end);
            }
            wanted *= 4;
        }
    }

    fn line(&self, raw: &[u8]) -> LogLine {
        let text = String::from_utf8_lossy(raw);
        let parsed = parse_line_as(&text, &self.format);
        LogLine {
            app: self.app.clone(),
            instance: parsed.instance,
            stream: self.stream,
            time: parsed.time,
            text: parsed.text.into_owned(),
        }
    }
}

impl Followed {
    /// The complete lines appended since the last read, across a truncation or rotations. A read that
    /// fails ends this one with the lines read so far (the offsets match them): the next goes on there.
    fn read_new(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let _ = self.read_new_into(&mut lines);
        lines
    }

    fn read_new_into(&mut self, lines: &mut Vec<Vec<u8>>) -> io::Result<()> {
        // What the path names now, looked at before the open file is read to its end: a rotation that
        // happened before this look is then fully read from the old file.
        let now = file_id(&self.source.path);
        let Some(file) = &self.file else {
            // Nothing followed yet: the file the path names, from its start.
            if let Some((file, id)) = open(&self.source.path) {
                self.start(file, id);
                self.read_to_end(lines)?;
            }
            return Ok(());
        };
        let old = self.id;
        if self.truncated(file)? {
            // What is there now was written since.
            self.offset = 0;
            self.partial.clear();
            self.head.clear();
        }
        let read = self.read_to_end(lines);
        match now {
            Some(id) if id == old => return read,
            // No file there: between the rename of a rotation and the new file's creation (or removed).
            // The old file stays followed, and once the path names a file again, the files written
            // since are read in order.
            None => return read,
            // Rotated: the old file is done (even if it cannot be read: the next files can).
            Some(_) => {}
        }
        if !self.partial.is_empty() {
            lines.push(std::mem::take(&mut self.partial));
        }
        // The files written after ours, oldest first (several rotations may have happened since the
        // last look): read the rotated ones whole, and follow the newest. If a read fails, the file
        // that failed is the one followed: the next look finds the ones after it.
        let newer = successors(&self.source.path, old);
        let count = newer.len();
        for (i, (file, id)) in newer.into_iter().enumerate() {
            self.start(file, id);
            self.read_to_end(lines)?;
            if i + 1 < count && !self.partial.is_empty() {
                lines.push(std::mem::take(&mut self.partial));
            }
        }
        Ok(())
    }

    /// Follows `file` from its start.
    fn start(&mut self, file: File, id: (u64, u64)) {
        self.file = Some(file);
        self.id = id;
        self.offset = 0;
        self.partial.clear();
        self.head.clear();
    }

    /// Whether the file was truncated since it was read: it is shorter than what was read, or its first
    /// bytes are not those read (it was truncated and written again past the offset).
    fn truncated(&self, file: &File) -> io::Result<bool> {
        if file.metadata()?.len() < self.offset {
            return Ok(true);
        }
        if self.head.is_empty() {
            return Ok(false);
        }
        let mut head = vec![0; self.head.len()];
        match file.read_exact_at(&mut head, 0) {
            Ok(()) => Ok(head != self.head),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn read_to_end(&mut self, lines: &mut Vec<Vec<u8>>) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match file.read_at(&mut chunk, self.offset) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(());
            }
            if self.offset < HEAD as u64 && self.head.len() as u64 == self.offset {
                let more = n.min(HEAD - self.head.len());
                self.head.extend_from_slice(&chunk[..more]);
            }
            self.offset += n as u64;
            self.partial.extend_from_slice(&chunk[..n]);
            if let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') {
                let rest = self.partial.split_off(last + 1);
                let complete = std::mem::replace(&mut self.partial, rest);
                lines.extend(
                    complete[..complete.len() - 1]
                        .split(|&b| b == b'\n')
                        .map(<[u8]>::to_vec),
                );
            }
        }
    }
}

/// What history is read from: the first bytes of a file, or a decompressed rotated file.
enum Body<'a> {
    File(&'a File, u64),
    Bytes(&'a [u8]),
}

/// The text of a gzipped rotated file (at most 256 MiB of it; what cannot be read is left out).
fn gunzip(file: &File) -> Vec<u8> {
    use std::io::Read;
    const LIMIT: u64 = 256 << 20;
    let mut text = Vec::new();
    let _ = flate2::read::GzDecoder::new(file)
        .take(LIMIT)
        .read_to_end(&mut text);
    text
}

/// [`last_lines`] of bytes in memory.
fn last_lines_of(bytes: &[u8], count: usize) -> (Vec<Vec<u8>>, u64) {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if count == 0 || complete == 0 {
        return (Vec::new(), complete as u64);
    }
    let mut lines: Vec<Vec<u8>> = bytes[..complete - 1]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let skip = lines.len().saturating_sub(count);
    (lines.split_off(skip), complete as u64)
}

fn ms_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn open(path: &Path) -> Option<(File, (u64, u64))> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    Some((file, (meta.dev(), meta.ino())))
}

/// The file the path names (with its metadata) and its rotated files, most recent first, as they were
/// at one moment: if the path names another file once they are open (a rotation happened meanwhile),
/// they are opened again, up to three times. A file met twice (renamed during the listing) is dropped.
#[allow(clippy::type_complexity)]
fn open_with_rotated(
    path: &Path,
    between: &mut dyn FnMut(),
) -> (Option<(File, Metadata)>, Vec<(File, bool)>) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = File::open(path).ok().and_then(|file| {
            let meta = file.metadata().ok()?;
            Some((file, meta))
        });
        between();
        let id = current.as_ref().map(|(_, m)| (m.dev(), m.ino()));
        let mut seen: Vec<(u64, u64)> = id.into_iter().collect();
        let mut rotated = Vec::new();
        for (_, old) in rotated_files(path) {
            let Some((file, id)) = open(&old) else {
                continue;
            };
            if !seen.contains(&id) {
                seen.push(id);
                rotated.push((file, super::is_compressed(&old)));
            }
        }
        if file_id(path) == id || attempt >= 3 {
            return (current, rotated);
        }
    }
}

/// The files written after the file `old`, oldest first: from the current file back through
/// `path.1`, `path.2`, ... until `old`. If `old` is not found (removed beyond `keep`, or by a flush),
/// the current file only.
fn successors(path: &Path, old: (u64, u64)) -> Vec<(File, (u64, u64))> {
    // A scan that meets too many rotations at once may not find `old` (see `scan_successors`); the
    // next finds it once they are done.
    for _ in 0..3 {
        if let Some(chain) = scan_successors(path, old) {
            return chain;
        }
    }
    open(path).into_iter().collect()
}

/// One scan for [`successors`], from the newest file to the oldest, or `None` if `old` was not met.
///
/// A rotation renames `path.N` to `path.N+1` from the highest number down, then the current file to
/// `path.1`: during the scan, files only move to higher numbers, still ahead, so none is missed (one
/// seen twice is dropped). A number may name no file for a moment (its file moved up, the one below
/// not yet), so a gap does not end the scan; the highest file may move one past the highest number
/// listed. Two rotations during one scan can carry `old` further: then it is not met.
fn scan_successors(path: &Path, old: (u64, u64)) -> Option<Vec<(File, (u64, u64))>> {
    let mut chain: Vec<(File, (u64, u64))> = Vec::new();
    if let Some(current) = open(path) {
        chain.push(current);
    }
    let highest = rotated_files(path).last().map_or(0, |(n, _)| *n);
    for n in 1..=highest.saturating_add(1) {
        let Some((file, id)) = open(&super::rotated(path, n)) else {
            continue;
        };
        if id == old {
            chain.reverse();
            return Some(chain);
        }
        if !chain.iter().any(|(_, seen)| *seen == id) {
            chain.push((file, id));
        }
    }
    None
}

/// Merges the lines of several files by time, keeping each file's order.
fn merge(per_file: Vec<Vec<LogLine>>) -> Vec<LogLine> {
    let mut keyed: Vec<(u64, LogLine)> = Vec::new();
    for lines in per_file {
        // A line's key is the latest time seen so far in its file: never smaller than the key of the
        // line before it, so the stable sort below keeps the file's order.
        let mut key = 0;
        for line in lines {
            key = key.max(line.time.unwrap_or(0));
            keyed.push((key, line));
        }
    }
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, line)| line).collect()
}

/// The last `count` complete lines of the first `len` bytes of a file (without their newlines), and the
/// offset just past them. At most 16 MiB are read back, however few newlines the file has.
fn last_lines(file: &File, len: u64, count: usize) -> (Vec<Vec<u8>>, u64) {
    const LIMIT: u64 = 16 << 20;
    const STEP: u64 = 64 * 1024;
    let mut start = len;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    // One newline more than lines wanted, since the first line read back may be cut.
    while start > 0 && len - start < LIMIT && (newlines <= count || chunks.is_empty()) {
        let step = start.min(STEP);
        start -= step;
        let mut chunk = vec![0; step as usize];
        if file.read_exact_at(&mut chunk, start).is_err() {
            return (Vec::new(), len);
        }
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
    }
    let tail: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    // Only complete lines; a line still being written is read when it ends.
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = start + complete as u64;
    if count == 0 || complete == 0 {
        return (Vec::new(), end);
    }
    let mut lines: Vec<Vec<u8>> = tail[..complete - 1]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if start > 0 && lines.len() > count {
        lines.remove(0); // may be cut
    }
    let skip = lines.len().saturating_sub(count);
    (lines.split_off(skip), end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn source(app: &str, path: &Path) -> Source {
        Source {
            app: app.into(),
            stream: Stream::Out,
            path: path.to_path_buf(),
            instance: None,
            format: Default::default(),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        file.write_all(text.as_bytes()).expect("append");
    }

    #[test]
    fn history_merges_by_time_and_reaches_into_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        append(
            &super::super::rotated(&a, 1),
            "2026-01-01T00:00:01.000Z [0] a1\n",
        );
        append(&a, "2026-01-01T00:00:03.000Z [0] a3\nno prefix\nunfinished");
        append(
            &b,
            "2026-01-01T00:00:02.000Z [1] b2\n2026-01-01T00:00:04.000Z [1] b4\n",
        );
        let sources = [source("a", &a), source("b", &b)];
        assert_eq!(
            texts(&tail(&sources, 10)),
            ["a1", "b2", "a3", "no prefix", "b4"]
        );
        assert_eq!(texts(&tail(&sources, 2)), ["no prefix", "b4"]);
        let last = tail(&sources, 1);
        assert_eq!((last[0].app.as_str(), last[0].instance), ("b", Some(1)));
        assert!(tail(&sources, 0).is_empty());
        let only = |instance| Source {
            instance: Some(instance),
            ..source("a", &a)
        };
        assert_eq!(texts(&tail(&[only(0)], 5)), ["a1", "a3"]);
        assert!(tail(&[only(1)], 5).is_empty());
    }

    #[test]
    fn history_reads_compressed_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.log");
        let gz = dir.path().join("a.log.2.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&gz).expect("create"),
            flate2::Compression::default(),
        );
        encoder
            .write_all(b"2026-01-01T00:00:01.000Z [0] z1\n2026-01-01T00:00:02.000Z [0] z2\n")
            .expect("gzip");
        encoder.finish().expect("finish");
        append(
            &super::super::rotated(&a, 1),
            "2026-01-01T00:00:03.000Z [0] r1\n",
        );
        append(&a, "2026-01-01T00:00:04.000Z [0] c1\n");
        let sources = [source("a", &a)];
        assert_eq!(texts(&tail(&sources, 10)), ["z1", "z2", "r1", "c1"]);
        assert_eq!(texts(&tail(&sources, 3)), ["z2", "r1", "c1"]);
        // While both `.2` and `.2.gz` exist (a compression finishing), one is read.
        append(
            &super::super::rotated(&a, 2),
            "2026-01-01T00:00:01.000Z [0] z1\n2026-01-01T00:00:02.000Z [0] z2\n",
        );
        assert_eq!(texts(&tail(&sources, 10)), ["z1", "z2", "r1", "c1"]);
    }

    #[test]
    fn following_survives_truncation_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        append(&path, "old 1\nold 2\npart");
        let (history, mut follower) = Follower::with_history(vec![source("a", &path)], 1);
        assert_eq!(texts(&history), ["old 2"]);
        append(&path, "ial\nnew 1\n");
        assert_eq!(texts(&follower.poll()), ["partial", "new 1"]);
        assert!(follower.poll().is_empty());
        // Rotation: more lines land in the old file, then it is renamed and a new one started.
        append(&path, "before rotation\n");
        std::fs::rename(&path, super::super::rotated(&path, 1)).expect("rename");
        append(&path, "after rotation\n");
        assert_eq!(
            texts(&follower.poll()),
            ["before rotation", "after rotation"]
        );
        // Several rotations between two looks.
        append(&path, "r0\n");
        for i in 1..=3 {
            for n in (1..=4).rev() {
                let _ = std::fs::rename(
                    super::super::rotated(&path, n),
                    super::super::rotated(&path, n + 1),
                );
            }
            std::fs::rename(&path, super::super::rotated(&path, 1)).expect("rename");
            append(&path, &format!("r{i}\n"));
        }
        assert_eq!(texts(&follower.poll()), ["r0", "r1", "r2", "r3"]);
        // Truncation (a flush), then a shorter text.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&path, "x\n");
        assert_eq!(texts(&follower.poll()), ["x"]);
        // A file that did not exist yet is read from its start once it appears.
        let later = dir.path().join("later.log");
        let mut follower = Follower::new(vec![source("l", &later)]);
        append(&later, "first\n");
        assert_eq!(texts(&follower.poll()), ["first"]);
    }

    #[test]
    fn a_look_between_the_rename_and_the_new_file_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let one = super::super::rotated(&path, 1);
        let two = super::super::rotated(&path, 2);
        append(&path, "a0\n");
        let mut follower = Follower::new(vec![source("a", &path)]);
        append(&path, "a1\n");
        std::fs::rename(&path, &one).expect("rename");
        // The follower looks while the path names no file.
        assert_eq!(texts(&follower.poll()), ["a1"]);
        assert!(follower.poll().is_empty());
        // Another keeper still appends to the old file; then the new one is created, filled and rotated
        // too, and a third is started, all before the next look.
        append(&one, "a2\n");
        append(&path, "b1\n");
        std::fs::rename(&one, &two).expect("rename");
        std::fs::rename(&path, &one).expect("rename");
        append(&path, "c1\n");
        assert_eq!(texts(&follower.poll()), ["a2", "b1", "c1"]);
        append(&path, "c2\n");
        assert_eq!(texts(&follower.poll()), ["c2"]);
    }

    #[test]
    fn a_truncation_followed_by_more_than_was_read_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let truncate = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open")
                .set_len(0)
                .expect("truncate");
        };
        // Read as history: the follower starts at the end.
        append(
            &path,
            "2026-01-01T00:00:01.000Z [0] old 1\n2026-01-01T00:00:02.000Z [0] old 2\n",
        );
        let (_, mut follower) = Follower::with_history(vec![source("a", &path)], 1);
        truncate();
        append(
            &path,
            "2026-01-01T00:00:03.000Z [0] new 1, longer than any line before\n\
             2026-01-01T00:00:04.000Z [0] new 2\n",
        );
        assert_eq!(
            texts(&follower.poll()),
            ["new 1, longer than any line before", "new 2"]
        );
        append(&path, "2026-01-01T00:00:05.000Z [0] new 3\n");
        assert_eq!(texts(&follower.poll()), ["new 3"]);
        // Read by polling, from a start shorter than the bytes compared.
        truncate();
        let mut follower = Follower::new(vec![source("a", &path)]);
        append(&path, "x\n");
        assert_eq!(texts(&follower.poll()), ["x"]);
        truncate();
        append(&path, "a longer line\nand another\n");
        assert_eq!(texts(&follower.poll()), ["a longer line", "and another"]);
        // An append is not a truncation.
        append(&path, "more\n");
        assert_eq!(texts(&follower.poll()), ["more"]);
    }

    #[test]
    fn a_look_in_the_middle_of_a_rotation_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let rotated = |n| super::super::rotated(&path, n);
        append(&path, "a0\n");
        let mut follower = Follower::new(vec![source("a", &path)]);
        append(&path, "a1\n");
        // Three rotations since the last look, the fourth half done: `.3` and `.2` have moved up, `.1`
        // not yet, so `.2` names no file.
        std::fs::rename(&path, rotated(4)).expect("rename");
        append(&rotated(3), "b1\n");
        append(&rotated(1), "c1\n");
        append(&path, "d1\n");
        assert_eq!(texts(&follower.poll()), ["a1", "b1", "c1", "d1"]);
        append(&path, "d2\n");
        assert_eq!(texts(&follower.poll()), ["d2"]);
    }

    #[test]
    fn a_failed_read_keeps_the_lines_read_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        append(&path, "a0\n");
        let mut follower = Follower::new(vec![source("a", &path)]);
        append(&path, "a1\n");
        std::fs::rename(&path, super::super::rotated(&path, 1)).expect("rename");
        // The next "file" cannot be read (a directory: EISDIR).
        std::fs::create_dir(&path).expect("mkdir");
        assert_eq!(texts(&follower.poll()), ["a1"]);
        std::fs::remove_dir(&path).expect("rmdir");
        append(&path, "b1\n");
        assert_eq!(texts(&follower.poll()), ["b1"]);
    }

    #[test]
    fn history_taken_across_a_rotation_repeats_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let one = super::super::rotated(&path, 1);
        append(&one, "r1\n");
        append(&path, "c1\nc2\n");
        let mut rotate = true;
        // Rotated after the current file is opened, before the rotated ones are listed.
        let (history, mut follower) = Follower::with_history_between(
            vec![source("a", &path)],
            10,
            Filter::default(),
            &mut || {
                if std::mem::take(&mut rotate) {
                    std::fs::rename(&one, super::super::rotated(&path, 2)).expect("rename");
                    std::fs::rename(&path, &one).expect("rename");
                    append(&path, "d1\n");
                }
            },
        );
        assert_eq!(texts(&history), ["r1", "c1", "c2", "d1"]);
        append(&path, "d2\n");
        assert_eq!(texts(&follower.poll()), ["d2"]);
    }

    #[test]
    fn last_lines_returns_complete_lines_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("unfinished");
        std::fs::write(&path, &text).expect("write");
        let file = File::open(&path).expect("open");
        let (lines, end) = last_lines(&file, text.len() as u64, 3);
        assert_eq!(
            lines,
            [
                b"line 99997".to_vec(),
                b"line 99998".to_vec(),
                b"line 99999".to_vec()
            ]
        );
        assert_eq!(end as usize, text.len() - "unfinished".len());
        let (lines, _) = last_lines(&file, text.len() as u64, 20_000);
        assert_eq!(lines.len(), 20_000);
        assert_eq!(lines[0], b"line 80000".to_vec());
    }
}
