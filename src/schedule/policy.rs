//! What a job does at a fire time, as plain functions: overlap, catch-up, the starting deadline, retries and
//! jitter. The daemon asks; nothing here looks at a clock or a process.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a fire time does while a run of the job is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record a `skipped` run and leave the running one alone (Kubernetes' `Forbid`).
    #[default]
    Skip,
    /// Start another run beside it.
    Allow,
    /// Stop the running one (kill signal, kill timeout, SIGKILL), then start the new one.
    Replace,
}

/// What a daemon that was down at a fire time does about it when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run for the latest fire time missed (never a burst), if within the starting deadline.
    #[default]
    Last,
    /// None: the latest one missed is recorded as `missed`.
    None,
}

/// The decision at a fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFire {
    Start,
    Skip,
    /// Stop the runs in progress, then start.
    Replace,
}

/// What to do at a fire time, with `running` runs of the job in progress.
pub fn on_fire(overlap: Overlap, running: usize) -> OnFire {
    match (overlap, running) {
        (_, 0) | (Overlap::Allow, _) => OnFire::Start,
        (Overlap::Skip, _) => OnFire::Skip,
        (Overlap::Replace, _) => OnFire::Replace,
    }
}

/// Whether a run due at `scheduled` may still start at `now`: later than the starting deadline (when there
/// is one), it is recorded as missed instead.
pub fn in_time(scheduled: Timestamp, now: Timestamp, starting_deadline: Option<Duration>) -> bool {
    let Some(deadline) = starting_deadline else {
        return true;
    };
    let late = now.duration_since(scheduled);
    late.is_negative() || late.unsigned_abs() <= deadline
}

/// How long a fleet claim is kept after its fire time: the catch-up window (the starting deadline, at
/// least a day) plus a margin for clock skew, so a late or catching-up host still finds it.
pub fn claim_retain(starting_deadline: Option<Duration>) -> Duration {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const SKEW_MARGIN: Duration = Duration::from_secs(60);
    starting_deadline
        .unwrap_or(DAY)
        .max(DAY)
        .saturating_add(SKEW_MARGIN)
}

/// Whether a fleet run claimed late (the store did not answer at its fire time, `at`, and answered now)
/// still starts: within its starting deadline, and no later fire time handled meanwhile.
pub fn late_claim_runs(
    at: Timestamp,
    now: Timestamp,
    starting_deadline: Option<Duration>,
    last_handled: Option<Timestamp>,
) -> bool {
    last_handled.is_none_or(|last| last <= at) && in_time(at, now, starting_deadline)
}

/// At start (or after the wall clock jumped forward): what to do about the latest fire time missed while
/// no daemon ran, `missed`, given the last fire time already handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpDecision {
    /// Run it now, once.
    Run(Timestamp),
    /// Record it as missed.
    Missed(Timestamp),
    /// Nothing was missed.
    Nothing,
}

pub fn catch_up(
    policy: CatchUp,
    missed: Option<Timestamp>,
    last_handled: Option<Timestamp>,
    now: Timestamp,
    starting_deadline: Option<Duration>,
) -> CatchUpDecision {
    let Some(missed) = missed else {
        return CatchUpDecision::Nothing;
    };
    if last_handled.is_some_and(|last| last >= missed) {
        // Already run (or recorded): a restart never runs the same fire time twice.
        return CatchUpDecision::Nothing;
    }
    match policy {
        CatchUp::Last if in_time(missed, now, starting_deadline) => CatchUpDecision::Run(missed),
        _ => CatchUpDecision::Missed(missed),
    }
}

/// How long to wait before attempt `attempt` (2 = the first retry): `backoff`, doubling, at most `cap`.
pub fn retry_delay(attempt: u32, backoff: Duration, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(2).min(31);
    backoff.saturating_mul(1_u32 << doublings).min(cap)
}

/// A stable offset in `[0, max)` for the job `name`: the same on every host and every start, so that a
/// fleet's jobs of the same name spread the same way and a restart does not move a run.
pub fn jitter(name: &str, max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        return Duration::ZERO;
    }
    // FNV-1a, 64 bits: stable across builds, unlike the standard library's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Duration::from_millis(hash % max_ms)
}

/// The id of the run of `job` for the fire time `scheduled`: `<job>@<RFC 3339 UTC>`.
pub fn run_id(job: &str, scheduled: Timestamp) -> String {
    format!(
        "{job}@{}",
        scheduled.round(jiff::Unit::Second).unwrap_or(scheduled)
    )
}

/// The id of a run asked for by hand at `now`: its own, never one of a fire time.
pub fn manual_run_id(job: &str, now: Timestamp) -> String {
    format!(
        "{job}@manual-{}",
        now.round(jiff::Unit::Millisecond).unwrap_or(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn overlap_decides_with_a_run_in_progress_only() {
        for overlap in [Overlap::Skip, Overlap::Allow, Overlap::Replace] {
            assert_eq!(on_fire(overlap, 0), OnFire::Start);
        }
        assert_eq!(on_fire(Overlap::Skip, 1), OnFire::Skip);
        assert_eq!(on_fire(Overlap::Allow, 2), OnFire::Start);
        assert_eq!(on_fire(Overlap::Replace, 1), OnFire::Replace);
    }

    #[test]
    fn catch_up_runs_the_latest_missed_once_within_the_deadline() {
        let missed = ts("2026-06-01T03:00:00Z");
        let now = ts("2026-06-01T03:40:00Z");
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            catch_up(CatchUp::Last, Some(missed), None, now, hour),
            CatchUpDecision::Run(missed)
        );
        assert_eq!(
            catch_up(CatchUp::Last, Some(missed), None, now, None),
            CatchUpDecision::Run(missed)
        );
        let late = ts("2026-06-01T05:00:00Z");
        assert_eq!(
            catch_up(CatchUp::Last, Some(missed), None, late, hour),
            CatchUpDecision::Missed(missed)
        );
        assert_eq!(
            catch_up(CatchUp::None, Some(missed), None, now, hour),
            CatchUpDecision::Missed(missed)
        );
        // Handled before the daemon went down: never again.
        assert_eq!(
            catch_up(CatchUp::Last, Some(missed), Some(missed), now, hour),
            CatchUpDecision::Nothing
        );
        assert_eq!(
            catch_up(CatchUp::Last, None, None, now, hour),
            CatchUpDecision::Nothing
        );
    }

    #[test]
    fn the_starting_deadline_bounds_lateness() {
        let due = ts("2026-06-01T03:00:00Z");
        let minute = Some(Duration::from_secs(60));
        assert!(in_time(due, ts("2026-06-01T03:00:59Z"), minute));
        assert!(!in_time(due, ts("2026-06-01T03:01:01Z"), minute));
        assert!(in_time(due, ts("2026-06-02T03:00:00Z"), None));
        assert!(in_time(due, ts("2026-06-01T02:59:59Z"), minute), "early");
    }

    #[test]
    fn retries_back_off_doubling_to_the_cap() {
        let backoff = Duration::from_secs(10);
        let cap = Duration::from_secs(60);
        let delays: Vec<u64> = (2..=6)
            .map(|a| retry_delay(a, backoff, cap).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
        assert_eq!(retry_delay(1000, backoff, cap), cap);
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let max = Duration::from_secs(300);
        let a = jitter("nightly-report", max);
        assert_eq!(a, jitter("nightly-report", max));
        assert!(a < max);
        assert_ne!(a, jitter("weekly-report", max));
        assert_eq!(jitter("x", Duration::ZERO), Duration::ZERO);
        // FNV-1a of the name (computed independently), so it is the same in every build and on every host.
        assert_eq!(jitter("nightly-report", max).as_millis(), 249_131);
    }

    #[test]
    fn run_ids_name_the_job_and_the_fire_time() {
        assert_eq!(
            run_id("report", ts("2026-06-01T03:00:00Z")),
            "report@2026-06-01T03:00:00Z"
        );
        assert!(
            manual_run_id("report", ts("2026-06-01T03:00:00.5Z")).starts_with("report@manual-")
        );
    }

    #[test]
    fn fleet_claims_outlive_the_catch_up_window() {
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(claim_retain(None), day + minute);
        assert_eq!(claim_retain(Some(Duration::from_secs(5))), day + minute);
        assert_eq!(claim_retain(Some(2 * day)), 2 * day + minute);
    }

    #[test]
    fn a_late_claim_runs_only_in_time_and_if_still_the_latest() {
        let at = ts("2026-12-02T03:00:00Z");
        let soon = ts("2026-12-02T03:00:20Z");
        let deadline = Some(Duration::from_secs(30));
        assert!(late_claim_runs(at, soon, deadline, Some(at)));
        assert!(late_claim_runs(at, soon, None, Some(at)));
        assert!(!late_claim_runs(
            at,
            ts("2026-12-02T03:01:00Z"),
            deadline,
            Some(at)
        ));
        let next = ts("2026-12-02T03:00:10Z");
        assert!(!late_claim_runs(at, soon, deadline, Some(next)));
    }
}
