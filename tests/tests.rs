//! Integration tests: the real `herdsman` binary, real apps (Node, gunicorn, uvicorn, bash),
//! real sockets on 127.0.0.1 and real signals. Each test has its own `HERDSMAN_HOME` and port,
//! and its [`Herdsman`] fixture leaves no process behind. See `helpers` for the fixtures.

mod adopt;
mod balance;
mod ecosystem;
mod fleet;
mod fleetjobs;
mod habits;
mod harden;
mod helpers;
mod jobs;
mod keeper;
mod langs;
mod lifecycle;
mod logfeat;
mod logs;
mod metrics;
mod monit;
mod observe;
mod plumbing;
mod preload;
mod production;
mod races;
mod reload;
mod security;
mod survival;
mod update;
mod watch;
mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use helpers::{
    Herdsman, Probe, Proc, SECOND, Streaming, alive, app_arg, comm, fd_link, fds, free_port,
    http_get, listen_addr, marked_pids, mode, pids, proc_stat, served_pid, snapshot, venv_bin,
    wait_served_by,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `start tests/apps/http.js --name NAME -i N --listen 127.0.0.1:PORT`, waits until every
/// worker is online and has answered; returns the workers.
#[track_caller]
fn start_http(h: &Herdsman, name: &str, n: usize, port: u16) -> Vec<Proc> {
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        name,
        "-i",
        &n.to_string(),
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    let workers = h.wait_online(name, n);
    wait_served_by(h, port, &pids(&workers), 10 * SECOND);
    workers
}

/// Waits until every worker of `name` has been up for `ms` (a "stable run" for the crash policy).
#[track_caller]
fn wait_uptime(h: &Herdsman, name: &str, ms: u64) {
    h.wait_for(
        &format!("every worker of `{name}` up for {ms} ms"),
        10 * SECOND,
        || {
            let w = h.workers(name);
            !w.is_empty() && w.iter().all(|p| p.uptime_ms.unwrap_or(0) >= ms)
        },
    );
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Parses the `KEY=VALUE` lines written by `env`.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// =============================================================================================
// 1. Node cluster: one shared socket, no supervisor in the data path
// =============================================================================================

#[test]
fn node_cluster_workers_share_one_socket_and_daemon_never_accepts() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = start_http(&h, "web", 2, port);

    for w in &workers {
        assert_eq!(w.mode, "cluster", "mode of {w:?}");
        assert_eq!(
            w.listen.as_deref(),
            Some(listen_addr(port).as_str()),
            "listen of {w:?}"
        );
    }
    let links: Vec<Option<String>> = workers
        .iter()
        .map(|w| fd_link(w.pid.expect("online worker has a pid"), 3))
        .collect();
    let first = links[0].clone().unwrap_or_default();
    if !first.starts_with("socket:[") || links.iter().any(|l| l.as_deref() != Some(&first)) {
        h.fail(&format!(
            "both workers' fd 3 must be the same socket inode, got {links:?}"
        ));
    }

    let daemon = h.daemon_pid();
    let before = proc_stat(daemon)
        .unwrap_or_else(|| h.fail("daemon process not found"))
        .cpu_ticks;
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut failures = Vec::new();
                let mut served = BTreeSet::new();
                for _ in 0..375 {
                    match http_get(port, "/load", Duration::from_secs(5)) {
                        Ok(r) if r.status == 200 => {
                            served.extend(r.pid);
                        }
                        Ok(r) => failures.push(format!("status {}", r.status)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (failures, served)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut served = BTreeSet::new();
    for handle in handles {
        let (f, s) = handle.join().expect("load thread panicked");
        failures.extend(f);
        served.extend(s);
    }
    let elapsed = started.elapsed();
    let after = proc_stat(daemon)
        .unwrap_or_else(|| h.fail("daemon process gone after the load"))
        .cpu_ticks;

    if !failures.is_empty() {
        h.fail(&format!(
            "{} of 1500 requests failed, first: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        ));
    }
    if !served.is_subset(&pids(&workers)) {
        h.fail(&format!("served by {served:?}, workers are {workers:?}"));
    }
    if after - before >= 20 {
        h.fail(&format!(
            "daemon used {} clock ticks during 1500 connections in {elapsed:?}: it is in the data path",
            after - before
        ));
    }
}

// =============================================================================================
// 2. A killed worker is replaced at once; no connection fails meanwhile
// =============================================================================================

fn kill9_recovery(instances: usize) {
    let h = Herdsman::new();
    let port = free_port();
    start_http(&h, "web", instances, port);
    // Only a crash after a stable run (>= min_uptime, 1 s) is restarted at once.
    wait_uptime(&h, "web", 1100);
    let victim = h.workers("web")[0].clone();
    let victim_pid = victim.pid.expect("online worker has a pid");

    let probe = Probe::start(port);
    h.wait_for("the probe's first 5 responses", 5 * SECOND, || {
        probe.ok_count() >= 5
    });
    let killed_at = {
        // No probe request is in flight at the moment of the kill: a request the dying worker
        // had already accepted is lost by any supervisor; what must never fail is a new one.
        let _quiet = probe.quiesce();
        kill(Pid::from_raw(victim_pid), Signal::SIGKILL).expect("kill -9 the worker");
        Instant::now()
    };

    let replacement = h.wait_value(
        "a replacement worker with a new pid `online` within 1 s of kill -9",
        SECOND.saturating_sub(killed_at.elapsed()),
        || {
            h.workers("web").into_iter().find(|w| {
                w.id == victim.id && w.status == "online" && w.pid.is_some_and(|p| p != victim_pid)
            })
        },
    );
    if replacement.restarts <= victim.restarts {
        h.fail(&format!(
            "restarts did not grow: before {victim:?}, after {replacement:?}"
        ));
    }
    if alive(victim_pid) {
        h.fail(&format!("killed worker {victim_pid} still alive"));
    }
    let new_pid = replacement.pid.expect("replacement has a pid");
    let ok_at_replacement = probe.ok_count();
    h.wait_for(
        "50 more probe responses after the replacement",
        15 * SECOND,
        || probe.ok_count() >= ok_at_replacement + 50,
    );
    if instances > 1 {
        wait_served_by(&h, port, &pids(&h.workers("web")), 10 * SECOND);
    }
    let report = probe.finish();
    if !report.failures.is_empty() {
        h.fail(&format!(
            "{} probe request(s) failed around the kill (ok: {}): {:?}",
            report.failures.len(),
            report.ok,
            report.failures
        ));
    }
    if instances == 1 && !report.pids.contains(&new_pid) {
        h.fail(&format!(
            "probe never reached the replacement {new_pid}: {:?}",
            report.pids
        ));
    }
}

#[test]
fn kill9_of_one_of_two_workers_is_replaced_within_1s_without_failed_requests() {
    kill9_recovery(2);
}

#[test]
fn kill9_of_the_only_worker_is_replaced_within_1s_and_connections_wait_in_backlog() {
    kill9_recovery(1);
}

// =============================================================================================
// 3. Crash policy
// =============================================================================================

/// Time between consecutive observed restart counts, only where exactly one restart happened in
/// between (a slow poll may see the counter jump by more than one).
fn single_step_gaps(changes: &[(Instant, u64)]) -> Vec<Duration> {
    changes
        .windows(2)
        .filter(|w| w[1].1 == w[0].1 + 1)
        .map(|w| w[1].0 - w[0].0)
        .collect()
}

#[test]
fn crash_loop_backs_off_and_stop_ends_it() {
    let h = Herdsman::new();
    h.cmd(&["start", "tests/apps/crash.sh", "--name", "crash"])
        .ok();

    // (when the restart counter was seen to change, its new value)
    let mut changes: Vec<(Instant, u64)> = Vec::new();
    let mut saw_waiting = false;
    h.wait_for(
        "6 restarts of crash.sh, 3 single-step gaps measured and status `waiting` seen",
        30 * SECOND,
        || {
            let w = h.workers("crash");
            let [p] = w.as_slice() else {
                h.fail(&format!("expected one worker, got {w:?}"))
            };
            if p.status == "waiting" {
                saw_waiting = true;
                if p.restart_in_ms.is_none() {
                    h.fail(&format!("`waiting` without restart_in_ms: {p:?}"));
                }
            }
            if changes.last().map(|c| c.1) != Some(p.restarts) {
                changes.push((Instant::now(), p.restarts));
            }
            p.restarts >= 6 && saw_waiting && single_step_gaps(&changes).len() >= 3
        },
    );

    let gaps = single_step_gaps(&changes);
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    if last < first.mul_f64(1.5) || last < Duration::from_millis(300) {
        h.fail(&format!(
            "restart gaps do not grow (exponential backoff expected): {gaps:?}"
        ));
    }

    h.cmd(&["stop", "crash"]).ok();
    let w = h.workers("crash");
    let [p] = w.as_slice() else {
        h.fail(&format!("expected one worker after stop, got {w:?}"))
    };
    if p.status != "stopped" || p.pid.is_some() {
        h.fail(&format!(
            "after stop expected status stopped, pid null: {p:?}"
        ));
    }
    let restarts = p.restarts;
    // Longer than the next backoff would have been: no restart may happen after stop.
    let window = last.mul_f64(2.0).clamp(SECOND, 4 * SECOND);
    h.assert_stays(
        "status stopped, pid null and restarts constant after stop",
        window,
        || {
            let w = h.workers("crash");
            w.len() == 1
                && w[0].status == "stopped"
                && w[0].pid.is_none()
                && w[0].restarts == restarts
        },
    );
}

#[test]
fn crash_loop_with_max_restarts_ends_errored() {
    let h = Herdsman::new();
    h.cmd(&[
        "start",
        "tests/apps/crash.js",
        "--name",
        "capped",
        "--max-restarts",
        "2",
    ])
    .ok();
    let p = h.wait_value(
        "status `errored` with --max-restarts 2",
        20 * SECOND,
        || {
            h.workers("capped")
                .into_iter()
                .find(|p| p.status == "errored")
        },
    );
    if p.pid.is_some() || p.restarts > 3 {
        h.fail(&format!(
            "errored worker must have no pid and at most ~2 restarts: {p:?}"
        ));
    }
    h.assert_stays("errored worker is not retried", SECOND, || {
        let w = h.workers("capped");
        w.len() == 1 && w[0].status == "errored" && w[0].restarts == p.restarts
    });
}

// =============================================================================================
// 4, 5. Python servers honour the inherited socket
// =============================================================================================

#[test]
fn gunicorn_two_instances_serve_on_the_inherited_socket() {
    let gunicorn = venv_bin("gunicorn");
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        gunicorn.as_str(),
        "--name",
        "py",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
        "--cwd",
        "tests/apps",
        "--",
        "-w",
        "1",
        "wsgi:app",
    ])
    .ok();
    let masters = pids(&h.wait_online("py", 2));
    // gunicorn's worker processes answer; their parents are herdsman's two workers (masters).
    let mut served = BTreeSet::new();
    h.wait_for(
        &format!("answers on {port} from 2 distinct gunicorn workers"),
        30 * SECOND,
        || {
            for _ in 0..5 {
                if let Some(pid) = served_pid(port) {
                    served.insert(pid);
                }
            }
            served.len() >= 2
        },
    );
    let parents: BTreeSet<i32> = served
        .iter()
        .filter_map(|&pid| proc_stat(pid).map(|s| s.ppid))
        .collect();
    if parents != masters {
        h.fail(&format!(
            "served by {served:?} whose parents are {parents:?}; herdsman's workers are {masters:?}"
        ));
    }
}

#[test]
fn uvicorn_two_instances_serve_on_fd_3() {
    let uvicorn = venv_bin("uvicorn");
    let h = Herdsman::new();
    let port = free_port();
    h.cmd(&[
        "start",
        uvicorn.as_str(),
        "--name",
        "asgi",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
        "--cwd",
        "tests/apps",
        "--",
        "--fd",
        "3",
        "asgi:app",
    ])
    .ok();
    let workers = h.wait_online("asgi", 2);
    wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
}

/// `tests/apps/node/<file>`, after checking that `.ci/run` installed the frameworks it uses.
fn node_framework_app(file: &str) -> String {
    let dir = helpers::app("node");
    assert!(
        dir.join("node_modules").is_dir(),
        "{}/node_modules is missing: run .ci/run to install the test apps' npm packages",
        dir.display()
    );
    dir.join(file).display().to_string()
}

#[test]
fn express_and_fastify_apps_serve_unmodified_from_the_shared_socket() {
    let h = Herdsman::new();
    for (name, file) in [("express", "express.js"), ("fastify", "fastify.js")] {
        let port = free_port();
        let script = node_framework_app(file);
        h.cmd(&[
            "start",
            script.as_str(),
            "-i",
            "2",
            "--listen",
            &listen_addr(port),
        ])
        .ok();
        let workers = h.wait_online(name, 2);
        wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
        let links: BTreeSet<Option<String>> = workers
            .iter()
            .map(|w| fd_link(w.pid.expect("online worker has a pid"), 3))
            .collect();
        if links.len() != 1
            || !links
                .iter()
                .all(|l| l.as_deref().is_some_and(|l| l.starts_with("socket:[")))
        {
            h.fail(&format!(
                "{name}: both workers' fd 3 must be the one shared socket, got {links:?}"
            ));
        }
    }
}

// =============================================================================================
// 6. Environment, fds and cwd of workers
// =============================================================================================

/// Waits for `env.sh` (worker `pid`) to have written its report and exec'ed `sleep`;
/// returns (environment, cwd).
#[track_caller]
fn env_report(h: &Herdsman, out_dir: &Path, pid: i32) -> (BTreeMap<String, String>, String) {
    let env = h.wait_value(
        &format!(
            "env.sh (pid {pid}) to write {}/{pid}.env",
            out_dir.display()
        ),
        10 * SECOND,
        || fs::read_to_string(out_dir.join(format!("{pid}.env"))).ok(),
    );
    let cwd = h.wait_value("env.sh to write its cwd", 10 * SECOND, || {
        read_trimmed(&out_dir.join(format!("{pid}.cwd")))
    });
    h.wait_for(
        &format!("env.sh (pid {pid}) to exec sleep"),
        10 * SECOND,
        || comm(pid).as_deref() == Some("sleep"),
    );
    (parse_env(&env), cwd)
}

fn canonical(path: &Path) -> String {
    fs::canonicalize(path)
        .expect("canonicalize a test directory")
        .display()
        .to_string()
}

#[test]
fn worker_environment_fds_and_cwd_in_cluster_and_fork_mode() {
    let h = Herdsman::new();
    let port = free_port();
    let out_dir = h.scratch("env-out");
    let start_dir = h.scratch("start-dir");
    let other_dir = h.scratch("other-dir");
    let caller_value = format!("only-in-the-callers-env-{port}");

    h.cmd(&[
        "start",
        &app_arg("env.sh"),
        "--name",
        "envapp",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .cwd(&start_dir)
    .env("ENV_OUT_DIR", out_dir.display().to_string())
    .env("HERDSMAN_TEST_CALLER_VAR", &caller_value)
    .ok();
    let workers = h.wait_online("envapp", 2);
    let mut inodes = BTreeSet::new();
    for w in &workers {
        let pid = w.pid.expect("online worker has a pid");
        let (env, cwd) = env_report(&h, &out_dir, pid);
        let instance = w.instance.to_string();
        let port_s = port.to_string();
        let pid_s = pid.to_string();
        let expected = [
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", pid_s.as_str()),
            ("LISTEN_FDNAMES", "envapp"),
            ("HERDSMAN_APP", "envapp"),
            ("HERDSMAN_INSTANCE", instance.as_str()),
            ("NODE_APP_INSTANCE", instance.as_str()),
            ("PORT", port_s.as_str()),
            ("HERDSMAN_TEST_CALLER_VAR", caller_value.as_str()),
        ];
        for (key, value) in expected {
            if env.get(key).map(String::as_str) != Some(value) {
                h.fail(&format!(
                    "worker {pid} (instance {instance}): expected {key}={value}, got {:?}\nfull env: {env:#?}",
                    env.get(key)
                ));
            }
        }
        if cwd != canonical(&start_dir) {
            h.fail(&format!(
                "worker cwd {cwd:?}, expected where start ran: {}",
                start_dir.display()
            ));
        }
        let open = fds(pid);
        let link = fd_link(pid, 3).unwrap_or_default();
        if open != BTreeSet::from([0, 1, 2, 3]) || !link.starts_with("socket:[") {
            h.fail(&format!(
                "worker {pid}: expected fds exactly 0,1,2,3 with 3 a socket, got {open:?} (fd 3 -> {link:?})"
            ));
        }
        inodes.insert(link);
    }
    let instances: BTreeSet<u64> = workers.iter().map(|w| w.instance).collect();
    if instances != BTreeSet::from([0, 1]) || inodes.len() != 1 {
        h.fail(&format!(
            "expected instances 0 and 1 sharing one socket, got {instances:?} / {inodes:?}"
        ));
    }

    // Fork mode, with --cwd overriding the directory start ran in.
    h.cmd(&[
        "start",
        &app_arg("env.sh"),
        "--name",
        "envfork",
        "--cwd",
        &other_dir.display().to_string(),
    ])
    .cwd(&start_dir)
    .env("ENV_OUT_DIR", out_dir.display().to_string())
    .env("HERDSMAN_TEST_CALLER_VAR", &caller_value)
    .ok();
    let fork = h.wait_online("envfork", 1);
    let pid = fork[0].pid.expect("online worker has a pid");
    if fork[0].mode != "fork" || fork[0].listen.is_some() {
        h.fail(&format!("expected fork mode without listen: {:?}", fork[0]));
    }
    let (env, cwd) = env_report(&h, &out_dir, pid);
    let listen_vars: Vec<&String> = env.keys().filter(|k| k.starts_with("LISTEN_")).collect();
    if !listen_vars.is_empty() {
        h.fail(&format!("fork mode worker has {listen_vars:?}"));
    }
    if env.get("HERDSMAN_APP").map(String::as_str) != Some("envfork")
        || env.get("HERDSMAN_TEST_CALLER_VAR") != Some(&caller_value)
    {
        h.fail(&format!(
            "fork mode worker lacks HERDSMAN_APP or the caller's variable: {env:#?}"
        ));
    }
    if cwd != canonical(&other_dir) {
        h.fail(&format!(
            "fork worker cwd {cwd:?}, expected --cwd {}",
            other_dir.display()
        ));
    }
    let open = fds(pid);
    if open != BTreeSet::from([0, 1, 2]) {
        h.fail(&format!(
            "fork mode worker {pid}: expected fds exactly 0,1,2, got {open:?}"
        ));
    }
}

// =============================================================================================
// 7. Interpreter by extension
// =============================================================================================

#[test]
fn interpreter_is_chosen_by_extension_and_overridable() {
    let h = Herdsman::new();
    let report_dir = h.scratch("reports");
    let python = venv_bin("python3");
    let cases: [(&str, &str, Option<&str>); 5] = [
        ("sh-default", "report.sh", None),
        ("sh-as-dash", "report.sh", Some("sh")),
        ("sh-direct", "report.sh", Some("none")),
        ("py-default", "report.py", None),
        ("py-venv", "report.py", Some(python.as_str())),
    ];
    let mut reports = BTreeMap::new();
    for (name, script, interpreter) in cases {
        let mut args = vec![
            "start".to_string(),
            app_arg(script),
            "--name".into(),
            name.into(),
        ];
        if let Some(i) = interpreter {
            args.extend(["--interpreter".to_string(), i.to_string()]);
        }
        h.cmd(&args)
            .env("REPORT_DIR", report_dir.display().to_string())
            .ok();
        let pid = h.wait_online(name, 1)[0]
            .pid
            .expect("online worker has a pid");
        let report = h.wait_value(
            &format!("{script} ({name}, pid {pid}) to write its report"),
            10 * SECOND,
            || read_trimmed(&report_dir.join(format!("{pid}.txt"))),
        );
        reports.insert(name, report);
    }
    let get = |name: &str| reports.get(name).cloned().unwrap_or_default();
    let checks = [
        (
            "sh-default",
            get("sh-default").starts_with("bash=") && get("sh-default") != "bash=none",
            ".sh runs with bash",
        ),
        (
            "sh-as-dash",
            get("sh-as-dash") == "bash=none",
            "--interpreter sh overrides bash",
        ),
        (
            "sh-direct",
            get("sh-direct") == "bash=none",
            "--interpreter none executes the file (#!/bin/sh)",
        ),
        (
            "py-default",
            get("py-default")
                .rsplit('/')
                .next()
                .is_some_and(|exe| exe.starts_with("python3")),
            ".py runs with python3",
        ),
        (
            "py-venv",
            get("py-venv") == format!("executable={python}"),
            "--interpreter PROG overrides python3",
        ),
    ];
    for (name, ok, what) in checks {
        if !ok {
            h.fail(&format!(
                "{what}: app {name} reported {:?}; all: {reports:#?}",
                get(name)
            ));
        }
    }
}

// =============================================================================================
// 8. Errors: exit 1, a message naming the problem, nothing changed
// =============================================================================================

#[test]
fn errors_exit_1_name_the_problem_and_change_nothing() {
    let h = Herdsman::new();
    let port = free_port();
    start_http(&h, "web", 2, port);
    let before = snapshot(&h.list());

    let missing = app_arg("does-not-exist.js");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to hold it busy");
    let taken_addr = listen_addr(taken.local_addr().expect("local_addr").port());
    let other = listen_addr(free_port());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["start", &missing], &missing),
        (
            vec![
                "start",
                "tests/apps/http.js",
                "--name",
                "busy",
                "--listen",
                &taken_addr,
            ],
            &taken_addr,
        ),
        (
            vec![
                "start",
                "tests/apps/http.js",
                "--name",
                "web",
                "--listen",
                &other,
            ],
            "web",
        ),
        (vec!["stop", "ghost"], "ghost"),
        (vec!["restart", "ghost"], "ghost"),
        (vec!["delete", "ghost"], "ghost"),
        (vec!["stop", "999"], "999"),
        (vec!["restart", "999"], "999"),
        (vec!["delete", "999"], "999"),
        (
            vec!["start", "tests/apps/http.js", "--name", "badi", "-i", "abc"],
            "abc",
        ),
        (
            vec![
                "start",
                "tests/apps/http.js",
                "--name",
                "badl",
                "--listen",
                "notaport",
            ],
            "notaport",
        ),
        (
            vec![
                "start",
                "tests/apps/http.js",
                "--name",
                "badp",
                "--listen",
                "127.0.0.1:99999",
            ],
            "99999",
        ),
    ];
    for (args, needle) in cases {
        h.cmd(&args).fails_with(needle);
        let after = snapshot(&h.list());
        if after != before {
            h.fail(&format!(
                "`herdsman {}` changed the list\nbefore: {before:?}\nafter:  {after:?}",
                args.join(" ")
            ));
        }
    }
    drop(taken);
}

// =============================================================================================
// 9. Lifecycle: stop frees the port, start again, delete, kill
// =============================================================================================

#[test]
fn stop_frees_the_port_start_serves_again_delete_forgets_kill_cleans_up() {
    let h = Herdsman::new();
    let port = free_port();
    start_http(&h, "web", 2, port);

    h.cmd(&["stop", "web"]).ok();
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => h.fail(&format!(
            "after stop, connect to {port} must be refused, got {other:?}"
        )),
    }
    let stopped = h.workers("web");
    if stopped.len() != 2
        || stopped
            .iter()
            .any(|w| w.status != "stopped" || w.pid.is_some())
    {
        h.fail(&format!("after stop: {stopped:?}"));
    }

    h.cmd(&["start", "web"]).ok();
    let workers = h.wait_online("web", 2);
    wait_served_by(&h, port, &pids(&workers), 10 * SECOND);

    h.cmd(&["delete", "web"]).ok();
    if !h.workers("web").is_empty() {
        h.fail("`web` still listed after delete");
    }
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => h.fail(&format!(
            "after delete, connect to {port} must be refused, got {other:?}"
        )),
    }

    start_http(&h, "again", 1, port);
    let daemon = h.daemon_pid();
    h.cmd(&["kill"]).ok();
    if alive(daemon) {
        h.fail(&format!("daemon {daemon} alive after `kill` returned"));
    }
    for file in ["herdsman.sock", "daemon.pid"] {
        if h.home().join(file).exists() {
            h.fail(&format!("{file} still exists after kill"));
        }
    }
    h.wait_for(
        "no process carrying this HERDSMAN_HOME after kill",
        2 * SECOND,
        || h.marked_pids().is_empty(),
    );
}

// =============================================================================================
// 10. Graceful stop
// =============================================================================================

#[test]
fn stop_sends_sigint_by_default_and_the_kill_signal_when_given() {
    let h = Herdsman::new();
    let dir = h.scratch("trap");
    for (name, signal, expected) in [("int", None, "INT"), ("term", Some("SIGTERM"), "TERM")] {
        let out = dir.join(name);
        let mut args = vec!["start", "tests/apps/trap.sh", "--name", name];
        if let Some(s) = signal {
            args.extend(["--kill-signal", s]);
        }
        h.cmd(&args).env("TRAP_OUT", out.display().to_string()).ok();
        let pid = h.wait_online(name, 1)[0]
            .pid
            .expect("online worker has a pid");
        let ready = format!("{}.ready", out.display());
        h.wait_for(&format!("{name}: traps installed"), 10 * SECOND, || {
            fs::metadata(&ready).is_ok()
        });
        h.cmd(&["stop", name]).ok();
        let got = read_trimmed(&out);
        if got.as_deref() != Some(expected) {
            h.fail(&format!(
                "{name}: worker recorded {got:?}, expected {expected}"
            ));
        }
        if alive(pid) {
            h.fail(&format!("{name}: worker {pid} alive after stop returned"));
        }
    }
}

#[test]
fn stop_sigkills_a_worker_ignoring_the_signal_after_kill_timeout() {
    let h = Herdsman::new();
    let out = h.scratch("ignore").join("out");
    h.cmd(&["start", "tests/apps/ignore.sh", "--kill-timeout", "300ms"])
        .env("TRAP_OUT", out.display().to_string())
        .ok();
    let pid = h.wait_online("ignore", 1)[0]
        .pid
        .expect("online worker has a pid");
    h.wait_for("ignore.sh: signals ignored", 10 * SECOND, || {
        fs::metadata(format!("{}.ready", out.display())).is_ok()
    });
    let stop = h.cmd(&["stop", "ignore"]).ok();
    if alive(pid) {
        h.fail(&format!(
            "worker {pid} ignoring SIGINT alive after stop returned"
        ));
    }
    if stop.elapsed < Duration::from_millis(250) || stop.elapsed >= Duration::from_millis(1500) {
        h.fail(&format!(
            "stop took {:?}: expected the 300 ms kill timeout, then SIGKILL\n{stop}",
            stop.elapsed
        ));
    }
    let w = h.workers("ignore");
    if w.len() != 1 || w[0].status != "stopped" || w[0].pid.is_some() {
        h.fail(&format!("after stop: {w:?}"));
    }
}

#[test]
fn stop_kills_the_workers_whole_process_group() {
    let h = Herdsman::new();
    let out = h.scratch("group").join("out");
    h.cmd(&[
        "start",
        "tests/apps/grandchild.sh",
        "--kill-timeout",
        "300ms",
    ])
    .env("TRAP_OUT", out.display().to_string())
    .ok();
    let pid = h.wait_online("grandchild", 1)[0]
        .pid
        .expect("online worker has a pid");
    let grandchild: i32 = h.wait_value(
        "grandchild.sh to report its grandchild",
        10 * SECOND,
        || {
            read_trimmed(Path::new(&format!("{}.ready", out.display())))?
                .parse()
                .ok()
        },
    );
    let worker_group = proc_stat(pid).map(|s| s.pgrp);
    let child_group = proc_stat(grandchild).map(|s| s.pgrp);
    if worker_group != Some(pid) || child_group != Some(pid) {
        h.fail(&format!(
            "worker {pid} must lead its own process group with the grandchild in it: \
             worker pgrp {worker_group:?}, grandchild {grandchild} pgrp {child_group:?}"
        ));
    }
    h.cmd(&["stop", "grandchild"]).ok();
    h.wait_for(
        &format!("grandchild {grandchild} (ignoring SIGINT) gone after stop"),
        SECOND,
        || !alive(grandchild),
    );
}

// =============================================================================================
// 11. No daemon, one daemon only, private files
// =============================================================================================

#[test]
fn list_and_kill_without_a_daemon_start_nothing() {
    let h = Herdsman::new();
    let out = h.cmd(&["list", "--json"]).ok();
    if out.stdout.trim() != "[]" {
        h.fail(&format!("expected `[]` with no daemon\n{out}"));
    }
    h.cmd(&["list"]).ok();
    h.cmd(&["kill"]).ok();
    for file in ["herdsman.sock", "daemon.pid"] {
        if h.home().join(file).exists() {
            h.fail(&format!("{file} created by list/kill with no daemon"));
        }
    }
    h.assert_stays(
        "no daemon process for this home",
        Duration::from_millis(300),
        || h.marked_pids().is_empty(),
    );
}

#[test]
fn second_daemon_refuses_and_home_and_socket_are_private() {
    let h = Herdsman::new();
    h.cmd(&["start", "tests/apps/trap.sh"])
        .env("TRAP_OUT", h.scratch("t").join("out").display().to_string())
        .ok();
    h.wait_online("trap", 1);
    let daemon = h.daemon_pid();

    let second = h
        .cmd(&["daemon", "--foreground"])
        .timeout(10 * SECOND)
        .run();
    if second.status.is_none() || second.success() {
        h.fail(&format!(
            "a second daemon for the same home must exit non-zero at once\n{second}"
        ));
    }
    if !second.stderr.to_lowercase().contains("already running") {
        h.fail(&format!("expected `already running` on stderr\n{second}"));
    }
    if h.daemon_pid() != daemon || !alive(daemon) {
        h.fail("the first daemon must keep running");
    }
    h.wait_online("trap", 1);

    let home_mode = mode(h.home());
    let sock_mode = mode(&h.home().join("herdsman.sock"));
    if home_mode != Some(0o700) || sock_mode != Some(0o600) {
        h.fail(&format!(
            "expected home 0700 and socket 0600, got {:?} and {:?}",
            home_mode.map(|m| format!("{m:o}")),
            sock_mode.map(|m| format!("{m:o}"))
        ));
    }
}

// =============================================================================================
// 12. Logs
// =============================================================================================

/// Parses a `logger.js` line (anything before `logger ` is tolerated, e.g. a timestamp):
/// `Some((instance, Some(seq)))`, or `Some((instance, None))` for its `done` line.
fn parse_logger_line(line: &str) -> Option<(u64, Option<u64>)> {
    let (_, rest) = line.split_once("logger inst=")?;
    if rest.contains("logger ") {
        return None; // two lines glued together
    }
    let (inst, rest) = rest.split_once(' ')?;
    let inst = inst.parse().ok()?;
    if rest == "done" {
        return Some((inst, None));
    }
    let rest = rest.strip_prefix("seq=")?;
    let (seq, rest) = rest.split_once(' ')?;
    let seq: u64 = seq.parse().ok()?;
    let pad = rest.strip_prefix("pad=")?.strip_suffix(" end")?;
    let expected = 20 + ((seq * 37) % 180) as usize;
    (pad.len() == expected && pad.bytes().all(|b| b == b'x')).then_some((inst, Some(seq)))
}

#[test]
fn logs_nostream_prints_the_last_lines() {
    let h = Herdsman::new();
    h.cmd(&["start", "tests/apps/logger.js"])
        .env("LOGGER_LINES", "50")
        .ok();
    h.wait_for("logger.js to write its 50 lines", 10 * SECOND, || {
        h.out_log("logger").contains("logger inst=0 done")
    });
    let out = h
        .cmd(&["logs", "logger", "--nostream", "--lines", "5"])
        .timeout(10 * SECOND)
        .ok();
    let wanted = ["seq=46 ", "seq=47 ", "seq=48 ", "seq=49 ", "inst=0 done"];
    let missing: Vec<&&str> = wanted
        .iter()
        .filter(|w| !out.stdout.contains(**w))
        .collect();
    if !missing.is_empty() || out.stdout.contains("seq=45 ") {
        h.fail(&format!(
            "expected exactly the last 5 lines (seq 46..49 and done); missing {missing:?}\n{out}"
        ));
    }
}

#[test]
fn logs_of_two_workers_keep_every_line_intact_and_in_order() {
    let h = Herdsman::new();
    h.cmd(&["start", "tests/apps/logger.js", "-i", "2"]).ok();
    h.wait_for(
        "both logger.js workers to write 2000 lines",
        30 * SECOND,
        || {
            let log = h.out_log("logger");
            log.contains("logger inst=0 done") && log.contains("logger inst=1 done")
        },
    );
    let log = h.out_log("logger");
    let mut next_seq: BTreeMap<u64, u64> = BTreeMap::new();
    let mut bad = Vec::new();
    for (n, line) in log.lines().enumerate() {
        match parse_logger_line(line) {
            Some((inst, Some(seq))) => {
                let expected = next_seq.entry(inst).or_insert(0);
                if seq != *expected {
                    bad.push(format!(
                        "line {n}: instance {inst} seq {seq}, expected {expected}"
                    ));
                }
                *expected = seq + 1;
            }
            Some((_, None)) => {}
            None => bad.push(format!("line {n} split or mangled: {line:?}")),
        }
    }
    let counts: Vec<(u64, u64)> = next_seq.into_iter().collect();
    if !bad.is_empty() || counts != vec![(0, 2000), (1, 2000)] {
        h.fail(&format!(
            "out log not intact: per-instance counts {counts:?}; first problems: {:?}",
            &bad[..bad.len().min(10)]
        ));
    }
}

#[test]
fn logs_streaming_shows_lines_written_after_it_started() {
    let h = Herdsman::new();
    let port = free_port();
    helpers::start_request_logger(&h, port, &[]);
    h.wait_for("http.js to log that it listens", 10 * SECOND, || {
        h.out_log("web").contains("listening pid=")
    });

    let mut command = h.command();
    command.args(["logs", "web"]);
    let mut stream = Streaming::spawn(command);
    h.wait_for("`logs web` to print the existing tail", 10 * SECOND, || {
        stream.stdout().contains("listening pid=")
    });
    let marker = format!("/after-{port}");
    let response = http_get(port, &marker, Duration::from_secs(5))
        .unwrap_or_else(|e| h.fail(&format!("GET {marker}: {e}")));
    if response.status != 200 {
        h.fail(&format!("GET {marker}: status {}", response.status));
    }
    h.wait_for(
        &format!("`logs web` to stream the request line for {marker}"),
        10 * SECOND,
        || stream.stdout().contains(&marker),
    );
    if !stream.running() {
        h.fail(&format!(
            "`logs web` exited instead of following; printed:\n{}",
            stream.stdout()
        ));
    }
}

// =============================================================================================
// 13. restart keeps the port open
// =============================================================================================

fn restart_keeps_port_open(instances: usize) {
    let h = Herdsman::new();
    let port = free_port();
    let old = pids(&start_http(&h, "web", instances, port));
    let probe = Probe::start(port);
    h.wait_for("the probe's first 5 responses", 5 * SECOND, || {
        probe.ok_count() >= 5
    });
    h.cmd(&["restart", "web"]).ok();
    let new = pids(&h.wait_value(
        "every worker restarted with a new pid and online",
        10 * SECOND,
        || {
            let w = h.workers("web");
            (w.len() == instances
                && w.iter()
                    .all(|p| p.status == "online" && p.pid.is_some_and(|pid| !old.contains(&pid))))
            .then_some(w)
        },
    ));
    let ok_now = probe.ok_count();
    h.wait_for(
        "50 more probe responses after the restart",
        15 * SECOND,
        || probe.ok_count() >= ok_now + 50,
    );
    wait_served_by(&h, port, &new, 10 * SECOND);
    let report = probe.finish();
    if !report.failures.is_empty() {
        h.fail(&format!(
            "{} probe request(s) failed during restart (ok: {}): {:?}",
            report.failures.len(),
            report.ok,
            report.failures
        ));
    }
}

#[test]
fn restart_of_two_workers_refuses_no_connection() {
    restart_keeps_port_open(2);
}

#[test]
fn restart_of_a_single_worker_refuses_no_connection() {
    restart_keeps_port_open(1);
}

#[test]
fn no_process_outlives_a_fixture() {
    // The fixture's Drop is what every other test relies on: check it on a busy home.
    let home;
    {
        let h = Herdsman::new();
        home = h.home().to_path_buf();
        let out = h.scratch("group").join("out");
        h.cmd(&[
            "start",
            "tests/apps/grandchild.sh",
            "--kill-timeout",
            "300ms",
        ])
        .env("TRAP_OUT", out.display().to_string())
        .ok();
        h.wait_online("grandchild", 1);
    }
    let left = marked_pids(&home);
    assert!(
        left.is_empty(),
        "processes left behind by a fixture: {left:?}"
    );
    assert!(!home.exists(), "home {} not removed", home.display());
}
