//! systemd's file descriptor store: a keeper run by systemd sends a copy of each listening socket to the
//! store (`FDSTORE=1`), and a keeper started again with them (`LISTEN_FDS`) listens on the same socket, so
//! its own death refuses no connection. The test plays systemd's part: it owns the notify socket, keeps
//! what the keeper stores, kills the keeper and its workers (as `KillMode=mixed` does), and starts the next
//! keeper with the stored socket, as systemd would.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::Pid;

use crate::helpers::{Herdsman, Probe, SECOND, alive, fd_link, free_port, pids, wait_child};

/// Reads what the keeper sends systemd until a message containing `want` arrives; its text and the
/// descriptor it carried.
pub(crate) fn receive(
    h: &Herdsman,
    socket: &UnixDatagram,
    want: &str,
) -> (String, Option<OwnedFd>) {
    let deadline = Instant::now() + 15 * SECOND;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while Instant::now() < deadline {
        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let Ok(message) = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            continue;
        };
        let mut fd = None;
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: a descriptor the kernel just gave this process.
                        fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
        }
        let bytes = message.bytes;
        let text = String::from_utf8_lossy(&buffer[..bytes]).to_string();
        if text.contains(want) {
            return (text, fd);
        }
    }
    h.fail(&format!("no notification containing {want:?}"))
}

/// `herdsman daemon --foreground [--resurrect]` as systemd runs it: NOTIFY_SOCKET, and the stored sockets
/// (if any) as fds 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (the shell's pid, which `exec`
/// keeps).
pub(crate) fn start_keeper(h: &Herdsman, notify: &str, stored: &[(&OwnedFd, &str)]) -> Child {
    let mut command = h.command();
    command
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if stored.is_empty() {
        command.args(["daemon", "--foreground"]);
        return command.spawn().expect("start the keeper");
    }
    assert!(stored.len() <= 8, "at most 8 stored sockets");
    let names: Vec<&str> = stored.iter().map(|(_, name)| *name).collect();
    let mut shell = std::process::Command::new("/bin/sh");
    shell
        .args([
            "-c",
            "LISTEN_PID=$$ exec \"$0\" daemon --foreground --resurrect",
            env!("CARGO_BIN_EXE_herdsman"),
        ])
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("LISTEN_FDS", stored.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut raws = [-1; 8];
    for (slot, (fd, _)) in raws.iter_mut().zip(stored) {
        *slot = fd.as_raw_fd();
    }
    let count = stored.len();
    // SAFETY: fcntl and dup2 are async-signal-safe; the stored sockets are moved out of the way first (to
    // 100 and up), then to fds 3, 4, ... in the child, not close-on-exec.
    unsafe {
        shell.pre_exec(move || {
            let mut high = [-1; 8];
            for i in 0..count {
                high[i] = libc::fcntl(raws[i], libc::F_DUPFD, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate().take(count) {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    shell.spawn().expect("start the keeper")
}

#[test]
fn a_keeper_restarted_by_systemd_listens_on_the_socket_its_store_kept() {
    let h = Herdsman::new();
    let port = free_port();
    let scratch = h.scratch("systemd");
    let notify_path = scratch.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let notify_name = notify_path.display().to_string();
    let mut first = start_keeper(&h, &notify_name, &[]);
    receive(&h, &notify, "READY=1");
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        "web",
        "-i",
        "2",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .ok();
    let workers = pids(&h.wait_online("web", 2));
    let (text, stored) = receive(&h, &notify, "FDSTORE=1");
    let stored = stored.unwrap_or_else(|| h.fail(&format!("{text:?} carried no descriptor")));
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("FDNAME="))
        .unwrap_or_else(|| h.fail(&format!("{text:?} has no FDNAME")))
        .to_string();
    let socket = fd_link(std::process::id() as i32, stored.as_raw_fd() as u32);
    let worker = *workers.iter().next().expect("a worker");
    assert_eq!(socket, fd_link(worker, 3), "the stored socket is the app's");
    h.cmd(&["save"]).ok();

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 10
    });
    // The keeper dies; systemd's KillMode=mixed kills the rest of the unit. No probe request is in flight
    // meanwhile: one a dying worker had accepted is lost whatever holds the socket.
    let keeper = h.daemon_pid();
    {
        let _quiet = probe.quiesce();
        kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill the keeper");
        for &pid in &workers {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_child(&mut first, 10 * SECOND);
        h.wait_for("the workers to be gone", 10 * SECOND, || {
            workers.iter().all(|&p| !alive(p))
        });
    }
    let mut second = start_keeper(&h, &notify_name, &[(&stored, name.as_str())]);
    let new = pids(&h.wait_online("web", 2));
    assert!(new.is_disjoint(&workers));
    let ok = probe.ok_count();
    h.wait_for("the new workers to serve", 10 * SECOND, || {
        probe.ok_count() > ok + 10
    });
    let report = probe.finish();
    if !report.failures.is_empty() {
        h.fail(&format!(
            "connections failed across the keeper's restart: {:?} {:?}",
            report.errors, report.failures
        ));
    }
    let new_worker = *new.iter().next().expect("a worker");
    assert_eq!(fd_link(new_worker, 3), socket, "the same socket");
    h.cmd(&["kill"]).ok();
    wait_child(&mut second, 10 * SECOND);
}
