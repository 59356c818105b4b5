//! Issue 12, watch mode: `--watch` / `watch = true` reloads an app with no downtime when its files change,
//! once per burst of changes, never because of files the app writes itself, and a change that does not
//! start leaves the old workers serving and says why in `list`. Each test's app lives in a scratch
//! directory of its own (the watched directory), written by the test.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::helpers::{
    Herdsman, Probe, SECOND, alive, free_port, http_get, listen_addr, pids, wait_served_by,
};

/// A Node HTTP server answering its version (and `X-Pid`); it closes gracefully on SIGINT/SIGTERM.
fn server_js(version: &str) -> String {
    format!(
        r#"'use strict';
const http = require('http');
const VERSION = '{version}';
const server = http.createServer((req, res) => {{
  res.writeHead(200, {{ 'X-Pid': String(process.pid), 'Content-Length': Buffer.byteLength(VERSION) }});
  res.end(VERSION);
}});
server.listen(process.env.PORT);
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => server.close(() => process.exit(0)));
"#
    )
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create the directory");
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The `list --json` records of an app, as JSON (for the fields the shared helper does not read).
#[track_caller]
fn records(h: &Herdsman, name: &str) -> Vec<serde_json::Value> {
    let out = h.cmd(&["list", "--json"]).ok();
    let all: Vec<serde_json::Value> = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| h.fail(&format!("`list --json` is not JSON: {e}\n{out}")));
    all.into_iter().filter(|r| r["name"] == name).collect()
}

fn watch_error(h: &Herdsman, name: &str) -> Option<String> {
    records(h, name)
        .first()
        .and_then(|r| r["watch_error"].as_str().map(str::to_string))
}

/// The body served on the port now, if a request succeeds.
fn served(port: u16) -> Option<String> {
    http_get(port, "/", Duration::from_secs(2))
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.body)
}

fn restarts(h: &Herdsman, name: &str) -> Vec<u64> {
    h.workers(name).iter().map(|w| w.restarts).collect()
}

fn daemon_log(h: &Herdsman) -> String {
    fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default()
}

/// Starts `dir/app.js` as `web` (cluster, `n` workers) watching its directory, from that directory.
#[track_caller]
fn start_watched_server(h: &Herdsman, dir: &Path, n: usize, port: u16) {
    h.cmd(&[
        "start",
        "app.js",
        "--name",
        "web",
        "-i",
        &n.to_string(),
        "--listen",
        &listen_addr(port),
        "--watch",
        "--watch-delay",
        "200ms",
    ])
    .cwd(dir)
    .ok();
    let workers = h.wait_online("web", n);
    wait_served_by(h, port, &pids(&workers), 10 * SECOND);
}

#[test]
fn watch_an_edited_script_is_served_after_a_reload_with_no_failed_request() {
    let h = Herdsman::new();
    let dir = h.scratch("site");
    write(&dir.join("app.js"), &server_js("v1"));
    let port = free_port();
    start_watched_server(&h, &dir, 2, port);
    let old = pids(&h.workers("web"));
    if served(port).as_deref() != Some("v1") {
        h.fail("the first version is not served");
    }
    let probe = Probe::start(port);
    h.wait_for("the probe's first 5 responses", 5 * SECOND, || {
        probe.ok_count() >= 5
    });

    write(&dir.join("app.js"), &server_js("v2"));
    h.wait_for("the edited script served (v2)", 20 * SECOND, || {
        served(port).as_deref() == Some("v2")
    });
    let new = h.wait_value(
        "both workers replaced, online, once each",
        20 * SECOND,
        || {
            let w = h.workers("web");
            (w.len() == 2
                && w.iter().all(|p| {
                    p.status == "online"
                        && p.restarts == 1
                        && p.pid.is_some_and(|pid| !old.contains(&pid))
                }))
            .then(|| pids(&w))
        },
    );
    let ok_now = probe.ok_count();
    h.wait_for(
        "50 more probe responses after the reload",
        15 * SECOND,
        || probe.ok_count() >= ok_now + 50,
    );
    let report = probe.finish();
    if !report.failures.is_empty() {
        h.fail(&format!(
            "{} new connection(s) failed during the reload a change made (ok: {}): {:?}",
            report.failures.len(),
            report.ok,
            report.failures
        ));
    }
    wait_served_by(&h, port, &new, 10 * SECOND);
    if let Some(pid) = old.iter().find(|&&pid| alive(pid)) {
        h.fail(&format!("old worker {pid} still alive after the reload"));
    }
    let log = daemon_log(&h);
    if !log.contains("watch: files changed: reloading") || !log.contains("app.js") {
        h.fail("daemon.log does not say which change reloaded the app");
    }
    if watch_error(&h, "web").is_some()
        || !records(&h, "web")[0]["watching"].as_bool().unwrap_or(false)
    {
        h.fail("`list --json` must show watching: true and no watch_error");
    }
}

#[test]
fn watch_a_500_file_change_is_one_reload() {
    let h = Herdsman::new();
    let dir = h.scratch("repo");
    write(
        &dir.join("app.js"),
        "setInterval(() => {}, 1000);\nprocess.on('SIGINT', () => process.exit(0));\n",
    );
    for i in 0..500 {
        write(
            &dir.join(format!("lib/m{i}.js")),
            &format!("module.exports = {i};\n"),
        );
    }
    // Twice the default delay: a test thread descheduled for 500 ms on a loaded machine must not split the
    // checkout in two bursts.
    h.cmd(&[
        "start",
        "app.js",
        "--name",
        "repo",
        "--watch",
        "--watch-delay",
        "1s",
    ])
    .cwd(&dir)
    .ok();
    h.wait_online("repo", 1);
    h.wait_for("the watcher to be up", 10 * SECOND, || {
        daemon_log(&h).contains("watching for changes")
    });

    // What a `git checkout` does: 400 files rewritten, 50 removed, 50 added in a new directory.
    for i in 0..400 {
        write(
            &dir.join(format!("lib/m{i}.js")),
            &format!("module.exports = {};\n", i + 1),
        );
    }
    for i in 400..450 {
        fs::remove_file(dir.join(format!("lib/m{i}.js"))).expect("remove a module");
    }
    for i in 0..50 {
        write(
            &dir.join(format!("lib/new/n{i}.js")),
            &format!("module.exports = {i};\n"),
        );
    }
    h.wait_for("one reload after the checkout", 20 * SECOND, || {
        let w = h.workers("repo");
        w.len() == 1 && w[0].restarts == 1 && w[0].status == "online"
    });
    h.assert_stays("exactly one reload for the 500 changes", 3 * SECOND, || {
        restarts(&h, "repo") == [1]
    });
    let reloads = daemon_log(&h).matches("watch: files changed").count();
    if reloads != 1 {
        h.fail(&format!(
            "expected one reported burst of changes, daemon.log has {reloads}"
        ));
    }

    // A file added in the new directory later counts too: it is watched.
    write(&dir.join("lib/new/late.js"), "module.exports = 0;\n");
    h.wait_for(
        "a second reload for a file in the new directory",
        20 * SECOND,
        || restarts(&h, "repo") == [2],
    );
}

/// Writes, every 50 ms, the files an app typically keeps in its own directory: a database, a pid file,
/// JSON state, a cache directory, its own log file; and a line on stdout (its log is in the directory).
const SELF_WRITER: &str = r#"'use strict';
const fs = require('fs');
let n = 0;
fs.writeFileSync('app.pid', String(process.pid));
setInterval(() => {
  n += 1;
  fs.appendFileSync('data.db', 'row ' + n + '\n');
  fs.writeFileSync('state.json', JSON.stringify({ n }));
  fs.mkdirSync('cache', { recursive: true });
  fs.writeFileSync('cache/page-' + (n % 5) + '.bin', String(n));
  fs.appendFileSync('app.log', 'tick ' + n + '\n');
  console.log('tick ' + n);
}, 50);
process.on('SIGINT', () => process.exit(0));
"#;

#[test]
fn watch_an_app_writing_into_its_own_directory_does_not_reload_itself() {
    let h = Herdsman::new();
    // The default: only the app's source files count.
    let quiet = h.scratch("quiet");
    write(&quiet.join("app.js"), SELF_WRITER);
    h.cmd(&[
        "start",
        "app.js",
        "--name",
        "quiet",
        "--watch",
        "--watch-delay",
        "100ms",
        "-o",
        "out.log",
        "-e",
        "err.log",
    ])
    .cwd(&quiet)
    .ok();
    // Named paths: every file counts, but the app's own logs and what ignore_watch names.
    let named = h.scratch("named");
    write(&named.join("app.js"), SELF_WRITER);
    h.cmd(&[
        "start",
        "app.js",
        "--name",
        "named",
        "--watch=.",
        "--ignore-watch",
        "*.db *.pid state.json,cache app.log",
        "--watch-delay",
        "100ms",
        "-o",
        "logs/out.log",
        "-e",
        "logs/err.log",
    ])
    .cwd(&named)
    .ok();
    h.wait_online("quiet", 1);
    h.wait_online("named", 1);
    let ticks =
        |dir: &Path| fs::read_to_string(dir.join("data.db")).map_or(0, |t| t.lines().count());
    h.wait_for(
        "both apps writing into their directories",
        10 * SECOND,
        || ticks(&quiet) >= 5 && ticks(&named) >= 5,
    );
    let (quiet_before, named_before) = (ticks(&quiet), ticks(&named));
    h.assert_stays(
        "no reload while the apps write their own files",
        3 * SECOND,
        || restarts(&h, "quiet") == [0] && restarts(&h, "named") == [0],
    );
    if ticks(&quiet) < quiet_before + 20 || ticks(&named) < named_before + 20 {
        h.fail("the apps stopped writing during the window: the check proves nothing");
    }
    // The watchers are alive: an edit of the code reloads each app once, and no loop follows.
    write(&quiet.join("app.js"), &format!("{SELF_WRITER}// edited\n"));
    write(&named.join("app.js"), &format!("{SELF_WRITER}// edited\n"));
    h.wait_for("one reload of each app after its edit", 20 * SECOND, || {
        restarts(&h, "quiet") == [1] && restarts(&h, "named") == [1]
    });
    h.assert_stays("no reload loop after the edit", 2 * SECOND, || {
        restarts(&h, "quiet") == [1] && restarts(&h, "named") == [1]
    });
}

#[test]
fn watch_a_broken_change_keeps_the_old_workers_serving_and_list_says_why() {
    let h = Herdsman::new();
    let dir = h.scratch("broken");
    write(&dir.join("app.js"), &server_js("v1"));
    let port = free_port();
    start_watched_server(&h, &dir, 2, port);
    let old = pids(&h.workers("web"));
    let probe = Probe::start(port);
    h.wait_for("the probe's first 5 responses", 5 * SECOND, || {
        probe.ok_count() >= 5
    });

    write(
        &dir.join("app.js"),
        "throw new Error('broken on purpose');\n",
    );
    let error = h.wait_value(
        "`list --json` to report the failed reload",
        20 * SECOND,
        || watch_error(&h, "web"),
    );
    if !error.contains("exited") || !error.contains("keep serving") {
        h.fail(&format!(
            "watch_error does not say what happened: {error:?}"
        ));
    }
    let ok_now = probe.ok_count();
    h.wait_for(
        "20 more probe responses after the failure",
        10 * SECOND,
        || probe.ok_count() >= ok_now + 20,
    );
    let report = probe.finish();
    if !report.failures.is_empty() || !report.pids.is_subset(&old) {
        h.fail(&format!(
            "the old workers must keep serving every request: failures {:?}, served by {:?}, old {old:?}",
            report.failures, report.pids
        ));
    }
    let w = h.workers("web");
    if pids(&w) != old || w.iter().any(|p| p.status != "online" || p.restarts != 0) {
        h.fail(&format!("the old workers must stay as they were: {w:?}"));
    }
    if served(port).as_deref() != Some("v1") {
        h.fail("the old code must still be served");
    }
    let table = h.cmd(&["list"]).ok();
    if !table.stdout.contains("web: watch:") || !table.stdout.contains("exited") {
        h.fail(&format!(
            "`list` must say the reload after a change failed\n{table}"
        ));
    }
    if !daemon_log(&h).contains("the reload after a change failed") {
        h.fail("daemon.log must say the reload after a change failed");
    }

    // The fix reloads, and the failure is gone.
    write(&dir.join("app.js"), &server_js("v2"));
    h.wait_for("the fixed script served (v2)", 20 * SECOND, || {
        served(port).as_deref() == Some("v2")
    });
    h.wait_for(
        "watch_error cleared after a good reload",
        10 * SECOND,
        || watch_error(&h, "web").is_none(),
    );
}

#[test]
fn watch_options_are_checked_with_their_place_in_the_file() {
    let h = Herdsman::new();
    let dir = h.scratch("conf");
    write(&dir.join("app.js"), "setInterval(() => {}, 1000);\n");
    write(
        &dir.join("ecosystem.toml"),
        "[[apps]]\nscript = \"app.js\"\nwatch = [\"src\"]\n\n[[apps]]\nname = \"b\"\nscript = \"app.js\"\nignore_watch = [\"*.db\"]\n",
    );
    let out = h
        .cmd(&["start", "ecosystem.toml"])
        .cwd(&dir)
        .fails_with("path to watch not found");
    for needle in [
        "ecosystem.toml:3:9",
        "ecosystem.toml:8:16",
        "has no effect without `watch`",
    ] {
        if !out.stderr.contains(needle) {
            h.fail(&format!("expected {needle:?} in the error\n{out}"));
        }
    }
    if !h.list().is_empty() {
        h.fail("a bad file must start nothing");
    }
}

#[test]
fn watch_a_deploy_switching_the_current_link_reloads_the_new_release() {
    let h = Herdsman::new();
    let root = h.scratch("deploy");
    write(&root.join("releases/1/app.js"), &server_js("release 1"));
    std::os::unix::fs::symlink("releases/1", root.join("current")).expect("link current");
    let port = free_port();
    // The app's directory is the link (a shell's cwd would be the release it names).
    h.cmd(&[
        "start",
        "current/app.js",
        "--name",
        "web",
        "--cwd",
        "current",
        "--listen",
        &listen_addr(port),
        "--watch",
        "--watch-delay",
        "200ms",
    ])
    .cwd(&root)
    .ok();
    let workers = h.wait_online("web", 1);
    wait_served_by(&h, port, &pids(&workers), 10 * SECOND);
    if served(port).as_deref() != Some("release 1") {
        h.fail("release 1 is not served");
    }
    // What a deploy does: the new release beside the old, then `current` switched in one rename.
    write(&root.join("releases/2/app.js"), &server_js("release 2"));
    h.assert_stays(
        "no reload for a release not yet switched to",
        SECOND,
        || restarts(&h, "web") == [0],
    );
    std::os::unix::fs::symlink("releases/2", root.join("current.new")).expect("link current.new");
    fs::rename(root.join("current.new"), root.join("current")).expect("switch current");
    h.wait_for("release 2 served after the switch", 20 * SECOND, || {
        served(port).as_deref() == Some("release 2")
    });
    h.wait_for("one reload", 10 * SECOND, || restarts(&h, "web") == [1]);
    // The new release's files are watched now.
    write(
        &root.join("releases/2/app.js"),
        &server_js("release 2, patched"),
    );
    h.wait_for("the patch to the new release served", 20 * SECOND, || {
        served(port).as_deref() == Some("release 2, patched")
    });
}

#[test]
fn watch_turned_on_in_the_file_leaves_the_workers_running_and_then_reloads_on_changes() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    write(&dir.join("app.js"), &server_js("v1"));
    let port = free_port();
    let file = |watch: &str| {
        format!(
            "[[apps]]\nname = \"web\"\nscript = \"app.js\"\nlisten = \"127.0.0.1:{port}\"\n{watch}"
        )
    };
    write(&dir.join("ecosystem.toml"), &file(""));
    h.cmd(&["start", "ecosystem.toml"]).cwd(&dir).ok();
    let before = pids(&h.wait_online("web", 1));
    wait_served_by(&h, port, &before, 10 * SECOND);

    write(
        &dir.join("ecosystem.toml"),
        &file("watch = true\nwatch_delay = \"200ms\"\n"),
    );
    let out = h.cmd(&["reload", "ecosystem.toml"]).cwd(&dir).ok();
    if !out
        .stdout
        .contains("web: changed (watch): watching its files; the workers go on")
    {
        h.fail(&format!(
            "expected the app to take watch mode without a reload\n{out}"
        ));
    }
    let w = h.workers("web");
    if pids(&w) != before || w[0].restarts != 0 {
        h.fail(&format!(
            "turning watch on must not replace the workers: {w:?}"
        ));
    }
    h.wait_for("the watcher to be up", 10 * SECOND, || {
        daemon_log(&h).contains("watching for changes")
    });
    write(&dir.join("app.js"), &server_js("v2"));
    h.wait_for("v2 served after the change", 20 * SECOND, || {
        served(port).as_deref() == Some("v2")
    });
}

/// Writes its pid file as it starts (as puma writes `tmp/pids/server.pid`), keeps a database and its journal
/// open and writes to them every 50 ms, as SQLite does.
const DB_WRITER: &str = r#"'use strict';
const fs = require('fs');
fs.mkdirSync('tmp/pids', { recursive: true });
fs.writeFileSync('tmp/pids/server.pid', process.pid + '\n');
const db = fs.openSync('data.db', 'a');
const journal = fs.openSync('data.db-wal', 'a');
let n = 0;
setInterval(() => {
  n += 1;
  fs.writeSync(db, 'row ' + n + '\n');
  fs.writeSync(journal, 'page ' + n + '\n');
}, 50);
process.on('SIGINT', () => process.exit(0));
"#;

#[test]
fn watch_the_apps_open_database_and_pid_file_never_reload_it() {
    let h = Herdsman::new();
    let dir = h.scratch("db");
    write(&dir.join("app.js"), DB_WRITER);
    // Every file of the directory counts, and nothing is in ignore_watch.
    h.cmd(&[
        "start",
        "app.js",
        "--name",
        "db",
        "--watch=.",
        "--watch-delay",
        "100ms",
    ])
    .cwd(&dir)
    .ok();
    h.wait_online("db", 1);
    let rows = || fs::read_to_string(dir.join("data.db")).map_or(0, |t| t.lines().count());
    h.wait_for("the app writing its database", 10 * SECOND, || rows() >= 5);
    // Written without a pause: each second (ten delays) a report comes, and is found to be the app's.
    h.assert_stays("no reload for the app's own database", 3 * SECOND, || {
        restarts(&h, "db") == [0]
    });
    if !daemon_log(&h).contains("changes to the app's own files") {
        h.fail("daemon.log must say why the database's changes do not reload the app");
    }
    // An edit among the database's writes still reloads it, once.
    write(&dir.join("app.js"), &format!("{DB_WRITER}// edited\n"));
    h.wait_for("one reload after the edit", 20 * SECOND, || {
        restarts(&h, "db") == [1]
    });
    h.assert_stays("no reload loop after the edit", 3 * SECOND, || {
        restarts(&h, "db") == [1]
    });
}
