//! One process's life: spawn, exec result, readiness, stop, exit, and the crash policy.
//!
//! A process is in exactly one place: a slot's current process, a slot's successor (during a reload), or
//! the retiring list (replaced, being stopped). Timers and exec results name it by serial, readiness and
//! exits by pid; [`Supervisor::locate`] finds it, and anything about a process that has moved on is
//! ignored.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::env::{EnvContext, grace, worker_env};
use super::{Message, Retiring, Supervisor, Timer};
use crate::daemon::groups::signal_group;
use crate::daemon::listener::Listener;
use crate::daemon::ready::{self, Source};
use crate::daemon::spawn::{self, ExecError, SpawnRequest};
use crate::daemon::worker::{self, AfterCrash, OnExit, Process, RestartPolicy, State};
use crate::logs::Stream;
use crate::protocol::{EventDetails, EventKind};

/// Where a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
    /// The current process of this slot.
    Slot(u32),
    /// The successor being brought up in this slot by a reload.
    Successor(u32),
    /// This entry of the retiring list.
    Retiring(usize),
}

impl Supervisor {
    /// Finds the process with this serial.
    pub(super) fn locate(&self, serial: u64) -> Option<Loc> {
        self.find(|p| p.serial == serial, false)
    }

    /// Finds the process with this pid, among those whose leader has not been reaped.
    pub(super) fn locate_pid(&self, pid: i32) -> Option<Loc> {
        self.find(|p| p.pid == pid, true)
    }

    fn find(&self, matches: impl Fn(&Process) -> bool, alive_only: bool) -> Option<Loc> {
        for (&id, w) in &self.workers {
            let current = match w.state {
                State::Running(p) => Some(p),
                State::Stopping {
                    process,
                    leader_gone,
                } if !(alive_only && leader_gone) => Some(process),
                _ => None,
            };
            if current.as_ref().is_some_and(&matches) {
                return Some(Loc::Slot(id));
            }
            if w.successor.as_ref().is_some_and(&matches) {
                return Some(Loc::Successor(id));
            }
        }
        self.retiring
            .iter()
            .position(|r| !(alive_only && r.leader_gone) && matches(&r.process))
            .map(Loc::Retiring)
    }

    /// The process at a location, to be updated with [`Supervisor::put`].
    pub(super) fn process_at(&self, loc: Loc) -> Option<Process> {
        match loc {
            Loc::Slot(id) => match self.workers.get(&id)?.state {
                State::Running(p) | State::Stopping { process: p, .. } => Some(p),
                _ => None,
            },
            Loc::Successor(id) => self.workers.get(&id)?.successor,
            Loc::Retiring(i) => self.retiring.get(i).map(|r| r.process),
        }
    }

    pub(super) fn put(&mut self, loc: Loc, process: Process) {
        match loc {
            Loc::Slot(id) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    match &mut w.state {
                        State::Running(p) | State::Stopping { process: p, .. } => *p = process,
                        _ => {}
                    }
                }
            }
            Loc::Successor(id) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.successor = Some(process);
                }
            }
            Loc::Retiring(i) => {
                if let Some(r) = self.retiring.get_mut(i) {
                    r.process = process;
                }
            }
        }
    }

    // ----- spawning -------------------------------------------------------------------------------------

    /// Starts a new process for a slot and arms its readiness timer. Never blocks: the exec result and the
    /// readiness signals come back as messages.
    pub(super) fn spawn_process(&mut self, id: u32) -> Result<Process, String> {
        // A scheduled job's run: its variables, and a log file of its own.
        let run = self.job_run_env(id);
        let worker = self.workers.get(&id).ok_or("no such worker")?;
        let instance = worker.instance;
        // A hash or sticky app: the slot's own sockets, bound at its first start and kept while it exists.
        if let Some(app) = self.apps.get_mut(&worker.app)
            && let Some(slots) = app.slots.as_mut()
        {
            slots.open(id, instance, &app.spec.cwd)?;
        }
        let worker = self.workers.get(&id).ok_or("no such worker")?;
        let app = self.apps.get(&worker.app).ok_or("no such app")?;
        let channel = if app.spec.is_node() {
            super::preload::ensure(&app.preload)?;
            Some(ready::node_pipe().map_err(|e| format!("cannot create the readiness pipe: {e}"))?)
        } else {
            None
        };
        let mut inherit: Vec<BorrowedFd<'_>> = match &app.slots {
            Some(slots) => slots.fds(id),
            None => app.listeners.iter().map(Listener::fd).collect(),
        };
        let activation = !inherit.is_empty();
        let ready_pipe = channel.as_ref().map(|(_, theirs)| {
            inherit.push(theirs.as_fd());
            2 + inherit.len()
        });
        let context = EnvContext {
            instance: worker.instance,
            preload: &app.preload,
            notify_socket: &self.notify_socket,
            ready_pipe,
            user_env: &app.user_env,
        };
        // The output goes through pipes to the log keeper; if it cannot be reached, straight to the files
        // (opened now: the keeper may have rotated them since the app was created).
        let mut output = |stream| -> Result<OwnedFd, String> {
            let mut header = app.log_header(worker.instance, stream);
            if let Some((_, log)) = &run {
                header.path = log.clone();
            }
            self.logs.pipe(&header).or_else(|error| {
                warn!(app = %worker.app, instance = worker.instance, %stream, %error, "the worker writes to its log file directly (no timestamps, no rotation)");
                super::app::open_log(&header.path).map(OwnedFd::from)
            })
        };
        let outputs = output(Stream::Out).and_then(|out| Ok((out, output(Stream::Err)?)));
        let (out, err) = match outputs {
            Ok(pair) => pair,
            Err(e) => {
                self.logs.discard();
                return Err(e);
            }
        };
        let request = SpawnRequest {
            command: &app.command,
            env: {
                let mut env = worker_env(&app.spec, &context);
                if let Some((extra, _)) = &run {
                    env.retain(|(key, _)| !extra.iter().any(|(k, _)| k == key));
                    env.extend(extra.iter().cloned());
                }
                env
            },
            cwd: &app.spec.cwd,
            stdout: out.as_fd(),
            stderr: err.as_fd(),
            inherit: &inherit,
            activation,
            watchdog: app.spec.watchdog.is_some(),
            credentials: app.credentials.as_ref(),
        };
        let spawned = match spawn::spawn(&request) {
            Ok(spawned) => spawned,
            Err(e) => {
                self.logs.discard();
                return Err(e.to_string());
            }
        };
        self.logs.bind(spawned.pid);
        // The worker has its copies; the keeper sees EOF once the worker's whole group is gone.
        drop((out, err));
        let watchdog = app
            .spec
            .watchdog
            .map(|w| Duration::from_millis(w.period_ms));
        let (wait_ready, listen_timeout, grace) = (
            app.spec.wait_ready,
            Duration::from_millis(app.spec.listen_timeout_ms),
            grace(&app.spec),
        );
        info!(app = %worker.app, instance = worker.instance, pid = spawned.pid, "process spawned");
        let ours: Option<OwnedFd> = channel.map(|(ours, _theirs)| ours);

        self.note_spawned(spawned.pid, spawned.start);
        self.next_serial += 1;
        let process = Process::new(spawned.pid, self.next_serial);
        let (tx, serial, pid) = (self.tx.clone(), process.serial, process.pid);
        tokio::spawn(async move {
            let result = spawn::exec_result(spawned.exec_status).await;
            let _ = tx.send(Message::Exec { serial, result });
        });
        if let Some(ours) = ours {
            tokio::spawn(ready::serve_node_pipe(ours, pid, self.tx.clone()));
        }
        if wait_ready {
            self.arm(listen_timeout, Timer::ListenTimeout { serial });
        } else {
            self.arm(grace, Timer::Grace { serial });
        }
        // A job's run is read when sampled: a thousand short runs cost no reading each.
        if run.is_none() {
            self.metrics.spawned(pid);
        }
        self.job_spawned(id, &process);
        self.emit_worker(EventKind::Started, id, Some(pid), EventDetails::default());
        if let Some(period) = watchdog {
            self.arm_watchdog(process.started + period);
        }
        Ok(process)
    }

    /// Starts a slot's process, binding the app's sockets again if they were closed.
    pub(super) fn start_worker(&mut self, id: u32) {
        if self.shutting_down {
            // Nothing starts once the daemon is shutting down: a crash, a backoff timer or a restart that
            // was under way when it began ends stopped.
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.epoch += 1;
                worker.state = State::Stopped;
            }
            return;
        }
        if self.job_start(id) == Some(false) {
            return; // a job's slot starts only for a run: starting the app enabled its schedule
        }
        let bound = match self
            .workers
            .get(&id)
            .and_then(|w| self.apps.get_mut(&w.app))
        {
            Some(app) => app.ensure_listeners(),
            None => return,
        };
        let job = self.workers.get(&id).is_some_and(|w| self.is_job(&w.app));
        let result = bound.and_then(|()| self.spawn_process(id));
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.epoch += 1;
        worker.on_exit = OnExit::Crash;
        worker.kill_reason = None;
        worker.spawn_failure = result.as_ref().err().map(|e| format!("cannot spawn: {e}"));
        match result {
            Ok(process) => worker.state = State::Running(process),
            Err(e) => {
                // Resources may come back (fork's EAGAIN, the daemon's fd limit): back off and retry like a
                // quick crash, within the app's restart policy, rather than give up at once.
                warn!(app = %worker.app, instance = worker.instance, error = %e, "cannot spawn worker");
                worker.last_exit = Some(format!("cannot spawn: {e}"));
                worker.last_exit_at = Some(SystemTime::now());
                worker.state = State::Stopped;
                // A job's run that could not start is recorded as failed by `start_run`; never a crash.
                if !job {
                    self.crashed(id, Duration::ZERO, false);
                }
            }
        }
    }

    /// A `restarted` event about a slot just started again.
    fn emit_restarted(&mut self, id: u32, restarts: u32) {
        let pid = self
            .workers
            .get(&id)
            .and_then(|w| w.state.process())
            .map(|p| p.pid);
        let details = EventDetails {
            restarts: Some(restarts),
            ..EventDetails::default()
        };
        self.emit_worker(EventKind::Restarted, id, pid, details);
    }

    pub(super) fn arm(&self, delay: Duration, timer: Timer) {
        let tx = self.tx.clone();
        // The delay counts from when the task first runs, after the turn that armed it. On purpose: the
        // timers armed by one long turn (a fire time's thousand runs) then come due together and are
        // handled in few turns; counted from the arm, each came as a turn of its own, paying the per-turn
        // passes over every app (+20 % CPU with 1000 jobs).
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Message::Timer(timer));
        });
    }

    // ----- stopping -------------------------------------------------------------------------------------

    /// Sends the kill signal to a slot's process group and arms the kill timeout. A successor being brought
    /// up by a reload is stopped too, and the reload of that slot fails.
    pub(super) fn signal_stop(&mut self, id: u32, on_exit: OnExit) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        // A stop in progress is never turned into a restart, nor a delete into a stop: the first request
        // that stops a worker for good wins, and its caller gets its answer.
        worker.on_exit = match (worker.state, worker.on_exit, on_exit) {
            (State::Stopping { .. }, OnExit::Remove, _) => OnExit::Remove,
            (State::Stopping { .. }, OnExit::Stop, OnExit::Restart) => OnExit::Stop,
            _ => on_exit,
        };
        if let Some(successor) = worker.successor.take() {
            worker.reload_failure = Some("interrupted: the worker was stopped".into());
            let (app, instance) = (worker.app.clone(), worker.instance);
            self.retire(&app, instance, successor, Signal::SIGKILL);
        }
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let State::Running(process) = worker.state else {
            // Already stopping (only what follows the exit changes), or nothing runs.
            return;
        };
        let Some(app) = self.apps.get(&worker.app) else {
            return;
        };
        worker.epoch += 1;
        // An exit seen before the exec result is final: the process is gone already.
        let leader_gone = process.early_exit.is_some();
        worker.state = State::Stopping {
            process,
            leader_gone,
        };
        signal_group(process.pid, leader_gone, Some(app.spec.kill_signal.0));
        let timeout = Duration::from_millis(app.spec.kill_timeout_ms);
        self.arm(
            timeout,
            Timer::Kill {
                serial: process.serial,
            },
        );
        self.finish_stop_if_group_empty(id);
    }

    /// Stops a process that is no longer in a slot: `signal` to its group, SIGKILL after the kill timeout.
    pub(super) fn retire(&mut self, app: &str, instance: u32, process: Process, signal: Signal) {
        self.retire_with(app, instance, process, signal, true);
    }

    /// [`Supervisor::retire`], arming the kill timeout only with `arm_kill` (a hung process's is armed
    /// once it has had the kill signal: see `watchdog.rs`).
    pub(super) fn retire_with(
        &mut self,
        app: &str,
        instance: u32,
        process: Process,
        signal: Signal,
        arm_kill: bool,
    ) {
        let timeout = self.apps.get(app).map_or(Duration::ZERO, |a| {
            Duration::from_millis(a.spec.kill_timeout_ms)
        });
        signal_group(process.pid, process.early_exit.is_some(), Some(signal));
        self.retiring.push(Retiring {
            app: app.to_string(),
            instance,
            process,
            leader_gone: process.early_exit.is_some(),
        });
        if arm_kill {
            self.arm(
                timeout,
                Timer::Kill {
                    serial: process.serial,
                },
            );
        }
        self.finish_retiring(self.retiring.len() - 1);
    }

    fn finish_stop_if_group_empty(&mut self, id: u32) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let State::Stopping {
            process,
            leader_gone: true,
        } = worker.state
        else {
            return;
        };
        if signal_group(process.pid, true, None) {
            return; // members of the group remain; the kill timer ends them
        }
        let (app, instance) = (worker.app.clone(), worker.instance);
        if self.end_escapees(&app, instance) {
            return; // their exits, reaped, finish the stop
        }
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.epoch += 1;
        match worker.on_exit {
            OnExit::Restart => {
                worker.restarts += 1;
                let restarts = worker.restarts;
                self.start_worker(id);
                self.emit_restarted(id, restarts);
            }
            OnExit::Remove => {
                worker.state = State::Stopped;
                self.remove_worker(id);
            }
            OnExit::Stop | OnExit::Crash => {
                worker.state = State::Stopped;
                self.emit_worker(EventKind::Stopped, id, None, EventDetails::default());
            }
        }
    }

    pub(super) fn finish_retiring(&mut self, index: usize) {
        let Some(r) = self.retiring.get(index) else {
            return;
        };
        if r.leader_gone && !signal_group(r.process.pid, true, None) {
            let (app, instance) = (r.app.clone(), r.instance);
            if !self.end_escapees(&app, instance) {
                self.retiring.remove(index);
            }
        }
    }

    /// SIGKILLs what a slot's processes left running outside their process group (see `adopted.rs`), and
    /// says whether there was any: their exits are then still to come.
    fn end_escapees(&self, app: &str, instance: u32) -> bool {
        let known: Vec<i32> = self
            .workers
            .values()
            .flat_map(|w| [w.state.process(), w.successor])
            .flatten()
            .chain(self.retiring.iter().map(|r| r.process))
            .map(|p| p.pid)
            // A hook carries its event's HERDSMAN_APP and HERDSMAN_INSTANCE, and is no escapee.
            .chain(self.hook_pids())
            .collect();
        let escapees = crate::daemon::adopted::escapees(app, instance, &known);
        for &pid in &escapees {
            warn!(
                app,
                instance, pid, "ending a process the worker left running outside its process group"
            );
            // A process that left with `setsid` leads a group of its own; it is the daemon's child and not
            // reaped, so the number is still its own.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        !escapees.is_empty()
    }

    // ----- events ---------------------------------------------------------------------------------------

    pub(super) fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::Sample => self.sample_tick(),
            Timer::AcceptQueues => self.queue_tick(),
            Timer::Watchdog { generation } => self.watchdog_tick(generation),
            Timer::HookTimeout { pid, serial } => self.hook_timeout(pid, serial),
            Timer::HungKill { serial } => self.hung_kill(serial),
            Timer::GiveBack => {
                // A thousand apps defined at once leave megabytes of freed requests and answers in the
                // heap, which the C library keeps unless asked. Settling them (their starts, timers and
                // records) frees as much again: while a request waits, once more after it.
                crate::heap::give_back();
                self.give_back_armed = !self.pending.is_empty() || !self.rollouts.is_empty();
                if self.give_back_armed {
                    self.arm(super::GIVE_BACK_AFTER, Timer::GiveBack);
                }
            }
            Timer::Drain {
                worker,
                intent,
                since,
            } => self.drained(worker, intent, since),
            Timer::Job(timer) => self.job_timer(timer),
            Timer::Wake => {
                self.settle_groups();
                self.recheck_adopted_groups();
            }
            Timer::Restart { worker: id, epoch } => {
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                if worker.epoch == epoch && matches!(worker.state, State::Waiting { .. }) {
                    worker.restarts += 1;
                    let restarts = worker.restarts;
                    self.start_worker(id);
                    self.emit_restarted(id, restarts);
                }
            }
            Timer::Kill { serial } => {
                let Some(loc) = self.locate(serial) else {
                    return;
                };
                let (pid, leader_gone) = match loc {
                    Loc::Slot(id) => match self.workers.get(&id).map(|w| w.state) {
                        Some(State::Stopping {
                            process,
                            leader_gone,
                        }) => (process.pid, leader_gone),
                        _ => return,
                    },
                    Loc::Retiring(i) => {
                        (self.retiring[i].process.pid, self.retiring[i].leader_gone)
                    }
                    Loc::Successor(_) => return,
                };
                warn!(pid, "kill timeout: sending SIGKILL to the process group");
                signal_group(pid, leader_gone, Some(Signal::SIGKILL));
                if !leader_gone {
                    // The process itself too, in case it left its group (setsid).
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                match loc {
                    Loc::Slot(id) => self.finish_stop_if_group_empty(id),
                    Loc::Retiring(i) => self.finish_retiring(i),
                    Loc::Successor(_) => {}
                }
            }
            Timer::Grace { serial } => {
                if let Some(loc) = self.locate(serial)
                    && self.process_at(loc).is_some_and(|p| p.exec_ok && !p.ready)
                {
                    self.mark_ready(loc);
                }
            }
            Timer::ListenTimeout { serial } => {
                let Some(loc) = self.locate(serial) else {
                    return;
                };
                let Some(process) = self.process_at(loc).filter(|p| !p.ready) else {
                    return;
                };
                let timeout = self.timeout_of(loc);
                let reason = format!("not ready within {timeout} ms (--listen-timeout)");
                match loc {
                    Loc::Slot(id) => {
                        if let Some(worker) = self.workers.get_mut(&id)
                            && matches!(worker.state, State::Running(_))
                        {
                            warn!(app = %worker.app, instance = worker.instance, %reason, "worker failed");
                            worker.kill_reason = Some(reason);
                            let reaped = process.early_exit.is_some();
                            signal_group(process.pid, reaped, Some(Signal::SIGKILL));
                        }
                    }
                    Loc::Successor(id) => self.fail_successor(id, reason),
                    Loc::Retiring(_) => {}
                }
            }
        }
    }

    fn timeout_of(&self, loc: Loc) -> u64 {
        let app = match loc {
            Loc::Slot(id) | Loc::Successor(id) => self.workers.get(&id).map(|w| w.app.as_str()),
            Loc::Retiring(i) => self.retiring.get(i).map(|r| r.app.as_str()),
        };
        app.and_then(|a| self.apps.get(a))
            .map_or(0, |a| a.spec.listen_timeout_ms)
    }

    pub(super) fn exec_result(&mut self, serial: u64, result: Result<(), ExecError>) {
        let Some(loc) = self.locate(serial) else {
            return;
        };
        let Some(mut process) = self.process_at(loc) else {
            return;
        };
        if let Err(e) = result {
            match loc {
                Loc::Slot(id) => {
                    if self.job_run_not_started(id, process, &e.to_string()) {
                        return;
                    }
                    if let Some(worker) = self.workers.get_mut(&id)
                        && matches!(worker.state, State::Running(_))
                    {
                        worker.last_exit = Some(e.to_string());
                        worker.last_exit_at = Some(SystemTime::now());
                        worker.spawn_failure = Some(e.to_string());
                        if process.early_exit.is_none() {
                            // Not reaped yet, so the pid (and its group) are still this process's.
                            let _ = killpg(Pid::from_raw(process.pid), Signal::SIGKILL);
                        }
                        worker.epoch += 1;
                        if worker.started_once {
                            // It ran before: the program may be mid-deploy (ETXTBSY, ENOENT) or a resource
                            // short for a moment (EAGAIN, ENOMEM). Retried like a crash, with its backoff.
                            warn!(app = %worker.app, instance = worker.instance, error = %e, "worker did not start: retrying like a crash");
                            worker.state = State::Stopped;
                            self.crashed(id, Duration::ZERO, false);
                        } else {
                            warn!(app = %worker.app, instance = worker.instance, error = %e, "worker did not start");
                            worker.state = State::Errored;
                            let details = EventDetails {
                                reason: Some(e.to_string()),
                                ..EventDetails::default()
                            };
                            self.emit_worker(EventKind::Errored, id, None, details);
                        }
                        return;
                    }
                }
                Loc::Successor(id) => return self.fail_successor(id, e.to_string()),
                Loc::Retiring(_) => {}
            }
        }
        // The outcome is known; an exit that arrived first is handled now.
        process.exec_ok = true;
        if let Loc::Slot(id) | Loc::Successor(id) = loc
            && let Some(worker) = self.workers.get_mut(&id)
        {
            worker.started_once = true;
            if loc == Loc::Slot(id) {
                worker.spawn_failure = None;
            }
        }
        let early_exit = process.early_exit.take();
        self.put(loc, process);
        if let Some(status) = early_exit {
            self.process_exited(loc, status);
            return;
        }
        // An exec confirmed after the grace period ran out (a loaded host): the grace timer found it
        // unconfirmed and did nothing, so the readiness it would have given is given now.
        let wait_ready = self.app_of(loc).is_none_or(|app| app.spec.wait_ready);
        let grace = self.app_of(loc).map(|app| grace(&app.spec));
        if !wait_ready
            && matches!(loc, Loc::Slot(_) | Loc::Successor(_))
            && grace.is_some_and(|g| process.started.elapsed() >= g)
        {
            self.mark_ready(loc);
        }
    }

    pub(super) fn app_of(&self, loc: Loc) -> Option<&super::app::App> {
        let name = match loc {
            Loc::Slot(id) | Loc::Successor(id) => &self.workers.get(&id)?.app,
            Loc::Retiring(i) => &self.retiring.get(i)?.app,
        };
        self.apps.get(name).map(|app| &**app)
    }

    /// `READY=1` or a Node readiness message, from a process or a member of its group.
    pub(super) fn ready_signal(&mut self, pid: i32, group: Option<i32>, source: Source) {
        let loc = self
            .locate_pid(pid)
            .or_else(|| group.and_then(|g| self.locate_pid(g)));
        let Some(loc @ (Loc::Slot(_) | Loc::Successor(_))) = loc else {
            return;
        };
        if let Some(mut process) = self.process_at(loc).filter(|p| !p.ready) {
            info!(pid = process.pid, ?source, "ready");
            process.exec_ok = true;
            self.put(loc, process);
            self.mark_ready(loc);
        }
    }

    /// A process is ready: a slot's goes online; a successor takes over its slot and the old one retires.
    fn mark_ready(&mut self, loc: Loc) {
        let Some(mut process) = self.process_at(loc) else {
            return;
        };
        if let Loc::Slot(id) | Loc::Successor(id) = loc {
            let details = EventDetails {
                ready_ms: Some(process.started.elapsed().as_millis() as u64),
                ..EventDetails::default()
            };
            self.emit_worker(EventKind::Ready, id, Some(process.pid), details);
        }
        process.ready = true;
        match loc {
            Loc::Slot(id) => {
                if let Some(w) = self.workers.get_mut(&id)
                    && let State::Running(p) = &mut w.state
                {
                    *p = process;
                }
            }
            Loc::Successor(id) => {
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                worker.successor = None;
                let old = std::mem::replace(&mut worker.state, State::Running(process));
                worker.epoch += 1;
                worker.on_exit = OnExit::Crash;
                if let State::Running(old) = old {
                    if self.retire_hung(id, old) {
                        return;
                    }
                    let Some(worker) = self.workers.get(&id) else {
                        return;
                    };
                    let (app, instance) = (worker.app.clone(), worker.instance);
                    let signal = self
                        .apps
                        .get(&app)
                        .map_or(Signal::SIGTERM, |a| a.spec.kill_signal.0);
                    self.retire(&app, instance, old, signal);
                }
            }
            Loc::Retiring(_) => {}
        }
    }

    // ----- exits ----------------------------------------------------------------------------------------

    /// Reaps every exited child: workers, and the orphans the daemon adopts as a subreaper.
    pub(super) fn reap(&mut self) {
        // Each exit is looked at before it is reaped (WNOWAIT): while the zombie is there its pid, and so its
        // process group's id, cannot be given to a new process, so what the exit makes the daemon signal
        // (the rest of a crashed worker's group) reaches that group and no other.
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            let (pid, status) = match waitid(Id::All, peek) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code << 8),
                Ok(WaitStatus::Signaled(pid, signal, core)) => {
                    (pid, signal as i32 | if core { 0x80 } else { 0 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(other) => match other.pid() {
                    // Not an exit (WEXITED asks for exits only); reap it so the loop moves on.
                    Some(pid) => {
                        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                        continue;
                    }
                    None => break,
                },
            };
            self.metrics.forget(pid.as_raw());
            self.logs.reaped(pid.as_raw());
            self.hook_exited(pid.as_raw(), status);
            if let Some(loc) = self.locate_pid(pid.as_raw()) {
                self.process_exited(loc, status);
            }
            if waitpid(pid, Some(WaitPidFlag::WNOHANG)).is_err() {
                break;
            }
        }
        self.settle_groups();
    }

    /// An adopted process exited (its pidfd said so; see `adoption.rs`). Its wait status is known only
    /// where the kernel keeps it for a process that is not its parent's.
    pub(super) fn adopted_exited(&mut self, pid: i32, status: Option<i32>) {
        self.metrics.forget(pid);
        if let Some(loc) = self.find(|p| p.pid == pid && p.adopted, true) {
            self.process_exited(loc, status.unwrap_or(worker::UNKNOWN_EXIT));
        }
        self.settle_groups();
        self.recheck_adopted_groups();
    }

    /// Looks again, in a moment, at the groups of adopted processes that exited while members of their
    /// groups lived on: no exit of those members will say when they are gone.
    fn recheck_adopted_groups(&self) {
        let waiting = self.workers.values().any(|w| {
            matches!(w.state, State::Stopping { process, leader_gone: true } if process.adopted)
        }) || self
            .retiring
            .iter()
            .any(|r| r.leader_gone && r.process.adopted);
        if waiting {
            self.arm(Duration::from_millis(100), Timer::Wake);
        }
    }

    /// Finishes the stops whose groups are empty now: a group member's exit may have emptied a group whose
    /// leader was gone already. (An adopted group's members are not this keeper's children: their exits
    /// are not seen here, and the sampling tick looks again.)
    pub(super) fn settle_groups(&mut self) {
        let stopping: Vec<u32> = self
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
        for id in stopping {
            self.finish_stop_if_group_empty(id);
        }
        for index in (0..self.retiring.len()).rev() {
            self.finish_retiring(index);
        }
    }

    fn process_exited(&mut self, loc: Loc, status: i32) {
        let Some(mut process) = self.process_at(loc) else {
            return;
        };
        if !process.exec_ok && matches!(loc, Loc::Slot(_) | Loc::Successor(_)) {
            // Whether exec even succeeded is not known yet; the exec result will replay this exit.
            process.early_exit = Some(status);
            self.put(loc, process);
            return;
        }
        match loc {
            Loc::Slot(id) => self.slot_exited(id, process, status),
            Loc::Successor(id) => {
                // Marked gone, so that retiring it waits only for the rest of its group.
                process.early_exit = Some(status);
                self.put(loc, process);
                let how = worker::describe_exit(status);
                let reason = format!(
                    "replacement pid {} exited ({how}) before it was ready",
                    process.pid
                );
                self.fail_successor(id, reason);
            }
            Loc::Retiring(index) => {
                if let Some(r) = self.retiring.get_mut(index) {
                    r.leader_gone = true;
                }
                self.finish_retiring(index);
            }
        }
    }

    fn slot_exited(&mut self, id: u32, process: Process, status: i32) {
        if self.job_run_exited(id, process, status) {
            return;
        }
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let how = worker::describe_exit(status);
        match worker.state {
            State::Running(_) => {
                let uptime = process.started.elapsed();
                warn!(app = %worker.app, instance = worker.instance, pid = process.pid, exit = %how, ?uptime, "worker exited unexpectedly");
                worker.last_exit = Some(match worker.kill_reason.take() {
                    Some(reason) => format!("{reason}: killed ({how})"),
                    None => how,
                });
                worker.last_exit_at = Some(SystemTime::now());
                let reason = worker.last_exit.clone();
                let mut details = super::events::exit_details(status, Some(uptime));
                self.emit_worker(EventKind::Exited, id, Some(process.pid), details.clone());
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                // What the worker left running in its group, or outside it, goes with it. (An adopted
                // worker may have been reaped by its parent already: see `groups.rs`.)
                signal_group(process.pid, process.adopted, Some(Signal::SIGKILL));
                let (app, instance) = (worker.app.clone(), worker.instance);
                self.end_escapees(&app, instance);
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                if let Some(successor) = worker.successor.take() {
                    // A reload was bringing up its replacement: that one takes the slot now.
                    worker.epoch += 1;
                    worker.state = State::Running(successor);
                    return;
                }
                let Some(app) = self.apps.get(&worker.app) else {
                    return;
                };
                let finished = libc::WIFEXITED(status)
                    && app
                        .spec
                        .stop_exit_codes
                        .contains(&libc::WEXITSTATUS(status));
                if finished || !app.spec.autorestart {
                    let why = if finished {
                        "a stop exit code"
                    } else {
                        "autorestart is off"
                    };
                    info!(app = %worker.app, instance = worker.instance, "not restarted: {why}");
                    worker.last_exit = worker
                        .last_exit
                        .take()
                        .map(|e| format!("{e} ({why}: not restarted)"));
                    worker.epoch += 1;
                    worker.state = State::Stopped;
                    return;
                }
                details.reason = reason;
                details.restarts = Some(worker.restarts);
                self.emit_worker(EventKind::Crashed, id, Some(process.pid), details);
                self.crashed(id, uptime, process.ready);
            }
            State::Stopping { process, .. } => {
                worker.last_exit = Some(how);
                worker.last_exit_at = Some(SystemTime::now());
                let uptime = process.started.elapsed();
                self.emit_worker(
                    EventKind::Exited,
                    id,
                    Some(process.pid),
                    super::events::exit_details(status, Some(uptime)),
                );
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                worker.state = State::Stopping {
                    process,
                    leader_gone: true,
                };
                self.finish_stop_if_group_empty(id);
            }
            _ => {}
        }
    }

    /// A reload's replacement failed: kill it, and leave the slot's current process serving.
    pub(super) fn fail_successor(&mut self, id: u32, reason: String) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(successor) = worker.successor.take() else {
            return;
        };
        warn!(app = %worker.app, instance = worker.instance, %reason, "reload of this worker failed");
        worker.last_exit = Some(reason.clone());
        worker.last_exit_at = Some(SystemTime::now());
        worker.reload_failure = Some(reason.clone());
        let (app, instance) = (worker.app.clone(), worker.instance);
        self.retire(&app, instance, successor, Signal::SIGKILL);
        let details = EventDetails {
            reason: Some(reason),
            ..EventDetails::default()
        };
        self.emit_worker(EventKind::ReloadFailed, id, Some(successor.pid), details);
        self.hung_replacement_failed(id);
    }

    fn crashed(&mut self, id: u32, uptime: Duration, ready: bool) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(app) = self.apps.get(&worker.app) else {
            return;
        };
        let policy = RestartPolicy {
            min_uptime: Duration::from_millis(app.spec.min_uptime_ms),
            max_restarts: app.spec.max_restarts,
            backoff: Duration::from_millis(app.spec.restart_backoff_ms),
            backoff_max: Duration::from_millis(app.spec.restart_backoff_max_ms),
        };
        let (decision, unstable) = worker::after_crash(&policy, uptime, ready, worker.unstable);
        worker.unstable = unstable;
        worker.epoch += 1;
        match decision {
            AfterCrash::Restart => {
                worker.restarts += 1;
                let restarts = worker.restarts;
                self.start_worker(id);
                self.emit_restarted(id, restarts);
            }
            AfterCrash::Wait(delay) => {
                info!(app = %worker.app, instance = worker.instance, ?delay, "backing off before the next start");
                worker.state = State::Waiting {
                    until: std::time::Instant::now() + delay,
                };
                let epoch = worker.epoch;
                self.arm(delay, Timer::Restart { worker: id, epoch });
            }
            AfterCrash::GiveUp => {
                warn!(app = %worker.app, instance = worker.instance, unstable, "too many quick crashes: errored");
                worker.state = State::Errored;
                let details = EventDetails {
                    reason: Some(format!("{unstable} quick crashes in a row")),
                    restarts: Some(worker.restarts),
                    ..EventDetails::default()
                };
                self.emit_worker(EventKind::Errored, id, None, details);
            }
        }
    }
}
