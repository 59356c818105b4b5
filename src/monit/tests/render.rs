//! The screen for fixed data, at 80x24 (the smallest supported), narrower and wider.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::super::app::App;
use super::super::view::{render, truncate};
use super::*;

/// The screen as text, one line a row, trailing spaces cut.
fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| render(app, frame))
        .expect("draw on the test terminal");
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[test]
fn three_apps_at_80x24() {
    let mut app = app_with(three_apps(), 40);
    app.handle_event(ch('j'));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn a_long_app_name_is_cut_with_an_ellipsis() {
    let mut processes = three_apps();
    processes.push(worker(
        4,
        "an-application-with-a-really-long-descriptive-name",
        0,
        Status::Online,
    ));
    // Sorted first, so selected: the chart's title cuts it too.
    let app = app_with(processes, 10);
    let text = screen(&app, 80, 24);
    assert!(text.contains("an-application-with-a-rea…"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_help_overlay() {
    let mut app = app_with(three_apps(), 5);
    app.handle_event(ch('?'));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn a_filter_being_typed_then_applied() {
    let mut app = app_with(three_apps(), 5);
    for c in "/cr".chars() {
        app.handle_event(ch(c));
    }
    insta::assert_snapshot!("filter_typed", screen(&app, 80, 24));
    app.handle_event(key(KeyCode::Enter));
    insta::assert_snapshot!("filter_applied", screen(&app, 80, 24));
}

#[test]
fn the_daemon_gone() {
    let mut app = app_with(three_apps(), 5);
    app.handle_event(Event::Gone(
        "the daemon closed the connection without answering".into(),
    ));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn a_refused_subscription_before_any_snapshot() {
    let mut app = App::new();
    app.handle_event(Event::Refused(
        "monit needs a newer daemon: not supported yet".into(),
    ));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn a_wide_terminal() {
    let mut app = app_with(three_apps(), 100);
    app.handle_event(ch('s'));
    app.handle_event(Event::ActionDone(Ok("stopped api (2 workers)".into())));
    insta::assert_snapshot!(screen(&app, 140, 36));
}

#[test]
fn a_narrow_terminal_drops_the_pid_and_restart_columns() {
    let app = app_with(three_apps(), 5);
    let text = screen(&app, 56, 20);
    assert!(!text.contains("pid"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = app_with(three_apps(), 5);
    app.handle_event(ch('?'));
    app.handle_event(Event::Gone("gone".into()));
    for (width, height) in [(1, 1), (10, 3), (20, 5), (40, 10), (300, 2)] {
        screen(&app, width, height);
    }
}

#[test]
fn truncation() {
    assert_eq!(truncate("api", 5), "api");
    assert_eq!(truncate("abcdef", 4), "abc…");
    assert_eq!(truncate("abcdef", 0), "");
}

#[test]
fn the_jobs_pane_at_80x24() {
    let app = app_with_jobs();
    let text = screen(&app, 80, 24);
    assert!(text.contains("14:33:00 in 3m"), "{text}");
    insta::assert_snapshot!("jobs_pane", text);
}

#[test]
fn the_jobs_pane_focused_with_a_runs_log_open() {
    let mut app = app_with_jobs();
    app.handle_event(key(KeyCode::Tab));
    app.handle_event(key(KeyCode::Enter));
    app.handle_event(Event::Log(vec![LogLine {
        err: false,
        text: "backup: 1.2 GB copied".into(),
    }]));
    insta::assert_snapshot!("jobs_focused_wide", screen(&app, 120, 30));
    insta::assert_snapshot!("jobs_narrow", screen(&app, 56, 20));
}
