//! Issue 6: what the daemon shows. `describe` (the definition, secrets masked, each worker's process group
//! adding up to its figures), the live subscription that `monit` reads, and `max_memory_restart`: a leaking
//! worker is replaced, successor ready first, with no failed request.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde_json::Value;

use crate::helpers::{
    Herdsman, Probe, SECOND, app_arg, fd_link, fds, free_port, listen_addr, pids, venv_bin,
    wait_gone, wait_served_by,
};

/// How many sockets a process holds.
fn sockets(pid: i32) -> usize {
    fds(pid)
        .into_iter()
        .filter(|&fd| fd_link(pid, fd).is_some_and(|l| l.starts_with("socket:")))
        .count()
}

/// `list --json` as JSON values (for the fields the shared `Proc` does not carry).
fn list_values(h: &Herdsman) -> Vec<Value> {
    let out = h.cmd(&["list", "--json"]).ok();
    match serde_json::from_str::<Vec<Value>>(&out.stdout) {
        Ok(list) => list,
        Err(e) => h.fail(&format!("`list --json` is not JSON: {e}\n{out}")),
    }
}

#[test]
fn describe_masks_secrets_and_splits_a_gunicorn_group() {
    let h = Herdsman::new();
    let port = free_port();
    let apps = crate::helpers::repo_root().join("tests/apps");
    h.cmd(&[
        "start",
        &venv_bin("gunicorn"),
        "--name",
        "wsgi",
        "--interpreter",
        "none",
        "--cwd",
        &apps.display().to_string(),
        "--listen",
        &listen_addr(port),
        "--",
        "--workers",
        "2",
        "wsgi:app",
    ])
    .env("API_TOKEN", "tok-123-secret")
    .env("DATABASE_URL", "postgres://app:hunter2@db.internal/app")
    .ok();
    h.wait_online("wsgi", 1);

    // The master and its two workers make one group of three.
    let details = h.wait_value("describe to show a group of 3", 15 * SECOND, || {
        let out = h.cmd(&["describe", "wsgi", "--json"]).ok();
        let apps: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
        let group = apps.first()?["workers"][0]["group"].as_array()?.clone();
        (group.len() == 3).then(|| apps[0].clone())
    });
    let worker = &details["workers"][0];
    let members = worker["group"].as_array().cloned().unwrap_or_default();
    let sum: u64 = members.iter().filter_map(|m| m["memory"].as_u64()).sum();
    if worker["memory"].as_u64() != Some(sum) || sum == 0 {
        h.fail(&format!(
            "a worker's memory must be the sum of its group's: {worker:#}"
        ));
    }
    if members[0]["pid"] != worker["pid"] {
        h.fail(&format!(
            "the group starts with the worker itself: {worker:#}"
        ));
    }
    if !members.iter().all(|m| {
        m["command"]
            .as_str()
            .is_some_and(|c| c.contains("gunicorn"))
    }) {
        h.fail(&format!("every member runs gunicorn: {worker:#}"));
    }
    let env = &details["spec"]["env"];
    if env["API_TOKEN"] != "********"
        || env["DATABASE_URL"] != "postgres://app:********@db.internal/app"
    {
        h.fail(&format!("secret values must be masked: {env:#}"));
    }

    let text = h.cmd(&["describe", "wsgi"]).ok().stdout;
    for needle in [
        "wsgi (cluster mode, 1 workers)",
        &format!("listen        127.0.0.1:{port}"),
        "stop          SIGINT then SIGKILL after 1600ms",
        "API_TOKEN=********",
        "over 3 processes:",
        "wsgi-out.log",
        "created       20",
    ] {
        if !text.contains(needle) {
            h.fail(&format!("describe should show {needle:?}:\n{text}"));
        }
    }
    if text.contains("tok-123-secret") || text.contains("hunter2") {
        h.fail(&format!("describe printed a secret:\n{text}"));
    }

    let out = h
        .cmd(&["describe", "nope"])
        .fails_with("no app named 'nope'");
    if out.code() != Some(1) {
        h.fail(&format!("an unknown app exits 1:\n{out}"));
    }
}

#[test]
fn an_orphan_of_the_worker_group_counts_for_the_worker() {
    let h = Herdsman::new();
    let out = h.scratch("orphan").join("pid");
    h.cmd(&["start", &app_arg("orphan.sh"), "--name", "orphans"])
        .env("ORPHAN_OUT", out.display().to_string())
        .ok();
    let worker = h.wait_online("orphans", 1)[0].pid;
    let orphan: i64 = h.wait_value("the orphan's pid", 10 * SECOND, || {
        std::fs::read_to_string(&out).ok()?.trim().parse().ok()
    });
    let group = h.wait_value("describe to count the orphan", 10 * SECOND, || {
        let out = h.cmd(&["describe", "orphans", "--json"]).ok();
        let apps: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
        let group = apps.first()?["workers"][0]["group"].as_array()?.clone();
        group
            .iter()
            .any(|m| m["pid"].as_i64() == Some(orphan))
            .then_some(group)
    });
    if group[0]["pid"].as_i64() != worker.map(i64::from) {
        h.fail(&format!("the group starts with the worker: {group:?}"));
    }
}

#[test]
fn a_subscription_streams_fresh_snapshots_until_the_client_leaves() {
    let h = Herdsman::new();
    h.cmd(&["start", &app_arg("stamp.sh"), "--name", "tick", "-i", "2"])
        .env(
            "STAMP_FILE",
            h.scratch("stamps").join("tick").display().to_string(),
        )
        .ok();
    h.wait_online("tick", 2);
    let daemon = h.daemon_pid();
    let before = sockets(daemon);

    let stream = UnixStream::connect(h.home().join("herdsman.sock"))
        .unwrap_or_else(|e| h.fail(&format!("cannot connect to the control socket: {e}")));
    stream
        .set_read_timeout(Some(5 * SECOND))
        .unwrap_or_else(|e| h.fail(&format!("set_read_timeout: {e}")));
    let mut writer = stream
        .try_clone()
        .unwrap_or_else(|e| h.fail(&format!("clone: {e}")));
    let mut reader = BufReader::new(stream);
    let mut frame = || -> Value {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .unwrap_or_else(|e| h.fail(&format!("undecodable frame {line:?}: {e}"))),
            other => h.fail(&format!("the stream ended or stalled: {other:?}")),
        }
    };
    let hello = frame();
    if hello["protocol"].as_u64().is_none() {
        h.fail(&format!("expected the hello frame first, got {hello}"));
    }
    writer
        .write_all(b"{\"request\":\"subscribe\",\"interval_ms\":250}\n")
        .unwrap_or_else(|e| h.fail(&format!("write: {e}")));

    let mut times = Vec::new();
    for _ in 0..4 {
        let snapshot = frame();
        if snapshot["response"] != "snapshot" {
            h.fail(&format!("expected a snapshot, got {snapshot}"));
        }
        let processes = snapshot["processes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let online = processes
            .iter()
            .filter(|p| p["name"] == "tick" && p["status"] == "online")
            .count();
        if online != 2 {
            h.fail(&format!("each snapshot lists both workers: {snapshot}"));
        }
        times.push(snapshot["at_ms"].as_u64().unwrap_or(0));
    }
    // The first comes at once; the others at the interval asked for (never faster).
    for pair in times[1..].windows(2) {
        if pair[1] < pair[0] + 200 {
            h.fail(&format!("snapshots came faster than asked: {times:?}"));
        }
    }
    if sockets(daemon) <= before {
        h.fail("the daemon holds the subscription's connection while it is open");
    }
    drop(writer);
    drop(reader);

    // The daemon notices at its next sample and lets the connection go.
    h.wait_for(
        "the daemon to close the subscription's connection",
        10 * SECOND,
        || sockets(daemon) <= before,
    );

    // The daemon goes on serving other clients once the view is gone.
    let list = list_values(&h);
    if list.len() != 2 {
        h.fail(&format!(
            "expected two workers after the view left: {list:?}"
        ));
    }
}

#[test]
fn a_leaking_worker_is_replaced_ready_first_with_no_failed_request() {
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        &app_arg("leaky.js"),
        "--listen",
        &listen_addr(port),
        "--max-memory-restart",
        "150M",
    ])
    .env("LEAK_MB", "4")
    .env("LEAK_CAP_MB", "300")
    .ok();
    let first = pids(&h.wait_online("leaky", 1));
    wait_served_by(&h, port, &first, 10 * SECOND);
    let probe = Probe::start(port);

    // Past 150 MiB (about 3 s of leaking) for three samples in a row, it is replaced.
    let replaced = h.wait_value(
        "the leaking worker to be replaced for its memory",
        30 * SECOND,
        || {
            let list = list_values(&h);
            let worker = list.first()?.clone();
            let pid = worker["pid"].as_i64()? as i32;
            (worker["memory_restarts"].as_u64()? >= 1 && !first.contains(&pid)).then_some(pid)
        },
    );
    wait_gone(&h, &first);
    wait_served_by(&h, port, &BTreeSet::from([replaced]), 10 * SECOND);
    let report = probe.finish();
    if !report.failures.is_empty() || report.ok == 0 {
        h.fail(&format!(
            "requests failed while the worker was replaced: ok {}, {:?} {:?}",
            report.ok, report.errors, report.failures
        ));
    }

    let log = std::fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default();
    if !log.contains("memory above max_memory_restart") {
        h.fail("the replacement must be logged in daemon.log");
    }
    let text = h.cmd(&["describe", "leaky"]).ok().stdout;
    if !text.contains("memory limit  150.0mb (workers replaced") {
        h.fail(&format!("describe shows the limit and the count:\n{text}"));
    }
    // And it is an event (issue 16), with the memory and the limit.
    let mut c = h.command();
    c.args(["events", "--json", "--since", "10m"]);
    let stream = crate::helpers::Streaming::spawn(c);
    let event = h.wait_value("the memory-limit event", 10 * SECOND, || {
        stream
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "memory-limit")
    });
    assert_eq!(event["limit"], 150 * 1024 * 1024, "{event}");
    assert!(
        event["memory"].as_u64().unwrap_or(0) > 150 * 1024 * 1024,
        "{event}"
    );
    assert!(
        first.contains(&(event["pid"].as_i64().unwrap_or(0) as i32)),
        "{event}"
    );
}
