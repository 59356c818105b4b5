//! Issue 6: `herdsman monit`, the real binary on a real terminal. It runs in a tmux pane of a private tmux
//! server (its own socket name, no config file); the test types keys with `send-keys` and reads the screen
//! with `capture-pane`. A shell around monit records the terminal settings (`stty -g`) before and after
//! and monit's exit status, so the restored terminal is checked from the inside too. The tmux server is
//! killed by a drop guard, pass or fail; the [`Herdsman`] fixture kills what the pane started.
//!
//! Issue 14's jobs pane: a job started with a schedule shows a row of its own below the process table;
//! Tab and `t` run it now, the run's outcome appears in the row, and Enter shows the run's output.
//!
//! tmux is required, not optional: CI installs it (`.ci/run`), and without it the test fails saying so.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::helpers::{Herdsman, SECOND, free_port, listen_addr, poll};

const BIN: &str = env!("CARGO_BIN_EXE_herdsman");

/// A private tmux server running one session, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts a detached `width` x `height` session running `command` (a shell command line).
    fn start(width: u16, height: u16, command: &str) -> Tmux {
        if let Err(e) = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            panic!(
                "`tmux` cannot be run ({e}): the monit end-to-end test drives the dashboard in tmux; \
                 install it (CI installs it in .ci/run)"
            );
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmux = Tmux {
            socket: format!("herdsman-monit-{}-{nanos}", std::process::id()),
        };
        let (width, height) = (width.to_string(), height.to_string());
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "monit",
            "-x",
            &width,
            "-y",
            &height,
            command,
        ])
        .unwrap_or_else(|e| panic!("cannot start a tmux session: {e}"));
        tmux
    }

    /// Runs a tmux command against this server; its stdout, or what went wrong.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tmux {args:?}: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "tmux {args:?}: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The pane's screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "monit"])
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    /// A tmux format evaluated for the pane (`#{alternate_on}`).
    fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "monit", format])
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    fn keys(&self, h: &Herdsman, keys: &str) {
        if let Err(e) = self.run(&["send-keys", "-t", "monit", keys]) {
            h.fail(&format!("cannot type {keys:?}: {e}\n{}", self.screen()));
        }
    }

    /// Polls the screen until `cond` holds; fails naming `what` with the screen.
    #[track_caller]
    fn wait_screen(&self, h: &Herdsman, what: &str, cond: impl Fn(&str) -> bool) -> String {
        poll(15 * SECOND, || {
            let screen = self.screen();
            cond(&screen).then_some(screen)
        })
        .unwrap_or_else(|| {
            h.fail(&format!(
                "timed out waiting for the pane to show {what}\n--- pane ---\n{}",
                self.screen()
            ))
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The table row of app `name` (`web  0  4242  online ...`), if shown.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|line| {
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '│' || c == '▶')
            .filter(|w| !w.is_empty());
        words.next() == Some(name)
    })
}

/// The shell command that runs monit against `h`'s daemon, then reports how it exited and stays.
fn monit_command(h: &Herdsman) -> String {
    let script = format!(
        "before=$(stty -g); {bin} monit; code=$?; \
         if [ \"$before\" = \"$(stty -g)\" ]; then echo 'stty: as before'; else echo 'stty: CHANGED'; fi; \
         echo \"monit exited with $code\"; exec sleep 600",
        bin = quote(BIN)
    );
    format!(
        "env HERDSMAN_HOME={} sh -c {}",
        quote(&h.home().display().to_string()),
        quote(&script)
    )
}

/// The jobs pane's row of job `name` (`nightly  scheduled  ...`), if shown: the process table's row of the
/// job's slot has no job state.
fn job_row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|line| {
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '│' || c == '▶')
            .filter(|w| !w.is_empty());
        words.next() == Some(name)
            && matches!(
                words.next(),
                Some("scheduled" | "running" | "paused" | "stopped")
            )
    })
}

#[test]
fn monit_shows_a_job_and_runs_it_now_from_the_keyboard() {
    let h = Herdsman::new();
    let file = h.scratch("runs").join("nightly");
    // A job that would not fire before next New Year: every run is the keyboard's.
    h.cmd(&[
        "start",
        "tests/apps/job.sh",
        "--name",
        "nightly",
        "--schedule",
        "0 0 1 1 *",
    ])
    .env("JOB_FILE", file.display().to_string())
    .ok();
    let tmux = Tmux::start(100, 30, &monit_command(&h));

    let screen = tmux.wait_screen(&h, "the job's row in the jobs pane", |s| {
        job_row(s, "nightly").is_some_and(|r| r.contains("scheduled") && r.contains("0✓ 0✗"))
    });
    if !screen.contains("jobs (Tab)") {
        h.fail(&format!(
            "the jobs pane should have its title
{screen}"
        ));
    }
    tmux.keys(&h, "Tab");
    tmux.wait_screen(&h, "the jobs pane focused", |s| s.contains("t run now"));
    tmux.keys(&h, "t");
    let screen = tmux.wait_screen(&h, "the run reported and its ok outcome in the row", |s| {
        s.contains("triggered nightly: nightly@manual-")
            && job_row(s, "nightly").is_some_and(|r| r.contains("1✓ 0✗") && r.contains('✓'))
    });
    let recorded = std::fs::read_to_string(&file).unwrap_or_default();
    if !recorded.contains("nightly@manual-") {
        h.fail(&format!(
            "the job should have run once by hand, recorded {recorded:?}
{screen}"
        ));
    }
    // Enter shows the run's output in the log pane; Esc brings the app's log back.
    tmux.keys(&h, "Enter");
    tmux.wait_screen(&h, "the run's log", |s| {
        s.contains("run nightly@manual-") && s.contains("running nightly@manual-")
    });
    tmux.keys(&h, "Escape");
    tmux.wait_screen(&h, "the app's log again", |s| s.contains("log of nightly"));

    tmux.keys(&h, "q");
    let screen = tmux.wait_screen(&h, "the shell again after q", |s| {
        s.contains("monit exited with")
    });
    if !screen.contains("monit exited with 0") || !screen.contains("stty: as before") {
        h.fail(&format!(
            "monit must exit 0 and leave the terminal settings as it found them\n--- pane ---\n{screen}"
        ));
    }
}

#[test]
fn monit_restarts_the_selected_app_from_the_keyboard_and_restores_the_terminal() {
    let h = Herdsman::new();
    for name in ["alpha", "web"] {
        h.cmd(&[
            "start",
            "tests/apps/http.js",
            "--name",
            name,
            "--listen",
            &listen_addr(free_port()),
        ])
        .ok();
    }
    let alpha = h.wait_online("alpha", 1)[0].clone();
    let web = h.wait_online("web", 1)[0].clone();
    let web_pid = web.pid.expect("an online worker has a pid");

    // The shell compares the terminal settings around monit and reports its exit status, then stays.
    let tmux = Tmux::start(100, 30, &monit_command(&h));

    tmux.wait_screen(&h, "both apps online", |s| {
        row(s, "alpha").is_some_and(|r| r.contains("online"))
            && row(s, "web").is_some_and(|r| r.contains(&web_pid.to_string()))
    });
    if tmux.display("#{alternate_on}") != "1" {
        h.fail(&format!(
            "monit should draw on the alternate screen\n{}",
            tmux.screen()
        ));
    }
    // Rows are sorted by name and the first is selected: one step down is `web`.
    tmux.keys(&h, "j");
    tmux.wait_screen(&h, "the web row selected", |s| {
        row(s, "web").is_some_and(|r| r.contains('▶'))
    });
    tmux.keys(&h, "r");
    let restarted = h.wait_value(
        "web's worker replaced after `r` in monit",
        15 * SECOND,
        || {
            h.workers("web").into_iter().find(|w| {
                w.status == "online" && w.pid.is_some_and(|p| p != web_pid) && w.restarts >= 1
            })
        },
    );
    let screen = tmux.wait_screen(&h, "the restart reported and the new pid", |s| {
        s.contains("restarted web")
            && row(s, "web").is_some_and(|r| r.contains(&restarted.pid.unwrap_or(0).to_string()))
    });
    let alpha_now = h.workers("alpha");
    if alpha_now.len() != 1 || alpha_now[0].pid != alpha.pid {
        h.fail(&format!(
            "only the selected app may restart: alpha was {alpha:?}, is {alpha_now:?}\n{screen}"
        ));
    }

    tmux.keys(&h, "q");
    let screen = tmux.wait_screen(&h, "the shell again after q", |s| {
        s.contains("monit exited with")
    });
    if !screen.contains("monit exited with 0") || !screen.contains("stty: as before") {
        h.fail(&format!(
            "monit must exit 0 and leave the terminal settings as it found them\n--- pane ---\n{screen}"
        ));
    }
    let (alternate, cursor) = (
        tmux.display("#{alternate_on}"),
        tmux.display("#{cursor_flag}"),
    );
    if alternate != "0" || cursor != "1" {
        h.fail(&format!(
            "after q: alternate screen {alternate} (want 0), cursor visible {cursor} (want 1)\n{screen}"
        ));
    }
}
