//! The controller: the process that serves the control socket (`HERDSMAN_HOME/herdsman.sock`) for the
//! keeper (`crate::daemon`), which started it and starts a new one whenever it exits.
//!
//! It is the daemon's face to every CLI: it checks each peer (SO_PEERCRED: the same user, or root), reads and
//! decodes every request (so nothing malformed reaches the keeper), and relays it over the keeper's own
//! socket, passing the answers back (`relay.rs`). It holds no state of the apps: the keeper has it, so a
//! controller that dies (SIGKILL, a panic, the OOM killer: it asks the kernel to prefer it over the keeper)
//! loses nothing but the requests it was relaying, whose CLIs are told so, and the next controller answers
//! with the true state at once.
//!
//! It inherits the listening socket from the keeper, which keeps a copy: connections made while no
//! controller runs wait in the backlog. It dies with the keeper (PR_SET_PDEATHSIG); SIGTERM (the keeper
//! stopping) makes it stop accepting and pass on the answers of the requests in flight first.

mod metrics;
mod relay;

use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::home::Home;

/// How long a stopping controller waits for the answers of the requests in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves the inherited control socket until SIGTERM, or until the keeper is gone.
pub fn run(home: &Home, listen_fd: RawFd, keeper_pid: i32) -> Result<()> {
    // The keeper may have died between its fork and the PR_SET_PDEATHSIG that would have told us.
    if nix::unistd::getppid().as_raw() != keeper_pid {
        bail!("the keeper (pid {keeper_pid}) is gone: nothing to control");
    }
    // Of the two, the kernel should pick the controller when memory runs out: it comes back; the keeper
    // holds the workers. Raising one's own score needs no privilege.
    let _ = std::fs::write("/proc/self/oom_score_adj", "500");
    crate::heap::tune();
    // SAFETY: the descriptor was inherited for us alone (the keeper cleared close-on-exec on it only).
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(listen_fd) };
    listener
        .set_nonblocking(true)
        .context("cannot use the inherited control socket")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keeper = home.keeper_socket();
    runtime.block_on(serve(listener, keeper, home))
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    keeper: PathBuf,
    home: &Home,
) -> Result<()> {
    let listener = tokio::net::UnixListener::from_std(listener)
        .context("cannot use the inherited control socket")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    // A terminal's ^C or a hang-up is the keeper's to act on.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let uid = nix::unistd::geteuid().as_raw();
    let keeper = Arc::new(keeper);
    // The metrics endpoint, if `[daemon] metrics` set one (see `metrics/`).
    let metrics = metrics::Endpoint::new(home, keeper.clone());
    metrics.resume();
    // Each connection task holds a clone of `alive`; when the last is dropped, every answer has been passed on.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let mut acceptor = crate::accepting::Acceptor::default();
    let mut refusals = crate::refusal::Refusals::default();
    info!(pid = std::process::id(), "controller serving");
    loop {
        let stream = tokio::select! {
            stream = acceptor.accept(&listener, "control") => stream,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => continue,
            _ = sighup.recv() => continue,
        };
        // Only this user, or root, may drive the daemon.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid || cred.uid() == 0 => {}
            Ok(cred) => {
                let why = format!(
                    "uid {} may not use the daemon of uid {uid} (only its own user, or root, may)",
                    cred.uid()
                );
                refusals.refuse(stream, "control", cred.uid(), cred.pid(), &why);
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the peer's credentials: connection refused");
                continue;
            }
        }
        let (keeper, alive, metrics) = (keeper.clone(), alive.clone(), metrics.clone());
        tokio::spawn(async move {
            relay::connection(stream, &keeper, &metrics).await;
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    let _ = tokio::time::timeout(DRAIN, all_closed.recv()).await;
    Ok(())
}
