//! The metrics page: the keeper's process records (the very answer `list --json` prints) and its jobs,
//! rendered as Prometheus text format 0.0.4 or OpenMetrics 1.0.0. A plain function of its input.
//!
//! Families (labels in braces; `app`, `instance`, `id` identify a worker):
//! - per worker: `herdsman_worker_cpu_percent`, `_memory_bytes`, `_uptime_seconds`, `_restarts_total`,
//!   `_memory_restarts_total`, `_watchdog_misses_total`, `_hung_total`, `_status{status}` (1 for its status, 0 for the others);
//! - per Node worker (the preload's reports): `herdsman_node_eventloop_delay_p50_seconds`, `_p99_seconds`,
//!   `herdsman_node_heap_used_bytes`, `herdsman_node_heap_total_bytes`;
//! - per app: `herdsman_app_workers_desired` (slots not stopped), `herdsman_app_workers_online`,
//!   `herdsman_app_reloads_total{outcome}`, `herdsman_app_reload_duration_seconds` (a summary: sum and
//!   count), `herdsman_app_nobody_accepting`;
//! - per listening TCP socket: `herdsman_listener_accept_queue_depth`, `_limit`;
//! - per job (supercronic's names where they fit): `herdsman_job_currently_running`,
//!   `herdsman_job_executions_total`, `herdsman_job_successful_executions_total`,
//!   `herdsman_job_failed_executions_total`, `herdsman_job_last_execution_time_seconds`,
//!   `herdsman_job_last_run_timestamp_seconds`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::protocol::{JobInfo, ProcessInfo, Status};

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0 (asked for with `Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Summary,
}

/// A sample's labels, in order.
type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples, each a name suffix (`_total`, `_sum`, ...), labels and a value.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(&'static str, Labels, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        self.samples.push((suffix, labels, value));
    }

    fn write(&self, out: &mut String, format: Format) {
        let kind = match self.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Summary => "summary",
        };
        // In 0.0.4 a counter's family is named with its `_total`; in OpenMetrics without it.
        let family = match (format, self.kind) {
            (Format::Prometheus, Kind::Counter) => format!("{}_total", self.name),
            _ => self.name.to_string(),
        };
        let _ = writeln!(out, "# HELP {family} {}", self.help);
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for (suffix, labels, value) in &self.samples {
            out.push_str(self.name);
            out.push_str(suffix);
            if !labels.is_empty() {
                out.push('{');
                for (i, (key, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
}

/// A label value as the text formats want it.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

const STATUSES: [Status; 6] = [
    Status::Launching,
    Status::Online,
    Status::Waiting,
    Status::Stopping,
    Status::Stopped,
    Status::Errored,
];

/// The page for these records and jobs.
pub fn render(processes: &[ProcessInfo], jobs: &[JobInfo], format: Format) -> String {
    use Kind::{Counter, Gauge, Summary};
    let mut cpu = Family::new(
        "herdsman_worker_cpu_percent",
        Gauge,
        "CPU used by the worker and its descendants, in percent of one core (as `list` shows it).",
    );
    let mut memory = Family::new(
        "herdsman_worker_memory_bytes",
        Gauge,
        "Resident memory of the worker and its descendants.",
    );
    let mut uptime = Family::new(
        "herdsman_worker_uptime_seconds",
        Gauge,
        "How long the worker's current process has run.",
    );
    let mut restarts = Family::new(
        "herdsman_worker_restarts",
        Counter,
        "Times the worker's slot was started again (crashes, restarts, reloads).",
    );
    let mut memory_restarts = Family::new(
        "herdsman_worker_memory_restarts",
        Counter,
        "Times the worker was replaced for using more memory than max_memory_restart.",
    );
    let mut status = Family::new(
        "herdsman_worker_status",
        Gauge,
        "The worker's status: 1 for the one it is in, 0 for the others.",
    );
    let mut watchdog_misses = Family::new(
        "herdsman_worker_watchdog_misses",
        Counter,
        "Watchdog deadlines the worker's processes missed (no WATCHDOG=1 within `watchdog`).",
    );
    let mut hung = Family::new(
        "herdsman_worker_hung",
        Counter,
        "Times a process of the worker was found hung by the watchdog and replaced or killed.",
    );
    let mut p50 = Family::new(
        "herdsman_node_eventloop_delay_p50_seconds",
        Gauge,
        "Median event-loop delay of a Node worker over its last report interval (from its preload).",
    );
    let mut p99 = Family::new(
        "herdsman_node_eventloop_delay_p99_seconds",
        Gauge,
        "99th percentile of a Node worker's event-loop delay over its last report interval.",
    );
    let mut heap_used = Family::new(
        "herdsman_node_heap_used_bytes",
        Gauge,
        "V8 heap used by a Node worker.",
    );
    let mut heap_total = Family::new(
        "herdsman_node_heap_total_bytes",
        Gauge,
        "V8 heap allocated by a Node worker.",
    );
    let mut desired = Family::new(
        "herdsman_app_workers_desired",
        Gauge,
        "Worker slots of the app that should run (not stopped).",
    );
    let mut online = Family::new(
        "herdsman_app_workers_online",
        Gauge,
        "Workers of the app that are online.",
    );
    let mut reloads = Family::new(
        "herdsman_app_reloads",
        Counter,
        "Reloads of the app (rollouts that replaced running workers) since the keeper started, by outcome.",
    );
    let mut reload_seconds = Family::new(
        "herdsman_app_reload_duration_seconds",
        Summary,
        "How long the app's reloads took, from the request to the last worker replaced.",
    );
    let mut nobody = Family::new(
        "herdsman_app_nobody_accepting",
        Gauge,
        "1 while connections wait in one of the app's accept queues and no worker has accepted any for a while.",
    );
    let mut depth = Family::new(
        "herdsman_listener_accept_queue_depth",
        Gauge,
        "Connections waiting to be accepted on a listening TCP socket the daemon holds.",
    );
    let mut limit = Family::new(
        "herdsman_listener_accept_queue_limit",
        Gauge,
        "The accept queue's limit (backlog) of a listening TCP socket the daemon holds.",
    );

    // Apps, in name order, with their records.
    let mut apps: BTreeMap<&str, Vec<&ProcessInfo>> = BTreeMap::new();
    for p in processes {
        apps.entry(p.name.as_str()).or_default().push(p);
    }
    for (name, records) in &apps {
        for p in records {
            let worker = || {
                vec![
                    ("app", name.to_string()),
                    ("instance", p.instance.to_string()),
                    ("id", p.id.to_string()),
                ]
            };
            cpu.add(worker(), f64::from(p.cpu));
            memory.add(worker(), p.memory as f64);
            uptime.add(worker(), p.uptime_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
            restarts.add(worker(), f64::from(p.restarts));
            memory_restarts.add(worker(), f64::from(p.memory_restarts));
            watchdog_misses.add(worker(), f64::from(p.watchdog_misses));
            hung.add(worker(), f64::from(p.hung));
            for s in STATUSES {
                let mut labels = worker();
                labels.push(("status", s.as_str().to_string()));
                status.add(labels, if p.status == s { 1.0 } else { 0.0 });
            }
            if let Some(runtime) = &p.runtime {
                p50.add(worker(), runtime.loop_delay_p50_us as f64 / 1e6);
                p99.add(worker(), runtime.loop_delay_p99_us as f64 / 1e6);
                heap_used.add(worker(), runtime.heap_used as f64);
                heap_total.add(worker(), runtime.heap_total as f64);
            }
        }
        let app = || vec![("app", name.to_string())];
        let count = |want: &dyn Fn(Status) -> bool| {
            records.iter().filter(|p| want(p.status)).count() as f64
        };
        desired.add(app(), count(&|s| s != Status::Stopped));
        online.add(app(), count(&|s| s == Status::Online));
        let first = records[0];
        nobody.add(app(), if first.nobody_accepting { 1.0 } else { 0.0 });
        if let Some(stats) = first.reloads {
            reloads.add(
                vec![("app", name.to_string()), ("outcome", "ok".into())],
                stats.ok as f64,
            );
            reloads.add(
                vec![("app", name.to_string()), ("outcome", "failed".into())],
                stats.failed as f64,
            );
            reload_seconds
                .samples
                .push(("_sum", app(), stats.seconds_total));
            reload_seconds
                .samples
                .push(("_count", app(), (stats.ok + stats.failed) as f64));
        }
        // Shared sockets are the same on every record of the app; per-slot ones are each worker's own.
        let shared = first
            .balance
            .is_none_or(|b| b == crate::config::Balance::Shared);
        for p in if shared { &records[..1] } else { &records[..] } {
            for queue in &p.accept_queues {
                let mut labels = vec![
                    ("app", name.to_string()),
                    ("address", queue.address.clone()),
                ];
                if !shared {
                    labels.push(("instance", p.instance.to_string()));
                }
                depth.add(labels.clone(), f64::from(queue.depth));
                limit.add(labels, f64::from(queue.limit));
            }
        }
    }

    let mut running = Family::new(
        "herdsman_job_currently_running",
        Gauge,
        "Runs of the job in progress (supercronic_currently_running).",
    );
    let mut executions = Family::new(
        "herdsman_job_executions",
        Counter,
        "Runs of the job that ended, since it was created (supercronic_executions).",
    );
    let mut successful = Family::new(
        "herdsman_job_successful_executions",
        Counter,
        "Runs of the job that ended ok (supercronic_successful_executions).",
    );
    let mut failed = Family::new(
        "herdsman_job_failed_executions",
        Counter,
        "Runs of the job that failed, timed out or were killed (supercronic_failed_executions).",
    );
    let mut last_time = Family::new(
        "herdsman_job_last_execution_time_seconds",
        Gauge,
        "How long the job's last run took.",
    );
    let mut last_at = Family::new(
        "herdsman_job_last_run_timestamp_seconds",
        Gauge,
        "When the job's last run ended, in seconds since the Unix epoch.",
    );
    for job in jobs {
        let labels = || {
            vec![
                ("job", job.name.clone()),
                ("schedule", job.schedule.clone()),
            ]
        };
        running.add(labels(), job.running.len() as f64);
        executions.add(labels(), (job.ok + job.failed) as f64);
        successful.add(labels(), job.ok as f64);
        failed.add(labels(), job.failed as f64);
        if let Some(last) = &job.last
            && let (Some(start), Some(end)) = (last.started_at_ms, last.ended_at_ms)
        {
            last_time.add(labels(), end.saturating_sub(start) as f64 / 1000.0);
            last_at.add(labels(), end as f64 / 1000.0);
        }
    }

    let families = [
        cpu,
        memory,
        uptime,
        restarts,
        memory_restarts,
        watchdog_misses,
        hung,
        status,
        p50,
        p99,
        heap_used,
        heap_total,
        desired,
        online,
        reloads,
        reload_seconds,
        nobody,
        depth,
        limit,
        running,
        executions,
        successful,
        failed,
        last_time,
        last_at,
    ];
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        family.write(&mut out, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}
