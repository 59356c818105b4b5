//! Health beyond CPU and memory: what Node workers report about their runtime, the accept queues of the
//! TCP sockets the keeper holds, and an app's reloads. `list`, `describe`, `monit` and the metrics
//! endpoint read them from the process records (`observe.rs`).
//!
//! - **Node runtime.** The preload (`daemon/node/listen.cjs`) measures the event-loop delay and the V8
//!   heap and writes a report on its readiness pipe every 5 s (`ready.rs` reads it); the latest
//!   report of each process is kept here until the process is gone.
//! - **Accept queues.** While any app holds a TCP listening socket, a timer reads every such queue each
//!   [`QUEUE_INTERVAL`] (one `getsockopt` per socket); a queue left non-empty and never shrinking for a
//!   few seconds marks its app "nobody accepting" (see `daemon/accept_queue.rs`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tracing::{info, warn};

use super::{Supervisor, Timer};
use crate::daemon::accept_queue::{self, Change, QUEUE_INTERVAL, Stall};
use crate::protocol::{AcceptQueue, NodeRuntime};

/// A Node worker's report, as its preload wrote it: `p50_us,p99_us,heap_used,heap_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeReport {
    pub loop_delay_p50_us: u64,
    pub loop_delay_p99_us: u64,
    pub heap_used: u64,
    pub heap_total: u64,
}

impl RuntimeReport {
    /// Reads a report; `None` for anything else.
    pub fn parse(text: &str) -> Option<RuntimeReport> {
        let mut fields = text.trim().split(',').map(|f| f.trim().parse::<u64>());
        let mut next = || fields.next()?.ok();
        let report = RuntimeReport {
            loop_delay_p50_us: next()?,
            loop_delay_p99_us: next()?,
            heap_used: next()?,
            heap_total: next()?,
        };
        next().is_none().then_some(report)
    }
}

/// The health state the supervisor keeps.
#[derive(Default)]
pub struct Health {
    /// The latest runtime report of each Node process, by pid, with when it came.
    runtime: HashMap<i32, (RuntimeReport, Instant)>,
    /// Each TCP socket's queue history, by app and address (for per-slot sockets, the address and slot).
    queues: BTreeMap<(String, String), Stall>,
    /// A queue timer is pending.
    armed: bool,
}

impl Supervisor {
    /// A Node worker reported its runtime.
    pub(super) fn runtime_report(&mut self, pid: i32, report: RuntimeReport) {
        let known = self.workers.values().any(|w| {
            w.state.process().is_some_and(|p| p.pid == pid)
                || w.successor.is_some_and(|p| p.pid == pid)
        });
        if known {
            self.health.runtime.insert(pid, (report, Instant::now()));
        }
    }

    /// A process's latest runtime report, for its record.
    pub(super) fn runtime_of(&self, pid: i32, now: Instant) -> Option<NodeRuntime> {
        let (report, at) = self.health.runtime.get(&pid)?;
        Some(NodeRuntime {
            loop_delay_p50_us: report.loop_delay_p50_us,
            loop_delay_p99_us: report.loop_delay_p99_us,
            heap_used: report.heap_used,
            heap_total: report.heap_total,
            age_ms: now.saturating_duration_since(*at).as_millis() as u64,
        })
    }

    /// Every TCP listening socket the keeper holds, as (app, key, address shown, slot), read now.
    fn tcp_queues(&self) -> Vec<(String, String, String, Option<u32>, u32, u32)> {
        let mut out = Vec::new();
        for (name, app) in &self.apps {
            for listener in &app.listeners {
                if let Some((depth, limit)) = accept_queue::read(listener.fd()) {
                    let address = listener.addr().to_string();
                    out.push((name.clone(), address.clone(), address, None, depth, limit));
                }
            }
            if let Some(slots) = &app.slots {
                for (addr, slot, fd) in slots.parts() {
                    if let Some((depth, limit)) = accept_queue::read(fd) {
                        let address = addr.to_string();
                        let key = format!("{address}#{slot}");
                        out.push((name.clone(), key, address, Some(slot), depth, limit));
                    }
                }
            }
        }
        out
    }

    /// The accept queues a worker's record shows: its app's shared sockets, or its own slot sockets.
    pub(super) fn queues_of(&self, app: &str, worker: u32, now: Instant) -> Vec<AcceptQueue> {
        let Some(held) = self.apps.get(app) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut push = |key: String, address: String, (depth, limit): (u32, u32)| {
            let stall = self.health.queues.get(&(app.to_string(), key));
            out.push(AcceptQueue {
                address,
                depth,
                limit,
                stalled_ms: stall
                    .and_then(|s| s.waited(now))
                    .map(|d| d.as_millis() as u64),
            });
        };
        for listener in &held.listeners {
            if let Some(queue) = accept_queue::read(listener.fd()) {
                let address = listener.addr().to_string();
                push(address.clone(), address, queue);
            }
        }
        if let Some(slots) = &held.slots {
            for (addr, slot, fd) in slots.parts() {
                if slot != worker {
                    continue;
                }
                if let Some(queue) = accept_queue::read(fd) {
                    let address = addr.to_string();
                    push(format!("{address}#{slot}"), address, queue);
                }
            }
        }
        out
    }

    /// Connections wait in one of the app's queues and nobody has accepted any for a while.
    pub(super) fn nobody_accepting(&self, app: &str) -> bool {
        self.health
            .queues
            .range((app.to_string(), String::new())..)
            .take_while(|((name, _), _)| name == app)
            .any(|(_, stall)| stall.stalled())
    }

    /// Arms the queue timer if the keeper holds a TCP listening socket and it is not armed.
    pub(super) fn arm_queue_watch(&mut self) {
        if self.health.armed || self.shutting_down {
            return;
        }
        let any_tcp = self.apps.values().any(|a| {
            a.listeners
                .iter()
                .any(|l| accept_queue::read(l.fd()).is_some())
                || a.slots.as_ref().is_some_and(|s| !s.is_empty())
        });
        if any_tcp {
            self.health.armed = true;
            self.arm(QUEUE_INTERVAL, Timer::AcceptQueues);
        }
    }

    /// The queue timer: read every queue, report the stalls that begin or end, forget what is gone.
    pub(super) fn queue_tick(&mut self) {
        self.health.armed = false;
        let now = Instant::now();
        let read = self.tcp_queues();
        let mut seen = std::collections::BTreeSet::new();
        for (app, key, address, slot, depth, limit) in read {
            let stall = self
                .health
                .queues
                .entry((app.clone(), key.clone()))
                .or_default();
            match stall.observe(depth, now) {
                Change::Stalled(waited) => {
                    self.nobody_accepting_event(&app, &address, slot, depth, limit, waited)
                }
                Change::Recovered => info!(app, address, "connections are accepted again"),
                Change::None => {}
            }
            seen.insert((app, key));
        }
        self.health.queues.retain(|k, _| seen.contains(k));
        // Runtime reports of processes that are gone.
        let live: Vec<i32> = self.workers.values().flat_map(|w| w.pids()).collect();
        self.health.runtime.retain(|pid, _| live.contains(pid));
        self.arm_queue_watch();
    }

    /// Connections have waited in an app's queue with no worker accepting any: logged, and the event
    /// `nobody-accepting`.
    fn nobody_accepting_event(
        &mut self,
        app: &str,
        address: &str,
        slot: Option<u32>,
        depth: u32,
        limit: u32,
        waited: std::time::Duration,
    ) {
        warn!(
            app,
            address,
            slot,
            waiting = depth,
            limit,
            waited_ms = waited.as_millis() as u64,
            "connections are waiting and no worker accepts any: does a worker listen on a port of its own \
             instead of the inherited socket (fd 3), or is every worker stuck?"
        );
        let details = crate::protocol::EventDetails {
            reason: Some(format!(
                "{depth} connections (queue limit {limit}) have waited on {address} for {} ms and no worker \
                 accepted any",
                waited.as_millis()
            )),
            ..Default::default()
        };
        self.emit(
            crate::protocol::EventKind::NobodyAccepting,
            app,
            slot,
            None,
            details,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_report_has_four_numbers() {
        assert_eq!(
            RuntimeReport::parse("1200,8000,5242880,8388608\n"),
            Some(RuntimeReport {
                loop_delay_p50_us: 1200,
                loop_delay_p99_us: 8000,
                heap_used: 5_242_880,
                heap_total: 8_388_608,
            })
        );
        assert_eq!(RuntimeReport::parse("1,2,3"), None);
        assert_eq!(RuntimeReport::parse("1,2,3,4,5"), None);
        assert_eq!(RuntimeReport::parse("a,2,3,4"), None);
    }
}
