//! herdsman under systemd: the unit `herdsman startup` renders, and the daemon's own notifications.
//!
//! The unit is `Type=notify`: the daemon sends `READY=1` once it serves and the resurrected apps are online,
//! `RELOADING=1` and `READY=1` around `ExecReload=herdsman reload all`, `STOPPING=1` when it begins to stop,
//! and `WATCHDOG=1` at half the interval systemd asks for (`WatchdogSec=`). `KillMode=mixed`: systemd's
//! SIGTERM goes to the daemon alone, which stops every app within its kill timeout; whatever is left when
//! `TimeoutStopSec` runs out is killed.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// The daemon's link to systemd, when systemd started it with `NOTIFY_SOCKET`.
#[derive(Clone)]
pub struct Notifier {
    address: String,
}

impl Notifier {
    /// A notifier for this address (carried over an in-place re-exec).
    pub fn new(address: String) -> Notifier {
        Notifier { address }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Takes `NOTIFY_SOCKET` from the daemon's environment (and removes it, so nothing else inherits it).
    pub fn from_env() -> Option<Notifier> {
        let address = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|a| !a.is_empty())?;
        // SAFETY: called once at daemon start, before any thread reads the environment.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        Some(Notifier { address })
    }

    /// Sends one notification (`READY=1`, `STOPPING=1`, ...). Failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let sent = (|| -> std::io::Result<()> {
            let socket = UnixDatagram::unbound()?;
            let addr = match self.address.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
                None => SocketAddr::from_pathname(&self.address)?,
            };
            socket.send_to_addr(state.as_bytes(), &addr)?;
            Ok(())
        })();
        if let Err(e) = sent {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }

    /// `RELOADING=1` with the monotonic timestamp systemd 253+ expects.
    pub fn reloading(&self) {
        let mut now: libc::timespec = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the struct.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }
}

/// How often to send `WATCHDOG=1`: half the interval systemd set in `WATCHDOG_USEC`, if it is for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// What the unit is for.
pub struct UnitOptions<'a> {
    /// The herdsman executable, absolute.
    pub executable: &'a Path,
    pub home: &'a Path,
    /// `None`: a user unit (`systemctl --user`); otherwise the user a system unit runs as.
    pub user: Option<&'a str>,
    /// The PATH the workers find their interpreters on.
    pub path: &'a str,
}

/// Renders the unit.
pub fn render_unit(options: &UnitOptions<'_>) -> String {
    let exe = quote(&options.executable.display().to_string());
    let home = options.home.display().to_string();
    let (user, wanted_by) = match options.user {
        Some(user) => (format!("User={user}\n"), "multi-user.target"),
        None => (String::new(), "default.target"),
    };
    format!(
        "\
# herdsman: a pre-fork cluster process supervisor. Rendered by `herdsman startup`.
[Unit]
Description=herdsman process supervisor ({home})
After=network.target

[Service]
Type=notify
NotifyAccess=main
{user}Environment={home_var}
Environment={path_var}
ExecStart={exe} daemon --foreground --resurrect
ExecReload={exe} reload all
# SIGTERM to the keeper alone: it stops every app within its kill timeout, then exits.
KillMode=mixed
TimeoutStopSec=60
Restart=on-failure
RestartSec=1
LimitNOFILE=65536
# One app's worker killed for memory is the keeper's to restart, not a reason to stop every app.
OOMPolicy=continue
# The keeper keeps a copy of each listening socket here, so even its own restart refuses no connection.
FileDescriptorStoreMax=1024

[Install]
WantedBy={wanted_by}
",
        home_var = quote(&format!("HERDSMAN_HOME={home}")),
        path_var = quote(&format!("PATH={}", options.path)),
    )
}

/// A unit-file word in double quotes, with systemd's escapes for `\`, `"` and its `%` specifiers.
fn quote(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!("\"{escaped}\"")
}

/// Where `startup --install` writes the unit.
pub fn unit_path(user_unit: bool, user: &str, home_dir: &Path) -> std::path::PathBuf {
    if user_unit {
        home_dir.join(".config/systemd/user/herdsman.service")
    } else {
        Path::new("/etc/systemd/system").join(format!("herdsman-{user}.service"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_unit_runs_the_daemon_in_the_foreground_as_the_user() {
        let unit = render_unit(&UnitOptions {
            executable: Path::new("/usr/local/bin/herdsman"),
            home: Path::new("/home/ann/.herdsman"),
            user: Some("ann"),
            path: "/usr/bin:/bin",
        });
        assert!(unit.contains("Type=notify\n"));
        assert!(unit.contains("User=ann\n"));
        assert!(unit.contains("Environment=\"HERDSMAN_HOME=/home/ann/.herdsman\"\n"));
        assert!(
            unit.contains(
                "ExecStart=\"/usr/local/bin/herdsman\" daemon --foreground --resurrect\n"
            )
        );
        assert!(unit.contains("ExecReload=\"/usr/local/bin/herdsman\" reload all\n"));
        assert_eq!(quote("50% \"odd\""), "\"50%% \\\"odd\\\"\"");
        assert!(unit.contains("KillMode=mixed\n"));
        assert!(unit.contains("OOMPolicy=continue\n"));
        assert!(unit.contains("FileDescriptorStoreMax=1024\n"));
        assert!(unit.contains("WantedBy=multi-user.target\n"));
        let user = render_unit(&UnitOptions {
            executable: Path::new("/usr/local/bin/herdsman"),
            home: Path::new("/home/ann/.herdsman"),
            user: None,
            path: "/usr/bin",
        });
        assert!(!user.contains("User="));
        assert!(user.contains("WantedBy=default.target\n"));
    }

    #[test]
    fn notifications_reach_a_datagram_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier {
            address: path.display().to_string(),
        };
        notifier.notify("READY=1");
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"READY=1");
    }
}
