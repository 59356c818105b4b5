//! `balance = "hash" | "sticky"`: one SO_REUSEPORT socket per worker slot, chosen by the kernel.
//!
//! For such an app the daemon binds, for each of its addresses, one listening socket per worker slot, all
//! with SO_REUSEPORT on the same address: the kernel makes them one *reuseport group* and picks a socket
//! of the group for each new connection. Slot k's worker inherits socket k alone (fd 3 onward, as with a
//! shared socket). The daemon keeps every socket for as long as its slot exists, so a crash or a restart of
//! worker k leaves socket k open: the connections the kernel queued on it wait for the replacement. A
//! reload hands the successor the same socket while the old worker drains it.
//!
//! Which socket a connection gets:
//! - `hash`: the kernel's own hash of the connection's addresses and ports, when every socket is in the
//!   selection (no program attached); otherwise a program that hashes the client's address and port over
//!   the selected sockets.
//! - `sticky`: a classic BPF program attached with `SO_ATTACH_REUSEPORT_CBPF` (no privilege needed) reads
//!   the client's address from the IP header (through `SKF_NET_OFF`: the IPv4 source address, or the last
//!   four bytes of the IPv6 one, which for an IPv4-mapped address is the IPv4 address again), mixes its
//!   bits, takes it modulo the number of selected slots and answers the index of that slot's socket. One
//!   client address always reaches the same worker while the selection is unchanged.
//!
//! The kernel numbers a group's sockets in the order they started listening, and closing one moves the
//! last one into its place (`swap_remove`). [`Group::members`] mirrors that order exactly, so the program
//! can name sockets by index. The program maps the hash onto the selected slots in instance order, so the
//! clients of a slot keep their worker when other sockets move.
//!
//! A slot is taken out of the selection (the program attached again without it) before its worker is told
//! to stop for good (a scale down, a delete, a stop), so no new connection is queued on its socket; the
//! socket is closed once the slot is gone. A change of the number of selected slots re-hashes clients: with
//! N selected slots a client goes to slot `h mod N`, so going from N to M moves every client whose
//! `h mod N` and `h mod M` differ (most of them); while the count is unchanged nobody moves.

mod program;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use crate::config::{Balance, ListenAddr};
use crate::daemon::listener::Listener;
use program::{accept_queue, attach, detach, program};

/// An app's per-slot sockets: one reuseport group per address.
#[derive(Debug)]
pub struct SlotSockets {
    mode: Balance,
    groups: Vec<Group>,
    /// The slots in the selection, in instance order, as last attached; `None` before any attach.
    selected: Option<Vec<u32>>,
}

#[derive(Debug)]
struct Group {
    addr: ListenAddr,
    /// The group's sockets in the kernel's order: what the program's answer indexes.
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    /// The worker slot (its id) the socket belongs to.
    slot: u32,
    listener: Listener,
}

impl SlotSockets {
    pub fn new(mode: Balance, addrs: &[ListenAddr]) -> SlotSockets {
        SlotSockets {
            mode,
            groups: addrs
                .iter()
                .map(|addr| Group {
                    addr: addr.clone(),
                    members: Vec::new(),
                })
                .collect(),
            selected: None,
        }
    }

    pub fn mode(&self) -> Balance {
        self.mode
    }

    /// The addresses, in the order of the spec's `listen`.
    pub fn addrs(&self) -> Vec<ListenAddr> {
        self.groups.iter().map(|g| g.addr.clone()).collect()
    }

    /// Binds the slot's sockets (one per address) where it has none. The slot is not in the selection until
    /// [`SlotSockets::select`] puts it there (with `hash` and every socket selected, the kernel may pick it
    /// at once: its worker is about to start, and connections wait in its backlog meanwhile).
    pub fn open(&mut self, slot: u32, instance: u32, cwd: &Path) -> Result<(), String> {
        for group in &mut self.groups {
            if group.members.iter().any(|m| m.slot == slot) {
                continue;
            }
            let position = group.members.len() as u32;
            let listener = Listener::bind_slot(&group.addr, cwd, position)
                .map_err(|e| format!("worker {instance}'s socket: {e}"))?;
            group.members.push(Member { slot, listener });
        }
        self.reattach();
        Ok(())
    }

    /// The slot's sockets, in address order (what its worker inherits as fds 3, 4, ...).
    pub fn fds(&self, slot: u32) -> Vec<BorrowedFd<'_>> {
        self.groups
            .iter()
            .filter_map(|g| g.members.iter().find(|m| m.slot == slot))
            .map(|m| m.listener.fd())
            .collect()
    }

    /// Connections waiting in the accept queues of the slot's sockets (none where that cannot be read).
    pub fn queued(&self, slot: u32) -> u32 {
        self.fds(slot).into_iter().map(accept_queue).sum()
    }

    /// Whether the slot has its sockets.
    pub fn has(&self, slot: u32) -> bool {
        self.groups
            .iter()
            .all(|g| g.members.iter().any(|m| m.slot == slot))
    }

    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.members.is_empty())
    }

    /// Puts exactly these slots (in instance order) in the selection; attaches the programs again if that
    /// changes anything.
    pub fn select(&mut self, slots: Vec<u32>) {
        if self.selected.as_ref() == Some(&slots) {
            return;
        }
        self.selected = Some(slots);
        self.reattach();
    }

    /// Closes the sockets of every slot `keep` refuses, and attaches the programs again over what is left
    /// (closing a socket moves the group's last socket into its place).
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let mut changed = false;
        for group in &mut self.groups {
            let mut index = 0;
            while index < group.members.len() {
                if keep(group.members[index].slot) {
                    index += 1;
                } else {
                    // As the kernel does: the last socket takes the place of the one that goes.
                    let member = group.members.swap_remove(index);
                    let queued = accept_queue(member.listener.fd());
                    if queued > 0 {
                        tracing::warn!(addr = %group.addr, queued, "closing a worker's socket with connections still queued on it (net.ipv4.tcp_migrate_req moves them to the other sockets)");
                    }
                    drop(member);
                    if let Some(moved) = group.members.get_mut(index) {
                        moved.listener.moved_to(index as u32);
                    }
                    changed = true;
                }
            }
        }
        if let Some(selected) = &mut self.selected {
            selected.retain(|&slot| keep(slot));
        }
        if changed {
            self.reattach();
        }
    }

    /// Closes every socket (the app stopped).
    pub fn clear(&mut self) {
        for group in &mut self.groups {
            group.members.clear();
        }
        self.selected = None;
    }

    /// The addresses of the sockets held, one entry per address (for `describe`).
    pub fn addresses(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|g| !g.members.is_empty())
            .map(|g| format!("{} ({} sockets)", g.addr, g.members.len()))
            .collect()
    }

    /// Every socket, in the kernel's order within each address, with its slot.
    pub fn parts(&self) -> Vec<(ListenAddr, u32, BorrowedFd<'_>)> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.members
                    .iter()
                    .map(|m| (g.addr.clone(), m.slot, m.listener.fd()))
            })
            .collect()
    }

    /// Takes back a socket carried over an in-place re-exec or adopted from a worker, in the kernel's order.
    pub fn restore(&mut self, addr: &ListenAddr, slot: u32, fd: OwnedFd) {
        let Some(group) = self.groups.iter_mut().find(|g| &g.addr == addr) else {
            return;
        };
        let position = group.members.len() as u32;
        let listener = Listener::from_parts_slot(fd, addr.clone(), None, position);
        group.members.push(Member { slot, listener });
    }

    /// Stores every socket in systemd's fd store again (a keeper that adopted them).
    pub fn store(&self) {
        for group in &self.groups {
            for member in &group.members {
                member.listener.store();
            }
        }
    }

    /// Attaches each group's program for the current selection (or detaches it, for `hash` with every
    /// socket selected). A failure is logged: the kernel then keeps choosing by its own hash over every
    /// socket of the group, which loses no connection.
    fn reattach(&mut self) {
        let Some(selected) = &self.selected else {
            return;
        };
        for group in &self.groups {
            let Some(first) = group.members.first() else {
                continue;
            };
            let indices: Vec<u32> = selected
                .iter()
                .filter_map(|slot| group.members.iter().position(|m| m.slot == *slot))
                .map(|i| i as u32)
                .collect();
            let fd = first.listener.fd();
            let result = if self.mode == Balance::Hash && indices.len() == group.members.len() {
                detach(fd).or_else(|_| attach(fd, &program(self.mode, &indices)))
            } else {
                attach(fd, &program(self.mode, &indices))
            };
            if let Err(e) = result {
                tracing::warn!(addr = %group.addr, error = %e, "cannot attach the balancing program: the kernel hashes over every socket");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::os::fd::AsFd;

    /// `n` SO_REUSEPORT listeners on one free loopback port, in the kernel's order.
    fn group(n: usize) -> (u16, Vec<Socket>) {
        let mut port = 0;
        let mut sockets = Vec::new();
        for _ in 0..n {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            s.set_reuse_port(true).expect("reuseport");
            s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
                .expect("bind");
            s.listen(64).expect("listen");
            s.set_nonblocking(true).expect("nonblocking");
            port = s
                .local_addr()
                .expect("local")
                .as_socket()
                .expect("inet")
                .port();
            sockets.push(s);
        }
        (port, sockets)
    }

    /// Connects from 127.0.0.`source` and says which listener got the connection.
    fn landed(port: u16, source: u8, sockets: &[Socket]) -> usize {
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        client
            .bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)).into())
            .expect("bind the client");
        client
            .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
            .expect("connect");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            for (i, s) in sockets.iter().enumerate() {
                if s.accept().is_ok() {
                    return i;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no listener got it");
            std::thread::yield_now();
        }
    }

    #[test]
    fn sticky_sends_each_client_address_to_one_socket_and_spreads_addresses() {
        let (port, sockets) = group(4);
        attach(sockets[0].as_fd(), &program(Balance::Sticky, &[0, 1, 2, 3])).expect("attach");
        let mut used = std::collections::BTreeSet::new();
        for source in 1..=16u8 {
            let first = landed(port, source, &sockets);
            for _ in 0..3 {
                assert_eq!(landed(port, source, &sockets), first, "127.0.0.{source}");
            }
            used.insert(first);
        }
        assert!(used.len() >= 3, "16 addresses reached only {used:?}");
    }

    #[test]
    fn a_socket_out_of_the_selection_gets_no_connection() {
        let (port, sockets) = group(3);
        // Only sockets 2 and 0 are selected, in that order.
        attach(sockets[0].as_fd(), &program(Balance::Sticky, &[2, 0])).expect("attach");
        for source in 1..=12u8 {
            assert_ne!(landed(port, source, &sockets), 1, "127.0.0.{source}");
        }
        attach(sockets[0].as_fd(), &program(Balance::Hash, &[2])).expect("attach");
        for source in 1..=6u8 {
            assert_eq!(landed(port, source, &sockets), 2, "127.0.0.{source}");
        }
        attach(sockets[0].as_fd(), &program(Balance::Hash, &[0, 2])).expect("attach");
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..40 {
            used.insert(landed(port, 1, &sockets));
        }
        assert_eq!(
            used,
            [0, 2].into(),
            "hash: one address, many ports, both selected sockets"
        );
        detach(sockets[0].as_fd()).expect("detach");
    }

    #[test]
    fn sticky_keeps_an_ipv6_client_on_one_socket() {
        use std::net::Ipv6Addr;
        let mut port = 0;
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let s = Socket::new(Domain::IPV6, Type::STREAM, None).expect("socket");
            s.set_only_v6(false).expect("dual stack");
            s.set_reuse_port(true).expect("reuseport");
            if s.bind(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)).into())
                .is_err()
            {
                return; // no IPv6 on this host
            }
            s.listen(64).expect("listen");
            s.set_nonblocking(true).expect("nonblocking");
            port = s
                .local_addr()
                .expect("local")
                .as_socket()
                .expect("inet")
                .port();
            sockets.push(s);
        }
        attach(sockets[0].as_fd(), &program(Balance::Sticky, &[0, 1, 2])).expect("attach");
        let landed6 = || {
            let _client = std::net::TcpStream::connect(("::1", port)).expect("connect");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                if let Some(i) = sockets.iter().position(|s| s.accept().is_ok()) {
                    return i;
                }
                assert!(std::time::Instant::now() < deadline, "no listener got it");
                std::thread::yield_now();
            }
        };
        let first = landed6();
        for _ in 0..5 {
            assert_eq!(landed6(), first, "::1 keeps its socket");
        }
    }

    #[test]
    fn the_accept_queue_of_a_listener_is_counted() {
        let (port, sockets) = group(1);
        assert_eq!(accept_queue(sockets[0].as_fd()), 0);
        let clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        assert_eq!(accept_queue(sockets[0].as_fd()), 3);
        drop(clients);
    }

    #[test]
    fn a_program_never_outgrows_the_kernel_limit_for_a_thousand_workers() {
        let indices: Vec<u32> = (0..1000).collect();
        assert!(program(Balance::Hash, &indices).len() <= libc::BPF_MAXINSNS as usize);
        assert_eq!(program(Balance::Sticky, &[]).len(), 1);
    }
}
