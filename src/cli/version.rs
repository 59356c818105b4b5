//! `version`: this CLI's version and the running daemon's. Never starts a daemon.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::client::Client;
use crate::home::Home;
use crate::protocol::{DaemonVersion, PROTOCOL_VERSION, Request, Response};

#[derive(Serialize)]
struct Versions {
    cli: Cli,
    /// `null` when no daemon runs for this home.
    daemon: Option<DaemonVersion>,
}

#[derive(Serialize)]
struct Cli {
    version: &'static str,
    protocol: u32,
}

pub fn run(home: &Home, json: bool) -> Result<()> {
    let daemon = match Client::connect(home)? {
        None => None,
        Some(mut client) => match client.request(&Request::Version)? {
            Response::Version(version) => Some(version),
            Response::Error { message, .. } => bail!(message),
            other => bail!("unexpected answer from the daemon: {other:?}"),
        },
    };
    let versions = Versions {
        cli: Cli {
            version: crate::VERSION,
            protocol: PROTOCOL_VERSION,
        },
        daemon,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(());
    }
    println!(
        "herdsman {} (protocol {})",
        versions.cli.version, versions.cli.protocol
    );
    match &versions.daemon {
        None => println!("daemon: not running for {}", home.root().display()),
        Some(d) => {
            let controller = d
                .controller_pid
                .map_or("none running".to_string(), |pid| format!("pid {pid}"));
            println!(
                "daemon: herdsman {} (protocol {}): keeper pid {}, controller {} ({} restarts)",
                d.version, d.protocol, d.keeper_pid, controller, d.controller_restarts
            );
        }
    }
    Ok(())
}
