//! The classic BPF program that picks a socket of a reuseport group for each new connection, attaching
//! and detaching it, and reading a listener's accept queue (see `mod.rs` for how they are used).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::config::Balance;

/// `SO_ATTACH_REUSEPORT_CBPF` (Linux 4.5).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
/// `SO_DETACH_REUSEPORT_BPF` (Linux 5.3).
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// The length of a listening socket's accept queue (`tcpi_unacked` of a socket in the LISTEN state).
pub(super) fn accept_queue(fd: BorrowedFd<'_>) -> u32 {
    crate::daemon::accept_queue::read(fd).map_or(0, |(depth, _limit)| depth)
}

/// A classic BPF instruction.
fn op(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// An offset in the IP header, as a load through `SKF_NET_OFF` takes it.
fn net(offset: i32) -> u32 {
    (libc::SKF_NET_OFF + offset) as u32
}

/// The program that answers, for a new connection, the index of the socket to give it: a hash (of the
/// client's address for `sticky`; of its address and port for `hash`) modulo the number of selected
/// sockets, mapped onto their indices. With nothing selected it answers an index past the group, and the
/// kernel falls back to its own hash over every socket.
pub(super) fn program(mode: Balance, indices: &[u32]) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD,
        BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH, BPF_ST, BPF_TAX, BPF_W,
        BPF_X, BPF_XOR,
    };
    if indices.is_empty() {
        return vec![op(BPF_RET | BPF_K, u32::MAX)];
    }
    let mut p = vec![
        // A = the IP version (the high nibble of the first byte of the IP header).
        op(BPF_LD | BPF_B | BPF_ABS, net(0)),
        op(BPF_ALU | BPF_RSH | BPF_K, 4),
    ];
    let with_port = mode == Balance::Hash;
    if with_port {
        // M[0] = the source port: IPv4 after the header's IHL words, IPv6 after its fixed 40 bytes.
        p.extend([
            jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 8, 0),
            op(BPF_LD | BPF_B | BPF_ABS, net(0)),
            op(BPF_ALU | BPF_AND | BPF_K, 0x0f),
            op(BPF_ALU | BPF_LSH | BPF_K, 2),
            op(BPF_MISC | BPF_TAX, 0),
            op(BPF_LD | BPF_H | BPF_IND, net(0)),
            op(BPF_ST, 0),
            op(BPF_LD | BPF_W | BPF_ABS, net(12)),
            op(BPF_JMP | BPF_JA, 3),
            op(BPF_LD | BPF_H | BPF_ABS, net(40)),
            op(BPF_ST, 0),
            op(BPF_LD | BPF_W | BPF_ABS, net(20)),
            // A = address ^ (port * golden ratio)
            op(BPF_MISC | BPF_TAX, 0),
            op(BPF_LD | BPF_MEM, 0),
            op(BPF_ALU | BPF_MUL | BPF_K, 0x9e37_79b1),
            op(BPF_ALU | BPF_XOR | BPF_X, 0),
        ]);
    } else {
        p.extend([
            // IPv6: the last four bytes of the source address (an IPv4-mapped one's IPv4 address).
            jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 2),
            op(BPF_LD | BPF_W | BPF_ABS, net(20)),
            op(BPF_JMP | BPF_JA, 1),
            // IPv4: the source address.
            op(BPF_LD | BPF_W | BPF_ABS, net(12)),
        ]);
    }
    p.extend([
        // Mix the bits (so that addresses differing only in high bits spread too):
        // a ^= a >> 16; a *= 0x45d9f3b; a ^= a >> 16.
        op(BPF_MISC | BPF_TAX, 0),
        op(BPF_ALU | BPF_RSH | BPF_K, 16),
        op(BPF_ALU | BPF_XOR | BPF_X, 0),
        op(BPF_ALU | BPF_MUL | BPF_K, 0x045d_9f3b),
        op(BPF_MISC | BPF_TAX, 0),
        op(BPF_ALU | BPF_RSH | BPF_K, 16),
        op(BPF_ALU | BPF_XOR | BPF_X, 0),
        op(BPF_ALU | BPF_MOD | BPF_K, indices.len() as u32),
    ]);
    // The n-th selected socket's index in the group.
    let (last, rest) = indices.split_last().unwrap_or((&u32::MAX, &[]));
    for (n, index) in rest.iter().enumerate() {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, n as u32, 0, 1));
        p.push(op(BPF_RET | BPF_K, *index));
    }
    p.push(op(BPF_RET | BPF_K, *last));
    p
}

/// Attaches a program to the reuseport group of this socket (replacing the group's previous one).
pub(super) fn attach(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    if program.len() > libc::BPF_MAXINSNS as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many workers for one balancing program",
        ));
    }
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches the group's program: the kernel's own hash chooses again.
pub(super) fn detach(fd: BorrowedFd<'_>) -> io::Result<()> {
    let unused: libc::c_int = 0;
    // SAFETY: a plain setsockopt with an int argument the kernel ignores.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_REUSEPORT_BPF,
            (&unused as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        // Nothing was attached.
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
