//! `herdsman update`, the keeper's half: re-executing itself in place on a new executable, as systemd's
//! `daemon-reexec` and einhorn's `--with-state-fd` do. The pid stays, so every worker stays the keeper's
//! child (its exits are still reaped here), the subreaper bit and systemd's MainPID stay, and nothing is
//! restarted.
//!
//! What the new image needs is a [`Handover`]: the supervisor's state (`supervisor/handover.rs`) and the
//! keeper's own descriptors (the home's lock, the control socket, its own socket, the notify socket), all
//! inherited by number: close-on-exec is cleared on exactly those, and the JSON goes on a memfd whose number
//! is the `--handover-fd` argument. If `execve` fails, close-on-exec is set again and the old image goes on.
//!
//! The self-check runs the new executable's `upgrade-check` on the same JSON first (einhorn's
//! `--upgrade-check` sentinel): a binary that cannot run or cannot read the state is refused before
//! anything changes.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::controller;
use super::supervisor::handover::Carried as State;

/// Bumped when [`Handover`] changes shape in a way an older reader cannot take.
pub const FORMAT: u32 = 1;

/// The keeper's own descriptors, kept across the exec, and what goes with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecContext {
    /// `daemon.pid`, with its `flock`: the home stays locked throughout.
    pub lock: RawFd,
    /// The control socket (the controller's).
    pub control: RawFd,
    /// The keeper's own socket.
    pub keeper: RawFd,
    /// The workers' `NOTIFY_SOCKET`, and its name.
    pub notify: RawFd,
    pub notify_address: String,
    /// systemd's `NOTIFY_SOCKET`, when systemd runs the keeper.
    pub notifier: Option<String>,
    /// The soft and hard `RLIMIT_NOFILE` the keeper started with (workers get the soft one back).
    pub nofile: Option<(u64, u64)>,
}

/// Everything the new image takes over.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub format: u32,
    /// The version of the image that wrote it.
    pub from_version: String,
    pub context: ExecContext,
    /// The controller of the old image, told to finish once the new one runs.
    pub controller: Option<i32>,
    pub controller_restarts: u32,
    /// In-place updates so far, this one included.
    pub updates: u32,
    pub state: State,
}

impl Handover {
    pub fn new(
        context: &ExecContext,
        state: State,
        controller: Option<&controller::Shared>,
    ) -> Handover {
        Handover {
            format: FORMAT,
            from_version: crate::VERSION.to_string(),
            context: context.clone(),
            controller: controller.and_then(|c| c.pid()),
            controller_restarts: controller.map_or(0, |c| c.restarts()),
            updates: 0,
            state,
        }
    }

    /// Every descriptor of the supervisor's state it names (sockets, log pipes, the log keeper's channel).
    pub fn state_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self
            .state
            .apps
            .iter()
            .flat_map(|a| a.listeners.iter().map(|l| l.fd))
            .collect();
        fds.extend(self.state.logs.fds());
        fds
    }

    /// Every descriptor of the keeper's own it names.
    fn own_fds(&self) -> [RawFd; 4] {
        let c = &self.context;
        [c.lock, c.control, c.keeper, c.notify]
    }
}

/// Reads a handover (from the memfd an old image left, or a self-check's stdin), checking its format.
pub fn read(reader: &mut impl Read) -> Result<Handover> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .context("cannot read the handover")?;
    let handover: Handover = serde_json::from_str(&text).context("cannot decode the handover")?;
    if handover.format != FORMAT {
        bail!(
            "the handover is in format {} (herdsman {}); this herdsman reads format {FORMAT}",
            handover.format,
            handover.from_version
        );
    }
    Ok(handover)
}

/// The handover inherited as `fd` by a keeper that was just re-executed.
pub fn take(fd: RawFd) -> Result<Handover> {
    // SAFETY: the descriptor was inherited for this alone (`--handover-fd`); it is closed when read.
    let mut file = unsafe { File::from_raw_fd(fd) };
    read(&mut file)
}

/// A memfd holding `bytes`, read from its start.
fn memfd(bytes: &[u8], cloexec: bool) -> Result<File, String> {
    let flags = if cloexec { libc::MFD_CLOEXEC } else { 0 };
    // SAFETY: memfd_create with a valid C string; the descriptor is owned below.
    let fd = unsafe { libc::memfd_create(c"herdsman-handover".as_ptr(), flags) };
    if fd < 0 {
        return Err(format!(
            "cannot create a memfd: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a descriptor just returned by the kernel.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| format!("cannot write the handover: {e}"))?;
    Ok(file)
}

/// Runs `binary upgrade-check` on the handover: it must read it and exit 0 within `deadline`.
pub fn self_check(binary: &Path, handover: &Handover, deadline: Duration) -> Result<(), String> {
    let bytes = serde_json::to_vec(handover).map_err(|e| e.to_string())?;
    let input = memfd(&bytes, true)?;
    let errors = memfd(&[], true)?;
    let stderr = errors
        .try_clone()
        .map_err(|e| format!("cannot run the self-check: {e}"))?;
    let mut child = Command::new(binary)
        .arg0("herdsman")
        .arg("upgrade-check")
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let until = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish its self-check within {} s",
                    binary.display(),
                    deadline.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for the self-check: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    let mut errors = errors;
    let _ = errors.seek(SeekFrom::Start(0));
    let _ = errors.take(2000).read_to_string(&mut said);
    let said = said.trim();
    Err(format!(
        "the self-check of {} failed ({status}){}",
        binary.display(),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on a descriptor number; a closed one just fails.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            let flags = if on {
                flags | libc::FD_CLOEXEC
            } else {
                flags & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, flags);
        }
    }
}

/// Marks inherited descriptors close-on-exec again, in the new image (so workers and helpers do not get
/// them).
pub fn adopted(fds: &[RawFd]) {
    for &fd in fds {
        set_cloexec(fd, true);
    }
}

/// Re-executes this process on `binary`, handing it `handover` and the descriptors `fds` (plus the keeper's
/// own). Returns only if that failed, with why; everything is then as it was.
pub fn exec(binary: &Path, handover: &Handover, fds: &[RawFd]) -> String {
    let bytes = match serde_json::to_vec(handover) {
        Ok(bytes) => bytes,
        Err(e) => return format!("cannot encode the handover: {e}"),
    };
    let state = match memfd(&bytes, false) {
        Ok(file) => file,
        Err(message) => return message,
    };
    let Ok(program) = CString::new(binary.as_os_str().as_bytes()) else {
        return format!("{} is not a usable path", binary.display());
    };
    let args: Vec<CString> = [
        "herdsman".to_string(),
        "daemon".to_string(),
        "--foreground".to_string(),
        "--handover-fd".to_string(),
        state.as_raw_fd().to_string(),
    ]
    .into_iter()
    .filter_map(|a| CString::new(a).ok())
    .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let kept: Vec<RawFd> = fds.iter().copied().chain(handover.own_fds()).collect();
    for &fd in &kept {
        set_cloexec(fd, false);
    }
    if let Some(address) = &handover.context.notifier {
        crate::systemd::Notifier::new(address.clone()).reloading();
    }
    // SAFETY: execv with NUL-terminated strings and a NULL-terminated argv that outlive the call; it
    // returns only on failure.
    unsafe { libc::execv(program.as_ptr(), argv.as_ptr()) };
    let error = std::io::Error::last_os_error();
    for &fd in &kept {
        set_cloexec(fd, true);
    }
    if let Some(address) = &handover.context.notifier {
        crate::systemd::Notifier::new(address.clone()).notify("READY=1");
    }
    drop(state);
    format!("cannot execute {}: {error}", binary.display())
}

/// `herdsman upgrade-check`: reads a handover on stdin, as a new executable must before a keeper moves onto
/// it, and says which version it is.
pub fn upgrade_check() -> Result<()> {
    let handover = read(&mut std::io::stdin().lock())?;
    println!(
        "herdsman {} (protocol {}) can take over a keeper of herdsman {} with {} apps",
        crate::VERSION,
        crate::protocol::PROTOCOL_VERSION,
        handover.from_version,
        handover.state.apps.len()
    );
    Ok(())
}
