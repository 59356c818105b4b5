//! Tests of the dashboard without a daemon: snapshots are fed into [`App`] as the subscription would, keys
//! as the terminal would. `keys` checks the update function, `render` draws fixed data on ratatui's
//! `TestBackend` and compares the screen with the snapshots in `snapshots/`.

mod keys;
mod render;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Event, LogLine};
use crate::protocol::{Mode, ProcessInfo, Status};

/// A worker record with fixed figures.
fn worker(id: u32, name: &str, instance: u32, status: Status) -> ProcessInfo {
    let running = matches!(
        status,
        Status::Online | Status::Launching | Status::Stopping
    );
    ProcessInfo {
        id,
        name: name.into(),
        instance,
        mode: Mode::Cluster,
        pid: running.then_some(41_000 + id),
        status,
        restarts: id % 3,
        uptime_ms: running.then_some(3_725_000 + u64::from(id) * 61_000),
        cpu: if running { 1.5 + id as f32 * 3.0 } else { 0.0 },
        memory: if running {
            (40 + u64::from(id) * 7) * 1024 * 1024
        } else {
            0
        },
        listen: Some("127.0.0.1:3000".into()),
        restart_in_ms: None,
        last_exit: None,
        out_file: Some(format!("/var/log/{name}-out.log")),
        error_file: Some(format!("/var/log/{name}-err.log")),
        last_exit_at_ms: None,
        memory_restarts: 0,
        watching: false,
        watch_error: None,
        log_lines: None,
        group: Vec::new(),
        adopted: false,
        job: None,
    }
}

/// Three apps: `api` (two workers), `queue` and a stopped `cron`, in the daemon's (unsorted) order.
fn three_apps() -> Vec<ProcessInfo> {
    vec![
        worker(0, "api", 0, Status::Online),
        worker(1, "api", 1, Status::Online),
        worker(2, "queue", 0, Status::Launching),
        worker(3, "cron", 0, Status::Stopped),
    ]
}

/// An app fed `samples` snapshots of `processes`, each with the CPU and memory scaled along a ramp, so
/// the sparklines have a shape.
fn app_with(processes: Vec<ProcessInfo>, samples: u64) -> App {
    let mut app = App::new();
    for n in 1..=samples {
        let frame: Vec<ProcessInfo> = processes
            .iter()
            .map(|p| ProcessInfo {
                cpu: p.cpu * (n % 7) as f32 / 6.0,
                memory: p.memory / samples * n,
                ..p.clone()
            })
            .collect();
        app.handle_event(Event::Snapshot {
            at_ms: 1_790_000_000_000 + n * 1000,
            processes: frame,
        });
    }
    app.handle_event(Event::Snapshot {
        at_ms: 1_790_000_000_000 + (samples + 1) * 1000,
        processes,
    });
    app.handle_event(Event::Log(vec![
        LogLine {
            err: false,
            text: "listening on 127.0.0.1:3000".into(),
        },
        LogLine {
            err: false,
            text: "GET /health 200 1ms".into(),
        },
        LogLine {
            err: true,
            text: "warning: slow query (812 ms)".into(),
        },
        LogLine {
            err: false,
            text: "GET /users/42 200 4ms".into(),
        },
    ]));
    app
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Event {
    key(KeyCode::Char(c))
}
