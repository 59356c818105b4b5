//! Watch mode: one thread per watching app turns inotify events into [`Report`]s to the supervisor.
//!
//! The thread owns the `notify` watcher (inotify). It walks the watched directories itself and watches each
//! one it may enter (non-recursively), so `node_modules` and the other ignored trees cost no inotify
//! watch; a directory created later is watched, and the files already in it count, when its creation is
//! seen. A watched file is watched through its directory, so an editor that saves by renaming a new file
//! over it is seen; a watched directory's parent is watched too, so a directory removed and made again
//! (`rm -rf dist` before a build) or a link switched to a new release (`current -> releases/42`) is
//! walked again, and its files count. Each change that counts (`filter.rs`) goes into a [`Debounce`]; once the files have
//! been quiet for `watch_delay`, the thread sends the supervisor one [`Report`] and goes on. It never
//! touches the supervisor's state: the supervisor decides what a report does (`supervisor/watching.rs`).
//! Dropping the [`Watch`] stops the thread, and with it the watcher.

mod debounce;
mod filter;
mod own_files;

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use debounce::{Batch, Debounce};
pub use debounce::{Decision, Gate};
use filter::{Filter, Root};
pub use own_files::own_files;

use super::supervisor::Message;
use crate::config::WatchSpec;

/// What a watcher tells the supervisor.
#[derive(Debug)]
pub struct Report {
    pub app: String,
    /// Which watcher of the app (a changed definition starts a new one): a stale report is ignored.
    pub generation: u64,
    pub kind: ReportKind,
}

#[derive(Debug)]
pub enum ReportKind {
    /// Files changed, and have been quiet for `watch_delay` since (or changed for ten delays).
    Changed {
        count: usize,
        /// The paths, each once (the first 64).
        paths: Vec<PathBuf>,
        /// More paths changed than `paths` holds.
        truncated: bool,
    },
    /// Watching could not start, or part of the tree cannot be watched.
    Failed(String),
}

enum Input {
    Event(notify::Result<notify::Event>),
    Stop,
}

/// A running watcher; dropping it stops it.
pub struct Watch {
    input: std_mpsc::Sender<Input>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.input.send(Input::Stop);
    }
}

/// What a watcher needs to know about its app.
pub struct Target {
    pub app: String,
    pub generation: u64,
    pub spec: WatchSpec,
    pub cwd: PathBuf,
    pub script: PathBuf,
    pub logs: Vec<PathBuf>,
}

/// Starts the thread watching an app's files.
pub fn start(target: Target, tx: mpsc::UnboundedSender<Message>) -> Result<Watch, String> {
    let (input, events) = std_mpsc::channel();
    let callback = input.clone();
    std::thread::Builder::new()
        .name(format!("watch {}", target.app))
        .spawn(move || run(target, events, callback, tx))
        .map_err(|e| format!("cannot start a watcher thread: {e}"))?;
    Ok(Watch { input })
}

fn run(
    target: Target,
    events: std_mpsc::Receiver<Input>,
    callback: std_mpsc::Sender<Input>,
    tx: mpsc::UnboundedSender<Message>,
) {
    let report = |kind: ReportKind| {
        tx.send(Message::Watch(Report {
            app: target.app.clone(),
            generation: target.generation,
            kind,
        }))
        .is_ok()
    };
    let watcher = notify::recommended_watcher(move |event| {
        let _ = callback.send(Input::Event(event));
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            report(ReportKind::Failed(format!("cannot watch files: {e}")));
            return;
        }
    };
    let roots: Vec<Root> = target
        .spec
        .paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                Root::Dir(p.clone())
            } else {
                Root::File(p.clone())
            }
        })
        .collect();
    let filter = Filter::new(
        roots.clone(),
        &target.cwd,
        target.spec.extensions.clone(),
        &target.script,
        target.logs.clone(),
        &target.spec.ignore,
    );
    let mut problems = Vec::new();
    let mut watched = 0;
    for root in &roots {
        match root {
            Root::Dir(dir) => {
                watched += walk(&mut watcher, &filter, dir, &mut problems, None);
                // To see the directory replaced; its siblings do not count (the filter says so).
                if let Some(parent) = dir.parent() {
                    let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
                }
            }
            Root::File(file) => {
                let dir = file.parent().unwrap_or(Path::new("/"));
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => watched += 1,
                    Err(e) => problems.push(format!("cannot watch {}: {e}", dir.display())),
                }
            }
        }
    }
    info!(app = %target.app, directories = watched, "watching for changes");
    if !problems.is_empty() && !report(ReportKind::Failed(problem_summary(&problems))) {
        return;
    }
    let mut debounce = Debounce::new(Duration::from_millis(target.spec.delay_ms));
    loop {
        let input = match debounce.due() {
            None => events
                .recv()
                .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
            Some(due) => events.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match input {
            Ok(Input::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                debug!(app = %target.app, "watcher stopped");
                return;
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if let Some(Batch {
                    count,
                    paths,
                    truncated,
                }) = debounce.take(Instant::now())
                    && !report(ReportKind::Changed {
                        count,
                        paths,
                        truncated,
                    })
                {
                    return;
                }
            }
            Ok(Input::Event(Err(e))) => {
                warn!(app = %target.app, error = %e, "watch: an event was lost: counting it as a change");
                debounce.push(Instant::now(), Path::new("(lost events)"));
            }
            Ok(Input::Event(Ok(event))) => {
                let mut problems = Vec::new();
                for path in changes(&mut watcher, &filter, &event, &mut problems) {
                    debounce.push(Instant::now(), &path);
                }
                if !problems.is_empty() && !report(ReportKind::Failed(problem_summary(&problems))) {
                    return;
                }
            }
        }
    }
}

/// The paths of an event that count; a directory that appeared is watched, and its files count.
fn changes(
    watcher: &mut notify::RecommendedWatcher,
    filter: &Filter,
    event: &notify::Event,
    problems: &mut Vec<String>,
) -> Vec<PathBuf> {
    if event.need_rescan() {
        return vec![PathBuf::from("(the kernel's event queue overflowed)")];
    }
    if matches!(event.kind, EventKind::Access(_)) {
        return Vec::new();
    }
    let mut counted = Vec::new();
    for path in &event.paths {
        let appeared = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        if appeared && filter.is_root_dir(path) && path.is_dir() {
            // A watched directory made again, or a link to it switched: watch what it names now.
            walk(watcher, filter, path, problems, Some(&mut counted));
        } else if appeared
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
            && filter.enters(path)
        {
            walk(watcher, filter, path, problems, Some(&mut counted));
        }
        // A directory made or removed is no change in itself: the files in it are.
        let directory = matches!(
            event.kind,
            EventKind::Create(notify::event::CreateKind::Folder)
                | EventKind::Remove(notify::event::RemoveKind::Folder)
        ) || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        if !directory && filter.counts(path) {
            counted.push(path.clone());
        }
    }
    counted
}

/// Watches `dir` and every directory below it that the filter enters (links are not followed). With
/// `found`, the files that count are collected too (a directory that just appeared). Returns how many
/// directories are watched.
fn walk(
    watcher: &mut notify::RecommendedWatcher,
    filter: &Filter,
    dir: &Path,
    problems: &mut Vec<String>,
    mut found: Option<&mut Vec<PathBuf>>,
) -> usize {
    let mut watched = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            problems.push(format!("cannot watch {}: {e}", dir.display()));
            continue;
        }
        watched += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && filter.enters(&path) {
                stack.push(path);
            } else if !is_dir
                && let Some(found) = found.as_deref_mut()
                && filter.counts(&path)
            {
                found.push(path);
            }
        }
    }
    watched
}

/// The first problem, and how many more (an inotify limit fails every directory after it).
fn problem_summary(problems: &[String]) -> String {
    let first = &problems[0];
    let hint = if first.contains("No space left") || first.contains("os error 28") {
        " (the inotify watch limit: raise fs.inotify.max_user_watches, or ignore more with ignore_watch)"
    } else {
        ""
    };
    match problems.len() {
        1 => format!("{first}{hint}"),
        n => format!("{first}{hint}, and {} more", n - 1),
    }
}
