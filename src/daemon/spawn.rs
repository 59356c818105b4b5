//! Starting a worker: a child that shares the daemon's memory until its exec (see [`start_child`]; a plain
//! `fork` where that cannot be done) sets up its descriptors, environment and session, and execs.
//!
//! Everything the child needs is prepared before it starts, so the child allocates nothing and calls only
//! async-signal-safe functions. That is what lets `LISTEN_PID` (and `LISTEN_PIDFDID`) hold the worker's own
//! pid without an exec helper: the parent reserves room in the environment block and the child writes its
//! pid there before `execve`.
//!
//! Signals are blocked across `fork`. In the child, in order: default signal dispositions; a session of its
//! own (`setsid`: its process group is its pid, and no process of another session can join that group, so a
//! worker of one app cannot pass for a member of another's); one byte on the status pipe to say so; an empty
//! signal mask; stdin from /dev/null and stdout/stderr to what the daemon gives (the log keeper's pipes, or
//! the log files); the listening sockets (and a Node worker's readiness pipe) moved to fds 3, 4, ...; every
//! other descriptor marked close-on-exec (so nothing of the daemon's leaks); the pid written into the
//! environment; the app's user, its supplementary groups and group, if any; `chdir`; the caller's soft
//! `RLIMIT_NOFILE` back (the daemon raised its own, see [`raise_fd_limit`]); `execve`. If a step fails the
//! child writes the step and `errno` to a close-on-exec pipe and exits 127; an EOF on that pipe means
//! `execve` succeeded.
//!
//! The parent waits for the child's first byte (or EOF) before [`spawn`] returns, a matter of
//! microseconds: from then on the worker's process group exists, so a signal to it (a stop that comes at
//! once) reaches it, and an empty group really means the worker is gone.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use libc::c_char;

use crate::config::CommandLine;

/// What a worker is started with.
pub struct SpawnRequest<'a> {
    pub command: &'a CommandLine,
    /// The environment, without the socket-activation variables that depend on the pid.
    pub env: Vec<(String, String)>,
    pub cwd: &'a Path,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    /// Become fds 3, 4, ... in this order: the listening sockets first, then any other channel.
    pub inherit: &'a [BorrowedFd<'a>],
    /// Add `LISTEN_PID` (and `LISTEN_PIDFDID`): the first fds are listening sockets.
    pub activation: bool,
    /// Add `WATCHDOG_PID`: the app has a watchdog.
    pub watchdog: bool,
    /// Run as this user.
    pub credentials: Option<&'a Credentials>,
}

/// Who a worker runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups, as `initgroups(3)` sets them for a login.
    pub groups: Vec<u32>,
}

/// A forked worker, and the pipe that reports whether its exec succeeded.
pub struct Spawned {
    pub pid: i32,
    pub exec_status: OwnedFd,
    /// The child's start time as `/proc/PID/stat` gives it (field 22, clock ticks since boot), when the
    /// spawn could tell it for certain: the boot-time clock read before and after `clone` fell in the
    /// same tick.
    pub start: Option<u64>,
}

/// The step of the child's set-up that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Descriptors,
    WorkingDirectory,
    Exec,
    Credentials,
    Session,
    Limits,
}

/// Why a child never ran its program.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", match .step {
    Step::Descriptors => "setting up descriptors failed",
    Step::WorkingDirectory => "cannot enter the working directory",
    Step::Exec => "cannot execute the program",
    Step::Credentials => "cannot switch to the app's user and group",
    Step::Session => "cannot start a session of its own",
    Step::Limits => "cannot restore the descriptor limit",
}, io::Error::from_raw_os_error(*.errno))]
pub struct ExecError {
    pub step: Step,
    pub errno: i32,
}

const PID_DIGITS: usize = 20;

/// The byte a child writes on its status pipe once it leads its own session. Never a step's code.
const IN_SESSION: u8 = b'S';
/// How long [`spawn`] waits for that byte at most (it comes in microseconds; this bounds a stalled child).
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The soft and hard `RLIMIT_NOFILE` the daemon started with, when [`raise_fd_limit`] raised the soft one.
static ORIGINAL_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// The soft and hard `RLIMIT_NOFILE` the daemon started with, if it raised the soft one.
pub fn original_fd_limit() -> Option<(u64, u64)> {
    ORIGINAL_NOFILE.get().map(|l| (l.rlim_cur, l.rlim_max))
}

/// After an in-place re-exec: the limit the daemon started with, as its old image recorded it (its own
/// was raised already).
pub fn restore_fd_limit(original: Option<(u64, u64)>) {
    if let Some((soft, hard)) = original {
        let _ = ORIGINAL_NOFILE.set(libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        });
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one, for the daemon's own sake: each worker costs it two or
/// three descriptors, and a daemon started from a shell (soft limit 1024) would run out after a few hundred.
/// Workers get the original soft limit back before they exec (a program may rely on it, as `select(2)` does
/// on 1024). Call once, at the daemon's start.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit and setrlimit fill and read plain structs.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        // The kernel refuses a soft limit above fs.nr_open.
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
            .unwrap_or(1 << 20)
    } else {
        limit.rlim_max
    };
    if target <= limit.rlim_cur {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(
            soft = limit.rlim_cur,
            error = %io::Error::last_os_error(),
            "cannot raise the soft descriptor limit"
        );
        return;
    }
    let _ = ORIGINAL_NOFILE.set(limit);
    tracing::info!(
        from = limit.rlim_cur,
        to = target,
        "raised the soft descriptor limit"
    );
}

/// Whether pidfds have unique inode numbers here (pidfs, Linux 6.9+), which `LISTEN_PIDFDID` requires.
fn pidfd_ids_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        const PID_FS_MAGIC: i64 = 0x5049_4446;
        // SAFETY: plain syscalls on a descriptor this function owns.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as RawFd;
            if fd < 0 {
                return false;
            }
            let mut fs: libc::statfs = std::mem::zeroed();
            let ok = libc::fstatfs(fd, &mut fs) == 0 && fs.f_type as i64 == PID_FS_MAGIC;
            libc::close(fd);
            ok
        }
    })
}

/// The argv, environment and descriptors of one child, laid out before fork.
struct Plan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    env: Vec<Vec<u8>>,
    env_ptrs: Vec<*const c_char>,
    /// Index in `env` of `LISTEN_PID=`, and the offset of its digits.
    pid_slot: Option<(usize, usize)>,
    pidfdid_slot: Option<(usize, usize)>,
    /// Index in `env` of `WATCHDOG_PID=`, and the offset of its digits.
    watchdog_slot: Option<(usize, usize)>,
    cwd: CString,
    /// /dev/null, opened once for every worker (see [`dev_null`]).
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    inherit: Vec<RawFd>,
    credentials: Option<(u32, u32)>,
    groups: Vec<libc::gid_t>,
    /// The descriptor limit to give back to the program (see [`raise_fd_limit`]).
    nofile: Option<libc::rlimit>,
    scratch: Vec<RawFd>,
    /// Started with `CLONE_FILES`: the child shares the daemon's table until `unshare_below_parked`.
    share_files: bool,
}

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

impl Plan {
    fn new(request: &SpawnRequest<'_>) -> io::Result<Plan> {
        let program = cstring(
            request.command.program.as_os_str().as_bytes(),
            "the program path",
        )?;
        let argv = request
            .command
            .argv
            .iter()
            .map(|arg| cstring(arg.as_bytes(), "an argument"))
            .collect::<io::Result<Vec<_>>>()?;
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());

        let mut env = Vec::with_capacity(request.env.len() + 2);
        for (key, value) in &request.env {
            if key.is_empty() || key.contains('=') {
                continue;
            }
            let mut entry = format!("{key}={value}").into_bytes();
            if entry.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("environment variable {key} contains a NUL byte"),
                ));
            }
            entry.push(0);
            env.push(entry);
        }
        let mut reserve = |name: &str| {
            let mut entry = format!("{name}=").into_bytes();
            let offset = entry.len();
            entry.resize(offset + PID_DIGITS + 1, 0);
            env.push(entry);
            (env.len() - 1, offset)
        };
        let activated = request.activation;
        let pid_slot = activated.then(|| reserve("LISTEN_PID"));
        let pidfdid_slot = (activated && pidfd_ids_supported()).then(|| reserve("LISTEN_PIDFDID"));
        let watchdog_slot = request.watchdog.then(|| reserve("WATCHDOG_PID"));
        let mut env_ptrs: Vec<*const c_char> = env.iter().map(|e| e.as_ptr().cast()).collect();
        env_ptrs.push(std::ptr::null());

        let stdin = dev_null()?;
        Ok(Plan {
            program,
            _argv: argv,
            argv_ptrs,
            env,
            env_ptrs,
            pid_slot,
            pidfdid_slot,
            watchdog_slot,
            cwd: cstring(request.cwd.as_os_str().as_bytes(), "the working directory")?,
            stdin,
            stdout: request.stdout.as_raw_fd(),
            stderr: request.stderr.as_raw_fd(),
            inherit: request.inherit.iter().map(|fd| fd.as_raw_fd()).collect(),
            credentials: request.credentials.map(|c| (c.uid, c.gid)),
            groups: request
                .credentials
                .map(|c| c.groups.clone())
                .unwrap_or_default(),
            nofile: ORIGINAL_NOFILE.get().copied(),
            scratch: vec![-1; request.inherit.len()],
            share_files: false,
        })
    }

    /// The daemon's descriptors the child moves into place.
    fn needed(&self) -> impl Iterator<Item = RawFd> + '_ {
        [self.stdin, self.stdout, self.stderr]
            .into_iter()
            .chain(self.inherit.iter().copied())
    }
}

/// Forks and execs a worker. Returns at once; the exec result arrives on `exec_status`.
pub fn spawn(request: &SpawnRequest<'_>) -> io::Result<Spawned> {
    let mut plan = Plan::new(request)?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills `fds` on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Signals are blocked across fork, so none reaches the child while it still has the daemon's handlers;
    // the child resets the handlers, then unblocks.
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only fill and swap masks.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
    }
    // The child shares the daemon's descriptor table until it has taken a copy of the part below the
    // parked descriptors, if everything it needs is there: no copy of the whole table at each spawn.
    plan.share_files = plan.needed().all(|fd| fd < crate::descriptors::PARKED_BASE)
        && write.as_raw_fd() < crate::descriptors::PARKED_BASE;
    let before = boot_ticks();
    let forked = start_child(&mut plan, write.as_raw_fd());
    let after = boot_ticks();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    match forked {
        -1 => Err(io::Error::last_os_error()),
        pid => {
            drop(write);
            // The child makes its own session and group; the parent cannot (setpgid here would make the
            // child a group leader first, and its setsid would then fail). Wait for it instead.
            wait_in_session(&read);
            Ok(Spawned {
                pid,
                exec_status: read,
                start: before.filter(|&b| Some(b) == after),
            })
        }
    }
}

/// /dev/null, the standard input of every worker: opened at the first spawn and kept (close-on-exec).
fn dev_null() -> io::Result<RawFd> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(null) = NULL.get() {
        return Ok(null.as_raw_fd());
    }
    let opened: OwnedFd = std::fs::File::open("/dev/null")?.into();
    Ok(NULL.get_or_init(|| opened).as_raw_fd())
}

/// The boot-time clock in the clock ticks of `/proc/PID/stat`'s start time (the kernel's `nsec_to_clock_t`
/// of the same clock, taken when a process is created).
fn boot_ticks() -> Option<u64> {
    static NS_PER_TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let per_tick = *NS_PER_TICK.get_or_init(|| {
        // SAFETY: sysconf with a constant argument.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        match u64::try_from(hz) {
            Ok(hz) if hz > 0 && 1_000_000_000 % hz == 0 => 1_000_000_000 / hz,
            _ => 0,
        }
    });
    if per_tick == 0 {
        return None;
    }
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let ns = u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    Some(ns / per_tick)
}

/// The child's stack while it shares the daemon's memory (it needs a few kilobytes).
const CHILD_STACK: usize = 256 * 1024;

/// What the child of [`start_child`] is given.
struct ChildArgs {
    plan: *mut Plan,
    status: RawFd,
}

extern "C" fn child_entry(args: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `start_child` passes a `ChildArgs` that outlives the child's use of it: the parent is
    // suspended (CLONE_VFORK) until the child has executed its program or exited.
    unsafe {
        let args = &mut *(args as *mut ChildArgs);
        child(&mut *args.plan, args.status)
    }
}

/// Starts the child and returns its pid (or -1). The child shares the daemon's memory until it executes its
/// program (`clone` with CLONE_VM | CLONE_VFORK, as `posix_spawn` does): nothing of the daemon's memory is
/// copied, so starting a worker costs the same however large the daemon is, and the daemon waits the few
/// hundred microseconds until the exec. Where that cannot be done, a plain `fork`.
fn start_child(plan: &mut Plan, status: RawFd) -> libc::pid_t {
    thread_local! {
        /// The child's stack, kept for the next one: a child runs on it only while this thread waits.
        static STACK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.len() < CHILD_STACK {
            *stack = vec![0u8; CHILD_STACK];
        }
        start_child_on(plan, status, &mut stack)
    })
}

fn start_child_on(plan: &mut Plan, status: RawFd, stack: &mut [u8]) -> libc::pid_t {
    let mut args = ChildArgs {
        plan: plan as *mut Plan,
        status,
    };
    // SAFETY: the stack grows down from its end (aligned to 16); the child runs only `child`, which calls
    // async-signal-safe functions, allocates nothing, changes its credentials with raw system calls (the
    // C library's would act on the daemon's threads, whose memory it shares) and never returns; the parent
    // is suspended until the child has executed its program or exited, so `stack` and `args` outlive it.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = top.sub(top as usize % 16);
        libc::clone(
            child_entry,
            top.cast(),
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | libc::SIGCHLD
                | if plan.share_files {
                    libc::CLONE_FILES
                } else {
                    0
                },
            (&mut args as *mut ChildArgs).cast(),
        )
    };
    if pid >= 0 {
        return pid;
    }
    // SAFETY: the child only runs `child`, which is async-signal-safe and never returns.
    let forked = unsafe { libc::fork() };
    if forked == 0 {
        unsafe { child(plan, status) }
    }
    forked
}

/// Waits, [`SESSION_WAIT`] at most, until the child has written to its status pipe or closed it: it then
/// leads its own session (or failed, which the exec result reports). Reads nothing.
fn wait_in_session(status: &OwnedFd) {
    let deadline = std::time::Instant::now() + SESSION_WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [libc::pollfd {
            fd: status.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis() as libc::c_int) };
        if ready > 0 {
            return;
        }
        if ready == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            tracing::warn!("a new worker did not start its session in time");
            return;
        }
    }
}

/// Waits for the child's exec: `Ok` once it succeeded (the pipe closed with nothing written but the
/// session byte).
pub async fn exec_result(status: OwnedFd) -> Result<(), ExecError> {
    use tokio::io::AsyncReadExt;
    let unknown = ExecError {
        step: Step::Exec,
        errno: libc::EIO,
    };
    let mut receiver =
        tokio::net::unix::pipe::Receiver::from_owned_fd(status).map_err(|_| unknown.clone())?;
    // The session byte, then a report of 5 bytes if a step failed.
    let mut bytes = [0u8; 6];
    let mut filled = 0;
    while filled < bytes.len() {
        match receiver.read(&mut bytes[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(unknown),
        }
    }
    parse_report(&bytes[..filled]).unwrap_or(Err(unknown))
}

/// What the child wrote on its status pipe: `None` when it makes no sense.
fn parse_report(bytes: &[u8]) -> Option<Result<(), ExecError>> {
    let report = bytes.strip_prefix(&[IN_SESSION]).unwrap_or(bytes);
    match report {
        [] => Some(Ok(())),
        [step, e @ ..] if e.len() == 4 => Some(Err(ExecError {
            step: match step {
                0 => Step::Descriptors,
                1 => Step::WorkingDirectory,
                3 => Step::Credentials,
                4 => Step::Session,
                5 => Step::Limits,
                _ => Step::Exec,
            },
            errno: i32::from_le_bytes([e[0], e[1], e[2], e[3]]),
        })),
        _ => None,
    }
}

/// Writes `value` in decimal at `dst`, NUL-terminated. Async-signal-safe.
unsafe fn write_decimal(dst: *mut u8, mut value: u64) {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: the slot has room for PID_DIGITS digits and a NUL.
        unsafe { *dst.add(i) = digits[len - 1 - i] };
    }
    unsafe { *dst.add(len) = 0 };
}

/// Reports a failed step to the parent and exits. Async-signal-safe.
unsafe fn fail(status: RawFd, step: u8) -> ! {
    unsafe {
        let errno = *libc::__errno_location();
        let e = errno.to_le_bytes();
        let report = [step, e[0], e[1], e[2], e[3]];
        libc::write(status, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// The child side of [`spawn`]. Calls only async-signal-safe functions and never returns.
unsafe fn child(plan: &mut Plan, status: RawFd) -> ! {
    unsafe {
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        // A table of its own first: until then each descriptor is the daemon's. (After a plain `fork`
        // the table is its own already: this only closes the parked copies.)
        if crate::descriptors::unshare_below_parked().is_err() {
            fail(status, 0);
        }
        // A session of its own: its group (= its pid) exists before the parent goes on, and no worker of
        // another session (another app) can join it.
        if libc::setsid() < 0 {
            fail(status, 4);
        }
        libc::write(status, [IN_SESSION].as_ptr().cast(), 1);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());

        let first_free = 3 + plan.inherit.len() as RawFd;
        // Keep the status pipe out of the range the sockets are about to take. If that fails, the original
        // is still open (nothing has been moved yet): report there.
        let moved = libc::fcntl(status, libc::F_DUPFD_CLOEXEC, first_free);
        if moved < 0 {
            fail(status, 0);
        }
        let status = moved;
        if libc::dup2(plan.stdin, 0) < 0
            || libc::dup2(plan.stdout, 1) < 0
            || libc::dup2(plan.stderr, 2) < 0
        {
            fail(status, 0);
        }
        for (i, &fd) in plan.inherit.iter().enumerate() {
            plan.scratch[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free);
            if plan.scratch[i] < 0 {
                fail(status, 0);
            }
        }
        for (i, &fd) in plan.scratch.iter().enumerate() {
            if libc::dup2(fd, 3 + i as RawFd) < 0 {
                fail(status, 0);
            }
        }
        crate::descriptors::cloexec_range(first_free, None);

        let pid = libc::getpid();
        if let Some((index, offset)) = plan.pid_slot {
            write_decimal(plan.env[index].as_mut_ptr().add(offset), pid as u64);
        }
        if let Some((index, offset)) = plan.watchdog_slot {
            write_decimal(plan.env[index].as_mut_ptr().add(offset), pid as u64);
        }
        if let Some((index, offset)) = plan.pidfdid_slot {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as RawFd;
            let mut stat: libc::stat = std::mem::zeroed();
            if pidfd >= 0 && libc::fstat(pidfd, &mut stat) == 0 {
                write_decimal(plan.env[index].as_mut_ptr().add(offset), stat.st_ino);
            } else {
                // No id to give: drop the variable rather than pass a wrong one.
                let mut i = index;
                while !plan.env_ptrs[i].is_null() {
                    plan.env_ptrs[i] = plan.env_ptrs[i + 1];
                    i += 1;
                }
            }
            if pidfd >= 0 {
                libc::close(pidfd);
            }
        }

        // Raw system calls: the C library's wrappers would also change the credentials of every thread of
        // the daemon, whose memory this child may share (see `start_child`).
        if let Some((uid, gid)) = plan.credentials
            && (libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr()) != 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0)
        {
            fail(status, 3);
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(status, 1);
        }
        // Last: lowering the soft limit earlier could leave no room for the descriptors moved above.
        if let Some(limit) = &plan.nofile
            && libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0
        {
            fail(status, 5);
        }
        libc::execve(
            plan.program.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.env_ptrs.as_ptr(),
        );
        fail(status, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_from_the_boot_clock_is_the_one_proc_gives() {
        // A child created between two readings of the same tick started in that tick.
        for _ in 0..50 {
            let before = boot_ticks().expect("the boot-time clock");
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .expect("sleep starts");
            let after = boot_ticks().expect("the boot-time clock");
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
            let _ = child.kill();
            let _ = child.wait();
            if before != after {
                continue;
            }
            let stat = stat.expect("the child's stat");
            let start: u64 = stat[stat.rfind(')').expect("a command name") + 1..]
                .split_whitespace()
                .nth(19)
                .and_then(|f| f.parse().ok())
                .expect("field 22");
            assert_eq!(start, before);
            return;
        }
        panic!("no spawn fell within one clock tick in 50 tries");
    }

    #[test]
    fn the_status_pipe_reads_as_a_session_byte_then_an_optional_report() {
        assert!(matches!(parse_report(&[]), Some(Ok(()))));
        assert!(matches!(parse_report(&[IN_SESSION]), Some(Ok(()))));
        let einval = libc::EINVAL.to_le_bytes();
        let report = [0, einval[0], einval[1], einval[2], einval[3]];
        // A report without the session byte: the child failed before (setsid) or the byte was read.
        for bytes in [report.to_vec(), [&[IN_SESSION][..], &report].concat()] {
            match parse_report(&bytes) {
                Some(Err(ExecError { step, errno })) => {
                    assert_eq!((step, errno), (Step::Descriptors, libc::EINVAL));
                }
                other => panic!("{bytes:?} read as {other:?}"),
            }
        }
        assert!(parse_report(&[IN_SESSION, 2, 0]).is_none());
    }
}
