//! The metrics page rendered from records (`render.rs`).

use super::render::*;
use crate::protocol::{AcceptQueue, Mode, NodeRuntime, ReloadStats};
use crate::protocol::{ProcessInfo, Status};

fn record(id: u32, name: &str, instance: u32, status: Status) -> ProcessInfo {
    ProcessInfo {
        id,
        name: name.into(),
        instance,
        mode: Mode::Cluster,
        pid: Some(100 + id),
        status,
        restarts: 2,
        uptime_ms: Some(1500),
        cpu: 12.5,
        memory: 1 << 20,
        listen: Some("127.0.0.1:3000".into()),
        restart_in_ms: None,
        last_exit: None,
        out_file: None,
        error_file: None,
        last_exit_at_ms: None,
        memory_restarts: 0,
        watching: false,
        watch_error: None,
        log_lines: None,
        group: Vec::new(),
        adopted: false,
        job: None,
        balance: Some(crate::config::Balance::Shared),
        watchdog_misses: 2,
        hung: 1,
        runtime: Some(NodeRuntime {
            loop_delay_p50_us: 1500,
            loop_delay_p99_us: 20000,
            heap_used: 4_000_000,
            heap_total: 6_000_000,
            age_ms: 10,
        }),
        accept_queues: vec![AcceptQueue {
            address: "127.0.0.1:3000".into(),
            depth: 3,
            limit: 4096,
            stalled_ms: None,
        }],
        nobody_accepting: true,
        reloads: Some(ReloadStats {
            ok: 1,
            failed: 0,
            seconds_total: 0.25,
            last_seconds: Some(0.25),
        }),
    }
}

#[test]
fn workers_apps_and_queues_are_rendered_once_each() {
    let records = [
        record(0, "web", 0, Status::Online),
        record(1, "web", 1, Status::Stopped),
    ];
    let page = render(&records, &[], Format::Prometheus);
    assert!(page.contains("# TYPE herdsman_worker_restarts_total counter\n"));
    assert!(
        page.contains("herdsman_worker_restarts_total{app=\"web\",instance=\"1\",id=\"1\"} 2\n")
    );
    assert!(
        page.contains("herdsman_worker_cpu_percent{app=\"web\",instance=\"0\",id=\"0\"} 12.5\n")
    );
    assert!(page.contains(
        "herdsman_worker_status{app=\"web\",instance=\"0\",id=\"0\",status=\"online\"} 1\n"
    ));
    assert!(page.contains("herdsman_app_workers_desired{app=\"web\"} 1\n"));
    assert!(page.contains("herdsman_app_nobody_accepting{app=\"web\"} 1\n"));
    assert!(page.contains(
        "herdsman_node_eventloop_delay_p99_seconds{app=\"web\",instance=\"0\",id=\"0\"} 0.02\n"
    ));
    assert!(page.contains("herdsman_app_reload_duration_seconds_count{app=\"web\"} 1\n"));
    assert_eq!(
        page.matches("herdsman_listener_accept_queue_depth{")
            .count(),
        1,
        "{page}"
    );
    assert!(!page.contains("# EOF"));
}

#[test]
fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
    let page = render(
        &[record(0, "web", 0, Status::Online)],
        &[],
        Format::OpenMetrics,
    );
    assert!(page.contains("# TYPE herdsman_worker_restarts counter\n"));
    assert!(page.contains("herdsman_worker_restarts_total{"));
    assert!(page.ends_with("# EOF\n"));
}

#[test]
fn label_values_are_escaped_and_the_accept_header_chooses_the_format() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text;version=1.0.0")),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
}
