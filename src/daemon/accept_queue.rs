//! The accept queue of a TCP listening socket, and when connections waiting in it mean nobody accepts.
//!
//! `getsockopt(TCP_INFO)` on a socket in the LISTEN state reports the queue's length in `tcpi_unacked`
//! (connections established and not yet accepted) and its limit, the backlog, in `tcpi_sacked`. A Unix
//! socket has no such figures.
//!
//! "Nobody accepting" ([`Stall`]): the queue has been non-empty and has not shrunk for
//! [`NOBODY_ACCEPTING_AFTER`], read every [`QUEUE_INTERVAL`]. While workers accept, the queue empties
//! or at least shrinks between two readings; a worker that bound a port of its own (puma without a `-b`
//! matching the socket) or an app whose every worker is stuck leaves the connections there.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How often the daemon reads the queues of the TCP sockets it holds (only while it holds any).
pub const QUEUE_INTERVAL: Duration = Duration::from_secs(1);
/// How long connections wait, the queue never shrinking, before the app is marked as nobody accepting.
pub const NOBODY_ACCEPTING_AFTER: Duration = Duration::from_secs(3);

/// A listening TCP socket's accept queue: (connections waiting, limit). `None` for a socket that is not
/// TCP or cannot be read.
pub fn read(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    // SAFETY: tcp_info is plain data; zeroes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((info.tcpi_unacked, info.tcpi_sacked))
}

/// One queue's history, for telling "nobody accepts" apart from "busy".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stall {
    last_depth: u32,
    /// Since when the queue has been non-empty without shrinking.
    since: Option<Instant>,
    /// The stall was reported (reported once per stall).
    reported: bool,
}

/// What a reading changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Connections have now waited for [`NOBODY_ACCEPTING_AFTER`] with nobody accepting.
    Stalled(Duration),
    /// A reported stall ended: the queue shrank or emptied.
    Recovered,
}

impl Stall {
    /// Takes a reading of the queue's depth at `now`.
    pub fn observe(&mut self, depth: u32, now: Instant) -> Change {
        let shrank = depth == 0 || depth < self.last_depth;
        self.last_depth = depth;
        if shrank {
            self.since = (depth > 0).then_some(now);
            return if std::mem::take(&mut self.reported) {
                Change::Recovered
            } else {
                Change::None
            };
        }
        let since = *self.since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited >= NOBODY_ACCEPTING_AFTER && !self.reported {
            self.reported = true;
            return Change::Stalled(waited);
        }
        Change::None
    }

    /// How long connections have waited with the queue never shrinking, as of `now`.
    pub fn waited(&self, now: Instant) -> Option<Duration> {
        self.since.map(|s| now.saturating_duration_since(s))
    }

    /// Nobody has accepted for [`NOBODY_ACCEPTING_AFTER`].
    pub fn stalled(&self) -> bool {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_queue_that_never_shrinks_stalls_once_and_recovers_when_it_empties() {
        let t = Instant::now();
        let mut stall = Stall::default();
        assert_eq!(stall.observe(0, t), Change::None);
        assert_eq!(stall.observe(2, at(t, 1000)), Change::None);
        assert_eq!(stall.observe(2, at(t, 2000)), Change::None);
        assert_eq!(stall.observe(3, at(t, 3000)), Change::None);
        assert_eq!(
            stall.observe(3, at(t, 4000)),
            Change::Stalled(Duration::from_secs(3))
        );
        assert!(stall.stalled());
        assert_eq!(stall.observe(4, at(t, 5000)), Change::None);
        assert_eq!(stall.observe(0, at(t, 6000)), Change::Recovered);
        assert!(!stall.stalled() && stall.waited(at(t, 6000)).is_none());
    }

    #[test]
    fn a_busy_queue_that_shrinks_between_readings_never_stalls() {
        let t = Instant::now();
        let mut stall = Stall::default();
        for (i, depth) in [5, 3, 6, 4, 7, 2, 9, 8, 10, 1].into_iter().enumerate() {
            assert_eq!(stall.observe(depth, at(t, 1000 * i as u64)), Change::None);
        }
        assert!(!stall.stalled());
    }

    #[test]
    fn a_queue_that_shrinks_starts_counting_again() {
        let t = Instant::now();
        let mut stall = Stall::default();
        stall.observe(4, t);
        stall.observe(4, at(t, 2500));
        assert_eq!(stall.observe(3, at(t, 2900)), Change::None);
        assert_eq!(stall.waited(at(t, 3000)), Some(Duration::from_millis(100)));
        assert_eq!(stall.observe(3, at(t, 5000)), Change::None);
        assert!(matches!(stall.observe(3, at(t, 5900)), Change::Stalled(_)));
    }
}
