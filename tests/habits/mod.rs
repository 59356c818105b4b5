//! What a PM2 user types without thinking: the aliases (`ps`, `jlist`, `info`, `startOrReload`, `-n`,
//! `--node-args`, `--time`, `-f`, `--no-daemon`), several targets and name patterns at once,
//! `restart --update-env`, and command strings (`start "npm run start"`, `start npm -- run start`) whose
//! whole process group stops with the app.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::helpers::{
    Herdsman, Proc, alive, app_arg, env_of, pid_list, proc_stat, q, snapshot, wait_child,
    write_file,
};

const SECOND: Duration = Duration::from_secs(1);

/// `start tests/apps/ticker.sh --name NAME` (fork mode, ready after 200 ms up); returns its pid once online.
#[track_caller]
fn start_ticker(h: &Herdsman, name: &str) -> i32 {
    h.cmd(&[
        "start",
        &app_arg("ticker.sh"),
        "-n",
        name,
        "--min-uptime",
        "200ms",
    ])
    .ok();
    pid_list(&h.wait_online(name, 1))[0]
}

/// The pid of each app's worker (`None` when it has none), by app name.
fn pids_by_app(list: &[Proc]) -> Vec<(String, Option<i32>)> {
    let mut v: Vec<_> = list.iter().map(|p| (p.name.clone(), p.pid)).collect();
    v.sort();
    v
}

/// Live processes of process group `pgid` (read from /proc).
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgrp == pgid) && alive(pid))
        .collect()
}

/// A process's command line, its arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

/// `describe NAME --json`: the app's record.
#[track_caller]
fn describe(h: &Herdsman, name: &str) -> Value {
    let out = h.cmd(&["describe", name, "--json"]).ok();
    let apps: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| h.fail(&format!("describe --json is not JSON: {e}\n{out}")));
    apps[0].clone()
}

#[test]
fn list_and_describe_answer_to_pm2s_names() {
    let h = Herdsman::new();
    start_ticker(&h, "tick");
    for alias in ["ps", "status", "ls", "l"] {
        let out = h.cmd(&[alias]).ok();
        if !out.stdout.contains("tick") || !out.stdout.contains("online") {
            h.fail(&format!("`{alias}` should print the process table\n{out}"));
        }
    }
    // jlist is `list --json`: the same records.
    let jlist = h.cmd(&["jlist"]).ok();
    let records: Vec<Proc> = serde_json::from_str(&jlist.stdout).unwrap_or_else(|e| {
        h.fail(&format!(
            "jlist is not the list --json records: {e}\n{jlist}"
        ))
    });
    assert_eq!(
        snapshot(&records),
        snapshot(&h.list()),
        "jlist = list --json"
    );
    for alias in ["info", "desc", "show", "describe"] {
        let out = h.cmd(&[alias, "tick"]).ok();
        if !out.stdout.contains("ticker.sh") || !out.stdout.contains("workers") {
            h.fail(&format!("`{alias} tick` should describe the app\n{out}"));
        }
    }
    // The aliases are where a user looks for them.
    let help = h.cmd(&["--help"]).ok();
    for word in ["ps", "status", "jlist", "info", "desc", "startOrReload"] {
        if !help.stdout.contains(word) {
            h.fail(&format!("`herdsman --help` should mention {word}\n{help}"));
        }
    }
}

#[test]
fn start_or_reload_starts_new_apps_and_reloads_changed_ones() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let ticker = app_arg("ticker.sh");
    let app = |name: &str, kill_timeout: &str| {
        format!(
            "[[apps]]\nname = {}\nscript = {}\nmin_uptime = \"200ms\"\nkill_timeout = {}\n",
            q(name),
            q(&ticker),
            q(kill_timeout)
        )
    };
    let file = write_file(&dir, "ecosystem.toml", &app("a", "1s"));
    let file = file.display().to_string();
    h.cmd(&["startOrReload", &file]).ok();
    let a = pid_list(&h.wait_online("a", 1));

    // b is new, a changed: b starts, a is replaced; then the same file again changes nothing.
    fs::write(&file, app("a", "2s") + &app("b", "1s")).expect("rewrite the file");
    let out = h.cmd(&["startOrRestart", &file]).ok();
    let b = pid_list(&h.wait_online("b", 1));
    let a2 = pid_list(&h.wait_online("a", 1));
    if a2 == a {
        h.fail(&format!("a's definition changed: it should reload\n{out}"));
    }
    let before = pids_by_app(&h.list());
    h.cmd(&["startOrGracefulReload", &file]).ok();
    assert_eq!(
        pids_by_app(&h.list()),
        before,
        "nothing changed: nothing reloads"
    );
    assert_eq!(pid_list(&h.wait_online("b", 1)), b);

    // It takes a file, and says so.
    h.cmd(&["startOrReload", "a"])
        .fails_with("not an ecosystem file");
}

#[test]
fn start_takes_pm2s_flags() {
    let h = Herdsman::new();
    // -n, --node-args (the interpreter's arguments: bash's for a .sh), --time (accepted, no effect).
    h.cmd(&[
        "start",
        &app_arg("ticker.sh"),
        "-n",
        "nargs",
        "--node-args=--norc",
        "--time",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    h.wait_online("nargs", 1);
    let app = describe(&h, "nargs");
    assert_eq!(
        app["spec"]["interpreter_args"],
        serde_json::json!(["--norc"])
    );
    let command: Vec<String> = serde_json::from_value(app["command"].clone()).expect("argv");
    assert!(
        command.iter().any(|a| a == "--norc"),
        "--node-args reach the interpreter: {command:?}"
    );
    let help = h.cmd(&["start", "--help"]).ok();
    for flag in [
        "--node-args",
        "--time",
        "--force",
        "--no-daemon",
        "-n, --name",
    ] {
        if !help.stdout.contains(flag) {
            h.fail(&format!("`start --help` should document {flag}\n{help}"));
        }
    }

    // -f: names are unique, so a second copy is refused, saying what to do, and nothing changes.
    let before = snapshot(&h.list());
    h.cmd(&["start", &app_arg("ticker.sh"), "-n", "nargs", "-f"])
        .fails_with("herdsman scale nargs +1");
    assert_eq!(snapshot(&h.list()), before, "a refused -f changes nothing");
    // With a free name, -f is just a start.
    h.cmd(&[
        "start",
        &app_arg("ticker.sh"),
        "-n",
        "copy",
        "--force",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    h.wait_online("copy", 1);
}

/// Runs `herdsman ARGS` in the foreground, waits until its stdout shows `expect`, sends it SIGTERM, and
/// checks that it exits 0 leaving nothing of the home behind. Returns what it printed.
#[track_caller]
fn run_in_foreground(h: &Herdsman, args: &[&str], expect: &str) -> String {
    let out_path = h.scratch("foreground").join("stdout");
    let out = fs::File::create(&out_path).expect("create the stdout file");
    let mut command = h.command();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn herdsman in the foreground");
    let read = || fs::read_to_string(&out_path).unwrap_or_default();
    if crate::helpers::poll(15 * SECOND, || read().contains(expect).then_some(())).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        h.fail(&format!(
            "`{}` never printed {expect:?}:\n{}",
            args.join(" "),
            read()
        ));
    }
    if !h.home().join("herdsman.sock").exists() {
        h.fail("the foreground daemon should serve the control socket meanwhile");
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = wait_child(&mut child, 15 * SECOND);
    if !status.is_some_and(|s| s.success()) {
        h.fail(&format!(
            "`{}` should exit 0 on SIGTERM, got {status:?}:\n{}",
            args.join(" "),
            read()
        ));
    }
    let left = h.marked_pids();
    if !left.is_empty() {
        h.fail(&format!("processes outlived --no-daemon: {left:?}"));
    }
    read()
}

#[test]
fn start_no_daemon_runs_a_script_or_a_file_in_the_foreground() {
    let h = Herdsman::new();
    let ticker = app_arg("ticker.sh");
    let printed = run_in_foreground(&h, &["start", &ticker, "--no-daemon"], "ticker|0 tick");
    assert!(printed.lines().any(|l| l.starts_with("ticker|0 tick ")));

    let dir = h.scratch("eco");
    let file = write_file(
        &dir,
        "ecosystem.toml",
        &format!("[[apps]]\nname = \"fg\"\nscript = {}\n", q(&ticker)),
    );
    run_in_foreground(
        &h,
        &["start", &file.display().to_string(), "--no-daemon"],
        "fg|0 tick",
    );
}

#[test]
fn several_targets_ids_and_patterns_in_one_command() {
    let h = Herdsman::new();
    // With no daemon, nothing is known (and none is started to say so).
    h.cmd(&["stop", "api-1", "w*"])
        .fails_with("none of app 'api-1', 'w*' is known: the daemon is not running");
    assert!(
        !h.home().join("herdsman.sock").exists(),
        "no daemon started"
    );
    // ids 0, 1, 2.
    let api1 = start_ticker(&h, "api-1");
    let api2 = start_ticker(&h, "api-2");
    let worker = start_ticker(&h, "worker");

    // Two names: those two restart, the third is untouched.
    h.cmd(&["restart", "api-1", "worker"]).ok();
    let now = |name: &str| pid_list(&h.wait_online(name, 1))[0];
    let (api1b, workerb) = (now("api-1"), now("worker"));
    assert!(api1b != api1 && workerb != worker, "both restarted");
    assert_eq!(now("api-2"), api2, "api-2 was not named");

    // Two ids.
    h.cmd(&["stop", "0", "2"]).ok();
    let status = |name: &str| h.workers(name)[0].status.clone();
    assert_eq!(
        (status("api-1"), status("api-2"), status("worker")),
        ("stopped".into(), "online".into(), "stopped".into())
    );

    // A regex (PM2's form) and a glob.
    h.cmd(&["restart", "/^api-/"]).ok();
    h.wait_online("api-1", 1);
    assert_ne!(now("api-2"), api2, "the regex selects api-2 too");
    assert_eq!(
        status("worker"),
        "stopped",
        "the regex does not select worker"
    );
    h.cmd(&["stop", "api-*"]).ok();
    assert_eq!(
        (status("api-1"), status("api-2")),
        ("stopped".into(), "stopped".into())
    );
    h.cmd(&["reload", "api-?", "worker"]).ok();
    for name in ["api-1", "api-2", "worker"] {
        h.wait_online(name, 1);
    }

    // All or nothing: an unknown name among known ones fails the whole command, naming it.
    let before = snapshot(&h.list());
    let out = h
        .cmd(&["delete", "api-1", "nope", "9"])
        .fails_with("no app named 'nope'");
    assert!(out.stderr.contains("no process with id 9"), "{out}");
    assert!(out.stderr.contains("nothing was done"), "{out}");
    h.cmd(&["stop", "worker", "zz*"])
        .fails_with("no app matches 'zz*'");
    h.cmd(&["restart", "/^zz/"])
        .fails_with("no app matches /^zz/");
    h.cmd(&["restart", "/(/"]).fails_with("invalid pattern /(/");
    assert_eq!(
        snapshot(&h.list()),
        before,
        "failed commands change nothing"
    );

    h.cmd(&["delete", "api-1", "worker"]).ok();
    let names: BTreeSet<String> = h.list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, BTreeSet::from(["api-2".to_string()]));
}

#[test]
fn restart_update_env_takes_the_callers_environment() {
    let h = Herdsman::new();
    let dir = h.scratch("env-out");
    let out_dir = dir.display().to_string();
    h.cmd(&["start", "tests/apps/env.sh", "--min-uptime", "200ms"])
        .env("ENV_OUT_DIR", &out_dir)
        .env("FOO", "1")
        .env("BAR", "1")
        .ok();
    let first = pid_list(&h.wait_online("env", 1))[0];
    let pair = |pid: i32| {
        let env = env_of(&h, &dir, pid);
        (env.get("FOO").cloned(), env.get("BAR").cloned())
    };
    assert_eq!(pair(first), (Some("1".into()), Some("1".into())));

    // A plain restart from another environment keeps the app's.
    h.cmd(&["restart", "env"])
        .env("ENV_OUT_DIR", &out_dir)
        .env("FOO", "9")
        .env_remove("BAR")
        .ok();
    let second = pid_list(&h.wait_online("env", 1))[0];
    assert_ne!(second, first);
    assert_eq!(pair(second), (Some("1".into()), Some("1".into())));

    // --update-env: the caller's environment, BAR gone, as `reload --update-env`.
    h.cmd(&["restart", "env", "--update-env"])
        .env("ENV_OUT_DIR", &out_dir)
        .env("FOO", "2")
        .env_remove("BAR")
        .ok();
    let third = pid_list(&h.wait_online("env", 1))[0];
    assert_ne!(third, second);
    assert_eq!(pair(third), (Some("2".into()), None));

    // It stays the app's environment.
    h.cmd(&["restart", "env"])
        .env("ENV_OUT_DIR", &out_dir)
        .env("FOO", "3")
        .env("BAR", "3")
        .ok();
    let fourth = pid_list(&h.wait_online("env", 1))[0];
    assert_eq!(pair(fourth), (Some("2".into()), None));
}

/// The pids of the group led by `leader` once it holds `n` processes.
#[track_caller]
fn wait_group(h: &Herdsman, leader: i32, n: usize) -> Vec<i32> {
    h.wait_value(
        &format!("{n} processes in the group of {leader}"),
        10 * SECOND,
        || {
            let members = group_members(leader);
            (members.len() >= n).then_some(members)
        },
    )
}

#[test]
fn a_command_string_runs_through_the_shell_and_stops_as_a_group() {
    let h = Herdsman::new();
    // Shell syntax works; the name is the first word; two background children share the group.
    h.cmd(&[
        "start",
        "echo answer=$((6 * 7)); sleep 3001 & sleep 3002 & wait",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    let leader = pid_list(&h.wait_online("echo", 1))[0];
    let app = describe(&h, "echo");
    assert_eq!(app["spec"]["script"], "/bin/sh");
    let members = wait_group(&h, leader, 3);
    let sleeps: Vec<i32> = members
        .iter()
        .copied()
        .filter(|&p| cmdline(p).starts_with("sleep 300"))
        .collect();
    assert_eq!(
        sleeps.len(),
        2,
        "two sleeps in the worker's group: {members:?}"
    );
    h.wait_for("answer=42 in the app's log", 10 * SECOND, || {
        h.out_log("echo").contains("answer=42")
    });
    h.cmd(&["stop", "echo"]).ok();
    let left: Vec<i32> = members.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        h.fail(&format!("`stop` left part of the group running: {left:?}"));
    }

    // Arguments after `--` are appended, one word each; --name wins over the first word.
    h.cmd(&[
        "start",
        "printf '<%s>\\n'",
        "--name",
        "pf",
        "--no-autorestart",
        "--",
        "a b",
        "it's",
    ])
    .ok();
    h.wait_for("printf's lines", 10 * SECOND, || {
        let log = h.out_log("pf");
        log.contains("<a b>") && log.contains("<it's>")
    });

    // A file whose name has a space is a script, not a command.
    let dir = h.scratch("spaced dir");
    let script = dir.join("my ticker.sh");
    fs::copy(app_arg("ticker.sh"), &script).expect("copy ticker.sh");
    h.cmd(&[
        "start",
        &script.display().to_string(),
        "-n",
        "spaced",
        "--min-uptime",
        "200ms",
    ])
    .ok();
    h.wait_online("spaced", 1);
    assert_eq!(
        describe(&h, "spaced")["spec"]["script"],
        script.display().to_string()
    );

    // A command whose program does not exist is refused at once, not left crash-looping.
    h.cmd(&["start", "npmx run start", "--name", "typo"])
        .fails_with("'npmx' is not a program on PATH");
    // A command string takes no interpreter.
    h.cmd(&["start", "sleep 5", "--interpreter", "node"])
        .fails_with("is a command, run by /bin/sh");
}

#[test]
fn a_program_on_path_takes_its_arguments_as_argv_and_stops_as_a_group() {
    let h = Herdsman::new();
    let dir = h.scratch("npm-app");
    write_file(
        &dir,
        "package.json",
        r#"{"name":"npm-app","version":"1.0.0","private":true,"scripts":{"start":"sleep 3003"}}"#,
    );
    h.cmd(&[
        "start",
        "npm",
        "--name",
        "web",
        "--min-uptime",
        "200ms",
        "--",
        "run",
        "start",
    ])
    .cwd(&dir)
    .env("NPM_CONFIG_UPDATE_NOTIFIER", "false")
    .env(
        "npm_config_cache",
        h.scratch("npm-cache").display().to_string(),
    )
    .ok();
    let leader = pid_list(&h.wait_online("web", 1))[0];
    let app = describe(&h, "web");
    let script = app["spec"]["script"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        Path::new(&script).is_absolute() && script.ends_with("/npm"),
        "npm is found on PATH: {script}"
    );
    assert_eq!(app["spec"]["args"], serde_json::json!(["run", "start"]));
    let members = h.wait_value(
        "npm's `sleep 3003` in the worker's group",
        15 * SECOND,
        || {
            let members = group_members(leader);
            members
                .iter()
                .any(|&p| cmdline(p).starts_with("sleep 3003"))
                .then_some(members)
        },
    );
    h.cmd(&["stop", "web"]).ok();
    let left: Vec<i32> = members.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        h.fail(&format!("`stop` left npm's children running: {left:?}"));
    }
}
