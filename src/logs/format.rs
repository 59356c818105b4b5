//! How a line looks in an app's log file, and how readers take it apart again.
//!
//! Written by the keeper, per app ([`LineFormat`], from `log_prefix`, `log_format`, `log_date_format`
//! and `log_timezone`):
//!
//! ```text
//! 2026-11-24T01:02:03.456Z [0] text            the default: UTC time, instance, the text
//! 24/11/2026 02:02:03 [0] text                 log_date_format = "%d/%m/%Y %H:%M:%S", log_timezone = "local"
//! text                                         log_prefix = false: the line exactly as the app wrote it
//! {"time":"2026-11-24T01:02:03.456Z","app":"web","instance":0,"stream":"out","message":"text"}
//!                                              log_format = "json"
//! ```
//!
//! Read back by [`parse_line`] without knowing the app's settings (a file may hold lines of several
//! settings, and `logs` also reads files of apps the daemon no longer knows): the default prefix; a JSON
//! object with herdsman's keys; a prefix `<time> [<instance>] ` whose time reads as a date and time (ISO
//! 8601 or RFC 3339, with or without `T`, fractional seconds and offset; a time without offset is local
//! time); anything else is text with no time and no instance (kept in file order).

use std::borrow::Cow;

use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, civil};
use serde::{Deserialize, Serialize};

use super::{Stream, format_time, parse_time};

/// The zone the times in a log are written in (`log_timezone`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTimezone {
    #[default]
    Utc,
    /// The daemon's local time (`TZ`, else `/etc/localtime`).
    Local,
}

impl std::str::FromStr for LogTimezone {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "utc" | "z" => Ok(LogTimezone::Utc),
            "local" => Ok(LogTimezone::Local),
            _ => Err(format!(
                "invalid log_timezone '{text}': expected \"utc\" or \"local\""
            )),
        }
    }
}

/// What each line of a log file looks like (`log_format`, and `log_prefix = false`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStyle {
    /// `<time> [<instance>] <text>`.
    #[default]
    Text,
    /// The text alone, as the app wrote it (`log_prefix = false`).
    Plain,
    /// One JSON object: time, app, instance, stream, message (`log_format = "json"`).
    Json,
}

/// How an app's lines are written: the keeper's part of the app's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineFormat {
    #[serde(default)]
    pub style: LogStyle,
    /// strftime-style; `None`: RFC 3339 with milliseconds.
    #[serde(default)]
    pub date_format: Option<String>,
    #[serde(default)]
    pub timezone: LogTimezone,
}

/// RFC 3339 with milliseconds and the offset: the default for local time.
const LOCAL_DEFAULT: &str = "%Y-%m-%dT%H:%M:%S%.3f%:z";

impl LineFormat {
    /// Checks a `log_date_format`: every directive known and formattable with a zoned time.
    pub fn check_date_format(format: &str) -> Result<(), String> {
        if format.is_empty() {
            return Err("log_date_format is empty".into());
        }
        let sample = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
        strtime::format(format, &sample)
            .map(|_| ())
            .map_err(|e| format!("invalid log_date_format '{format}': {e}"))
    }

    /// The time of a line as this format writes it.
    pub fn time_text(&self, ms: u64) -> String {
        let (format, zone) = match (&self.date_format, self.timezone) {
            (None, LogTimezone::Utc) => return format_time(ms),
            (None, LogTimezone::Local) => (LOCAL_DEFAULT, TimeZone::system()),
            (Some(format), LogTimezone::Utc) => (format.as_str(), TimeZone::UTC),
            (Some(format), LogTimezone::Local) => (format.as_str(), TimeZone::system()),
        };
        let Ok(timestamp) = Timestamp::from_millisecond(ms as i64) else {
            return format_time(ms);
        };
        // Checked when the app was defined; a failure here still writes a time.
        strtime::format(format, &timestamp.to_zoned(zone)).unwrap_or_else(|_| format_time(ms))
    }

    /// The line written for `text` (without its newline), newline included. `time` is
    /// [`LineFormat::time_text`] of the moment the line was read (computed once per batch).
    pub fn line(
        &self,
        time: &str,
        app: &str,
        instance: u32,
        stream: Stream,
        text: &[u8],
    ) -> Vec<u8> {
        match self.style {
            LogStyle::Text => {
                let mut line = Vec::with_capacity(time.len() + 8 + text.len() + 1);
                line.extend_from_slice(time.as_bytes());
                line.extend_from_slice(format!(" [{instance}] ").as_bytes());
                line.extend_from_slice(text);
                line.push(b'\n');
                line
            }
            LogStyle::Plain => {
                let mut line = Vec::with_capacity(text.len() + 1);
                line.extend_from_slice(text);
                line.push(b'\n');
                line
            }
            LogStyle::Json => {
                let record = JsonLine {
                    time: Some(Cow::Borrowed(time)),
                    app: Cow::Borrowed(app),
                    instance: Some(instance),
                    stream,
                    message: String::from_utf8_lossy(text),
                };
                let mut line = serde_json::to_vec(&record).unwrap_or_default();
                line.push(b'\n');
                line
            }
        }
    }
}

/// A line of a `log_format = "json"` file.
#[derive(Serialize, Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    app: Cow<'a, str>,
    instance: Option<u32>,
    stream: Stream,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// A line of a log file taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Milliseconds since the Unix epoch, when the line carries a time that reads as one.
    pub time: Option<u64>,
    pub instance: Option<u32>,
    pub text: Cow<'a, str>,
}

/// Splits a line of a log file (without its newline) into its time, instance and text, whatever format
/// wrote it (see the module's documentation). A line that is none of them is all text.
pub fn parse_line(line: &str) -> Parsed<'_> {
    if let Some(parsed) = default_prefix(line) {
        return parsed;
    }
    if line.starts_with('{')
        && let Some(parsed) = json_line(line)
    {
        return parsed;
    }
    if let Some(parsed) = other_prefix(line) {
        return parsed;
    }
    Parsed {
        time: None,
        instance: None,
        text: Cow::Borrowed(line),
    }
}

/// [`parse_line`] for a file whose app's settings are known (the daemon tells `logs` and monit, `run`
/// has the file): a time in the app's `log_date_format` is read with it first, so that one that is not
/// ISO 8601 (`%d/%m %H:%M`) still gives the line its time.
pub fn parse_line_as<'a>(line: &'a str, format: &LineFormat) -> Parsed<'a> {
    let Some(date_format) = &format.date_format else {
        return parse_line(line);
    };
    let time = |text: &str| parse_time_as(text, date_format, format.timezone);
    if line.starts_with('{')
        && let Ok(record) = serde_json::from_str::<JsonLine<'_>>(line)
    {
        return Parsed {
            time: record.time.as_deref().and_then(time),
            instance: record.instance,
            text: Cow::Owned(record.message.into_owned()),
        };
    }
    let head = &line[..floor_char_boundary(line, 96)];
    let mut from = 0;
    while let Some(found) = head[from..].find(" [") {
        let at = from + found;
        if let Some((instance, text)) = instance_and_text(&line[at..])
            && let Some(time) = time(&line[..at])
        {
            return Parsed {
                time: Some(time),
                instance: Some(instance),
                text: Cow::Borrowed(text),
            };
        }
        from = at + 2;
    }
    parse_line(line)
}

/// A time written with `format` in `zone`. A format without the year (`%d/%m %H:%M`) is taken in the
/// last year that does not put the time in the future.
pub fn parse_time_as(text: &str, format: &str, zone: LogTimezone) -> Option<u64> {
    let ms = |t: Timestamp| u64::try_from(t.as_millisecond()).ok();
    let mut tm = strtime::parse(format, text).ok()?;
    if tm.offset().is_some() || tm.timestamp().is_some() {
        return tm.to_timestamp().ok().and_then(ms);
    }
    let tz = match zone {
        LogTimezone::Utc => TimeZone::UTC,
        LogTimezone::Local => TimeZone::system(),
    };
    let now = Timestamp::now();
    let guessed = tm.year().is_none();
    if guessed {
        tm.set_year(Some(now.to_zoned(tz.clone()).year())).ok()?;
    }
    let mut time = tm
        .to_datetime()
        .ok()?
        .to_zoned(tz.clone())
        .ok()?
        .timestamp();
    if guessed && time > now + jiff::SignedDuration::from_hours(24) {
        let year = tm.year()? - 1;
        tm.set_year(Some(year)).ok()?;
        time = tm.to_datetime().ok()?.to_zoned(tz).ok()?.timestamp();
    }
    ms(time)
}

/// `2026-11-24T01:02:03.456Z [0] text`: the keeper's default, read without allocating.
fn default_prefix(line: &str) -> Option<Parsed<'_>> {
    const TIME_LEN: usize = 24;
    let time = parse_time(line.get(..TIME_LEN)?)?;
    let (instance, text) = instance_and_text(line.get(TIME_LEN..)?)?;
    Some(Parsed {
        time: Some(time),
        instance: Some(instance),
        text: Cow::Borrowed(text),
    })
}

/// ` [12] text` (or ` [12]` for an empty line) after the time.
fn instance_and_text(rest: &str) -> Option<(u32, &str)> {
    let rest = rest.strip_prefix(" [")?;
    // An empty line is the prefix and a space; accept it without the space too.
    let (instance, text) = rest
        .split_once("] ")
        .or_else(|| rest.strip_suffix(']').map(|instance| (instance, "")))?;
    if instance.is_empty() || !instance.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((instance.parse().ok()?, text))
}

fn json_line(line: &str) -> Option<Parsed<'_>> {
    let record: JsonLine<'_> = serde_json::from_str(line).ok()?;
    Some(Parsed {
        time: record.time.as_deref().and_then(parse_any_time),
        instance: record.instance,
        text: Cow::Owned(record.message.into_owned()),
    })
}

/// `<time> [<instance>] text` with a time in another format (`log_date_format`, `log_timezone`).
fn other_prefix(line: &str) -> Option<Parsed<'_>> {
    // A date format writes a short time: look for the instance near the start only.
    let head = &line[..floor_char_boundary(line, 96)];
    let mut from = 0;
    while let Some(found) = head[from..].find(" [") {
        let at = from + found;
        if at > 0
            && let Some((instance, text)) = instance_and_text(&line[at..])
            && let Some(time) = parse_any_time(&line[..at])
        {
            return Some(Parsed {
                time: Some(time),
                instance: Some(instance),
                text: Cow::Borrowed(text),
            });
        }
        from = at + 2;
    }
    None
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Formats with an offset that ISO 8601 does not cover (a space before the offset, no seconds).
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f %z",
    "%Y-%m-%d %H:%M %z",
    "%Y-%m-%dT%H:%M:%S%.f %z",
];
/// Formats without an offset (local time) that ISO 8601 does not cover.
const LOCAL_FORMATS: &[&str] = &["%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M"];

/// A time as a log may carry it: RFC 3339 / ISO 8601 with an offset, a civil date and time (local),
/// or one of a few common variants. `None` when the text is not a time.
pub fn parse_any_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.len() < 10 || !text.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if let Some(ms) = parse_time(text) {
        return Some(ms);
    }
    let ms = |t: Timestamp| u64::try_from(t.as_millisecond()).ok();
    if let Ok(t) = text.parse::<Timestamp>() {
        return ms(t);
    }
    let local = |dt: civil::DateTime| {
        dt.to_zoned(TimeZone::system())
            .ok()
            .and_then(|z| ms(z.timestamp()))
    };
    if let Ok(dt) = text.parse::<civil::DateTime>() {
        return local(dt);
    }
    for format in OFFSET_FORMATS {
        if let Ok(t) = strtime::parse(format, text).and_then(|tm| tm.to_timestamp()) {
            return ms(t);
        }
    }
    for format in LOCAL_FORMATS {
        if let Ok(dt) = strtime::parse(format, text).and_then(|tm| tm.to_datetime()) {
            return local(dt);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_795_482_123_456; // 2026-11-24T01:02:03.456Z

    fn parsed(line: &str) -> (Option<u64>, Option<u32>, String) {
        let p = parse_line(line);
        (p.time, p.instance, p.text.into_owned())
    }

    fn written(format: &LineFormat, text: &str) -> String {
        let time = format.time_text(MS);
        let line = format.line(&time, "web", 2, Stream::Err, text.as_bytes());
        String::from_utf8(line).expect("utf-8")
    }

    #[test]
    fn each_format_writes_and_reads_back() {
        let default = LineFormat::default();
        let line = written(&default, "hello [x] ");
        assert_eq!(line, "2026-11-24T01:02:03.456Z [2] hello [x] \n");
        assert_eq!(
            parsed(line.trim_end()),
            (Some(MS), Some(2), "hello [x]".into())
        );

        let custom = LineFormat {
            date_format: Some("%Y-%m-%d %H:%M:%S%.3f %z".into()),
            ..LineFormat::default()
        };
        let line = written(&custom, "hi");
        assert_eq!(line, "2026-11-24 01:02:03.456 +0000 [2] hi\n");
        assert_eq!(parsed(line.trim_end()), (Some(MS), Some(2), "hi".into()));

        let plain = LineFormat {
            style: LogStyle::Plain,
            ..LineFormat::default()
        };
        let line = written(&plain, r#"{"level":"info","msg":"up"}"#);
        assert_eq!(line, "{\"level\":\"info\",\"msg\":\"up\"}\n");
        assert_eq!(
            parsed(line.trim_end()),
            (None, None, r#"{"level":"info","msg":"up"}"#.into())
        );

        let json = LineFormat {
            style: LogStyle::Json,
            ..LineFormat::default()
        };
        let line = written(&json, "say \"hi\"");
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"time": "2026-11-24T01:02:03.456Z", "app": "web", "instance": 2,
                "stream": "err", "message": "say \"hi\""})
        );
        assert_eq!(
            parsed(line.trim_end()),
            (Some(MS), Some(2), "say \"hi\"".into())
        );
    }

    #[test]
    fn local_time_carries_its_offset_and_reads_back() {
        let local = LineFormat {
            timezone: LogTimezone::Local,
            ..LineFormat::default()
        };
        let text = local.time_text(MS);
        assert!(text.starts_with("2026-11-2"), "{text}");
        assert_eq!(parse_any_time(&text), Some(MS));
        let civil = LineFormat {
            timezone: LogTimezone::Local,
            date_format: Some("%Y-%m-%d %H:%M:%S%.3f".into()),
            ..LineFormat::default()
        };
        assert_eq!(parse_any_time(&civil.time_text(MS)), Some(MS));
    }

    #[test]
    fn a_known_date_format_reads_times_iso_8601_does_not_cover() {
        for (format, zone) in [
            ("%d/%m/%Y %Hh%M:%S%.3f", LogTimezone::Utc),
            ("%d/%m/%Y %Hh%M:%S%.3f", LogTimezone::Local),
            ("%a %d %b %Y %H:%M:%S%.3f %z", LogTimezone::Local),
        ] {
            let app = LineFormat {
                date_format: Some(format.into()),
                timezone: zone,
                ..LineFormat::default()
            };
            let line = written(&app, "hi");
            assert_eq!(parse_line(line.trim_end()).time, None, "{line}");
            let p = parse_line_as(line.trim_end(), &app);
            assert_eq!(
                (p.time, p.instance, &*p.text),
                (Some(MS), Some(2), "hi"),
                "{line}"
            );
            let json = LineFormat {
                style: LogStyle::Json,
                ..app.clone()
            };
            let line = written(&json, "hi");
            let p = parse_line_as(line.trim_end(), &json);
            assert_eq!((p.time, p.instance, &*p.text), (Some(MS), Some(2), "hi"));
        }
        // No year: this year, or the last if that would be in the future.
        let recent = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let text = strtime::format("%d/%m %H:%M", &recent.to_zoned(TimeZone::UTC)).expect("fmt");
        let parsed = parse_time_as(&text, "%d/%m %H:%M", LogTimezone::Utc).expect("parsed");
        let expected = recent.as_millisecond() / 60_000 * 60_000;
        assert_eq!(parsed as i64, expected);
        // Lines of another format still read.
        let app = LineFormat {
            date_format: Some("%d/%m %H:%M".into()),
            ..LineFormat::default()
        };
        let p = parse_line_as("2026-11-24T01:02:03.456Z [1] x", &app);
        assert_eq!((p.time, p.instance), (Some(MS), Some(1)));
    }

    #[test]
    fn date_formats_are_checked() {
        assert!(LineFormat::check_date_format("%Y-%m-%d %H:%M:%S %Z").is_ok());
        assert!(LineFormat::check_date_format("%Y %").is_err());
        assert!(LineFormat::check_date_format("%Y-%m-%d %!").is_err());
        assert!(LineFormat::check_date_format("").is_err());
    }

    #[test]
    fn text_that_only_looks_like_a_prefix_stays_text() {
        for raw in [
            "plain text",
            "",
            "GET /x [200] ok",
            "2026-11-24T01:02:03.456Z no instance",
            "2026-11-24T01:02:03.456Z [x] not a number",
            "2026-11-24T01:02:03.456Z [] empty",
            "2026-11-24T01:02:03.456Z [1]no space",
            "é2026-11-24T01:02:03.456Z [1] shifted",
            "{\"msg\": \"an app's own JSON\"}",
            "{ not json",
        ] {
            assert_eq!(parsed(raw), (None, None, raw.to_string()), "{raw:?}");
        }
    }
}
