//! When the keeper itself is killed (SIGKILL, the OOM killer: rare, the controller is the likely victim),
//! its workers keep serving, as orphans. This is how the next keeper takes them back, without ever taking a
//! process that is not the one it recorded.
//!
//! - The keeper keeps a record of what runs, `HERDSMAN_HOME/state.json` (mode 0600): each slot's counters
//!   and process (pid and start time, in clock ticks since boot), the processes on their way out, the boot,
//!   the keeper itself, and the name of the file beside it that holds each app's definition and listening
//!   sockets (address and inode), `state-apps-<stamp>-<n>.json`. The apps' file is written only when an app
//!   changes, under a new name, before the record that names it; the record is written whenever what runs
//!   changes, so a burst of runs rewrites only what runs. Neither is fsynced (they have to outlive the
//!   keeper, not the machine; the boot id tells a record of an earlier boot); both are removed when the
//!   daemon stops cleanly.
//! - A keeper that starts and finds a record of this boot whose keeper is gone adopts: a process is taken
//!   only if its pid has the recorded start time (so a reused pid never is) and a pidfd on it opens. It is
//!   marked adopted and supervised as any other: its exit comes from the pidfd, with its status where the
//!   kernel keeps one (Linux 6.15 and later), "unknown" otherwise; its group is signalled only while it
//!   lives (`groups.rs`). A reload replaces it with a child of this keeper.
//! - Each app's listening sockets are copied back from an adopted worker that holds them (found by inode
//!   in `/proc/PID/fd`, copied with `pidfd_getfd`, checked by inode). Where that fails (a worker of another
//!   user, Yama's ptrace scope, an app that closed them), `describe` says so and why, and the app binds
//!   them again for its next worker, which can start once the adopted ones are gone.
//! - A slot whose process did not survive is started again (its last exit: "unknown"); a process that was
//!   on its way out (stopping, replaced by a reload, a reload's replacement not yet ready) is stopped again.
//! - A CLI that finds a record and no daemon starts one (`Client::connect`), so the first command after the
//!   keeper's death already tells the truth.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::app::App;
use super::handover::{epoch_ms, from_epoch_ms};
use super::{Message, Supervisor, Worker};
use crate::config::{AppSpec, ListenAddr};
use crate::daemon::listener::{Listener, UnixFile};
use crate::daemon::pidfd;
use crate::daemon::worker::{OnExit, Process, State};

/// Bumped when [`Record`] changes in a way an older keeper cannot read.
const FORMAT: u32 = 1;

/// The record is written at most this often when only exits and counters changed: a burst of them (a
/// thousand jobs' runs ending) costs one write. A process started is recorded at once.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// A process as recorded: its pid, and when it started (clock ticks since boot), which a reused pid
/// does not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub pid: i32,
    pub start: u64,
}

/// What the keeper last recorded. Written and read with the name of the apps' file, adopted with the apps
/// it holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record<A = Vec<AppRecord>> {
    format: u32,
    boot_id: String,
    keeper: Recorded,
    next_id: u32,
    apps: A,
    slots: Vec<SlotRecord>,
    /// Processes on their way out.
    leaving: Vec<Leaving>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppRecord {
    spec: AppSpec,
    created_ms: u64,
    listeners: Vec<ListenerRecord>,
    workers: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ListenerRecord {
    addr: ListenAddr,
    unix_path: Option<UnixFile>,
    /// The socket's inode: what a copy taken back from a worker must be.
    inode: u64,
    /// A worker slot's own socket (`balance`): the slot's id and instance. Such sockets are recorded in the
    /// kernel's order of their reuseport group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot: Option<(u32, u32)>,
}

/// What a slot should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Want {
    Run,
    Stop,
    Errored,
}

#[derive(Debug, Serialize, Deserialize)]
struct SlotRecord {
    id: u32,
    app: String,
    instance: u32,
    want: Want,
    process: Option<Recorded>,
    restarts: u32,
    unstable: u32,
    last_exit: Option<String>,
    last_exit_at_ms: Option<u64>,
    memory_restarts: u32,
    started_once: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Leaving {
    app: String,
    instance: u32,
    process: Recorded,
}

/// The record (`state.json`) from its bytes, with the name of its apps' file; `Err` says why it is not
/// adopted.
pub fn decode_record(bytes: &[u8]) -> Result<Record<String>, String> {
    match serde_json::from_slice::<Record<String>>(bytes) {
        Ok(record) if record.format != FORMAT => {
            Err(format!("is of another format ({})", record.format))
        }
        // The keeper names its apps' files `state-apps-*.json`, next to the record: never another path.
        Ok(record) if !record.apps.starts_with("state-apps-") || record.apps.contains('/') => {
            Err(format!(
                "names an apps' file that is not one of its own ({:?})",
                record.apps
            ))
        }
        Ok(record) => Ok(record),
        Err(e) => Err(format!("cannot be read ({e})")),
    }
}

/// The apps of a record, from the bytes of the apps' file it names.
pub fn decode_apps(bytes: &[u8]) -> Result<Vec<AppRecord>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// The record's upkeep: where it goes, and what was last written.
pub struct Keeping {
    path: PathBuf,
    boot_id: String,
    keeper: Recorded,
    /// A request may have changed an app's definition: write even if what runs looks the same.
    touched: bool,
    /// The fingerprints of what was last written: the apps, and what runs.
    written: Option<(u64, u64)>,
    /// The apps' file last written (its name, in the record's directory), and how many were.
    apps_file: Option<String>,
    apps_files: u64,
    /// Tells this keeper's apps' files from those of an earlier one.
    stamp: u128,
    /// The apps' files of earlier keepers were removed (after this one's first record).
    swept: bool,
    /// When it was last written, and whether a write waits for [`MIN_INTERVAL`] to pass.
    last_write: Option<Instant>,
    deferred: bool,
    /// Start times of the processes recorded, read once each.
    starts: HashMap<i32, u64>,
    /// Start times known from the spawn (see [`spawn::Spawned::start`]), for processes not recorded yet:
    /// no `/proc` read for them.
    spawned: HashMap<i32, u64>,
    /// A failed write was logged; the next success is too.
    failing: bool,
}

impl Keeping {
    pub fn new(path: PathBuf) -> Keeping {
        let pid = std::process::id() as i32;
        Keeping {
            path,
            boot_id: boot_id(),
            keeper: Recorded {
                pid,
                start: process_start(Path::new("/proc"), pid).map_or(0, |(_, start)| start),
            },
            touched: true,
            written: None,
            apps_file: None,
            apps_files: 0,
            stamp: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            swept: false,
            last_write: None,
            deferred: false,
            starts: HashMap::new(),
            spawned: HashMap::new(),
            failing: false,
        }
    }
}

impl Keeping {
    /// The record with the apps of the file it names, if that can be read.
    fn read_apps(&self, record: Record<String>) -> Option<Record> {
        let path = self.sibling(&record.apps);
        let read = crate::daemon::persist::read_private(&path).and_then(|bytes| {
            let bytes = bytes.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
            decode_apps(&bytes).map_err(std::io::Error::other)
        });
        match read {
            Ok(apps) => Some(Record {
                format: record.format,
                boot_id: record.boot_id,
                keeper: record.keeper,
                next_id: record.next_id,
                apps,
                slots: record.slots,
                leaving: record.leaving,
            }),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "the apps of the record of what ran cannot be read: not adopted");
                None
            }
        }
    }

    /// A file beside the record.
    fn sibling(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// Removes the apps' files other than the one the record names.
    fn remove_stale_apps_files(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with("state-apps-") && Some(name) != self.apps_file.as_deref() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// FNV-1a: the fingerprints are taken after every turn of the loop, over every slot, and need no
/// resistance to collisions made on purpose (a collision only delays a write to the next change).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// This boot's id.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The state and start time (field 22, clock ticks since boot) of a process, from `<proc>/PID/stat`.
fn process_start(proc_root: &Path, pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // After the command name, which is in parentheses and may hold anything: state (field 3), ...
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the recorded process still runs: its pid is taken by a live process that started when it did.
fn still_runs(proc_root: &Path, recorded: Recorded) -> bool {
    process_start(proc_root, recorded.pid)
        .is_some_and(|(state, start)| !matches!(state, 'Z' | 'X' | 'x') && start == recorded.start)
}

/// How long ago a process started at `start` (clock ticks since boot).
fn age(start: u64) -> Duration {
    // SAFETY: sysconf with a constant argument.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64((uptime - start as f64 / ticks).max(0.0))
}

/// A hash or sticky app's per-slot sockets, copied back from the adopted workers that hold them, in the
/// kernel's order of each reuseport group. A socket that cannot be taken back (its worker died while no
/// keeper ran, and the socket with it) left its group, and the kernel moved the group's last socket into
/// its place: that is replayed in the record's order, which is right when at most one was lost per address
/// (otherwise the order they closed in is not known, and `note` says that sticky clients may move once).
fn take_back_slots(
    records: &[ListenerRecord],
    holders: &[(i32, &OwnedFd)],
    note: &mut Option<String>,
) -> Vec<(ListenAddr, u32, u32, OwnedFd)> {
    let mut addrs: Vec<&ListenAddr> = Vec::new();
    for r in records.iter().filter(|r| r.slot.is_some()) {
        if !addrs.contains(&&r.addr) {
            addrs.push(&r.addr);
        }
    }
    let mut taken = Vec::new();
    for addr in addrs {
        let mut group: Vec<Option<(u32, u32, OwnedFd)>> = Vec::new();
        let mut lost = 0;
        for r in records.iter().filter(|r| &r.addr == addr) {
            let Some((slot, instance)) = r.slot else {
                continue;
            };
            match take_back(r, holders) {
                Ok(fd) => group.push(Some((slot, instance, fd))),
                Err(_) => {
                    group.push(None);
                    lost += 1;
                }
            }
        }
        let mut index = 0;
        while index < group.len() {
            if group[index].is_none() {
                group.swap_remove(index);
            } else {
                index += 1;
            }
        }
        // All gone: the group is empty, and the new sockets make a new one in a known order.
        if lost > 1 && !group.is_empty() {
            *note = Some(format!(
                "{lost} worker sockets of {addr} were gone with their workers: their order in the kernel is a guess, so sticky clients may move to another worker once"
            ));
        }
        taken.extend(
            group
                .into_iter()
                .flatten()
                .map(|(slot, instance, fd)| (addr.clone(), slot, instance, fd)),
        );
    }
    taken
}

/// The listening socket `record` names, copied back from one of `holders` (adopted workers with their
/// pidfds): found by its inode among each one's descriptors.
fn take_back(record: &ListenerRecord, holders: &[(i32, &OwnedFd)]) -> Result<OwnedFd, String> {
    let wanted = format!("socket:[{}]", record.inode);
    let mut failures = Vec::new();
    for &(pid, pidfd) in holders {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            failures.push(format!("cannot read the descriptors of pid {pid}"));
            continue;
        };
        let found = entries.flatten().find_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            (target.as_os_str() == wanted.as_str())
                .then(|| entry.file_name().to_str()?.parse::<i32>().ok())
                .flatten()
        });
        let Some(number) = found else {
            continue;
        };
        match pidfd::get_fd(pidfd, number) {
            Ok(copy) => {
                let inode = std::fs::metadata(format!("/proc/self/fd/{}", copy.as_raw_fd()))
                    .map(|m| m.ino())
                    .ok();
                if inode == Some(record.inode) {
                    return Ok(copy);
                }
                failures.push(format!("pid {pid}'s descriptor {number} changed meanwhile"));
            }
            Err(e) => failures.push(format!("cannot copy it from pid {pid}: {e}")),
        }
    }
    if failures.is_empty() {
        Err("no adopted worker holds it".to_string())
    } else {
        Err(failures.join("; "))
    }
}

impl Supervisor {
    /// Records what runs, if it changed since the last time (see the module's documentation).
    pub(super) fn keep_record(&mut self) {
        let Some(keeping) = &self.record else {
            return;
        };
        let fingerprint = (self.apps_fingerprint(), self.runtime_fingerprint());
        if !keeping.touched && keeping.written == Some(fingerprint) {
            return;
        }
        // A process started since the last write is recorded at once: a keeper killed now must find it.
        let unrecorded = self
            .workers
            .values()
            .flat_map(|w| [w.state.process(), w.successor])
            .flatten()
            .any(|p| !keeping.starts.contains_key(&p.pid));
        if let Some(last) = keeping.last_write
            && last.elapsed() < MIN_INTERVAL
            && !unrecorded
        {
            if !keeping.deferred {
                self.arm(MIN_INTERVAL - last.elapsed(), super::Timer::Wake);
                if let Some(keeping) = &mut self.record {
                    keeping.deferred = true;
                }
            }
            return;
        }
        let apps_changed = keeping.touched
            || keeping.apps_file.is_none()
            || keeping.written.map(|(apps, _)| apps) != Some(fingerprint.0);
        let apps_json = if apps_changed {
            match serde_json::to_vec(&self.app_records()) {
                Ok(json) => Some(json),
                Err(e) => {
                    warn!(error = %e, "cannot encode the apps for the record of what runs");
                    return;
                }
            }
        } else {
            None
        };
        let (slots, leaving, next_id) = self.runtime_record();
        let Some(keeping) = &mut self.record else {
            return;
        };
        // The apps first, under a new name: the record names them once they are written.
        let mut replaced = None;
        if let Some(json) = apps_json {
            let name = format!(
                "state-apps-{}-{}.json",
                keeping.stamp,
                keeping.apps_files + 1
            );
            let written =
                crate::daemon::persist::write_private(&keeping.sibling(&name), &json, false);
            if let Err(e) = written {
                if !keeping.failing {
                    keeping.failing = true;
                    warn!(path = %keeping.path.display(), error = %e, "cannot write the record of what runs");
                }
                return;
            }
            keeping.apps_files += 1;
            replaced = keeping.apps_file.replace(name);
        }
        let Some(apps) = keeping.apps_file.as_deref() else {
            return;
        };
        let record = Record {
            format: FORMAT,
            boot_id: keeping.boot_id.clone(),
            keeper: keeping.keeper,
            next_id,
            apps,
            slots,
            leaving,
        };
        keeping.touched = false;
        keeping.deferred = false;
        keeping.written = Some(fingerprint);
        keeping.last_write = Some(Instant::now());
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::daemon::persist::write_private(&keeping.path, &bytes, false));
        if written.is_ok() {
            if let Some(old) = replaced {
                let _ = std::fs::remove_file(keeping.sibling(&old));
            }
            if !keeping.swept {
                keeping.swept = true;
                keeping.remove_stale_apps_files();
            }
        }
        match written {
            Ok(()) if keeping.failing => {
                keeping.failing = false;
                info!(path = %keeping.path.display(), "the record of what runs is written again");
            }
            Ok(()) => {}
            Err(e) if !keeping.failing => {
                keeping.failing = true;
                // Written again at the next change; until then a keeper killed now adopts from an older one.
                warn!(path = %keeping.path.display(), error = %e, "cannot write the record of what runs");
            }
            Err(_) => {}
        }
    }

    /// A request may have changed an app's definition: the record is written again after it.
    pub(super) fn touch_record(&mut self) {
        if let Some(keeping) = &mut self.record {
            keeping.touched = true;
        }
    }

    /// Removes the record: the daemon stopped cleanly, and nothing is left to adopt.
    pub fn remove_record(&mut self) {
        if let Some(keeping) = self.record.take() {
            let _ = std::fs::remove_file(&keeping.path);
            if let Some(apps) = &keeping.apps_file {
                let _ = std::fs::remove_file(keeping.sibling(apps));
            }
        }
    }

    /// What the record depends on, hashed: apps and their slots, each slot's process, successor and
    /// counters, and the processes being stopped.
    /// A process this keeper just started, with its start time if the spawn knew it: the record then
    /// need not read it from `/proc`. It is still written at once (see `keep_record`).
    pub(super) fn note_spawned(&mut self, pid: i32, start: Option<u64>) {
        if let (Some(keeping), Some(start)) = (&mut self.record, start) {
            keeping.spawned.insert(pid, start);
        }
    }

    fn apps_fingerprint(&self) -> u64 {
        let mut hasher = Fnv::default();
        for (name, app) in &self.apps {
            let slot_sockets: Vec<(u32, i32)> = app.slots.as_ref().map_or(Vec::new(), |s| {
                s.parts()
                    .into_iter()
                    .map(|(_, slot, fd)| (slot, fd.as_raw_fd()))
                    .collect()
            });
            (name, &app.workers, app.listeners.len(), slot_sockets).hash(&mut hasher);
        }
        hasher.finish()
    }

    fn runtime_fingerprint(&self) -> u64 {
        let mut hasher = Fnv::default();
        for (id, w) in &self.workers {
            let pid = |p: Option<Process>| p.map(|p| p.pid);
            (
                id,
                w.state.status() as u8,
                pid(w.state.process()),
                pid(w.successor),
                w.on_exit as u8,
                w.restarts,
                w.unstable,
                w.memory_restarts,
            )
                .hash(&mut hasher);
        }
        for r in &self.retiring {
            (r.process.pid, r.leader_gone).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Each app as recorded: its definition, sockets and slots.
    fn app_records(&self) -> Vec<AppRecord> {
        self.apps
            .values()
            .map(|app| AppRecord {
                spec: app.spec.clone(),
                created_ms: epoch_ms(app.created),
                listeners: app
                    .listeners
                    .iter()
                    .map(|l| {
                        let (addr, unix_path) = l.parts();
                        let inode =
                            std::fs::metadata(format!("/proc/self/fd/{}", l.fd().as_raw_fd()))
                                .map_or(0, |m| m.ino());
                        ListenerRecord {
                            addr,
                            unix_path,
                            inode,
                            slot: None,
                        }
                    })
                    .chain(app.slots.iter().flat_map(|slots| slots.parts()).map(
                        |(addr, slot, fd)| {
                            ListenerRecord {
                                addr,
                                unix_path: None,
                                inode: std::fs::metadata(format!(
                                    "/proc/self/fd/{}",
                                    fd.as_raw_fd()
                                ))
                                .map_or(0, |m| m.ino()),
                                slot: Some((
                                    slot,
                                    self.workers.get(&slot).map_or(0, |w| w.instance),
                                )),
                            }
                        },
                    ))
                    .collect(),
                workers: app.workers.clone(),
            })
            .collect()
    }

    /// What runs: each slot and its process, the processes on their way out, the next slot id.
    fn runtime_record(&mut self) -> (Vec<SlotRecord>, Vec<Leaving>, u32) {
        let mut leaving = Vec::new();
        let mut slots = Vec::new();
        for (&id, w) in &self.workers {
            // A scheduled job's slot between runs is all in the job's own file: nothing to adopt.
            if w.state == State::Stopped && w.successor.is_none() && self.is_job(&w.app) {
                continue;
            }
            let (want, process) = match w.state {
                State::Running(p) => (Want::Run, Some(p)),
                State::Waiting { .. } => (Want::Run, None),
                State::Stopping { process, .. } => {
                    if w.state.process().is_some() {
                        leaving.push((w.app.clone(), w.instance, process.pid));
                    }
                    let want = match w.on_exit {
                        OnExit::Restart | OnExit::Crash => Want::Run,
                        OnExit::Stop | OnExit::Remove => Want::Stop,
                    };
                    (want, None)
                }
                State::Stopped => (Want::Stop, None),
                State::Errored => (Want::Errored, None),
            };
            if let Some(successor) = w.successor {
                leaving.push((w.app.clone(), w.instance, successor.pid));
            }
            slots.push(SlotRecord {
                id,
                app: w.app.clone(),
                instance: w.instance,
                want,
                process: process.map(|p| Recorded {
                    pid: p.pid,
                    start: 0,
                }),
                restarts: w.restarts,
                unstable: w.unstable,
                last_exit: w.last_exit.clone(),
                last_exit_at_ms: w.last_exit_at.map(epoch_ms),
                memory_restarts: w.memory_restarts,
                started_once: w.started_once,
            });
        }
        for r in self.retiring.iter().filter(|r| !r.leader_gone) {
            leaving.push((r.app.clone(), r.instance, r.process.pid));
        }
        let live: HashSet<i32> = slots
            .iter()
            .filter_map(|s| s.process.map(|p| p.pid))
            .chain(leaving.iter().map(|(_, _, pid)| *pid))
            .collect();
        let next_id = self.next_id;
        let Some(keeping) = &mut self.record else {
            return (slots, Vec::new(), next_id);
        };
        keeping.starts.retain(|pid, _| live.contains(pid));
        keeping.spawned.retain(|pid, _| live.contains(pid));
        let proc_root = Path::new("/proc");
        let mut start_of = |pid: i32| {
            *keeping.starts.entry(pid).or_insert_with(|| {
                keeping
                    .spawned
                    .remove(&pid)
                    .unwrap_or_else(|| process_start(proc_root, pid).map_or(0, |(_, start)| start))
            })
        };
        for slot in &mut slots {
            if let Some(p) = &mut slot.process {
                p.start = start_of(p.pid);
            }
        }
        let leaving = leaving
            .into_iter()
            .map(|(app, instance, pid)| Leaving {
                app,
                instance,
                process: Recorded {
                    pid,
                    start: start_of(pid),
                },
            })
            .collect();
        (slots, leaving, next_id)
    }

    /// Starts keeping the record at `path`, as a keeper re-executed in place does (what it names is this
    /// keeper's already).
    pub fn record_at(&mut self, path: PathBuf) {
        self.record = Some(Keeping::new(path));
    }

    /// Starts keeping the record at `path`, after adopting what the record a killed keeper left there
    /// still names. Runs before the supervisor's loop.
    pub fn adopt_and_record(&mut self, path: PathBuf) {
        let keeping = Keeping::new(path);
        let record = match crate::daemon::persist::read_private(&keeping.path) {
            Ok(Some(bytes)) => match decode_record(&bytes) {
                Ok(record) => keeping.read_apps(record),
                Err(why) => {
                    warn!("the record of what ran {why}: not adopted");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "the record of what ran cannot be read: not adopted");
                None
            }
        };
        let proc_root = Path::new("/proc");
        match record {
            Some(record) if record.boot_id != keeping.boot_id => {
                info!("the record of what ran is from an earlier boot: nothing to adopt");
            }
            Some(record)
                if still_runs(proc_root, record.keeper) && record.keeper != keeping.keeper =>
            {
                warn!(
                    pid = record.keeper.pid,
                    "the keeper that wrote the record still runs: nothing adopted"
                );
            }
            Some(record) => self.adopt(record, proc_root),
            None => {}
        }
        self.record = Some(keeping);
    }

    fn adopt(&mut self, record: Record, proc_root: &Path) {
        self.next_id = self.next_id.max(record.next_id);
        // The recorded processes that still run, each with a pidfd.
        let mut pidfds: HashMap<i32, OwnedFd> = HashMap::new();
        let mut take = |recorded: Recorded| -> bool {
            if !still_runs(proc_root, recorded) {
                return false;
            }
            match pidfd::open(recorded.pid) {
                // Checked again now that the pidfd pins the process: the pid may have been reused between.
                Ok(fd) if still_runs(proc_root, recorded) => {
                    pidfds.insert(recorded.pid, fd);
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    warn!(pid = recorded.pid, error = %e, "cannot open a pidfd on a recorded process: not adopted");
                    false
                }
            }
        };
        let slots: Vec<(SlotRecord, bool)> = record
            .slots
            .into_iter()
            .map(|s| {
                let alive = s.process.is_some_and(&mut take);
                (s, alive)
            })
            .collect();
        let leaving: Vec<Leaving> = record
            .leaving
            .into_iter()
            .filter(|l| take(l.process))
            .collect();

        let mut adopted = 0;
        let mut started = Vec::new();
        let mut kept_apps = BTreeSet::new();
        for app in record.apps {
            let name = app.spec.name.clone();
            let holders: Vec<(i32, &OwnedFd)> = slots
                .iter()
                .filter(|(s, alive)| *alive && s.app == name)
                .filter_map(|(s, _)| {
                    let pid = s.process?.pid;
                    Some((pid, pidfds.get(&pid)?))
                })
                .collect();
            let mut note = None;
            let mut listeners = Vec::new();
            let slot_sockets = take_back_slots(&app.listeners, &holders, &mut note);
            if !holders.is_empty() && !app.listeners.is_empty() {
                for l in app.listeners.iter().filter(|l| l.slot.is_none()) {
                    match take_back(l, &holders) {
                        Ok(fd) => listeners.push(Listener::from_parts(
                            fd,
                            l.addr.clone(),
                            l.unix_path.clone(),
                        )),
                        Err(why) => {
                            note = Some(format!(
                                "could not take back the socket of {} from the adopted workers ({why}): \
                                 they go on serving on it, and a new worker can bind it only once they are gone",
                                l.addr
                            ));
                            listeners.clear();
                            break;
                        }
                    }
                }
            }
            match App::restore(
                app.spec,
                &self.home,
                listeners,
                from_epoch_ms(app.created_ms),
            ) {
                Ok(mut restored) => {
                    if let Some(note) = &note {
                        warn!(app = %name, %note, "adopted without its listening socket");
                    }
                    restored.adoption = note;
                    restored.workers = app.workers;
                    if let Some(slots) = restored.slots.as_mut() {
                        for (addr, slot, _instance, fd) in slot_sockets {
                            slots.restore(&addr, slot, fd);
                        }
                        slots.store();
                    }
                    for listener in &restored.listeners {
                        listener.store();
                    }
                    kept_apps.insert(name.clone());
                    self.apps.insert(name, Box::new(restored));
                }
                Err(message) => {
                    error!(app = %name, %message, "cannot take the app back: its surviving workers are stopped");
                }
            }
        }

        let now = Instant::now();
        for (slot, alive) in slots {
            let recorded = slot.process.filter(|_| alive);
            if !kept_apps.contains(&slot.app) {
                if let Some(recorded) = recorded {
                    crate::daemon::groups::signal_group(
                        recorded.pid,
                        false,
                        Some(nix::sys::signal::Signal::SIGTERM),
                    );
                }
                continue;
            }
            let mut worker = Worker {
                app: slot.app,
                instance: slot.instance,
                state: match slot.want {
                    Want::Errored => State::Errored,
                    _ => State::Stopped,
                },
                on_exit: OnExit::Crash,
                restarts: slot.restarts,
                unstable: slot.unstable,
                last_exit: slot.last_exit,
                last_exit_at: slot.last_exit_at_ms.map(from_epoch_ms),
                memory_restarts: slot.memory_restarts,
                watchdog: Default::default(),
                started_once: slot.started_once,
                epoch: 0,
                intent: 0,
                successor: None,
                reload_failure: None,
                kill_reason: None,
                draining: None,
                spawn_failure: None,
            };
            match (recorded, slot.want) {
                (Some(recorded), _) => {
                    self.next_serial += 1;
                    let process = Process {
                        pid: recorded.pid,
                        serial: self.next_serial,
                        started: now.checked_sub(age(recorded.start)).unwrap_or(now),
                        exec_ok: true,
                        ready: true,
                        early_exit: None,
                        adopted: true,
                        beat: None,
                    };
                    worker.state = State::Running(process);
                    if let Some(fd) = pidfds.remove(&recorded.pid) {
                        self.watch_adopted(recorded.pid, Some(fd));
                    }
                    self.metrics.track(recorded.pid);
                    adopted += 1;
                }
                (None, Want::Run) => {
                    if slot.process.is_some() {
                        worker.restarts += 1;
                        worker.last_exit =
                            Some("unknown (it ended while no keeper ran)".to_string());
                        worker.last_exit_at = Some(SystemTime::now());
                    }
                    started.push(slot.id);
                }
                (None, _) => {}
            }
            self.workers.insert(slot.id, Box::new(worker));
        }
        // Slots left out of the record (a job's between runs): there again, down.
        let missing: Vec<(String, u32, u32)> = self
            .apps
            .iter()
            .flat_map(|(name, app)| {
                app.workers
                    .iter()
                    .enumerate()
                    .map(move |(i, &id)| (name.clone(), id, i as u32))
            })
            .filter(|(_, id, _)| !self.workers.contains_key(id))
            .collect();
        for (app, id, instance) in missing {
            self.workers.insert(
                id,
                Box::new(Worker {
                    app,
                    instance,
                    state: State::Stopped,
                    on_exit: OnExit::Crash,
                    restarts: 0,
                    unstable: 0,
                    last_exit: None,
                    last_exit_at: None,
                    memory_restarts: 0,
                    watchdog: Default::default(),
                    started_once: true,
                    epoch: 0,
                    intent: 0,
                    successor: None,
                    reload_failure: None,
                    kill_reason: None,
                    draining: None,
                    spawn_failure: None,
                }),
            );
        }
        let mut stopped = 0;
        for l in leaving {
            let Some(fd) = pidfds.remove(&l.process.pid) else {
                continue;
            };
            self.next_serial += 1;
            let mut process = Process::new(l.process.pid, self.next_serial);
            process.exec_ok = true;
            process.adopted = true;
            process.beat = None;
            self.watch_adopted(l.process.pid, Some(fd));
            let signal = self
                .apps
                .get(&l.app)
                .map_or(nix::sys::signal::Signal::SIGTERM, |a| a.spec.kill_signal.0);
            self.retire(&l.app, l.instance, process, signal);
            stopped += 1;
        }
        for id in &started {
            self.start_worker(*id);
        }
        info!(
            apps = self.apps.len(),
            adopted,
            started = started.len(),
            stopped,
            "took back what a killed keeper left running"
        );
    }

    /// Watches an adopted process: its exit comes back as [`Message::Exited`]. Without a pidfd (one
    /// carried over an in-place update), one is opened; a process already gone is reported at once.
    pub(super) fn watch_adopted(&self, pid: i32, pidfd: Option<OwnedFd>) {
        let tx = self.tx.clone();
        let pidfd = pidfd.map_or_else(|| pidfd::open(pid), Ok);
        tokio::spawn(async move {
            let status = match pidfd {
                Ok(fd) => pidfd::exited(fd).await,
                Err(_) => None,
            };
            let _ = tx.send(Message::Exited { pid, status });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc` with one process whose stat says it is in `state` and started at `start`.
    fn fake_proc(pid: i32, state: char, start: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let process = dir.path().join(pid.to_string());
        std::fs::create_dir(&process).expect("mkdir");
        // Fields 1 and 2, then 3 (state) to 21, then 22 (start time) and a few more.
        let middle: Vec<String> = (4..=21).map(|n| n.to_string()).collect();
        let stat = format!(
            "{pid} (a (strange) name) {state} {} {start} 100 200 300\n",
            middle.join(" ")
        );
        std::fs::write(process.join("stat"), stat).expect("write stat");
        dir
    }

    #[test]
    fn a_process_is_adopted_only_if_its_pid_has_the_recorded_start_time() {
        let proc = fake_proc(4242, 'S', 987_654);
        let recorded = Recorded {
            pid: 4242,
            start: 987_654,
        };
        assert_eq!(process_start(proc.path(), 4242), Some(('S', 987_654)));
        assert!(still_runs(proc.path(), recorded));
        // The pid was reused by a process that started later.
        assert!(!still_runs(
            proc.path(),
            Recorded {
                start: 987_000,
                ..recorded
            }
        ));
        // Gone, or a zombie waiting for its parent.
        assert!(!still_runs(
            proc.path(),
            Recorded {
                pid: 4243,
                ..recorded
            }
        ));
        let zombie = fake_proc(4242, 'Z', 987_654);
        assert!(!still_runs(zombie.path(), recorded));
    }

    #[test]
    fn this_process_is_found_in_the_real_proc() {
        let pid = std::process::id() as i32;
        let (_, start) = process_start(Path::new("/proc"), pid).expect("this process's stat");
        assert!(still_runs(Path::new("/proc"), Recorded { pid, start }));
        assert!(age(start) < Duration::from_secs(24 * 3600 * 365));
    }
}
