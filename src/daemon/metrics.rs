//! CPU and memory of workers, from sysinfo, sampled only when someone needs them: a `list`, a `describe`,
//! a live subscriber (`monit`), or an app with a memory limit.
//!
//! A worker's figures are those of its whole family: the worker and every process descended from it
//! (a gunicorn master with its workers, `npm start` with its node), and the orphans of its process group
//! that the daemon, a subreaper, inherited. CPU is the share of one core used since
//! the previous sample, so the first sample of a process after it starts reads low; a worker is read once
//! when it starts so that the first `list` already has a figure.

use std::collections::HashMap;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

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

pub struct Metrics {
    system: Option<System>,
}

/// Longest command line kept for a member.
const COMMAND_MAX: usize = 120;

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            system: System::new().ok(),
        }
    }

    /// Takes the first reading of a new worker.
    pub fn track(&mut self, pid: i32) {
        if let Some(system) = self.system.as_mut() {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[Pid::from_u32(pid as u32)]),
                true,
                kind(false),
            );
        }
    }

    /// Drops a worker that exited, if it was read.
    pub fn forget(&mut self, pid: i32) {
        if let Some(system) = self.system.as_mut() {
            let pid = Pid::from_u32(pid as u32);
            if system.process(pid).is_some() {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    kind(false),
                );
            }
        }
    }

    /// Samples every process, and adds up each leader's family. A leader that cannot be read is missing.
    /// Command lines are read only `with_commands` (they cost a read per process).
    pub fn sample(&mut self, leaders: &[i32], with_commands: bool) -> HashMap<i32, Sample> {
        let Some(system) = self.system.as_mut() else {
            return HashMap::new();
        };
        if leaders.is_empty() {
            return HashMap::new();
        }
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind(with_commands));
        let me = std::process::id() as i32;
        let parents: Vec<(i32, i32)> = system
            .processes()
            .iter()
            .filter(|(_, p)| p.thread_kind().is_none())
            .filter_map(|(pid, p)| {
                let (pid, parent) = (pid.as_u32() as i32, p.parent()?.as_u32() as i32);
                // An orphan of a worker's group is reparented to the daemon (a subreaper): it still
                // belongs to the group it was started in.
                if parent == me && !leaders.contains(&pid) {
                    return Some((pid, process_group(pid).unwrap_or(parent)));
                }
                Some((pid, parent))
            })
            .collect();
        families(leaders, &parents)
            .into_iter()
            .filter_map(|(leader, family)| {
                let members: Vec<Member> = family
                    .iter()
                    .filter_map(|&pid| {
                        let process = system.process(Pid::from_u32(pid as u32))?;
                        Some(Member {
                            pid,
                            command: command(process),
                            cpu: process.cpu_usage(),
                            memory: process.memory(),
                        })
                    })
                    .collect();
                if members.first().is_none_or(|m| m.pid != leader) {
                    return None;
                }
                Some((
                    leader,
                    Sample {
                        cpu: members.iter().map(|m| m.cpu).sum(),
                        memory: members.iter().map(|m| m.memory).sum(),
                        members,
                    },
                ))
            })
            .collect()
    }
}

/// A process's group, from `/proc/<pid>/stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command in parentheses: state, ppid, pgrp.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn kind(with_commands: bool) -> ProcessRefreshKind {
    // Threads are listed as processes unless told otherwise; they share their process's memory.
    let kind = ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .without_tasks();
    if with_commands {
        kind.with_cmd(UpdateKind::Always)
    } else {
        kind
    }
}

fn command(process: &sysinfo::Process) -> String {
    let cmd = process.cmd();
    let mut text = if cmd.is_empty() {
        process.name().to_string_lossy().into_owned()
    } else {
        cmd.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
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
    fn the_group_of_this_process_is_read() {
        let me = std::process::id() as i32;
        assert_eq!(process_group(me), Some(nix::unistd::getpgrp().as_raw()));
    }

    #[test]
    fn this_process_is_sampled() {
        let me = std::process::id() as i32;
        let mut metrics = Metrics::new();
        let samples = metrics.sample(&[me], true);
        let sample = &samples[&me];
        assert!(sample.memory > 0);
        assert_eq!(sample.members[0].pid, me);
    }
}
