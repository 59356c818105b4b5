//! Binding and holding an app's listening sockets.
//!
//! The daemon binds each address once, when the app starts, and never accepts on it: workers inherit the
//! descriptor and the kernel hands them connections. The socket lives until the app is stopped or deleted,
//! so a crash, restart or reload never refuses a connection; connections wait in the backlog meanwhile.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::ListenAddr;

/// Connections that wait while no worker accepts; Node's and nginx's default, the figure systemd uses.
pub const BACKLOG: i32 = 4096;

/// A bound, listening socket. Dropping it closes the socket and removes a Unix socket's file.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    addr: ListenAddr,
    unix_path: Option<PathBuf>,
}

/// Why an address could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("address {0} is already in use")]
    InUse(ListenAddr),
    #[error("cannot listen on {addr}: {source}")]
    Other { addr: ListenAddr, source: io::Error },
}

impl Listener {
    /// Binds and listens (SO_REUSEADDR, close-on-exec, backlog [`BACKLOG`]).
    pub fn bind(addr: &ListenAddr, cwd: &Path) -> Result<Listener, BindError> {
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
                match bind_tcp(any6, true) {
                    Ok(socket) => Ok(Listener::tcp(socket, addr)),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(wrap(e)),
                    Err(_) => bind_tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)), false)
                        .map(|socket| Listener::tcp(socket, addr))
                        .map_err(wrap),
                }
            }
            ListenAddr::Tcp(sa) => bind_tcp(*sa, false)
                .map(|socket| Listener::tcp(socket, addr))
                .map_err(wrap),
            ListenAddr::Unix(path) => {
                let path = cwd.join(path);
                bind_unix(&path).map_err(wrap).map(|socket| Listener {
                    socket,
                    addr: addr.clone(),
                    unix_path: Some(path),
                })
            }
        }
    }

    fn tcp(socket: Socket, addr: &ListenAddr) -> Listener {
        Listener {
            socket,
            addr: addr.clone(),
            unix_path: None,
        }
    }

    /// The address as the app's spec gives it.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_tcp(addr: SocketAddr, dual_stack: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

fn bind_unix(path: &Path) -> io::Result<Socket> {
    // A socket file nobody listens on is left over from a crash: remove it. A live one means in use.
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path)?.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    Ok(socket)
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
}
