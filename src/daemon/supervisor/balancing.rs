//! The supervisor's side of `balance = "hash" | "sticky"` (the sockets and the kernel program are in
//! `daemon/balance/`): which slots are in each app's selection, taking a slot out of it before its worker
//! is stopped for good, and closing the sockets of slots that are gone.
//!
//! A slot is in the selection while its worker runs or is about to run again: running (a restart in
//! progress included) or waiting out a crash's backoff. Connections queued on its socket meanwhile wait for
//! the next process. A slot that is stopped, errored, being stopped for good, or draining is not: no new
//! connection is given to a socket nobody will accept on.
//!
//! Draining: a request that stops a running worker of such an app for good (a scale down, a delete, a
//! change of `instances`, a stop) first takes its slot out of the selection, then waits [`DRAIN`] (and
//! longer while its socket's accept queue is not empty, up to [`DRAIN_MAX`]) for the worker to accept what
//! the kernel had already queued on its socket, and only then sends the kill signal.
//! The slot's socket is closed once the slot is gone (a stopped slot keeps it, out of the selection).

use std::time::{Duration, Instant};

use tracing::info;

use super::{Supervisor, Timer};
use crate::config::{AppSpec, ListenAddr};
use crate::daemon::worker::{OnExit, State};

/// How long a worker taken out of the selection goes on accepting before it is told to stop, at least.
pub(super) const DRAIN: Duration = Duration::from_millis(150);
/// While connections are still queued on its socket after [`DRAIN`], it is given more time, up to this.
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(5);
/// How often the queue is looked at again meanwhile.
const DRAIN_RECHECK: Duration = Duration::from_millis(20);

/// Why a running app cannot take a new definition in place, if it cannot: its sockets would be of another
/// kind (balance changed) or at other addresses (a hash or sticky app's per-slot groups).
pub(super) fn change_refused(old: &AppSpec, new: &AppSpec) -> Option<String> {
    let both_listen = !old.listen.is_empty() && !new.listen.is_empty();
    if both_listen && old.balance != new.balance {
        return Some(format!(
            "balance cannot change from \"{}\" to \"{}\" while the app runs (its sockets are of another kind): \
             `herdsman delete {}`, then start it again",
            old.balance, new.balance, new.name
        ));
    }
    if both_listen && new.balance.per_slot() && old.listen != new.listen {
        return Some(format!(
            "the addresses of a balance \"{}\" app cannot change while it runs: `herdsman delete {}`, then start it again",
            new.balance, new.name
        ));
    }
    None
}

/// Whether two addresses would be the same TCP port's reuseport group.
fn same_port(a: &ListenAddr, b: &ListenAddr) -> bool {
    let port = |addr: &ListenAddr| match addr {
        ListenAddr::Port(p) => Some((*p, None)),
        ListenAddr::Tcp(sa) => Some((sa.port(), Some(sa.ip()))),
        ListenAddr::Unix(_) => None,
    };
    match (port(a), port(b)) {
        (Some((pa, ia)), Some((pb, ib))) => pa == pb && (ia.is_none() || ib.is_none() || ia == ib),
        _ => false,
    }
}

impl Supervisor {
    /// Another app's address that a hash or sticky app would share: its per-slot sockets would join that
    /// app's reuseport group instead of failing to bind.
    pub(super) fn address_conflict(&self, spec: &AppSpec) -> Option<String> {
        self.apps
            .values()
            .filter(|other| other.spec.name != spec.name)
            .filter(|other| spec.balance.per_slot() || other.spec.balance.per_slot())
            .find_map(|other| {
                let (mine, theirs) = spec.listen.iter().find_map(|mine| {
                    let theirs = other.spec.listen.iter().find(|t| same_port(mine, t))?;
                    Some((mine, theirs))
                })?;
                Some(format!(
                    "address {mine} is already app '{}''s ({theirs})",
                    other.spec.name
                ))
            })
    }

    /// Puts each hash or sticky app's selection in line with its slots' states, and closes the sockets of
    /// slots that are gone. Called after every message.
    pub(super) fn sync_balance(&mut self) {
        for (name, app) in self.apps.iter_mut() {
            let Some(slots) = app.slots.as_mut() else {
                continue;
            };
            if slots.is_empty() {
                continue;
            }
            let workers = &self.workers;
            // A process on its way out may hold the socket of a slot that is gone: it stays in the kernel's
            // group until that process exits, so the daemon's copy is closed only then (keeping the order).
            if !self.retiring.iter().any(|r| &r.app == name) {
                slots.retain(|id| app.workers.contains(&id));
            }
            let mut selected: Vec<(u32, u32)> = app
                .workers
                .iter()
                .filter_map(|&id| {
                    let w = workers.get(&id)?;
                    let serving = match w.state {
                        State::Running(_) | State::Waiting { .. } => w.draining.is_none(),
                        State::Stopping { .. } => {
                            matches!(w.on_exit, OnExit::Restart | OnExit::Crash)
                        }
                        State::Stopped | State::Errored => false,
                    };
                    (serving && slots.has(id)).then_some((w.instance, id))
                })
                .collect();
            selected.sort_unstable();
            slots.select(selected.into_iter().map(|(_, id)| id).collect());
        }
    }

    /// Takes a running worker of a hash or sticky app out of its app's selection before it is stopped for
    /// good; its kill signal follows after [`DRAIN`]. False where there is nothing to drain (another kind of
    /// app, nothing running, no other slot left to take its connections, the daemon shutting down): the
    /// caller stops it at once.
    pub(super) fn begin_drain(&mut self, id: u32, on_exit: OnExit) -> bool {
        if self.shutting_down || !matches!(on_exit, OnExit::Stop | OnExit::Remove) {
            return false;
        }
        let Some(worker) = self.workers.get(&id) else {
            return false;
        };
        if !matches!(worker.state, State::Running(_)) || worker.draining.is_some() {
            return worker.draining.is_some() && matches!(worker.state, State::Running(_));
        }
        let Some(app) = self.apps.get(&worker.app) else {
            return false;
        };
        if app.slots.as_ref().is_none_or(|s| !s.has(id)) {
            return false;
        }
        // Someone must be left to take the connections: another slot of the app that serves.
        let others = app.workers.iter().any(|other| {
            *other != id
                && self.workers.get(other).is_some_and(|w| {
                    matches!(w.state, State::Running(_) | State::Waiting { .. })
                        && w.draining.is_none()
                })
        });
        if !others {
            return false;
        }
        let Some(worker) = self.workers.get_mut(&id) else {
            return false;
        };
        info!(app = %worker.app, instance = worker.instance, "taken out of the selection: draining before it stops");
        worker.draining = Some(on_exit);
        worker.on_exit = on_exit;
        let intent = worker.intent;
        self.sync_balance();
        self.arm(
            DRAIN,
            Timer::Drain {
                worker: id,
                intent,
                since: Instant::now(),
            },
        );
        true
    }

    /// A drain ran its time: the worker is told to stop now, unless a later request took it over, or
    /// connections are still queued on its socket (then it is looked at again, up to [`DRAIN_MAX`]).
    pub(super) fn drained(&mut self, id: u32, intent: u64, since: Instant) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let Some(on_exit) = worker.draining else {
            return;
        };
        if worker.intent != intent {
            return;
        }
        let queued = self
            .apps
            .get(&worker.app)
            .and_then(|a| a.slots.as_ref())
            .map_or(0, |s| s.queued(id));
        if queued > 0 && matches!(worker.state, State::Running(_)) && since.elapsed() < DRAIN_MAX {
            self.arm(
                DRAIN_RECHECK,
                Timer::Drain {
                    worker: id,
                    intent,
                    since,
                },
            );
            return;
        }
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.draining = None;
        match worker.state {
            State::Running(_) | State::Stopping { .. } => self.signal_stop(id, on_exit),
            // It crashed meanwhile (and waits out its backoff): stopped now, as a stop of a slot that is
            // not running is.
            State::Waiting { .. } | State::Stopped | State::Errored => {
                worker.epoch += 1;
                worker.state = State::Stopped;
                if on_exit == OnExit::Remove {
                    self.remove_worker(id);
                }
            }
        }
    }
}
