//! The event stream: every change of state is recorded as an [`Event`] in a bounded ring, sent to each
//! `herdsman events` stream, and given to the app's hook if it has one for it (see `hooks.rs`).
//!
//! The ring keeps the last [`RING`] events (a few hundred KiB at most), so `events --since 10m` shows what
//! happened lately; older ones are gone (their `seq` numbers show the gap). A stream is a bounded channel:
//! one whose reader falls [`EVENT_QUEUE`] events behind is dropped, never waited for, as `monit`'s
//! subscriptions are.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Supervisor;
use crate::protocol::{EVENTS_VERSION, Event, EventDetails, EventKind, Response};

/// Events kept for `--since`.
pub const RING: usize = 1000;
/// Events a stream may have queued before it counts as not keeping up: room for the whole ring (sent at
/// once to a new stream) and a burst after it.
pub const EVENT_QUEUE: usize = RING + 256;

/// The ring and the streams.
#[derive(Default)]
pub(super) struct EventLog {
    ring: VecDeque<Event>,
    seq: u64,
    streams: Vec<mpsc::Sender<Response>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventLog {
    /// Records an event and sends it to every stream, dropping the streams that fell behind or closed.
    fn record(&mut self, event: Event) {
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
        if self.streams.is_empty() {
            return;
        }
        let frame = Response::Event(Box::new(event));
        self.streams.retain(|s| match s.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("an event stream did not keep up: dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("an event stream closed");
                false
            }
        });
    }
}

impl Supervisor {
    /// Records an event about an app (a worker of it, when `instance` is given), and runs its hook.
    pub(super) fn emit(
        &mut self,
        kind: EventKind,
        app: &str,
        instance: Option<u32>,
        pid: Option<i32>,
        details: EventDetails,
    ) {
        self.events.seq += 1;
        let event = Event {
            version: EVENTS_VERSION,
            seq: self.events.seq,
            at_ms: now_ms(),
            event: kind,
            app: app.to_string(),
            instance,
            pid: pid.and_then(|p| u32::try_from(p).ok()),
            details,
        };
        self.events.record(event.clone());
        self.run_hook(event);
    }

    /// [`Supervisor::emit`] about a worker slot, by id.
    pub(super) fn emit_worker(
        &mut self,
        kind: EventKind,
        id: u32,
        pid: Option<i32>,
        details: EventDetails,
    ) {
        if let Some(w) = self.workers.get(&id) {
            let (app, instance) = (w.app.clone(), w.instance);
            self.emit(kind, &app, Some(instance), pid, details);
        }
    }

    /// A new stream: the events kept since `since_ms` at once, then each new one.
    pub(super) fn subscribe_events(
        &mut self,
        since_ms: Option<u64>,
        stream: mpsc::Sender<Response>,
    ) {
        if let Some(since) = since_ms {
            for event in self.events.ring.iter().filter(|e| e.at_ms >= since) {
                if stream
                    .try_send(Response::Event(Box::new(event.clone())))
                    .is_err()
                {
                    return;
                }
            }
        }
        self.events.streams.push(stream);
    }
}

/// The details of an exit, from its wait status.
pub(super) fn exit_details(status: i32, uptime: Option<std::time::Duration>) -> EventDetails {
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        let signal = nix::sys::signal::Signal::try_from(libc::WTERMSIG(status)).map_or_else(
            |_| libc::WTERMSIG(status).to_string(),
            |s| s.as_str().to_string(),
        );
        (None, Some(signal))
    } else {
        (None, None)
    };
    EventDetails {
        exit: Some(crate::daemon::worker::describe_exit(status)),
        code,
        signal,
        uptime_ms: uptime.map(|u| u.as_millis() as u64),
        ..EventDetails::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            version: EVENTS_VERSION,
            seq,
            at_ms: seq,
            event: EventKind::Started,
            app: "a".into(),
            instance: Some(0),
            pid: Some(1),
            details: EventDetails::default(),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_events_only() {
        let mut log = EventLog::default();
        for seq in 1..=(RING as u64 + 5) {
            log.record(event(seq));
        }
        assert_eq!(log.ring.len(), RING);
        assert_eq!(log.ring.front().map(|e| e.seq), Some(6));
    }

    #[test]
    fn a_stream_that_falls_behind_is_dropped_and_others_go_on() {
        let mut log = EventLog::default();
        let (slow, _slow_rx) = mpsc::channel(2);
        let (fast, mut fast_rx) = mpsc::channel(16);
        log.streams.push(slow);
        log.streams.push(fast);
        for seq in 1..=3 {
            log.record(event(seq));
            while fast_rx.try_recv().is_ok() {}
        }
        assert_eq!(log.streams.len(), 1, "the slow stream was dropped");
    }

    #[test]
    fn the_json_is_flat_and_versioned() {
        let mut e = event(7);
        e.event = EventKind::MemoryLimit;
        e.details.memory = Some(10);
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["version"], 1);
        assert_eq!(json["event"], "memory-limit");
        assert_eq!(json["memory"], 10);
        assert!(json.get("exit").is_none());
    }
}
