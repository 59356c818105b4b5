//! Process plumbing: what the daemon, its log keeper and its workers inherit (descriptors, sessions,
//! groups, environment, limits), how a Unix socket path already taken is handled, and how the control
//! server behaves when it runs out of descriptors.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::helpers::{
    Herdsman, OTHER_USER, Output, SECOND, children, fd_link, fds, is_log_keeper, open_path_to,
    other_user, pids, poll, run_as_other, wait_child,
};

/// The session id of `pid` (field 6 of `/proc/<pid>/stat`).
fn session(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// The soft and hard "Max open files" of `pid`.
fn nofile(pid: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// `KEY=value` of `/proc/<pid>/environ`.
fn environ(pid: i32, key: &str) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    bytes
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_string))
}

/// The `Groups:` of `/proc/<pid>/status` (supplementary groups).
fn groups(pid: i32) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

/// The daemon's log keeper, once it runs.
fn keeper(h: &Herdsman) -> Option<i32> {
    children(h.daemon_pid())
        .into_iter()
        .find(|&pid| is_log_keeper(pid))
}

/// Runs the CLI with `args`, calling `setup` in the child before exec (to give it a descriptor or a
/// limit); waits at most 30 s.
fn run_cli_with(
    h: &Herdsman,
    args: &[&str],
    setup: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> Output {
    let mut out = tempfile::tempfile().expect("temp file");
    let mut err = tempfile::tempfile().expect("temp file");
    let mut command = h.command();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(err.try_clone().expect("clone"));
    // SAFETY: the closures given here only make async-signal-safe calls (dup2, setrlimit).
    unsafe { command.pre_exec(setup) };
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn the herdsman binary");
    let status = wait_child(&mut child, 30 * SECOND);
    let read = |f: &mut fs::File| {
        use std::io::{Read, Seek, SeekFrom};
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).expect("rewind");
        f.read_to_string(&mut s).expect("read");
        s
    };
    Output {
        args: args.iter().map(|a| a.to_string()).collect(),
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
        elapsed: started.elapsed(),
    }
}

/// A `setup` for [`run_cli_with`] that leaves `fd` open as descriptor 7, without close-on-exec, as a
/// shell's `exec 7>file` does.
fn give_fd_7(fd: RawFd) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: dup2 is async-signal-safe; the copy has no close-on-exec flag.
        if unsafe { libc::dup2(fd, 7) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A `setup` for [`run_cli_with`] that sets RLIMIT_NOFILE.
fn limit_fds(soft: u64, hard: u64) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        let limit = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Which descriptors of `pid` name `path`.
fn fds_naming(pid: i32, path: &Path) -> Vec<u32> {
    let target = path.display().to_string();
    fds(pid)
        .into_iter()
        .filter(|&fd| fd_link(pid, fd).is_some_and(|l| l == target))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Unix socket paths already taken
// ---------------------------------------------------------------------------------------------

#[test]
fn a_unix_listener_with_a_full_queue_makes_start_fail_at_once_and_the_daemon_answers() {
    let h = Herdsman::new();
    let path = h.scratch("sockets").join("busy.sock");
    let busy = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    busy.bind(&SockAddr::unix(&path).expect("address"))
        .expect("bind");
    busy.listen(1).expect("listen");
    // Nobody accepts: fill its queue until a connect would wait.
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).expect("socket");
        match client.connect(&SockAddr::unix(&path).expect("address")) {
            Ok(()) => queued.push(client),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) => panic!("connect to the busy listener: {e}"),
        }
        assert!(queued.len() < 64, "the listener's queue never filled");
    }
    let listen = format!("unix:{}", path.display());
    h.cmd(&[
        "start",
        "/bin/sleep",
        "--name",
        "b",
        "--listen",
        &listen,
        "--",
        "1000",
    ])
    .timeout(10 * SECOND)
    .fails_with("already in use");
    // The daemon is not stuck in a connect to it.
    let out = h.cmd(&["list", "--json"]).timeout(5 * SECOND).ok();
    if !out.stdout.contains("[]") {
        h.fail(&format!("no app should exist\n{out}"));
    }
    assert!(path.exists(), "the busy socket was removed");
}

#[test]
fn another_users_live_socket_is_left_alone() {
    let h = Herdsman::new();
    let Some((uid, gid)) = other_user() else {
        println!("SKIPPED another_users_live_socket_is_left_alone: needs root");
        return;
    };
    // A directory the other user owns, holding root's live socket that only root may connect to.
    let dir = h.scratch("shared");
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the directory");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    open_path_to(&dir);
    let path = dir.join("live.sock");
    let live = UnixListener::bind(&path).expect("root's socket");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the socket");
    let inode = fs::metadata(&path).expect("stat").ino();
    // The other user's daemon, in a home of its own.
    let home = h.home();
    fs::create_dir(home).expect("create the home");
    std::os::unix::fs::chown(home, Some(uid), Some(gid)).expect("chown the home");
    fs::set_permissions(home, fs::Permissions::from_mode(0o700)).expect("chmod the home");

    let script = format!(
        "HERDSMAN_HOME='{}' exec '{}' start /bin/sleep --name b --listen 'unix:{}' -- 1000",
        home.display(),
        env!("CARGO_BIN_EXE_herdsman"),
        path.display()
    );
    let out = run_as_other(&script, 30 * SECOND);
    if out.code() != Some(1) || !out.stderr.contains("Permission denied") {
        h.fail(&format!(
            "start must refuse a socket it cannot probe, naming why\n{out}"
        ));
    }
    let now = fs::metadata(&path).map(|m| m.ino()).ok();
    if now != Some(inode) {
        h.fail(&format!(
            "root's live socket was replaced or removed (inode {inode}, now {now:?})"
        ));
    }
    UnixStream::connect(&path).expect("root's socket still answers");
    drop(live);
}

#[test]
fn a_socket_that_took_the_apps_path_survives_the_apps_stop() {
    let h = Herdsman::new();
    let path = h.scratch("sockets").join("app.sock");
    let listen = format!("unix:{}", path.display());
    h.cmd(&[
        "start",
        "/bin/sleep",
        "--name",
        "u",
        "--listen",
        &listen,
        "--",
        "1000",
    ])
    .ok();
    h.wait_online("u", 1);
    // Another program unlinks the path and binds its own socket there (unlink-then-bind).
    fs::remove_file(&path).expect("unlink the app's socket file");
    let theirs = UnixListener::bind(&path).expect("bind another socket at the path");
    h.cmd(&["stop", "u"]).ok();
    if !path.exists() {
        h.fail("stopping the app removed another program's socket file");
    }
    UnixStream::connect(&path).expect("the other program's socket still answers");
    drop(theirs);
}

// ---------------------------------------------------------------------------------------------
// Descriptors of the caller
// ---------------------------------------------------------------------------------------------

#[test]
fn an_auto_started_daemon_and_its_keeper_inherit_no_descriptor_of_the_caller() {
    let h = Herdsman::new();
    let marker = h.scratch("fds").join("caller-fd");
    let file = fs::File::create(&marker).expect("create the marker");
    let out = run_cli_with(
        &h,
        &["start", "/bin/sleep", "--name", "s", "--", "1000"],
        give_fd_7(file.as_raw_fd()),
    );
    if !out.success() {
        h.fail(&format!("start failed\n{out}"));
    }
    let worker = pids(&h.wait_online("s", 1));
    let daemon = h.daemon_pid();
    let keeper = h.wait_value("the log keeper", 10 * SECOND, || keeper(&h));
    for (what, pid) in [("daemon", daemon), ("log keeper", keeper)]
        .into_iter()
        .chain(worker.iter().map(|&p| ("worker", p)))
    {
        let leaked = fds_naming(pid, &marker);
        if !leaked.is_empty() {
            h.fail(&format!(
                "the {what} (pid {pid}) holds the caller's descriptor as fd {leaked:?}"
            ));
        }
    }
}

/// A `herdsman daemon --foreground` run by hand; killed (and reaped) when dropped.
struct Foreground<'a> {
    h: &'a Herdsman,
    child: Child,
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        let _ = self.h.cmd(&["kill"]).timeout(15 * SECOND).run();
        if wait_child(&mut self.child, 10 * SECOND).is_none() {
            eprintln!("the foreground daemon had to be killed");
        }
    }
}

#[test]
fn a_foreground_daemon_closes_the_descriptors_its_caller_left_open() {
    let h = Herdsman::new();
    let marker = h.scratch("fds").join("caller-fd");
    let file = fs::File::create(&marker).expect("create the marker");
    let log = tempfile::tempfile().expect("temp file");
    let mut command = h.command();
    command
        .args(["daemon", "--foreground"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log);
    // SAFETY: dup2 only.
    unsafe { command.pre_exec(give_fd_7(file.as_raw_fd())) };
    let child = command.spawn().expect("spawn the daemon");
    let daemon = Foreground { h: &h, child };
    let pid = daemon.child.id() as i32;
    h.wait_for("the daemon to serve", 10 * SECOND, || {
        h.cmd(&["list"]).timeout(5 * SECOND).run().success()
    });
    h.cmd(&["start", "/bin/sleep", "--name", "s", "--", "1000"])
        .ok();
    h.wait_online("s", 1);
    let keeper = h.wait_value("the log keeper", 10 * SECOND, || keeper(&h));
    for (what, pid) in [("daemon", pid), ("log keeper", keeper)] {
        let leaked = fds_naming(pid, &marker);
        if !leaked.is_empty() {
            h.fail(&format!(
                "the {what} (pid {pid}) holds its caller's descriptor as fd {leaked:?}"
            ));
        }
    }
    drop(daemon);
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[test]
fn workers_lead_sessions_of_their_own_and_cannot_join_another_apps_group() {
    let h = Herdsman::new();
    h.cmd(&["start", "/bin/sleep", "--name", "y", "--", "1000"])
        .ok();
    let target = h.wait_online("y", 1)[0].pid.expect("pid");
    let dir = h.scratch("apps");
    let script = dir.join("join.py");
    fs::write(
        &script,
        "import os, time\n\
         try:\n    os.setpgid(0, int(os.environ['TARGET']))\n    print('joined', flush=True)\n\
         except OSError as e:\n    print('refused errno', e.errno, flush=True)\n\
         time.sleep(1000)\n",
    )
    .expect("write the script");
    h.cmd(&["start", &script.display().to_string(), "--name", "x"])
        .env("TARGET", target.to_string())
        .ok();
    let joiner = h.wait_online("x", 1)[0].pid.expect("pid");
    for pid in [target, joiner] {
        if session(pid) != Some(pid) {
            h.fail(&format!(
                "worker {pid} must lead its own session, its session is {:?}",
                session(pid)
            ));
        }
    }
    h.wait_for("the joiner's verdict in its log", 10 * SECOND, || {
        h.out_log("x").contains("joined") || h.out_log("x").contains("refused")
    });
    let verdict = h.out_log("x");
    if !verdict.contains(&format!("refused errno {}", libc::EPERM)) {
        h.fail(&format!(
            "a worker of one app joined another app's process group: {verdict}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// A group, made once, that the test account is a supplementary member of.
const EXTRA_GROUP: &str = "herdsman-test-extra";

/// The gid of [`EXTRA_GROUP`], with the test account in it (made the first time, by `groupadd` and
/// `usermod -aG`, serialised; another run's concurrent change is waited for).
fn extra_group() -> u32 {
    static MAKE: Mutex<()> = Mutex::new(());
    let _guard = MAKE.lock().unwrap_or_else(|e| e.into_inner());
    let member = || {
        nix::unistd::Group::from_name(EXTRA_GROUP)
            .ok()
            .flatten()
            .filter(|g| g.mem.iter().any(|m| m == OTHER_USER))
            .map(|g| g.gid.as_raw())
    };
    let found = poll(Duration::from_secs(20), || {
        if let Some(gid) = member() {
            return Some(gid);
        }
        // Each fails while another process holds the lock on /etc/group, or once it is done.
        for args in [
            vec!["groupadd", "--system", EXTRA_GROUP],
            vec!["usermod", "-aG", EXTRA_GROUP, OTHER_USER],
        ] {
            let _ = Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        member()
    });
    found.unwrap_or_else(|| panic!("cannot put {OTHER_USER} in group {EXTRA_GROUP}"))
}

#[test]
fn a_worker_run_as_a_user_gets_its_groups_and_its_home() {
    let h = Herdsman::new();
    let Some((_, gid)) = other_user() else {
        println!("SKIPPED a_worker_run_as_a_user_gets_its_groups_and_its_home: needs root");
        return;
    };
    let extra = extra_group();
    let user = nix::unistd::User::from_name(OTHER_USER)
        .ok()
        .flatten()
        .expect("the test account");
    h.cmd(&[
        "start",
        "/bin/sleep",
        "--name",
        "u",
        "--user",
        OTHER_USER,
        "--",
        "1000",
    ])
    .env("HOME", "/root")
    .env("USER", "root")
    .env("LOGNAME", "root")
    .cwd("/")
    .ok();
    let pid = h.wait_online("u", 1)[0].pid.expect("pid");
    let got = groups(pid).unwrap_or_default();
    if !got.contains(&extra) || !got.contains(&gid) {
        h.fail(&format!(
            "the worker's groups are {got:?}; {OTHER_USER} is in {gid} and {extra}"
        ));
    }
    let home = user.dir.display().to_string();
    for (key, want) in [
        ("HOME", home.as_str()),
        ("USER", OTHER_USER),
        ("LOGNAME", OTHER_USER),
    ] {
        let value = environ(pid, key);
        if value.as_deref() != Some(want) {
            h.fail(&format!("the worker's {key} is {value:?}, not {want:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and the control server
// ---------------------------------------------------------------------------------------------

#[test]
fn the_daemon_raises_its_descriptor_limit_and_workers_get_the_callers() {
    let h = Herdsman::new();
    let (_, hard) = nofile(std::process::id() as i32).expect("our limits");
    let soft = 256.min(hard);
    let out = run_cli_with(
        &h,
        &["start", "/bin/sleep", "--name", "s", "--", "1000"],
        limit_fds(soft, hard),
    );
    if !out.success() {
        h.fail(&format!("start failed\n{out}"));
    }
    let worker = h.wait_online("s", 1)[0].pid.expect("pid");
    let daemon = h.daemon_pid();
    if nofile(daemon) != Some((hard, hard)) {
        h.fail(&format!(
            "the daemon's descriptor limit is {:?}, not raised to ({hard}, {hard})",
            nofile(daemon)
        ));
    }
    if nofile(worker) != Some((soft, hard)) {
        h.fail(&format!(
            "the worker's descriptor limit is {:?}, not the caller's ({soft}, {hard})",
            nofile(worker)
        ));
    }
}

/// Lines of the daemon log that say `accept` failed.
fn accept_warnings(h: &Herdsman) -> usize {
    fs::read_to_string(h.home().join("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("accept on the control socket"))
        .count()
}

#[test]
fn a_daemon_out_of_descriptors_warns_once_and_serves_again_once_they_are_back() {
    let h = Herdsman::new();
    // A daemon with few descriptors: its limit is its caller's (hard limit, so it cannot raise it).
    let out = run_cli_with(&h, &["daemon"], limit_fds(40, 40));
    if !out.success() {
        h.fail(&format!("`herdsman daemon` failed\n{out}"));
    }
    let socket: PathBuf = h.home().join("herdsman.sock");
    // Open control connections until one gets no greeting: the daemon is out of descriptors.
    let mut held = Vec::new();
    loop {
        let stream = UnixStream::connect(&socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut hello = String::new();
        let greeted = BufReader::new(&stream)
            .read_line(&mut hello)
            .is_ok_and(|n| n > 0);
        held.push(stream);
        if !greeted {
            break;
        }
        assert!(held.len() < 100, "the daemon never ran out of descriptors");
    }
    h.wait_for("the accept failure in the log", 5 * SECOND, || {
        accept_warnings(&h) >= 1
    });
    // It retries every 100 ms: one warning for the whole streak, not one per retry.
    h.assert_stays("one warning while accept keeps failing", 2 * SECOND, || {
        accept_warnings(&h) <= 1
    });
    held.clear();
    h.cmd(&["list"]).timeout(10 * SECOND).ok();
    h.wait_for("the daemon to say it accepts again", 5 * SECOND, || {
        fs::read_to_string(h.home().join("daemon.log"))
            .unwrap_or_default()
            .contains("accepting control connections again")
    });
}

/// Spawn attempts the daemon log records: forks that succeeded, and ones that failed in the daemon.
fn spawn_attempts(h: &Herdsman) -> usize {
    fs::read_to_string(h.home().join("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("process spawned") || l.contains("cannot spawn worker"))
        .count()
}

#[test]
fn a_child_with_no_descriptor_left_for_its_status_pipe_reports_it() {
    let h = Herdsman::new();
    // A worker that exits at once, restarted every 100 ms, by a daemon with few descriptors.
    let dir = h.scratch("apps");
    let file = dir.join("eco.toml");
    fs::write(
        &file,
        "[[apps]]\nname = \"c\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"exit 1\"]\n\
         restart_backoff = \"100ms\"\nrestart_backoff_max = \"100ms\"\n",
    )
    .expect("write the file");
    // `start` itself fails (the worker does not stay up); the daemon goes on restarting it. The daemon
    // starts with room (a hard limit of 400); then the keeper's limit is lowered to 40, while its
    // controller keeps its room: each subscription (a `monit`) takes one more of the keeper's descriptors
    // and two of the controller's, so the keeper is the one to run out. Somewhere on the way it still has
    // all it needs to fork, and the child finds none free to move its status pipe to: that failure must
    // be reported as one, not look like a program that ran and exited 127.
    let out = run_cli_with(
        &h,
        &["start", &file.display().to_string()],
        limit_fds(40, 400),
    );
    if !out.stderr.contains("did not stay up") {
        h.fail(&format!("start did not start the crashing app\n{out}"));
    }
    let few = libc::rlimit {
        rlim_cur: 40,
        rlim_max: 40,
    };
    // SAFETY: prlimit with valid pointers (the old limit is not asked for).
    if unsafe {
        libc::prlimit(
            h.daemon_pid(),
            libc::RLIMIT_NOFILE,
            &few,
            std::ptr::null_mut(),
        )
    } != 0
    {
        h.fail(&format!(
            "cannot lower the keeper's descriptor limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    let socket = h.home().join("herdsman.sock");
    let mut held = Vec::new();
    let reported = |h: &Herdsman| {
        fs::read_to_string(h.home().join("daemon.log"))
            .unwrap_or_default()
            .contains("setting up descriptors failed")
    };
    while !reported(&h) {
        let log = fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default();
        if log.contains("cannot spawn worker") && log.contains("Too many open files") {
            h.fail("the daemon ran out of descriptors before a child could report it had none");
        }
        let stream = UnixStream::connect(&socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reader = BufReader::new(&stream);
        let mut hello = String::new();
        if !reader.read_line(&mut hello).is_ok_and(|n| n > 0) {
            h.fail("the daemon stopped accepting before a spawn ran out of descriptors");
        }
        (&stream)
            .write_all(b"{\"request\":\"subscribe\",\"interval_ms\":600000}\n")
            .expect("subscribe");
        let mut snapshot = String::new();
        if !reader.read_line(&mut snapshot).is_ok_and(|n| n > 0) {
            h.fail("the daemon stopped answering before a spawn ran out of descriptors");
        }
        held.push(stream);
        // Two more attempts: the last one certainly began after this connection took its descriptor.
        let before = spawn_attempts(&h);
        h.wait_for("two more spawn attempts", 10 * SECOND, || {
            reported(&h) || spawn_attempts(&h) >= before + 2
        });
    }
}
