//! Issue 16: knowing when something is wrong. The watchdog (a worker alive but stuck is replaced, its
//! successor ready first), the event stream and the hooks.

use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

use serde_json::Value;

use crate::helpers::{
    Herdsman, Probe, SECOND, Streaming, alive, app_arg, assert_no_failures, free_port, listen_addr,
    pids, wait_served_by,
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
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 20
    });
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
    h.wait_for(
        "the blocked worker to be replaced and gone",
        20 * SECOND,
        || {
            !alive(blocked)
                && h.workers("web").len() == 2
                && h.workers("web")
                    .iter()
                    .all(|w| w.status == "online" && w.pid.is_some_and(|p| p != blocked))
        },
    );
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
    assert!(
        log.contains(&format!("silent from now pid={first}")),
        "{log}"
    );
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
    assert!(h.list().is_empty(), "nothing was started: {:?}", h.list());
}

/// The events of a `herdsman events --json` stream so far, parsed (each line one JSON object).
fn events_of(h: &Herdsman, stream: &Streaming) -> Vec<Value> {
    stream
        .stdout()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| h.fail(&format!("an event line is not JSON ({e}): {l}")))
        })
        .collect()
}

fn position(events: &[Value], app: &str, kind: &str, after: usize) -> Option<usize> {
    events
        .iter()
        .enumerate()
        .skip(after)
        .find(|(_, e)| e["app"] == app && e["event"] == kind)
        .map(|(i, _)| i)
}

/// `events --json` follows what happens: a crash (SIGKILL), the restart, and a reload, in that order, each
/// a versioned JSON object with its app, instance, pid and details; `--since` replays what the daemon kept.
#[test]
fn events_json_sees_a_crash_a_restart_and_a_reload_in_order() {
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        &app_arg("http.js"),
        "--name",
        "ev",
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    let first = h.wait_online("ev", 1)[0].pid.unwrap_or_default();
    let mut c = h.command();
    c.args(["events", "--json", "--since", "10m"]);
    let stream = Streaming::spawn(c);
    h.wait_for("the start to be replayed", 10 * SECOND, || {
        position(&events_of(&h, &stream), "ev", "ready", 0).is_some()
    });

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    );
    h.wait_for(
        "the crash and the restart to be streamed",
        15 * SECOND,
        || {
            let events = events_of(&h, &stream);
            position(&events, "ev", "crashed", 0)
                .and_then(|i| position(&events, "ev", "restarted", i))
                .is_some()
        },
    );
    let second = h.wait_online("ev", 1)[0].pid.unwrap_or_default();
    h.cmd(&["reload", "ev"]).ok();
    h.wait_for("the reload step to be streamed", 15 * SECOND, || {
        let events = events_of(&h, &stream);
        position(&events, "ev", "reload-step", 0).is_some()
    });
    let events = events_of(&h, &stream);
    let crashed = position(&events, "ev", "crashed", 0).unwrap_or_default();
    let restarted = position(&events, "ev", "restarted", crashed).unwrap_or_default();
    let step = position(&events, "ev", "reload-step", restarted)
        .unwrap_or_else(|| h.fail(&format!("no reload step after the restart: {events:?}")));
    let crash = &events[crashed];
    assert_eq!(crash["version"], 1, "{crash}");
    assert_eq!(crash["instance"], 0, "{crash}");
    assert_eq!(crash["pid"], first, "{crash}");
    assert_eq!(crash["signal"], "SIGKILL", "{crash}");
    assert!(crash["uptime_ms"].as_u64().is_some(), "{crash}");
    assert_eq!(events[restarted]["restarts"], 1, "{}", events[restarted]);
    assert_eq!(events[step]["old_pid"], second, "{}", events[step]);
    // An exit is recorded before its crash; sequence numbers only grow.
    let exited = position(&events, "ev", "exited", 0).unwrap_or(usize::MAX);
    assert!(exited < crashed, "{events:?}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // The plain form: a line each.
    let mut c = h.command();
    c.args(["events", "--since", "10m"]);
    let plain = Streaming::spawn(c);
    h.wait_for("the plain stream to show the reload", 10 * SECOND, || {
        plain
            .stdout()
            .lines()
            .any(|l| l.contains("ev:0") && l.contains("reload-step"))
    });
}

/// Writes a hook script into `dir` that records its environment and stdin, and prints a marker on
/// stdout (which lands in the daemon's log).
fn recording_hook(h: &Herdsman, dir: &std::path::Path, sleep: &str) -> std::path::PathBuf {
    let hook = dir.join("hook.sh");
    let record = dir.join("calls");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nn=$(ls {record} 2>/dev/null | wc -l)\nmkdir -p {record}\ncat > {record}/$n.json\nenv | grep ^HERDSMAN_ > {record}/$n.env\necho \"hook saw $HERDSMAN_EVENT of $HERDSMAN_APP pid $HERDSMAN_PID\"\nsleep {sleep}\n",
            record = record.display()
        ),
    )
    .unwrap_or_else(|e| h.fail(&format!("write the hook: {e}")));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| h.fail(&format!("chmod the hook: {e}")));
    record
}

/// A hook receives the crash: the event in its environment and as JSON on stdin; what it prints lands in
/// the daemon's log; `describe` counts it.
#[test]
fn a_crash_hook_gets_the_event_in_env_and_json_and_logs_to_the_daemon_log() {
    let h = Herdsman::new();
    let port = free_port();
    let dir = h.scratch("app");
    let record = recording_hook(&h, &dir, "0");
    let file = dir.join("ecosystem.toml");
    std::fs::write(
        &file,
        format!(
            "[[apps]]\nname = \"hooked\"\nscript = \"{}\"\nlisten = \"{}\"\non_event = {{ crash = \"./hook.sh\" }}\n",
            app_arg("http.js"),
            listen_addr(port)
        ),
    )
    .unwrap_or_else(|e| h.fail(&format!("write the file: {e}")));
    h.cmd(&["start", &file.display().to_string()]).ok();
    let pid = h.wait_online("hooked", 1)[0].pid.unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let env = h.wait_value("the hook to record the crash", 15 * SECOND, || {
        std::fs::read_to_string(record.join("0.env"))
            .ok()
            .filter(|e| e.contains("HERDSMAN_PID"))
    });
    assert!(env.contains("HERDSMAN_EVENT=crashed"), "{env}");
    assert!(env.contains("HERDSMAN_APP=hooked"), "{env}");
    assert!(env.contains("HERDSMAN_INSTANCE=0"), "{env}");
    assert!(env.contains(&format!("HERDSMAN_PID={pid}")), "{env}");
    assert!(env.contains("HERDSMAN_EXIT=signal SIGKILL"), "{env}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("0.json")).unwrap_or_default())
            .unwrap_or_else(|e| h.fail(&format!("the hook's stdin is not the event's JSON: {e}")));
    assert_eq!(json["event"], "crashed", "{json}");
    assert_eq!(json["pid"], pid, "{json}");
    assert_eq!(json["version"], 1, "{json}");
    let log = h.home().join("daemon.log");
    h.wait_for("the hook's output in the daemon's log", 10 * SECOND, || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains(&format!("hook saw crashed of hooked pid {pid}")))
    });
    let details = h.wait_value("describe to count the hook", 10 * SECOND, || {
        let out = h.cmd(&["describe", "hooked"]).ok().stdout;
        out.contains("1 ran, 0 failed").then_some(out)
    });
    assert!(details.contains("crash → ./hook.sh"), "{details}");
}

/// A crash loop fires a bounded number of hooks: one at a time, at most 5 a minute; the rest are
/// suppressed and counted.
#[test]
fn a_crash_loop_fires_bounded_hooks() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    let record = recording_hook(&h, &dir, "0.3");
    let file = dir.join("ecosystem.toml");
    std::fs::write(
        &file,
        format!(
            "[[apps]]\nname = \"loop\"\nscript = \"{}\"\nrestart_backoff = \"20ms\"\nrestart_backoff_max = \"50ms\"\non_event = {{ crash = \"./hook.sh\" }}\n",
            app_arg("crash.sh"),
        ),
    )
    .unwrap_or_else(|e| h.fail(&format!("write the file: {e}")));
    // It never gets ready: the start says so, and the slot goes on crashing.
    h.cmd(&["start", &file.display().to_string()]).run();
    h.wait_for("the app to crash 30 times", 30 * SECOND, || {
        h.workers("loop").iter().any(|w| w.restarts >= 30)
    });
    let describe = || -> Value {
        let out = h.cmd(&["describe", "loop", "--json"]).ok().stdout;
        serde_json::from_str::<Value>(&out)
            .unwrap_or_else(|e| h.fail(&format!("describe --json is not JSON: {e}\n{out}")))
    };
    let hooks = h.wait_value("the hooks to settle", 15 * SECOND, || {
        let d = describe();
        let hooks = d[0]["hooks"].clone();
        (hooks["ran"].as_u64() == Some(5)).then_some(hooks)
    });
    assert!(
        hooks["suppressed"].as_u64().unwrap_or(0) >= 20,
        "the rest suppressed: {hooks}"
    );
    h.wait_for("5 hooks to have recorded", 10 * SECOND, || {
        std::fs::read_dir(&record).map_or(0, |d| d.count()) == 10
    });
    h.assert_stays("no sixth hook within the minute", 2 * SECOND, || {
        std::fs::read_dir(&record).map_or(0, |d| d.count()) == 10
    });
}

/// A hook that fails is logged, recorded as a `hook-failed` event and shown by `describe`; the app is not
/// affected.
#[test]
fn a_failing_hook_is_logged_counted_and_streamed() {
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        &app_arg("http.js"),
        "--name",
        "sad",
        "--listen",
        &listen_addr(port),
        "--on-event",
        "crash=echo the hook fails >&2; exit 3",
    ])
    .ok();
    let pid = h.wait_online("sad", 1)[0].pid.unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let details = h.wait_value("describe to show the failure", 15 * SECOND, || {
        let out = h.cmd(&["describe", "sad"]).ok().stdout;
        out.contains("1 ran, 1 failed").then_some(out)
    });
    assert!(details.contains("crashed: exited with code 3"), "{details}");
    let log = std::fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default();
    assert!(log.contains("the hook fails"), "{log}");
    assert!(log.contains("hook failed"), "{log}");
    let mut c = h.command();
    c.args(["events", "--json", "--since", "10m"]);
    let stream = Streaming::spawn(c);
    h.wait_for("the hook-failed event", 10 * SECOND, || {
        position(&events_of(&h, &stream), "sad", "hook-failed", 0).is_some()
    });
    h.wait_online("sad", 1);
}

/// A hook runs as the app's user, never as the daemon's (here root).
#[test]
fn a_hook_runs_as_the_apps_user() {
    let Some((uid, gid)) = crate::helpers::other_user() else {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let dir = h.scratch("theirs");
    nix::unistd::chown(
        &dir,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| h.fail(&format!("chown: {e}")));
    crate::helpers::open_path_to(&dir);
    let record = dir.join("uid");
    h.cmd(&[
        "start",
        "/bin/sleep",
        "--name",
        "theirs",
        "--user",
        crate::helpers::OTHER_USER,
        "--cwd",
        &dir.display().to_string(),
        "--on-event",
        &format!("crash=id -u > {}", record.display()),
        "--",
        "1000",
    ])
    .ok();
    let pid = h.wait_online("theirs", 1)[0].pid.unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let seen = h.wait_value("the hook to write its uid", 15 * SECOND, || {
        std::fs::read_to_string(&record)
            .ok()
            .filter(|t| !t.trim().is_empty())
    });
    assert_eq!(seen.trim(), uid.to_string(), "the hook's uid");
}

/// A scheduled job's run that fails for good is a `job-failed` event, with its run id, and runs the app's
/// `job-failed` hook; one that ends well is `job-succeeded`.
#[test]
fn job_runs_are_events_and_a_failed_one_runs_its_hook() {
    let h = Herdsman::new();
    let dir = h.scratch("job");
    let hook_out = dir.join("hook");
    h.cmd(&[
        "start",
        &app_arg("job.sh"),
        "--name",
        "nightly",
        "--schedule",
        "0 0 1 1 *",
        "--on-event",
        &format!(
            "job-failed=echo \"$HERDSMAN_EVENT $HERDSMAN_RUN_ID\" >> {}",
            hook_out.display()
        ),
    ])
    .env("JOB_FILE", dir.join("runs").display().to_string())
    .env("JOB_EXIT", "3")
    .ok();
    let out = h
        .cmd(&["trigger", "nightly", "--wait"])
        .timeout(30 * SECOND)
        .run();
    assert_eq!(out.code(), Some(3), "{out}");
    let run_id = out.stdout.lines().next().unwrap_or_default().to_string();
    let hook = h.wait_value("the job-failed hook", 10 * SECOND, || {
        std::fs::read_to_string(&hook_out)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(hook, format!("job-failed {run_id}\n"));
    let mut c = h.command();
    c.args(["events", "--json", "--since", "10m"]);
    let stream = Streaming::spawn(c);
    let event = h.wait_value("the job-failed event", 10 * SECOND, || {
        let events = events_of(&h, &stream);
        position(&events, "nightly", "job-failed", 0).map(|i| events[i].clone())
    });
    assert_eq!(event["run_id"], run_id.as_str(), "{event}");
    assert_eq!(event["code"], 3, "{event}");
}
