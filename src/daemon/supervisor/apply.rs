//! Applying an ecosystem file: start what is new, reload what changed, leave what is the same.
//!
//! Everything is checked and acquired first (specs, scripts, users, sockets, log files) for every app of the
//! file; if anything fails, what was acquired is given back and nothing changes. Then each app gets a
//! lane of the rollout: a new app's slots start; a changed app takes its new definition (sockets kept where
//! the address stays; new sockets, log files, command, instance count) and its slots are replaced with no
//! downtime; an unchanged app is left alone. Lanes wait for the apps they depend on (`depends_on`) to be
//! ready; stopping and deleting go the other way, dependents first.

use std::collections::BTreeMap;

use super::app::App;
use super::rollout::{Lane, LaneAction, Rollout};
use super::{Replier, Supervisor};
use crate::config::AppSpec;
use crate::daemon::worker::{OnExit, State};
use crate::protocol::{ApplyAction, ApplyRequest, ErrorKind, Response, Selection};

/// What applying does to one app of the file.
enum Plan {
    Create(Box<App>),
    /// Running with the same definition.
    Same(String),
    /// Running with another definition, and the action is `start`: left as it is.
    Differs(String),
    Update(Box<App>),
}

impl Supervisor {
    pub(super) fn apply(&mut self, request: ApplyRequest, reply: Replier) -> Result<(), Response> {
        let ApplyRequest {
            apps,
            action,
            prune,
            file_apps,
        } = request;
        let note = |message: String| {
            let _ = reply.send(Response::Note { message });
        };
        let in_file = |name: &str| apps.iter().any(|a| a.name == name);
        let mut lanes = Vec::new();
        if matches!(action, ApplyAction::Stop | ApplyAction::Delete) {
            let (verb, lane_action) = match action {
                ApplyAction::Stop => ("stopping", LaneAction::Stop),
                _ => ("deleting", LaneAction::Remove),
            };
            for spec in &apps {
                let Some(app) = self.apps.get(&spec.name) else {
                    note(format!("{}: not running", spec.name));
                    continue;
                };
                // Dependents stop first.
                let needs: Vec<String> = apps
                    .iter()
                    .filter(|other| {
                        other.depends_on.contains(&spec.name) && self.apps.contains_key(&other.name)
                    })
                    .map(|other| other.name.clone())
                    .collect();
                note(format!("{}: {verb}", spec.name));
                let slots = app.workers.clone();
                self.disable_job(&spec.name);
                lanes.push(Lane::new(&spec.name, slots, lane_action, needs).parallel());
            }
        } else {
            self.check_dependencies(&apps, action)?;
            let plans = self.plan(apps.clone(), action)?;
            for plan in plans {
                match plan {
                    Plan::Create(app) => {
                        let name = app.spec.name.clone();
                        let needs = app.spec.depends_on.clone();
                        let count = app.spec.instances.resolve(self.cores);
                        self.apps.insert(name.clone(), app);
                        let slots: Vec<u32> = (0..count).map(|i| self.add_slot(&name, i)).collect();
                        note(format!("{name}: new: starting {count} worker(s)"));
                        lanes.push(Lane::new(&name, slots, LaneAction::Replace, needs).parallel());
                    }
                    Plan::Same(name) => {
                        let down = self.down_slots(&name);
                        if !down.is_empty() {
                            note(format!("{name}: stopped: starting it"));
                            let needs = self
                                .apps
                                .get(&name)
                                .map(|a| a.spec.depends_on.clone())
                                .unwrap_or_default();
                            lanes.push(
                                Lane::new(&name, down, LaneAction::Replace, needs).parallel(),
                            );
                        } else {
                            note(format!("{name}: unchanged"));
                        }
                    }
                    Plan::Differs(name) => note(format!(
                        "{name}: already running with another definition: left as it is (`herdsman reload <file>` applies it)"
                    )),
                    Plan::Update(app) => {
                        let name = app.spec.name.clone();
                        let changes = self
                            .apps
                            .get(&name)
                            .map(|old| changes(&old.spec, &app.spec))
                            .unwrap_or_default();
                        // Nothing but watch mode differs: the workers need not change.
                        let only_watch = self.apps.get(&name).is_some_and(|old| {
                            let watch = app.spec.watch.clone();
                            AppSpec {
                                watch,
                                ..old.spec.clone()
                            }
                            .same_definition(&app.spec)
                        });
                        let needs = app.spec.depends_on.clone();
                        let (kept, added) = self.update_app(*app);
                        if only_watch {
                            // Only watch mode changed: the workers run the same thing, and go on.
                            let watching =
                                self.apps.get(&name).is_some_and(|a| a.spec.watch.is_some());
                            note(format!(
                                "{name}: changed (watch): {}; the workers go on",
                                if watching {
                                    "watching its files"
                                } else {
                                    "no longer watching"
                                }
                            ));
                        } else if changes == ["instances"] {
                            // Only the count changed: the workers that stay are left alone.
                            note(format!(
                                "{name}: changed (instances): scaling to {}",
                                kept.len() + added.len()
                            ));
                            lanes.push(
                                Lane::new(&name, added, LaneAction::Replace, needs).parallel(),
                            );
                        } else {
                            note(format!(
                                "{name}: changed ({}): reloading",
                                changes.join(", ")
                            ));
                            let slots = kept.into_iter().chain(added).collect();
                            lanes.push(Lane::new(&name, slots, LaneAction::Replace, needs));
                        }
                    }
                }
            }
            if action == ApplyAction::Reload {
                let others: Vec<String> = self
                    .apps
                    .keys()
                    .filter(|name| !in_file(name) && !file_apps.contains(name))
                    .cloned()
                    .collect();
                for name in others {
                    if prune {
                        note(format!("{name}: not in the file: deleting (--prune)"));
                        let slots = self
                            .apps
                            .get(&name)
                            .map(|a| a.workers.clone())
                            .unwrap_or_default();
                        lanes.push(
                            Lane::new(&name, slots, LaneAction::Remove, Vec::new()).parallel(),
                        );
                    } else {
                        note(format!(
                            "{name}: not in the file: left running (--prune deletes it)"
                        ));
                    }
                }
            }
        }
        self.push_rollout(Rollout::new(lanes, reply));
        Ok(())
    }

    /// Refuses definitions whose `depends_on`, with the apps already running, would make a cycle: no app of
    /// it could start first, and none could be stopped last.
    fn check_dependencies(&self, specs: &[AppSpec], action: ApplyAction) -> Result<(), Response> {
        let mut graph: BTreeMap<String, Vec<String>> = self
            .apps
            .iter()
            .map(|(name, app)| (name.clone(), app.spec.depends_on.clone()))
            .collect();
        for spec in specs {
            // `start` leaves a running app with its definition; anything else installs the new one.
            if action == ApplyAction::Start && self.apps.contains_key(&spec.name) {
                continue;
            }
            graph.insert(spec.name.clone(), spec.depends_on.clone());
        }
        match crate::config::find_cycle(&graph) {
            None => Ok(()),
            Some(mut cycle) => {
                // Named from an app being started, as the caller sees it: `b -> a -> b`.
                cycle.pop();
                let first = cycle
                    .iter()
                    .position(|name| specs.iter().any(|s| &s.name == name))
                    .unwrap_or(0);
                cycle.rotate_left(first);
                cycle.push(cycle[0].clone());
                Err(Response::error(
                    ErrorKind::Invalid,
                    format!(
                        "app '{}': depends_on would make a dependency cycle {}: no app of it can start first\n\
                     nothing was changed",
                        cycle[0],
                        cycle.join(" -> ")
                    ),
                ))
            }
        }
    }

    /// Decides what happens to each app and acquires what new definitions need. All or nothing.
    fn plan(&mut self, specs: Vec<AppSpec>, action: ApplyAction) -> Result<Vec<Plan>, Response> {
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        let mut logs = crate::logs::open::Opener::default();
        for spec in specs {
            let name = spec.name.clone();
            if let Some(message) = self.address_conflict(&spec) {
                errors.push(format!("app '{name}': {message}"));
                continue;
            }
            match self.apps.get_mut(&name) {
                None => match App::prepare(spec, &self.home, &mut Vec::new(), &mut None, &mut logs)
                {
                    Ok(app) => plans.push(Plan::Create(Box::new(app))),
                    Err(e) => errors.push(format!("app '{name}': {e}")),
                },
                Some(existing) if existing.spec.same_definition(&spec) => {
                    plans.push(Plan::Same(name))
                }
                Some(_) if action == ApplyAction::Start => plans.push(Plan::Differs(name)),
                Some(existing) => {
                    if let Some(why) =
                        crate::daemon::supervisor::balancing::change_refused(&existing.spec, &spec)
                    {
                        errors.push(format!("app '{name}': {why}"));
                        continue;
                    }
                    // A hash or sticky app keeps its slots' sockets (see `App::prepare`).
                    let mut slots = existing.slots.take();
                    match App::prepare(
                        spec,
                        &self.home,
                        &mut existing.listeners,
                        &mut slots,
                        &mut logs,
                    ) {
                        Ok(app) => plans.push(Plan::Update(Box::new(app))),
                        Err(e) => errors.push(format!("app '{name}': {e}")),
                    }
                    existing.slots = slots;
                }
            }
        }
        if errors.is_empty() {
            return Ok(plans);
        }
        // Give back the sockets that updated definitions took over; drop everything else acquired.
        for plan in plans {
            if let Plan::Update(app) = plan
                && let Some(existing) = self.apps.get_mut(&app.spec.name)
            {
                let App {
                    listeners, slots, ..
                } = *app;
                if existing.slots.is_none()
                    && existing.spec.balance.per_slot()
                    && !existing.spec.listen.is_empty()
                {
                    existing.slots = slots;
                }
                existing.listeners.extend(
                    listeners
                        .into_iter()
                        .filter(|l| existing.spec.listen.contains(l.addr())),
                );
            }
        }
        Err(Response::error(
            ErrorKind::Invalid,
            format!("{}\nnothing was changed", errors.join("\n")),
        ))
    }

    /// Installs a new definition of a running app and sets its number of slots. Returns the slots kept and
    /// the slots added (extra slots, beyond the new count, are stopped and removed).
    fn update_app(&mut self, mut app: App) -> (Vec<u32>, Vec<u32>) {
        let name = app.spec.name.clone();
        let Some(old) = self.apps.remove(&name) else {
            return (Vec::new(), Vec::new());
        };
        app.workers = old.workers;
        let count = app.spec.instances.resolve(self.cores) as usize;
        let mut slots: Vec<(u32, u32)> = app
            .workers
            .iter()
            .filter_map(|id| Some((self.workers.get(id)?.instance, *id)))
            .collect();
        slots.sort();
        self.apps.insert(name.clone(), Box::new(app));
        for &(_, id) in slots.iter().skip(count) {
            self.take_over(&[id]);
            let _ = self.stop_selected(&Selection::Id(id), OnExit::Remove);
        }
        let kept: Vec<u32> = slots.iter().take(count).map(|&(_, id)| id).collect();
        let mut used: Vec<u32> = slots
            .iter()
            .take(count)
            .map(|&(instance, _)| instance)
            .collect();
        let mut added = Vec::new();
        while kept.len() + added.len() < count {
            let instance = (0..).find(|i| !used.contains(i)).unwrap_or(0);
            used.push(instance);
            added.push(self.add_slot(&name, instance));
        }
        (kept, added)
    }

    /// The slots of an app that are stopped or errored.
    fn down_slots(&self, name: &str) -> Vec<u32> {
        self.apps
            .get(name)
            .map(|app| {
                app.workers
                    .iter()
                    .filter(|id| {
                        self.workers
                            .get(id)
                            .is_some_and(|w| matches!(w.state, State::Stopped | State::Errored))
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The names of the options that differ between two definitions of an app.
fn changes(old: &AppSpec, new: &AppSpec) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, what: &'static str| {
        if differs {
            changed.push(what);
        }
    };
    check(old.script != new.script, "script");
    check(old.args != new.args, "args");
    check(
        old.interpreter != new.interpreter || old.interpreter_args != new.interpreter_args,
        "interpreter",
    );
    check(old.cwd != new.cwd, "cwd");
    check(old.instances != new.instances, "instances");
    check(old.listen != new.listen, "listen");
    check(old.defined_env != new.defined_env, "env");
    check(
        old.out_file != new.out_file || old.error_file != new.error_file,
        "log files",
    );
    check(
        old.log_max_size != new.log_max_size
            || old.log_keep != new.log_keep
            || old.log_lines != new.log_lines
            || old.log_rotate != new.log_rotate
            || old.log_compress != new.log_compress,
        "log options",
    );
    check(old.depends_on != new.depends_on, "depends_on");
    check(old.user != new.user || old.group != new.group, "user");
    check(old.watch != new.watch, "watch");
    if changed.is_empty() {
        changed.push("restart policy");
    }
    changed
}
