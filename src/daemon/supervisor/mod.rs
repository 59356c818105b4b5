//! The supervisor: the one task that owns the apps, their worker slots, their sockets and every process.
//!
//! Everything that happens reaches it as a [`Message`] (a CLI request with its reply channel, an exec
//! result, a readiness signal, a timer) or as SIGCHLD, which it answers by reaping. It never blocks:
//! spawning returns at once, exec results, readiness and timers come back as messages, and a request whose
//! answer must wait (a stop waits for exits, a reload for readiness) is parked and answered once its workers
//! have settled.
//!
//! - `mod.rs`: the state, the loop, requests, settling, `list`.
//! - `lifecycle.rs`: one process's life: spawn, readiness, stop, exit, crash policy.
//! - `rollout.rs`: reload (one worker at a time, each replaced only once its successor is ready) and scale.
//! - `observe.rs`: what it shows (`list`, live snapshots, `describe`) and the memory limit.
//! - `watching.rs`: watch mode: starting each app's watcher, and reloading on its reports.

mod adoption;
mod app;
mod apply;
mod balancing;
mod env;
mod events;
pub mod handover;
pub mod health;
mod hooks;
mod jobs;
mod lifecycle;
mod observe;
mod preload;
mod rollout;
mod watchdog;
mod watching;

use std::collections::BTreeMap;
use std::time::SystemTime;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::signal::unix::Signal as SignalStream;
use tokio::sync::mpsc;
use tracing::info;

use super::metrics::Metrics;
use super::persist;
use super::ready::Source;
use super::spawn::ExecError;
use super::worker::{OnExit, Process, State};
use crate::config::AppSpec;
use crate::protocol::{ApplyAction, ApplyRequest, ErrorKind, Request, Response, Selection};
pub use adoption::{AppRecord, Record, decode_apps, decode_record};
use app::App;
pub use events::EVENT_QUEUE;
pub use hooks::{PER_MINUTE as HOOKS_PER_MINUTE, TIMEOUT as HOOK_TIMEOUT};
pub use observe::SUBSCRIBER_QUEUE;
use rollout::{Lane, LaneAction, Rollout};

/// Where a request's answers go: any number of [`Response::Progress`] frames, then one final response.
pub type Replier = mpsc::UnboundedSender<Response>;

/// What the supervisor is told.
pub enum Message {
    Request {
        request: Request,
        reply: Replier,
    },
    Exec {
        serial: u64,
        result: Result<(), ExecError>,
    },
    /// A process (or a member of its group) said it is ready.
    Ready {
        pid: i32,
        /// The sender's process group, read when the message was received.
        group: Option<i32>,
        source: Source,
    },
    Timer(Timer),
    /// A live view (`monit`): send it a [`Response::Snapshot`] every `interval_ms` until it closes.
    Subscribe {
        interval_ms: u64,
        events: mpsc::Sender<Response>,
    },
    /// The event stream (`herdsman events`): the events kept since `since_ms`, then each new one, until
    /// the receiver closes or falls behind (see `events.rs`).
    SubscribeEvents {
        since_ms: Option<u64>,
        events: mpsc::Sender<Response>,
    },
    /// SIGTERM or SIGINT to the daemon: stop every app, then return.
    Shutdown,
    /// A watched app's files changed, or its watcher failed (see `daemon/watch/`).
    Watch(super::watch::Report),
    /// The answer to an `update` is on its way: re-execute in place now (see `handover.rs`).
    Reexec,
    /// An adopted process (not this keeper's child) exited, with its wait status if it can be known
    /// (see `adoption.rs`).
    Exited {
        pid: i32,
        status: Option<i32>,
    },
    /// `WATCHDOG=1` from a process or a member of its group (see `watchdog.rs`).
    Heartbeat {
        pid: i32,
        group: Option<i32>,
    },
    /// A fleet store task's answer: a claim, an unanswered store, a run to stop (see `jobs/fleet.rs`).
    Fleet(jobs::FleetReport),
    /// A Node worker's preload reported its runtime (see `health.rs`).
    Runtime {
        pid: i32,
        report: health::RuntimeReport,
    },
}

/// Timers, each naming what it is about so a stale one is recognised and ignored.
#[derive(Debug, Clone, Copy)]
pub enum Timer {
    /// The kill timeout of a stopping process ran out: SIGKILL its group.
    Kill { serial: u64 },
    /// A process stayed up for the grace period: it counts as ready (unless the app waits for a signal).
    Grace { serial: u64 },
    /// A process of an app that waits for readiness did not get ready in time.
    ListenTimeout { serial: u64 },
    /// A slot's backoff ran out: start it again.
    Restart { worker: u32, epoch: u64 },
    /// Time to sample the workers again (see `observe.rs`).
    Sample,
    /// Time to read the accept queues again (see `health.rs`).
    AcceptQueues,
    /// A deadline of a rollout (see `rollout.rs`): nothing to do but look at the rollouts again.
    Wake,
    /// A scheduled job's (see `jobs.rs`).
    Job(jobs::JobTimer),
    /// A while after a request that defined or removed apps: the heap it left free goes back to the system.
    GiveBack,
    /// A hook ran out of time (see `hooks.rs`).
    HookTimeout { pid: i32, serial: u64 },
    /// The earliest watchdog deadline (see `watchdog.rs`); a stale generation is ignored.
    Watchdog { generation: u64 },
    /// A hung process had its watchdog signal's time: the kill signal (or SIGKILL, for one hung at start).
    HungKill { serial: u64 },
    /// A worker taken out of its app's selection has drained: stop it now (see `balancing.rs`).
    Drain {
        worker: u32,
        intent: u64,
        since: std::time::Instant,
    },
}

/// One worker slot (see `worker.rs` for its state machine).
struct Worker {
    app: String,
    instance: u32,
    state: State,
    on_exit: OnExit,
    restarts: u32,
    /// Quick crashes in a row.
    unstable: u32,
    last_exit: Option<String>,
    last_exit_at: Option<SystemTime>,
    /// Times the worker was replaced for its memory.
    memory_restarts: u32,
    /// Its watchdog's counts, and the hung process being replaced (see `watchdog.rs`).
    watchdog: watchdog::SlotWatch,
    /// A process of this slot was executed once: from then on a failed `execve` is retried like a crash.
    started_once: bool,
    /// Bumped whenever the slot's backoff timer becomes stale.
    epoch: u64,
    /// Bumped by every request that decides what the slot should do (start, stop, restart, delete, scale
    /// down). A rollout or a parked reply remembers the intent it was made under, and gives way once a later
    /// request has changed it: the last request wins, and nothing waits on a decision that was overturned.
    intent: u64,
    /// During a reload: the process that will take over once ready.
    successor: Option<Process>,
    /// Set when a reload of this slot failed; taken by the rollout that waits on it.
    reload_failure: Option<String>,
    /// Why herdsman killed the current process itself (a missed listen timeout), for `last_exit`.
    kill_reason: Option<String>,
    /// Taken out of its app's selection (hash or sticky) before being stopped this way (see `balancing.rs`).
    draining: Option<OnExit>,
    /// Why the slot's last start failed before its program ran (a fork, a pipe, a descriptor, `execve`):
    /// the request that started it answers with this error. Cleared when a process of the slot executes.
    spawn_failure: Option<String>,
}

impl Worker {
    /// The slot's processes that run: its current one, and a reload's successor.
    fn pids(&self) -> impl Iterator<Item = i32> {
        self.state
            .process()
            .map(|p| p.pid)
            .into_iter()
            .chain(self.successor.map(|p| p.pid))
    }
}

/// A process no longer in any slot (replaced by a reload) that is being stopped.
struct Retiring {
    app: String,
    instance: u32,
    process: Process,
    leader_gone: bool,
}

/// What a parked reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    /// Every worker started (exec succeeded; ready too, for apps that wait for readiness) or settled.
    Up,
    /// Every worker stopped (stop).
    Down,
    /// Every worker gone (delete, scale down).
    Gone,
    /// Every worker of every app stopped; then the daemon exits (kill, signals).
    Shutdown,
}

struct Pending {
    until: Await,
    /// The workers waited on, each with its intent when the request was made.
    workers: Vec<(u32, u64)>,
    reply: Option<Replier>,
    /// What the request was (`start`, `restart`, `scale`), to remember on its apps how it ended; `None`
    /// where a rollout remembers it.
    what: Option<&'static str>,
    /// The apps of the workers waited on.
    apps: Vec<String>,
}

pub struct Supervisor {
    /// A [`Timer::GiveBack`] is armed.
    give_back_armed: bool,
    home: crate::home::Home,
    apps: BTreeMap<String, Box<App>>,
    workers: BTreeMap<u32, Box<Worker>>,
    retiring: Vec<Retiring>,
    next_id: u32,
    next_serial: u64,
    pending: Vec<Pending>,
    rollouts: Vec<Rollout>,
    tx: mpsc::UnboundedSender<Message>,
    metrics: Metrics,
    observer: observe::Observer,
    cores: u32,
    notify_socket: String,
    done: bool,
    /// The `kill` requests to answer once the daemon has cleaned up.
    kill_replies: Vec<Replier>,
    /// Stop everything when a worker becomes errored (the container entry point).
    pub exit_when_errored: bool,
    /// A worker became errored while `exit_when_errored`.
    failed: bool,
    shutting_down: bool,
    /// The log keeper the workers' output goes to (see `crate::logs`).
    logs: crate::logs::Keeper,
    /// The generation of the last watcher started (see `watching.rs`).
    watch_generation: u64,
    /// The controller's pid and restarts, for `version` (see `daemon/controller.rs`).
    pub controller: Option<std::sync::Arc<super::controller::Shared>>,
    /// The keeper's descriptors an in-place re-exec keeps; `None` where it cannot re-exec (`run`).
    pub exec_context: Option<super::handover::ExecContext>,
    /// The executable an `update` checked, re-executed on [`Message::Reexec`].
    update_to: Option<std::path::PathBuf>,
    /// Since when a re-exec waits for answers to be written.
    reexec_waiting: Option<std::time::Instant>,
    /// In-place updates since the keeper started.
    updates: u32,
    last_update_error: Option<String>,
    /// The record of what runs, for a keeper that adopts it if this one is killed (see `adoption.rs`);
    /// `None` where there is none (`run`: the container ends with its keeper).
    record: Option<adoption::Keeping>,
    /// Scheduled jobs and `cron_restart`s (see `jobs.rs`).
    jobs: jobs::Jobs,
    /// Node runtime reports and accept-queue histories (see `health.rs`).
    health: health::Health,
    /// The watchdog's one timer (see `watchdog.rs`).
    watchdog_armed: watchdog::Armed,
    /// The last events, and the streams that follow them (see `events.rs`).
    events: events::EventLog,
    /// Each app's hooks in progress and counts (see `hooks.rs`).
    hooks: hooks::Hooks,
}

type Reply = Result<Vec<u32>, Response>;

/// How long after a request that defined or removed apps the free heap is given back: its answer has
/// been written by then.
const GIVE_BACK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A `list` of this many processes or more leaves enough freed memory behind to be worth giving back.
const LARGE_LIST: usize = 256;

/// At most this many more messages are handled in one turn of the loop when they are already waiting.
const BATCH: usize = 255;

impl Supervisor {
    pub fn new(
        home: crate::home::Home,
        tx: mpsc::UnboundedSender<Message>,
        notify_socket: String,
    ) -> Supervisor {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Supervisor {
            home,
            apps: BTreeMap::new(),
            workers: BTreeMap::new(),
            retiring: Vec::new(),
            next_id: 0,
            next_serial: 0,
            pending: Vec::new(),
            rollouts: Vec::new(),
            tx,
            metrics: Metrics::new(),
            observer: observe::Observer::default(),
            cores,
            notify_socket,
            done: false,
            kill_replies: Vec::new(),
            exit_when_errored: false,
            failed: false,
            shutting_down: false,
            logs: crate::logs::Keeper::new(),
            watch_generation: 0,
            controller: None,
            exec_context: None,
            update_to: None,
            reexec_waiting: None,
            updates: 0,
            last_update_error: None,
            record: None,
            jobs: jobs::Jobs::default(),
            health: health::Health::default(),
            give_back_armed: false,
            watchdog_armed: Default::default(),
            events: Default::default(),
            hooks: Default::default(),
        }
    }

    /// Runs until a shutdown has stopped every app. Returns the reply channels of the `kill`s that asked for it,
    /// to be answered once the daemon has removed its files, and whether an app could not be kept running.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        mut sigchld: SignalStream,
    ) -> (Vec<Replier>, bool) {
        self.reap();
        while !self.done {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(message) => {
                        self.handle(message);
                        // A burst (a thousand jobs' fire times, their exits) is handled in one turn: what
                        // follows each turn (settling, the jobs' and the record's writes) is paid once for it.
                        for _ in 0..BATCH {
                            match rx.try_recv() {
                                Ok(message) if !self.done => self.handle(message),
                                _ => break,
                            }
                        }
                    }
                    None => self.begin_shutdown(None),
                },
                _ = sigchld.recv() => self.reap(),
            }
            self.settle();
            self.flush_jobs();
            self.keep_record();
            if self.exit_when_errored
                && !self.shutting_down
                && self.workers.values().any(|w| w.state == State::Errored)
            {
                tracing::error!("an app could not be kept running: stopping everything");
                self.failed = true;
                self.begin_shutdown(None);
            }
        }
        self.remove_record();
        (std::mem::take(&mut self.kill_replies), self.failed)
    }

    /// Gives the heap back in [`GIVE_BACK_AFTER`], unless that is already planned.
    fn arm_give_back(&mut self) {
        if !std::mem::replace(&mut self.give_back_armed, true) {
            self.arm(GIVE_BACK_AFTER, Timer::GiveBack);
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Request { request, reply } => self.request(request, reply),
            Message::Exec { serial, result } => self.exec_result(serial, result),
            Message::Ready { pid, group, source } => self.ready_signal(pid, group, source),
            Message::Timer(timer) => self.timer(timer),
            Message::Subscribe {
                interval_ms,
                events,
            } => {
                if !self.shutting_down {
                    self.subscribe(interval_ms, events);
                }
            }
            Message::SubscribeEvents { since_ms, events } => {
                self.subscribe_events(since_ms, events);
            }
            Message::Shutdown => self.begin_shutdown(None),
            Message::Watch(report) => self.watch_report(report),
            Message::Reexec => self.reexec(),
            Message::Exited { pid, status } => self.adopted_exited(pid, status),
            Message::Fleet(report) => self.fleet_report(report),
            Message::Runtime { pid, report } => self.runtime_report(pid, report),
            Message::Heartbeat { pid, group } => self.heartbeat(pid, group),
        }
    }

    fn request(&mut self, request: Request, reply: Replier) {
        let what = match &request {
            Request::Start(_) | Request::StartExisting { .. } => Some("start"),
            Request::Restart { .. } => Some("restart"),
            Request::Scale { .. } => Some("scale"),
            _ => None,
        };
        if !matches!(
            request,
            Request::Ping
                | Request::List { .. }
                | Request::Version
                | Request::Describe { .. }
                | Request::Subscribe { .. }
                | Request::Events { .. }
                | Request::Job(_)
                | Request::SetMetrics(_)
        ) {
            self.touch_record();
            self.jobs.dirty = true;
            self.arm_give_back();
        }
        let (until, outcome) = match request {
            Request::Ping => {
                let _ = reply.send(Response::Ok);
                return;
            }
            Request::List { brief } => {
                // A list of hundreds of processes is built and encoded in the heap: given back a second
                // later, at most once a second (never per `list`: back to back, each would pay the page
                // faults of the memory given back by the one before).
                if self.workers.len() >= LARGE_LIST {
                    self.arm_give_back();
                }
                let _ = reply.send(self.processes(brief));
                return;
            }
            Request::Version => {
                let controller = self.controller.as_deref();
                let version = crate::protocol::DaemonVersion {
                    version: crate::VERSION.to_string(),
                    protocol: crate::protocol::PROTOCOL_VERSION,
                    keeper_pid: std::process::id(),
                    controller_pid: controller.and_then(|c| c.pid()).map(|pid| pid as u32),
                    controller_restarts: controller.map_or(0, |c| c.restarts()),
                    binary: std::fs::read_link("/proc/self/exe")
                        .map_or_else(|_| "unknown".to_string(), |p| p.display().to_string()),
                    updates: self.updates,
                    last_update_error: self.last_update_error.clone(),
                };
                let _ = reply.send(Response::Version(version));
                return;
            }
            Request::Update { binary } => {
                let _ = reply.send(self.update(binary));
                return;
            }
            Request::Job(request) => {
                self.job_request(request, reply);
                return;
            }
            Request::SetMetrics(_) => {
                // The controller serves the endpoint and answers this itself.
                let message =
                    "the metrics endpoint is the controller's: this request is not relayed";
                let _ = reply.send(Response::error(ErrorKind::Invalid, message));
                return;
            }
            Request::Kill if self.shutting_down => {
                self.kill_replies.push(reply);
                return;
            }
            Request::Kill => {
                self.begin_shutdown(Some(reply));
                return;
            }
            _ if self.shutting_down => {
                let message = "the daemon is shutting down: every app is being stopped";
                let _ = reply.send(Response::error(ErrorKind::Conflict, message));
                return;
            }
            Request::Reload { target, env } => {
                if let Err(response) = self.reload(&target, env, reply.clone()) {
                    let _ = reply.send(response);
                }
                return;
            }
            Request::Save => {
                let specs: Vec<AppSpec> = self.apps.values().map(|a| a.spec.clone()).collect();
                let path = self.home.dump();
                let response = match persist::save(&path, &specs) {
                    Ok(()) => {
                        info!(apps = specs.len(), path = %path.display(), "saved");
                        self.processes(false)
                    }
                    Err(message) => Response::error(ErrorKind::Os, message),
                };
                let _ = reply.send(response);
                return;
            }
            Request::Resurrect => {
                let path = self.home.dump();
                let apps = match persist::load(&path) {
                    Ok(Some(apps)) => apps,
                    Ok(None) => {
                        let message = format!(
                            "no dump at {}: save one with `herdsman save`",
                            path.display()
                        );
                        let _ = reply.send(Response::error(ErrorKind::NotFound, message));
                        return;
                    }
                    Err(message) => {
                        let _ = reply.send(Response::error(ErrorKind::Invalid, message));
                        return;
                    }
                };
                let request = ApplyRequest {
                    file_apps: apps.iter().map(|a| a.name.clone()).collect(),
                    apps,
                    action: ApplyAction::Start,
                    prune: false,
                };
                if let Err(response) = self.apply(request, reply.clone()) {
                    let _ = reply.send(response);
                }
                return;
            }
            Request::Signal { target, signal } => {
                let _ = reply.send(self.send_signal(&target, signal.0));
                return;
            }
            Request::Start(start) if !start.spec.depends_on.is_empty() => {
                // An app that depends on others starts like an ecosystem file's: once they are ready.
                let request = ApplyRequest {
                    file_apps: vec![start.spec.name.clone()],
                    apps: vec![*start.spec],
                    action: ApplyAction::Start,
                    prune: false,
                };
                if let Err(response) = self.apply(request, reply.clone()) {
                    let _ = reply.send(response);
                }
                return;
            }
            Request::Apply(request) => {
                if let Err(response) = self.apply(request, reply.clone()) {
                    let _ = reply.send(response);
                }
                return;
            }
            Request::Start(start) => (Await::Up, self.create_app(*start.spec)),
            Request::StartExisting { target } => (Await::Up, self.start_selected(&target, &reply)),
            Request::Stop { target } => {
                self.disable_jobs(&target);
                (Await::Down, self.stop_in_order(&target, LaneAction::Stop))
            }
            Request::Restart { target, env } => (Await::Up, self.restart_selected(&target, env)),
            Request::Delete { target } => {
                self.disable_jobs(&target);
                (Await::Gone, self.stop_in_order(&target, LaneAction::Remove))
            }
            Request::Describe { target } => {
                let _ = reply.send(self.describe(&target));
                return;
            }
            Request::Subscribe { .. } | Request::Events { .. } => {
                // The control server turns a subscription into `Message::Subscribe`.
                let message = "a subscription needs a connection of its own";
                let _ = reply.send(Response::error(ErrorKind::BadRequest, message));
                return;
            }
            Request::Flush { target } => {
                let _ = reply.send(self.flush_logs(&target));
                return;
            }
            Request::ReloadLogs => {
                let keepers = self.logs.reopen();
                tracing::info!(keepers, "logs reopened");
                let _ = reply.send(Response::Ok);
                return;
            }
            Request::Scale { name, to } => match self.scale(&name, to) {
                Ok((until, ids)) => (until, Ok(ids)),
                Err(response) => (Await::Up, Err(response)),
            },
        };
        match outcome {
            Ok(workers) => {
                self.park(until, &workers, Some(reply));
                if let Some(pending) = self.pending.last_mut() {
                    pending.what = what;
                }
            }
            Err(response) => {
                let _ = reply.send(response);
            }
        }
    }

    // ----- requests -------------------------------------------------------------------------------------

    /// Checks everything about a new app before anything changes, then binds, opens logs and spawns.
    fn create_app(&mut self, spec: AppSpec) -> Reply {
        let ids = self.add_app(spec)?;
        for &id in &ids {
            self.start_worker(id);
        }
        Ok(ids)
    }

    /// Creates an app with its slots stopped, or says why it cannot be created (and changes nothing).
    fn add_app(&mut self, spec: AppSpec) -> Reply {
        if self.apps.contains_key(&spec.name) {
            let message = format!(
                "an app named '{}' already exists; choose another --name, or restart it",
                spec.name
            );
            return Err(Response::error(ErrorKind::Conflict, message));
        }
        let name = spec.name.clone();
        if let Some(message) = self.address_conflict(&spec) {
            return Err(Response::error(
                ErrorKind::Conflict,
                format!("app '{name}': {message}"),
            ));
        }
        let logs = &mut crate::logs::open::Opener::default();
        let app = App::prepare(spec, &self.home, &mut Vec::new(), &mut None, logs)
            .map_err(|e| Response::error(ErrorKind::Invalid, format!("app '{name}': {e}")))?;
        let count = app.spec.instances.resolve(self.cores);
        // The program only: arguments can carry secrets, which are never logged.
        info!(app = %name, workers = count, program = %app.command.program.display(), "app created");
        self.apps.insert(name.clone(), Box::new(app));
        Ok((0..count).map(|i| self.add_slot(&name, i)).collect())
    }

    /// Creates a stopped slot for an instance of an app.
    fn add_slot(&mut self, app: &str, instance: u32) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.workers.insert(
            id,
            Box::new(Worker {
                app: app.to_string(),
                instance,
                state: State::Stopped,
                on_exit: OnExit::Crash,
                restarts: 0,
                unstable: 0,
                last_exit: None,
                last_exit_at: None,
                memory_restarts: 0,
                watchdog: Default::default(),
                started_once: false,
                epoch: 0,
                intent: 0,
                successor: None,
                reload_failure: None,
                kill_reason: None,
                draining: None,
                spawn_failure: None,
            }),
        );
        if let Some(app) = self.apps.get_mut(app) {
            app.workers.push(id);
        }
        id
    }

    /// `start NAME|ID|all` of apps the daemon has: what is stopped, errored or waiting starts now, and what
    /// runs is restarted, as `pm2 start` does, with a note saying so (and that `reload` has no downtime).
    fn start_selected(&mut self, target: &Selection, reply: &Replier) -> Reply {
        let ids = self.select(target)?;
        let running = |w: &Worker| matches!(w.state, State::Running(_) | State::Stopping { .. });
        let mut restarted: Vec<&str> = ids
            .iter()
            .filter_map(|id| self.workers.get(id))
            .filter(|w| running(w))
            .map(|w| w.app.as_str())
            .collect();
        restarted.dedup();
        if !restarted.is_empty() {
            let list = restarted.join(", ");
            let message = format!(
                "{list}: already running: restarting (`herdsman reload {}` replaces workers with no downtime)",
                if restarted.len() == 1 {
                    restarted[0]
                } else {
                    "NAME"
                }
            );
            let _ = reply.send(Response::Note { message });
        }
        self.ensure_listeners(&ids)?;
        self.take_over(&ids);
        for &id in &ids {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            worker.unstable = 0;
            if running(worker) {
                self.signal_stop(id, OnExit::Restart);
            } else {
                self.start_worker(id);
            }
        }
        Ok(ids)
    }

    /// A request decides what these slots do from now on: what earlier requests planned for them is void.
    fn take_over(&mut self, ids: &[u32]) {
        for id in ids {
            if let Some(worker) = self.workers.get_mut(id) {
                worker.intent += 1;
                worker.draining = None;
            }
        }
    }

    /// Parks a reply until these workers have settled (or a later request has taken them over).
    fn park(&mut self, until: Await, ids: &[u32], reply: Option<Replier>) {
        let mut apps: Vec<String> = ids
            .iter()
            .filter_map(|id| Some(self.workers.get(id)?.app.clone()))
            .collect();
        apps.sort();
        apps.dedup();
        let workers = ids
            .iter()
            .map(|&id| (id, self.workers.get(&id).map_or(0, |w| w.intent)))
            .collect();
        self.pending.push(Pending {
            until,
            workers,
            reply,
            what: None,
            apps,
        });
    }

    fn restart_selected(
        &mut self,
        target: &Selection,
        env: Option<BTreeMap<String, String>>,
    ) -> Reply {
        let ids = self.select(target)?;
        self.ensure_listeners(&ids)?;
        if let Some(env) = env {
            self.replace_env(&ids, &env);
        }
        self.take_over(&ids);
        for &id in &ids {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            worker.unstable = 0;
            match worker.state {
                State::Running(_) | State::Stopping { .. } => self.signal_stop(id, OnExit::Restart),
                State::Waiting { .. } | State::Stopped | State::Errored => {
                    worker.restarts += 1;
                    self.start_worker(id);
                }
            }
        }
        Ok(ids)
    }

    /// `--update-env`: the apps of these workers get this environment (the caller's) from their next
    /// process on; a variable it lacks is gone from them.
    fn replace_env(&mut self, ids: &[u32], env: &BTreeMap<String, String>) {
        for id in ids {
            if let Some(worker) = self.workers.get(id)
                && let Some(app) = self.apps.get_mut(&worker.app)
            {
                // The caller's environment, under the app's own variables (env files, `env`).
                let mut fresh = env.clone();
                fresh.extend(app.spec.defined_env.clone());
                app.spec.env = std::sync::Arc::new(fresh);
            }
        }
    }

    fn stop_selected(&mut self, target: &Selection, on_exit: OnExit) -> Reply {
        let ids = self.select(target)?;
        for &id in &ids {
            if self.begin_drain(id, on_exit) {
                continue;
            }
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            match worker.state {
                State::Running(_) | State::Stopping { .. } => self.signal_stop(id, on_exit),
                State::Waiting { .. } | State::Stopped | State::Errored => {
                    worker.epoch += 1;
                    worker.state = State::Stopped;
                    if on_exit == OnExit::Remove {
                        self.remove_worker(id);
                    }
                }
            }
        }
        Ok(ids)
    }

    fn send_signal(&mut self, target: &Selection, signal: nix::sys::signal::Signal) -> Response {
        let ids = match self.select(target) {
            Ok(ids) => ids,
            Err(response) => return response,
        };
        let pids: Vec<i32> = ids
            .iter()
            .filter_map(|id| self.workers.get(id)?.state.process())
            // A leader reaped already (an exit seen before its exec result) has no pid of its own any more.
            .filter(|p| p.early_exit.is_none())
            .map(|p| p.pid)
            .collect();
        if pids.is_empty() {
            let message = format!("no running worker of {target} to send {signal} to");
            return Response::error(ErrorKind::NotFound, message);
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        self.processes(false)
    }

    /// Stops the selected workers, each app only after the apps that depend on it (`depends_on`).
    fn stop_in_order(&mut self, target: &Selection, action: LaneAction) -> Reply {
        let ids = self.select(target)?;
        self.take_over(&ids);
        let mut lanes: Vec<Lane> = Vec::new();
        let apps: Vec<String> = ids
            .iter()
            .filter_map(|id| Some(self.workers.get(id)?.app.clone()))
            .collect();
        for name in apps.iter().collect::<std::collections::BTreeSet<_>>() {
            let slots: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|id| self.workers.get(id).is_some_and(|w| &w.app == name))
                .collect();
            let needs: Vec<String> = apps
                .iter()
                .filter(|other| {
                    self.apps
                        .get(*other)
                        .is_some_and(|a| a.spec.depends_on.contains(name))
                })
                .cloned()
                .collect();
            lanes.push(Lane::new(name, slots, action, needs).parallel());
        }
        // Nobody reads this rollout's answer: the request waits on the workers themselves.
        let (reply, _) = mpsc::unbounded_channel();
        self.push_rollout(Rollout::new(lanes, reply));
        Ok(ids)
    }

    fn begin_shutdown(&mut self, reply: Option<Replier>) {
        self.shutting_down = true;
        info!("shutting down: stopping every app, dependents first");
        // Every reload and file in progress is answered now and starts nothing more; nothing is started
        // from here on (see `start_worker`).
        self.abort_rollouts("interrupted: the daemon is shutting down");
        self.jobs_shutting_down();
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        let _ = self.stop_in_order(&Selection::All, LaneAction::Stop);
        self.park(Await::Shutdown, &ids, reply);
    }

    /// Resolves a selection to worker ids, or an error naming what is missing. Several targets resolve all
    /// or nothing: one that selects nothing fails the whole request, naming every such target.
    fn select(&self, target: &Selection) -> Reply {
        let not_found = |message: String| {
            Response::error(
                ErrorKind::NotFound,
                format!("{message} (see `herdsman list`)"),
            )
        };
        let Selection::Many(targets) = target else {
            return self.select_one(target).map_err(not_found);
        };
        let mut ids: Vec<u32> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        for one in targets {
            match self.select(one) {
                Ok(found) => {
                    for id in found {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                }
                Err(Response::Error { message, .. }) => missing.push(
                    message
                        .trim_end_matches(" (see `herdsman list`)")
                        .to_string(),
                ),
                Err(other) => return Err(other),
            }
        }
        if missing.is_empty() {
            Ok(ids)
        } else {
            Err(not_found(format!(
                "{}; nothing was done",
                missing.join("; ")
            )))
        }
    }

    /// One target: what it selects, or why it selects nothing.
    fn select_one(&self, target: &Selection) -> Result<Vec<u32>, String> {
        match target {
            Selection::All => Ok(self.workers.keys().copied().collect()),
            Selection::Name(name) => self
                .apps
                .get(name)
                .map(|app| app.workers.clone())
                .ok_or_else(|| format!("no app named '{name}'")),
            Selection::Id(id) => {
                if self.workers.contains_key(id) {
                    Ok(vec![*id])
                } else {
                    Err(format!("no process with id {id}"))
                }
            }
            Selection::Regex(_) | Selection::Glob(_) => {
                let matcher = target.matcher()?.ok_or("not a pattern")?;
                let ids: Vec<u32> = self
                    .apps
                    .iter()
                    .filter(|(name, _)| matcher.is_match(name))
                    .flat_map(|(_, app)| app.workers.iter().copied())
                    .collect();
                if ids.is_empty() {
                    Err(format!("no app matches {target}"))
                } else {
                    Ok(ids)
                }
            }
            Selection::Many(_) => self.select(target).map_err(|response| match response {
                Response::Error { message, .. } => message,
                _ => "no such target".to_string(),
            }),
        }
    }

    /// Binds the sockets of the apps of these workers where they were closed (a stopped app starting again).
    fn ensure_listeners(&mut self, ids: &[u32]) -> Result<(), Response> {
        let names: Vec<String> = ids
            .iter()
            .filter_map(|id| self.workers.get(id))
            .map(|w| w.app.clone())
            .collect();
        for name in names {
            if let Some(app) = self.apps.get_mut(&name) {
                app.ensure_listeners().map_err(|message| {
                    Response::error(ErrorKind::Conflict, format!("app '{name}': {message}"))
                })?;
            }
        }
        Ok(())
    }

    fn remove_worker(&mut self, id: u32) {
        if let Some(worker) = self.workers.remove(&id)
            && let Some(app) = self.apps.get_mut(&worker.app)
        {
            app.workers.retain(|&w| w != id);
        }
    }

    // ----- settling -------------------------------------------------------------------------------------

    /// Closes the sockets of apps with nothing running, forgets apps with no slot, advances reloads, and
    /// sends the replies whose workers have settled.
    fn settle(&mut self) {
        self.advance_rollouts();
        if self.settle_watches() {
            // A reload a change left waiting has begun: move it forward now, not at the next message.
            self.advance_rollouts();
            self.settle_watches();
        }
        self.arm_sampling();
        self.arm_queue_watch();
        let workers = &self.workers;
        let retiring = &self.retiring;
        let removed = &mut self.jobs.dirty;
        let mut deleted: Vec<String> = Vec::new();
        self.apps.retain(|name, app| {
            if app.workers.is_empty() {
                info!(app = %name, "app deleted");
                *removed = true;
                deleted.push(name.clone());
                return false;
            }
            // A process on its way out still holds its slot's socket, which stays in the kernel's group
            // until it exits: the group's order is kept only if the daemon closes its copies after it.
            let holds_sockets = !app.listeners.is_empty()
                || (app.slots.as_ref().is_some_and(|s| !s.is_empty())
                    && !retiring.iter().any(|r| &r.app == name));
            let all_down = || {
                app.workers
                    .iter()
                    .all(|id| workers.get(id).is_none_or(|w| w.state.is_down()))
            };
            if holds_sockets && all_down() {
                info!(app = %name, "no worker running: closing its sockets");
                app.listeners.clear();
                if let Some(slots) = app.slots.as_mut() {
                    slots.clear();
                }
            }
            true
        });
        for name in deleted {
            self.emit(
                crate::protocol::EventKind::Deleted,
                &name,
                None,
                None,
                Default::default(),
            );
            self.forget_hooks(&name);
        }
        self.sync_balance();
        self.sync_jobs();

        let mut index = 0;
        while index < self.pending.len() {
            if !self.settled(&self.pending[index]) {
                index += 1;
                continue;
            }
            let mut pending = self.pending.remove(index);
            self.record_change(&pending);
            let Some(reply) = pending.reply.take() else {
                self.done |= pending.until == Await::Shutdown;
                continue;
            };
            if pending.until == Await::Shutdown {
                self.done = true;
                self.kill_replies.push(reply);
            } else if let Some(error) = self.spawn_failures(&pending) {
                let _ = reply.send(Response::error(ErrorKind::Os, error));
            } else {
                let _ = reply.send(self.processes(false));
            }
        }
    }

    /// Remembers on each app of a settled `start`, `restart` or `scale` how it ended (`describe` shows it),
    /// so that one cut off in the middle (its controller died) can be told afterwards: done when every
    /// worker it waited for is up (or gone, for a scale down), failed otherwise, with their last exits.
    fn record_change(&mut self, pending: &Pending) {
        let Some(what) = pending.what else {
            return;
        };
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut outcomes: BTreeMap<String, Vec<String>> = pending
            .apps
            .iter()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        for (id, _) in &pending.workers {
            let Some(w) = self.workers.get(id) else {
                continue; // gone: a scale down that finished
            };
            let problems = outcomes.entry(w.app.clone()).or_default();
            let up = matches!(w.state, State::Running(_)) || self.is_job(&w.app);
            if pending.until == Await::Up && !up {
                problems.push(format!(
                    "{}:{} {}{}",
                    w.app,
                    w.instance,
                    w.state.status().as_str(),
                    w.last_exit
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
        for (name, problems) in outcomes {
            if let Some(app) = self.apps.get_mut(&name) {
                app.last_change = Some(crate::protocol::LastChange {
                    what: what.to_string(),
                    ok: problems.is_empty(),
                    detail: (!problems.is_empty()).then(|| problems.join("; ")),
                    at_ms,
                });
            }
        }
    }

    /// For a request that started workers: those whose start failed before their program ran, as one error
    /// naming each app, instance and cause (the others are started; nothing else changed).
    fn spawn_failures(&self, pending: &Pending) -> Option<String> {
        if pending.until != Await::Up {
            return None;
        }
        let failures: Vec<String> = pending
            .workers
            .iter()
            .filter_map(|(id, intent)| {
                let w = self.workers.get(id).filter(|w| w.intent == *intent)?;
                let cause = w.spawn_failure.as_ref()?;
                Some(format!(
                    "app '{}' instance {}: {cause}{}",
                    w.app,
                    w.instance,
                    limit_hint(cause)
                ))
            })
            .collect();
        (!failures.is_empty()).then(|| {
            format!(
                "could not start {} (the other workers and apps are unchanged):\n  {}",
                if failures.len() == 1 {
                    "a worker"
                } else {
                    "workers"
                },
                failures.join("\n  ")
            )
        })
    }

    fn settled(&self, pending: &Pending) -> bool {
        let retiring_done = |app: &str| !self.retiring.iter().any(|r| r.app == app);
        match pending.until {
            Await::Shutdown => {
                self.workers.values().all(|w| w.state.is_down()) && self.retiring.is_empty()
            }
            until => pending
                .workers
                .iter()
                .all(|(id, intent)| match self.workers.get(id) {
                    None => true,
                    // A later request took the worker over: this one's answer waits no longer.
                    Some(w) if w.intent != *intent => true,
                    Some(w) => match until {
                        Await::Up => match w.state {
                            State::Running(p) => {
                                let wait_ready =
                                    self.apps.get(&w.app).is_some_and(|a| a.spec.wait_ready);
                                if wait_ready { p.ready } else { p.exec_ok }
                            }
                            State::Stopping { .. } => false,
                            _ => true,
                        },
                        Await::Down => w.state.is_down() && retiring_done(&w.app),
                        Await::Gone | Await::Shutdown => false,
                    },
                }),
        }
    }
}

/// What a spawn error most likely ran into, for the message (the limit to raise).
fn limit_hint(cause: &str) -> &'static str {
    if cause.contains("(os error 11)") {
        " (the user's process limit, RLIMIT_NPROC, or memory ran out)"
    } else if cause.contains("(os error 24)") {
        " (the daemon's descriptor limit, RLIMIT_NOFILE, is reached)"
    } else if cause.contains("(os error 23)") {
        " (the system's open file table is full)"
    } else if cause.contains("(os error 12)") {
        " (out of memory)"
    } else {
        ""
    }
}

#[cfg(test)]
mod limit_tests {
    use super::limit_hint;

    #[test]
    fn a_spawn_error_names_the_limit_it_most_likely_hit() {
        let hint = |e: i32| limit_hint(&std::io::Error::from_raw_os_error(e).to_string());
        assert!(hint(libc::EAGAIN).contains("RLIMIT_NPROC"));
        assert!(hint(libc::EMFILE).contains("RLIMIT_NOFILE"));
        assert!(hint(libc::ENFILE).contains("open file table"));
        assert!(hint(libc::ENOMEM).contains("memory"));
        assert_eq!(hint(libc::ENOENT), "");
    }
}
