//! The fleet side of jobs (`scope = "fleet"`, issue 15): a fire time runs once across the hosts of a fleet,
//! claimed in the fleet's store (see `crate::fleet` and docs/fleet-store.md).
//!
//! The supervisor's loop never waits on the network: a fire time of a fleet job (or a `trigger`) spawns a
//! task that claims its run id (and, with `overlap = "skip"`, takes the job's lease) and sends a
//! [`Report`] back; the loop then starts the run through `start_run` as any run (recorded before it
//! spawns), or records it skipped (`claimed by <host>`, `store unreachable: <error>`). `last_handled` is
//! written at the fire time, so a host never claims a fire time twice. A store that does not answer at the
//! fire time gets the run recorded skipped; the task keeps trying until the starting deadline (or the
//! next fire time) and the run is caught up if the store comes back in time and this host wins it.
//!
//! Each fleet run that holds a lease (`skip`) or may be replaced from elsewhere (`replace`) has a watch
//! task: every third of the lease's TTL it renews the lease (or looks for a stop request); a failed or lost
//! renewal is a report that stops the run (kill signal, kill timeout, SIGKILL to its group), recorded
//! `lost lease`. A run's record goes to the store when it ends (a task nobody waits for), pruned to the
//! job's `history`; each (store, fleet, host) sends a heartbeat every 5 s. The tasks are in
//! `fleet_tasks.rs`; `fleet_status.rs` answers `jobs history --fleet` and `fleet status`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use super::super::{Replier, Supervisor};
use super::RunStart;
use super::fleet_tasks::{ClaimJob, claim, heartbeat, owner, watch};
use crate::config::fleet::FleetSpec;
use crate::fleet::Store;
use crate::protocol::{ErrorKind, Response, RunOutcome, RunRecord};
use crate::schedule::policy::{self, OnFire};

/// What a fleet task tells the supervisor.
pub enum Report {
    /// The claim of a run (and its lease) came back.
    Claimed {
        job: String,
        start: RunStart,
        result: ClaimResult,
        /// A `trigger` waiting for the run's record.
        reply: Option<Replier>,
    },
    /// The store did not answer a claim at the fire time: the run is recorded skipped (the task goes on
    /// trying until the deadline).
    Unreachable {
        job: String,
        start: RunStart,
        error: String,
        reply: Option<Replier>,
    },
    /// A fleet run must stop: its lease was lost, or another host replaced it.
    Stop {
        job: String,
        run_id: String,
        attempt: u32,
        outcome: RunOutcome,
        why: String,
    },
}

pub enum ClaimResult {
    /// This host runs it, with this fencing token.
    Won { fence: u64 },
    /// Another host claimed it.
    Taken { holder: String },
    /// This host won the fire time but another host's run still holds the job's lease (`skip`).
    Busy,
}

/// The fleet state of the jobs: one store per URL, shared by its jobs.
#[derive(Default)]
pub(in crate::daemon::supervisor) struct FleetJobs {
    stores: HashMap<String, Arc<Store>>,
    /// Heartbeats running, by (store URL, fleet, host).
    heartbeats: HashSet<(String, String, String)>,
    /// The watch task of each fleet run in progress (or waiting for its next attempt), by (job, run id).
    watches: HashMap<(String, String), tokio::task::AbortHandle>,
    /// Per job: fire times run here, and claimed by other hosts, since the daemon started; and the host of
    /// the last one handled.
    counts: BTreeMap<String, (u64, u64, Option<String>)>,
}

impl FleetJobs {
    /// The store of `spec` (created on first use, with its heartbeat).
    pub(super) fn store(&mut self, spec: &FleetSpec) -> Result<Arc<Store>, String> {
        let store = match self.stores.get(&spec.store) {
            Some(store) => store.clone(),
            None => {
                let store = Arc::new(Store::new(&spec.store).map_err(|e| e.to_string())?);
                self.stores.insert(spec.store.clone(), store.clone());
                store
            }
        };
        let key = (spec.store.clone(), spec.name.clone(), spec.host.clone());
        if self.heartbeats.insert(key) {
            tokio::spawn(heartbeat(
                Arc::downgrade(&store),
                spec.name.clone(),
                spec.host.clone(),
            ));
        }
        Ok(store)
    }

    fn count(&mut self, job: &str, host: &str, here: bool) {
        let entry = self.counts.entry(job.to_string()).or_default();
        if here {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        entry.2 = Some(host.to_string());
    }

    /// Fire times run here, elsewhere, and the last one's host.
    pub(super) fn counts(&self, job: &str) -> (u64, u64, Option<String>) {
        self.counts.get(job).cloned().unwrap_or_default()
    }
}

impl Supervisor {
    /// A fire time (or a `trigger`) of a fleet job: claimed in a task, answered by [`Report::Claimed`].
    pub(super) fn claim_fleet_run(&mut self, name: &str, start: RunStart, reply: Option<Replier>) {
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        let Some(spec) = job.spec.fleet.clone() else {
            return;
        };
        let deadline = job.spec.starting_deadline_ms.map(Duration::from_millis);
        // An unanswered claim is tried until the starting deadline, or the next fire time.
        let next = start
            .scheduled
            .zip(job.schedule.as_ref())
            .and_then(|(at, schedule)| schedule.next_after(at))
            .map(|fire| fire.at);
        let until = match (start.scheduled, deadline) {
            (Some(at), Some(deadline)) => SignedDuration::try_from(deadline)
                .ok()
                .and_then(|d| at.checked_add(d).ok()),
            (Some(_), None) if job.spec.catch_up == policy::CatchUp::Last => next,
            _ => None,
        };
        let retain = policy::claim_retain(deadline);
        let claim_job = ClaimJob {
            name: name.to_string(),
            spec: spec.clone(),
            overlap: job.spec.overlap,
            retain,
            until,
        };
        let store = match self.jobs.fleet.store(&spec) {
            Ok(store) => store,
            Err(error) => {
                self.fleet_unreachable(name, start, error, reply);
                return;
            }
        };
        tokio::spawn(claim(store, claim_job, start, reply, self.tx.clone()));
    }

    pub(in crate::daemon::supervisor) fn fleet_report(&mut self, report: Report) {
        match report {
            Report::Claimed {
                job,
                start,
                result,
                reply,
            } => self.fleet_claimed(&job, start, result, reply),
            Report::Unreachable {
                job,
                start,
                error,
                reply,
            } => self.fleet_unreachable(&job, start, error, reply),
            Report::Stop {
                job,
                run_id,
                attempt,
                outcome,
                why,
            } => self.fleet_stop(&job, &run_id, attempt, outcome, why),
        }
    }

    fn fleet_unreachable(
        &mut self,
        name: &str,
        start: RunStart,
        error: String,
        reply: Option<Replier>,
    ) {
        warn!(job = %name, run = %start.run_id, error = %error, "the fleet store did not answer: the run is skipped");
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        let run = job.not_run(
            &start,
            RunOutcome::Skipped,
            format!("store unreachable: {error}"),
        );
        job.save();
        if let Some(reply) = reply {
            let _ = reply.send(Response::Triggered { run: Box::new(run) });
        }
    }

    fn fleet_claimed(
        &mut self,
        name: &str,
        start: RunStart,
        result: ClaimResult,
        reply: Option<Replier>,
    ) {
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            if let Some(reply) = reply {
                let message = format!("job '{name}' was removed while its run was claimed");
                let _ = reply.send(Response::error(ErrorKind::NotFound, message));
            }
            return;
        };
        let Some(spec) = job.spec.fleet.clone() else {
            // Redefined as a host job meanwhile: the claim is not used.
            if let Some(reply) = reply {
                let message = format!("job '{name}' is no longer a fleet job: trigger it again");
                let _ = reply.send(Response::error(ErrorKind::Conflict, message));
            }
            return;
        };
        let answer = |run: RunRecord| {
            if let Some(reply) = &reply {
                let _ = reply.send(Response::Triggered { run: Box::new(run) });
            }
        };
        // Caught up after the store came back: still in time, and still the latest fire time handled?
        let skipped_before = job
            .stored
            .runs
            .iter()
            .any(|r| r.run_id == start.run_id && r.outcome == RunOutcome::Skipped);
        let fence = match result {
            ClaimResult::Taken { holder } => {
                info!(job = %name, run = %start.run_id, holder = %holder, "claimed by another host");
                self.jobs.fleet.count(name, &holder, false);
                if skipped_before {
                    return; // recorded skipped already (store unreachable)
                }
                let Some(job) = self.jobs.jobs.get_mut(name) else {
                    return;
                };
                let run = job.not_run(&start, RunOutcome::Skipped, format!("claimed by {holder}"));
                job.save();
                answer(run);
                return;
            }
            ClaimResult::Busy => {
                info!(job = %name, run = %start.run_id, "skipped: another host's run holds the job's lease");
                let run = job.not_run(
                    &start,
                    RunOutcome::Skipped,
                    "a run was still in progress on another host (overlap = \"skip\")".to_string(),
                );
                job.save();
                self.fleet_record(name, &run);
                answer(run);
                return;
            }
            ClaimResult::Won { fence } => fence,
        };
        let mut start = start;
        start.fence = Some(fence);
        if skipped_before && let Some(at) = start.scheduled {
            let deadline = job.spec.starting_deadline_ms.map(Duration::from_millis);
            if !policy::late_claim_runs(at, Timestamp::now(), deadline, job.last_handled()) {
                self.release_fleet_lease(name, &spec, &start);
                return;
            }
            info!(job = %name, run = %start.run_id, "the fleet store is back: catching the run up");
        }
        self.jobs.fleet.count(name, &spec.host, true);
        let running = job.runs.len() + job.starting.len();
        let overlap = job.spec.overlap;
        match policy::on_fire(overlap, running) {
            OnFire::Skip => {
                let run = job.not_run(
                    &start,
                    RunOutcome::Skipped,
                    "a run was still in progress (overlap = \"skip\")".to_string(),
                );
                job.save();
                self.release_fleet_lease(name, &spec, &start);
                self.fleet_record(name, &run);
                answer(run);
                return;
            }
            OnFire::Start => {}
            OnFire::Replace => self.replace_runs(name, &start.run_id),
        }
        self.start_run(name, start.clone());
        self.watch_fleet_run(name, &start);
        if let Some(record) = self
            .jobs
            .jobs
            .get_mut(name)
            .and_then(|j| j.record_mut(&start).cloned())
        {
            answer(record);
        }
    }

    /// Starts the watch of a fleet run that holds the job's lease (`skip`) or may be replaced (`replace`).
    pub(super) fn watch_fleet_run(&mut self, name: &str, start: &RunStart) {
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        let Some(spec) = job.spec.fleet.clone() else {
            return;
        };
        let overlap = job.spec.overlap;
        // A run carried over an update has no fence to look for a replacement with.
        let watched = match overlap {
            policy::Overlap::Skip => true,
            policy::Overlap::Replace => start.fence.is_some(),
            policy::Overlap::Allow => false,
        };
        if !watched {
            return;
        }
        let Ok(store) = self.jobs.fleet.store(&spec) else {
            return;
        };
        let key = (name.to_string(), start.run_id.clone());
        if self.jobs.fleet.watches.contains_key(&key) {
            return;
        }
        let task = tokio::spawn(watch(
            store,
            name.to_string(),
            spec,
            start.clone(),
            overlap,
            self.tx.clone(),
        ));
        self.jobs.fleet.watches.insert(key, task.abort_handle());
    }

    /// A fleet run lost its lease, or was replaced from another host: it is stopped (and not retried).
    fn fleet_stop(
        &mut self,
        name: &str,
        run_id: &str,
        attempt: u32,
        outcome: RunOutcome,
        why: String,
    ) {
        self.jobs
            .fleet
            .watches
            .remove(&(name.to_string(), run_id.to_string()));
        let Some(job) = self.jobs.jobs.get_mut(name) else {
            return;
        };
        // A next attempt waiting for its backoff does not come: the run is no longer this host's.
        let before = job.retries.len();
        job.retries.retain(|_, r| r.run_id != run_id);
        job.stored.pending.retain(|p| p.run_id != run_id);
        if job.retries.len() != before {
            warn!(job = %name, run = %run_id, why = %why, "the fleet run's next attempt is dropped");
            job.save();
        }
        let slot = job
            .runs
            .iter()
            .find(|(_, a)| a.start.run_id == run_id && a.start.attempt == attempt)
            .map(|(slot, _)| *slot);
        if let Some(slot) = slot {
            warn!(job = %name, run = %run_id, why = %why, "stopping the fleet run");
            if let Some(active) = job.runs.get_mut(&slot) {
                active.stopped_for = Some((outcome, why));
            }
            self.stop_run_slot(slot);
        }
    }

    /// A fleet run's attempt ended: its record goes to the store; unless it is retried, its watch stops and
    /// its lease is released.
    pub(super) fn fleet_run_ended(&mut self, name: &str, start: &RunStart, retrying: bool) {
        let Some(spec) = self.jobs.jobs.get(name).and_then(|j| j.spec.fleet.clone()) else {
            return;
        };
        if !retrying {
            if let Some(task) = self
                .jobs
                .fleet
                .watches
                .remove(&(name.to_string(), start.run_id.clone()))
            {
                task.abort();
            }
            if self.jobs.jobs.get(name).map(|j| j.spec.overlap) == Some(policy::Overlap::Skip) {
                self.release_fleet_lease(name, &spec, start);
            }
        }
        let record = self
            .jobs
            .jobs
            .get_mut(name)
            .and_then(|j| j.record_mut(start).cloned());
        if let Some(record) = record {
            self.fleet_record(name, &record);
        }
    }

    fn release_fleet_lease(&mut self, name: &str, spec: &FleetSpec, start: &RunStart) {
        let Some(store) = self.jobs.fleet.stores.get(&spec.store).cloned() else {
            return;
        };
        let (fleet, job, owner) = (spec.name.clone(), name.to_string(), owner(spec, start));
        tokio::spawn(async move {
            if let Err(e) = store.release_lease(&fleet, &job, &owner).await {
                warn!(job = %job, error = %e, "the job's lease could not be released: it expires");
            }
        });
    }

    /// Sends a run's record to the store (a task nobody waits for), pruned to the job's history.
    fn fleet_record(&mut self, name: &str, record: &RunRecord) {
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        let Some(spec) = job.spec.fleet.clone() else {
            return;
        };
        let keep = job.spec.history;
        let Some(store) = self.jobs.fleet.stores.get(&spec.store).cloned() else {
            return;
        };
        let (job, record) = (name.to_string(), record.clone());
        tokio::spawn(async move {
            if let Err(e) = store
                .record_run(&spec.name, &job, &spec.host, &record, keep)
                .await
            {
                warn!(job = %job, run = %record.run_id, error = %e, "the run's record could not be written to the fleet store");
            }
        });
    }
}
