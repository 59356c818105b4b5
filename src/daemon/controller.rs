//! The keeper's side of its controller: starting `herdsman controller`, and starting a new one whenever it
//! exits, so the control socket is served again within milliseconds of a controller's death (SIGKILL, a
//! panic, the OOM killer) while the workers, their sockets and the crash-restart policy stay here.
//!
//! The controller inherits the control socket's listening descriptor, which the keeper keeps a copy of:
//! connections made while no controller runs wait in its backlog and are served by the next one. It is
//! watched through a pidfd (readable once it has exited); the supervisor's reaper reaps it like any child.
//! A controller that keeps dying quickly is started again after a delay that doubles up to
//! [`MAX_DELAY`], so a broken binary cannot make the keeper spin.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::{info, warn};

/// A controller that ran at least this long before exiting is started again at once.
const STABLE: Duration = Duration::from_secs(1);
/// The first delay before starting again a controller that died quickly; it doubles with each quick death.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long a stopping keeper waits for its controller to pass on the last answers and exit.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// What the rest of the keeper may know about its controller: its pid (0 while none runs), read by the
/// keeper's socket to let only it in, and how many times one was started again.
#[derive(Default)]
pub struct Shared {
    pid: AtomicI32,
    restarts: AtomicU32,
    /// The controller of the keeper's previous image (before an `update`), finishing its last answers.
    previous: AtomicI32,
}

impl Shared {
    /// The running controller's pid.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&pid| pid > 0)
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Whether `pid` may use the keeper's socket: the running controller, or the previous image's while it
    /// finishes.
    pub fn admits(&self, pid: Option<i32>) -> bool {
        pid.is_some_and(|pid| {
            pid > 0
                && (pid == self.pid.load(Ordering::SeqCst)
                    || pid == self.previous.load(Ordering::SeqCst))
        })
    }

    /// The previous image's controller, told to finish.
    pub fn set_previous(&self, pid: i32) {
        self.previous.store(pid, Ordering::SeqCst);
    }

    /// Carries the count over an in-place re-exec.
    pub fn set_restarts(&self, restarts: u32) {
        self.restarts.store(restarts, Ordering::SeqCst);
    }
}

/// The delay before starting a controller again, from how long the last one ran and how many quick deaths
/// came before it in a row (counting this one). `None`: at once.
pub fn restart_delay(uptime: Duration, quick_deaths: u32) -> Option<Duration> {
    if uptime >= STABLE || quick_deaths <= 1 {
        return None;
    }
    let doublings = (quick_deaths - 2).min(16);
    Some((FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY))
}

/// Keeps a controller running until `stop` turns true; then asks it to finish (SIGTERM) and waits for it
/// a few seconds.
pub async fn keep(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut quick_deaths = 0u32;
    loop {
        let started = Instant::now();
        let running = match start(&listener) {
            Ok(running) => Some(running),
            Err(error) => {
                warn!(%error, "cannot start the controller");
                None
            }
        };
        if let Some(running) = &running {
            shared.pid.store(running.pid, Ordering::SeqCst);
            info!(pid = running.pid, "controller started");
            tokio::select! {
                _ = running.exited() => {}
                _ = stopped(&mut stop) => {
                    running.finish().await;
                    shared.pid.store(0, Ordering::SeqCst);
                    return;
                }
            }
            shared.pid.store(0, Ordering::SeqCst);
        }
        let uptime = started.elapsed();
        quick_deaths = if uptime >= STABLE {
            1
        } else {
            quick_deaths + 1
        };
        let delay = restart_delay(uptime, quick_deaths);
        if let Some(running) = &running {
            warn!(
                pid = running.pid,
                uptime_ms = uptime.as_millis() as u64,
                "the controller exited: starting a new one{}",
                delay.map_or(String::new(), |d| format!(" in {} ms", d.as_millis()))
            );
        }
        if let Some(delay) = delay.or(running.is_none().then_some(MAX_DELAY)) {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => return,
            }
        }
        shared.restarts.fetch_add(1, Ordering::SeqCst);
    }
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// A running controller.
struct Running {
    pid: i32,
    /// Readable once the process has exited; `None` where the kernel has no pidfds (then /proc is polled).
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl Running {
    /// Waits until the controller has exited (it may already be reaped by the supervisor).
    async fn exited(&self) {
        match &self.pidfd {
            Some(pidfd) => {
                let _ = pidfd.readable().await;
            }
            None => {
                while process_lives(self.pid) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Asks the controller to pass on its last answers and exit; SIGKILL if it has not within
    /// [`STOP_WAIT`].
    async fn finish(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_WAIT, self.exited())
            .await
            .is_err()
        {
            warn!(
                pid = self.pid,
                "the controller did not stop in time: SIGKILL"
            );
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Whether a process of ours still runs (not a zombie, not reaped).
fn process_lives(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Starts `herdsman controller` (this executable), handing it the control socket.
fn start(listener: &UnixListener) -> Result<Running, String> {
    let fd: RawFd = listener.as_raw_fd();
    let keeper = std::process::id();
    let exe = PathBuf::from("/proc/self/exe");
    let mut command = Command::new(exe);
    command
        .arg0("herdsman")
        .args([
            "controller",
            "--listen-fd",
            &fd.to_string(),
            "--keeper-pid",
            &keeper.to_string(),
        ])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: setsid, prctl, close_range and fcntl are async-signal-safe. The controller leaves the keeper's
    // session (a terminal's ^C reaches the keeper, which stops it in order), dies with the keeper's thread
    // (it serves nothing without one), and inherits the control socket and nothing else past 0-2.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            crate::descriptors::cloexec_all_but(3, fd)
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start `herdsman controller`: {e}"))?;
    let pid = child.id() as i32;
    // The supervisor reaps every child itself (the keeper is a subreaper); the `Child` is not waited on.
    drop(child);
    Ok(Running {
        pid,
        pidfd: pidfd_open(pid),
    })
}

fn pidfd_open(pid: i32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open on our own unreaped child; the descriptor is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if raw < 0 {
        return None;
    }
    // SAFETY: a descriptor just returned by the kernel, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the descriptor is owned by the `AsyncFd` and deregistered before it is closed.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_that_ran_a_while_or_died_once_is_started_again_at_once() {
        assert_eq!(restart_delay(Duration::from_secs(30), 1), None);
        assert_eq!(restart_delay(Duration::from_millis(5), 1), None);
        assert_eq!(restart_delay(STABLE, 7), None);
    }

    #[test]
    fn quick_deaths_in_a_row_double_the_delay_up_to_a_bound() {
        let quick = Duration::from_millis(5);
        assert_eq!(restart_delay(quick, 2), Some(FIRST_DELAY));
        assert_eq!(restart_delay(quick, 3), Some(FIRST_DELAY * 2));
        assert_eq!(restart_delay(quick, 4), Some(FIRST_DELAY * 4));
        assert_eq!(restart_delay(quick, 40), Some(MAX_DELAY));
    }
}
