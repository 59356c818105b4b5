//! A worker's life against requests that overturn each other, dependency orders that cannot be satisfied,
//! and programs that cannot be executed for a moment. Each request must answer, the last one must win, and
//! nothing may be given up on for good that a retry would bring back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::{Herdsman, alive, app_arg, pid_list, wait_child, write_file};

const SECOND: Duration = Duration::from_secs(1);

/// Starts a CLI command in the background, its output discarded.
fn background(h: &Herdsman, args: &[&str]) -> Child {
    let mut command = h.command();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("spawn a herdsman command")
}

/// `slowstop.sh` with 2 workers, `--no-overlap` (a reload restarts each worker in place) and a 3 s kill
/// timeout; instance 0 takes that long to stop. Returns the workers' pids once both are online.
fn start_slow_stoppers(h: &Herdsman) -> Vec<i32> {
    h.cmd(&[
        "start",
        &app_arg("slowstop.sh"),
        "--name",
        "r",
        "-i",
        "2",
        "--no-overlap",
        "--kill-timeout",
        "3s",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    pid_list(&h.wait_online("r", 2))
}

/// Starts `reload r` in the background and waits until it is stopping instance 0 (in place, no overlap).
fn reload_in_progress(h: &Herdsman) -> Child {
    let reload = background(h, &["reload", "r"]);
    h.wait_for("the reload to be stopping instance 0", 10 * SECOND, || {
        h.workers("r")
            .first()
            .is_some_and(|w| w.status == "stopping")
    });
    reload
}

#[test]
fn a_stop_during_a_reload_wins_and_both_answer() {
    let h = Herdsman::new();
    let old = start_slow_stoppers(&h);
    let mut reload = reload_in_progress(&h);

    let out = h.cmd(&["stop", "r"]).timeout(15 * SECOND).run();
    if !out.success() {
        h.fail(&format!(
            "`stop` during a reload must answer and succeed\n{out}"
        ));
    }
    let workers = h.workers("r");
    if workers
        .iter()
        .any(|w| w.status != "stopped" || w.pid.is_some())
    {
        h.fail(&format!(
            "after `stop`, every worker must be stopped: {workers:?}"
        ));
    }
    // The reload answers too: it was overturned, and says so.
    let Some(status) = wait_child(&mut reload, 10 * SECOND) else {
        h.fail("the reload never answered once the app was stopped");
    };
    let mut stderr = String::new();
    if let Some(mut e) = reload.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    if status.success() || !stderr.contains("interrupted") {
        h.fail(&format!(
            "the overturned reload must fail saying it was interrupted: {status:?}\n{stderr}"
        ));
    }
    h.assert_stays("no worker of the stopped app starts again", SECOND, || {
        h.workers("r").iter().all(|w| w.status == "stopped")
    });
    for pid in old {
        if alive(pid) {
            h.fail(&format!("old worker {pid} still runs after the stop"));
        }
    }
}

#[test]
fn sigterm_during_a_reload_stops_everything_and_the_daemon_exits() {
    let h = Herdsman::new();
    start_slow_stoppers(&h);
    let mut reload = reload_in_progress(&h);
    let daemon = h.daemon_pid();
    let workers: Vec<i32> = h.workers("r").iter().filter_map(|w| w.pid).collect();

    kill(Pid::from_raw(daemon), Signal::SIGTERM).expect("SIGTERM the daemon");
    h.wait_for("the daemon to exit after SIGTERM", 15 * SECOND, || {
        !alive(daemon)
    });
    for pid in workers {
        if alive(pid) {
            h.fail(&format!("worker {pid} outlived the daemon's shutdown"));
        }
    }
    if wait_child(&mut reload, 10 * SECOND).is_none() {
        h.fail("the reload never answered while the daemon shut down");
    }
}

#[test]
fn a_dependency_cycle_in_a_file_is_refused_with_its_place() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let sleep = "/bin/sleep";
    let text = format!(
        "[[apps]]\nname = \"a\"\nscript = \"{sleep}\"\nargs = [\"1000\"]\ndepends_on = [\"b\"]\n\n\
         [[apps]]\nname = \"b\"\nscript = \"{sleep}\"\nargs = [\"1000\"]\ndepends_on = [\"a\"]\n"
    );
    let file = write_file(&dir, "cycle.toml", &text);
    let p = file.display().to_string();
    for command in ["start", "reload"] {
        let out = h.cmd(&[command, &p]).timeout(10 * SECOND).run();
        let expected = format!("{p}:5:14: `depends_on`: dependency cycle a -> b -> a");
        if out.success() || !out.stderr.contains(&expected) {
            h.fail(&format!(
                "`{command}` of a cyclic file must be refused with\n  {expected}\n{out}"
            ));
        }
    }
    if !h.list().is_empty() {
        h.fail("a refused file must start nothing");
    }
}

#[test]
fn a_dependency_cycle_built_from_the_command_line_is_refused_and_kill_ends() {
    let h = Herdsman::new();
    let start = |name: &str, extra: &[&str]| {
        let mut args = vec!["start", "/bin/sleep", "--name", name];
        args.extend(extra);
        args.extend(["--", "1000"]);
        h.cmd(&args).timeout(10 * SECOND).run()
    };
    let ok = |out: crate::helpers::Output| {
        if !out.success() {
            h.fail(&format!("expected success\n{out}"));
        }
    };
    ok(start("b", &[]));
    ok(start("a", &["--depends-on", "b"]));
    h.wait_online("a", 1);
    ok(h.cmd(&["delete", "b"]).run());
    let out = start("b", &["--depends-on", "a"]);
    if out.success() || !out.stderr.contains("dependency cycle b -> a -> b") {
        h.fail(&format!(
            "a start closing a cycle must be refused, naming it\n{out}"
        ));
    }
    let names: Vec<String> = h.list().into_iter().map(|p| p.name).collect();
    if names != ["a"] {
        h.fail(&format!(
            "the refused start must change nothing: apps {names:?}"
        ));
    }
    let daemon = h.daemon_pid();
    let out = h.cmd(&["kill"]).timeout(15 * SECOND).run();
    if !out.success() {
        h.fail(&format!("`kill` must end the daemon\n{out}"));
    }
    h.wait_for("the daemon to exit", 10 * SECOND, || !alive(daemon));
}

#[test]
fn a_start_that_depends_on_a_crash_looping_app_fails_at_once() {
    let h = Herdsman::new();
    h.cmd(&["start", &app_arg("crash.sh"), "--name", "broken"])
        .run();
    h.wait_for("`broken` to be backing off", 10 * SECOND, || {
        h.workers("broken").iter().any(|w| w.status == "waiting")
    });
    let out = h
        .cmd(&[
            "start",
            "/bin/sleep",
            "--name",
            "needy",
            "--depends-on",
            "broken",
            "--",
            "1000",
        ])
        .timeout(10 * SECOND)
        .run();
    if out.success()
        || !out
            .stderr
            .contains("depends on 'broken', which is crash-looping")
    {
        h.fail(&format!(
            "a start gated on a crash-looping app must fail saying so\n{out}"
        ));
    }
}

#[test]
fn a_failed_exec_on_a_restart_is_retried_until_the_program_is_back() {
    let h = Herdsman::new();
    let dir = h.scratch("deploy");
    let script = write_file(&dir, "app.sh", "#!/bin/sh\nexec sleep 1000\n");
    let set_mode = |mode: u32| {
        fs::set_permissions(&script, fs::Permissions::from_mode(mode)).expect("chmod the script");
    };
    set_mode(0o755);
    h.cmd(&[
        "start",
        &script.display().to_string(),
        "--name",
        "deploy",
        "--interpreter",
        "none",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    let first = pid_list(&h.wait_online("deploy", 1))[0];

    // Mid-deploy: the program cannot be executed when the worker next starts.
    set_mode(0o644);
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill the worker");
    h.wait_for("the restart's exec to fail", 10 * SECOND, || {
        h.workers("deploy").iter().any(|w| {
            w.last_exit
                .as_deref()
                .is_some_and(|e| e.contains("Permission denied"))
        })
    });
    let worker = &h.workers("deploy")[0];
    if worker.status == "errored" {
        h.fail(&format!(
            "one failed exec on a restart must not error the worker: {worker:?}"
        ));
    }
    // The deploy finishes: the next retry runs it.
    set_mode(0o755);
    let back = h.wait_value("the worker to run again", 30 * SECOND, || {
        let w = h.workers("deploy").into_iter().next()?;
        (w.status == "online" && w.pid.is_some_and(|p| p != first)).then_some(w)
    });
    if back.restarts < 2 {
        h.fail(&format!("the failed exec must have been retried: {back:?}"));
    }
}

#[test]
fn stop_ends_what_a_worker_left_outside_its_group_and_frees_the_port() {
    let h = Herdsman::new();
    let port = crate::helpers::free_port();
    let marker = h.scratch("detach").join("helper.pid");
    h.cmd(&[
        "start",
        &app_arg("detach.sh"),
        "--name",
        "detach",
        "--listen",
        &crate::helpers::listen_addr(port),
    ])
    .env("DETACH_OUT", marker.display().to_string())
    .ok();
    h.wait_online("detach", 1);
    let helper: i32 = h.wait_value("the detached helper's pid", 10 * SECOND, || {
        fs::read_to_string(&marker).ok()?.trim().parse().ok()
    });
    let sid = crate::helpers::proc_stat(helper).map(|s| s.pgrp);
    if sid != Some(helper) {
        h.fail(&format!(
            "the helper {helper} must lead a group of its own: pgrp {sid:?}"
        ));
    }

    h.cmd(&["stop", "detach"]).ok();
    // Once `stop` has answered the port is free: nothing of the app holds it any more.
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
        h.fail(&format!(
            "port {port} must be free once `stop` answered ({e}); helper {helper} alive: {}",
            alive(helper)
        ));
    }
    if alive(helper) {
        h.fail(&format!("the detached helper {helper} outlived `stop`"));
    }
}

#[test]
fn a_dependent_listed_before_its_dependency_starts_once_that_is_ready() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let port = crate::helpers::free_port();
    // `web` says it is ready the moment it listens (the Node preload); with a 60 s listen timeout no grace
    // timer comes before that to wake the daemon up. Nothing else reaches the daemon: `jobs` must start on
    // `web`'s readiness alone.
    let text = format!(
        "[[apps]]\nname = \"jobs\"\nscript = \"/bin/sleep\"\nargs = [\"1000\"]\ndepends_on = [\"web\"]\n\n\
         [[apps]]\nname = \"web\"\nscript = {}\nlisten = \"127.0.0.1:{port}\"\nlisten_timeout = \"60s\"\n",
        crate::helpers::q(app_arg("http.js"))
    );
    let file = write_file(&dir, "order.toml", &text);
    let out = h
        .cmd(&["start", &file.display().to_string()])
        .timeout(30 * SECOND)
        .run();
    if !out.success() {
        h.fail(&format!(
            "`start` must return once `web` is ready and `jobs` started\n{out}"
        ));
    }
    h.wait_online("web", 1);
    let jobs = h.workers("jobs");
    if jobs.len() != 1 || jobs[0].pid.is_none() {
        h.fail(&format!(
            "`jobs` must be running once `start` answered: {jobs:?}"
        ));
    }
}

#[test]
fn start_of_a_running_app_restarts_it_and_says_so() {
    let h = Herdsman::new();
    h.cmd(&[
        "start",
        "/bin/sleep",
        "--name",
        "web",
        "-i",
        "2",
        "--",
        "1000",
    ])
    .ok();
    let before = pid_list(&h.wait_online("web", 2));
    let out = h.cmd(&["start", "web"]).ok();
    if !out.stdout.contains("web: already running: restarting")
        || !out.stdout.contains("herdsman reload web")
    {
        h.fail(&format!(
            "`start` of a running app must say it restarts it\n{out}"
        ));
    }
    let after = pid_list(&h.wait_online("web", 2));
    if after.iter().any(|p| before.contains(p)) {
        h.fail(&format!(
            "every worker must have been restarted: {before:?} -> {after:?}"
        ));
    }
    for pid in before {
        if alive(pid) {
            h.fail(&format!("old worker {pid} still runs"));
        }
    }
}
