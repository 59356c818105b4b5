//! Signalling a worker's process group once its leader may have been reaped, so that a number the kernel has
//! given to another process since is never signalled.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Signals a worker's process group (`None`: only asks whether a member is left), and says whether one was.
///
/// `leader_reaped`: the daemon has reaped the group's leader (or is about to: its zombie may still be
/// there). The group's id then stays the group's only while a member of it lives: the kernel does not give
/// the number to a new process before that. So a live process that has the number now means the group is
/// empty and the number belongs to someone else, who is not signalled.
pub fn signal_group(pgid: i32, leader_reaped: bool, signal: Option<Signal>) -> bool {
    if leader_reaped && number_taken(pgid) {
        return false;
    }
    killpg(Pid::from_raw(pgid), signal).is_ok()
}

/// Whether a process other than a zombie has this pid.
fn number_taken(pid: i32) -> bool {
    super::adopted::parent_and_state(pid).is_some_and(|(_, state)| state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_group_is_signalled_unless_its_reaped_leaders_number_is_someone_elses() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(signal_group(pid, false, None), "a live group answers");
        // Taken as if the leader had been reaped: a live process with the number is not the group's.
        assert!(!signal_group(pid, true, None));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!signal_group(pid, false, None), "an empty group does not");
    }
}
