//! The selected app's live log: the last lines of its out and err files.
//!
//! Log files hold lines like `2026-11-24T01:02:03.456Z [0] text` (time, instance, what the app wrote);
//! older files and raw fallbacks hold the text alone. [`tail`] reads the end of each file, strips that
//! prefix, and merges the two streams by time (lines without a time keep their file's order, out before
//! err). A file that is missing or unreadable contributes nothing: a new app has no log yet.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::app::LogLine;

/// How much of each file's end is read: plenty for a screenful of lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// The last `n` lines of the out and err files, oldest first.
pub fn tail(out_file: Option<&str>, error_file: Option<&str>, n: usize) -> Vec<LogLine> {
    let mut lines: Vec<(Option<String>, LogLine)> = Vec::new();
    for (path, err) in [(out_file, false), (error_file, true)] {
        if let Some(path) = path {
            lines.extend(
                last_lines(Path::new(path), n)
                    .into_iter()
                    .map(|line| parse(&line, err)),
            );
        }
    }
    // A stable sort: timeless lines stay in file order, before the timed ones.
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let start = lines.len().saturating_sub(n);
    lines.drain(start..).map(|(_, line)| line).collect()
}

/// Splits `2026-11-24T01:02:03.456Z [0] text` into its time and a display line holding `text`.
fn parse(line: &str, err: bool) -> (Option<String>, LogLine) {
    let split = line.split_once(' ').and_then(|(time, rest)| {
        let timed = time.len() >= 20
            && time.ends_with('Z')
            && time.as_bytes().get(10) == Some(&b'T')
            && time.as_bytes()[..4].iter().all(u8::is_ascii_digit);
        let rest = rest.strip_prefix('[')?;
        let (instance, text) = rest.split_once("] ").or_else(|| {
            // An empty line is written as the prefix alone.
            rest.strip_suffix(']').map(|instance| (instance, ""))
        })?;
        (timed && instance.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (time.to_string(), text.to_string()))
    });
    match split {
        Some((time, text)) => (Some(time), LogLine { err, text }),
        None => (
            None,
            LogLine {
                err,
                text: line.to_string(),
            },
        ),
    }
}

/// The last `n` complete or partial lines of a file (at most [`TAIL_BYTES`] read); none if unreadable.
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Vec::new();
    };
    let start = len.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut by the window.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| {
            l.replace('\t', "    ")
                .replace(|c: char| c.is_control(), "")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_stripped_and_streams_merge_by_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("web-out.log");
        let err = dir.path().join("web-err.log");
        std::fs::write(
            &out,
            "2026-11-24T01:02:03.100Z [0] first\n2026-11-24T01:02:03.300Z [1] third\n",
        )
        .expect("write out");
        std::fs::write(
            &err,
            "2026-11-24T01:02:03.200Z [0] second\n2026-11-24T01:02:03.400Z [0]\n",
        )
        .expect("write err");
        let lines = tail(out.to_str(), err.to_str(), 10);
        let texts: Vec<(&str, bool)> = lines.iter().map(|l| (l.text.as_str(), l.err)).collect();
        assert_eq!(
            texts,
            [
                ("first", false),
                ("second", true),
                ("third", false),
                ("", true)
            ]
        );
        assert_eq!(tail(out.to_str(), err.to_str(), 2).len(), 2);
    }

    #[test]
    fn raw_lines_stay_whole_and_missing_files_are_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("raw.log");
        std::fs::write(&out, "plain [0] line\n\tindented\x1b[31m\n").expect("write");
        let lines = tail(out.to_str(), Some("/nonexistent/err.log"), 10);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["plain [0] line", "    indented[31m"]);
        assert!(tail(None, None, 10).is_empty());
    }
}
