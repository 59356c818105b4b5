//! Throwaway Redis and PostgreSQL servers on free loopback ports, each with its own data directory, in its
//! own process group, stopped (SIGKILL to the group) and removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herdsman::fleet::{Options, Store};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, Uid, User, chown};
use tempfile::TempDir;

use crate::helpers::{POLL, free_port};

/// How long a server may take to accept its first query.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Short limits so the failure tests are quick.
pub fn test_options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(1),
        op_timeout: Duration::from_secs(1),
        keepalive_idle: Duration::from_secs(2),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

pub struct Server {
    pub url: String,
    child: Child,
    _dir: TempDir,
}

impl Server {
    /// A fresh `redis-server`.
    pub fn redis() -> Server {
        Server::redis_on(free_port())
    }

    /// A fresh `redis-server` on `port` (to restart a store at the same address).
    pub fn redis_on(port: u16) -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Server::start(command, dir, format!("redis://127.0.0.1:{port}/0"))
    }

    /// A fresh PostgreSQL cluster (`initdb`, trust authentication on loopback). As root, the cluster belongs
    /// to and runs as `nobody`, since PostgreSQL refuses to run as root.
    pub fn postgres() -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        fs::create_dir(&sockets).expect("create the socket directory");
        let user = if Uid::effective().is_root() {
            let nobody = User::from_name("nobody")
                .ok()
                .flatten()
                .expect("a `nobody` user to run PostgreSQL as");
            for path in [dir.path(), sockets.as_path()] {
                chown(path, Some(nobody.uid), Some(nobody.gid)).expect("chown the server's dir");
            }
            Some(nobody)
        } else {
            None
        };
        let as_user = |command: &mut Command| {
            if let Some(user) = &user {
                use std::os::unix::process::CommandExt;
                command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            }
            command.env("LC_ALL", "C").env_remove("PGDATA");
        };
        let mut initdb = Command::new(pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut command = Command::new(pg_bin("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sockets)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=30"])
            .args(["-c", "shared_buffers=16MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut command);
        Server::start(
            command,
            dir,
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        )
    }

    fn start(mut command: Command, dir: TempDir, url: String) -> Server {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = command.spawn().expect("start the server");
        let server = Server {
            url,
            child,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    /// Polls with real queries until the server answers, or panics at the deadline.
    fn wait_ready(&self) {
        let rt = runtime();
        let deadline = Instant::now() + START_DEADLINE;
        let store = Store::with_options(&self.url, test_options()).expect("a valid store URL");
        loop {
            match rt.block_on(store.ping()) {
                Ok(_) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!(
                        "{} did not start within {START_DEADLINE:?}: {error}",
                        self.url
                    )
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    fn group(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits i32"))
    }

    /// SIGSTOPs the server and its children (PostgreSQL's backends each call setsid(), so its process group
    /// is not enough); SIGCONT when the guard drops.
    pub fn pause(&self) -> Paused {
        let mut pids = vec![self.group()];
        pids.extend(children(self.group()));
        for pid in &pids {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        Paused { pids }
    }
}

/// The direct children of `parent`, from /proc.
fn children(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent.as_raw()).then(|| Pid::from_raw(pid))
        })
        .collect()
}

impl Drop for Server {
    fn drop(&mut self) {
        // PostgreSQL's backends are in sessions of their own: they exit when the postmaster dies.
        for pid in children(self.group()) {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = killpg(self.group(), Signal::SIGCONT);
        let _ = killpg(self.group(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub struct Paused {
    pids: Vec<Pid>,
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(*pid, Signal::SIGCONT);
        }
    }
}

fn pg_bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(entries) = fs::read_dir(debian) {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin").join(name)))
            .filter(|path| path.exists())
            .collect();
        versions.sort();
        if let Some(newest) = versions.pop() {
            return newest;
        }
    }
    PathBuf::from(name)
}
