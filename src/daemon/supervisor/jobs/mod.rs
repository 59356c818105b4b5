//! Scheduled jobs: an app with a `schedule` runs one process per fire time, once per host.
//!
//! The supervisor is the single authority on its host, so "once" needs no lock: each fire time is handled
//! here exactly once, and the last one handled is written to the job's file (`jobstore.rs`) before its run
//! starts, so a daemon that dies and comes back never runs it again. A run executes in a slot of the app:
//! its first slot, or another one added for a run beside it (`overlap = "allow"`, or a replacement during
//! `replace`), removed when that run ends. A run is never restarted by the crash policy: it ends with an
//! outcome (ok, failed, timed out, killed), recorded in the history with its exit, and a failed one is run
//! again under the same run id with the next attempt number, up to `retries`.
//!
//! Timers sleep on the monotonic clock, at most a minute at a time, and each wake-up reads the wall
//! clock: a clock stepped back does not fire early (the timer sleeps again), and one stepped forward (or a
//! suspend) fires once for the latest fire time passed, within the starting deadline.
//!
//! Starting the app (`start`, `restart`, a file, `resurrect`) enables its schedule; `stop` and `delete`
//! disable it (and stop a run in progress, recorded as killed). `jobs pause` skips fire times until
//! `jobs resume`; `trigger` runs one now. `cron_restart` on a long-running app reloads it at each fire time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::{error, info, warn};

use super::{Supervisor, Timer};
use crate::config::job::JobSpec;
use crate::daemon::jobstore::{self, Store, Stored};
use crate::daemon::worker::{OnExit, Process, State, describe_exit};
use crate::protocol::{JobState, RunOutcome, RunRecord, Selection};
use crate::schedule::policy::{self, CatchUpDecision, OnFire};
use crate::schedule::{Fire, Schedule};

mod fleet;
mod fleet_status;
mod fleet_tasks;
mod requests;

pub use fleet::Report as FleetReport;

/// The longest a job's timer sleeps before it reads the wall clock again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A job's timers, each naming what it is about so that a stale one is ignored.
#[derive(Debug, Clone, Copy)]
pub enum JobTimer {
    /// Time to look at the wall clock: a fire time may be due.
    Wake { key: u64, generation: u64 },
    /// A failed run's next attempt is due.
    Retry { key: u64, token: u64 },
    /// The run in this slot has run for its timeout.
    Timeout { slot: u32, serial: u64 },
    /// A `cron_restart` fire time may be due.
    Reload { key: u64, generation: u64 },
}

/// What a run is, before and while it runs.
#[derive(Debug, Clone)]
pub struct RunStart {
    run_id: String,
    scheduled: Option<Timestamp>,
    attempt: u32,
    log: PathBuf,
    /// A fleet run's fencing token (`HERDSMAN_FENCE`), from its claim.
    fence: Option<u64>,
}

struct Active {
    start: RunStart,
    serial: u64,
    /// Set when herdsman stops the run itself: its outcome, and why.
    stopped_for: Option<(RunOutcome, String)>,
}

pub(super) struct Job {
    key: u64,
    spec: JobSpec,
    /// `None` when the schedule cannot be used on this host (its zone is unknown to this tzdb, or it never
    /// fires any more): the app is still a job, and nothing fires; `unusable` says why.
    schedule: Option<Arc<Schedule>>,
    unusable: Option<String>,
    /// Its state, with only the runs in progress and the last one ended (its history is in the store).
    stored: Stored,
    /// Bumped whenever the armed timer becomes stale.
    generation: u64,
    /// The next fire time, and when it is due (jitter added).
    next: Option<(Fire, Timestamp)>,
    /// Runs about to be spawned, by slot.
    starting: HashMap<u32, RunStart>,
    /// Runs in progress, by slot.
    runs: HashMap<u32, Active>,
    /// Next attempts waiting for their backoff, by token.
    retries: HashMap<u64, RunStart>,
    /// Its state changed since it was last written (written at the end of the loop turn; see `flush_jobs`).
    unsaved: bool,
    /// A digest of each of its runs as last written: a line of the journal carries only those that
    /// changed since. (Digests, not copies of the runs kept in memory: 8 bytes a run instead of its
    /// strings.)
    written: Vec<u64>,
    /// The directory of its run logs exists.
    log_dir_ready: bool,
}

/// `cron_restart` of a long-running app.
pub(super) struct CronReload {
    key: u64,
    spec: crate::config::job::CronRestart,
    schedule: Arc<Schedule>,
    generation: u64,
    next: Option<Fire>,
}

/// The jobs and cron reloads, by app.
pub(super) struct Jobs {
    /// An app may have been added, changed or removed: `sync_jobs` looks at them again.
    pub(super) dirty: bool,
    jobs: BTreeMap<String, Job>,
    reloads: BTreeMap<String, CronReload>,
    /// Each job's name by its key (timers name jobs by key).
    keys: HashMap<u64, String>,
    next_key: u64,
    /// The jobs' files, opened when first needed.
    store: Option<Store>,
    /// Runs recorded in this loop turn, spawned once that record is written: (job, slot).
    to_spawn: Vec<(String, u32)>,
    /// Each schedule in use, by expression and zone: jobs with the same one share it (a parsed
    /// expression holds a table of every year it may fire in).
    schedules: HashMap<(String, Option<String>), Arc<Schedule>>,
    /// The fleet stores and the fleet runs' tasks (`scope = "fleet"`).
    fleet: fleet::FleetJobs,
}

impl Jobs {
    /// The schedule of `expr` in `zone`, parsed once for every job that uses it.
    fn schedule(
        &mut self,
        expr: &str,
        zone: Option<&str>,
    ) -> Result<Arc<Schedule>, crate::schedule::ScheduleError> {
        let key = (expr.to_string(), zone.map(str::to_string));
        if let Some(schedule) = self.schedules.get(&key) {
            return Ok(schedule.clone());
        }
        // Those no job uses any more go first.
        self.schedules.retain(|_, s| Arc::strong_count(s) > 1);
        let schedule = Arc::new(Schedule::parse(expr, zone)?);
        self.schedules.insert(key, schedule.clone());
        Ok(schedule)
    }
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            dirty: true,
            jobs: BTreeMap::new(),
            reloads: BTreeMap::new(),
            keys: HashMap::new(),
            next_key: 0,
            store: None,
            to_spawn: Vec::new(),
            schedules: HashMap::new(),
            fleet: fleet::FleetJobs::default(),
        }
    }
}

/// What [`Job::written`] keeps of a run as written.
fn digest(run: &RunRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    run.hash(&mut hasher);
    hasher.finish()
}

fn ms(at: Timestamp) -> u64 {
    at.as_millisecond().max(0) as u64
}

fn jitter(name: &str, spec: &JobSpec) -> SignedDuration {
    let offset = policy::jitter(name, Duration::from_millis(spec.jitter_ms));
    SignedDuration::try_from(offset).unwrap_or(SignedDuration::ZERO)
}

/// How long from now until `at`, on the monotonic clock, at most [`MAX_SLEEP`].
fn sleep_until(at: Timestamp) -> Duration {
    let left = at.duration_since(Timestamp::now());
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs().min(MAX_SLEEP)
    }
}

fn record(start: &RunStart, outcome: RunOutcome) -> RunRecord {
    RunRecord {
        run_id: start.run_id.clone(),
        scheduled_at_ms: start.scheduled.map(ms),
        started_at_ms: None,
        ended_at_ms: None,
        outcome,
        exit: None,
        exit_code: None,
        attempt: start.attempt,
        pid: None,
        log: Some(start.log.display().to_string()),
        detail: None,
    }
}

impl Job {
    /// Written at the end of the loop turn, with whatever else changes in it (a run's pid, its end), and
    /// before any run recorded in it starts.
    fn save(&mut self) {
        self.unsaved = true;
    }

    /// The history's record of a run's attempt.
    fn record_mut(&mut self, start: &RunStart) -> Option<&mut RunRecord> {
        self.stored
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.run_id == start.run_id && r.attempt == start.attempt)
    }

    /// Adds a record of a run that did not start (skipped, missed), and counts it.
    fn not_run(&mut self, start: &RunStart, outcome: RunOutcome, detail: String) -> RunRecord {
        let now = ms(Timestamp::now());
        let mut run = record(start, outcome);
        run.log = None;
        run.ended_at_ms = Some(now);
        run.detail = Some(detail);
        self.stored.runs.push(run.clone());
        run
    }

    fn state(&self) -> JobState {
        if !self.runs.is_empty() || !self.starting.is_empty() {
            JobState::Running
        } else if self.stored.paused {
            JobState::Paused
        } else if self.stored.enabled {
            JobState::Scheduled
        } else {
            JobState::Stopped
        }
    }

    fn last_handled(&self) -> Option<Timestamp> {
        self.stored
            .last_handled_ms
            .and_then(|ms| Timestamp::from_millisecond(ms as i64).ok())
    }
}

impl Supervisor {
    /// Brings the jobs and cron reloads in line with the apps' definitions: new ones registered (a job
    /// started before resumes its schedule, catching up once if it missed a fire time while no daemon
    /// ran), changed ones rescheduled (a run in progress is left alone), removed ones forgotten.
    pub(super) fn sync_jobs(&mut self) {
        if !std::mem::take(&mut self.jobs.dirty) {
            return;
        }
        // It compares in place and clones only what changed.
        let jobs = &self.jobs;
        let changed: Vec<String> = self
            .apps
            .iter()
            .filter(|(name, app)| {
                app.spec.job.as_deref() != jobs.jobs.get(*name).map(|j| &j.spec)
                    || app.spec.cron_restart.as_deref() != jobs.reloads.get(*name).map(|r| &r.spec)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let gone: Vec<String> = jobs
            .jobs
            .keys()
            .chain(jobs.reloads.keys())
            .filter(|name| !self.apps.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.jobs.reloads.remove(&name);
            if let Some(mut job) = self.jobs.jobs.remove(&name) {
                // Its history stays; an app created later under the name starts neither paused nor enabled.
                job.stored.paused = false;
                job.stored.enabled = false;
                let store = self
                    .jobs
                    .store
                    .get_or_insert_with(|| Store::open(&self.home.jobs_dir()));
                store.put(&name, job.spec.history, &job.stored);
                self.jobs.keys.remove(&job.key);
                info!(job = %name, "job removed");
            }
        }
        for name in changed {
            let Some(app) = self.apps.get(&name) else {
                continue;
            };
            let (job, cron) = (app.spec.job.clone(), app.spec.cron_restart.clone());
            match (job, self.jobs.jobs.contains_key(&name)) {
                (Some(spec), false) => self.register_job(&name, *spec),
                (Some(spec), true) => {
                    if self.jobs.jobs.get(&name).is_some_and(|j| j.spec != *spec) {
                        self.respec_job(&name, *spec);
                    }
                }
                (None, true) => {
                    if let Some(job) = self.jobs.jobs.remove(&name) {
                        self.jobs.keys.remove(&job.key);
                    }
                }
                (None, false) => {}
            }
            match cron {
                Some(spec) => {
                    if self.jobs.reloads.get(&name).map(|r| &r.spec) != Some(&spec) {
                        self.register_cron_reload(&name, *spec);
                    }
                }
                None => {
                    self.jobs.reloads.remove(&name);
                }
            }
        }
    }

    fn register_job(&mut self, name: &str, spec: JobSpec) {
        let (schedule, unusable) = match self
            .jobs
            .schedule(&spec.schedule, spec.timezone.as_deref())
        {
            Ok(schedule) => (Some(schedule), None),
            Err(e) => {
                error!(job = %name, error = %e, "the job's schedule cannot be used here: nothing fires");
                (None, Some(e.to_string()))
            }
        };
        let store = self
            .jobs
            .store
            .get_or_insert_with(|| Store::open(&self.home.jobs_dir()));
        let mut stored = store.load(name);
        // Runs that go on in the app's slots: adopted from a killed keeper (see `adoption.rs`), or carried
        // over an in-place update (`handover.rs`).
        let adopted: HashMap<u32, (u32, u64)> = self
            .apps
            .get(name)
            .map(|app| {
                app.workers
                    .iter()
                    .filter_map(|&id| {
                        let p = self.workers.get(&id)?.state.process()?;
                        Some((p.pid as u32, (id, p.serial)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut runs = HashMap::new();
        // Each carried run's slot, serial and start, to arm its timeout again.
        let mut carried: Vec<(u32, u64, u64)> = Vec::new();
        // Runs of a daemon that ended while they ran.
        let mut ended = Vec::new();
        for run in stored
            .runs
            .iter_mut()
            .filter(|r| r.outcome == RunOutcome::Running)
        {
            if let Some(&(slot, serial)) = run.pid.and_then(|pid| adopted.get(&pid)) {
                let start = RunStart {
                    run_id: run.run_id.clone(),
                    scheduled: run
                        .scheduled_at_ms
                        .and_then(|ms| Timestamp::from_millisecond(ms as i64).ok()),
                    attempt: run.attempt,
                    log: run.log.clone().map(PathBuf::from).unwrap_or_default(),
                    fence: None,
                };
                runs.insert(
                    slot,
                    Active {
                        start,
                        serial,
                        stopped_for: None,
                    },
                );
                carried.push((slot, serial, run.started_at_ms.unwrap_or(0)));
                continue;
            }
            // Its daemon ended during the run: whatever became of it, it is not run again.
            run.outcome = RunOutcome::Killed;
            run.detail = Some("the daemon stopped during the run".into());
            run.ended_at_ms.get_or_insert(ms(Timestamp::now()));
            ended.push(run.clone());
        }
        if !ended.is_empty() {
            let ended = Stored {
                runs: ended,
                ..stored.clone()
            };
            if let Some(store) = &mut self.jobs.store {
                store.put(name, spec.history, &ended);
            }
        }
        stored.keep_in_memory();
        self.jobs.next_key += 1;
        let job = Job {
            key: self.jobs.next_key,
            spec,
            schedule,
            unusable,
            stored,
            generation: 0,
            next: None,
            starting: HashMap::new(),
            runs,
            retries: HashMap::new(),
            unsaved: false,
            written: Vec::new(),
            log_dir_ready: false,
        };
        let resume = job.stored.enabled && !job.stored.paused;
        let timeout = job.spec.timeout_ms;
        self.jobs.keys.insert(job.key, name.to_string());
        let pending = job.stored.pending.clone();
        self.jobs.jobs.insert(name.to_string(), job);
        info!(job = %name, "job registered");
        let now = ms(Timestamp::now());
        // A carried run keeps its timeout, counted from when it started.
        if let Some(timeout) = timeout {
            for (slot, serial, started) in carried {
                let left = (started + timeout).saturating_sub(now);
                let timer = Timer::Job(JobTimer::Timeout { slot, serial });
                self.arm(Duration::from_millis(left), timer);
            }
        }
        // And a failed run's next attempt still comes, when it was due.
        for retry in pending {
            let next = RunStart {
                run_id: retry.run_id,
                scheduled: retry
                    .scheduled_at_ms
                    .and_then(|ms| Timestamp::from_millisecond(ms as i64).ok()),
                attempt: retry.attempt,
                log: PathBuf::from(retry.log),
                fence: None,
            };
            let delay = Duration::from_millis(retry.due_ms.saturating_sub(now));
            self.arm_retry(name, next, delay);
        }
        // A fleet run carried over goes on renewing its lease.
        let carried_runs: Vec<RunStart> = self
            .jobs
            .jobs
            .get(name)
            .map(|j| j.runs.values().map(|a| a.start.clone()).collect())
            .unwrap_or_default();
        for start in carried_runs {
            self.watch_fleet_run(name, &start);
        }
        if resume {
            self.catch_up(name);
        }
        if let Some(job) = self.jobs.jobs.get_mut(name) {
            job.save();
        }
    }

    /// A changed definition: the new schedule and options from now on; a run in progress goes on.
    fn respec_job(&mut self, name: &str, spec: JobSpec) {
        let parsed = self.jobs.schedule(&spec.schedule, spec.timezone.as_deref());
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        job.spec = spec;
        job.generation += 1;
        match parsed {
            Ok(schedule) => {
                job.schedule = Some(schedule);
                job.unusable = None;
            }
            Err(e) => {
                error!(job = %name, error = %e, "the job's new schedule cannot be used here: nothing fires");
                job.schedule = None;
                job.unusable = Some(e.to_string());
                job.next = None;
                return;
            }
        }
        let armed = job.stored.enabled && !job.stored.paused;
        info!(job = %name, schedule = %job.spec.schedule, "job rescheduled");
        if armed {
            self.arm_job(name, Timestamp::now());
        }
    }

    /// At registration of a job that was enabled: what it missed while no daemon ran, once, then its
    /// schedule from now.
    fn catch_up(&mut self, name: &str) {
        let now = Timestamp::now();
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        let Some(schedule) = &job.schedule else {
            return;
        };
        // A fire time counts as missed once it is due: its time plus the job's jitter.
        let due_by = now.checked_sub(jitter(name, &job.spec)).unwrap_or(now);
        let missed = job
            .last_handled()
            .and_then(|last| schedule.latest_between(last, due_by))
            .map(|f| f.at);
        let deadline = job.spec.starting_deadline_ms.map(Duration::from_millis);
        let decision =
            policy::catch_up(job.spec.catch_up, missed, job.last_handled(), now, deadline);
        match decision {
            CatchUpDecision::Run(at) => {
                info!(job = %name, scheduled = %at, "catching up a fire time missed while no daemon ran");
                self.handle_fire(name, at);
            }
            CatchUpDecision::Missed(at) => {
                let start = self.run_start(name, Some(at), 1);
                if let Some(job) = self.jobs.jobs.get_mut(name) {
                    job.not_run(
                        &start,
                        RunOutcome::Missed,
                        "missed while no daemon ran".to_string(),
                    );
                    job.stored.last_handled_ms = Some(ms(at));
                    job.save();
                }
            }
            CatchUpDecision::Nothing => {}
        }
        self.arm_job(name, now);
    }

    /// Arms the timer for the first fire time after `after` (and after the last one handled).
    fn arm_job(&mut self, name: &str, after: Timestamp) {
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        job.generation += 1;
        let from = job.last_handled().map_or(after, |last| last.max(after));
        let jitter = jitter(name, &job.spec);
        let Some(schedule) = &job.schedule else {
            job.next = None;
            return;
        };
        job.next = schedule.next_after(from).map(|fire| {
            let due = fire.at.checked_add(jitter).unwrap_or(fire.at);
            (fire, due)
        });
        let Some((_, due)) = job.next else {
            warn!(job = %name, "the schedule has no next fire time");
            return;
        };
        let timer = Timer::Job(JobTimer::Wake {
            key: job.key,
            generation: job.generation,
        });
        self.arm(sleep_until(due), timer);
    }

    fn job_by_key(&self, key: u64) -> Option<String> {
        self.jobs
            .keys
            .get(&key)
            .filter(|name| self.jobs.jobs.get(*name).is_some_and(|j| j.key == key))
            .cloned()
    }

    pub(super) fn job_timer(&mut self, timer: JobTimer) {
        match timer {
            JobTimer::Wake { key, generation } => {
                let Some(name) = self.job_by_key(key) else {
                    return;
                };
                let Some(job) = self.jobs.jobs.get(&name) else {
                    return;
                };
                if job.generation != generation || !job.stored.enabled || job.stored.paused {
                    return;
                }
                let Some((fire, due)) = job.next.clone() else {
                    return;
                };
                let now = Timestamp::now();
                if now < due {
                    // Early on the wall clock (a long sleep cut short, or the clock stepped back).
                    self.arm(sleep_until(due), Timer::Job(timer));
                    return;
                }
                // The latest fire time passed, if the clock jumped over several: one run, never a burst.
                let jitter = jitter(&name, &job.spec);
                let Some(schedule) = &job.schedule else {
                    return;
                };
                let nominal = schedule
                    .latest_between(
                        fire.at
                            .checked_sub(SignedDuration::from_nanos(1))
                            .unwrap_or(fire.at),
                        now.checked_sub(jitter).unwrap_or(now),
                    )
                    .map_or(fire.at, |f| f.at);
                self.handle_fire(&name, nominal);
                // From the fire time just handled, not from now: with a jitter longer than the period, the
                // next fire time may be due already, and runs at once rather than being dropped.
                self.arm_job(&name, nominal);
            }
            JobTimer::Retry { key, token } => {
                let Some(name) = self.job_by_key(key) else {
                    return;
                };
                let Some(job) = self.jobs.jobs.get_mut(&name) else {
                    return;
                };
                let Some(start) = job.retries.remove(&token) else {
                    return;
                };
                job.stored
                    .pending
                    .retain(|p| !(p.run_id == start.run_id && p.attempt == start.attempt));
                self.start_run(&name, start);
            }
            JobTimer::Timeout { slot, serial } => {
                let Some(name) = self.workers.get(&slot).map(|w| w.app.clone()) else {
                    return;
                };
                let Some(job) = self.jobs.jobs.get_mut(&name) else {
                    return;
                };
                let Some(active) = job.runs.get_mut(&slot).filter(|a| a.serial == serial) else {
                    return;
                };
                let timeout = Duration::from_millis(job.spec.timeout_ms.unwrap_or(0));
                warn!(job = %name, run = %active.start.run_id, ?timeout, "the run timed out: stopping it");
                active.stopped_for = Some((
                    RunOutcome::TimedOut,
                    format!(
                        "ran longer than its timeout ({})",
                        crate::human::duration(timeout.as_millis() as u64)
                    ),
                ));
                self.stop_run_slot(slot);
            }
            JobTimer::Reload { key, generation } => self.cron_reload_timer(key, generation),
        }
    }

    /// A fire time is due (or is being caught up): run it, skip it or record it missed, once.
    fn handle_fire(&mut self, name: &str, nominal: Timestamp) {
        let now = Timestamp::now();
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        if job.last_handled().is_some_and(|last| last >= nominal) {
            return; // handled already: never twice
        }
        let deadline = job.spec.starting_deadline_ms.map(Duration::from_millis);
        let in_time = policy::in_time(nominal, now, deadline);
        let running = job.runs.len() + job.starting.len();
        let overlap = job.spec.overlap;
        let start = self.run_start(name, Some(nominal), 1);
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        job.stored.last_handled_ms = Some(ms(nominal));
        if !in_time {
            let late =
                crate::human::duration(now.duration_since(nominal).as_millis().max(0) as u64);
            job.not_run(
                &start,
                RunOutcome::Missed,
                format!("{late} late, past its starting deadline"),
            );
            job.save();
            return;
        }
        let fleet = job.spec.fleet.is_some();
        if fleet && !matches!(policy::on_fire(overlap, running), OnFire::Skip) {
            // Once across the fleet: claimed first, in a task; the run starts when the claim comes back.
            job.save();
            self.claim_fleet_run(name, start, None);
            return;
        }
        match policy::on_fire(overlap, running) {
            OnFire::Skip => {
                info!(job = %name, run = %start.run_id, "skipped: a run is still in progress");
                job.not_run(
                    &start,
                    RunOutcome::Skipped,
                    "a run was still in progress (overlap = \"skip\")".to_string(),
                );
                job.save();
            }
            OnFire::Start => self.start_run(name, start),
            OnFire::Replace => {
                self.replace_runs(name, &start.run_id);
                self.start_run(name, start);
            }
        }
    }

    /// The identity of a run of `name`, and where its output goes.
    fn run_start(&self, name: &str, scheduled: Option<Timestamp>, attempt: u32) -> RunStart {
        let run_id = match scheduled {
            Some(at) => policy::run_id(name, at),
            None => policy::manual_run_id(name, Timestamp::now()),
        };
        let dir = crate::config::job::run_log_dir(&self.home.logs_dir(), name);
        let log = dir.join(format!("{run_id}.{attempt}.log"));
        RunStart {
            run_id,
            scheduled,
            attempt,
            log,
            fence: None,
        }
    }

    /// Stops every run of `name` in progress: a new run replaces them.
    fn replace_runs(&mut self, name: &str, by: &str) {
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        let slots: Vec<u32> = job.runs.keys().copied().collect();
        for slot in &slots {
            if let Some(active) = job.runs.get_mut(slot) {
                active.stopped_for = Some((RunOutcome::Killed, format!("replaced by {by}")));
            }
        }
        for slot in slots {
            self.stop_run_slot(slot);
        }
    }

    /// Stops the run in a slot (kill signal, kill timeout, SIGKILL to its group); a slot added for it goes.
    fn stop_run_slot(&mut self, slot: u32) {
        let extra = self.workers.get(&slot).is_some_and(|w| w.instance > 0);
        self.signal_stop(slot, if extra { OnExit::Remove } else { OnExit::Stop });
    }

    /// Starts a run: recorded first (so it never runs twice), then spawned in a free slot of the app.
    fn start_run(&mut self, name: &str, start: RunStart) {
        let Some(app) = self.apps.get(name) else {
            return;
        };
        let busy: Vec<u32> = self
            .jobs
            .jobs
            .get(name)
            .map(|j| j.runs.keys().chain(j.starting.keys()).copied().collect())
            .unwrap_or_default();
        let free = app.workers.iter().copied().find(|id| {
            !busy.contains(id)
                && self
                    .workers
                    .get(id)
                    .is_some_and(|w| w.state.is_down() || matches!(w.state, State::Waiting { .. }))
        });
        let slot = match free {
            Some(slot) => slot,
            None => {
                let instance = (0..)
                    .find(|i| {
                        !app.workers
                            .iter()
                            .any(|id| self.workers.get(id).is_some_and(|w| w.instance == *i))
                    })
                    .unwrap_or(0);
                self.add_slot(name, instance)
            }
        };
        let ready = self.jobs.jobs.get(name).is_some_and(|j| j.log_dir_ready);
        if !ready && let Some(dir) = start.log.parent() {
            match std::fs::create_dir_all(dir) {
                Ok(()) => {
                    if let Some(job) = self.jobs.jobs.get_mut(name) {
                        job.log_dir_ready = true;
                    }
                }
                Err(e) => {
                    warn!(job = %name, error = %e, "cannot create the directory of the run logs")
                }
            }
        }
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        let mut run = record(&start, RunOutcome::Running);
        run.started_at_ms = Some(ms(Timestamp::now()));
        job.stored.runs.push(run);
        job.save();
        info!(job = %name, run = %start.run_id, attempt = start.attempt, "run starting");
        job.starting.insert(slot, start);
        self.jobs.to_spawn.push((name.to_string(), slot));
    }

    /// Spawns a run recorded in this loop turn, now that its record is written.
    fn spawn_run(&mut self, name: &str, slot: u32) {
        let Some(start) = self
            .jobs
            .jobs
            .get(name)
            .and_then(|j| j.starting.get(&slot))
            .cloned()
        else {
            return; // stopped or deleted meanwhile
        };
        self.start_worker(slot);
        // Spawned: `job_spawned` took it. Otherwise it could not start.
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        if job.starting.remove(&slot).is_some() {
            let why = self
                .workers
                .get(&slot)
                .and_then(|w| w.last_exit.clone())
                .unwrap_or_else(|| "it could not be started".into());
            if let Some(run) = job.record_mut(&start) {
                run.outcome = RunOutcome::Failed;
                run.ended_at_ms = Some(ms(Timestamp::now()));
                run.exit = Some(why);
            }
            job.stored.failed += 1;
            job.save();
            if let Some(worker) = self.workers.get_mut(&slot) {
                worker.epoch += 1;
                worker.state = State::Stopped;
            }
        }
    }

    /// `start_worker` of a job's slot: a run due in it is spawned (`true`); otherwise starting the app
    /// enables its schedule and the slot stays down (`false`). `None`: not a job.
    pub(super) fn job_start(&mut self, id: u32) -> Option<bool> {
        let name = self.workers.get(&id)?.app.clone();
        if !self.jobs.jobs.contains_key(&name) {
            // Created just now: registered before its first start.
            let spec = self.apps.get(&name)?.spec.job.clone()?;
            self.register_job(&name, *spec);
        }
        let job = self.jobs.jobs.get_mut(&name)?;
        if job.starting.contains_key(&id) {
            return Some(true);
        }
        if job.runs.contains_key(&id) {
            // A run began in this slot meanwhile (its registration caught up a missed fire time).
            return Some(false);
        }
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.epoch += 1;
            worker.on_exit = OnExit::Crash;
            worker.state = State::Stopped;
        }
        if !job.stored.enabled {
            job.stored.enabled = true;
            job.save();
            info!(job = %name, schedule = %job.spec.schedule, "job scheduled");
            if !job.stored.paused {
                self.arm_job(&name, Timestamp::now());
            }
        }
        Some(false)
    }

    /// The environment and output file of the run about to be spawned in slot `id`, if it is one.
    pub(super) fn job_run_env(&self, id: u32) -> Option<(Vec<(String, String)>, PathBuf)> {
        let name = &self.workers.get(&id)?.app;
        let start = self.jobs.jobs.get(name)?.starting.get(&id)?;
        let env = vec![
            ("HERDSMAN_JOB".to_string(), name.clone()),
            ("HERDSMAN_RUN_ID".to_string(), start.run_id.clone()),
            (
                "HERDSMAN_SCHEDULED_AT".to_string(),
                start.scheduled.map(|t| t.to_string()).unwrap_or_default(),
            ),
            ("HERDSMAN_ATTEMPT".to_string(), start.attempt.to_string()),
        ];
        let mut env = env;
        if let Some(fence) = start.fence {
            env.push(("HERDSMAN_FENCE".to_string(), fence.to_string()));
        }
        if let Some(fleet) = self.jobs.jobs.get(name).and_then(|j| j.spec.fleet.as_ref()) {
            env.push(("HERDSMAN_FLEET".to_string(), fleet.name.clone()));
            env.push(("HERDSMAN_FLEET_HOST".to_string(), fleet.host.clone()));
        }
        Some((env, start.log.clone()))
    }

    /// A run's process was spawned in slot `id`.
    pub(super) fn job_spawned(&mut self, id: u32, process: &Process) {
        let Some(name) = self.workers.get(&id).map(|w| w.app.clone()) else {
            return;
        };
        let Some(job) = self.jobs.jobs.get_mut(&name) else {
            return;
        };
        let Some(start) = job.starting.remove(&id) else {
            return;
        };
        if let Some(run) = job.record_mut(&start) {
            run.pid = Some(process.pid as u32);
        }
        job.save();
        if let Some(timeout) = job.spec.timeout_ms {
            let timer = Timer::Job(JobTimer::Timeout {
                slot: id,
                serial: process.serial,
            });
            self.arm(Duration::from_millis(timeout), timer);
        }
        if let Some(job) = self.jobs.jobs.get_mut(&name) {
            job.runs.insert(
                id,
                Active {
                    start,
                    serial: process.serial,
                    stopped_for: None,
                },
            );
        }
    }

    /// The process of a run exited: its outcome is recorded, a failed one is retried, and the slot is
    /// left down. Returns whether the exit was fully handled here (the slot was running); a run being
    /// stopped finishes its stop as any worker does.
    pub(super) fn job_run_exited(&mut self, id: u32, process: Process, status: i32) -> bool {
        let Some(worker) = self.workers.get(&id) else {
            return false;
        };
        let name = worker.app.clone();
        let stopping = matches!(worker.state, State::Stopping { .. });
        if !self.jobs.jobs.contains_key(&name)
            && let Some(spec) = self.apps.get(&name).and_then(|a| a.spec.job.clone())
        {
            // An adopted run that ended before its job was registered again.
            self.register_job(&name, *spec);
        }
        let Some(job) = self.jobs.jobs.get_mut(&name) else {
            return false;
        };
        let Some(active) = job.runs.remove(&id) else {
            // A process of a job's slot that is no run of it: it is never restarted.
            if stopping {
                return false;
            }
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.epoch += 1;
                worker.last_exit = Some(describe_exit(status));
                worker.state = State::Stopped;
            }
            return true;
        };
        let stop_codes = self
            .apps
            .get(&name)
            .map(|a| a.spec.stop_exit_codes.clone())
            .unwrap_or_default();
        let exited_ok = libc::WIFEXITED(status)
            && (libc::WEXITSTATUS(status) == 0 || stop_codes.contains(&libc::WEXITSTATUS(status)));
        let (outcome, detail) = match active.stopped_for.clone() {
            Some((outcome, detail)) => (outcome, Some(detail)),
            None if exited_ok => (RunOutcome::Ok, None),
            None if stopping => (
                RunOutcome::Killed,
                Some("stopped by a request (stop, delete, or the daemon's shutdown)".to_string()),
            ),
            // An adopted run whose exit status the kernel did not keep: neither retried nor reported.
            None if status == crate::daemon::worker::UNKNOWN_EXIT => (
                RunOutcome::Unknown,
                Some(
                    "it ended while adopted by a new keeper; its exit status is unknown"
                        .to_string(),
                ),
            ),
            None => (RunOutcome::Failed, None),
        };
        let how = describe_exit(status);
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        self.finish_run(&name, &active.start, outcome, detail, how.clone(), code);
        if stopping {
            return false;
        }
        // What the run left in its group goes with it; the slot waits for the next run.
        crate::daemon::groups::signal_group(
            process.pid,
            process.adopted,
            Some(nix::sys::signal::Signal::SIGKILL),
        );
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.epoch += 1;
            worker.last_exit = Some(how);
            worker.last_exit_at = Some(std::time::SystemTime::now());
            worker.state = State::Stopped;
            if worker.instance > 0 {
                self.remove_worker(id);
            }
        }
        true
    }

    /// Records how a run ended, counts it, and retries it (a failed or timed-out run, within `retries`) or
    /// runs `on_failure` once it failed for good.
    fn finish_run(
        &mut self,
        name: &str,
        start: &RunStart,
        outcome: RunOutcome,
        detail: Option<String>,
        exit: String,
        exit_code: Option<i32>,
    ) {
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        let now = ms(Timestamp::now());
        if let Some(run) = job.record_mut(start) {
            run.outcome = outcome;
            run.ended_at_ms = Some(now);
            run.exit = Some(exit.clone());
            run.exit_code = exit_code;
            run.detail = detail;
        }
        let retry = matches!(outcome, RunOutcome::Failed | RunOutcome::TimedOut)
            && start.attempt <= job.spec.retries
            && job.stored.enabled;
        match outcome {
            RunOutcome::Ok => job.stored.ok += 1,
            o if o.is_failure() => job.stored.failed += 1,
            _ => {}
        }
        info!(job = %name, run = %start.run_id, attempt = start.attempt, outcome = outcome.as_str(), exit = %exit, "run ended");
        let fleet = job.spec.fleet.is_some();
        if fleet {
            self.fleet_run_ended(name, start, retry);
        }
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        if retry {
            let attempt = start.attempt + 1;
            let delay = policy::retry_delay(
                attempt,
                Duration::from_millis(job.spec.retry_backoff_ms),
                Duration::from_millis(crate::config::job::defaults::RETRY_BACKOFF_MAX_MS),
            );
            let due = Timestamp::now()
                .checked_add(SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO))
                .unwrap_or_else(|_| Timestamp::now());
            let log = start
                .log
                .with_file_name(format!("{}.{attempt}.log", start.run_id));
            let next = RunStart {
                run_id: start.run_id.clone(),
                scheduled: start.scheduled,
                attempt,
                log,
                fence: start.fence,
            };
            info!(job = %name, run = %next.run_id, attempt, ?delay, "retrying the run");
            // Kept in the job's file too, so that an update or a new keeper still runs it.
            job.stored.pending.push(jobstore::PendingRetry {
                run_id: next.run_id.clone(),
                scheduled_at_ms: next.scheduled.map(ms),
                attempt,
                due_ms: ms(due),
                log: next.log.display().to_string(),
            });
            job.save();
            self.arm_retry(name, next, delay);
        } else {
            job.save();
            let details = crate::protocol::EventDetails {
                exit: Some(exit.clone()),
                code: exit_code,
                run_id: Some(start.run_id.clone()),
                outcome: Some(outcome.as_str().to_string()),
                ..Default::default()
            };
            if outcome.is_failure() {
                self.on_failure(name, start, outcome, &exit);
                self.emit(
                    crate::protocol::EventKind::JobFailed,
                    name,
                    None,
                    None,
                    details,
                );
            } else if outcome == RunOutcome::Ok {
                self.emit(
                    crate::protocol::EventKind::JobSucceeded,
                    name,
                    None,
                    None,
                    details,
                );
            }
        }
    }

    /// Arms the next attempt of a run after `delay`.
    fn arm_retry(&mut self, name: &str, next: RunStart, delay: Duration) {
        self.jobs.next_key += 1;
        let token = self.jobs.next_key;
        if let Some(job) = self.jobs.jobs.get_mut(name) {
            job.retries.insert(token, next);
            let key = job.key;
            self.arm(delay, Timer::Job(JobTimer::Retry { key, token }));
        }
    }

    /// The process of a run in slot `id` could not execute its program (`execve` failed: a missing or
    /// busy binary during a deploy): the run failed, and is retried like any failed run; never a crash.
    /// Returns whether the slot held a run.
    pub(super) fn job_run_not_started(&mut self, id: u32, process: Process, why: &str) -> bool {
        let Some(name) = self.workers.get(&id).map(|w| w.app.clone()) else {
            return false;
        };
        let Some(active) = self
            .jobs
            .jobs
            .get_mut(&name)
            .and_then(|j| j.runs.remove(&id))
        else {
            return false;
        };
        if process.early_exit.is_none() {
            // Not reaped yet: the pid and its group are still this process's.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(process.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        warn!(job = %name, run = %active.start.run_id, error = %why, "the run's program did not start");
        self.finish_run(
            &name,
            &active.start,
            RunOutcome::Failed,
            Some("its program did not start".to_string()),
            why.to_string(),
            None,
        );
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.epoch += 1;
            worker.last_exit = Some(why.to_string());
            worker.last_exit_at = Some(std::time::SystemTime::now());
            worker.state = State::Stopped;
            if worker.instance > 0 {
                self.remove_worker(id);
            }
        }
        true
    }

    /// Runs the job's `on_failure` command for a run that failed for good, with the run in its
    /// environment and its output appended to the run's log. It is not waited for (the reaper collects it).
    fn on_failure(&self, name: &str, start: &RunStart, outcome: RunOutcome, exit: &str) {
        let Some(app) = self.apps.get(name) else {
            return;
        };
        let Some(command) = app.spec.job.as_ref().and_then(|j| j.on_failure.clone()) else {
            return;
        };
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&start.log);
        let mut env: Vec<(String, String)> = app
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend([
            ("HERDSMAN_JOB".to_string(), name.to_string()),
            ("HERDSMAN_RUN_ID".to_string(), start.run_id.clone()),
            ("HERDSMAN_ATTEMPT".to_string(), start.attempt.to_string()),
            ("HERDSMAN_OUTCOME".to_string(), outcome.as_str().to_string()),
            ("HERDSMAN_EXIT".to_string(), exit.to_string()),
            ("HERDSMAN_LOG".to_string(), start.log.display().to_string()),
        ]);
        let hook = crate::daemon::hook::Hook {
            command: &command,
            cwd: &app.spec.cwd,
            env,
            credentials: app.credentials.as_ref(),
            stdin: None,
            output: output.ok(),
        };
        match crate::daemon::hook::spawn(hook) {
            Ok(pid) => info!(job = %name, pid, "on_failure started"),
            Err(e) => warn!(job = %name, error = %e, "cannot run on_failure"),
        }
    }

    /// `stop` or `delete` of apps: their schedules stop (a run in progress is stopped by the request).
    pub(super) fn disable_jobs(&mut self, target: &Selection) {
        let Ok(ids) = self.select(target) else {
            return;
        };
        let names: std::collections::BTreeSet<String> = ids
            .iter()
            .filter_map(|id| self.workers.get(id).map(|w| w.app.clone()))
            .collect();
        for name in names {
            self.disable_job(&name);
        }
    }

    pub(super) fn disable_job(&mut self, name: &str) {
        if let Some(job) = self.jobs.jobs.get_mut(name)
            && job.stored.enabled
        {
            job.stored.enabled = false;
            job.generation += 1;
            job.retries.clear();
            job.stored.pending.clear();
            job.save();
            info!(job = %name, "job stopped: its schedule is off until it is started again");
        }
    }

    /// Writes the jobs whose state changed in this loop turn, then starts the runs recorded in it.
    pub(super) fn flush_jobs(&mut self) {
        self.save_jobs();
        if self.jobs.to_spawn.is_empty() {
            return;
        }
        for (name, slot) in std::mem::take(&mut self.jobs.to_spawn) {
            self.spawn_run(&name, slot);
        }
        self.save_jobs();
    }

    /// Writes the jobs whose state changed (one append to the journal for all of them).
    pub(in crate::daemon::supervisor) fn save_jobs(&mut self) {
        let jobs = &mut self.jobs;
        if jobs.store.is_none() && !jobs.jobs.values().any(|j| j.unsaved) {
            return;
        }
        let store = jobs
            .store
            .get_or_insert_with(|| Store::open(&self.home.jobs_dir()));
        for (name, job) in jobs.jobs.iter_mut().filter(|(_, j)| j.unsaved) {
            job.unsaved = false;
            let changed: Vec<RunRecord> = job
                .stored
                .runs
                .iter()
                .filter(|r| !job.written.contains(&digest(r)))
                .cloned()
                .collect();
            let runs = std::mem::replace(&mut job.stored.runs, changed);
            store.put(name, job.spec.history, &job.stored);
            job.stored.runs = runs;
            job.stored.keep_in_memory();
            job.written = job.stored.runs.iter().map(digest).collect();
        }
        store.flush();
    }

    /// Whether `app` is a scheduled job (its slots run runs, never reloads).
    pub(super) fn is_job(&self, app: &str) -> bool {
        self.jobs.jobs.contains_key(app)
    }

    /// The daemon is stopping: a run in progress is recorded as killed for that reason.
    pub(super) fn jobs_shutting_down(&mut self) {
        for job in self.jobs.jobs.values_mut() {
            job.generation += 1;
            job.retries.clear();
            for active in job.runs.values_mut() {
                active.stopped_for = Some((RunOutcome::Killed, "the daemon stopped".to_string()));
            }
        }
    }

    // ----- cron_restart ---------------------------------------------------------------------------------

    fn register_cron_reload(&mut self, name: &str, spec: crate::config::job::CronRestart) {
        let schedule = match self.jobs.schedule(&spec.schedule, spec.timezone.as_deref()) {
            Ok(schedule) => schedule,
            Err(e) => {
                error!(app = %name, error = %e, "cron_restart cannot be used here");
                return;
            }
        };
        self.jobs.next_key += 1;
        let key = self.jobs.next_key;
        self.jobs.reloads.insert(
            name.to_string(),
            CronReload {
                key,
                spec,
                schedule,
                generation: 0,
                next: None,
            },
        );
        self.arm_cron_reload(name);
    }

    fn arm_cron_reload(&mut self, name: &str) {
        let Some(reload) = self.jobs.reloads.get_mut(name) else {
            return;
        };
        reload.generation += 1;
        reload.next = reload.schedule.next_after(Timestamp::now());
        let Some(at) = reload.next.as_ref().map(|f| f.at) else {
            return;
        };
        let timer = Timer::Job(JobTimer::Reload {
            key: reload.key,
            generation: reload.generation,
        });
        self.arm(sleep_until(at), timer);
    }

    fn cron_reload_timer(&mut self, key: u64, generation: u64) {
        let Some((name, reload)) = self.jobs.reloads.iter().find(|(_, r)| r.key == key) else {
            return;
        };
        if reload.generation != generation {
            return;
        }
        let name = name.clone();
        let Some(fire) = reload.next.clone() else {
            return;
        };
        if Timestamp::now() < fire.at {
            self.arm(
                sleep_until(fire.at),
                Timer::Job(JobTimer::Reload { key, generation }),
            );
            return;
        }
        let running = self.apps.get(&name).is_some_and(|app| {
            app.workers
                .iter()
                .any(|id| self.workers.get(id).is_some_and(|w| !w.state.is_down()))
        });
        if running && !self.shutting_down {
            info!(app = %name, "cron_restart: reloading");
            // Nobody waits for this answer.
            let (reply, _) = tokio::sync::mpsc::unbounded_channel();
            if let Err(response) = self.reload(&Selection::Name(name.clone()), None, reply) {
                warn!(app = %name, ?response, "cron_restart: the reload did not start");
            }
        }
        self.arm_cron_reload(&name);
    }
}
