//! An `epoll(7)` instance watching descriptors for input, level-triggered, each under a token: the log
//! keeper's wait (see `keeper.rs`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An `epoll` instance watching descriptors for input (level-triggered), each under a token.
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned here.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn add(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event.
        let done =
            unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if done < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL; an fd not watched only gets an error.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits up to `timeout` ms (-1: for ever) and returns how many of `events` were filled.
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: libc::c_int,
    ) -> std::io::Result<usize> {
        // SAFETY: `events` is a valid array of `events.len()` epoll_event structures.
        let ready = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout,
            )
        };
        if ready < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ready as usize)
    }
}
