//! The hooks of apps (`on_event`): which event runs one, at most one at a time per app, a bounded number
//! in a storm, each with a timeout, none blocking the keeper.
//!
//! - An event with a hook runs it at once when none of the app's runs; otherwise it waits, one at most (the
//!   first to come). Further events are suppressed and counted.
//! - An app runs at most [`PER_MINUTE`] hooks in a minute; the events over that are suppressed and counted
//!   (`describe` shows the count; the next hook that runs gets it in `HERDSMAN_SUPPRESSED`).
//! - A hook still running after [`TIMEOUT`] is killed with its process group, and counts as failed.
//! - Its exit is collected by the reaper: a non-zero one is a failure, logged, shown in `describe` and
//!   recorded as a `hook-failed` event (which has no hook of its own).
//!
//! The hook is spawned with the shared machinery of `daemon/hook.rs` (as a job's `on_failure`): `/bin/sh -c`
//! in the app's cwd, as the app's user, its output in the daemon's log, the event as JSON on its stdin.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::{Supervisor, Timer};
use crate::protocol::{Event, EventDetails, EventKind, HookStatus};

/// Hooks an app may run in a minute.
pub const PER_MINUTE: u32 = 5;
/// How long a hook may run.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(60);

/// What to do with an event that has a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Run,
    Wait,
    Suppress,
}

/// The allowance of one app: hooks run in the current minute.
#[derive(Debug, Default, Clone, Copy)]
pub struct Window {
    start: Option<Instant>,
    ran: u32,
}

/// Decides about an event with a hook, given whether one of the app's hooks runs and whether an event
/// waits already. A `Run` is counted in the window.
pub fn admit(window: &mut Window, now: Instant, running: bool, waiting: bool) -> Admit {
    if window
        .start
        .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW)
    {
        *window = Window {
            start: Some(now),
            ran: 0,
        };
    }
    if window.ran >= PER_MINUTE {
        return Admit::Suppress;
    }
    match (running, waiting) {
        (false, _) => {
            window.ran += 1;
            Admit::Run
        }
        (true, false) => Admit::Wait,
        (true, true) => Admit::Suppress,
    }
}

/// One hook running.
struct Running {
    pid: i32,
    serial: u64,
    event: EventKind,
}

/// One app's hooks.
#[derive(Default)]
struct AppHooks {
    running: Option<Running>,
    waiting: Option<Event>,
    window: Window,
    status: HookStatus,
    /// Suppressed since the last hook that ran.
    suppressed_since: u32,
}

#[derive(Default)]
pub(super) struct Hooks {
    apps: HashMap<String, AppHooks>,
    next_serial: u64,
}

impl Supervisor {
    /// Runs the app's hook for this event, if it has one (or lets it wait, or suppresses it).
    pub(super) fn run_hook(&mut self, event: Event) {
        let Some(hook) = event.event.hook() else {
            return;
        };
        if !self
            .apps
            .get(&event.app)
            .is_some_and(|a| a.spec.on_event.contains_key(hook))
        {
            return;
        }
        let hooks = self.hooks.apps.entry(event.app.clone()).or_default();
        let now = Instant::now();
        match admit(
            &mut hooks.window,
            now,
            hooks.running.is_some(),
            hooks.waiting.is_some(),
        ) {
            Admit::Run => self.start_hook(event),
            Admit::Wait => hooks.waiting = Some(event),
            Admit::Suppress => {
                hooks.status.suppressed += 1;
                hooks.suppressed_since += 1;
                warn!(app = %event.app, event = event.event.as_str(), suppressed = hooks.status.suppressed, "hook suppressed (one runs and one waits, or {PER_MINUTE} ran this minute)");
            }
        }
    }

    fn start_hook(&mut self, event: Event) {
        let Some(hook) = event.event.hook() else {
            return;
        };
        let Some(app) = self.apps.get(&event.app) else {
            return;
        };
        let Some(command) = app.spec.on_event.get(hook) else {
            return;
        };
        let hooks = self.hooks.apps.entry(event.app.clone()).or_default();
        let suppressed = std::mem::take(&mut hooks.suppressed_since);
        let json = serde_json::to_vec(&event).unwrap_or_default();
        let mut env: Vec<(String, String)> = app
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend([
            (
                "HERDSMAN_EVENT".to_string(),
                event.event.as_str().to_string(),
            ),
            ("HERDSMAN_APP".to_string(), event.app.clone()),
            ("HERDSMAN_SUPPRESSED".to_string(), suppressed.to_string()),
            ("HERDSMAN_AT_MS".to_string(), event.at_ms.to_string()),
        ]);
        let optional = [
            ("HERDSMAN_INSTANCE", event.instance.map(|i| i.to_string())),
            ("HERDSMAN_PID", event.pid.map(|p| p.to_string())),
            ("HERDSMAN_EXIT", event.details.exit.clone()),
            ("HERDSMAN_REASON", event.details.reason.clone()),
            ("HERDSMAN_RUN_ID", event.details.run_id.clone()),
        ];
        env.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?))),
        );
        let spawned = crate::daemon::hook::spawn(crate::daemon::hook::Hook {
            command,
            cwd: &app.spec.cwd,
            env,
            credentials: app.credentials.as_ref(),
            stdin: Some(&json),
            output: None,
        });
        hooks.status.ran += 1;
        match spawned {
            Ok(pid) => {
                info!(app = %event.app, event = event.event.as_str(), pid, "hook started");
                self.hooks.next_serial += 1;
                let serial = self.hooks.next_serial;
                hooks.running = Some(Running {
                    pid: pid as i32,
                    serial,
                    event: event.event,
                });
                self.arm(
                    TIMEOUT,
                    Timer::HookTimeout {
                        pid: pid as i32,
                        serial,
                    },
                );
            }
            Err(e) => {
                let app = event.app.clone();
                self.hook_failed(&app, event.event, format!("cannot start: {e}"));
            }
        }
    }

    /// A reaped child: if it is a hook, how it ended; the app's waiting event runs next.
    pub(super) fn hook_exited(&mut self, pid: i32, status: i32) {
        let Some((app, hooks)) = self
            .hooks
            .apps
            .iter_mut()
            .find(|(_, h)| h.running.as_ref().is_some_and(|r| r.pid == pid))
        else {
            return;
        };
        let app = app.clone();
        let Some(running) = hooks.running.take() else {
            return;
        };
        if status != 0 {
            let how = crate::daemon::worker::describe_exit(status);
            self.hook_failed(&app, running.event, format!("exited with {how}"));
        }
        self.next_hook(&app);
    }

    /// A hook ran out of time: its group is killed; its exit is collected as any other.
    pub(super) fn hook_timeout(&mut self, pid: i32, serial: u64) {
        let running = self.hooks.apps.iter().find_map(|(app, h)| {
            h.running
                .as_ref()
                .filter(|r| r.pid == pid && r.serial == serial)
                .map(|r| (app.clone(), r.event))
        });
        let Some((app, event)) = running else {
            return;
        };
        // Not reaped yet (it is in `running` until then), so the group's id is still its own.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        self.hook_failed(
            &app,
            event,
            format!("timed out after {} s: killed", TIMEOUT.as_secs()),
        );
        // Its exit (by SIGKILL) is not a second failure.
        if let Some(h) = self.hooks.apps.get_mut(&app)
            && let Some(r) = h.running.as_mut()
        {
            r.event = EventKind::HookFailed;
        }
    }

    fn next_hook(&mut self, app: &str) {
        let Some(hooks) = self.hooks.apps.get_mut(app) else {
            return;
        };
        let Some(event) = hooks.waiting.take() else {
            return;
        };
        match admit(&mut hooks.window, Instant::now(), false, false) {
            Admit::Run => self.start_hook(event),
            _ => {
                hooks.status.suppressed += 1;
                hooks.suppressed_since += 1;
            }
        }
    }

    fn hook_failed(&mut self, app: &str, event: EventKind, reason: String) {
        if event == EventKind::HookFailed {
            return; // a killed hook's exit, counted when it was killed
        }
        warn!(app, event = event.as_str(), %reason, "hook failed");
        let hooks = self.hooks.apps.entry(app.to_string()).or_default();
        hooks.status.failed += 1;
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        hooks.status.last_failure = Some(format!("{}: {reason}", event.as_str()));
        hooks.status.last_failure_at_ms = Some(at_ms);
        let details = EventDetails {
            reason: Some(format!("the {} hook {reason}", event.as_str())),
            ..EventDetails::default()
        };
        self.emit(EventKind::HookFailed, app, None, None, details);
    }

    /// The hooks running.
    pub(super) fn hook_pids(&self) -> Vec<i32> {
        self.hooks
            .apps
            .values()
            .filter_map(|h| h.running.as_ref().map(|r| r.pid))
            .collect()
    }

    /// An app's hook counts, for `describe`; `None` when it has no hooks.
    pub(super) fn hook_status(&self, app: &str) -> Option<HookStatus> {
        let has = self
            .apps
            .get(app)
            .is_some_and(|a| !a.spec.on_event.is_empty());
        has.then(|| {
            self.hooks
                .apps
                .get(app)
                .map(|h| h.status.clone())
                .unwrap_or_default()
        })
    }

    /// An app is gone: its hook counts go with it (a hook still running finishes on its own).
    pub(super) fn forget_hooks(&mut self, app: &str) {
        if let Some(h) = self.hooks.apps.get_mut(app) {
            h.waiting = None;
            if h.running.is_none() {
                self.hooks.apps.remove(app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runs_one_waits_and_the_rest_is_suppressed() {
        let mut w = Window::default();
        let t = Instant::now();
        assert_eq!(admit(&mut w, t, false, false), Admit::Run);
        assert_eq!(admit(&mut w, t, true, false), Admit::Wait);
        assert_eq!(admit(&mut w, t, true, true), Admit::Suppress);
    }

    #[test]
    fn a_storm_runs_at_most_the_minutes_allowance_then_it_comes_back() {
        let mut w = Window::default();
        let t = Instant::now();
        let ran = (0..100)
            .filter(|_| admit(&mut w, t, false, false) == Admit::Run)
            .count();
        assert_eq!(ran, PER_MINUTE as usize);
        assert_eq!(
            admit(&mut w, t + Duration::from_secs(59), false, false),
            Admit::Suppress
        );
        assert_eq!(admit(&mut w, t + WINDOW, false, false), Admit::Run);
    }
}
