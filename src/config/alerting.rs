//! Knowing when something is wrong: the watchdog (`watchdog`, `watchdog_signal`) and the hooks
//! (`on_event`), as an app defines them, and how they are checked.
//!
//! A hook is a command line run by `/bin/sh -c` in the app's cwd. Its first word, when it is a path (it
//! holds a `/`), must name an executable file when the app is defined, so that a typo is an error of the file
//! (with its line and column) and not a silent failure at the worst moment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SignalName;

/// The events a hook can be given for, as written in `on_event`.
pub const HOOK_EVENTS: &[&str] = &[
    "crash",
    "errored",
    "hung",
    "memory-limit",
    "reload-failed",
    "job-failed",
];

/// The watchdog of an app's workers (systemd's protocol: `WATCHDOG_USEC`, `WATCHDOG=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watchdog {
    /// A worker silent this long is hung.
    pub period_ms: u64,
    /// Sent to a hung worker before the kill signal [default: SIGABRT].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalName>,
}

impl Watchdog {
    pub fn signal(&self) -> nix::sys::signal::Signal {
        self.signal
            .map_or(nix::sys::signal::Signal::SIGABRT, |s| s.0)
    }
}

/// Why an `on_event` entry is refused (`None`: it is right).
pub fn check_hook(event: &str, command: &str, cwd: &Path) -> Option<String> {
    if !HOOK_EVENTS.contains(&event) {
        return Some(format!(
            "unknown event '{event}': hooks are for {}",
            HOOK_EVENTS.join(", ")
        ));
    }
    let Some(program) = command.split_whitespace().next() else {
        return Some(format!(
            "the hook for '{event}' is empty: give a command line (run by /bin/sh -c in the app's cwd)"
        ));
    };
    if !program.contains('/') {
        return None;
    }
    let path = cwd.join(program);
    match std::fs::metadata(&path) {
        Err(e) => Some(format!(
            "the hook for '{event}', {}, cannot be run: {e}",
            path.display()
        )),
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                None
            } else {
                Some(format!(
                    "the hook for '{event}', {}, is not an executable file (chmod +x it)",
                    path.display()
                ))
            }
        }
    }
}

/// The hooks of an app, by event.
pub type Hooks = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_event_is_named_with_the_known_ones() {
        let problem = check_hook("crashed", "true", Path::new("/")).unwrap_or_default();
        assert!(problem.contains("unknown event 'crashed'"), "{problem}");
        assert!(problem.contains("memory-limit"), "{problem}");
    }

    #[test]
    fn a_path_must_be_executable_and_a_word_is_left_to_the_shell() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let script = dir.path().join("notify.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        let problem = check_hook("crash", "./notify.sh --loud", dir.path()).unwrap_or_default();
        assert!(problem.contains("not an executable file"), "{problem}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check_hook("crash", "./notify.sh --loud", dir.path()), None);
        assert!(check_hook("hung", "./missing.sh", dir.path()).is_some());
        assert_eq!(check_hook("hung", "logger -t web", dir.path()), None);
        assert!(check_hook("hung", "  ", dir.path()).is_some());
    }

    #[test]
    fn the_default_watchdog_signal_is_sigabrt() {
        let w = Watchdog {
            period_ms: 1000,
            signal: None,
        };
        assert_eq!(w.signal(), nix::sys::signal::Signal::SIGABRT);
    }
}
