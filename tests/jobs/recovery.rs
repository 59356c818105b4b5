//! Scheduled jobs when something goes wrong around a run: its program cannot execute, the keeper is killed
//! during it (the new keeper adopts it), the daemon is updated in place while a retry waits, or a jitter
//! is longer than the period. A run always ends with an outcome, is never run twice, and nothing is lost.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::{Herdsman, SECOND, alive};

use super::{history, job, outcomes, runs, start_job};

fn kill_keeper(h: &Herdsman) {
    let keeper = h.daemon_pid();
    kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill -9 the keeper");
    h.wait_for("the keeper to be gone", 10 * SECOND, || !alive(keeper));
    // The next command starts a keeper, which adopts what runs.
    h.cmd(&["list"]).ok();
}

#[test]
fn a_run_whose_program_cannot_execute_fails_and_the_job_goes_on() {
    let h = Herdsman::new();
    let program = h.scratch("bin").join("task");
    fs::copy("/bin/true", &program).expect("copy /bin/true");
    h.cmd(&[
        "start",
        &program.display().to_string(),
        "--name",
        "task",
        "--interpreter",
        "none",
        "--schedule",
        "0 0 1 1 *",
    ])
    .ok();
    let ok = h
        .cmd(&["trigger", "task", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(ok.code(), Some(0), "{ok}");
    fs::remove_file(&program).expect("remove the program (a deploy in progress)");
    let failed = h
        .cmd(&["trigger", "task", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(failed.code(), Some(1), "{failed}");
    let runs = history(&h, "task");
    assert_eq!(outcomes(&runs), ["ok", "failed"], "{runs:?}");
    assert_eq!(runs[1]["detail"], "its program did not start", "{runs:?}");
    assert_eq!(job(&h, "task")["state"], "scheduled", "not stuck running");
    fs::copy("/bin/true", &program).expect("put the program back");
    let again = h
        .cmd(&["trigger", "task", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(again.code(), Some(0), "{again}");
    let listed = h.cmd(&["list", "--json"]).ok();
    assert!(
        listed.stdout.contains("\"restarts\":0"),
        "never restarted as a crash: {listed}"
    );
}

#[test]
fn a_run_adopted_by_a_new_keeper_ends_once_and_keeps_its_timeout() {
    let h = Herdsman::new();
    let dir = h.scratch("runs");
    // One that ends by itself while adopted: never run again, whatever its status.
    start_job(
        &h,
        "short",
        &dir.join("short"),
        &[
            "--schedule",
            "0 0 1 1 *",
            "--retries",
            "2",
            "--retry-backoff",
            "100ms",
        ],
        &[("JOB_SLEEP", "2")],
    );
    // One that hangs past its timeout while adopted: stopped all the same.
    start_job(
        &h,
        "hung",
        &dir.join("hung"),
        &[
            "--schedule",
            "0 0 1 1 *",
            "--timeout",
            "3s",
            "--kill-timeout",
            "300ms",
        ],
        &[("JOB_SLEEP", "60")],
    );
    h.cmd(&["trigger", "short"]).ok();
    h.cmd(&["trigger", "hung"]).ok();
    h.wait_for("both runs in progress", 10 * SECOND, || {
        runs(&dir.join("short")).len() == 1 && runs(&dir.join("hung")).len() == 1
    });
    kill_keeper(&h);
    h.wait_for("the adopted run to end", 20 * SECOND, || {
        history(&h, "short")
            .last()
            .is_some_and(|r| r["outcome"] != "running")
    });
    let short = history(&h, "short");
    assert_eq!(short.len(), 1, "one attempt: {short:?}");
    assert!(
        ["ok", "unknown"].contains(&short[0]["outcome"].as_str().unwrap_or_default()),
        "{short:?}"
    );
    h.wait_for("the hung run to time out", 20 * SECOND, || {
        outcomes(&history(&h, "hung")) == ["timed_out"]
    });
    let hung_pid = runs(&dir.join("hung"))[0].2;
    h.wait_for("the hung run to be gone", 10 * SECOND, || !alive(hung_pid));
    assert_eq!(runs(&dir.join("short")).len(), 1, "never run twice");
}

#[test]
fn a_retry_waiting_for_its_backoff_still_runs_after_an_update() {
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
            "1",
            "--retry-backoff",
            "3s",
        ],
        &[("JOB_FAIL_UNTIL", "2")],
    );
    h.cmd(&["trigger", "flaky"]).ok();
    h.wait_for("the first attempt to fail", 10 * SECOND, || {
        outcomes(&history(&h, "flaky")) == ["failed"]
    });
    let copy = h.scratch("bin").join("herdsman");
    fs::copy(env!("CARGO_BIN_EXE_herdsman"), &copy).expect("copy the binary");
    let out = h
        .cmd(&["update", "--binary", &copy.display().to_string()])
        .timeout(60 * SECOND)
        .ok();
    assert!(out.stdout.contains("daemon moved"), "{out}");
    h.wait_for("the second attempt, after the update", 20 * SECOND, || {
        outcomes(&history(&h, "flaky")) == ["failed", "ok"]
    });
    let attempts: Vec<u32> = runs(&file).iter().map(|(_, a, _)| *a).collect();
    assert_eq!(attempts, [1, 2]);
}

#[test]
fn a_jitter_longer_than_the_period_drops_no_fire_time() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("jitter");
    start_job(
        &h,
        "spread",
        &file,
        &["--schedule", "* * * * * *", "--jitter", "2500ms"],
        &[],
    );
    h.wait_for("six runs", 30 * SECOND, || runs(&file).len() >= 6);
    h.cmd(&["stop", "spread"]).ok();
    let seconds: Vec<i64> = runs(&file)
        .iter()
        .map(|(id, _, _)| {
            let at = id.split_once('@').expect("job@time").1;
            at.parse::<jiff::Timestamp>().expect("a time").as_second()
        })
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "a fire time was dropped: {seconds:?}");
    }
}
