//! One worker slot: its state machine and the decisions taken when its process exits.
//!
//! A slot keeps its id and instance number for its whole life; the processes in it come and go.
//!
//! ```text
//!            spawn             ready                   exit (unexpected)
//!  Stopped ───────► Launching ───────► Online ─────────────────────────► [after_crash]
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

/// One process started in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// Unique for the daemon's life: timers and exec results name the process by it.
    pub serial: u64,
    pub started: Instant,
    /// `execve` is known to have succeeded.
    pub exec_ok: bool,
    /// The app said it is ready, or it stayed up for the grace period.
    pub ready: bool,
    /// An exit seen before the exec result, handled once that result is known.
    pub early_exit: Option<i32>,
    /// Started by a keeper that was killed, and adopted by this one: not this keeper's child, so its exit
    /// comes from its pidfd (see `supervisor/adoption.rs`) and its group is signalled only while it lives.
    pub adopted: bool,
    /// The last `WATCHDOG=1` (its start, until the first): the watchdog measures silence from here. `None`:
    /// not watched until it sends one (a process handed over or adopted, whose heartbeats may not reach
    /// this keeper: a Node worker's pipe is not carried over).
    pub beat: Option<Instant>,
}

impl Process {
    pub fn new(pid: i32, serial: u64) -> Process {
        Process {
            pid,
            serial,
            started: Instant::now(),
            exec_ok: false,
            ready: false,
            early_exit: None,
            adopted: false,
            beat: Some(Instant::now()),
        }
    }
}

/// What the process in a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started: `launching` until ready, then `online`.
    Running(Process),
    /// Signalled to stop. `leader_gone`: the worker itself has exited and the rest of its group is awaited.
    Stopping {
        process: Process,
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
            State::Running(p) if p.ready => Status::Online,
            State::Running(_) => Status::Launching,
            State::Stopping { .. } => Status::Stopping,
            State::Waiting { .. } => Status::Waiting,
            State::Stopped => Status::Stopped,
            State::Errored => Status::Errored,
        }
    }

    /// The process, while one runs in the slot (a stopping one whose leader exited does not count).
    pub fn process(self) -> Option<Process> {
        match self {
            State::Running(p) => Some(p),
            State::Stopping {
                process,
                leader_gone: false,
            } => Some(process),
            _ => None,
        }
    }

    pub fn started(self) -> Option<Instant> {
        match self {
            State::Running(p) | State::Stopping { process: p, .. } => Some(p.started),
            _ => None,
        }
    }

    /// Not running and not about to: stopped or errored.
    pub fn is_down(self) -> bool {
        matches!(self, State::Stopped | State::Errored)
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

/// Decides what follows a crash. A run was stable when the worker got ready and stayed up `min_uptime`.
/// `unstable` counts the quick crashes in a row before this one; the returned count includes this one (0
/// after a stable run).
pub fn after_crash(
    policy: &RestartPolicy,
    uptime: Duration,
    ready: bool,
    unstable: u32,
) -> (AfterCrash, u32) {
    if ready && uptime >= policy.min_uptime {
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
    if status == UNKNOWN_EXIT {
        "unknown (an adopted process)".to_string()
    } else if libc::WIFEXITED(status) {
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

/// The status of an adopted process whose exit status cannot be known: neither an exit nor a signal.
pub const UNKNOWN_EXIT: i32 = -1;

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
            after_crash(&policy(None), Duration::from_secs(5), true, 7),
            (AfterCrash::Restart, 0)
        );
    }

    #[test]
    fn a_long_run_that_never_got_ready_is_not_stable() {
        let (decision, unstable) = after_crash(&policy(None), Duration::from_secs(5), false, 1);
        assert_eq!(
            (decision, unstable),
            (AfterCrash::Wait(Duration::from_millis(100)), 2)
        );
    }

    #[test]
    fn quick_crashes_back_off_exponentially_up_to_the_cap() {
        let p = policy(None);
        let quick = Duration::from_millis(10);
        let mut unstable = 0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let (decision, count) = after_crash(&p, quick, true, unstable);
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
            let (decision, count) = after_crash(&p, Duration::ZERO, false, unstable);
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
        let (first, n) = after_crash(&p, quick, true, 0);
        assert_eq!(first, AfterCrash::Restart);
        let (second, n) = after_crash(&p, quick, true, n);
        assert_eq!(second, AfterCrash::Wait(Duration::from_millis(100)));
        assert_eq!(after_crash(&p, quick, true, n).0, AfterCrash::GiveUp);
    }

    #[test]
    fn exits_are_described_by_code_or_signal() {
        assert_eq!(describe_exit(1 << 8), "code 1");
        assert_eq!(describe_exit(libc::SIGKILL), "signal SIGKILL");
    }
}
