//! The dashboard's state and its update function.
//!
//! [`App`] holds plain data only: the last snapshot's workers (sorted by name and instance), a CPU and
//! memory history per worker id, the selection, the name filter, the help overlay, the state of the link to
//! the daemon, the status line and the selected app's log lines; and, when there are scheduled jobs, the
//! jobs with their last runs, the selected job, which pane has the focus and the run whose log is open. Everything that happens, a key, a
//! snapshot, the outcome of an action, reaches it as one [`Event`] through [`App::handle_event`], which may
//! answer with an [`Action`] for the event loop to carry out. Nothing here does I/O, so the whole behaviour
//! is tested by feeding events.

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::{JobInfo, JobState, ProcessInfo, RunOutcome, RunRecord};

/// Points kept per worker: two minutes at one snapshot a second.
pub const HISTORY: usize = 120;

/// Finished runs shown per job in the jobs pane.
pub const RECENT: usize = 5;

/// A job as the jobs pane shows it: what the daemon lists, and its last finished runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub info: JobInfo,
    /// Up to [`RECENT`] finished runs (one record per attempt), oldest first.
    pub recent: Vec<RunRecord>,
}

impl JobRow {
    /// The run whose log Enter opens: the newest in progress, else the last finished.
    pub fn latest_run(&self) -> Option<&RunRecord> {
        self.info.running.last().or(self.info.last.as_ref())
    }
}

/// Which pane the selection keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Processes,
    Jobs,
}

/// A job run whose output file the log pane shows instead of the selected app's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLog {
    pub job: String,
    pub run_id: String,
    pub attempt: u32,
    pub outcome: RunOutcome,
    pub path: String,
}

/// Something that happened, as the event loop hands it over.
#[derive(Debug, Clone)]
pub enum Event {
    /// A key pressed on the terminal.
    Key(KeyEvent),
    /// The terminal changed size (the next draw follows it).
    Resize,
    /// One frame of the subscription.
    Snapshot {
        at_ms: u64,
        processes: Vec<ProcessInfo>,
    },
    /// The daemon answered the subscription with an error.
    Refused(String),
    /// The subscription's connection ended: the daemon went away.
    Gone(String),
    /// A restart, reload or stop finished: what to say in the status line, or what went wrong.
    ActionDone(Result<String, String>),
    /// The daemon's jobs, polled at `at_ms` (ms since the epoch).
    Jobs { at_ms: u64, jobs: Vec<JobRow> },
    /// The last lines of the selected app's log files (or of the open run's), freshly read.
    Log(Vec<LogLine>),
    /// SIGINT, SIGTERM or SIGHUP arrived.
    Signal,
}

/// What the event loop does for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Restart every worker of the app with this name.
    Restart(String),
    /// Reload (zero-downtime) every worker of the app with this name.
    Reload(String),
    /// Stop every worker of the app with this name.
    Stop(String),
    /// Run the job with this name now.
    Trigger(String),
    /// Pause the job with this name (its fire times are skipped).
    Pause(String),
    /// Resume the paused job with this name.
    Resume(String),
    /// Restore the terminal and exit.
    Quit,
}

impl Action {
    /// The present participle shown while the action runs ("restarting web").
    pub fn describe(&self) -> String {
        match self {
            Action::Restart(name) => format!("restarting {name}…"),
            Action::Reload(name) => format!("reloading {name}…"),
            Action::Stop(name) => format!("stopping {name}…"),
            Action::Trigger(name) => format!("running {name} now…"),
            Action::Pause(name) => format!("pausing {name}…"),
            Action::Resume(name) => format!("resuming {name}…"),
            Action::Quit => "quitting".into(),
        }
    }
}

/// How things stand with the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Subscribed; no snapshot yet.
    Waiting,
    /// Snapshots arrive.
    Live,
    /// The daemon refused the subscription (with its message).
    Refused(String),
    /// The connection ended (with what the reader saw).
    Gone(String),
}

/// The status line: the outcome of the last action, or a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub error: bool,
}

/// CPU (percent of one core) and memory (bytes) of one worker, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub cpu: VecDeque<f32>,
    pub memory: VecDeque<u64>,
}

impl History {
    fn push(&mut self, cpu: f32, memory: u64) {
        if self.cpu.len() == HISTORY {
            self.cpu.pop_front();
            self.memory.pop_front();
        }
        self.cpu.push_back(cpu);
        self.memory.push_back(memory);
    }
}

/// One line of the selected app's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// From the error file (stderr).
    pub err: bool,
    pub text: String,
}

/// Everything the view draws.
#[derive(Debug, Clone)]
pub struct App {
    /// Every worker of the last snapshot, by name then instance.
    pub processes: Vec<ProcessInfo>,
    /// When the last snapshot was taken (ms since the epoch), 0 before the first.
    pub at_ms: u64,
    pub history: HashMap<u32, History>,
    /// The selected worker's id: it stays selected while the rows around it change.
    pub selected: Option<u32>,
    /// The applied name filter (substring, case-insensitive); empty shows every worker.
    pub filter: String,
    /// While `/` is being typed: the filter so far.
    pub editing: Option<String>,
    pub help: bool,
    pub link: Link,
    pub status: Option<StatusLine>,
    /// The last lines of the selected app's out and err files (or of the open run's), oldest first.
    pub log: Vec<LogLine>,
    /// The scheduled jobs, by name; empty hides the jobs pane.
    pub jobs: Vec<JobRow>,
    /// When the jobs were polled (ms since the epoch): the clock of "in 3m" and running times.
    pub jobs_at_ms: u64,
    /// The selected job's name.
    pub selected_job: Option<String>,
    pub focus: Focus,
    /// The run whose log the log pane shows (Esc closes it).
    pub run_log: Option<RunLog>,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    pub fn new() -> App {
        App {
            processes: Vec::new(),
            at_ms: 0,
            history: HashMap::new(),
            selected: None,
            filter: String::new(),
            editing: None,
            help: false,
            link: Link::Waiting,
            status: None,
            log: Vec::new(),
            jobs: Vec::new(),
            jobs_at_ms: 0,
            selected_job: None,
            focus: Focus::Processes,
            run_log: None,
        }
    }

    /// The workers the table shows: those whose name contains the filter.
    pub fn visible(&self) -> Vec<&ProcessInfo> {
        let needle = self.filter.to_lowercase();
        self.processes
            .iter()
            .filter(|p| needle.is_empty() || p.name.to_lowercase().contains(&needle))
            .collect()
    }

    /// The selected row's index among [`App::visible`].
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.visible().iter().position(|p| p.id == id)
    }

    /// The selected worker, if it is visible.
    pub fn selected_process(&self) -> Option<&ProcessInfo> {
        let index = self.selected_index()?;
        self.visible().get(index).copied()
    }

    /// The selected job's row and index among [`App::jobs`].
    pub fn selected_job_index(&self) -> Option<usize> {
        let name = self.selected_job.as_ref()?;
        self.jobs.iter().position(|j| &j.info.name == name)
    }

    pub fn selected_job(&self) -> Option<&JobRow> {
        self.jobs.get(self.selected_job_index()?)
    }

    /// The log files to show: the open run's output file, else the selected worker's app's out and err
    /// files.
    pub fn log_files(&self) -> (Option<String>, Option<String>) {
        if let Some(run) = &self.run_log {
            return (Some(run.path.clone()), None);
        }
        match self.selected_process() {
            Some(p) => (p.out_file.clone(), p.error_file.clone()),
            None => (None, None),
        }
    }

    /// How the selected worker's app writes its log lines.
    pub fn log_format(&self) -> crate::logs::LineFormat {
        if self.run_log.is_some() {
            return crate::logs::LineFormat::default();
        }
        self.selected_process()
            .and_then(|p| p.log_lines.clone())
            .unwrap_or_default()
    }

    /// Whether actions can reach the daemon.
    fn connected(&self) -> bool {
        matches!(self.link, Link::Live | Link::Waiting)
    }

    /// Updates the state; returns what the event loop must do, if anything.
    pub fn handle_event(&mut self, event: Event) -> Option<Action> {
        match event {
            Event::Key(key) => self.key(key),
            Event::Resize => None,
            Event::Snapshot { at_ms, processes } => {
                self.snapshot(at_ms, processes);
                None
            }
            Event::Refused(message) => {
                self.link = Link::Refused(message);
                None
            }
            Event::Gone(message) => {
                if !matches!(self.link, Link::Refused(_)) {
                    self.link = Link::Gone(message);
                }
                None
            }
            Event::ActionDone(outcome) => {
                self.status = Some(match outcome {
                    Ok(text) => StatusLine { text, error: false },
                    Err(text) => StatusLine { text, error: true },
                });
                None
            }
            Event::Jobs { at_ms, jobs } => {
                self.jobs_update(at_ms, jobs);
                None
            }
            Event::Log(lines) => {
                self.log = lines;
                None
            }
            Event::Signal => Some(Action::Quit),
        }
    }

    fn snapshot(&mut self, at_ms: u64, mut processes: Vec<ProcessInfo>) {
        processes.sort_by(|a, b| (&a.name, a.instance, a.id).cmp(&(&b.name, b.instance, b.id)));
        self.history
            .retain(|id, _| processes.iter().any(|p| p.id == *id));
        for p in &processes {
            self.history.entry(p.id).or_default().push(p.cpu, p.memory);
        }
        let previous = self.selected_index();
        self.processes = processes;
        self.at_ms = at_ms;
        if self.link == Link::Waiting {
            self.link = Link::Live;
        }
        self.reselect(previous);
    }

    fn jobs_update(&mut self, at_ms: u64, mut jobs: Vec<JobRow>) {
        jobs.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        let previous = self.selected_job_index();
        self.jobs = jobs;
        self.jobs_at_ms = at_ms;
        if self.selected_job_index().is_none() {
            let index = previous.unwrap_or(0).min(self.jobs.len().saturating_sub(1));
            self.selected_job = self.jobs.get(index).map(|j| j.info.name.clone());
        }
        if self.jobs.is_empty() {
            self.focus = Focus::Processes;
        }
        // The open run's record follows its new outcome (its file stays the same).
        if let Some(open) = self.run_log.as_mut()
            && let Some(record) = self
                .jobs
                .iter()
                .filter(|j| j.info.name == open.job)
                .flat_map(|j| j.info.running.iter().chain(j.info.last.iter()))
                .find(|r| r.run_id == open.run_id && r.attempt == open.attempt)
        {
            open.outcome = record.outcome;
        }
    }

    /// Keeps the selected worker if it is still shown, otherwise the row at the same place (or the last).
    fn reselect(&mut self, previous: Option<usize>) {
        if self.selected_index().is_some() {
            return;
        }
        let visible = self.visible();
        let index = previous.unwrap_or(0).min(visible.len().saturating_sub(1));
        self.selected = visible.get(index).map(|p| p.id);
    }

    fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        if self.editing.is_some() {
            self.edit_filter(key.code);
            return None;
        }
        if self.help {
            return match key.code {
                KeyCode::Char('q') => Some(Action::Quit),
                _ => {
                    self.help = false;
                    None
                }
            };
        }
        match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc if self.run_log.is_some() => {
                self.run_log = None;
                None
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.set_filter(String::new());
                None
            }
            KeyCode::Esc => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::Home | KeyCode::Char('g') => self.jump(0),
            KeyCode::End | KeyCode::Char('G') => self.jump(usize::MAX),
            KeyCode::Tab | KeyCode::BackTab => {
                self.switch_focus();
                None
            }
            KeyCode::Char('t') => self.job_act(|job| Action::Trigger(job.info.name.clone())),
            KeyCode::Char('p') => self.job_act(|job| {
                let name = job.info.name.clone();
                if job.info.state == JobState::Paused {
                    Action::Resume(name)
                } else {
                    Action::Pause(name)
                }
            }),
            KeyCode::Enter | KeyCode::Char('o') => {
                self.open_run_log();
                None
            }
            KeyCode::Char('?') => {
                self.help = true;
                None
            }
            KeyCode::Char('/') => {
                self.editing = Some(self.filter.clone());
                None
            }
            KeyCode::Char('r') => self.act(Action::Restart),
            KeyCode::Char('l') => self.act(Action::Reload),
            KeyCode::Char('s') => self.act(Action::Stop),
            _ => None,
        }
    }

    fn edit_filter(&mut self, code: KeyCode) {
        let Some(draft) = self.editing.as_mut() else {
            return;
        };
        match code {
            KeyCode::Char(c) => draft.push(c),
            KeyCode::Backspace => {
                draft.pop();
            }
            KeyCode::Enter => {
                let applied = std::mem::take(draft);
                self.editing = None;
                self.set_filter(applied);
            }
            KeyCode::Esc => {
                self.editing = None;
                self.set_filter(String::new());
            }
            _ => {}
        }
    }

    fn set_filter(&mut self, filter: String) {
        let previous = self.selected_index();
        self.filter = filter;
        self.reselect(previous);
    }

    /// Moves the selection by one row, wrapping around at either end.
    fn step(&mut self, delta: isize) -> Option<Action> {
        if self.focus == Focus::Jobs {
            let len = self.jobs.len();
            if len > 0 {
                let index = match self.selected_job_index() {
                    Some(i) => (i as isize + delta).rem_euclid(len as isize) as usize,
                    None => 0,
                };
                self.select_job(index);
            }
            return None;
        }
        let len = self.visible().len();
        if len == 0 {
            return None;
        }
        let index = match self.selected_index() {
            Some(i) => (i as isize + delta).rem_euclid(len as isize) as usize,
            None => 0,
        };
        self.jump(index)
    }

    /// Selects the row at `index`, clamped to the last.
    fn jump(&mut self, index: usize) -> Option<Action> {
        if self.focus == Focus::Jobs {
            self.select_job(index);
            return None;
        }
        let before = self.selected;
        let visible = self.visible();
        let index = index.min(visible.len().saturating_sub(1));
        self.selected = visible.get(index).map(|p| p.id);
        if self.selected != before {
            // Another app's log is wanted now.
            self.run_log = None;
        }
        None
    }

    /// Selects the job at `index`, clamped to the last.
    fn select_job(&mut self, index: usize) {
        let index = index.min(self.jobs.len().saturating_sub(1));
        let name = self.jobs.get(index).map(|j| j.info.name.clone());
        if name != self.selected_job {
            self.run_log = None;
        }
        self.selected_job = name;
    }

    /// Tab: the jobs pane takes the selection keys, or gives them back to the process table.
    fn switch_focus(&mut self) {
        self.focus = match self.focus {
            Focus::Processes if !self.jobs.is_empty() => Focus::Jobs,
            Focus::Processes => {
                self.error("no scheduled jobs (start one with `--schedule`)");
                Focus::Processes
            }
            Focus::Jobs => Focus::Processes,
        };
    }

    /// The job the job keys act on: the selected job in the jobs pane, or the selected worker's when it is
    /// a job's slot. Says what is missing in the status line otherwise.
    fn target_job(&mut self) -> Option<&JobRow> {
        let name = match self.focus {
            Focus::Jobs => self.selected_job.clone(),
            Focus::Processes => match self.selected_process() {
                Some(p) if p.job.is_some() => Some(p.name.clone()),
                Some(p) => {
                    let text = format!("{} is not a scheduled job (Tab selects a job)", p.name);
                    self.error(&text);
                    return None;
                }
                None => None,
            },
        };
        let index = name.and_then(|name| self.jobs.iter().position(|j| j.info.name == name));
        match index {
            Some(index) => self.jobs.get(index),
            None => {
                self.error("no job selected");
                None
            }
        }
    }

    fn job_act(&mut self, make: impl Fn(&JobRow) -> Action) -> Option<Action> {
        if !self.connected() {
            self.error("not connected to the daemon");
            return None;
        }
        let action = make(self.target_job()?);
        self.status = Some(StatusLine {
            text: action.describe(),
            error: false,
        });
        Some(action)
    }

    /// Enter: the log pane shows the output of the target job's latest run.
    fn open_run_log(&mut self) {
        let Some(job) = self.target_job() else {
            return;
        };
        let name = job.info.name.clone();
        let open = job.latest_run().map(|run| {
            run.log.clone().map(|path| RunLog {
                job: name.clone(),
                run_id: run.run_id.clone(),
                attempt: run.attempt,
                outcome: run.outcome,
                path,
            })
        });
        match open {
            Some(Some(open)) => {
                self.status = Some(StatusLine {
                    text: format!(
                        "showing the log of {} (attempt {}) · Esc closes it",
                        open.run_id, open.attempt
                    ),
                    error: false,
                });
                self.run_log = Some(open);
            }
            Some(None) => self.error(&format!(
                "{name}'s last run wrote no log (it never started)"
            )),
            None => self.error(&format!("{name} has not run yet (t runs it now)")),
        }
    }

    fn error(&mut self, text: &str) {
        self.status = Some(StatusLine {
            text: text.to_string(),
            error: true,
        });
    }

    fn act(&mut self, make: fn(String) -> Action) -> Option<Action> {
        if !self.connected() {
            self.status = Some(StatusLine {
                text: "not connected to the daemon".into(),
                error: true,
            });
            return None;
        }
        let selected = match self.focus {
            // A job is an app of the same name.
            Focus::Jobs => self.selected_job.clone(),
            Focus::Processes => self.selected_process().map(|p| p.name.clone()),
        };
        let Some(name) = selected else {
            self.status = Some(StatusLine {
                text: "no app selected".into(),
                error: true,
            });
            return None;
        };
        let action = make(name);
        self.status = Some(StatusLine {
            text: action.describe(),
            error: false,
        });
        Some(action)
    }
}
