//! The daemon's side of the log keeper: starting it, and handing it the read end of each output pipe.
//!
//! The keeper is started when the first worker is, as `herdsman log-keeper` (this executable) in a
//! session of its own, with stdin and stdout on /dev/null and the daemon's stderr (its log). The
//! daemon's end of the control channel is non-blocking: a send never waits. If the keeper is gone (the
//! send fails with EPIPE or the like), a new one is started and the send tried once more; if that fails
//! too, or the keeper does not take the message at once, [`Keeper::pipe`] says so and the caller lets the
//! worker write to its file directly.
//!
//! The daemon keeps a copy of each read end it hands over, until the worker is reaped. A copy does not
//! delay the keeper's EOF (that comes when the writers are gone), but it keeps a worker from SIGPIPE if
//! the keeper dies: the pipe just fills while no one reads, and when the daemon reaps the dead keeper
//! ([`Keeper::reaped`]) it starts a new one and hands it every copy the dead one had. A keeper that keeps
//! dying is not restarted more than [`RESTARTS`] times a minute.
//!
//! Nothing here blocks the daemon, except [`Keeper::drain`] when the daemon stops: it closes the control
//! channel, and the keeper then exits once the pipes it reads are at EOF; the daemon waits for that (a few
//! seconds at most), so a daemon that stops its workers and exits leaves every line written and no
//! process behind.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};

use super::keeper::{Header, MAX_HEADER};
use super::output::DropReport;

/// How long a stopping daemon waits for its keeper to write the last lines and exit.
const DRAIN: Duration = Duration::from_secs(3);
/// Keepers started again after dying, at most, per minute.
const RESTARTS: usize = 5;
/// Descriptors a keeper needs besides its pipes and files (standard ones, its channel, a rotation's
/// directory and files, compression).
const KEEPER_SPARE: u64 = 16;

/// The soft `RLIMIT_NOFILE` of this process (the keeper's is the same).
fn descriptor_limit() -> u64 {
    // SAFETY: getrlimit writes into the struct it is given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur
        } else {
            u64::MAX
        }
    }
}

/// The daemon's handle on its log keeper (none is started until a worker needs one).
#[derive(Default)]
pub struct Keeper {
    link: Option<Link>,
    /// Copies of the read ends handed to keepers, by the worker that writes them.
    held: Vec<Held>,
    /// Copies for a worker that is being spawned (see [`Keeper::bind`]).
    pending: Vec<Held>,
    /// When keepers were started again after dying.
    restarts: VecDeque<Instant>,
    /// Lines the keepers could not write (a full disk), by log file, and why writes fail now if they do:
    /// what their reports said (see [`Keeper::collect_reports`]).
    drops: HashMap<PathBuf, (u64, Option<String>)>,
}

/// A copy of a read end a keeper reads.
struct Held {
    header: Header,
    read: OwnedFd,
    /// The keeper reading it.
    keeper: i32,
    /// The worker writing it (0 while pending).
    worker: i32,
}

/// What an in-place re-exec of the daemon carries over of its log keepers: the running keeper's channel and
/// the copies of every read end, as descriptor numbers the new image inherits.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    pub link: Option<CarriedLink>,
    pub streams: Vec<CarriedStream>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CarriedLink {
    pub control: RawFd,
    pub pid: i32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CarriedStream {
    pub header: Header,
    pub read: RawFd,
    pub keeper: i32,
    pub worker: i32,
}

impl Carried {
    /// Every descriptor it names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.streams.iter().map(|s| s.read).collect();
        fds.extend(self.link.as_ref().map(|l| l.control));
        fds
    }
}

/// A running keeper.
struct Link {
    control: OwnedFd,
    pid: i32,
    /// To wait for its exit even if someone else reaps it.
    pidfd: Option<OwnedFd>,
}

impl Keeper {
    pub fn new() -> Keeper {
        Keeper::default()
    }

    /// Creates a pipe for one output stream of a worker and hands its read end to the keeper (starting
    /// one if needed). Returns the write end, for the worker; an error says why the worker should write
    /// to its file itself. Call [`Keeper::bind`] once the worker is spawned, or [`Keeper::discard`].
    pub fn pipe(&mut self, header: &Header) -> Result<OwnedFd, String> {
        self.room_for_one_more()?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create a pipe: {e}"))?;
        let keeper = self.hand_over(header, &read)?;
        // Best effort: without a copy the pipe still works; it just does not outlive its keeper.
        // Parked high: the workers started from now on do not copy it (see `descriptors::PARKED_BASE`).
        if let Ok(copy) = crate::descriptors::park(std::os::fd::AsFd::as_fd(&read)) {
            self.pending.push(Held {
                header: header.clone(),
                read: copy,
                keeper,
                worker: 0,
            });
        }
        Ok(write)
    }

    /// Reads the reports the running keeper sent (lines it dropped, writes failing or working again), without
    /// waiting. The keeper sends them at most twice a second and keeps what it could not send, so reading
    /// them only when asked (`describe`) loses nothing.
    pub fn collect_reports(&mut self) {
        let Some(link) = &self.link else {
            return;
        };
        let mut buffer = vec![0u8; MAX_HEADER];
        loop {
            match nix::sys::socket::recv(
                link.control.as_raw_fd(),
                &mut buffer,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(report) = serde_json::from_slice::<DropReport>(&buffer[..n]) {
                        let entry = self.drops.entry(report.path).or_default();
                        entry.0 += report.dropped;
                        entry.1 = report.failing;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }

    /// Lines dropped on their way to `path` since the daemon started, and why writes fail now if they do.
    pub fn drops(&self, path: &Path) -> Option<&(u64, Option<String>)> {
        self.drops.get(path)
    }

    /// Whether the running keeper can take one more pipe under its descriptor limit (the daemon's, which it
    /// inherits and raises the same way). A pipe it could not take would reach it without its descriptor
    /// (`SCM_RIGHTS` is cut short at the limit): the worker's lines would stay in the pipe, and a chatty
    /// worker would block once it is full. So past the limit the caller gives the worker its file instead.
    /// Counted: each pipe, and its file and the file's directory (one each per stream at worst), plus
    /// [`KEEPER_SPARE`].
    fn room_for_one_more(&self) -> Result<(), String> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let pipes = self.held.iter().filter(|h| h.keeper == link.pid).count() + self.pending.len();
        let limit = descriptor_limit();
        if (3 * (pipes as u64 + 1)).saturating_add(KEEPER_SPARE) > limit {
            return Err(format!(
                "the log keeper is at its descriptor limit ({pipes} pipes; RLIMIT_NOFILE {limit})"
            ));
        }
        Ok(())
    }

    /// The pipes made since the last `bind` belong to this worker.
    pub fn bind(&mut self, worker: i32) {
        for mut held in self.pending.drain(..) {
            held.worker = worker;
            self.held.push(held);
        }
    }

    /// The worker the pipes were made for was not spawned.
    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// A child of the daemon was reaped: a worker (its copies are dropped), or a keeper (a new one takes
    /// over what it was reading).
    pub fn reaped(&mut self, pid: i32) {
        self.held.retain(|h| h.worker != pid);
        if !self.held.iter().any(|h| h.keeper == pid)
            && self.link.as_ref().is_none_or(|l| l.pid != pid)
        {
            return;
        }
        tracing::warn!(pid, "the log keeper exited");
        if self.link.as_ref().is_some_and(|l| l.pid == pid) {
            self.link = None;
        }
        let (orphaned, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.keeper == pid);
        self.held = kept;
        if orphaned.is_empty() {
            return;
        }
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if self.restarts.len() >= RESTARTS {
            tracing::error!(
                streams = orphaned.len(),
                "the log keeper keeps dying: not started again; workers writing to its pipes will fail"
            );
            return;
        }
        self.restarts.push_back(now);
        for mut held in orphaned {
            match self.hand_over(&held.header, &held.read) {
                Ok(keeper) => {
                    held.keeper = keeper;
                    self.held.push(held);
                }
                Err(error) => {
                    tracing::error!(app = %held.header.app, instance = held.header.instance, %error, "cannot hand a worker's output to a new log keeper");
                }
            }
        }
    }

    /// Tells every keeper reading this daemon's pipes to reopen its logs by path now (`SIGUSR1`): for an
    /// external rotator that renamed the files. Returns how many keepers were told.
    pub fn reopen(&self) -> usize {
        let mut pids: Vec<i32> = self.held.iter().map(|h| h.keeper).collect();
        pids.extend(self.link.as_ref().map(|l| l.pid));
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .filter(|&pid| {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGUSR1,
                )
                .is_ok()
            })
            .count()
    }

    /// What an in-place re-exec carries over (the descriptors stay owned here until the exec).
    pub fn carry(&self) -> Carried {
        Carried {
            link: self.link.as_ref().map(|l| CarriedLink {
                control: l.control.as_raw_fd(),
                pid: l.pid,
            }),
            streams: self
                .held
                .iter()
                .chain(&self.pending)
                .map(|h| CarriedStream {
                    header: h.header.clone(),
                    read: h.read.as_raw_fd(),
                    keeper: h.keeper,
                    worker: h.worker,
                })
                .collect(),
        }
    }

    /// The keepers' state after an in-place re-exec.
    ///
    /// # Safety
    /// Every descriptor `carried` names must be open, inherited for this purpose, and owned by nothing else.
    pub unsafe fn restore(carried: Carried) -> Keeper {
        // SAFETY: the caller vouches for the descriptors.
        let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let link = carried.link.map(|l| {
            // SAFETY: pidfd_open on our own child (it may have exited: then there is no pidfd).
            let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, l.pid, 0) } as RawFd;
            Link {
                control: own(l.control),
                pid: l.pid,
                // SAFETY: a descriptor just returned by the kernel.
                pidfd: (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) }),
            }
        });
        let held = carried
            .streams
            .into_iter()
            .map(|s| Held {
                header: s.header,
                read: own(s.read),
                keeper: s.keeper,
                worker: s.worker,
            })
            .collect();
        Keeper {
            link,
            held,
            pending: Vec::new(),
            restarts: VecDeque::new(),
            drops: HashMap::new(),
        }
    }

    /// Stops taking new streams and waits (a few seconds at most) for the keeper to write what it has and
    /// exit. For a daemon that has stopped its workers and is about to exit.
    pub fn drain(&mut self) {
        self.held.clear();
        self.pending.clear();
        if let Some(link) = self.link.take() {
            link.wait_exit();
        }
    }

    /// Sends one read end to the keeper, starting one if needed; the keeper's pid.
    fn hand_over(&mut self, header: &Header, read: &OwnedFd) -> Result<i32, String> {
        let message = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        if message.len() > MAX_HEADER {
            return Err("the log path is too long to hand to the log keeper".into());
        }
        let mut restarted = false;
        loop {
            if self.link.is_none() {
                self.link = Some(Link::start()?);
                restarted = true;
            }
            let Some(link) = &self.link else {
                continue;
            };
            match link.send(&message, read.as_raw_fd()) {
                Ok(()) => return Ok(link.pid),
                Err(Errno::EAGAIN) => {
                    return Err("the log keeper is not keeping up (its queue is full)".into());
                }
                Err(error) if !restarted => {
                    tracing::warn!(pid = link.pid, %error, "the log keeper takes no new streams: starting a new one");
                    // The old one drains what it has and exits by itself; it is not waited for.
                    self.link = None;
                }
                Err(error) => return Err(format!("cannot reach the log keeper: {error}")),
            }
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.drain();
    }
}

impl Link {
    fn start() -> Result<Link, String> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("cannot create the log keeper's channel: {e}"))?;
        // Room for many streams at once (a large app starting); the keeper empties it as they come.
        let _ = nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::SndBuf, &(1 << 20));
        let fd = theirs.as_raw_fd();
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0("herdsman")
            .args(["log-keeper", "--control-fd", &fd.to_string()])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: setsid, close_range and fcntl are async-signal-safe. The keeper leaves the daemon's session
        // (so a signal to it does not reach the keeper) and inherits its end of the channel and nothing else
        // past 0-2 (the daemon's own descriptors are close-on-exec, but one it inherited from its caller
        // may not be).
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                crate::descriptors::cloexec_all_but(3, fd)
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start the log keeper: {e}"))?;
        drop(theirs);
        let pid = child.id() as i32;
        // The daemon reaps its children itself (it is a subreaper); the `Child` is not waited on.
        drop(child);
        // SAFETY: pidfd_open on our own unreaped child; the descriptor is owned below.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        // SAFETY: a descriptor just returned by the kernel.
        let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
        tracing::info!(pid, "log keeper started");
        Ok(Link {
            control: ours,
            pid,
            pidfd,
        })
    }

    fn send(&self, message: &[u8], fd: RawFd) -> Result<(), Errno> {
        let fds = [fd];
        let cmsgs = [ControlMessage::ScmRights(&fds)];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let sent = sendmsg::<()>(
            self.control.as_raw_fd(),
            &[IoSlice::new(message)],
            &cmsgs,
            flags,
            None,
        )?;
        if sent != message.len() {
            return Err(Errno::EMSGSIZE);
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Closing our end tells the keeper to exit once its pipes are done.
        // SAFETY: shutdown on a socket we own; the descriptor itself is closed when `control` drops.
        unsafe { libc::shutdown(self.control.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

impl Link {
    /// Closes the channel and waits, at most [`DRAIN`], for the keeper to exit.
    fn wait_exit(self) {
        // SAFETY: shutdown on a socket we own.
        unsafe { libc::shutdown(self.control.as_raw_fd(), libc::SHUT_RDWR) };
        let Some(pidfd) = &self.pidfd else {
            return;
        };
        let deadline = Instant::now() + DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis() as libc::c_int) };
            if ready > 0 {
                // Reap it unless the daemon's own reaping did already (a pidfd names this process only).
                // SAFETY: waitid on our pidfd, with a zeroed siginfo to fill.
                unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(
                        libc::P_PIDFD,
                        pidfd.as_raw_fd() as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOHANG,
                    );
                }
                return;
            }
            if ready == 0 || Instant::now() >= deadline {
                tracing::warn!(
                    pid = self.pid,
                    "the log keeper is still reading (a process still holds a pipe); leaving it"
                );
                return;
            }
        }
    }
}
