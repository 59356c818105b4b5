//! `herdsman logs` and `herdsman flush`: apps' logs, merged, and emptied.
//!
//! `logs` reads the files itself (see [`crate::logs`]): it works whether or not the daemon runs and costs
//! the daemon nothing. With a daemon it asks which apps exist and where their logs are (an app may have
//! its own paths); without one, the files in `HERDSMAN_HOME/logs` tell. It prints the last `--lines` lines
//! of every selected stream merged by time, then follows them, checking a few times a second.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::LogsArgs;
use crate::client::Client;
use crate::home::Home;
use crate::logs::filter::parse_moment;
use crate::logs::{Filter, Follower, LineFormat, LogLine, Source, Stream, format_time, now_ms};
use crate::protocol::{ProcessInfo, Request, Response, Selection};

/// How often a follower looks at its files.
pub const POLL: Duration = Duration::from_millis(100);
/// How often `logs` of every app looks for apps created since it started.
const NEW_APPS: Duration = Duration::from_secs(2);

/// How a line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `app|instance line`, the prefix in a colour of its own on a terminal (error lines in red).
    Prefixed { colour: bool },
    /// The line alone.
    Raw,
    /// One JSON object a line: `{"app", "instance", "stream": "out"|"err", "time", "line"}`.
    Json,
}

impl Format {
    /// The format the flags ask for; colour only on a terminal and without NO_COLOR.
    pub fn from_flags(raw: bool, json: bool) -> Format {
        match (raw, json) {
            (true, _) => Format::Raw,
            (_, true) => Format::Json,
            _ => Format::Prefixed {
                colour: std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            },
        }
    }
}

/// Prints log lines in a [`Format`], with or without their time.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub timestamp: bool,
}

impl Printer {
    pub fn print(&self, out: &mut impl Write, line: &LogLine) -> std::io::Result<()> {
        let time = match (self.timestamp, line.time) {
            (true, Some(ms)) => format!("{} ", format_time(ms)),
            _ => String::new(),
        };
        let instance = line
            .instance
            .map_or_else(|| "-".to_string(), |i| i.to_string());
        match self.format {
            Format::Prefixed { colour: true } => {
                let paint = colour_of(&line.app, line.instance);
                let text = match line.stream {
                    Stream::Err => format!("\x1b[31m{}\x1b[0m", line.text),
                    Stream::Out => line.text.clone(),
                };
                writeln!(
                    out,
                    "{time}\x1b[{paint}m{}|{instance}\x1b[0m {text}",
                    line.app
                )
            }
            Format::Prefixed { colour: false } => {
                writeln!(out, "{time}{}|{instance} {}", line.app, line.text)
            }
            Format::Raw => writeln!(out, "{time}{}", line.text),
            Format::Json => {
                let record = serde_json::json!({
                    "app": line.app,
                    "instance": line.instance,
                    "stream": line.stream,
                    "time": line.time.map(format_time),
                    "line": line.text,
                });
                writeln!(out, "{record}")
            }
        }
    }
}

/// A stable colour (an SGR code) for an app's instance. Red is left for error lines.
fn colour_of(app: &str, instance: Option<u32>) -> &'static str {
    const PALETTE: [&str; 10] = ["36", "32", "33", "34", "35", "96", "92", "93", "94", "95"];
    // FNV-1a: the same app and instance get the same colour in every run.
    let mut hash: u32 = 0x811c_9dc5;
    let key = format!("{app}|{}", instance.map_or(-1, i64::from));
    for byte in key.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    PALETTE[hash as usize % PALETTE.len()]
}

/// An app's log files, and how its lines are written (when the daemon says).
#[derive(Debug, Clone, PartialEq)]
pub struct AppLogs {
    pub out: PathBuf,
    pub err: PathBuf,
    pub format: LineFormat,
}

/// The streams of some apps, as sources to read.
/// Only the lines of `instance`, when it is given.
pub fn sources(
    apps: &BTreeMap<String, AppLogs>,
    out: bool,
    err: bool,
    instance: Option<u32>,
) -> Vec<Source> {
    let mut sources = Vec::new();
    for (app, logs) in apps {
        let (out_path, err_path) = (&logs.out, &logs.err);
        let source = |stream, path: &PathBuf| Source {
            app: app.clone(),
            stream,
            path: path.clone(),
            instance,
            format: logs.format.clone(),
        };
        if out {
            sources.push(source(Stream::Out, out_path));
        }
        if err && (!out || err_path != out_path) {
            sources.push(source(Stream::Err, err_path));
        }
    }
    sources
}

/// The lines `--since`, `--until` and `--grep` select.
fn filter(args: &LogsArgs) -> Result<Filter> {
    let now = now_ms();
    let moment = |text: &Option<String>, flag: &str| -> Result<Option<u64>> {
        text.as_deref()
            .map(|t| parse_moment(t, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let grep = args
        .grep
        .as_deref()
        .map(|pattern| {
            regex::Regex::new(pattern).map_err(|e| anyhow::anyhow!("--grep: invalid pattern: {e}"))
        })
        .transpose()?;
    let filter = Filter {
        since: moment(&args.since, "since")?,
        until: moment(&args.until, "until")?,
        grep,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        bail!("--since is later than --until: no line can be in between");
    }
    Ok(filter)
}

pub fn run(home: &Home, args: LogsArgs) -> Result<()> {
    if args.reopen {
        return reopen(home);
    }
    if let Some(run) = &args.run {
        return super::jobs::run_logs(home, args.target.as_deref(), run);
    }
    let filter = filter(&args)?;
    let by_time = filter.since.is_some() || filter.until.is_some();
    let count = args.lines.unwrap_or(if by_time { usize::MAX } else { 15 });
    let nostream = args.nostream || filter.until.is_some();
    let (apps, only) = resolve(home, args.target.as_deref())?;
    if apps.is_empty() {
        eprintln!("no logs yet in {}", home.logs_dir().display());
        if nostream {
            return Ok(());
        }
    }
    let printer = Printer {
        format: Format::from_flags(args.raw, args.json),
        timestamp: args.timestamp,
    };
    let sources = sources(&apps, !args.err, !args.out, only);
    let (history, mut follower) = Follower::with_history_filtered(sources, count, filter);
    let mut out = std::io::stdout().lock();
    for line in &history {
        printer.print(&mut out, line)?;
    }
    out.flush()?;
    if nostream {
        return Ok(());
    }
    let follow_new_apps =
        Selection::parse(args.target.as_deref().unwrap_or("all")) == Selection::All;
    let mut looked = Instant::now();
    loop {
        for line in &follower.poll() {
            printer.print(&mut out, line)?;
        }
        out.flush()?;
        // `logs` of every app takes in the apps created since it started.
        if follow_new_apps && looked.elapsed() >= NEW_APPS {
            looked = Instant::now();
            if let Ok((apps, _)) = resolve(home, None) {
                for source in self::sources(&apps, !args.err, !args.out, None) {
                    follower.add(source);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// `herdsman reloadLogs` (and `logs --reopen`): the daemon tells its log keeper to reopen every log by
/// its path. Without a daemon no log is open, and there is nothing to do.
pub fn reopen(home: &Home) -> Result<()> {
    let Some(mut client) = Client::connect(home)? else {
        println!("the daemon is not running: no log is open");
        return Ok(());
    };
    match client.request(&Request::ReloadLogs)? {
        Response::Ok => {
            println!("logs reopened");
            Ok(())
        }
        Response::Error { message, .. } => bail!(message),
        _ => bail!("unexpected answer to reloadLogs; is the CLI the same version as the daemon?"),
    }
}

/// `herdsman flush`: empties the selected apps' logs. The daemon does it when it runs; otherwise the
/// files in the home are emptied here.
pub fn flush(home: &Home, target: Option<&str>) -> Result<()> {
    let selection = Selection::parse(target.unwrap_or("all"));
    if let Some(mut client) = Client::connect(home)? {
        return match client.request(&Request::Flush {
            target: selection.clone(),
        })? {
            Response::Ok => {
                println!("flushed the logs of {selection}");
                Ok(())
            }
            Response::Error { message, .. } => bail!(message),
            _ => bail!("unexpected answer to flush; is the CLI the same version as the daemon?"),
        };
    }
    let (apps, _) = resolve(home, target)?;
    for (app, logs) in &apps {
        for path in [&logs.out, &logs.err] {
            crate::logs::flush(path).map_err(|e| anyhow::anyhow!("app '{app}': {e}"))?;
        }
    }
    println!("flushed the logs of {selection}");
    Ok(())
}

/// The apps a target selects, with their log files, and the instance a worker id selects. With the
/// daemon running it knows (an app may have its own log paths); otherwise the files in the home's logs
/// directory tell.
#[allow(clippy::type_complexity)]
pub fn resolve(
    home: &Home,
    target: Option<&str>,
) -> Result<(BTreeMap<String, AppLogs>, Option<u32>)> {
    let selection = Selection::parse(target.unwrap_or("all"));
    let known = match Client::connect(home)? {
        Some(mut client) => match client.request(&Request::List { brief: false })? {
            Response::Processes { processes } => Some(processes),
            Response::Error { message, .. } => bail!(message),
            _ => None,
        },
        None => None,
    };
    let defaults = |name: &str| {
        let logs = AppLogs {
            out: home.out_log(name),
            err: home.err_log(name),
            format: LineFormat::default(),
        };
        (name.to_string(), logs)
    };
    let paths = |p: &ProcessInfo| {
        let AppLogs { out, err, .. } = defaults(&p.name).1;
        let logs = AppLogs {
            out: p.out_file.as_ref().map_or(out, PathBuf::from),
            err: p.error_file.as_ref().map_or(err, PathBuf::from),
            format: p.log_lines.clone().unwrap_or_default(),
        };
        (p.name.clone(), logs)
    };
    let on_disk = apps_on_disk(home)?;
    match (selection, known) {
        (Selection::All, known) => {
            let mut apps: BTreeMap<_, _> = on_disk.iter().map(|name| defaults(name)).collect();
            apps.extend(known.iter().flatten().map(paths));
            Ok((apps, None))
        }
        (Selection::Name(name), known) => {
            if let Some(process) = known.iter().flatten().find(|p| p.name == name) {
                Ok((BTreeMap::from([paths(process)]), None))
            } else if on_disk.contains(&name) {
                Ok((BTreeMap::from([defaults(&name)]), None))
            } else {
                bail!(
                    "no app named '{name}' and no logs for it in {}",
                    home.logs_dir().display()
                )
            }
        }
        (Selection::Id(id), Some(known)) => match known.iter().find(|p| p.id == id) {
            Some(process) => Ok((BTreeMap::from([paths(process)]), Some(process.instance))),
            None => bail!("no process with id {id} (see `herdsman list`)"),
        },
        (Selection::Id(id), None) => bail!("no process with id {id}: the daemon is not running"),
        // `Selection::parse` gives one name, id or `all`: patterns and lists are for control commands.
        (other, _) => bail!("logs takes one app name, worker id or `all`, not {other}"),
    }
}

/// Apps that have log files.
fn apps_on_disk(home: &Home) -> Result<BTreeSet<String>> {
    let dir = home.logs_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| {
            let stem = file.strip_suffix(".log")?;
            let app = stem
                .strip_suffix("-out")
                .or_else(|| stem.strip_suffix("-err"))?;
            Some(app.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: Stream, instance: Option<u32>, time: Option<u64>) -> LogLine {
        LogLine {
            app: "web".into(),
            instance,
            stream,
            time,
            text: "hello".into(),
        }
    }

    fn printed(printer: Printer, line: &LogLine) -> String {
        let mut out = Vec::new();
        printer.print(&mut out, line).expect("print");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn lines_print_in_each_format() {
        let plain = Printer {
            format: Format::Prefixed { colour: false },
            timestamp: false,
        };
        let l = line(Stream::Out, Some(1), Some(1_795_482_123_456));
        assert_eq!(printed(plain, &l), "web|1 hello\n");
        assert_eq!(
            printed(plain, &line(Stream::Err, None, None)),
            "web|- hello\n"
        );
        let stamped = Printer {
            timestamp: true,
            ..plain
        };
        assert_eq!(
            printed(stamped, &l),
            "2026-11-24T01:02:03.456Z web|1 hello\n"
        );
        let raw = Printer {
            format: Format::Raw,
            timestamp: false,
        };
        assert_eq!(printed(raw, &l), "hello\n");
        let json = Printer {
            format: Format::Json,
            timestamp: false,
        };
        let value: serde_json::Value = serde_json::from_str(&printed(json, &l)).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"app": "web", "instance": 1, "stream": "out",
                "time": "2026-11-24T01:02:03.456Z", "line": "hello"})
        );
        let colour = Printer {
            format: Format::Prefixed { colour: true },
            timestamp: false,
        };
        let err = printed(colour, &line(Stream::Err, Some(1), None));
        assert!(
            err.contains("web|1") && err.contains("\x1b[31mhello"),
            "{err:?}"
        );
        assert_eq!(colour_of("web", Some(1)), colour_of("web", Some(1)));
    }
}
