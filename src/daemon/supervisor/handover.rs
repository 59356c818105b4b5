//! The supervisor's part of `herdsman update`: the keeper re-executes itself in place on a new executable
//! (same pid, so every worker stays its child), and the new image takes over this state.
//!
//! Only a quiet keeper is moved: no rollout, no parked request, no process starting or stopping. Then a
//! worker is fully described by plain data (pid, counters, how long it has run) and the descriptors it
//! needs held (its app's sockets, the copies of its log pipes), which are inherited as numbers. A keeper
//! that is not quiet refuses with the reason, and the CLI tries again for a while.
//!
//! Before it answers, the keeper runs the new executable's self-check (`herdsman upgrade-check`), which
//! must read this very state back; a binary that is missing, cannot run, or cannot read it changes nothing.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::app::App;
use super::{Message, Supervisor, Timer, Worker};
use crate::config::{AppSpec, ListenAddr};
use crate::daemon::listener::Listener;
use crate::daemon::worker::{OnExit, Process, State as Slot};
use crate::logs::handle::Carried as CarriedLogs;
use crate::protocol::{ErrorKind, Response};

/// How long a re-exec waits for the answers being written.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long the new executable's self-check may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// The supervisor's state, as carried over an in-place re-exec.
#[derive(Debug, Serialize, Deserialize)]
pub struct Carried {
    pub next_id: u32,
    pub next_serial: u64,
    pub watch_generation: u64,
    pub apps: Vec<AppState>,
    pub workers: Vec<WorkerState>,
    pub logs: CarriedLogs,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppState {
    pub spec: AppSpec,
    pub created_ms: u64,
    pub listeners: Vec<ListenerState>,
    pub workers: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListenerState {
    pub fd: RawFd,
    pub addr: ListenAddr,
    pub unix_path: Option<(PathBuf, (u64, u64))>,
    /// A worker slot's own socket (`balance`): the slot's id and instance. Such sockets come in the
    /// kernel's order of their reuseport group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<(u32, u32)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerState {
    pub id: u32,
    pub app: String,
    pub instance: u32,
    pub run: Run,
    pub restarts: u32,
    pub unstable: u32,
    pub last_exit: Option<String>,
    pub last_exit_at_ms: Option<u64>,
    pub memory_restarts: u32,
    pub started_once: bool,
    pub epoch: u64,
    pub intent: u64,
}

/// What a quiet slot is doing.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Run {
    /// Ready, for this long.
    Running {
        pid: i32,
        serial: u64,
        age_ms: u64,
        /// Adopted from a killed keeper (see `adoption.rs`): its exit is watched through a pidfd.
        #[serde(default)]
        adopted: bool,
    },
    /// Crashed; started again in this long.
    Waiting {
        in_ms: u64,
    },
    Stopped,
    Errored,
}

pub(super) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn from_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Supervisor {
    /// Why the keeper cannot be moved now, if it cannot.
    pub(super) fn busy(&self) -> Option<String> {
        if !self.rollouts.is_empty() {
            return Some("a reload, a scale or an ecosystem file is in progress".to_string());
        }
        if !self.pending.is_empty() {
            return Some("a request is waiting for workers to start or stop".to_string());
        }
        if let Some(retiring) = self.retiring.first() {
            return Some(format!(
                "an old worker of {} is being stopped",
                retiring.app
            ));
        }
        self.workers.values().find_map(|w| {
            let what = match w.state {
                _ if w.successor.is_some() => "being replaced",
                Slot::Running(p) if !(p.exec_ok && p.ready) || p.early_exit.is_some() => "starting",
                Slot::Running(_) if w.on_exit != OnExit::Crash => "being restarted",
                Slot::Running(_) if w.draining.is_some() => "draining before it stops",
                Slot::Stopping { .. } => "stopping",
                _ => return None,
            };
            Some(format!("worker {}:{} is {what}", w.app, w.instance))
        })
    }

    /// The state to carry over, and every descriptor it names.
    pub(super) fn carry(&self) -> (Carried, Vec<RawFd>) {
        let mut fds = Vec::new();
        let apps = self
            .apps
            .values()
            .map(|app| AppState {
                spec: app.spec.clone(),
                created_ms: epoch_ms(app.created),
                listeners: app
                    .listeners
                    .iter()
                    .map(|l| {
                        let (addr, unix_path) = l.parts();
                        ListenerState {
                            fd: l.fd().as_raw_fd(),
                            addr,
                            unix_path,
                            slot: None,
                        }
                    })
                    .chain(app.slots.iter().flat_map(|slots| slots.parts()).map(
                        |(addr, slot, fd)| {
                            let instance = self.workers.get(&slot).map_or(0, |w| w.instance);
                            ListenerState {
                                fd: fd.as_raw_fd(),
                                addr,
                                unix_path: None,
                                slot: Some((slot, instance)),
                            }
                        },
                    ))
                    .collect(),
                workers: app.workers.clone(),
            })
            .collect::<Vec<AppState>>();
        fds.extend(apps.iter().flat_map(|a| a.listeners.iter().map(|l| l.fd)));
        let now = Instant::now();
        let workers = self
            .workers
            .iter()
            .map(|(&id, w)| WorkerState {
                id,
                app: w.app.clone(),
                instance: w.instance,
                run: match w.state {
                    Slot::Running(p) => Run::Running {
                        pid: p.pid,
                        serial: p.serial,
                        age_ms: now.duration_since(p.started).as_millis() as u64,
                        adopted: p.adopted,
                    },
                    Slot::Waiting { until } => Run::Waiting {
                        in_ms: until.saturating_duration_since(now).as_millis() as u64,
                    },
                    Slot::Errored => Run::Errored,
                    Slot::Stopped | Slot::Stopping { .. } => Run::Stopped,
                },
                restarts: w.restarts,
                unstable: w.unstable,
                last_exit: w.last_exit.clone(),
                last_exit_at_ms: w.last_exit_at.map(epoch_ms),
                memory_restarts: w.memory_restarts,
                started_once: w.started_once,
                epoch: w.epoch,
                intent: w.intent,
            })
            .collect();
        let logs = self.logs.carry();
        fds.extend(logs.fds());
        let state = Carried {
            next_id: self.next_id,
            next_serial: self.next_serial,
            watch_generation: self.watch_generation,
            apps,
            workers,
            logs,
        };
        (state, fds)
    }

    /// `update`: checks the keeper can be moved and the new executable passes its self-check, then answers
    /// and waits for [`Message::Reexec`] (sent once the answer is on its way) to re-execute.
    pub(super) fn update(&mut self, binary: PathBuf) -> Response {
        let Some(context) = &self.exec_context else {
            return Response::error(
                ErrorKind::Conflict,
                "this daemon runs inside `herdsman run` (a container's entry point): update it by \
                 restarting the container with the new image",
            );
        };
        if self.shutting_down {
            return Response::error(ErrorKind::Conflict, "the daemon is shutting down");
        }
        if let Some(reason) = self.busy() {
            return Response::error(
                ErrorKind::Conflict,
                format!("busy: {reason}; the update waits until it is done"),
            );
        }
        let (state, _) = self.carry();
        let handover =
            crate::daemon::handover::Handover::new(context, state, self.controller.as_deref());
        if let Err(message) =
            crate::daemon::handover::self_check(&binary, &handover, CHECK_DEADLINE)
        {
            warn!(binary = %binary.display(), %message, "update refused");
            self.last_update_error = Some(message.clone());
            return Response::error(ErrorKind::Invalid, message);
        }
        info!(binary = %binary.display(), "self-check passed: re-executing in place once the answer is sent");
        self.update_to = Some(binary);
        Response::Ok
    }

    /// Re-executes the keeper on the binary `update` checked. Returns only if that failed: then the old
    /// image goes on as if nothing happened, and `version` says why.
    pub(super) fn reexec(&mut self) {
        let Some(binary) = self.update_to.take() else {
            return;
        };
        if self.exec_context.is_none() {
            return;
        }
        // The jobs' last changes are in their journal before the new image reads it.
        self.save_jobs();
        let Some(context) = &self.exec_context else {
            return;
        };
        // Answers still being written (a reload that just finished) would be lost with their connections:
        // look again in a moment, for a few seconds at most.
        if crate::daemon::server::answers_in_flight() > 0 {
            let since = *self.reexec_waiting.get_or_insert_with(Instant::now);
            if since.elapsed() < FLUSH_DEADLINE {
                self.update_to = Some(binary);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = tx.send(Message::Reexec);
                });
                return;
            }
            warn!("answers are still being written after {FLUSH_DEADLINE:?}: re-executing anyway");
        }
        self.reexec_waiting = None;
        if let Some(reason) = self.busy() {
            let message = format!("the update was not made: {reason}");
            warn!(%message);
            self.last_update_error = Some(message);
            return;
        }
        let (state, fds) = self.carry();
        let mut handover =
            crate::daemon::handover::Handover::new(context, state, self.controller.as_deref());
        handover.updates = self.updates + 1;
        info!(binary = %binary.display(), "re-executing the keeper in place");
        let error = crate::daemon::handover::exec(&binary, &handover, &fds);
        error!(binary = %binary.display(), %error, "the update failed: this keeper goes on");
        self.last_update_error = Some(error);
    }

    /// The supervisor of a keeper that was just re-executed in place, from the state its old image left.
    ///
    /// # Safety
    /// Every descriptor `state` names must be open, inherited for this purpose, and owned by nothing else.
    pub unsafe fn restore(
        home: crate::home::Home,
        tx: tokio::sync::mpsc::UnboundedSender<Message>,
        notify_socket: String,
        state: Carried,
        updates: u32,
    ) -> Supervisor {
        let mut supervisor = Supervisor::new(home, tx, notify_socket);
        supervisor.next_id = state.next_id;
        supervisor.next_serial = state.next_serial;
        supervisor.watch_generation = state.watch_generation;
        supervisor.updates = updates;
        // SAFETY: the caller vouches for the descriptors.
        supervisor.logs = unsafe { crate::logs::Keeper::restore(state.logs) };
        for app in state.apps {
            let name = app.spec.name.clone();
            let mut listeners = Vec::new();
            let mut slot_sockets = Vec::new();
            for l in app.listeners {
                // SAFETY: the caller vouches for the descriptors.
                let fd = unsafe { OwnedFd::from_raw_fd(l.fd) };
                match l.slot {
                    Some((slot, instance)) => slot_sockets.push((l.addr, slot, instance, fd)),
                    None => listeners.push(Listener::from_parts(fd, l.addr, l.unix_path)),
                }
            }
            match App::restore(
                app.spec,
                &supervisor.home,
                listeners,
                from_epoch_ms(app.created_ms),
            ) {
                Ok(mut restored) => {
                    if let Some(slots) = restored.slots.as_mut() {
                        for (addr, slot, _instance, fd) in slot_sockets {
                            slots.restore(&addr, slot, fd);
                        }
                    }
                    restored.workers = app.workers;
                    supervisor.apps.insert(name, Box::new(restored));
                }
                Err(message) => error!(app = %name, %message, "cannot take the app over"),
            }
        }
        let now = Instant::now();
        for w in state.workers {
            let known = supervisor.apps.contains_key(&w.app);
            let state = match w.run {
                Run::Running {
                    pid,
                    serial,
                    age_ms,
                    adopted,
                } => {
                    let process = Process {
                        pid,
                        serial,
                        started: now
                            .checked_sub(Duration::from_millis(age_ms))
                            .unwrap_or(now),
                        exec_ok: true,
                        ready: true,
                        early_exit: None,
                        adopted,
                        beat: None,
                    };
                    if !known {
                        // An app that could not be taken over cannot keep its workers.
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                        continue;
                    }
                    if adopted {
                        supervisor.watch_adopted(pid, None);
                    }
                    Slot::Running(process)
                }
                Run::Waiting { in_ms } => {
                    let delay = Duration::from_millis(in_ms);
                    supervisor.arm(
                        delay,
                        Timer::Restart {
                            worker: w.id,
                            epoch: w.epoch,
                        },
                    );
                    Slot::Waiting { until: now + delay }
                }
                Run::Stopped => Slot::Stopped,
                Run::Errored => Slot::Errored,
            };
            if !known {
                continue;
            }
            supervisor.workers.insert(
                w.id,
                Box::new(Worker {
                    app: w.app,
                    instance: w.instance,
                    state,
                    on_exit: OnExit::Crash,
                    restarts: w.restarts,
                    unstable: w.unstable,
                    last_exit: w.last_exit,
                    last_exit_at: w.last_exit_at_ms.map(from_epoch_ms),
                    memory_restarts: w.memory_restarts,
                    watchdog: Default::default(),
                    started_once: w.started_once,
                    epoch: w.epoch,
                    intent: w.intent,
                    successor: None,
                    reload_failure: None,
                    kill_reason: None,
                    draining: None,
                    spawn_failure: None,
                }),
            );
        }
        info!(
            apps = supervisor.apps.len(),
            workers = supervisor.workers.len(),
            "took over the state of the keeper's previous image"
        );
        supervisor
    }
}
