//! `herdsman logs`: the last lines of apps' log files, then everything appended to them.
//!
//! Workers write straight to `HERDSMAN_HOME/logs/<app>-out.log` and `-err.log` (see docs/architecture.md),
//! so this reads the files itself: it works whether or not the daemon runs and costs the daemon nothing.
//! Following checks the files' sizes a few times a second; a file that shrinks was truncated and is read
//! again from its start.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::LogsArgs;
use crate::client::Client;
use crate::home::Home;
use crate::protocol::{ProcessInfo, Request, Response, Selection};

pub const POLL: Duration = Duration::from_millis(100);

/// One log file being read.
struct Stream {
    app: String,
    err: bool,
    path: PathBuf,
    offset: u64,
    /// The end of a line not yet terminated.
    partial: Vec<u8>,
}

/// How a line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `app | line`, the name coloured by stream on a terminal.
    Prefixed { colour: bool },
    /// The line alone.
    Raw,
    /// One JSON object a line: `{"app": ..., "stream": "out"|"err", "line": ...}`.
    Json,
}

/// Follows a set of log files, printing complete lines as they are appended.
pub struct Follower {
    streams: Vec<Stream>,
    format: Format,
}

impl Follower {
    /// Follows each app's out and/or err file from its current end.
    pub fn new(
        apps: BTreeMap<String, (PathBuf, PathBuf)>,
        out: bool,
        err: bool,
        format: Format,
    ) -> Follower {
        let mut streams = Vec::new();
        for (app, (out_path, err_path)) in apps {
            if out {
                streams.push(Stream::new(app.clone(), false, out_path));
            }
            if err {
                streams.push(Stream::new(app, true, err_path));
            }
        }
        for stream in &mut streams {
            stream.offset = std::fs::metadata(&stream.path).map_or(0, |m| m.len());
        }
        Follower { streams, format }
    }

    /// Prints what was appended since the last call.
    pub fn poll(&mut self, out: &mut impl Write) -> Result<()> {
        for stream in &mut self.streams {
            for line in stream.read_new()? {
                write_line(out, stream, &line, self.format)?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

pub fn run(home: &Home, args: LogsArgs) -> Result<()> {
    let apps = resolve(home, args.target.as_deref())?;
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let format = Format::Prefixed { colour };
    let mut follower = Follower::new(apps, !args.err, !args.out, format);
    let mut out = std::io::stdout().lock();
    for stream in &mut follower.streams {
        let (lines, end) = last_lines(&stream.path, args.lines)?;
        stream.offset = end;
        if args.nostream || !lines.is_empty() {
            let which = if stream.err { "err" } else { "out" };
            writeln!(
                out,
                "==> {} ({which}), last {} lines:",
                stream.path.display(),
                lines.len()
            )?;
        }
        for line in lines {
            write_line(&mut out, stream, &line, format)?;
        }
    }
    out.flush()?;
    if args.nostream {
        return Ok(());
    }
    drop(out);
    loop {
        follower.poll(&mut std::io::stdout().lock())?;
        std::thread::sleep(POLL);
    }
}

/// The apps a target selects, with their log files. With the daemon running it knows (an app may have its
/// own log paths); otherwise the files in the home's logs directory tell.
pub fn resolve(home: &Home, target: Option<&str>) -> Result<BTreeMap<String, (PathBuf, PathBuf)>> {
    let selection = Selection::parse(target.unwrap_or("all"));
    let known = match Client::connect(home)? {
        Some(mut client) => match client.request(&Request::List)? {
            Response::Processes { processes } => Some(processes),
            Response::Error { message, .. } => bail!(message),
            _ => None,
        },
        None => None,
    };
    let defaults = |name: &str| (name.to_string(), (home.out_log(name), home.err_log(name)));
    let paths = |p: &ProcessInfo| {
        let (out, err) = defaults(&p.name).1;
        let out = p.out_file.as_ref().map_or(out, PathBuf::from);
        let err = p.error_file.as_ref().map_or(err, PathBuf::from);
        (p.name.clone(), (out, err))
    };
    let on_disk = apps_on_disk(home)?;
    match (selection, known) {
        (Selection::All, known) => {
            let mut apps: BTreeMap<_, _> = on_disk.iter().map(|name| defaults(name)).collect();
            apps.extend(known.iter().flatten().map(paths));
            Ok(apps)
        }
        (Selection::Name(name), known) => {
            if let Some(process) = known.iter().flatten().find(|p| p.name == name) {
                Ok(BTreeMap::from([paths(process)]))
            } else if on_disk.contains(&name) {
                Ok(BTreeMap::from([defaults(&name)]))
            } else {
                bail!(
                    "no app named '{name}' and no logs for it in {}",
                    home.logs_dir().display()
                )
            }
        }
        (Selection::Id(id), Some(known)) => match known.iter().find(|p| p.id == id) {
            Some(process) => Ok(BTreeMap::from([paths(process)])),
            None => bail!("no process with id {id} (see `herdsman list`)"),
        },
        (Selection::Id(id), None) => bail!("no process with id {id}: the daemon is not running"),
    }
}

/// Apps that have log files.
fn apps_on_disk(home: &Home) -> Result<BTreeSet<String>> {
    let dir = home.logs_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| {
            let stem = file.strip_suffix(".log")?;
            let app = stem
                .strip_suffix("-out")
                .or_else(|| stem.strip_suffix("-err"))?;
            Some(app.to_string())
        })
        .collect())
}

/// The last `count` complete lines of a file, and the offset just past them.
fn last_lines(path: &PathBuf, count: usize) -> Result<(Vec<Vec<u8>>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let len = file.metadata()?.len();
    // Read backwards in chunks until enough newlines are in hand.
    // Newlines are counted in each new chunk only, and at most 16 MiB are read back, however few
    // newlines a file has (a progress bar written with \r, binary output).
    const LIMIT: u64 = 16 << 20;
    let mut start = len;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    while start > 0 && newlines <= count && len - start < LIMIT {
        let step = start.min(64 * 1024);
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
    }
    let tail: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    // Only complete lines; a line still being written is printed when it ends.
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = start + complete as u64;
    let mut lines: Vec<Vec<u8>> = tail[..complete]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    lines.pop(); // after the last newline
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // may be cut
    }
    let skip = lines.len().saturating_sub(count);
    Ok((lines.split_off(skip), end))
}

impl Stream {
    fn new(app: String, err: bool, path: PathBuf) -> Stream {
        Stream {
            app,
            err,
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last read.
    fn read_new(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()));
            }
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        file.take(len - self.offset).read_to_end(&mut fresh)?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(last + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        let mut lines: Vec<Vec<u8>> = complete
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        lines.pop();
        Ok(lines)
    }
}

fn write_line(out: &mut impl Write, stream: &Stream, line: &[u8], format: Format) -> Result<()> {
    let line = String::from_utf8_lossy(line);
    match format {
        Format::Prefixed { colour: true } => {
            let paint = if stream.err { "31" } else { "36" };
            writeln!(out, "\x1b[{paint}m{} |\x1b[0m {line}", stream.app)?
        }
        Format::Prefixed { colour: false } => writeln!(out, "{} | {line}", stream.app)?,
        Format::Raw => writeln!(out, "{line}")?,
        Format::Json => {
            let stream_name = if stream.err { "err" } else { "out" };
            let record =
                serde_json::json!({ "app": stream.app, "stream": stream_name, "line": line });
            writeln!(out, "{record}")?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_returns_complete_lines_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("unfinished");
        std::fs::write(&path, &text).expect("write");
        let (lines, end) = last_lines(&path, 3).expect("tail");
        assert_eq!(
            lines,
            [
                b"line 997".to_vec(),
                b"line 998".to_vec(),
                b"line 999".to_vec()
            ]
        );
        assert_eq!(end as usize, text.len() - "unfinished".len());

        let mut stream = Stream::new("a".into(), false, path.clone());
        stream.offset = end;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(b" now\nnext\n").expect("append");
        assert_eq!(
            stream.read_new().expect("read"),
            [b"unfinished now".to_vec(), b"next".to_vec()]
        );
    }
}
