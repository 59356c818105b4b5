//! Ecosystem files on the command line: `start|reload|stop|delete ecosystem.toml`, `init` and `schema`.
//!
//! The file is read and checked here, completely, before the daemon is asked anything: if anything is
//! wrong, every problem is printed (`file:line:column: ...`) and nothing is started, stopped or changed.

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::control::expect_processes;
use super::list;
use super::start::caller_env;
use crate::client::Client;
use crate::config::file;
use crate::home::Home;
use crate::protocol::{ApplyAction, ApplyRequest, Request, Response};

/// The commented file `herdsman init` writes.
pub const TEMPLATE: &str = include_str!("ecosystem.template.toml");

/// True when a command's target is an ecosystem file rather than an app: herdsman's `*.toml`, or a PM2
/// file (`ecosystem.config.js`, a JSON file with `apps`), converted as `herdsman import` converts it.
pub fn is_file(target: &str) -> bool {
    target.ends_with(".toml") || super::import::is_pm2_file(target)
}

/// An ecosystem file's text, as TOML: a PM2 file is converted (each option that could not be mapped is
/// printed on stderr), and named in problems as `FILE (converted)`.
fn read(path: &Path) -> Result<(String, String)> {
    let shown = path.display().to_string();
    if shown.ends_with(".toml") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        return Ok((shown, text));
    }
    let converted = super::import::convert_file(path)?;
    for note in &converted.skipped {
        eprintln!("herdsman: not imported: {note}");
    }
    Ok((format!("{shown} (converted)"), converted.text))
}

/// Loads and checks an ecosystem file completely, or says every problem of it.
fn load(path: &Path, only: &[String], profile: Option<&str>) -> Result<(file::Loaded, String)> {
    let (shown, text) = read(path)?;
    let loaded =
        file::load_text(path, &shown, &text, only, profile, &caller_env()).map_err(|problems| {
            let count = problems.len();
            let plural = if count == 1 { "problem" } else { "problems" };
            let hint = if shown.ends_with("(converted)") {
                format!(
                    "\n(`herdsman import {}` prints the converted file)",
                    path.display()
                )
            } else {
                String::new()
            };
            anyhow!(
                "{}\n{count} {plural} in {shown}; nothing was changed{hint}",
                problems.join("\n"),
            )
        })?;
    Ok((loaded, text))
}

/// `start FILE --dry-run`: checks the file as `start` would and prints the TOML it stands for.
pub fn dry_run(path: &Path, only: &[String], profile: Option<&str>) -> Result<()> {
    let (loaded, text) = load(path, only, profile)?;
    print!("{text}");
    let names: Vec<&str> = loaded.apps.iter().map(|a| a.name.as_str()).collect();
    eprintln!(
        "herdsman: {} is valid: {} app(s) ({}); nothing was started",
        path.display(),
        names.len(),
        names.join(", ")
    );
    Ok(())
}

/// Loads and checks an ecosystem file (a PM2 file converted) for a command that runs its apps itself.
pub fn load_apps(path: &Path, only: &[String], profile: Option<&str>) -> Result<file::Loaded> {
    load(path, only, profile).map(|(loaded, _)| loaded)
}

/// Checks the file and asks the daemon to apply it, printing what happens to each app as it happens.
pub fn apply(
    home: &Home,
    path: &Path,
    action: ApplyAction,
    only: &[String],
    profile: Option<&str>,
) -> Result<()> {
    apply_file(home, path, action, only, profile, false)
}

pub fn apply_file(
    home: &Home,
    path: &Path,
    action: ApplyAction,
    only: &[String],
    profile: Option<&str>,
    prune: bool,
) -> Result<()> {
    if prune && !only.is_empty() {
        bail!(
            "--prune deletes the apps the file does not define; it cannot be combined with --only"
        );
    }
    let (mut loaded, _) = load(path, only, profile)?;
    let mut store_errors = Vec::new();
    if matches!(action, ApplyAction::Start | ApplyAction::Reload) {
        loaded.apps.iter().for_each(super::start::print_runner);
        store_errors = super::fleet::check_stores(&mut loaded.apps);
        if loaded.apps.is_empty() && !store_errors.is_empty() {
            bail!(store_errors.join("\n"));
        }
        for error in &store_errors {
            eprintln!("herdsman: {error}");
        }
    }
    let mut client = match action {
        ApplyAction::Stop | ApplyAction::Delete => match Client::connect(home)? {
            Some(client) => client,
            None => {
                println!("herdsman: the daemon is not running: nothing to stop");
                return Ok(());
            }
        },
        ApplyAction::Start | ApplyAction::Reload => Client::connect_or_start(home)?,
    };
    // `[daemon] metrics` first: an address the controller cannot serve stops the file here, unapplied.
    if let (Some(setting), ApplyAction::Start | ApplyAction::Reload) = (&loaded.metrics, action) {
        match client.request(&Request::SetMetrics(setting.clone()))? {
            Response::Ok => {}
            Response::Error { message, .. } => {
                bail!(
                    "{message}
[daemon] metrics in {}: nothing was changed",
                    path.display()
                )
            }
            other => bail!("unexpected answer to the metrics setting: {other:?}"),
        }
    }
    let request = Request::Apply(ApplyRequest {
        apps: loaded.apps,
        action,
        prune,
        file_apps: loaded.names,
    });
    print_apply(client.request_with_progress(&request, print_frame)?)?;
    if !store_errors.is_empty() {
        bail!(store_errors.join("\n"));
    }
    Ok(())
}

/// Prints a progress frame of an apply, reload or resurrect: a note per app, a line per worker.
pub fn print_frame(frame: &Response) {
    match frame {
        Response::Note { message } => println!("{message}"),
        Response::Progress { step } => {
            let old = step.old_pid.map_or("-".to_string(), |pid| pid.to_string());
            println!(
                "  {}:{}  pid {old} -> {}  ready after {} ms",
                step.name, step.instance, step.new_pid, step.ready_ms
            );
        }
        _ => {}
    }
}

/// Prints the final answer of an apply: the table, or the error.
pub fn print_apply(response: Response) -> Result<()> {
    match response {
        Response::Reloaded { processes, .. } => list::print(&processes, false),
        other => expect_processes(other),
    }
}

/// `herdsman init`: writes the commented starting file.
pub fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, TEMPLATE).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    println!(
        "wrote {}; start it with `herdsman start {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

/// `herdsman schema`: the JSON Schema of ecosystem files.
pub fn schema() -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&file::schema())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_template_is_a_valid_file() {
        file::parse(TEMPLATE).expect("the template parses without problems");
    }
}
