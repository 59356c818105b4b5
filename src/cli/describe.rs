//! `describe` (alias `show`): everything about one app, as PM2's `show` gives it, and the split of each
//! worker's CPU and memory over its process group.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::client::Client;
use crate::home::Home;
use crate::human::{bytes, duration};
use crate::logs::format_time;
use crate::protocol::{AppDetails, ProcessInfo, Request, Response, SECRET_MASK, Selection};

pub fn run(home: &Home, target: &str, json: bool) -> Result<()> {
    let selection = Selection::parse(target);
    let Some(mut client) = Client::connect(home)? else {
        bail!("no {selection} is known: the daemon is not running");
    };
    let apps = match client.request(&Request::Describe { target: selection })? {
        Response::Described { apps } => apps,
        Response::Error { message, .. } => bail!(message),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&apps)?);
        return Ok(());
    }
    let now = unix_ms(SystemTime::now());
    let text: Vec<String> = apps.iter().map(|app| render(app, now)).collect();
    print!("{}", text.join("\n"));
    Ok(())
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A time as `2026-11-24 01:02:03 UTC (5m ago)`.
fn when(at_ms: u64, now_ms: u64) -> String {
    let stamp = format_time(at_ms);
    let relative = if at_ms > now_ms {
        format!("in {}", duration(at_ms - now_ms))
    } else {
        format!("{} ago", duration(now_ms.saturating_sub(at_ms)))
    };
    format!("{} {} UTC ({relative})", &stamp[..10], &stamp[11..19])
}

fn ms(value: u64) -> String {
    if value % 1000 == 0 && value > 0 {
        format!("{}s", value / 1000)
    } else {
        format!("{value}ms")
    }
}

/// One app as text: its definition, then its workers with their process groups.
fn render(app: &AppDetails, now: u64) -> String {
    let spec = &app.spec;
    let mut out = String::new();
    let mode = if spec.job.is_some() {
        "scheduled job"
    } else if spec.listen.is_empty() {
        "fork mode"
    } else {
        "cluster mode"
    };
    let balance = match spec.balance {
        _ if spec.listen.is_empty() => None,
        crate::config::Balance::Shared => {
            Some("shared (one socket; the first worker to accept takes each connection)")
        }
        crate::config::Balance::Hash => {
            Some("hash (a socket per worker; the kernel hashes each connection)")
        }
        crate::config::Balance::Sticky => {
            Some("sticky (a socket per worker; one client address, one worker)")
        }
    };
    let _ = writeln!(out, "{} ({mode}, {} workers)", spec.name, app.workers.len());
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<14}{value}");
    };
    field("script", spec.script.display().to_string());
    field(
        "interpreter",
        spec.interpreter.clone().unwrap_or_else(|| {
            crate::config::interpreter_for(&spec.script)
                .unwrap_or("none (executed itself)")
                .to_string()
        }),
    );
    if let Some(runner) = &spec.runner {
        field("runner", runner.clone());
    }
    if !spec.interpreter_args.is_empty() {
        field("interp. args", spec.interpreter_args.join(" "));
    }
    field(
        "args",
        if spec.args.is_empty() {
            "-".into()
        } else {
            spec.args.join(" ")
        },
    );
    field("command", app.command.join(" "));
    field("cwd", spec.cwd.display().to_string());
    field(
        "listen",
        if app.listening.is_empty() {
            "- (fork mode)".into()
        } else {
            app.listening.join(", ")
        },
    );
    if let Some(balance) = balance {
        field("balance", balance.to_string());
    }
    field("instances", spec.instances.to_string());
    field(
        "restart",
        format!(
            "{}; backoff {} doubling to {}; {}; stable after {}",
            if spec.autorestart {
                "autorestart"
            } else {
                "no autorestart"
            },
            ms(spec.restart_backoff_ms),
            ms(spec.restart_backoff_max_ms),
            match spec.max_restarts {
                Some(n) => format!("errored after {n} quick crashes"),
                None => "never gives up".into(),
            },
            ms(spec.min_uptime_ms),
        ),
    );
    field(
        "stop",
        format!(
            "{} then SIGKILL after {}",
            spec.kill_signal.0.as_str(),
            ms(spec.kill_timeout_ms)
        ),
    );
    if !spec.stop_exit_codes.is_empty() {
        let codes: Vec<String> = spec.stop_exit_codes.iter().map(i32::to_string).collect();
        field("stop codes", codes.join(", "));
    }
    field(
        "readiness",
        if spec.wait_ready {
            format!("the app's signal, within {}", ms(spec.listen_timeout_ms))
        } else {
            format!("the app's signal, or after {} up", ms(spec.min_uptime_ms))
        },
    );
    let replaced: u32 = app.workers.iter().map(|w| w.memory_restarts).sum();
    field(
        "memory limit",
        match spec.max_memory_restart {
            Some(limit) => format!("{} (workers replaced {replaced} times)", bytes(limit)),
            None => "none".into(),
        },
    );
    if let Some(watchdog) = &spec.watchdog {
        let hung: u32 = app.workers.iter().map(|w| w.hung).sum();
        field(
            "watchdog",
            format!(
                "{} without WATCHDOG=1 is hung: replaced, then {} (workers found hung {hung} times)",
                ms(watchdog.period_ms),
                watchdog.signal().as_str()
            ),
        );
    }
    if let Some(worker) = app.workers.first() {
        let every = match spec.log_rotate {
            Some(crate::logs::RotateEvery::Daily) => Some("daily"),
            Some(crate::logs::RotateEvery::Hourly) => Some("hourly"),
            None => None,
        };
        let mut rotation = match (spec.log_max_size, every) {
            (0, None) => "never rotated".to_string(),
            (0, Some(every)) => format!("rotated {every}, {} kept", spec.log_keep),
            (size, None) => format!("rotated at {}, {} kept", bytes(size), spec.log_keep),
            (size, Some(every)) => format!(
                "rotated {every} and at {}, {} kept",
                bytes(size),
                spec.log_keep
            ),
        };
        if spec.log_compress {
            rotation.push_str(", gzipped from .2");
        }
        let lines = &spec.log_lines;
        rotation.push_str(match lines.style {
            crate::logs::LogStyle::Text => "; lines: time [instance] text",
            crate::logs::LogStyle::Plain => "; lines: as written",
            crate::logs::LogStyle::Json => "; lines: JSON objects",
        });
        if let Some(format) = &lines.date_format {
            rotation.push_str(&format!(", time as {format}"));
        }
        if lines.timezone == crate::logs::LogTimezone::Local {
            rotation.push_str(", local time");
        }
        field(
            "logs",
            format!(
                "{}\n{:16}{}\n{:16}({rotation})",
                worker.out_file.as_deref().unwrap_or("-"),
                "",
                worker.error_file.as_deref().unwrap_or("-"),
                ""
            ),
        );
    }
    for (key, value) in schedule_lines(spec) {
        field(key, value);
    }
    if let Some(job) = app.workers.iter().find_map(|w| w.job.as_ref()) {
        let mut line = job.state.as_str().to_string();
        if let Some(next) = job.next_ms {
            line.push_str(&format!("; next run {}", when(next, now)));
        }
        if let Some(last) = job.last_outcome {
            line.push_str(&format!("; last run {}", last.as_str()));
        }
        field("job", line);
    }
    if let Some(watch) = &spec.watch {
        field("watch", watch_line(watch));
        if let Some(error) = app.workers.iter().find_map(|w| w.watch_error.as_deref()) {
            field("watch error", error.to_string());
        }
    }
    if let Some(change) = &app.last_change {
        let outcome = match (&change.ok, &change.detail) {
            (true, _) => "done".to_string(),
            (false, Some(detail)) => format!("failed: {detail}"),
            (false, None) => "failed".to_string(),
        };
        field(
            "last change",
            format!("{} {outcome}, {}", change.what, when(change.at_ms, now)),
        );
    }
    if let Some(note) = &app.adoption {
        field("adopted", note.clone());
    }
    for drops in &app.log_drops {
        let now_failing = match &drops.failing {
            Some(error) => format!(", still failing: {error}"),
            None => String::new(),
        };
        field(
            "log drops",
            format!(
                "{} lines not written to {}{now_failing}",
                drops.lines, drops.path
            ),
        );
    }
    for line in health_lines(app) {
        field(line.0, line.1);
    }
    for (event, command) in &spec.on_event {
        field("on_event", format!("{event} → {command}"));
    }
    if let Some(hooks) = &app.hooks {
        let mut text = format!(
            "{} ran, {} failed, {} suppressed (at most one at a time, {} a minute, {} s each)",
            hooks.ran,
            hooks.failed,
            hooks.suppressed,
            crate::daemon::HOOKS_PER_MINUTE,
            crate::daemon::HOOK_TIMEOUT.as_secs()
        );
        if let (Some(failure), Some(at)) = (&hooks.last_failure, hooks.last_failure_at_ms) {
            text.push_str(&format!("; last failure: {failure}, {}", when(at, now)));
        }
        field("hooks", text);
    }
    if !spec.depends_on.is_empty() {
        field("depends on", spec.depends_on.join(", "));
    }
    if let Some(user) = &spec.user {
        field("user", user.clone());
    }
    field("created", when(app.created_at_ms, now));
    if !spec.env_files.is_empty() {
        let files: Vec<String> = spec
            .env_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        field("env files", files.join(&format!("\n{:16}", "")));
    }
    let mut env: Vec<String> = spec
        .defined_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // Like PM2's "divergent env": inherited variables whose value differs from this shell's.
    let (mut same, mut divergent) = (0, Vec::new());
    for (key, value) in spec
        .env
        .iter()
        .filter(|(k, _)| !spec.defined_env.contains_key(*k))
    {
        let here = std::env::var(key).ok();
        if value != SECRET_MASK && here.as_deref() == Some(value.as_str()) {
            same += 1;
        } else {
            divergent.push(format!("{key}={value}"));
        }
    }
    env.extend(divergent);
    env.push(format!("+ {same} variables the same as in this shell"));
    field("env", env.join(&format!("\n{:16}", "")));
    let _ = writeln!(out, "  workers");
    for worker in &app.workers {
        out.push_str(&render_worker(worker, now));
    }
    out
}

fn render_worker(worker: &ProcessInfo, now: u64) -> String {
    let mut out = String::new();
    let pid = worker.pid.map_or("-".into(), |p| p.to_string());
    let _ = writeln!(
        out,
        "    {}:{} (id {})  pid {pid}  {}{}  restarts {}",
        worker.name,
        worker.instance,
        worker.id,
        worker.status.as_str(),
        if worker.adopted { " (adopted)" } else { "" },
        worker.restarts
    );
    if let Some(uptime) = worker.uptime_ms {
        let _ = writeln!(
            out,
            "      started     {}",
            when(now.saturating_sub(uptime), now)
        );
    }
    if let Some(exit) = &worker.last_exit {
        let at = worker
            .last_exit_at_ms
            .map(|at| format!(", {}", when(at, now)))
            .unwrap_or_default();
        let _ = writeln!(out, "      last exit   {exit}{at}");
    }
    if worker.memory_restarts > 0 {
        let _ = writeln!(
            out,
            "      replaced    {} times for its memory",
            worker.memory_restarts
        );
    }
    if let Some(runtime) = &worker.runtime {
        let _ = writeln!(
            out,
            "      node        event loop delay p50 {}  p99 {}  heap {} of {}  ({} ago)",
            micros(runtime.loop_delay_p50_us),
            micros(runtime.loop_delay_p99_us),
            bytes(runtime.heap_used),
            bytes(runtime.heap_total),
            crate::human::duration(runtime.age_ms)
        );
    }
    if worker.hung > 0 || worker.watchdog_misses > 0 {
        let _ = writeln!(
            out,
            "      hung        {} times (watchdog deadlines missed: {})",
            worker.hung, worker.watchdog_misses
        );
    }
    if !worker.group.is_empty() {
        let _ = writeln!(
            out,
            "      cpu {:.1}%  memory {}  over {} processes:",
            worker.cpu,
            bytes(worker.memory),
            worker.group.len()
        );
        for member in &worker.group {
            let _ = writeln!(
                out,
                "        {:>7}  {:>5.1}%  {:>8}  {}",
                member.pid,
                member.cpu,
                bytes(member.memory),
                member.command
            );
        }
    }
    out
}

/// Microseconds as `850us`, `12.3ms` or `2.1s`.
fn micros(us: u64) -> String {
    match us {
        0..1000 => format!("{us}us"),
        1000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.1}s", us as f64 / 1e6),
    }
}

/// The app's accept queues, whether nobody accepts, and its reloads, as `describe` fields.
fn health_lines(app: &AppDetails) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    let mut queues: Vec<String> = Vec::new();
    for worker in &app.workers {
        for q in &worker.accept_queues {
            let stalled = q.stalled_ms.map_or(String::new(), |ms| {
                format!(", not shrinking for {}", crate::human::duration(ms))
            });
            let text = format!("{}: {} waiting of {}{stalled}", q.address, q.depth, q.limit);
            if !queues.contains(&text) {
                queues.push(text);
            }
        }
    }
    if !queues.is_empty() {
        lines.push(("accept queue", queues.join(&format!("\n{:16}", ""))));
    }
    if app.workers.iter().any(|w| w.nobody_accepting) {
        lines.push((
            "accepting",
            "NOBODY: connections wait and no worker accepts any: does a worker listen on a port of its own \
             instead of the socket it inherited (fd 3), or is every worker stuck?"
                .to_string(),
        ));
    }
    if let Some(reloads) = app.workers.first().and_then(|w| w.reloads)
        && reloads.ok + reloads.failed > 0
    {
        let last = reloads
            .last_seconds
            .map_or(String::new(), |s| format!(", last took {s:.2}s"));
        lines.push((
            "reloads",
            format!("{} ok, {} failed{last}", reloads.ok, reloads.failed),
        ));
    }
    lines
}

/// A duration in its largest exact unit: `90s`, `20m`, `1h`, `1500ms`.
fn exact(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    match UNITS.iter().find(|(size, _)| ms > 0 && ms % size == 0) {
        Some((size, unit)) => format!("{}{unit}", ms / size),
        None => "0s".into(),
    }
}

/// A schedule with its words (`0 3 * * *: At 03:00 on every day`) and the zone it is read in.
fn schedule_and_zone(expr: &str, zone: Option<&str>) -> (String, String) {
    match crate::schedule::Schedule::parse(expr, zone) {
        Ok(schedule) => (
            format!("{expr}: {}", schedule.describe()),
            match zone {
                Some(zone) => zone.to_string(),
                None => format!("{} (the host's)", schedule.zone_name()),
            },
        ),
        // (Checked when the app was defined: only a zone gone from this host's tzdb gets here.)
        Err(e) => (
            format!("{expr} ({e})"),
            zone.unwrap_or("the host's").to_string(),
        ),
    }
}

/// What `describe` says of a job's schedule and its options (those that differ from the defaults), or
/// of `cron_restart`.
fn schedule_lines(spec: &crate::config::AppSpec) -> Vec<(&'static str, String)> {
    use crate::config::job::{self, CatchUp, Overlap, defaults};
    let mut lines = Vec::new();
    if let Some(job) = &spec.job {
        let (schedule, zone) = schedule_and_zone(&job.schedule, job.timezone.as_deref());
        lines.push(("schedule", schedule));
        lines.push(("time zone", zone));
        if job.overlap != Overlap::default() {
            lines.push(("overlap", job::overlap_name(job.overlap).to_string()));
        }
        if job.catch_up != CatchUp::default() {
            lines.push(("catch-up", job::catch_up_name(job.catch_up).to_string()));
        }
        if let Some(deadline) = job.starting_deadline_ms {
            lines.push((
                "deadline",
                format!("{} after the fire time", exact(deadline)),
            ));
        }
        if job.jitter_ms > 0 {
            lines.push(("jitter", format!("up to {}", exact(job.jitter_ms))));
        }
        if let Some(timeout) = job.timeout_ms {
            lines.push(("timeout", exact(timeout)));
        }
        if job.retries > 0 || job.retry_backoff_ms != defaults::RETRY_BACKOFF_MS {
            lines.push((
                "retries",
                format!(
                    "{}, after {} doubling to {}",
                    job.retries,
                    exact(job.retry_backoff_ms),
                    exact(defaults::RETRY_BACKOFF_MAX_MS)
                ),
            ));
        }
        if job.history != defaults::HISTORY {
            lines.push(("history", format!("{} runs kept", job.history)));
        }
        if let Some(command) = &job.on_failure {
            lines.push(("on failure", command.clone()));
        }
        if let Some(fleet) = &job.fleet {
            lines.push((
                "scope",
                format!(
                    "fleet '{}' as host '{}', store {} (lease {})",
                    fleet.name,
                    fleet.host,
                    fleet.redacted(),
                    exact(fleet.lease_ttl_ms)
                ),
            ));
        }
    }
    if let Some(cron) = &spec.cron_restart {
        let (schedule, zone) = schedule_and_zone(&cron.schedule, cron.timezone.as_deref());
        lines.push(("cron restart", schedule));
        lines.push(("time zone", zone));
    }
    lines
}

/// What watch mode watches, on one line.
fn watch_line(watch: &crate::config::WatchSpec) -> String {
    let paths: Vec<String> = watch
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let what = match &watch.extensions {
        Some(ext) if ext.is_empty() => "the script itself".to_string(),
        Some(ext) => format!("*.{} and the script", ext.join(", *.")),
        None => "every file".to_string(),
    };
    let mut line = format!("{what} under {}", paths.join(", "));
    if !watch.ignore.is_empty() {
        line.push_str(&format!("; ignoring {}", watch.ignore.join(", ")));
    }
    line.push_str(&format!(
        "; reload {} after the last change",
        ms(watch.delay_ms)
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_their_age() {
        assert_eq!(
            when(1_764_000_000_000, 1_764_000_300_000),
            "2025-11-24 16:00:00 UTC (5m ago)"
        );
    }

    #[test]
    fn a_job_shows_its_schedule_zone_and_options_that_differ() {
        use crate::config::job::{CatchUp, CronRestart, JobSpec, Overlap, defaults};
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("job.js"), "").expect("write");
        let env = std::collections::BTreeMap::new();
        let context = crate::config::Context {
            base: dir.path(),
            caller_env: &env,
            profile: None,
            fleet: Default::default(),
        };
        let raw = crate::config::RawApp {
            script: Some(crate::config::Item::flag("job.js".into())),
            interpreter: Some(crate::config::Item::flag("none".into())),
            ..Default::default()
        };
        let mut spec = raw.resolve(&context).expect("valid");
        spec.job = Some(Box::new(JobSpec {
            schedule: "0 3 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
            overlap: Overlap::Replace,
            catch_up: CatchUp::Last,
            starting_deadline_ms: Some(5_400_000),
            jitter_ms: 0,
            timeout_ms: Some(1_200_000),
            retries: 3,
            retry_backoff_ms: defaults::RETRY_BACKOFF_MS,
            history: defaults::HISTORY,
            on_failure: Some("page-oncall".into()),
            fleet: None,
        }));
        let lines = schedule_lines(&spec);
        let keys: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "schedule",
                "time zone",
                "overlap",
                "deadline",
                "timeout",
                "retries",
                "on failure"
            ]
        );
        assert!(lines[0].1.starts_with("0 3 * * *: "), "{lines:?}");
        assert!(
            lines[0].1.len() > "0 3 * * *: ".len(),
            "with words: {lines:?}"
        );
        assert_eq!(lines[1].1, "Europe/Berlin");
        assert_eq!(lines[3].1, "90m after the fire time");
        assert_eq!(lines[4].1, "20m");
        assert_eq!(lines[5].1, "3, after 10s doubling to 10m");
        spec.job = None;
        spec.cron_restart = Some(Box::new(CronRestart {
            schedule: "@daily".into(),
            timezone: None,
        }));
        let lines = schedule_lines(&spec);
        assert_eq!(lines[0].0, "cron restart");
        assert!(lines[1].1.ends_with("(the host's)"), "{lines:?}");
    }
}
