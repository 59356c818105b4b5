//! `herdsman events`: follow the daemon's events, a line each, or one JSON object a line with `--json`
//! (the contract in docs/events.md). `--since 10m` first prints the events the daemon kept from then on.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::client::Client;
use crate::home::Home;
use crate::protocol::{Event, Request, Response};

pub fn run(home: &Home, json: bool, since: Option<&str>) -> Result<()> {
    let since_ms = match since {
        None => None,
        Some(text) => {
            let ago = crate::config::parse_duration(text)
                .map_err(anyhow::Error::msg)
                .with_context(|| {
                    format!("--since {text}: expected a duration such as 10m or 1h")
                })?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Some(now.saturating_sub(ago.as_millis() as u64))
        }
    };
    // Nothing to follow without a daemon, and none is started to say so.
    let Some(mut client) = Client::connect(home)? else {
        bail!(
            "no daemon is running for {}: no events to follow",
            home.root().display()
        );
    };
    let mut out = std::io::stdout().lock();
    let mut failed: Option<std::io::Error> = None;
    let answer = client.request_with_progress(&Request::Events { since_ms }, |response| {
        if failed.is_some() {
            return;
        }
        if let Response::Event(event) = response {
            let written = if json {
                serde_json::to_writer(&mut out, event.as_ref())
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                writeln!(out, "{}", line(event))
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    match answer? {
        Response::Error { message, .. } => bail!(message),
        _ => bail!("the daemon ended the event stream (it is stopping)"),
    }
}

/// One event as a line: when, who, what, and its details.
pub fn line(event: &Event) -> String {
    let at = jiff::Timestamp::from_millisecond(event.at_ms as i64)
        .map_or_else(|_| event.at_ms.to_string(), |t| format!("{t:.3}"));
    let who = match event.instance {
        Some(i) => format!("{}:{i}", event.app),
        None => event.app.clone(),
    };
    let mut text = format!("{at}  {who:<16} {:<14}", event.event.as_str());
    if let Some(pid) = event.pid {
        text.push_str(&format!(" pid {pid}"));
    }
    let d = &event.details;
    let parts = [
        d.exit.as_ref().map(|e| format!("exit {e}")),
        d.uptime_ms.map(|u| format!("up {u} ms")),
        d.silent_ms.map(|s| format!("silent {s} ms")),
        d.memory.map(|m| format!("memory {m} B")),
        d.limit.map(|l| format!("limit {l} B")),
        d.old_pid.map(|p| format!("replaced pid {p}")),
        d.ready_ms.map(|r| format!("ready in {r} ms")),
        d.restarts.map(|r| format!("restarts {r}")),
        d.run_id.as_ref().map(|r| format!("run {r}")),
        d.outcome.as_ref().map(|o| format!("outcome {o}")),
        d.reason.as_ref().map(|r| format!("({r})")),
    ];
    for part in parts.into_iter().flatten() {
        text.push_str("  ");
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EVENTS_VERSION, EventDetails, EventKind};

    #[test]
    fn a_line_says_when_who_what_and_the_details() {
        let event = Event {
            version: EVENTS_VERSION,
            seq: 3,
            at_ms: 1_796_279_165_674,
            event: EventKind::Crashed,
            app: "web".into(),
            instance: Some(1),
            pid: Some(4242),
            details: EventDetails {
                exit: Some("signal SIGKILL".into()),
                uptime_ms: Some(5230),
                restarts: Some(2),
                ..EventDetails::default()
            },
        };
        let text = line(&event);
        assert!(text.starts_with("2026-12-03T"), "{text}");
        assert!(text.contains(".674Z  web:1"), "{text}");
        assert!(text.contains("crashed"), "{text}");
        assert!(
            text.contains("pid 4242  exit signal SIGKILL  up 5230 ms  restarts 2"),
            "{text}"
        );
    }
}
