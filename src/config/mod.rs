//! What an app is: [`AppSpec`], the one description the CLI builds, the daemon runs, and (later) the ecosystem
//! file and the dump hold. Everything in it is resolved: paths are absolute and defaults are filled in.

pub mod alerting;
mod deps;
pub mod dotenv;
pub mod file;
pub mod fleet;
pub mod job;
mod raw;
pub mod typescript;
mod values;
pub mod watch;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use deps::find_cycle;
pub use raw::{Context, Item, Location, Problem, RawApp};
pub use values::{
    Instances, ListenAddr, SignalName, ValueError, check_name, parse_duration, parse_size,
};
pub use watch::{WatchSpec, WatchValue};

/// Defaults, PM2's where PM2 has one.
pub mod defaults {
    /// PM2's `kill_signal`.
    pub const KILL_SIGNAL: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGINT;
    /// PM2's `kill_timeout`.
    pub const KILL_TIMEOUT_MS: u64 = 1600;
    /// PM2's `min_uptime`.
    pub const MIN_UPTIME_MS: u64 = 1000;
    /// PM2's `exp_backoff_restart_delay` starting value.
    pub const RESTART_BACKOFF_MS: u64 = 100;
    /// PM2 caps its exponential backoff at 15 s.
    pub const RESTART_BACKOFF_MAX_MS: u64 = 15_000;
    /// PM2's `listen_timeout`.
    pub const LISTEN_TIMEOUT_MS: u64 = 3000;
    /// pm2-logrotate's `max_size`.
    pub const LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
    /// Rotated files kept per log.
    pub const LOG_KEEP: u32 = 5;
}

/// One app: what to run, how many, on which sockets, and how to treat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// Absolute path of the script or program.
    pub script: PathBuf,
    pub args: Vec<String>,
    /// `None`: chosen by the script's extension; `Some("none")`: the script is executed itself.
    pub interpreter: Option<String>,
    /// Absolute working directory of every worker.
    pub cwd: PathBuf,
    pub instances: Instances,
    /// Empty: fork mode. Otherwise cluster mode; the sockets reach each worker as fds 3, 4, ...
    pub listen: Vec<ListenAddr>,
    /// The complete environment of the workers, before herdsman adds its own variables. Shared: the apps
    /// of one file or command usually have the same, and the daemon keeps it once for all of them: each is
    /// shared as it is decoded, so a request of a thousand apps never holds a thousand copies at once.
    #[serde(deserialize_with = "decode_shared_env")]
    pub env: Arc<BTreeMap<String, String>>,
    pub kill_signal: SignalName,
    pub kill_timeout_ms: u64,
    pub min_uptime_ms: u64,
    /// `None`: retried forever.
    pub max_restarts: Option<u32>,
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Only an explicit signal from the app makes a worker ready (sd_notify `READY=1`, Node's
    /// `process.send('ready')`, the Node preload's listening event), within `listen_timeout_ms`.
    pub wait_ready: bool,
    pub listen_timeout_ms: u64,
    /// Only one copy of each worker may run at a time: a reload stops the old one before it starts the new.
    pub no_overlap: bool,
    /// Arguments for the interpreter, before the script.
    pub interpreter_args: Vec<String>,
    /// The variables the app's definition sets (its `env` and the chosen `env_<profile>`), already part of
    /// `env`. Comparing definitions compares these, not the caller's whole environment.
    pub defined_env: BTreeMap<String, String>,
    /// Restart a worker that exits unexpectedly (PM2's `autorestart`).
    pub autorestart: bool,
    /// Exit codes that mean the worker finished: it is left stopped, not restarted.
    pub stop_exit_codes: Vec<i32>,
    /// Where stdout and stderr go; `None`: `HERDSMAN_HOME/logs/<name>-out.log` and `-err.log`.
    pub out_file: Option<PathBuf>,
    pub error_file: Option<PathBuf>,
    /// A variable whose value counts up per instance (PM2's `increment_var`), for apps that cannot share a
    /// socket: instance `i` gets the app's value plus `i`.
    pub increment_var: Option<String>,
    /// Apps that must be ready before this one starts; it is stopped before them.
    pub depends_on: Vec<String>,
    /// Run the workers as this user and group (the daemon must run as root).
    pub user: Option<String>,
    pub group: Option<String>,
    /// Replace a worker whose memory (its whole process group) stays above this many bytes.
    #[serde(default)]
    pub max_memory_restart: Option<u64>,
    /// Rotate a log file once it is larger than this; 0: never.
    #[serde(default = "default_log_max_size")]
    pub log_max_size: u64,
    /// Rotated files kept per log.
    #[serde(default = "default_log_keep")]
    pub log_keep: u32,
    // ----- languages: env files, runners -----
    /// The `.env` files read into `env` and `defined_env` when the app was defined, in order (absolute).
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    /// How herdsman chose to run a script that has no interpreter of its own (a TypeScript runner), for
    /// `describe`; `interpreter` and `interpreter_args` already carry the choice.
    #[serde(default)]
    pub runner: Option<String>,
    /// Watch mode: reload the app (new workers ready first) when its files change; `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<Box<WatchSpec>>,
    /// How each line is written to the log files (`log_prefix`, `log_format`, `log_date_format`,
    /// `log_timezone`).
    #[serde(default)]
    pub log_lines: crate::logs::LineFormat,
    /// Also rotate the logs at the start of each hour or day (`log_rotate`).
    #[serde(default)]
    pub log_rotate: Option<crate::logs::RotateEvery>,
    /// gzip rotated log files (`log_compress`).
    #[serde(default)]
    pub log_compress: bool,
    // ----- scheduling -----
    /// A scheduled job (`schedule` and its options): one process per run, never restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<job::JobSpec>>,
    /// Reload the app on this schedule (PM2's `cron_restart`, as a zero-downtime reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_restart: Option<Box<job::CronRestart>>,
    // ----- balancing -----
    /// How new connections are spread over the workers (`balance`): one shared socket, or one socket per
    /// worker slot chosen by the kernel (see `daemon/balance/`).
    #[serde(default, skip_serializing_if = "Balance::is_shared")]
    pub balance: Balance,
    // ----- knowing when something is wrong -----
    /// A worker that sends no `WATCHDOG=1` for this long is hung and replaced; `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<alerting::Watchdog>,
    /// Commands run for events (`on_event`), by event name (see `alerting::HOOK_EVENTS`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_event: alerting::Hooks,
}

/// How an app's new connections reach its workers (`balance`).
type Env = BTreeMap<String, String>;

/// `env`, or an equal environment given out recently: the apps of one file or command usually have the
/// same (the caller's), kept once instead of once per app.
pub fn shared_env(env: Arc<Env>) -> Arc<Env> {
    use std::sync::Weak;
    thread_local! {
        /// The environments given out last.
        static RECENT: std::cell::RefCell<Vec<Weak<Env>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        recent.retain(|weak| weak.strong_count() > 0);
        if let Some(same) = recent
            .iter()
            .filter_map(Weak::upgrade)
            .find(|known| Arc::ptr_eq(known, &env) || **known == *env)
        {
            return same;
        }
        if recent.len() >= 8 {
            recent.remove(0);
        }
        recent.push(Arc::downgrade(&env));
        env
    })
}

fn decode_shared_env<'de, D: serde::Deserializer<'de>>(decoder: D) -> Result<Arc<Env>, D::Error> {
    Env::deserialize(decoder).map(|env| shared_env(Arc::new(env)))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// One socket shared by every worker: whichever worker accepts first takes the connection.
    #[default]
    Shared,
    /// One SO_REUSEPORT socket per worker slot; the kernel's hash of each connection picks the socket.
    Hash,
    /// One SO_REUSEPORT socket per worker slot; a hash of the client's address picks it, so one client
    /// always reaches the same worker.
    Sticky,
}

impl Balance {
    pub const NAMES: [&'static str; 3] = ["shared", "hash", "sticky"];

    pub fn is_shared(&self) -> bool {
        *self == Balance::Shared
    }

    /// One socket per worker slot (`hash`, `sticky`).
    pub fn per_slot(self) -> bool {
        !self.is_shared()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Shared => "shared",
            Balance::Hash => "hash",
            Balance::Sticky => "sticky",
        }
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        match s {
            "shared" => Ok(Balance::Shared),
            "hash" => Ok(Balance::Hash),
            "sticky" => Ok(Balance::Sticky),
            other => Err(format!(
                "invalid balance '{other}': expected \"shared\", \"hash\" or \"sticky\""
            )),
        }
    }
}

fn default_log_max_size() -> u64 {
    defaults::LOG_MAX_SIZE
}

fn default_log_keep() -> u32 {
    defaults::LOG_KEEP
}

impl AppSpec {
    /// The same app by definition: everything but the environment inherited from the caller.
    pub fn same_definition(&self, other: &AppSpec) -> bool {
        let strip = |spec: &AppSpec| AppSpec {
            env: Arc::default(),
            ..spec.clone()
        };
        strip(self) == strip(other)
    }
}

/// The interpreter a script gets from its extension, as PM2 chooses it.
pub fn interpreter_for(script: &Path) -> Option<&'static str> {
    match script.extension().and_then(OsStr::to_str) {
        Some("js" | "mjs" | "cjs") => Some("node"),
        Some("py") => Some("python3"),
        Some("sh") => Some("bash"),
        _ => None,
    }
}

/// The name an app gets when none is given: the script's file name without its extension.
pub fn default_name(script: &Path) -> String {
    script
        .file_stem()
        .and_then(OsStr::to_str)
        .unwrap_or("app")
        .to_string()
}

/// Errors turning a spec into a command line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("interpreter '{0}' not found on PATH")]
    InterpreterNotFound(String),
}

/// The program to execute and its argv (argv[0] included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub argv: Vec<String>,
}

impl AppSpec {
    /// The interpreter in effect, if any (`None` when the script is executed itself).
    pub fn effective_interpreter(&self) -> Option<&str> {
        match self.interpreter.as_deref() {
            Some("none") => None,
            Some(other) => Some(other),
            None => interpreter_for(&self.script),
        }
    }

    /// True when the workers run under Node (so the listen preload applies).
    pub fn is_node(&self) -> bool {
        self.effective_interpreter()
            .and_then(|i| Path::new(i).file_name())
            .and_then(OsStr::to_str)
            .is_some_and(|name| name == "node" || name.starts_with("node"))
    }

    /// Resolves the interpreter on the app's PATH and builds the argv.
    pub fn command_line(&self) -> Result<CommandLine, CommandError> {
        let script = self.script.to_string_lossy().into_owned();
        match self.effective_interpreter() {
            None => {
                let mut argv = vec![script];
                argv.extend(self.args.iter().cloned());
                Ok(CommandLine {
                    program: self.script.clone(),
                    argv,
                })
            }
            Some(interpreter) => {
                let program = find_program(
                    interpreter,
                    self.env.get("PATH").map(String::as_str),
                    &self.cwd,
                )
                .ok_or_else(|| CommandError::InterpreterNotFound(interpreter.to_string()))?;
                let mut argv = vec![interpreter.to_string()];
                argv.extend(self.interpreter_args.iter().cloned());
                argv.push(script);
                argv.extend(self.args.iter().cloned());
                Ok(CommandLine { program, argv })
            }
        }
    }
}

/// Finds an executable the way a shell does: a name with a slash is a path (relative to `cwd`), any other
/// name is looked up on `path`.
pub fn find_program(name: &str, path: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let candidate = cwd.join(name);
        return executable(&candidate).then_some(candidate);
    }
    let path = path.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| cwd.join(dir).join(name))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, interpreter: Option<&str>) -> AppSpec {
        AppSpec {
            name: "t".into(),
            script: script.into(),
            args: vec!["--flag".into()],
            interpreter: interpreter.map(str::to_string),
            cwd: "/".into(),
            instances: Instances::Count(1),
            listen: vec![],
            env: Arc::new(BTreeMap::from([(
                "PATH".to_string(),
                "/usr/bin:/bin".to_string(),
            )])),
            kill_signal: SignalName(nix::sys::signal::Signal::SIGINT),
            kill_timeout_ms: defaults::KILL_TIMEOUT_MS,
            min_uptime_ms: defaults::MIN_UPTIME_MS,
            max_restarts: None,
            restart_backoff_ms: defaults::RESTART_BACKOFF_MS,
            restart_backoff_max_ms: defaults::RESTART_BACKOFF_MAX_MS,
            wait_ready: false,
            listen_timeout_ms: defaults::LISTEN_TIMEOUT_MS,
            no_overlap: false,
            interpreter_args: vec![],
            defined_env: BTreeMap::new(),
            autorestart: true,
            stop_exit_codes: vec![],
            out_file: None,
            error_file: None,
            increment_var: None,
            depends_on: vec![],
            user: None,
            group: None,
            max_memory_restart: None,
            log_max_size: defaults::LOG_MAX_SIZE,
            log_keep: defaults::LOG_KEEP,
            env_files: vec![],
            runner: None,
            watch: None,
            log_lines: Default::default(),
            log_rotate: None,
            log_compress: false,
            job: None,
            cron_restart: None,
            balance: Balance::Shared,
            watchdog: None,
            on_event: BTreeMap::new(),
        }
    }

    #[test]
    fn interpreter_follows_the_extension_and_can_be_overridden() {
        assert_eq!(
            spec("/a/app.js", None).effective_interpreter(),
            Some("node")
        );
        assert_eq!(
            spec("/a/app.mjs", None).effective_interpreter(),
            Some("node")
        );
        assert_eq!(
            spec("/a/app.py", None).effective_interpreter(),
            Some("python3")
        );
        assert_eq!(
            spec("/a/run.sh", None).effective_interpreter(),
            Some("bash")
        );
        assert_eq!(
            spec("/usr/bin/gunicorn", None).effective_interpreter(),
            None
        );
        assert_eq!(
            spec("/a/app.js", Some("none")).effective_interpreter(),
            None
        );
        assert_eq!(
            spec("/a/app.py", Some("pypy3")).effective_interpreter(),
            Some("pypy3")
        );
        assert!(spec("/a/app.js", None).is_node());
        assert!(!spec("/a/app.py", None).is_node());
    }

    #[test]
    fn command_line_puts_the_script_after_the_interpreter() {
        let line = spec("/a/run.sh", None)
            .command_line()
            .expect("bash is on PATH");
        assert!(line.program.ends_with("bash"));
        assert_eq!(line.argv, ["bash", "/a/run.sh", "--flag"]);
        let direct = spec("/bin/true", None)
            .command_line()
            .expect("no interpreter needed");
        assert_eq!(direct.program, PathBuf::from("/bin/true"));
        assert_eq!(direct.argv, ["/bin/true", "--flag"]);
        assert!(
            spec("/a/x.py", Some("no-such-interpreter"))
                .command_line()
                .is_err()
        );
    }

    #[test]
    fn default_name_is_the_file_stem() {
        assert_eq!(default_name(Path::new("/srv/app.js")), "app");
        assert_eq!(default_name(Path::new("/usr/bin/gunicorn")), "gunicorn");
    }
}
