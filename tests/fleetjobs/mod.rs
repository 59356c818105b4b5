//! Issue 15: `scope = "fleet"` jobs run each fire time once across a fleet of hosts, through a real
//! `redis-server` or PostgreSQL of the test's own on loopback (`tests/fleet/servers.rs`). A "fleet" is three
//! daemons with three homes on this machine, each named by `HERDSMAN_HOST`. Every job is
//! `tests/apps/fleet-job.sh`, which appends its run id, host, fence, pid and start and end times to one
//! file shared by the hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::fleet::servers::Server;
use crate::helpers::{Herdsman, SECOND, app_arg, free_port, libfaketime};

/// One line of the shared file.
#[derive(Debug, Clone)]
struct Line {
    start: bool,
    run_id: String,
    host: String,
    fence: String,
    pid: i32,
    at_ns: u128,
}

fn lines(file: &Path) -> Vec<Line> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(Line {
                start: f.next()? == "start",
                run_id: f.next()?.to_string(),
                host: f.next()?.to_string(),
                fence: f.next()?.to_string(),
                pid: f.next()?.parse().ok()?,
                at_ns: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

fn starts(file: &Path) -> Vec<Line> {
    lines(file).into_iter().filter(|l| l.start).collect()
}

/// The nominal second of a run id `<job>@<RFC 3339>`.
fn second(run_id: &str) -> i64 {
    let at = run_id.split_once('@').expect("job@time").1;
    at.parse::<jiff::Timestamp>()
        .expect("an RFC 3339 time")
        .as_second()
}

/// Three hosts of one fleet, each a daemon with its own home.
struct Fleet {
    hosts: Vec<(String, Herdsman)>,
    file: PathBuf,
    ecosystem: PathBuf,
}

impl Fleet {
    /// An ecosystem file with `[fleet]` on `store` and one job, `tick`, with these extra lines, each run
    /// sleeping `sleep` seconds.
    fn new(store: &str, count: usize, job: &str, sleep: &str) -> Fleet {
        Fleet::with_env(store, count, job, sleep, &[])
    }

    /// [`Fleet::new`], host `i` started with `(i, key, value)` in its environment.
    fn with_env(
        store: &str,
        count: usize,
        job: &str,
        sleep: &str,
        env: &[(usize, &str, String)],
    ) -> Fleet {
        let hosts: Vec<(String, Herdsman)> = (0..count)
            .map(|i| {
                (
                    format!("host-{}", (b'a' + i as u8) as char),
                    Herdsman::new(),
                )
            })
            .collect();
        let dir = hosts[0].1.scratch("fleet");
        let file = dir.join("runs");
        let ecosystem = dir.join("ecosystem.toml");
        fs::write(
            &ecosystem,
            format!(
                r#"[fleet]
store = "${{FLEET_STORE}}"
name = "test-fleet"
lease_ttl = "3s"

[[apps]]
name = "tick"
script = "{script}"
interpreter = "none"
scope = "fleet"
{job}
history = 200
env = {{ JOB_FILE = "{file}", JOB_SLEEP = "{sleep}" }}
"#,
                script = app_arg("fleet-job.sh"),
                file = file.display(),
            ),
        )
        .expect("write the ecosystem file");
        let fleet = Fleet {
            hosts,
            file,
            ecosystem,
        };
        for i in 0..count {
            let (name, h) = &fleet.hosts[i];
            let mut cmd = h
                .cmd(&["start", &fleet.ecosystem.display().to_string()])
                .env("HERDSMAN_HOST", name)
                .env("FLEET_STORE", store);
            for (_, key, value) in env.iter().filter(|(host, _, _)| *host == i) {
                cmd = cmd.env(key, value);
            }
            cmd.ok();
        }
        fleet
    }

    fn h(&self, i: usize) -> &Herdsman {
        &self.hosts[i].1
    }

    fn stop_all(&self) {
        for (_, h) in &self.hosts {
            h.cmd(&["stop", "tick"]).ok();
        }
    }

    fn history(&self, i: usize) -> Vec<Value> {
        let out = self.h(i).cmd(&["jobs", "history", "tick", "--json"]).ok();
        serde_json::from_str(&out.stdout).expect("jobs history --json is JSON")
    }
}

/// Every fire time between the first and the last ran exactly once across three hosts.
fn once_per_fire_time(store: &str) {
    let fleet = Fleet::new(
        store,
        3,
        "schedule = \"* * * * * *\"\noverlap = \"allow\"",
        "0",
    );
    let h = fleet.h(0);
    h.wait_for("30 runs across the fleet", 90 * SECOND, || {
        starts(&fleet.file).len() >= 30
    });
    fleet.stop_all();
    let runs = starts(&fleet.file);
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in &runs {
        by_id
            .entry(run.run_id.clone())
            .or_default()
            .push(run.host.clone());
    }
    let twice: Vec<_> = by_id.iter().filter(|(_, hosts)| hosts.len() > 1).collect();
    assert!(twice.is_empty(), "fire times run twice: {twice:?}");
    let seconds: Vec<i64> = by_id.keys().map(|id| second(id)).collect();
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1,
            "a fire time ran nowhere: {:?}",
            by_id.keys()
        );
    }
    // Fences strictly increase with the fire times.
    let mut fences: Vec<(i64, u64)> = runs
        .iter()
        .map(|r| (second(&r.run_id), r.fence.parse().expect("a fence")))
        .collect();
    fences.sort();
    for pair in fences.windows(2) {
        assert!(pair[1].1 > pair[0].1, "fences go back: {fences:?}");
    }
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        *per_host.entry(run.host.as_str()).or_default() += 1;
    }
    eprintln!("{store}: {} fire times, per host {per_host:?}", runs.len());
    // Each host recorded every fire time it saw: run here, or claimed by the host that ran it.
    for i in 0..3 {
        for record in fleet.history(i) {
            let id = record["run_id"].as_str().unwrap_or_default();
            let Some(hosts) = by_id.get(id) else {
                continue;
            };
            match record["outcome"].as_str() {
                Some("skipped") => {
                    let detail = record["detail"].as_str().unwrap_or_default();
                    assert_eq!(detail, format!("claimed by {}", hosts[0]), "{record}");
                }
                Some("ok") => assert_eq!(hosts[0], fleet.hosts[i].0, "{record}"),
                _ => {}
            }
        }
    }
    // The store's history has every host's runs; `jobs` names the host of the last one.
    let out = h
        .cmd(&["jobs", "history", "tick", "--fleet", "--json"])
        .ok();
    let stored: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    let stored_hosts: BTreeSet<&str> = stored.iter().filter_map(|r| r["host"].as_str()).collect();
    let ran_hosts: BTreeSet<&str> = per_host.keys().copied().collect();
    assert!(
        h.wait_value("the store's history", 10 * SECOND, || {
            let out = h
                .cmd(&["jobs", "history", "tick", "--fleet", "--json"])
                .ok();
            let stored: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
            let ids: BTreeSet<String> = stored
                .iter()
                .filter(|r| r["outcome"] == "ok")
                .filter_map(|r| Some(r["run_id"].as_str()?.to_string()))
                .collect();
            by_id.keys().all(|id| ids.contains(id)).then_some(true)
        }),
        "every run in the store's history: {stored_hosts:?} vs {ran_hosts:?}"
    );
    let out = h.cmd(&["jobs", "--json"]).ok();
    let jobs: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    let last_host = jobs[0]["fleet"]["last_host"].as_str().unwrap_or_default();
    assert!(
        ran_hosts.contains(last_host),
        "{last_host} in {ran_hosts:?}"
    );
    // `fleet status` sees the three hosts.
    let out = h.cmd(&["fleet", "status", "--json"]).ok();
    let status: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    let seen: BTreeSet<&str> = status[0]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(
        seen,
        BTreeSet::from(["host-a", "host-b", "host-c"]),
        "{status:?}"
    );
    assert!(
        !out.stdout.contains("password"),
        "no secret in the status: {}",
        out.stdout
    );
    let text = h.cmd(&["fleet", "status"]).ok().stdout;
    assert!(text.contains("latency"), "{text}");
}

#[test]
fn redis_three_hosts_run_each_fire_time_once() {
    let server = Server::redis();
    once_per_fire_time(&server.url);
}

#[test]
fn postgres_three_hosts_run_each_fire_time_once() {
    let server = Server::postgres();
    once_per_fire_time(&server.url);
}

/// `overlap = "skip"` across hosts with runs longer than the period: never two runs at once.
#[test]
fn skip_holds_across_hosts_postgres() {
    let server = Server::postgres();
    let fleet = Fleet::new(
        &server.url,
        3,
        "schedule = \"* * * * * *\"\noverlap = \"skip\"",
        "2.5",
    );
    run_skip(&fleet);
}

#[test]
fn skip_holds_across_hosts() {
    let server = Server::redis();
    let fleet = Fleet::new(
        &server.url,
        3,
        "schedule = \"* * * * * *\"\noverlap = \"skip\"",
        "2.5",
    );
    run_skip(&fleet);
}

fn run_skip(fleet: &Fleet) {
    let h = fleet.h(0);
    h.wait_for("4 runs ended", 60 * SECOND, || {
        lines(&fleet.file).iter().filter(|l| !l.start).count() >= 4
    });
    fleet.stop_all();
    let all = lines(&fleet.file);
    let mut intervals: Vec<(u128, u128, String)> = Vec::new();
    for start in all.iter().filter(|l| l.start) {
        let end = all
            .iter()
            .find(|l| !l.start && l.run_id == start.run_id && l.pid == start.pid)
            .map_or(u128::MAX, |l| l.at_ns);
        intervals.push((
            start.at_ns,
            end,
            format!("{} on {}", start.run_id, start.host),
        ));
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs at once: {} and {}",
            pair[0].2,
            pair[1].2
        );
    }
    let skipped = (0..3)
        .flat_map(|i| fleet.history(i))
        .filter(|r| {
            r["detail"].as_str().is_some_and(|d| {
                d.contains("in progress on another host") || d.contains("still in progress")
            })
        })
        .count();
    assert!(skipped > 0, "fire times during a run were skipped");
}

/// The store goes away (its server killed): the fire times are not run, and recorded skipped with the
/// store's error.
#[test]
fn an_unreachable_store_skips_the_run_and_says_why() {
    let server = Server::redis();
    let fleet = Fleet::new(&server.url, 1, "schedule = \"* * * * * *\"", "0");
    let h = fleet.h(0);
    h.wait_for("a first run", 30 * SECOND, || {
        !starts(&fleet.file).is_empty()
    });
    drop(server);
    let record = h.wait_value("a skipped run", 30 * SECOND, || {
        fleet
            .history(0)
            .into_iter()
            .find(|r| r["outcome"] == "skipped")
    });
    let detail = record["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("store unreachable: "), "{record}");
    assert!(detail.contains("127.0.0.1"), "names the store: {record}");
    let ran = starts(&fleet.file).len();
    h.assert_stays("nothing runs while the store is gone", 3 * SECOND, || {
        starts(&fleet.file).len() == ran
    });
    let out = h.cmd(&["fleet", "status", "--json"]).ok();
    let status: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    assert!(status[0]["error"].is_string(), "{status:?}");
}

/// `start FILE` with a store that does not answer: an error naming the store (password masked) and the
/// cause; the file's other apps start.
#[test]
fn start_refuses_fleet_jobs_of_an_unreachable_store_and_starts_the_rest() {
    let h = Herdsman::new();
    let dir = h.scratch("file");
    let file = dir.join("ecosystem.toml");
    let port = free_port();
    fs::write(
        &file,
        format!(
            r#"[fleet]
store = "redis://:hunter2@127.0.0.1:{port}/0"
name = "f"

[[apps]]
name = "tick"
script = "{script}"
interpreter = "none"
schedule = "@daily"
scope = "fleet"

[[apps]]
name = "local"
script = "{script}"
interpreter = "none"
schedule = "@daily"
"#,
            script = app_arg("fleet-job.sh"),
        ),
    )
    .expect("write");
    let out = h
        .cmd(&["start", &file.display().to_string()])
        .fails_with(&format!("127.0.0.1:{port}"));
    assert!(out.stderr.contains("tick"), "{out}");
    assert!(!out.stderr.contains("hunter2"), "{out}");
    assert!(!out.stdout.contains("hunter2"), "{out}");
    let jobs = h.cmd(&["jobs", "--json"]).ok().stdout;
    assert!(
        jobs.contains("\"local\"") && !jobs.contains("\"tick\""),
        "{jobs}"
    );
}

/// The host running a job dies (its daemon and its run, SIGKILL): the job's lease expires after its TTL
/// and a later fire time runs on another host; no fire time runs twice.
#[test]
fn a_dead_hosts_lease_expires_and_another_host_runs_the_job() {
    let server = Server::redis();
    let fleet = Fleet::new(
        &server.url,
        3,
        "schedule = \"*/2 * * * * *\"\noverlap = \"skip\"",
        "60",
    );
    let h = fleet.h(0);
    let first = h.wait_value("a first run", 30 * SECOND, || {
        starts(&fleet.file).into_iter().next()
    });
    let dead = fleet
        .hosts
        .iter()
        .position(|(name, _)| *name == first.host)
        .expect("a host of the fleet");
    let killed_at = Instant::now();
    for pid in fleet.h(dead).marked_pids() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(first.pid), Signal::SIGKILL);
    let next = h.wait_value("a run on another host", 30 * SECOND, || {
        starts(&fleet.file)
            .into_iter()
            .find(|l| l.host != first.host)
    });
    let after = killed_at.elapsed();
    eprintln!(
        "{} died running {}; {} started {} after {after:?}",
        first.host, first.run_id, next.host, next.run_id
    );
    assert!(
        second(&next.run_id) > second(&first.run_id),
        "a later fire time"
    );
    let ids: Vec<String> = starts(&fleet.file).into_iter().map(|l| l.run_id).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a fire time ran twice: {ids:?}");
    for i in (0..3).filter(|&i| i != dead) {
        fleet.h(i).cmd(&["stop", "tick"]).ok();
    }
}

/// The store stops answering while a run holds the job's lease: the run is stopped and recorded
/// `lost lease`; fire times meanwhile are skipped, never run twice.
#[test]
fn a_run_whose_lease_cannot_be_renewed_is_stopped() {
    let server = Server::redis();
    let fleet = Fleet::new(
        &server.url,
        1,
        "schedule = \"*/2 * * * * *\"\noverlap = \"skip\"",
        "60",
    );
    let h = fleet.h(0);
    let first = h.wait_value("a first run", 30 * SECOND, || {
        starts(&fleet.file).into_iter().next()
    });
    let paused = server.pause();
    let record = h.wait_value("the run stopped for its lease", 30 * SECOND, || {
        fleet
            .history(0)
            .into_iter()
            .find(|r| r["run_id"] == first.run_id.as_str() && r["outcome"] == "lost_lease")
    });
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("lease")),
        "{record}"
    );
    let text = h.cmd(&["jobs", "history", "tick"]).ok().stdout;
    assert!(text.contains("lost lease"), "{text}");
    // The store stays down a while: the fire times are recorded skipped with the store's error.
    h.wait_for(
        "a fire time skipped while the store is paused",
        30 * SECOND,
        || {
            fleet.history(0).iter().any(|r| {
                r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("store unreachable"))
            })
        },
    );
    drop(paused);
    let n = starts(&fleet.file).len();
    h.wait_for("a run once the store is back", 30 * SECOND, || {
        starts(&fleet.file).len() > n
    });
    fleet.stop_all();
    let ids: Vec<String> = starts(&fleet.file).into_iter().map(|l| l.run_id).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a fire time ran twice: {ids:?}");
}

/// A host whose clock is 2 s ahead (libfaketime) computes the same run ids: it fires first and claims most
/// fire times, the others find its claims; still every fire time once, none missing.
#[test]
fn a_host_two_seconds_ahead_agrees_on_the_run_ids() {
    let server = Server::redis();
    let skewed = [
        (1, "LD_PRELOAD", libfaketime()),
        (1, "FAKETIME", "+2".to_string()),
        (1, "FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ];
    let fleet = Fleet::with_env(
        &server.url,
        3,
        "schedule = \"* * * * * *\"\noverlap = \"allow\"",
        "0",
        &skewed,
    );
    let h = fleet.h(0);
    h.wait_for("12 runs across the fleet", 60 * SECOND, || {
        starts(&fleet.file).len() >= 12
    });
    fleet.stop_all();
    let runs = starts(&fleet.file);
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in &runs {
        by_id
            .entry(run.run_id.clone())
            .or_default()
            .push(run.host.clone());
    }
    let twice: Vec<_> = by_id.iter().filter(|(_, hosts)| hosts.len() > 1).collect();
    assert!(twice.is_empty(), "fire times run twice: {twice:?}");
    let seconds: Vec<i64> = by_id.keys().map(|id| second(id)).collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "a fire time ran nowhere: {by_id:?}");
    }
    let skewed_runs = runs.iter().filter(|r| r.host == "host-b").count();
    eprintln!(
        "host-b (+2 s) ran {skewed_runs} of {} fire times",
        runs.len()
    );
    // `fleet status` on the skewed host warns about its clock.
    let text = fleet.h(1).cmd(&["fleet", "status"]).ok().stdout;
    assert!(text.contains("warning: this host's clock is off"), "{text}");
}

/// The store restarted (a fresh `redis-server` on the same port, its claims gone): the fire times while it
/// was down are recorded skipped, runs go on once it is back, and no fire time runs twice.
#[test]
fn a_restarted_store_skips_then_runs_never_twice() {
    let port = free_port();
    let server = Server::redis_on(port);
    let fleet = Fleet::new(
        &server.url,
        3,
        "schedule = \"* * * * * *\"\noverlap = \"allow\"",
        "0",
    );
    let h = fleet.h(0);
    h.wait_for("3 runs", 30 * SECOND, || starts(&fleet.file).len() >= 3);
    drop(server);
    h.wait_for(
        "a fire time skipped: store unreachable",
        30 * SECOND,
        || {
            fleet.history(0).iter().any(|r| {
                r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("store unreachable"))
            })
        },
    );
    let server = Server::redis_on(port);
    let n = starts(&fleet.file).len();
    h.wait_for("3 runs after the restart", 30 * SECOND, || {
        starts(&fleet.file).len() >= n + 3
    });
    fleet.stop_all();
    drop(server);
    let ids: Vec<String> = starts(&fleet.file).into_iter().map(|l| l.run_id).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a fire time ran twice: {ids:?}");
}

/// Figures: how late after its nominal fire time a run starts, for a fleet job (claim first) and a host job
/// on the same daemon; printed with `--nocapture`.
#[test]
fn start_delay_of_a_fleet_job_against_a_host_job_redis() {
    start_delay(&Server::redis());
}

#[test]
fn start_delay_of_a_fleet_job_against_a_host_job_postgres() {
    start_delay(&Server::postgres());
}

fn start_delay(server: &Server) {
    let h = Herdsman::new();
    let dir = h.scratch("delay");
    let (fleet_file, host_file) = (dir.join("fleet"), dir.join("host"));
    let ecosystem = dir.join("ecosystem.toml");
    let app = |name: &str, scope: &str, file: &Path| {
        format!(
            "[[apps]]\nname = \"{name}\"\nscript = \"{}\"\ninterpreter = \"none\"\nschedule = \"* * * * * *\"\noverlap = \"allow\"\nscope = \"{scope}\"\nenv = {{ JOB_FILE = \"{}\" }}\n\n",
            app_arg("fleet-job.sh"),
            file.display()
        )
    };
    fs::write(
        &ecosystem,
        format!(
            "[fleet]\nstore = \"{}\"\nname = \"delay\"\n\n{}{}",
            server.url,
            app("on-fleet", "fleet", &fleet_file),
            app("on-host", "host", &host_file)
        ),
    )
    .expect("write");
    h.cmd(&["start", &ecosystem.display().to_string()])
        .env("HERDSMAN_HOST", "solo")
        .ok();
    h.wait_for("20 runs of each", 60 * SECOND, || {
        starts(&fleet_file).len() >= 21 && starts(&host_file).len() >= 21
    });
    h.cmd(&["stop", "all"]).ok();
    let delays = |file: &Path| {
        // The first run may be a catch-up: left out.
        let mut ms: Vec<f64> = starts(file)
            .iter()
            .skip(1)
            .map(|l| (l.at_ns as f64 - second(&l.run_id) as f64 * 1e9) / 1e6)
            .collect();
        ms.sort_by(f64::total_cmp);
        let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        (pick(0.5), pick(0.99), ms.len())
    };
    let (fleet_p50, fleet_p99, n) = delays(&fleet_file);
    let (host_p50, host_p99, m) = delays(&host_file);
    eprintln!(
        "{}: start delay after the fire time (to the job's first line): fleet p50 {fleet_p50:.1} ms p99 {fleet_p99:.1} ms ({n} runs); host p50 {host_p50:.1} ms p99 {host_p99:.1} ms ({m} runs)",
        server.url
    );
    assert!(fleet_p99 < 1000.0, "a fleet run starts within its second");
}

/// `overlap = "replace"` across hosts: the host that claims the next fire time tells the run in progress
/// elsewhere to stop, and it is stopped, recorded killed.
#[test]
fn replace_stops_the_run_on_another_host() {
    let server = Server::redis();
    let fleet = Fleet::new(
        &server.url,
        3,
        "schedule = \"*/2 * * * * *\"\noverlap = \"replace\"",
        "60",
    );
    let h = fleet.h(0);
    let (earlier, later) =
        h.wait_value("a run followed by one on another host", 60 * SECOND, || {
            let runs = starts(&fleet.file);
            runs.windows(2)
                .find(|pair| pair[0].host != pair[1].host)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
        });
    let host = fleet
        .hosts
        .iter()
        .position(|(name, _)| *name == earlier.host)
        .expect("a host of the fleet");
    let record = h.wait_value("the earlier run stopped", 30 * SECOND, || {
        fleet
            .history(host)
            .into_iter()
            .find(|r| r["run_id"] == earlier.run_id.as_str() && r["outcome"] != "running")
    });
    assert_eq!(record["outcome"], "killed", "{record}");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("replaced by the next run on another host")),
        "{record} (replaced by {} on {})",
        later.run_id,
        later.host
    );
    fleet.stop_all();
}

/// `trigger` of a fleet job claims a manual run id in the store and runs it here, with a fence; the run's
/// record reaches the store's history.
#[test]
fn trigger_claims_a_manual_run_in_the_store() {
    let server = Server::postgres();
    let fleet = Fleet::new(&server.url, 2, "schedule = \"@yearly\"", "0");
    let h = fleet.h(1);
    let out = h.cmd(&["trigger", "tick", "--wait"]).ok();
    let run_id = out.stdout.lines().next().unwrap_or_default().to_string();
    assert!(run_id.starts_with("tick@manual-"), "{out}");
    let run = starts(&fleet.file)
        .into_iter()
        .find(|l| l.run_id == run_id)
        .unwrap_or_else(|| h.fail(&format!("no run {run_id}")));
    assert_eq!(run.host, "host-b");
    assert!(run.fence.parse::<u64>().is_ok(), "{run:?}");
    let stored = fleet
        .h(0)
        .wait_value("the run in the store", 10 * SECOND, || {
            let out = fleet
                .h(0)
                .cmd(&["jobs", "history", "tick", "--fleet", "--json"])
                .ok();
            let runs: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
            runs.into_iter().find(|r| r["run_id"] == run_id.as_str())
        });
    assert_eq!(stored["host"], "host-b", "{stored}");
    assert_eq!(stored["outcome"], "ok", "{stored}");
    let text = fleet
        .h(0)
        .cmd(&["jobs", "history", "tick", "--fleet"])
        .ok()
        .stdout;
    assert!(text.contains("host-b") && text.contains(&run_id), "{text}");
}
