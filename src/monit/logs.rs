//! The selected app's live log: the last lines of its out and err files.
//!
//! [`tail`] reads them with [`crate::logs::tail`] (merged by time, reaching into rotated files) and shows
//! each line as `[instance] text`, with terminal escapes removed. A file that is missing or unreadable
//! contributes nothing: a new app has no log yet.

use std::path::PathBuf;

use super::app::LogLine;
use crate::logs::{Source, Stream};

/// The last `n` lines of the out and err files, oldest first, each with the instance that wrote it.
pub fn tail(
    out_file: Option<&str>,
    error_file: Option<&str>,
    format: &crate::logs::LineFormat,
    n: usize,
) -> Vec<LogLine> {
    let sources: Vec<Source> = [(out_file, Stream::Out), (error_file, Stream::Err)]
        .into_iter()
        .filter_map(|(path, stream)| {
            Some(Source {
                app: String::new(),
                stream,
                path: PathBuf::from(path?),
                instance: None,
                format: format.clone(),
            })
        })
        .collect();
    crate::logs::tail(&sources, n)
        .into_iter()
        .map(|line| {
            let text = printable(&line.text);
            LogLine {
                err: line.stream == Stream::Err,
                text: match line.instance {
                    Some(instance) => format!("[{instance}] {text}"),
                    None => text,
                },
            }
        })
        .collect()
}

/// Tabs as spaces, other control characters (terminal escapes) dropped.
fn printable(text: &str) -> String {
    text.replace('\t', "    ")
        .replace(|c: char| c.is_control(), "")
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
        let lines = tail(out.to_str(), err.to_str(), &Default::default(), 10);
        let texts: Vec<(&str, bool)> = lines.iter().map(|l| (l.text.as_str(), l.err)).collect();
        assert_eq!(
            texts,
            [
                ("[0] first", false),
                ("[0] second", true),
                ("[1] third", false),
                ("[0] ", true)
            ]
        );
        assert_eq!(
            tail(out.to_str(), err.to_str(), &Default::default(), 2).len(),
            2
        );
    }

    #[test]
    fn raw_lines_stay_whole_and_missing_files_are_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("raw.log");
        std::fs::write(&out, "plain [0] line\n\tindented\x1b[31m\n").expect("write");
        let lines = tail(
            out.to_str(),
            Some("/nonexistent/err.log"),
            &Default::default(),
            10,
        );
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["plain [0] line", "    indented[31m"]);
        assert!(tail(None, None, &Default::default(), 10).is_empty());
    }
}
