//! `herdsman start`: turn the flags into a [`RawApp`] and resolve it exactly as an ecosystem file's app is
//! resolved (every value checked here, before the daemon is even asked); or apply an ecosystem file; or
//! start an existing app again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::StartArgs;
use super::control::expect_processes;
use super::ecosystem;
use super::logs::Format;
use super::service;
use crate::client::Client;
use crate::config::file::Loaded;
use crate::config::{self, Context, Item, ListenAddr, RawApp, parse_duration, parse_size};
use crate::home::Home;
use crate::protocol::{ApplyAction, ErrorKind, Request, Response, Selection, StartRequest};

pub fn run(home: &Home, args: StartArgs) -> Result<()> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    if ecosystem::is_file(&args.script) {
        let path = here.join(&args.script);
        if args.dry_run {
            return ecosystem::dry_run(&path, &args.only, args.profile.as_deref());
        }
        if args.no_daemon {
            let loaded = ecosystem::load_apps(&path, &args.only, args.profile.as_deref())?;
            return service::run_loaded(home, loaded, Format::from_flags(false, false));
        }
        return ecosystem::apply(
            home,
            &path,
            ApplyAction::Start,
            &args.only,
            args.profile.as_deref(),
        );
    }
    if !args.only.is_empty() || args.profile.is_some() || args.dry_run {
        bail!(
            "--only, --env and --dry-run apply to an ecosystem file (*.toml, or PM2's *.config.js or JSON)"
        );
    }
    let cwd = args.cwd.as_ref().map_or(here.clone(), |dir| here.join(dir));
    let command = command_string(&args.script, &here, &cwd);
    if command.is_none() && !runnable(&args.script, &here, &cwd) {
        if args.no_daemon {
            bail!(
                "--no-daemon runs a script, a command or an ecosystem file in the foreground; {} is none \
                 of them (an existing app is started with `herdsman start NAME`, through the daemon)",
                here.join(&args.script).display()
            );
        }
        return start_existing(home, &args, &here);
    }
    let mut raw = raw_from_args(&args)?;
    if let Some(command) = command {
        as_shell_command(&mut raw, command, &args)?;
        check_first_word(command, &cwd)?;
    }
    let caller_env = caller_env();
    let context = Context {
        base: &here,
        caller_env: &caller_env,
        profile: None,
        fleet: Default::default(),
    };
    let spec = raw.resolve(&context).map_err(|problems| {
        let lines: Vec<String> = problems
            .into_iter()
            .map(|p| format!("--{}: {}", p.key.replace('_', "-"), p.message))
            .collect();
        anyhow::anyhow!(lines.join("\n"))
    })?;
    print_runner(&spec);
    if args.no_daemon {
        let loaded = Loaded {
            names: vec![spec.name.clone()],
            apps: vec![spec],
            metrics: None,
        };
        return service::run_loaded(home, loaded, Format::from_flags(false, false));
    }
    let mut client = Client::connect_or_start(home)?;
    if args.force {
        refuse_duplicate(&mut client, &spec.name)?;
    }
    let response = client.request(
        &StartRequest {
            spec: Box::new(spec),
        }
        .into(),
    )?;
    expect_processes(response)
}

/// Says how herdsman chose to run a script that names no interpreter (a TypeScript runner).
pub fn print_runner(spec: &config::AppSpec) {
    if let Some(runner) = &spec.runner {
        println!(
            "herdsman: {}: {} runs with {runner}",
            spec.name,
            spec.script.display()
        );
    }
}

/// The environment of this command: what the workers of an app it creates inherit.
pub fn caller_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// `-f`: PM2 would start a second copy under the same name; herdsman's names are unique, so say what to do.
fn refuse_duplicate(client: &mut Client, name: &str) -> Result<()> {
    if let Response::Processes { processes } = client.request(&Request::List { brief: true })?
        && processes.iter().any(|p| p.name == name)
    {
        bail!(
            "-f/--force: an app named '{name}' already exists, and app names are unique in herdsman, so no \
             second copy is started. Give the copy a name of its own (--name {name}-2), add workers to it \
             (`herdsman scale {name} +1`), or restart it (`herdsman restart {name}`)"
        );
    }
    Ok(())
}

/// A command string as PM2 takes one (`"npm run start"`): a first argument with a space in it that is not
/// a file. It is run by `/bin/sh -c`.
fn command_string<'a>(script: &'a str, here: &Path, cwd: &Path) -> Option<&'a str> {
    let is_file = here.join(script).is_file() || cwd.join(script).is_file();
    (!is_file && script.trim().contains(char::is_whitespace)).then(|| script.trim())
}

/// Makes the app run `/bin/sh -c COMMAND` (arguments after `--` are appended to the command, quoted), and
/// names it after the command's first word unless `--name` is given.
fn as_shell_command(raw: &mut RawApp, command: &str, args: &StartArgs) -> Result<()> {
    if args.interpreter.is_some() || !args.interpreter_args.is_empty() {
        bail!(
            "--interpreter and --interpreter-args apply to a script; '{command}' is a command, run by /bin/sh \
             (put the interpreter in the command itself)"
        );
    }
    let mut line = command.to_string();
    for arg in &args.args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    if raw.name.is_none() {
        let first = command.split_whitespace().next().unwrap_or("sh");
        raw.name = Some(Item::flag(config::default_name(Path::new(first))));
    }
    raw.script = Some(Item::flag(SHELL.to_string()));
    raw.interpreter = Some(Item::flag("none".to_string()));
    raw.args = Some(Item::flag(vec!["-c".to_string(), line]));
    Ok(())
}

/// A command whose first word is a program that is nowhere to be found would only crash-loop with `sh: 1:
/// npmx: not found` in its log: say so now. Only a plain word is checked (not a builtin, an assignment,
/// a path with shell syntax in it).
fn check_first_word(command: &str, cwd: &Path) -> Result<()> {
    const BUILTINS: &[&str] = &[
        ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "echo", "eval",
        "exec", "exit", "export", "false", "fg", "for", "getopts", "hash", "if", "jobs", "kill",
        "local", "printf", "pwd", "read", "readonly", "return", "set", "shift", "test", "times",
        "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
        "{", "!",
    ];
    let Some(first) = command.split_whitespace().next() else {
        return Ok(());
    };
    let plain = first
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./+@".contains(&b));
    if !plain || BUILTINS.contains(&first) {
        return Ok(());
    }
    let path = std::env::var("PATH").ok();
    if config::find_program(first, path.as_deref(), cwd).is_some() {
        return Ok(());
    }
    let place = if first.contains('/') {
        format!("{} is not an executable file", cwd.join(first).display())
    } else {
        format!("'{first}' is not a program on PATH")
    };
    bail!("the command '{command}' cannot run: {place}")
}

/// The shell that runs command strings.
const SHELL: &str = "/bin/sh";

/// An argument as one word for `sh`: as it is when it is plain, otherwise in single quotes.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// True when the argument is a file (here or in the app's directory) or a program on PATH.
fn runnable(script: &str, here: &Path, cwd: &Path) -> bool {
    here.join(script).is_file()
        || cwd.join(script).is_file()
        || (!script.contains('/')
            && config::find_program(script, std::env::var("PATH").ok().as_deref(), here).is_some())
}

/// `start NAME`: there is no such file, so it may name an app the daemon knows.
fn start_existing(home: &Home, args: &StartArgs, here: &Path) -> Result<()> {
    let missing = || format!("script not found: {}", here.join(&args.script).display());
    if args.script.contains('/') {
        bail!(missing());
    }
    let Some(mut client) = Client::connect(home)? else {
        bail!(missing())
    };
    let target = Selection::parse(&args.script);
    let request = Request::StartExisting { target };
    let response = client.request_with_progress(&request, |frame| {
        if let Response::Note { message } = frame {
            println!("{message}");
        }
    })?;
    match response {
        Response::Error {
            kind: ErrorKind::NotFound,
            ..
        } => bail!(
            "{} (and no app or id '{}' is known)",
            missing(),
            args.script
        ),
        response => expect_processes(response),
    }
}

/// The flags as an app's options; each value is parsed here, so a bad one names its flag.
fn raw_from_args(args: &StartArgs) -> Result<RawApp> {
    fn flag<T>(value: T) -> Item<T> {
        Item::flag(value)
    }
    let duration =
        |text: &Option<String>, name: &str| -> Result<Option<Item<std::time::Duration>>> {
            text.as_deref()
                .map(|t| {
                    parse_duration(t)
                        .map(flag)
                        .with_context(|| format!("--{name}"))
                })
                .transpose()
        };
    let size = |text: &Option<String>, name: &str| -> Result<Option<Item<u64>>> {
        text.as_deref()
            .map(|t| parse_size(t).map(flag).with_context(|| format!("--{name}")))
            .transpose()
    };
    let listen = args
        .listen
        .iter()
        .map(|text| text.parse::<ListenAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("--listen")?;
    let list = |values: &Vec<String>| (!values.is_empty()).then(|| flag(values.clone()));
    Ok(RawApp {
        at: None,
        // A fleet job needs the file's [fleet] table: defined in a file only.
        scope: None,
        name: args.name.clone().map(flag),
        script: Some(flag(args.script.clone())),
        args: list(&args.args),
        interpreter: args.interpreter.clone().map(flag),
        interpreter_args: list(&args.interpreter_args),
        cwd: args
            .cwd
            .as_ref()
            .map(|c| flag(c.to_string_lossy().into_owned())),
        instances: args
            .instances
            .as_deref()
            .map(|i| i.parse().map(flag).context("--instances"))
            .transpose()?,
        listen: (!listen.is_empty()).then(|| flag(listen)),
        env: Default::default(),
        env_profiles: BTreeMap::new(),
        kill_signal: args
            .kill_signal
            .as_deref()
            .map(|s| s.parse().map(flag).context("--kill-signal"))
            .transpose()?,
        kill_timeout: duration(&args.kill_timeout, "kill-timeout")?,
        wait_ready: args.wait_ready.then(|| flag(true)),
        listen_timeout: duration(&args.listen_timeout, "listen-timeout")?,
        min_uptime: duration(&args.min_uptime, "min-uptime")?,
        max_restarts: args.max_restarts.map(flag),
        restart_backoff: duration(&args.restart_backoff, "restart-backoff")?,
        restart_backoff_max: duration(&args.restart_backoff_max, "restart-backoff-max")?,
        autorestart: args.no_autorestart.then(|| flag(false)),
        stop_exit_codes: (!args.stop_exit_codes.is_empty())
            .then(|| flag(args.stop_exit_codes.clone())),
        out_file: args.out_file.clone().map(flag),
        error_file: args.error_file.clone().map(flag),
        increment_var: args.increment_var.clone().map(flag),
        depends_on: list(&args.depends_on),
        user: args.user.clone().map(flag),
        group: args.group.clone().map(flag),
        no_overlap: args.no_overlap.then(|| flag(true)),
        max_memory_restart: size(&args.max_memory_restart, "max-memory-restart")?,
        log_max_size: size(&args.log_max_size, "log-max-size")?,
        log_keep: args.log_keep.map(flag),
        env_file: list(&args.env_file),
        watch: args.watch.as_ref().map(|paths| {
            let paths: Vec<String> = paths.iter().filter(|p| !p.is_empty()).cloned().collect();
            flag(if paths.is_empty() {
                config::WatchValue::Flag(true)
            } else {
                config::WatchValue::Paths(paths)
            })
        }),
        ignore_watch: {
            let patterns: Vec<String> = args
                .ignore_watch
                .iter()
                .flat_map(|p| p.split([',', ' ']))
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            (!patterns.is_empty()).then(|| flag(patterns))
        },
        watch_delay: duration(&args.watch_delay, "watch-delay")?,
        log_prefix: args.no_log_prefix.then(|| flag(false)),
        log_format: args.log_format.as_deref().map(|f| {
            flag(if f == "json" {
                crate::logs::LogStyle::Json
            } else {
                crate::logs::LogStyle::Text
            })
        }),
        log_date_format: args.log_date_format.clone().map(flag),
        log_timezone: args
            .log_timezone
            .as_deref()
            .map(|z| z.parse().map(flag).map_err(anyhow::Error::msg))
            .transpose()
            .context("--log-timezone")?,
        log_rotate: args
            .log_rotate
            .as_deref()
            .map(|r| r.parse().map(flag).map_err(anyhow::Error::msg))
            .transpose()
            .context("--log-rotate")?,
        log_compress: args.log_compress.then(|| flag(true)),
        schedule: args.schedule.clone().map(flag),
        timezone: args.timezone.clone().map(flag),
        overlap: args
            .overlap
            .as_deref()
            .map(|o| {
                config::job::parse_overlap(o)
                    .map(flag)
                    .map_err(anyhow::Error::msg)
            })
            .transpose()
            .context("--overlap")?,
        catch_up: args
            .catch_up
            .as_deref()
            .map(|c| {
                config::job::parse_catch_up(c)
                    .map(flag)
                    .map_err(anyhow::Error::msg)
            })
            .transpose()
            .context("--catch-up")?,
        starting_deadline: duration(&args.starting_deadline, "starting-deadline")?,
        jitter: duration(&args.jitter, "jitter")?,
        timeout: duration(&args.timeout, "timeout")?,
        retries: args.retries.map(flag),
        retry_backoff: duration(&args.retry_backoff, "retry-backoff")?,
        history: args.history.map(flag),
        on_failure: args.on_failure.clone().map(flag),
        cron_restart: args.cron_restart.clone().map(flag),
        balance: args
            .balance
            .as_deref()
            .map(|b| b.parse().map(flag).map_err(anyhow::Error::msg))
            .transpose()
            .context("--balance")?,
        watchdog: duration(&args.watchdog, "watchdog")?,
        watchdog_signal: args
            .watchdog_signal
            .as_deref()
            .map(|s| s.parse().map(flag).context("--watchdog-signal"))
            .transpose()?,
        on_event: if args.on_event.is_empty() {
            None
        } else {
            let hooks = args
                .on_event
                .iter()
                .map(|entry| match entry.split_once('=') {
                    Some((event, command)) => {
                        Ok((event.trim().to_string(), flag(command.to_string())))
                    }
                    None => anyhow::bail!("--on-event {entry}: expected EVENT=COMMAND"),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(flag(hooks))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_after_a_command_string_are_quoted_for_sh() {
        assert_eq!(shell_quote("start"), "start");
        assert_eq!(shell_quote("--port=3000"), "--port=3000");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    /// `start ARGS...` as far as the app's definition: the spec, or each problem as the CLI prints it.
    fn start(flags: &[&str]) -> Result<config::AppSpec, String> {
        use clap::Parser as _;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("job.js"), "").expect("write");
        let cli =
            super::super::Cli::try_parse_from(["herdsman", "start", "job.js"].iter().chain(flags))
                .map_err(|e| e.to_string())?;
        let super::super::Command::Start(args) = cli.command else {
            return Err("not start".into());
        };
        let raw = raw_from_args(&args).map_err(|e| format!("{e:#}"))?;
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let context = Context {
            base: dir.path(),
            caller_env: &env,
            profile: None,
            fleet: Default::default(),
        };
        raw.resolve(&context).map_err(|problems| {
            let lines: Vec<String> = problems
                .into_iter()
                .map(|p| format!("--{}: {}", p.key.replace('_', "-"), p.message))
                .collect();
            lines.join("\n")
        })
    }

    #[test]
    fn balance_flag_sets_the_mode_and_needs_a_tcp_listen() {
        let spec = start(&["--listen", "3000", "--balance", "sticky"]).expect("sticky");
        assert_eq!(spec.balance, config::Balance::Sticky);
        assert_eq!(
            start(&["--listen", "3000"]).expect("default").balance,
            config::Balance::Shared
        );
        let error =
            start(&["--listen", "unix:/tmp/x.sock", "--balance", "hash"]).expect_err("unix socket");
        assert!(
            error.starts_with("--balance: balance \"hash\" needs TCP addresses"),
            "{error}"
        );
        assert!(start(&["--listen", "3000", "--balance", "ip_hash"]).is_err());
    }

    #[test]
    fn job_flags_make_a_job() {
        let spec = start(&[
            "--schedule",
            "*/15 * * * *",
            "--timezone",
            "America/New_York",
            "--overlap",
            "allow",
            "--catch-up",
            "none",
            "--starting-deadline",
            "10m",
            "--jitter",
            "30s",
            "--timeout",
            "1h",
            "--retries",
            "2",
            "--retry-backoff",
            "5s",
            "--history",
            "100",
            "--on-failure",
            "curl -fsS https://example.com/alert",
        ])
        .expect("valid");
        let job = spec.job.expect("a job");
        assert_eq!(job.schedule, "*/15 * * * *");
        assert_eq!(job.timezone.as_deref(), Some("America/New_York"));
        assert_eq!(job.overlap, config::job::Overlap::Allow);
        assert_eq!(job.catch_up, config::job::CatchUp::None);
        assert_eq!(job.starting_deadline_ms, Some(600_000));
        assert_eq!(job.jitter_ms, 30_000);
        assert_eq!(job.timeout_ms, Some(3_600_000));
        assert_eq!((job.retries, job.retry_backoff_ms), (2, 5_000));
        assert_eq!(job.history, 100);
        assert_eq!(
            job.on_failure.as_deref(),
            Some("curl -fsS https://example.com/alert")
        );
        let spec = start(&["--cron-restart", "0 4 * * *", "-i", "2"]).expect("valid");
        assert_eq!(
            spec.cron_restart.map(|c| c.schedule).as_deref(),
            Some("0 4 * * *")
        );
        let spec = start(&["--cron", "@daily"]).expect("PM2's alias");
        assert!(spec.cron_restart.is_some());
    }

    #[test]
    fn job_flags_are_checked_and_name_their_flag() {
        let error = start(&["--schedule", "0 3 * * 8"]).expect_err("bad day of week");
        assert!(
            error.starts_with("--schedule: invalid schedule `0 3 * * 8`")
                && error.contains("day-of-week"),
            "{error}"
        );
        let error = start(&["--schedule", "@daily", "--timezone", "Nowhere/Land"])
            .expect_err("unknown zone");
        assert!(
            error.starts_with("--timezone: unknown time zone"),
            "{error}"
        );
        let error = start(&["--schedule", "@daily", "--listen", "3000"]).expect_err("listen");
        assert!(error.starts_with("--listen: a scheduled job"), "{error}");
        let error = start(&["--schedule", "@daily", "-i", "max"]).expect_err("instances");
        assert!(error.starts_with("--instances: a scheduled job"), "{error}");
        let error = start(&["--retries", "3"]).expect_err("no schedule");
        assert!(
            error.starts_with("--retries: is only for a scheduled job: add `schedule`"),
            "{error}"
        );
        let error = start(&["--schedule", "@daily", "--timeout", "0"]).expect_err("zero");
        assert!(
            error.starts_with("--timeout: must be more than 0"),
            "{error}"
        );
        let error = start(&["--schedule", "@daily", "--jitter", "soon"]).expect_err("bad duration");
        assert!(error.starts_with("--jitter"), "{error}");
        assert!(
            start(&["--overlap", "sometimes"]).is_err(),
            "clap refuses it"
        );
    }
}
