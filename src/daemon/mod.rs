//! The daemon's keeper: wiring. Takes the home's lock, becomes a child subreaper, binds the control socket
//! (for its controller, `crate::controller`, which it starts and starts again whenever it exits) and its
//! own socket, runs its server and the supervisor on one current-thread runtime, and on shutdown removes
//! what it created.
//!
//! Shutdown is a value, not an exit: SIGTERM, SIGINT and a `kill` request all become one message to the
//! supervisor, which stops every app and returns; [`run`] then removes the socket and pid file, lets
//! connections flush their last replies, and returns to `main`.
//!
//! A panic that unwinds out of the runtime (the supervisor's loop, the wiring) ends the daemon: the socket
//! and pid file are removed on its way out. A panic inside a spawned task (one control connection, say) is
//! caught by tokio and the daemon goes on serving, so its files stay: removing them would leave a live
//! daemon nobody can reach and let a second one start on the same home.

mod accept_queue;
mod adopted;
mod balance;
mod controller;
pub mod fdstore;
mod groups;
mod handover;
mod hook;
pub mod jobstore;
mod listener;
mod metrics;
pub mod persist;
mod pidfd;
mod procstat;
mod ready;
mod server;
mod spawn;
mod supervisor;
mod watch;
mod watchdog;
mod worker;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::info;

use crate::home::Home;
pub use handover::upgrade_check;
pub use supervisor::{HOOK_TIMEOUT, HOOKS_PER_MINUTE};

/// The record of what ran (`state.json` and the apps' file it names) that a new keeper adopts, as read.
pub mod state_record {
    pub use super::supervisor::{AppRecord, Record, decode_apps, decode_record};
}
use supervisor::{Message, Supervisor};

/// The Node listen preload, written into the home when the daemon starts.
const NODE_PRELOAD: &str = include_str!("node/listen.cjs");

/// How the daemon runs.
#[derive(Clone, Default)]
pub struct Options {
    /// Start the apps of the dump once up (`--resurrect`).
    pub resurrect: bool,
    /// Stop everything when a worker cannot be kept running (errored): the container entry point's rule.
    pub exit_when_errored: bool,
    /// systemd's notification socket, when systemd started the daemon.
    pub notifier: Option<crate::systemd::Notifier>,
    /// The daemon runs on a thread of another command (`run`): it cannot re-execute itself (`update`).
    pub in_process: bool,
    /// This keeper was just re-executed in place (`update`): the state its old image left.
    pub handover_fd: Option<std::os::fd::RawFd>,
}

/// What the daemon's run came to.
pub struct Outcome {
    /// An app could not be kept running (with `exit_when_errored`), or the resurrection failed.
    pub failed: bool,
}

/// Runs the daemon in this process until it is told to stop.
pub fn run(home: Home, options: Options) -> Result<Outcome> {
    let handover = options.handover_fd.map(handover::take).transpose()?;
    open_standard_descriptors();
    match &handover {
        Some(h) => spawn::restore_fd_limit(h.context.nofile),
        None => spawn::raise_fd_limit(),
    }
    crate::heap::tune();
    home.create()?;
    let lock = match &handover {
        // SAFETY: inherited for this alone; the lock is the open file's, so the home stays locked.
        Some(h) => unsafe { File::from_raw_fd(h.context.lock) },
        None => lock(&home)?,
    };
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        tracing::warn!(
            "cannot become a child subreaper; orphaned grandchildren will not be reaped here"
        );
    }
    write_private(&home.node_preload(), NODE_PRELOAD.as_bytes())?;
    let socket_path = home.socket();
    if handover.is_none() {
        remove_stale_socket(&socket_path)?;
        remove_stale_socket(&home.keeper_socket())?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let files = [socket_path.clone(), home.keeper_socket(), home.pid_file()];
    let lock_fd = lock.as_raw_fd();
    let outcome = removing_on_panic(&files, || {
        runtime.block_on(serve(home, &socket_path, options, handover, lock_fd))
    });
    drop(lock);
    outcome
}

/// Runs `f`; if a panic unwinds out of it (it is going to end the daemon), removes `files` first.
fn removing_on_panic<T>(files: &[PathBuf], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            for file in files {
                let _ = fs::remove_file(file);
            }
            std::panic::resume_unwind(panic)
        }
    }
}

async fn serve(
    home: Home,
    socket_path: &Path,
    mut options: Options,
    handover: Option<handover::Handover>,
    lock_fd: std::os::fd::RawFd,
) -> Result<Outcome> {
    let keeper_path = home.keeper_socket();
    let (control, listener, notify) = match &handover {
        None => bind_sockets(socket_path, &keeper_path)?,
        Some(h) => {
            let c = &h.context;
            // SAFETY: each was inherited for this alone, and is owned by nothing else.
            let (control, keeper, notify) = unsafe {
                (
                    std::os::unix::net::UnixListener::from_raw_fd(c.control),
                    std::os::unix::net::UnixListener::from_raw_fd(c.keeper),
                    std::os::fd::OwnedFd::from_raw_fd(c.notify),
                )
            };
            keeper.set_nonblocking(true)?;
            let listener =
                UnixListener::from_std(keeper).context("cannot use the keeper's socket")?;
            let notify = ready::NotifySocket::from_fd(notify, c.notify_address.clone())
                .context("cannot use the notify socket")?;
            if options.notifier.is_none() {
                options.notifier = c.notifier.clone().map(crate::systemd::Notifier::new);
            }
            (control, listener, notify)
        }
    };
    if let Some(notifier) = &options.notifier {
        fdstore::enable(notifier);
    }
    let context = handover::ExecContext {
        lock: lock_fd,
        control: control.as_raw_fd(),
        keeper: listener.as_raw_fd(),
        notify: notify.raw_fd(),
        notify_address: notify.address.clone(),
        notifier: options.notifier.as_ref().map(|n| n.address().to_string()),
        nofile: spawn::original_fd_limit(),
    };
    handover::adopted(&[
        context.lock,
        context.control,
        context.keeper,
        context.notify,
    ]);

    let sigchld = signal(SignalKind::child()).context("cannot watch SIGCHLD")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;

    let (tx, rx) = mpsc::unbounded_channel();
    let shared = std::sync::Arc::new(controller::Shared::default());
    let restored = handover.is_some();
    let mut supervisor = match handover {
        None => Supervisor::new(home.clone(), tx.clone(), notify.address.clone()),
        Some(h) => {
            handover::adopted(&h.state_fds());
            shared.set_restarts(h.controller_restarts);
            if let Some(old) = h.controller {
                shared.set_previous(old);
                // The old image's controller passes on its last answers and exits; a new one starts below.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(old),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            info!(from = %h.from_version, to = crate::VERSION, "keeper re-executed in place");
            // SAFETY: the descriptors the handover names were inherited for this alone.
            unsafe {
                Supervisor::restore(
                    home.clone(),
                    tx.clone(),
                    notify.address.clone(),
                    h.state,
                    h.updates,
                )
            }
        }
    };
    supervisor.exit_when_errored = options.exit_when_errored;
    supervisor.controller = Some(shared.clone());
    if !options.in_process {
        match restored {
            true => supervisor.record_at(home.state_file()),
            false => supervisor.adopt_and_record(home.state_file()),
        }
    }
    supervisor.exec_context = (!options.in_process).then_some(context);
    let notify = tokio::spawn(notify.serve(tx.clone()));
    // Each connection task holds a clone of `alive`; when the last is dropped, every reply has been flushed.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let notifier = options.notifier.clone();
    let server = tokio::spawn(server::serve(
        listener,
        tx.clone(),
        alive,
        notifier.clone(),
        shared.clone(),
    ));
    let (stop_controller, stop) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(controller::keep(control, shared, stop));
    let signal_tx = tx.clone();
    let signal_notifier = notifier.clone();
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM received"),
                _ = sigint.recv() => info!("SIGINT received"),
                _ = sighup.recv() => { info!("SIGHUP ignored"); continue; }
            }
            if let Some(notifier) = &signal_notifier {
                notifier.notify("STOPPING=1");
            }
            if signal_tx.send(Message::Shutdown).is_err() {
                return;
            }
        }
    });
    let watchdog = tokio::spawn(watchdog(notifier.clone()));
    tokio::spawn(crate::logs::daemon_log::keep_small(home.daemon_log()));
    info!(pid = std::process::id(), socket = %socket_path.display(), "keeper serving");
    let startup = tokio::spawn(announce_ready(tx.clone(), options.resurrect, notifier));

    let (kill_replies, mut failed) = supervisor.run(rx, sigchld).await;
    failed |= startup.is_finished() && matches!(startup.await, Ok(false));

    server.abort();
    signals.abort();
    notify.abort();
    watchdog.abort();
    let _ = server.await;
    // Remove our files before answering `kill`, so that a daemon started right after it keeps its own.
    let _ = fs::remove_file(socket_path);
    let _ = fs::remove_file(&keeper_path);
    let _ = fs::remove_file(home.pid_file());
    for reply in kill_replies {
        let _ = reply.send(crate::protocol::Response::Ok);
    }
    // Let the connections write their last replies (the `kill` that stopped us is waiting for its answer),
    // then the controller pass them on and exit.
    let _ = tokio::time::timeout(Duration::from_secs(2), all_closed.recv()).await;
    let _ = stop_controller.send(true);
    let _ = controller.await;
    info!("daemon stopped");
    Ok(Outcome { failed })
}

/// Binds the control socket (the controller's, which the keeper keeps a copy of, so that it stays open while
/// one controller is replaced by the next: connections wait in its backlog), the keeper's own socket, and
/// the workers' notify socket.
fn bind_sockets(
    socket_path: &Path,
    keeper_path: &Path,
) -> Result<(
    std::os::unix::net::UnixListener,
    UnixListener,
    ready::NotifySocket,
)> {
    let control = std::os::unix::net::UnixListener::bind(socket_path)
        .with_context(|| format!("cannot bind the control socket {}", socket_path.display()))?;
    fs::set_permissions(socket_path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", socket_path.display()))?;
    let listener = UnixListener::bind(keeper_path)
        .with_context(|| format!("cannot bind the keeper's socket {}", keeper_path.display()))?;
    fs::set_permissions(keeper_path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", keeper_path.display()))?;
    let notify = ready::NotifySocket::bind().context("cannot bind the notify socket")?;
    Ok((control, listener, notify))
}

/// Resurrects the dump's apps if asked, then tells systemd the daemon is ready. Returns false when the
/// resurrection failed.
async fn announce_ready(
    tx: mpsc::UnboundedSender<Message>,
    resurrect: bool,
    notifier: Option<crate::systemd::Notifier>,
) -> bool {
    let mut ok = true;
    if resurrect {
        let (reply, mut answers) = mpsc::unbounded_channel();
        let request = crate::protocol::Request::Resurrect;
        if tx.send(Message::Request { request, reply }).is_err() {
            return false;
        }
        while let Some(answer) = answers.recv().await {
            if answer.is_progress() {
                continue;
            }
            if let crate::protocol::Response::Error { message, .. } = &answer {
                tracing::error!(%message, "resurrect failed");
                ok = false;
            }
            break;
        }
    }
    if let Some(notifier) = notifier {
        notifier.notify("READY=1");
    }
    info!("daemon ready");
    ok
}

/// Sends `WATCHDOG=1` at half the interval systemd asks for, while the daemon's loop runs.
async fn watchdog(notifier: Option<crate::systemd::Notifier>) {
    let (Some(notifier), Some(interval)) = (notifier, crate::systemd::watchdog_interval()) else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        notifier.notify("WATCHDOG=1");
    }
}

/// Opens /dev/null on any of fds 0, 1 and 2 that is closed, so that nothing the daemon opens lands there
/// (a worker's stdout would then be a socket or a lock file).
fn open_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: fcntl F_GETFD only queries; open returns the lowest free descriptor, this one.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// Takes the home's exclusive lock (flock on `daemon.pid`) and writes the pid; a second daemon fails here.
fn lock(home: &Home) -> Result<File> {
    let path = home.pid_file();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        bail!(
            "a herdsman daemon is already running for {} (pid {})",
            home.root().display(),
            pid.trim()
        );
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// A socket file left by a daemon that died: remove it (the lock proves nobody serves it). One that another
/// user owns, or that its group or others can write, was not left by a daemon of ours (which binds it 0600):
/// the daemon refuses to start, naming the file, rather than guess who made it and why.
fn remove_stale_socket(path: &Path) -> Result<()> {
    match nix::sys::stat::lstat(path) {
        Ok(stat) => {
            if let Some(why) =
                crate::secure_fs::untrusted(&stat, crate::secure_fs::Owner::Euid, false)
            {
                bail!(
                    "{} {why}: herdsman's sockets are its user's own and writable by no one else; remove \
                     the file (no daemon serves it: the home's lock is free) and start again",
                    path.display()
                );
            }
        }
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot stat {}", path.display()));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
    }
}

/// Writes a file atomically (temporary file, fsync, rename) with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> [PathBuf; 2] {
        let files = [dir.join("herdsman.sock"), dir.join("daemon.pid")];
        for file in &files {
            fs::write(file, "").expect("create");
        }
        files
    }

    #[test]
    fn a_panic_in_a_task_leaves_the_files_of_a_daemon_that_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = files(dir.path());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let outcome = removing_on_panic(&files, || {
            runtime.block_on(async {
                let task = tokio::spawn(async { panic!("a task panics") });
                task.await.is_err_and(|e| e.is_panic())
            })
        });
        assert!(outcome, "the task's panic was caught");
        assert!(files.iter().all(|f| f.exists()));
    }

    #[test]
    fn a_panic_that_ends_the_daemon_removes_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = files(dir.path());
        let unwound = std::panic::catch_unwind(|| {
            removing_on_panic(&files, || -> () { panic!("the supervisor panics") })
        });
        assert!(unwound.is_err(), "the panic goes on unwinding");
        assert!(files.iter().all(|f| !f.exists()));
    }
}
