//! The dashboard's state and its update function.
//!
//! [`App`] holds plain data only: the last snapshot's workers (sorted by name and instance), a CPU and
//! memory history per worker id, the selection, the name filter, the help overlay, the state of the link to
//! the daemon, the status line and the selected app's log lines. Everything that happens, a key, a
//! snapshot, the outcome of an action, reaches it as one [`Event`] through [`App::handle_event`], which may
//! answer with an [`Action`] for the event loop to carry out. Nothing here does I/O, so the whole behaviour
//! is tested by feeding events.

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::ProcessInfo;

/// Points kept per worker: two minutes at one snapshot a second.
pub const HISTORY: usize = 120;

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
    /// The last lines of the selected app's log files, freshly read.
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
    /// The last lines of the selected app's out and err files, oldest first.
    pub log: Vec<LogLine>,
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

    /// The log files to show: the selected worker's app's out and err files.
    pub fn log_files(&self) -> (Option<String>, Option<String>) {
        match self.selected_process() {
            Some(p) => (p.out_file.clone(), p.error_file.clone()),
            None => (None, None),
        }
    }

    /// How the selected worker's app writes its log lines.
    pub fn log_format(&self) -> crate::logs::LineFormat {
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
            KeyCode::Esc if !self.filter.is_empty() => {
                self.set_filter(String::new());
                None
            }
            KeyCode::Esc => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::Home | KeyCode::Char('g') => self.jump(0),
            KeyCode::End | KeyCode::Char('G') => self.jump(usize::MAX),
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
        let visible = self.visible();
        let index = index.min(visible.len().saturating_sub(1));
        self.selected = visible.get(index).map(|p| p.id);
        None
    }

    fn act(&mut self, make: fn(String) -> Action) -> Option<Action> {
        if !self.connected() {
            self.status = Some(StatusLine {
                text: "not connected to the daemon".into(),
                error: true,
            });
            return None;
        }
        let Some(name) = self.selected_process().map(|p| p.name.clone()) else {
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
