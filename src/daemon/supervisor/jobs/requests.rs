//! What `jobs`, `trigger`, `list` and `monit` ask of the jobs: answers from their state, and the run-now,
//! pause and resume buttons.

use jiff::Timestamp;
use tracing::info;

use super::super::Supervisor;
use super::{Job, jitter, ms};
use crate::protocol::{
    ErrorKind, FireInfo, JobInfo, JobRequest, JobSummary, Response, RunOutcome, RunRecord,
};
use crate::schedule::policy::{self, OnFire};

impl Supervisor {
    /// `jobs ...`, `trigger` and `fleet status`: answered now, or (what asks a fleet store) from a task.
    pub(in crate::daemon::supervisor) fn job_request(
        &mut self,
        request: JobRequest,
        reply: crate::daemon::supervisor::Replier,
    ) {
        match request {
            JobRequest::History { name, fleet: true } => self.fleet_history(&name, reply),
            JobRequest::FleetStatus => self.fleet_status(reply),
            JobRequest::Trigger { name }
                if !self.shutting_down
                    && self
                        .jobs
                        .jobs
                        .get(&name)
                        .is_some_and(|j| j.spec.fleet.is_some()) =>
            {
                self.trigger_fleet(&name, reply)
            }
            request => {
                let _ = reply.send(self.job_request_now(request));
            }
        }
    }

    /// `trigger` of a fleet job: a manual run id claimed in the store (obeying `overlap` here and across
    /// the fleet), run here; answered once the claim came back.
    fn trigger_fleet(&mut self, name: &str, reply: crate::daemon::supervisor::Replier) {
        let Some(job) = self.jobs.jobs.get(name) else {
            return;
        };
        let running = job.runs.len() + job.starting.len();
        let start = self.run_start(name, None, 1);
        if matches!(policy::on_fire(job.spec.overlap, running), OnFire::Skip) {
            let Some(job) = self.jobs.jobs.get_mut(name) else {
                return;
            };
            let run = job.not_run(
                &start,
                RunOutcome::Skipped,
                "a run was still in progress (overlap = \"skip\")".to_string(),
            );
            job.save();
            let _ = reply.send(Response::Triggered { run: Box::new(run) });
            return;
        }
        self.claim_fleet_run(name, start, Some(reply));
    }

    /// The requests answered from the jobs' state.
    fn job_request_now(&mut self, request: JobRequest) -> Response {
        let unknown = |name: &str| {
            Response::error(
                ErrorKind::NotFound,
                format!("no job named '{name}' (`herdsman jobs` lists them)"),
            )
        };
        match request {
            JobRequest::List { brief } => Response::Jobs {
                jobs: self
                    .jobs
                    .jobs
                    .keys()
                    .filter_map(|name| self.job_info(name, brief))
                    .collect(),
            },
            JobRequest::FleetStatus => Response::error(ErrorKind::Invalid, "fleet status"),
            JobRequest::History { name, .. } => {
                self.save_jobs();
                let (Some(job), Some(store)) = (self.jobs.jobs.get(&name), &self.jobs.store) else {
                    return unknown(&name);
                };
                Response::JobHistory {
                    runs: store.history(&name, job.spec.history),
                    job: name,
                }
            }
            JobRequest::Next { name, count } => match self.jobs.jobs.get(&name) {
                Some(Job {
                    schedule: None,
                    unusable,
                    ..
                }) => Response::error(
                    ErrorKind::Invalid,
                    format!(
                        "job '{name}' has no fire time on this host: {}",
                        unusable.as_deref().unwrap_or("its schedule cannot be used")
                    ),
                ),
                Some(
                    job @ Job {
                        schedule: Some(schedule),
                        ..
                    },
                ) => {
                    let jitter = jitter(&name, &job.spec);
                    let fires = schedule
                        .upcoming(Timestamp::now(), count.clamp(1, 1000) as usize)
                        .into_iter()
                        .map(|fire| {
                            let at = fire.at.checked_add(jitter).unwrap_or(fire.at);
                            let local = at.to_zoned(schedule.zone().clone());
                            FireInfo {
                                at_ms: ms(at),
                                local: local.strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
                                utc: at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                                shift: fire.shift.map(|s| s.to_string()),
                            }
                        })
                        .collect();
                    Response::JobNext {
                        job: name,
                        timezone: schedule.zone_name().to_string(),
                        fires,
                    }
                }
                None => unknown(&name),
            },
            JobRequest::Trigger { name } => {
                if self.shutting_down {
                    let message = "the daemon is shutting down: nothing starts";
                    return Response::error(ErrorKind::Conflict, message);
                }
                let Some(job) = self.jobs.jobs.get(&name) else {
                    return unknown(&name);
                };
                let running = job.runs.len() + job.starting.len();
                let overlap = job.spec.overlap;
                let start = self.run_start(&name, None, 1);
                let run = match policy::on_fire(overlap, running) {
                    OnFire::Skip => {
                        let Some(job) = self.jobs.jobs.get_mut(&name) else {
                            return unknown(&name);
                        };
                        let run = job.not_run(
                            &start,
                            RunOutcome::Skipped,
                            "a run was still in progress (overlap = \"skip\")".to_string(),
                        );
                        job.save();
                        return Response::Triggered { run: Box::new(run) };
                    }
                    OnFire::Start => {
                        self.start_run(&name, start.clone());
                        start
                    }
                    OnFire::Replace => {
                        self.replace_runs(&name, &start.run_id);
                        self.start_run(&name, start.clone());
                        start
                    }
                };
                match self
                    .jobs
                    .jobs
                    .get_mut(&name)
                    .and_then(|j| j.record_mut(&run).cloned())
                {
                    Some(record) => Response::Triggered {
                        run: Box::new(record),
                    },
                    None => unknown(&name),
                }
            }
            JobRequest::Pause { name } => {
                let Some(job) = self.jobs.jobs.get_mut(&name) else {
                    return unknown(&name);
                };
                job.stored.paused = true;
                job.generation += 1;
                job.next = None;
                job.save();
                info!(job = %name, "job paused");
                Response::Ok
            }
            JobRequest::Resume { name } => {
                let Some(job) = self.jobs.jobs.get_mut(&name) else {
                    return unknown(&name);
                };
                if !job.stored.paused {
                    return Response::Ok;
                }
                job.stored.paused = false;
                // The fire times passed while paused are not run: the schedule goes on from now.
                job.stored.last_handled_ms = Some(ms(Timestamp::now()));
                let enabled = job.stored.enabled;
                job.save();
                info!(job = %name, "job resumed");
                if enabled {
                    self.arm_job(&name, Timestamp::now());
                }
                Response::Ok
            }
        }
    }

    fn job_info(&self, name: &str, brief: bool) -> Option<JobInfo> {
        let job = self.jobs.jobs.get(name)?;
        let running: Vec<RunRecord> = job
            .runs
            .values()
            .filter_map(|a| {
                job.stored
                    .runs
                    .iter()
                    .rev()
                    .find(|r| r.run_id == a.start.run_id && r.attempt == a.start.attempt)
                    .cloned()
            })
            .collect();
        let next = upcoming(job);
        Some(JobInfo {
            name: name.to_string(),
            schedule: job.spec.schedule.clone(),
            words: match (&job.schedule, &job.unusable) {
                (Some(schedule), _) => schedule.describe().to_string(),
                (None, why) => format!("cannot be used here: {}", why.as_deref().unwrap_or("?")),
            },
            timezone: job.schedule.as_ref().map_or_else(
                || job.spec.timezone.clone().unwrap_or_default(),
                |s| s.zone_name().to_string(),
            ),
            state: job.state(),
            next_ms: next.map(|(_, due)| ms(*due)),
            next_local: next.zip(job.schedule.as_ref()).map(|((_, due), schedule)| {
                due.to_zoned(schedule.zone().clone())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            }),
            running,
            last: last_ended(job).map(|r| match brief {
                true => RunRecord {
                    run_id: r.run_id.clone(),
                    outcome: r.outcome,
                    exit: r.exit.clone(),
                    attempt: r.attempt,
                    scheduled_at_ms: None,
                    started_at_ms: None,
                    ended_at_ms: None,
                    exit_code: None,
                    pid: None,
                    log: None,
                    detail: None,
                },
                false => r.clone(),
            }),
            ok: job.stored.ok,
            failed: job.stored.failed,
            retrying: job.retries.values().map(|r| r.run_id.clone()).collect(),
            fleet: job.spec.fleet.as_ref().map(|spec| {
                let (ran_here, ran_elsewhere, last_host) = self.jobs.fleet.counts(name);
                crate::protocol::JobFleet {
                    name: spec.name.clone(),
                    host: spec.host.clone(),
                    last_host,
                    ran_here,
                    ran_elsewhere,
                }
            }),
        })
    }

    /// A job's state for `list`.
    pub(in crate::daemon::supervisor) fn job_summary(&self, app: &str) -> Option<JobSummary> {
        let job = self.jobs.jobs.get(app)?;
        let next = upcoming(job);
        Some(JobSummary {
            state: job.state(),
            next_ms: next.map(|(_, due)| ms(*due)),
            last_outcome: last_ended(job).map(|r| r.outcome),
        })
    }
}

/// A job's next fire time, unless it is disabled or paused.
fn upcoming(job: &Job) -> Option<&(super::Fire, Timestamp)> {
    job.next
        .as_ref()
        .filter(|_| job.stored.enabled && !job.stored.paused)
}

/// A job's last run that ended.
fn last_ended(job: &Job) -> Option<&RunRecord> {
    job.stored
        .runs
        .iter()
        .rev()
        .find(|r| r.outcome != RunOutcome::Running)
}
