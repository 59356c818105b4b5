//! The update function: selection, filter, help, actions and the link to the daemon.

use super::super::app::{Action, Focus, HISTORY, Link};
use super::*;
use crate::protocol::RunOutcome;

fn selected_name(app: &App) -> Option<String> {
    app.selected_process()
        .map(|p| format!("{}:{}", p.name, p.instance))
}

#[test]
fn rows_are_sorted_and_the_first_is_selected() {
    let app = app_with(three_apps(), 1);
    let names: Vec<String> = app
        .visible()
        .iter()
        .map(|p| format!("{}:{}", p.name, p.instance))
        .collect();
    assert_eq!(names, ["api:0", "api:1", "cron:0", "queue:0"]);
    assert_eq!(selected_name(&app).as_deref(), Some("api:0"));
    assert_eq!(app.link, Link::Live);
}

#[test]
fn selection_moves_and_wraps_at_both_ends() {
    let mut app = app_with(three_apps(), 1);
    assert_eq!(app.handle_event(key(KeyCode::Up)), None);
    assert_eq!(selected_name(&app).as_deref(), Some("queue:0"));
    app.handle_event(ch('j'));
    assert_eq!(selected_name(&app).as_deref(), Some("api:0"));
    app.handle_event(key(KeyCode::Down));
    app.handle_event(ch('j'));
    assert_eq!(selected_name(&app).as_deref(), Some("cron:0"));
    app.handle_event(ch('k'));
    assert_eq!(selected_name(&app).as_deref(), Some("api:1"));
    app.handle_event(ch('G'));
    assert_eq!(selected_name(&app).as_deref(), Some("queue:0"));
    app.handle_event(ch('g'));
    assert_eq!(selected_name(&app).as_deref(), Some("api:0"));
}

#[test]
fn the_selected_worker_stays_selected_when_rows_change() {
    let mut app = app_with(three_apps(), 1);
    app.handle_event(ch('G'));
    assert_eq!(selected_name(&app).as_deref(), Some("queue:0"));
    // A new app sorts before it: the selection follows the worker, not the row.
    let mut more = three_apps();
    more.push(worker(7, "billing", 0, Status::Online));
    app.handle_event(Event::Snapshot {
        at_ms: 1,
        processes: more,
    });
    assert_eq!(selected_name(&app).as_deref(), Some("queue:0"));
    // The selected worker is deleted: the row at its place (clamped to the last) is selected.
    app.handle_event(Event::Snapshot {
        at_ms: 2,
        processes: three_apps()[..2].to_vec(),
    });
    assert_eq!(selected_name(&app).as_deref(), Some("api:1"));
    app.handle_event(Event::Snapshot {
        at_ms: 3,
        processes: Vec::new(),
    });
    assert_eq!(app.selected_process(), None);
    assert_eq!(app.handle_event(ch('j')), None);
    assert_eq!(app.handle_event(ch('r')), None);
    assert!(app.status.as_ref().is_some_and(|s| s.error));
}

#[test]
fn history_is_a_ring_per_worker_id() {
    let app = app_with(three_apps(), HISTORY as u64 + 30);
    let history = &app.history[&0];
    assert_eq!(history.cpu.len(), HISTORY);
    assert_eq!(history.memory.len(), HISTORY);
    // The newest point is the last snapshot's.
    assert_eq!(history.memory.back(), Some(&(40 * 1024 * 1024)));
    let mut app = app;
    app.handle_event(Event::Snapshot {
        at_ms: 9,
        processes: vec![worker(1, "api", 1, Status::Online)],
    });
    assert_eq!(app.history.keys().copied().collect::<Vec<_>>(), [1]);
}

#[test]
fn actions_name_the_selected_app() {
    let mut app = app_with(three_apps(), 1);
    app.handle_event(ch('j'));
    assert_eq!(
        app.handle_event(ch('r')),
        Some(Action::Restart("api".into()))
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("restarting api…")
    );
    app.handle_event(ch('j'));
    assert_eq!(
        app.handle_event(ch('l')),
        Some(Action::Reload("cron".into()))
    );
    assert_eq!(app.handle_event(ch('s')), Some(Action::Stop("cron".into())));
    app.handle_event(Event::ActionDone(Err("app 'cron' not found".into())));
    let status = app.status.clone().expect("a status line");
    assert!(status.error && status.text == "app 'cron' not found");
    app.handle_event(Event::ActionDone(Ok("stopped cron (1 worker)".into())));
    assert!(app.status.as_ref().is_some_and(|s| !s.error));
}

#[test]
fn quitting_keys() {
    let mut app = app_with(three_apps(), 1);
    assert_eq!(app.handle_event(ch('q')), Some(Action::Quit));
    assert_eq!(app.handle_event(key(KeyCode::Esc)), Some(Action::Quit));
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(app.handle_event(ctrl_c.clone()), Some(Action::Quit));
    assert_eq!(app.handle_event(Event::Signal), Some(Action::Quit));
    // Ctrl-C quits even while a filter is typed.
    app.handle_event(ch('/'));
    assert_eq!(app.handle_event(ctrl_c), Some(Action::Quit));
}

#[test]
fn key_releases_are_ignored() {
    let mut app = app_with(three_apps(), 1);
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = crossterm::event::KeyEventKind::Release;
    assert_eq!(app.handle_event(Event::Key(release)), None);
}

#[test]
fn the_filter_applies_on_enter_and_esc_clears_it() {
    let mut app = app_with(three_apps(), 1);
    app.handle_event(ch('/'));
    for c in "QUEx".chars() {
        assert_eq!(
            app.handle_event(ch(c)),
            None,
            "typing {c} does nothing else"
        );
    }
    app.handle_event(key(KeyCode::Backspace));
    assert_eq!(app.editing.as_deref(), Some("QUE"));
    // Not applied while typed.
    assert_eq!(app.visible().len(), 4);
    app.handle_event(key(KeyCode::Enter));
    assert_eq!(app.editing, None);
    assert_eq!(app.filter, "QUE");
    assert_eq!(selected_name(&app).as_deref(), Some("queue:0"));
    assert_eq!(app.visible().len(), 1);
    // Esc clears an applied filter first, and quits only then.
    assert_eq!(app.handle_event(key(KeyCode::Esc)), None);
    assert_eq!(app.filter, "");
    assert_eq!(app.visible().len(), 4);
    // Esc while typing drops the filter.
    app.handle_event(ch('/'));
    app.handle_event(ch('a'));
    app.handle_event(key(KeyCode::Esc));
    assert_eq!(
        (app.editing.clone(), app.filter.clone()),
        (None, String::new())
    );
    // A filter that matches nothing leaves nothing selected; actions need a row.
    app.handle_event(ch('/'));
    app.handle_event(ch('z'));
    app.handle_event(key(KeyCode::Enter));
    assert_eq!(app.selected_process(), None);
    assert_eq!(app.handle_event(ch('s')), None);
}

#[test]
fn help_closes_on_any_key_but_q_still_quits() {
    let mut app = app_with(three_apps(), 1);
    app.handle_event(ch('?'));
    assert!(app.help);
    assert_eq!(app.handle_event(ch('j')), None);
    assert!(!app.help);
    assert_eq!(
        selected_name(&app).as_deref(),
        Some("api:0"),
        "the key only closed the help"
    );
    app.handle_event(ch('?'));
    assert_eq!(app.handle_event(ch('q')), Some(Action::Quit));
}

#[test]
fn a_refused_or_lost_subscription_disables_actions_and_q_quits() {
    let mut app = App::new();
    assert_eq!(app.link, Link::Waiting);
    app.handle_event(Event::Refused("not supported yet".into()));
    // The reader's end of stream after the refusal does not hide the daemon's message.
    app.handle_event(Event::Gone("connection closed".into()));
    assert_eq!(app.link, Link::Refused("not supported yet".into()));
    assert_eq!(app.handle_event(ch('q')), Some(Action::Quit));

    let mut app = app_with(three_apps(), 1);
    app.handle_event(Event::Gone("the daemon closed the connection".into()));
    assert!(matches!(app.link, Link::Gone(_)));
    assert_eq!(app.handle_event(ch('r')), None);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("not connected to the daemon")
    );
    // The last figures stay.
    assert_eq!(app.visible().len(), 4);
    assert_eq!(app.handle_event(ch('q')), Some(Action::Quit));
}

fn job_name(app: &App) -> Option<String> {
    app.selected_job().map(|j| j.info.name.clone())
}

#[test]
fn jobs_are_sorted_and_tab_moves_the_selection_keys_to_them() {
    let mut app = app_with_jobs();
    let names: Vec<&str> = app.jobs.iter().map(|j| j.info.name.as_str()).collect();
    assert_eq!(names, ["backup", "report", "sync"]);
    assert_eq!(app.focus, Focus::Processes);
    assert_eq!(job_name(&app).as_deref(), Some("backup"));
    let process = selected_name(&app);
    assert_eq!(app.handle_event(key(KeyCode::Tab)), None);
    assert_eq!(app.focus, Focus::Jobs);
    app.handle_event(ch('j'));
    assert_eq!(job_name(&app).as_deref(), Some("report"));
    app.handle_event(key(KeyCode::Down));
    app.handle_event(key(KeyCode::Down));
    assert_eq!(job_name(&app).as_deref(), Some("backup"), "wraps around");
    app.handle_event(ch('G'));
    assert_eq!(job_name(&app).as_deref(), Some("sync"));
    app.handle_event(key(KeyCode::Up));
    assert_eq!(job_name(&app).as_deref(), Some("report"));
    assert_eq!(selected_name(&app), process, "the process selection stays");
    app.handle_event(key(KeyCode::BackTab));
    assert_eq!(app.focus, Focus::Processes);
    app.handle_event(ch('j'));
    assert_ne!(selected_name(&app), process);
    assert_eq!(job_name(&app).as_deref(), Some("report"));
}

#[test]
fn the_selected_job_survives_new_lists_and_without_jobs_tab_says_so() {
    let mut app = app_with_jobs();
    app.handle_event(key(KeyCode::Tab));
    app.handle_event(ch('G'));
    // `sync` deleted: the row at its place (the last) is selected.
    let mut jobs = three_jobs();
    jobs.retain(|j| j.info.name != "sync");
    app.handle_event(Event::Jobs { at_ms: 1, jobs });
    assert_eq!(job_name(&app).as_deref(), Some("report"));
    // No jobs left: the focus goes back to the processes.
    app.handle_event(Event::Jobs {
        at_ms: 2,
        jobs: Vec::new(),
    });
    assert_eq!((app.focus, job_name(&app)), (Focus::Processes, None));
    assert_eq!(app.handle_event(key(KeyCode::Tab)), None);
    assert_eq!(app.focus, Focus::Processes);
    assert!(app.status.as_ref().is_some_and(|s| s.error));
}

#[test]
fn t_triggers_and_p_pauses_or_resumes_the_selected_job() {
    let mut app = app_with_jobs();
    app.handle_event(key(KeyCode::Tab));
    assert_eq!(
        app.handle_event(ch('t')),
        Some(Action::Trigger("backup".into()))
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("running backup now…")
    );
    assert_eq!(
        app.handle_event(ch('p')),
        Some(Action::Pause("backup".into()))
    );
    app.handle_event(ch('G'));
    assert_eq!(
        app.handle_event(ch('p')),
        Some(Action::Resume("sync".into())),
        "a paused job resumes"
    );
    app.handle_event(Event::ActionDone(Err("sync: skipped: paused".into())));
    assert!(app.status.as_ref().is_some_and(|s| s.error));
    // r, l and s act on the selected job's app while the jobs pane has the focus.
    assert_eq!(app.handle_event(ch('s')), Some(Action::Stop("sync".into())));
}

#[test]
fn job_keys_in_the_process_table_need_a_jobs_slot() {
    let mut app = app_with_jobs();
    // The first row is `api`, an ordinary app.
    assert_eq!(selected_name(&app).as_deref(), Some("api:0"));
    assert_eq!(app.handle_event(ch('t')), None);
    assert_eq!(
        app.status.as_ref().map(|s| (s.text.as_str(), s.error)),
        Some(("api is not a scheduled job (Tab selects a job)", true))
    );
    // `backup:0` is the job's slot.
    app.handle_event(ch('j'));
    app.handle_event(ch('j'));
    assert_eq!(selected_name(&app).as_deref(), Some("backup:0"));
    assert_eq!(
        app.handle_event(ch('t')),
        Some(Action::Trigger("backup".into()))
    );
    // Without the daemon, nothing is asked.
    app.handle_event(Event::Gone("closed".into()));
    assert_eq!(app.handle_event(ch('t')), None);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("not connected to the daemon")
    );
}

#[test]
fn enter_opens_the_latest_runs_log_and_esc_closes_it() {
    let mut app = app_with_jobs();
    let app_log = app.log_files();
    app.handle_event(key(KeyCode::Tab));
    // backup: its last finished run.
    assert_eq!(app.handle_event(key(KeyCode::Enter)), None);
    let open = app.run_log.clone().expect("a run log open");
    let last = three_jobs()[1].info.last.clone().expect("backup ran");
    assert_eq!(
        (open.job.as_str(), &open.run_id, open.outcome),
        ("backup", &last.run_id, RunOutcome::Ok)
    );
    assert_eq!(app.log_files(), (last.log.clone(), None));
    // report: the run in progress, with `o`; its outcome follows the next list.
    app.handle_event(ch('j'));
    assert_eq!(app.run_log, None, "moving the selection closes it");
    app.handle_event(ch('o'));
    let running = three_jobs()[2].info.running[0].clone();
    assert_eq!(app.log_files(), (running.log.clone(), None));
    let mut jobs = three_jobs();
    let mut ended = running.clone();
    ended.outcome = RunOutcome::Failed;
    jobs[2].info.running.clear();
    jobs[2].info.last = Some(ended);
    app.handle_event(Event::Jobs { at_ms: 3, jobs });
    assert_eq!(
        app.run_log.as_ref().map(|r| r.outcome),
        Some(RunOutcome::Failed)
    );
    // Esc closes the run's log before it would quit.
    assert_eq!(app.handle_event(key(KeyCode::Esc)), None);
    assert_eq!(app.run_log, None);
    assert_eq!(app.log_files(), app_log);
    // sync never ran.
    app.handle_event(ch('G'));
    app.handle_event(key(KeyCode::Enter));
    assert_eq!(app.run_log, None);
    assert_eq!(
        app.status.as_ref().map(|s| (s.text.as_str(), s.error)),
        Some(("sync has not run yet (t runs it now)", true))
    );
    assert_eq!(app.handle_event(key(KeyCode::Esc)), Some(Action::Quit));
}
