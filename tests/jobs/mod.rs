//! Issue 14: scheduled jobs run once per fire time on a host, whatever the number of workers of any app,
//! with their overlap policy, timeout, retries, a run-now button (`trigger --wait` and its exit code),
//! pause and resume, a history that survives the daemon, and never the same fire time twice after the
//! keeper is killed in the middle of a run. Every job is `tests/apps/job.sh`, which records each run (run
//! id, attempt, pid) in a file of the test's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod clock;
mod recovery;

use crate::helpers::{Herdsman, SECOND, alive, free_port};
use crate::start_http;

/// The runs a job recorded: (run id, attempt, pid), in order.
fn runs(file: &Path) -> Vec<(String, u32, i32)> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((
                fields.next()?.to_string(),
                fields.next()?.parse().ok()?,
                fields.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// `jobs --json`'s entry for `name`.
fn job(h: &Herdsman, name: &str) -> Value {
    let out = h.cmd(&["jobs", "--json"]).ok();
    let jobs: Vec<Value> = serde_json::from_str(&out.stdout).expect("jobs --json is JSON");
    jobs.into_iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| h.fail(&format!("no job {name} in {}", out.stdout)))
}

fn history(h: &Herdsman, name: &str) -> Vec<Value> {
    let out = h.cmd(&["jobs", "history", name, "--json"]).ok();
    serde_json::from_str(&out.stdout).expect("jobs history --json is JSON")
}

fn outcomes(runs: &[Value]) -> Vec<String> {
    runs.iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Starts `tests/apps/job.sh` as the job `name` with these options, recording its runs in `file`.
fn start_job(h: &Herdsman, name: &str, file: &Path, options: &[&str], env: &[(&str, &str)]) {
    let mut args = vec!["start", "tests/apps/job.sh", "--name", name];
    args.extend_from_slice(options);
    let mut cmd = h.cmd(&args).env("JOB_FILE", file.display().to_string());
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    cmd.ok();
}

#[test]
fn an_every_second_job_runs_once_per_fire_time_beside_a_four_worker_app() {
    let h = Herdsman::new();
    let port = free_port();
    start_http(&h, "web", 4, port);
    let file = h.scratch("runs").join("every");
    start_job(&h, "tick", &file, &["--schedule", "* * * * * *"], &[]);
    h.wait_for("20 runs of the job", 60 * SECOND, || {
        runs(&file).len() >= 20
    });
    h.cmd(&["stop", "tick"]).ok();
    let recorded = runs(&file);
    let ids: Vec<&String> = recorded.iter().map(|(id, _, _)| id).collect();
    let unique: BTreeSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a fire time ran twice: {ids:?}");
    // Every second from the first to the last, none missing.
    let seconds: Vec<i64> = ids
        .iter()
        .map(|id| {
            let at = id.split_once('@').expect("job@time").1;
            at.parse::<jiff::Timestamp>()
                .expect("an RFC 3339 time")
                .as_second()
        })
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "fire times missing between: {ids:?}");
    }
    let ok = outcomes(&history(&h, "tick"))
        .iter()
        .filter(|o| *o == "ok")
        .count();
    assert!(ok >= 20, "the history records the runs as ok");
    assert_eq!(h.workers("web").len(), 4, "the app's workers are untouched");
}

#[test]
fn overlap_skip_replace_and_allow_with_runs_longer_than_the_period() {
    let h = Herdsman::new();
    let dir = h.scratch("runs");
    let slow = [("JOB_SLEEP", "2.5")];
    for (name, overlap) in [("skip", "skip"), ("replace", "replace"), ("allow", "allow")] {
        start_job(
            &h,
            name,
            &dir.join(name),
            &["--schedule", "* * * * * *", "--overlap", overlap],
            &slow,
        );
    }
    h.wait_for(
        "two runs in progress at once under allow",
        30 * SECOND,
        || {
            job(&h, "allow")["running"]
                .as_array()
                .is_some_and(|r| r.len() >= 2)
        },
    );
    h.wait_for("a skipped fire time under skip", 30 * SECOND, || {
        outcomes(&history(&h, "skip")).contains(&"skipped".to_string())
    });
    h.wait_for("a run replaced under replace", 30 * SECOND, || {
        history(&h, "replace").iter().any(|r| {
            r["outcome"] == "killed"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("replaced by replace@"))
        })
    });
    h.cmd(&["stop", "all"]).ok();
    // Under skip, runs never overlapped: each started after the one before had ended.
    let skip = history(&h, "skip");
    let ran: Vec<(u64, u64)> = skip
        .iter()
        .filter(|r| r["outcome"] != "skipped")
        .filter_map(|r| Some((r["started_at_ms"].as_u64()?, r["ended_at_ms"].as_u64()?)))
        .collect();
    for pair in ran.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "runs overlapped under skip: {skip:?}"
        );
    }
}

#[test]
fn a_run_past_its_timeout_is_killed_with_its_whole_group() {
    let h = Herdsman::new();
    let child_file = h.scratch("child").join("pid");
    h.cmd(&[
        "start",
        "tests/apps/stubborn-job.sh",
        "--name",
        "stubborn",
        "--schedule",
        "0 0 1 1 *",
        "--timeout",
        "1s",
        "--kill-timeout",
        "500ms",
    ])
    .env("JOB_CHILD", child_file.display().to_string())
    .ok();
    let out = h
        .cmd(&["trigger", "stubborn", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(128 + 9), "ended by SIGKILL: {out}");
    let runs = history(&h, "stubborn");
    let last = runs.last().expect("a run");
    assert_eq!(last["outcome"], "timed_out", "{last}");
    let child: i32 = fs::read_to_string(&child_file)
        .expect("the job wrote its child's pid")
        .trim()
        .parse()
        .expect("a pid");
    h.wait_for("the run's child to be gone", 10 * SECOND, || !alive(child));
}

#[test]
fn a_failing_run_is_retried_under_the_same_run_id_until_it_succeeds() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("retry");
    start_job(
        &h,
        "flaky",
        &file,
        &[
            "--schedule",
            "0 0 1 1 *",
            "--retries",
            "3",
            "--retry-backoff",
            "200ms",
        ],
        &[("JOB_FAIL_UNTIL", "3")],
    );
    let out = h
        .cmd(&["trigger", "flaky", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(0), "the third attempt succeeds: {out}");
    let run_id = out.stdout.lines().next().unwrap_or_default().to_string();
    assert!(run_id.starts_with("flaky@manual-"), "{out}");
    let recorded = runs(&file);
    let attempts: Vec<(String, u32)> = recorded.iter().map(|(id, a, _)| (id.clone(), *a)).collect();
    assert_eq!(
        attempts,
        [1, 2, 3].map(|a| (run_id.clone(), a)).to_vec(),
        "three attempts of one run"
    );
    let runs = history(&h, "flaky");
    assert_eq!(outcomes(&runs), ["failed", "failed", "ok"]);
    // The output of the run, every attempt: `logs --run`.
    let logs = h.cmd(&["logs", "--run", &run_id]).ok();
    assert_eq!(
        logs.stdout.matches("running flaky@manual-").count(),
        3,
        "{logs}"
    );
    assert!(logs.stdout.contains("failing on purpose"), "{logs}");
}

#[test]
fn trigger_wait_exits_with_the_runs_code_and_prints_its_output() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("code");
    start_job(
        &h,
        "seven",
        &file,
        &["--schedule", "0 0 1 1 *"],
        &[("JOB_EXIT", "7")],
    );
    let out = h
        .cmd(&["trigger", "seven", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(7), "{out}");
    assert!(out.stdout.contains("running seven@manual-"), "{out}");
    let runs = history(&h, "seven");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["exit_code"], 7);
    h.cmd(&["trigger", "nosuch"])
        .fails_with("no job named 'nosuch'");
}

#[test]
fn a_paused_job_skips_its_fire_times_until_resumed() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("pause");
    start_job(&h, "tick", &file, &["--schedule", "* * * * * *"], &[]);
    h.wait_for("a first run", 20 * SECOND, || !runs(&file).is_empty());
    h.cmd(&["jobs", "pause", "tick"]).ok();
    assert_eq!(job(&h, "tick")["state"], "paused");
    let count = runs(&file).len();
    h.assert_stays("no run while paused", 3 * SECOND, || {
        runs(&file).len() == count
    });
    h.cmd(&["jobs", "resume", "tick"]).ok();
    h.wait_for("runs again once resumed", 20 * SECOND, || {
        runs(&file).len() > count
    });
    let listed = h.cmd(&["jobs"]).ok();
    assert!(listed.stdout.contains("tick"), "{listed}");
    let described = h.cmd(&["describe", "tick"]).ok();
    assert!(
        described
            .stdout
            .contains("job           scheduled; next run")
            || described.stdout.contains("job           running"),
        "{described}"
    );
}

#[test]
fn the_history_survives_the_daemon() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("history");
    start_job(&h, "report", &file, &["--schedule", "0 3 * * *"], &[]);
    let out = h
        .cmd(&["trigger", "report", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    let before = history(&h, "report");
    assert_eq!(outcomes(&before), ["ok"]);
    h.cmd(&["save"]).ok();
    h.cmd(&["kill"]).ok();
    h.cmd(&["resurrect"]).ok();
    assert_eq!(
        history(&h, "report"),
        before,
        "the same history after a restart"
    );
    let next = h.cmd(&["jobs", "next", "report", "--count", "3"]).ok();
    assert_eq!(
        next.stdout
            .lines()
            .filter(|l| l.contains("03:00:00"))
            .count(),
        3,
        "{next}"
    );
}

#[test]
fn no_fire_time_runs_twice_when_the_keeper_is_killed_during_a_run() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("killed");
    start_job(
        &h,
        "tick",
        &file,
        &["--schedule", "*/2 * * * * *"],
        &[("JOB_SLEEP", "1.5")],
    );
    h.wait_for("a run in progress", 20 * SECOND, || {
        job(&h, "tick")["state"] == "running"
    });
    let keeper = h.daemon_pid();
    kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill -9 the keeper");
    h.wait_for("the keeper to be gone", 10 * SECOND, || !alive(keeper));
    let before = runs(&file).len();
    // The next command starts a keeper that adopts what runs and goes on with the schedule.
    h.cmd(&["list"]).ok();
    h.wait_for("three more runs", 30 * SECOND, || {
        runs(&file).len() >= before + 3
    });
    h.cmd(&["stop", "tick"]).ok();
    let recorded = runs(&file);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _, _) in &recorded {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<&&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "fire times that ran twice: {twice:?} in {recorded:?}"
    );
}

#[test]
fn cron_restart_reloads_a_long_running_app_with_no_refused_connection() {
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        "web",
        "-i",
        "2",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--cron-restart",
        "*/3 * * * * *",
    ])
    .ok();
    let first = crate::pids(&h.wait_online("web", 2));
    let probe = crate::helpers::Probe::start(port);
    h.wait_for(
        "both workers replaced by a scheduled reload",
        30 * SECOND,
        || {
            let now = crate::pids(&h.workers("web"));
            now.len() == 2 && now.is_disjoint(&first)
        },
    );
    let report = probe.finish();
    assert!(
        report.failures.is_empty() && report.ok > 0,
        "probe ok {}, failures {:?}",
        report.ok,
        report.failures
    );
    let change = h.cmd(&["describe", "web"]).ok();
    assert!(
        change.stdout.contains("cron restart  */3 * * * * *"),
        "{change}"
    );
    assert!(
        change.stdout.contains("last change   start or reload done"),
        "{change}"
    );
}

#[test]
fn reload_of_a_file_with_a_new_schedule_reschedules_and_leaves_a_run_in_progress_alone() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    let file = dir.join("runs");
    let write = |schedule: &str| {
        fs::write(
            dir.join("ecosystem.toml"),
            format!(
                "[[apps]]\nname = \"report\"\nscript = \"{}\"\nschedule = \"{schedule}\"\ntimezone = \"UTC\"\n\
                 env = {{ JOB_FILE = \"{}\", JOB_SLEEP = \"3\" }}\n",
                crate::helpers::app("job.sh").display(),
                file.display()
            ),
        )
        .expect("write the ecosystem file");
    };
    write("0 1 * * *");
    let ecosystem = dir.join("ecosystem.toml").display().to_string();
    h.cmd(&["start", &ecosystem]).ok();
    h.cmd(&["trigger", "report"]).ok();
    h.wait_for("the run in progress", 10 * SECOND, || {
        !runs(&file).is_empty()
    });
    let pid = runs(&file)[0].2;
    write("0 5 * * *");
    h.cmd(&["reload", &ecosystem]).ok();
    let listed = job(&h, "report");
    assert_eq!(listed["schedule"], "0 5 * * *", "{listed}");
    assert!(
        listed["next_local"]
            .as_str()
            .is_some_and(|n| n.contains("05:00:00")),
        "{listed}"
    );
    assert!(alive(pid), "the run in progress goes on");
    h.wait_for("the run to end ok", 20 * SECOND, || {
        outcomes(&history(&h, "report")) == ["ok"]
    });
    assert_eq!(runs(&file).len(), 1, "it ran once");
}

#[test]
fn on_failure_runs_once_a_run_failed_for_good_with_the_run_in_its_environment() {
    let h = Herdsman::new();
    let dir = h.scratch("runs");
    let hook_out = dir.join("hook");
    start_job(
        &h,
        "doomed",
        &dir.join("doomed"),
        &[
            "--schedule",
            "0 0 1 1 *",
            "--retries",
            "1",
            "--retry-backoff",
            "100ms",
            "--on-failure",
            "echo \"$HERDSMAN_OUTCOME $HERDSMAN_ATTEMPT $HERDSMAN_RUN_ID\" >> \"$HOOK_OUT\"",
        ],
        &[
            ("JOB_EXIT", "3"),
            ("HOOK_OUT", &hook_out.display().to_string()),
        ],
    );
    let out = h
        .cmd(&["trigger", "doomed", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(3), "{out}");
    let run_id = out.stdout.lines().next().unwrap_or_default().to_string();
    let hook = h.wait_value("the hook's line", 10 * SECOND, || {
        fs::read_to_string(&hook_out).ok().filter(|t| !t.is_empty())
    });
    assert_eq!(
        hook,
        format!("failed 2 {run_id}\n"),
        "once, after the last attempt"
    );
}

#[test]
fn a_run_in_progress_goes_on_across_an_update_and_ends_with_its_outcome() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("update");
    start_job(
        &h,
        "long",
        &file,
        &["--schedule", "0 0 1 1 *"],
        &[("JOB_SLEEP", "3")],
    );
    h.cmd(&["trigger", "long"]).ok();
    h.wait_for("the run in progress", 10 * SECOND, || {
        !runs(&file).is_empty()
    });
    let pid = runs(&file)[0].2;
    let copy = h.scratch("bin").join("herdsman");
    fs::copy(env!("CARGO_BIN_EXE_herdsman"), &copy).expect("copy the binary");
    let out = h
        .cmd(&["update", "--binary", &copy.display().to_string()])
        .timeout(60 * SECOND)
        .ok();
    assert!(out.stdout.contains("daemon moved"), "{out}");
    assert!(alive(pid), "the run goes on across the update");
    h.wait_for("the run to end", 20 * SECOND, || {
        outcomes(&history(&h, "long")) == ["ok"]
    });
    let runs = history(&h, "long");
    assert_eq!(runs[0]["exit_code"], 0, "{runs:?}");
}
