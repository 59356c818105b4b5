//! Test fixtures for the herdsman integration tests.
//!
//! Everything here drives the real binary (`CARGO_BIN_EXE_herdsman`) against real apps:
//! - [`Herdsman`] owns one temporary `HERDSMAN_HOME`. Its `Drop` runs `herdsman kill`, then
//!   SIGKILLs every process (and process group) whose environment carries this home, then removes
//!   the directory. Tests therefore leave nothing behind, pass or fail.
//! - [`Herdsman::cmd`] runs the CLI with a timeout; failed expectations dump the command's output,
//!   the daemon log and the app logs.
//! - [`Herdsman::wait_for`] and friends poll a condition against a deadline: no test sleeps to
//!   synchronise.
//! - [`http_get`] and [`Probe`] are hand-written HTTP/1.1 clients on `std::net::TcpStream`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};
use serde::Deserialize;
use tempfile::TempDir;

/// How often every poll loop re-checks its condition.
pub const POLL: Duration = Duration::from_millis(25);
/// Upper bound for one CLI invocation (stop waits up to the kill timeout, 1.6 s by default).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root (where `Cargo.toml` is): the default cwd of every CLI call.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps/<name>` as an absolute path.
pub fn app(name: &str) -> PathBuf {
    repo_root().join("tests").join("apps").join(name)
}

/// `tests/apps/<name>` as a `String`, for argument lists.
pub fn app_arg(name: &str) -> String {
    app(name).display().to_string()
}

/// A program from the test venv (`$HERDSMAN_TEST_VENV/bin/<tool>`, default `<repo>/.venv`).
pub fn venv_bin(tool: &str) -> String {
    let venv = std::env::var_os("HERDSMAN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    let path = venv.join("bin").join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run .ci/run to install the test venv (or set HERDSMAN_TEST_VENV)",
        path.display()
    );
    path.display().to_string()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of the probe listener")
        .port()
}

/// Polls `cond` every [`POLL`] until it yields `Some`, or returns `None` after `timeout`.
pub fn poll<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// list --json
// ---------------------------------------------------------------------------------------------

/// One worker as printed by `list --json` (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Proc {
    pub id: u64,
    pub name: String,
    pub instance: u64,
    pub mode: String,
    pub pid: Option<i32>,
    pub status: String,
    pub restarts: u64,
    pub uptime_ms: Option<u64>,
    pub listen: Option<String>,
    pub restart_in_ms: Option<u64>,
    pub last_exit: Option<String>,
}

/// What must not change when a command fails: `(id, name, pid, status)` per worker.
pub fn snapshot(list: &[Proc]) -> Vec<(u64, String, Option<i32>, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|p| (p.id, p.name.clone(), p.pid, p.status.clone()))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------------------------

/// The outcome of one CLI call.
pub struct Output {
    pub args: Vec<String>,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Some(s) => format!("{s}"),
            None => "TIMED OUT (killed)".to_string(),
        };
        write!(
            f,
            "$ herdsman {}\n  status: {status} after {:?}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.args.join(" "),
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// A CLI call being built: `h.cmd(&["start", ...]).env("K", "v").cwd(dir).ok()`.
pub struct Cmd<'a> {
    h: &'a Herdsman,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    removed: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
}

impl Cmd<'_> {
    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.envs
            .push((key.to_string(), value.as_ref().to_string()));
        self
    }

    /// Removes `key` from the command's environment (inherited from the test process otherwise).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.removed.push(key.to_string());
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command to completion (killed after the timeout) and returns its output.
    pub fn run(self) -> Output {
        let mut command = self.h.command();
        command.args(&self.args).current_dir(&self.cwd);
        for k in &self.removed {
            command.env_remove(k);
        }
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        run_with_timeout(command, self.args, self.timeout)
    }

    /// Runs the command and panics (with the diagnostics) unless it exits 0.
    #[track_caller]
    pub fn ok(self) -> Output {
        let h = self.h;
        let out = self.run();
        if !out.success() {
            h.fail(&format!("expected success\n{out}"));
        }
        out
    }

    /// Runs the command and panics unless it exits 1 with `error: ` and `needle` on stderr.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Output {
        let h = self.h;
        let out = self.run();
        if out.code() != Some(1) {
            h.fail(&format!("expected exit code 1\n{out}"));
        }
        if !out.stderr.contains("error: ") || !out.stderr.contains(needle) {
            h.fail(&format!(
                "expected stderr to start with `error: ` and name {needle:?}\n{out}"
            ));
        }
        out
    }
}

/// Runs `command` with stdout/stderr going to anonymous files (so a daemon that inherits them can
/// never block us), waits at most `timeout`, then SIGKILLs it.
fn run_with_timeout(mut command: Command, args: Vec<String>, timeout: Duration) -> Output {
    let mut out_file = tempfile::tempfile().expect("create a temp file for stdout");
    let mut err_file = tempfile::tempfile().expect("create a temp file for stderr");
    command
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().expect("clone the stdout temp file"))
        .stderr(err_file.try_clone().expect("clone the stderr temp file"));
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn the herdsman binary");
    let status = wait_child(&mut child, timeout);
    let elapsed = started.elapsed();
    let read = |f: &mut fs::File| {
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).expect("rewind an output file");
        f.read_to_string(&mut s).expect("read an output file");
        s
    };
    Output {
        args,
        status,
        stdout: read(&mut out_file),
        stderr: read(&mut err_file),
        elapsed,
    }
}

/// Waits for `child` at most `timeout`; on timeout SIGKILLs and reaps it and returns `None`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let status = poll(timeout, || child.try_wait().expect("try_wait on a child"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

/// One isolated herdsman installation: a temporary `HERDSMAN_HOME` and everything started in it.
pub struct Herdsman {
    /// Holds the home and scratch directories; removed on drop, after the processes are gone.
    dir: TempDir,
    home: PathBuf,
}

impl Herdsman {
    /// A fresh fixture. The home directory itself does not exist yet: herdsman creates it.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("herdsman-test-")
            .tempdir()
            .expect("create the test's temp dir");
        let home = dir.path().join("home");
        Herdsman { dir, home }
    }

    /// `HERDSMAN_HOME` of this test.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A fresh scratch directory for the test's own files (outside the home).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).expect("create a scratch directory");
        p
    }

    /// A `Command` for the binary with this test's `HERDSMAN_HOME`.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herdsman"));
        c.env("HERDSMAN_HOME", &self.home).current_dir(repo_root());
        c
    }

    /// A CLI call with this home, run from the repository root.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> Cmd<'_> {
        Cmd {
            h: self,
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            envs: Vec::new(),
            removed: Vec::new(),
            cwd: repo_root(),
            timeout: CMD_TIMEOUT,
        }
    }

    /// `list --json`, parsed.
    #[track_caller]
    pub fn list(&self) -> Vec<Proc> {
        let out = self.cmd(&["list", "--json"]).ok();
        match serde_json::from_str::<Vec<Proc>>(&out.stdout) {
            Ok(list) => list,
            Err(e) => self.fail(&format!(
                "`list --json` is not the documented JSON: {e}\n{out}"
            )),
        }
    }

    /// The workers of app `name`, by instance.
    #[track_caller]
    pub fn workers(&self, name: &str) -> Vec<Proc> {
        let mut v: Vec<Proc> = self.list().into_iter().filter(|p| p.name == name).collect();
        v.sort_by_key(|p| p.instance);
        v
    }

    /// Waits until app `name` has exactly `n` workers, all `online` with a pid; returns them.
    #[track_caller]
    pub fn wait_online(&self, name: &str, n: usize) -> Vec<Proc> {
        self.wait_value(
            &format!("{n} worker(s) of `{name}` online with a pid"),
            Duration::from_secs(10),
            || {
                let w = self.workers(name);
                (w.len() == n && w.iter().all(|p| p.status == "online" && p.pid.is_some()))
                    .then_some(w)
            },
        )
    }

    /// The daemon's pid from `$HOME/daemon.pid`.
    #[track_caller]
    pub fn daemon_pid(&self) -> i32 {
        let path = self.home.join("daemon.pid");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| self.fail(&format!("cannot read {}: {e}", path.display())));
        text.trim()
            .parse()
            .unwrap_or_else(|e| self.fail(&format!("daemon.pid holds {text:?}: {e}")))
    }

    /// `$HOME/logs/<name>-out.log` (empty if absent).
    pub fn out_log(&self, name: &str) -> String {
        fs::read_to_string(self.home.join("logs").join(format!("{name}-out.log")))
            .unwrap_or_default()
    }

    /// Everything useful when a test fails: daemon log, app logs, `list --json`.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        let daemon_log = self.home.join("daemon.log");
        s.push_str(&format!(
            "=== {} ===\n{}\n",
            daemon_log.display(),
            tail(
                &fs::read_to_string(&daemon_log).unwrap_or_else(|e| format!("<{e}>")),
                80
            )
        ));
        if let Ok(entries) = fs::read_dir(self.home.join("logs")) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                let text = fs::read_to_string(&p).unwrap_or_else(|e| format!("<{e}>"));
                s.push_str(&format!("=== {} ===\n{}\n", p.display(), tail(&text, 40)));
            }
        }
        let mut c = self.command();
        c.args(["list", "--json"]);
        let out = run_with_timeout(
            c,
            vec!["list".into(), "--json".into()],
            Duration::from_secs(5),
        );
        s.push_str(&format!("=== list --json ===\n{out}\n"));
        s
    }

    /// Panics with `msg` followed by the diagnostics.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n\n{}", self.diagnostics());
    }

    /// Polls `cond` until true; panics after `timeout` naming `what`, with the diagnostics.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        self.wait_value(what, timeout, || cond().then_some(()));
    }

    /// Polls `cond` until it yields a value; panics after `timeout` naming `what`.
    #[track_caller]
    pub fn wait_value<T>(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl FnMut() -> Option<T>,
    ) -> T {
        match poll(timeout, cond) {
            Some(v) => v,
            None => self.fail(&format!("timed out after {timeout:?} waiting for: {what}")),
        }
    }

    /// Asserts that `cond` holds at every poll until `window` has passed (something that must
    /// NOT happen, observed over a bounded window).
    #[track_caller]
    pub fn assert_stays(&self, what: &str, window: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + window;
        loop {
            if !cond() {
                self.fail(&format!("expected to stay true for {window:?}: {what}"));
            }
            if Instant::now() >= deadline {
                return;
            }
            thread::sleep(POLL);
        }
    }

    /// Pids of live processes whose environment holds `HERDSMAN_HOME=<this home>`.
    pub fn marked_pids(&self) -> Vec<i32> {
        marked_pids(&self.home)
    }

    /// Runs `herdsman kill`, then SIGKILLs whatever still carries this home's marker.
    fn cleanup(&self) {
        let mut c = self.command();
        c.arg("kill");
        let _ = run_with_timeout(c, vec!["kill".into()], Duration::from_secs(15));
        let own_group = getpgrp();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.marked_pids();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                if let Some(stat) = proc_stat(pid) {
                    let pgid = Pid::from_raw(stat.pgrp);
                    if stat.pgrp > 1 && pgid != own_group {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Herdsman {
    fn drop(&mut self) {
        self.cleanup();
        // `dir` (the TempDir) is removed after this, once nothing runs in it any more.
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// The fields of `/proc/<pid>/stat` the tests use.
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`; `None` if the process does not exist.
pub fn proc_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so field N is f[N - 3].
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The open fd numbers of `pid`.
pub fn fds(pid: i32) -> BTreeSet<u32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The target of `/proc/<pid>/fd/<fd>` (e.g. `socket:[1234]`).
pub fn fd_link(pid: i32, fd: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// `/proc/<pid>/comm` without the newline.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Live (non-zombie) processes whose environment holds exactly `HERDSMAN_HOME=<home>`.
pub fn marked_pids(home: &Path) -> Vec<i32> {
    let marker = format!("HERDSMAN_HOME={}", home.display());
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|entry| entry == marker.as_bytes())
            })
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// File mode bits (`& 0o777`) of `path`, `None` if it does not exist.
pub fn mode(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub pid: Option<i32>,
    pub body: String,
}

/// An HTTP failure, keeping the I/O error kind (e.g. `ConnectionRefused`).
#[derive(Debug)]
pub struct HttpError {
    pub kind: std::io::ErrorKind,
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

fn http_err(kind: std::io::ErrorKind, message: impl Into<String>) -> HttpError {
    HttpError {
        kind,
        message: message.into(),
    }
}

/// `GET path` on 127.0.0.1:port over a new connection with `Connection: close`; every socket
/// operation is bounded by `timeout`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| http_err(e.kind(), format!("{what}: {e}"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io("connect"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("set_read_timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(io("set_write_timeout"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io("write"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io("read"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, HttpError> {
    let bad = |m: &str| http_err(std::io::ErrorKind::InvalidData, m);
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad(&format!("no end of headers in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let pid = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-pid"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok(HttpResponse {
        status,
        pid,
        body: body.to_string(),
    })
}

/// A 200 response's `X-Pid`, or `None` on any failure (for polling).
pub fn served_pid(port: u16) -> Option<i32> {
    match http_get(port, "/", Duration::from_secs(2)) {
        Ok(r) if r.status == 200 => r.pid,
        _ => None,
    }
}

/// Failed requests by kind, as load generators count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Connection refused (nothing listening).
    pub refused: usize,
    /// Reset, aborted, broken pipe or closed before a complete response.
    pub reset: usize,
    /// No answer within the timeout.
    pub timed_out: usize,
    /// A response that is not 2xx.
    pub bad_status: usize,
    /// Anything else (e.g. a malformed response).
    pub other: usize,
}

impl ErrorCounts {
    /// Counts one I/O failure by its kind.
    pub fn count(&mut self, kind: std::io::ErrorKind) {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused => self.refused += 1,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                self.reset += 1
            }
            K::TimedOut | K::WouldBlock => self.timed_out += 1,
            _ => self.other += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.refused + self.reset + self.timed_out + self.bad_status + self.other
    }
}

/// What a [`KeepAliveLoad`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// 2xx responses.
    pub ok: usize,
    /// Responses by status code (2xx included).
    pub statuses: BTreeMap<u16, usize>,
    /// Responses by `X-Pid`.
    pub pids: BTreeMap<i32, usize>,
    /// Connections opened (the first of each thread included).
    pub connections: usize,
    /// Requests on a reused connection that the server closed before any response byte, sent
    /// again once on a new connection (what HTTP clients do for idempotent requests): not failures.
    pub retried: usize,
    /// Failures by kind: any error on a fresh connection, a retry that failed, an error after
    /// part of a response, a timeout, any non-2xx.
    pub errors: ErrorCounts,
    /// One line per failure, with the time since the load started.
    pub failures: Vec<String>,
}

/// A keep-alive HTTP/1.1 load: `threads` threads, each with a persistent connection to
/// 127.0.0.1:port sending `GET /` one request after the other (Content-Length framed), until
/// stopped, for at most 60 s and 15 000 requests per thread. Every socket operation times out
/// after 5 s. Failures are recorded, never retried, except a request on a reused connection that
/// got no response byte at all, not even a timeout (see [`LoadReport::retried`]).
pub struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    handles: Vec<JoinHandle<()>>,
}

/// One persistent client connection.
struct KeepAliveConn {
    reader: std::io::BufReader<TcpStream>,
}

/// Why a request on a connection failed, and whether any byte of the response had arrived.
struct RequestError {
    error: HttpError,
    got_bytes: bool,
}

const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

impl KeepAliveConn {
    fn connect(port: u16) -> Result<Self, HttpError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let io = |what: &'static str| {
            move |e: std::io::Error| http_err(e.kind(), format!("{what}: {e}"))
        };
        let stream = TcpStream::connect_timeout(&addr, LOAD_TIMEOUT).map_err(io("connect"))?;
        stream
            .set_read_timeout(Some(LOAD_TIMEOUT))
            .map_err(io("set_read_timeout"))?;
        stream
            .set_write_timeout(Some(LOAD_TIMEOUT))
            .map_err(io("set_write_timeout"))?;
        stream.set_nodelay(true).map_err(io("set_nodelay"))?;
        Ok(KeepAliveConn {
            reader: std::io::BufReader::new(stream),
        })
    }

    /// Sends `GET /` and reads one response; returns it and whether the connection stays open.
    fn request(&mut self, port: u16) -> Result<(HttpResponse, bool), RequestError> {
        use std::io::BufRead;
        let fail = |got_bytes: bool, what: &str, e: std::io::Error| RequestError {
            error: http_err(e.kind(), format!("{what}: {e}")),
            got_bytes,
        };
        let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| fail(false, "write", e))?;
        let mut status_line = String::new();
        match self.reader.read_line(&mut status_line) {
            Ok(0) => {
                return Err(RequestError {
                    error: http_err(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed by the server before any response byte",
                    ),
                    got_bytes: false,
                });
            }
            Ok(_) => {}
            Err(e) => return Err(fail(!status_line.is_empty(), "read status line", e)),
        }
        let bad = |m: String| RequestError {
            error: http_err(std::io::ErrorKind::InvalidData, m),
            got_bytes: true,
        };
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let (mut length, mut pid, mut close) = (None, None, false);
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => {
                    return Err(fail(
                        true,
                        "read headers",
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(fail(true, "read headers", e)),
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("x-pid") {
                    pid = v.parse().ok();
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let length =
            length.ok_or_else(|| bad(format!("no Content-Length after {status_line:?}")))?;
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| fail(true, "read body", e))?;
        Ok((
            HttpResponse {
                status,
                pid,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            !close,
        ))
    }
}

impl KeepAliveLoad {
    pub fn start(port: u16, threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let started = Instant::now();
        let handles = (0..threads)
            .map(|_| {
                let (stop, report) = (stop.clone(), report.clone());
                thread::spawn(move || keep_alive_thread(port, &stop, &report, started))
            })
            .collect();
        KeepAliveLoad {
            stop,
            report,
            handles,
        }
    }

    /// 2xx responses so far.
    pub fn ok_count(&self) -> usize {
        self.report.lock().expect("load report poisoned").ok
    }

    /// Stops the threads and returns what they saw.
    pub fn finish(mut self) -> LoadReport {
        self.stop_threads();
        std::mem::take(&mut *self.report.lock().expect("load report poisoned"))
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for KeepAliveLoad {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn keep_alive_thread(port: u16, stop: &AtomicBool, report: &Mutex<LoadReport>, started: Instant) {
    let record_failure = |e: &HttpError, what: &str| {
        let mut r = report.lock().expect("load report poisoned");
        r.errors.count(e.kind);
        r.failures
            .push(format!("at {:?}: {what}: {e}", started.elapsed()));
    };
    let connect = || {
        let c = KeepAliveConn::connect(port);
        if c.is_ok() {
            report.lock().expect("load report poisoned").connections += 1;
        }
        c
    };
    let mut conn: Option<KeepAliveConn> = None;
    let mut count = 0;
    while !stop.load(Ordering::SeqCst)
        && started.elapsed() < Duration::from_secs(60)
        && count < 15_000
    {
        count += 1;
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect() {
                Ok(c) => c,
                Err(e) => {
                    record_failure(&e, "new connection");
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        let mut result = c.request(port);
        if let Err(RequestError {
            got_bytes: false,
            error,
        }) = &result
            && reused
            && !matches!(
                error.kind,
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        {
            // The server closed the idle keep-alive connection (graceful shutdown): send the
            // request again, once, on a new connection.
            report.lock().expect("load report poisoned").retried += 1;
            match connect() {
                Ok(fresh) => {
                    c = fresh;
                    result = c.request(port);
                }
                Err(e) => {
                    record_failure(&e, "new connection for a retry");
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        match result {
            Ok((resp, keep)) => {
                let mut r = report.lock().expect("load report poisoned");
                *r.statuses.entry(resp.status).or_default() += 1;
                if let Some(pid) = resp.pid {
                    *r.pids.entry(pid).or_default() += 1;
                }
                if (200..300).contains(&resp.status) {
                    r.ok += 1;
                } else {
                    r.errors.bad_status += 1;
                    r.failures.push(format!(
                        "at {:?}: status {} body {:?}",
                        started.elapsed(),
                        resp.status,
                        resp.body
                    ));
                }
                if keep {
                    conn = Some(c);
                }
            }
            Err(e) => record_failure(&e.error, "request"),
        }
        // Pacing between requests (bounded load on a shared CI machine), not synchronisation.
        thread::sleep(Duration::from_millis(5));
    }
}

/// What a [`Probe`] saw.
#[derive(Debug, Default)]
pub struct ProbeReport {
    pub ok: usize,
    pub failures: Vec<String>,
    pub pids: BTreeSet<i32>,
    /// The failures by kind (refused, reset, timed out, non-2xx, ...).
    pub errors: ErrorCounts,
}

/// A thread opening a new connection to 127.0.0.1:port every ~5 ms until stopped (bounded: at
/// most 60 s and 20 000 requests). Each request may take up to 5 s before it counts as failed.
pub struct Probe {
    stop: Arc<AtomicBool>,
    gate: Arc<Mutex<()>>,
    report: Arc<Mutex<ProbeReport>>,
    handle: Option<JoinHandle<()>>,
}

impl Probe {
    pub fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Mutex::new(()));
        let report = Arc::new(Mutex::new(ProbeReport::default()));
        let handle = {
            let (stop, gate, report) = (stop.clone(), gate.clone(), report.clone());
            thread::spawn(move || {
                let started = Instant::now();
                let mut count = 0;
                while !stop.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(60)
                    && count < 20_000
                {
                    count += 1;
                    let result = {
                        let _in_flight = gate.lock().expect("probe gate poisoned");
                        http_get(port, "/probe", Duration::from_secs(5))
                    };
                    let mut r = report.lock().expect("probe report poisoned");
                    match result {
                        Ok(resp) if resp.status == 200 => {
                            r.ok += 1;
                            r.pids.extend(resp.pid);
                        }
                        Ok(resp) => {
                            r.errors.bad_status += 1;
                            r.failures.push(format!(
                                "at {:?}: status {} body {:?}",
                                started.elapsed(),
                                resp.status,
                                resp.body
                            ))
                        }
                        Err(e) => {
                            r.errors.count(e.kind);
                            r.failures.push(format!("at {:?}: {e}", started.elapsed()))
                        }
                    }
                    drop(r);
                    // Pacing between requests, not synchronisation.
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Probe {
            stop,
            gate,
            report,
            handle: Some(handle),
        }
    }

    /// Successful requests so far.
    pub fn ok_count(&self) -> usize {
        self.report.lock().expect("probe report poisoned").ok
    }

    /// Holds the probe between two requests while the guard lives (no request in flight).
    pub fn quiesce(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().expect("probe gate poisoned")
    }

    /// Stops the thread and returns what it saw.
    pub fn finish(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("probe thread panicked");
        }
        std::mem::take(&mut *self.report.lock().expect("probe report poisoned"))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Fails the test unless the probe was served and saw no failure.
#[track_caller]
pub fn assert_no_failures(h: &Herdsman, what: &str, report: &ProbeReport) {
    if !report.failures.is_empty() || report.ok == 0 {
        h.fail(&format!(
            "{what}: probe ok {}, errors {:?}, failures {:?}",
            report.ok, report.errors, report.failures
        ));
    }
}

/// A `herdsman` child process kept running (e.g. `logs` streaming), its stdout collected by a
/// thread. Killed and reaped on drop.
pub struct Streaming {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Streaming {
    pub fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("spawn a streaming herdsman command");
        let mut pipe = child.stdout.take().expect("the child's stdout pipe");
        let stdout = Arc::new(Mutex::new(String::new()));
        {
            let stdout = stdout.clone();
            // Detached: it ends when the pipe closes (the child is killed on drop).
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stdout
                        .lock()
                        .expect("stream buffer poisoned")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Streaming { child, stdout }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stream buffer poisoned").clone()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Added for the ecosystem tests
// ---------------------------------------------------------------------------------------------

/// True if a TCP connection to 127.0.0.1:port is refused right now (nothing listens there).
pub fn connect_refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// True if `pid` is a log keeper (`herdsman log-keeper`): a process of the home besides the daemon
/// and the workers, while any of them runs.
pub fn is_log_keeper(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"log-keeper"))
}

/// True if `pid` is the daemon's controller (`herdsman controller`), the keeper's child that serves the
/// control socket.
pub fn is_controller(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"controller".as_slice()))
}

/// True if `pid` is one of herdsman's own processes besides the keeper: the controller or a log keeper.
pub fn is_helper_process(pid: i32) -> bool {
    is_log_keeper(pid) || is_controller(pid)
}

/// The `Uid:` line of `/proc/<pid>/status`: real, effective, saved and filesystem uid.
pub fn proc_uids(pid: i32) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().map(|f| f.parse().ok()).collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

// ---------------------------------------------------------------------------------------------
// Added for the production tests
// ---------------------------------------------------------------------------------------------

/// The processes whose parent is `pid`, zombies included (a zombie is still its parent's child).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| proc_stat(p).is_some_and(|s| s.ppid == pid))
        .collect();
    v.sort();
    v
}

/// The `NSpid:` line of `/proc/<pid>/status`: the pid in each PID namespace, outermost first
/// (one entry outside any new namespace).
pub fn ns_pids(pid: i32) -> Option<Vec<i32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|f| f.parse().ok()).collect()
}

/// A process the test spawns itself (a foreground daemon, `unshare ... herdsman run`), in its own
/// process group, with stdout and stderr going to files (read at any time). On drop, if it still
/// runs: SIGKILL to its children (for `unshare --pid --fork`, the namespace's init: the kernel
/// then kills the whole namespace), to its process group and to itself; then it is reaped.
pub struct Spawned {
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    args: String,
}

impl Spawned {
    /// Spawns `command` with stdin from /dev/null and output to `<dir>/<label>.out` and `.err`.
    pub fn spawn(mut command: Command, dir: &Path, label: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let stdout = dir.join(format!("{label}.out"));
        let stderr = dir.join(format!("{label}.err"));
        let file = |p: &Path| {
            fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
        };
        let args = format!("{command:?}");
        command
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args}: {e}"));
        Spawned {
            child,
            status: None,
            stdout,
            stderr,
            args,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The exit status if it has exited (reaped once, remembered).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .expect("try_wait on a spawned process");
        }
        self.status
    }

    /// Polls until it exits, at most `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_wait())
    }

    /// The command, its status and its output, for failure messages.
    pub fn describe(&mut self) -> String {
        let status = match self.try_wait() {
            Some(s) => format!("{s}"),
            None => "still running".to_string(),
        };
        format!(
            "$ {}\n  status: {status}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.args,
            tail(self.stdout().trim_end(), 60),
            tail(self.stderr().trim_end(), 60)
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        // Not reaped yet, so neither its pid nor its children's parent link can be stale.
        let pid = self.pid();
        for c in children(pid) {
            let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the test modules
// ---------------------------------------------------------------------------------------------

/// One second, for deadlines.
pub const SECOND: Duration = Duration::from_secs(1);

pub fn listen_addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

pub fn pids(workers: &[Proc]) -> BTreeSet<i32> {
    workers.iter().filter_map(|w| w.pid).collect()
}

/// The pids of `workers` in instance order.
pub fn pid_list(workers: &[Proc]) -> Vec<i32> {
    workers
        .iter()
        .map(|w| w.pid.expect("an online worker has a pid"))
        .collect()
}

/// Starts `tests/apps/http.js` as app `web` on `port`, logging one line per request (`LOG_REQUESTS=1`),
/// with the extra `start` flags; returns its worker's pid once it is online.
#[track_caller]
pub fn start_request_logger(h: &Herdsman, port: u16, extra: &[&str]) -> i32 {
    let addr = listen_addr(port);
    let mut args = vec![
        "start",
        "tests/apps/http.js",
        "--name",
        "web",
        "--listen",
        &addr,
    ];
    args.extend_from_slice(extra);
    h.cmd(&args).env("LOG_REQUESTS", "1").ok();
    h.wait_online("web", 1)[0]
        .pid
        .expect("an online worker has a pid")
}

/// Polls GET / until the set of `X-Pid`s seen equals `expected`.
#[track_caller]
pub fn wait_served_by(h: &Herdsman, port: u16, expected: &BTreeSet<i32>, timeout: Duration) {
    let mut seen = BTreeSet::new();
    h.wait_for(
        &format!("responses on port {port} from every pid of {expected:?}"),
        timeout,
        || {
            for _ in 0..5 {
                if let Some(pid) = served_pid(port) {
                    seen.insert(pid);
                }
            }
            expected.is_subset(&seen)
        },
    );
    if !seen.is_subset(expected) {
        h.fail(&format!(
            "port {port} answered from {seen:?}, expected only {expected:?}"
        ));
    }
}

/// Waits until none of `old` is alive any more (the reload's old workers have exited).
#[track_caller]
pub fn wait_gone(h: &Herdsman, old: &BTreeSet<i32>) {
    h.wait_for(
        &format!("the old processes {old:?} to exit"),
        15 * SECOND,
        || old.iter().all(|&pid| !alive(pid)),
    );
}

/// `s` as a TOML basic string (the tests only quote plain ASCII paths and values).
pub fn q(s: impl AsRef<str>) -> String {
    format!("{:?}", s.as_ref())
}

/// The environment `env.sh` (worker `pid`) wrote to `dir/<pid>.env`, once it is there.
#[track_caller]
pub fn env_of(h: &Herdsman, dir: &Path, pid: i32) -> BTreeMap<String, String> {
    let path = dir.join(format!("{pid}.env"));
    let text = h.wait_value(
        &format!("env.sh (pid {pid}) to write {}", path.display()),
        SECOND * 10,
        || fs::read_to_string(&path).ok(),
    );
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A second user
// ---------------------------------------------------------------------------------------------

/// The unprivileged account the privilege tests run "the other user" as.
pub const OTHER_USER: &str = "herdsman-test";

/// `herdsman-test`'s uid and gid, the account created (`useradd`) the first time it is asked for; `None`
/// when the tests do not run as root (then nothing can be switched to it, and the caller says it skips).
/// Every test of the binary shares the one account; creating it is serialised, and a concurrent `useradd`
/// from another run is waited for.
pub fn other_user() -> Option<(u32, u32)> {
    static CREATE: Mutex<()> = Mutex::new(());
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let _guard = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let lookup = || {
        nix::unistd::User::from_name(OTHER_USER)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    };
    let found = poll(Duration::from_secs(20), || {
        if let Some(ids) = lookup() {
            return Some(ids);
        }
        // Fails while another process holds /etc/passwd's lock, or once the account exists.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                OTHER_USER,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        lookup()
    });
    Some(found.unwrap_or_else(|| panic!("cannot create the test account {OTHER_USER} (useradd)")))
}

/// `sh -c script` run as [`OTHER_USER`] (`runuser`), with a deadline; its output.
pub fn run_as_other(script: &str, timeout: Duration) -> Output {
    let mut c = Command::new("runuser");
    c.args(["-u", OTHER_USER, "--", "sh", "-c", script]);
    run_with_timeout(
        c,
        vec!["runuser".into(), OTHER_USER.into(), script.into()],
        timeout,
    )
}

/// Makes `dir` and every directory above it up to `/` searchable by everyone (`o+x`), so that another user
/// can reach a path inside the test's private temp dir.
pub fn open_path_to(dir: &Path) {
    for d in dir.ancestors() {
        if let Some(m) = mode(d)
            && m & 0o001 == 0
        {
            let _ = fs::set_permissions(d, fs::Permissions::from_mode(m | 0o011));
        }
    }
}

/// libfaketime, from Debian's `faketime` package (.ci/run installs it).
pub fn libfaketime() -> String {
    let path = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        Path::new(path).exists(),
        "{path} is missing: apt-get install faketime (.ci/run does)"
    );
    path.to_string()
}

/// The `n` node workers of a `herdsman run` in a pid namespace (children of `run_pid`, seen from here), and
/// the pids they answer with (theirs inside the namespace), once the app on `port` is served by all of them.
#[track_caller]
pub fn namespace_workers(
    h: &Herdsman,
    run_pid: i32,
    n: usize,
    port: u16,
) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let nodes: BTreeSet<i32> = h.wait_value(&format!("the {n} node workers"), 15 * SECOND, || {
        let v: BTreeSet<i32> = children(run_pid)
            .into_iter()
            .filter(|&c| comm(c).as_deref() == Some("node"))
            .collect();
        (v.len() == n).then_some(v)
    });
    let inner: BTreeSet<i32> = nodes
        .iter()
        .map(|&p| {
            ns_pids(p)
                .and_then(|v| v.last().copied())
                .unwrap_or_else(|| h.fail(&format!("no NSpid for worker {p}")))
        })
        .collect();
    wait_served_by(h, port, &inner, 15 * SECOND);
    (nodes, inner)
}
