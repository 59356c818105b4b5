//! One worker slot: its state machine and the decisions taken when its process exits.
//!
//! A slot keeps its id and instance number for its whole life; the processes in it come and go.
//!
//! ```text
//!            spawn            exec ok                  exit (unexpected)
//!  Stopped ───────► Launching ───────► Online ─────────────────────────► [restart_decision]
//!     ▲                                  │ stop/restart/delete                 │
//!     │              exit (by request)   ▼                     now ┌───────────┼──────────┐ later
//!     └──────────────────────────── Stopping                       ▼           ▼          ▼
//!                                                              Launching    Errored    Waiting ──timer──► Launching
//! ```
//!
//! The functions here are plain: they take the slot's data and a clock reading and return what to do, so
//! the restart policy is tested without processes.

use std::time::{Duration, Instant};

use crate::protocol::Status;

/// What the process in a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Forked; exec not yet confirmed.
    Launching {
        pid: i32,
        started: Instant,
    },
    Online {
        pid: i32,
        started: Instant,
    },
    /// Signalled to stop. `leader_gone`: the worker itself has exited and the rest of its group is awaited.
    Stopping {
        pid: i32,
        started: Instant,
        leader_gone: bool,
    },
    /// Crashed; the next start is due at `until`.
    Waiting {
        until: Instant,
    },
    Stopped,
    Errored,
}

impl State {
    pub fn status(self) -> Status {
        match self {
            State::Launching { .. } => Status::Launching,
            State::Online { .. } => Status::Online,
            State::Stopping { .. } => Status::Stopping,
            State::Waiting { .. } => Status::Waiting,
            State::Stopped => Status::Stopped,
            State::Errored => Status::Errored,
        }
    }

    /// The worker's pid while a process runs in the slot.
    pub fn pid(self) -> Option<i32> {
        match self {
            State::Launching { pid, .. } | State::Online { pid, .. } => Some(pid),
            State::Stopping {
                pid,
                leader_gone: false,
                ..
            } => Some(pid),
            _ => None,
        }
    }

    /// The process group to signal, while any of it may be alive.
    pub fn group(self) -> Option<i32> {
        match self {
            State::Launching { pid, .. }
            | State::Online { pid, .. }
            | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn started(self) -> Option<Instant> {
        match self {
            State::Launching { started, .. }
            | State::Online { started, .. }
            | State::Stopping { started, .. } => Some(started),
            _ => None,
        }
    }

    /// Not running and not about to: stopped or errored.
    pub fn is_down(self) -> bool {
        matches!(self, State::Stopped | State::Errored)
    }

    /// In the middle of a change that a command waits for.
    pub fn is_transient(self) -> bool {
        matches!(self, State::Launching { .. } | State::Stopping { .. })
    }
}

/// What to do when the current process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// It was not asked to exit: apply the restart policy.
    Crash,
    /// Start it again at once.
    Restart,
    /// Leave the slot stopped.
    Stop,
    /// Remove the slot.
    Remove,
}

/// The restart policy of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub min_uptime: Duration,
    pub max_restarts: Option<u32>,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

/// The decision after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start again now.
    Restart,
    /// Start again after this delay.
    Wait(Duration),
    /// Give up.
    GiveUp,
}

/// Decides what follows a crash. `unstable` counts the quick crashes in a row before this one; the returned
/// count includes this one (0 when the run was long enough to count as stable).
pub fn after_crash(policy: &RestartPolicy, uptime: Duration, unstable: u32) -> (AfterCrash, u32) {
    if uptime >= policy.min_uptime {
        return (AfterCrash::Restart, 0);
    }
    let unstable = unstable.saturating_add(1);
    if policy.max_restarts.is_some_and(|max| unstable > max) {
        return (AfterCrash::GiveUp, unstable);
    }
    match backoff_delay(policy, unstable) {
        Duration::ZERO => (AfterCrash::Restart, unstable),
        delay => (AfterCrash::Wait(delay), unstable),
    }
}

/// The delay before the restart that follows the `unstable`-th quick crash in a row: none for the first, then
/// `backoff`, doubling, up to `backoff_max`.
pub fn backoff_delay(policy: &RestartPolicy, unstable: u32) -> Duration {
    if unstable <= 1 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(unstable - 2).unwrap_or(u32::MAX);
    policy
        .backoff
        .saturating_mul(factor)
        .min(policy.backoff_max)
}

/// How a process ended, as `list` and the logs say it.
pub fn describe_exit(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("signal {}", signal.as_str()),
            Err(_) => format!("signal {signal}"),
        }
    } else {
        format!("status {status}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_restarts: Option<u32>) -> RestartPolicy {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            max_restarts,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_crash_after_a_stable_run_restarts_at_once_and_resets_the_count() {
        assert_eq!(
            after_crash(&policy(None), Duration::from_secs(5), 7),
            (AfterCrash::Restart, 0)
        );
    }

    #[test]
    fn quick_crashes_back_off_exponentially_up_to_the_cap() {
        let p = policy(None);
        let quick = Duration::from_millis(10);
        let mut unstable = 0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let (decision, count) = after_crash(&p, quick, unstable);
            unstable = count;
            delays.push(match decision {
                AfterCrash::Restart => 0,
                AfterCrash::Wait(d) => d.as_millis() as u64,
                AfterCrash::GiveUp => panic!("retried forever by default"),
            });
        }
        assert_eq!(
            delays,
            [
                0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000, 15000
            ]
        );
    }

    #[test]
    fn a_crash_loop_restarts_at_most_a_dozen_times_in_ten_seconds() {
        // The benchmark's bar: <= 12 restarts in 10 s, even for a program that dies the instant it starts.
        let p = policy(None);
        let (mut elapsed, mut restarts, mut unstable) = (Duration::ZERO, 0, 0);
        loop {
            let (decision, count) = after_crash(&p, Duration::ZERO, unstable);
            unstable = count;
            if let AfterCrash::Wait(d) = decision {
                elapsed += d;
            }
            if elapsed > Duration::from_secs(10) {
                break;
            }
            restarts += 1;
        }
        assert!(restarts <= 12, "{restarts} restarts in 10 s");
    }

    #[test]
    fn max_restarts_gives_up_after_that_many_quick_crashes() {
        let p = policy(Some(2));
        let quick = Duration::from_millis(10);
        let (first, n) = after_crash(&p, quick, 0);
        assert_eq!(first, AfterCrash::Restart);
        let (second, n) = after_crash(&p, quick, n);
        assert_eq!(second, AfterCrash::Wait(Duration::from_millis(100)));
        assert_eq!(after_crash(&p, quick, n).0, AfterCrash::GiveUp);
    }

    #[test]
    fn exits_are_described_by_code_or_signal() {
        assert_eq!(describe_exit(1 << 8), "code 1");
        assert_eq!(describe_exit(libc::SIGKILL), "signal SIGKILL");
    }
}
