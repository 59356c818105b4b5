//! The fleet store tasks of jobs: a claim (with its lease or stop request), the watch of a run in progress
//! (lease renewal, or a stop request from the host that replaces it), and a host's heartbeat. Each holds
//! the store and reports to the supervisor's loop by message; none touches the supervisor's state.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::super::{Message, Replier};
use super::RunStart;
use super::fleet::{ClaimResult, Report};
use crate::config::fleet::FleetSpec;
use crate::fleet::Store;
use crate::protocol::RunOutcome;
use crate::schedule::policy;

/// How often a host says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often a claim the store did not answer is tried again, until its deadline.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// Says every [`HEARTBEAT`] that this host is alive, while its store is in use.
pub(super) async fn heartbeat(store: Weak<Store>, fleet: String, host: String) {
    let version = env!("CARGO_PKG_VERSION");
    let mut failing = false;
    loop {
        let Some(store) = store.upgrade() else {
            return;
        };
        // Said once when it starts failing, and once when it works again.
        match store.heartbeat(&fleet, &host, version).await {
            Err(e) if !failing => {
                failing = true;
                warn!(fleet = %fleet, error = %e, "fleet heartbeat failed");
            }
            Ok(()) if failing => {
                failing = false;
                info!(fleet = %fleet, "fleet heartbeat works again");
            }
            _ => {}
        }
        drop(store);
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// The lease owner of a run (all its attempts): unique per run, and naming the host.
pub(super) fn owner(spec: &FleetSpec, start: &RunStart) -> String {
    format!("{} {}", spec.host, start.run_id)
}

/// The stop request a run with fence `fence` looks for: written by the claimer of the next fire time.
fn replace_key(fence: u64) -> String {
    format!("replace-fence-{fence}")
}

/// What a claim task needs of its job.
pub(super) struct ClaimJob {
    pub(super) name: String,
    pub(super) spec: FleetSpec,
    pub(super) overlap: policy::Overlap,
    pub(super) retain: Duration,
    /// Until when an unanswered claim is tried again.
    pub(super) until: Option<Timestamp>,
}

pub(super) async fn claim(
    store: Arc<Store>,
    job: ClaimJob,
    start: RunStart,
    reply: Option<Replier>,
    tx: mpsc::UnboundedSender<Message>,
) {
    let scheduled = start.scheduled.unwrap_or_else(Timestamp::now);
    let mut reply = reply;
    let mut told = false;
    let result = loop {
        let attempt = async {
            let claim = store
                .claim(
                    &job.spec.name,
                    &job.name,
                    &start.run_id,
                    scheduled,
                    &job.spec.host,
                    job.retain,
                )
                .await?;
            if !claim.won {
                return Ok(ClaimResult::Taken {
                    holder: claim.holder,
                });
            }
            match job.overlap {
                policy::Overlap::Skip => {
                    let owner = owner(&job.spec, &start);
                    let ttl = job.spec.lease_ttl();
                    if !store
                        .acquire_lease(&job.spec.name, &job.name, &owner, ttl)
                        .await?
                    {
                        return Ok(ClaimResult::Busy);
                    }
                }
                policy::Overlap::Replace => {
                    // The run holding the previous claim (fence - 1) stops when it sees this.
                    store
                        .stop_request(&job.spec.name, &job.name, &replace_key(claim.fence))
                        .await?;
                }
                policy::Overlap::Allow => {}
            }
            Ok::<_, crate::fleet::FleetError>(ClaimResult::Won { fence: claim.fence })
        };
        match attempt.await {
            Ok(result) => break result,
            Err(error) => {
                if !told {
                    told = true;
                    let report = Report::Unreachable {
                        job: job.name.clone(),
                        start: start.clone(),
                        error: error.to_string(),
                        reply: reply.take(),
                    };
                    let _ = tx.send(Message::Fleet(report));
                }
                let late = job.until.is_none_or(|until| Timestamp::now() >= until);
                if late {
                    return;
                }
                tokio::time::sleep(CLAIM_RETRY).await;
            }
        }
    };
    let report = Report::Claimed {
        job: job.name,
        start,
        result,
        reply,
    };
    let _ = tx.send(Message::Fleet(report));
}

/// Renews a run's lease (`skip`) or looks for a stop request (`replace`) every third of the TTL; a failure
/// is a [`Report::Stop`].
pub(super) async fn watch(
    store: Arc<Store>,
    job: String,
    spec: FleetSpec,
    start: RunStart,
    overlap: policy::Overlap,
    tx: mpsc::UnboundedSender<Message>,
) {
    let ttl = spec.lease_ttl();
    let owner = owner(&spec, &start);
    let fence = start.fence.unwrap_or(0);
    let stop = |outcome, why: String| {
        let _ = tx.send(Message::Fleet(Report::Stop {
            job: job.clone(),
            run_id: start.run_id.clone(),
            attempt: start.attempt,
            outcome,
            why,
        }));
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        match overlap {
            policy::Overlap::Skip => match store.renew_lease(&spec.name, &job, &owner, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    return stop(
                        RunOutcome::LostLease,
                        "the job's lease expired or another host holds it".to_string(),
                    );
                }
                Err(e) => {
                    return stop(
                        RunOutcome::LostLease,
                        format!("the lease could not be renewed: {e}"),
                    );
                }
            },
            _ => {
                let key = replace_key(fence + 1);
                if let Ok(true) = store.stop_requested(&spec.name, &job, &key).await {
                    return stop(
                        RunOutcome::Killed,
                        "replaced by the next run on another host (overlap = \"replace\")"
                            .to_string(),
                    );
                }
            }
        }
    }
}
