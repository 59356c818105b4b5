//! Where readiness comes from, as messages to the supervisor.
//!
//! - **sd_notify.** Every worker gets `NOTIFY_SOCKET`, an abstract datagram socket of the daemon's. A
//!   `READY=1` datagram counts for the process whose pid the kernel attaches (SCM_CREDENTIALS), so a worker
//!   can only speak for itself; the supervisor accepts it from the worker or a member of its process group.
//! - **Node IPC.** Every Node worker gets an IPC channel (`NODE_CHANNEL_FD`), as under PM2: the app's
//!   `process.send('ready')` and the listen preload's `{ herdsman: 'listening' }` arrive on it. Nothing else
//!   on the channel is acted on; it is read and dropped, so an app that sends a lot never blocks.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, setsockopt,
    sockopt,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tracing::debug;

use super::supervisor::Message;

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
        let name = format!("herdsman/{}/notify", std::process::id());
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
            let (pid, len) = match received {
                Ok(Ok(received)) => received,
                Ok(Err(e)) => {
                    debug!(error = %e, "notify socket read failed");
                    continue;
                }
                Err(_would_block) => continue,
            };
            let text = String::from_utf8_lossy(&buffer[..len]);
            if let Some(pid) = pid
                && text.lines().any(|line| line.trim() == "READY=1")
                && supervisor
                    .send(Message::Ready {
                        pid,
                        source: Source::Notify,
                    })
                    .is_err()
            {
                return;
            }
        }
    }
}

/// Reads a Node worker's IPC channel, forwarding its readiness messages, until the worker closes it.
/// Lines longer than 64 KiB cannot be a readiness message; their excess is dropped unread.
pub async fn serve_node_channel(
    channel: OwnedFd,
    pid: i32,
    supervisor: mpsc::UnboundedSender<Message>,
) {
    const LONGEST: usize = 64 * 1024;
    let stream = std::os::unix::net::UnixStream::from(channel);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::UnixStream::from_std(stream) else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let Ok(buffer) = reader.fill_buf().await else {
            return;
        };
        if buffer.is_empty() {
            return;
        }
        let (chunk, end) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        line.extend_from_slice(&chunk[..chunk.len().min(LONGEST.saturating_sub(line.len()))]);
        let used = chunk.len() + usize::from(end);
        reader.consume(used);
        if end {
            if let Some(source) = node_message(&String::from_utf8_lossy(&line))
                && supervisor.send(Message::Ready { pid, source }).is_err()
            {
                return;
            }
            line.clear();
        }
    }
}

/// Interprets one line of Node's JSON IPC serialization.
pub fn node_message(line: &str) -> Option<Source> {
    match serde_json::from_str::<serde_json::Value>(line).ok()? {
        serde_json::Value::String(s) if s == "ready" => Some(Source::NodeReady),
        serde_json::Value::Object(map)
            if map.get("herdsman").and_then(|v| v.as_str()) == Some("listening") =>
        {
            Some(Source::NodeListening)
        }
        _ => None,
    }
}

/// A connected pair for a Node IPC channel: (the daemon's end, the worker's end). Both close-on-exec; the
/// spawn moves the worker's end into place.
pub fn node_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_messages() {
        assert_eq!(node_message("\"ready\""), Some(Source::NodeReady));
        assert_eq!(
            node_message("{\"herdsman\":\"listening\"}"),
            Some(Source::NodeListening)
        );
        assert_eq!(node_message("{\"cmd\":\"NODE_HANDLE\"}"), None);
        assert_eq!(node_message("not json"), None);
    }
}
