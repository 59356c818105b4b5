//! Issue 6: logs. Worker output goes through the log keeper: every line reaches its app's file with
//! its time and instance, none lost or reordered within a stream, rotation included; `logs` merges and
//! prefixes (`name|instance`), prints JSON, one stream, or the times; it follows across rotations and a
//! flush; and a daemon killed with SIGKILL leaves the workers serving and logging.
//!
//! The fixture app `numbers.js` writes numbered lines to stdout and stderr as fast as it can.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::helpers::{
    Herdsman, SECOND, Streaming, alive, free_port, http_get, marked_pids, start_request_logger,
};

/// One line of `numbers.js`: (instance, stream, Some(seq)), or None for the seq of its `done` line.
type Parsed = (u32, String, Option<u64>);

/// Parses a `numbers.js` line (the text alone, without any prefix).
fn parse(text: &str) -> Option<Parsed> {
    let rest = text.strip_prefix("numbers inst=")?;
    let (inst, rest) = rest.split_once(' ')?;
    let inst: u32 = inst.parse().ok()?;
    let (stream, rest) = rest.split_once(' ')?;
    if stream != "out" && stream != "err" {
        return None;
    }
    if rest == "done" {
        return Some((inst, stream.to_string(), None));
    }
    let rest = rest.strip_prefix("seq=")?;
    let (seq, rest) = rest.split_once(' ')?;
    let seq: u64 = seq.parse().ok()?;
    let pad = rest.strip_prefix("pad=")?.strip_suffix(" end")?;
    pad.bytes()
        .all(|b| b == b'x')
        .then_some((inst, stream.to_string(), Some(seq)))
}

/// Checks that each (instance, stream) has exactly seq 0..lines then `done`, in this order. Returns
/// the problems (the first few).
fn check_sequences(
    parsed: impl IntoIterator<Item = Parsed>,
    instances: u32,
    streams: &[&str],
    lines: u64,
) -> Vec<String> {
    let mut next: BTreeMap<(u32, String), u64> = BTreeMap::new();
    let mut done: BTreeMap<(u32, String), u32> = BTreeMap::new();
    let mut problems = Vec::new();
    for (inst, stream, seq) in parsed {
        let key = (inst, stream);
        if done.contains_key(&key) {
            problems.push(format!("{key:?}: a line after `done`"));
        }
        match seq {
            Some(seq) => {
                let expected = next.entry(key.clone()).or_insert(0);
                if seq != *expected {
                    problems.push(format!("{key:?}: seq {seq}, expected {expected}"));
                }
                *expected = seq + 1;
            }
            None => *done.entry(key).or_insert(0) += 1,
        }
    }
    for inst in 0..instances {
        for stream in streams {
            let key = (inst, stream.to_string());
            if next.get(&key) != Some(&lines) || done.get(&key) != Some(&1) {
                problems.push(format!(
                    "{key:?}: {} lines and {} `done`, expected {lines} and 1",
                    next.get(&key).copied().unwrap_or(0),
                    done.get(&key).copied().unwrap_or(0)
                ));
            }
        }
    }
    problems.truncate(10);
    problems
}

/// `HERDSMAN_HOME/logs/<name>-<stream>.log`.
fn log_path(h: &Herdsman, name: &str, stream: &str) -> PathBuf {
    h.home().join("logs").join(format!("{name}-{stream}.log"))
}

/// The numbers of a log's rotated files, ascending.
fn rotated_numbers(path: &Path) -> Vec<u32> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut found: Vec<u32> = fs::read_dir(path.parent().expect("a log has a directory"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|f| f.strip_prefix(name)?.strip_prefix('.')?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A log's files, oldest first: the rotated ones (highest number first), then the current one.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated_numbers(path)
        .into_iter()
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .collect();
    files.push(path.to_path_buf());
    files
}

/// Splits a log file's line into (instance, text), checking the keeper's `TIME [i] ` prefix.
fn split_file_line(line: &str) -> Option<(u32, &str)> {
    let time = line.get(..24)?;
    let b = time.as_bytes();
    if [b[4], b[7], b[10], b[13], b[16], b[19], b[23]] != *b"--T::.Z" {
        return None;
    }
    let (inst, text) = line.get(24..)?.strip_prefix(" [")?.split_once("] ")?;
    Some((inst.parse().ok()?, text))
}

/// Every line of a log's files, oldest first.
fn read_all(path: &Path) -> String {
    log_files(path)
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// Starts `numbers.js` as `name` with `instances` workers writing `lines` lines per stream.
fn start_numbers(
    h: &Herdsman,
    name: &str,
    instances: u32,
    lines: u64,
    extra: &[&str],
    env: &[(&str, &str)],
) {
    let count = instances.to_string();
    let mut args = vec![
        "start",
        "tests/apps/numbers.js",
        "--name",
        name,
        "-i",
        &count,
    ];
    args.extend_from_slice(extra);
    let mut cmd = h.cmd(&args).env("NUMBERS_LINES", lines.to_string());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.ok();
    h.wait_online(name, instances as usize);
}

/// Waits until every instance wrote its `done` line to both streams' files.
fn wait_done(h: &Herdsman, name: &str, instances: u32) {
    h.wait_for(
        &format!("every `{name}` worker to finish writing"),
        30 * SECOND,
        || {
            ["out", "err"].iter().all(|stream| {
                let text = read_all(&log_path(h, name, stream));
                (0..instances).all(|i| text.contains(&format!("numbers inst={i} {stream} done")))
            })
        },
    );
}

#[test]
fn every_line_reaches_the_file_in_order_with_time_and_instance_and_logs_prefixes_it() {
    let h = Herdsman::new();
    start_numbers(&h, "numbers", 2, 3000, &[], &[]);
    wait_done(&h, "numbers", 2);
    for stream in ["out", "err"] {
        let path = log_path(&h, "numbers", stream);
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut parsed = Vec::new();
        for line in text.lines() {
            match split_file_line(line).and_then(|(i, t)| Some((i, parse(t)?))) {
                Some((i, p)) if p.0 == i && p.1 == stream => parsed.push(p),
                _ => h.fail(&format!("{}: malformed line {line:?}", path.display())),
            }
        }
        let problems = check_sequences(parsed, 2, &[stream], 3000);
        if !problems.is_empty() {
            h.fail(&format!("{}: {problems:?}", path.display()));
        }
    }

    let out = h
        .cmd(&["logs", "numbers", "--nostream", "--lines", "100000"])
        .ok();
    let mut parsed = Vec::new();
    for line in out.stdout.lines() {
        let (prefix, text) = line.split_once(' ').unwrap_or(("", line));
        match (prefix, parse(text)) {
            (prefix, Some(p)) if prefix == format!("numbers|{}", p.0) => parsed.push(p),
            _ => h.fail(&format!(
                "`logs` printed {line:?}, not `numbers|<instance> <line>`\n{out}"
            )),
        }
    }
    let problems = check_sequences(parsed, 2, &["out", "err"], 3000);
    if !problems.is_empty() {
        h.fail(&format!("`logs --nostream`: {problems:?}"));
    }
}

#[test]
fn logs_prints_json_one_stream_times_raw_lines_and_one_worker() {
    let h = Herdsman::new();
    start_numbers(&h, "numbers", 2, 200, &[], &[]);
    wait_done(&h, "numbers", 2);
    let all = ["--nostream", "--lines", "100000"];
    let logs = |extra: &[&str]| {
        let mut args = vec!["logs"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&all);
        h.cmd(&args).ok()
    };

    let out = logs(&["numbers", "--json"]);
    let mut parsed = Vec::new();
    for line in out.stdout.lines() {
        let object: BTreeMap<String, Value> = serde_json::from_str(line)
            .unwrap_or_else(|e| h.fail(&format!("not JSON ({e}): {line}")));
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let text = object["line"].as_str().unwrap_or_default();
        let p = parse(text).unwrap_or_else(|| h.fail(&format!("bad line in {line}")));
        let time = object["time"].as_str().unwrap_or_default();
        if keys != ["app", "instance", "line", "stream", "time"]
            || object["app"] != "numbers"
            || object["instance"] != p.0
            || object["stream"] != p.1.as_str()
            || time.len() != 24
            || !time.ends_with('Z')
        {
            h.fail(&format!("wrong JSON line: {line}"));
        }
        parsed.push(p);
    }
    let problems = check_sequences(parsed, 2, &["out", "err"], 200);
    if !problems.is_empty() {
        h.fail(&format!("`logs --json`: {problems:?}"));
    }

    for (flag, stream) in [("--err", "err"), ("--out", "out")] {
        let out = logs(&["numbers", flag]);
        let parsed: Vec<Parsed> = out
            .stdout
            .lines()
            .filter_map(|l| parse(l.split_once(' ')?.1))
            .collect();
        let problems = check_sequences(parsed, 2, &[stream], 200);
        if !problems.is_empty() || out.stdout.lines().count() != 2 * 201 {
            h.fail(&format!(
                "`logs {flag}` must print only {stream}: {problems:?}\n{out}"
            ));
        }
    }

    let out = logs(&["numbers", "--timestamp", "--out"]);
    for line in out.stdout.lines() {
        let ok = line
            .get(..24)
            .is_some_and(|t| t.ends_with('Z') && t.as_bytes()[10] == b'T')
            && line
                .get(24..)
                .is_some_and(|rest| rest.starts_with(" numbers|"));
        if !ok {
            h.fail(&format!("`logs --timestamp` printed {line:?}"));
        }
    }

    let out = logs(&["numbers", "--raw"]);
    if out.stdout.lines().count() != 4 * 201 || !out.stdout.lines().all(|l| parse(l).is_some()) {
        h.fail(&format!("`logs --raw` must print the lines alone\n{out}"));
    }

    let second = &h.workers("numbers")[1];
    let out = logs(&[&second.id.to_string()]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let only_second = lines.iter().all(|l| {
        l.strip_prefix("numbers|1 ")
            .and_then(parse)
            .is_some_and(|p| p.0 == 1)
    });
    if !only_second || lines.len() != 2 * 201 {
        h.fail(&format!(
            "`logs <id of instance 1>` must print every line of instance 1 and no other\n{out}"
        ));
    }
}

#[test]
fn rotation_under_a_fast_writer_keeps_every_line() {
    let h = Herdsman::new();
    let limit = 64 * 1024;
    let big = ["--log-max-size", "64K", "--log-keep", "100"];
    start_numbers(&h, "numbers", 2, 4000, &big, &[("NUMBERS_PAD", "100")]);
    let small = ["--log-max-size", "64K", "--log-keep", "2"];
    start_numbers(&h, "few", 1, 4000, &small, &[("NUMBERS_PAD", "100")]);
    wait_done(&h, "numbers", 2);
    for stream in ["out", "err"] {
        let path = log_path(&h, "numbers", stream);
        let rotated = rotated_numbers(&path);
        if rotated.len() < 3 || rotated != (1..=rotated.len() as u32).collect::<Vec<_>>() {
            h.fail(&format!(
                "{}: expected rotated files .1 ... .N, found {rotated:?}",
                path.display()
            ));
        }
        for file in log_files(&path) {
            let size = fs::metadata(&file).map_or(0, |m| m.len());
            if size > limit {
                h.fail(&format!(
                    "{} has {size} bytes, more than 64K",
                    file.display()
                ));
            }
        }
        let parsed: Vec<Parsed> = read_all(&path)
            .lines()
            .map(|l| {
                split_file_line(l)
                    .and_then(|(_, t)| parse(t))
                    .unwrap_or_else(|| h.fail(&format!("malformed line {l:?}")))
            })
            .collect();
        let problems = check_sequences(parsed, 2, &[stream], 4000);
        if !problems.is_empty() {
            h.fail(&format!(
                "{} and its rotated files: {problems:?}",
                path.display()
            ));
        }
    }
    // `logs` reads its history back through the rotated files.
    let out = h
        .cmd(&[
            "logs",
            "numbers",
            "--nostream",
            "--lines",
            "100000",
            "--raw",
        ])
        .ok();
    let problems = check_sequences(
        out.stdout.lines().filter_map(parse),
        2,
        &["out", "err"],
        4000,
    );
    if !problems.is_empty() {
        h.fail(&format!(
            "`logs` history across rotated files: {problems:?}"
        ));
    }

    // With log_keep 2, the two most recent rotated files are kept, and they end where the current
    // file starts.
    wait_done(&h, "few", 1);
    let path = log_path(&h, "few", "out");
    if rotated_numbers(&path) != [1, 2] {
        h.fail(&format!(
            "log_keep 2 must keep .1 and .2: {:?}",
            rotated_numbers(&path)
        ));
    }
    let seqs: Vec<Option<u64>> = read_all(&path)
        .lines()
        .filter_map(|l| parse(split_file_line(l)?.1))
        .map(|p| p.2)
        .collect();
    let first = seqs.first().copied().flatten().unwrap_or(0);
    let expected: Vec<Option<u64>> = (first..4000).map(Some).chain([None]).collect();
    if first == 0 || seqs != expected {
        h.fail(&format!(
            "the kept files must hold the last lines, contiguous: from seq {first}, {} lines",
            seqs.len()
        ));
    }
}

#[test]
fn logs_follows_every_line_exactly_once_across_rotations() {
    let h = Herdsman::new();
    let go = h.scratch("go").join("go");
    let go_arg = go.display().to_string();
    let args = ["--log-max-size", "64K", "--log-keep", "1000"];
    let env = [("NUMBERS_PAD", "100"), ("NUMBERS_GO", go_arg.as_str())];
    start_numbers(&h, "numbers", 2, 5000, &args, &env);
    let waiting = |text: &str| (0..2).all(|i| text.contains(&format!("numbers inst={i} waiting")));
    h.wait_for("both workers to say they wait", 10 * SECOND, || {
        waiting(&fs::read_to_string(log_path(&h, "numbers", "out")).unwrap_or_default())
    });

    let mut command = h.command();
    command.args(["logs", "numbers", "--lines", "10"]);
    let mut follow = Streaming::spawn(command);
    h.wait_for("`logs` to print the waiting lines", 10 * SECOND, || {
        waiting(&follow.stdout())
    });
    fs::write(&go, "go\n").expect("create the go file");

    let finished = |text: &str| {
        (0..2).all(|i| {
            ["out", "err"]
                .iter()
                .all(|s| text.contains(&format!("numbers inst={i} {s} done")))
        })
    };
    h.wait_for("`logs` to print every `done` line", 60 * SECOND, || {
        finished(&follow.stdout())
    });
    if !follow.running() {
        h.fail("`logs` stopped following");
    }
    let printed = follow.stdout();
    let parsed: Vec<Parsed> = printed
        .lines()
        .filter(|l| !l.ends_with("waiting"))
        .map(|l| {
            let (prefix, text) = l.split_once(' ').unwrap_or(("", l));
            match parse(text) {
                Some(p) if prefix == format!("numbers|{}", p.0) => p,
                _ => h.fail(&format!("`logs` printed {l:?}")),
            }
        })
        .collect();
    let problems = check_sequences(parsed, 2, &["out", "err"], 5000);
    let rotations = rotated_numbers(&log_path(&h, "numbers", "out")).len();
    if !problems.is_empty() || rotations < 4 {
        h.fail(&format!(
            "`logs` across {rotations} rotations (at least 4 expected): {problems:?}"
        ));
    }
}

#[test]
fn flush_empties_the_logs_and_the_worker_and_logs_go_on() {
    let h = Herdsman::new();
    let port = free_port();
    start_request_logger(&h, port, &["--log-max-size", "1K"]);
    let out_log = log_path(&h, "web", "out");
    for i in 0..30 {
        let path = format!("/before-{i}-padding-to-fill-the-log-quickly");
        http_get(port, &path, 5 * SECOND).unwrap_or_else(|e| h.fail(&format!("GET {path}: {e}")));
    }
    h.wait_for("the requests to be logged and rotated", 10 * SECOND, || {
        read_all(&out_log).contains("/before-29-") && !rotated_numbers(&out_log).is_empty()
    });

    let mut command = h.command();
    command.args(["logs", "web", "--lines", "1"]);
    let follow = Streaming::spawn(command);
    h.wait_for("`logs` to print the last line", 10 * SECOND, || {
        follow.stdout().contains("/before-29-")
    });
    h.cmd(&["flush", "web"]).ok();
    let size = fs::metadata(&out_log).map_or(u64::MAX, |m| m.len());
    if size != 0 || !rotated_numbers(&out_log).is_empty() {
        h.fail(&format!(
            "after flush: {} has {size} bytes and rotated files {:?}",
            out_log.display(),
            rotated_numbers(&out_log)
        ));
    }
    // The worker goes on logging into the emptied file, and `logs` follows it there. The line is longer
    // than the file was before the flush: a follower that looks only after it is written sees a file
    // larger than what it had read, and must still tell that it was truncated.
    let after = format!("/after-flush-{}", "x".repeat(1500));
    http_get(port, &after, 5 * SECOND).unwrap_or_else(|e| h.fail(&format!("GET: {e}")));
    h.wait_for(
        "the request after the flush in the log",
        10 * SECOND,
        || {
            let text = fs::read_to_string(&out_log).unwrap_or_default();
            text.lines().any(|l| {
                split_file_line(l)
                    .is_some_and(|(i, t)| i == 0 && t.ends_with(&format!("url={after}")))
            })
        },
    );
    if read_all(&out_log).contains("/before-") {
        h.fail("old lines survived the flush");
    }
    h.wait_for(
        "`logs` to show the request after the flush",
        10 * SECOND,
        || {
            follow
                .stdout()
                .lines()
                .any(|l| l.starts_with("web|0 ") && l.ends_with(&format!("url={after}")))
        },
    );
    if follow.stdout().matches("/before-").count() != 1 {
        h.fail(&format!(
            "`logs --lines 1` must print one old line only:\n{}",
            follow.stdout()
        ));
    }

    // `flush all` with no daemon empties the files in the home.
    h.cmd(&["kill"]).ok();
    h.cmd(&["flush"]).ok();
    if fs::metadata(&out_log).map_or(1, |m| m.len()) != 0 {
        h.fail("`flush` with no daemon left the log as it was");
    }
}

#[test]
fn a_daemon_killed_with_sigkill_leaves_the_worker_serving_and_logging() {
    let h = Herdsman::new();
    let port = free_port();
    let worker = start_request_logger(&h, port, &[]);
    let daemon = h.daemon_pid();
    kill(Pid::from_raw(daemon), Signal::SIGKILL).expect("SIGKILL the daemon");
    h.wait_for("the daemon to be gone", 10 * SECOND, || !alive(daemon));

    for i in 0..20 {
        let path = format!("/orphaned-{i}");
        let response = http_get(port, &path, 5 * SECOND)
            .unwrap_or_else(|e| h.fail(&format!("GET {path} after the daemon was killed: {e}")));
        if response.status != 200 {
            h.fail(&format!("GET {path}: status {}", response.status));
        }
    }
    let out_log = log_path(&h, "web", "out");
    h.wait_for(
        "the worker's request lines to reach its log",
        10 * SECOND,
        || {
            let text = fs::read_to_string(&out_log).unwrap_or_default();
            (0..20).all(|i| {
                let url = format!("url=/orphaned-{i}");
                text.lines().any(|l| {
                    split_file_line(l).is_some_and(|(inst, t)| inst == 0 && t.ends_with(&url))
                })
            })
        },
    );
    if !alive(worker) {
        h.fail(&format!("worker {worker} died with the daemon"));
    }
    // Still reading: the keeper is a process of this home other than the worker.
    let others: Vec<i32> = marked_pids(h.home())
        .into_iter()
        .filter(|&p| p != worker)
        .collect();
    if others.is_empty() {
        h.fail("no log keeper runs after the daemon was killed");
    }
}

#[test]
fn logs_of_every_app_takes_in_an_app_started_after_it() {
    let h = Herdsman::new();
    start_numbers(&h, "first", 1, 10, &[], &[]);
    wait_done(&h, "first", 1);

    let mut command = h.command();
    command.args(["logs", "--lines", "5"]);
    let mut follow = Streaming::spawn(command);
    h.wait_for("`logs` to print the first app's lines", 10 * SECOND, || {
        follow.stdout().contains("first|0 numbers inst=0")
    });

    // An app created after `logs` started: every line it writes is printed, from its first.
    start_numbers(&h, "second", 1, 50, &[], &[]);
    h.wait_for(
        "`logs` to print every line of the new app",
        15 * SECOND,
        || {
            let printed = follow.stdout();
            printed.contains("second|0 numbers inst=0 out done")
                && printed.contains("second|0 numbers inst=0 err done")
        },
    );
    let printed = follow.stdout();
    let parsed: Vec<Parsed> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("second|0 "))
        .filter_map(parse)
        .collect();
    let problems = check_sequences(parsed, 1, &["out", "err"], 50);
    if !problems.is_empty() || !follow.running() {
        h.fail(&format!(
            "the new app's lines as `logs` printed them: {problems:?}\n{printed}"
        ));
    }
}
