//! `update`: moves the running daemon onto a new herdsman executable without restarting any app. The
//! keeper checks the new executable (`upgrade-check`), answers, and re-executes itself in place (same pid,
//! same workers, same sockets); this command then waits until the daemon reports the update, or why it
//! did not happen. A keeper that is busy (a reload in progress, a worker starting) is asked again until it
//! is not, for a while.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::client::Client;
use crate::home::Home;
use crate::protocol::{DaemonVersion, ErrorKind, PROTOCOL_VERSION, Request, Response};

/// How long a busy keeper is asked again.
const BUSY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the switch itself may take to show.
const SWITCH_DEADLINE: Duration = Duration::from_secs(15);

pub fn run(home: &Home, binary: Option<PathBuf>) -> Result<()> {
    let binary = match binary {
        Some(path) => std::path::absolute(&path)
            .with_context(|| format!("cannot resolve {}", path.display()))?,
        None => std::env::current_exe().context("cannot find this herdsman executable")?,
    };
    if !binary.is_file() {
        bail!("{} is not a file: nothing was changed", binary.display());
    }
    let Some(mut client) = Client::connect_any(home)? else {
        bail!(
            "no daemon is running for {}: nothing to update (the next command starts one on this version)",
            home.root().display()
        );
    };
    let keeper = client.hello.pid;
    let from = client.hello.version.clone();
    let before = (client.hello.protocol == PROTOCOL_VERSION)
        .then(|| version(&mut client))
        .transpose()?;
    let busy_until = Instant::now() + BUSY_DEADLINE;
    let mut said_busy = false;
    loop {
        let request = Request::Update {
            binary: binary.clone(),
        };
        match client.request(&request)? {
            Response::Ok => break,
            Response::Error {
                kind: ErrorKind::Conflict,
                message,
            } if message.starts_with("busy:") && Instant::now() < busy_until => {
                if !said_busy {
                    eprintln!("herdsman: the daemon is {message}");
                    said_busy = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Response::Error {
                kind: ErrorKind::BadRequest,
                ..
            } => bail!(
                "the running daemon (herdsman {from}) predates `herdsman update`: move it onto this \
                 version with `herdsman save && herdsman kill && herdsman resurrect` (this restarts the apps)"
            ),
            Response::Error { message, .. } => {
                bail!("update refused: {message}; nothing was changed")
            }
            other => bail!("unexpected answer from the daemon: {other:?}"),
        }
    }
    drop(client);
    let deadline = Instant::now() + SWITCH_DEADLINE;
    loop {
        if let Ok(Some(mut client)) = Client::connect(home)
            && let Ok(now) = version(&mut client)
        {
            if now.keeper_pid != keeper {
                bail!(
                    "the daemon's keeper is now pid {} (it was {keeper}): it did not survive the update; \
                     see {}",
                    now.keeper_pid,
                    home.daemon_log().display()
                );
            }
            let moved = before.as_ref().is_none_or(|b| now.updates > b.updates);
            if moved {
                println!(
                    "herdsman: daemon moved from herdsman {from} to herdsman {} ({}); keeper pid {} kept, \
                     no app restarted",
                    now.version, now.binary, now.keeper_pid
                );
                return Ok(());
            }
            if let Some(error) = &now.last_update_error
                && before
                    .as_ref()
                    .is_none_or(|b| b.last_update_error.as_ref() != Some(error))
            {
                bail!("{error}; the daemon goes on with herdsman {}", now.version);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not report the update within {} s; see {}",
                SWITCH_DEADLINE.as_secs(),
                home.daemon_log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn version(client: &mut Client) -> Result<DaemonVersion> {
    match client.request(&Request::Version)? {
        Response::Version(version) => Ok(version),
        Response::Error { message, .. } => bail!(message),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}
