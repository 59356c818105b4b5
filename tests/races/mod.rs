//! Requests that overlap: two reloads of the same worker, a restart during a delete, a start during a
//! kill. Each must answer, and none may leave a process that nothing supervises.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Herdsman, free_port, is_helper_process, wait_child};

const SECOND: Duration = Duration::from_secs(1);

/// Starts a CLI command in the background, its output discarded.
fn background(h: &Herdsman, args: &[&str]) -> std::process::Child {
    let mut command = h.command();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("spawn a herdsman command")
}

/// Starts `stubborn`, a worker that ignores SIGINT and SIGTERM (only the 3 s kill timeout's SIGKILL stops
/// it), and waits until it does.
fn start_stubborn(h: &Herdsman) {
    let marker = h.scratch("ignore").join("trap");
    h.cmd(&[
        "start",
        "tests/apps/ignore.sh",
        "--name",
        "stubborn",
        "--kill-timeout",
        "3s",
    ])
    .env("TRAP_OUT", marker.display().to_string())
    .ok();
    h.wait_for("ignore.sh to ignore its signals", 10 * SECOND, || {
        marker.with_extension("ready").exists()
    });
}

#[test]
fn two_overlapping_reloads_of_a_worker_leave_no_unsupervised_process() {
    let h = Herdsman::new();
    let port = free_port();
    // slow.js listens 1.5 s after it starts, so the first reload's replacement is still coming up when
    // the second reload reaches the same worker.
    h.cmd(&[
        "start",
        "tests/apps/slow.js",
        "--name",
        "slow",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .ok();
    h.wait_online("slow", 1);
    let mut first = background(&h, &["reload", "slow"]);
    h.wait_for(
        "the first reload's replacement to be spawned",
        10 * SECOND,
        || {
            // the daemon, the worker, its replacement (not the log keeper)
            h.marked_pids()
                .into_iter()
                .filter(|&p| !is_helper_process(p))
                .count()
                >= 3
        },
    );
    let mut second = background(&h, &["reload", "slow"]);
    for (which, child) in [("first", &mut first), ("second", &mut second)] {
        match wait_child(child, 30 * SECOND) {
            Some(status) if status.success() => {}
            other => h.fail(&format!("the {which} reload did not succeed: {other:?}")),
        }
    }
    h.cmd(&["delete", "slow"]).ok();
    let daemon = h.daemon_pid();
    h.wait_for(
        "no process of the deleted app left (only the daemon)",
        10 * SECOND,
        || {
            let left: Vec<i32> = h.marked_pids();
            left.into_iter()
                .filter(|&p| !is_helper_process(p))
                .collect::<Vec<_>>()
                == vec![daemon]
        },
    );
}

#[test]
fn a_restart_during_a_delete_does_not_cancel_it() {
    let h = Herdsman::new();
    start_stubborn(&h);
    let mut delete = background(&h, &["delete", "stubborn"]);
    h.wait_for("the worker to be stopping", 10 * SECOND, || {
        h.workers("stubborn").iter().any(|w| w.status == "stopping")
    });
    h.cmd(&["restart", "stubborn"]).run();
    match wait_child(&mut delete, 20 * SECOND) {
        Some(status) if status.success() => {}
        other => h.fail(&format!(
            "the delete did not answer successfully: {other:?}"
        )),
    }
    if !h.workers("stubborn").is_empty() {
        h.fail("the app was not deleted");
    }
}

#[test]
fn a_start_during_kill_is_refused_and_kill_still_answers() {
    let h = Herdsman::new();
    start_stubborn(&h);
    let mut kill = background(&h, &["kill"]);
    h.wait_for("the worker to be stopping", 10 * SECOND, || {
        h.workers("stubborn").iter().any(|w| w.status == "stopping")
    });
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        "late",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .fails_with("shutting down");
    match wait_child(&mut kill, 20 * SECOND) {
        Some(status) if status.success() => {}
        other => h.fail(&format!("kill did not answer successfully: {other:?}")),
    }
    h.wait_for("no process left", 10 * SECOND, || {
        h.marked_pids().is_empty()
    });
}
