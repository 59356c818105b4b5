//! Where readiness comes from, as messages to the supervisor.
//!
//! - **sd_notify.** Every worker gets `NOTIFY_SOCKET`, an abstract datagram socket of the daemon's. A
//!   `READY=1` datagram counts for the process whose pid the kernel attaches (SCM_CREDENTIALS), so a worker
//!   can only speak for itself; the supervisor accepts it from the worker or a member of its process group.
//!   The sender's group is read here, the moment the datagram is received, while the sender is still there
//!   (a `systemd-notify` helper may exit at once); workers lead sessions of their own, so no process of
//!   another app can join a worker's group to speak for it.
//! - **Node.** Every Node worker gets the write end of a pipe (`HERDSMAN_READY_FD`), which the preload
//!   uses: it writes `L` when the server on the shared socket listens, and `R` when the app calls
//!   `process.send('ready')` (the preload provides `process.send` for that when there is no IPC channel,
//!   so PM2's idiom works; an IPC channel would cost each Node process 2.4 MiB, the pipe nothing).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, setsockopt,
    sockopt,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::debug;

use super::supervisor::Message;
use super::supervisor::health::RuntimeReport;

/// How a worker said it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Notify,
    NodeReady,
    NodeListening,
}

/// The daemon's `NOTIFY_SOCKET`.
pub struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    /// The value workers get, `@name` (abstract namespace, as systemd writes it).
    pub address: String,
}

impl NotifySocket {
    /// Binds an abstract datagram socket unique to this daemon, with credentials passing on.
    pub fn bind() -> io::Result<NotifySocket> {
        // A random part, so that no other local user can take the name first or guess it.
        let mut random = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))?;
        let name = format!(
            "herdsman/{}/{:016x}/notify",
            std::process::id(),
            u64::from_le_bytes(random)
        );
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        let addr = UnixAddr::new_abstract(name.as_bytes())?;
        socket::bind(fd.as_raw_fd(), &addr)?;
        setsockopt(&fd, sockopt::PassCred, &true)?;
        // SAFETY: the descriptor is owned by the AsyncFd, so it stays open for as long as it is registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(NotifySocket {
            fd,
            address: format!("@{name}"),
        })
    }

    /// The socket carried over an in-place re-exec (its name holds the pid, which the exec keeps).
    pub fn from_fd(fd: OwnedFd, address: String) -> io::Result<NotifySocket> {
        // SAFETY: the descriptor is owned by the AsyncFd, so it stays open for as long as it is registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(NotifySocket { fd, address })
    }

    /// The descriptor, for an in-place re-exec.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    /// Forwards every `READY=1` to the supervisor until it is gone.
    pub async fn serve(self, supervisor: mpsc::UnboundedSender<Message>) {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            let received = guard.try_io(|fd| {
                let mut iov = [IoSliceMut::new(&mut buffer)];
                let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                let message = socket::recvmsg::<()>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let pid = message.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    })
                });
                Ok((pid, message.bytes))
            });
            // Later, the sender may be gone (and reaped): resolve its group now.
            let received =
                received.map(|r| r.map(|(pid, len)| (pid.map(|pid| (pid, group_of(pid))), len)));
            let (pid, len) = match received {
                Ok(Ok(received)) => received,
                Ok(Err(e)) => {
                    debug!(error = %e, "notify socket read failed");
                    continue;
                }
                Err(_would_block) => continue,
            };
            let text = String::from_utf8_lossy(&buffer[..len]);
            if let Some((pid, group)) = pid
                && text.lines().any(|line| line.trim() == "WATCHDOG=1")
                && supervisor.send(Message::Heartbeat { pid, group }).is_err()
            {
                return;
            }
            if let Some((pid, group)) = pid
                && text.lines().any(|line| line.trim() == "READY=1")
                && supervisor
                    .send(Message::Ready {
                        pid,
                        group,
                        source: Source::Notify,
                    })
                    .is_err()
            {
                return;
            }
        }
    }
}

/// The process group of `pid`, if it still exists.
fn group_of(pid: i32) -> Option<i32> {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .ok()
        .map(|g| g.as_raw())
}

/// Reads a Node worker's readiness pipe until the worker closes it: `L` when its server listens, `R` for
/// `process.send('ready')`, `W` for a watchdog heartbeat, and `M<report>\n` for a runtime report (see `supervisor/health.rs`; a report is
/// one write of less than PIPE_BUF bytes, so reports of a worker never interleave).
pub async fn serve_node_pipe(pipe: OwnedFd, pid: i32, supervisor: mpsc::UnboundedSender<Message>) {
    use tokio::io::AsyncReadExt;
    let Ok(mut receiver) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else {
        return;
    };
    let mut buffer = [0u8; 256];
    // The runtime report being read, after its `M`.
    let mut report: Option<Vec<u8>> = None;
    while let Ok(n) = receiver.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        for &byte in &buffer[..n] {
            if let Some(text) = report.as_mut() {
                if byte != b'\n' {
                    if text.len() < 128 {
                        text.push(byte);
                    }
                    continue;
                }
                let text = report.take().unwrap_or_default();
                if let Some(report) = RuntimeReport::parse(&String::from_utf8_lossy(&text))
                    && supervisor.send(Message::Runtime { pid, report }).is_err()
                {
                    return;
                }
                continue;
            }
            if byte == b'W' {
                if supervisor
                    .send(Message::Heartbeat { pid, group: None })
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let source = match byte {
                b'L' => Source::NodeListening,
                b'R' => Source::NodeReady,
                b'M' => {
                    report = Some(Vec::new());
                    continue;
                }
                _ => continue,
            };
            let ready = Message::Ready {
                pid,
                group: None,
                source,
            };
            if supervisor.send(ready).is_err() {
                return;
            }
        }
    }
}

/// A pipe for a Node worker's readiness: (the daemon's read end, the worker's write end), both
/// close-on-exec; the spawn moves the worker's end into place. Both are non-blocking: a keeper that stops
/// reading (stopped, stuck) makes the preload's writes fail (its runtime reports are dropped), never
/// blocks a worker's event loop.
pub fn node_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)
}
