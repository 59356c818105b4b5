//! `herdsman list`: the process table, aligned, coloured on a terminal; or the JSON records.

use std::io::{IsTerminal, Write};

use anyhow::{Result, bail};

use crate::client::Client;
use crate::home::Home;
use crate::human::{bytes, duration};
use crate::protocol::{ProcessInfo, Request, Response, Status};

pub fn run(home: &Home, json: bool) -> Result<()> {
    // A read-only command: with no daemon there is nothing running, and nothing is started to say so.
    let processes = match Client::connect(home)? {
        None => Vec::new(),
        Some(mut client) => match client.request(&Request::List { brief: !json })? {
            Response::Processes { processes } => processes,
            Response::Error { message, .. } => bail!(message),
            _ => bail!("unexpected answer to list; is the CLI the same version as the daemon?"),
        },
    };
    print(&processes, json)
}

/// Prints the records as JSON or as a table.
pub fn print(processes: &[ProcessInfo], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, processes)?;
        writeln!(out)?;
    } else {
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        out.write_all(table(processes, colour).as_bytes())?;
    }
    Ok(())
}

const HEADERS: [&str; 10] = [
    "id", "name", "mode", "pid", "status", "↺", "uptime", "cpu", "memory", "listen",
];

/// Renders the table: one row a worker, columns padded to their widest cell.
pub fn table(processes: &[ProcessInfo], colour: bool) -> String {
    let rows: Vec<[String; 10]> = processes.iter().map(row).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::with_capacity(rows.len() * widths.iter().map(|w| w + 2).sum::<usize>());
    let line = |cells: &[String; 10], status: Option<Status>, text: &mut String| {
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width - cell.chars().count();
            match (i, status) {
                (4, Some(status)) if colour => {
                    text.push_str(&format!("\x1b[{}m{cell}\x1b[0m", status_colour(status)));
                }
                _ => text.push_str(cell),
            }
            if i + 1 < cells.len() {
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        text.push('\n');
    };
    let headers = HEADERS.map(str::to_string);
    if colour {
        text.push_str("\x1b[1m");
    }
    line(&headers, None, &mut text);
    if colour {
        text.insert_str(text.len() - 1, "\x1b[0m");
    }
    for (process, cells) in processes.iter().zip(&rows) {
        line(cells, Some(process.status), &mut text);
    }
    if processes.is_empty() {
        text.push_str("(no apps; start one with `herdsman start app.js -i max --listen 3000`)\n");
    }
    text.push_str(&watch_notes(processes));
    text.push_str(&accept_notes(processes));
    text
}

/// A line for each app marked as nobody accepting: connections wait in its queue and no worker takes any.
fn accept_notes(processes: &[ProcessInfo]) -> String {
    let mut notes = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for p in processes.iter().filter(|p| p.nobody_accepting) {
        if seen.contains(&p.name.as_str()) {
            continue;
        }
        seen.push(&p.name);
        let waiting: Vec<String> = p
            .accept_queues
            .iter()
            .filter(|q| q.stalled_ms.is_some() && q.depth > 0)
            .map(|q| {
                let waited = q
                    .stalled_ms
                    .map_or(String::new(), |ms| format!(" for {}", duration(ms)));
                format!("{} connection(s) on {}{waited}", q.depth, q.address)
            })
            .collect();
        notes.push_str(&format!(
            "{}: nobody accepting: {} waiting and no worker accepts any; does a worker listen on a port of \
             its own instead of the socket it inherited (fd 3), or is every worker stuck?\n",
            p.name,
            if waiting.is_empty() { "connections".to_string() } else { waiting.join(", ") }
        ));
    }
    notes
}

/// A line for each app whose last reload after a change failed: the old workers keep serving.
fn watch_notes(processes: &[ProcessInfo]) -> String {
    let mut notes = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for p in processes {
        if let Some(error) = &p.watch_error
            && !seen.contains(&p.name.as_str())
        {
            seen.push(&p.name);
            notes.push_str(&format!("{}: watch: {error}\n", p.name));
        }
    }
    notes
}

fn status_colour(status: Status) -> &'static str {
    match status {
        Status::Online => "32",
        Status::Launching | Status::Waiting | Status::Stopping => "33",
        Status::Errored => "31",
        Status::Stopped => "2",
    }
}

fn row(p: &ProcessInfo) -> [String; 10] {
    let status = match (p.status, p.restart_in_ms) {
        (Status::Waiting, Some(ms)) => format!("waiting {}", duration(ms)),
        (Status::Stopped, _) if p.job.is_some() => p
            .job
            .as_ref()
            .map_or("stopped", |j| j.state.as_str())
            .to_string(),
        (status, _) if p.adopted => format!("{} (adopted)", status.as_str()),
        (status, _) => status.as_str().to_string(),
    };
    [
        p.id.to_string(),
        if p.mode == crate::protocol::Mode::Cluster {
            format!("{}:{}", p.name, p.instance)
        } else {
            p.name.clone()
        },
        match (p.mode, p.watching) {
            (crate::protocol::Mode::Cluster, false) => "cluster".into(),
            (crate::protocol::Mode::Fork, false) => "fork".into(),
            (crate::protocol::Mode::Cluster, true) => "cluster+watch".into(),
            (crate::protocol::Mode::Fork, true) => "fork+watch".into(),
        },
        p.pid.map_or("-".into(), |pid| pid.to_string()),
        status,
        if p.hung > 0 {
            format!("{} ({} hung)", p.restarts, p.hung)
        } else {
            p.restarts.to_string()
        },
        p.uptime_ms.map_or("-".into(), duration),
        format!("{:.1}%", p.cpu),
        bytes(p.memory),
        match (&p.listen, p.nobody_accepting) {
            (Some(listen), true) => format!("{listen} (nobody accepting)"),
            (Some(listen), false) => listen.clone(),
            (None, _) => "-".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Mode;

    fn record(id: u32, name: &str, status: Status) -> ProcessInfo {
        ProcessInfo {
            id,
            name: name.into(),
            instance: id,
            mode: Mode::Cluster,
            pid: Some(4000 + id),
            status,
            restarts: 0,
            uptime_ms: Some(61_000),
            cpu: 0.5,
            memory: 42 * 1024 * 1024,
            listen: Some("127.0.0.1:3000".into()),
            restart_in_ms: None,
            last_exit: None,
            out_file: None,
            error_file: None,
            last_exit_at_ms: None,
            memory_restarts: 0,
            watchdog_misses: 0,
            hung: 0,
            watching: false,
            watch_error: None,
            log_lines: None,
            group: Vec::new(),
            adopted: false,
            balance: None,
            runtime: None,
            accept_queues: Vec::new(),
            nobody_accepting: false,
            reloads: None,
            job: None,
        }
    }

    #[test]
    fn table_is_aligned_and_plain_without_colour() {
        let text = table(
            &[
                record(0, "api", Status::Online),
                record(1, "api", Status::Waiting),
            ],
            false,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(!text.contains('\x1b'));
        let column = |line: &str| {
            line.find("online")
                .or_else(|| line.find("waiting"))
                .or_else(|| line.find("status"))
        };
        assert_eq!(column(lines[0]), column(lines[1]));
        assert_eq!(column(lines[1]), column(lines[2]));
        assert!(
            lines[1].contains("api:0") && lines[1].contains("1m") && lines[1].contains("42.0mb")
        );
    }

    #[test]
    fn table_colours_the_status_on_a_terminal() {
        let text = table(&[record(0, "api", Status::Errored)], true);
        assert!(text.contains("\x1b[31merrored\x1b[0m"));
    }
}
