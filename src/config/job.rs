//! What makes an app a scheduled job (`schedule` and the options that go with it), and `cron_restart` for
//! a long-running app. The expressions are checked when the app is defined (`crate::schedule`), so the
//! daemon only ever holds valid ones.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::schedule::policy::{CatchUp, Overlap};

/// Defaults of a job's options.
pub mod defaults {
    /// The first retry waits this long, doubling up to [`RETRY_BACKOFF_MAX_MS`].
    pub const RETRY_BACKOFF_MS: u64 = 10_000;
    pub const RETRY_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
    /// Runs kept in a job's history.
    pub const HISTORY: u32 = 20;
    /// The most runs a history may keep.
    pub const HISTORY_MAX: u32 = 1000;
}

/// A scheduled job: each fire time of `schedule` runs the app once (one process per run), on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A cron expression (5, 6 or 7 fields, or an `@alias`), valid.
    pub schedule: String,
    /// An IANA zone the schedule is read in; `None`: the host's zone.
    pub timezone: Option<String>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// A run that would start later than this after its fire time is recorded as missed instead.
    pub starting_deadline_ms: Option<u64>,
    /// A stable offset in `[0, jitter)` added to every fire time, derived from the job's name.
    pub jitter_ms: u64,
    /// A run still going after this long is stopped (kill signal, kill timeout, SIGKILL to its group).
    pub timeout_ms: Option<u64>,
    /// Failed runs are run again up to this many times, under the same run id.
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// Runs kept in the history.
    pub history: u32,
    /// A command (`/bin/sh -c`, in the app's `cwd`) run after a run failed for good, with the run's
    /// details in its environment (`HERDSMAN_RUN_ID`, `HERDSMAN_OUTCOME`, ...).
    pub on_failure: Option<String>,
}

/// `cron_restart`: a long-running app reloaded on schedule (each worker replaced once its successor is ready).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronRestart {
    pub schedule: String,
    pub timezone: Option<String>,
}

/// Where a job's runs keep their output: one file per run, under the app's log directory.
pub fn run_log_dir(logs_dir: &std::path::Path, job: &str) -> PathBuf {
    logs_dir.join("runs").join(job)
}
