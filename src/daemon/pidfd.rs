//! Process file descriptors, for the processes a keeper adopts rather than forks (see
//! `supervisor/adoption.rs`): such a process is not the keeper's child, so its exit is not reaped here and
//! its pid alone could be given to another process once it is gone. A pidfd always refers to the process
//! it was opened on: it becomes readable when that process exits, lends a copy of one of its descriptors
//! (`pidfd_getfd`), and on Linux 6.15 and later tells how it exited (`PIDFD_GET_INFO`), even to a process
//! that is not its parent, provided the pidfd was open before the exit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Opens a pidfd on `pid` (close-on-exec).
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A copy of the descriptor `target` of the process behind `pidfd` (close-on-exec). It takes what
/// ptrace would: the same user, and no Yama restriction against a process that is not a descendant.
pub fn get_fd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `struct pidfd_info` up to `exit_code` (`PIDFD_INFO_SIZE_VER0`, Linux 6.13).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const PIDFD_INFO_EXIT: u64 = 0x8;
/// `_IOWR(0xFF, 11, struct pidfd_info)` with the size above.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// The wait status of the exited process behind `pidfd`, where the kernel keeps it (Linux 6.15 and later,
/// once the process was reaped by its parent); `None` where it cannot be known.
pub fn exit_status(pidfd: &OwnedFd) -> Option<i32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the kernel writes at most `size_of::<PidfdInfo>()` bytes (the size encoded in the request)
    // into `info`, which lives for the call.
    let done = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    (done == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

/// Waits until the process behind `pidfd` has exited, and returns its wait status if it can be known.
///
/// The status appears once the process's parent (init, or another subreaper) has reaped it. It is looked
/// for during a few milliseconds only, so that the exit is not reported late (an init that reaps in
/// batches, as some container runtimes do, takes a second or more): then it is unknown.
pub async fn exited(pidfd: OwnedFd) -> Option<i32> {
    // SAFETY: the pidfd is owned here and stays open as long as the registration (it is returned by
    // `into_inner` before anything else closes it).
    let watched = match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        Ok(watched) => watched,
        Err(_) => return None,
    };
    if let Ok(mut ready) = watched.readable().await {
        ready.retain_ready();
    }
    let pidfd = watched.into_inner();
    for _ in 0..5 {
        if let Some(status) = exit_status(&pidfd) {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_encodes_the_size_of_the_first_version_of_the_struct() {
        assert_eq!(std::mem::size_of::<PidfdInfo>(), 64);
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
    }

    #[test]
    fn a_pidfd_lends_a_copy_of_a_descriptor_of_the_process_it_names() {
        let pidfd = open(std::process::id() as i32).expect("pidfd_open of this process");
        let file = std::fs::File::open("/proc/self/stat").expect("open a file");
        let copy = get_fd(&pidfd, file.as_raw_fd()).expect("pidfd_getfd");
        let inode = |fd: RawFd| {
            std::fs::metadata(format!("/proc/self/fd/{fd}")).map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            })
        };
        assert_eq!(
            inode(copy.as_raw_fd()).expect("stat the copy"),
            inode(file.as_raw_fd()).expect("stat the file")
        );
    }

    #[test]
    fn the_exit_status_of_a_reaped_process_is_read_from_its_pidfd() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("spawn sh");
        let pidfd = open(child.id() as i32).expect("pidfd_open");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(7));
        match exit_status(&pidfd) {
            Some(status) => assert_eq!(libc::WEXITSTATUS(status), 7),
            // Linux before 6.15 keeps no status for a pidfd.
            None => eprintln!("no exit status from the pidfd on this kernel"),
        }
    }
}
