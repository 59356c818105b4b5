//! `herdsman start`: turn the flags into a [`RawApp`] and resolve it exactly as an ecosystem file's app is
//! resolved (every value checked here, before the daemon is even asked); or apply an ecosystem file; or
//! start an existing app again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::StartArgs;
use super::control::expect_processes;
use super::ecosystem;
use crate::client::Client;
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
    if !runnable(&args.script, &here, &cwd) {
        return start_existing(home, &args, &here);
    }
    let caller_env = caller_env();
    let context = Context {
        base: &here,
        caller_env: &caller_env,
        profile: None,
    };
    let spec = raw_from_args(&args)?
        .resolve(&context)
        .map_err(|problems| {
            let lines: Vec<String> = problems
                .into_iter()
                .map(|p| format!("--{}: {}", p.key.replace('_', "-"), p.message))
                .collect();
            anyhow::anyhow!(lines.join("\n"))
        })?;
    let mut client = Client::connect_or_start(home)?;
    let response = client.request(
        &StartRequest {
            spec: Box::new(spec),
        }
        .into(),
    )?;
    expect_processes(response)
}

/// The environment of this command: what the workers of an app it creates inherit.
pub fn caller_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
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
        env: BTreeMap::new(),
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
    })
}
