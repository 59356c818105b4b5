//! The watchdog in the supervisor: heartbeats, the one timer for the next deadline, and what a miss does.
//!
//! Heartbeats (`WATCHDOG=1` on the notify socket, `W` on a Node worker's pipe) only move a process's
//! deadline later, so the armed timer is never later than the earliest real deadline: when it fires, every
//! watched process is looked at ([`crate::daemon::watchdog::verdict`]), the hung ones are dealt with, and
//! the timer is armed again for the earliest deadline left. No timer runs while nothing is watched.
//!
//! - Hung after a good run: replaced as one worker is by a reload (its successor is started and made ready
//!   first); when the successor takes over, the hung process gets the app's `watchdog_signal` (SIGABRT),
//!   a second later (at most the kill timeout) the kill signal, and SIGKILL after the kill timeout.
//! - Hung at start (not ready, or silent before `min_uptime`): the watchdog signal, then SIGKILL a moment
//!   later; its exit is a crash, so the restart policy's backoff applies.
//! - A reload's successor silent too long fails that reload; the current worker goes on serving.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::warn;

use super::lifecycle::Loc;
use super::{Supervisor, Timer};
use crate::daemon::groups::signal_group;
use crate::daemon::watchdog::{Heartbeat, Verdict, report_time, verdict};
use crate::daemon::worker::{Process, State};
use crate::protocol::Selection;

/// A slot's watchdog counts.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SlotWatch {
    /// Deadlines missed by the slot's processes.
    pub misses: u32,
    /// Times a process of the slot was found hung and replaced or killed.
    pub hung: u32,
    /// The hung process being replaced: it retires with the watchdog signal.
    pub replacing: Option<u64>,
}

/// The one watchdog timer.
#[derive(Debug, Default)]
pub(super) struct Armed {
    /// The deadline it is armed for.
    at: Option<Instant>,
    /// Bumped whenever it is armed, so that an earlier one firing late is ignored.
    generation: u64,
}

impl Supervisor {
    /// `WATCHDOG=1` from a process (or a member of its group).
    pub(super) fn heartbeat(&mut self, pid: i32, group: Option<i32>) {
        let Some(loc) = self
            .locate_pid(pid)
            .or_else(|| group.and_then(|g| self.locate_pid(g)))
        else {
            return;
        };
        let Some(mut process) = self.process_at(loc) else {
            return;
        };
        let now = Instant::now();
        process.beat = Some(now);
        self.put(loc, process);
        if let Some(period) = self.app_of(loc).and_then(|a| a.spec.watchdog) {
            // A process that was not watched (handed over, adopted) is from its first heartbeat on.
            self.arm_watchdog(now + Duration::from_millis(period.period_ms));
        }
    }

    /// Arms the watchdog timer for this deadline, unless it is armed for an earlier one.
    pub(super) fn arm_watchdog(&mut self, deadline: Instant) {
        if self.watchdog_armed.at.is_some_and(|at| at <= deadline) {
            return;
        }
        self.watchdog_armed.generation += 1;
        self.watchdog_armed.at = Some(deadline);
        let generation = self.watchdog_armed.generation;
        let delay = deadline.saturating_duration_since(Instant::now());
        self.arm(delay, Timer::Watchdog { generation });
    }

    /// The watchdog timer fired: deal with every process past its deadline, and arm for the next one.
    pub(super) fn watchdog_tick(&mut self, generation: u64) {
        if generation != self.watchdog_armed.generation {
            return;
        }
        self.watchdog_armed.at = None;
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut hung: Vec<(Loc, Process, Verdict)> = Vec::new();
        for (&id, w) in &self.workers {
            let Some(app) = self.apps.get(&w.app) else {
                continue;
            };
            let Some(period) = app.spec.watchdog else {
                continue;
            };
            let period = Duration::from_millis(period.period_ms);
            let min_uptime = Duration::from_millis(app.spec.min_uptime_ms);
            let current = match w.state {
                State::Running(p) if w.watchdog.replacing != Some(p.serial) => Some(p),
                _ => None,
            };
            let watched = [
                current.map(|p| (Loc::Slot(id), p)),
                w.successor.map(|p| (Loc::Successor(id), p)),
            ];
            for (loc, p) in watched.into_iter().flatten() {
                let Some(beat) = p.beat else {
                    continue;
                };
                let heartbeat = Heartbeat {
                    started: p.started,
                    beat,
                    ready: p.ready,
                };
                match verdict(now, heartbeat, period, min_uptime) {
                    Verdict::Alive { deadline } => {
                        next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    }
                    v => hung.push((loc, p, v)),
                }
            }
        }
        for (loc, process, v) in hung {
            self.hung(loc, process, v);
        }
        if let Some(next) = next {
            self.arm_watchdog(next);
        }
    }

    fn hung(&mut self, loc: Loc, process: Process, v: Verdict) {
        let (Verdict::Hung { silent } | Verdict::HungAtStart { silent }) = v else {
            return;
        };
        let (Loc::Slot(id) | Loc::Successor(id)) = loc else {
            return;
        };
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.watchdog.misses += 1;
        worker.watchdog.hung += 1;
        let (app, instance) = (worker.app.clone(), worker.instance);
        let reason = format!("hung: no WATCHDOG=1 for {} ms", silent.as_millis());
        warn!(app = %app, instance, pid = process.pid, silent_ms = silent.as_millis() as u64, "worker hung (watchdog)");
        let details = crate::protocol::EventDetails {
            silent_ms: Some(silent.as_millis() as u64),
            reason: Some(match v {
                Verdict::HungAtStart { .. } => "hung right after its start: a crash".to_string(),
                _ => "hung: replaced, its successor ready first".to_string(),
            }),
            ..Default::default()
        };
        self.emit(
            crate::protocol::EventKind::Hung,
            &app,
            Some(instance),
            Some(process.pid),
            details,
        );
        let signal = self.watchdog_signal_of(&app);
        match (loc, v) {
            (Loc::Successor(_), _) => self.fail_successor(id, reason),
            (_, Verdict::Hung { .. }) => {
                if let Some(worker) = self.workers.get_mut(&id) {
                    worker.watchdog.replacing = Some(process.serial);
                }
                // Nobody waits for this reload's answer.
                let (reply, _) = tokio::sync::mpsc::unbounded_channel();
                if let Err(response) = self.reload(&Selection::Id(id), None, reply) {
                    warn!(?response, "cannot replace the hung worker: killing it");
                    self.kill_hung_slot(id, process, signal, reason);
                }
            }
            _ => self.kill_hung_slot(id, process, signal, reason),
        }
    }

    /// A slot's hung process is killed, its exit a crash: the watchdog signal now, SIGKILL a moment later.
    fn kill_hung_slot(&mut self, id: u32, process: Process, signal: Signal, reason: String) {
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.kill_reason = Some(reason);
            worker.watchdog.replacing = None;
        }
        signal_group(process.pid, process.early_exit.is_some(), Some(signal));
        let timeout = self.kill_timeout_of_slot(id);
        self.arm(
            report_time(timeout),
            Timer::HungKill {
                serial: process.serial,
            },
        );
    }

    /// The process of the hung slot replaced by its successor retires: the watchdog signal first.
    /// Returns whether `process` was such a one (and has been dealt with).
    pub(super) fn retire_hung(&mut self, id: u32, process: Process) -> bool {
        let Some(worker) = self.workers.get_mut(&id) else {
            return false;
        };
        if worker.watchdog.replacing != Some(process.serial) {
            return false;
        }
        worker.watchdog.replacing = None;
        let (app, instance) = (worker.app.clone(), worker.instance);
        let signal = self.watchdog_signal_of(&app);
        // Retired with the watchdog signal; `Timer::HungKill` then sends the kill signal, and arms the kill
        // timeout.
        self.retire_with(&app, instance, process, signal, false);
        let timeout = self.kill_timeout_of_slot(id);
        self.arm(
            report_time(timeout),
            Timer::HungKill {
                serial: process.serial,
            },
        );
        true
    }

    /// After the watchdog signal: a hung slot's process is SIGKILLed (its exit is a crash); a retiring one
    /// gets the kill signal, and SIGKILL after the kill timeout.
    pub(super) fn hung_kill(&mut self, serial: u64) {
        let Some(loc) = self.locate(serial) else {
            return;
        };
        match loc {
            Loc::Slot(id) => {
                if let Some(State::Running(p)) = self.workers.get(&id).map(|w| w.state) {
                    signal_group(p.pid, p.early_exit.is_some(), Some(Signal::SIGKILL));
                }
            }
            Loc::Retiring(i) => {
                let Some(r) = self.retiring.get(i) else {
                    return;
                };
                let (pid, gone, app) = (r.process.pid, r.leader_gone, r.app.clone());
                let (signal, timeout) =
                    self.apps
                        .get(&app)
                        .map_or((Signal::SIGTERM, Duration::ZERO), |a| {
                            (
                                a.spec.kill_signal.0,
                                Duration::from_millis(a.spec.kill_timeout_ms),
                            )
                        });
                signal_group(pid, gone, Some(signal));
                self.arm(timeout, Timer::Kill { serial });
                self.finish_retiring(i);
            }
            Loc::Successor(_) => {}
        }
    }

    /// The reload replacing a hung process failed (its successor did not get ready): it is killed, and its
    /// exit is a crash.
    pub(super) fn hung_replacement_failed(&mut self, id: u32) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let (Some(serial), State::Running(process)) = (worker.watchdog.replacing, worker.state)
        else {
            return;
        };
        if process.serial != serial {
            return;
        }
        let signal = self.watchdog_signal_of(&worker.app.clone());
        let reason = "hung, and its replacement did not get ready".to_string();
        self.kill_hung_slot(id, process, signal, reason);
    }

    fn watchdog_signal_of(&self, app: &str) -> Signal {
        self.apps
            .get(app)
            .and_then(|a| a.spec.watchdog)
            .map_or(Signal::SIGABRT, |w| w.signal())
    }

    fn kill_timeout_of_slot(&self, id: u32) -> Duration {
        self.workers
            .get(&id)
            .and_then(|w| self.apps.get(&w.app))
            .map_or(Duration::ZERO, |a| {
                Duration::from_millis(a.spec.kill_timeout_ms)
            })
    }
}
