//! Issue 4: rolling reload, readiness (sd_notify READY=1, Node `process.send('ready')` and
//! listening, grace period), `scale` and `signal`, against the real binary and real apps.
//! Load runs during every change of workers: a keep-alive load ([`KeepAliveLoad`]) and new
//! connections ([`Probe`]); the assertions are about correctness (no failed request, pids
//! replaced, old workers kept), never about speed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::helpers::{
    Herdsman, KeepAliveLoad, LoadReport, Output, Probe, ProbeReport, Proc, SECOND, alive, app_arg,
    env_of, fd_link, free_port, listen_addr, pid_list, pids, proc_stat, served_pid, snapshot,
    venv_bin, wait_gone, wait_served_by,
};

/// Waits until both load generators have `more` more successful responses than now: traffic
/// goes on (keep-alive connections moved to the new workers, new connections are served).
#[track_caller]
fn wait_traffic(h: &Herdsman, load: &KeepAliveLoad, probe: &Probe, more: usize) {
    let (load_ok, probe_ok) = (load.ok_count(), probe.ok_count());
    h.wait_for(
        &format!("{more} more responses on the keep-alive load and on the probe"),
        20 * SECOND,
        || load.ok_count() >= load_ok + more && probe.ok_count() >= probe_ok + more,
    );
}

/// Fails unless neither load generator saw a failure of any kind.
#[track_caller]
fn assert_no_failures(h: &Herdsman, what: &str, probe: &ProbeReport, load: Option<&LoadReport>) {
    let load_failed = load.is_some_and(|l| l.errors.total() > 0 || !l.failures.is_empty());
    if !probe.failures.is_empty() || load_failed {
        h.fail(&format!(
            "requests failed {what}\nprobe (new connections): ok {}, errors {:?}, failures {:?}\n\
             keep-alive load: {load:#?}",
            probe.ok, probe.errors, probe.failures
        ));
    }
}

/// One progress line of `reload`: `NAME:INSTANCE  pid OLD -> NEW  ready after N ms`.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    instance: u64,
    old: i32,
    new: i32,
    ready_ms: u64,
}

/// The progress lines of `reload` for app `name`, in output order; fails on a line that starts
/// like one but does not have the documented form.
#[track_caller]
fn reload_steps(h: &Herdsman, out: &Output, name: &str) -> Vec<Step> {
    let prefix = format!("{name}:");
    out.stdout
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(" -> "))
        .map(|line| {
            let f: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
            let parsed = match f.as_slice() {
                [instance, "pid", old, "->", new, "ready", "after", ms, "ms"] => (|| {
                    Some(Step {
                        instance: instance.parse().ok()?,
                        old: old.parse().ok()?,
                        new: new.parse().ok()?,
                        ready_ms: ms.parse().ok()?,
                    })
                })(),
                _ => None,
            };
            match parsed {
                Some(s)
                    if line
                        == format!(
                            "{name}:{}  pid {} -> {}  ready after {} ms",
                            s.instance, s.old, s.new, s.ready_ms
                        ) =>
                {
                    s
                }
                _ => h.fail(&format!(
                    "reload progress line {line:?} is not `{name}:I  pid OLD -> NEW  ready after N ms`\n{out}"
                )),
            }
        })
        .collect()
}

/// Checks a successful reload of every worker of `name`: one progress line per worker in
/// instance order from the pids `before` to new ones, the summary line, and `list` showing the
/// new pids online. Returns the new pids in instance order.
#[track_caller]
fn check_reloaded(h: &Herdsman, out: &Output, name: &str, before: &[i32]) -> Vec<i32> {
    let steps = reload_steps(h, out, name);
    let instances: Vec<u64> = steps.iter().map(|s| s.instance).collect();
    let expected: Vec<u64> = (0..before.len() as u64).collect();
    if instances != expected {
        h.fail(&format!(
            "expected one progress line per worker in instance order {expected:?}, got {steps:?}\n{out}"
        ));
    }
    for s in &steps {
        if s.old != before[s.instance as usize] || before.contains(&s.new) {
            h.fail(&format!(
                "step {s:?}: expected old pid {} and a new pid not in {before:?}\n{out}",
                before[s.instance as usize]
            ));
        }
    }
    let summary = format!("reloaded {} worker(s)", before.len());
    if !out.stdout.lines().any(|l| l.trim() == summary) {
        h.fail(&format!("expected the line {summary:?}\n{out}"));
    }
    let new: Vec<i32> = steps.iter().map(|s| s.new).collect();
    let workers = h.workers(name);
    let listed: Vec<Option<i32>> = workers.iter().map(|w| w.pid).collect();
    if listed != new.iter().map(|&p| Some(p)).collect::<Vec<_>>()
        || workers.iter().any(|w| w.status != "online")
    {
        h.fail(&format!(
            "after the reload list shows {workers:?}, expected pids {new:?} online\n{out}"
        ));
    }
    new
}

/// Reads `path` as lines of whitespace-separated fields (missing file: no lines).
fn field_lines(path: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The timestamp of the line `<event> <pid> <ns>` in a stamp file.
fn stamp_of(lines: &[Vec<String>], event: &str, pid: i32) -> Option<u128> {
    lines.iter().find_map(|l| match l.as_slice() {
        [e, p, ns] if e == event && *p == pid.to_string() => ns.parse().ok(),
        _ => None,
    })
}

/// Waits for the line `<event> <pid> <ns>` in the stamp file `path`; returns the timestamp.
#[track_caller]
fn wait_stamp(h: &Herdsman, path: &Path, event: &str, pid: i32) -> u128 {
    h.wait_value(
        &format!("`{event} {pid} <ns>` in {}", path.display()),
        15 * SECOND,
        || stamp_of(&field_lines(path), event, pid),
    )
}

/// `$HOME/daemon.log`.
fn daemon_log(h: &Herdsman) -> String {
    fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default()
}

/// Waits for the daemon log to say that `pid` got ready from `source` (`ready pid=N source=S`).
#[track_caller]
fn wait_ready_source(h: &Herdsman, pid: i32, source: &str) {
    let needle = format!("ready pid={pid} source={source}");
    h.wait_for(
        &format!("`{needle}` in the daemon log"),
        10 * SECOND,
        || daemon_log(h).lines().any(|l| l.ends_with(&needle)),
    );
}

/// `start tests/apps/http.js -i N --listen 127.0.0.1:PORT` (app `http`); waits until every worker
/// is online and has answered; returns the workers.
#[track_caller]
fn start_http(h: &Herdsman, n: usize, port: u16) -> Vec<Proc> {
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "-i",
        &n.to_string(),
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    let workers = h.wait_online("http", n);
    wait_served_by(h, port, &pids(&workers), 10 * SECOND);
    workers
}

/// Starts both load generators on `port` and waits until each has had a few answers.
#[track_caller]
fn start_load(h: &Herdsman, port: u16) -> (KeepAliveLoad, Probe) {
    let load = KeepAliveLoad::start(port, 4);
    let probe = Probe::start(port);
    h.wait_for("the first 20 responses of both loads", 10 * SECOND, || {
        load.ok_count() >= 20 && probe.ok_count() >= 20
    });
    (load, probe)
}

// =============================================================================================
// 1, 2. reload and restart of a Node cluster under load
// =============================================================================================

#[test]
fn three_reloads_under_load_replace_every_worker_without_a_failed_request() {
    let h = Herdsman::new();
    let port = free_port();
    let mut current = pid_list(&start_http(&h, 2, port));
    let (load, probe) = start_load(&h, port);

    for round in 1..=3u64 {
        let out = h.cmd(&["reload", "http"]).ok();
        let new = check_reloaded(&h, &out, "http", &current);
        let workers = h.workers("http");
        if workers.iter().any(|w| w.restarts != round) {
            h.fail(&format!(
                "after reload {round} every worker should count {round} restart(s): {workers:?}"
            ));
        }
        let old: BTreeSet<i32> = current.iter().copied().collect();
        wait_gone(&h, &old);
        let new_set: BTreeSet<i32> = new.iter().copied().collect();
        wait_served_by(&h, port, &new_set, 10 * SECOND);
        wait_traffic(&h, &load, &probe, 50);
        current = new;
    }

    let (load, probe) = (load.finish(), probe.finish());
    assert_no_failures(&h, "during three reloads", &probe, Some(&load));
    // (Which worker accepts each keep-alive connection is the kernel's choice: at least one.)
    if !current.iter().any(|pid| load.pids.contains_key(pid)) {
        h.fail(&format!(
            "the keep-alive load never reached the last workers {current:?}: {load:#?}"
        ));
    }
}

#[test]
fn three_restarts_under_load_refuse_no_connection_and_answer_only_2xx() {
    let h = Herdsman::new();
    let port = free_port();
    let mut current = pids(&start_http(&h, 2, port));
    let (load, probe) = start_load(&h, port);

    for _ in 0..3 {
        h.cmd(&["restart", "http"]).ok();
        let new = pids(&h.wait_value(
            "both workers restarted with new pids and online",
            15 * SECOND,
            || {
                let w = h.workers("http");
                (w.len() == 2
                    && w.iter().all(|p| {
                        p.status == "online" && p.pid.is_some_and(|pid| !current.contains(&pid))
                    }))
                .then_some(w)
            },
        ));
        wait_gone(&h, &current);
        wait_served_by(&h, port, &new, 10 * SECOND);
        wait_traffic(&h, &load, &probe, 50);
        current = new;
    }

    let (load, probe) = (load.finish(), probe.finish());
    if probe.errors.refused + probe.errors.bad_status + load.errors.refused + load.errors.bad_status
        > 0
    {
        h.fail(&format!(
            "refused connections or non-2xx answers during three restarts\n\
             probe (new connections): ok {}, errors {:?}, failures {:?}\nkeep-alive load: {load:#?}",
            probe.ok, probe.errors, probe.failures
        ));
    }
}

// =============================================================================================
// 3. A replacement that takes time to listen
// =============================================================================================

#[test]
fn reload_of_a_slow_starting_app_waits_until_each_replacement_listens() {
    let h = Herdsman::new();
    let port = free_port();
    let stamps = h.scratch("slow").join("stamps");
    // Default settings: a Node worker in cluster mode is ready when it listens (its grace period
    // is the listen timeout, 3 s), so only listening makes slow.js's replacements ready (1.5 s).
    h.cmd(&[
        "start",
        "tests/apps/slow.js",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .env("STAMP_FILE", stamps.display().to_string())
    .ok();
    let before = pid_list(&h.wait_online("slow", 2));
    wait_served_by(&h, port, &before.iter().copied().collect(), 10 * SECOND);
    let probe = Probe::start(port);
    h.wait_for("the probe's first 20 responses", 10 * SECOND, || {
        probe.ok_count() >= 20
    });

    let out = h.cmd(&["reload", "slow"]).ok();
    let steps = reload_steps(&h, &out, "slow");
    let new = check_reloaded(&h, &out, "slow", &before);
    if steps.iter().any(|s| s.ready_ms < 1500) || out.elapsed < 3 * SECOND {
        h.fail(&format!(
            "each replacement listens 1.5 s after its start: every step must take >= 1500 ms \
             and the reload >= 3 s\n{out}"
        ));
    }
    for s in &steps {
        let listen = wait_stamp(&h, &stamps, "listen", s.new);
        let closing = wait_stamp(&h, &stamps, "closing", s.old);
        if closing <= listen {
            h.fail(&format!(
                "old worker {} was told to stop at {closing} ns, before its replacement {} \
                 called listen() at {listen} ns\n{out}",
                s.old, s.new
            ));
        }
    }
    wait_gone(&h, &before.iter().copied().collect());
    let new_set: BTreeSet<i32> = new.iter().copied().collect();
    wait_served_by(&h, port, &new_set, 10 * SECOND);
    let ok_now = probe.ok_count();
    h.wait_for("20 more probe responses", 10 * SECOND, || {
        probe.ok_count() >= ok_now + 20
    });
    let report = probe.finish();
    assert_no_failures(&h, "during the reload of slow.js", &report, None);
}

// =============================================================================================
// 4. A replacement that crashes: the reload stops, the old workers keep serving
// =============================================================================================

#[test]
fn reload_whose_replacement_crashes_fails_and_keeps_the_old_workers_serving() {
    let h = Herdsman::new();
    let port = free_port();
    let flag = h.scratch("flaky").join("crash-flag");
    h.cmd(&[
        "start",
        "tests/apps/flaky.js",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .env("CRASH_FLAG", flag.display().to_string())
    .ok();
    let workers = h.wait_online("flaky", 2);
    let old = pids(&workers);
    wait_served_by(&h, port, &old, 10 * SECOND);
    fs::write(&flag, "crash\n").expect("create the crash flag");
    let probe = Probe::start(port);
    h.wait_for("the probe's first 20 responses", 10 * SECOND, || {
        probe.ok_count() >= 20
    });

    let out = h.cmd(&["reload", "flaky"]).fails_with("'flaky'");
    let err_log = h.home().join("logs").join("flaky-err.log");
    let first = &workers[0];
    for needle in [
        format!("stopped at worker {} (instance 0)", first.id),
        "exited".to_string(),
        "code 1".to_string(),
        err_log.display().to_string(),
    ] {
        if !out.stderr.contains(&needle) {
            h.fail(&format!(
                "the reload's error must contain {needle:?} (which worker, why, where the log is)\n{out}"
            ));
        }
    }
    if !fs::read_to_string(&err_log)
        .unwrap_or_default()
        .contains("exists, exiting with code 1")
    {
        h.fail(&format!(
            "{} does not hold the replacement's message",
            err_log.display()
        ));
    }

    let after = h.workers("flaky");
    if snapshot(&after) != snapshot(&workers) {
        h.fail(&format!(
            "the failed reload changed the workers: before {workers:?}, after {after:?}\n{out}"
        ));
    }
    let last_exit = after[0].last_exit.clone().unwrap_or_default();
    if !last_exit.contains("code 1") {
        h.fail(&format!(
            "slot {} should show the failed replacement (code 1) in last_exit: {after:?}",
            first.id
        ));
    }
    if after[1].last_exit != workers[1].last_exit || after.iter().any(|w| w.restarts != 0) {
        h.fail(&format!(
            "the worker not reached must be untouched and nothing was replaced: before \
             {workers:?}, after {after:?}"
        ));
    }
    // Nothing retries the replacement behind our back: the old workers stay.
    h.assert_stays(
        "the old workers online with their pids",
        Duration::from_millis(1500),
        || snapshot(&h.workers("flaky")) == snapshot(&workers),
    );
    wait_served_by(&h, port, &old, 10 * SECOND);
    let report = probe.finish();
    assert_no_failures(&h, "across the failed reload", &report, None);
    if !report.pids.is_subset(&old) {
        h.fail(&format!(
            "served by {:?}, expected only the old workers {old:?}",
            report.pids
        ));
    }
}

// =============================================================================================
// 5. gunicorn: readiness from READY=1 on NOTIFY_SOCKET
// =============================================================================================

#[test]
fn gunicorn_gets_ready_from_sd_notify_and_reloads_without_a_failed_request() {
    let gunicorn = venv_bin("gunicorn");
    let h = Herdsman::new();
    let port = free_port();
    // --wait-ready: only an explicit signal counts, and a gunicorn master can only give READY=1.
    // --kill-signal SIGTERM: gunicorn's graceful shutdown (SIGINT is its quick shutdown, which
    // drops the requests its workers are serving).
    h.cmd(&[
        "start",
        gunicorn.as_str(),
        "--name",
        "py",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
        "--wait-ready",
        "--listen-timeout",
        "15s",
        "--kill-signal",
        "SIGTERM",
        "--cwd",
        "tests/apps",
        "--",
        "-w",
        "1",
        "wsgi:app",
    ])
    .timeout(60 * SECOND)
    .ok();
    let masters = h.wait_value("2 gunicorn masters online", 30 * SECOND, || {
        let w = h.workers("py");
        (w.len() == 2 && w.iter().all(|p| p.status == "online" && p.pid.is_some())).then_some(w)
    });
    let old = pid_list(&masters);
    for &pid in &old {
        wait_ready_source(&h, pid, "Notify");
    }
    h.wait_for("an answer from gunicorn", 30 * SECOND, || {
        served_pid(port).is_some()
    });
    let probe = Probe::start(port);
    h.wait_for("the probe's first 20 responses", 10 * SECOND, || {
        probe.ok_count() >= 20
    });

    let out = h.cmd(&["reload", "py"]).timeout(60 * SECOND).ok();
    let new = check_reloaded(&h, &out, "py", &old);
    for &pid in &new {
        wait_ready_source(&h, pid, "Notify");
    }
    wait_gone(&h, &old.iter().copied().collect());
    // Answers now come from gunicorn workers whose master is one of the new ones.
    let new_set: BTreeSet<i32> = new.iter().copied().collect();
    h.wait_for(
        &format!("an answer from a gunicorn worker of the new masters {new_set:?}"),
        30 * SECOND,
        || {
            served_pid(port)
                .and_then(proc_stat)
                .is_some_and(|s| new_set.contains(&s.ppid))
        },
    );
    let ok_now = probe.ok_count();
    h.wait_for("20 more probe responses", 10 * SECOND, || {
        probe.ok_count() >= ok_now + 20
    });
    let report = probe.finish();
    assert_no_failures(&h, "during the gunicorn reload", &report, None);
}

// =============================================================================================
// 6. --wait-ready with Node's process.send('ready')
// =============================================================================================

/// The pids `ready.js` wrote to `dir` (`<pid>.pid`).
fn ready_pids(dir: &Path) -> BTreeSet<i32> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".pid")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn wait_ready_node_process_send_ready_gates_online_and_reload() {
    let h = Herdsman::new();
    let ready_js = app_arg("ready.js");

    // Ready after 300 ms: start returns once ready, and the app is online.
    let dir = h.scratch("ready-out");
    let out = h
        .cmd(&[
            "start",
            ready_js.as_str(),
            "--name",
            "r300",
            "-i",
            "2",
            "--wait-ready",
        ])
        .env("READY_DELAY_MS", "300")
        .env("READY_OUT_DIR", dir.display().to_string())
        .ok();
    if out.elapsed < Duration::from_millis(300) {
        h.fail(&format!(
            "start --wait-ready returned before the workers sent 'ready' (300 ms)\n{out}"
        ));
    }
    let workers = h.wait_online("r300", 2);
    let old = pid_list(&workers);
    for &pid in &old {
        wait_ready_source(&h, pid, "NodeReady");
    }

    // Never ready: never online; killed at the listen timeout, retried, then errored.
    let never_dir = h.scratch("never-out");
    h.cmd(&[
        "start",
        ready_js.as_str(),
        "--name",
        "never",
        "--wait-ready",
        "--listen-timeout",
        "500ms",
        "--max-restarts",
        "1",
    ])
    .env("READY_DELAY_MS", "never")
    .env("READY_OUT_DIR", never_dir.display().to_string())
    .run();
    let mut statuses = Vec::new();
    let ended = h.wait_value(
        "`never` to end errored (never ready within --listen-timeout, --max-restarts 1)",
        20 * SECOND,
        || {
            let w = h.workers("never");
            statuses.extend(w.iter().map(|p| p.status.clone()));
            if statuses.iter().any(|s| s == "online") {
                h.fail(&format!(
                    "a worker that never sent 'ready' was online (statuses seen {statuses:?})"
                ));
            }
            (w.len() == 1 && w[0].status == "errored").then(|| w[0].clone())
        },
    );
    // (A process killed at 500 ms may not have got to write its pid file on a busy machine:
    // `restarts` counts the attempts.)
    let written = ready_pids(&never_dir);
    if ended.restarts < 1 || written.iter().any(|&p| alive(p)) {
        h.fail(&format!(
            "expected restarts >= 1 and no process left running: {ended:?}, processes {written:?}"
        ));
    }

    // A reload whose replacements never send 'ready' fails; the old workers stay online.
    let out = h
        .cmd(&["reload", "r300", "--update-env"])
        .env("READY_DELAY_MS", "never")
        .env("READY_OUT_DIR", dir.display().to_string())
        .fails_with("'r300'");
    let log = h.home().join("logs").join("r300-err.log");
    if !out.stderr.contains(&log.display().to_string()) {
        h.fail(&format!(
            "the reload's error must name the log {}\n{out}",
            log.display()
        ));
    }
    let after = h.workers("r300");
    if pid_list(&after) != old || after.iter().any(|w| w.status != "online") {
        h.fail(&format!(
            "the old workers {old:?} must stay online after the failed reload: {after:?}\n{out}"
        ));
    }
    let replacements: BTreeSet<i32> = ready_pids(&dir)
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect();
    if replacements.is_empty() {
        h.fail(&format!("no replacement was started by the reload\n{out}"));
    }
    wait_gone(&h, &replacements);
}

// =============================================================================================
// 7. reload --update-env
// =============================================================================================

/// The environment `env.sh` (worker `pid`) wrote to `dir/<pid>.env`.
/// Reloads `env` (one worker) and returns the new worker's environment.
#[track_caller]
fn reload_env(
    h: &Herdsman,
    dir: &Path,
    update: bool,
    vars: &[(&str, Option<&str>)],
) -> BTreeMap<String, String> {
    let before = pid_list(&h.wait_online("env", 1));
    let mut args = vec!["reload", "env"];
    if update {
        args.push("--update-env");
    }
    let mut cmd = h.cmd(&args).env("ENV_OUT_DIR", dir.display().to_string());
    for (k, v) in vars {
        cmd = match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.ok();
    let new = check_reloaded(h, &out, "env", &before);
    env_of(h, dir, new[0])
}

#[test]
fn reload_update_env_takes_the_callers_environment_and_plain_reload_keeps_it() {
    let h = Herdsman::new();
    let dir = h.scratch("env-out");
    h.cmd(&["start", "tests/apps/env.sh"])
        .env("ENV_OUT_DIR", dir.display().to_string())
        .env("FOO", "1")
        .env("BAR", "1")
        .ok();
    let first = h.wait_online("env", 1)[0]
        .pid
        .expect("online worker has a pid");
    let env = env_of(&h, &dir, first);
    assert_eq!(
        (env.get("FOO"), env.get("BAR")),
        (Some(&"1".to_string()), Some(&"1".to_string())),
        "env of the first worker"
    );

    let pair = |env: &BTreeMap<String, String>| (env.get("FOO").cloned(), env.get("BAR").cloned());
    // A plain reload from another environment keeps the app's.
    let env = reload_env(&h, &dir, false, &[("FOO", Some("9")), ("BAR", None)]);
    if pair(&env) != (Some("1".into()), Some("1".into())) {
        h.fail(&format!(
            "plain reload must keep FOO=1 BAR=1, the new worker has {:?}",
            pair(&env)
        ));
    }
    // --update-env: the caller's environment, BAR gone.
    let env = reload_env(&h, &dir, true, &[("FOO", Some("2")), ("BAR", None)]);
    if pair(&env) != (Some("2".into()), None) {
        h.fail(&format!(
            "reload --update-env from FOO=2 without BAR: the new worker has {:?}",
            pair(&env)
        ));
    }
    for key in ["HERDSMAN_APP", "HERDSMAN_INSTANCE"] {
        if !env.contains_key(key) {
            h.fail(&format!("{key} missing after --update-env: {env:?}"));
        }
    }
    // And a plain reload afterwards keeps the updated environment.
    let env = reload_env(&h, &dir, false, &[("FOO", Some("3")), ("BAR", Some("3"))]);
    if pair(&env) != (Some("2".into()), None) {
        h.fail(&format!(
            "plain reload after --update-env must keep FOO=2 and no BAR, the new worker has {:?}",
            pair(&env)
        ));
    }
}

// =============================================================================================
// 8. Fork mode: overlap by default, --no-overlap stops first
// =============================================================================================

#[test]
fn fork_mode_reload_starts_the_new_process_first_unless_no_overlap() {
    let h = Herdsman::new();
    let dir = h.scratch("stamps");
    for (name, no_overlap) in [("overlap", false), ("serial", true)] {
        let stamps = dir.join(name);
        let mut args = vec!["start", "tests/apps/stamp.sh", "--name", name];
        if no_overlap {
            args.push("--no-overlap");
        } else {
            // The replacement is ready after the grace period (min-uptime): a long one leaves
            // a busy machine ample time to run the replacement's first line before the old
            // process is told to stop.
            args.extend(["--min-uptime", "3s"]);
        }
        h.cmd(&args)
            .env("STAMP_FILE", stamps.display().to_string())
            .ok();
        let before = h.wait_online(name, 1);
        let old = before[0].pid.expect("online worker has a pid");
        wait_stamp(&h, &stamps, "start", old);

        let out = h.cmd(&["reload", name]).ok();
        let new = check_reloaded(&h, &out, name, &[old])[0];
        let started = wait_stamp(&h, &stamps, "start", new);
        let stopped = wait_stamp(&h, &stamps, "stop", old);
        let lines = field_lines(&stamps);
        if no_overlap && stopped >= started {
            h.fail(&format!(
                "--no-overlap: the old process {old} must stop before the new {new} starts: {lines:?}"
            ));
        }
        if !no_overlap && started >= stopped {
            h.fail(&format!(
                "reload: the new process {new} must start before the old {old} stops: {lines:?}"
            ));
        }
        wait_gone(&h, &BTreeSet::from([old]));
        let after = h.workers(name);
        if after.len() != 1 || after[0].restarts != before[0].restarts + 1 {
            h.fail(&format!(
                "one reload replaces one process: restarts must grow by exactly 1 \
                 (before {before:?}, after {after:?})"
            ));
        }
    }
}

// =============================================================================================
// 9. scale
// =============================================================================================

#[test]
fn scale_up_and_down_under_load_without_a_failed_request() {
    let h = Herdsman::new();
    let port = free_port();
    let initial = start_http(&h, 2, port);
    let (load, probe) = start_load(&h, port);

    h.cmd(&["scale", "http", "4"]).ok();
    let four = h.wait_online("http", 4);
    let instances: Vec<u64> = four.iter().map(|w| w.instance).collect();
    if instances != [0, 1, 2, 3] || pid_list(&four)[..2] != pid_list(&initial)[..] {
        h.fail(&format!(
            "scale 4 must add instances 2 and 3 beside the running 0 and 1: {four:?}"
        ));
    }
    let links: BTreeSet<Option<String>> = four
        .iter()
        .map(|w| fd_link(w.pid.expect("online worker has a pid"), 3))
        .collect();
    if links.len() != 1
        || !links
            .iter()
            .all(|l| l.as_deref().is_some_and(|l| l.starts_with("socket:[")))
    {
        h.fail(&format!(
            "all 4 workers' fd 3 must be the one shared socket, got {links:?}"
        ));
    }
    wait_served_by(&h, port, &pids(&four), 15 * SECOND);
    wait_traffic(&h, &load, &probe, 50);

    h.cmd(&["scale", "http", "1"]).ok();
    let one = h.workers("http");
    let removed: BTreeSet<i32> = pid_list(&four)[1..].iter().copied().collect();
    if one.len() != 1 || one[0].instance != 0 || one[0].pid != four[0].pid {
        h.fail(&format!(
            "scale 1 must keep only instance 0 ({:?}): {one:?}",
            four[0].pid
        ));
    }
    let left: Vec<i32> = removed.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        h.fail(&format!(
            "scale returned while removed workers {left:?} still run"
        ));
    }
    wait_served_by(&h, port, &pids(&one), 10 * SECOND);
    wait_traffic(&h, &load, &probe, 50);

    let before = snapshot(&h.list());
    for n in ["0", "-5"] {
        h.cmd(&["scale", "http", n]).fails_with("http");
        let after = snapshot(&h.list());
        if after != before {
            h.fail(&format!(
                "a failed `scale http {n}` changed the workers: {before:?} -> {after:?}"
            ));
        }
    }

    let (load, probe) = (load.finish(), probe.finish());
    assert_no_failures(&h, "while scaling 2 -> 4 -> 1", &probe, Some(&load));
}

// =============================================================================================
// 10. signal
// =============================================================================================

#[test]
fn signal_reaches_every_worker_of_an_app_or_the_one_selected_by_id() {
    let h = Herdsman::new();
    let dir = h.scratch("sig");
    h.cmd(&["start", "tests/apps/sig.sh", "-i", "2"])
        .env("SIG_DIR", dir.display().to_string())
        .ok();
    let workers = h.wait_online("sig", 2);
    for w in &workers {
        let pid = w.pid.expect("online worker has a pid");
        h.wait_for(
            &format!("sig.sh (pid {pid}) to install its traps"),
            10 * SECOND,
            || dir.join(format!("{pid}.ready")).exists(),
        );
    }
    let log = |w: &Proc| -> Vec<String> {
        let pid = w.pid.expect("online worker has a pid");
        fs::read_to_string(dir.join(format!("{pid}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let wait_logs = |what: &str, expected: [&[&str]; 2]| {
        h.wait_for(what, 10 * SECOND, || {
            workers
                .iter()
                .zip(expected)
                .all(|(w, e)| log(w) == e.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        });
    };

    h.cmd(&["signal", "SIGUSR1", "sig"]).ok();
    wait_logs("USR1 recorded by both workers", [&["USR1"], &["USR1"]]);
    let id = workers[1].id.to_string();
    h.cmd(&["signal", "SIGUSR2", &id]).ok();
    h.wait_for("USR2 recorded by instance 1", 10 * SECOND, || {
        log(&workers[1]).len() == 2
    });
    // HUP to both afterwards: had USR2 gone to instance 0 too, it would be in its log by then.
    h.cmd(&["signal", "SIGHUP", "sig"]).ok();
    wait_logs(
        "USR1 and HUP recorded by instance 0, USR1, USR2 and HUP by instance 1",
        [&["USR1", "HUP"], &["USR1", "USR2", "HUP"]],
    );

    let before = snapshot(&h.list());
    h.cmd(&["signal", "SIGUSR1", "nosuch"]).fails_with("nosuch");
    if snapshot(&h.list()) != before || snapshot(&workers) != before {
        h.fail(&format!(
            "signals must leave the workers running unchanged: {workers:?} -> {before:?}"
        ));
    }
}
