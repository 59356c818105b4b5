//! Drawing the dashboard: [`render`] turns an [`App`] into one frame and changes nothing.
//!
//! Top to bottom: a title line, the process table, the jobs pane (only when there are scheduled jobs), the
//! selected worker's CPU and memory sparklines beside its app's log (or the open job run's), and a status
//! line. Overlays: the help, and a notice when the daemon refused the
//! subscription or went away. The layout fits 80x24 and grows with the terminal: the name column takes
//! the width left by the fixed columns (long names end in an ellipsis), and below 60 columns the pid and
//! restart columns are dropped.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};

use super::app::{App, Focus, JobRow, Link, RECENT};
use crate::human::{bytes, duration};
use crate::protocol::{JobState, ProcessInfo, RunOutcome, Status};

const HIGHLIGHT: &str = "▶ ";

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let [title, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_title(app, frame, title);
    let rows = app.visible().len().max(1) as u16;
    let table_height = (rows + 3).min((body.height * 2 / 5).max(5));
    let jobs_height = if app.jobs.is_empty() {
        0
    } else {
        (app.jobs.len() as u16 + 3).min((body.height / 3).max(4))
    };
    let [table, jobs, detail] = Layout::vertical([
        Constraint::Length(table_height),
        Constraint::Length(jobs_height),
        Constraint::Min(0),
    ])
    .areas(body);
    render_table(app, frame, table);
    if jobs_height > 0 {
        render_jobs(app, frame, jobs);
    }
    let charts_width = (detail.width * 2 / 5).clamp(20, 60);
    let [charts, log] =
        Layout::horizontal([Constraint::Length(charts_width), Constraint::Min(0)]).areas(detail);
    render_charts(app, frame, charts);
    render_log(app, frame, log);
    render_status(app, frame, status);
    match &app.link {
        Link::Gone(reason) => notice(
            frame,
            "the daemon is gone",
            &format!("{reason}\n\nThe last figures stay on screen. Press q to quit."),
        ),
        Link::Refused(message) => notice(
            frame,
            "the daemon refused the subscription",
            &format!("{message}\n\nPress q to quit."),
        ),
        Link::Waiting | Link::Live => {}
    }
    if app.help {
        render_help(frame);
    }
}

fn render_title(app: &App, frame: &mut Frame, area: Rect) {
    let apps = {
        let mut names: Vec<&str> = app.processes.iter().map(|p| p.name.as_str()).collect();
        names.dedup();
        names.len()
    };
    let mut spans = vec![
        Span::styled(" herdsman monit ", Style::new().bold().reversed()),
        Span::raw(format!(
            "  {apps} app{} · {} worker{}",
            plural(apps),
            app.processes.len(),
            plural(app.processes.len())
        )),
    ];
    if !app.filter.is_empty() {
        spans.push(Span::styled(
            format!("  filter: {}", app.filter),
            Style::new().fg(Color::Yellow),
        ));
    }
    let left = Line::from(spans);
    let hint = "? help  q quit ";
    let fits = left.width() + hint.chars().count() < area.width as usize;
    frame.render_widget(left, area);
    if fits {
        frame.render_widget(Line::from(hint).alignment(Alignment::Right).dim(), area);
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_table(app: &App, frame: &mut Frame, area: Rect) {
    let block = pane(
        " processes ",
        app.focus == Focus::Processes && !app.jobs.is_empty(),
    );
    let inner_width = block.inner(area).width as usize;
    let visible = app.visible();
    if visible.is_empty() {
        let text = match (&app.link, app.processes.is_empty()) {
            (Link::Waiting, _) => "waiting for the daemon's first snapshot…".to_string(),
            (Link::Refused(_) | Link::Gone(_), true) => "no figures from the daemon".to_string(),
            (Link::Live, true) => "no apps; start one with `herdsman start app.js`".to_string(),
            (_, false) => format!("no app name contains '{}' (Esc clears)", app.filter),
        };
        frame.render_widget(Paragraph::new(text).dim().block(block), area);
        return;
    }
    // name, inst, pid, status, cpu, memory, restarts, uptime
    let narrow = inner_width < 60;
    let fixed: [u16; 7] = [4, 7, 9, 6, 8, 3, 6];
    let shown = |i: usize| !(narrow && (i == 1 || i == 5));
    let fixed_width: usize = (0..7)
        .filter(|&i| shown(i))
        .map(|i| fixed[i] as usize + 1)
        .sum();
    let longest = visible
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0);
    let name_width = inner_width
        .saturating_sub(fixed_width + HIGHLIGHT.chars().count())
        .min(longest.max(4))
        .max(4);
    let pick = |cells: [String; 8]| -> Vec<String> {
        let mut out = vec![cells[0].clone()];
        out.extend((0..7).filter(|&i| shown(i)).map(|i| cells[i + 1].clone()));
        out
    };
    let header = pick(
        [
            "name", "inst", "pid", "status", "cpu", "memory", "↺", "uptime",
        ]
        .map(str::to_string),
    );
    let rows = visible.iter().map(|p| {
        let cells = pick([
            truncate(&p.name, name_width),
            p.instance.to_string(),
            p.pid.map_or("-".into(), |pid| pid.to_string()),
            p.status.as_str().to_string(),
            format!("{:.1}%", p.cpu),
            bytes(p.memory),
            p.restarts.to_string(),
            p.uptime_ms.map_or("-".into(), duration),
        ]);
        let style = match p.status {
            Status::Stopped => Style::new().dim(),
            _ => Style::new(),
        };
        Row::new(cells.into_iter().enumerate().map(|(i, cell)| {
            if i == (if narrow { 2 } else { 3 }) {
                Span::styled(cell, status_style(p.status))
            } else {
                Span::raw(cell)
            }
        }))
        .style(style)
    });
    let mut widths = vec![Constraint::Length(name_width as u16)];
    widths.extend(
        (0..7)
            .filter(|&i| shown(i))
            .map(|i| Constraint::Length(fixed[i])),
    );
    let table = Table::new(rows, widths)
        .header(Row::new(header).bold())
        .column_spacing(1)
        .block(block)
        .highlight_symbol(HIGHLIGHT)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// A bordered pane; the one the selection keys move in has a highlighted border when there are two.
fn pane(title: &str, focused: bool) -> Block<'_> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(Style::new().fg(Color::Cyan))
    } else {
        block
    }
}

fn render_jobs(app: &App, frame: &mut Frame, area: Rect) {
    let focused = app.focus == Focus::Jobs;
    let title = if focused {
        " jobs · t run now · p pause/resume · Enter log "
    } else {
        " jobs (Tab) "
    };
    let block = pane(title, focused);
    let inner_width = block.inner(area).width as usize;
    // name, state, schedule, next run, running, last runs, ok/failed
    let narrow = inner_width < 60;
    let longest = app
        .jobs
        .iter()
        .map(|j| j.info.name.chars().count())
        .max()
        .unwrap_or(0);
    let name_width = longest.clamp(4, 16);
    let counts_width = 9;
    let fixed = [9, 18, 6, RECENT.max(6)];
    let mut used = HIGHLIGHT.chars().count() + name_width + fixed.iter().sum::<usize>() + 4;
    if !narrow {
        used += counts_width + 2;
    }
    let schedule_width = inner_width.saturating_sub(used).max(8);
    let now = app.jobs_at_ms;
    let rows = app.jobs.iter().map(|job| {
        let info = &job.info;
        let mut cells: Vec<Cell> = vec![
            truncate(&info.name, name_width).into(),
            Span::styled(info.state.as_str(), job_state_style(info.state)).into(),
        ];
        if !narrow {
            cells.push(truncate(&info.words, schedule_width).into());
        }
        cells.push(next_run(job, now).into());
        let started = info.running.iter().filter_map(|r| r.started_at_ms).min();
        cells.push(match started {
            Some(started) => Span::styled(
                duration(now.saturating_sub(started)),
                Style::new().fg(Color::Yellow),
            )
            .into(),
            None => Span::raw("-").dim().into(),
        });
        cells.push(strip(job).into());
        if !narrow {
            cells.push(format!("{}✓ {}✗", info.ok, info.failed).into());
        }
        let style = match info.state {
            JobState::Paused | JobState::Stopped => Style::new().dim(),
            _ => Style::new(),
        };
        Row::new(cells).style(style)
    });
    let mut header = vec!["name", "state"];
    let mut widths = vec![
        Constraint::Length(name_width as u16),
        Constraint::Length(fixed[0] as u16),
    ];
    if !narrow {
        header.push("schedule");
        widths.push(Constraint::Length(schedule_width as u16));
    }
    header.extend(["next run", "run", "last"]);
    widths.extend(fixed[1..].iter().map(|&w| Constraint::Length(w as u16)));
    if !narrow {
        header.push("ok/failed");
        widths.push(Constraint::Length(counts_width as u16));
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).bold())
        .column_spacing(1)
        .block(block)
        .highlight_symbol(HIGHLIGHT)
        .row_highlight_style(if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        });
    let mut state = TableState::default().with_selected(app.selected_job_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The next fire time on the job's wall clock (its time of day, with the date when it is a day or more
/// away) and how far it is: `14:31:00 in 3m`.
fn next_run(job: &JobRow, now: u64) -> String {
    let (Some(at), Some(local)) = (job.info.next_ms, job.info.next_local.as_deref()) else {
        return "-".into();
    };
    let far = at.saturating_sub(now) >= 86_400_000;
    // `%Y-%m-%d %H:%M:%S %Z`
    let when = if far {
        local.get(5..16)
    } else {
        local.get(11..19)
    }
    .unwrap_or(local);
    if at <= now {
        format!("{when} now")
    } else if at - now < 1000 {
        format!("{when} in <1s")
    } else {
        format!("{when} in {}", duration(at - now))
    }
}

/// The glyph of a finished run in the strip of last runs.
fn outcome_glyph(outcome: RunOutcome) -> Span<'static> {
    match outcome {
        RunOutcome::Ok => Span::styled("✓", Style::new().fg(Color::Green)),
        RunOutcome::Failed => Span::styled("✗", Style::new().fg(Color::Red)),
        RunOutcome::TimedOut => Span::styled("T", Style::new().fg(Color::Red)),
        RunOutcome::Killed => Span::styled("K", Style::new().fg(Color::Red)),
        RunOutcome::Skipped => Span::styled("s", Style::new().fg(Color::Yellow)),
        RunOutcome::Missed => Span::styled("m", Style::new().fg(Color::Yellow)),
        RunOutcome::Running => Span::styled("▶", Style::new().fg(Color::Yellow)),
        RunOutcome::Unknown => Span::styled("?", Style::new().fg(Color::Yellow)),
        RunOutcome::LostLease => Span::styled("L", Style::new().fg(Color::Red)),
    }
}

/// The last runs' outcomes, oldest first, padded with dots to [`RECENT`].
fn strip(job: &JobRow) -> Line<'static> {
    let mut spans: Vec<Span> = (job.recent.len()..RECENT)
        .map(|_| Span::raw("·").dim())
        .collect();
    spans.extend(job.recent.iter().map(|r| outcome_glyph(r.outcome)));
    Line::from(spans)
}

fn job_state_style(state: JobState) -> Style {
    match state {
        JobState::Scheduled => Style::new().fg(Color::Green),
        JobState::Running => Style::new().fg(Color::Yellow),
        JobState::Paused | JobState::Stopped => Style::new().dim(),
    }
}

fn status_style(status: Status) -> Style {
    match status {
        Status::Online => Style::new().fg(Color::Green),
        Status::Launching | Status::Waiting | Status::Stopping => Style::new().fg(Color::Yellow),
        Status::Errored => Style::new().fg(Color::Red),
        Status::Stopped => Style::new().dim(),
    }
}

fn render_charts(app: &App, frame: &mut Frame, area: Rect) {
    let [cpu_area, memory_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let selected = app.selected_process();
    let history = selected.and_then(|p| app.history.get(&p.id));
    let Some((process, history)) = selected.zip(history) else {
        for (title, area) in [(" cpu ", cpu_area), (" memory ", memory_area)] {
            let block = Block::bordered().title(title);
            frame.render_widget(
                Paragraph::new("no worker selected").dim().block(block),
                area,
            );
        }
        return;
    };
    let label = worker_label(process);
    // Tenths of a percent; at least 1 % full scale so an idle worker draws a flat line.
    let cpu: Vec<u64> = history.cpu.iter().map(|c| (c * 10.0) as u64).collect();
    let cpu_peak = history.cpu.iter().copied().fold(0.0f32, f32::max);
    let cpu_block = Block::bordered().title(format!(
        " {label} cpu {:.1}% · peak {cpu_peak:.1}% {}",
        process.cpu,
        runtime_note(process)
    ));
    sparkline(frame, cpu_area, cpu_block, &cpu, 10, Color::Cyan);
    let memory: Vec<u64> = history.memory.iter().map(|m| m / 1024).collect();
    let memory_peak = history.memory.iter().copied().max().unwrap_or(0);
    let memory_block = Block::bordered().title(format!(
        " memory {} · peak {} {}",
        bytes(process.memory),
        bytes(memory_peak),
        queue_note(process)
    ));
    sparkline(frame, memory_area, memory_block, &memory, 1, Color::Magenta);
}

/// The newest points that fit, scaled to a quarter above their peak (a steady value is not a full bar).
fn sparkline(frame: &mut Frame, area: Rect, block: Block, data: &[u64], floor: u64, colour: Color) {
    let width = block.inner(area).width as usize;
    let tail = &data[data.len().saturating_sub(width)..];
    let peak = tail.iter().copied().max().unwrap_or(0);
    let max = (peak + peak / 4).max(floor);
    frame.render_widget(
        Sparkline::default()
            .block(block)
            .data(tail)
            .max(max)
            .style(Style::new().fg(colour)),
        area,
    );
}

/// The event-loop delay a Node worker's preload reported, for the cpu chart's title (empty otherwise).
fn runtime_note(p: &ProcessInfo) -> String {
    p.runtime.map_or(String::new(), |r| {
        format!(
            "· loop p50 {:.1}ms p99 {:.1}ms ",
            r.loop_delay_p50_us as f64 / 1e3,
            r.loop_delay_p99_us as f64 / 1e3
        )
    })
}

/// The heap a Node worker reported and the connections waiting to be accepted, for the memory chart.
fn queue_note(p: &ProcessInfo) -> String {
    let mut note = p
        .runtime
        .map_or(String::new(), |r| format!("· heap {} ", bytes(r.heap_used)));
    let (depth, limit) = p.accept_queues.iter().fold((0u64, 0u64), |(d, l), q| {
        (d + u64::from(q.depth), l + u64::from(q.limit))
    });
    if !p.accept_queues.is_empty() {
        note.push_str(&format!("· queue {depth}/{limit} "));
    }
    if p.nobody_accepting {
        note.push_str("· NOBODY ACCEPTING ");
    }
    note
}

fn worker_label(p: &ProcessInfo) -> String {
    format!("{}:{}", truncate(&p.name, 16), p.instance)
}

fn render_log(app: &App, frame: &mut Frame, area: Rect) {
    let title = match (&app.run_log, app.selected_process()) {
        (Some(run), _) => format!(
            " run {} · attempt {} · {} · Esc closes ",
            truncate(&run.run_id, 40),
            run.attempt,
            run.outcome.as_str()
        ),
        (None, Some(p)) => format!(" log of {} ", truncate(&p.name, 24)),
        (None, None) => " log ".to_string(),
    };
    let block = Block::bordered().title(title);
    let height = block.inner(area).height as usize;
    if app.log.is_empty() {
        frame.render_widget(Paragraph::new("no log lines yet").dim().block(block), area);
        return;
    }
    let lines: Vec<Line> = app.log[app.log.len().saturating_sub(height)..]
        .iter()
        .map(|l| {
            if l.err {
                Line::styled(l.text.as_str(), Style::new().fg(Color::Red))
            } else {
                Line::raw(l.text.as_str())
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let line = if let Some(draft) = &app.editing {
        Line::from(vec![
            Span::styled("/", Style::new().bold()),
            Span::raw(draft.as_str()),
            Span::styled("▏", Style::new().fg(Color::Yellow)),
            Span::raw("   Enter applies · Esc clears").dim(),
        ])
    } else if let Some(status) = &app.status {
        let style = if status.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Green)
        };
        Line::styled(status.text.as_str(), style)
    } else if matches!(app.link, Link::Refused(_) | Link::Gone(_)) {
        Line::raw("q quit").dim()
    } else if app.focus == Focus::Jobs {
        Line::raw("↑↓/jk select a job · t run now · p pause/resume · Enter its log · Tab processes")
            .dim()
    } else if !app.jobs.is_empty() {
        Line::raw("↑↓/jk select · r restart · l reload · s stop · Tab jobs · / filter · ? help")
            .dim()
    } else {
        Line::raw("↑↓/jk select · r restart · l reload · s stop · / filter · ? help · q quit").dim()
    };
    frame.render_widget(line, area);
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "select a worker"),
    ("g G", "first, last worker"),
    ("r", "restart the selected app"),
    ("l", "reload it (zero downtime)"),
    ("s", "stop it"),
    ("Tab", "switch between processes and jobs"),
    ("t", "run the selected job now"),
    ("p", "pause or resume it"),
    ("Enter  o", "show its latest run's log (Esc closes)"),
    ("", "last runs: ✓ ok ✗ failed T timed out"),
    ("", "           K killed s skipped m missed ? unknown"),
    ("/", "filter by name: type, Enter applies"),
    ("Esc", "close a run's log, clear the filter, or quit"),
    ("?", "this help (any key closes it)"),
    ("q  Ctrl-C", "quit"),
];

fn render_help(frame: &mut Frame) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<10} "), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    let area = centered(frame.area(), 58, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        area,
    );
}

fn notice(frame: &mut Frame, title: &str, text: &str) {
    let area = centered(frame.area(), 56, 8);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text.to_string())
            .wrap(Wrap { trim: false })
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .title(format!(" {title} "))
                    .border_style(Style::new().fg(Color::Red)),
            ),
        area,
    );
}

/// A `width` x `height` rectangle in the middle of `area` (smaller if `area` is).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// `text` cut to `width` characters, the last one an ellipsis when something was cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}
