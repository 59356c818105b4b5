//! What `jobs history NAME --fleet` and `fleet status` ask of the fleet stores: answered from tasks that
//! hold the request's reply channel, so the supervisor's loop never waits on a store.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use tracing::warn;

use super::super::{Replier, Supervisor};
use super::ms;
use crate::config::fleet::FleetSpec;
use crate::fleet::{SKEW_WARN, Store};
use crate::protocol::{ErrorKind, FleetHost, FleetRun, FleetStoreStatus, Response};

impl Supervisor {
    /// `jobs history NAME --fleet`: every host's runs, read from the store in a task.
    pub(super) fn fleet_history(&mut self, name: &str, reply: Replier) {
        let Some(spec) = self.jobs.jobs.get(name).and_then(|j| j.spec.fleet.clone()) else {
            let message = format!(
                "job '{name}' has no fleet history: it is not a `scope = \"fleet\"` job (or does not exist)"
            );
            let _ = reply.send(Response::error(ErrorKind::NotFound, message));
            return;
        };
        let store = match self.jobs.fleet.store(&spec) {
            Ok(store) => store,
            Err(e) => {
                let _ = reply.send(Response::error(ErrorKind::Invalid, e));
                return;
            }
        };
        let job = name.to_string();
        tokio::spawn(async move {
            let response = match store.history(&spec.name, &job).await {
                Ok(runs) => Response::FleetHistory {
                    runs: runs
                        .into_iter()
                        .map(|(host, run)| FleetRun { host, run })
                        .collect(),
                    job,
                },
                Err(e) => Response::error(ErrorKind::Os, e.to_string()),
            };
            let _ = reply.send(response);
        });
    }

    /// `fleet status`: each store the jobs use, asked in a task.
    pub(super) fn fleet_status(&mut self, reply: Replier) {
        let mut wanted: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for (name, job) in &self.jobs.jobs {
            if let Some(spec) = &job.spec.fleet {
                wanted
                    .entry((spec.store.clone(), spec.name.clone(), spec.host.clone()))
                    .or_default()
                    .push(name.clone());
            }
        }
        let mut asks = Vec::new();
        for ((url, fleet, host), jobs) in wanted {
            let spec = FleetSpec {
                store: url,
                name: fleet,
                host,
                lease_ttl_ms: 0,
            };
            match self.jobs.fleet.store(&spec) {
                Ok(store) => asks.push((store, spec, jobs)),
                Err(e) => warn!(error = %e, "fleet status: a store cannot be used"),
            }
        }
        tokio::spawn(async move {
            let mut stores = Vec::new();
            for (store, spec, jobs) in asks {
                stores.push(status(&store, &spec, jobs).await);
            }
            let _ = reply.send(Response::FleetStatus { stores });
        });
    }
}

/// One store's status: latency, the clock against ours, the hosts seen.
async fn status(store: &Store, spec: &FleetSpec, jobs: Vec<String>) -> FleetStoreStatus {
    let mut out = FleetStoreStatus {
        store: store.redacted().to_string(),
        fleet: spec.name.clone(),
        host: spec.host.clone(),
        jobs,
        latency_us: None,
        error: None,
        skew_ms: None,
        skew_tolerated_ms: SKEW_WARN.as_millis() as u64,
        hosts: Vec::new(),
        now_ms: None,
    };
    match store.ping().await {
        Ok(latency) => out.latency_us = Some(latency.as_micros() as u64),
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    }
    let asked = Instant::now();
    let before = Timestamp::now();
    match store.server_time().await {
        Ok(server) => {
            let half = SignedDuration::try_from(asked.elapsed() / 2).unwrap_or_default();
            let ours = before.checked_add(half).unwrap_or(before);
            out.skew_ms = Some(ours.duration_since(server).as_millis() as i64);
            out.now_ms = Some(ms(server));
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    match store.hosts(&spec.name).await {
        Ok(hosts) => {
            out.hosts = hosts
                .into_iter()
                .map(|h| FleetHost {
                    name: h.name,
                    version: h.version,
                    last_seen_ms: h.last_seen_ms,
                })
                .collect()
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}
