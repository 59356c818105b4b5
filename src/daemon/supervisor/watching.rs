//! Watch mode, the supervisor's side: each app with `watch` gets a watcher thread (`daemon/watch/`), which
//! reports changes once the files have been quiet for `watch_delay`. A report reloads the app with the
//! same rollout as `herdsman reload` (each new worker ready before an old one is told to stop). While a
//! rollout is replacing the app's workers (that reload, a `reload` command, a file being applied), changes
//! leave one reload waiting, never more, which begins once the rollout ends. A change to a stopped app
//! does not start it. Changes only to files one of the app's processes holds open for writing (a SQLite
//! database, a log it keeps open) or that hold one of its pids are the app's own doing and never reload
//! it (`watch/own_files.rs`).
//!
//! A reload that fails (the new code does not start) leaves the old workers serving, as any reload does;
//! the reason is logged and shown by `list` (`watch_error`) until a later reload succeeds.

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Supervisor;
use crate::daemon::watch::{self, Decision, Gate, Report, ReportKind, Target, Watch};
use crate::daemon::worker::State;
use crate::protocol::{Response, Selection};

/// An app's watch mode.
pub(super) struct Watching {
    generation: u64,
    /// `None` when the watcher could not start.
    _watch: Option<Watch>,
    gate: Gate,
    /// The answers of the reload a change started, while it runs.
    reload: Option<mpsc::UnboundedReceiver<Response>>,
    /// Why the last reload after a change failed (or why watching failed); cleared by one that succeeds.
    pub failure: Option<String>,
    /// Changes to files the app holds open were ignored, and the log said so.
    told_own: bool,
}

impl Supervisor {
    /// Starts the watchers of apps that watch and have none yet (new apps, changed definitions), records
    /// how the reloads that changes started ended, and begins the reload a change left waiting once
    /// nothing else replaces the app's workers. True when it began a reload.
    pub(super) fn settle_watches(&mut self) -> bool {
        if self.shutting_down {
            return false;
        }
        let names: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, app)| app.spec.watch.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        let mut began = false;
        for name in names {
            self.ensure_watcher(&name);
            self.finish_watch_reload(&name);
            let (busy, stopped) = (self.in_rollout(&name), self.all_stopped(&name));
            let Some(watching) = self.apps.get_mut(&name).and_then(|a| a.watch.as_mut()) else {
                continue;
            };
            match watching.gate.settled(busy, stopped) {
                Some(Decision::Reload) => {
                    info!(app = %name, "watch: reloading for the changes made during the last reload");
                    began |= self.watch_reload(&name);
                }
                Some(Decision::Ignore) => {
                    info!(app = %name, "watch: the app was stopped: the waiting reload is dropped");
                }
                Some(Decision::After) | None => {}
            }
        }
        began
    }

    /// A watcher's report.
    pub(super) fn watch_report(&mut self, report: Report) {
        let Report {
            app: name,
            generation,
            kind,
        } = report;
        if self.shutting_down {
            return;
        }
        let (busy, stopped) = (self.in_rollout(&name), self.all_stopped(&name));
        let Some(watching) = self
            .apps
            .get_mut(&name)
            .and_then(|a| a.watch.as_mut())
            .filter(|w| w.generation == generation)
        else {
            // The app is gone, or its definition changed since: another watcher speaks for it now.
            return;
        };
        match kind {
            ReportKind::Failed(message) => {
                warn!(app = %name, %message, "watch: cannot watch every path");
                watching.failure = Some(format!("watching: {message}"));
            }
            ReportKind::Changed {
                count,
                paths,
                truncated,
            } => {
                // Files one of the app's processes holds open for writing, and its pid files, are its own.
                let own = if truncated {
                    Default::default()
                } else {
                    watch::own_files(&self.app_pids(&name), &paths)
                };
                let Some(watching) = self.apps.get_mut(&name).and_then(|a| a.watch.as_mut()) else {
                    return;
                };
                let theirs: Vec<&std::path::PathBuf> =
                    paths.iter().filter(|p| !own.contains(*p)).collect();
                if theirs.is_empty() {
                    if !watching.told_own {
                        watching.told_own = true;
                        let own: Vec<String> =
                            own.iter().map(|p| p.display().to_string()).collect();
                        info!(app = %name, paths = %own.join(", "), "watch: changes to the app's own files (held open for writing, or its pid file): they never reload it");
                    }
                    return;
                }
                let sample: Vec<String> = theirs
                    .iter()
                    .take(3)
                    .map(|p| p.display().to_string())
                    .collect();
                let sample = sample.join(", ");
                match watching.gate.change(busy, stopped) {
                    Decision::Reload => {
                        info!(app = %name, changes = count, paths = %sample, "watch: files changed: reloading (new workers ready first)");
                        self.watch_reload(&name);
                    }
                    Decision::After => {
                        info!(app = %name, changes = count, paths = %sample, "watch: files changed during a reload: one more reload once it ends");
                    }
                    Decision::Ignore => {
                        info!(app = %name, changes = count, paths = %sample, "watch: files changed, but the app is stopped: not started");
                    }
                }
            }
        }
    }

    /// The pids of an app's processes (and the successors a reload is bringing up).
    fn app_pids(&self, name: &str) -> Vec<i32> {
        let Some(app) = self.apps.get(name) else {
            return Vec::new();
        };
        app.workers
            .iter()
            .filter_map(|id| self.workers.get(id))
            .flat_map(|w| w.pids())
            .collect()
    }

    /// Starts an app's watcher if it has none.
    fn ensure_watcher(&mut self, name: &str) {
        let Some(app) = self.apps.get(name) else {
            return;
        };
        let Some(spec) = app.spec.watch.clone() else {
            return;
        };
        if app.watch.is_some() {
            return;
        }
        self.watch_generation += 1;
        let target = Target {
            app: name.to_string(),
            generation: self.watch_generation,
            spec: *spec,
            cwd: app.spec.cwd.clone(),
            script: app.spec.script.clone(),
            logs: vec![app.out_path.clone(), app.err_path.clone()],
        };
        let (handle, failure) = match watch::start(target, self.tx.clone()) {
            Ok(handle) => (Some(handle), None),
            Err(message) => {
                warn!(app = %name, %message, "watch: cannot start watching");
                (None, Some(format!("watching: {message}")))
            }
        };
        if let Some(app) = self.apps.get_mut(name) {
            app.watch = Some(Watching {
                generation: self.watch_generation,
                _watch: handle,
                gate: Gate::default(),
                reload: None,
                failure,
                told_own: false,
            });
        }
    }

    /// Reloads an app for a change. True when the reload began.
    fn watch_reload(&mut self, name: &str) -> bool {
        let (reply, answers) = mpsc::unbounded_channel();
        let outcome = self.reload(&Selection::Name(name.to_string()), None, reply);
        let Some(watching) = self.apps.get_mut(name).and_then(|a| a.watch.as_mut()) else {
            return false;
        };
        match outcome {
            Ok(()) => {
                watching.reload = Some(answers);
                true
            }
            Err(response) => {
                let message = match response {
                    Response::Error { message, .. } => message,
                    other => format!("{other:?}"),
                };
                warn!(app = %name, %message, "watch: cannot reload");
                watching.failure = Some(message);
                false
            }
        }
    }

    /// Records how the reload a change started ended, once it has.
    fn finish_watch_reload(&mut self, name: &str) {
        let Some(watching) = self.apps.get_mut(name).and_then(|a| a.watch.as_mut()) else {
            return;
        };
        let Some(answers) = watching.reload.as_mut() else {
            return;
        };
        loop {
            match answers.try_recv() {
                Ok(answer) if answer.is_progress() => continue,
                Ok(Response::Error { message, .. }) => {
                    warn!(app = %name, reason = %message, "watch: the reload after a change failed: the old workers keep serving");
                    watching.failure = Some(format!("the reload after a change failed: {message}"));
                }
                Ok(_) => {
                    info!(app = %name, "watch: reloaded after a change");
                    watching.failure = None;
                }
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {}
            }
            watching.reload = None;
            return;
        }
    }

    /// Whether every worker of an app is stopped (by request).
    fn all_stopped(&self, name: &str) -> bool {
        self.apps.get(name).is_none_or(|app| {
            app.workers.iter().all(|id| {
                self.workers
                    .get(id)
                    .is_none_or(|w| w.state == State::Stopped)
            })
        })
    }
}
