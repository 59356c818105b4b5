//! Tests of the dashboard without a daemon: snapshots are fed into [`App`] as the subscription would, keys
//! as the terminal would. `keys` checks the update function, `render` draws fixed data on ratatui's
//! `TestBackend` and compares the screen with the snapshots in `snapshots/`.

mod keys;
mod render;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Event, JobRow, LogLine};
use crate::protocol::{
    JobInfo, JobState, JobSummary, Mode, ProcessInfo, RunOutcome, RunRecord, Status,
};

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
        watchdog_misses: 0,
        hung: 0,
        watching: false,
        watch_error: None,
        log_lines: None,
        group: Vec::new(),
        adopted: false,
        balance: None,
        runtime: None,
        accept_queues: Vec::new(),
        nobody_accepting: false,
        reloads: None,
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

/// The clock of the jobs fixtures (ms since the epoch): 2026-12-02 14:30:00 UTC.
const JOBS_AT: u64 = 1_796_221_800_000;

/// A run of `job` that ended `ago_s` seconds before [`JOBS_AT`] with `outcome`.
fn run(job: &str, ago_s: u64, outcome: RunOutcome) -> RunRecord {
    let at = JOBS_AT - ago_s * 1000;
    RunRecord {
        run_id: format!("{job}@{at}"),
        scheduled_at_ms: Some(at),
        started_at_ms: Some(at),
        ended_at_ms: (outcome != RunOutcome::Running).then_some(at + 500),
        outcome,
        exit: (outcome == RunOutcome::Failed).then(|| "code 1".to_string()),
        exit_code: None,
        attempt: 1,
        pid: Some(52_000),
        log: Some(format!("/var/log/jobs/{job}-{at}.log")),
        detail: None,
    }
}

/// A job named `name`; its `last` is the newest of `recent`.
fn job(name: &str, words: &str, state: JobState, recent: Vec<RunRecord>) -> JobRow {
    // The next fire time, 3 minutes away, unless paused.
    let next = (state != JobState::Paused).then_some(JOBS_AT + 180_000);
    let ok = recent
        .iter()
        .filter(|r| r.outcome == RunOutcome::Ok)
        .count() as u64;
    let failed = recent.iter().filter(|r| r.outcome.is_failure()).count() as u64;
    JobRow {
        info: JobInfo {
            name: name.into(),
            schedule: "*/5 * * * *".into(),
            words: words.into(),
            timezone: "UTC".into(),
            state,
            next_ms: next,
            next_local: next.map(|_| "2026-12-02 14:33:00 UTC".to_string()),
            running: Vec::new(),
            last: recent.last().cloned(),
            ok: ok + 10,
            failed,
            retrying: Vec::new(),
            fleet: None,
        },
        recent,
    }
}

/// Three jobs: `backup` with five mixed runs, `report` running for 4 s, `sync` paused and never run.
fn three_jobs() -> Vec<JobRow> {
    let mut report = job(
        "report",
        "At every 5th minute",
        JobState::Running,
        vec![run("report", 300, RunOutcome::Ok)],
    );
    report.info.running = vec![run("report", 4, RunOutcome::Running)];
    vec![
        job(
            "sync",
            "At 03:00 on every day",
            JobState::Paused,
            Vec::new(),
        ),
        job(
            "backup",
            "At every 5th minute",
            JobState::Scheduled,
            [
                RunOutcome::Ok,
                RunOutcome::Failed,
                RunOutcome::TimedOut,
                RunOutcome::Skipped,
                RunOutcome::Ok,
            ]
            .into_iter()
            .enumerate()
            .map(|(i, o)| run("backup", 1500 - i as u64 * 300, o))
            .collect(),
        ),
        report,
    ]
}

/// [`app_with`] three apps and the job slots of [`three_jobs`], then the jobs.
fn app_with_jobs() -> App {
    let mut processes = three_apps();
    for (id, job) in three_jobs().iter().enumerate() {
        let mut slot = worker(10 + id as u32, &job.info.name, 0, Status::Online);
        slot.job = Some(JobSummary {
            state: job.info.state,
            next_ms: job.info.next_ms,
            last_outcome: job.info.last.as_ref().map(|r| r.outcome),
        });
        processes.push(slot);
    }
    let mut app = app_with(processes, 5);
    app.handle_event(Event::Jobs {
        at_ms: JOBS_AT,
        jobs: three_jobs(),
    });
    app
}
