//! What the sampler reads of a process. Its line of `/proc/<pid>/stat` (parent, group, state, start
//! time, resident pages), read with one read into a stack buffer; and, for a process already known, what
//! costs far less than the kernel's formatting of that line: its resident pages from `/proc/<pid>/statm`
//! (a file kept open and read again from its start) and its CPU time from its process CPU clock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: R, S, D, Z, ...
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    /// Field 22, in clock ticks since boot: with the pid, it names one process for good.
    pub start: u64,
    /// Field 24: resident set size, in pages.
    pub rss_pages: u64,
}

impl Stat {
    /// A zombie or a dead process: nothing left to measure.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Reads `/proc/<pid>/stat` under `proc_root`. `None` when the process is gone or the line is not one.
pub fn read(proc_root: &Path, pid: i32) -> Option<Stat> {
    // A stat line is a few hundred bytes; the command name inside is at most 64.
    let mut buf = [0u8; 1024];
    let len = read_all(&open(proc_root, pid, "stat")?, &mut buf)?;
    parse(&buf[..len])
}

/// Opens `/proc/<pid>/<name>` under `proc_root`. The file names that one process for good: once it is
/// gone (reaped), reading it fails, even if its pid is reused.
pub fn open(proc_root: &Path, pid: i32, name: &str) -> Option<File> {
    let mut path = proc_root.to_path_buf();
    path.push(pid.to_string());
    path.push(name);
    File::open(path).ok()
}

/// Resident pages, from a `/proc/<pid>/statm` file read from its start. `None` when the process is gone,
/// or a zombie (no memory at all).
pub fn resident(statm: &File) -> Option<u64> {
    let mut buf = [0u8; 128];
    let len = read_all(statm, &mut buf)?;
    let mut fields = std::str::from_utf8(&buf[..len])
        .ok()?
        .split_ascii_whitespace();
    let size: u64 = fields.next()?.parse().ok()?;
    let resident = fields.next()?.parse().ok()?;
    (size > 0).then_some(resident)
}

/// The CPU time a process (all its threads) used, in nanoseconds, from its process CPU clock: one system
/// call, no text. `None` when it is gone.
pub fn cpu_ns(pid: i32) -> Option<u64> {
    // The kernel's process CPU clock ids (what glibc's clock_getcpuclockid makes): the pid, inverted and
    // shifted, with CPUCLOCK_SCHED (2): the scheduler's count, the most precise.
    let clock: libc::clockid_t = (!pid << 3) | 2;
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills a plain struct.
    if unsafe { libc::clock_gettime(clock, &mut time) } != 0 {
        return None;
    }
    Some(u64::try_from(time.tv_sec).ok()? * 1_000_000_000 + u64::try_from(time.tv_nsec).ok()?)
}

/// Reads a /proc file from its start into `buf`; the length read.
fn read_all(file: &File, buf: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(len)
}

/// Parses a stat line. The command name (field 2) is in parentheses and may hold anything, spaces and
/// parentheses included: the fields that follow start after the last `)`.
pub fn parse(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // fields[0] is field 3 (state).
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?; // 4
    let pgrp = fields.next()?.parse().ok()?; // 5
    let mut fields = fields.skip(16); // 6..=21
    let start = fields.next()?.parse().ok()?; // 22
    let _vsize = fields.next()?; // 23
    let rss_pages = fields.next()?.parse::<i64>().ok()?.max(0) as u64; // 24
    Some(Stat {
        state,
        ppid,
        pgrp,
        start,
        rss_pages,
    })
}

/// The page size, from sysconf.
pub fn page_size() -> u64 {
    // SAFETY: sysconf with a constant argument.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// The command line of a process (arguments joined by spaces), or its name when it has none (a kernel
/// thread, a zombie). `None` when it is gone.
pub fn command(proc_root: &Path, pid: i32) -> Option<String> {
    let dir = proc_root.join(pid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if !words.is_empty() {
        return Some(words.join(" "));
    }
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// Every pid under `proc_root`.
pub fn pids(proc_root: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_is_skipped() {
        let line = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse(line).expect("a stat line");
        assert_eq!(
            stat,
            Stat {
                state: b'S',
                ppid: 1,
                pgrp: 4242,
                start: 123456,
                rss_pages: 250,
            }
        );
    }

    #[test]
    fn a_short_or_broken_line_is_none() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"1 (x) S 1 1"), None);
        assert_eq!(parse(b"1 x S 1 1 1 0 -1 0 0 0 0 0 1 1"), None);
        assert_eq!(
            parse(b"1 (x) S one 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 2"),
            None
        );
    }

    #[test]
    fn this_process_is_read() {
        let me = std::process::id() as i32;
        let stat = read(Path::new("/proc"), me).expect("this process's stat");
        assert_eq!(stat.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
        assert!(stat.rss_pages > 0);
        assert!(!stat.is_gone());
        let statm = open(Path::new("/proc"), me, "statm").expect("this process's statm");
        assert!(resident(&statm).is_some_and(|pages| pages > 0));
        let used = cpu_ns(me).expect("this process's CPU clock");
        let busy = std::time::Instant::now();
        while busy.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(busy.elapsed());
        }
        assert!(cpu_ns(me).is_some_and(|later| later >= used + 10_000_000));
        assert!(pids(Path::new("/proc")).contains(&me));
        let command = command(Path::new("/proc"), me).expect("this process's command line");
        assert!(!command.is_empty());
    }
}
