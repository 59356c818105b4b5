//! Running where production runs: `daemon`, `save`/`resurrect`, `startup`/`unstartup` (systemd),
//! `run` (the container entry point) and `completions`.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::CommandFactory;

use super::Cli;
use super::ecosystem::print_apply;
use super::logs::{Format, POLL, Printer, sources};
use super::start::caller_env;
use crate::client::Client;
use crate::config::file;
use crate::daemon::{self, Options};
use crate::home::Home;
use crate::protocol::{ApplyAction, ApplyRequest, Request, Response};
use crate::systemd::{self, Notifier, UnitOptions};

/// `herdsman daemon`: in the foreground (what systemd and containers run), or started in the background.
pub fn daemon(
    home: &Home,
    foreground: bool,
    resurrect: bool,
    handover_fd: Option<i32>,
) -> Result<()> {
    if foreground {
        // The daemon outlives whatever ran it: it keeps none of its caller's descriptors but 0-2 (a lock
        // or a pipe the caller holds is not the daemon's to keep), and none reach the keeper or a worker.
        // Nothing herdsman opened is open yet; nothing is passed to the daemon this way, except by a keeper
        // re-executing itself, which passes exactly what it keeps (and everything else was close-on-exec).
        if handover_fd.is_none() {
            // Sockets systemd kept in its store for a keeper it restarts come first, from fd 3.
            let passed = crate::daemon::fdstore::take_passed();
            crate::descriptors::close_from(3 + passed as i32);
        }
        let options = Options {
            resurrect,
            exit_when_errored: false,
            notifier: Notifier::from_env(),
            in_process: false,
            handover_fd,
        };
        let outcome = daemon::run(home.clone(), options)?;
        if outcome.failed {
            bail!("the daemon stopped, but some apps could not be started; see the log above");
        }
        return Ok(());
    }
    let mut client = Client::connect_or_start(home)?;
    println!(
        "herdsman: daemon running (pid {}) for {}",
        client.hello.pid,
        home.root().display()
    );
    if resurrect {
        print_apply(client.request_with_progress(&Request::Resurrect, print_progress)?)?;
    }
    Ok(())
}

fn print_progress(frame: &Response) {
    super::ecosystem::print_frame(frame);
}

/// `herdsman save`: every app's spec to the dump.
pub fn save(home: &Home) -> Result<()> {
    let Some(mut client) = Client::connect(home)? else {
        bail!(
            "no daemon is running for {}: nothing to save (the dump was left as it is)",
            home.root().display()
        );
    };
    match client.request(&Request::Save)? {
        Response::Processes { processes } => {
            let apps: std::collections::BTreeSet<&str> =
                processes.iter().map(|p| p.name.as_str()).collect();
            println!("saved {} app(s) to {}", apps.len(), home.dump().display());
            Ok(())
        }
        Response::Error { message, .. } => bail!(message),
        _ => bail!("unexpected answer to save; is the CLI the same version as the daemon?"),
    }
}

/// `herdsman resurrect`: start the dump's apps that do not run. A dump that cannot be read is refused
/// before a daemon is started for it.
pub fn resurrect(home: &Home) -> Result<()> {
    match crate::daemon::persist::load(&home.dump()) {
        Ok(Some(_)) => {}
        Ok(None) => bail!(
            "no dump at {}: save one with `herdsman save`",
            home.dump().display()
        ),
        Err(message) => bail!(message),
    }
    let mut client = Client::connect_or_start(home)?;
    print_apply(client.request_with_progress(&Request::Resurrect, print_progress)?)
}

fn current_user() -> Result<nix::unistd::User> {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("cannot find the name of user {uid}"))
}

/// `herdsman startup`: print (or install) a systemd unit for this user's home.
pub fn startup(home: &Home, user_unit: bool, install: bool) -> Result<()> {
    let executable = std::env::current_exe().context("cannot find the herdsman executable")?;
    let user = current_user()?;
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let unit = systemd::render_unit(&UnitOptions {
        executable: &executable,
        home: home.root(),
        user: (!user_unit).then_some(user.name.as_str()),
        path: &path,
    });
    if !install {
        print!("{unit}");
        eprintln!(
            "# install it with `herdsman startup{} --install`; `herdsman save` first, so it has apps to resurrect",
            if user_unit { " --user" } else { "" }
        );
        return Ok(());
    }
    let target = systemd::unit_path(user_unit, &user.name, &user.dir);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&target, unit).with_context(|| format!("cannot write {}", target.display()))?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("herdsman.service");
    systemctl(user_unit, &["daemon-reload"])?;
    systemctl(user_unit, &["enable", name])?;
    println!(
        "installed and enabled {}; start it now with `systemctl{} start {name}`",
        target.display(),
        if user_unit { " --user" } else { "" }
    );
    Ok(())
}

/// `herdsman unstartup`: disable and remove the unit.
pub fn unstartup(user_unit: bool) -> Result<()> {
    let user = current_user()?;
    let target = systemd::unit_path(user_unit, &user.name, &user.dir);
    if !target.exists() {
        bail!("no unit at {}: nothing to remove", target.display());
    }
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("herdsman.service");
    systemctl(user_unit, &["disable", name])?;
    std::fs::remove_file(&target).with_context(|| format!("cannot remove {}", target.display()))?;
    systemctl(user_unit, &["daemon-reload"])?;
    println!("disabled and removed {}", target.display());
    Ok(())
}

fn systemctl(user_unit: bool, args: &[&str]) -> Result<()> {
    let mut command = Command::new("systemctl");
    if user_unit {
        command.arg("--user");
    }
    let status = command
        .args(args)
        .status()
        .context("cannot run systemctl")?;
    if !status.success() {
        bail!("`systemctl {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `herdsman run FILE`: the container entry point. The daemon runs in this process (so it is PID 1's
/// reaper when herdsman is PID 1), the file's apps start, and their logs go to this process's stdout until
/// SIGTERM or SIGINT stops every app. Exits 0 when they stopped cleanly, non-zero when an app could not be
/// kept running (then every app is stopped too, so the orchestrator restarts the container).
///
/// Once the daemon thread runs, `run` never returns before it has stopped: a failure on this side (the
/// daemon cannot be reached, the apps cannot be started, stdout is closed) stops every app, waits for
/// them and joins the thread, so no worker and no log keeper outlives `run`. A closed stdout (`run ... |
/// head`, a terminal that hung up, a log collector gone) is such a failure: the apps are stopped as on
/// SIGTERM and `run` exits 1, naming stdout.
pub fn run(
    home: &Home,
    path: &Path,
    only: &[String],
    profile: Option<&str>,
    format: Format,
) -> Result<()> {
    let loaded = file::load(path, only, profile, &caller_env()).map_err(|problems| {
        anyhow!(
            "{}\n{} problem(s) in {}; nothing was started",
            problems.join("\n"),
            problems.len(),
            path.display()
        )
    })?;
    run_loaded(home, loaded, format)
}

/// `run` of apps already loaded and checked: a file's, or the one app of `start SCRIPT --no-daemon`.
pub fn run_loaded(home: &Home, loaded: file::Loaded, format: Format) -> Result<()> {
    home.create()?;
    let daemon_home = home.clone();
    let daemon = std::thread::spawn(move || {
        let options = Options {
            resurrect: false,
            exit_when_errored: true,
            notifier: None,
            in_process: true,
            handover_fd: None,
        };
        daemon::run(daemon_home, options)
    });
    let served = serve_run(home, &daemon, loaded, format);
    if let Err(e) = &served
        && !daemon.is_finished()
    {
        note(&format!("{e:#}; stopping every app"));
        stop_daemon(home);
    }
    let outcome = daemon
        .join()
        .map_err(|_| anyhow!("the daemon thread panicked"));
    if let Err(e) = served {
        if let Ok(Err(daemon_error)) = &outcome {
            note(&format!("the daemon: {daemon_error:#}"));
        }
        return Err(e.context("every app was stopped"));
    }
    if outcome??.failed {
        bail!("an app could not be kept running: every app was stopped");
    }
    note("every app stopped");
    Ok(())
}

/// The part of `run` beside the daemon thread: connects, starts the apps, and prints their logs until the
/// daemon thread ends (`Ok`), or fails (`Err`; the daemon still runs, and the caller stops it).
fn serve_run(
    home: &Home,
    daemon: &std::thread::JoinHandle<Result<daemon::Outcome>>,
    loaded: file::Loaded,
    format: Format,
) -> Result<()> {
    if loaded.metrics.as_ref().is_some_and(|m| m.listen.is_some()) {
        note(
            "[daemon] metrics is served by the daemon's controller, which `run` does not start: not served",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        if let Some(client) = Client::connect(home)? {
            break client;
        }
        if daemon.is_finished() {
            // It could not start (its error is in its result) or was stopped at once.
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not answer on {} within 10 s",
                home.socket().display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Follow from the files' current ends: what earlier runs in this home wrote is not replayed, and
    // nothing the apps write from now on is missed.
    let logs = loaded
        .apps
        .iter()
        .map(|spec| {
            let out = spec
                .out_file
                .clone()
                .unwrap_or_else(|| home.out_log(&spec.name));
            let err = spec
                .error_file
                .clone()
                .unwrap_or_else(|| home.err_log(&spec.name));
            let logs = super::logs::AppLogs {
                out,
                err,
                format: spec.log_lines.clone(),
            };
            (spec.name.clone(), logs)
        })
        .collect();
    let mut follower = crate::logs::Follower::new(sources(&logs, true, true, None));
    let printer = Printer {
        format,
        timestamp: false,
    };
    let mut print_new = || -> Result<()> {
        let gone = |e: std::io::Error| anyhow!("stdout is closed ({e})");
        let mut out = std::io::stdout().lock();
        for line in follower.poll() {
            printer.print(&mut out, &line).map_err(gone)?;
        }
        out.flush().map_err(gone)?;
        if let Some(why) = stdout_closed() {
            bail!("stdout is closed ({why})");
        }
        Ok(())
    };
    let request = Request::Apply(ApplyRequest {
        apps: loaded.apps,
        action: ApplyAction::Start,
        prune: false,
        file_apps: loaded.names,
    });
    let started = client.request_with_progress(&request, |frame| {
        if let Response::Note { message } = frame {
            note(message);
        }
    })?;
    if let Response::Error { message, .. } = started {
        note(&message);
        bail!("the apps could not be started");
    }
    drop(client);
    while !daemon.is_finished() {
        print_new()?;
        std::thread::sleep(POLL);
    }
    // The daemon waited for its log keeper to write the last lines. The apps are stopped already: a
    // failure to print them changes nothing.
    let _ = print_new();
    Ok(())
}

/// Why writing to stdout can only fail from now on, if it can: the pipe's reader is gone (POLLERR), or
/// the terminal hung up or the socket was shut down (POLLHUP). Noticed without writing, so a closed stdout
/// stops the apps even while they print nothing.
fn stdout_closed() -> Option<&'static str> {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    if unsafe { libc::poll(&mut fd, 1, 0) } != 1 {
        return None;
    }
    if fd.revents & libc::POLLERR != 0 {
        Some("its reader went away")
    } else if fd.revents & libc::POLLHUP != 0 {
        Some("hung up")
    } else {
        None
    }
}

/// Stops the daemon thread's apps as SIGTERM does: a `kill` request, answered once every app has stopped;
/// without a control connection, SIGTERM itself (the daemon thread handles it).
fn stop_daemon(home: &Home) {
    if let Ok(Some(mut client)) = Client::connect(home)
        && client.request(&Request::Kill).is_ok()
    {
        return;
    }
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
}

/// A line on stderr for `run`, which must go on (and stop its apps) even when stderr is gone too.
fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "herdsman: {message}");
}

/// `herdsman completions SHELL`: the completion script, generated from the command-line definitions.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "herdsman", out);
    Ok(())
}

/// The man page, generated from the command-line definitions.
pub fn man(out: &mut impl Write) -> Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in completions and man page are what the current definitions generate. To refresh them:
    /// `scripts/completions.sh`.
    #[test]
    fn checked_in_completions_and_man_page_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = [
            (
                Some(clap_complete::Shell::Bash),
                "completions/herdsman.bash",
            ),
            (Some(clap_complete::Shell::Zsh), "completions/_herdsman"),
            (
                Some(clap_complete::Shell::Fish),
                "completions/herdsman.fish",
            ),
            (None, "completions/herdsman.1"),
        ];
        for (shell, file) in files {
            let mut generated = Vec::new();
            match shell {
                Some(shell) => completions(shell, &mut generated).expect("generate"),
                None => man(&mut generated).expect("render"),
            }
            let checked_in = std::fs::read(root.join(file)).unwrap_or_default();
            assert!(
                generated == checked_in,
                "{file} is out of date: run scripts/completions.sh and commit the result"
            );
        }
    }
}
