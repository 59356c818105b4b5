//! The supervisor: the one task that owns the apps, their workers and their sockets.
//!
//! Everything that happens reaches it as a [`Message`] (a CLI request with its reply channel, an exec
//! result, a timer) or as SIGCHLD, which it answers by reaping. It never blocks: spawning returns at once,
//! exec results and timers come back as messages, and a request whose answer must wait (a stop waits for
//! the workers to exit) is parked as a [`Pending`] reply that is sent once its workers have settled.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::Signal as SignalStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::listener::Listener;
use super::metrics::Metrics;
use super::spawn::{self, ExecError, SpawnRequest};
use super::worker::{self, AfterCrash, OnExit, RestartPolicy, State};
use crate::config::{AppSpec, CommandLine, check_name};
use crate::home::Home;
use crate::protocol::{ErrorKind, Mode, ProcessInfo, Request, Response, Selection};

/// What the supervisor is told.
pub enum Message {
    Request {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Exec {
        worker: u32,
        epoch: u64,
        result: Result<(), ExecError>,
    },
    Timer {
        worker: u32,
        epoch: u64,
        kind: TimerKind,
    },
    /// SIGTERM or SIGINT to the daemon: stop every app, then return.
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
pub enum TimerKind {
    /// The kill timeout ran out: SIGKILL the group.
    Kill,
    /// The backoff ran out: start again.
    Restart,
}

/// An app: its spec, the sockets it holds and its log files.
struct App {
    spec: AppSpec,
    command: CommandLine,
    listeners: Vec<Listener>,
    out: File,
    err: File,
    /// Its worker slots, in instance order.
    workers: Vec<u32>,
}

/// One worker slot (see [`worker`] for its state machine).
struct Worker {
    app: String,
    instance: u32,
    state: State,
    on_exit: OnExit,
    restarts: u32,
    /// Quick crashes in a row.
    unstable: u32,
    last_exit: Option<String>,
    /// An exit seen while still `Launching`, handled once the exec result is known.
    early_exit: Option<i32>,
    /// Bumped at every spawn and state change that makes outstanding timers and exec results stale.
    epoch: u64,
}

/// What a parked reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    /// Every worker launched or settled (start, restart).
    Up,
    /// Every worker stopped (stop).
    Down,
    /// Every worker gone (delete).
    Gone,
    /// Every worker of every app stopped; then the daemon exits (kill, signals).
    Shutdown,
}

struct Pending {
    until: Await,
    workers: Vec<u32>,
    reply: Option<oneshot::Sender<Response>>,
}

pub struct Supervisor {
    home: Home,
    apps: BTreeMap<String, App>,
    workers: BTreeMap<u32, Worker>,
    next_id: u32,
    pending: Vec<Pending>,
    tx: mpsc::UnboundedSender<Message>,
    metrics: Metrics,
    cores: u32,
    done: bool,
    /// The `kill` request to answer once the daemon has cleaned up.
    kill_reply: Option<oneshot::Sender<Response>>,
}

type Reply = Result<Vec<u32>, Response>;

impl Supervisor {
    pub fn new(home: Home, tx: mpsc::UnboundedSender<Message>) -> Supervisor {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Supervisor {
            home,
            apps: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_id: 0,
            pending: Vec::new(),
            tx,
            metrics: Metrics::new(),
            cores,
            done: false,
            kill_reply: None,
        }
    }

    /// Runs until a shutdown has stopped every app. Returns the reply channel of the `kill` that asked for it,
    /// to be answered once the daemon has removed its files.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        mut sigchld: SignalStream,
    ) -> Option<oneshot::Sender<Response>> {
        self.reap();
        while !self.done {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(message) => self.handle(message),
                    None => self.begin_shutdown(None),
                },
                _ = sigchld.recv() => self.reap(),
            }
            self.settle();
        }
        self.kill_reply.take()
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Request { request, reply } => self.request(request, reply),
            Message::Exec {
                worker,
                epoch,
                result,
            } => self.exec_result(worker, epoch, result),
            Message::Timer {
                worker,
                epoch,
                kind,
            } => self.timer(worker, epoch, kind),
            Message::Shutdown => self.begin_shutdown(None),
        }
    }

    fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let (until, outcome) = match request {
            Request::Ping => {
                let _ = reply.send(Response::Ok);
                return;
            }
            Request::List => {
                let _ = reply.send(self.processes());
                return;
            }
            Request::Kill => {
                self.begin_shutdown(Some(reply));
                return;
            }
            Request::Start(start) => (Await::Up, self.create_app(*start.spec)),
            Request::StartExisting { target } => (Await::Up, self.start_selected(&target)),
            Request::Stop { target } => (Await::Down, self.stop_selected(&target, OnExit::Stop)),
            Request::Restart { target } => (Await::Up, self.restart_selected(&target)),
            Request::Delete { target } => {
                (Await::Gone, self.stop_selected(&target, OnExit::Remove))
            }
        };
        match outcome {
            Ok(workers) => self.pending.push(Pending {
                until,
                workers,
                reply: Some(reply),
            }),
            Err(response) => {
                let _ = reply.send(response);
            }
        }
    }

    // ----- requests -------------------------------------------------------------------------------------

    /// Checks everything about a new app before anything changes, then binds, opens logs and spawns.
    fn create_app(&mut self, spec: AppSpec) -> Reply {
        let invalid = |kind, message: String| Err(Response::error(kind, message));
        if let Err(e) = check_name(&spec.name) {
            return invalid(ErrorKind::Invalid, e.to_string());
        }
        if self.apps.contains_key(&spec.name) {
            return invalid(
                ErrorKind::Conflict,
                format!(
                    "an app named '{}' already exists; choose another --name, or restart it",
                    spec.name
                ),
            );
        }
        match std::fs::metadata(&spec.script) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return invalid(
                    ErrorKind::Invalid,
                    format!("script {} is not a file", spec.script.display()),
                );
            }
            Err(_) => {
                return invalid(
                    ErrorKind::NotFound,
                    format!("script not found: {}", spec.script.display()),
                );
            }
        }
        if !spec.cwd.is_dir() {
            return invalid(
                ErrorKind::NotFound,
                format!("working directory not found: {}", spec.cwd.display()),
            );
        }
        let command = match spec.command_line() {
            Ok(command) => command,
            Err(e) => return invalid(ErrorKind::NotFound, format!("app '{}': {e}", spec.name)),
        };
        if spec.effective_interpreter().is_none()
            && std::fs::metadata(&spec.script).is_ok_and(|m| m.permissions().mode() & 0o111 == 0)
        {
            return invalid(
                ErrorKind::Invalid,
                format!(
                    "script {} is not executable and has no known interpreter; make it executable or give --interpreter",
                    spec.script.display()
                ),
            );
        }
        let listeners = match bind_all(&spec) {
            Ok(listeners) => listeners,
            Err(message) => {
                return invalid(
                    ErrorKind::Conflict,
                    format!("app '{}': {message}", spec.name),
                );
            }
        };
        let (out, err) = match self.open_logs(&spec.name) {
            Ok(files) => files,
            Err(message) => return invalid(ErrorKind::Os, message),
        };

        let count = spec.instances.resolve(self.cores);
        let name = spec.name.clone();
        let ids: Vec<u32> = (0..count).map(|_| self.allocate_id()).collect();
        for (instance, &id) in ids.iter().enumerate() {
            self.workers.insert(
                id,
                Worker {
                    app: name.clone(),
                    instance: instance as u32,
                    state: State::Stopped,
                    on_exit: OnExit::Crash,
                    restarts: 0,
                    unstable: 0,
                    last_exit: None,
                    early_exit: None,
                    epoch: 0,
                },
            );
        }
        info!(app = %name, workers = count, command = %spawn::describe(&command), "app created");
        self.apps.insert(
            name,
            App {
                spec,
                command,
                listeners,
                out,
                err,
                workers: ids.clone(),
            },
        );
        for &id in &ids {
            self.start_worker(id);
        }
        Ok(ids)
    }

    fn start_selected(&mut self, target: &Selection) -> Reply {
        let ids = self.select(target)?;
        let ids: Vec<u32> = ids
            .into_iter()
            .filter(|id| {
                self.workers
                    .get(id)
                    .is_some_and(|w| w.state.is_down() || matches!(w.state, State::Waiting { .. }))
            })
            .collect();
        self.ensure_listeners(&ids)?;
        for &id in &ids {
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.unstable = 0;
            }
            self.start_worker(id);
        }
        Ok(ids)
    }

    fn restart_selected(&mut self, target: &Selection) -> Reply {
        let ids = self.select(target)?;
        self.ensure_listeners(&ids)?;
        for &id in &ids {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            worker.unstable = 0;
            match worker.state {
                State::Launching { .. } | State::Online { .. } | State::Stopping { .. } => {
                    self.signal_stop(id, OnExit::Restart)
                }
                State::Waiting { .. } | State::Stopped | State::Errored => {
                    worker.restarts += 1;
                    self.start_worker(id);
                }
            }
        }
        Ok(ids)
    }

    fn stop_selected(&mut self, target: &Selection, on_exit: OnExit) -> Reply {
        let ids = self.select(target)?;
        for &id in &ids {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            match worker.state {
                State::Launching { .. } | State::Online { .. } | State::Stopping { .. } => {
                    self.signal_stop(id, on_exit)
                }
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

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<Response>>) {
        info!("shutting down: stopping every app");
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for &id in &ids {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            if worker.state.group().is_some() {
                self.signal_stop(id, OnExit::Stop);
            } else {
                worker.epoch += 1;
                worker.state = State::Stopped;
            }
        }
        self.pending.push(Pending {
            until: Await::Shutdown,
            workers: ids,
            reply,
        });
    }

    /// Resolves a selection to worker ids, or an error naming what is missing.
    fn select(&self, target: &Selection) -> Reply {
        match target {
            Selection::All => Ok(self.workers.keys().copied().collect()),
            Selection::Name(name) => self
                .apps
                .get(name)
                .map(|app| app.workers.clone())
                .ok_or_else(|| {
                    Response::error(
                        ErrorKind::NotFound,
                        format!("no app named '{name}' (see `herdsman list`)"),
                    )
                }),
            Selection::Id(id) => {
                if self.workers.contains_key(id) {
                    Ok(vec![*id])
                } else {
                    Err(Response::error(
                        ErrorKind::NotFound,
                        format!("no process with id {id} (see `herdsman list`)"),
                    ))
                }
            }
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
            let Some(app) = self.apps.get_mut(&name) else {
                continue;
            };
            if app.listeners.is_empty() && !app.spec.listen.is_empty() {
                app.listeners = bind_all(&app.spec).map_err(|message| {
                    Response::error(ErrorKind::Conflict, format!("app '{name}': {message}"))
                })?;
            }
        }
        Ok(())
    }

    // ----- workers --------------------------------------------------------------------------------------

    fn allocate_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Spawns the process of a slot. Never blocks: the exec result comes back as a message.
    fn start_worker(&mut self, id: u32) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let Some(app) = self.apps.get(&worker.app) else {
            return;
        };
        let env = worker_env(&app.spec, worker.instance, &self.home.node_preload());
        let listen_fds: Vec<_> = app.listeners.iter().map(Listener::fd).collect();
        let request = SpawnRequest {
            command: &app.command,
            env,
            cwd: &app.spec.cwd,
            stdout: app.out.as_fd(),
            stderr: app.err.as_fd(),
            listen_fds: &listen_fds,
        };
        let result = spawn::spawn(&request);
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.epoch += 1;
        worker.on_exit = OnExit::Crash;
        worker.early_exit = None;
        match result {
            Ok(spawned) => {
                worker.state = State::Launching {
                    pid: spawned.pid,
                    started: Instant::now(),
                };
                info!(app = %worker.app, instance = worker.instance, pid = spawned.pid, "worker spawned");
                self.metrics.track(spawned.pid);
                let (tx, epoch) = (self.tx.clone(), worker.epoch);
                tokio::spawn(async move {
                    let result = spawn::exec_result(spawned.exec_status).await;
                    let _ = tx.send(Message::Exec {
                        worker: id,
                        epoch,
                        result,
                    });
                });
            }
            Err(e) => {
                warn!(app = %worker.app, instance = worker.instance, error = %e, "cannot spawn worker");
                worker.last_exit = Some(format!("cannot spawn: {e}"));
                worker.state = State::Errored;
            }
        }
    }

    /// Sends the kill signal to a worker's group and arms the kill timeout.
    fn signal_stop(&mut self, id: u32, on_exit: OnExit) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(app) = self.apps.get(&worker.app) else {
            return;
        };
        worker.on_exit = on_exit;
        let (State::Launching { pid, started } | State::Online { pid, started }) = worker.state
        else {
            // Already stopping (only what follows the exit changes), or nothing runs.
            return;
        };
        worker.epoch += 1;
        // An exit seen before the exec result is final: the process is gone already.
        let leader_gone = worker.early_exit.take().is_some();
        worker.state = State::Stopping {
            pid,
            started,
            leader_gone,
        };
        let _ = killpg(Pid::from_raw(pid), app.spec.kill_signal.0);
        let timeout = Duration::from_millis(app.spec.kill_timeout_ms);
        self.arm(id, timeout, TimerKind::Kill);
        self.finish_stop_if_group_empty(id);
    }

    fn arm(&self, id: u32, delay: Duration, kind: TimerKind) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let (tx, epoch) = (self.tx.clone(), worker.epoch);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Message::Timer {
                worker: id,
                epoch,
                kind,
            });
        });
    }

    fn timer(&mut self, id: u32, epoch: u64, kind: TimerKind) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if worker.epoch != epoch {
            return;
        }
        match (kind, worker.state) {
            (
                TimerKind::Kill,
                State::Stopping {
                    pid, leader_gone, ..
                },
            ) => {
                warn!(app = %worker.app, instance = worker.instance, pid, "kill timeout: sending SIGKILL to the group");
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                if !leader_gone {
                    // The worker itself too, in case it left its group (setsid).
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                self.finish_stop_if_group_empty(id);
            }
            (TimerKind::Restart, State::Waiting { .. }) => {
                worker.restarts += 1;
                self.start_worker(id);
            }
            _ => {}
        }
    }

    fn exec_result(&mut self, id: u32, epoch: u64, result: Result<(), ExecError>) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if worker.epoch != epoch {
            return;
        }
        match result {
            Err(e) => {
                warn!(app = %worker.app, instance = worker.instance, error = %e, "worker did not start");
                worker.last_exit = Some(e.to_string());
                if let Some(pid) = worker.state.group() {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                worker.epoch += 1;
                worker.state = match worker.on_exit {
                    OnExit::Remove => {
                        self.remove_worker(id);
                        return;
                    }
                    OnExit::Crash | OnExit::Restart => State::Errored,
                    OnExit::Stop => State::Stopped,
                };
            }
            Ok(()) => {
                if let State::Launching { pid, started } = worker.state {
                    worker.state = State::Online { pid, started };
                }
                if let Some(status) = worker.early_exit.take() {
                    self.exited(id, status);
                }
            }
        }
    }

    /// Reaps every exited child: workers, and the orphans the daemon adopts as a subreaper.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.child_exited(pid.as_raw(), code << 8),
                Ok(WaitStatus::Signaled(pid, signal, core)) => {
                    let status = signal as i32 | if core { 0x80 } else { 0 };
                    self.child_exited(pid.as_raw(), status);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        // A group member's exit may have emptied a group whose leader was gone already.
        let waiting: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                matches!(
                    w.state,
                    State::Stopping {
                        leader_gone: true,
                        ..
                    }
                )
            })
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.finish_stop_if_group_empty(id);
        }
    }

    /// Handles the exit of a worker; other children (adopted orphans) need nothing beyond the reaping.
    fn child_exited(&mut self, pid: i32, status: i32) {
        let Some((&id, _)) = self
            .workers
            .iter()
            .find(|(_, w)| w.state.pid() == Some(pid))
        else {
            return;
        };
        self.metrics.forget(pid);
        self.exited(id, status);
    }

    fn exited(&mut self, id: u32, status: i32) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        match worker.state {
            State::Launching { .. } => {
                // Whether exec even succeeded is not known yet; the exec result will replay this exit.
                worker.early_exit = Some(status);
            }
            State::Online { pid, started } => {
                let how = worker::describe_exit(status);
                let uptime = started.elapsed();
                warn!(app = %worker.app, instance = worker.instance, pid, exit = %how, ?uptime, "worker exited unexpectedly");
                worker.last_exit = Some(how);
                // What the worker left running in its group goes with it.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                self.crashed(id, uptime);
            }
            State::Stopping { pid, started, .. } => {
                worker.last_exit = Some(worker::describe_exit(status));
                worker.state = State::Stopping {
                    pid,
                    started,
                    leader_gone: true,
                };
                self.finish_stop_if_group_empty(id);
            }
            _ => {}
        }
    }

    fn crashed(&mut self, id: u32, uptime: Duration) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(app) = self.apps.get(&worker.app) else {
            return;
        };
        let (decision, unstable) =
            worker::after_crash(&restart_policy(&app.spec), uptime, worker.unstable);
        worker.unstable = unstable;
        worker.epoch += 1;
        match decision {
            AfterCrash::Restart => {
                worker.restarts += 1;
                self.start_worker(id);
            }
            AfterCrash::Wait(delay) => {
                info!(app = %worker.app, instance = worker.instance, ?delay, "backing off before the next start");
                worker.state = State::Waiting {
                    until: Instant::now() + delay,
                };
                self.arm(id, delay, TimerKind::Restart);
            }
            AfterCrash::GiveUp => {
                warn!(app = %worker.app, instance = worker.instance, unstable, "too many quick crashes: errored");
                worker.state = State::Errored;
            }
        }
    }

    fn finish_stop_if_group_empty(&mut self, id: u32) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let State::Stopping {
            pid,
            leader_gone: true,
            ..
        } = worker.state
        else {
            return;
        };
        if killpg(Pid::from_raw(pid), None).is_ok() {
            return; // members of the group remain; the kill timer ends them
        }
        worker.epoch += 1;
        match worker.on_exit {
            OnExit::Restart => {
                worker.restarts += 1;
                self.start_worker(id);
            }
            OnExit::Remove => {
                worker.state = State::Stopped;
                self.remove_worker(id);
            }
            OnExit::Stop | OnExit::Crash => worker.state = State::Stopped,
        }
    }

    fn remove_worker(&mut self, id: u32) {
        if let Some(worker) = self.workers.remove(&id) {
            if let Some(app) = self.apps.get_mut(&worker.app) {
                app.workers.retain(|&w| w != id);
            }
        }
    }

    // ----- settling -------------------------------------------------------------------------------------

    /// Closes the sockets of apps with nothing running, forgets apps with no slot, sends settled replies.
    fn settle(&mut self) {
        let workers = &self.workers;
        self.apps.retain(|name, app| {
            if app.workers.is_empty() {
                info!(app = %name, "app deleted");
                return false;
            }
            let all_down = app
                .workers
                .iter()
                .all(|id| workers.get(id).is_none_or(|w| w.state.is_down()));
            if all_down && !app.listeners.is_empty() {
                info!(app = %name, "no worker running: closing its sockets");
                app.listeners.clear();
            }
            true
        });

        let mut index = 0;
        while index < self.pending.len() {
            let pending = &self.pending[index];
            let settled = pending.workers.iter().all(|id| match self.workers.get(id) {
                None => true,
                Some(w) => match pending.until {
                    Await::Up => !w.state.is_transient(),
                    Await::Down | Await::Shutdown => w.state.is_down(),
                    Await::Gone => false,
                },
            });
            if !settled {
                index += 1;
                continue;
            }
            let mut pending = self.pending.remove(index);
            let Some(reply) = pending.reply.take() else {
                self.done |= pending.until == Await::Shutdown;
                continue;
            };
            if pending.until == Await::Shutdown {
                self.done = true;
                self.kill_reply = Some(reply);
            } else {
                let _ = reply.send(self.processes());
            }
        }
    }

    fn processes(&mut self) -> Response {
        let pids: Vec<i32> = self
            .workers
            .values()
            .filter_map(|w| w.state.pid())
            .collect();
        let samples = self.metrics.sample(&pids);
        let now = Instant::now();
        let processes = self
            .workers
            .iter()
            .filter_map(|(&id, w)| {
                let app = self.apps.get(&w.app)?;
                let pid = w.state.pid();
                let (cpu, memory) = pid
                    .and_then(|p| samples.get(&p).copied())
                    .unwrap_or((0.0, 0));
                let listen = app
                    .spec
                    .listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(ProcessInfo {
                    id,
                    name: w.app.clone(),
                    instance: w.instance,
                    mode: if app.spec.listen.is_empty() {
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
                    cpu,
                    memory,
                    listen: (!listen.is_empty()).then_some(listen),
                    restart_in_ms: match w.state {
                        State::Waiting { until } => {
                            Some(until.saturating_duration_since(now).as_millis() as u64)
                        }
                        _ => None,
                    },
                    last_exit: w.last_exit.clone(),
                })
            })
            .collect();
        Response::Processes { processes }
    }

    fn open_logs(&self, name: &str) -> Result<(File, File), String> {
        let open = |path: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| format!("cannot open log {}: {e}", path.display()))
        };
        Ok((
            open(self.home.out_log(name))?,
            open(self.home.err_log(name))?,
        ))
    }
}

fn bind_all(spec: &AppSpec) -> Result<Vec<Listener>, String> {
    spec.listen
        .iter()
        .map(|addr| Listener::bind(addr, &spec.cwd).map_err(|e| e.to_string()))
        .collect()
}

fn restart_policy(spec: &AppSpec) -> RestartPolicy {
    RestartPolicy {
        min_uptime: Duration::from_millis(spec.min_uptime_ms),
        max_restarts: spec.max_restarts,
        backoff: Duration::from_millis(spec.restart_backoff_ms),
        backoff_max: Duration::from_millis(spec.restart_backoff_max_ms),
    }
}

/// Variables herdsman sets itself; any value inherited from the caller is dropped.
const RESERVED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "HERDSMAN_APP",
    "HERDSMAN_INSTANCE",
    "NODE_APP_INSTANCE",
];

/// A worker's environment: the app's, plus the socket-activation variables (but the pid-dependent ones,
/// which the child writes itself), the instance variables, and for Node the listen preload.
fn worker_env(spec: &AppSpec, instance: u32, preload: &std::path::Path) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = spec
        .env
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("HERDSMAN_APP".into(), spec.name.clone());
    env.insert("HERDSMAN_INSTANCE".into(), instance.to_string());
    env.insert("NODE_APP_INSTANCE".into(), instance.to_string());
    if !spec.listen.is_empty() {
        env.insert("LISTEN_FDS".into(), spec.listen.len().to_string());
        env.insert(
            "LISTEN_FDNAMES".into(),
            vec![spec.name.as_str(); spec.listen.len()].join(":"),
        );
        if let Some(port) = spec.listen.first().and_then(|a| a.port()) {
            env.insert("PORT".into(), port.to_string());
        }
        if spec.is_node() {
            let quoted = preload
                .to_string_lossy()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            let option = format!("--require \"{quoted}\"");
            let merged = match env.get("NODE_OPTIONS").filter(|v| !v.trim().is_empty()) {
                Some(existing) => format!("{existing} {option}"),
                None => option,
            };
            env.insert("NODE_OPTIONS".into(), merged);
        }
    }
    env.into_iter().collect()
}
