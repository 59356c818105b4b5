//! Running a hook: a command line given by the user (`on_failure` of a job, `on_event` of an app), run by
//! `/bin/sh -c` in the app's cwd, as the app's user, in a process group of its own (so a timeout ends all of
//! it), with the given environment and, optionally, bytes on its stdin. Never waited for here: the keeper's
//! reaper collects its exit (see `supervisor/hooks.rs`).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use super::spawn::Credentials;

/// What a hook is run with.
pub struct Hook<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    pub credentials: Option<&'a Credentials>,
    /// Written to its stdin, which is then closed (at most a pipe's capacity, 64 KiB); `None`: /dev/null.
    pub stdin: Option<&'a [u8]>,
    /// Where its stdout and stderr go; `None`: the daemon's own stderr (its log).
    pub output: Option<std::fs::File>,
}

/// Starts a hook; returns its pid (also its process group's id).
pub fn spawn(hook: Hook<'_>) -> std::io::Result<u32> {
    let mut child = std::process::Command::new("/bin/sh");
    child
        .args(["-c", hook.command])
        .current_dir(hook.cwd)
        .env_clear()
        .envs(hook.env)
        .process_group(0);
    match hook.stdin {
        Some(bytes) => {
            let (read, write): (OwnedFd, OwnedFd) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
            // The reading end blocks as a shell expects; only ours is non-blocking, so a full pipe never
            // stalls the keeper (the rest is cut: events are far smaller than a pipe).
            nix::fcntl::fcntl(
                &read,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )?;
            let mut write = std::fs::File::from(write);
            let _ = write.write_all(bytes);
            drop(write);
            child.stdin(Stdio::from(read));
        }
        None => {
            child.stdin(Stdio::null());
        }
    }
    match hook.output {
        Some(file) => {
            if let Ok(copy) = file.try_clone() {
                child.stdout(copy);
            }
            child.stderr(file);
        }
        None => {
            // The daemon's stderr is its log (`daemon.log`, or the container's output under `run`).
            child.stdout(std::io::stderr());
            child.stderr(std::io::stderr());
        }
    }
    if let Some(c) = hook.credentials {
        let (uid, gid, groups) = (c.uid, c.gid, c.groups.clone());
        // SAFETY: setgroups, setgid and setuid are async-signal-safe, and nothing is allocated here.
        unsafe {
            child.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // The Child is dropped without waiting: the reaper collects it.
    child.spawn().map(|c| c.id())
}
