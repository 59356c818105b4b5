//! Reload and scale.
//!
//! A reload walks each selected app's slots in instance order, one at a time (apps in parallel). For a slot
//! whose worker is online it spawns a successor on the same sockets and waits for it to be ready; only then
//! does the successor take the slot and the old process get the kill signal (`mark_ready` in
//! `lifecycle.rs`). So an app never has fewer ready workers than before, and an app of one worker keeps
//! serving until its replacement is ready. If the successor exits, fails to exec or misses its listen
//! timeout, the reload of that app stops there and the old workers keep serving; the answer says which
//! worker, why, and where its log is. A slot that is not online, or an app that allows only one copy at a
//! time (`no_overlap`), is restarted in place instead (stop, then start), and the step ends when it is
//! online again.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::info;

use super::{Await, Replier, Supervisor};
use crate::config::Instances;
use crate::daemon::worker::{OnExit, State};
use crate::protocol::{ErrorKind, ReloadStep, Response, ScaleTo, Selection};

/// One reload (or ecosystem file) request in progress.
pub(super) struct Rollout {
    lanes: Vec<Lane>,
    reply: Replier,
    steps: Vec<ReloadStep>,
    failures: Vec<String>,
    /// When it was asked for: a reload's duration runs from here to its end.
    began: Instant,
}

impl Rollout {
    /// Where each lane stands; it only ever moves forward, so an unchanged signature means no progress.
    fn signature(&self) -> Vec<(bool, bool, usize, usize)> {
        self.lanes
            .iter()
            .map(|l| (l.started, l.failed, l.queue.len(), l.current.len()))
            .collect()
    }

    pub fn new(lanes: Vec<Lane>, reply: Replier) -> Rollout {
        Rollout {
            lanes,
            reply,
            steps: Vec::new(),
            failures: Vec::new(),
            began: Instant::now(),
        }
    }
}

/// What a lane does to each of its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LaneAction {
    /// Start it, or replace it with no downtime, and wait until it is ready.
    Replace,
    /// Stop it.
    Stop,
    /// Stop it and forget it.
    Remove,
}

/// The slots of one app, handled one after the other.
pub(super) struct Lane {
    app: String,
    /// The slots still to handle, each with the intent it had when the request was made (see
    /// `Worker::intent`): a slot whose intent has changed since belongs to a later request and is left alone.
    queue: VecDeque<(u32, u64)>,
    current: Vec<Step>,
    /// Handle every slot at once (a new app has no old workers to keep serving), or one at a time.
    parallel: bool,
    action: LaneAction,
    /// Apps whose lanes must have finished (and, for `Replace`, which must be ready) before this one begins.
    needs: Vec<String>,
    started: bool,
    failed: bool,
    /// When the lane began waiting for the apps it needs.
    gated_since: Option<Instant>,
}

impl Lane {
    pub fn new(app: &str, slots: Vec<u32>, action: LaneAction, needs: Vec<String>) -> Lane {
        Lane {
            app: app.to_string(),
            queue: slots.into_iter().map(|id| (id, 0)).collect(),
            current: Vec::new(),
            parallel: false,
            action,
            needs,
            started: false,
            failed: false,
            gated_since: None,
        }
    }

    /// Handles every slot at once.
    pub fn parallel(mut self) -> Lane {
        self.parallel = true;
        self
    }

    fn finished(&self) -> bool {
        self.current.is_empty() && self.queue.is_empty()
    }
}

/// How long a lane waits for the apps it needs to be ready before it fails. Each wait is bounded anyway (a
/// dependency that is launching by its listen timeout, one that crashes fails the gate at once); this is the
/// bound over all of them.
const GATE_DEADLINE: Duration = Duration::from_secs(300);

/// Whether a lane may begin.
enum Gate {
    Open,
    Wait,
    Fail(String),
}

/// The slot being replaced, and what ran in it before.
struct Step {
    id: u32,
    /// The slot's intent when the request was made.
    intent: u64,
    old: Option<(i32, u64)>,
    began: Instant,
    /// Replaced by a successor (counted as a restart here); an in-place restart counts itself.
    successor: bool,
}

/// Where a step stands.
enum Progress {
    Waiting,
    Done(ReloadStep),
    Failed(String),
    Skipped,
}

impl Supervisor {
    /// Starts a reload of the selected workers. Progress and the final answer go to `reply`.
    pub(super) fn reload(
        &mut self,
        target: &Selection,
        env: Option<BTreeMap<String, String>>,
        reply: Replier,
    ) -> Result<(), Response> {
        let ids = self.select(target)?;
        self.ensure_listeners(&ids)?;
        let mut lanes: Vec<Lane> = Vec::new();
        for id in ids {
            let Some(worker) = self.workers.get(&id) else {
                continue;
            };
            match lanes.iter_mut().find(|l| l.app == worker.app) {
                Some(lane) => lane.queue.push_back((id, 0)),
                None => lanes.push(Lane::new(
                    &worker.app,
                    vec![id],
                    LaneAction::Replace,
                    Vec::new(),
                )),
            }
        }
        if let Some(env) = env {
            let ids: Vec<u32> = lanes
                .iter()
                .flat_map(|l| l.queue.iter().map(|(id, _)| *id))
                .collect();
            self.replace_env(&ids, &env);
        }
        for lane in &mut lanes {
            lane.queue
                .make_contiguous()
                .sort_by_key(|(id, _)| self.workers.get(id).map(|w| w.instance));
        }
        self.push_rollout(Rollout::new(lanes, reply));
        Ok(())
    }

    /// Starts a rollout: each queued slot is stamped with its intent now, so that a later request that
    /// takes the slot over (stop, restart, delete, start) wins; and dependency cycles among its lanes, which
    /// would leave every lane waiting forever, are broken (the apps then go in parallel).
    pub(super) fn push_rollout(&mut self, mut rollout: Rollout) {
        for lane in &mut rollout.lanes {
            for (id, intent) in &mut lane.queue {
                *intent = self.workers.get(id).map_or(0, |w| w.intent);
            }
        }
        loop {
            let graph: BTreeMap<String, Vec<String>> = rollout
                .lanes
                .iter()
                .map(|l| (l.app.clone(), l.needs.clone()))
                .collect();
            let Some(cycle) = crate::config::find_cycle(&graph) else {
                break;
            };
            tracing::warn!(cycle = %cycle.join(" -> "), "dependency cycle: these apps go in parallel");
            for lane in &mut rollout.lanes {
                if cycle.contains(&lane.app) {
                    lane.needs.retain(|n| !cycle.contains(n));
                }
            }
        }
        self.rollouts.push(rollout);
    }

    /// Whether a rollout in progress is handling an app's workers (a reload, a file applied, a stop).
    pub(super) fn in_rollout(&self, app: &str) -> bool {
        self.rollouts
            .iter()
            .any(|r| r.lanes.iter().any(|l| l.app == app && !l.finished()))
    }

    /// Ends every rollout in progress with an error (the daemon is shutting down): each is answered now,
    /// and none starts anything again.
    pub(super) fn abort_rollouts(&mut self, why: &str) {
        for rollout in std::mem::take(&mut self.rollouts) {
            self.record_outcome(&rollout, Some(why));
            let mut failures = rollout.failures;
            failures.push(why.to_string());
            let _ = rollout
                .reply
                .send(Response::error(ErrorKind::Conflict, failures.join("\n")));
        }
    }

    /// Moves every reload forward as far as it can go now, and answers the finished ones.
    pub(super) fn advance_rollouts(&mut self) {
        let mut rollouts = std::mem::take(&mut self.rollouts);
        for rollout in &mut rollouts {
            // Again while anything moved: a lane that finishes may open the gate of a lane looked at
            // before it in this pass (a dependent listed before its dependency), and no other message
            // may come to look again.
            let mut before = Vec::new();
            while before != rollout.signature() {
                before = rollout.signature();
                self.advance_lanes(rollout);
            }
        }
        let (finished, running): (Vec<Rollout>, Vec<Rollout>) = rollouts
            .into_iter()
            .partition(|r| r.lanes.iter().all(Lane::finished));
        self.rollouts.extend(running);
        for rollout in finished {
            self.record_outcome(&rollout, None);
            let response = if rollout.failures.is_empty() {
                let Response::Processes { processes } = self.processes(false) else {
                    continue;
                };
                Response::Reloaded {
                    steps: rollout.steps,
                    processes,
                }
            } else {
                Response::error(ErrorKind::Os, rollout.failures.join("\n"))
            };
            let _ = rollout.reply.send(response);
        }
    }

    /// Remembers on each app of a rollout how it ended (`describe` shows it), so that what a command cut off
    /// in the middle did can be told afterwards.
    fn record_outcome(&mut self, rollout: &Rollout, interrupted: Option<&str>) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for lane in &rollout.lanes {
            let Some(app) = self.apps.get_mut(&lane.app) else {
                continue;
            };
            let what = match lane.action {
                LaneAction::Replace => "start or reload",
                LaneAction::Stop => "stop",
                LaneAction::Remove => "delete",
            };
            let failed = lane.failed || (interrupted.is_some() && !lane.finished());
            // A reload: running workers were replaced (or were to be, and it failed).
            let replaced = rollout
                .steps
                .iter()
                .any(|s| s.name == lane.app && s.old_pid.is_some());
            if lane.action == LaneAction::Replace && (replaced || failed) {
                let seconds = rollout.began.elapsed().as_secs_f64();
                let stats = &mut app.reloads;
                if failed {
                    stats.failed += 1;
                } else {
                    stats.ok += 1;
                }
                stats.seconds_total += seconds;
                stats.last_seconds = Some(seconds);
            }
            let detail = if lane.failed {
                let own = rollout
                    .failures
                    .iter()
                    .filter(|f| f.contains(lane.app.as_str()))
                    .cloned()
                    .collect::<Vec<_>>();
                Some(if own.is_empty() {
                    rollout.failures.join("; ")
                } else {
                    own.join("; ")
                })
            } else if failed {
                interrupted.map(str::to_string)
            } else {
                None
            };
            app.last_change = Some(crate::protocol::LastChange {
                what: what.to_string(),
                ok: !failed,
                detail,
                at_ms,
            });
        }
    }

    /// One pass over a rollout's lanes: each that may begin begins, and each that has begun goes as far as it
    /// can now.
    fn advance_lanes(&mut self, rollout: &mut Rollout) {
        for index in 0..rollout.lanes.len() {
            if !rollout.lanes[index].started {
                match self.gate(&rollout.lanes, index) {
                    Gate::Wait => {
                        let lane = &mut rollout.lanes[index];
                        if lane.gated_since.is_none() {
                            lane.gated_since = Some(Instant::now());
                            self.arm(GATE_DEADLINE, super::Timer::Wake);
                        }
                        continue;
                    }
                    Gate::Fail(reason) => {
                        let lane = &mut rollout.lanes[index];
                        rollout
                            .failures
                            .push(format!("app '{}': {reason}", lane.app));
                        lane.queue.clear();
                        lane.failed = true;
                        continue;
                    }
                    Gate::Open => rollout.lanes[index].started = true,
                }
            }
            self.advance_lane(rollout, index);
        }
    }

    /// A lane begins once the lanes it needs have finished and, for starts, the apps it needs are ready.
    fn gate(&self, lanes: &[Lane], index: usize) -> Gate {
        let lane = &lanes[index];
        for need in &lane.needs {
            if let Some(other) = lanes.iter().find(|l| &l.app == need) {
                if other.failed {
                    return Gate::Fail(format!(
                        "not started: '{need}', which it depends on, failed"
                    ));
                }
                if !other.finished() {
                    return Gate::Wait;
                }
            }
            if lane.action != LaneAction::Replace {
                continue;
            }
            let Some(app) = self.apps.get(need) else {
                return Gate::Fail(format!("depends on '{need}', which is not running"));
            };
            let states: Vec<State> = app
                .workers
                .iter()
                .filter_map(|id| Some(self.workers.get(id)?.state))
                .collect();
            if states.iter().any(|s| s.is_down()) {
                return Gate::Fail(format!("depends on '{need}', which is not running"));
            }
            if states.iter().any(|s| matches!(s, State::Waiting { .. })) {
                return Gate::Fail(format!(
                    "depends on '{need}', which is crash-looping (see `herdsman logs {need}`)"
                ));
            }
            if lane
                .gated_since
                .is_some_and(|since| since.elapsed() >= GATE_DEADLINE)
            {
                return Gate::Fail(format!(
                    "gave up after {} s waiting for '{need}' to be ready",
                    GATE_DEADLINE.as_secs()
                ));
            }
            if !states
                .iter()
                .all(|s| matches!(s, State::Running(p) if p.ready))
            {
                return Gate::Wait;
            }
        }
        Gate::Open
    }

    fn advance_lane(&mut self, rollout: &mut Rollout, index: usize) {
        let lane = &mut rollout.lanes[index];
        loop {
            let mut index = 0;
            while index < lane.current.len() {
                let step = &lane.current[index];
                match self.progress(step, lane.action) {
                    Progress::Waiting => index += 1,
                    Progress::Skipped => {
                        lane.current.remove(index);
                    }
                    Progress::Done(done) => {
                        if let Some(worker) = self.workers.get_mut(&done.id)
                            && step.successor
                        {
                            worker.restarts += 1;
                        }
                        info!(app = %done.name, instance = done.instance, old = ?done.old_pid, new = done.new_pid, ready_ms = done.ready_ms, "worker ready");
                        let _ = rollout
                            .reply
                            .send(Response::Progress { step: done.clone() });
                        let details = crate::protocol::EventDetails {
                            old_pid: done.old_pid,
                            ready_ms: Some(done.ready_ms),
                            ..Default::default()
                        };
                        self.emit_worker(
                            crate::protocol::EventKind::ReloadStep,
                            done.id,
                            i32::try_from(done.new_pid).ok(),
                            details,
                        );
                        rollout.steps.push(done);
                        lane.current.remove(index);
                    }
                    Progress::Failed(reason) => {
                        let log = self
                            .apps
                            .get(&lane.app)
                            .map_or_else(|| self.home.err_log(&lane.app), |a| a.err_path.clone());
                        let instance = self.workers.get(&step.id).map_or(0, |w| w.instance);
                        rollout.failures.push(if step.old.is_some() {
                            format!(
                                "reload of app '{}' stopped at worker {} (instance {instance}): {reason}; \
                                 the workers not yet replaced keep serving; see {}",
                                lane.app,
                                step.id,
                                log.display()
                            )
                        } else {
                            format!(
                                "app '{}' worker {} (instance {instance}) did not start: {reason}; see {}",
                                lane.app,
                                step.id,
                                log.display()
                            )
                        });
                        lane.current.remove(index);
                        lane.queue.clear();
                        lane.failed = true;
                    }
                }
            }
            let limit = if lane.parallel { usize::MAX } else { 1 };
            if lane.current.len() >= limit {
                break;
            }
            let Some((id, intent)) = lane.queue.pop_front() else {
                break;
            };
            if self.workers.get(&id).is_none_or(|w| w.intent != intent) {
                // Gone, or taken over by a later request: not this rollout's any more.
                if lane.action == LaneAction::Replace {
                    rollout.failures.push(format!(
                        "app '{}' worker {id}: interrupted: a later request (stop, restart or delete) took it over",
                        lane.app
                    ));
                    lane.queue.clear();
                    lane.failed = true;
                }
                continue;
            }
            lane.current.push(match lane.action {
                LaneAction::Replace => self.begin_step(id, intent),
                LaneAction::Stop | LaneAction::Remove => {
                    let on_exit = if lane.action == LaneAction::Stop {
                        OnExit::Stop
                    } else {
                        OnExit::Remove
                    };
                    let _ = self.stop_selected(&Selection::Id(id), on_exit);
                    Step {
                        id,
                        intent,
                        old: None,
                        began: Instant::now(),
                        successor: false,
                    }
                }
            });
        }
    }

    /// Begins replacing one slot.
    fn begin_step(&mut self, id: u32, intent: u64) -> Step {
        let began = Instant::now();
        let job = self.workers.get(&id).is_some_and(|w| self.is_job(&w.app));
        let Some(worker) = self.workers.get_mut(&id) else {
            return Step {
                id,
                intent,
                old: None,
                began,
                successor: false,
            };
        };
        worker.reload_failure = None;
        let no_overlap = self
            .apps
            .get(&worker.app)
            .is_some_and(|a| a.spec.no_overlap);
        match worker.state {
            // A scheduled job's run is not replaced: it ends by itself.
            State::Running(_) if job => Step {
                id,
                intent,
                old: None,
                began,
                successor: false,
            },
            State::Running(p) if worker.successor.is_some() => {
                // Another reload is already bringing up this slot's replacement: wait for that one.
                Step {
                    id,
                    intent,
                    old: Some((p.pid, p.serial)),
                    began,
                    successor: true,
                }
            }
            State::Stopping { .. } if matches!(worker.on_exit, OnExit::Stop | OnExit::Remove) => {
                worker.reload_failure = Some("the worker is being stopped".into());
                Step {
                    id,
                    intent,
                    old: None,
                    began,
                    successor: false,
                }
            }
            State::Running(p) if p.ready && !no_overlap => {
                let old = Some((p.pid, p.serial));
                match self.spawn_process(id) {
                    Ok(successor) => {
                        if let Some(worker) = self.workers.get_mut(&id) {
                            worker.successor = Some(successor);
                        }
                    }
                    Err(e) => {
                        if let Some(worker) = self.workers.get_mut(&id) {
                            worker.reload_failure =
                                Some(format!("cannot spawn the replacement: {e}"));
                        }
                    }
                }
                Step {
                    id,
                    intent,
                    old,
                    began,
                    successor: true,
                }
            }
            State::Running(p) => {
                self.signal_stop(id, OnExit::Restart);
                Step {
                    id,
                    intent,
                    old: Some((p.pid, p.serial)),
                    began,
                    successor: false,
                }
            }
            State::Stopping { process, .. } => {
                worker.on_exit = OnExit::Restart;
                Step {
                    id,
                    intent,
                    old: Some((process.pid, process.serial)),
                    began,
                    successor: false,
                }
            }
            State::Waiting { .. } | State::Stopped | State::Errored => {
                worker.unstable = 0;
                self.start_worker(id);
                Step {
                    id,
                    intent,
                    old: None,
                    began,
                    successor: false,
                }
            }
        }
    }

    fn progress(&mut self, step: &Step, action: LaneAction) -> Progress {
        let Some(worker) = self.workers.get_mut(&step.id) else {
            return Progress::Skipped;
        };
        if worker.intent != step.intent {
            // A later request took the slot over: it decides what runs there now.
            return match action {
                LaneAction::Replace => Progress::Failed(
                    "interrupted: a later request (stop, restart or delete) took the worker over"
                        .into(),
                ),
                LaneAction::Stop | LaneAction::Remove => Progress::Skipped,
            };
        }
        match action {
            LaneAction::Replace => {}
            LaneAction::Stop if worker.state.is_down() => return Progress::Skipped,
            LaneAction::Stop | LaneAction::Remove => return Progress::Waiting,
        }
        if let Some(reason) = worker.reload_failure.take() {
            return Progress::Failed(reason);
        }
        match worker.state {
            State::Running(p) if p.ready && worker.successor.is_none() => {
                if step.old.is_some_and(|(_, serial)| serial == p.serial) {
                    return Progress::Waiting;
                }
                Progress::Done(ReloadStep {
                    id: step.id,
                    name: worker.app.clone(),
                    instance: worker.instance,
                    old_pid: step.old.map(|(pid, _)| pid as u32),
                    new_pid: p.pid as u32,
                    ready_ms: step.began.elapsed().as_millis() as u64,
                })
            }
            State::Waiting { .. } | State::Errored => Progress::Failed(format!(
                "the new process did not stay up ({})",
                worker.last_exit.as_deref().unwrap_or("it exited")
            )),
            State::Stopped => Progress::Skipped,
            _ => Progress::Waiting,
        }
    }

    /// Adds workers (new slots on the same sockets) or removes the highest instances gracefully.
    pub(super) fn scale(&mut self, name: &str, to: ScaleTo) -> Result<(Await, Vec<u32>), Response> {
        if self.is_job(name) {
            let message = format!(
                "app '{name}' is a scheduled job: it runs one process per run, so it has no workers to scale"
            );
            return Err(Response::error(ErrorKind::Invalid, message));
        }
        let Some(app) = self.apps.get_mut(name) else {
            let message = format!("no app named '{name}' (see `herdsman list`)");
            return Err(Response::error(ErrorKind::NotFound, message));
        };
        let current = app.workers.len() as u32;
        let Some(target) = to.resolve(current) else {
            let message = format!(
                "app '{name}' has {current} workers: scale keeps at least 1 (use `herdsman stop {name}` to stop them all)"
            );
            return Err(Response::error(ErrorKind::Invalid, message));
        };
        let mut slots: Vec<(u32, u32)> = app
            .workers
            .iter()
            .filter_map(|id| Some((self.workers.get(id)?.instance, *id)))
            .collect();
        slots.sort();
        if target <= current {
            if let Some(app) = self.apps.get_mut(name) {
                app.spec.instances = Instances::Count(target);
            }
            let remove: Vec<u32> = slots[target as usize..].iter().map(|&(_, id)| id).collect();
            self.take_over(&remove);
            for &id in &remove {
                self.stop_selected(&Selection::Id(id), OnExit::Remove)?;
            }
            return Ok((Await::Gone, remove));
        }
        let existing: Vec<u32> = slots.iter().map(|&(_, id)| id).collect();
        self.ensure_listeners(&existing)?;
        if let Some(app) = self.apps.get_mut(name) {
            app.spec.instances = Instances::Count(target);
        }
        let mut used: Vec<u32> = slots.iter().map(|&(instance, _)| instance).collect();
        let mut added = Vec::new();
        for _ in current..target {
            let instance = (0..).find(|i| !used.contains(i)).unwrap_or(0);
            used.push(instance);
            let id = self.add_slot(name, instance);
            self.start_worker(id);
            added.push(id);
        }
        Ok((Await::Up, added))
    }
}
