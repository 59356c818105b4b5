//! `herdsman start`: turn the flags into an [`AppSpec`] (every value checked here, before the daemon is
//! even asked), or start an existing app again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::StartArgs;
use super::control::expect_processes;
use crate::client::Client;
use crate::config::{self, AppSpec, Instances, ListenAddr, SignalName, defaults, parse_duration};
use crate::home::Home;
use crate::protocol::{ErrorKind, Request, Response, Selection, StartRequest};

pub fn run(home: &Home, args: StartArgs) -> Result<()> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let cwd = match &args.cwd {
        Some(dir) => here.join(dir),
        None => here.clone(),
    };
    match locate_script(&args.script, &here, &cwd) {
        Some(script) => {
            let spec = build_spec(&args, script, cwd)?;
            let mut client = Client::connect_or_start(home)?;
            let response = client.request(
                &StartRequest {
                    spec: Box::new(spec),
                }
                .into(),
            )?;
            expect_processes(response)
        }
        None => start_existing(home, &args, &here),
    }
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
    match client.request(&Request::StartExisting { target })? {
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

/// The script as a path: relative to where `start` ran, then to `--cwd`, then a program on PATH.
fn locate_script(script: &str, here: &Path, cwd: &Path) -> Option<PathBuf> {
    let candidates = [here.join(script), cwd.join(script)];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    if script.contains('/') {
        return None;
    }
    config::find_program(script, std::env::var("PATH").ok().as_deref(), here)
}

fn build_spec(args: &StartArgs, script: PathBuf, cwd: PathBuf) -> Result<AppSpec> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| config::default_name(&script));
    config::check_name(&name)?;
    if !cwd.is_dir() {
        bail!("working directory not found: {}", cwd.display());
    }
    let instances: Instances = args.instances.parse().context("-i")?;
    let listen = args
        .listen
        .iter()
        .map(|text| text.parse::<ListenAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("--listen")?;
    let kill_signal: SignalName = match &args.kill_signal {
        Some(text) => text.parse().context("--kill-signal")?,
        None => SignalName(defaults::KILL_SIGNAL),
    };
    let millis = |text: &Option<String>, flag: &str, default: u64| -> Result<u64> {
        match text {
            Some(text) => Ok(parse_duration(text)
                .with_context(|| flag.to_string())?
                .as_millis() as u64),
            None => Ok(default),
        }
    };
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let spec = AppSpec {
        name,
        script,
        args: args.args.clone(),
        interpreter: args.interpreter.clone(),
        cwd,
        instances,
        listen,
        env,
        kill_signal,
        kill_timeout_ms: millis(
            &args.kill_timeout,
            "--kill-timeout",
            defaults::KILL_TIMEOUT_MS,
        )?,
        min_uptime_ms: millis(&args.min_uptime, "--min-uptime", defaults::MIN_UPTIME_MS)?,
        max_restarts: args.max_restarts,
        restart_backoff_ms: millis(
            &args.restart_backoff,
            "--restart-backoff",
            defaults::RESTART_BACKOFF_MS,
        )?,
        restart_backoff_max_ms: millis(
            &args.restart_backoff_max,
            "--restart-backoff-max",
            defaults::RESTART_BACKOFF_MAX_MS,
        )?,
        wait_ready: args.wait_ready,
        listen_timeout_ms: millis(
            &args.listen_timeout,
            "--listen-timeout",
            defaults::LISTEN_TIMEOUT_MS,
        )?,
        no_overlap: args.no_overlap,
    };
    if let Err(e) = spec.command_line() {
        bail!("app '{}': {e}", spec.name);
    }
    Ok(spec)
}
