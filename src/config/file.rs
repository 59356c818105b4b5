//! `ecosystem.toml`: a whole deployment in one file.
//!
//! ```toml
//! [[apps]]
//! name = "web"
//! script = "examples/hello.js"
//! instances = "max"
//! listen = "127.0.0.1:3000"
//! env = { GREETING = "hello" }
//! env_production = { GREETING = "hello from production" }
//! ```
//!
//! The file is read with positions ([`toml::de::DeTable`]) and checked by walking it against [`FIELDS`],
//! the one list of app options: the same list checks the file, names the suggestion for an unknown key and
//! generates the JSON Schema (`herdsman schema`). Every problem in the file is reported, each with its line
//! and column; nothing is started unless the whole file is right.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

mod daemon;

use super::fleet::{FleetTable, RawFleet};
use super::raw::{Context, Item, Location, Problem, RawApp};
use super::{AppSpec, Instances, ListenAddr, SignalName, parse_duration};
use crate::protocol::MetricsSetting;

/// The kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A string, or an array of strings.
    Texts,
    Count,
    Flag,
    /// Milliseconds as an integer, or a string with a unit: "1600ms", "5s".
    Duration,
    /// A number, "max", or a negative number.
    Instances,
    /// One address or an array of them.
    Listen,
    Signal,
    /// An array of integers.
    ExitCodes,
    /// A table of variables.
    Env,
    /// Bytes as an integer, or a string with a unit: "300M", "1G".
    Size,
    /// true or false, or a path or an array of paths.
    Watch,
    /// "text" or "json".
    LogFormat,
    /// "utc" or "local".
    Timezone,
    /// "daily" or "hourly".
    Rotate,
    /// A cron expression: 5, 6 or 7 fields, or an `@alias`.
    Cron,
    /// An IANA time zone name.
    Zone,
    /// "skip", "allow" or "replace".
    Overlap,
    /// "last" or "none".
    CatchUp,
    /// "shared", "hash" or "sticky".
    Balance,
    /// "host" or "fleet".
    Scope,
    /// A table of event names and command lines.
    Hooks,
}

/// One app option: its key in the file (and `--key` on the command line) and what it means.
pub struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

/// Every option of an app. `env_<profile>` tables are options too (kind [`Kind::Env`]).
pub const FIELDS: &[Field] = &[
    Field {
        key: "name",
        kind: Kind::Text,
        doc: "The app's name [default: the script's file name without extension]",
    },
    Field {
        key: "script",
        kind: Kind::Text,
        doc: "The script or program to run (required); relative to the file's directory, or a program on PATH",
    },
    Field {
        key: "args",
        kind: Kind::Texts,
        doc: "Arguments passed to the script",
    },
    Field {
        key: "interpreter",
        kind: Kind::Text,
        doc: "The interpreter [default: by extension: .js node, .py python3, .sh bash]; \"none\" executes the script",
    },
    Field {
        key: "interpreter_args",
        kind: Kind::Texts,
        doc: "Arguments for the interpreter, before the script",
    },
    Field {
        key: "cwd",
        kind: Kind::Text,
        doc: "The workers' working directory [default: the file's directory]",
    },
    Field {
        key: "instances",
        kind: Kind::Instances,
        doc: "Workers: a number, 0 or \"max\" for one per core, -1 for one less [default: 1]",
    },
    Field {
        key: "listen",
        kind: Kind::Listen,
        doc: "Addresses the daemon binds and shares with every worker (fds 3, 4, ...): PORT, HOST:PORT, [V6]:PORT, unix:PATH [default: none, fork mode]",
    },
    Field {
        key: "balance",
        kind: Kind::Balance,
        doc: "How new connections reach the workers: \"shared\" (one socket, the first worker to accept takes it), \"hash\" (a socket per worker, the kernel hashes each connection) or \"sticky\" (a socket per worker, one client address always reaches the same worker; TCP only) [default: shared]",
    },
    Field {
        key: "env",
        kind: Kind::Env,
        doc: "Variables added to the environment of the command that starts the app",
    },
    Field {
        key: "kill_signal",
        kind: Kind::Signal,
        doc: "The signal that asks a worker to stop [default: SIGINT, as PM2]",
    },
    Field {
        key: "kill_timeout",
        kind: Kind::Duration,
        doc: "How long a worker may take to stop before its process group is killed [default: 1600ms, as PM2]",
    },
    Field {
        key: "wait_ready",
        kind: Kind::Flag,
        doc: "Only the app's own signal makes a worker ready (READY=1, process.send('ready'), Node listening) [default: false]",
    },
    Field {
        key: "listen_timeout",
        kind: Kind::Duration,
        doc: "With wait_ready: how long a worker may take to get ready [default: 3000ms, as PM2]",
    },
    Field {
        key: "min_uptime",
        kind: Kind::Duration,
        doc: "A run this long counts as stable (resets the backoff) and, without a signal, as ready [default: 1s, as PM2]",
    },
    Field {
        key: "max_restarts",
        kind: Kind::Count,
        doc: "Quick crashes in a row before the worker is errored [default: never give up]",
    },
    Field {
        key: "restart_backoff",
        kind: Kind::Duration,
        doc: "The delay before the second quick restart in a row; it doubles each time [default: 100ms, as PM2's exp_backoff_restart_delay]",
    },
    Field {
        key: "restart_backoff_max",
        kind: Kind::Duration,
        doc: "The longest delay between quick restarts [default: 15s, as PM2]",
    },
    Field {
        key: "autorestart",
        kind: Kind::Flag,
        doc: "Restart workers that exit unexpectedly [default: true, as PM2]",
    },
    Field {
        key: "stop_exit_codes",
        kind: Kind::ExitCodes,
        doc: "Exit codes that mean the worker finished: it is left stopped [default: none]",
    },
    Field {
        key: "out_file",
        kind: Kind::Text,
        doc: "Where stdout goes [default: HERDSMAN_HOME/logs/<name>-out.log]",
    },
    Field {
        key: "error_file",
        kind: Kind::Text,
        doc: "Where stderr goes [default: HERDSMAN_HOME/logs/<name>-err.log]",
    },
    Field {
        key: "increment_var",
        kind: Kind::Text,
        doc: "A variable that counts up per instance (its env value plus the instance number), for apps that cannot share a socket",
    },
    Field {
        key: "depends_on",
        kind: Kind::Texts,
        doc: "Apps that must be ready before this one starts; this one stops first",
    },
    Field {
        key: "user",
        kind: Kind::Text,
        doc: "Run the workers as this user (the daemon must run as root)",
    },
    Field {
        key: "group",
        kind: Kind::Text,
        doc: "Run the workers with this group (the daemon must run as root) [default: the user's]",
    },
    Field {
        key: "no_overlap",
        kind: Kind::Flag,
        doc: "Only one copy of each worker may run: reload stops the old one before starting the new [default: false]",
    },
    Field {
        key: "max_memory_restart",
        kind: Kind::Size,
        doc: "Replace a worker (new one ready first) whose memory, its whole process group, stays above this: \"300M\", \"1G\" [default: no limit]",
    },
    Field {
        key: "watchdog",
        kind: Kind::Duration,
        doc: "A worker that sends no WATCHDOG=1 on NOTIFY_SOCKET for this long is hung: a successor is started and made ready, then the hung one gets watchdog_signal, the kill signal and SIGKILL (Node workers send it from the event loop with no code) [default: off]",
    },
    Field {
        key: "watchdog_signal",
        kind: Kind::Signal,
        doc: "With watchdog: the first signal a hung worker gets, before the kill signal [default: SIGABRT]",
    },
    Field {
        key: "on_event",
        kind: Kind::Hooks,
        doc: "Commands run by /bin/sh -c in the app's cwd, as the app's user, for events: crash, errored, hung, memory-limit, reload-failed, job-failed; the event in HERDSMAN_EVENT, HERDSMAN_APP, ... and as JSON on stdin",
    },
    Field {
        key: "log_max_size",
        kind: Kind::Size,
        doc: "Rotate a log file when it grows past this; 0 never rotates [default: \"10M\"]",
    },
    Field {
        key: "log_keep",
        kind: Kind::Count,
        doc: "Rotated files kept per log (<file>.1 is the newest) [default: 5]",
    },
    // ----- languages -----
    Field {
        key: "env_file",
        kind: Kind::Texts,
        doc: "A .env file (dotenv syntax), or a list of them, relative to the file's directory: read when the app is started or the file applied; later files win, `env` wins over them, they win over the caller's environment",
    },
    // Watch mode (see `watch.rs`).
    Field {
        key: "watch",
        kind: Kind::Watch,
        doc: "Reload the app (new workers ready first) when its files change: true watches its directory for its source files (by language); paths (relative to cwd) watch every file under them [default: false]",
    },
    Field {
        key: "ignore_watch",
        kind: Kind::Texts,
        doc: "Names or globs that never count as a change (`*.db`, `tmp`, `data/**`); node_modules, .git, __pycache__ and the app's logs never do",
    },
    Field {
        key: "watch_delay",
        kind: Kind::Duration,
        doc: "With watch: reload once the files have been quiet this long, so many changes make one reload [default: 500ms]",
    },
    Field {
        key: "log_prefix",
        kind: Kind::Flag,
        doc: "Start each line of the log files with its time and instance; false writes the lines exactly as the app wrote them (one JSON object a line stays one) [default: true]",
    },
    Field {
        key: "log_format",
        kind: Kind::LogFormat,
        doc: "\"text\": `<time> [<instance>] <line>`; \"json\": one JSON object a line with time, app, instance, stream and message [default: \"text\"]",
    },
    Field {
        key: "log_date_format",
        kind: Kind::Text,
        doc: "The time of each log line, strftime-style: \"%Y-%m-%d %H:%M:%S %z\" [default: RFC 3339 with milliseconds]",
    },
    Field {
        key: "log_timezone",
        kind: Kind::Timezone,
        doc: "The zone of the times in the log files: \"utc\" or \"local\" (the daemon's TZ) [default: \"utc\"]",
    },
    Field {
        key: "log_rotate",
        kind: Kind::Rotate,
        doc: "Also rotate the logs when the first line of a new day (or hour) is written, at midnight of log_timezone: \"daily\" or \"hourly\" [default: by size only]",
    },
    Field {
        key: "log_compress",
        kind: Kind::Flag,
        doc: "gzip rotated log files from <file>.2 on (<file>.1 stays plain for readers finishing it) [default: false]",
    },
    // Scheduled jobs (see `job.rs`).
    Field {
        key: "schedule",
        kind: Kind::Cron,
        doc: "Makes the app a scheduled job: one process per fire time, not restarted. A cron expression of 5 fields (minute hour day-of-month month day-of-week), 6 (leading seconds) or 7 (and a year), with L, W and #, or @yearly, @monthly, @weekly, @daily, @hourly",
    },
    Field {
        key: "timezone",
        kind: Kind::Zone,
        doc: "The IANA zone `schedule` and `cron_restart` are read in (\"Europe/Berlin\") [default: the host's zone]",
    },
    Field {
        key: "overlap",
        kind: Kind::Overlap,
        doc: "With schedule: what a fire time does while a run is still going: \"skip\" it, \"allow\" a second run, or \"replace\" the running one [default: \"skip\"]",
    },
    Field {
        key: "catch_up",
        kind: Kind::CatchUp,
        doc: "With schedule: after the daemon was down at a fire time, \"last\" runs the latest one missed once (within starting_deadline), \"none\" records it as missed [default: \"last\"]",
    },
    Field {
        key: "starting_deadline",
        kind: Kind::Duration,
        doc: "With schedule: a run that would start later than this after its fire time is recorded as missed [default: no deadline]",
    },
    Field {
        key: "jitter",
        kind: Kind::Duration,
        doc: "With schedule: a stable delay in [0, jitter), derived from the app's name, added to every fire time [default: 0]",
    },
    Field {
        key: "timeout",
        kind: Kind::Duration,
        doc: "With schedule: a run still going after this long is stopped (kill_signal, kill_timeout, then SIGKILL) and failed [default: no timeout]",
    },
    Field {
        key: "retries",
        kind: Kind::Count,
        doc: "With schedule: a failed run is run again up to this many times (at most 100) [default: 0]",
    },
    Field {
        key: "retry_backoff",
        kind: Kind::Duration,
        doc: "With schedule and retries: the wait before the first retry, doubling for each further one up to 10m [default: 10s]",
    },
    Field {
        key: "history",
        kind: Kind::Count,
        doc: "With schedule: the runs kept in the job's history (1 to 1000) [default: 20]",
    },
    Field {
        key: "on_failure",
        kind: Kind::Text,
        doc: "With schedule: a command line run by /bin/sh -c in the app's cwd when a run failed for good, with HERDSMAN_RUN_ID, HERDSMAN_OUTCOME, ... in its environment",
    },
    Field {
        key: "cron_restart",
        kind: Kind::Cron,
        doc: "Reload a long-running app (each new worker ready first) on this cron expression, in timezone (PM2's cron_restart) [default: never]",
    },
    Field {
        key: "scope",
        kind: Kind::Scope,
        doc: "With schedule: where a fire time runs once: \"host\" (each host runs it) or \"fleet\" (once across the hosts of the file's [fleet], claimed in its store) [default: \"host\"]",
    },
];

/// Reads a file's apps, checking every key and value. `Err` lists every problem found.
pub fn parse(text: &str) -> Result<Vec<RawApp>, Vec<Problem>> {
    let (apps, _, _, problems) = read(text);
    if problems.is_empty() {
        Ok(apps)
    } else {
        Err(problems)
    }
}

/// Reads what it can of a file's apps (a key with a bad value is left out of its app), and every problem.
/// No app at all when the file is not TOML. `[fleet]` and `[daemon]`'s metrics setting come with them, if
/// the file has them.
type Read = (
    Vec<RawApp>,
    Option<RawFleet>,
    Option<MetricsSetting>,
    Vec<Problem>,
);

fn read(text: &str) -> Read {
    let lines = Lines::new(text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let problem = Problem {
                at: e.span().map(|s| lines.locate(s.start)),
                key: String::new(),
                message: format!("not valid TOML: {}", e.message().trim()),
            };
            return (Vec::new(), None, None, vec![problem]);
        }
    };
    let mut problems = Vec::new();
    let mut apps = Vec::new();
    let mut fleet = None;
    let mut metrics = None;
    for (key, value) in root.get_ref() {
        if key.get_ref() == "fleet" {
            fleet = Some(read_fleet(&lines, value, &mut problems));
            continue;
        }
        if key.get_ref() == "daemon" {
            metrics = daemon::read(&lines, value, &mut problems);
            continue;
        }
        if key.get_ref() != "apps" {
            problems.push(unknown(&lines, key, &["apps", "fleet", "daemon"]));
            continue;
        }
        match value.get_ref() {
            DeValue::Array(array) => {
                for app in array {
                    match app.get_ref() {
                        DeValue::Table(table) => apps.push(read_app(
                            &lines,
                            lines.locate(app.span().start),
                            table,
                            &mut problems,
                        )),
                        other => problems.push(wrong(
                            &lines,
                            "apps",
                            app.span().start,
                            "a table ([[apps]])",
                            other,
                        )),
                    }
                }
            }
            other => problems.push(wrong(
                &lines,
                "apps",
                value.span().start,
                "an array of tables ([[apps]])",
                other,
            )),
        }
    }
    if apps.is_empty() && problems.is_empty() {
        problems.push(Problem {
            at: Some(Location { line: 1, column: 1 }),
            key: "apps".into(),
            message: "no app: add an [[apps]] table with at least `script`".into(),
        });
    }
    let mut seen: BTreeMap<String, Option<Location>> = BTreeMap::new();
    for app in &apps {
        let Some(name) = app.name() else { continue };
        // A name taken from the script points at the script.
        let at = app
            .name
            .as_ref()
            .and_then(|n| n.at)
            .or(app.script.as_ref().and_then(|s| s.at))
            .or(app.at);
        if let Some(first) = seen.get(&name) {
            let first = first.map_or(String::new(), |l| format!(" (first at line {})", l.line));
            problems.push(Problem {
                at,
                key: "name".into(),
                message: format!("duplicate app name '{name}'{first}"),
            });
        } else {
            seen.insert(name, at);
        }
    }
    (apps, fleet, metrics, problems)
}

/// `[fleet]`: its keys, each with its position.
fn read_fleet(
    lines: &Lines,
    value: &Spanned<DeValue<'_>>,
    problems: &mut Vec<Problem>,
) -> RawFleet {
    let mut fleet = RawFleet {
        at: Some(lines.locate(value.span().start)),
        ..RawFleet::default()
    };
    let DeValue::Table(table) = value.get_ref() else {
        problems.push(wrong(
            lines,
            "fleet",
            value.span().start,
            "a table ([fleet])",
            value.get_ref(),
        ));
        return fleet;
    };
    let known: Vec<&str> = super::fleet::KEYS.iter().map(|(k, _)| *k).collect();
    for (key, value) in table {
        let at = Some(lines.locate(value.span().start));
        let name = key.get_ref().as_ref();
        let text = match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        };
        match (name, text) {
            ("store", Some(text)) => fleet.store = Some(Item { value: text, at }),
            ("name", Some(text)) => fleet.name = Some(Item { value: text, at }),
            ("host", Some(text)) => fleet.host = Some(Item { value: text, at }),
            ("lease_ttl", text) => {
                let ttl = match (value.get_ref(), text) {
                    (DeValue::Integer(i), _) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .and_then(|ms| u64::try_from(ms).ok())
                        .map(Duration::from_millis)
                        .ok_or_else(|| "expected a duration".to_string()),
                    (_, Some(text)) => parse_duration(&text).map_err(|e| e.to_string()),
                    _ => Err(format!(
                        "expected a duration (milliseconds, or a string such as \"15s\"), found {}",
                        kind_of(value.get_ref())
                    )),
                };
                match ttl {
                    Ok(ttl) => fleet.lease_ttl = Some(Item { value: ttl, at }),
                    Err(message) => problems.push(Problem {
                        at,
                        key: "fleet.lease_ttl".into(),
                        message,
                    }),
                }
            }
            ("store" | "name" | "host", None) => problems.push(wrong(
                lines,
                &format!("fleet.{name}"),
                value.span().start,
                "a string",
                value.get_ref(),
            )),
            _ => problems.push(unknown(lines, key, &known)),
        }
    }
    fleet
}

/// A file's apps, resolved.
pub struct Loaded {
    /// The apps chosen (all, or those `--only` names).
    pub apps: Vec<AppSpec>,
    /// Every app the file defines.
    pub names: Vec<String>,
    /// `[daemon] metrics`, if the file sets it.
    pub metrics: Option<MetricsSetting>,
}

/// Everything `start ecosystem.toml --only a,b --env production` needs: the file's apps, resolved. Every
/// problem of the file, of `--only` and of `--env` is reported together, as `file:line:column: message`.
pub fn load(
    path: &Path,
    only: &[String],
    profile: Option<&str>,
    caller_env: &BTreeMap<String, String>,
) -> Result<Loaded, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    load_text(
        path,
        &path.display().to_string(),
        &text,
        only,
        profile,
        caller_env,
    )
}

/// [`load`] of a file's text: `path` gives the directory paths are relative to, `shown` names it in the
/// problems.
pub fn load_text(
    path: &Path,
    shown: &str,
    text: &str,
    only: &[String],
    profile: Option<&str>,
    caller_env: &BTreeMap<String, String>,
) -> Result<Loaded, Vec<String>> {
    let format = |p: Problem| match (p.at, p.key.is_empty()) {
        (Some(at), false) => format!(
            "{shown}:{}:{}: `{}`: {}",
            at.line, at.column, p.key, p.message
        ),
        (Some(at), true) => format!("{shown}:{}:{}: {}", at.line, at.column, p.message),
        (None, _) => format!("{shown}: {}", p.message),
    };
    let (raw, raw_fleet, metrics, problems) = read(text);
    let mut messages: Vec<String> = problems.into_iter().map(format).collect();
    if raw.is_empty() {
        return Err(messages);
    }
    let fleet = raw_fleet.map(|fleet| fleet.resolve(caller_env));
    let fleet = match &fleet {
        None => FleetTable::Absent,
        Some(Ok(spec)) => FleetTable::Valid(spec),
        Some(Err(problems)) => {
            messages.extend(problems.iter().cloned().map(format));
            FleetTable::Invalid
        }
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let names: Vec<String> = raw.iter().filter_map(RawApp::name).collect();
    for wanted in only {
        if !names.contains(wanted) {
            messages.push(format!(
                "{shown}: --only names app '{wanted}', which the file does not define (apps: {})",
                names.join(", ")
            ));
        }
    }
    if let Some(profile) = profile
        && !raw.iter().any(|app| app.env_profiles.contains_key(profile))
    {
        messages.push(format!(
            "{shown}: --env {profile}: no app defines `env_{profile}`"
        ));
    }
    let context = Context {
        base: &base,
        caller_env,
        profile,
        fleet,
    };
    let mut specs = Vec::new();
    for app in raw
        .iter()
        .filter(|app| only.is_empty() || app.name().is_some_and(|n| only.contains(&n)))
    {
        match app.resolve(&context) {
            Ok(spec) => specs.push(spec),
            Err(problems) => messages.extend(problems.into_iter().map(format)),
        }
    }
    for spec in &specs {
        for dependency in &spec.depends_on {
            if !names.contains(dependency) {
                messages.push(format!(
                    "{shown}: app '{}' depends on '{dependency}', which the file does not define",
                    spec.name
                ));
            }
        }
    }
    let graph: BTreeMap<String, Vec<String>> = raw
        .iter()
        .filter_map(|app| {
            let needs = app.depends_on.as_ref().map(|d| d.value.clone());
            Some((app.name()?, needs.unwrap_or_default()))
        })
        .collect();
    if let Some(cycle) = super::find_cycle(&graph)
        && cycle.len() > 2
    {
        // (An app that depends on itself is reported with its options.)
        let at = raw
            .iter()
            .find(|app| app.name().as_ref() == cycle.first())
            .and_then(|app| app.depends_on.as_ref()?.at);
        messages.push(format(Problem {
            at,
            key: "depends_on".into(),
            message: format!(
                "dependency cycle {}: no app of it can start first",
                cycle.join(" -> ")
            ),
        }));
    }
    if messages.is_empty() {
        Ok(Loaded {
            apps: specs,
            names,
            metrics,
        })
    } else {
        Err(messages)
    }
}

/// Byte offsets to lines and columns.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    fn locate(&self, offset: usize) -> Location {
        let line = self.starts.partition_point(|&start| start <= offset);
        let column = offset - self.starts[line.saturating_sub(1)] + 1;
        Location { line, column }
    }
}

fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn wrong(lines: &Lines, key: &str, offset: usize, expected: &str, found: &DeValue<'_>) -> Problem {
    Problem {
        at: Some(lines.locate(offset)),
        key: key.into(),
        message: format!("expected {expected}, found {}", kind_of(found)),
    }
}

fn unknown(lines: &Lines, key: &Spanned<Cow<'_, str>>, known: &[&str]) -> Problem {
    let hint =
        nearest(key.get_ref(), known).map_or(String::new(), |k| format!("; did you mean `{k}`?"));
    Problem {
        at: Some(lines.locate(key.span().start)),
        key: key.get_ref().to_string(),
        message: format!("unknown key `{}`{hint}", key.get_ref()),
    }
}

/// The known key closest to a misspelt one, if any is close enough.
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a transposition counting as one edit.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

fn read_app(
    lines: &Lines,
    at: Location,
    table: &DeTable<'_>,
    problems: &mut Vec<Problem>,
) -> RawApp {
    let mut app = RawApp {
        at: Some(at),
        ..RawApp::default()
    };
    let known: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        // (`env_file` is an option, not the profile `file`.)
        if let Some(profile) = name
            .strip_prefix("env_")
            .filter(|_| !FIELDS.iter().any(|f| f.key == name))
        {
            match read_env(lines, name, value) {
                Ok(env) if !profile.is_empty() => {
                    app.env_profiles.insert(profile.to_string(), env);
                }
                Ok(_) => problems.push(unknown(lines, key, &known)),
                Err(problem) => problems.push(problem),
            }
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| f.key == name) else {
            problems.push(unknown(lines, key, &known));
            continue;
        };
        if let Err(problem) = set(&mut app, field, lines, value) {
            problems.push(problem);
        }
    }
    app
}

fn read_env(
    lines: &Lines,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<BTreeMap<String, String>, Problem> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(wrong(
            lines,
            key,
            value.span().start,
            "a table of variables",
            value.get_ref(),
        ));
    };
    let mut env = BTreeMap::new();
    for (name, v) in table {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.to_string(),
            DeValue::Float(f) => f.to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                return Err(wrong(
                    lines,
                    name.get_ref(),
                    v.span().start,
                    "a string, number or boolean",
                    other,
                ));
            }
        };
        env.insert(name.get_ref().to_string(), text);
    }
    Ok(env)
}

/// Reads `on_event`: a table of event names and command lines, each with where it was written.
fn read_hooks(
    lines: &Lines,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<super::raw::RawHooks, Problem> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(wrong(
            lines,
            key,
            value.span().start,
            "a table of events and commands, such as { crash = \"scripts/notify.sh\" }",
            value.get_ref(),
        ));
    };
    let mut hooks = Vec::new();
    for (name, v) in table {
        let DeValue::String(command) = v.get_ref() else {
            return Err(wrong(
                lines,
                key,
                v.span().start,
                "a command line",
                v.get_ref(),
            ));
        };
        let at = Some(lines.locate(name.span().start));
        hooks.push((
            name.get_ref().to_string(),
            Item {
                value: command.to_string(),
                at,
            },
        ));
    }
    Ok(hooks)
}

/// Reads one option's value into the app.
fn set(
    app: &mut RawApp,
    field: &Field,
    lines: &Lines,
    value: &Spanned<DeValue<'_>>,
) -> Result<(), Problem> {
    let at = Some(lines.locate(value.span().start));
    let key = field.key;
    let fail = |message: String| Problem {
        at,
        key: key.into(),
        message,
    };
    let expected = |what: &str| wrong(lines, key, value.span().start, what, value.get_ref());
    let text = || match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(expected("a string")),
    };
    let texts = || match value.get_ref() {
        DeValue::String(s) => Ok(vec![s.to_string()]),
        DeValue::Array(array) => {
            strings(array).ok_or_else(|| expected("a string or an array of strings"))
        }
        _ => Err(expected("a string or an array of strings")),
    };
    let integer = || match value.get_ref() {
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| expected("an integer"))
        }
        _ => Err(expected("an integer")),
    };
    let flag = || match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(expected("true or false")),
    };
    let duration = || -> Result<Duration, Problem> {
        match value.get_ref() {
            DeValue::Integer(_) => {
                let ms = integer()?;
                u64::try_from(ms)
                    .map(Duration::from_millis)
                    .map_err(|_| fail(format!("expected a duration, found {ms}")))
            }
            DeValue::String(s) => parse_duration(s).map_err(|e| fail(e.to_string())),
            _ => Err(expected(
                "a duration (milliseconds, or a string such as \"5s\" or \"1600ms\")",
            )),
        }
    };
    let size = || -> Result<u64, Problem> {
        match value.get_ref() {
            DeValue::Integer(_) => {
                let n = integer()?;
                u64::try_from(n).map_err(|_| fail(format!("expected a size, found {n}")))
            }
            DeValue::String(s) => super::parse_size(s).map_err(|e| fail(e.to_string())),
            _ => Err(expected("a size (bytes, or a string such as \"300M\")")),
        }
    };
    let item = |v| Some(Item { value: v, at });
    match field.key {
        "name" => app.name = item(text()?),
        "script" => app.script = item(text()?),
        "args" => {
            app.args = Some(Item {
                value: texts()?,
                at,
            })
        }
        "interpreter" => app.interpreter = item(text()?),
        "interpreter_args" => {
            app.interpreter_args = Some(Item {
                value: texts()?,
                at,
            })
        }
        "cwd" => app.cwd = item(text()?),
        "instances" => {
            let text = match value.get_ref() {
                DeValue::Integer(_) => integer()?.to_string(),
                DeValue::String(s) => s.to_string(),
                _ => return Err(expected("a number of workers or \"max\"")),
            };
            let instances: Instances = text
                .parse()
                .map_err(|e: super::ValueError| fail(e.to_string()))?;
            app.instances = Some(Item {
                value: instances,
                at,
            });
        }
        "listen" => {
            let addresses = match value.get_ref() {
                DeValue::Integer(_) => vec![integer()?.to_string()],
                _ => texts().map_err(|_| expected("an address or an array of addresses"))?,
            };
            let parsed = addresses
                .iter()
                .map(|a| a.parse::<ListenAddr>().map_err(|e| fail(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            app.listen = Some(Item { value: parsed, at });
        }
        "balance" => {
            let balance = text()?.parse().map_err(fail)?;
            app.balance = Some(Item { value: balance, at });
        }
        "env" => app.env = read_env(lines, key, value)?,
        "kill_signal" => {
            let signal: SignalName = match value.get_ref() {
                DeValue::Integer(_) => integer()?.to_string(),
                _ => text()?,
            }
            .parse()
            .map_err(|e: super::ValueError| fail(e.to_string()))?;
            app.kill_signal = Some(Item { value: signal, at });
        }
        "kill_timeout" => {
            app.kill_timeout = Some(Item {
                value: duration()?,
                at,
            })
        }
        "wait_ready" => app.wait_ready = Some(Item { value: flag()?, at }),
        "listen_timeout" => {
            app.listen_timeout = Some(Item {
                value: duration()?,
                at,
            })
        }
        "min_uptime" => {
            app.min_uptime = Some(Item {
                value: duration()?,
                at,
            })
        }
        "max_restarts" => {
            let n = integer()?;
            let n = u32::try_from(n)
                .map_err(|_| fail(format!("expected a count of 0 or more, found {n}")))?;
            app.max_restarts = Some(Item { value: n, at });
        }
        "restart_backoff" => {
            app.restart_backoff = Some(Item {
                value: duration()?,
                at,
            })
        }
        "restart_backoff_max" => {
            app.restart_backoff_max = Some(Item {
                value: duration()?,
                at,
            })
        }
        "autorestart" => app.autorestart = Some(Item { value: flag()?, at }),
        "stop_exit_codes" => {
            let codes = match value.get_ref() {
                DeValue::Array(array) => {
                    integers(array).ok_or_else(|| expected("an array of exit codes (0 to 255)"))?
                }
                _ => return Err(expected("an array of exit codes (0 to 255)")),
            };
            app.stop_exit_codes = Some(Item { value: codes, at });
        }
        "out_file" => app.out_file = item(text()?),
        "error_file" => app.error_file = item(text()?),
        "increment_var" => app.increment_var = item(text()?),
        "depends_on" => {
            app.depends_on = Some(Item {
                value: texts()?,
                at,
            })
        }
        "user" => app.user = item(text()?),
        "group" => app.group = item(text()?),
        "no_overlap" => app.no_overlap = Some(Item { value: flag()?, at }),
        "max_memory_restart" => app.max_memory_restart = Some(Item { value: size()?, at }),
        "watchdog" => {
            app.watchdog = Some(Item {
                value: duration()?,
                at,
            })
        }
        "watchdog_signal" => {
            let signal: SignalName = match value.get_ref() {
                DeValue::Integer(_) => integer()?.to_string(),
                _ => text()?,
            }
            .parse()
            .map_err(|e: super::ValueError| fail(e.to_string()))?;
            app.watchdog_signal = Some(Item { value: signal, at });
        }
        "on_event" => {
            app.on_event = Some(Item {
                value: read_hooks(lines, key, value)?,
                at,
            })
        }
        "log_max_size" => app.log_max_size = Some(Item { value: size()?, at }),
        "log_keep" => {
            let n = integer()?;
            let n = u32::try_from(n)
                .map_err(|_| fail(format!("expected a count of 0 or more, found {n}")))?;
            app.log_keep = Some(Item { value: n, at });
        }
        "env_file" => {
            app.env_file = Some(Item {
                value: texts()?,
                at,
            })
        }
        "watch" => {
            let watch = match value.get_ref() {
                DeValue::Boolean(b) => super::WatchValue::Flag(*b),
                _ => super::WatchValue::Paths(
                    texts().map_err(|_| expected("true, false, a path or an array of paths"))?,
                ),
            };
            app.watch = Some(Item { value: watch, at });
        }
        "ignore_watch" => {
            app.ignore_watch = Some(Item {
                value: texts()?,
                at,
            })
        }
        "watch_delay" => {
            app.watch_delay = Some(Item {
                value: duration()?,
                at,
            })
        }
        "log_prefix" => app.log_prefix = Some(Item { value: flag()?, at }),
        "log_format" => {
            let style = match text()?.as_str() {
                "text" => crate::logs::LogStyle::Text,
                "json" => crate::logs::LogStyle::Json,
                other => {
                    return Err(fail(format!(
                        "invalid log_format '{other}': expected \"text\" or \"json\""
                    )));
                }
            };
            app.log_format = Some(Item { value: style, at });
        }
        "log_date_format" => app.log_date_format = item(text()?),
        "log_rotate" => {
            let every = text()?.parse().map_err(fail)?;
            app.log_rotate = Some(Item { value: every, at });
        }
        "log_compress" => app.log_compress = Some(Item { value: flag()?, at }),
        "log_timezone" => {
            let zone = text()?.parse().map_err(fail)?;
            app.log_timezone = Some(Item { value: zone, at });
        }
        "schedule" => app.schedule = item(text()?),
        "timezone" => app.timezone = item(text()?),
        "overlap" => {
            let overlap = super::job::parse_overlap(&text()?).map_err(fail)?;
            app.overlap = Some(Item { value: overlap, at });
        }
        "catch_up" => {
            let catch_up = super::job::parse_catch_up(&text()?).map_err(fail)?;
            app.catch_up = Some(Item {
                value: catch_up,
                at,
            });
        }
        "starting_deadline" => {
            app.starting_deadline = Some(Item {
                value: duration()?,
                at,
            })
        }
        "jitter" => {
            app.jitter = Some(Item {
                value: duration()?,
                at,
            })
        }
        "timeout" => {
            app.timeout = Some(Item {
                value: duration()?,
                at,
            })
        }
        "retries" | "history" => {
            let n = integer()?;
            let n = u32::try_from(n)
                .map_err(|_| fail(format!("expected a count of 0 or more, found {n}")))?;
            let n = Some(Item { value: n, at });
            if key == "retries" {
                app.retries = n;
            } else {
                app.history = n;
            }
        }
        "retry_backoff" => {
            app.retry_backoff = Some(Item {
                value: duration()?,
                at,
            })
        }
        "on_failure" => app.on_failure = item(text()?),
        "scope" => {
            let scope = super::job::parse_scope(&text()?).map_err(fail)?;
            app.scope = Some(Item { value: scope, at });
        }
        "cron_restart" => app.cron_restart = item(text()?),
        _ => unreachable!("every FIELDS key is read above"),
    }
    Ok(())
}

fn strings(array: &DeArray<'_>) -> Option<Vec<String>> {
    array
        .iter()
        .map(|v| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

fn integers(array: &DeArray<'_>) -> Option<Vec<i32>> {
    array
        .iter()
        .map(|v| match v.get_ref() {
            DeValue::Integer(i) => i32::from_str_radix(i.as_str(), i.radix())
                .ok()
                .filter(|c| (0..=255).contains(c)),
            _ => None,
        })
        .collect()
}

/// The JSON Schema of the file, from [`FIELDS`].
pub fn schema() -> serde_json::Value {
    use serde_json::json;
    let duration = json!({ "oneOf": [
        { "type": "integer", "minimum": 0, "description": "milliseconds" },
        { "type": "string", "pattern": "^[0-9.]+(ms|s|m|h)?$" }
    ]});
    let texts = json!({ "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] });
    let env = json!({ "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } });
    let mut properties = serde_json::Map::new();
    for field in FIELDS {
        let mut schema = match field.kind {
            Kind::Text => json!({ "type": "string" }),
            Kind::Texts => texts.clone(),
            Kind::Count => json!({ "type": "integer", "minimum": 0 }),
            Kind::Flag => json!({ "type": "boolean" }),
            Kind::Duration => duration.clone(),
            Kind::Instances => {
                json!({ "oneOf": [{ "type": "integer" }, { "type": "string", "enum": ["max"] }] })
            }
            Kind::Listen => json!({ "oneOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]}),
            Kind::Signal => json!({ "type": ["string", "integer"] }),
            Kind::ExitCodes => {
                json!({ "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } })
            }
            Kind::Env => env.clone(),
            Kind::LogFormat => json!({ "type": "string", "enum": ["text", "json"] }),
            Kind::Timezone => json!({ "type": "string", "enum": ["utc", "local"] }),
            Kind::Rotate => json!({ "type": "string", "enum": ["daily", "hourly"] }),
            Kind::Cron => {
                json!({ "type": "string", "minLength": 1, "examples": ["0 3 * * *", "*/15 * * * *", "@daily"] })
            }
            Kind::Zone => json!({ "type": "string", "examples": ["Europe/Berlin", "UTC"] }),
            Kind::Overlap => json!({ "type": "string", "enum": ["skip", "allow", "replace"] }),
            Kind::CatchUp => json!({ "type": "string", "enum": ["last", "none"] }),
            Kind::Balance => json!({ "type": "string", "enum": super::Balance::NAMES }),
            Kind::Scope => json!({ "type": "string", "enum": ["host", "fleet"] }),
            Kind::Hooks => {
                let events: serde_json::Map<String, serde_json::Value> =
                    super::alerting::HOOK_EVENTS
                        .iter()
                        .map(|e| (e.to_string(), json!({ "type": "string", "minLength": 1 })))
                        .collect();
                json!({ "type": "object", "properties": events, "additionalProperties": false })
            }
            Kind::Size => json!({ "oneOf": [
                { "type": "integer", "minimum": 0, "description": "bytes" },
                { "type": "string", "pattern": "^[0-9.]+ *([KkMmGg]([Ii]?[Bb])?|[Bb])?$" }
            ]}),
            Kind::Watch => json!({ "oneOf": [
                { "type": "boolean" },
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]}),
        };
        if let Some(object) = schema.as_object_mut() {
            object.insert("description".into(), json!(field.doc));
        }
        properties.insert(field.key.into(), schema);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "herdsman ecosystem.toml",
        "type": "object",
        "additionalProperties": false,
        "required": ["apps"],
        "properties": {
            "fleet": {
                "type": "object",
                "additionalProperties": false,
                "required": ["store", "name"],
                "description": "The store scope = \"fleet\" jobs claim their runs in (Redis or PostgreSQL), shared by the hosts of the fleet",
                "properties": super::fleet::KEYS.iter().map(|(key, doc)| {
                    let schema = if *key == "lease_ttl" { duration.clone() } else { json!({ "type": "string" }) };
                    let mut schema = schema;
                    if let Some(object) = schema.as_object_mut() {
                        object.insert("description".into(), json!(doc));
                    }
                    ((*key).to_string(), schema)
                }).collect::<serde_json::Map<String, serde_json::Value>>()
            },
            "daemon": {
                "type": "object",
                "additionalProperties": false,
                "description": "Settings of the daemon itself",
                "properties": daemon::KEYS.iter().map(|(key, doc)| {
                    let kind = if *key == "allow_remote" { "boolean" } else { "string" };
                    ((*key).to_string(), json!({ "type": kind, "description": doc }))
                }).collect::<serde_json::Map<String, serde_json::Value>>()
            },
            "apps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["script"],
                    "properties": properties,
                    "patternProperties": { "^env_[A-Za-z0-9_-]+$": env }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(usize, usize, String)> {
        parse(text)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let at = p.at.unwrap_or(Location { line: 0, column: 0 });
                (at.line, at.column, p.message)
            })
            .collect()
    }

    #[test]
    fn a_good_file_reads_every_option() {
        let apps = parse(
            r#"
[[apps]]
name = "web"
script = "app.js"
instances = "max"
listen = ["127.0.0.1:3000", "unix:/tmp/web.sock"]
kill_timeout = "5s"
min_uptime = 1500
env = { PORT = 3000, DEBUG = true }
env_production = { NODE_ENV = "production" }
stop_exit_codes = [0, 3]
depends_on = "db"
"#,
        )
        .expect("valid");
        let web = &apps[0];
        assert_eq!(web.name(), Some("web".into()));
        assert_eq!(
            web.instances.as_ref().map(|i| i.value),
            Some(Instances::Max)
        );
        assert_eq!(web.listen.as_ref().map(|l| l.value.len()), Some(2));
        assert_eq!(
            web.kill_timeout.as_ref().map(|d| d.value),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            web.min_uptime.as_ref().map(|d| d.value),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(web.env.get("PORT").map(String::as_str), Some("3000"));
        assert_eq!(web.env_profiles["production"]["NODE_ENV"], "production");
        assert_eq!(
            web.stop_exit_codes.as_ref().map(|c| c.value.clone()),
            Some(vec![0, 3])
        );
        assert_eq!(
            web.depends_on.as_ref().map(|d| d.value.clone()),
            Some(vec!["db".to_string()])
        );
        assert_eq!(
            web.listen.as_ref().and_then(|l| l.at),
            Some(Location {
                line: 6,
                column: 10
            })
        );
    }

    #[test]
    fn balance_takes_shared_hash_or_sticky_and_says_where_a_wrong_one_is() {
        let apps = parse("[[apps]]\nscript = \"a.js\"\nlisten = 3000\nbalance = \"sticky\"\n")
            .expect("valid");
        assert_eq!(
            apps[0].balance.as_ref().map(|b| b.value),
            Some(super::super::Balance::Sticky)
        );
        let found = problems("[[apps]]\nscript = \"a.js\"\nlisten = 3000\nbalance = \"ip_hash\"\n");
        assert_eq!(
            found,
            vec![(
                4,
                11,
                "invalid balance 'ip_hash': expected \"shared\", \"hash\" or \"sticky\"".into()
            )]
        );
    }

    #[test]
    fn sticky_on_a_unix_socket_or_without_listen_is_refused_with_its_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ecosystem.toml");
        std::fs::write(dir.path().join("a.js"), "").expect("script");
        let load = |text: &str| {
            load_text(&path, "eco.toml", text, &[], None, &BTreeMap::new())
                .err()
                .unwrap_or_default()
        };
        let errors = load(
            "[[apps]]\nscript = \"a.js\"\nlisten = \"unix:/tmp/a.sock\"\nbalance = \"sticky\"\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("eco.toml:4:11: `balance`: balance \"sticky\" needs TCP addresses"),
            "{errors:?}"
        );
        let errors = load("[[apps]]\nscript = \"a.js\"\nbalance = \"hash\"\n");
        assert!(
            errors.len() == 1
                && errors[0].contains("eco.toml:3:11: `balance`")
                && errors[0].contains("give `listen`"),
            "{errors:?}"
        );
        assert!(
            load(
                "[[apps]]\nscript = \"a.js\"\nlisten = \"unix:/tmp/a.sock\"\nbalance = \"shared\"\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let found = problems(
            r#"[[apps]]
script = "a.js"
instnaces = 2
kill_timeout = "soon"
listen = "127.0.0.1:99999"
wait_ready = "yes"

[[apps]]
name = "a"
script = "b.js"
"#,
        );
        assert_eq!(found.len(), 5, "{found:?}");
        assert_eq!(
            found[0],
            (
                3,
                1,
                "unknown key `instnaces`; did you mean `instances`?".into()
            )
        );
        assert_eq!(found[1].0, 4);
        assert!(found[1].2.contains("invalid duration 'soon'"), "{found:?}");
        assert_eq!((found[2].0, found[2].1), (5, 10));
        assert!(found[2].2.contains("listen address"), "{found:?}");
        assert_eq!(
            found[3],
            (6, 14, "expected true or false, found a string".into())
        );
        assert_eq!(
            found[4],
            (9, 8, "duplicate app name 'a' (first at line 2)".into())
        );
    }

    #[test]
    fn broken_toml_points_at_the_error() {
        let found = problems("[[apps]]\nscript = \"a.js\nname = 1\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 2);
        assert!(found[0].2.starts_with("not valid TOML"), "{found:?}");
    }

    #[test]
    fn suggestions_need_a_close_key() {
        assert_eq!(
            nearest("instnaces", &["instances", "name"]),
            Some("instances")
        );
        assert_eq!(nearest("scirpt", &["script"]), Some("script"));
        assert_eq!(nearest("colour", &["script", "name"]), None);
    }

    #[test]
    fn the_schema_names_every_field() {
        let schema = schema();
        let properties = &schema["properties"]["apps"]["items"]["properties"];
        for field in FIELDS {
            assert!(properties.get(field.key).is_some(), "{}", field.key);
        }
    }
}
