//! The log keeper: `herdsman log-keeper --control-fd N`, one per daemon, in a session of its own.
//!
//! Its control channel is one end of a `SOCK_SEQPACKET` socketpair, inherited from the daemon. For each
//! output stream of each process it spawns, the daemon sends one message: a JSON [`Header`] (app,
//! instance, stream, file, rotation limits) with the pipe's read end attached (`SCM_RIGHTS`). The keeper
//! then reads that pipe until EOF, in an `epoll(7)` loop (a wake costs the same with 2 pipes or 2000): it
//! splits the output into lines (a line longer than [`MAX_LINE`] is cut; an unterminated last line is
//! ended at EOF), prefixes each with the time it was read and the instance, and appends them to the file
//! ([`super::output`]).
//!
//! It outlives the daemon on purpose: a daemon killed with SIGKILL leaves its workers serving, and their
//! output still reaches the files. It exits once its control channel is closed (the daemon exited) and
//! every pipe reached EOF (every worker that held one is gone). SIGTERM closes the control channel
//! early; SIGUSR1 reopens every log by its path (`herdsman reloadLogs`, after an external rotator renamed
//! the files); SIGINT, SIGHUP and SIGPIPE are ignored.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde::{Deserialize, Serialize};

use super::epoll::Epoll;
use super::output::{DropReport, Output};
use super::{LineFormat, MAX_LINE, RotateEvery, Stream, now_ms};

/// What the daemon tells the keeper about a pipe it hands over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub app: String,
    pub instance: u32,
    pub stream: Stream,
    /// The file the lines go to.
    pub path: PathBuf,
    /// Rotate before the file grows past this many bytes; 0 never rotates.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// How each line is written.
    #[serde(default)]
    pub format: LineFormat,
    /// Also rotate at the start of each hour or day (in the format's zone).
    #[serde(default)]
    pub rotate: Option<RotateEvery>,
    /// gzip rotated files from `.2` on.
    #[serde(default)]
    pub compress: bool,
}

/// The largest header accepted.
pub const MAX_HEADER: usize = 8192;

/// One pipe being read.
struct Pipe {
    file: File,
    app: String,
    instance: u32,
    stream: Stream,
    format: LineFormat,
    path: PathBuf,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
}

/// A file and how many pipes write to it.
struct Shared {
    output: Output,
    users: usize,
}

struct Keeper {
    control: Option<OwnedFd>,
    /// The pipes being read, by their token in `epoll`.
    pipes: HashMap<u64, Pipe>,
    next_token: u64,
    epoll: Epoll,
    outputs: HashMap<PathBuf, Shared>,
    /// Lines were written since the outputs were last looked at for a report.
    dirty: bool,
    /// When reports were last sent.
    reported_at: Instant,
}

/// How often the daemon is told about dropped lines, at most.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Sends `report` to the daemon on the control channel without waiting; false if it was not taken (the
/// daemon reads its reports when asked for them: a full queue waits for that).
fn send_report(control: Option<&OwnedFd>, report: &DropReport) -> bool {
    let (Some(control), Ok(bytes)) = (control, serde_json::to_vec(report)) else {
        return false;
    };
    nix::sys::socket::send(
        control.as_raw_fd(),
        &bytes,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )
    .is_ok()
}

static TERMINATE: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::Relaxed);
}

extern "C" fn on_reopen(_: libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

/// Runs the keeper on the inherited control channel until there is nothing left to read.
pub fn run(control_fd: RawFd) -> Result<()> {
    // SAFETY: F_GETFD only queries the descriptor.
    if control_fd < 3 || unsafe { libc::fcntl(control_fd, libc::F_GETFD) } < 0 {
        bail!("--control-fd {control_fd} is not an open descriptor");
    }
    // SAFETY: the descriptor is open (checked above) and handed to this process to own.
    let control = unsafe { OwnedFd::from_raw_fd(control_fd) };
    // SAFETY: sets the close-on-exec flag of a descriptor we own; signal dispositions and resource
    // limits are set before anything else runs, with an async-signal-safe handler.
    unsafe {
        libc::fcntl(control_fd, libc::F_SETFD, libc::FD_CLOEXEC);
        for signal in [libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_terminate as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        // No SA_RESTART: epoll_wait returns EINTR, and the flag is looked at.
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        action.sa_sigaction = on_reopen as *const () as libc::sighandler_t;
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    crate::heap::tune();
    tracing::info!(pid = std::process::id(), "log keeper running");
    let epoll = Epoll::new()?;
    epoll.add(control.as_raw_fd(), CONTROL)?;
    let mut keeper = Keeper {
        control: Some(control),
        pipes: HashMap::new(),
        next_token: CONTROL + 1,
        epoll,
        outputs: HashMap::new(),
        dirty: false,
        reported_at: Instant::now(),
    };
    keeper.run();
    super::compress::finish();
    tracing::info!(pid = std::process::id(), "log keeper done");
    Ok(())
}

impl Keeper {
    fn run(&mut self) {
        let mut buffer = vec![0u8; MAX_LINE];
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        while self.control.is_some() || !self.pipes.is_empty() {
            if TERMINATE.load(Ordering::Relaxed) && self.control.is_some() {
                self.close_control();
                tracing::info!("SIGTERM: no new streams; draining the ones open");
                continue;
            }
            if REOPEN.swap(false, Ordering::Relaxed) {
                for shared in self.outputs.values_mut() {
                    shared.output.reopen_by_path();
                }
                tracing::info!(logs = self.outputs.len(), "SIGUSR1: logs reopened by path");
            }
            // Wake up for a report that is due, else only for input.
            let timeout = if self.dirty {
                REPORT_EVERY
                    .saturating_sub(self.reported_at.elapsed())
                    .as_millis() as libc::c_int
            } else {
                -1
            };
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(error) => {
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        tracing::error!(%error, "epoll_wait failed");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    continue;
                }
            };
            // The pipes first, then a new one from the control channel.
            let mut control_ready = false;
            for event in &events[..ready] {
                match event.u64 {
                    CONTROL => control_ready = true,
                    token => self.read_pipe(token, &mut buffer),
                }
            }
            if control_ready {
                self.receive();
            }
            if self.dirty && self.reported_at.elapsed() >= REPORT_EVERY {
                self.report();
            }
        }
    }

    /// Tells the daemon about every log that dropped lines, or whose writes began or stopped failing,
    /// since the last report.
    fn report(&mut self) {
        self.reported_at = Instant::now();
        let mut all_sent = true;
        for shared in self.outputs.values_mut() {
            if let Some(report) = shared.output.pending_report() {
                if send_report(self.control.as_ref(), &report) {
                    shared.output.reported(&report);
                } else {
                    all_sent = false;
                }
            }
        }
        // Without a daemon to tell, there is no one to wait for.
        self.dirty = !all_sent && self.control.is_some();
    }

    /// Takes one message from the control channel: a new pipe, or the channel's end.
    fn receive(&mut self) {
        let Some(control) = self.control.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut buf = [0u8; MAX_HEADER];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT;
        let (bytes, fds) = match recvmsg::<()>(control, &mut iov, Some(&mut space), flags) {
            Ok(message) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = message.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmRights(received) = cmsg {
                            // SAFETY: the kernel just installed these descriptors in this process.
                            fds.extend(
                                received
                                    .into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                (message.bytes, fds)
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return,
            Err(error) => {
                tracing::warn!(%error, "control channel failed: no new streams");
                self.close_control();
                return;
            }
        };
        if bytes == 0 && fds.is_empty() {
            tracing::info!("the daemon closed the control channel");
            self.close_control();
            return;
        }
        let header: Header = match serde_json::from_slice(&buf[..bytes]) {
            Ok(header) => header,
            Err(error) => {
                tracing::warn!(%error, "an unreadable stream header was ignored");
                return;
            }
        };
        let mut fds = fds.into_iter();
        let (Some(fd), None) = (fds.next(), fds.next()) else {
            tracing::warn!(app = %header.app, "a stream header without exactly one pipe was ignored");
            return;
        };
        self.add(header, fd);
    }

    fn add(&mut self, header: Header, fd: OwnedFd) {
        let shared = match self.outputs.get_mut(&header.path) {
            Some(shared) => shared,
            None => match Output::open(&header.path, header.max_size, header.keep) {
                Ok(output) => self
                    .outputs
                    .entry(header.path.clone())
                    .or_insert(Shared { output, users: 0 }),
                Err(error) => {
                    // Dropping the pipe would kill the worker with SIGPIPE: read it into nothing instead.
                    tracing::warn!(app = %header.app, %error, "this stream's lines are dropped");
                    let output = Output::discard(&header.path, header.max_size, header.keep);
                    self.outputs
                        .entry(header.path.clone())
                        .or_insert(Shared { output, users: 0 })
                }
            },
        };
        shared.users += 1;
        shared.output.max_size = header.max_size;
        shared.output.keep = header.keep;
        shared.output.every = header.rotate;
        shared.output.zone = header.format.timezone;
        shared.output.compress = header.compress;
        let token = self.next_token;
        if let Err(error) = self.epoll.add(fd.as_raw_fd(), token) {
            // Only when the kernel is out of watches (`max_user_watches`): the stream is not read.
            tracing::warn!(app = %header.app, %error, "cannot watch this stream: its lines are not read");
            shared.users -= 1;
            if shared.users == 0 {
                self.outputs.remove(&header.path);
            }
            return;
        }
        self.next_token += 1;
        self.pipes.insert(
            token,
            Pipe {
                file: File::from(fd),
                app: header.app,
                instance: header.instance,
                stream: header.stream,
                format: header.format,
                path: header.path,
                partial: Vec::new(),
            },
        );
    }

    /// Reads what a pipe has and writes its complete lines; at EOF, its last line too, and lets it go.
    fn read_pipe(&mut self, token: u64, buffer: &mut [u8]) {
        let Some(pipe) = self.pipes.get_mut(&token) else {
            return;
        };
        let read = match pipe.file.read(buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(error) => {
                tracing::warn!(path = %pipe.path.display(), %error, "cannot read a worker's output");
                0
            }
        };
        let Some(shared) = self.outputs.get_mut(&pipe.path) else {
            return;
        };
        // One time for the batch, formatted once.
        let time = pipe.format.time_text(now_ms());
        let format = |line: &[u8]| {
            pipe.format
                .line(&time, &pipe.app, pipe.instance, pipe.stream, line)
        };
        let mut start = 0;
        if read > 0 {
            pipe.partial.extend_from_slice(&buffer[..read]);
            while let Some(end) = pipe.partial[start..].iter().position(|&b| b == b'\n') {
                let line = &pipe.partial[start..start + end];
                shared.output.push(&format(line));
                start += end + 1;
            }
            while pipe.partial.len() - start >= MAX_LINE {
                let cut = char_boundary(&pipe.partial[start..start + MAX_LINE]);
                let line = &pipe.partial[start..start + cut];
                shared.output.push(&format(line));
                start += cut;
            }
            pipe.partial.drain(..start);
            shared.output.flush();
            self.dirty = true;
            return;
        }
        if !pipe.partial.is_empty() {
            shared.output.push(&format(&pipe.partial));
        }
        shared.output.flush();
        shared.users -= 1;
        let path = pipe.path.clone();
        if shared.users == 0 {
            // Its last report, now: the count goes with it.
            if let Some(report) = shared.output.pending_report() {
                send_report(self.control.as_ref(), &report);
            }
            self.outputs.remove(&path);
        }
        // Removed by hand: the daemon holds a copy of the pipe, so closing ours would not remove it.
        self.epoll.remove(pipe.file.as_raw_fd());
        self.pipes.remove(&token);
    }

    /// Stops taking new streams.
    fn close_control(&mut self) {
        if let Some(control) = self.control.take() {
            self.epoll.remove(control.as_raw_fd());
        }
    }
}

/// The control channel's token in `epoll`; the pipes' come after it.
const CONTROL: u64 = 0;
/// Events taken per wake.
const MAX_EVENTS: usize = 256;

/// Where to cut `chunk`, a piece of a line too long to keep whole: at its end, or up to 3 bytes before it
/// when the end would split a UTF-8 character (the rest of it starts the next piece). Bytes that are not
/// UTF-8 are cut at the end.
fn char_boundary(chunk: &[u8]) -> usize {
    let len = chunk.len();
    // The start of the last character is at most 3 bytes back from the last byte.
    for back in 1..=len.min(4) {
        let byte = chunk[len - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte
        }
        let width = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if width > back && back < len {
            len - back
        } else {
            len
        };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::char_boundary;

    #[test]
    fn a_long_line_is_cut_between_two_characters() {
        let text = "aé€😀".as_bytes(); // widths 1, 2, 3, 4
        // Cut anywhere, the piece ends where a character ends and the pieces join back.
        for end in 1..=text.len() {
            let cut = char_boundary(&text[..end]);
            assert!(
                std::str::from_utf8(&text[..cut]).is_ok(),
                "cut {cut} of {end}"
            );
            assert!(end - cut <= 3, "backed off {} bytes", end - cut);
        }
        assert_eq!(char_boundary("é€".as_bytes()), 5);
        assert_eq!(char_boundary(&"é€".as_bytes()[..4]), 2);
        assert_eq!(
            char_boundary(&"😀".as_bytes()[..3]),
            3,
            "never an empty piece"
        );
        // Not UTF-8: cut where the chunk ends.
        assert_eq!(char_boundary(&[0x80, 0x80, 0x80, 0x80, 0x80]), 5);
        assert_eq!(char_boundary(b"plain"), 5);
    }
}
