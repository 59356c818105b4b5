//! Binding and holding an app's listening sockets.
//!
//! The daemon binds each address once, when the app starts, and never accepts on it: workers inherit the
//! descriptor and the kernel hands them connections. The socket lives until the app is stopped or deleted,
//! so a crash, restart or reload never refuses a connection; connections wait in the backlog meanwhile.
//!
//! A Unix socket's path may already name a socket. It is probed with a non-blocking `connect`, so a
//! listener whose queue is full cannot stall the daemon: a connection, or a full queue (EAGAIN), means the
//! address is in use; only ECONNREFUSED (nobody listens: left over from a crash) lets herdsman remove the
//! file and bind, and any other error (EACCES: someone else's socket) is refused with that error. The
//! socket file is removed when the listener is dropped only if the path still names the file herdsman
//! bound (same device and inode): another program may have taken the path since.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::ListenAddr;

/// Connections that wait while no worker accepts; Node's and nginx's default, the figure systemd uses.
pub const BACKLOG: i32 = 4096;

/// A bound, listening socket. Dropping it closes the socket and removes a Unix socket's file.
/// A Unix socket's path, and the (device, inode) of the file bound there.
pub type UnixFile = (PathBuf, (u64, u64));

#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    addr: ListenAddr,
    /// A Unix socket's path, and the (device, inode) of the file bound there.
    unix_path: Option<(PathBuf, (u64, u64))>,
    /// For a worker slot's own socket (`balance`): its position in the kernel's reuseport group (it names
    /// the socket in systemd's fd store, so that a keeper restarted by systemd takes them back in order)
    /// store).
    slot: Option<u32>,
}

/// Why an address could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("address {0} is already in use")]
    InUse(ListenAddr),
    #[error(
        "cannot listen on {addr}: a socket file is there and probing it failed ({source}); \
         it may be another user's live socket, so it is left alone (remove it if it is stale)"
    )]
    Unknown { addr: ListenAddr, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Other { addr: ListenAddr, source: io::Error },
}

impl Listener {
    /// The socket of an address: the one systemd's store passed back for it if there is one (the keeper
    /// restarted by its unit; see `fdstore.rs`), otherwise a new one. Either way a copy goes to the store.
    pub fn bind(addr: &ListenAddr, cwd: &Path) -> Result<Listener, BindError> {
        Listener::bind_as(addr, cwd, None)
    }

    /// A worker slot's own socket (`balance`): bound with SO_REUSEPORT, so the sockets of every slot of the
    /// address make one reuseport group. TCP only.
    /// `position` is the one it takes in the group (the number of sockets there before it).
    pub fn bind_slot(addr: &ListenAddr, cwd: &Path, position: u32) -> Result<Listener, BindError> {
        Listener::bind_as(addr, cwd, Some(position))
    }

    /// A per-slot socket moved in its group (the kernel put it in the place of one that was closed): it is
    /// stored under its new position.
    pub fn moved_to(&mut self, position: u32) {
        if self.slot == Some(position) {
            return;
        }
        super::fdstore::forget(&super::fdstore::name_of(&self.addr, self.slot));
        self.slot = Some(position);
        self.store();
    }

    fn bind_as(addr: &ListenAddr, cwd: &Path, slot: Option<u32>) -> Result<Listener, BindError> {
        let name = super::fdstore::name_of(addr, slot);
        let mut listener = match super::fdstore::take(&name).and_then(|fd| passed(fd, addr)) {
            Some(socket) => {
                tracing::info!(%addr, ?slot, "listening on the socket systemd kept");
                Listener::tcp(socket, addr)
            }
            None => Listener::bind_new(addr, cwd, slot.is_some())?,
        };
        listener.slot = slot;
        listener.store();
        Ok(listener)
    }

    /// Whether a per-slot socket could be bound at this address: one is bound and closed again (not stored).
    pub fn probe_free(addr: &ListenAddr) -> Result<(), BindError> {
        let result = match addr {
            ListenAddr::Port(port) => {
                match bind_tcp(SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)), true, true) {
                    Err(e) if e.kind() != io::ErrorKind::AddrInUse => bind_tcp(
                        SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
                        false,
                        true,
                    ),
                    other => other,
                }
            }
            ListenAddr::Tcp(sa) => bind_tcp(*sa, false, true),
            ListenAddr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a socket per worker needs a TCP address (use balance \"shared\")",
            )),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(BindError::InUse(addr.clone())),
            Err(source) => Err(BindError::Other {
                addr: addr.clone(),
                source,
            }),
        }
    }

    /// Sends a copy of the socket to systemd's store (when systemd runs the keeper).
    pub fn store(&self) {
        super::fdstore::keep(&super::fdstore::name_of(&self.addr, self.slot), self.fd());
    }

    /// Binds and listens (SO_REUSEADDR, with `reuse_port` SO_REUSEPORT too, close-on-exec, backlog
    /// [`BACKLOG`]).
    fn bind_new(addr: &ListenAddr, cwd: &Path, reuse_port: bool) -> Result<Listener, BindError> {
        let wrap = |source: io::Error| match source.kind() {
            io::ErrorKind::AddrInUse => BindError::InUse(addr.clone()),
            _ => BindError::Other {
                addr: addr.clone(),
                source,
            },
        };
        match addr {
            ListenAddr::Port(port) => {
                // Every interface, IPv6 and IPv4 on one socket, as Node's listen(PORT); IPv4 alone where the
                // host has no IPv6.
                let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port));
                match bind_tcp(any6, true, reuse_port) {
                    Ok(socket) => Ok(Listener::tcp(socket, addr)),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(wrap(e)),
                    Err(_) => bind_tcp(
                        SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
                        false,
                        reuse_port,
                    )
                    .map(|socket| Listener::tcp(socket, addr))
                    .map_err(wrap),
                }
            }
            ListenAddr::Tcp(sa) => bind_tcp(*sa, false, reuse_port)
                .map(|socket| Listener::tcp(socket, addr))
                .map_err(wrap),
            ListenAddr::Unix(_) if reuse_port => Err(BindError::Other {
                addr: addr.clone(),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a socket per worker needs a TCP address (use balance \"shared\")",
                ),
            }),
            ListenAddr::Unix(path) => {
                let path = cwd.join(path);
                match bind_unix(&path) {
                    Ok((socket, id)) => Ok(Listener {
                        socket,
                        addr: addr.clone(),
                        unix_path: Some((path, id)),
                        slot: None,
                    }),
                    Err(UnixBindError::Probe(source)) => Err(BindError::Unknown {
                        addr: addr.clone(),
                        source,
                    }),
                    Err(UnixBindError::Io(e)) => Err(wrap(e)),
                }
            }
        }
    }

    fn tcp(socket: Socket, addr: &ListenAddr) -> Listener {
        Listener {
            socket,
            addr: addr.clone(),
            unix_path: None,
            slot: None,
        }
    }

    /// The address as the app's spec gives it.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// What an in-place re-exec carries over: the address, and a Unix socket's file (path, device, inode).
    pub fn parts(&self) -> (ListenAddr, Option<UnixFile>) {
        (self.addr.clone(), self.unix_path.clone())
    }

    /// A listener carried over an in-place re-exec: its socket, inherited, and what [`Listener::parts`] said.
    pub fn from_parts(
        socket: std::os::fd::OwnedFd,
        addr: ListenAddr,
        unix_path: Option<UnixFile>,
    ) -> Listener {
        Listener {
            socket: Socket::from(socket),
            addr,
            unix_path,
            slot: None,
        }
    }

    /// A worker slot's socket carried over an in-place re-exec or taken back from an adopted worker.
    pub fn from_parts_slot(
        socket: std::os::fd::OwnedFd,
        addr: ListenAddr,
        unix_path: Option<UnixFile>,
        position: u32,
    ) -> Listener {
        Listener {
            socket: Socket::from(socket),
            addr,
            unix_path,
            slot: Some(position),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        super::fdstore::forget(&super::fdstore::name_of(&self.addr, self.slot));
        // Only the file this listener bound: another program may have replaced it since.
        if let Some((path, id)) = &self.unix_path
            && socket_file(path) == Some(*id)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The (device, inode) of the socket file at `path`; `None` if there is none (or something else is there).
fn socket_file(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

/// A socket systemd passed back, if it is a listening TCP socket of this address.
fn passed(fd: std::os::fd::OwnedFd, addr: &ListenAddr) -> Option<Socket> {
    let socket = Socket::from(fd);
    if !socket.is_listener().unwrap_or(false) {
        return None;
    }
    let local = socket.local_addr().ok()?.as_socket()?;
    let matches = match addr {
        ListenAddr::Port(port) => local.port() == *port,
        ListenAddr::Tcp(sa) => local == *sa,
        ListenAddr::Unix(_) => false,
    };
    matches.then_some(socket)
}

fn bind_tcp(addr: SocketAddr, dual_stack: bool, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

enum UnixBindError {
    /// A socket file is in the way, and whether anyone listens on it cannot be told.
    Probe(io::Error),
    Io(io::Error),
}

impl From<io::Error> for UnixBindError {
    fn from(e: io::Error) -> Self {
        UnixBindError::Io(e)
    }
}

/// Binds a Unix socket at `path`, replacing a socket file nobody listens on; the socket and the (device,
/// inode) of its file.
fn bind_unix(path: &Path) -> Result<(Socket, (u64, u64)), UnixBindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let id = (meta.dev(), meta.ino());
            match probe_unix(path) {
                Probe::Live => return Err(io::Error::from(io::ErrorKind::AddrInUse).into()),
                Probe::Unknown(e) => return Err(UnixBindError::Probe(e)),
                Probe::Gone => {}
                // Left over from a crash: remove it, unless the path was taken again meanwhile.
                Probe::Stale if socket_file(path) == Some(id) => match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                },
                Probe::Stale => return Err(io::Error::from(io::ErrorKind::AddrInUse).into()),
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )
            .into());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    let id = socket_file(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "the socket file vanished right after bind",
        )
    })?;
    Ok((socket, id))
}

/// What a `connect` to an existing socket file says.
enum Probe {
    /// Someone accepts connections there (or will: the queue is full).
    Live,
    /// Nobody listens: a socket file left over.
    Stale,
    /// The file went away meanwhile.
    Gone,
    /// Cannot tell (EACCES: another user's socket, ...).
    Unknown(io::Error),
}

/// Probes a socket file with a non-blocking connect, which never waits: a listener with a full queue
/// answers EAGAIN at once, where a blocking connect would wait for it to accept.
fn probe_unix(path: &Path) -> Probe {
    let attempt = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
        .and_then(|probe| probe.connect(&SockAddr::unix(path)?));
    match attempt {
        Ok(()) => Probe::Live,
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINPROGRESS) => Probe::Live,
            Some(libc::ECONNREFUSED) => Probe::Stale,
            Some(libc::ENOENT) => Probe::Gone,
            _ => Probe::Unknown(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_in_use_for_a_second_bind_and_free_after_drop() {
        let addr: ListenAddr = "127.0.0.1:0"
            .parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .expect("addr");
        let first = Listener::bind(&addr, Path::new("/")).expect("bind");
        let port = first
            .socket
            .local_addr()
            .expect("local")
            .as_socket()
            .expect("inet")
            .port();
        let taken = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        assert!(matches!(
            Listener::bind(&taken, Path::new("/")),
            Err(BindError::InUse(_))
        ));
        drop(first);
        assert!(Listener::bind(&taken, Path::new("/")).is_ok());
    }

    #[test]
    fn a_stale_unix_socket_file_is_replaced_and_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let addr = ListenAddr::Unix(path.clone());
        let listener = Listener::bind(&addr, dir.path()).expect("bind over stale file");
        assert!(matches!(
            Listener::bind(&addr, dir.path()),
            Err(BindError::InUse(_))
        ));
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_listener_with_a_full_queue_is_in_use_and_is_not_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("busy.sock");
        let busy = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        busy.bind(&SockAddr::unix(&path).expect("addr"))
            .expect("bind");
        busy.listen(0).expect("listen");
        // Fill its queue: connect until the kernel says it is full.
        let mut queued = Vec::new();
        loop {
            let client =
                Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).expect("socket");
            match client.connect(&SockAddr::unix(&path).expect("addr")) {
                Ok(()) => queued.push(client),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) => panic!("connect: {e}"),
            }
            assert!(queued.len() < 64, "the queue never filled");
        }
        let addr = ListenAddr::Unix(path.clone());
        let started = std::time::Instant::now();
        assert!(matches!(
            Listener::bind(&addr, dir.path()),
            Err(BindError::InUse(_))
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(path.exists(), "the live socket was left alone");
    }

    #[test]
    fn a_dropped_listener_leaves_a_socket_that_replaced_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.sock");
        let addr = ListenAddr::Unix(path.clone());
        let ours = Listener::bind(&addr, dir.path()).expect("bind");
        // Another program unlinks the path and binds its own socket there.
        std::fs::remove_file(&path).expect("unlink");
        let theirs = std::os::unix::net::UnixListener::bind(&path).expect("their bind");
        drop(ours);
        assert!(path.exists(), "their socket file was removed");
        std::os::unix::net::UnixStream::connect(&path).expect("their socket still answers");
        drop(theirs);
    }
}
