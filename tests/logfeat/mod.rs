//! Issue 12, "logs the way people want them": the line format on disk (`log_prefix`, `log_format`,
//! `log_date_format`, `log_timezone`), `logs --since/--until/--grep`, rotation by time with compressed
//! rotated files, and `reloadLogs` for external rotators. Every test runs the real binary; files are
//! checked line by line.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::libfaketime;
use crate::helpers::{Herdsman, SECOND, write_file};

/// The app's log of a stream in the default place.
fn log_path(h: &Herdsman, name: &str, stream: &str) -> PathBuf {
    h.home().join("logs").join(format!("{name}-{stream}.log"))
}

fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the file has `n` lines, and returns them.
fn wait_lines(h: &Herdsman, path: &Path, n: usize) -> Vec<String> {
    h.wait_for(
        &format!("{n} lines in {}", path.display()),
        10 * SECOND,
        || lines_of(path).len() >= n,
    );
    lines_of(path)
}

/// A shell app that prints `count` JSON lines to stdout (one on stderr), then sleeps.
fn json_app(dir: &Path) -> PathBuf {
    write_file(
        dir,
        "json.sh",
        r#"for i in 1 2 3; do printf '{"level":"info","n":%d,"msg":"a [1] b"}\n' "$i"; done
echo 'to stderr' >&2
exec sleep 600
"#,
    )
}

/// `logs NAME --nostream --json --lines N`, one record a line.
fn logs_json(h: &Herdsman, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--nostream", "--json"];
    all.extend_from_slice(args);
    let out = h.cmd(&all).ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| h.fail(&format!("{e}: {l}"))))
        .collect()
}

#[test]
fn each_line_format_is_written_as_asked_and_read_back_by_logs() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    json_app(&dir);
    let file = write_file(
        &dir,
        "ecosystem.toml",
        r#"
[[apps]]
name = "plain"
script = "json.sh"
log_prefix = false

[[apps]]
name = "structured"
script = "json.sh"
log_format = "json"

[[apps]]
name = "dated"
script = "json.sh"
log_date_format = "%Y-%m-%d %H:%M:%S%.3f %z"
log_timezone = "local"

[[apps]]
name = "custom"
script = "json.sh"
log_date_format = "%d/%m %Hh%M"
"#,
    );
    h.cmd(&["start", file.to_str().expect("utf-8")]).ok();

    // log_prefix = false: the file holds the app's JSON lines exactly.
    let plain = wait_lines(&h, &log_path(&h, "plain", "out"), 3);
    for (i, line) in plain.iter().enumerate() {
        assert_eq!(
            line,
            &format!(r#"{{"level":"info","n":{},"msg":"a [1] b"}}"#, i + 1)
        );
        let value: Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(value["n"], i + 1);
    }
    assert_eq!(
        wait_lines(&h, &log_path(&h, "plain", "err"), 1),
        ["to stderr"]
    );

    // log_format = "json": one object a line with time, app, instance, stream and message.
    let structured = wait_lines(&h, &log_path(&h, "structured", "out"), 3);
    for (i, line) in structured.iter().enumerate() {
        let value: Value = serde_json::from_str(line).expect("one JSON object a line");
        let object = value.as_object().expect("an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["app", "instance", "message", "stream", "time"]);
        assert_eq!(value["app"], "structured");
        assert_eq!(value["instance"], 0);
        assert_eq!(value["stream"], "out");
        assert_eq!(
            value["message"],
            format!(r#"{{"level":"info","n":{},"msg":"a [1] b"}}"#, i + 1)
        );
        let time = value["time"].as_str().expect("a time");
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }
    let err = wait_lines(&h, &log_path(&h, "structured", "err"), 1);
    let value: Value = serde_json::from_str(&err[0]).expect("json");
    assert_eq!(
        (&value["stream"], &value["message"]),
        (&"err".into(), &"to stderr".into())
    );

    // log_date_format: the time as asked, then the instance.
    let dated = wait_lines(&h, &log_path(&h, "dated", "out"), 3);
    let pattern = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4} \[0\] \{")
        .expect("re");
    for line in &dated {
        assert!(pattern.is_match(line), "{line}");
    }
    let custom = wait_lines(&h, &log_path(&h, "custom", "out"), 3);
    let pattern = regex::Regex::new(r"^\d\d/\d\d \d\dh\d\d \[0\] \{").expect("re");
    for line in &custom {
        assert!(pattern.is_match(line), "{line}");
    }

    // `logs` reads every format: texts exactly as written, the instance and time where the file
    // carries them (the daemon tells `logs` each app's date format, so even `%d/%m %Hh%M` reads).
    let expected_text = |n: usize| format!(r#"{{"level":"info","n":{n},"msg":"a [1] b"}}"#);
    let check = |app: &str, instance: Value, timed: bool| {
        let records = logs_json(&h, &[app, "--out"]);
        let texts: Vec<&str> = records.iter().filter_map(|r| r["line"].as_str()).collect();
        assert_eq!(
            texts,
            (1..=3).map(expected_text).collect::<Vec<_>>(),
            "{app}: {records:?}"
        );
        for record in &records {
            assert_eq!(record["instance"], instance, "{app}: {record}");
            assert_eq!(record["time"].is_string(), timed, "{app}: {record}");
        }
    };
    check("plain", Value::Null, false);
    check("structured", Value::from(0), true);
    check("dated", Value::from(0), true);
    check("custom", Value::from(0), true);
    // Without a daemon, the files alone: a time that does not read as one stays part of the text,
    // in file order; the others read as before.
    h.cmd(&["kill"]).ok();
    check("structured", Value::from(0), true);
    check("dated", Value::from(0), true);
    let records = logs_json(&h, &["custom", "--out"]);
    let texts: Vec<&str> = records.iter().filter_map(|r| r["line"].as_str()).collect();
    assert_eq!(texts.len(), 3, "{records:?}");
    for (i, text) in texts.iter().enumerate() {
        assert!(text.ends_with(&expected_text(i + 1)), "{text}");
    }
}

#[test]
fn bad_log_options_are_refused_with_their_place_and_change_nothing() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    json_app(&dir);
    let file = write_file(
        &dir,
        "ecosystem.toml",
        r#"[[apps]]
name = "a"
script = "json.sh"
log_date_format = "%Y %!"
log_timezone = "mars"

[[apps]]
name = "b"
script = "json.sh"
log_prefix = false
log_format = "json"
"#,
    );
    let out = h
        .cmd(&["start", file.to_str().expect("utf-8")])
        .fails_with("ecosystem.toml:5:16: `log_timezone`: invalid log_timezone 'mars'");
    assert!(
        out.stderr
            .contains("ecosystem.toml:4:19: `log_date_format`: invalid log_date_format"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("ecosystem.toml:10:14: `log_prefix`: log_prefix = false writes"),
        "{out}"
    );
    h.cmd(&["start", "json.sh", "--log-date-format", "%!"])
        .cwd(&dir)
        .fails_with("invalid log_date_format '%!'");
    h.cmd(&[
        "start",
        "json.sh",
        "--no-log-prefix",
        "--log-format",
        "json",
    ])
    .cwd(&dir)
    .fails_with("cannot be used with");
    assert!(h.list().is_empty());
    h.cmd(&["kill"]).ok();
}

#[test]
fn start_flags_set_the_line_format() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    json_app(&dir);
    h.cmd(&["start", "json.sh", "--name", "j", "--log-type", "json"])
        .cwd(&dir)
        .ok();
    h.cmd(&["start", "json.sh", "--name", "p", "--no-log-prefix"])
        .cwd(&dir)
        .ok();
    let j = wait_lines(&h, &log_path(&h, "j", "out"), 3);
    let value: Value = serde_json::from_str(&j[0]).expect("json");
    assert_eq!(value["app"], "j");
    let p = wait_lines(&h, &log_path(&h, "p", "out"), 3);
    assert_eq!(p[0], r#"{"level":"info","n":1,"msg":"a [1] b"}"#);
    h.cmd(&["kill"]).ok();
}

/// Now, as RFC 3339 with milliseconds (UTC).
fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .expect("round")
        .to_string()
}

/// `logs ARGS --nostream --raw`, the lines.
fn logs_raw(h: &Herdsman, args: &[&str]) -> Vec<String> {
    let mut all = vec!["logs", "--nostream", "--raw"];
    all.extend_from_slice(args);
    h.cmd(&all)
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn since_until_and_grep_select_lines_by_time_and_text_across_formats_and_rotated_files() {
    let h = Herdsman::new();
    let logs = h.home().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
    // Lines written at known times, in several formats, the oldest in a rotated file.
    fs::write(
        logs.join("old-out.log.1"),
        "2026-11-24T01:00:00.000Z [0] GET /a 200\n2026-11-24T01:00:20.000Z [0] GET /b 500\n",
    )
    .expect("write");
    fs::write(
        logs.join("old-out.log"),
        "2026-11-24T01:00:40.000Z [0] GET /c 200\n\
         {\"time\":\"2026-11-24T01:01:00.000Z\",\"app\":\"old\",\"instance\":1,\"stream\":\"out\",\"message\":\"GET /d 500\"}\n\
         2026-11-24 02:01:20.000 +0100 [0] GET /e 200\n\
         no time here\n",
    )
    .expect("write");
    fs::write(
        logs.join("old-err.log"),
        "2026-11-24T01:00:50.000Z [0] boom\n",
    )
    .expect("write");
    let since = |when: &str| logs_raw(&h, &["old", "--since", when]);
    assert_eq!(
        since("2026-11-24T01:00:20Z"),
        [
            "GET /b 500",
            "GET /c 200",
            "boom",
            "GET /d 500",
            "GET /e 200"
        ]
    );
    assert_eq!(
        logs_raw(
            &h,
            &[
                "old",
                "--since",
                "2026-11-24T01:00:10Z",
                "--until",
                "2026-11-24T01:00:50Z"
            ]
        ),
        ["GET /b 500", "GET /c 200", "boom"]
    );
    assert_eq!(
        logs_raw(&h, &["old", "--until", "2026-11-24T01:00:30Z", "--out"]),
        ["GET /a 200", "GET /b 500"]
    );
    // --grep applies before --lines: the last matching lines, from the rotated file too.
    assert_eq!(
        logs_raw(&h, &["old", "--grep", r" 500$", "--lines", "5"]),
        ["GET /b 500", "GET /d 500"]
    );
    assert_eq!(
        logs_raw(
            &h,
            &[
                "old",
                "--grep",
                "GET /[a-c]",
                "--since",
                "2026-11-24T01:00:10Z"
            ]
        ),
        ["GET /b 500", "GET /c 200"]
    );
    assert_eq!(logs_raw(&h, &["old", "--err", "--grep", "oo"]), ["boom"]);
    // A duration back from now: these lines are older than a day.
    assert!(since("1d").is_empty());
    h.cmd(&["logs", "--since", "yesterday"])
        .fails_with("--since: 'yesterday' is neither a duration");
    h.cmd(&["logs", "--grep", "("])
        .fails_with("--grep: invalid pattern");
    h.cmd(&["logs", "--since", "1h", "--until", "2h"])
        .fails_with("--since is later than --until");
}

#[test]
fn since_selects_the_lines_an_app_wrote_after_a_moment() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    write_file(
        &dir,
        "twice.sh",
        r#"for i in 1 2 3; do echo "early $i"; done
until [ -e go ]; do sleep 0.05; done
for i in 1 2 3 4; do echo "late $i"; done
echo "late err" >&2
exec sleep 600
"#,
    );
    h.cmd(&["start", "twice.sh"]).cwd(&dir).ok();
    let out = log_path(&h, "twice", "out");
    wait_lines(&h, &out, 3);
    let moment = now_rfc3339();
    fs::write(dir.join("go"), "").expect("write");
    wait_lines(&h, &out, 7);
    h.wait_for("the err line", 10 * SECOND, || {
        !lines_of(&log_path(&h, "twice", "err")).is_empty()
    });
    assert_eq!(
        logs_raw(&h, &["twice", "--since", &moment, "--out"]),
        ["late 1", "late 2", "late 3", "late 4"]
    );
    assert_eq!(
        logs_raw(&h, &["twice", "--until", &moment]),
        ["early 1", "early 2", "early 3"]
    );
    assert_eq!(logs_raw(&h, &["twice", "--since", "1h"]).len(), 8);
    // (Across streams, lines are ordered by when the keeper read them.)
    let mut grepped = logs_raw(
        &h,
        &["twice", "--since", &moment, "--grep", "late [24]|err"],
    );
    grepped.sort();
    assert_eq!(grepped, ["late 2", "late 4", "late err"]);
    h.cmd(&["kill"]).ok();
}

/// The text of a log file, gunzipped if it ends in `.gz`; `None` if it is gone (rotated meanwhile) or
/// not whole yet.
fn try_read_log(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .ok()?;
        Some(text)
    } else {
        String::from_utf8(bytes).ok()
    }
}

/// The text of a log file, gunzipped if it ends in `.gz`.
fn read_log(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
        text
    } else {
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// The files of a log, oldest first: `.N(.gz)` down to `.1`, then the current one.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().expect("dir");
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| {
            let file = e.ok()?.file_name().into_string().ok()?;
            let n = file.strip_prefix(name)?.strip_prefix('.')?;
            let n = n.strip_suffix(".gz").unwrap_or(n);
            Some((n.parse().ok()?, dir.join(&file)))
        })
        .collect();
    rotated.sort();
    rotated.reverse();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(path.to_path_buf());
    files
}

/// The texts of `count.sh` lines in the files, in order.
fn numbers_in(files: &[PathBuf]) -> Vec<u32> {
    files
        .iter()
        .flat_map(|f| read_log(f).lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| l.split_once("] line ")?.1.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn rotated_files_are_compressed_and_logs_reads_them_back() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    write_file(
        &dir,
        "count.sh",
        r#"i=0; while [ $i -lt 400 ]; do echo "line $i ......................................"; i=$((i+1)); done
echo done
exec sleep 600
"#,
    );
    h.cmd(&[
        "start",
        "count.sh",
        "--log-max-size",
        "2K",
        "--log-keep",
        "30",
        "--log-compress",
    ])
    .cwd(&dir)
    .ok();
    let out = log_path(&h, "count", "out");
    // (A file listed may be renamed or compressed away before it is read: it is looked at again.)
    h.wait_for("the last line", 20 * SECOND, || {
        log_files(&out)
            .iter()
            .any(|f| try_read_log(f).is_some_and(|t| t.contains("done")))
    });
    // Every rotated file from `.2` on ends up compressed; `.1` stays plain.
    h.wait_for("the rotated files compressed", 20 * SECOND, || {
        log_files(&out).iter().all(|f| {
            let name = f.to_string_lossy();
            name.ends_with(".gz") || name.ends_with(".log") || name.ends_with(".log.1")
        })
    });
    let files = log_files(&out);
    // (A file may pass the limit by a batch while the compressing thread holds the rotation lock.)
    assert!(files.len() > 4, "{files:?}");
    assert!(files[files.len() - 2].to_string_lossy().ends_with(".log.1"));
    assert!(files[0].to_string_lossy().ends_with(".gz"));
    assert_eq!(numbers_in(&files), (0..400).collect::<Vec<_>>());
    // `logs` reads the compressed history transparently, in order.
    let printed = logs_raw(&h, &["count", "--out", "--lines", "1000"]);
    let numbers: Vec<u32> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("line ")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(numbers, (0..400).collect::<Vec<_>>());
    assert_eq!(printed.last().map(String::as_str), Some("done"));
    // flush removes the compressed files too.
    h.cmd(&["flush", "count"]).ok();
    assert_eq!(log_files(&out), vec![out.clone()]);
    h.cmd(&["kill"]).ok();
}

#[test]
fn daily_rotation_starts_a_new_file_at_midnight_and_logs_follows_it() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    write_file(
        &dir,
        "tick.sh",
        r#"i=0; while [ $i -lt 25 ]; do echo "line $i"; i=$((i+1)); sleep 0.2; done
echo done
exec sleep 600
"#,
    );
    // The daemon and its log keeper live two seconds before midnight (UTC) of 2026-11-24: each
    // process's clock starts there when it starts, then runs at the normal pace.
    h.cmd(&[
        "start",
        "tick.sh",
        "--log-rotate",
        "daily",
        "--log-max-size",
        "0",
    ])
    .cwd(&dir)
    .env("LD_PRELOAD", libfaketime())
    .env("FAKETIME", "@2026-11-24 23:59:58")
    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    .env("TZ", "UTC")
    .ok();
    // Following from before midnight.
    let follower = crate::helpers::Streaming::spawn({
        let mut c = h.command();
        c.args(["logs", "tick", "--out", "--raw", "--lines", "100"]);
        c
    });
    let out = log_path(&h, "tick", "out");
    // (A file listed may be renamed or compressed away before it is read: it is looked at again.)
    h.wait_for("the last line", 20 * SECOND, || {
        log_files(&out)
            .iter()
            .any(|f| try_read_log(f).is_some_and(|t| t.contains("done")))
    });
    let files = log_files(&out);
    assert_eq!(files.len(), 2, "one rotation at midnight: {files:?}");
    let before = read_log(&files[0]);
    let after = read_log(&files[1]);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{before}\n--\n{after}"
    );
    for line in before.lines() {
        assert!(line.starts_with("2026-11-24T23:59:5"), "{line}");
    }
    for line in after.lines() {
        assert!(line.starts_with("2026-11-25T00:00:"), "{line}");
    }
    let expected: Vec<u32> = (0..25).collect();
    assert_eq!(numbers_in(&files), expected);
    // `logs` followed the file across the rotation, and reads both for history.
    let printed = |text: String| -> Vec<u32> {
        text.lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect()
    };
    h.wait_for("logs to print every line", 10 * SECOND, || {
        printed(follower.stdout()).len() >= 25
    });
    assert_eq!(printed(follower.stdout()), expected);
    let history = logs_raw(&h, &["tick", "--out", "--lines", "100"]);
    assert_eq!(printed(history.join("\n")), expected);
    h.cmd(&["kill"]).ok();
}

#[test]
fn reload_logs_reopens_each_log_by_path_after_an_external_rotation() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    write_file(
        &dir,
        "idle.sh",
        r#"echo "before 1"; echo "before err" >&2
until [ -e go ]; do sleep 0.05; done
echo "after 1"; echo "after 2"; echo "after err" >&2
exec sleep 600
"#,
    );
    h.cmd(&["start", "idle.sh"]).cwd(&dir).ok();
    let out = log_path(&h, "idle", "out");
    let err = log_path(&h, "idle", "err");
    wait_lines(&h, &out, 1);
    wait_lines(&h, &err, 1);
    // logrotate without copytruncate: rename, then tell herdsman.
    let old_out = out.with_extension("log-20261124");
    let old_err = err.with_extension("log-20261124");
    fs::rename(&out, &old_out).expect("rename");
    fs::rename(&err, &old_err).expect("rename");
    // The app is idle: nothing makes the keeper look at the paths until it is told to.
    h.assert_stays("no new file before reloadLogs", SECOND / 2, || {
        !out.exists()
    });
    let done = h.cmd(&["reloadLogs"]).ok();
    assert!(done.stdout.contains("logs reopened"), "{done}");
    h.wait_for("the logs reopened by path", 5 * SECOND, || {
        out.exists() && err.exists()
    });
    assert!(lines_of(&out).is_empty() && lines_of(&err).is_empty());
    // What the app writes from now on goes to the new files; the renamed ones are left alone.
    fs::write(dir.join("go"), "").expect("write");
    assert_eq!(wait_lines(&h, &out, 2).len(), 2);
    wait_lines(&h, &err, 1);
    let texts = |path: &Path| -> Vec<String> {
        lines_of(path)
            .iter()
            .map(|l| l.split_once("] ").map_or(l.clone(), |(_, t)| t.to_string()))
            .collect()
    };
    assert_eq!(texts(&out), ["after 1", "after 2"]);
    assert_eq!(texts(&err), ["after err"]);
    assert_eq!(texts(&old_out), ["before 1"]);
    assert_eq!(texts(&old_err), ["before err"]);
    // `logs --reopen` is the same request.
    let again = h.cmd(&["logs", "--reopen"]).ok();
    assert!(again.stdout.contains("logs reopened"), "{again}");
    h.cmd(&["logs", "--reopen", "--lines", "3"])
        .fails_with("cannot be used with");
    h.cmd(&["kill"]).ok();
    let stopped = h.cmd(&["reload-logs"]).ok();
    assert!(stopped.stdout.contains("not running"), "{stopped}");
}

#[test]
fn import_maps_pm2_log_date_format_time_and_log_type() {
    let h = Herdsman::new();
    let dir = h.scratch("pm2");
    json_app(&dir);
    let file = write_file(
        &dir,
        "ecosystem.json",
        r#"{"apps": [{"name": "api", "script": "json.sh", "time": true,
            "log_date_format": "YYYY-MM-DD HH:mm:ss.SSS Z", "log_type": "json"}]}"#,
    );
    let out = h.cmd(&["import", file.to_str().expect("utf-8")]).ok();
    assert!(!out.stderr.contains("not imported"), "{out}");
    for line in [
        r#"log_date_format = "%Y-%m-%d %H:%M:%S.%3f %:z""#,
        r#"log_timezone = "local""#,
        r#"log_format = "json""#,
    ] {
        assert!(out.stdout.contains(line), "{line}\n{out}");
    }
    // The converted file runs: its lines are JSON objects whose time is in that format.
    write_file(&dir, "ecosystem.toml", &out.stdout);
    h.cmd(&["start", dir.join("ecosystem.toml").to_str().expect("utf-8")])
        .ok();
    let lines = wait_lines(&h, &log_path(&h, "api", "out"), 3);
    let value: Value = serde_json::from_str(&lines[0]).expect("json");
    let time = value["time"].as_str().expect("time");
    let pattern =
        regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d\d:\d\d$").expect("re");
    assert!(pattern.is_match(time), "{time}");
    let records = logs_json(&h, &["api", "--out"]);
    assert!(records.iter().all(|r| r["time"].is_string()), "{records:?}");
    h.cmd(&["kill"]).ok();
}
