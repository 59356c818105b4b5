//! Issue 7: production. `save`/`resurrect` (a versioned dump, refused when damaged or newer), the
//! systemd units of `startup` (checked with `systemd-analyze verify`), the foreground daemon's
//! sd_notify datagrams (READY=1 once the resurrected apps are online, STOPPING=1 on SIGTERM),
//! `run` as a container entry point (under `unshare --pid --fork`: it reaps orphans as PID 1,
//! prefixes the apps' log lines, stops everything on SIGTERM, exits 1 when an app cannot be kept
//! running) and `completions`.
//!
//! Processes the tests spawn themselves (the foreground daemon, `unshare ... herdsman run`) are
//! held by a [`Spawned`] guard; they also carry the test's `HERDSMAN_HOME`, so the [`Herdsman`]
//! fixture's drop kills whatever they left.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid, getuid};
use serde_json::Value;

use crate::helpers::{
    Herdsman, Output, Proc, SECOND, Spawned, alive, app_arg, children, comm, connect_refused,
    free_port, listen_addr, mode, namespace_workers, ns_pids, pids, proc_stat, q, repo_root,
    snapshot, wait_served_by, write_file,
};

const BIN: &str = env!("CARGO_BIN_EXE_herdsman");

/// `$HERDSMAN_HOME/dump.json`.
fn dump_path(h: &Herdsman) -> PathBuf {
    h.home().join("dump.json")
}

/// What `resurrect` must bring back: `(name, instance, mode, listen)` per worker.
fn shape(list: &[Proc]) -> BTreeSet<(String, u64, String, Option<String>)> {
    list.iter()
        .map(|p| (p.name.clone(), p.instance, p.mode.clone(), p.listen.clone()))
        .collect()
}

/// Fails unless `out`'s stdout has the line `expected` (trailing spaces ignored).
#[track_caller]
fn assert_line(h: &Herdsman, out: &Output, expected: &str) {
    if !out.stdout.lines().any(|l| l.trim_end() == expected) {
        h.fail(&format!("expected the line {expected:?} on stdout\n{out}"));
    }
}

/// Fails unless no app is known (`list --json` is `[]`).
#[track_caller]
fn assert_no_app(h: &Herdsman, after: &str) {
    let list = h.list();
    if !list.is_empty() {
        h.fail(&format!("expected no app after {after}, got {list:?}"));
    }
}

/// Fails unless `program` can be run (a tool CI installs), naming what needs it.
#[track_caller]
fn require_tool(program: &str, why: &str) {
    if let Err(e) = Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        panic!("`{program}` cannot be run ({e}): it is needed {why}; install it (CI installs it)");
    }
}

/// Runs a helper tool to completion (at most `timeout`) with its output in files under `dir`.
#[track_caller]
fn run_tool(
    h: &Herdsman,
    command: Command,
    dir: &Path,
    label: &str,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut tool = Spawned::spawn(command, dir, label);
    match tool.wait_exit(timeout) {
        Some(status) => (status, tool.stdout(), tool.stderr()),
        None => h.fail(&format!("timed out after {timeout:?}\n{}", tool.describe())),
    }
}

/// Reads the `/proc/<pid>/stat` state and comm of each child of `pid`, for failure messages.
fn describe_children(pid: i32) -> Vec<(i32, char, String)> {
    children(pid)
        .into_iter()
        .map(|c| {
            (
                c,
                proc_stat(c).map_or('?', |s| s.state),
                comm(c).unwrap_or_default(),
            )
        })
        .collect()
}

// =============================================================================================
// 1. save, kill, resurrect
// =============================================================================================

#[test]
fn save_kill_resurrect_brings_back_the_same_apps_with_their_environment() {
    let h = Herdsman::new();
    let port = free_port();
    let env_dir = h.scratch("env");
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        "web",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .env("PROD_START_MARK", "kept-by-save")
    .ok();
    h.cmd(&["start", "tests/apps/env.sh", "--name", "side"])
        .env("ENV_OUT_DIR", env_dir.display().to_string())
        .env("PROD_START_MARK", "kept-by-save")
        .ok();
    let web = h.wait_online("web", 2);
    let side = h.wait_online("side", 1);
    wait_served_by(&h, port, &pids(&web), 10 * SECOND);
    let before = shape(&h.list());

    let dump = dump_path(&h);
    let saved = h
        .cmd(&["save"])
        .env("PROD_SAVE_ONLY", "not-an-app-variable")
        .ok();
    assert_line(&h, &saved, &format!("saved 2 app(s) to {}", dump.display()));
    if mode(&dump) != Some(0o600) {
        h.fail(&format!(
            "{} must be mode 0600, got {:?}",
            dump.display(),
            mode(&dump).map(|m| format!("{m:o}"))
        ));
    }
    let text = fs::read_to_string(&dump).unwrap_or_else(|e| h.fail(&format!("read dump: {e}")));
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        h.fail(&format!("{} is not JSON: {e}\n{text}", dump.display()));
    }
    if !text.contains("kept-by-save") {
        h.fail(&format!(
            "the dump lacks PROD_START_MARK, which the apps were started with\n{text}"
        ));
    }
    if text.contains("PROD_SAVE_ONLY") {
        h.fail(&format!(
            "the dump holds PROD_SAVE_ONLY, set only in `save`'s environment, not the apps'\n{text}"
        ));
    }

    h.cmd(&["kill"]).ok();
    let old: BTreeSet<i32> = pids(&web).union(&pids(&side)).copied().collect();
    h.wait_for(
        &format!("the killed workers {old:?} to be gone"),
        10 * SECOND,
        || old.iter().all(|&p| !alive(p)),
    );
    assert_no_app(&h, "`kill`");

    // The test process has neither PROD_START_MARK nor ENV_OUT_DIR: they come from the dump.
    let out = h
        .cmd(&["resurrect"])
        .env_remove("PROD_START_MARK")
        .env_remove("ENV_OUT_DIR")
        .timeout(60 * SECOND)
        .ok();
    assert_line(&h, &out, "web: new: starting 2 worker(s)");
    assert_line(&h, &out, "side: new: starting 1 worker(s)");
    let web2 = h.wait_online("web", 2);
    let side2 = h.wait_online("side", 1);
    let after = shape(&h.list());
    if after != before {
        h.fail(&format!(
            "resurrect brought back other apps\nbefore kill: {before:?}\nafter:       {after:?}\n{out}"
        ));
    }
    if !pids(&web2).is_disjoint(&old) || !pids(&side2).is_disjoint(&old) {
        h.fail(&format!(
            "resurrected workers reuse killed pids {old:?}: {web2:?} {side2:?}"
        ));
    }
    wait_served_by(&h, port, &pids(&web2), 15 * SECOND);

    let side_pid = side2[0].pid.expect("an online worker has a pid");
    let env_file = env_dir.join(format!("{side_pid}.env"));
    let env_text = h.wait_value(
        &format!("{} (written by env.sh)", env_file.display()),
        10 * SECOND,
        || fs::read_to_string(&env_file).ok(),
    );
    let env: BTreeMap<&str, &str> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    if env.get("PROD_START_MARK") != Some(&"kept-by-save")
        || env.get("ENV_OUT_DIR") != Some(&env_dir.to_str().expect("utf-8 temp path"))
        || env.contains_key("PROD_SAVE_ONLY")
    {
        h.fail(&format!(
            "the resurrected fork app must run with the environment it was started with \
             (PROD_START_MARK, ENV_OUT_DIR; not PROD_SAVE_ONLY), got:\n{env_text}"
        ));
    }

    let running = snapshot(&h.list());
    let again = h.cmd(&["resurrect"]).ok();
    assert_line(&h, &again, "web: unchanged");
    assert_line(&h, &again, "side: unchanged");
    if again.stdout.contains(": new: ") || again.stdout.contains(" -> ") {
        h.fail(&format!("a second resurrect must start nothing\n{again}"));
    }
    let still = snapshot(&h.list());
    if still != running {
        h.fail(&format!(
            "a second resurrect changed the workers\nbefore: {running:?}\nafter:  {still:?}\n{again}"
        ));
    }
}

// =============================================================================================
// 2. A damaged or newer dump is refused
// =============================================================================================

#[test]
fn a_damaged_or_newer_dump_is_refused_and_nothing_starts() {
    let h = Herdsman::new();
    let idle = app_arg("ecosystem/idle.sh");
    h.cmd(&["start", &idle, "--name", "side"]).ok();
    h.wait_online("side", 1);
    h.cmd(&["save"]).ok();
    h.cmd(&["kill"]).ok();
    let dump = dump_path(&h);
    let full = fs::read(&dump).unwrap_or_else(|e| h.fail(&format!("read dump: {e}")));

    h.cmd(&["save"]).fails_with("nothing to save");
    if fs::read(&dump).ok().as_deref() != Some(full.as_slice()) {
        h.fail("`save` with no daemon changed the dump");
    }

    // Which processes of this home run (a refused resurrect may have started the daemon only).
    let only_daemon = |after: &str| {
        assert_no_app(&h, after);
        let daemon = fs::read_to_string(h.home().join("daemon.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let others: Vec<i32> = h
            .marked_pids()
            .into_iter()
            .filter(|&p| Some(p) != daemon)
            .collect();
        if !others.is_empty() {
            h.fail(&format!(
                "after {after}, processes other than the daemon ({daemon:?}) run: {others:?}"
            ));
        }
    };

    // Cut short: the first half of the file.
    let half = &full[..full.len() / 2];
    fs::write(&dump, half).expect("truncate the dump");
    let out = h.cmd(&["resurrect"]).fails_with(&format!(
        "the dump {} was not loaded: it is damaged or cut short (",
        dump.display()
    ));
    only_daemon(&format!("a refused (truncated) dump\n{out}"));
    if fs::read(&dump).ok().as_deref() != Some(half) {
        h.fail("a refused resurrect changed the damaged dump");
    }

    // Written by a newer herdsman.
    let mut newer: Value = serde_json::from_slice(&full)
        .unwrap_or_else(|e| h.fail(&format!("the saved dump is not JSON: {e}")));
    match newer.get_mut("version") {
        Some(v) => *v = Value::from(99),
        None => h.fail(&format!(
            "the dump has no top-level `version`: {}",
            String::from_utf8_lossy(&full)
        )),
    }
    fs::write(
        &dump,
        serde_json::to_string_pretty(&newer).expect("serialize the dump"),
    )
    .expect("write the newer dump");
    let out = h
        .cmd(&["resurrect"])
        .fails_with("written by a newer herdsman (dump version 99; this one reads version 1)");
    if !out.stderr.contains(&dump.display().to_string()) {
        h.fail(&format!("the error must name {}\n{out}", dump.display()));
    }
    only_daemon(&format!("a refused (newer) dump\n{out}"));

    // No dump at all.
    fs::remove_file(&dump).expect("remove the dump");
    h.cmd(&["resurrect"]).fails_with(&format!(
        "no dump at {}: save one with `herdsman save`",
        dump.display()
    ));
    only_daemon("`resurrect` with no dump");

    // The intact dump still works: the refusals were about the files, not the home.
    fs::write(&dump, &full).expect("restore the dump");
    let out = h.cmd(&["resurrect"]).ok();
    assert_line(&h, &out, "side: new: starting 1 worker(s)");
    h.wait_online("side", 1);
}

// =============================================================================================
// 3. systemd units
// =============================================================================================

#[test]
fn startup_units_pass_systemd_analyze_verify() {
    require_tool(
        "systemd-analyze",
        "to verify the units `herdsman startup` prints",
    );
    let h = Herdsman::new();
    let dir = h.scratch("units");
    let xdg = h.scratch("xdg-runtime");
    fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod the runtime dir");
    let home_line = format!("Environment=\"HERDSMAN_HOME={}\"", h.home().display());
    let user = User::from_uid(getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| h.fail("the test's user has no name"));

    for (args, file, system) in [
        (vec!["startup"], "herdsman-test.service", true),
        (vec!["startup", "--user"], "herdsman-user.service", false),
    ] {
        let out = h.cmd(&args).ok();
        let unit = write_file(&dir, file, &out.stdout);
        let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
        let has = |l: &str| lines.contains(&l);
        let exec_start = lines
            .iter()
            .find(|l| l.starts_with("ExecStart="))
            .copied()
            .unwrap_or_default();
        let exec_reload = lines
            .iter()
            .find(|l| l.starts_with("ExecReload="))
            .copied()
            .unwrap_or_default();
        let mut problems = Vec::new();
        for expected in ["Type=notify", "KillMode=mixed", home_line.as_str()] {
            if !has(expected) {
                problems.push(format!("no line {expected:?}"));
            }
        }
        if !exec_start.contains(BIN) || !exec_start.ends_with(" daemon --foreground --resurrect") {
            problems.push(format!(
                "ExecStart must run {BIN} daemon --foreground --resurrect, got {exec_start:?}"
            ));
        }
        if !exec_reload.contains(BIN) || !exec_reload.ends_with(" reload all") {
            problems.push(format!(
                "ExecReload must run {BIN} reload all, got {exec_reload:?}"
            ));
        }
        if !lines.iter().any(|l| l.starts_with("LimitNOFILE=")) {
            problems.push("no LimitNOFILE=".to_string());
        }
        let user_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("User=")).collect();
        if system && user_lines != [&format!("User={user}").as_str()] {
            problems.push(format!(
                "the system unit must have one line User={user}, got {user_lines:?}"
            ));
        }
        if !system && !user_lines.is_empty() {
            problems.push(format!(
                "the user unit must have no User=, got {user_lines:?}"
            ));
        }
        if !system && !has("WantedBy=default.target") {
            problems.push("the user unit needs WantedBy=default.target".to_string());
        }
        if out.stderr.trim().is_empty() {
            problems.push("no hint on stderr".to_string());
        }
        if !problems.is_empty() {
            h.fail(&format!(
                "the unit of `herdsman {}` is wrong:\n  {}\n{out}",
                args.join(" "),
                problems.join("\n  ")
            ));
        }

        let mut verify = Command::new("systemd-analyze");
        if !system {
            verify.arg("--user").env("XDG_RUNTIME_DIR", &xdg);
        }
        verify.arg("verify").arg(&unit);
        let label = file.trim_end_matches(".service");
        let (status, stdout, stderr) = run_tool(&h, verify, &dir, label, 60 * SECOND);
        if !status.success() {
            h.fail(&format!(
                "`systemd-analyze{} verify {}` failed: {status}\n--- stdout ---\n{stdout}\n\
                 --- stderr ---\n{stderr}\n--- the unit ---\n{}",
                if system { "" } else { " --user" },
                unit.display(),
                out.stdout
            ));
        }
    }
}

// =============================================================================================
// 4. The foreground daemon and sd_notify
// =============================================================================================

/// Receives the next datagram on `sock` (its lines), polling with a short read timeout; fails if
/// `daemon` exits first or after `timeout`.
#[track_caller]
fn next_datagram(
    h: &Herdsman,
    sock: &UnixDatagram,
    daemon: &mut Spawned,
    what: &str,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                return String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string)
                    .collect();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => h.fail(&format!("recv on the notify socket: {e}")),
        }
        if daemon.try_wait().is_some() {
            h.fail(&format!(
                "the daemon exited while waiting for {what}\n{}",
                daemon.describe()
            ));
        }
        if Instant::now() >= deadline {
            h.fail(&format!(
                "timed out after {timeout:?} waiting for a datagram ({what})\n{}",
                daemon.describe()
            ));
        }
    }
}

#[test]
fn foreground_daemon_notifies_ready_once_resurrected_apps_are_online_and_stopping_on_sigterm() {
    let h = Herdsman::new();
    let port = free_port();
    // slow.js listens 1.5 s after it starts: the apps are ready well after the daemon serves.
    h.cmd(&[
        "start",
        "tests/apps/slow.js",
        "--name",
        "slow",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    h.wait_online("slow", 2);
    h.cmd(&["save"]).ok();
    h.cmd(&["kill"]).ok();

    let dir = h.scratch("notify");
    let sock_path = dir.join("notify");
    let sock = UnixDatagram::bind(&sock_path)
        .unwrap_or_else(|e| panic!("bind {}: {e}", sock_path.display()));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set the notify socket's read timeout");
    let mut c = h.command();
    c.args(["daemon", "--foreground", "--resurrect"])
        .env("NOTIFY_SOCKET", &sock_path);
    let mut daemon = Spawned::spawn(c, &dir, "daemon");

    // The sockets the keeper stores in systemd's fd store (FDSTORE=1) may come first; the first state
    // it reports must be READY=1.
    let first = loop {
        let datagram = next_datagram(&h, &sock, &mut daemon, "READY=1", 30 * SECOND);
        if !datagram.iter().any(|l| l == "FDSTORE=1") {
            break datagram;
        }
    };
    if !first.iter().any(|l| l == "READY=1") {
        h.fail(&format!(
            "the first state reported must be READY=1, got {first:?}\n{}",
            daemon.describe()
        ));
    }
    let workers = h.workers("slow");
    if workers.len() != 2
        || workers
            .iter()
            .any(|w| w.status != "online" || w.pid.is_none())
    {
        h.fail(&format!(
            "READY=1 arrived before every resurrected worker was online: {workers:?}\n{}",
            daemon.describe()
        ));
    }
    let worker_pids = pids(&workers);
    wait_served_by(&h, port, &worker_pids, 10 * SECOND);

    kill(Pid::from_raw(daemon.pid()), Signal::SIGTERM).expect("SIGTERM to the daemon");
    let mut seen = Vec::new();
    while !seen.iter().any(|l| l == "STOPPING=1") {
        seen.extend(next_datagram(
            &h,
            &sock,
            &mut daemon,
            "STOPPING=1",
            30 * SECOND,
        ));
    }
    let status = daemon.wait_exit(30 * SECOND).unwrap_or_else(|| {
        h.fail(&format!(
            "the daemon did not exit after SIGTERM\n{}",
            daemon.describe()
        ))
    });
    let left: Vec<i32> = worker_pids.iter().copied().filter(|&p| alive(p)).collect();
    if !status.success() || !left.is_empty() {
        h.fail(&format!(
            "after SIGTERM the daemon must stop every app and exit 0: status {status}, \
             workers still alive {left:?}\n{}",
            daemon.describe()
        ));
    }
    if !connect_refused(port) {
        h.fail(&format!(
            "127.0.0.1:{port} still accepts after the daemon exited\n{}",
            daemon.describe()
        ));
    }
    let marked = h.marked_pids();
    if !marked.is_empty() {
        h.fail(&format!(
            "processes of this home still run after the daemon exited: {marked:?}"
        ));
    }
}

// =============================================================================================
// 5. run: the container entry point
// =============================================================================================

/// The cluster app `web` (http.js, 2 workers on `port`) and the fork app `orphan`.
fn run_file(dir: &Path, port: u16, orphan_seconds: &str) -> PathBuf {
    write_file(
        dir,
        "run.toml",
        &format!(
            "[[apps]]\nname = \"web\"\nscript = {}\ninstances = 2\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[apps]]\nname = \"orphan\"\nscript = {}\nenv = {{ ORPHAN_SECONDS = {} }}\n",
            q(app_arg("http.js")),
            q(app_arg("production/orphan.sh")),
            q(orphan_seconds)
        ),
    )
}

#[test]
fn run_under_a_pid_namespace_serves_prefixes_logs_reaps_orphans_and_stops_on_sigterm() {
    require_tool("unshare", "to run `herdsman run` in a new PID namespace");
    if !geteuid().is_root() {
        panic!("this test must run as root: `unshare --pid --fork` needs it (CI runs as root)");
    }
    let h = Herdsman::new();
    let dir = h.scratch("run");
    let port = free_port();
    let file = run_file(&dir, port, "1.5");
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", BIN, "run"])
        .arg(&file)
        .env("HERDSMAN_HOME", h.home())
        .current_dir(repo_root());
    let mut unshare = Spawned::spawn(c, &dir, "unshare");
    let unshare_pid = unshare.pid();

    let run_pid = h.wait_value(
        "the `herdsman run` process (the child of unshare)",
        10 * SECOND,
        || children(unshare_pid).first().copied(),
    );
    let ns = ns_pids(run_pid).unwrap_or_default();
    if ns.len() < 2 || ns.last() != Some(&1) {
        h.fail(&format!(
            "`herdsman run` under unshare must be PID 1 of a new namespace, NSpid {ns:?}\n{}",
            unshare.describe()
        ));
    }

    // The orphan: a `sleep` re-parented to `herdsman run` (the namespace's init).
    let orphan = h.wait_value(
        "the orphaned `sleep` to become a child of `herdsman run`",
        10 * SECOND,
        || {
            children(run_pid)
                .into_iter()
                .find(|&c| comm(c).as_deref() == Some("sleep"))
        },
    );

    // The workers answer with their pid inside the namespace.
    namespace_workers(&h, run_pid, 2, port);

    // `app|instance line`.
    let prefixed = |line: &str, app: &str, text: &str| {
        line.split_once(' ').is_some_and(|(prefix, rest)| {
            prefix
                .strip_prefix(app)
                .and_then(|p| p.strip_prefix('|'))
                .is_some_and(|i| i.parse::<u32>().is_ok())
                && rest.starts_with(text)
        })
    };
    h.wait_for(
        "prefixed log lines `web|<i> listening ...` (x2) and `orphan|0 ...` on run's stdout",
        10 * SECOND,
        || {
            let out = unshare.stdout();
            out.lines()
                .filter(|l| prefixed(l, "web", "listening pid="))
                .count()
                == 2
                && ["orphan left pid=", "stderr line pid="]
                    .iter()
                    .all(|p| out.lines().any(|l| prefixed(l, "orphan", p)))
        },
    );

    h.wait_for(
        &format!("the orphan {orphan} to end and be reaped by `herdsman run` (pid {run_pid})"),
        15 * SECOND,
        || proc_stat(orphan).is_none_or(|s| s.ppid != run_pid),
    );
    let zombies: Vec<_> = describe_children(run_pid)
        .into_iter()
        .filter(|&(_, state, _)| state == 'Z')
        .collect();
    if !zombies.is_empty() {
        h.fail(&format!(
            "`herdsman run` left zombie children {zombies:?}\n{}",
            unshare.describe()
        ));
    }

    let workers: Vec<i32> = children(run_pid);
    kill(Pid::from_raw(run_pid), Signal::SIGTERM).expect("SIGTERM to `herdsman run`");
    let status = unshare.wait_exit(30 * SECOND).unwrap_or_else(|| {
        h.fail(&format!(
            "`herdsman run` did not exit after SIGTERM\n{}",
            unshare.describe()
        ))
    });
    if !status.success() {
        h.fail(&format!(
            "after SIGTERM `herdsman run` (and unshare) must exit 0, got {status}\n{}",
            unshare.describe()
        ));
    }
    let left: Vec<i32> = workers.iter().copied().filter(|&p| alive(p)).collect();
    let marked = h.marked_pids();
    if !left.is_empty() || !marked.is_empty() {
        h.fail(&format!(
            "processes outlived `herdsman run`: workers {left:?}, of this home {marked:?}\n{}",
            unshare.describe()
        ));
    }
    if !connect_refused(port) {
        h.fail(&format!(
            "127.0.0.1:{port} still accepts after `herdsman run` exited"
        ));
    }
}

#[test]
fn run_json_prints_one_object_per_log_line() {
    let h = Herdsman::new();
    let dir = h.scratch("run");
    let port = free_port();
    let file = run_file(&dir, port, "0.1");
    let mut c = h.command();
    c.args(["run", "--json"]).arg(&file);
    let mut run = Spawned::spawn(c, &dir, "run");

    // The parsed objects once both lines of `orphan` and both `listening` lines arrived.
    let objects: Vec<BTreeMap<String, Value>> = h.wait_value(
        "JSON lines for both web workers and both streams of `orphan`",
        15 * SECOND,
        || {
            let out = run.stdout();
            let objects: Vec<BTreeMap<String, Value>> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let line_of = |o: &BTreeMap<String, Value>| {
                o.get("line")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let listening = objects
                .iter()
                .filter(|o| line_of(o).starts_with("listening pid="))
                .count();
            let orphan = objects
                .iter()
                .filter(|o| {
                    line_of(o).starts_with("orphan left pid=")
                        || line_of(o).starts_with("stderr line pid=")
                })
                .count();
            (listening == 2 && orphan == 2).then_some(objects)
        },
    );
    let out = run.stdout();
    // Every complete line so far (the last one may still be being written).
    let complete: Vec<&str> = out[..out.rfind('\n').map_or(0, |i| i + 1)]
        .lines()
        .collect();
    let mut problems = Vec::new();
    for line in &complete {
        match serde_json::from_str::<BTreeMap<String, Value>>(line) {
            Ok(o) => {
                let keys: Vec<&str> = o.keys().map(String::as_str).collect();
                if keys != ["app", "instance", "line", "stream", "time"]
                    || ["app", "line", "stream", "time"]
                        .iter()
                        .any(|k| !o[*k].is_string())
                    || !o["instance"].is_u64()
                {
                    problems.push(format!("not {{app, instance, stream, time, line}}: {line}"));
                }
            }
            Err(e) => problems.push(format!("not JSON ({e}): {line}")),
        }
    }
    let find = |prefix: &str| {
        objects
            .iter()
            .find(|o| o["line"].as_str().is_some_and(|l| l.starts_with(prefix)))
            .cloned()
            .unwrap_or_default()
    };
    let stdout_line = find("orphan left pid=");
    let stderr_line = find("stderr line pid=");
    let listening = find("listening pid=");
    if stdout_line.get("app") != Some(&Value::from("orphan"))
        || stderr_line.get("app") != Some(&Value::from("orphan"))
        || listening.get("app") != Some(&Value::from("web"))
    {
        problems.push("wrong `app` (expected orphan, orphan, web)".to_string());
    }
    let stream = |o: &BTreeMap<String, Value>| {
        o.get("stream")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if !["out", "stdout"].contains(&stream(&stdout_line).as_str())
        || !["err", "stderr"].contains(&stream(&stderr_line).as_str())
    {
        problems.push(format!(
            "wrong `stream`: {:?} for a stdout line, {:?} for a stderr line",
            stream(&stdout_line),
            stream(&stderr_line)
        ));
    }
    if !problems.is_empty() {
        h.fail(&format!(
            "`run --json` output is wrong:\n  {}\n{}",
            problems.join("\n  "),
            run.describe()
        ));
    }

    kill(Pid::from_raw(run.pid()), Signal::SIGTERM).expect("SIGTERM to `herdsman run`");
    let status = run.wait_exit(30 * SECOND).unwrap_or_else(|| {
        h.fail(&format!(
            "`herdsman run` did not exit after SIGTERM\n{}",
            run.describe()
        ))
    });
    if !status.success() {
        h.fail(&format!(
            "after SIGTERM `herdsman run` must exit 0, got {status}\n{}",
            run.describe()
        ));
    }
    // The orphan (sleep 0.1) may outlive the run process briefly; nothing else may.
    h.wait_for(
        "no process of this home left after `herdsman run` exited",
        10 * SECOND,
        || h.marked_pids().is_empty(),
    );
}

#[test]
fn run_exits_non_zero_by_itself_when_an_app_cannot_be_kept_running() {
    let h = Herdsman::new();
    let dir = h.scratch("run");
    let file = write_file(
        &dir,
        "crash.toml",
        &format!(
            "[[apps]]\nname = \"steady\"\nscript = {}\n\n\
             [[apps]]\nname = \"crashy\"\nscript = {}\nmax_restarts = 1\n",
            q(app_arg("ecosystem/idle.sh")),
            q(app_arg("crash.sh"))
        ),
    );
    let mut c = h.command();
    c.arg("run").arg(&file);
    let mut run = Spawned::spawn(c, &dir, "run");
    let status = run.wait_exit(30 * SECOND).unwrap_or_else(|| {
        h.fail(&format!(
            "`herdsman run` kept running although `crashy` cannot be kept running\n{}",
            run.describe()
        ))
    });
    let marked = h.marked_pids();
    if status.code() != Some(1) || !marked.is_empty() {
        h.fail(&format!(
            "`herdsman run` must stop every app and exit 1 when an app is errored: \
             status {status}, processes of this home left {marked:?}\n{}",
            run.describe()
        ));
    }
    if !run.stderr().contains("crashy") {
        h.fail(&format!(
            "`herdsman run` must name the app that could not be kept running\n{}",
            run.describe()
        ));
    }
}

// =============================================================================================
// 6. completions
// =============================================================================================

#[test]
fn completions_prints_the_checked_in_scripts() {
    let h = Herdsman::new();
    for (shell, file) in [
        ("bash", "completions/herdsman.bash"),
        ("zsh", "completions/_herdsman"),
        ("fish", "completions/herdsman.fish"),
    ] {
        let out = h.cmd(&["completions", shell]).ok();
        let path = repo_root().join(file);
        let expected = fs::read_to_string(&path)
            .unwrap_or_else(|e| h.fail(&format!("read {}: {e}", path.display())));
        if out.stdout != expected {
            let first_diff = out
                .stdout
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(out.stdout.lines().count().min(expected.lines().count()));
            h.fail(&format!(
                "`herdsman completions {shell}` differs from {} at line {} \
                 ({} vs {} bytes)",
                path.display(),
                first_diff + 1,
                out.stdout.len(),
                expected.len()
            ));
        }
    }
    if h.home().join("daemon.pid").exists() {
        h.fail("`completions` started a daemon");
    }
}
