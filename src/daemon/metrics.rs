//! CPU and memory of workers, read from `/proc`, sampled only when someone needs them: a `list`, a
//! `describe`, a live subscriber (`monit`), or an app with a memory limit.
//!
//! A worker's figures are those of its whole family: the worker and every process descended from it
//! (a gunicorn master with its workers, `npm start` with its node), and the orphans of its process group
//! that the daemon, a subreaper, inherited. CPU is the share of one core used since the previous reading
//! (at least [`CPU_WINDOW`] before), so the first sample of a process after it starts reads low; a worker's
//! first reading is taken at its fork (its CPU clock starts at zero there, nothing is read) so that the
//! first `list` already has a figure.
//!
//! A sample reads only the processes herdsman knows: each worker and the descendants found by the last
//! full pass, one `/proc/<pid>/stat` each. A full pass (every process's stat, to find the families) is
//! made at most every [`FULL_EVERY`], when a worker started since the last one (at most every
//! [`NEW_WORKER_PASS`]), and for `describe` (which lists each member): with 1000 workers on a host of
//! 1100 processes, a `list` reads 1000 small files, not 1100 plus every process's details.
//!
//! A known process is not read through its stat line again (the kernel's formatting of it is most of
//! a sample's cost): its `statm` file is kept open and read again from its start for its memory, up to a
//! quarter of the descriptor limit so that the files held never starve a start of descriptors, and its
//! CPU time comes from its process CPU clock (every figure's, so that they add up the same way). A file
//! held names its process for good: once that process is gone its reads fail, even if its pid is reused.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::procstat::{self, Stat};

/// One process of a worker's family.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub pid: i32,
    pub command: String,
    pub cpu: f32,
    pub memory: u64,
}

/// A worker's figures: the sums over its family, and each member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub cpu: f32,
    pub memory: u64,
    /// The worker first, then its descendants in pid order.
    pub members: Vec<Member>,
}

/// How often the families are found again by a full pass over `/proc`.
const FULL_EVERY: Duration = Duration::from_secs(10);
/// A worker started since the last full pass brings the next one forward, but not closer than this to
/// the previous one (a crash loop would otherwise make every sample a full pass).
const NEW_WORKER_PASS: Duration = Duration::from_secs(1);
/// A CPU figure is measured over at least this long: readings closer together keep the last figure.
const CPU_WINDOW: Duration = Duration::from_millis(200);
/// A sample younger than this is answered again (less the workers gone since, plus a first reading of
/// the new ones): a `list` run in a loop, or beside `monit`, does not read `/proc` each time.
const REUSE: Duration = Duration::from_millis(500);
/// Longest command line kept for a member.
const COMMAND_MAX: usize = 120;

/// The start time of a reading taken at a fork, before the process's stat was read.
const UNREAD: u64 = u64::MAX;

/// The last reading of a process: its CPU figure and the CPU time it was measured from.
struct Reading {
    start: u64,
    cpu_ns: u64,
    at: Instant,
    cpu: f32,
}

/// A member's `statm` file, and its start time (read from its stat line when the file was opened).
struct Held {
    statm: File,
    start: u64,
}

pub struct Metrics {
    proc_root: PathBuf,
    page: u64,
    readings: HashMap<i32, Reading>,
    /// Each worker's family (the worker first), as the last full pass found it, less those gone since.
    families: HashMap<i32, Vec<i32>>,
    /// The families' members' `statm` files, kept open, at most `hold_max`.
    files: HashMap<i32, Held>,
    hold_max: usize,
    full_at: Option<Instant>,
    /// The last sample (without command lines), and when it was taken. Shared with its readers: a sample
    /// reused within [`REUSE`] is not copied.
    last: Arc<HashMap<i32, Sample>>,
    last_at: Option<Instant>,
    reuse: Duration,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            proc_root: PathBuf::from("/proc"),
            page: procstat::page_size(),
            readings: HashMap::new(),
            families: HashMap::new(),
            files: HashMap::new(),
            hold_max: hold_max(),
            full_at: None,
            last: Arc::default(),
            last_at: None,
            reuse: REUSE,
        }
    }

    /// Takes the first reading of a worker found running (adopted).
    pub fn track(&mut self, pid: i32) {
        if let Some(stat) = procstat::read(&self.proc_root, pid) {
            self.read(pid, &stat, Instant::now());
        }
    }

    /// Takes the first reading of a child the daemon has just forked, without reading anything: its CPU
    /// clock starts at zero at the fork, and its pid names it until the daemon reaps it (and forgets it),
    /// so its start time is taken from its first sample.
    pub fn spawned(&mut self, pid: i32) {
        let first = Reading {
            start: UNREAD,
            cpu_ns: 0,
            at: Instant::now(),
            cpu: 0.0,
        };
        self.readings.insert(pid, first);
    }

    /// Drops a worker that exited.
    pub fn forget(&mut self, pid: i32) {
        self.readings.remove(&pid);
        if let Some(family) = self.families.remove(&pid) {
            for member in family {
                self.files.remove(&member);
            }
        }
        if self.last.contains_key(&pid) {
            Arc::make_mut(&mut self.last).remove(&pid);
        }
    }

    /// Samples each leader's family. A leader that cannot be read is missing. Command lines are read only
    /// `with_commands` (they cost a read per process, and come with a full pass).
    pub fn sample(&mut self, leaders: &[i32], with_commands: bool) -> Arc<HashMap<i32, Sample>> {
        if leaders.is_empty() {
            self.readings.clear();
            self.families.clear();
            self.files.clear();
            return Arc::default();
        }
        let now = Instant::now();
        let fresh_enough = self
            .last_at
            .is_some_and(|at| now.duration_since(at) < self.reuse);
        if fresh_enough && !with_commands {
            // The last sample, with the leaders it lacks added (it may hold leaders gone since: readers look
            // samples up by pid).
            let new: Vec<i32> = leaders
                .iter()
                .copied()
                .filter(|l| !self.last.contains_key(l))
                .collect();
            if !new.is_empty() {
                let stats = self.known_pass(&new);
                let added = self.add_up(&new, &stats, false, now);
                Arc::make_mut(&mut self.last).extend(added);
            }
            return Arc::clone(&self.last);
        }
        let since_full = self.full_at.map(|at| now.duration_since(at));
        let new_worker = leaders.iter().any(|l| !self.families.contains_key(l));
        let full = with_commands
            || since_full.is_none_or(|d| d >= FULL_EVERY || (new_worker && d >= NEW_WORKER_PASS));
        let stats = if full {
            self.full_pass(leaders, now)
        } else {
            self.known_pass(leaders)
        };
        let samples = self.add_up(leaders, &stats, with_commands, now);
        self.readings.retain(|pid, _| stats.contains_key(pid));
        let leading: HashSet<i32> = leaders.iter().copied().collect();
        self.families.retain(|leader, _| leading.contains(leader));
        let members: HashSet<i32> = self.families.values().flatten().copied().collect();
        self.files.retain(|pid, _| members.contains(pid));
        self.last_at = Some(now);
        if with_commands {
            let mut kept = samples.clone();
            for sample in kept.values_mut() {
                for member in &mut sample.members {
                    member.command = String::new();
                }
            }
            self.last = Arc::new(kept);
            return Arc::new(samples);
        }
        self.last = Arc::new(samples);
        Arc::clone(&self.last)
    }

    /// Each leader's figures from the stats read: the sums over its family.
    fn add_up(
        &mut self,
        leaders: &[i32],
        stats: &HashMap<i32, Stat>,
        with_commands: bool,
        now: Instant,
    ) -> HashMap<i32, Sample> {
        let mut samples = HashMap::new();
        for &leader in leaders {
            let Some(family) = self.families.get(&leader).cloned() else {
                continue;
            };
            let mut members = Vec::with_capacity(family.len());
            for pid in family {
                let Some(stat) = stats.get(&pid) else {
                    continue;
                };
                let cpu = self.read(pid, stat, now);
                members.push(Member {
                    pid,
                    command: if with_commands {
                        command(&self.proc_root, pid)
                    } else {
                        String::new()
                    },
                    cpu,
                    memory: stat.rss_pages.saturating_mul(self.page),
                });
            }
            if members.first().is_none_or(|m| m.pid != leader) {
                continue;
            }
            samples.insert(
                leader,
                Sample {
                    cpu: members.iter().map(|m| m.cpu).sum(),
                    memory: members.iter().map(|m| m.memory).sum(),
                    members,
                },
            );
        }
        samples
    }

    /// Reads every process, and finds each leader's family again.
    fn full_pass(&mut self, leaders: &[i32], now: Instant) -> HashMap<i32, Stat> {
        self.full_at = Some(now);
        let stats: HashMap<i32, Stat> = procstat::pids(&self.proc_root)
            .into_iter()
            .filter_map(|pid| Some((pid, procstat::read(&self.proc_root, pid)?)))
            .filter(|(_, stat)| !stat.is_gone())
            .collect();
        let me = std::process::id() as i32;
        let leading: HashSet<i32> = leaders.iter().copied().collect();
        let parents: Vec<(i32, i32)> = stats
            .iter()
            .map(|(&pid, stat)| {
                // An orphan of a worker's group is reparented to the daemon (a subreaper): it still
                // belongs to the group it was started in.
                if stat.ppid == me && !leading.contains(&pid) {
                    (pid, stat.pgrp)
                } else {
                    (pid, stat.ppid)
                }
            })
            .collect();
        self.families = families(leaders, &parents)
            .into_iter()
            .filter(|(leader, _)| stats.contains_key(leader))
            .collect();
        stats
    }

    /// Reads only the known families' members: one that is gone, or whose pid now names a process of
    /// another family, leaves its family. A leader not seen by a full pass yet is a family of one.
    fn known_pass(&mut self, leaders: &[i32]) -> HashMap<i32, Stat> {
        let me = std::process::id() as i32;
        let mut stats = HashMap::new();
        for &leader in leaders {
            let family = self.families.entry(leader).or_insert_with(|| vec![leader]);
            let known: HashSet<i32> = family.iter().copied().collect();
            let mut kept: Vec<i32> = Vec::with_capacity(family.len());
            for &pid in family.iter() {
                if let Some(held) = self.files.get(&pid) {
                    match procstat::resident(&held.statm) {
                        Some(rss_pages) => {
                            kept.push(pid);
                            // Its parent and group are not read again: the file held pins the process,
                            // and only its memory and start time are used from here.
                            let stat = Stat {
                                state: b'S',
                                ppid: 0,
                                pgrp: 0,
                                start: held.start,
                                rss_pages,
                            };
                            stats.insert(pid, stat);
                        }
                        None => {
                            self.files.remove(&pid);
                        }
                    }
                    continue;
                }
                let Some(stat) = procstat::read(&self.proc_root, pid).filter(|s| !s.is_gone())
                else {
                    continue;
                };
                let related = pid == leader
                    || known.contains(&stat.ppid)
                    || (stat.ppid == me && stat.pgrp == leader);
                if related {
                    kept.push(pid);
                    stats.insert(pid, stat);
                    if self.files.len() < self.hold_max
                        && let Some(statm) = procstat::open(&self.proc_root, pid, "statm")
                    {
                        let start = stat.start;
                        self.files.insert(pid, Held { statm, start });
                    }
                }
            }
            *family = kept;
        }
        stats
    }

    /// Records a reading of `pid` and returns its CPU figure (% of one core); 0 when its CPU clock cannot
    /// be read (it is gone).
    fn read(&mut self, pid: i32, stat: &Stat, now: Instant) -> f32 {
        let Some(cpu_ns) = procstat::cpu_ns(pid) else {
            return 0.0;
        };
        let fresh = Reading {
            start: stat.start,
            cpu_ns,
            at: now,
            cpu: 0.0,
        };
        match self.readings.get_mut(&pid) {
            Some(last) if last.start == stat.start || last.start == UNREAD => {
                let elapsed = now.duration_since(last.at);
                if elapsed < CPU_WINDOW {
                    return last.cpu;
                }
                let used = cpu_ns.saturating_sub(last.cpu_ns) as f64 / 1e9;
                let cpu = (used / elapsed.as_secs_f64() * 100.0) as f32;
                *last = Reading { cpu, ..fresh };
                cpu
            }
            _ => {
                self.readings.insert(pid, fresh);
                0.0
            }
        }
    }
}

/// How many stat files the sampler keeps open: a quarter of the soft descriptor limit.
fn hold_max() -> usize {
    // SAFETY: getrlimit fills a plain struct.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    usize::try_from(soft / 4).unwrap_or(usize::MAX)
}

fn command(proc_root: &std::path::Path, pid: i32) -> String {
    let mut text = procstat::command(proc_root, pid).unwrap_or_default();
    if text.chars().count() > COMMAND_MAX {
        text = text.chars().take(COMMAND_MAX - 1).collect::<String>() + "…";
    }
    text
}

/// Each leader with its descendants (the leader first, then the others in pid order), from (pid, parent)
/// pairs. A descendant that is itself a leader belongs to its own family only.
fn families(leaders: &[i32], parents: &[(i32, i32)]) -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, parent) in parents {
        children.entry(parent).or_default().push(pid);
    }
    leaders
        .iter()
        .map(|&leader| {
            let mut family = vec![leader];
            let mut stack = vec![leader];
            while let Some(pid) = stack.pop() {
                for &child in children.get(&pid).into_iter().flatten() {
                    if !leaders.contains(&child) && !family.contains(&child) {
                        family.push(child);
                        stack.push(child);
                    }
                }
            }
            family[1..].sort_unstable();
            (leader, family)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_the_leader_and_every_descendant() {
        // 10 -> 11 -> 13, 10 -> 12; 20 alone; 30 is someone else's.
        let parents = [(11, 10), (12, 10), (13, 11), (20, 1), (30, 1), (10, 1)];
        let families = families(&[10, 20], &parents);
        assert_eq!(families[&10], vec![10, 11, 12, 13]);
        assert_eq!(families[&20], vec![20]);
    }

    #[test]
    fn a_leader_below_another_is_its_own_family() {
        let parents = [(11, 10), (12, 11)];
        let families = families(&[10, 11], &parents);
        assert_eq!(families[&10], vec![10]);
        assert_eq!(families[&11], vec![11, 12]);
    }

    #[test]
    fn this_process_is_sampled() {
        let me = std::process::id() as i32;
        let mut metrics = Metrics::new();
        let samples = metrics.sample(&[me], true);
        let sample = &samples[&me];
        assert!(sample.memory > 0);
        assert_eq!(sample.members[0].pid, me);
        assert!(!sample.members[0].command.is_empty());
    }

    #[test]
    fn a_child_is_found_by_a_full_pass_and_read_until_it_is_gone() {
        use std::io::BufRead;
        // A worker (sh) with a child (sleep), whose pid it prints.
        let mut worker = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let leader = worker.id() as i32;
        let mut line = String::new();
        std::io::BufReader::new(worker.stdout.take().expect("a pipe"))
            .read_line(&mut line)
            .expect("the child's pid");
        let child: i32 = line.trim().parse().expect("a pid");
        let mut metrics = Metrics {
            reuse: Duration::ZERO,
            ..Metrics::new()
        };
        let first = metrics.sample(&[leader], false);
        let has_child =
            |s: &HashMap<i32, Sample>| s[&leader].members.iter().any(|m| m.pid == child);
        assert!(has_child(&first), "{first:?}");
        // The next sample reads the known family only, and still has the child.
        let known = metrics.sample(&[leader], false);
        assert!(has_child(&known), "{known:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill sleep");
        worker.wait().expect("sh ends once its child is gone");
        let after = metrics.sample(&[leader], false);
        assert!(after.is_empty(), "{after:?}");
    }

    #[test]
    fn a_recent_sample_is_answered_again_with_the_new_workers_read() {
        let me = std::process::id() as i32;
        let mut metrics = Metrics::new();
        let first = metrics.sample(&[me], false);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let pid = child.id() as i32;
        let again = metrics.sample(&[me, pid], false);
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert_eq!(again[&me], first[&me]);
        assert_eq!(again[&pid].members[0].pid, pid);
    }
}
