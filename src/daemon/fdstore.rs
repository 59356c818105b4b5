//! systemd's file descriptor store, for the apps' listening sockets: so that even a keeper that dies (and
//! is restarted by its unit) refuses no connection. Each socket the keeper binds is also sent to systemd
//! (`FDSTORE=1`, named after its address); systemd keeps a copy while the unit restarts and passes them
//! back (`LISTEN_FDS`, `LISTEN_FDNAMES`); the next keeper then takes the socket of an address from there
//! instead of binding a new one, so connections that came meanwhile wait in its backlog. A socket the
//! keeper closes (an app stopped or deleted) is removed from the store (`FDSTOREREMOVE=1`).
//!
//! Nothing happens unless systemd runs the keeper (`NOTIFY_SOCKET`); the unit `herdsman startup` renders
//! enables the store (`FileDescriptorStoreMax=`). The store belongs to the process, as the descriptors it
//! was given do, hence the process-wide state here.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};

use crate::config::ListenAddr;
use crate::systemd::Notifier;

/// systemd's notification socket, when it runs the keeper.
static STORE: OnceLock<Notifier> = OnceLock::new();
/// Sockets systemd passed back at start, by name, not taken yet.
static PASSED: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// The name a socket is stored under: its address, and for a worker slot's own socket (`balance`) its
/// position in the kernel's reuseport group.
pub fn name_of(addr: &ListenAddr, slot: Option<u32>) -> String {
    match slot {
        None => name(addr),
        Some(position) => format!("{}-slot{position}", name(addr)),
    }
}

/// The name a shared socket is stored under: its address (systemd allows up to 255 characters, no `:`).
pub fn name(addr: &ListenAddr) -> String {
    let text: String = addr
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("herdsman-{}", text.chars().take(200).collect::<String>())
}

/// Takes the sockets systemd passed (`LISTEN_FDS` from fd 3, named by `LISTEN_FDNAMES`, if `LISTEN_PID` is
/// this process) out of the environment. Call first thing at the keeper's start, before descriptors past
/// them are closed; returns how many there are (fds 3 .. 3 + n).
pub fn take_passed() -> usize {
    let vars = [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "LISTEN_PIDFDID",
    ];
    let fds: usize = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    for var in vars {
        // SAFETY: at the keeper's start, before any thread reads the environment.
        unsafe { std::env::remove_var(var) };
    }
    if !ours || fds == 0 || fds > 4096 {
        return 0;
    }
    let mut passed = PASSED.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..fds {
        let fd = 3 + i as RawFd;
        // SAFETY: fcntl on an inherited descriptor: mark it close-on-exec; a closed one fails and is skipped.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            continue;
        }
        // SAFETY: passed to this process by systemd for it alone (LISTEN_PID is ours).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = names.get(i).cloned().unwrap_or_default();
        passed.push((name, owned));
    }
    tracing::info!(
        sockets = passed.len(),
        "sockets passed back from systemd's store"
    );
    fds
}

/// Sockets are stored from now on (systemd runs the keeper).
pub fn enable(notifier: &Notifier) {
    let _ = STORE.set(notifier.clone());
}

/// The socket systemd passed back for this address, if any (then it is no longer in the store: it is
/// stored again once in use).
pub fn take(name: &str) -> Option<OwnedFd> {
    let mut passed = PASSED.lock().unwrap_or_else(|e| e.into_inner());
    let index = passed.iter().position(|(n, _)| *n == name)?;
    Some(passed.swap_remove(index).1)
}

/// Sends a copy of a socket the keeper holds to systemd's store, under this name ([`name_of`]).
pub fn keep(name: &str, fd: BorrowedFd<'_>) {
    if let Some(notifier) = STORE.get() {
        let message = format!("FDSTORE=1\nFDNAME={name}");
        if let Err(e) = send(notifier.address(), &message, Some(fd.as_raw_fd())) {
            tracing::warn!(error = %e, %name, "cannot store the socket in systemd's store");
        }
    }
}

/// Removes a socket the keeper closed from systemd's store.
pub fn forget(name: &str) {
    if let Some(notifier) = STORE.get() {
        let message = format!("FDSTOREREMOVE=1\nFDNAME={name}");
        if let Err(e) = send(notifier.address(), &message, None) {
            tracing::warn!(error = %e, %name, "cannot remove the socket from systemd's store");
        }
    }
}

fn send(address: &str, message: &str, fd: Option<RawFd>) -> nix::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = match address.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes())?,
        None => UnixAddr::new(address)?,
    };
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(message.as_bytes())],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        Some(&addr),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_address_in_characters_systemd_accepts() {
        let addr: ListenAddr = "127.0.0.1:3000".parse().expect("an address");
        assert_eq!(name(&addr), "herdsman-127.0.0.1_3000");
        let unix: ListenAddr = "unix:/run/app.sock".parse().expect("an address");
        assert!(!name(&unix).contains(':'), "{}", name(&unix));
        assert_eq!(name_of(&addr, Some(2)), "herdsman-127.0.0.1_3000-slot2");
    }
}
