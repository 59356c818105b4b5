//! Scheduled jobs on a wall clock of the test's choosing: the daemon runs under libfaketime (its wall
//! clock starts at a chosen time and runs on at the normal pace; its monotonic clock is real), to check a
//! fire time missed while no daemon ran (caught up once, or recorded as missed past the starting deadline
//! or with `catch_up = "none"`), and the daylight saving gap and fold in a real zone.

use crate::helpers::{Herdsman, SECOND, libfaketime};

use super::{history, outcomes, runs};

/// A command of `h` whose daemon, if it starts one, lives at `at` (UTC).
fn at<'a>(h: &'a Herdsman, args: &[&str], at: &str) -> crate::helpers::Cmd<'a> {
    h.cmd(args)
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("@{at}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("TZ", "UTC")
}

fn run_ids(file: &std::path::Path) -> Vec<String> {
    runs(file).into_iter().map(|(id, _, _)| id).collect()
}

#[test]
fn a_fire_time_missed_while_no_daemon_ran_is_caught_up_once_or_recorded_missed() {
    let h = Herdsman::new();
    let dir = h.scratch("runs");
    let jobs = [
        ("nightly", vec![]),
        ("strict", vec!["--starting-deadline", "10m"]),
        ("never", vec!["--catch-up", "none"]),
    ];
    for (name, options) in &jobs {
        let file = dir.join(name).display().to_string();
        let mut args = vec![
            "start",
            "tests/apps/job.sh",
            "--name",
            name,
            "--schedule",
            "0 3 * * *",
            "--timezone",
            "UTC",
        ];
        args.extend(options.iter().copied());
        at(&h, &args, "2026-06-01 02:59:58")
            .env("JOB_FILE", &file)
            .ok();
    }
    for (name, _) in &jobs {
        let file = dir.join(name);
        h.wait_for("the 03:00 run of every job", 20 * SECOND, || {
            run_ids(&file) == [format!("{name}@2026-06-01T03:00:00Z")]
        });
    }
    h.cmd(&["save"]).ok();
    h.cmd(&["kill"]).ok();
    // Three days later, half an hour after that day's fire time.
    at(&h, &["resurrect"], "2026-06-04 03:30:00").ok();
    let nightly = dir.join("nightly");
    h.wait_for("the catch-up run", 20 * SECOND, || {
        run_ids(&nightly).len() == 2
    });
    assert_eq!(
        run_ids(&nightly),
        [
            "nightly@2026-06-01T03:00:00Z",
            "nightly@2026-06-04T03:00:00Z"
        ],
        "one run for the latest fire time missed, never a burst"
    );
    for name in ["strict", "never"] {
        let runs = history(&h, name);
        assert_eq!(outcomes(&runs), ["ok", "missed"], "{name}: {runs:?}");
        assert_eq!(runs[1]["run_id"], format!("{name}@2026-06-04T03:00:00Z"));
        assert_eq!(run_ids(&dir.join(name)).len(), 1, "{name} did not run");
    }
    // Nothing more runs before the next fire time.
    h.assert_stays("no second catch-up", 2 * SECOND, || {
        run_ids(&nightly).len() == 2
    });
}

#[test]
fn the_spring_gap_runs_right_after_it_and_jobs_next_says_so() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("gap");
    // New York, 2026-03-08: at 07:00:00Z the clocks go from 02:00 EST to 03:00 EDT; 02:30 never comes.
    at(
        &h,
        &[
            "start",
            "tests/apps/job.sh",
            "--name",
            "gap",
            "--schedule",
            "30 2 * * *",
            "--timezone",
            "America/New_York",
        ],
        "2026-03-08 06:59:58",
    )
    .env("JOB_FILE", file.display().to_string())
    .ok();
    h.wait_for("the run right after the gap", 20 * SECOND, || {
        run_ids(&file) == ["gap@2026-03-08T07:00:00Z"]
    });
    let next = h.cmd(&["jobs", "next", "gap", "--count", "1"]).ok();
    assert!(next.stdout.contains("2026-03-09 02:30:00 EDT"), "{next}");
    // A schedule whose fire time falls in next year's gap (2027-03-14) says it is moved.
    at(
        &h,
        &[
            "start",
            "tests/apps/job.sh",
            "--name",
            "yearly",
            "--schedule",
            "30 2 14 3 *",
            "--timezone",
            "America/New_York",
        ],
        "2026-03-08 06:59:58",
    )
    .env("JOB_FILE", file.display().to_string())
    .ok();
    let next = h.cmd(&["jobs", "next", "yearly", "--count", "2"]).ok();
    let lines: Vec<&str> = next.stdout.lines().collect();
    assert!(
        lines[1].contains("2026-03-14 02:30:00 EDT") && !lines[1].contains("moved"),
        "{next}"
    );
    assert!(
        lines[2].contains("2027-03-14 03:00:00 EDT") && lines[2].contains("moved"),
        "{next}"
    );
}

#[test]
fn the_autumn_fold_runs_once_and_jobs_next_says_so() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("fold");
    // New York, 2026-11-01: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    at(
        &h,
        &[
            "start",
            "tests/apps/job.sh",
            "--name",
            "fold",
            "--schedule",
            "30 1 * * *",
            "--timezone",
            "America/New_York",
        ],
        "2026-11-01 05:29:58",
    )
    .env("JOB_FILE", file.display().to_string())
    .ok();
    h.wait_for("the run at the first 01:30", 20 * SECOND, || {
        run_ids(&file) == ["fold@2026-11-01T05:30:00Z"]
    });
    let next = h.cmd(&["jobs", "next", "fold", "--count", "1"]).ok();
    assert!(
        next.stdout.contains("2026-11-02 01:30:00 EST"),
        "the second 01:30 of the day does not run: {next}"
    );
    // Stopped past the second 01:30 and started again: the fold is not caught up a second time.
    h.cmd(&["save"]).ok();
    h.cmd(&["kill"]).ok();
    at(&h, &["resurrect"], "2026-11-01 06:30:30").ok();
    h.assert_stays("no run for the fold's second pass", 2 * SECOND, || {
        run_ids(&file).len() == 1
    });
    let runs = history(&h, "fold");
    assert_eq!(outcomes(&runs), ["ok"], "{runs:?}");
    let next = h.cmd(&["jobs", "next", "fold", "--count", "400"]).ok();
    let folded: Vec<&str> = next
        .stdout
        .lines()
        .filter(|l| l.contains("2027-11-07"))
        .collect();
    assert_eq!(folded.len(), 1, "{next}");
    assert!(folded[0].contains("twice"), "{next}");
}
