//! The decisions of watch mode, as plain data and functions over given instants (no clock is read here):
//! [`Debounce`] turns a burst of changes into one report once the files have been quiet for the delay,
//! and [`Gate`] decides what the supervisor does with a report.

use std::path::Path;
use std::time::{Duration, Instant};

/// Paths named in a report (the count says how many there were).
const SAMPLE: usize = 3;

/// Changes seen since the last report.
#[derive(Debug)]
pub struct Debounce {
    delay: Duration,
    last: Option<Instant>,
    count: usize,
    sample: Vec<String>,
}

/// A burst of changes, reported once quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub count: usize,
    /// The first few paths.
    pub sample: Vec<String>,
}

impl Debounce {
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            last: None,
            count: 0,
            sample: Vec::new(),
        }
    }

    /// A change at `now`: the report waits until `delay` after the last change.
    pub fn push(&mut self, now: Instant, path: &Path) {
        self.last = Some(now);
        self.count += 1;
        let shown = path.display().to_string();
        if self.sample.len() < SAMPLE && !self.sample.contains(&shown) {
            self.sample.push(shown);
        }
    }

    /// When the pending changes are to be reported, if any are pending.
    pub fn due(&self) -> Option<Instant> {
        self.last.map(|last| last + self.delay)
    }

    /// The pending changes, if they are due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Batch> {
        if self.due().is_none_or(|due| due > now) {
            return None;
        }
        self.last = None;
        Some(Batch {
            count: std::mem::take(&mut self.count),
            sample: std::mem::take(&mut self.sample),
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
        assert_eq!(batch.sample, ["/a/f0.js", "/a/f1.js", "/a/f2.js"]);
        assert_eq!(d.due(), None, "nothing left");
        assert_eq!(d.take(ms(10_000)), None);
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
