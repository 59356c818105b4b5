//! The Node preload with several sockets and with a host, and `herdsman run` whose stdout goes away.
//!
//! - An app's second, third ... `--listen` address is the inherited fd 4, 5 ...: `listen(PORT2)` and
//!   `listen(PATH)` take it instead of binding again (and failing with EADDRINUSE).
//! - `listen(PORT, HOST)` takes herdsman's socket only when the socket serves no more than HOST: a
//!   loopback-only server is never put on herdsman's every-interface socket. The app's own bind goes
//!   ahead instead (and fails while herdsman holds the port), and the app's error log says what to
//!   change. Only 127.0.0.1 is ever connected to; the wildcard case is checked by what the app
//!   reports (the descriptor it listens on, its error) and the preload's message.
//! - `herdsman run` whose stdout is closed (`run ... | head -n 1`, a terminal gone) stops every app,
//!   waits for them and exits 1; it leaves no worker and no log keeper behind.
//!
//! The test app is `tests/apps/listen.js`: one server per entry of `LISTEN_CALLS` (the arguments of
//! each `listen` call), each printing `listening <i> fd=<fd>` or `error <i> <code>`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::helpers::{
    Herdsman, SECOND, app_arg, free_port, is_log_keeper, listen_addr, pids, poll, q,
    wait_served_by, write_file,
};

/// `start tests/apps/listen.js --name NAME -i N --listen A ...` with `LISTEN_CALLS` = `calls`.
#[track_caller]
fn start_listen_app(h: &Herdsman, name: &str, n: usize, listen: &[String], calls: &Value) {
    let instances = n.to_string();
    let mut args = vec![
        "start",
        "tests/apps/listen.js",
        "--name",
        name,
        "-i",
        &instances,
    ];
    for addr in listen {
        args.extend(["--listen", addr]);
    }
    h.cmd(&args).env("LISTEN_CALLS", calls.to_string()).ok();
}

/// The app's stderr log (empty if absent).
fn err_log(h: &Herdsman, name: &str) -> String {
    fs::read_to_string(h.home().join("logs").join(format!("{name}-err.log"))).unwrap_or_default()
}

/// How many lines of `log` end with `text` (after the `<time> [<instance>] ` prefix).
fn count_lines(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.ends_with(text)).count()
}

/// Waits until `n` workers printed `listening <i> fd=<fd>` for each `(i, fd)` of `expected`.
#[track_caller]
fn wait_listening_on(h: &Herdsman, name: &str, n: usize, expected: &[(usize, u32)]) {
    let lines: Vec<String> = expected
        .iter()
        .map(|(i, fd)| format!("] listening {i} fd={fd}"))
        .collect();
    h.wait_for(
        &format!("{n} worker(s) of `{name}` printing each of {lines:?}"),
        15 * SECOND,
        || {
            let out = h.out_log(name);
            lines.iter().all(|l| count_lines(&out, l) == n)
        },
    );
    if err_log(h, name).contains("] error ") {
        h.fail(&format!("a server of `{name}` failed to listen"));
    }
}

/// `GET /` over the Unix socket `path`; the body of a 200 response.
fn unix_get(path: &Path) -> Option<String> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(2 * SECOND)).ok()?;
    stream.set_write_timeout(Some(2 * SECOND)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: unix\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

// =============================================================================================
// Several sockets: listen(PORT2) and listen(PATH) take fd 4
// =============================================================================================

#[test]
fn a_second_listen_port_is_served_by_the_second_inherited_socket() {
    let h = Herdsman::new();
    let (main, admin) = (free_port(), free_port());
    start_listen_app(
        &h,
        "two",
        2,
        &[listen_addr(main), listen_addr(admin)],
        &json!([[main], [admin.to_string()]]),
    );
    let workers = h.wait_online("two", 2);
    // Both servers of both workers listen on herdsman's sockets, in the order of the addresses.
    wait_listening_on(&h, "two", 2, &[(0, 3), (1, 4)]);
    let expected = pids(&workers);
    wait_served_by(&h, main, &expected, 15 * SECOND);
    wait_served_by(&h, admin, &expected, 15 * SECOND);
    let body = crate::helpers::http_get(admin, "/", 2 * SECOND)
        .unwrap_or_else(|e| h.fail(&format!("GET / on the admin port: {e}")))
        .body;
    if !body.starts_with("1 ") {
        h.fail(&format!(
            "the admin port must be answered by the admin server (`1 <pid>`), got {body:?}"
        ));
    }
    let now = h.workers("two");
    if pids(&now) != expected || now.iter().any(|w| w.restarts != 0) {
        h.fail(&format!(
            "the workers must not have restarted: {workers:?} then {now:?}"
        ));
    }
}

#[test]
fn listen_on_a_unix_path_takes_its_inherited_socket() {
    let h = Herdsman::new();
    let dir = h.scratch("sockets");
    let path = dir.join("app.sock");
    let port = free_port();
    let path_text = path.display().to_string();
    start_listen_app(
        &h,
        "unixapp",
        1,
        &[listen_addr(port), format!("unix:{path_text}")],
        &json!([[port], [path_text]]),
    );
    let workers = h.wait_online("unixapp", 1);
    wait_listening_on(&h, "unixapp", 1, &[(0, 3), (1, 4)]);
    let pid = workers[0].pid.unwrap_or_default();
    let body = h.wait_value(
        &format!("an answer over {}", path.display()),
        10 * SECOND,
        || unix_get(&path),
    );
    if body != format!("1 {pid}") {
        h.fail(&format!(
            "the Unix socket must be answered by server 1 of worker {pid}, got {body:?}"
        ));
    }
}

// =============================================================================================
// listen(PORT, HOST)
// =============================================================================================

#[test]
fn listen_with_a_host_the_socket_serves_takes_the_socket() {
    let h = Herdsman::new();
    let ports = [free_port(), free_port(), free_port()];
    let listen: Vec<String> = ports.iter().map(|&p| listen_addr(p)).collect();
    // The same address; `localhost`, which the 127.0.0.1 socket serves; and every interface, which the
    // operator narrowed to 127.0.0.1.
    let calls = json!([
        [ports[0], "127.0.0.1"],
        [{ "port": ports[1], "host": "localhost" }],
        [ports[2], "0.0.0.0"],
    ]);
    start_listen_app(&h, "hosts", 1, &listen, &calls);
    let workers = h.wait_online("hosts", 1);
    wait_listening_on(&h, "hosts", 1, &[(0, 3), (1, 4), (2, 5)]);
    for port in ports {
        wait_served_by(&h, port, &pids(&workers), 10 * SECOND);
    }
    let err = err_log(&h, "hosts");
    if err.contains("herdsman:") {
        h.fail(&format!(
            "hosts the sockets serve must not be warned about:\n{err}"
        ));
    }
}

#[test]
fn a_loopback_listen_does_not_take_a_socket_on_every_interface() {
    let h = Herdsman::new();
    let (a, b) = (free_port(), free_port());
    // `--listen PORT` binds every interface; the app asks for loopback only, twice.
    let calls = json!([[a, "127.0.0.1"], [{ "port": b, "host": "localhost" }]]);
    start_listen_app(&h, "lo", 1, &[a.to_string(), b.to_string()], &calls);
    h.wait_for(
        "both servers of `lo` refused herdsman's wider socket and failed their own bind",
        15 * SECOND,
        || {
            let err = err_log(&h, "lo");
            err.contains("] error 0 EADDRINUSE") && err.contains("] error 1 EADDRINUSE")
        },
    );
    let out = h.out_log("lo");
    if out.contains("] listening ") {
        h.fail("a loopback-only server must not listen on herdsman's every-interface socket");
    }
    let err = err_log(&h, "lo");
    for (port, host) in [(a, "127.0.0.1"), (b, "localhost")] {
        let fix = format!("--listen 127.0.0.1:{port}");
        if !err
            .lines()
            .any(|l| l.contains("herdsman:") && l.contains(host) && l.contains(&fix))
        {
            h.fail(&format!(
                "the error log must say that `{host}` on port {port} is narrower than herdsman's \
                 socket, and how to fix it ({fix})"
            ));
        }
    }
}

// =============================================================================================
// `herdsman run` whose stdout is closed
// =============================================================================================

/// `herdsman run FILE` with stdout a pipe the test holds and stderr in a file; killed (with its process
/// group) and reaped on drop if it still runs.
struct PipedRun {
    child: Child,
    stderr: PathBuf,
}

impl PipedRun {
    fn spawn(h: &Herdsman, file: &Path, dir: &Path) -> (PipedRun, ChildStdout) {
        let stderr = dir.join("run.err");
        let err = fs::File::create(&stderr)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr.display()));
        let mut c = h.command();
        c.arg("run")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        let mut child = c.spawn().expect("spawn `herdsman run`");
        let stdout = child.stdout.take().expect("run's stdout pipe");
        (PipedRun { child, stderr }, stdout)
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.child.try_wait().ok().flatten())
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for PipedRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the home has a worker and a log keeper besides `run` itself; returns their pids.
#[track_caller]
fn wait_run_processes(h: &Herdsman, run: &PipedRun) -> Vec<i32> {
    let run_pid = run.child.id() as i32;
    h.wait_value(
        "`herdsman run`'s worker and log keeper",
        15 * SECOND,
        || {
            let others: Vec<i32> = h
                .marked_pids()
                .into_iter()
                .filter(|&p| p != run_pid)
                .collect();
            (others.len() >= 2 && others.iter().any(|&p| is_log_keeper(p))).then_some(others)
        },
    )
}

/// `run` must exit 1 by itself, say why on stderr, and leave no process of the home.
#[track_caller]
fn assert_run_stopped_everything(h: &Herdsman, run: &mut PipedRun, before: &[i32]) {
    let status = run.wait_exit(20 * SECOND).unwrap_or_else(|| {
        h.fail(&format!(
            "`herdsman run` kept running after its stdout was closed\nstderr:\n{}",
            run.stderr()
        ))
    });
    let left = poll(10 * SECOND, || {
        let left = h.marked_pids();
        left.is_empty().then_some(())
    });
    if left.is_none() {
        h.fail(&format!(
            "`herdsman run` exited ({status}) but left processes of its home running: {:?} \
             (before: {before:?})\nstderr:\n{}",
            h.marked_pids(),
            run.stderr()
        ));
    }
    if status.code() != Some(1) || !run.stderr().contains("stdout") {
        h.fail(&format!(
            "`herdsman run` must exit 1 and name its stdout as the reason, got {status}\nstderr:\n{}",
            run.stderr()
        ));
    }
}

#[test]
fn run_stops_every_app_when_its_stdout_is_closed_while_printing() {
    let h = Herdsman::new();
    let dir = h.scratch("run");
    let file = write_file(
        &dir,
        "tick.toml",
        &format!(
            "[[apps]]\nname = \"tick\"\nscript = {}\n",
            q(app_arg("ticker.sh"))
        ),
    );
    let (mut run, stdout) = PipedRun::spawn(&h, &file, &dir);
    let before = wait_run_processes(&h, &run);
    // `run ... | head -n 1`: read one line of the app's, then close the pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.find(|l| l.as_ref().map_or(true, |l| l.contains("tick ")));
        let _ = tx.send(first.and_then(Result::ok));
        // The pipe is closed here, when `lines` is dropped.
    });
    match rx.recv_timeout(15 * SECOND) {
        Ok(Some(_)) => {}
        other => h.fail(&format!(
            "no `tick` line on run's stdout ({other:?})\nstderr:\n{}",
            run.stderr()
        )),
    }
    assert_run_stopped_everything(&h, &mut run, &before);
}

#[test]
fn run_stops_every_app_when_its_stdout_is_closed_while_the_apps_are_quiet() {
    let h = Herdsman::new();
    let dir = h.scratch("run");
    let file = write_file(
        &dir,
        "idle.toml",
        &format!(
            "[[apps]]\nname = \"idle\"\nscript = {}\n",
            q(app_arg("ecosystem/idle.sh"))
        ),
    );
    let (mut run, stdout) = PipedRun::spawn(&h, &file, &dir);
    h.wait_online("idle", 1);
    let before = wait_run_processes(&h, &run);
    // Nothing will be written: `run` must notice the closed pipe without a failed write.
    drop(stdout);
    assert_run_stopped_everything(&h, &mut run, &before);
}
