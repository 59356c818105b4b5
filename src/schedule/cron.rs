//! A job's schedule: a cron expression in a time zone, and its fire times.
//!
//! Expressions are parsed by croner (5 fields, 6 with leading seconds, 7 with a trailing year; `@hourly`,
//! `@daily`, ...; `L`, `W`, `#`) and evaluated on the wall clock of the job's zone, with zone rules read
//! from the system's tzdb (jiff). Daylight saving time follows Vixie cron, as croner does: a fire time in
//! the spring-forward gap runs at the first valid time after it, one in the autumn fold runs once (at the
//! first of the two instants). A fire time so moved, or in a fold, is marked ([`Shift`]) so that
//! `jobs next` can say so.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    /// The expression in words, made once (`jobs` shows it for every job).
    words: String,
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expr, self.zone_name)
    }
}

/// One fire time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The instant it fires.
    pub at: Timestamp,
    /// The same instant on the job's wall clock.
    pub local: Zoned,
    /// Set when daylight saving time moved it, or made its wall time happen twice.
    pub shift: Option<Shift>,
}

/// How daylight saving time touched a fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// The wall time wanted does not exist that day (the clocks went forward): it runs at the first
    /// valid time after the gap.
    Gap,
    /// The wall time happens twice that day (the clocks went back): it runs once, at the first.
    Fold,
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shift::Gap => {
                "moved: the clocks go forward over this time; it runs right after the gap"
            }
            Shift::Fold => "the clocks go back over this time, which happens twice; it runs once",
        })
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid schedule `{expr}`: {message}")]
    Expression { expr: String, message: String },
    #[error(
        "unknown time zone `{0}` (an IANA name such as `Europe/Berlin`, from the system's tzdb)"
    )]
    Zone(String),
}

/// The names of the fields of an expression of `count` fields.
fn field_names(count: usize) -> Option<&'static [&'static str]> {
    const FIVE: &[&str] = &["minute", "hour", "day-of-month", "month", "day-of-week"];
    const SIX: &[&str] = &[
        "second",
        "minute",
        "hour",
        "day-of-month",
        "month",
        "day-of-week",
    ];
    const SEVEN: &[&str] = &[
        "second",
        "minute",
        "hour",
        "day-of-month",
        "month",
        "day-of-week",
        "year",
    ];
    match count {
        5 => Some(FIVE),
        6 => Some(SIX),
        7 => Some(SEVEN),
        _ => None,
    }
}

/// Which field of `expr` croner refuses: each field alone, with every other one `*`.
fn faulty_field(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names = field_names(fields.len())?;
    for (i, field) in fields.iter().enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *field } else { "*" })
            .collect();
        if Cron::from_str(&probe.join(" ")).is_err() {
            return Some(format!("the {} field `{field}` is not valid", names[i]));
        }
    }
    None
}

/// What croner's message says, without its type names.
fn plain(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match error {
        E::EmptyPattern => "it is empty".to_string(),
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        E::TimeSearchLimitExceeded => "it never fires".to_string(),
        E::InvalidDate | E::InvalidTime => "it names a date or time that cannot exist".to_string(),
    }
}

impl Schedule {
    /// Parses `expr` for the zone named `zone` (an IANA name), or the host's zone.
    pub fn parse(expr: &str, zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let expr = expr.trim();
        let refused = |message: String| ScheduleError::Expression {
            expr: expr.to_string(),
            message,
        };
        if !expr.starts_with('@') {
            let fields: Vec<&str> = expr.split_whitespace().collect();
            let Some(names) = field_names(fields.len()) else {
                return Err(refused(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), 6 (with leading \
                     seconds) or 7 (and a year), found {}",
                    fields.len()
                )));
            };
            // croner takes an empty item (`1,,2`, `,`) as no value at all: a time field that matches
            // nothing makes its search for a fire time take many seconds before it gives up.
            if let Some((name, field)) = names
                .iter()
                .zip(&fields)
                .find(|(_, field)| field.split(',').any(str::is_empty))
            {
                return Err(refused(format!(
                    "the {name} field `{field}` has an empty item"
                )));
            }
        }
        let cron = Cron::from_str(expr)
            .map_err(|e| refused(faulty_field(expr).unwrap_or_else(|| plain(&e))))?;
        let (zone, zone_name) = match zone {
            Some(name) => (
                TimeZone::get(name).map_err(|_| ScheduleError::Zone(name.to_string()))?,
                name.to_string(),
            ),
            None => {
                let zone = TimeZone::system();
                let name = zone.iana_name().unwrap_or("the host's zone").to_string();
                (zone, name)
            }
        };
        let schedule = Schedule {
            expr: expr.to_string(),
            words: cron.describe(),
            cron,
            zone,
            zone_name,
        };
        // One that never fires (the 30th of February) is refused now, not found out at run time.
        if schedule.next_after(Timestamp::now()).is_none() {
            return Err(refused("it never fires".to_string()));
        }
        Ok(schedule)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's name (IANA), or a description of the host's zone when it has none.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The schedule in words ("At 03:00 on every day").
    pub fn describe(&self) -> &str {
        &self.words
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Fire> {
        let from = after.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(self.fire(next))
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Fire> {
        let mut fires = Vec::with_capacity(count);
        let mut cursor = after;
        while fires.len() < count {
            let Some(fire) = self.next_after(cursor) else {
                break;
            };
            cursor = fire.at;
            fires.push(fire);
        }
        fires
    }

    /// The latest fire time after `since` and at or before `until`, if any: the one a catch-up runs.
    pub fn latest_between(&self, since: Timestamp, until: Timestamp) -> Option<Fire> {
        let from = until.to_zoned(self.zone.clone());
        let previous = self.cron.find_previous_occurrence(&from, true).ok()?;
        let fire = self.fire(previous);
        (fire.at > since).then_some(fire)
    }

    fn fire(&self, local: Zoned) -> Fire {
        let civil = local.datetime();
        let shift = if !self.cron.is_time_matching(&civil).unwrap_or(true) {
            // Not a wall time the expression names: croner moved it out of a gap.
            Some(Shift::Gap)
        } else if self.zone.to_ambiguous_zoned(civil).is_ambiguous() {
            Some(Shift::Fold)
        } else {
            None
        };
        Fire {
            at: local.timestamp(),
            local,
            shift,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(zone: &str, y: i16, m: i8, d: i8, hh: i8, mm: i8) -> Timestamp {
        TimeZone::get(zone)
            .expect("zone")
            .to_ambiguous_zoned(date(y, m, d).at(hh, mm, 0, 0))
            .earlier()
            .expect("a valid time")
            .timestamp()
    }

    fn local(fire: &Fire) -> String {
        fire.local.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
    }

    #[test]
    fn five_six_and_seven_fields_and_aliases_parse() {
        for expr in [
            "0 3 * * *",
            "*/5 * * * * *",
            "0 0 12 * * * 2030",
            "@hourly",
            "@daily",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5#L",
            "0 0 * * MON#2",
        ] {
            Schedule::parse(expr, Some("UTC")).unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn a_refusal_names_the_field() {
        let error = Schedule::parse("0 3 * * 9", Some("UTC")).expect_err("dow 9");
        assert!(
            error.to_string().contains("day-of-week field `9`"),
            "{error}"
        );
        let error = Schedule::parse("61 * * * * *", Some("UTC")).expect_err("second 61");
        assert!(error.to_string().contains("second field `61`"), "{error}");
        let error = Schedule::parse("0 3 * *", Some("UTC")).expect_err("4 fields");
        assert!(error.to_string().contains("found 4"), "{error}");
        let error = Schedule::parse("0 0 30 2 *", Some("UTC")).expect_err("never");
        assert!(error.to_string().contains("never fires"), "{error}");
        let error = Schedule::parse("0 3 * * *", Some("Mars/Olympus")).expect_err("zone");
        assert!(error.to_string().contains("Mars/Olympus"), "{error}");
    }

    #[test]
    fn an_empty_item_in_a_field_is_refused_before_any_search() {
        // Found by fuzzing (fuzz/regressions/cron/): croner read them as fields that match nothing, and its
        // search for a fire time ran for seconds (a minute and more for a seconds field) before giving up.
        for (expr, field) in [
            ("*/5 , * * * *", "minute field `,`"),
            ("* , * * *", "hour field `,`"),
            (",  * 7 * * * *", "second field `,`"),
            ("0 1,,2 * * *", "hour field `1,,2`"),
            ("0 9-17/2 * JAN-MAR, *", "month field `JAN-MAR,`"),
        ] {
            let error = Schedule::parse(expr, Some("UTC")).expect_err(expr);
            assert!(error.to_string().contains(field), "{expr}: {error}");
            assert!(error.to_string().contains("empty item"), "{expr}: {error}");
        }
    }

    #[test]
    fn the_spring_gap_runs_right_after_it_and_says_so() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let s = Schedule::parse("30 2 * * *", Some("America/New_York")).expect("parse");
        let fire = s
            .next_after(at("America/New_York", 2026, 3, 7, 12, 0))
            .expect("a fire");
        assert_eq!(local(&fire), "2026-03-08 03:00:00 EDT");
        assert_eq!(fire.shift, Some(Shift::Gap));
        let next = s.next_after(fire.at).expect("the next");
        assert_eq!(local(&next), "2026-03-09 02:30:00 EDT");
        assert_eq!(next.shift, None);
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let s = Schedule::parse("15 2 * * *", Some("Europe/Berlin")).expect("parse");
        let fire = s
            .next_after(at("Europe/Berlin", 2026, 3, 28, 12, 0))
            .expect("a fire");
        assert_eq!(local(&fire), "2026-03-29 03:00:00 CEST");
        assert_eq!(fire.shift, Some(Shift::Gap));
    }

    #[test]
    fn the_autumn_fold_runs_once() {
        // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).expect("parse");
        let fires = s.upcoming(at("America/New_York", 2026, 10, 31, 12, 0), 2);
        assert_eq!(local(&fires[0]), "2026-11-01 01:30:00 EDT");
        assert_eq!(fires[0].shift, Some(Shift::Fold));
        assert_eq!(local(&fires[1]), "2026-11-02 01:30:00 EST");
        // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET.
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).expect("parse");
        let fires = s.upcoming(at("Europe/Berlin", 2026, 10, 24, 12, 0), 2);
        assert_eq!(local(&fires[0]), "2026-10-25 02:30:00 CEST");
        assert_eq!(fires[0].shift, Some(Shift::Fold));
        assert_eq!(local(&fires[1]), "2026-10-26 02:30:00 CET");
    }

    #[test]
    fn the_second_pass_of_a_fold_is_not_a_missed_fire_time() {
        // 01:30 EDT (05:30Z) ran; at 01:30 EST (06:30Z) the wall clock reads 01:30 again.
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).expect("parse");
        let ran = at("UTC", 2026, 11, 1, 5, 30);
        let now = at("UTC", 2026, 11, 1, 6, 31);
        assert_eq!(s.latest_between(ran, now), None);
        // A daemon down over the whole fold catches up the one fire time, at its first pass.
        let before = at("UTC", 2026, 10, 31, 12, 0);
        let fire = s.latest_between(before, now).expect("the fold's fire time");
        assert_eq!(local(&fire), "2026-11-01 01:30:00 EDT");
    }

    #[test]
    fn leap_days_and_last_days_and_nth_weekdays() {
        let s = Schedule::parse("0 0 29 2 *", Some("UTC")).expect("parse");
        let fire = s.next_after(at("UTC", 2026, 1, 1, 0, 0)).expect("a fire");
        assert_eq!(local(&fire), "2028-02-29 00:00:00 UTC");
        let s = Schedule::parse("0 0 L 2 *", Some("UTC")).expect("parse");
        let fires = s.upcoming(at("UTC", 2027, 1, 1, 0, 0), 2);
        assert_eq!(local(&fires[0]), "2027-02-28 00:00:00 UTC");
        assert_eq!(local(&fires[1]), "2028-02-29 00:00:00 UTC");
        // The last Friday of May 2026 is the 29th; the second Monday is the 11th.
        let s = Schedule::parse("0 9 * 5 5#L", Some("UTC")).expect("parse");
        let fire = s.next_after(at("UTC", 2026, 5, 1, 0, 0)).expect("a fire");
        assert_eq!(local(&fire), "2026-05-29 09:00:00 UTC");
        let s = Schedule::parse("0 9 * 5 MON#2", Some("UTC")).expect("parse");
        let fire = s.next_after(at("UTC", 2026, 5, 1, 0, 0)).expect("a fire");
        assert_eq!(local(&fire), "2026-05-11 09:00:00 UTC");
        // The weekday nearest the 15th of August 2026 (a Saturday) is Friday the 14th.
        let s = Schedule::parse("0 9 15W 8 *", Some("UTC")).expect("parse");
        let fire = s.next_after(at("UTC", 2026, 8, 1, 0, 0)).expect("a fire");
        assert_eq!(local(&fire), "2026-08-14 09:00:00 UTC");
    }

    #[test]
    fn the_latest_missed_fire_time_is_found() {
        let s = Schedule::parse("0 * * * *", Some("UTC")).expect("parse");
        let since = at("UTC", 2026, 6, 1, 8, 0);
        let fire = s
            .latest_between(since, at("UTC", 2026, 6, 1, 11, 20))
            .expect("a missed one");
        assert_eq!(local(&fire), "2026-06-01 11:00:00 UTC");
        assert!(
            s.latest_between(since, at("UTC", 2026, 6, 1, 8, 30))
                .is_none(),
            "none after `since`"
        );
    }
}
