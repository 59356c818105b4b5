//! Issue 13, the keeper killed outside systemd: its workers keep serving, and the next command starts a
//! keeper that adopts them (same pids, marked adopted, its listening socket copied back from them), so
//! that `start` of the same app does not collide with them, a crash of an adopted worker is restarted,
//! a reload turns them into the new keeper's children and `stop` waits for them. Under a probe opening a
//! new connection every few milliseconds.

use std::collections::BTreeSet;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::helpers::{
    Herdsman, Probe, SECOND, alive, assert_no_failures, fd_link, free_port, served_pid,
};
use crate::{pids, start_http};

/// `list --json`, as JSON.
fn listed(h: &Herdsman) -> Vec<Value> {
    let out = h.cmd(&["list", "--json"]).ok();
    serde_json::from_str(&out.stdout).expect("list --json is JSON")
}

fn pid_of(record: &Value) -> Option<i32> {
    record["pid"].as_i64().map(|p| p as i32)
}

#[test]
fn a_killed_keepers_workers_are_adopted_by_the_next_one_and_supervised() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = pids(&start_http(&h, "web", 2, port));
    let keeper = h.daemon_pid();
    let socket = fd_link(keeper, 3)
        .into_iter()
        .chain((4..64).filter_map(|fd| fd_link(keeper, fd)))
        .find(|link| {
            workers
                .iter()
                .all(|&w| fd_link(w, 3).as_ref() == Some(link))
        })
        .unwrap_or_else(|| h.fail("the keeper holds no copy of the workers' socket"));

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 20
    });
    kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill -9 the keeper");
    h.wait_for("the keeper to be gone", 10 * SECOND, || !alive(keeper));
    let ok = probe.ok_count();
    h.wait_for("the orphans to go on serving", 10 * SECOND, || {
        probe.ok_count() > ok + 20
    });

    // The next command starts a keeper, which adopts them.
    let records = listed(&h);
    let new_keeper = h.daemon_pid();
    assert_ne!(new_keeper, keeper, "a new keeper runs");
    let adopted: BTreeSet<i32> = records
        .iter()
        .filter(|r| r["adopted"] == true && r["status"] == "online")
        .filter_map(pid_of)
        .collect();
    assert_eq!(
        adopted, workers,
        "both workers adopted, same pids: {records:?}"
    );
    let table = h.cmd(&["list"]).ok();
    assert!(table.stdout.contains("online (adopted)"), "{table}");
    // Its socket was taken back from them: the same socket, which the new keeper holds.
    let held: Vec<String> = (0..64).filter_map(|fd| fd_link(new_keeper, fd)).collect();
    assert!(
        held.contains(&socket),
        "the new keeper holds the socket {socket}: {held:?}"
    );
    let described = h.cmd(&["describe", "web"]).ok();
    assert!(
        !described.stdout.contains("could not take back"),
        "{described}"
    );

    // `start` of the same app does not collide with them: it says the app exists, and nothing changes.
    h.cmd(&["start", "tests/apps/http.js", "--name", "web", "-i", "2"])
        .fails_with("already exists");
    assert_eq!(pids(&h.workers("web")), workers);

    // A crash of an adopted worker is restarted, and its replacement serves.
    let victim = *workers.iter().next().expect("a worker");
    {
        // Between two probe requests: a request the victim had accepted would be lost with it.
        let _between = probe.quiesce();
        kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9 an adopted worker");
    }
    let replacement = h.wait_value("the crashed worker to be replaced", 10 * SECOND, || {
        let records = listed(&h);
        let slot = records.iter().find(|r| r["instance"] == 0)?;
        let pid = pid_of(slot)?;
        (pid != victim && slot["status"] == "online").then(|| (pid, slot.clone()))
    });
    let (new_pid, slot) = replacement;
    assert_eq!(slot["restarts"], 1, "{slot}");
    assert!(
        slot["adopted"].is_null(),
        "the replacement is this keeper's: {slot}"
    );
    let exit = slot["last_exit"].as_str().unwrap_or_default();
    assert!(
        exit.contains("SIGKILL") || exit.contains("unknown"),
        "the adopted worker's exit is recorded: {slot}"
    );
    h.wait_for("the replacement to serve", 10 * SECOND, || {
        served_pid(port) == Some(new_pid)
    });

    // A reload makes every worker this keeper's child; `stop` then waits for them.
    h.cmd(&["reload", "web"]).ok();
    let records = listed(&h);
    assert!(
        records
            .iter()
            .all(|r| r["adopted"].is_null() && r["status"] == "online"),
        "{records:?}"
    );
    let report = probe.finish();
    assert_no_failures(
        &h,
        "through the keeper's death, adoption, a crash and a reload",
        &report,
    );

    let last: BTreeSet<i32> = records.iter().filter_map(pid_of).collect();
    h.cmd(&["stop", "web"]).ok();
    for pid in last.iter().chain(&workers) {
        assert!(!alive(*pid), "pid {pid} is gone once `stop` answered");
    }
}

#[test]
fn a_keeper_that_stopped_cleanly_leaves_nothing_to_adopt() {
    let h = Herdsman::new();
    let port = free_port();
    start_http(&h, "web", 1, port);
    assert!(
        h.home().join("state.json").exists(),
        "the keeper records what runs"
    );
    h.cmd(&["kill"]).ok();
    assert!(
        !h.home().join("state.json").exists(),
        "a clean stop removes the record"
    );
    // A read-only command starts nothing, and says nothing runs.
    let out = h.cmd(&["list", "--json"]).ok();
    assert_eq!(out.stdout.trim(), "[]");
    assert!(
        !h.home().join("daemon.pid").exists(),
        "no daemon was started"
    );
}
