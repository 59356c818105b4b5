//! Where each scheduled job keeps what must survive the daemon: `HERDSMAN_HOME/jobs/<name>.json` (0600,
//! written atomically): whether it is started and paused, the last fire time it handled (so that a daemon
//! that dies and comes back never runs the same fire time again), its counts, and its last runs (at most
//! `history`, so the file stays small).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::protocol::RunRecord;

const FORMAT: u32 = 1;

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
    /// The last runs, oldest first.
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

/// The file of the job `name`.
pub fn path(jobs_dir: &Path, name: &str) -> PathBuf {
    jobs_dir.join(format!("{name}.json"))
}

/// Reads a job's state; a job never stored, or whose file cannot be read, starts empty (said in the log).
pub fn load(path: &Path) -> Stored {
    let bytes = match crate::daemon::persist::read_private(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Stored::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read a job's history: it starts empty");
            return Stored::default();
        }
    };
    match serde_json::from_slice::<Stored>(&bytes) {
        Ok(stored) if stored.format == FORMAT => stored,
        Ok(stored) => {
            warn!(path = %path.display(), format = stored.format, "a job's history of another format: it starts empty");
            Stored::default()
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "a job's history is damaged: it starts empty");
            Stored::default()
        }
    }
}

/// Writes a job's state, keeping its last `keep` runs (and removing the output files of the runs dropped).
pub fn save(path: &Path, stored: &mut Stored, keep: u32) -> std::io::Result<()> {
    stored.format = FORMAT;
    let excess = stored.runs.len().saturating_sub(keep as usize);
    let running = |r: &RunRecord| r.outcome == crate::protocol::RunOutcome::Running;
    let dropped: Vec<RunRecord> = {
        let mut dropped = Vec::new();
        let mut index = 0;
        while dropped.len() < excess && index < stored.runs.len() {
            if running(&stored.runs[index]) {
                index += 1;
            } else {
                dropped.push(stored.runs.remove(index));
            }
        }
        dropped
    };
    let bytes = serde_json::to_vec(stored).map_err(std::io::Error::other)?;
    crate::daemon::persist::write_private(path, &bytes, false)?;
    for run in dropped {
        // Another attempt of the same run may share the file: removed only once no record names it.
        if let Some(log) = run.log
            && !stored.runs.iter().any(|r| r.log.as_deref() == Some(&log))
        {
            let _ = std::fs::remove_file(&log);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RunOutcome;

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

    #[test]
    fn the_history_keeps_its_last_runs_and_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(dir.path(), "report");
        assert_eq!(load(&file), Stored::default());
        let logs: Vec<PathBuf> = (0..4)
            .map(|i| dir.path().join(format!("{i}.log")))
            .collect();
        for log in &logs {
            std::fs::write(log, "output\n").expect("write a run's log");
        }
        let mut stored = Stored {
            enabled: true,
            runs: vec![
                run("a", RunOutcome::Ok, &logs[0]),
                run("b", RunOutcome::Running, &logs[1]),
                run("c", RunOutcome::Failed, &logs[2]),
                run("d", RunOutcome::Ok, &logs[3]),
            ],
            ..Stored::default()
        };
        save(&file, &mut stored, 2).expect("save");
        let ids: Vec<&str> = stored.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            ids,
            ["b", "d"],
            "the oldest ended runs go; a running one stays"
        );
        assert!(!logs[0].exists() && !logs[2].exists());
        assert!(logs[1].exists() && logs[3].exists());
        assert_eq!(load(&file), stored);
        std::fs::write(&file, "{ damaged").expect("damage");
        assert_eq!(load(&file), Stored::default());
    }
}
