//! Descendants of a worker that left its process group (`setsid`, Node's `detached: true`, a shell's
//! background job under job control), found among the processes the daemon adopted as a subreaper.
//!
//! Stopping a worker signals its process group; a descendant that left the group is not reached, and, holding
//! the app's socket (fd 3), keeps its port bound with nobody answering. Once the worker has exited such a
//! descendant is the daemon's child (it is a child subreaper), and it still carries the environment the
//! worker was started with: `HERDSMAN_APP` and `HERDSMAN_INSTANCE` name the slot it came from. A stop, a
//! crash or a replacement of that slot ends it too, as systemd ends everything in a service's cgroup.
//! (A descendant that also cleared its environment, or whose parent outside the group is still alive, is not
//! found: only a cgroup could follow it.)

use std::fs;

/// The daemon's children, other than `known`, that came from this slot of this app.
pub fn escapees(app: &str, instance: u32, known: &[i32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let own = fs::read_link("/proc/self/exe").ok();
    let app_marker = format!("HERDSMAN_APP={app}");
    let instance_marker = format!("HERDSMAN_INSTANCE={instance}");
    children()
        .into_iter()
        .filter(|pid| !known.contains(pid))
        // The daemon's own helpers (the log keeper) run this binary and may carry the markers of the
        // caller that started the daemon.
        .filter(|pid| own.is_none() || fs::read_link(format!("/proc/{pid}/exe")).ok() != own)
        .filter(|&pid| {
            parent_and_state(pid).is_some_and(|(ppid, state)| ppid == me && state != 'Z')
        })
        .filter(|&pid| {
            let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
                return false;
            };
            let (mut app_seen, mut instance_seen) = (false, false);
            for var in environ.split(|&b| b == 0) {
                app_seen |= var == app_marker.as_bytes();
                instance_seen |= var == instance_marker.as_bytes();
            }
            app_seen && instance_seen
        })
        .collect()
}

/// The pids that may be the daemon's children: from each thread's `children` list, or, on kernels without
/// it, every pid (the callers check the parent).
fn children() -> Vec<i32> {
    let parse = |text: &str| -> Vec<i32> {
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let mut listed: Option<Vec<i32>> = None;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                listed.get_or_insert_with(Vec::new).extend(parse(&text));
            }
        }
    }
    listed.unwrap_or_else(|| {
        fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The parent pid and the state letter of a process, from `/proc/<pid>/stat`.
pub fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which is in parentheses and may hold anything: state, ppid, ...
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_started_with_the_markers_is_found_and_others_are_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("HERDSMAN_APP", "adopted-test")
            .env("HERDSMAN_INSTANCE", "7")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // The environment shows in /proc only once the exec has set it up, a moment after spawn returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| e.is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let found = escapees("adopted-test", 7, &[]);
        let other_instance = escapees("adopted-test", 8, &[]);
        let known = escapees("adopted-test", 7, &[pid]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![pid]);
        assert!(other_instance.is_empty());
        assert!(known.is_empty());
    }
}
