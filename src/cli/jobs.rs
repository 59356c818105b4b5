//! `herdsman jobs` (list, history, next, pause, resume), `trigger` and `logs --run`: scheduled jobs from the
//! command line. Read-only views print what the daemon keeps; nothing here schedules.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Result, bail};

use super::JobsAction;
use crate::client::Client;
use crate::home::Home;
use crate::human::duration;
use crate::protocol::{JobInfo, JobRequest, Request, Response, RunOutcome, RunRecord};

fn ask(home: &Home, request: JobRequest) -> Result<Response> {
    let Some(mut client) = Client::connect(home)? else {
        bail!("the daemon is not running, so no job is scheduled");
    };
    match client.request(&Request::Job(request))? {
        Response::Error { message, .. } => bail!(message),
        response => Ok(response),
    }
}

/// A time in milliseconds since the Unix epoch, in the host's zone.
fn local(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map_or_else(
        |_| "-".to_string(),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        },
    )
}

fn utc(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map_or_else(
        |_| "-".to_string(),
        |t| t.strftime("%H:%M:%S UTC").to_string(),
    )
}

/// Prints rows with each column padded to its widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // One buffer for the whole table: no copy of a cell, no string per padded cell.
    let line_width: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity((rows.len() + 1) * line_width);
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        let end = start + out[start..].trim_end().len();
        out.truncate(end);
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn outcome(run: &RunRecord) -> String {
    match &run.exit {
        Some(exit) if run.outcome != RunOutcome::Ok => format!("{} ({exit})", run.outcome.as_str()),
        _ => run.outcome.as_str().to_string(),
    }
}

pub fn run(home: &Home, action: Option<JobsAction>, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        None => {
            let Response::Jobs { jobs } = ask(home, JobRequest::List { brief: !json })? else {
                bail!("unexpected answer to jobs");
            };
            if json {
                serde_json::to_writer(&mut out, &jobs)?;
                writeln!(out)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = jobs.iter().map(job_row).collect();
            let headers = [
                "name", "state", "schedule", "next run", "(utc)", "last", "ok", "failed",
            ];
            out.write_all(table(&headers, &rows).as_bytes())?;
            let fleet: Vec<Vec<String>> = jobs
                .iter()
                .filter_map(|job| {
                    let fleet = job.fleet.as_ref()?;
                    Some(vec![
                        job.name.clone(),
                        fleet.name.clone(),
                        fleet.host.clone(),
                        fleet.last_host.clone().unwrap_or_else(|| "-".into()),
                        fleet.ran_here.to_string(),
                        fleet.ran_elsewhere.to_string(),
                    ])
                })
                .collect();
            if !fleet.is_empty() {
                let headers = [
                    "fleet job",
                    "fleet",
                    "this host",
                    "last run on",
                    "ran here",
                    "ran elsewhere",
                ];
                writeln!(out)?;
                out.write_all(table(&headers, &fleet).as_bytes())?;
            }
        }
        Some(JobsAction::History {
            name,
            json,
            fleet: true,
        }) => {
            let Response::FleetHistory { runs, .. } =
                ask(home, JobRequest::History { name, fleet: true })?
            else {
                bail!("unexpected answer to jobs history --fleet");
            };
            if json {
                serde_json::to_writer(&mut out, &runs)?;
                writeln!(out)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    let mut row = history_row(&r.run);
                    row.insert(1, r.host.clone());
                    row
                })
                .collect();
            let headers = [
                "run id",
                "host",
                "scheduled at",
                "started",
                "took",
                "outcome",
                "attempt",
                "detail",
            ];
            out.write_all(table(&headers, &rows).as_bytes())?;
        }
        Some(JobsAction::History { name, json, .. }) => {
            let Response::JobHistory { runs, .. } =
                ask(home, JobRequest::History { name, fleet: false })?
            else {
                bail!("unexpected answer to jobs history");
            };
            if json {
                serde_json::to_writer(&mut out, &runs)?;
                writeln!(out)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = runs.iter().map(history_row).collect();
            let headers = [
                "run id",
                "scheduled at",
                "started",
                "took",
                "outcome",
                "attempt",
                "detail",
            ];
            out.write_all(table(&headers, &rows).as_bytes())?;
        }
        Some(JobsAction::Next { name, count, json }) => {
            let Response::JobNext {
                timezone, fires, ..
            } = ask(home, JobRequest::Next { name, count })?
            else {
                bail!("unexpected answer to jobs next");
            };
            if json {
                serde_json::to_writer(&mut out, &fires)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(out, "in {timezone}:")?;
            for fire in fires {
                let shift = fire.shift.map(|s| format!("  ({s})")).unwrap_or_default();
                writeln!(out, "  {}  = {}{shift}", fire.local, fire.utc)?;
            }
        }
        Some(JobsAction::Pause { name }) => {
            ask(home, JobRequest::Pause { name: name.clone() })?;
            writeln!(
                out,
                "{name}: paused (`herdsman jobs resume {name}` runs it again)"
            )?;
        }
        Some(JobsAction::Resume { name }) => {
            ask(home, JobRequest::Resume { name: name.clone() })?;
            writeln!(out, "{name}: resumed")?;
        }
    }
    Ok(())
}

/// A run as `jobs history` shows it.
fn history_row(r: &RunRecord) -> Vec<String> {
    vec![
        r.run_id.clone(),
        r.scheduled_at_ms.map_or("manual".into(), local),
        r.started_at_ms.map_or("-".into(), local),
        match (r.started_at_ms, r.ended_at_ms) {
            (Some(s), Some(e)) => duration(e.saturating_sub(s)),
            _ => "-".into(),
        },
        outcome(r),
        r.attempt.to_string(),
        r.detail.clone().unwrap_or_default(),
    ]
}

/// `fleet status`: each store the fleet jobs use, its latency, the clock against it, the hosts seen.
pub fn fleet_status(home: &Home, json: bool) -> Result<()> {
    let Response::FleetStatus { stores } = ask(home, JobRequest::FleetStatus)? else {
        bail!("unexpected answer to fleet status");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &stores)?;
        writeln!(out)?;
        return Ok(());
    }
    if stores.is_empty() {
        writeln!(out, "no `scope = \"fleet\"` job: no fleet store in use")?;
        return Ok(());
    }
    for store in &stores {
        writeln!(
            out,
            "fleet {} (this host: {}) in {}",
            store.fleet, store.host, store.store
        )?;
        writeln!(out, "  jobs: {}", store.jobs.join(", "))?;
        match store.latency_us {
            Some(us) => writeln!(out, "  latency: {:.2} ms", us as f64 / 1000.0)?,
            None => writeln!(out, "  latency: -")?,
        }
        if let Some(error) = &store.error {
            writeln!(out, "  error: {error}")?;
        }
        if let Some(skew) = store.skew_ms {
            writeln!(out, "  this host's clock - the store's: {skew:+} ms")?;
            if skew.unsigned_abs() > store.skew_tolerated_ms {
                writeln!(
                    out,
                    "  warning: this host's clock is off by more than {} ms against the store's: hosts may disagree on run ids of one-second schedules (fix NTP)",
                    store.skew_tolerated_ms
                )?;
            }
        }
        let rows: Vec<Vec<String>> = store
            .hosts
            .iter()
            .map(|h| {
                let ago = store
                    .now_ms
                    .map(|now| format!("{} ago", duration(now.saturating_sub(h.last_seen_ms))))
                    .unwrap_or_default();
                vec![
                    h.name.clone(),
                    h.version.clone(),
                    local(h.last_seen_ms),
                    ago,
                ]
            })
            .collect();
        let text = table(&["host", "version", "last seen", ""], &rows);
        for line in text.lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

fn job_row(job: &JobInfo) -> Vec<String> {
    vec![
        job.name.clone(),
        job.state.as_str().to_string(),
        format!("{} ({})", job.schedule, job.words),
        job.next_local.clone().unwrap_or_else(|| "-".into()),
        job.next_ms.map_or("-".into(), utc),
        job.last.as_ref().map_or("-".into(), outcome),
        job.ok.to_string(),
        job.failed.to_string(),
    ]
}

/// The runs of `job` in the history.
fn history(home: &Home, job: &str) -> Result<Vec<RunRecord>> {
    match ask(
        home,
        JobRequest::History {
            name: job.to_string(),
            fleet: false,
        },
    )? {
        Response::JobHistory { runs, .. } => Ok(runs),
        _ => bail!("unexpected answer to jobs history"),
    }
}

/// `trigger NAME [--wait]`.
pub fn trigger(home: &Home, name: &str, wait: bool) -> Result<()> {
    let Response::Triggered { run } = ask(
        home,
        JobRequest::Trigger {
            name: name.to_string(),
        },
    )?
    else {
        bail!("unexpected answer to trigger");
    };
    match run.outcome {
        RunOutcome::Skipped => bail!(
            "{}: skipped: {}",
            run.run_id,
            run.detail.unwrap_or_default()
        ),
        RunOutcome::Running => {}
        _ => bail!("{}: {}", run.run_id, outcome(&run)),
    }
    println!("{}", run.run_id);
    if !wait {
        return Ok(());
    }
    let code = follow(home, name, &run.run_id)?;
    std::process::exit(code)
}

/// Follows a run (every attempt) until it ends for good, copying its output; returns the exit code to
/// exit with: the run's own, 128 + the signal that ended it, or 1.
fn follow(home: &Home, job: &str, run_id: &str) -> Result<i32> {
    let mut printed: Vec<(String, u64)> = Vec::new();
    loop {
        let runs = history(home, job)?;
        let attempts: Vec<&RunRecord> = runs.iter().filter(|r| r.run_id == run_id).collect();
        copy_new_output(&attempts, &mut printed)?;
        let last = attempts.last();
        let retrying = match ask(home, JobRequest::List { brief: true })? {
            Response::Jobs { jobs } => jobs
                .iter()
                .any(|j| j.name == job && j.retrying.iter().any(|r| r == run_id)),
            _ => false,
        };
        // A retry armed when the attempt ended either still waits (`retrying`) or has started since, and
        // then its attempt is in the history asked for after the list.
        let superseded = || -> Result<bool> {
            let again = history(home, job)?;
            Ok(again
                .iter()
                .rev()
                .find(|r| r.run_id == run_id)
                .map(|r| r.attempt)
                != last.map(|r| r.attempt))
        };
        match last {
            Some(run) if run.outcome != RunOutcome::Running && !retrying && !superseded()? => {
                // The log keeper may still be writing the run's last lines (it reads the pipes until the
                // run's whole group is gone): copy until the output has not grown for 400 ms, 3 s at most.
                let deadline = std::time::Instant::now() + Duration::from_secs(3);
                let mut quiet = 0;
                while quiet < 4 && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    if copy_new_output(&attempts, &mut printed)? {
                        quiet = 0;
                    } else {
                        quiet += 1;
                    }
                }
                eprintln!("{run_id}: {} (attempt {})", outcome(run), run.attempt);
                return Ok(match (run.outcome, run.exit_code) {
                    (RunOutcome::Ok, _) => 0,
                    (_, Some(code)) if code != 0 => code,
                    _ => match run.exit.as_deref().and_then(|e| e.strip_prefix("signal ")) {
                        Some(signal) => signal
                            .parse::<nix::sys::signal::Signal>()
                            .map_or(1, |s| 128 + s as i32),
                        None => 1,
                    },
                });
            }
            None => bail!("{run_id} is not in the history of {job}"),
            _ => {}
        }
        // Polling the daemon while the run goes on (it may take hours): not a synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies to stdout what the attempts' output files gained since `printed` (each file with the offset
/// copied so far); says whether anything was copied.
fn copy_new_output(attempts: &[&RunRecord], printed: &mut Vec<(String, u64)>) -> Result<bool> {
    let mut stdout = std::io::stdout();
    let mut copied = false;
    for attempt in attempts {
        let Some(log) = &attempt.log else { continue };
        let index = match printed.iter().position(|(path, _)| path == log) {
            Some(index) => index,
            None => {
                printed.push((log.clone(), 0));
                printed.len() - 1
            }
        };
        let offset = &mut printed[index].1;
        if let Ok(mut file) = std::fs::File::open(log)
            && file.seek(SeekFrom::Start(*offset)).is_ok()
        {
            let mut text = Vec::new();
            if let Ok(n) = file.read_to_end(&mut text)
                && n > 0
            {
                *offset += n as u64;
                stdout.write_all(&text)?;
                stdout.flush()?;
                copied = true;
            }
        }
    }
    Ok(copied)
}

/// `logs [JOB] --run RUN_ID`: the output of every attempt of one run.
pub fn run_logs(home: &Home, job: Option<&str>, run_id: &str) -> Result<()> {
    let job = match job {
        Some(job) => job.to_string(),
        None => match run_id.split_once('@') {
            Some((job, _)) => job.to_string(),
            None => bail!("`{run_id}` is not a run id (`<job>@<time>`, as `jobs history` shows)"),
        },
    };
    let runs = history(home, &job)?;
    let attempts: Vec<&RunRecord> = runs.iter().filter(|r| r.run_id == run_id).collect();
    if attempts.is_empty() {
        bail!("no run {run_id} in the history of {job} (`herdsman jobs history {job}` lists them)");
    }
    let mut out = std::io::stdout().lock();
    for attempt in &attempts {
        let Some(log) = &attempt.log else {
            writeln!(
                out,
                "# attempt {}: {} (nothing ran)",
                attempt.attempt,
                outcome(attempt)
            )?;
            continue;
        };
        if attempts.len() > 1 {
            writeln!(out, "# attempt {}: {}", attempt.attempt, outcome(attempt))?;
        }
        match std::fs::read(log) {
            Ok(text) => out.write_all(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot read {log}: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell_and_ends_lines_without_spaces() {
        let rows = vec![
            vec!["nightly-report".to_string(), "é".to_string(), String::new()],
            vec!["a".to_string(), String::new(), String::new()],
        ];
        let text = table(&["name", "state", ""], &rows);
        assert_eq!(
            text, "name            state\nnightly-report  é\na\n",
            "a character of several bytes is one column; trailing padding is trimmed"
        );
    }
}
