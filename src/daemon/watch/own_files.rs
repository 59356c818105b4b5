//! Files an app writes itself, as far as the kernel can tell: the ones one of its processes holds open for
//! writing (a SQLite database and its journal, a log file it keeps open), and pid files (a small file
//! holding the pid of one of its processes, as `tmp/pids/server.pid`). A change to such a file is the
//! app's own doing, never a reason to reload it. Read from `/proc/<pid>/fd` and `fdinfo`, for the workers and
//! their descendants, only when a report comes (no polling).

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Of `paths`, those a process of `pids` (or a descendant) holds open for writing.
pub fn own_files(pids: &[i32], paths: &[PathBuf]) -> BTreeSet<PathBuf> {
    // What a descriptor's link names is the real path; the watcher's may go through a link (`current/`).
    let wanted: Vec<(PathBuf, &PathBuf)> = paths
        .iter()
        .map(|p| (std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()), p))
        .collect();
    let mut held = BTreeSet::new();
    let family = family(pids);
    for (_, original) in &wanted {
        if is_pid_file(original, &family) {
            held.insert((*original).clone());
        }
    }
    for &pid in &family {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some((_, original)) = wanted.iter().find(|(real, _)| *real == target) else {
                continue;
            };
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            if std::fs::read_to_string(info).is_ok_and(|text| writable(&text)) {
                held.insert((*original).clone());
            }
        }
    }
    held
}

/// A small file that holds one of these pids and nothing else.
fn is_pid_file(path: &std::path::Path, pids: &[i32]) -> bool {
    if std::fs::symlink_metadata(path).map_or(true, |m| !m.is_file() || m.len() > 24) {
        return false;
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .is_some_and(|pid| pids.contains(&pid))
}

/// Whether an `fdinfo` says the descriptor was opened for writing (`O_WRONLY` or `O_RDWR`).
fn writable(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32)
}

/// The processes and all their descendants (`/proc/<pid>/task/<tid>/children`).
fn family(pids: &[i32]) -> Vec<i32> {
    let mut seen: Vec<i32> = Vec::new();
    let mut stack: Vec<i32> = pids.to_vec();
    while let Some(pid) = stack.pop() {
        if seen.contains(&pid) || seen.len() > 4096 {
            continue;
        }
        seen.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_held_open_for_writing_is_found_and_one_read_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = dir.path().join("data.db");
        let read = dir.path().join("config.toml");
        std::fs::write(&read, "x").expect("write");
        let _w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&written)
            .expect("open for writing");
        let _r = std::fs::File::open(&read).expect("open for reading");
        let me = std::process::id() as i32;
        let held = own_files(&[me], &[written.clone(), read.clone()]);
        assert_eq!(held, BTreeSet::from([written]));
    }

    #[test]
    fn a_file_holding_a_pid_of_the_app_is_its_pid_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let me = std::process::id() as i32;
        let pid_file = dir.path().join("server.pid");
        let other = dir.path().join("count.txt");
        std::fs::write(&pid_file, format!("{me}\n")).expect("write");
        std::fs::write(&other, "1\n").expect("write");
        let held = own_files(&[me], &[pid_file.clone(), other]);
        assert_eq!(held, BTreeSet::from([pid_file]));
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        assert!(writable("pos:\t0\nflags:\t02100001\nmnt_id:\t1\n"));
        assert!(writable("flags:\t0100002\n"));
        assert!(!writable("flags:\t0100000\n"));
        assert!(!writable("pos: 0\n"));
    }
}
