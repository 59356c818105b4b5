//! Accepting on a Unix control socket without spinning when `accept` fails (out of descriptors, most
//! likely): the caller retries every [`RETRY`], warned about once when it starts failing, then once every
//! [`WARN_EVERY`] while it lasts, and told when it accepts again. Used by the controller's control socket
//! and the keeper's own.

use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// How often a failing `accept` is retried.
const RETRY: Duration = Duration::from_millis(100);
/// How often a failing `accept` is warned about while it goes on failing.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// An accept loop's memory of failures: when it last warned, and how many times `accept` failed.
#[derive(Default)]
pub struct Acceptor {
    failing: Option<(Instant, u64)>,
}

impl Acceptor {
    /// The next connection, retrying (and warning, sparingly) while `accept` fails.
    pub async fn accept(&mut self, listener: &UnixListener, socket: &str) -> UnixStream {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Some((_, failures)) = self.failing.take() {
                        info!(failures, "accepting {socket} connections again");
                    }
                    return stream;
                }
                Err(e) => {
                    match &mut self.failing {
                        None => {
                            warn!(error = %e, "accept on the {socket} socket failed; retrying every 100 ms");
                            self.failing = Some((Instant::now(), 1));
                        }
                        Some((warned, failures)) => {
                            *failures += 1;
                            if warned.elapsed() >= WARN_EVERY {
                                warn!(error = %e, failures = *failures, "accept on the {socket} socket still fails");
                                *warned = Instant::now();
                            }
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
