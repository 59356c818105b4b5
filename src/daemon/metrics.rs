//! CPU and memory of workers, from sysinfo, sampled only when someone asks (a `list`).
//!
//! CPU is the share of one core used since the previous sample of that process (sysinfo needs two
//! readings; a worker is read once when it starts so that the first `list` already has a figure).

use std::collections::HashMap;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct Metrics {
    system: Option<System>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            system: System::new().ok(),
        }
    }

    fn refresh(&mut self, pids: &[i32]) -> Option<&System> {
        let system = self.system.as_mut()?;
        let pids: Vec<Pid> = pids.iter().map(|&p| Pid::from_u32(p as u32)).collect();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        Some(system)
    }

    /// Takes the first reading of a new worker.
    pub fn track(&mut self, pid: i32) {
        self.refresh(&[pid]);
    }

    /// Drops a worker that exited.
    pub fn forget(&mut self, pid: i32) {
        self.refresh(&[pid]);
    }

    /// (CPU % of one core, RSS bytes) for each pid that could be read.
    pub fn sample(&mut self, pids: &[i32]) -> HashMap<i32, (f32, u64)> {
        let Some(system) = self.refresh(pids) else {
            return HashMap::new();
        };
        pids.iter()
            .filter_map(|&pid| {
                let process = system.process(Pid::from_u32(pid as u32))?;
                Some((pid, (process.cpu_usage(), process.memory())))
            })
            .collect()
    }
}
