//! The command line: clap definitions and the dispatch to each command family's module.

mod control;
mod describe;
mod ecosystem;
mod events;
mod fleet;
pub(crate) mod import;
mod jobs;
mod list;
mod logs;
mod service;
mod start;
mod update;
mod version;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::home::Home;
use crate::protocol::ApplyAction;

/// A pre-fork cluster process supervisor: it binds each app's socket, starts N workers that share it,
/// restarts them when they crash, and keeps their logs.
#[derive(Debug, Parser)]
#[command(name = "herdsman", version = crate::VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an app (a script, a program or a "command string"), or start again an app by name, id or `all`.
    Start(Box<StartArgs>),
    /// List every worker.
    #[command(visible_aliases = ["ls", "l", "ps", "status"])]
    List {
        /// One JSON array of worker records (a stable contract).
        #[arg(long)]
        json: bool,
    },
    /// The same as `list --json` (PM2's name).
    Jlist,
    /// Everything about an app: its definition, restart policy, logs, environment (secrets masked) and
    /// each worker's process group.
    #[command(visible_aliases = ["show", "info", "desc"])]
    Describe {
        /// An app name, or a worker id (its app).
        target: String,
        /// The details as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop workers gracefully (kill signal, then SIGKILL after the kill timeout) and free the app's port.
    Stop {
        /// App names, worker ids, `/REGEX/` or globs (`'api-*'`) of app names, or `all`; or one ecosystem
        /// file (`*.toml`): its apps, dependents first.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Stop then start workers; the listening socket stays open, so no connection is refused.
    Restart {
        /// App names, worker ids, `/REGEX/` or globs (`'api-*'`) of app names, `all`, or an ecosystem file
        /// (its apps).
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// Give the workers this command's environment (variables it lacks are removed).
        #[arg(long)]
        update_env: bool,
    },
    /// Replace workers one at a time with no downtime: each new worker is ready before the old one stops.
    /// With an ecosystem file: start its new apps and reload only the apps whose definition changed.
    Reload {
        /// App names, worker ids, `/REGEX/` or globs (`'api-*'`) of app names, or `all`; or one ecosystem
        /// file (`*.toml`).
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// With an ecosystem file: also delete the running apps that it no longer defines.
        #[arg(long)]
        prune: bool,
        /// With an ecosystem file: only these apps, comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// With an ecosystem file: add the `env_<PROFILE>` variables of each app.
        #[arg(long = "env", value_name = "PROFILE")]
        profile: Option<String>,
        /// Give the workers this command's environment (variables it lacks are removed).
        #[arg(long)]
        update_env: bool,
        /// Print the replacements as one JSON object instead of a line each.
        #[arg(long)]
        json: bool,
    },
    /// `reload FILE` under PM2's names: start the file's new apps, reload the changed ones.
    ///
    /// PM2's `startOrReload`, `startOrRestart` and `startOrGracefulReload` are all herdsman's `reload FILE`:
    /// the file's new apps start, the apps whose definition changed reload with no downtime (each new
    /// worker ready before an old one stops), and the others are left as they are.
    #[command(
        name = "startOrReload",
        visible_aliases = ["startOrRestart", "startOrGracefulReload"]
    )]
    StartOrReload {
        /// The ecosystem file (`*.toml`, or PM2's `*.config.js` or JSON).
        file: String,
        /// Only these apps, comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Add the `env_<PROFILE>` variables of each app.
        #[arg(long = "env", value_name = "PROFILE")]
        profile: Option<String>,
    },
    /// Set an app's number of workers: N, +N or -N. New workers share the app's sockets; removed ones
    /// (the highest instances) stop gracefully.
    Scale {
        /// The app's name.
        name: String,
        /// N, +N or -N.
        #[arg(allow_hyphen_values = true)]
        count: String,
    },
    /// Send a signal to every worker of an app (each worker's own pid).
    Signal {
        /// SIGHUP, HUP, USR2, 10, ...
        signal: String,
        /// An app name, a worker id, or `all`.
        target: String,
    },
    /// Stop workers and forget them.
    #[command(visible_alias = "del")]
    Delete {
        /// App names, worker ids, `/REGEX/` or globs (`'api-*'`) of app names, or `all`; or one ecosystem
        /// file (`*.toml`): its apps, dependents first.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Print the last lines of apps' logs merged by time, then follow them; each line is prefixed
    /// `app|instance`.
    Logs(LogsArgs),
    /// A live dashboard: every worker's CPU, memory and status, the selected one's history and log;
    /// restart, reload or stop it from the keyboard (? shows the keys).
    Monit,
    /// Follow the daemon's events (started, ready, exited, crashed, restarted, errored, hung,
    /// memory-limit, reload steps, stopped, deleted, job runs), a line each.
    Events {
        /// One JSON object a line: the versioned contract in docs/events.md.
        #[arg(long)]
        json: bool,
        /// First print the events the daemon kept from this long ago (`10m`, `1h`).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Empty apps' logs: truncate the current files and remove the rotated ones.
    Flush {
        /// An app name, a worker id (its app), or `all` [default: all].
        target: Option<String>,
    },
    /// Reopen every app's log by its path, for an external rotator (logrotate's `postrotate`) that
    /// renamed the files; herdsman rotates by itself otherwise (`logs --reopen` does the same).
    #[command(name = "reloadLogs", visible_alias = "reload-logs")]
    ReloadLogs,
    /// Stop every app and the daemon.
    Kill,
    /// Scheduled jobs: each with its schedule in words, next run (local and UTC), last outcome and counts.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// The fleet stores of the `scope = "fleet"` jobs: `herdsman fleet status`.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Run a scheduled job now (obeying its `overlap`); prints the run id.
    Trigger {
        /// The job's name.
        name: String,
        /// Follow the run until it ends, and exit with its exit code.
        #[arg(long)]
        wait: bool,
    },
    /// Move the running daemon onto this herdsman executable (after installing a new one) without
    /// restarting any app: same workers, same sockets.
    Update {
        /// The new executable (default: this one).
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
    },
    /// Print this CLI's version and the running daemon's (keeper and controller).
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented ecosystem.toml to start from.
    Init {
        /// Where to write it.
        #[arg(default_value = "ecosystem.toml")]
        path: std::path::PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of ecosystem.toml (for editor completion and checks).
    Schema,
    /// Convert a PM2 ecosystem file (ecosystem.config.js, evaluated with node, or JSON) to ecosystem.toml.
    Import {
        /// The PM2 file.
        file: std::path::PathBuf,
        /// Write the TOML here instead of to stdout.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Overwrite the output file.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon (commands start it when needed).
    Daemon {
        /// Stay in the foreground and log to stderr (what a systemd unit or a container runs).
        #[arg(long)]
        foreground: bool,
        /// Start the saved apps once up (see `save`).
        #[arg(long)]
        resurrect: bool,
        /// Take over the state a keeper left when it re-executed itself in place (`update`).
        #[arg(long, hide = true)]
        handover_fd: Option<i32>,
    },
    /// Remember the apps that run now (their specs and environments) in HERDSMAN_HOME/dump.json.
    Save,
    /// Start the saved apps that do not run.
    Resurrect,
    /// Print a systemd unit that runs the daemon for this home at boot (Type=notify).
    Startup {
        /// A user unit (`systemctl --user`) instead of a system unit.
        #[arg(long)]
        user: bool,
        /// Write the unit and enable it.
        #[arg(long)]
        install: bool,
    },
    /// Disable and remove the unit `startup --install` wrote.
    Unstartup {
        /// The user unit.
        #[arg(long)]
        user: bool,
    },
    /// Run an ecosystem file in the foreground: the container entry point (logs to stdout, PID 1 duties,
    /// SIGTERM stops every app).
    Run {
        /// The ecosystem file.
        file: std::path::PathBuf,
        /// Lines without the app prefix.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// One JSON object per line: app, instance, stream, time, line.
        #[arg(long)]
        json: bool,
        /// Only these apps, comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Add the `env_<PROFILE>` variables of each app.
        #[arg(long = "env", value_name = "PROFILE")]
        profile: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
    /// Check that this executable can take over a keeper's state (read on stdin): run by `update`.
    #[command(hide = true)]
    UpgradeCheck,
    /// The daemon's controller (started by the daemon's keeper).
    #[command(hide = true)]
    Controller {
        /// The inherited control socket.
        #[arg(long)]
        listen_fd: i32,
        /// The keeper that started it.
        #[arg(long)]
        keeper_pid: i32,
    },
    /// The daemon's log keeper (started by the daemon).
    #[command(hide = true)]
    LogKeeper {
        /// The inherited control channel.
        #[arg(long)]
        control_fd: i32,
    },
}

/// The options of `start`: one per app option of the ecosystem file (`--kill-timeout` is `kill_timeout`).
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The script or program to run (its extension chooses the interpreter; a program is looked up on
    /// PATH), a command string run by `/bin/sh -c` ("npm run start"), an ecosystem file (`*.toml`), or an
    /// existing app's name or id.
    pub script: String,
    /// The app's name [default: the script's file name without extension; a command string's first word].
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Workers: a number, 0 or `max` for one per logical core, -1 for one less than that [default: 1].
    #[arg(short = 'i', long = "instances", allow_negative_numbers = true)]
    pub instances: Option<String>,
    /// Bind this address and share it with every worker (cluster mode): PORT, HOST:PORT, [V6]:PORT or
    /// unix:PATH; repeat for several (fds 3, 4, ...). Without it the app runs in fork mode.
    #[arg(long)]
    pub listen: Vec<String>,
    /// How new connections reach the workers: `shared` (one socket, the first worker to accept takes
    /// it), `hash` (a socket per worker, the kernel hashes each connection) or `sticky` (a socket per
    /// worker; one client address always reaches the same worker, as socket.io needs) [default: shared].
    #[arg(long, value_parser = ["shared", "hash", "sticky"])]
    pub balance: Option<String>,
    /// The interpreter, overriding the extension's (`none`: execute the script itself).
    #[arg(long)]
    pub interpreter: Option<String>,
    /// Arguments for the interpreter, before the script (e.g. `--interpreter-args=--max-old-space-size=512`;
    /// PM2's `--node-args` is the same).
    #[arg(
        long,
        visible_alias = "node-args",
        allow_hyphen_values = true,
        value_delimiter = ' '
    )]
    pub interpreter_args: Vec<String>,
    /// The workers' working directory [default: the current directory].
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// The signal that asks a worker to stop [default: SIGINT].
    #[arg(long)]
    pub kill_signal: Option<String>,
    /// How long a worker may take to stop before its process group is killed (ms, or with a unit)
    /// [default: 1600ms].
    #[arg(long)]
    pub kill_timeout: Option<String>,
    /// A worker that runs at least this long counts as started well, which resets its backoff [default: 1s].
    #[arg(long)]
    pub min_uptime: Option<String>,
    /// Give up after this many quick crashes in a row (the worker shows `errored`) [default: never].
    #[arg(long)]
    pub max_restarts: Option<u32>,
    /// The delay before the second quick restart in a row; it doubles with each further one [default: 100ms].
    #[arg(long)]
    pub restart_backoff: Option<String>,
    /// The longest delay between quick restarts [default: 15s].
    #[arg(long)]
    pub restart_backoff_max: Option<String>,
    /// A worker is ready only when the app says so (sd_notify READY=1, Node's process.send('ready'), or
    /// a Node server listening), within --listen-timeout; otherwise once it has run for --min-uptime.
    #[arg(long)]
    pub wait_ready: bool,
    /// With --wait-ready: how long a worker may take to get ready before it counts as failed
    /// [default: 3000ms].
    #[arg(long)]
    pub listen_timeout: Option<String>,
    /// Only one copy of each worker may run at a time: reload stops the old one before starting the new.
    #[arg(long)]
    pub no_overlap: bool,
    /// Do not restart workers that exit unexpectedly.
    #[arg(long)]
    pub no_autorestart: bool,
    /// Exit codes that mean a worker finished (it is left stopped), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub stop_exit_codes: Vec<i32>,
    /// Where stdout goes [default: HERDSMAN_HOME/logs/<name>-out.log].
    #[arg(short = 'o', long = "output")]
    pub out_file: Option<String>,
    /// Where stderr goes [default: HERDSMAN_HOME/logs/<name>-err.log].
    #[arg(short = 'e', long = "error")]
    pub error_file: Option<String>,
    /// A variable that counts up per instance (its value plus the instance number).
    #[arg(long)]
    pub increment_var: Option<String>,
    /// Apps that must be ready before this one starts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// Run the workers as this user (the daemon must run as root).
    #[arg(long)]
    pub user: Option<String>,
    /// Run the workers with this group (the daemon must run as root).
    #[arg(long)]
    pub group: Option<String>,
    /// Replace a worker (new one ready first) whose memory, its whole process group, stays above this
    /// (`300M`, `1G`).
    #[arg(long)]
    pub max_memory_restart: Option<String>,
    /// A worker that sends no WATCHDOG=1 on NOTIFY_SOCKET for this long (`10s`) is hung and replaced (Node
    /// workers send it from their event loop with no code) [default: off].
    #[arg(long)]
    pub watchdog: Option<String>,
    /// With --watchdog: the first signal a hung worker gets, before the kill signal [default: SIGABRT].
    #[arg(long)]
    pub watchdog_signal: Option<String>,
    /// Run a command for an event: `EVENT=COMMAND` (crash, errored, hung, memory-limit, reload-failed,
    /// job-failed); repeat for more.
    #[arg(long, value_name = "EVENT=COMMAND")]
    pub on_event: Vec<String>,
    /// Rotate a log file when it grows past this (`10M`); 0 never rotates [default: 10M].
    #[arg(long)]
    pub log_max_size: Option<String>,
    /// Rotated files kept per log [default: 5].
    #[arg(long)]
    pub log_keep: Option<u32>,
    // ----- languages -----
    /// Add the variables of this .env file (dotenv syntax; relative to the current directory); repeat
    /// for several, later files win. They override this command's environment.
    #[arg(long, value_name = "PATH")]
    pub env_file: Vec<String>,
    /// Reload the app (new workers ready first) when its files change. Alone: its source files under its
    /// directory (by language); `--watch=src,config.toml`: every file under these paths.
    #[arg(
        long,
        value_name = "PATHS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        value_delimiter = ','
    )]
    pub watch: Option<Vec<String>>,
    /// With --watch: names or globs that never count as a change (`*.db`, `tmp`), separated by commas or
    /// spaces; node_modules, .git, __pycache__ and the app's logs never do.
    #[arg(long, value_name = "PATTERNS")]
    pub ignore_watch: Vec<String>,
    /// With --watch: reload once the files have been quiet this long [default: 500ms].
    #[arg(long, value_name = "DURATION")]
    pub watch_delay: Option<String>,
    /// Write each line to the log files exactly as the app wrote it, without time and instance.
    #[arg(long, conflicts_with_all = ["log_format", "log_date_format"])]
    pub no_log_prefix: bool,
    /// `text` (`<time> [<instance>] <line>`) or `json` (one object a line: time, app, instance, stream,
    /// message) [default: text].
    #[arg(long, alias = "log-type", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// The time of each log line, strftime-style (`%Y-%m-%d %H:%M:%S %z`) [default: RFC 3339].
    #[arg(long)]
    pub log_date_format: Option<String>,
    /// The zone of the times in the log files: `utc` or `local` [default: utc].
    #[arg(long, value_parser = ["utc", "local"])]
    pub log_timezone: Option<String>,
    /// Also rotate the logs when a new day (or hour) starts: `daily` or `hourly` [default: by size only].
    #[arg(long, value_parser = ["daily", "hourly"])]
    pub log_rotate: Option<String>,
    /// gzip rotated log files from `.2` on.
    #[arg(long)]
    pub log_compress: bool,
    // ----- scheduled jobs -----
    /// Make the app a scheduled job, run once (one process) at each fire time of this cron expression: 5
    /// fields (minute hour day-of-month month day-of-week), 6 (leading seconds) or 7 (and a year), with
    /// L, W and #, or @yearly, @monthly, @weekly, @daily, @hourly.
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// The IANA zone --schedule and --cron-restart are read in (`Europe/Berlin`) [default: the host's].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// With --schedule: a fire time while a run is still going `skip`s, `allow`s a second run, or
    /// `replace`s the running one [default: skip].
    #[arg(long, value_parser = ["skip", "allow", "replace"])]
    pub overlap: Option<String>,
    /// With --schedule: after the daemon was down at a fire time, `last` runs the latest one missed once,
    /// `none` records it as missed [default: last].
    #[arg(long, value_parser = ["last", "none"])]
    pub catch_up: Option<String>,
    /// With --schedule: a run that would start later than this after its fire time is recorded as missed
    /// [default: no deadline].
    #[arg(long, value_name = "DURATION")]
    pub starting_deadline: Option<String>,
    /// With --schedule: a stable delay below this, derived from the app's name, added to every fire time.
    #[arg(long, value_name = "DURATION")]
    pub jitter: Option<String>,
    /// With --schedule: stop a run still going after this long (it fails) [default: no timeout].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// With --schedule: run a failed run again up to this many times (at most 100) [default: 0].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// With --schedule: the wait before the first retry, doubling for each further one [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub retry_backoff: Option<String>,
    /// With --schedule: the runs kept in the job's history (1 to 1000) [default: 20].
    #[arg(long, value_name = "N")]
    pub history: Option<u32>,
    /// With --schedule: a command line run by /bin/sh -c in the app's cwd when a run failed for good.
    #[arg(long, value_name = "COMMAND")]
    pub on_failure: Option<String>,
    /// Reload the app (each new worker ready first) at each fire time of this cron expression (PM2's
    /// --cron-restart).
    #[arg(long, visible_alias = "cron", value_name = "CRON")]
    pub cron_restart: Option<String>,
    /// With an ecosystem file: only these apps, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// With an ecosystem file: add the `env_<PROFILE>` variables of each app.
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// With an ecosystem file: check it and print the TOML it stands for (a PM2 file converted), starting
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run in the foreground as `herdsman run` does (logs to stdout, Ctrl-C or SIGTERM stops the apps):
    /// PM2's `--no-daemon`.
    #[arg(long)]
    pub no_daemon: bool,
    /// Accepted for PM2's sake, with no effect: every log line already carries its time (`logs --timestamp`
    /// shows it).
    #[arg(long)]
    pub time: bool,
    /// PM2 starts a second copy of a running script with it. App names are unique in herdsman, so a start
    /// whose name is taken is refused, saying what to run instead (`--name`, `scale`, `restart`).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Arguments passed to the script (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// An app name, a worker id, or `all` [default: all].
    pub target: Option<String>,
    /// How many of the last lines to print first [default: 15; with --since or --until, all].
    #[arg(long)]
    pub lines: Option<usize>,
    /// Print the last lines and exit instead of following.
    #[arg(long)]
    pub nostream: bool,
    /// Lines without the `app|instance` prefix.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    /// One JSON object per line: app, instance, stream ("out" or "err"), time, line.
    #[arg(long)]
    pub json: bool,
    /// Show each line's time (UTC, as the log keeper read it).
    #[arg(long)]
    pub timestamp: bool,
    /// Only standard output.
    #[arg(long, conflicts_with = "err")]
    pub out: bool,
    /// Only standard error.
    #[arg(long)]
    pub err: bool,
    /// Only lines written since this: a duration back from now (`90s`, `10m`, `1h`, `2d`) or a time
    /// (`2026-11-24T01:02:03Z`; `2026-11-24 01:02` and `2026-11-24` in local time).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines written until this (as --since); prints and exits instead of following.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only lines whose text matches this regular expression.
    #[arg(long, value_name = "PATTERN")]
    pub grep: Option<String>,
    /// Reopen every app's log by its path (as `reloadLogs`) and exit.
    #[arg(long, exclusive = true)]
    pub reopen: bool,
    /// The output of one run of a scheduled job (its run id, from `jobs history`), every attempt.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
}

/// `herdsman fleet ...`.
#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// Each store: its URL (password masked), latency, this host's clock against the store's, and the
    /// hosts seen recently (name, version, last seen).
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `herdsman jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// A job's runs: run id, scheduled at, started, duration, outcome, exit, attempt.
    History {
        name: String,
        #[arg(long)]
        json: bool,
        /// Every host's runs of a `scope = "fleet"` job, read from the fleet store.
        #[arg(long)]
        fleet: bool,
    },
    /// A job's next fire times, with daylight saving shifts called out.
    Next {
        name: String,
        #[arg(long, default_value_t = 5)]
        count: u32,
        #[arg(long)]
        json: bool,
    },
    /// Skip a job's fire times until `jobs resume`.
    Pause { name: String },
    /// Run a paused job's fire times again, from now on.
    Resume { name: String },
}

/// The ecosystem file a control command's targets name, if they name one: then it must be the only target.
fn file_target(targets: &[String]) -> Result<Option<PathBuf>> {
    match targets {
        [one] if ecosystem::is_file(one) => Ok(Some(std::env::current_dir()?.join(one))),
        _ => match targets.iter().find(|t| ecosystem::is_file(t)) {
            Some(file) => anyhow::bail!(
                "{file}: an ecosystem file must be the only target (give the apps by name instead)"
            ),
            None => Ok(None),
        },
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let home = Home::from_env()?;
    match cli.command {
        Command::Start(args) => start::run(&home, *args),
        Command::List { json } => list::run(&home, json),
        Command::Jlist => list::run(&home, true),
        Command::Describe { target, json } => describe::run(&home, &target, json),
        Command::Stop { targets } => match file_target(&targets)? {
            Some(path) => ecosystem::apply(&home, &path, ApplyAction::Stop, &[], None),
            None => control::stop(&home, &targets),
        },
        Command::Restart {
            targets,
            update_env,
        } => match file_target(&targets)? {
            // PM2's `restart FILE`: the file's apps, by name (each must exist; `start FILE` starts the rest).
            Some(path) => {
                let names = ecosystem::load_apps(&path, &[], None)?.names;
                control::restart(&home, &names, update_env)
            }
            None => control::restart(&home, &targets, update_env),
        },
        Command::Delete { targets } => match file_target(&targets)? {
            Some(path) => ecosystem::apply(&home, &path, ApplyAction::Delete, &[], None),
            None => control::delete(&home, &targets),
        },
        Command::Reload {
            targets,
            update_env,
            json,
            prune,
            only,
            profile,
        } => match file_target(&targets)? {
            Some(path) => ecosystem::apply_file(
                &home,
                &path,
                ApplyAction::Reload,
                &only,
                profile.as_deref(),
                prune,
            ),
            None if prune || !only.is_empty() || profile.is_some() => {
                anyhow::bail!("--prune, --only and --env apply to an ecosystem file (*.toml)")
            }
            None => control::reload(&home, &targets, update_env, json),
        },
        Command::StartOrReload {
            file,
            only,
            profile,
        } => match file_target(std::slice::from_ref(&file))? {
            Some(path) => ecosystem::apply_file(
                &home,
                &path,
                ApplyAction::Reload,
                &only,
                profile.as_deref(),
                false,
            ),
            None => anyhow::bail!(
                "{file}: not an ecosystem file (*.toml, or PM2's *.config.js or JSON); \
                 startOrReload applies a file (for apps by name: `herdsman reload NAME`)"
            ),
        },
        Command::Scale { name, count } => control::scale(&home, &name, &count),
        Command::Signal { signal, target } => control::signal(&home, &signal, &target),
        Command::Logs(args) => logs::run(&home, args),
        Command::Monit => crate::monit::run(&home),
        Command::Events { json, since } => events::run(&home, json, since.as_deref()),
        Command::Flush { target } => logs::flush(&home, target.as_deref()),
        Command::ReloadLogs => logs::reopen(&home),
        Command::Kill => control::kill(&home),
        Command::Jobs { action, json } => jobs::run(&home, action, json),
        Command::Trigger { name, wait } => jobs::trigger(&home, &name, wait),
        Command::Fleet {
            action: FleetAction::Status { json },
        } => jobs::fleet_status(&home, json),
        Command::Version { json } => version::run(&home, json),
        Command::Update { binary } => update::run(&home, binary),
        Command::UpgradeCheck => crate::daemon::upgrade_check(),
        Command::Controller {
            listen_fd,
            keeper_pid,
        } => crate::controller::run(&home, listen_fd, keeper_pid),
        Command::Init { path, force } => ecosystem::init(&path, force),
        Command::Schema => ecosystem::schema(),
        Command::Import {
            file,
            output,
            force,
        } => import::run(&file, output.as_deref(), force),
        Command::Daemon {
            foreground,
            resurrect,
            handover_fd,
        } => service::daemon(&home, foreground, resurrect, handover_fd),
        Command::Save => service::save(&home),
        Command::Resurrect => service::resurrect(&home),
        Command::Startup { user, install } => service::startup(&home, user, install),
        Command::Unstartup { user } => service::unstartup(user),
        Command::Run {
            file,
            raw,
            json,
            only,
            profile,
        } => {
            let format = logs::Format::from_flags(raw, json);
            service::run(&home, &file, &only, profile.as_deref(), format)
        }
        Command::Completions { shell } => service::completions(shell, &mut std::io::stdout()),
        Command::Man => service::man(&mut std::io::stdout()),
        Command::LogKeeper { control_fd } => crate::logs::keeper::run(control_fd),
    }
}
