//! Which lines `logs` shows: `--since`, `--until` (by the time each line carries) and `--grep` (a regex
//! over the line's text). Readers apply a [`Filter`] before counting `--lines`, so `--lines 5 --grep x`
//! prints the last five lines that match.

use regex::Regex;

use super::LogLine;
use super::format::parse_any_time;

/// A selection of lines; the default takes every line.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only lines written at or after this (milliseconds since the Unix epoch).
    pub since: Option<u64>,
    /// Only lines written at or before this.
    pub until: Option<u64>,
    /// Only lines whose text matches.
    pub grep: Option<Regex>,
}

impl Filter {
    /// True when the filter takes every line.
    pub fn is_empty(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.grep.is_none()
    }

    /// Whether a line is selected. With `since` or `until`, a line that carries no time (written without
    /// a prefix) is not: it cannot be placed in the range.
    pub fn accepts(&self, line: &LogLine) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(time) = line.time else {
                return false;
            };
            if self.since.is_some_and(|since| time < since)
                || self.until.is_some_and(|until| time > until)
            {
                return false;
            }
        }
        self.grep.as_ref().is_none_or(|re| re.is_match(&line.text))
    }
}

/// A moment as `--since`/`--until` take it: a duration back from `now_ms` (`90s`, `10m`, `1h`, `2d`,
/// `1w`, `1h30m`), an RFC 3339 time (`2026-11-24T01:02:03Z`), a local date and time (`2026-11-24 01:02`,
/// `2026-11-24T01:02:03`), or a local date (`2026-11-24`, its midnight).
pub fn parse_moment(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Some(ms) = parse_ago(text) {
        return Ok(now_ms.saturating_sub(ms));
    }
    if let Some(ms) = parse_any_time(text) {
        return Ok(ms);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(zoned) = date.to_zoned(jiff::tz::TimeZone::system())
        && let Ok(ms) = u64::try_from(zoned.timestamp().as_millisecond())
    {
        return Ok(ms);
    }
    Err(format!(
        "'{text}' is neither a duration (90s, 10m, 1h, 2d, 1h30m) nor a time (2026-11-24T01:02:03Z, \
         2026-11-24 01:02, 2026-11-24)"
    ))
}

/// `1h30m` and the like, in milliseconds: numbers each followed by a unit (ms, s, m, h, d, w).
fn parse_ago(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..letters] {
            "ms" => 1,
            "s" | "sec" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        rest = &rest[letters..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Stream;

    const NOW: u64 = 1_795_482_123_456; // 2026-11-24T01:02:03.456Z

    #[test]
    fn moments_are_durations_back_or_times() {
        assert_eq!(parse_moment("1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_moment("1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_moment("2d", NOW), Ok(NOW - 172_800_000));
        assert_eq!(parse_moment("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(
            parse_moment("2026-11-24T01:02:03.456Z", NOW),
            Ok(NOW),
            "RFC 3339"
        );
        assert_eq!(parse_moment("2026-11-24T02:02:03.456+01:00", NOW), Ok(NOW));
        assert!(parse_moment("2026-11-24", NOW).is_ok());
        assert!(parse_moment("2026-11-24 01:02", NOW).is_ok());
        for bad in ["", "1", "h", "1y", "yesterday", "-1h"] {
            assert!(parse_moment(bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_filter_selects_by_time_and_text() {
        let line = |time: Option<u64>, text: &str| LogLine {
            app: "web".into(),
            instance: Some(0),
            stream: Stream::Out,
            time,
            text: text.into(),
        };
        let all = Filter::default();
        assert!(all.is_empty() && all.accepts(&line(None, "x")));
        let range = Filter {
            since: Some(100),
            until: Some(200),
            grep: None,
        };
        assert!(range.accepts(&line(Some(100), "x")));
        assert!(range.accepts(&line(Some(200), "x")));
        assert!(!range.accepts(&line(Some(99), "x")));
        assert!(!range.accepts(&line(Some(201), "x")));
        assert!(!range.accepts(&line(None, "x")), "no time, not in range");
        let grep = Filter {
            grep: Some(Regex::new("^GET /api").expect("regex")),
            ..Filter::default()
        };
        assert!(grep.accepts(&line(None, "GET /api/users 200")));
        assert!(!grep.accepts(&line(None, "POST /api 500")));
    }
}
