//! The threads that feed the event loop, each sending [`Event`]s into one channel:
//!
//! - the subscription: one connection sends [`Request::Subscribe`] and turns every
//!   [`Response::Snapshot`] into an event; an error answer becomes [`Event::Refused`], the end of the
//!   connection [`Event::Gone`];
//! - the actions: restart, reload and stop run one after another on a connection of their own, so the UI
//!   never waits for the daemon; each outcome becomes [`Event::ActionDone`];
//! - the terminal: keys and resizes from crossterm;
//! - the signals: SIGINT, SIGTERM and SIGHUP, blocked in every thread by [`block_signals`] and taken here
//!   with `sigwait`, become [`Event::Signal`] so the terminal is restored before exiting.
//!
//! The threads end with the process: the event loop never joins them.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use anyhow::{Result, bail};
use nix::sys::signal::{SigSet, Signal};

use super::app::{Action, Event};
use crate::client::Client;
use crate::home::Home;
use crate::protocol::{Request, Response, Selection};

/// How often the daemon samples for us.
pub const INTERVAL_MS: u64 = 1000;

/// The signals the event loop handles. SIGPIPE is blocked too: a write to a daemon that went away then
/// fails with EPIPE instead of killing monit with the terminal still in raw mode.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    // Every signal whose default action ends the process (and that can be caught).
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
    ] {
        set.add(signal);
    }
    set
}

/// Blocks the handled signals and SIGPIPE in this thread and the threads it starts from now on.
pub fn block_signals() -> Result<()> {
    let mut set = handled();
    set.add(Signal::SIGPIPE);
    set.thread_block()?;
    Ok(())
}

/// Starts the signal thread.
pub fn signals(events: Sender<Event>) -> Result<()> {
    thread::Builder::new()
        .name("monit-signals".into())
        .spawn(move || {
            let set = handled();
            while set.wait().is_ok() {
                if events.send(Event::Signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Sends the subscription on `client` and starts the thread that reads it.
pub fn subscribe(mut client: Client, events: Sender<Event>) -> Result<()> {
    thread::Builder::new()
        .name("monit-subscription".into())
        .spawn(move || {
            let request = Request::Subscribe {
                interval_ms: INTERVAL_MS,
            };
            let outcome = client.request_with_progress(&request, |response| {
                if let Response::Snapshot { at_ms, processes } = response {
                    // The UI is gone when this fails; the process is about to exit.
                    let _ = events.send(Event::Snapshot {
                        at_ms: *at_ms,
                        processes: processes.clone(),
                    });
                }
            });
            let event = match outcome {
                Ok(Response::Error { message, .. }) => Event::Refused(message),
                Ok(other) => Event::Refused(format!(
                    "unexpected answer to the subscription ({}); is the CLI the same version as the daemon?",
                    kind(&other)
                )),
                Err(e) => Event::Gone(format!("{e:#}")),
            };
            let _ = events.send(event);
        })?;
    Ok(())
}

/// Starts the thread that carries out actions; send it actions through the returned sender.
pub fn actions(home: Home, events: Sender<Event>) -> Result<Sender<Action>> {
    let (sender, receiver): (Sender<Action>, Receiver<Action>) = mpsc::channel();
    thread::Builder::new()
        .name("monit-actions".into())
        .spawn(move || {
            for action in receiver {
                let outcome = perform(&home, &action).map_err(|e| format!("{e:#}"));
                if events.send(Event::ActionDone(outcome)).is_err() {
                    break;
                }
            }
        })?;
    Ok(sender)
}

/// One action on a fresh connection; what to say in the status line.
fn perform(home: &Home, action: &Action) -> Result<String> {
    let (request, name, done) = match action {
        Action::Restart(name) => (
            Request::Restart {
                target: Selection::Name(name.clone()),
                env: None,
            },
            name,
            "restarted",
        ),
        Action::Reload(name) => (
            Request::Reload {
                target: Selection::Name(name.clone()),
                env: None,
            },
            name,
            "reloaded",
        ),
        Action::Stop(name) => (
            Request::Stop {
                target: Selection::Name(name.clone()),
            },
            name,
            "stopped",
        ),
        Action::Quit => return Ok(String::new()),
    };
    let Some(mut client) = Client::connect(home)? else {
        bail!("the daemon is not running");
    };
    match client.request(&request)? {
        Response::Processes { processes } => {
            let n = processes.iter().filter(|p| &p.name == name).count();
            Ok(format!("{done} {name} ({n} worker{})", plural(n)))
        }
        Response::Reloaded { steps, .. } => Ok(format!(
            "{done} {name} ({} worker{} replaced)",
            steps.len(),
            plural(steps.len())
        )),
        Response::Ok => Ok(format!("{done} {name}")),
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!(
            "unexpected answer ({}); is the CLI the same version as the daemon?",
            kind(&other)
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The name of a response variant, for error messages.
fn kind(response: &Response) -> String {
    serde_json::to_value(response)
        .ok()
        .and_then(|v| v.get("response")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Starts the thread that reads the terminal's keys and resizes.
pub fn terminal(events: Sender<Event>) -> Result<()> {
    use crossterm::event::{self, Event as TermEvent};
    thread::Builder::new()
        .name("monit-input".into())
        .spawn(move || {
            loop {
                let event = match event::read() {
                    Ok(TermEvent::Key(key)) => Event::Key(key),
                    Ok(TermEvent::Resize(..)) => Event::Resize,
                    Ok(_) => continue,
                    // The terminal is gone (hung up): quit as on a signal.
                    Err(_) => Event::Signal,
                };
                let failed = matches!(event, Event::Signal);
                if events.send(event).is_err() || failed {
                    break;
                }
            }
        })?;
    Ok(())
}
