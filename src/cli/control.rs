//! `stop`, `restart`, `delete`, `kill` and `daemon`: commands that change what runs.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::list;
use super::start::caller_env;
use crate::client::Client;
use crate::config::SignalName;
use crate::home::Home;
use crate::protocol::{Request, Response, ScaleTo, Selection};

/// Prints the process table of a successful response, or turns an error response into an error.
pub fn expect_processes(response: Response) -> Result<()> {
    match response {
        Response::Processes { processes } | Response::Reloaded { processes, .. } => {
            list::print(&processes, false)
        }
        Response::Ok
        | Response::Progress { .. }
        | Response::Note { .. }
        | Response::Described { .. }
        | Response::Snapshot { .. }
        | Response::Version(_)
        | Response::Jobs { .. }
        | Response::JobHistory { .. }
        | Response::JobNext { .. }
        | Response::Triggered { .. }
        | Response::FleetHistory { .. }
        | Response::FleetStatus { .. }
        | Response::Event(_) => Ok(()),
        Response::Error { message, .. } => bail!(message),
    }
}

/// The targets of a control command as one selection; a pattern that cannot be compiled is an error.
pub fn selection(targets: &[String]) -> Result<Selection> {
    Selection::parse_targets(targets).map_err(anyhow::Error::msg)
}

/// Sends a request that needs a running daemon. Without one, every app name or id is unknown.
fn act(home: &Home, target: &Selection, request: Request) -> Result<()> {
    let Some(mut client) = Client::connect(home)? else {
        if *target == Selection::All {
            // Nothing runs, so there is nothing to act on: done.
            return list::print(&[], false);
        }
        bail!(unknown_without_daemon(target));
    };
    expect_processes(client.request(&request)?)
}

/// Why a selection selects nothing when no daemon runs.
fn unknown_without_daemon(target: &Selection) -> String {
    match target {
        Selection::Regex(_) | Selection::Glob(_) => {
            format!("no app matches {target}: the daemon is not running")
        }
        Selection::Many(_) => format!("none of {target} is known: the daemon is not running"),
        _ => format!("no {target} is known: the daemon is not running"),
    }
}

pub fn stop(home: &Home, targets: &[String]) -> Result<()> {
    let target = selection(targets)?;
    act(
        home,
        &target,
        Request::Stop {
            target: target.clone(),
        },
    )
}

/// `restart`; with `update_env`, the workers get this command's environment, as `reload --update-env`.
pub fn restart(home: &Home, targets: &[String], update_env: bool) -> Result<()> {
    let target = selection(targets)?;
    let request = Request::Restart {
        target: target.clone(),
        env: update_env.then(caller_env),
    };
    act(home, &target, request)
}

pub fn delete(home: &Home, targets: &[String]) -> Result<()> {
    let target = selection(targets)?;
    act(
        home,
        &target,
        Request::Delete {
            target: target.clone(),
        },
    )
}

/// Replaces workers one at a time, printing a line as each one is replaced.
pub fn reload(home: &Home, targets: &[String], update_env: bool, json: bool) -> Result<()> {
    let target = selection(targets)?;
    let request = Request::Reload {
        target: target.clone(),
        env: update_env.then(caller_env),
    };
    let Some(mut client) = Client::connect(home)? else {
        bail!(unknown_without_daemon(&target));
    };
    let response = client.request_with_progress(&request, |frame| {
        if let Response::Progress { step } = frame
            && !json
        {
            let old = step.old_pid.map_or("-".to_string(), |pid| pid.to_string());
            println!(
                "{}:{}  pid {old} -> {}  ready after {} ms",
                step.name, step.instance, step.new_pid, step.ready_ms
            );
        }
    })?;
    match response {
        Response::Reloaded { steps, processes } if json => {
            let summary = serde_json::json!({ "reloaded": steps, "processes": processes });
            println!("{summary}");
            Ok(())
        }
        Response::Reloaded { steps, processes } => {
            println!("reloaded {} worker(s)", steps.len());
            list::print(&processes, false)
        }
        other => expect_processes(other),
    }
}

pub fn scale(home: &Home, name: &str, count: &str) -> Result<()> {
    let to: ScaleTo = count.parse().map_err(anyhow::Error::msg)?;
    let request = Request::Scale {
        name: name.to_string(),
        to,
    };
    act(home, &Selection::parse(name), request)
}

pub fn signal(home: &Home, signal: &str, target: &str) -> Result<()> {
    let signal: SignalName = signal.parse().or_else(|e| {
        match signal.to_ascii_uppercase().trim_start_matches("SIG") {
            "KILL" => Ok(SignalName(nix::sys::signal::Signal::SIGKILL)),
            _ => Err(e),
        }
    })?;
    let target = Selection::parse(target);
    let request = Request::Signal {
        target: target.clone(),
        signal,
    };
    act(home, &target, request)
}

/// Stops every app and the daemon, and returns once the daemon has exited.
pub fn kill(home: &Home) -> Result<()> {
    let Some(mut client) = Client::connect(home)? else {
        println!(
            "herdsman: no daemon is running for {}",
            home.root().display()
        );
        return Ok(());
    };
    let pid = client.hello.pid as i32;
    expect_processes(client.request(&Request::Kill)?)?;
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        if Instant::now() > deadline {
            bail!("the daemon (pid {pid}) stopped its apps but has not exited");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("herdsman: every app stopped; daemon (pid {pid}) exited");
    Ok(())
}

/// True while the process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
