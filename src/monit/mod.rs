//! `herdsman monit`: a full-screen dashboard of every worker, live.
//!
//! Lifecycle: [`run`] first connects to the daemon (it never starts one: with none running it fails before
//! touching the terminal). It blocks SIGINT, SIGTERM, SIGHUP and SIGPIPE, starts the [`feed`] threads (the
//! subscription on that connection, the actions worker, the signal waiter), then switches the terminal to
//! raw mode and the alternate screen and starts reading keys. A jobs thread polls the scheduled jobs for
//! the jobs pane, shown below the process table when there is at least one job. The event loop blocks on
//! one channel; each event goes through [`App::handle_event`] (state and update, `app.rs`), the selected app's log is
//! re-read when a snapshot arrives or the selection moves (`logs.rs`), and the frame is drawn by
//! [`view::render`] (view, `view.rs`): on events only, about once a second, and ratatui sends only the
//! cells that changed, so nothing flickers.
//!
//! The terminal is restored as it was found on every way out: `q`, `Esc`, Ctrl-C (a key in raw mode), a
//! signal, an error (the guard's drop) and a panic (a hook restores it, then runs the previous hook). When
//! the daemon goes away the dashboard says so and waits for `q`.

mod app;
mod feed;
mod logs;
mod view;

#[cfg(test)]
mod tests;

use std::io::{Stdout, Write, stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use anyhow::{Context, Result, bail};
use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub use app::{Action, App, Event};

use crate::client::Client;
use crate::home::Home;

/// Log lines kept for the log pane (more than any terminal shows).
const LOG_LINES: usize = 200;

/// Runs the dashboard until the user quits.
pub fn run(home: &Home) -> Result<()> {
    let Some(client) = Client::connect(home)? else {
        bail!(
            "no daemon is running for {}: nothing to monitor (start an app first: `herdsman start app.js`)",
            home.root().display()
        );
    };
    feed::block_signals().context("cannot block signals")?;
    let (events, receiver) = mpsc::channel();
    let actions = feed::actions(home.clone(), events.clone())?;
    feed::subscribe(client, events.clone())?;
    feed::jobs(home.clone(), events.clone())?;
    feed::signals(events.clone())?;
    let mut screen = Screen::enter()?;
    feed::terminal(events)?;
    event_loop(&mut screen.terminal, &receiver, &actions)
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    events: &Receiver<Event>,
    actions: &Sender<Action>,
) -> Result<()> {
    let mut app = App::new();
    let mut log_files = (None, None);
    terminal.draw(|frame| view::render(&app, frame))?;
    while let Ok(first) = events.recv() {
        // Everything already queued is handled before one draw.
        let mut refresh_log = false;
        for event in std::iter::once(first).chain(events.try_iter()) {
            refresh_log |= matches!(event, Event::Snapshot { .. });
            let action = app.handle_event(event);
            if action == Some(Action::Quit) {
                return Ok(());
            }
            if let Some(action) = action
                && actions.send(action).is_err()
            {
                app.handle_event(Event::ActionDone(Err("the actions worker stopped".into())));
            }
        }
        let files = app.log_files();
        if refresh_log || files != log_files {
            let format = app.log_format();
            let lines = logs::tail(files.0.as_deref(), files.1.as_deref(), &format, LOG_LINES);
            app.handle_event(Event::Log(lines));
            log_files = files;
        }
        terminal.draw(|frame| view::render(&app, frame))?;
    }
    Ok(())
}

/// Whether the terminal is in raw mode on the alternate screen (so there is something to restore).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal while the dashboard owns it; dropping it restores the terminal.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        install_panic_hook();
        enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = execute!(stdout(), EnterAlternateScreen, Hide)
            .context("cannot switch to the alternate screen")
            .and_then(|()| {
                Terminal::new(CrosstermBackend::new(stdout())).context("cannot use the terminal")
            });
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = stdout();
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = disable_raw_mode();
        let _ = out.flush();
    }
}

/// A panic restores the terminal first, so its message lands on the normal screen. A panic in one of the
/// feed threads ends the whole process: the dashboard could not go on without it (and must not draw on the
/// restored screen).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
            if std::thread::current().name() != Some("main") {
                std::process::exit(101);
            }
        }));
    });
}
