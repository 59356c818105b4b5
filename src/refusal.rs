//! Refusing a peer on a Unix socket (the control socket, the keeper's): the peer is told why in one frame,
//! `Response::Error` in place of the greeting, and the connection is closed. The daemon logs the first
//! refusal of each uid, then only counts: a peer retrying in a loop (or an attacker) cannot flood
//! `daemon.log`. While refusals of a uid go on, their count is logged at most once every [`LOG_EVERY`].

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tracing::warn;

use crate::protocol::{self, ErrorKind, Response};

/// How often refusals of a uid already logged are summed up in the log, at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What was logged of each refused uid: when, and how many refusals since.
#[derive(Default)]
pub struct Refusals {
    seen: HashMap<u32, (Instant, u64)>,
}

impl Refusals {
    /// Tells the peer `why` (one frame, written without waiting: a fresh socket's buffer takes it) and drops
    /// the connection; logs it if it is this uid's first refusal, or the first after [`LOG_EVERY`].
    pub fn refuse(
        &mut self,
        stream: UnixStream,
        socket: &str,
        uid: u32,
        pid: Option<i32>,
        why: &str,
    ) {
        let message = format!("refused by the herdsman daemon: {why}");
        if let Ok(frame) = protocol::encode_frame(&Response::error(ErrorKind::Invalid, message)) {
            // SAFETY: send on a descriptor the stream owns, from a live buffer; MSG_DONTWAIT never blocks.
            unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                );
            }
        }
        drop(stream);
        let pid = pid.unwrap_or(0);
        match self.seen.get_mut(&uid) {
            None => {
                warn!(
                    peer_uid = uid,
                    peer_pid = pid,
                    "refused a connection to the {socket} socket: {why} (further refusals of uid {uid} are \
                     counted, not logged one by one)"
                );
                self.seen.insert(uid, (Instant::now(), 0));
            }
            Some((logged, count)) => {
                *count += 1;
                if logged.elapsed() >= LOG_EVERY {
                    warn!(
                        peer_uid = uid,
                        refused = *count,
                        "refused {count} more connections to the {socket} socket from uid {uid} since the last \
                         report"
                    );
                    *logged = Instant::now();
                    *count = 0;
                }
            }
        }
    }
}
