//! Where the scheduled jobs keep what must survive the daemon, in `HERDSMAN_HOME/jobs/` (files of mode 0600):
//!
//! - `<name>.json`, a job's snapshot: whether it is started and paused, the last fire time it handled (so
//!   that a daemon that dies and comes back never runs the same fire time again), its counts, its pending
//!   retries and its last runs (at most `history`). Written atomically.
//! - `journal`, what changed since the snapshots: a JSON line per change of a job (its state, and the runs
//!   that changed), appended once per turn of the daemon's loop, in one write for every job that changed
//!   in it. A line replaces the job's state and each run it names (by run id and attempt), so a line read
//!   twice changes nothing, and a torn last line (a daemon killed while writing it) is ignored.
//!
//! The journal is folded into the snapshots when it passes [`JOURNAL_LIMIT`] and when the daemon starts:
//! each job it names gets a new snapshot (its runs beyond `history` dropped, with their output files),
//! then the journal is emptied. A thousand jobs firing together cost one append, not a thousand files.
//!
//! The daemon keeps in memory only each job's state and its runs in progress and last run; a job's whole
//! history is read from here when asked for.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::protocol::{RunOutcome, RunRecord};

const FORMAT: u32 = 1;

/// The journal is folded into the snapshots once it is this long.
const JOURNAL_LIMIT: u64 = 8 << 20;

/// A job's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub format: u32,
    /// The app was started (and not stopped since): its fire times run.
    pub enabled: bool,
    pub paused: bool,
    /// The latest nominal fire time handled (run, skipped or missed), in milliseconds since the Unix epoch.
    pub last_handled_ms: Option<u64>,
    pub ok: u64,
    pub failed: u64,
    /// Runs, oldest first: in a snapshot its last ones; in memory and in a journal line, only those that
    /// matter there (see the module's documentation).
    pub runs: Vec<RunRecord>,
    /// Next attempts of failed runs, waiting for their backoff.
    #[serde(default)]
    pub pending: Vec<PendingRetry>,
}

/// A failed run's next attempt, due at `due_ms` (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetry {
    pub run_id: String,
    pub scheduled_at_ms: Option<u64>,
    pub attempt: u32,
    pub due_ms: u64,
    pub log: String,
}

/// A line of the journal.
#[derive(Serialize)]
struct Line<'a> {
    job: &'a str,
    /// The job's `history`, for the fold.
    keep: u32,
    state: &'a Stored,
}

#[derive(Deserialize)]
struct ReadLine {
    job: String,
    keep: u32,
    state: Stored,
}

impl Stored {
    /// Applies a journal line's state: the job's fields, and each run it names.
    fn apply(&mut self, line: Stored) {
        self.enabled = line.enabled;
        self.paused = line.paused;
        self.last_handled_ms = line.last_handled_ms;
        self.ok = line.ok;
        self.failed = line.failed;
        self.pending = line.pending;
        for run in line.runs {
            match self
                .runs
                .iter_mut()
                .rev()
                .find(|r| r.run_id == run.run_id && r.attempt == run.attempt)
            {
                Some(known) => *known = run,
                None => self.runs.push(run),
            }
        }
    }

    /// Drops the oldest ended runs beyond `keep` (a run in progress stays); returns them.
    fn trim(&mut self, keep: u32) -> Vec<RunRecord> {
        let excess = self.runs.len().saturating_sub(keep as usize);
        let mut dropped = Vec::new();
        let mut index = 0;
        while dropped.len() < excess && index < self.runs.len() {
            if self.runs[index].outcome == RunOutcome::Running {
                index += 1;
            } else {
                dropped.push(self.runs.remove(index));
            }
        }
        dropped
    }

    /// What memory keeps of the runs: those in progress, and the last one ended.
    pub fn keep_in_memory(&mut self) {
        let last = self
            .runs
            .iter()
            .rposition(|r| r.outcome != RunOutcome::Running);
        let mut index = 0;
        self.runs.retain(|r| {
            let kept = r.outcome == RunOutcome::Running || Some(index) == last;
            index += 1;
            kept
        });
    }
}

/// The jobs' files.
pub struct Store {
    dir: PathBuf,
    journal: Option<File>,
    /// The journal's length: where the next line goes.
    len: u64,
    /// Lines of this loop turn, not written yet, with each one's job, offset in `buffer` and length.
    buffer: Vec<u8>,
    unwritten: Vec<(String, usize, usize)>,
    /// Each job's lines in the journal (offset, length), oldest first.
    lines: HashMap<String, Vec<(u64, usize)>>,
    /// A failed write was logged; the next success is too.
    failing: bool,
}

impl Store {
    /// The store in `dir`, with what an earlier daemon left in its journal folded into the snapshots.
    pub fn open(dir: &Path) -> Store {
        let mut store = Store {
            dir: dir.to_path_buf(),
            journal: None,
            len: 0,
            buffer: Vec::new(),
            unwritten: Vec::new(),
            lines: HashMap::new(),
            failing: false,
        };
        store.fold();
        store
    }

    fn snapshot_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// A job's state: its snapshot, with its journal lines applied (its whole history, up to `history`).
    pub fn load(&self, name: &str) -> Stored {
        let mut stored = read_snapshot(&self.snapshot_path(name));
        if let (Some(journal), Some(lines)) = (&self.journal, self.lines.get(name)) {
            for &(offset, len) in lines {
                let mut bytes = vec![0; len];
                let line = journal
                    .read_exact_at(&mut bytes, offset)
                    .ok()
                    .and_then(|()| serde_json::from_slice::<ReadLine>(&bytes).ok());
                if let Some(line) = line {
                    stored.apply(line.state);
                }
            }
        }
        stored
    }

    /// A job's runs, oldest first, at most `keep` of them.
    pub fn history(&self, name: &str, keep: u32) -> Vec<RunRecord> {
        let mut stored = self.load(name);
        stored.trim(keep);
        stored.runs
    }

    /// Queues a line with a job's state (and the runs in `stored`), written by [`Store::flush`].
    pub fn put(&mut self, name: &str, keep: u32, stored: &Stored) {
        let start = self.buffer.len();
        let line = Line {
            job: name,
            keep,
            state: stored,
        };
        match serde_json::to_writer(&mut self.buffer, &line) {
            Ok(()) => {
                self.unwritten
                    .push((name.to_string(), start, self.buffer.len() - start));
                self.buffer.push(b'\n');
            }
            Err(e) => {
                self.buffer.truncate(start);
                warn!(job = %name, error = %e, "cannot encode the job's state");
            }
        }
    }

    /// Appends the lines queued, in one write; folds the journal once it is long.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        match self.append() {
            Ok(()) => {
                for (name, start, len) in self.unwritten.drain(..) {
                    self.lines
                        .entry(name)
                        .or_default()
                        .push((self.len + start as u64, len));
                }
                self.len += self.buffer.len() as u64;
                if self.failing {
                    self.failing = false;
                    info!("the jobs' journal is written again");
                }
            }
            Err(e) => {
                self.unwritten.clear();
                if !self.failing {
                    self.failing = true;
                    // Each job's next change writes its whole state again.
                    warn!(path = %self.journal_path().display(), error = %e, "cannot write the jobs' journal");
                }
            }
        }
        self.buffer.clear();
        if self.len >= JOURNAL_LIMIT {
            self.fold();
        }
    }

    fn append(&mut self) -> std::io::Result<()> {
        if self.journal.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(self.journal_path())?;
            self.len = file.metadata()?.len();
            self.journal = Some(file);
        }
        match &mut self.journal {
            Some(file) => file.write_all(&self.buffer),
            None => Ok(()),
        }
    }

    /// Folds the journal into the snapshots and empties it.
    fn fold(&mut self) {
        let path = self.journal_path();
        let mut bytes = Vec::new();
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path);
        match opened {
            Ok(mut file) => {
                if let Err(e) = file.read_to_end(&mut bytes) {
                    warn!(path = %path.display(), error = %e, "cannot read the jobs' journal");
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the jobs' journal");
                return;
            }
        }
        let jobs = replay(&bytes, |job| read_snapshot(&self.snapshot_path(job)));
        let mut written = true;
        for (name, stored, dropped) in jobs {
            let saved = serde_json::to_vec(&stored)
                .map_err(std::io::Error::other)
                .and_then(|bytes| {
                    crate::daemon::persist::write_private(&self.snapshot_path(&name), &bytes, false)
                });
            if let Err(e) = saved {
                warn!(job = %name, error = %e, "cannot write the job's history");
                written = false;
                continue;
            }
            for run in dropped {
                // Another attempt of the same run may share the file: removed only once no record names it.
                if let Some(log) = run.log
                    && !stored.runs.iter().any(|r| r.log.as_deref() == Some(&log))
                {
                    let _ = std::fs::remove_file(&log);
                }
            }
        }
        if !written {
            // The journal still holds what a snapshot lacks: kept, and folded again later.
            return;
        }
        let emptied = match &self.journal {
            Some(file) => file.set_len(0),
            None => std::fs::remove_file(&path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        match emptied {
            Ok(()) => {
                self.len = 0;
                self.lines.clear();
            }
            Err(e) => warn!(path = %path.display(), error = %e, "cannot empty the jobs' journal"),
        }
    }
}

/// The journal's lines applied, in order, to each job's snapshot (`snapshot` reads it): each job it names,
/// with its state trimmed to the `keep` of its last line, and the runs that trimming dropped.
pub fn replay(
    journal: &[u8],
    mut snapshot: impl FnMut(&str) -> Stored,
) -> Vec<(String, Stored, Vec<RunRecord>)> {
    let mut jobs: Vec<(String, u32, Stored)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for raw in journal.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(line) = serde_json::from_slice::<ReadLine>(raw) else {
            continue; // torn by a daemon killed while writing it
        };
        let at = *index.entry(line.job.clone()).or_insert_with(|| {
            jobs.push((line.job.clone(), line.keep, snapshot(&line.job)));
            jobs.len() - 1
        });
        jobs[at].1 = line.keep;
        jobs[at].2.apply(line.state);
    }
    jobs.into_iter()
        .map(|(name, keep, mut stored)| {
            let dropped = stored.trim(keep);
            stored.format = FORMAT;
            (name, stored, dropped)
        })
        .collect()
}

/// Reads a job's snapshot; a job never stored, or whose file cannot be read, starts empty (said in the log).
fn read_snapshot(path: &Path) -> Stored {
    let bytes = match crate::daemon::persist::read_private(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Stored::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read a job's history: it starts empty");
            return Stored::default();
        }
    };
    decode_snapshot(&bytes).unwrap_or_else(|why| {
        warn!(path = %path.display(), "a job's history {why}: it starts empty");
        Stored::default()
    })
}

/// A job's snapshot from its file's bytes; `Err` says what is wrong with it.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Stored, String> {
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(stored) if stored.format == FORMAT => Ok(stored),
        Ok(stored) => Err(format!("is of another format ({})", stored.format)),
        Err(e) => Err(format!("is damaged ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, outcome: RunOutcome, log: &Path) -> RunRecord {
        RunRecord {
            run_id: id.to_string(),
            scheduled_at_ms: None,
            started_at_ms: None,
            ended_at_ms: None,
            outcome,
            exit: None,
            exit_code: None,
            attempt: 1,
            pid: None,
            log: Some(log.display().to_string()),
            detail: None,
        }
    }

    fn stored(runs: Vec<RunRecord>) -> Stored {
        Stored {
            enabled: true,
            runs,
            ..Stored::default()
        }
    }

    fn ids(runs: &[RunRecord]) -> Vec<&str> {
        runs.iter().map(|r| r.run_id.as_str()).collect()
    }

    #[test]
    fn the_journal_keeps_each_change_and_the_fold_keeps_the_last_runs_and_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs: Vec<PathBuf> = (0..4)
            .map(|i| dir.path().join(format!("{i}.log")))
            .collect();
        for log in &logs {
            std::fs::write(log, "output\n").expect("write a run's log");
        }
        let mut store = Store::open(dir.path());
        assert_eq!(store.load("report"), Stored::default());
        // Each change names the runs that changed: a run starts, ends, the next ones follow.
        store.put(
            "report",
            2,
            &stored(vec![run("a", RunOutcome::Running, &logs[0])]),
        );
        store.put(
            "report",
            2,
            &stored(vec![run("a", RunOutcome::Ok, &logs[0])]),
        );
        store.flush();
        store.put(
            "report",
            2,
            &stored(vec![
                run("b", RunOutcome::Running, &logs[1]),
                run("c", RunOutcome::Failed, &logs[2]),
            ]),
        );
        let mut last = stored(vec![run("d", RunOutcome::Ok, &logs[3])]);
        last.ok = 2;
        store.put("report", 2, &last);
        store.flush();
        let loaded = store.load("report");
        assert_eq!(ids(&loaded.runs), ["a", "b", "c", "d"]);
        assert_eq!(
            loaded.runs[0].outcome,
            RunOutcome::Ok,
            "a line replaces a run"
        );
        assert_eq!(loaded.ok, 2);
        assert_eq!(ids(&store.history("report", 2)), ["b", "d"]);

        // A daemon killed while writing leaves a torn line: a new daemon ignores it and folds the rest.
        let journal = dir.path().join("journal");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("journal");
        file.write_all(br#"{"job":"report","keep":2,"sta"#)
            .expect("torn line");
        drop(store);
        let store = Store::open(dir.path());
        assert!(
            std::fs::metadata(&journal).map_or(true, |m| m.len() == 0),
            "the journal is folded when a daemon starts"
        );
        let folded = store.load("report");
        assert_eq!(
            ids(&folded.runs),
            ["b", "d"],
            "the oldest ended runs go; a running one stays"
        );
        assert!(!logs[0].exists() && !logs[2].exists());
        assert!(logs[1].exists() && logs[3].exists());
        assert_eq!(folded.ok, 2);

        std::fs::write(dir.path().join("report.json"), "{ damaged").expect("damage");
        assert_eq!(store.load("report"), Stored::default());
    }

    #[test]
    fn memory_keeps_the_runs_in_progress_and_the_last_one_ended() {
        let log = Path::new("/nonexistent.log");
        let mut s = stored(vec![
            run("a", RunOutcome::Ok, log),
            run("b", RunOutcome::Running, log),
            run("c", RunOutcome::Failed, log),
            run("d", RunOutcome::Running, log),
        ]);
        s.keep_in_memory();
        assert_eq!(ids(&s.runs), ["b", "c", "d"]);
    }
}
