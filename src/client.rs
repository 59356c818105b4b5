//! The CLI's side of the control socket: connect (starting the daemon when a command needs one), check the
//! daemon's protocol version, send a request, read the response. Blocking I/O: a CLI call is one exchange.

use std::fs::OpenOptions;
use std::io::{BufReader, ErrorKind as IoErrorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::home::Home;
use crate::protocol::{self, FrameError, Hello, PROTOCOL_VERSION, Request, Response};

/// How long a command waits for a daemon it started to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long the daemon may take to greet a connection before the command gives up on it (a controller
/// frozen by SIGSTOP, or one that is stuck, leaves connections waiting in the socket's backlog).
const GREETING_DEADLINE: Duration = Duration::from_secs(5);
/// How long a request the daemon answers at once (`list`, `describe`, ...) may take.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// How long a command goes on trying when a connection is closed before the greeting: a controller that
/// died with connections in its queue is replaced within milliseconds.
const REGREET_DEADLINE: Duration = Duration::from_secs(1);

/// What a connection attempt found.
enum Greeting {
    Client(Box<Client>),
    NoDaemon,
    /// The connection was closed before the greeting.
    Closed,
}

/// A read that ran out of time (`SO_RCVTIMEO`).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut)
}

/// The last `error: ` line of the daemon's log (what a daemon that exited at start said), without the prefix.
/// Only what was written past `from` (the log's length when the daemon was started) is read.
fn last_error(log: &std::path::Path, from: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(from.max(length.saturating_sub(16 * 1024))))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .map(str::to_string)
}

/// The daemon's first frame: its greeting, or (in its place) why it refused this connection.
fn greeting(line: &[u8]) -> Result<Hello> {
    match protocol::decode::<Hello>(line) {
        Ok(hello) => Ok(hello),
        Err(e) => match Response::decode(line) {
            Ok(Response::Error { message, .. }) => Err(anyhow!("{message}")),
            _ => bail!(
                "unexpected greeting from the daemon ({e}); is the CLI the same version as the daemon?"
            ),
        },
    }
}

/// A connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    pub hello: Hello,
}

impl Client {
    /// Connects to a running daemon; `Ok(None)` when none runs for this home.
    ///
    /// A keeper that was killed leaves its record (`state.json`) behind: then a daemon is started, which
    /// adopts the workers that still run, so that no command says nothing runs while they serve.
    pub fn connect(home: &Home) -> Result<Option<Client>> {
        match Client::connect_speaking(home, true)? {
            None if home.state_file().exists() => Client::connect_or_start(home).map(Some),
            connected => Ok(connected),
        }
    }

    /// Connects to a running daemon whatever protocol it speaks (for `update`, whose request every version
    /// understands); `Ok(None)` when none runs.
    pub fn connect_any(home: &Home) -> Result<Option<Client>> {
        Client::connect_speaking(home, false)
    }

    fn connect_speaking(home: &Home, same_protocol: bool) -> Result<Option<Client>> {
        let deadline = Instant::now() + REGREET_DEADLINE;
        loop {
            match Client::connect_once(home, same_protocol)? {
                Greeting::Client(client) => return Ok(Some(*client)),
                Greeting::NoDaemon => return Ok(None),
                // Closed at once: a controller that died after accepting (the next one answers), a daemon
                // shutting down, or one that refused us as another user.
                Greeting::Closed if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Greeting::Closed => return Ok(None),
            }
        }
    }

    fn connect_once(home: &Home, same_protocol: bool) -> Result<Greeting> {
        let stream = match UnixStream::connect(home.socket()) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    IoErrorKind::NotFound | IoErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(Greeting::NoDaemon);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot connect to {}", home.socket().display()));
            }
        };
        stream
            .set_read_timeout(Some(GREETING_DEADLINE))
            .context("cannot use the control socket")?;
        let writer = stream
            .try_clone()
            .context("cannot use the control socket")?;
        // An answer of a thousand records is hundreds of kilobytes: read it in large pieces.
        let mut reader = BufReader::with_capacity(protocol::READ_CHUNK, stream);
        let hello: Hello = match protocol::read_line(&mut reader) {
            Ok(Some(line)) => greeting(&line)?,
            Err(FrameError::Io(e)) if timed_out(&e) => bail!(
                "the daemon is not answering: no greeting on {} within {} s (its controller may be \
                 stopped or stuck; see {})",
                home.socket().display(),
                GREETING_DEADLINE.as_secs(),
                home.daemon_log().display()
            ),
            Ok(None) | Err(FrameError::Io(_)) => return Ok(Greeting::Closed),
            Err(e) => bail!(
                "unexpected greeting from the daemon ({e}); is the CLI the same version as the daemon?"
            ),
        };
        if same_protocol && hello.protocol != PROTOCOL_VERSION {
            bail!(
                "the daemon speaks protocol {} (herdsman {}) but this CLI speaks {} (herdsman {}); \
                 run `herdsman update` to move the daemon onto this version (no app is restarted)",
                hello.protocol,
                hello.version,
                PROTOCOL_VERSION,
                crate::VERSION
            );
        }
        reader
            .get_ref()
            .set_read_timeout(None)
            .context("cannot use the control socket")?;
        Ok(Greeting::Client(Box::new(Client {
            reader,
            writer,
            hello,
        })))
    }

    /// Connects, starting a daemon for this home first when none runs.
    pub fn connect_or_start(home: &Home) -> Result<Client> {
        if let Some(client) = Client::connect_speaking(home, true)? {
            return Ok(client);
        }
        home.create()?;
        let log_path = home.daemon_log();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let exe = std::env::current_exe().context("cannot find the herdsman executable")?;
        let mut command = Command::new(exe);
        command
            .args(["daemon", "--foreground"])
            .env("HERDSMAN_HOME", home.root())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid, close_range and fcntl are async-signal-safe. The daemon leaves the caller's session
        // and terminal, and inherits none of the caller's descriptors but 0-2: a lock (`flock L herdsman
        // start ...`) or a pipe someone waits on for EOF must not be held for as long as the daemon lives.
        // They are marked close-on-exec rather than closed, so the exec's error report still works.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                crate::descriptors::cloexec_range(3, None);
                Ok(())
            });
        }
        let mut child = command.spawn().context("cannot start the daemon")?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(client) = Client::connect_speaking(home, true)? {
                return Ok(client);
            }
            // A daemon that found another one starting for the same home exits 1 saying "already running":
            // keep waiting for that one. Any other exit is the answer.
            if let Some(status) = child.try_wait()? {
                let error = last_error(&log_path, log_start);
                match error {
                    Some(error)
                        if status.code() == Some(1) && error.contains("already running") => {}
                    Some(error) => bail!("the daemon exited at start ({status}): {error}"),
                    None if status.code() == Some(1) => {}
                    None => bail!(
                        "the daemon exited at start ({status}); see {}",
                        log_path.display()
                    ),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the daemon did not answer within {} s; see {}",
                    START_DEADLINE.as_secs(),
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends one request and reads its final response, ignoring progress frames.
    pub fn request(&mut self, request: &Request) -> Result<Response> {
        self.request_with_progress(request, |_| {})
    }

    /// Sends one request; each progress frame goes to `progress` until the final response arrives.
    pub fn request_with_progress(
        &mut self,
        request: &Request,
        mut progress: impl FnMut(&Response),
    ) -> Result<Response> {
        protocol::write_frame(&mut self.writer, request)
            .context("cannot send the request to the daemon")?;
        // A request answered at once has a deadline; one that waits on workers (a stop, a reload) has not.
        let quick = matches!(
            request,
            Request::Ping
                | Request::List { .. }
                | Request::Describe { .. }
                | Request::Version
                | Request::Signal { .. }
                | Request::Save
                | Request::Flush { .. }
                | Request::ReloadLogs
        );
        self.reader
            .get_ref()
            .set_read_timeout(quick.then_some(ANSWER_DEADLINE))
            .context("cannot use the control socket")?;
        loop {
            let response = self.read_response()?;
            if !response.is_progress() {
                return Ok(response);
            }
            progress(&response);
        }
    }

    fn read_response(&mut self) -> Result<Response> {
        let frame = protocol::read_line(&mut self.reader)
            .and_then(|line| Ok(line.map(|l| Response::decode(&l)).transpose()?));
        match frame {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(anyhow!(
                "the daemon stopped answering in the middle of this request (its controller exited; the \
                 keeper starts a new one at once, and the apps run on): what was asked may be done in \
                 part or in full; see `herdsman list`"
            )),
            Err(FrameError::Io(e)) if timed_out(&e) => Err(anyhow!(
                "the daemon is not answering: no answer within {} s (its controller may be stopped or \
                 stuck)",
                ANSWER_DEADLINE.as_secs()
            )),
            Err(FrameError::Decode(e)) => Err(anyhow!(
                "cannot read the daemon's answer ({e}); is the CLI the same version as the daemon?"
            )),
            Err(e) => Err(anyhow!("cannot read the daemon's answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorKind;

    #[test]
    fn a_greeting_is_a_hello_or_the_reason_for_a_refusal() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            version: "1.0.0".into(),
            pid: 7,
        };
        let line = serde_json::to_vec(&hello).expect("encode");
        assert_eq!(greeting(&line).expect("a hello").pid, 7);

        let refusal = Response::error(ErrorKind::Invalid, "refused by the herdsman daemon: uid 5");
        let line = serde_json::to_vec(&refusal).expect("encode");
        let error = greeting(&line).expect_err("a refusal");
        assert_eq!(error.to_string(), "refused by the herdsman daemon: uid 5");

        let error = greeting(b"{\"something\":1}").expect_err("garbage");
        assert!(error.to_string().contains("unexpected greeting"), "{error}");
    }

    #[test]
    fn the_daemons_start_error_is_the_last_error_line_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("daemon.log");
        std::fs::write(&log, "error: an old one\n").expect("write");
        let from = std::fs::metadata(&log).expect("stat").len();
        assert_eq!(last_error(&log, from), None, "what came before is not read");
        let mut text = std::fs::read_to_string(&log).expect("read");
        text.push_str("INFO something\nerror: the home is owned by uid 5\n");
        std::fs::write(&log, text).expect("write");
        assert_eq!(
            last_error(&log, from).as_deref(),
            Some("the home is owned by uid 5")
        );
    }
}
