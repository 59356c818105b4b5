//! Issue 16: knowing when something is wrong. The watchdog (a worker alive but stuck is replaced, its
//! successor ready first), the event stream and the hooks.

use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

use serde_json::Value;

use crate::helpers::{
    Herdsman, Probe, SECOND, alive, app_arg, assert_no_failures, free_port, listen_addr, pids,
    wait_served_by,
};

/// `list --json` as JSON values (for the fields the shared `Proc` does not carry).
fn list_values(h: &Herdsman) -> Vec<Value> {
    let out = h.cmd(&["list", "--json"]).ok();
    match serde_json::from_str::<Vec<Value>>(&out.stdout) {
        Ok(list) => list,
        Err(e) => h.fail(&format!("`list --json` is not JSON: {e}\n{out}")),
    }
}

fn hung_count(h: &Herdsman, name: &str) -> u64 {
    list_values(h)
        .iter()
        .filter(|p| p["name"] == name)
        .map(|p| p["hung"].as_u64().unwrap_or(0))
        .sum()
}

/// The article's blocking route, for real: 2 Express workers, `watchdog = "2s"`. A request to `/block`
/// spins one worker's event loop for 30 s; its heartbeat stops, and it is replaced (successor ready first)
/// long before the route would end, while a probe on new connections sees every request served.
#[test]
fn a_blocked_event_loop_is_replaced_while_the_other_worker_serves() {
    let h = Herdsman::new();
    let port = free_port();
    let script = crate::node_framework_app("blocking.js");
    let dir = h.scratch("app");
    let file = dir.join("ecosystem.toml");
    std::fs::write(
        &file,
        format!(
            "[[apps]]\nname = \"web\"\nscript = \"{script}\"\ninstances = 2\nlisten = \"{}\"\nwatchdog = \"2s\"\n",
            listen_addr(port)
        ),
    )
    .unwrap_or_else(|e| h.fail(&format!("write the file: {e}")));
    h.cmd(&["start", &file.display().to_string()]).ok();
    let workers = h.wait_online("web", 2);
    wait_served_by(&h, port, &pids(&workers), 10 * SECOND);

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || probe.ok_count() > 20);
    // Between two probe requests, so that no probe connection is taken in the same accept as `/block`.
    let (blocked, hit) = {
        let _quiet = probe.quiesce();
        let mut block = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| h.fail(&format!("connect for /block: {e}")));
        block
            .write_all(b"GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap_or_else(|e| h.fail(&format!("send /block: {e}")));
        let blocked: i32 = h.wait_value("a worker to block its event loop", 10 * SECOND, || {
            let log = h.out_log("web");
            let line = log.lines().find(|l| l.contains("blocking pid="))?;
            line.rsplit("pid=").next()?.trim().parse().ok()
        });
        (blocked, (Instant::now(), block))
    };
    let (hit_at, _block_connection) = hit;
    h.wait_for("the blocked worker to be replaced and gone", 20 * SECOND, || {
        !alive(blocked)
            && h.workers("web").len() == 2
            && h
                .workers("web")
                .iter()
                .all(|w| w.status == "online" && w.pid.is_some_and(|p| p != blocked))
    });
    let replaced_in = hit_at.elapsed();
    let after = probe.ok_count();
    h.wait_for("the probe to go on being served", 10 * SECOND, || {
        probe.ok_count() > after + 20
    });
    let report = probe.finish();
    assert_no_failures(&h, "while a worker was blocked and replaced", &report);
    assert!(
        !report.pids.contains(&blocked) || report.ok > 0,
        "the probe saw the blocked worker"
    );
    assert_eq!(hung_count(&h, "web"), 1, "one worker found hung");
    println!(
        "blocked worker {blocked} replaced and gone {replaced_in:?} after /block (watchdog 2s); probe: {} ok, 0 failed",
        report.ok
    );
    let details = h.cmd(&["describe", "web"]).ok().stdout;
    assert!(details.contains("watchdog"), "{details}");
    assert!(details.contains("hung        1 times"), "{details}");
    // The replacement is not stuck: it beats, so it stays.
    let now = pids(&h.workers("web"));
    h.assert_stays("the replacements to stay", 3 * SECOND, || {
        pids(&h.workers("web")) == now
    });
}

/// A Python worker that speaks the protocol itself (READY=1, WATCHDOG=1 at half of WATCHDOG_USEC,
/// WATCHDOG_PID its own) and then falls silent is found hung and replaced; its successor beats and stays.
#[test]
fn a_python_worker_that_stops_its_heartbeat_is_replaced() {
    let h = Herdsman::new();
    let marker = h.scratch("state").join("first");
    h.cmd(&[
        "start",
        &app_arg("heartbeat.py"),
        "--name",
        "py",
        "--watchdog",
        "1s",
        "--watchdog-signal",
        "SIGTERM",
    ])
    .env("MARKER", marker.display().to_string())
    .env("BEATS", "8")
    .ok();
    let first = h.wait_online("py", 1)[0].pid.unwrap_or_default();
    h.wait_for("the silent worker to be replaced", 20 * SECOND, || {
        hung_count(&h, "py") == 1
            && !alive(first)
            && h.workers("py")
                .iter()
                .all(|w| w.status == "online" && w.pid.is_some_and(|p| p != first))
    });
    let log = h.out_log("py");
    assert!(log.contains(&format!("silent from now pid={first}")), "{log}");
    let now = pids(&h.workers("py"));
    h.assert_stays("the successor to keep beating", 3 * SECOND, || {
        pids(&h.workers("py")) == now && hung_count(&h, "py") == 1
    });
}

/// A worker that never sends a heartbeat is hung at once after its start: that is a crash, and the
/// restart policy's backoff applies (no spinning).
#[test]
fn a_worker_hung_at_start_counts_as_a_crash() {
    let h = Herdsman::new();
    h.cmd(&[
        "start",
        &app_arg("heartbeat.py"),
        "--name",
        "mute",
        "--watchdog",
        "300ms",
    ])
    .env("BEATS", "0")
    .ok();
    let w = h.wait_value("the mute worker to crash twice", 20 * SECOND, || {
        h.workers("mute").into_iter().find(|w| w.restarts >= 2)
    });
    let exit = w.last_exit.clone().unwrap_or_default();
    assert!(exit.contains("hung"), "last exit: {exit}");
    let backing_off = h.wait_value("a backoff between quick crashes", 20 * SECOND, || {
        h.workers("mute")
            .into_iter()
            .find(|w| w.status == "waiting" && w.restart_in_ms.is_some())
    });
    assert!(backing_off.restarts >= 1);
    assert!(hung_count(&h, "mute") >= 2);
}

/// Bad input: an unknown event name and a hook that is not executable are errors naming the file, line
/// and column; nothing is started or changed.
#[test]
fn bad_watchdog_and_hook_options_are_refused_with_their_place() {
    let h = Herdsman::new();
    let dir = h.scratch("bad");
    let hook = dir.join("notify.sh");
    std::fs::write(&hook, "#!/bin/sh\necho hi\n")
        .unwrap_or_else(|e| h.fail(&format!("write the hook: {e}")));
    let script = app_arg("heartbeat.py");
    let file = dir.join("ecosystem.toml");
    std::fs::write(
        &file,
        format!(
            "[[apps]]\nname = \"a\"\nscript = \"{script}\"\non_event = {{ crashed = \"true\" }}\n\n[[apps]]\nname = \"b\"\nscript = \"{script}\"\non_event = {{ crash = \"./notify.sh\" }}\n"
        ),
    )
    .unwrap_or_else(|e| h.fail(&format!("write the file: {e}")));
    let out = h
        .cmd(&["start", &file.display().to_string()])
        .fails_with("unknown event 'crashed'");
    let path = file.display().to_string();
    assert!(out.stderr.contains(&format!("{path}:4:")), "{out}");
    assert!(out.stderr.contains(&format!("{path}:9:")), "{out}");
    assert!(out.stderr.contains("not an executable file"), "{out}");
    // The command line says so too.
    h.cmd(&["start", &script, "--on-event", "page=true"])
        .fails_with("unknown event 'page'");
    h.cmd(&["start", &script, "--watchdog", "10ms"])
        .fails_with("at least 100ms");
    assert!(
        h.list().is_empty(),
        "nothing was started: {:?}",
        h.list()
    );
}
