//! An app as the supervisor holds it: its spec, the command it runs, the sockets it holds, its log files, and
//! the user it runs as. [`App::prepare`] checks everything about a spec and acquires what it needs before
//! the app exists, so a bad spec changes nothing.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{AppSpec, CommandLine, check_name};
use crate::daemon::balance::SlotSockets;
use crate::daemon::listener::Listener;
use crate::daemon::spawn::Credentials;
use crate::home::Home;
use crate::logs::Stream;
use crate::logs::keeper::Header;
use crate::protocol::{ErrorKind, Response, Selection};

pub(super) struct App {
    pub spec: AppSpec,
    pub command: CommandLine,
    /// The shared sockets (`balance = "shared"`), one per address.
    pub listeners: Vec<Listener>,
    /// With `balance = "hash"` or `"sticky"`: a socket per worker slot and address, bound when the slot's
    /// first process starts (see `daemon/balance/`); `listeners` is then empty.
    pub slots: Option<SlotSockets>,
    pub out_path: PathBuf,
    pub err_path: PathBuf,
    /// Run the workers as this user, group and supplementary groups.
    pub credentials: Option<Credentials>,
    /// What systemd's `User=` sets for the named user (`HOME`, `USER`, `LOGNAME`, `SHELL`); the app's own
    /// `env` wins over these, the environment inherited from the caller does not.
    pub user_env: Vec<(String, String)>,
    /// The Node preload the workers load (readable by the app's user).
    pub preload: PathBuf,
    /// Its worker slots, in instance order.
    pub workers: Vec<u32>,
    /// When it was created (a changed definition keeps the time).
    pub created: std::time::SystemTime,
    /// Watch mode's state, once its watcher is started (see `watching.rs`).
    pub watch: Option<super::watching::Watching>,
    /// How the last rollout of its workers ended (see `rollout.rs`).
    pub last_change: Option<crate::protocol::LastChange>,
    /// What a keeper that adopted its workers could not take back (see `adoption.rs`).
    pub adoption: Option<String>,
    /// Its reloads since this keeper started (see `rollout.rs`).
    pub reloads: crate::protocol::ReloadStats,
}

impl App {
    /// Checks a spec and acquires its sockets and log files. `previous` are sockets an earlier definition of
    /// the same app holds: an address kept by the new definition keeps its socket (it is never closed,
    /// so no connection is refused while the app changes).
    pub fn prepare(
        spec: AppSpec,
        home: &Home,
        previous: &mut Vec<Listener>,
        previous_slots: &mut Option<SlotSockets>,
        logs: &mut crate::logs::open::Opener,
    ) -> Result<App, String> {
        check_name(&spec.name).map_err(|e| e.to_string())?;
        match std::fs::metadata(&spec.script) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(format!("script {} is not a file", spec.script.display())),
            Err(_) => return Err(format!("script not found: {}", spec.script.display())),
        }
        if !spec.cwd.is_dir() {
            return Err(format!(
                "working directory not found: {}",
                spec.cwd.display()
            ));
        }
        let command = spec.command_line().map_err(|e| e.to_string())?;
        if spec.effective_interpreter().is_none()
            && std::fs::metadata(&spec.script).is_ok_and(|m| m.permissions().mode() & 0o111 == 0)
        {
            return Err(format!(
                "script {} is not executable and has no known interpreter; make it executable or give --interpreter",
                spec.script.display()
            ));
        }
        if let Some(var) = &spec.increment_var
            && spec
                .env
                .get(var)
                .and_then(|v| v.parse::<i64>().ok())
                .is_none()
        {
            return Err(format!(
                "increment_var {var} needs a number to count from: set {var} in the app's env"
            ));
        }
        let mut app = App::assemble(spec, command, home)?;
        // Checked now, so a path that cannot be written fails the start; the log keeper opens (and if
        // need be creates) them itself.
        logs.check(&app.out_path)?;
        logs.check(&app.err_path)?;
        if app.slots.is_some() {
            // The same addresses and mode keep the sockets of the slots (and their order in the kernel).
            match previous_slots.take() {
                Some(kept)
                    if kept.mode() == app.spec.balance && kept.addrs() == app.spec.listen =>
                {
                    app.slots = Some(kept);
                }
                other => {
                    *previous_slots = other;
                    check_free(&app.spec)?;
                }
            }
        } else {
            app.listeners = bind(&app.spec, previous)?;
        }
        Ok(app)
    }

    /// An app carried over an in-place re-exec of the keeper: its workers run and its sockets are
    /// inherited, so nothing is checked that could refuse it (a script being replaced by a deploy).
    pub fn restore(
        spec: AppSpec,
        home: &Home,
        listeners: Vec<Listener>,
        created: std::time::SystemTime,
    ) -> Result<App, String> {
        let command = spec.command_line().map_err(|e| e.to_string())?;
        let mut app = App::assemble(spec, command, home)?;
        app.listeners = listeners;
        app.created = created;
        Ok(app)
    }

    /// The app with its user, preload and log paths, and no socket.
    fn assemble(mut spec: AppSpec, command: CommandLine, home: &Home) -> Result<App, String> {
        spec.env = crate::config::shared_env(std::mem::take(&mut spec.env));
        let (credentials, user_env) = credentials(&spec)?;
        let preload = match &credentials {
            Some(c) if spec.is_node() && c.uid != nix::unistd::geteuid().as_raw() => {
                super::preload::shared(home)?
            }
            _ => home.node_preload(),
        };
        let out_path = spec
            .out_file
            .clone()
            .unwrap_or_else(|| home.out_log(&spec.name));
        let err_path = spec
            .error_file
            .clone()
            .unwrap_or_else(|| home.err_log(&spec.name));
        Ok(App {
            command,
            listeners: Vec::new(),
            out_path,
            err_path,
            slots: (spec.balance.per_slot() && !spec.listen.is_empty())
                .then(|| SlotSockets::new(spec.balance, &spec.listen)),
            credentials,
            user_env,
            preload,
            workers: Vec::new(),
            created: std::time::SystemTime::now(),
            watch: None,
            last_change: None,
            adoption: None,
            reloads: Default::default(),
            spec,
        })
    }

    /// What the log keeper is told about one output stream of an instance.
    pub fn log_header(&self, instance: u32, stream: Stream) -> Header {
        Header {
            app: self.spec.name.clone(),
            instance,
            stream,
            path: match stream {
                Stream::Out => self.out_path.clone(),
                Stream::Err => self.err_path.clone(),
            },
            max_size: self.spec.log_max_size,
            keep: self.spec.log_keep,
            format: self.spec.log_lines.clone(),
            rotate: self.spec.log_rotate,
            compress: self.spec.log_compress,
        }
    }

    /// Binds the app's sockets again after they were closed (a stopped app starting).
    pub fn ensure_listeners(&mut self) -> Result<(), String> {
        if self.listeners.is_empty() && !self.spec.listen.is_empty() && self.slots.is_none() {
            self.listeners = bind(&self.spec, &mut Vec::new())?;
        }
        Ok(())
    }
}

impl super::Supervisor {
    /// `flush`: empties the logs of the selected apps (a worker id selects its app).
    pub(super) fn flush_logs(&self, target: &Selection) -> Response {
        let ids = match self.select(target) {
            Ok(ids) => ids,
            Err(response) => return response,
        };
        let mut names: Vec<&str> = ids
            .iter()
            .filter_map(|id| Some(self.workers.get(id)?.app.as_str()))
            .collect();
        if matches!(target, Selection::All) {
            names = self.apps.keys().map(String::as_str).collect();
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            let Some(app) = self.apps.get(name) else {
                continue;
            };
            for path in [&app.out_path, &app.err_path] {
                if let Err(message) = crate::logs::flush(path) {
                    return Response::error(ErrorKind::Os, format!("app '{name}': {message}"));
                }
            }
            tracing::info!(app = %name, "logs flushed");
        }
        Response::Ok
    }
}

/// The spec's sockets: taken from `previous` where the address is the same, bound anew otherwise. On an
/// error nothing is taken from `previous`.
fn bind(spec: &AppSpec, previous: &mut Vec<Listener>) -> Result<Vec<Listener>, String> {
    let mut fresh = Vec::new();
    for addr in &spec.listen {
        if !previous.iter().any(|l| l.addr() == addr) {
            fresh.push(Listener::bind(addr, &spec.cwd).map_err(|e| e.to_string())?);
        }
    }
    Ok(spec
        .listen
        .iter()
        .filter_map(|addr| {
            let from = if previous.iter().any(|l| l.addr() == addr) {
                &mut *previous
            } else {
                &mut fresh
            };
            let index = from.iter().position(|l| l.addr() == addr)?;
            Some(from.swap_remove(index))
        })
        .collect())
}

/// Checks that a per-slot app's addresses are free, with a socket of each bound and closed again at once
/// (a shared socket of another program there makes the bind fail; its slots bind theirs when they start).
fn check_free(spec: &AppSpec) -> Result<(), String> {
    for addr in &spec.listen {
        Listener::probe_free(addr).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Opens an app's log for appending (see [`crate::logs::open`]): never through a link, never a FIFO or a
/// device, never in a directory another user can write; missing directories are created.
pub(super) fn open_log(path: &Path) -> Result<File, String> {
    crate::logs::open::open_append(path)
}

/// The variables systemd's `User=` sets: `HOME`, `USER`, `LOGNAME`, `SHELL`.
type UserEnv = Vec<(String, String)>;

/// Who the spec's workers run as: the user's uid, the group (the user's own unless the spec names one) and
/// the user's supplementary groups, as a login (and systemd's `User=`) gets them; a group alone keeps the
/// daemon's user with that one group. Also the variables systemd's `User=` sets. Switching needs root,
/// unless it is to the daemon's own user and group (then nothing is switched).
fn credentials(spec: &AppSpec) -> Result<(Option<Credentials>, UserEnv), String> {
    use nix::unistd::{Group, User, getegid, geteuid, getgrouplist};
    if spec.user.is_none() && spec.group.is_none() {
        return Ok((None, Vec::new()));
    }
    let user = match &spec.user {
        Some(name) => Some(
            User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("user '{name}' does not exist"))?,
        ),
        None => None,
    };
    let gid = match &spec.group {
        Some(name) => {
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("group '{name}' does not exist"))?
                .gid
        }
        None => user.as_ref().map_or(getegid(), |u| u.gid),
    };
    let uid = user.as_ref().map_or(geteuid(), |u| u.uid);
    if !geteuid().is_root() && (uid != geteuid() || gid != getegid()) {
        return Err("user and group need the daemon to run as root".into());
    }
    let mut env = Vec::new();
    let mut groups = vec![gid.as_raw()];
    if let Some(user) = &user {
        env.push(("HOME".to_string(), user.dir.to_string_lossy().into_owned()));
        env.push(("USER".to_string(), user.name.clone()));
        env.push(("LOGNAME".to_string(), user.name.clone()));
        if !user.shell.as_os_str().is_empty() {
            env.push((
                "SHELL".to_string(),
                user.shell.to_string_lossy().into_owned(),
            ));
        }
        let name = std::ffi::CString::new(user.name.as_bytes())
            .map_err(|_| format!("user '{}' has a NUL in its name", user.name))?;
        groups = getgrouplist(&name, gid)
            .map_err(|e| format!("cannot list the groups of user '{}': {e}", user.name))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
    }
    if !geteuid().is_root() {
        // The daemon's own user and group: nothing to switch (and setgroups would need root).
        return Ok((None, env));
    }
    let credentials = Credentials {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups,
    };
    Ok((Some(credentials), env))
}
