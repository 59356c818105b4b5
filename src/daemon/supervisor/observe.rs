//! What the supervisor shows: the process table (`list`), live snapshots for subscribers (`monit`),
//! `describe`, and the memory limit, which needs the same samples.
//!
//! Sampling happens only when someone needs it: once per `list` or `describe`, and on a timer while there is a
//! subscriber or an app with `max_memory_restart`. The timer runs at the shortest interval a subscriber asked
//! for (never under [`MIN_INTERVAL`]), or [`MEMORY_INTERVAL`] for memory limits alone; with neither it is not
//! armed at all, so an idle daemon does no work.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Supervisor, Timer};
use crate::daemon::metrics::Sample;
use crate::daemon::worker::State;
use crate::protocol::{
    AppDetails, ErrorKind, GroupMember, Mode, ProcessInfo, Response, SECRET_MASK, Selection,
};

/// The shortest sampling interval a subscriber may ask for.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// How often workers of apps with a memory limit are sampled when nobody watches.
pub const MEMORY_INTERVAL: Duration = Duration::from_secs(1);
/// Samples in a row above the limit before a worker is replaced: a short spike is not enough.
pub const MEMORY_STRIKES: u32 = 3;
/// Snapshots a subscriber may have queued before it counts as not keeping up and is dropped.
pub const SUBSCRIBER_QUEUE: usize = 4;

/// A live view's connection.
pub struct Subscriber {
    pub events: mpsc::Sender<Response>,
    pub interval: Duration,
}

/// Sampling state.
#[derive(Default)]
pub struct Observer {
    pub subscribers: Vec<Subscriber>,
    /// The latest sample of each process, by pid (shared with the sampler, which may reuse it).
    pub samples: std::sync::Arc<HashMap<i32, Sample>>,
    /// Samples in a row above the memory limit, by worker id.
    pub strikes: HashMap<u32, u32>,
    /// A sampling timer is pending.
    pub armed: bool,
}

/// Values of variables whose names contain one of these are masked in `describe`.
const SECRET_WORDS: &[&str] = &[
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
    "AUTH",
    "COOKIE",
    "SALT",
    "DSN",
    "SIGNATURE",
];

/// Whether a variable's value should not be shown.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

/// The value to show: masked for secret-looking names, and a URL's password masked anywhere.
pub fn shown_value(name: &str, value: &str) -> String {
    if looks_secret(name) {
        return SECRET_MASK.to_string();
    }
    // scheme://user:password@host
    if let Some(scheme_end) = value.find("://") {
        let rest = &value[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            let end = scheme_end + 3 + at;
            return format!("{}{SECRET_MASK}{}", &value[..start], &value[end..]);
        }
    }
    value.to_string()
}

/// A path as text (`display` walks the bytes in chunks even when they are valid UTF-8, as they nearly always are).
fn path_text(path: &std::path::Path) -> String {
    path.to_str()
        .map_or_else(|| path.display().to_string(), str::to_string)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Supervisor {
    /// Adds a live view and sends it a first snapshot at once.
    pub(super) fn subscribe(&mut self, interval_ms: u64, events: mpsc::Sender<Response>) {
        let interval = Duration::from_millis(interval_ms).max(MIN_INTERVAL);
        self.sample_now(false);
        let snapshot = self.snapshot();
        if events.try_send(snapshot).is_ok() {
            self.observer
                .subscribers
                .push(Subscriber { events, interval });
        }
        self.arm_sampling();
    }

    /// The next sampling interval, if anything needs sampling.
    fn sampling_interval(&self) -> Option<Duration> {
        let watched = self.observer.subscribers.iter().map(|s| s.interval).min();
        let limited = self
            .apps
            .values()
            .any(|a| a.spec.max_memory_restart.is_some())
            .then_some(MEMORY_INTERVAL);
        watched.into_iter().chain(limited).min()
    }

    /// Arms the sampling timer if something needs it and it is not armed.
    pub(super) fn arm_sampling(&mut self) {
        if self.observer.armed {
            return;
        }
        if let Some(interval) = self.sampling_interval() {
            self.observer.armed = true;
            self.arm(interval, Timer::Sample);
        }
    }

    /// The sampling timer: sample, check memory limits, send snapshots, and arm again if still needed.
    pub(super) fn sample_tick(&mut self) {
        self.observer.armed = false;
        if self.sampling_interval().is_none() || self.shutting_down {
            self.observer.subscribers.clear();
            return;
        }
        self.sample_now(false);
        self.check_memory();
        if !self.observer.subscribers.is_empty() {
            let snapshot = self.snapshot();
            self.observer
                .subscribers
                .retain(|s| match s.events.try_send(snapshot.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        warn!("a live view did not keep up: dropped");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        debug!("a live view closed");
                        false
                    }
                });
        }
        self.arm_sampling();
    }

    /// Samples every running process (and every successor a reload is bringing up); `describe` also reads
    /// their command lines.
    pub(super) fn sample_now(&mut self, with_commands: bool) {
        let pids: Vec<i32> = self.workers.values().flat_map(|w| w.pids()).collect();
        self.observer.samples = self.metrics.sample(&pids, with_commands);
        self.observer
            .strikes
            .retain(|id, _| self.workers.contains_key(id));
    }

    /// Replaces, with a reload of that one worker, each worker that stayed above its app's memory limit.
    fn check_memory(&mut self) {
        let mut over: Vec<(u32, i32, u64, u64)> = Vec::new();
        for (&id, worker) in &self.workers {
            let Some(limit) = self
                .apps
                .get(&worker.app)
                .filter(|a| a.spec.job.is_none())
                .and_then(|a| a.spec.max_memory_restart)
            else {
                // (A job's run is not replaced for its memory: a run is not reloaded.)
                continue;
            };
            let Some(process) = worker.state.process() else {
                continue;
            };
            let busy =
                worker.successor.is_some() || !matches!(worker.state, State::Running(p) if p.ready);
            let memory = self
                .observer
                .samples
                .get(&process.pid)
                .map_or(0, |s| s.memory);
            let strikes = self.observer.strikes.entry(id).or_insert(0);
            if memory > limit && !busy {
                *strikes += 1;
                if *strikes >= MEMORY_STRIKES {
                    *strikes = 0;
                    over.push((id, process.pid, memory, limit));
                }
            } else {
                *strikes = 0;
            }
        }
        for (id, pid, memory, limit) in over {
            let details = crate::protocol::EventDetails {
                memory: Some(memory),
                limit: Some(limit),
                ..Default::default()
            };
            self.emit_worker(
                crate::protocol::EventKind::MemoryLimit,
                id,
                Some(pid),
                details,
            );
            let Some(worker) = self.workers.get(&id) else {
                continue;
            };
            warn!(
                app = %worker.app,
                instance = worker.instance,
                pid,
                memory,
                limit,
                "memory above max_memory_restart: replacing the worker (its successor gets ready first)"
            );
            // Nobody waits for this reload's answer.
            let (reply, _) = mpsc::unbounded_channel();
            match self.reload(&Selection::Id(id), None, reply) {
                Ok(()) => {
                    if let Some(worker) = self.workers.get_mut(&id) {
                        worker.memory_restarts += 1;
                        worker.restarts += 1;
                    }
                }
                Err(response) => warn!(?response, "cannot replace the worker"),
            }
        }
    }

    /// The process table, freshly sampled.
    pub(super) fn processes(&mut self, brief: bool) -> Response {
        self.sample_now(false);
        Response::Processes {
            processes: self.records(if brief { Detail::Brief } else { Detail::Full }),
        }
    }

    fn snapshot(&self) -> Response {
        Response::Snapshot {
            at_ms: unix_ms(SystemTime::now()),
            processes: self.records(Detail::Full),
        }
    }

    /// Every worker as a record, from the latest samples, with what `detail` asks for.
    fn records(&self, detail: Detail) -> Vec<ProcessInfo> {
        let now = Instant::now();
        let full = detail != Detail::Brief;
        // What is the same for every worker of an app, worked out once per app: an app's workers are
        // usually next to each other in slot order, so the last app's is kept.
        let mut last: Option<(&str, Option<String>, bool)> = None;
        self.workers
            .iter()
            .filter_map(|(&id, w)| {
                let app = self.apps.get(&w.app)?;
                let pid = w.state.process().map(|p| p.pid);
                let sample = pid.and_then(|p| self.observer.samples.get(&p));
                if last.as_ref().is_none_or(|(name, ..)| *name != w.app) {
                    let listen: Vec<String> =
                        app.spec.listen.iter().map(ToString::to_string).collect();
                    let listen = (!listen.is_empty()).then(|| listen.join(", "));
                    last = Some((&w.app, listen, self.nobody_accepting(&w.app)));
                }
                let (_, listen, nobody_accepting) = last.as_ref()?;
                let (listen, nobody_accepting) = (listen.clone(), *nobody_accepting);
                Some(ProcessInfo {
                    id,
                    name: w.app.clone(),
                    instance: w.instance,
                    mode: if listen.is_none() {
                        Mode::Fork
                    } else {
                        Mode::Cluster
                    },
                    pid: pid.map(|p| p as u32),
                    status: w.state.status(),
                    restarts: w.restarts,
                    uptime_ms: w
                        .state
                        .started()
                        .map(|s| now.duration_since(s).as_millis() as u64),
                    cpu: sample.map_or(0.0, |s| s.cpu),
                    memory: sample.map_or(0, |s| s.memory),
                    balance: listen.as_ref().map(|_| app.spec.balance),
                    listen,
                    restart_in_ms: match w.state {
                        State::Waiting { until } => {
                            Some(until.saturating_duration_since(now).as_millis() as u64)
                        }
                        _ => None,
                    },
                    last_exit: w.last_exit.clone(),
                    out_file: full.then(|| path_text(&app.out_path)),
                    error_file: full.then(|| path_text(&app.err_path)),
                    last_exit_at_ms: w.last_exit_at.map(unix_ms),
                    memory_restarts: w.memory_restarts,
                    watchdog_misses: w.watchdog.misses,
                    hung: w.watchdog.hung,
                    watching: app.spec.watch.is_some(),
                    watch_error: app.watch.as_ref().and_then(|w| w.failure.clone()),
                    log_lines: (app.spec.log_lines != Default::default())
                        .then(|| app.spec.log_lines.clone()),
                    group: match (detail, sample) {
                        (Detail::Group, Some(sample)) => sample
                            .members
                            .iter()
                            .map(|m| GroupMember {
                                pid: m.pid as u32,
                                command: m.command.clone(),
                                cpu: m.cpu,
                                memory: m.memory,
                            })
                            .collect(),
                        _ => Vec::new(),
                    },
                    adopted: w.state.process().is_some_and(|p| p.adopted),
                    job: self.job_summary(&w.app),
                    runtime: pid.filter(|_| full).and_then(|p| self.runtime_of(p, now)),
                    // The table shows the queues of an app that nobody accepts from.
                    accept_queues: if full || nobody_accepting {
                        self.queues_of(&w.app, id, now)
                    } else {
                        Vec::new()
                    },
                    nobody_accepting,
                    reloads: (full && app.spec.job.is_none()).then_some(app.reloads),
                })
            })
            .collect()
    }

    /// Everything about the selected apps (an id selects its worker's app).
    pub(super) fn describe(&mut self, target: &Selection) -> Response {
        let ids = match self.select(target) {
            Ok(ids) => ids,
            Err(response) => return response,
        };
        let mut names: Vec<String> = ids
            .iter()
            .filter_map(|id| self.workers.get(id).map(|w| w.app.clone()))
            .collect();
        if let Selection::Name(name) = target
            && names.is_empty()
        {
            names.push(name.clone());
        }
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return Response::error(ErrorKind::NotFound, "no app runs (see `herdsman list`)");
        }
        self.sample_now(true);
        self.logs.collect_reports();
        let records = self.records(Detail::Group);
        let apps = names
            .iter()
            .filter_map(|name| {
                let app = self.apps.get(name)?;
                let mut spec = app.spec.clone();
                for (key, value) in std::sync::Arc::make_mut(&mut spec.env).iter_mut() {
                    *value = shown_value(key, value);
                }
                for (key, value) in spec.defined_env.iter_mut() {
                    *value = shown_value(key, value);
                }
                // The fleet store's URL with its password masked.
                if let Some(fleet) = spec.job.as_mut().and_then(|j| j.fleet.as_mut()) {
                    fleet.store = fleet.redacted();
                }
                let mut command = vec![app.command.program.display().to_string()];
                command.extend(app.command.argv.iter().skip(1).cloned());
                let hooks = self.hook_status(name);
                Some(AppDetails {
                    hooks,
                    spec,
                    command,
                    listening: match &app.slots {
                        Some(slots) => slots.addresses(),
                        None => app.listeners.iter().map(|l| l.addr().to_string()).collect(),
                    },
                    created_at_ms: unix_ms(app.created),
                    workers: records
                        .iter()
                        .filter(|r| &r.name == name)
                        .cloned()
                        .collect(),
                    last_change: app.last_change.clone(),
                    adoption: app.adoption.clone(),
                    log_drops: [&app.out_path, &app.err_path]
                        .into_iter()
                        .filter_map(|path| {
                            let (lines, failing) = self.logs.drops(path)?;
                            Some(crate::protocol::LogDrops {
                                path: path.display().to_string(),
                                lines: *lines,
                                failing: failing.clone(),
                            })
                        })
                        .collect(),
                })
            })
            .collect();
        Response::Described { apps }
    }
}

/// How much of each worker a list of records carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// What the table shows: no log paths, Node runtime or reload figures, and accept queues only for an
    /// app nobody accepts from.
    Brief,
    /// Every field but the family.
    Full,
    /// Every field, and each member of the worker's family (`describe`).
    Group,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_are_masked() {
        assert_eq!(shown_value("API_TOKEN", "abc"), SECRET_MASK);
        assert_eq!(shown_value("db_password", "abc"), SECRET_MASK);
        assert_eq!(shown_value("AWS_SECRET_ACCESS_KEY", "abc"), SECRET_MASK);
        assert_eq!(shown_value("PORT", "3000"), "3000");
        assert_eq!(shown_value("NODE_ENV", "production"), "production");
    }

    #[test]
    fn a_url_password_is_masked() {
        assert_eq!(
            shown_value("DATABASE_URL", "postgres://app:hunter2@db:5432/app"),
            format!("postgres://app:{SECRET_MASK}@db:5432/app")
        );
        assert_eq!(
            shown_value("UPSTREAM", "http://example.test/a:b@c"),
            "http://example.test/a:b@c"
        );
    }
}
