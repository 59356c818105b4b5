//! The low form of an app: every option as given, nothing resolved. The command line and the ecosystem file
//! both fill a [`RawApp`]; [`RawApp::resolve`] checks it and turns it into the [`AppSpec`] the daemon runs,
//! so every option means the same in both places. Each value remembers where it came from (a file
//! position, or none for a flag) so a problem found while resolving still points at its line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::job::{self, CatchUp, CronRestart, JobSpec, Overlap};
use super::{
    AppSpec, Instances, ListenAddr, SignalName, WatchSpec, WatchValue, check_name, defaults,
    dotenv, find_program, typescript,
};
use crate::logs::{LineFormat, LogStyle, LogTimezone};
use crate::schedule::{Schedule, ScheduleError};

/// A line and column (1-based) in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<T> {
    pub value: T,
    pub at: Option<Location>,
}

impl<T> Item<T> {
    pub fn flag(value: T) -> Item<T> {
        Item { value, at: None }
    }
}

/// Something wrong with an app's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Option<Location>,
    /// The option's key in the file (`instances`), which is also its flag (`--instances`).
    pub key: String,
    pub message: String,
}

/// One app's options as written.
#[derive(Debug, Clone, Default)]
pub struct RawApp {
    /// Where the app's table starts.
    pub at: Option<Location>,
    pub name: Option<Item<String>>,
    pub script: Option<Item<String>>,
    pub args: Option<Item<Vec<String>>>,
    pub interpreter: Option<Item<String>>,
    pub interpreter_args: Option<Item<Vec<String>>>,
    pub cwd: Option<Item<String>>,
    pub instances: Option<Item<Instances>>,
    pub listen: Option<Item<Vec<ListenAddr>>>,
    pub env: BTreeMap<String, String>,
    /// `env_<profile>` tables, by profile.
    pub env_profiles: BTreeMap<String, BTreeMap<String, String>>,
    pub kill_signal: Option<Item<SignalName>>,
    pub kill_timeout: Option<Item<Duration>>,
    pub wait_ready: Option<Item<bool>>,
    pub listen_timeout: Option<Item<Duration>>,
    pub min_uptime: Option<Item<Duration>>,
    pub max_restarts: Option<Item<u32>>,
    pub restart_backoff: Option<Item<Duration>>,
    pub restart_backoff_max: Option<Item<Duration>>,
    pub autorestart: Option<Item<bool>>,
    pub stop_exit_codes: Option<Item<Vec<i32>>>,
    pub out_file: Option<Item<String>>,
    pub error_file: Option<Item<String>>,
    pub increment_var: Option<Item<String>>,
    pub depends_on: Option<Item<Vec<String>>>,
    pub user: Option<Item<String>>,
    pub group: Option<Item<String>>,
    pub no_overlap: Option<Item<bool>>,
    pub max_memory_restart: Option<Item<u64>>,
    pub log_max_size: Option<Item<u64>>,
    pub log_keep: Option<Item<u32>>,
    // ----- languages -----
    /// `.env` files, relative to the base; later ones win, `env` wins over all of them.
    pub env_file: Option<Item<Vec<String>>>,
    // Watch mode (see `watch.rs`).
    pub watch: Option<Item<WatchValue>>,
    pub ignore_watch: Option<Item<Vec<String>>>,
    pub watch_delay: Option<Item<Duration>>,
    pub log_prefix: Option<Item<bool>>,
    pub log_format: Option<Item<LogStyle>>,
    pub log_date_format: Option<Item<String>>,
    pub log_timezone: Option<Item<LogTimezone>>,
    pub log_rotate: Option<Item<crate::logs::RotateEvery>>,
    pub log_compress: Option<Item<bool>>,
    // Scheduled jobs (see `job.rs`).
    pub schedule: Option<Item<String>>,
    /// The IANA zone of `schedule` and `cron_restart`.
    pub timezone: Option<Item<String>>,
    pub overlap: Option<Item<Overlap>>,
    pub catch_up: Option<Item<CatchUp>>,
    pub starting_deadline: Option<Item<Duration>>,
    pub jitter: Option<Item<Duration>>,
    pub timeout: Option<Item<Duration>>,
    pub retries: Option<Item<u32>>,
    pub retry_backoff: Option<Item<Duration>>,
    pub history: Option<Item<u32>>,
    pub on_failure: Option<Item<String>>,
    /// `host` or `fleet` (see [`super::fleet`]).
    pub scope: Option<Item<job::Scope>>,
    pub cron_restart: Option<Item<String>>,
    /// `shared`, `hash` or `sticky` (see [`super::Balance`]).
    pub balance: Option<Item<super::Balance>>,
    pub watchdog: Option<Item<Duration>>,
    pub watchdog_signal: Option<Item<SignalName>>,
    /// `on_event`: each event with its command and where the entry was written.
    pub on_event: Option<Item<RawHooks>>,
}

/// `on_event` as written: each event with its command and where the entry is.
pub type RawHooks = Vec<(String, Item<String>)>;

/// What resolving needs besides the options.
pub struct Context<'a> {
    /// Relative paths are taken from here: the file's directory, or where the command ran.
    pub base: &'a Path,
    /// The environment of the command that starts the app.
    pub caller_env: &'a BTreeMap<String, String>,
    /// The `--env` profile.
    pub profile: Option<&'a str>,
    /// The file's `[fleet]`, for `scope = "fleet"` jobs.
    pub fleet: super::fleet::FleetTable<'a>,
}

fn value<T: Clone>(item: &Option<Item<T>>) -> Option<T> {
    item.as_ref().map(|i| i.value.clone())
}

fn millis(item: &Option<Item<Duration>>, default: u64) -> u64 {
    item.as_ref()
        .map_or(default, |i| i.value.as_millis() as u64)
}

impl RawApp {
    /// The name the app gets: its `name`, or the script's file name without extension.
    pub fn name(&self) -> Option<String> {
        match (&self.name, &self.script) {
            (Some(name), _) => Some(name.value.clone()),
            (None, Some(script)) => Some(super::default_name(Path::new(&script.value))),
            (None, None) => None,
        }
    }

    /// Checks every option and resolves paths and defaults. Reports every problem, not just the first.
    pub fn resolve(&self, context: &Context<'_>) -> Result<AppSpec, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |at: Option<Location>, key: &str, message: String| {
            problems.push(Problem {
                at,
                key: key.to_string(),
                message,
            });
        };
        let Some(script) = &self.script else {
            problem(
                self.at,
                "script",
                "missing key `script`: the program or script to run".into(),
            );
            return Err(problems);
        };
        let name = self.name().unwrap_or_default();
        if let Err(e) = check_name(&name) {
            let at = self.name.as_ref().and_then(|n| n.at).or(script.at);
            problem(at, "name", e.to_string());
        }
        let cwd = match &self.cwd {
            Some(dir) => context.base.join(&dir.value),
            None => context.base.to_path_buf(),
        };
        if !cwd.is_dir() {
            let at = self.cwd.as_ref().and_then(|c| c.at);
            problem(
                at,
                "cwd",
                format!("working directory not found: {}", cwd.display()),
            );
        }
        let script_path = locate_script(&script.value, context, &cwd);
        if script_path.is_none() {
            let path = cwd.join(&script.value);
            problem(
                script.at,
                "script",
                format!("script not found: {}", path.display()),
            );
        }
        // The caller's environment, then the env files (later ones win), then `env`, then the profile.
        let mut defined_env = BTreeMap::new();
        let mut env_files = Vec::new();
        if let Some(files) = &self.env_file {
            for file in &files.value {
                let path = context.base.join(file);
                match dotenv::read(&path) {
                    Ok(vars) => defined_env.extend(vars),
                    Err(messages) => {
                        for message in messages {
                            problem(files.at, "env_file", message);
                        }
                    }
                }
                env_files.push(path);
            }
        }
        defined_env.extend(self.env.clone());
        let mut env = context.caller_env.clone();
        if let Some(profile) = context.profile
            && let Some(extra) = self.env_profiles.get(profile)
        {
            defined_env.extend(extra.clone());
        }
        env.extend(defined_env.clone());
        let out_file = self.out_file.as_ref().map(|f| cwd.join(&f.value));
        let error_file = self.error_file.as_ref().map(|f| cwd.join(&f.value));
        if let (Some(out), Some(err)) = (&out_file, &error_file)
            && out == err
        {
            let at = self.error_file.as_ref().and_then(|f| f.at);
            problem(at, "error_file", "must differ from out_file".into());
        }
        if let Some(listen) = &self.listen
            && let Some(twice) = listen
                .value
                .iter()
                .enumerate()
                .find(|(i, a)| listen.value[..*i].contains(a))
        {
            problem(
                listen.at,
                "listen",
                format!("address {} is given twice", twice.1),
            );
        }
        if let Some(balance) = &self.balance
            && balance.value.per_slot()
        {
            let listen = self.listen.as_ref().map(|l| l.value.as_slice());
            match listen {
                None | Some([]) => problem(
                    balance.at,
                    "balance",
                    format!(
                        "balance \"{}\" spreads connections over sockets the daemon binds: give `listen` too",
                        balance.value
                    ),
                ),
                Some(addrs) => {
                    if let Some(unix) = addrs.iter().find(|a| matches!(a, ListenAddr::Unix(_))) {
                        problem(
                            balance.at,
                            "balance",
                            format!(
                                "balance \"{}\" needs TCP addresses (SO_REUSEPORT), and {unix} is a Unix socket: use balance \"shared\" for it",
                                balance.value
                            ),
                        );
                    }
                }
            }
        }
        if let Some(deps) = &self.depends_on
            && deps.value.contains(&name)
        {
            problem(
                deps.at,
                "depends_on",
                format!("app '{name}' cannot depend on itself"),
            );
        }
        let watch = self.resolve_watch(context, &cwd, script_path.as_deref(), &mut problem);
        let log_lines = self.log_lines(&mut problem);
        let (job, cron_restart) = self.resolve_schedules(context, &mut problem);
        let (watchdog, on_event) = self.resolve_alerting(&cwd, &mut problem);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut spec = AppSpec {
            name,
            script: script_path.unwrap_or_default(),
            args: value(&self.args).unwrap_or_default(),
            interpreter: value(&self.interpreter),
            interpreter_args: value(&self.interpreter_args).unwrap_or_default(),
            cwd,
            instances: value(&self.instances).unwrap_or(Instances::Count(1)),
            listen: value(&self.listen).unwrap_or_default(),
            env: std::sync::Arc::new(env),
            defined_env,
            kill_signal: value(&self.kill_signal).unwrap_or(SignalName(defaults::KILL_SIGNAL)),
            kill_timeout_ms: millis(&self.kill_timeout, defaults::KILL_TIMEOUT_MS),
            min_uptime_ms: millis(&self.min_uptime, defaults::MIN_UPTIME_MS),
            max_restarts: value(&self.max_restarts),
            restart_backoff_ms: millis(&self.restart_backoff, defaults::RESTART_BACKOFF_MS),
            restart_backoff_max_ms: millis(
                &self.restart_backoff_max,
                defaults::RESTART_BACKOFF_MAX_MS,
            ),
            wait_ready: value(&self.wait_ready).unwrap_or(false),
            listen_timeout_ms: millis(&self.listen_timeout, defaults::LISTEN_TIMEOUT_MS),
            no_overlap: value(&self.no_overlap).unwrap_or(false),
            autorestart: value(&self.autorestart).unwrap_or(true),
            stop_exit_codes: value(&self.stop_exit_codes).unwrap_or_default(),
            out_file,
            error_file,
            increment_var: value(&self.increment_var),
            depends_on: value(&self.depends_on).unwrap_or_default(),
            user: value(&self.user),
            group: value(&self.group),
            max_memory_restart: value(&self.max_memory_restart).filter(|&bytes| bytes > 0),
            log_max_size: value(&self.log_max_size).unwrap_or(defaults::LOG_MAX_SIZE),
            log_keep: value(&self.log_keep).unwrap_or(defaults::LOG_KEEP),
            env_files,
            runner: None,
            watch: watch.map(Box::new),
            log_lines,
            log_rotate: value(&self.log_rotate),
            log_compress: value(&self.log_compress).unwrap_or(false),
            job: job.map(Box::new),
            cron_restart: cron_restart.map(Box::new),
            balance: value(&self.balance).unwrap_or_default(),
            watchdog,
            on_event,
        };
        let path = spec.env.get("PATH").map(String::as_str);
        if let Some(given) = &spec.interpreter
            && let Some(runner) = typescript::given(given, &spec.script, &spec.cwd, path)
        {
            spec.interpreter = Some(runner.interpreter);
            spec.interpreter_args = [runner.args, spec.interpreter_args].concat();
            spec.runner = Some(runner.description);
        } else if spec.interpreter.is_none() && typescript::is_typescript(&spec.script) {
            match typescript::choose(&spec.script, &spec.cwd, path) {
                Ok(runner) => {
                    spec.interpreter = Some(runner.interpreter);
                    spec.interpreter_args = [runner.args, spec.interpreter_args].concat();
                    spec.runner = Some(runner.description);
                }
                Err(message) => {
                    return Err(vec![Problem {
                        at: script.at,
                        key: "interpreter".into(),
                        message,
                    }]);
                }
            }
        }
        match spec.command_line() {
            Ok(_) => Ok(spec),
            Err(e) => {
                let at = self.interpreter.as_ref().and_then(|i| i.at).or(script.at);
                Err(vec![Problem {
                    at,
                    key: "interpreter".into(),
                    message: e.to_string(),
                }])
            }
        }
    }
}

impl RawApp {
    /// `watchdog`, `watchdog_signal` and `on_event`, checked: a period of at least 100 ms, a known event
    /// for each hook, and a hook whose program is a path naming an executable file.
    fn resolve_alerting(
        &self,
        cwd: &Path,
        problem: &mut impl FnMut(Option<Location>, &str, String),
    ) -> (Option<super::alerting::Watchdog>, super::alerting::Hooks) {
        let watchdog = match &self.watchdog {
            Some(period) if period.value < Duration::from_millis(100) => {
                problem(
                    period.at,
                    "watchdog",
                    "must be at least 100ms (workers send WATCHDOG=1 at half of it)".into(),
                );
                None
            }
            Some(period) => Some(super::alerting::Watchdog {
                period_ms: period.value.as_millis() as u64,
                signal: value(&self.watchdog_signal),
            }),
            None => {
                if let Some(signal) = &self.watchdog_signal {
                    problem(
                        signal.at,
                        "watchdog_signal",
                        "is the signal a hung worker gets: add `watchdog` (a period such as \"10s\")"
                            .into(),
                    );
                }
                None
            }
        };
        let mut hooks = super::alerting::Hooks::new();
        for (event, command) in self.on_event.iter().flat_map(|i| i.value.iter()) {
            match super::alerting::check_hook(event, &command.value, cwd) {
                Some(message) => problem(command.at, "on_event", message),
                None => {
                    hooks.insert(event.clone(), command.value.clone());
                }
            }
        }
        (watchdog, hooks)
    }

    /// `schedule` and the options of a job as a [`JobSpec`], `cron_restart` as a [`CronRestart`]: each
    /// expression parsed in its zone, each option checked, and the options that make no sense together
    /// refused.
    fn resolve_schedules(
        &self,
        context: &Context<'_>,
        problem: &mut impl FnMut(Option<Location>, &str, String),
    ) -> (Option<JobSpec>, Option<CronRestart>) {
        // The zone first, so that an unknown one is reported at `timezone` and the expressions are still
        // checked (in the host's zone).
        let zone = match &self.timezone {
            Some(zone) if jiff::tz::TimeZone::get(&zone.value).is_err() => {
                problem(
                    zone.at,
                    "timezone",
                    ScheduleError::Zone(zone.value.clone()).to_string(),
                );
                None
            }
            Some(zone) => Some(zone.value.as_str()),
            None => None,
        };
        let mut parse = |item: &Item<String>, key: &str| match Schedule::parse(&item.value, zone) {
            Ok(schedule) => Some(schedule.expr().to_string()),
            Err(e) => {
                problem(item.at, key, e.to_string());
                None
            }
        };
        let schedule = self.schedule.as_ref().map(|s| parse(s, "schedule"));
        let cron_restart = self
            .cron_restart
            .as_ref()
            .and_then(|c| parse(c, "cron_restart"));
        let timezone = value(&self.timezone);
        if let Some(zone) = &self.timezone
            && self.schedule.is_none()
            && self.cron_restart.is_none()
        {
            problem(
                zone.at,
                "timezone",
                "is the zone of `schedule` or `cron_restart`: add one of them".into(),
            );
        }
        let Some(schedule) = schedule else {
            let job_only = [
                ("overlap", self.overlap.as_ref().map(|i| i.at)),
                ("catch_up", self.catch_up.as_ref().map(|i| i.at)),
                (
                    "starting_deadline",
                    self.starting_deadline.as_ref().map(|i| i.at),
                ),
                ("jitter", self.jitter.as_ref().map(|i| i.at)),
                ("timeout", self.timeout.as_ref().map(|i| i.at)),
                ("retries", self.retries.as_ref().map(|i| i.at)),
                ("retry_backoff", self.retry_backoff.as_ref().map(|i| i.at)),
                ("history", self.history.as_ref().map(|i| i.at)),
                ("on_failure", self.on_failure.as_ref().map(|i| i.at)),
                ("scope", self.scope.as_ref().map(|i| i.at)),
            ];
            for (key, given) in job_only {
                if let Some(at) = given {
                    problem(
                        at,
                        key,
                        "is only for a scheduled job: add `schedule` (a cron expression)".into(),
                    );
                }
            }
            let cron_restart = cron_restart.map(|schedule| CronRestart { schedule, timezone });
            return (None, cron_restart);
        };
        // A job runs one process per run, on its own: nothing that belongs to a long-running app.
        if let Some(listen) = &self.listen {
            problem(
                listen.at,
                "listen",
                "a scheduled job runs one process per run and shares no socket: remove `listen` (or `schedule`)"
                    .into(),
            );
        }
        if let Some(instances) = &self.instances
            && instances.value != super::Instances::Count(1)
        {
            problem(
                instances.at,
                "instances",
                format!(
                    "a scheduled job runs one process per run, not {}: remove `instances` (or `schedule`)",
                    instances.value
                ),
            );
        }
        if let Some(cron) = &self.cron_restart {
            problem(
                cron.at,
                "cron_restart",
                "restarts a long-running app on a schedule; this app is a scheduled job (`schedule`) started at each fire time: keep one of them"
                    .into(),
            );
        }
        if let Some(watch) = &self.watch
            && watch.value != WatchValue::Flag(false)
        {
            problem(
                watch.at,
                "watch",
                "reloads a long-running app; a scheduled job runs at its fire times: remove `watch` (or `schedule`)"
                    .into(),
            );
        }
        let mut duration = |item: &Option<Item<Duration>>, key: &str, zero_ok: bool| {
            let item = item.as_ref()?;
            let ms = item.value.as_millis() as u64;
            if ms == 0 && !zero_ok {
                problem(
                    item.at,
                    key,
                    "must be more than 0 (leave it out for none)".into(),
                );
            } else if ms > job::limits::DURATION_MAX_MS {
                problem(
                    item.at,
                    key,
                    "is more than a year (366 days): surely a mistake".into(),
                );
            }
            Some(ms)
        };
        let starting_deadline_ms = duration(&self.starting_deadline, "starting_deadline", false);
        let jitter_ms = duration(&self.jitter, "jitter", true).unwrap_or(0);
        let timeout_ms = duration(&self.timeout, "timeout", false);
        let retry_backoff_ms = duration(&self.retry_backoff, "retry_backoff", true)
            .unwrap_or(job::defaults::RETRY_BACKOFF_MS);
        let retries = value(&self.retries).unwrap_or(0);
        if let Some(item) = &self.retries
            && item.value > job::limits::RETRIES_MAX
        {
            problem(
                item.at,
                "retries",
                format!(
                    "{} retries is too many (at most {})",
                    item.value,
                    job::limits::RETRIES_MAX
                ),
            );
        }
        let history = value(&self.history).unwrap_or(job::defaults::HISTORY);
        if let Some(item) = &self.history
            && !(1..=job::defaults::HISTORY_MAX).contains(&item.value)
        {
            problem(
                item.at,
                "history",
                format!(
                    "the runs kept must be 1 to {}, not {}",
                    job::defaults::HISTORY_MAX,
                    item.value
                ),
            );
        }
        if let Some(command) = &self.on_failure
            && command.value.trim().is_empty()
        {
            problem(
                command.at,
                "on_failure",
                "is empty: give a command line (run by /bin/sh -c in the app's cwd)".into(),
            );
        }
        let fleet = match (&self.scope, context.fleet) {
            (Some(scope), table) if scope.value == job::Scope::Fleet => match table {
                super::fleet::FleetTable::Valid(fleet) => Some(fleet.clone()),
                super::fleet::FleetTable::Invalid => None,
                super::fleet::FleetTable::Absent => {
                    problem(
                        scope.at,
                        "scope",
                        "\"fleet\" needs the store its runs are claimed in: add a [fleet] table with `store` and `name` to the ecosystem file (a fleet job is defined in a file, not with flags)"
                            .into(),
                    );
                    None
                }
            },
            _ => None,
        };
        let job = schedule.map(|schedule| JobSpec {
            schedule,
            timezone,
            overlap: value(&self.overlap).unwrap_or_default(),
            catch_up: value(&self.catch_up).unwrap_or_default(),
            starting_deadline_ms,
            jitter_ms,
            timeout_ms,
            retries,
            retry_backoff_ms,
            history,
            on_failure: value(&self.on_failure),
            fleet,
        });
        (job, None)
    }

    /// `watch`, `ignore_watch` and `watch_delay` as a [`WatchSpec`]: watched paths must exist.
    fn resolve_watch(
        &self,
        context: &Context<'_>,
        cwd: &Path,
        script: Option<&Path>,
        problem: &mut impl FnMut(Option<Location>, &str, String),
    ) -> Option<WatchSpec> {
        if let Some(patterns) = &self.ignore_watch {
            for pattern in &patterns.value {
                if let Err(message) = super::watch::check_pattern(pattern) {
                    problem(patterns.at, "ignore_watch", message);
                }
            }
        }
        let Some(watch) = &self.watch else {
            if self.ignore_watch.is_some() {
                problem(
                    self.ignore_watch.as_ref().and_then(|i| i.at),
                    "ignore_watch",
                    "has no effect without `watch` (true, or the paths to watch)".into(),
                );
            }
            if self.watch_delay.is_some() {
                problem(
                    self.watch_delay.as_ref().and_then(|i| i.at),
                    "watch_delay",
                    "has no effect without `watch` (true, or the paths to watch)".into(),
                );
            }
            return None;
        };
        let (paths, extensions) = match &watch.value {
            WatchValue::Flag(false) => return None,
            WatchValue::Paths(paths) if !paths.is_empty() => {
                let mut resolved = Vec::new();
                for path in paths {
                    // Lexically normal (`.` dropped), as the watcher reports paths.
                    let absolute: PathBuf = cwd.join(path).components().collect();
                    if std::fs::symlink_metadata(&absolute).is_err() {
                        problem(
                            watch.at,
                            "watch",
                            format!("path to watch not found: {}", absolute.display()),
                        );
                    }
                    resolved.push(absolute);
                }
                (resolved, None)
            }
            WatchValue::Flag(true) | WatchValue::Paths(_) => {
                let interpreter = match self.interpreter.as_ref().map(|i| i.value.as_str()) {
                    Some("none") => None,
                    Some(other) => Some(other.to_string()),
                    None => script.and_then(|s| super::interpreter_for(s).map(str::to_string)),
                };
                let mut paths = vec![cwd.to_path_buf()];
                // A script given as a path outside the working directory: its directory too (not that
                // of a program found on PATH).
                let raw = self.script.as_ref().map_or("", |s| s.value.as_str());
                let given_as_path = raw.contains('/') || context.base.join(raw).is_file();
                if let Some(dir) = script.and_then(Path::parent)
                    && given_as_path
                    && !dir.starts_with(cwd)
                {
                    paths.push(dir.to_path_buf());
                }
                let script = script.unwrap_or(Path::new(""));
                let extensions = super::watch::source_extensions(interpreter.as_deref(), script);
                (paths, Some(extensions))
            }
        };
        if paths.iter().any(|p| p.parent().is_none()) {
            problem(
                watch.at,
                "watch",
                "would watch / (the whole system, /proc included): name the paths to watch, or give the app a cwd"
                    .into(),
            );
        }
        Some(WatchSpec {
            paths,
            extensions,
            ignore: value(&self.ignore_watch).unwrap_or_default(),
            delay_ms: millis(&self.watch_delay, super::watch::DEFAULT_DELAY_MS),
        })
    }

    /// `log_prefix`, `log_format`, `log_date_format` and `log_timezone` as one [`LineFormat`].
    fn log_lines(&self, problem: &mut impl FnMut(Option<Location>, &str, String)) -> LineFormat {
        let prefix = value(&self.log_prefix).unwrap_or(true);
        let style = value(&self.log_format).unwrap_or(LogStyle::Text);
        let style = match (prefix, style) {
            (true, style) => style,
            (false, LogStyle::Text | LogStyle::Plain) => LogStyle::Plain,
            (false, LogStyle::Json) => {
                let at = self.log_prefix.as_ref().and_then(|i| i.at);
                problem(
                    at,
                    "log_prefix",
                    "log_prefix = false writes lines as the app wrote them, log_format = \"json\" wraps \
                     each in a JSON object: choose one"
                        .into(),
                );
                LogStyle::Json
            }
        };
        if let Some(format) = &self.log_date_format {
            if style == LogStyle::Plain {
                problem(
                    format.at,
                    "log_date_format",
                    "has no effect with log_prefix = false (lines are written without a time)"
                        .into(),
                );
            } else if let Err(e) = LineFormat::check_date_format(&format.value) {
                problem(format.at, "log_date_format", e);
            }
        }
        LineFormat {
            style,
            date_format: value(&self.log_date_format),
            timezone: value(&self.log_timezone).unwrap_or_default(),
        }
    }
}

/// The script as a path: relative to the base (where the command ran, or the file's directory), then to the
/// app's working directory, then a program on PATH.
fn locate_script(script: &str, context: &Context<'_>, cwd: &Path) -> Option<PathBuf> {
    let candidates = [context.base.join(script), cwd.join(script)];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    if script.contains('/') {
        return None;
    }
    find_program(
        script,
        context.caller_env.get("PATH").map(String::as_str),
        context.base,
    )
}
