//! The decisions of watch mode, as plain data and functions over given instants (no clock is read here):
//! [`Debounce`] turns a burst of changes into one report once the files have been quiet for the delay (or,
//! if they never are, ten delays after the first change: a file written without pause must not hold a
//! reload back for ever), and [`Gate`] decides what the supervisor does with a report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Paths a report names (the count says how many there were).
const PATHS: usize = 64;

/// A report is due at the latest this many delays after the first change of its burst.
const MAX_DELAYS: u32 = 10;

/// Changes seen since the last report.
#[derive(Debug)]
pub struct Debounce {
    delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    count: usize,
    paths: Vec<PathBuf>,
}

/// A burst of changes, reported once quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Changes counted (a path changed twice counts twice).
    pub count: usize,
    /// The paths changed, each once, the first [`PATHS`] of them.
    pub paths: Vec<PathBuf>,
    /// More paths changed than `paths` holds.
    pub truncated: bool,
}

impl Debounce {
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            first: None,
            last: None,
            count: 0,
            paths: Vec::new(),
        }
    }

    /// A change at `now`: the report waits until `delay` after the last change.
    pub fn push(&mut self, now: Instant, path: &Path) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.count += 1;
        if !self.paths.iter().any(|p| p == path) && self.paths.len() <= PATHS {
            self.paths.push(path.to_path_buf());
        }
    }

    /// When the pending changes are to be reported, if any are pending.
    pub fn due(&self) -> Option<Instant> {
        let quiet = self.last? + self.delay;
        let longest = self.first? + self.delay * MAX_DELAYS;
        Some(quiet.min(longest))
    }

    /// The pending changes, if they are due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Batch> {
        if self.due().is_none_or(|due| due > now) {
            return None;
        }
        self.first = None;
        self.last = None;
        let mut paths = std::mem::take(&mut self.paths);
        let truncated = paths.len() > PATHS;
        paths.truncate(PATHS);
        Some(Batch {
            count: std::mem::take(&mut self.count),
            paths,
            truncated,
        })
    }
}

/// What the supervisor does with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reload the app now.
    Reload,
    /// A reload of the app is in progress: one more reload once it ends (never more than one).
    After,
    /// Every worker of the app is stopped (by request): a change does not start it.
    Ignore,
}

/// The one reload a change may leave waiting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    queued: bool,
}

impl Gate {
    /// A change arrived. `busy`: a reload (or a file applied) is replacing the app's workers; `stopped`:
    /// every worker is stopped.
    pub fn change(&mut self, busy: bool, stopped: bool) -> Decision {
        if stopped {
            self.queued = false;
            Decision::Ignore
        } else if busy {
            self.queued = true;
            Decision::After
        } else {
            self.queued = false;
            Decision::Reload
        }
    }

    /// Whatever replaced the workers may have ended: the change left waiting, if any, reloads now.
    pub fn settled(&mut self, busy: bool, stopped: bool) -> Option<Decision> {
        if !self.queued || busy {
            return None;
        }
        Some(self.change(busy, stopped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_report_once_quiet() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(500));
        assert_eq!(d.due(), None);
        // A checkout of 500 files over 400 ms.
        for i in 0..500u64 {
            d.push(ms(i * 400 / 500), Path::new(&format!("/a/f{i}.js")));
            assert_eq!(d.take(ms(i * 400 / 500)), None);
        }
        let last = ms(499 * 400 / 500);
        assert_eq!(d.due(), Some(last + Duration::from_millis(500)));
        assert_eq!(d.take(last + Duration::from_millis(499)), None);
        let batch = d.take(last + Duration::from_millis(500)).expect("due");
        assert_eq!(batch.count, 500);
        assert_eq!(batch.paths.len(), PATHS);
        assert_eq!(batch.paths[0], Path::new("/a/f0.js"));
        assert!(batch.truncated);
        assert_eq!(d.due(), None, "nothing left");
        assert_eq!(d.take(ms(10_000)), None);
    }

    #[test]
    fn changes_without_pause_are_reported_ten_delays_after_the_first() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(100));
        // A file written every 50 ms, for ever.
        for i in 0..20u64 {
            d.push(ms(i * 50), Path::new("/a/data.db"));
        }
        assert_eq!(d.due(), Some(ms(1000)));
        let batch = d.take(ms(1000)).expect("due");
        assert_eq!(batch.count, 20);
        assert_eq!(batch.paths, [PathBuf::from("/a/data.db")]);
        assert!(!batch.truncated);
        d.push(ms(1050), Path::new("/a/data.db"));
        assert_eq!(d.due(), Some(ms(1150)), "a new burst");
    }

    #[test]
    fn a_change_during_a_reload_is_one_more_reload_at_most() {
        let mut gate = Gate::default();
        assert_eq!(gate.change(false, false), Decision::Reload);
        // Three more bursts while that reload runs: one reload after it.
        for _ in 0..3 {
            assert_eq!(gate.change(true, false), Decision::After);
        }
        assert_eq!(gate.settled(true, false), None, "still reloading");
        assert_eq!(gate.settled(false, false), Some(Decision::Reload));
        assert_eq!(gate.settled(false, false), None, "only one");
    }

    #[test]
    fn a_stopped_app_is_not_started_by_a_change() {
        let mut gate = Gate::default();
        assert_eq!(gate.change(false, true), Decision::Ignore);
        assert_eq!(gate.change(true, false), Decision::After);
        // Stopped meanwhile: the queued reload is dropped.
        assert_eq!(gate.settled(false, true), Some(Decision::Ignore));
        assert_eq!(gate.settled(false, false), None);
    }
}
