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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

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
