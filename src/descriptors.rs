//! What a process started by herdsman must not inherit: every descriptor past the standard three that the
//! starter did not mean to give it.
//!
//! The functions here run between `fork` and `execve` (in a `pre_exec`, or in the worker's child), so they
//! allocate nothing and make only async-signal-safe system calls. `close_range(2)` (Linux 5.11+) does the
//! work in one call; on older kernels, or where seccomp refuses it, a loop of `fcntl`/`close` up to the soft
//! `RLIMIT_NOFILE` (at most 2^20) does the same, slowly but correctly.

use std::os::fd::RawFd;

use libc::c_uint;

const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;
/// How far the fallback loop goes when the limit is larger (or unknown).
const LOOP_MAX: RawFd = 1 << 20;

/// The highest descriptor number the fallback loop visits (exclusive). Async-signal-safe.
fn loop_end() -> RawFd {
    // SAFETY: getrlimit fills a plain struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(LOOP_MAX as libc::rlim_t) as RawFd
        } else {
            4096
        }
    }
}

/// Marks descriptors `first..=last` close-on-exec (`last` `None`: to the end). Async-signal-safe.
pub fn cloexec_range(first: RawFd, last: Option<RawFd>) {
    if first < 0 || last.is_some_and(|last| last < first) {
        return;
    }
    let end = last.map_or(c_uint::MAX, |last| last as c_uint);
    // SAFETY: close_range and fcntl only change descriptor flags.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as c_uint,
            end,
            CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        let stop = last.map_or(loop_end(), |last| last.saturating_add(1).min(loop_end()));
        for fd in first..stop {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Marks every descriptor from `first` on close-on-exec except `keep`, whose close-on-exec flag is
/// cleared (the one descriptor a child is meant to inherit). Async-signal-safe.
pub fn cloexec_all_but(first: RawFd, keep: RawFd) -> std::io::Result<()> {
    if keep > first {
        cloexec_range(first, Some(keep - 1));
    }
    cloexec_range(first.max(keep + 1), None);
    // SAFETY: fcntl on a descriptor number; failure is reported.
    if unsafe { libc::fcntl(keep, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from `first` on. For a process's very start, before anything of its own is
/// open (nothing in Rust owns these descriptors then). Async-signal-safe.
pub fn close_from(first: RawFd) {
    // SAFETY: close_range and close on descriptors nothing in this process owns yet.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first as c_uint, c_uint::MAX, 0) == 0 {
            return;
        }
        for fd in first..loop_end() {
            libc::close(fd);
        }
    }
}

/// Where the daemon keeps the descriptors no child ever needs (its copies of the log pipes' read ends, two
/// per worker): at this number and above, while everything else it opens stays below. A new worker then
/// copies only the descriptors below (see [`unshare_below_parked`]) instead of all of them: with a
/// thousand workers, copying and then closing two thousand descriptors at each exec was a quarter of
/// the daemon's work in starting them.
pub const PARKED_BASE: RawFd = 4096;

/// A close-on-exec copy of `fd` at [`PARKED_BASE`] or above, or, where the descriptor limit is lower or
/// that range is full, wherever the kernel puts it.
pub fn park(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: fcntl duplicates a descriptor this process holds; a new one is owned here.
    let parked = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PARKED_BASE) };
    if parked >= 0 {
        // SAFETY: a descriptor just returned by the kernel.
        return Ok(unsafe { OwnedFd::from_raw_fd(parked) });
    }
    fd.try_clone_to_owned()
}

/// For a child that shares its parent's descriptor table (`CLONE_FILES`): gives it a table of its own
/// holding only the descriptors below [`PARKED_BASE`] (`close_range` with `CLOSE_RANGE_UNSHARE`, Linux
/// 5.9+), or else a copy of the whole table. Until this returns the child must not open, close or move
/// a descriptor: they are its parent's. Async-signal-safe.
pub fn unshare_below_parked() -> std::io::Result<()> {
    // SAFETY: close_range and unshare only change this process's own descriptor table.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            PARKED_BASE as c_uint,
            c_uint::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        ) == 0
            || libc::unshare(libc::CLONE_FILES) == 0
        {
            return Ok(());
        }
    }
    Err(std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_parked_copy_is_above_the_base_where_the_limit_allows_and_the_same_pipe() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        let (reader, mut writer) = std::io::pipe().expect("a pipe");
        let parked = park(reader.as_fd()).expect("a copy");
        // SAFETY: getrlimit fills a plain struct.
        let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        if limit.rlim_cur > PARKED_BASE as libc::rlim_t {
            assert!(
                parked.as_raw_fd() >= PARKED_BASE,
                "parked at {}",
                parked.as_raw_fd()
            );
        }
        // SAFETY: fcntl reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(parked.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        writer.write_all(b"x").expect("write");
        drop(writer);
        drop(reader);
        let mut read = String::new();
        std::fs::File::from(parked)
            .read_to_string(&mut read)
            .expect("read through the copy");
        assert_eq!(read, "x");
    }

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only queries.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    #[test]
    fn all_but_one_descriptor_are_marked_close_on_exec() {
        // Descriptors of this test only: created without close-on-exec (dup keeps none).
        let file = std::fs::File::open("/dev/null").expect("open");
        // SAFETY: dup of a descriptor we own; the copies are closed below.
        let (a, b) = unsafe { (libc::dup(file.as_raw_fd()), libc::dup(file.as_raw_fd())) };
        assert!(a >= 3 && b >= 3 && !cloexec(a) && !cloexec(b));
        // Only mark the range these two are in, so other tests' descriptors are left alone.
        let (low, high) = (a.min(b), a.max(b));
        cloexec_range(low, Some(high));
        assert!(cloexec(a) && cloexec(b));
        // SAFETY: clearing the flag on our own descriptor.
        unsafe { libc::fcntl(low, libc::F_SETFD, 0) };
        cloexec_range(high, Some(high));
        assert!(!cloexec(low) && cloexec(high));
        // SAFETY: closing the copies made above.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }
}
