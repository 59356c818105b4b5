//! The threads that feed the event loop, each sending [`Event`]s into one channel:
//!
//! - the subscription: one connection sends [`Request::Subscribe`] and turns every
//!   [`Response::Snapshot`] into an event; an error answer becomes [`Event::Refused`], the end of the
//!   connection [`Event::Gone`];
//! - the actions: restart, reload and stop, and a job's trigger, pause and resume, run one after another on
//!   a connection of their own, so the UI never waits for the daemon; each outcome becomes
//!   [`Event::ActionDone`];
//! - the jobs: once a snapshot interval, a connection of its own asks for [`JobRequest::List`] (and a
//!   job's [`JobRequest::History`] when its runs changed) and sends [`Event::Jobs`]; a daemon that does
//!   not know jobs is asked no more, one that went away is asked again on a new connection;
//! - the terminal: keys and resizes from crossterm;
//! - the signals: SIGINT, SIGTERM and SIGHUP, blocked in every thread by [`block_signals`] and taken here
//!   with `sigwait`, become [`Event::Signal`] so the terminal is restored before exiting.
//!
//! The threads end with the process: the event loop never joins them.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use nix::sys::signal::{SigSet, Signal};

use super::app::{Action, Event, JobRow, RECENT};
use crate::client::Client;
use crate::home::Home;
use crate::protocol::{JobInfo, JobRequest, Request, Response, RunOutcome, RunRecord, Selection};

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
        Action::Trigger(name) => (
            Request::Job(JobRequest::Trigger { name: name.clone() }),
            name,
            "triggered",
        ),
        Action::Pause(name) => (
            Request::Job(JobRequest::Pause { name: name.clone() }),
            name,
            "paused",
        ),
        Action::Resume(name) => (
            Request::Job(JobRequest::Resume { name: name.clone() }),
            name,
            "resumed",
        ),
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
        Response::Triggered { run } => match run.outcome {
            RunOutcome::Running => Ok(format!("{done} {name}: {} started", run.run_id)),
            outcome => bail!(
                "{name}: {}{}",
                outcome.as_str(),
                run.detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        },
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!(
            "unexpected answer ({}); is the CLI the same version as the daemon?",
            kind(&other)
        ),
    }
}

/// Starts the thread that polls the daemon's jobs.
pub fn jobs(home: Home, events: Sender<Event>) -> Result<()> {
    thread::Builder::new()
        .name("monit-jobs".into())
        .spawn(move || {
            let mut poller = JobsPoller::default();
            loop {
                match poller.poll(&home) {
                    Ok(Some(jobs)) => {
                        let event = Event::Jobs {
                            at_ms: now_ms(),
                            jobs,
                        };
                        if events.send(event).is_err() {
                            break;
                        }
                    }
                    // This daemon has no jobs to tell about: stop asking.
                    Ok(None) => break,
                    // Gone for now: the subscription says so; ask again on a new connection.
                    Err(_) => poller.client = None,
                }
                // Paced like the snapshots, not a synchronisation.
                thread::sleep(Duration::from_millis(INTERVAL_MS));
            }
        })?;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The jobs connection and each job's recent runs, asked for again only when its runs changed.
#[derive(Default)]
struct JobsPoller {
    client: Option<Client>,
    recent: HashMap<String, (RunsKey, Vec<RunRecord>)>,
}

/// What changes when a job's history does: its runs in progress and its last finished run.
type RunsKey = (Vec<(String, u32)>, Option<(String, u32)>, u64, u64);

fn runs_key(job: &JobInfo) -> RunsKey {
    let id = |r: &RunRecord| (r.run_id.clone(), r.attempt);
    (
        job.running.iter().map(id).collect(),
        job.last.as_ref().map(id),
        job.ok,
        job.failed,
    )
}

impl JobsPoller {
    /// The jobs and their recent runs; `None` when the daemon answers that it knows no jobs.
    fn poll(&mut self, home: &Home) -> Result<Option<Vec<JobRow>>> {
        let client = match self.client.as_mut() {
            Some(client) => client,
            None => {
                let Some(client) = Client::connect(home)? else {
                    bail!("the daemon is not running");
                };
                self.client.insert(client)
            }
        };
        let jobs = match client.request(&Request::Job(JobRequest::List { brief: false }))? {
            Response::Jobs { jobs } => jobs,
            // An older daemon: no jobs there.
            Response::Error { .. } => return Ok(None),
            other => bail!("unexpected answer to the jobs list ({})", kind(&other)),
        };
        self.recent
            .retain(|name, _| jobs.iter().any(|j| &j.name == name));
        let mut rows = Vec::with_capacity(jobs.len());
        for info in jobs {
            let key = runs_key(&info);
            let cached = self
                .recent
                .get(&info.name)
                .filter(|(k, _)| *k == key)
                .map(|(_, runs)| runs.clone());
            let recent = match cached {
                Some(runs) => runs,
                None => {
                    let request = Request::Job(JobRequest::History {
                        name: info.name.clone(),
                        fleet: false,
                    });
                    let runs = match client.request(&request)? {
                        Response::JobHistory { runs, .. } => finished(runs),
                        // Deleted between the two requests: no runs to show.
                        _ => Vec::new(),
                    };
                    self.recent.insert(info.name.clone(), (key, runs.clone()));
                    runs
                }
            };
            rows.push(JobRow { info, recent });
        }
        Ok(Some(rows))
    }
}

/// The last [`RECENT`] finished runs of a history (oldest first).
fn finished(runs: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut done: Vec<RunRecord> = runs
        .into_iter()
        .filter(|r| r.outcome != RunOutcome::Running)
        .collect();
    done.drain(..done.len().saturating_sub(RECENT));
    done
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
