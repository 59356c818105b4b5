//! The entry points of the fuzz targets (`fuzz/`): one per parser of input from outside, each taking the raw
//! bytes an attacker or a damaged file could give it. The fuzz targets call these under AFL++; the corpus
//! replay test (`tests/fuzz_replay.rs`) calls them with every stored input, so CI checks the same code
//! without a fuzzer.
//!
//! Each function must return for any input: an `Err` is the expected answer to bad input, a panic is a bug.
//! Where a parsed value is sent on (a spec the CLI sends to the daemon), it is checked to come back the same.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

use jiff::Timestamp;

use crate::config::AppSpec;
use crate::protocol::{self, ApplyAction, ApplyRequest, FrameError, Hello, Request, Response};

/// A target's entry point.
pub type Target = fn(&[u8]);

/// The targets, by the names of their corpus directories (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("protocol", protocol_frames),
    ("keeper", keeper_requests),
    ("config", ecosystem_file),
    ("import", pm2_file),
    ("dump", dump_file),
    ("log_line", log_lines),
    ("dotenv", dotenv_file),
    ("adoption", state_file),
    ("jobstore", job_journal),
    ("cron", cron_expression),
];

/// The part of `data` before the first `\n` (a parameter: a zone, a date format), and the rest.
fn split_first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[], data),
    }
}

/// Every line of `data` as the reader of a control connection splits it (with a small buffer, so that a
/// line spans several reads), until the end or the first error.
fn frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = BufReader::with_capacity(7, data);
    let mut lines = Vec::new();
    loop {
        match protocol::read_line(&mut reader) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) | Err(FrameError::Truncated | FrameError::TooLarge) => return lines,
            Err(e) => panic!("reading from memory failed: {e}"),
        }
    }
}

/// A spec, as the CLI sends it, must come back the same from the daemon's decoder.
fn round_trip_spec(spec: &AppSpec) {
    let bytes = protocol::encode_frame(spec).expect("a spec encodes");
    let back: AppSpec =
        protocol::decode(&bytes[..bytes.len() - 1]).expect("an encoded spec decodes");
    assert_eq!(&back, spec, "a spec changed on the wire");
}

/// The control protocol as the controller and the CLI read it: frames split from a byte stream, each
/// decoded as a request (the controller), a greeting and an answer (the CLI).
pub fn protocol_frames(data: &[u8]) {
    for line in frames(data) {
        let _ = protocol::decode::<Request>(&line);
        let _ = protocol::decode::<Hello>(&line);
        let generic = protocol::decode::<Response>(&line);
        match (&generic, Response::decode(&line)) {
            (Ok(generic), Ok(fast)) => {
                let _ = generic.is_progress();
                assert_eq!(
                    serde_json::to_string(generic).ok(),
                    serde_json::to_string(&fast).ok(),
                    "the fast decode of an answer differs from serde's"
                );
            }
            (Err(_), Err(_)) => {}
            // A field the answer does not use is skipped by the fast decode unread, as serde skips an
            // unknown field of a struct; the general decode buffers it, so a lone surrogate or a number out
            // of range there fails only the latter. That is the one difference allowed: on a document that
            // is not valid JSON as serde reads it.
            (Err(_), Ok(_)) if serde_json::from_slice::<serde_json::Value>(&line).is_err() => {}
            (generic, fast) => panic!(
                "the fast decode of an answer and serde's disagree: {:?} against {:?}",
                generic.as_ref().err(),
                fast.err()
            ),
        }
        let _ = Response::line_is_progress(&line);
        let _ = protocol::read_frame::<Request>(&mut BufReader::new(&line[..]));
    }
}

/// What the keeper decodes from the controller: requests, and what it does with them before they reach an
/// app (patterns compiled, sizes resolved, specs checked), and each request re-encoded as the controller
/// relays it.
pub fn keeper_requests(data: &[u8]) {
    for line in frames(data) {
        let Ok(request) = protocol::decode::<Request>(&line) else {
            continue;
        };
        let relayed = protocol::encode_frame(&request).expect("a request encodes");
        protocol::decode::<Request>(&relayed[..relayed.len() - 1])
            .expect("a relayed request decodes again");
        match &request {
            Request::StartExisting { target }
            | Request::Stop { target }
            | Request::Restart { target, .. }
            | Request::Delete { target }
            | Request::Reload { target, .. }
            | Request::Signal { target, .. }
            | Request::Describe { target }
            | Request::Flush { target } => {
                let _ = target.matcher();
                if let protocol::Selection::Many(list) = target {
                    for one in list {
                        let _ = one.matcher();
                    }
                }
            }
            Request::Scale { to, .. } => {
                for current in [0, 1, 4096, u32::MAX] {
                    let _ = to.resolve(current);
                }
            }
            Request::Start(start) => {
                let _ = start.spec.command_line();
                round_trip_spec(&start.spec);
            }
            Request::Apply(apply) => {
                for spec in &apply.apps {
                    let _ = spec.command_line();
                    round_trip_spec(spec);
                }
            }
            _ => {}
        }
    }
}

/// `ecosystem.toml` through the whole check the CLI makes (`start`, `reload`, `check`): TOML, every key and
/// value, profiles, dependencies, fleet; each app resolved is sent to the daemon as `apply` does.
pub fn ecosystem_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::env::temp_dir().join("ecosystem.toml");
    let env = BTreeMap::from([("HOME".to_string(), "/home/fuzz".to_string())]);
    let _ = crate::config::file::parse(text);
    for profile in [None, Some("production")] {
        let Ok(loaded) =
            crate::config::file::load_text(&path, "ecosystem.toml", text, &[], profile, &env)
        else {
            continue;
        };
        for spec in &loaded.apps {
            round_trip_spec(spec);
        }
        let request = Request::Apply(ApplyRequest {
            apps: loaded.apps,
            action: ApplyAction::Reload,
            prune: false,
            file_apps: loaded.names,
        });
        protocol::encode_frame(&request).expect("an apply request encodes");
    }
}

/// A PM2 JSON ecosystem file for `import`, and the TOML written from it read back by herdsman.
pub fn pm2_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(converted) =
        crate::cli::import::convert_text(text, Path::new("ecosystem.config.json"))
    {
        let _ = crate::config::file::parse(&converted.text);
    }
}

/// The dump that `save` writes and `resurrect` reads.
pub fn dump_file(data: &[u8]) {
    if let Ok(apps) = crate::daemon::persist::decode(data, Path::new("dump.json")) {
        for spec in &apps {
            let _ = spec.command_line();
            round_trip_spec(spec);
        }
    }
}

/// Lines of a log file as `logs` and `monit` read them: the first line of the input is the app's
/// `log_date_format` (empty: none), each other line is read with it and without.
pub fn log_lines(data: &[u8]) {
    use crate::logs::format::{LineFormat, LogTimezone, parse_any_time, parse_line, parse_line_as};
    let (format, lines) = split_first_line(data);
    let format = String::from_utf8_lossy(format);
    let text = String::from_utf8_lossy(lines);
    let date_format = (!format.is_empty() && LineFormat::check_date_format(&format).is_ok())
        .then(|| format.to_string());
    let formats = [LogTimezone::Utc, LogTimezone::Local].map(|timezone| LineFormat {
        date_format: date_format.clone(),
        timezone,
        ..LineFormat::default()
    });
    for line in text.lines() {
        let _ = parse_line(line);
        let _ = parse_any_time(line);
        for format in &formats {
            let _ = parse_line_as(line, format);
        }
    }
}

/// A dotenv file (`env_file`, `--env-file`).
pub fn dotenv_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::dotenv::parse(text);
    }
}

/// The record a new keeper adopts: `state.json`, then (after a `\0` byte) the apps' file it names; without
/// one, the whole input is tried as both.
pub fn state_file(data: &[u8]) {
    use crate::daemon::state_record::{decode_apps, decode_record};
    let (state, apps) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let _ = decode_record(state);
    let _ = decode_apps(apps);
}

/// The jobs' journal as a starting daemon folds it (with empty snapshots), and a job's snapshot.
pub fn job_journal(data: &[u8]) {
    use crate::daemon::jobstore::{Stored, decode_snapshot, replay};
    for (_, mut stored, _) in replay(data, |_| Stored::default()) {
        stored.keep_in_memory();
    }
    if let Ok(mut stored) = decode_snapshot(data) {
        stored.keep_in_memory();
    }
}

/// A cron expression (`schedule`, `cron_restart`): the first line of the input is the zone (empty: the
/// host's), the rest the expression; a schedule parsed is asked for its fire times.
pub fn cron_expression(data: &[u8]) {
    use crate::schedule::cron::Schedule;
    let (zone, expr) = split_first_line(data);
    let (Ok(zone), Ok(expr)) = (std::str::from_utf8(zone), std::str::from_utf8(expr)) else {
        return;
    };
    let zone = (!zone.is_empty()).then_some(zone);
    let Ok(schedule) = Schedule::parse(expr, zone) else {
        return;
    };
    let _ = schedule.describe();
    let at = Timestamp::from_second(1_780_000_000).expect("a valid time");
    let _ = schedule.upcoming(at, 3);
    let _ = schedule.latest_between(Timestamp::UNIX_EPOCH, at);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::TARGETS;

    /// The stored inputs of a target: its corpus (`fuzz/corpus/<name>/`) and the inputs that once made
    /// it fail (`fuzz/regressions/<name>/`).
    fn inputs(target: &str) -> Vec<PathBuf> {
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files: Vec<PathBuf> = ["corpus", "regressions"]
            .iter()
            .filter_map(|dir| std::fs::read_dir(fuzz.join(dir).join(target)).ok())
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_stored_fuzz_input_is_answered_without_a_panic() {
        let mut replayed = 0;
        for (target, run) in TARGETS {
            let files = inputs(target);
            assert!(!files.is_empty(), "no corpus for the fuzz target {target}");
            for path in files {
                let data = std::fs::read(&path).expect("read a stored input");
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len());
    }
}
