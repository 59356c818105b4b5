//! The watchdog's decisions, as plain functions over a process's heartbeat and a clock reading.
//!
//! A worker of an app with `watchdog = D` gets `WATCHDOG_USEC` and must send `WATCHDOG=1` (on
//! `NOTIFY_SOCKET`, or the Node preload's pipe) at least every D. The supervisor keeps one timer, for the
//! earliest deadline of all the processes it watches; when it fires it asks [`verdict`] about each one.
//!
//! A hung worker that had been running well (ready, and up at least `min_uptime`) is replaced like a
//! one-worker reload: its successor is made ready first, then it gets the watchdog signal, the kill signal
//! and SIGKILL. One hung right after its start is not: that is a crash (it is killed, and the restart
//! policy's backoff applies), so a worker that always hangs at start cannot make the daemon spin.

use std::time::{Duration, Instant};

/// What to do about one watched process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It beat in time; look again at this deadline.
    Alive { deadline: Instant },
    /// Silent for this long after a good run: replace it (successor ready first).
    Hung { silent: Duration },
    /// Silent for this long before it was ready or stable: kill it and count a crash.
    HungAtStart { silent: Duration },
}

/// What is known of one process.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub started: Instant,
    pub beat: Instant,
    pub ready: bool,
}

/// Decides about one process with this watchdog period and `min_uptime`.
pub fn verdict(now: Instant, hb: Heartbeat, period: Duration, min_uptime: Duration) -> Verdict {
    let deadline = hb.beat + period;
    if now < deadline {
        return Verdict::Alive { deadline };
    }
    let silent = now.saturating_duration_since(hb.beat);
    // Stable as the restart policy counts it: ready, and up for min_uptime before it fell silent.
    let stable = hb.ready && hb.beat.saturating_duration_since(hb.started) >= min_uptime;
    if stable {
        Verdict::Hung { silent }
    } else {
        Verdict::HungAtStart { silent }
    }
}

/// How long a hung worker is given after the watchdog signal (to write a report or a core dump) before it
/// gets the kill signal: a second, or the kill timeout if that is shorter.
pub fn report_time(kill_timeout: Duration) -> Duration {
    kill_timeout.min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(2);
    const MIN_UPTIME: Duration = Duration::from_secs(1);

    fn hb(t0: Instant, beat_after: u64, ready: bool) -> Heartbeat {
        Heartbeat {
            started: t0,
            beat: t0 + Duration::from_millis(beat_after),
            ready,
        }
    }

    #[test]
    fn a_worker_that_beats_in_time_is_alive_until_its_next_deadline() {
        let t0 = Instant::now();
        let v = verdict(
            t0 + Duration::from_millis(2500),
            hb(t0, 1000, true),
            PERIOD,
            MIN_UPTIME,
        );
        assert_eq!(
            v,
            Verdict::Alive {
                deadline: t0 + Duration::from_millis(3000)
            }
        );
    }

    #[test]
    fn a_silent_stable_worker_is_hung_with_how_long_it_was_silent() {
        let t0 = Instant::now();
        let v = verdict(
            t0 + Duration::from_millis(7000),
            hb(t0, 5000, true),
            PERIOD,
            MIN_UPTIME,
        );
        assert_eq!(
            v,
            Verdict::Hung {
                silent: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn silence_at_start_is_a_crash() {
        let t0 = Instant::now();
        // Never beat, never ready.
        let v = verdict(t0 + PERIOD, hb(t0, 0, false), PERIOD, MIN_UPTIME);
        assert_eq!(v, Verdict::HungAtStart { silent: PERIOD });
        // Ready, but silent before min_uptime.
        let v = verdict(
            t0 + Duration::from_secs(3),
            hb(t0, 500, true),
            PERIOD,
            MIN_UPTIME,
        );
        assert!(matches!(v, Verdict::HungAtStart { .. }));
    }

    #[test]
    fn the_deadline_itself_is_a_miss() {
        let t0 = Instant::now();
        let v = verdict(
            t0 + Duration::from_secs(4),
            hb(t0, 2000, true),
            PERIOD,
            MIN_UPTIME,
        );
        assert!(matches!(v, Verdict::Hung { .. }));
    }

    #[test]
    fn the_report_time_is_at_most_a_second_and_within_the_kill_timeout() {
        assert_eq!(
            report_time(Duration::from_millis(1600)),
            Duration::from_secs(1)
        );
        assert_eq!(
            report_time(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }
}
