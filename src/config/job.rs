//! What makes an app a scheduled job (`schedule` and the options that go with it), and `cron_restart` for
//! a long-running app. The expressions are checked when the app is defined (`crate::schedule`), so the
//! daemon only ever holds valid ones.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::schedule::policy::{CatchUp, Overlap};

/// Defaults of a job's options.
pub mod defaults {
    /// The first retry waits this long, doubling up to [`RETRY_BACKOFF_MAX_MS`].
    pub const RETRY_BACKOFF_MS: u64 = 10_000;
    pub const RETRY_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
    /// Runs kept in a job's history.
    pub const HISTORY: u32 = 20;
    /// The most runs a history may keep.
    pub const HISTORY_MAX: u32 = 1000;
}

/// A scheduled job: each fire time of `schedule` runs the app once (one process per run), on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A cron expression (5, 6 or 7 fields, or an `@alias`), valid.
    pub schedule: String,
    /// An IANA zone the schedule is read in; `None`: the host's zone.
    pub timezone: Option<String>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// A run that would start later than this after its fire time is recorded as missed instead.
    pub starting_deadline_ms: Option<u64>,
    /// A stable offset in `[0, jitter)` added to every fire time, derived from the job's name.
    pub jitter_ms: u64,
    /// A run still going after this long is stopped (kill signal, kill timeout, SIGKILL to its group).
    pub timeout_ms: Option<u64>,
    /// Failed runs are run again up to this many times, under the same run id.
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// Runs kept in the history.
    pub history: u32,
    /// A command (`/bin/sh -c`, in the app's `cwd`) run after a run failed for good, with the run's
    /// details in its environment (`HERDSMAN_RUN_ID`, `HERDSMAN_OUTCOME`, ...).
    pub on_failure: Option<String>,
    /// `scope = "fleet"`: once across the hosts of this fleet, claimed in its store; `None`: once per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<super::fleet::FleetSpec>,
}

/// Where a job's fire time runs once: on each host, or once across a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    Host,
    Fleet,
}

/// `scope` as written: `host` or `fleet`.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    match text {
        "host" => Ok(Scope::Host),
        "fleet" => Ok(Scope::Fleet),
        other => Err(format!(
            "invalid scope '{other}': expected \"host\" or \"fleet\""
        )),
    }
}

/// `cron_restart`: a long-running app reloaded on schedule (each worker replaced once its successor is ready).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronRestart {
    pub schedule: String,
    pub timezone: Option<String>,
}

/// Where a job's runs keep their output: one file per run, under the app's log directory.
pub fn run_log_dir(logs_dir: &std::path::Path, job: &str) -> PathBuf {
    logs_dir.join("runs").join(job)
}

/// The limits an option of a job is checked against when the app is defined.
pub mod limits {
    /// The longest duration any of a job's options may take: anything longer is a mistake.
    pub const DURATION_MAX_MS: u64 = 366 * 24 * 3600 * 1000;
    /// The most retries a run may have.
    pub const RETRIES_MAX: u32 = 100;
}

/// `overlap` as written: `skip`, `allow` or `replace`.
pub fn parse_overlap(text: &str) -> Result<Overlap, String> {
    match text {
        "skip" => Ok(Overlap::Skip),
        "allow" => Ok(Overlap::Allow),
        "replace" => Ok(Overlap::Replace),
        other => Err(format!(
            "invalid overlap '{other}': expected \"skip\", \"allow\" or \"replace\""
        )),
    }
}

/// `catch_up` as written: `last` or `none`.
pub fn parse_catch_up(text: &str) -> Result<CatchUp, String> {
    match text {
        "last" => Ok(CatchUp::Last),
        "none" => Ok(CatchUp::None),
        other => Err(format!(
            "invalid catch_up '{other}': expected \"last\" or \"none\""
        )),
    }
}

/// The word an [`Overlap`] is written with.
pub fn overlap_name(overlap: Overlap) -> &'static str {
    match overlap {
        Overlap::Skip => "skip",
        Overlap::Allow => "allow",
        Overlap::Replace => "replace",
    }
}

/// The word a [`CatchUp`] is written with.
pub fn catch_up_name(catch_up: CatchUp) -> &'static str {
    match catch_up {
        CatchUp::Last => "last",
        CatchUp::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::AppSpec;
    use crate::config::file::load_text;

    /// Loads `text` as an ecosystem.toml next to `job.js` and `server.js`: the apps, or every problem as
    /// `ecosystem.toml:line:column: ...`.
    fn load(text: &str) -> Result<Vec<AppSpec>, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        for script in ["job.js", "server.js"] {
            std::fs::write(dir.path().join(script), "").expect("write");
        }
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let path = dir.path().join("ecosystem.toml");
        load_text(&path, "ecosystem.toml", text, &[], None, &env).map(|loaded| loaded.apps)
    }

    fn problems(text: &str) -> Vec<String> {
        load(text).err().unwrap_or_default()
    }

    #[test]
    fn a_good_job_resolves_to_its_spec() {
        let apps = load(
            r#"
[[apps]]
name = "nightly-report"
script = "job.js"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
overlap = "replace"
catch_up = "none"
starting_deadline = "1h"
jitter = "5m"
timeout = "20m"
retries = 3
retry_backoff = "30s"
history = 50
on_failure = "scripts/page-oncall.sh"
autorestart = false

[[apps]]
name = "web"
script = "server.js"
instances = "max"
listen = 3000
cron_restart = "0 4 * * *"
"#,
        )
        .expect("valid");
        assert_eq!(
            apps[0].job,
            Some(Box::new(JobSpec {
                schedule: "0 3 * * *".into(),
                timezone: Some("Europe/Berlin".into()),
                overlap: Overlap::Replace,
                catch_up: CatchUp::None,
                starting_deadline_ms: Some(3_600_000),
                jitter_ms: 300_000,
                timeout_ms: Some(1_200_000),
                retries: 3,
                retry_backoff_ms: 30_000,
                history: 50,
                on_failure: Some("scripts/page-oncall.sh".into()),
                fleet: None,
            }))
        );
        assert_eq!(apps[0].cron_restart, None);
        assert!(!apps[0].autorestart, "autorestart resolves as given");
        assert_eq!(apps[1].job, None);
        assert_eq!(
            apps[1].cron_restart,
            Some(Box::new(CronRestart {
                schedule: "0 4 * * *".into(),
                timezone: None,
            }))
        );
    }

    #[test]
    fn a_job_gets_the_defaults() {
        let apps = load("[[apps]]\nscript = \"job.js\"\nschedule = \"@hourly\"\n").expect("valid");
        assert_eq!(
            apps[0].job,
            Some(Box::new(JobSpec {
                schedule: "@hourly".into(),
                timezone: None,
                overlap: Overlap::Skip,
                catch_up: CatchUp::Last,
                starting_deadline_ms: None,
                jitter_ms: 0,
                timeout_ms: None,
                retries: 0,
                retry_backoff_ms: defaults::RETRY_BACKOFF_MS,
                history: defaults::HISTORY,
                on_failure: None,
                fleet: None,
            }))
        );
        // Seconds, a year, L, W and #.
        for expr in [
            "30 0 3 * * *",
            "0 0 3 * * * 2099",
            "0 3 L * *",
            "0 3 15W * *",
            "0 3 * * 5#2",
        ] {
            let text = format!("[[apps]]\nscript = \"job.js\"\nschedule = \"{expr}\"\n");
            assert!(load(&text).is_ok(), "{expr}: {:?}", problems(&text));
        }
    }

    #[test]
    fn a_bad_schedule_is_reported_at_its_value_naming_the_field() {
        let found = problems("[[apps]]\nscript = \"job.js\"\nschedule   = \"0 25 * * *\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("ecosystem.toml:3:14: `schedule`: invalid schedule `0 25 * * *`"),
            "{found:?}"
        );
        assert!(found[0].contains("hour"), "names the field: {found:?}");
        let found = problems("[[apps]]\nscript = \"job.js\"\nschedule = \"0 3 * *\"\n");
        assert!(
            found[0].starts_with("ecosystem.toml:3:12: `schedule`:")
                && found[0].contains("found 4"),
            "{found:?}"
        );
        let found = problems(
            "[[apps]]\nscript = \"server.js\"\ncron_restart = \"0 4 * 13 *\"\nlisten = 3000\n",
        );
        assert!(
            found[0].starts_with("ecosystem.toml:3:16: `cron_restart`:")
                && found[0].contains("month"),
            "{found:?}"
        );
        let found = problems("[[apps]]\nscript = \"job.js\"\nschedule = \"0 3 30 2 *\"\n");
        assert!(found[0].contains("never fires"), "{found:?}");
    }

    #[test]
    fn an_unknown_zone_is_reported_at_timezone() {
        let found = problems(
            "[[apps]]\nscript = \"job.js\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Atlantis\"\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "ecosystem.toml:4:12: `timezone`: unknown time zone `Europe/Atlantis`"
            ),
            "{found:?}"
        );
        // Both wrong: both reported.
        let found = problems(
            "[[apps]]\nscript = \"job.js\"\nschedule = \"61 3 * * *\"\ntimezone = \"Mars/Olympus\"\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.contains("`schedule`") && p.contains("minute"))
        );
        assert!(found.iter().any(|p| p.contains("`timezone`")));
    }

    #[test]
    fn a_job_refuses_what_belongs_to_a_long_running_app() {
        let found = problems(
            r#"[[apps]]
script = "job.js"
schedule = "0 3 * * *"
listen = 3000
instances = 4
cron_restart = "0 4 * * *"
watch = true
"#,
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("ecosystem.toml:4:10: `listen`: a scheduled job"));
        assert!(found[0].contains("remove `listen`"), "{found:?}");
        assert!(found[1].starts_with("ecosystem.toml:5:13: `instances`:"));
        assert!(found[1].contains("remove `instances`"), "{found:?}");
        assert!(found[2].starts_with("ecosystem.toml:6:16: `cron_restart`:"));
        assert!(found[3].starts_with("ecosystem.toml:7:9: `watch`:"));
        assert!(
            !found.iter().any(|p| p.contains("  ")),
            "one line each: {found:?}"
        );
        // One instance, said explicitly, and watch = false are fine.
        let ok =
            "[[apps]]\nscript = \"job.js\"\nschedule = \"@daily\"\ninstances = 1\nwatch = false\n";
        assert!(load(ok).is_ok(), "{:?}", problems(ok));
        // cron_restart is for long-running apps: cluster mode is fine.
        let ok = "[[apps]]\nscript = \"server.js\"\ninstances = \"max\"\nlisten = 3000\ncron_restart = \"@daily\"\ntimezone = \"UTC\"\n";
        assert!(load(ok).is_ok(), "{:?}", problems(ok));
    }

    #[test]
    fn job_options_need_a_schedule() {
        let found = problems(
            r#"[[apps]]
script = "job.js"
overlap = "allow"
catch_up = "none"
starting_deadline = "1h"
jitter = "1m"
timeout = "5m"
retries = 2
retry_backoff = "1s"
history = 10
on_failure = "echo failed"
timezone = "UTC"
"#,
        );
        assert_eq!(found.len(), 10, "{found:?}");
        let keys = [
            "timezone",
            "overlap",
            "catch_up",
            "starting_deadline",
            "jitter",
            "timeout",
            "retries",
            "retry_backoff",
            "history",
            "on_failure",
        ];
        for key in keys {
            let problem = found
                .iter()
                .find(|p| p.contains(&format!("`{key}`:")))
                .unwrap_or_else(|| panic!("{key}: {found:?}"));
            let expected = if key == "timezone" {
                "add one of them"
            } else {
                "only for a scheduled job: add `schedule`"
            };
            assert!(problem.contains(expected), "{problem}");
        }
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("ecosystem.toml:3:11: `overlap`:")),
            "{found:?}"
        );
    }

    #[test]
    fn job_options_are_checked() {
        let found = problems(
            r#"[[apps]]
script = "job.js"
schedule = "@daily"
overlap = "sometimes"
catch_up = "all"
timeout = 0
starting_deadline = "0s"
jitter = "9000h"
retries = 101
history = 0
"#,
        );
        assert_eq!(found.len(), 7, "{found:?}");
        for start in [
            "ecosystem.toml:4:11: `overlap`: invalid overlap 'sometimes'",
            "ecosystem.toml:5:12: `catch_up`: invalid catch_up 'all'",
        ] {
            assert!(found.iter().any(|p| p.starts_with(start)), "{found:?}");
        }
        for (key, words) in [
            ("starting_deadline", "more than 0"),
            ("jitter", "366 days"),
            ("timeout", "more than 0"),
            ("retries", "at most 100"),
            ("history", "1 to 1000"),
        ] {
            assert!(
                found
                    .iter()
                    .any(|p| p.contains(&format!("`{key}`:")) && p.contains(words)),
                "{key}: {found:?}"
            );
        }
        let found = problems(
            "[[apps]]\nscript = \"job.js\"\nschedule = \"@daily\"\nhistory = 1001\njitter = 0\n",
        );
        assert_eq!(found.len(), 1, "zero jitter is fine: {found:?}");
        assert!(
            found[0].starts_with("ecosystem.toml:4:11: `history`:"),
            "{found:?}"
        );
    }

    #[test]
    fn the_schema_describes_the_job_options() {
        let schema = crate::config::file::schema();
        let properties = &schema["properties"]["apps"]["items"]["properties"];
        assert_eq!(
            properties["overlap"]["enum"],
            serde_json::json!(["skip", "allow", "replace"])
        );
        assert_eq!(
            properties["catch_up"]["enum"],
            serde_json::json!(["last", "none"])
        );
        for key in ["schedule", "timezone", "cron_restart", "on_failure"] {
            assert_eq!(properties[key]["type"], "string", "{key}");
        }
        for key in [
            "starting_deadline",
            "jitter",
            "timeout",
            "retry_backoff",
            "retries",
            "history",
        ] {
            assert!(
                properties[key]["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("With schedule")),
                "{key}"
            );
        }
    }

    /// Loads `text` with `STORE` and `HERDSMAN_HOST` in the caller's environment.
    fn load_fleet(text: &str) -> Result<Vec<AppSpec>, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("job.js"), "").expect("write");
        let env = BTreeMap::from([
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            (
                "STORE".to_string(),
                "redis://:hunter2@10.0.0.5:6379/0".to_string(),
            ),
            ("HERDSMAN_HOST".to_string(), "web-1".to_string()),
        ]);
        let path = dir.path().join("ecosystem.toml");
        load_text(&path, "ecosystem.toml", text, &[], None, &env).map(|loaded| loaded.apps)
    }

    #[test]
    fn a_fleet_job_carries_its_fleet() {
        let apps = load_fleet(
            "[fleet]\nstore = \"${STORE}\"\nname = \"shop-prod\"\n\n[[apps]]\nscript = \"job.js\"\nschedule = \"@daily\"\nscope = \"fleet\"\n\n[[apps]]\nname = \"local\"\nscript = \"job.js\"\nschedule = \"@daily\"\n",
        )
        .expect("valid");
        let fleet = apps[0]
            .job
            .as_ref()
            .and_then(|j| j.fleet.clone())
            .expect("a fleet job");
        assert_eq!(fleet.store, "redis://:hunter2@10.0.0.5:6379/0");
        assert_eq!(fleet.name, "shop-prod");
        assert_eq!(fleet.host, "web-1");
        assert_eq!(fleet.redacted(), "redis://:***@10.0.0.5:6379/0");
        assert_eq!(apps[1].job.as_ref().map(|j| j.fleet.is_none()), Some(true));
    }

    #[test]
    fn fleet_problems_have_their_line_and_column() {
        let found = load_fleet(
            "[[apps]]\nscript = \"job.js\"\nschedule = \"@daily\"\nscope   = \"fleet\"\n",
        )
        .unwrap_err();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("ecosystem.toml:4:11: `scope`: \"fleet\" needs")
                && found[0].contains("[fleet]"),
            "{found:?}"
        );
        let found = load_fleet(
            "[fleet]\nstore = \"mysql://root:pw@db/ops\"\nname = \"shop\"\nflavour = 1\n\n[[apps]]\nscript = \"job.js\"\nschedule = \"@daily\"\nscope = \"fleet\"\n",
        )
        .unwrap_err();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("ecosystem.toml:4:1: `flavour`: unknown key")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p
                .starts_with("ecosystem.toml:2:9: `fleet.store`: unknown scheme `mysql`")),
            "{found:?}"
        );
        assert!(!found.iter().any(|p| p.contains("pw")), "{found:?}");
        let found = load_fleet(
            "[fleet]\nstore = \"${NOPE}\"\nname = \"shop\"\n\n[[apps]]\nscript = \"job.js\"\nscope = \"fleet\"\n",
        )
        .unwrap_err();
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("ecosystem.toml:2:9: `fleet.store`:") && p.contains("NOPE")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("ecosystem.toml:7:9: `scope`: is only for a scheduled job")),
            "{found:?}"
        );
    }

    #[test]
    fn words_name_the_policies() {
        for overlap in [Overlap::Skip, Overlap::Allow, Overlap::Replace] {
            assert_eq!(parse_overlap(overlap_name(overlap)), Ok(overlap));
        }
        for catch_up in [CatchUp::Last, CatchUp::None] {
            assert_eq!(parse_catch_up(catch_up_name(catch_up)), Ok(catch_up));
        }
    }
}
