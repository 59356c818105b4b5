//! Every type that crosses the control socket, and the framing that carries them.
//!
//! Framing: newline-delimited JSON over `HERDSMAN_HOME/herdsman.sock`. Each frame is one JSON value on one
//! line, at most [`MAX_FRAME`] bytes; a longer line is refused before it is buffered further.
//!
//! A session: the daemon first sends a [`Hello`] carrying [`PROTOCOL_VERSION`] and its pid. The client then
//! sends one [`Request`] and reads one [`Response`]. A malformed or unknown request gets
//! [`Response::Error`]; the connection and the daemon live on, so a client may send further requests.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::config::{AppSpec, SignalName};

mod frame;
pub mod wire;

pub use frame::{
    FrameError, MAX_FRAME, READ_CHUNK, decode, encode_frame, read_frame, read_line,
    read_line_async, write_frame,
};

/// Bumped whenever a type here changes shape; the client refuses a daemon that speaks another version.
/// 5: [`Selection`] gained `regex`, `glob` and `many`; [`Request::Restart`] gained `env`.
/// 6: [`Request::Version`]; the daemon is a keeper and a controller (the CLI talks to the controller).
/// 8: fleet jobs: [`RunOutcome::LostLease`], [`JobRequest::FleetStatus`], `History { fleet }`,
/// [`Response::FleetHistory`], [`Response::FleetStatus`], [`JobInfo`]'s `fleet`, a job spec's `fleet`.
/// 9: [`AppDetails`]'s `log_drops` ([`LogDrops`]); a refused peer gets a [`Response::Error`] in place of the
/// [`Hello`].
/// 10: health (see the section "Health" below): [`Request::SetMetrics`], [`ProcessInfo`]'s `runtime`,
/// `accept_queues`, `nobody_accepting` and `reloads`.
/// 11: events, watchdog and hooks: [`Request::Events`], [`Response::Event`], [`ProcessInfo`]'s
/// `watchdog_misses` and `hung`, [`AppDetails`]'s `hooks`, a spec's `watchdog` and `on_event`.
/// 12: compact frames: the records of `list`, `jobs` and `describe` leave their defaults out ([`wire`]);
/// [`Request::List`] and [`JobRequest::List`] gained `brief`.
pub const PROTOCOL_VERSION: u32 = 12;

/// The daemon's first frame on every connection. A peer it refuses (another user on the control socket;
/// anyone but its controller on the keeper's) gets one `Response::Error` saying why in its place, then EOF.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
}

/// Which workers a command acts on. A single name, id or `all` is encoded as it always was (`"all"`,
/// `{"name":"api"}`, `{"id":3}`); patterns and lists are resolved by the daemon against its apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every worker of every app.
    All,
    /// Every worker of the app with this name.
    Name(String),
    /// The one worker whose slot has this id.
    Id(u32),
    /// Every worker of the apps whose name matches this regular expression (`/^api-/` on the command line;
    /// unanchored, as PM2 matches it).
    Regex(String),
    /// Every worker of the apps whose whole name matches this glob: `*`, `?` and `[...]` (`api-*`).
    Glob(String),
    /// Several targets at once (never `all`, never nested): each must select something, or the request
    /// fails naming every one that did not, and nothing is done.
    Many(Vec<Selection>),
}

impl Selection {
    /// `all`, a worker id, or an app name, as typed on the command line.
    pub fn parse(text: &str) -> Selection {
        if text == "all" {
            Selection::All
        } else if let Ok(id) = text.parse::<u32>() {
            Selection::Id(id)
        } else {
            Selection::Name(text.to_string())
        }
    }

    /// The targets of `stop`, `restart`, `delete` or `reload`, as typed: each is `all`, an id, a name,
    /// `/REGEX/` or a glob (app names never hold `/`, `*`, `?` or `[`). One target is sent as itself, `all`
    /// among others is `all`, and a pattern that cannot be compiled is an error naming it.
    pub fn parse_targets(targets: &[String]) -> Result<Selection, String> {
        let mut list: Vec<Selection> = Vec::new();
        for text in targets {
            let one = match text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
                Some(regex) => Selection::Regex(regex.to_string()),
                None if text.contains(['*', '?', '[']) => Selection::Glob(text.clone()),
                None => Selection::parse(text),
            };
            one.matcher()?;
            if one == Selection::All {
                return Ok(Selection::All);
            }
            if !list.contains(&one) {
                list.push(one);
            }
        }
        match list.len() {
            0 => Err("no target given: an app name, a worker id, a pattern or `all`".into()),
            1 => Ok(list.remove(0)),
            _ => Ok(Selection::Many(list)),
        }
    }

    /// For a pattern, the regular expression app names are matched with (a glob translated to an anchored
    /// one); `None` for other selections. An invalid pattern is an error naming it.
    pub fn matcher(&self) -> Result<Option<regex::Regex>, String> {
        let source = match self {
            Selection::Regex(regex) => regex.clone(),
            Selection::Glob(glob) => glob_to_regex(glob),
            _ => return Ok(None),
        };
        regex::Regex::new(&source)
            .map(Some)
            .map_err(|e| format!("invalid pattern {self}: {e}"))
    }
}

/// A shell glob as an anchored regular expression: `*` any run of characters, `?` one, `[...]` (or
/// `[!...]`) a class; everything else literal.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                out.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    out.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push(']');
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    out
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::All => f.write_str("all"),
            Selection::Name(name) => write!(f, "app '{name}'"),
            Selection::Id(id) => write!(f, "id {id}"),
            Selection::Regex(regex) => write!(f, "/{regex}/"),
            Selection::Glob(glob) => write!(f, "'{glob}'"),
            Selection::Many(list) => {
                let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(", "))
            }
        }
    }
}

/// Start a new app from a full specification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    pub spec: Box<AppSpec>,
}

/// One request from the CLI to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Answer with [`Response::Ok`]; used to check the daemon is alive.
    Ping,
    /// Create an app and start its workers; fails if the name is taken.
    Start(StartRequest),
    /// Start the selected workers of existing apps that are stopped or errored.
    StartExisting { target: Selection },
    /// Every worker, as [`ProcessInfo`] records. `brief`: what the table shows, for a smaller answer: no
    /// log paths, `runtime` or `reloads`, and `accept_queues` only where `nobody_accepting`.
    List {
        #[serde(default)]
        brief: bool,
    },
    /// Stop the selected workers gracefully; an app with no running worker left closes its sockets.
    Stop { target: Selection },
    /// Stop then start the selected workers; the sockets stay open. With `env`, the apps' environment is
    /// replaced by it first (`--update-env`), as for [`Request::Reload`].
    Restart {
        target: Selection,
        #[serde(default)]
        env: Option<BTreeMap<String, String>>,
    },
    /// Stop the selected workers and forget them; an app with no worker left is removed.
    Delete { target: Selection },
    /// Replace the selected workers one at a time, each only once its replacement is ready. Answered with
    /// [`Response::Progress`] frames, one per worker replaced, then [`Response::Reloaded`]. With `env`, the
    /// apps' environment is replaced by it first (`--update-env`).
    Reload {
        target: Selection,
        env: Option<BTreeMap<String, String>>,
    },
    /// Apply an ecosystem file's apps (already checked and resolved by the CLI). Answered with a
    /// [`Response::Note`] per app and a [`Response::Progress`] per worker started or replaced, then a final
    /// [`Response::Reloaded`] (or an error naming every app that failed).
    Apply(ApplyRequest),
    /// Add workers to an app, or remove its highest instances gracefully.
    Scale { name: String, to: ScaleTo },
    /// Send a signal to the selected workers (each worker's own pid, not its group).
    Signal {
        target: Selection,
        signal: SignalName,
    },
    /// Stop every app and then the daemon.
    Kill,
    /// Write every app's spec to the dump (`HERDSMAN_HOME/dump.json`).
    Save,
    /// Start the dump's apps that do not run (answered as [`Request::Apply`]).
    Resurrect,
    /// Everything about the selected apps, answered with [`Response::Described`].
    Describe { target: Selection },
    /// Empty the selected apps' log files and remove their rotated files.
    Flush { target: Selection },
    /// Tell the log keeper to reopen every log by its path now (after an external rotator renamed the
    /// files); answered with [`Response::Ok`].
    ReloadLogs,
    /// A live view: the daemon answers with a [`Response::Snapshot`] at once and then after each sample of
    /// its workers, until the client closes the connection. It samples every `interval_ms` (at least 250)
    /// or more often if another view or a memory limit asks for it. A client that does not keep up is
    /// dropped.
    Subscribe { interval_ms: u64 },
    /// The running daemon's version and processes, answered with [`Response::Version`].
    Version,
    /// Move the running daemon onto the herdsman executable at `binary` without restarting any app: the
    /// keeper runs its self-check, answers [`Response::Ok`], then re-executes itself in place (same pid,
    /// same workers, same sockets) and starts a new controller. `version` tells when it is done.
    ///
    /// Its encoding, `{"request":"update","binary":"..."}`, and the answers `ok` and `error` never change:
    /// a CLI sends it to a daemon of any protocol version.
    Update { binary: std::path::PathBuf },
    /// Scheduled jobs: list them, their history, their next fire times; run one now; pause or resume one.
    Job(JobRequest),
    /// Serve the metrics endpoint on an address, or stop serving it (`[daemon] metrics`). Answered by the
    /// controller itself (it serves the endpoint): [`Response::Ok`] once it listens there, or an error
    /// (address in use, not loopback without `allow_remote`) with the endpoint as it was.
    SetMetrics(MetricsSetting),
    /// The event stream (`herdsman events`): a subscription. The daemon sends the events it keeps that
    /// happened at or after `since_ms` (milliseconds since the Unix epoch; none when absent), then each new
    /// one, as [`Response::Event`], until the client closes the connection. A client that does not keep up
    /// is dropped.
    Events {
        #[serde(default)]
        since_ms: Option<u64>,
    },
}

/// What [`Request::Job`] asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job_request", rename_all = "snake_case")]
pub enum JobRequest {
    /// Every job, answered with [`Response::Jobs`]. `brief`: what the table shows, for a smaller answer:
    /// each job's last run carries its id, outcome, exit and attempt only.
    List {
        #[serde(default)]
        brief: bool,
    },
    /// A job's runs, newest last, answered with [`Response::JobHistory`].
    History {
        name: String,
        /// Every host's runs, read from the fleet store (a `scope = "fleet"` job), answered with
        /// [`Response::FleetHistory`].
        #[serde(default)]
        fleet: bool,
    },
    /// The next `count` fire times of a job, answered with [`Response::JobNext`].
    Next {
        name: String,
        count: u32,
    },
    /// Run a job now (obeying its `overlap`), answered with [`Response::Triggered`].
    Trigger {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// The fleet stores of the `scope = "fleet"` jobs, answered with [`Response::FleetStatus`].
    FleetStatus,
}

/// A job, for `jobs` and `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub name: String,
    pub schedule: String,
    /// The schedule in words.
    pub words: String,
    /// The zone it is read in.
    pub timezone: String,
    pub state: JobState,
    /// The next fire time (jitter included), in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub next_ms: Option<u64>,
    /// The same, on the job's wall clock.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub next_local: Option<String>,
    /// The runs in progress.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub running: Vec<RunRecord>,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub last: Option<RunRecord>,
    /// Runs that ended ok, and that failed (failed, timed out, killed), since the job was created.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub ok: u64,
    #[serde(default, skip_serializing_if = "wire::default")]
    pub failed: u64,
    /// Runs whose next attempt waits for its backoff (their run ids).
    #[serde(default, skip_serializing_if = "wire::default")]
    pub retrying: Vec<String>,
    /// A `scope = "fleet"` job's fleet, this host's name in it, and which host ran the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<JobFleet>,
}

/// The fleet side of a `scope = "fleet"` job, for `jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFleet {
    pub name: String,
    /// This host's name in the fleet.
    pub host: String,
    /// The host that ran the last fire time handled here (this host, or the one that claimed it).
    pub last_host: Option<String>,
    /// Fire times this host ran, and fire times claimed by other hosts, since the daemon started.
    pub ran_here: u64,
    pub ran_elsewhere: u64,
}

/// One run of a fleet job, with the host that ran it (`jobs history --fleet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRun {
    pub host: String,
    #[serde(flatten)]
    pub run: RunRecord,
}

/// One fleet store as `fleet status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStoreStatus {
    /// The URL, password masked.
    pub store: String,
    pub fleet: String,
    /// This host's name in the fleet.
    pub host: String,
    /// The jobs of this host that use it.
    pub jobs: Vec<String>,
    /// One round trip, in microseconds; `None` when the store did not answer (see `error`).
    pub latency_us: Option<u64>,
    pub error: Option<String>,
    /// This host's clock minus the store's, in milliseconds (round trip halved out).
    pub skew_ms: Option<i64>,
    /// The skew above which hosts may disagree on run ids, in milliseconds.
    pub skew_tolerated_ms: u64,
    /// The hosts that sent a heartbeat, by name.
    pub hosts: Vec<FleetHost>,
    /// The store's clock when asked, in milliseconds since the Unix epoch.
    pub now_ms: Option<u64>,
}

/// A host of the fleet as last seen through its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHost {
    pub name: String,
    pub version: String,
    /// By the store's clock, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its next fire time.
    Scheduled,
    /// A run is in progress.
    Running,
    /// Its fire times are skipped until `jobs resume`.
    Paused,
    /// The app is stopped: nothing fires.
    Stopped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Stopped => "stopped",
        }
    }
}

/// One run of a job (one attempt).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunRecord {
    /// `<job>@<nominal fire time, RFC 3339 UTC>`, or `<job>@manual-<time>` for a run asked for by hand.
    pub run_id: String,
    /// The nominal fire time, in milliseconds since the Unix epoch (none for a manual run).
    #[serde(default, skip_serializing_if = "wire::none")]
    pub scheduled_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub ended_at_ms: Option<u64>,
    pub outcome: RunOutcome,
    /// How its process ended ("code 1", "signal SIGKILL"), or why it did not run.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub exit: Option<String>,
    /// Its exit code, when it exited.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub exit_code: Option<i32>,
    /// 1 for the first attempt; retries count up under the same run id.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub pid: Option<u32>,
    /// The file holding the run's output.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub log: Option<String>,
    /// More about the outcome ("replaced by ...", "stopped by `herdsman stop`", ...).
    #[serde(default, skip_serializing_if = "wire::none")]
    pub detail: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Ok,
    Failed,
    TimedOut,
    /// Not started: a run was in progress (`overlap = "skip"`), or the job was paused.
    Skipped,
    /// Not started: later than `starting_deadline`, or missed while no daemon ran (`catch_up = "none"`).
    Missed,
    /// Stopped before it ended (replaced, `stop`, the daemon stopped or died).
    Killed,
    /// A `scope = "fleet"` run stopped because its lease on the job could not be renewed (the store did not
    /// answer, or another host holds it): herdsman never lets two hosts believe they own the job.
    LostLease,
    /// It ended while adopted by a new keeper, and the kernel kept no exit status: not retried.
    Unknown,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::TimedOut => "timed out",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Missed => "missed",
            RunOutcome::Killed => "killed",
            RunOutcome::Unknown => "unknown",
            RunOutcome::LostLease => "lost lease",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Killed | RunOutcome::LostLease
        )
    }
}

/// One fire time, for `jobs next`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireInfo {
    /// Milliseconds since the Unix epoch (jitter included).
    pub at_ms: u64,
    /// On the job's wall clock, with its zone's abbreviation.
    pub local: String,
    /// In UTC.
    pub utc: String,
    /// How daylight saving time moved it, if it did.
    pub shift: Option<String>,
}

impl From<StartRequest> for Request {
    fn from(request: StartRequest) -> Self {
        Request::Start(request)
    }
}

/// What to do with an ecosystem file's apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// Start the apps that do not run; leave the others as they are.
    Start,
    /// Start new apps, reload the apps whose definition changed (taking every change), leave the same ones.
    Reload,
    /// Stop the apps, dependents first.
    Stop,
    /// Stop and forget the apps, dependents first.
    Delete,
}

/// An ecosystem file's apps and what to do with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub apps: Vec<AppSpec>,
    pub action: ApplyAction,
    /// With `Reload`: delete the running apps the file no longer defines.
    pub prune: bool,
    /// Every app the file defines (`apps` may be fewer, with `--only`): the others are "not in the file".
    pub file_apps: Vec<String>,
}

/// What went wrong, for a client that wants to tell cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request could not be decoded.
    BadRequest,
    /// The request names something that is not there.
    NotFound,
    /// The request conflicts with what exists (a duplicate name, an address in use).
    Conflict,
    /// The request is well formed but its content is invalid.
    Invalid,
    /// The operating system refused something.
    Os,
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Done, with nothing to report.
    Ok,
    /// The process table after the request took effect.
    Processes { processes: Vec<ProcessInfo> },
    /// The request failed and changed nothing.
    Error { kind: ErrorKind, message: String },
    /// Not a final answer: one worker of a reload was replaced. More frames follow.
    Progress { step: ReloadStep },
    /// Not a final answer: what happens to one app of an ecosystem file. More frames follow.
    Note { message: String },
    /// A reload finished: every worker replaced.
    Reloaded {
        steps: Vec<ReloadStep>,
        processes: Vec<ProcessInfo>,
    },
    /// The answer to [`Request::Describe`].
    Described { apps: Vec<AppDetails> },
    /// One frame of a subscription: every worker, freshly sampled. More frames follow.
    Snapshot {
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
        processes: Vec<ProcessInfo>,
    },
    /// The answer to [`Request::Version`].
    Version(DaemonVersion),
    /// The answer to [`JobRequest::List`].
    Jobs { jobs: Vec<JobInfo> },
    /// The answer to [`JobRequest::History`]: the runs kept, oldest first.
    JobHistory { job: String, runs: Vec<RunRecord> },
    /// The answer to [`JobRequest::Next`].
    JobNext {
        job: String,
        timezone: String,
        fires: Vec<FireInfo>,
    },
    /// The answer to [`JobRequest::Trigger`]: the run started (or skipped).
    Triggered { run: Box<RunRecord> },
    /// The answer to [`JobRequest::History`] with `fleet`: every host's runs, oldest first.
    FleetHistory { job: String, runs: Vec<FleetRun> },
    /// The answer to [`JobRequest::FleetStatus`].
    FleetStatus { stores: Vec<FleetStoreStatus> },
    /// One frame of [`Request::Events`]. More frames follow.
    Event(Box<Event>),
}

/// What runs as the daemon: the keeper (the root process, the workers' parent) and its controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonVersion {
    /// The keeper's herdsman version.
    pub version: String,
    pub protocol: u32,
    pub keeper_pid: u32,
    /// The controller that serves the control socket (none for a moment after it died).
    pub controller_pid: Option<u32>,
    /// Controllers started after one exited.
    pub controller_restarts: u32,
    /// The executable the keeper runs.
    pub binary: String,
    /// In-place updates of the keeper since it started.
    pub updates: u32,
    /// Why the last `update` did not happen, if it did not.
    pub last_update_error: Option<String>,
}

impl Response {
    /// Progress frames come before the final answer of a request.
    pub fn is_progress(&self) -> bool {
        matches!(
            self,
            Response::Progress { .. }
                | Response::Note { .. }
                | Response::Snapshot { .. }
                | Response::Event(_)
        )
    }

    /// Whether an encoded answer (a line the daemon wrote) is progress, read from its tag alone, which the
    /// encoding puts first: a relay passes a large answer on without decoding it. `None`: not an answer.
    pub fn line_is_progress(line: &[u8]) -> Option<bool> {
        let tag = line.strip_prefix(br#"{"response":""#)?;
        let tag = &tag[..tag.iter().position(|&b| b == b'"')?];
        Some(matches!(
            tag,
            b"progress" | b"note" | b"snapshot" | b"event"
        ))
    }

    /// Decodes an answer. The large answers (records of every worker or job) are decoded straight into
    /// their fields once their tag is known: serde decodes an internally tagged enum by first copying the
    /// whole document into a tree of its own, which for a thousand records costs more than the decode. The
    /// result is the same as `serde_json::from_slice::<Response>` (a test and the fuzz target check it),
    /// but for one leniency: a field the answer does not use is skipped unread, so a lone surrogate or a
    /// number out of range there is not refused.
    pub fn decode(line: &[u8]) -> Result<Response, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(borrow)]
            response: std::borrow::Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct Processes {
            processes: Vec<ProcessInfo>,
        }
        #[derive(Deserialize)]
        struct Snapshot {
            at_ms: u64,
            processes: Vec<ProcessInfo>,
        }
        #[derive(Deserialize)]
        struct Jobs {
            jobs: Vec<JobInfo>,
        }
        #[derive(Deserialize)]
        struct Described {
            apps: Vec<AppDetails>,
        }
        let generic = || serde_json::from_slice::<Response>(line);
        let Ok(tag) = serde_json::from_slice::<Tag>(line) else {
            return generic();
        };
        // A body that does not decode is decoded the general way, for its error message.
        let fast = match &*tag.response {
            "processes" => serde_json::from_slice::<Processes>(line).map(|b| Response::Processes {
                processes: b.processes,
            }),
            "snapshot" => serde_json::from_slice::<Snapshot>(line).map(|b| Response::Snapshot {
                at_ms: b.at_ms,
                processes: b.processes,
            }),
            "jobs" => serde_json::from_slice::<Jobs>(line).map(|b| Response::Jobs { jobs: b.jobs }),
            "described" => serde_json::from_slice::<Described>(line)
                .map(|b| Response::Described { apps: b.apps }),
            _ => return generic(),
        };
        fast.or_else(|_| generic())
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

/// The size `scale` sets: `4`, `+2` or `-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleTo {
    Exactly(u32),
    More(u32),
    Fewer(u32),
}

impl ScaleTo {
    /// The new number of workers for an app that has `current`; `None` below 1.
    pub fn resolve(self, current: u32) -> Option<u32> {
        let n = match self {
            ScaleTo::Exactly(n) => n,
            ScaleTo::More(n) => current.saturating_add(n),
            ScaleTo::Fewer(n) => current.checked_sub(n)?,
        };
        (1..=4096).contains(&n).then_some(n)
    }
}

impl std::str::FromStr for ScaleTo {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid worker count '{text}': expected N, +N or -N");
        let number = |digits: &str| digits.parse::<u32>().map_err(|_| invalid());
        match text.as_bytes().first() {
            Some(b'+') => number(&text[1..]).map(ScaleTo::More),
            Some(b'-') => number(&text[1..]).map(ScaleTo::Fewer),
            _ => number(text).map(ScaleTo::Exactly),
        }
    }
}

/// One worker replaced by a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadStep {
    pub id: u32,
    pub name: String,
    pub instance: u32,
    /// The process replaced, if one ran.
    pub old_pid: Option<u32>,
    pub new_pid: u32,
    /// From the replacement's start to its readiness.
    pub ready_ms: u64,
}

/// Whether the app's workers share listening sockets held by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Cluster,
    Fork,
}

/// A worker's life as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Spawned, not yet known to have started.
    Launching,
    /// Running.
    Online,
    /// Crashed; waiting out its backoff before the next start.
    Waiting,
    /// Told to stop; waiting for it to exit.
    Stopping,
    /// Not running, by request.
    Stopped,
    /// Not running, and not retried: it crashed too often or could not be started.
    Errored,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Launching => "launching",
            Status::Online => "online",
            Status::Waiting => "waiting",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Errored => "errored",
        }
    }
}

/// One worker, as `list --json` prints it. This record is a public contract: add fields, never rename.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Stable for the worker's slot across restarts.
    pub id: u32,
    pub name: String,
    /// 0-based instance number within the app.
    pub instance: u32,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub pid: Option<u32>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "wire::default")]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub uptime_ms: Option<u64>,
    /// Percent of one core.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub cpu: f32,
    /// Resident set size in bytes.
    pub memory: u64,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub listen: Option<String>,
    /// While `waiting`: how long until the next start.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub restart_in_ms: Option<u64>,
    /// How the last run ended ("code 1", "signal SIGKILL"), or why it could not start.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub last_exit: Option<String>,
    /// The app's log files.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub out_file: Option<String>,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub error_file: Option<String>,
    /// When the last run ended, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub last_exit_at_ms: Option<u64>,
    /// Times the worker was replaced for using more memory than `max_memory_restart`.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub memory_restarts: u32,
    /// The app reloads when its files change (`watch`).
    #[serde(default, skip_serializing_if = "wire::default")]
    pub watching: bool,
    /// Why the last reload after a change failed (the old workers kept serving), or why watching failed;
    /// `null` once a reload after a change succeeds.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub watch_error: Option<String>,
    /// How the app writes its log lines, when not the default (`log_prefix`, `log_format`,
    /// `log_date_format`, `log_timezone`): readers use it to read the times back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<crate::logs::LineFormat>,
    /// With `describe`: the processes the worker's `cpu` and `memory` add up (the worker and its
    /// descendants). Empty elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<GroupMember>,
    /// The process was adopted: it was started by a keeper that was killed, and this one found it still
    /// running. It is supervised as any other, but how it exits may not be known ("unknown").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// For a scheduled job's slot: the job's state and next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSummary>,
    /// In cluster mode: how new connections reach the workers (`shared`, `hash` or `sticky`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<crate::config::Balance>,
    // ---- Health (protocol 10; the types are in the section "Health" below) ----
    /// A Node worker's runtime as its preload last reported it (no app change needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<NodeRuntime>,
    /// The app's TCP listening sockets (with `balance = "hash"`/`"sticky"`: this worker's own), with the
    /// connections waiting in each to be accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_queues: Vec<AcceptQueue>,
    /// Connections have waited in one of the app's queues for a while and no worker accepted any: a worker
    /// that bound its own port instead of the inherited socket, or a whole app stuck. The same on every
    /// record of the app.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nobody_accepting: bool,
    /// The app's reloads since the keeper started (the same on every record of the app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloads: Option<ReloadStats>,
    // ---- end of health ----
    /// Watchdog deadlines (`watchdog`) the worker's processes missed.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub watchdog_misses: u32,
    /// Times a process of the worker was found hung (no `WATCHDOG=1` in time) and replaced or killed.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub hung: u32,
}

/// A job's state in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub state: JobState,
    /// The next fire time (jitter included), in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub next_ms: Option<u64>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "wire::none")]
    pub last_outcome: Option<RunOutcome>,
}

/// One process of a worker's process group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub pid: u32,
    /// Its command line (truncated).
    pub command: String,
    /// Percent of one core.
    pub cpu: f32,
    /// Resident set size in bytes.
    pub memory: u64,
}

/// What `describe` shows instead of the value of a variable whose name looks secret.
pub const SECRET_MASK: &str = "********";

/// Everything about one app, for `describe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDetails {
    /// The app as defined. Environment values whose names look secret are masked.
    pub spec: AppSpec,
    /// The command line a worker runs.
    pub command: Vec<String>,
    /// The addresses the daemon holds (with the port actually bound).
    pub listening: Vec<String>,
    /// When the app was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Its workers, with their process groups.
    pub workers: Vec<ProcessInfo>,
    /// How the last rollout that changed its workers ended (a start, a reload, a scale, a file applied, a
    /// stop): what a command cut off in the middle (its controller died) can be checked against.
    #[serde(default)]
    pub last_change: Option<LastChange>,
    /// What a keeper that adopted the app's workers could not take back (its listening sockets), and what
    /// that means for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<String>,
    /// The app's hooks (`on_event`): how many ran, failed, were suppressed, and the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HookStatus>,
    /// Its log files that lost lines (a full disk): how many since the daemon started, and why writes fail
    /// now if they still do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_drops: Vec<LogDrops>,
}

/// Lines a log file lost because they could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDrops {
    pub path: String,
    pub lines: u64,
    /// Why writes to it fail, while they do.
    pub failing: Option<String>,
}

/// How a rollout ended for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastChange {
    /// `start or reload` (workers started or replaced), `stop` or `delete`.
    pub what: String,
    /// Done for every worker; otherwise `detail` says what failed, and the workers not reached are as
    /// they were.
    pub ok: bool,
    pub detail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

// =============================================================================================
// Health (protocol 10): what the metrics endpoint, `describe` and `monit` show beyond CPU and memory.
// =============================================================================================

/// `[daemon] metrics`: where the controller serves the metrics endpoint (`None`: nowhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSetting {
    /// An IP address and port (`127.0.0.1:9615`).
    pub listen: Option<std::net::SocketAddr>,
    /// Allow an address other than loopback.
    #[serde(default)]
    pub allow_remote: bool,
}

impl MetricsSetting {
    /// Why the setting is refused before anything is bound: an address beyond loopback without
    /// `allow_remote`.
    pub fn check(&self) -> Result<(), String> {
        match self.listen {
            Some(addr) if !addr.ip().is_loopback() && !self.allow_remote => Err(format!(
                "metrics address {addr} is not a loopback address: the metrics show every app's \
                 processes, so serving them beyond this host takes `allow_remote = true` in [daemon]"
            )),
            _ => Ok(()),
        }
    }
}

/// A Node worker's runtime, measured by the preload (`perf_hooks.monitorEventLoopDelay`,
/// `process.memoryUsage`) over the last report interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRuntime {
    /// Event-loop delay percentiles, in microseconds.
    pub loop_delay_p50_us: u64,
    pub loop_delay_p99_us: u64,
    /// V8 heap used and allocated, in bytes.
    pub heap_used: u64,
    pub heap_total: u64,
    /// How long ago it was reported, in milliseconds.
    pub age_ms: u64,
}

/// The accept queue of one TCP listening socket the daemon holds (TCP_INFO on the listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptQueue {
    /// The address bound (`127.0.0.1:3000`).
    pub address: String,
    /// Connections established and waiting to be accepted.
    pub depth: u32,
    /// Its limit (the backlog).
    pub limit: u32,
    /// How long connections have waited with the queue never shrinking, in milliseconds (none while it
    /// is empty or shrinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_ms: Option<u64>,
}

/// An app's reloads (rollouts that replaced running workers) since the keeper started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadStats {
    #[serde(default, skip_serializing_if = "wire::default")]
    pub ok: u64,
    #[serde(default, skip_serializing_if = "wire::default")]
    pub failed: u64,
    /// Their durations added up, in seconds, and the last one's.
    #[serde(default, skip_serializing_if = "wire::default")]
    pub seconds_total: f64,
    #[serde(default, skip_serializing_if = "wire::none")]
    pub last_seconds: Option<f64>,
}

// ---- end of health ----
// ===== events, watchdog and hooks (issue 16) ===============================================================
// The event stream's records. Their JSON, as `herdsman events --json` prints it, is a contract for tools:
// documented in docs/events.md and versioned by `version` ([`EVENTS_VERSION`]): fields are only added within a
// version; a change of meaning or a removal bumps it.

/// The version of the event records' JSON (docs/events.md).
pub const EVENTS_VERSION: u32 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A process was started (a worker, a reload's replacement, a job's run).
    Started,
    /// A worker got ready.
    Ready,
    /// A worker's process ended (by request or not): `exit`, `code` or `signal`, `uptime_ms`.
    Exited,
    /// A worker ended without being asked to; the restart policy applies.
    Crashed,
    /// A worker was started again (after a crash, its backoff, or a restart).
    Restarted,
    /// A worker gave up: too many quick crashes, or its program cannot run.
    Errored,
    /// A worker sent no `WATCHDOG=1` for `silent_ms`: it is replaced (or, at start, killed as a crash).
    Hung,
    /// A worker stayed above `max_memory_restart`: it is replaced.
    MemoryLimit,
    /// A reload replaced one worker (`old_pid`, `pid`, `ready_ms`).
    ReloadStep,
    /// A reload's replacement did not get ready (`reason`); the old worker goes on serving.
    ReloadFailed,
    /// A worker stopped by request.
    Stopped,
    /// An app was deleted.
    Deleted,
    /// A scheduled job's run ended well.
    JobSucceeded,
    /// A scheduled job's run failed for good (`outcome`, `exit`).
    JobFailed,
    /// A hook (`on_event`) failed or timed out (`reason`).
    HookFailed,
    /// Connections waited in one of the app's accept queues and no worker accepted any (`reason`: the
    /// address, how many wait, for how long).
    NobodyAccepting,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ready => "ready",
            EventKind::Exited => "exited",
            EventKind::Crashed => "crashed",
            EventKind::Restarted => "restarted",
            EventKind::Errored => "errored",
            EventKind::Hung => "hung",
            EventKind::MemoryLimit => "memory-limit",
            EventKind::ReloadStep => "reload-step",
            EventKind::ReloadFailed => "reload-failed",
            EventKind::Stopped => "stopped",
            EventKind::Deleted => "deleted",
            EventKind::JobSucceeded => "job-succeeded",
            EventKind::JobFailed => "job-failed",
            EventKind::HookFailed => "hook-failed",
            EventKind::NobodyAccepting => "nobody-accepting",
        }
    }

    /// The `on_event` key whose hook runs for this event, if one can.
    pub fn hook(self) -> Option<&'static str> {
        match self {
            EventKind::Crashed => Some("crash"),
            EventKind::Errored => Some("errored"),
            EventKind::Hung => Some("hung"),
            EventKind::MemoryLimit => Some("memory-limit"),
            EventKind::ReloadFailed => Some("reload-failed"),
            EventKind::JobFailed => Some("job-failed"),
            _ => None,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// [`EVENTS_VERSION`].
    pub version: u32,
    /// Counts up from 1 for the keeper's life: a gap means events were dropped from the ring.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub event: EventKind,
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(flatten)]
    pub details: EventDetails,
}

/// What an event says besides who: each field only where it applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDetails {
    /// How a process ended, as `list` shows it ("code 1", "signal SIGKILL").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// The worker's restarts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// How long a hung worker was silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<u64>,
    /// Bytes, for `memory-limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The process a reload replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    /// Why (a failed reload, a hook's failure, an errored worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A job's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// An app's hooks, for `describe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// Hooks started.
    pub ran: u32,
    /// Hooks that exited non-zero, were killed at their timeout, or could not start.
    pub failed: u32,
    /// Events whose hook was not run: one was running and another waited already, or the app had
    /// fired its allowance for the minute.
    pub suppressed: u32,
    /// The last failure and when (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at_ms: Option<u64>,
}
// ===== end of events, watchdog and hooks ===================================================================

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn an_answer_says_whether_it_is_progress_in_its_first_field() {
        let line = |r: &Response| serde_json::to_vec(r).expect("encode");
        let note = Response::Note {
            message: "web: started".into(),
        };
        assert_eq!(Response::line_is_progress(&line(&note)), Some(true));
        assert_eq!(
            Response::line_is_progress(&line(&Response::Ok)),
            Some(false)
        );
        let error = Response::error(ErrorKind::Invalid, "\"progress\"");
        assert_eq!(Response::line_is_progress(&line(&error)), Some(false));
        assert_eq!(Response::line_is_progress(b"[1]"), None);
    }

    #[test]
    fn the_fast_decode_of_an_answer_agrees_with_serde() {
        let record = r#"{"id":0,"name":"s-0","instance":0,"mode":"fork","pid":26746,"status":"online","restarts":0,"uptime_ms":30178,"cpu":0.5,"memory":1744896,"listen":null,"restart_in_ms":null,"last_exit":null,"out_file":"/h/logs/s-0-out.log","error_file":"/h/logs/s-0-err.log","last_exit_at_ms":null,"memory_restarts":0,"watching":false,"watch_error":null,"watchdog_misses":0,"hung":0}"#;
        let lines = [
            format!(r#"{{"response":"processes","processes":[{record},{record}]}}"#),
            format!(r#"{{"processes":[{record}],"response":"processes"}}"#),
            format!(r#"{{"response":"snapshot","at_ms":5,"processes":[{record}]}}"#),
            format!(r#"{{"response":"processes","processes":[{record}],"extra":1}}"#),
            r#"{"response":"jobs","jobs":[]}"#.to_string(),
            r#"{"response":"described","apps":[]}"#.to_string(),
            r#"{"response":"processes","processes":[{"id":"x"}]}"#.to_string(),
            r#"{"response":"processes"}"#.to_string(),
            r#"{"response":"processes","processes":[],"response":"ok"}"#.to_string(),
            r#"{"response":"ok"}"#.to_string(),
            r#"{"response":"error","kind":"invalid","message":"no"}"#.to_string(),
            "[1]".to_string(),
        ];
        let mut decoded = 0;
        for line in &lines {
            let generic = serde_json::from_slice::<Response>(line.as_bytes());
            let fast = Response::decode(line.as_bytes());
            match (generic, fast) {
                (Ok(generic), Ok(fast)) => {
                    let encode = |r: &Response| serde_json::to_string(r).expect("encode");
                    assert_eq!(encode(&generic), encode(&fast), "{line}");
                    decoded += 1;
                }
                (Err(g), Err(f)) => assert_eq!(g.to_string(), f.to_string(), "{line}"),
                (g, f) => panic!("{line}: serde {g:?}, fast {f:?}"),
            }
        }
        assert_eq!(decoded, 8);
    }

    #[test]
    fn the_fast_decode_skips_a_malformed_value_in_a_field_it_does_not_use() {
        // Found by the `protocol` fuzz target (`fuzz/regressions/protocol/`): serde's decode of the
        // tagged enum buffers every value and refuses these; the fast one never reads the field.
        for junk in [r#""\ud800""#, "1e400"] {
            let line = format!(r#"{{"response":"jobs","jobs":[],"unused":{junk}}}"#);
            assert!(serde_json::from_slice::<Response>(line.as_bytes()).is_err());
            assert!(serde_json::from_slice::<serde_json::Value>(line.as_bytes()).is_err());
            let fast = Response::decode(line.as_bytes()).expect("the fast decode skips it");
            assert!(matches!(fast, Response::Jobs { jobs } if jobs.is_empty()));
        }
    }

    #[test]
    fn frames_round_trip_and_split_on_newlines() {
        let mut bytes = encode_frame(&Request::Stop {
            target: Selection::Name("api".into()),
        })
        .expect("encode");
        bytes.extend(encode_frame(&Request::List { brief: false }).expect("encode"));
        let mut reader = BufReader::new(&bytes[..]);
        let first: Request = read_frame(&mut reader).expect("read").expect("frame");
        assert!(matches!(first, Request::Stop { target: Selection::Name(n) } if n == "api"));
        let second: Request = read_frame(&mut reader).expect("read").expect("frame");
        assert!(matches!(second, Request::List { .. }));
        assert!(read_frame::<Request>(&mut reader).expect("read").is_none());
    }

    #[test]
    fn a_frame_cut_short_is_an_error_not_a_clean_end() {
        let mut reader = BufReader::new(&b"{\"request\":\"li"[..]);
        assert!(matches!(
            read_frame::<Request>(&mut reader),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let big = vec![b'x'; MAX_FRAME + 10];
        let mut reader = BufReader::new(&big[..]);
        assert!(matches!(read_line(&mut reader), Err(FrameError::TooLarge)));
    }

    #[test]
    fn scale_sizes() {
        assert_eq!("4".parse::<ScaleTo>().map(|s| s.resolve(2)), Ok(Some(4)));
        assert_eq!("+2".parse::<ScaleTo>().map(|s| s.resolve(2)), Ok(Some(4)));
        assert_eq!("-1".parse::<ScaleTo>().map(|s| s.resolve(2)), Ok(Some(1)));
        assert_eq!("-2".parse::<ScaleTo>().map(|s| s.resolve(2)), Ok(None));
        assert_eq!("0".parse::<ScaleTo>().map(|s| s.resolve(2)), Ok(None));
        assert!("many".parse::<ScaleTo>().is_err());
    }

    #[test]
    fn selection_parses_all_ids_and_names() {
        assert_eq!(Selection::parse("all"), Selection::All);
        assert_eq!(Selection::parse("3"), Selection::Id(3));
        assert_eq!(Selection::parse("api"), Selection::Name("api".into()));
    }

    fn targets(list: &[&str]) -> Result<Selection, String> {
        let list: Vec<String> = list.iter().map(|t| t.to_string()).collect();
        Selection::parse_targets(&list)
    }

    #[test]
    fn several_targets_patterns_and_all() {
        assert_eq!(targets(&["api"]), Ok(Selection::Name("api".into())));
        assert_eq!(
            targets(&["api", "3", "api"]),
            Ok(Selection::Many(vec![
                Selection::Name("api".into()),
                Selection::Id(3)
            ]))
        );
        assert_eq!(targets(&["api", "all"]), Ok(Selection::All));
        assert_eq!(targets(&["/^api-/"]), Ok(Selection::Regex("^api-".into())));
        assert_eq!(targets(&["api-*"]), Ok(Selection::Glob("api-*".into())));
        let bad = targets(&["/(/"]).expect_err("an unclosed group");
        assert!(bad.starts_with("invalid pattern /(/"), "{bad}");
        assert!(targets(&[]).is_err());
    }

    #[test]
    fn globs_match_whole_names() {
        let matcher = |glob: &str| {
            Selection::Glob(glob.into())
                .matcher()
                .expect("valid")
                .expect("a pattern")
        };
        assert!(matcher("api-*").is_match("api-1"));
        assert!(!matcher("api-*").is_match("old-api-1"));
        assert!(matcher("w?").is_match("w1") && !matcher("w?").is_match("w12"));
        assert!(matcher("w[12]").is_match("w2") && !matcher("w[12]").is_match("w3"));
        assert!(matcher("w[!12]").is_match("w3"));
        assert!(matcher("a.b").is_match("a.b") && !matcher("a.b").is_match("axb"));
        let regex = Selection::Regex("^api-".into()).matcher().expect("valid");
        assert!(regex.expect("a pattern").is_match("api-x"));
    }

    #[test]
    fn single_target_requests_keep_their_encoding() {
        // What a CLI of protocol 4 sends still decodes, and a single target is encoded the same way.
        let old: Request = serde_json::from_str(r#"{"request":"restart","target":{"name":"api"}}"#)
            .expect("decode");
        assert!(
            matches!(old, Request::Restart { target: Selection::Name(n), env: None } if n == "api")
        );
        let stop = Request::Stop {
            target: Selection::Id(3),
        };
        assert_eq!(
            serde_json::to_string(&stop).expect("encode"),
            r#"{"request":"stop","target":{"id":3}}"#
        );
        let all: Request =
            serde_json::from_str(r#"{"request":"delete","target":"all"}"#).expect("decode");
        assert!(matches!(
            all,
            Request::Delete {
                target: Selection::All
            }
        ));
    }
}
