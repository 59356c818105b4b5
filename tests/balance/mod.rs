//! Issue 18: `balance = "hash" | "sticky"`: one SO_REUSEPORT socket per worker slot, held by the daemon,
//! the kernel choosing the socket of each new connection. socket.io clients with the default transports
//! (which need every request of a session to reach one process) all connect with `sticky` from 8 source
//! addresses, and fail with `shared`; `hash` spreads new connections evenly; and a probe on new connections
//! sees nothing refused or reset while a sticky worker is killed, the app reloads and scales 4 → 2 → 4,
//! the daemon is updated in place, or its keeper is killed and the next one adopts the workers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use socket2::{Domain, Socket, Type};

use crate::helpers::{
    Herdsman, Probe, SECOND, alive, app_arg, assert_no_failures, fd_link, free_port, http_get,
    listen_addr, pids, served_pid, wait_child,
};
use crate::node_framework_app;

/// Source addresses the clients connect from: 127.0.0.1 ... 127.0.0.8.
const SOURCES: u8 = 8;

/// `start tests/apps/http.js -i N --listen 127.0.0.1:PORT --balance MODE`; waits until every worker is
/// online.
fn start_balanced(h: &Herdsman, name: &str, n: usize, port: u16, balance: &str) -> BTreeSet<i32> {
    h.cmd(&[
        "start",
        &app_arg("http.js"),
        "--name",
        name,
        "-i",
        &n.to_string(),
        "--listen",
        &listen_addr(port),
        "--balance",
        balance,
    ])
    .ok();
    pids(&h.wait_online(name, n))
}

/// `GET /` over a new connection from 127.0.0.`source`: the pid that answered.
fn pid_from(source: u8, port: u16) -> Result<i32, String> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)).into())
        .map_err(|e| format!("bind 127.0.0.{source}: {e}"))?;
    socket
        .connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into(),
            Duration::from_secs(5),
        )
        .map_err(|e| format!("connect from 127.0.0.{source}: {e}"))?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    raw.lines()
        .find_map(|l| l.strip_prefix("X-Pid: ").or(l.strip_prefix("x-pid: ")))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("no X-Pid in {raw:?}"))
}

/// Which worker each source address reaches, once every address is answered.
fn sticky_map(h: &Herdsman, port: u16) -> BTreeMap<u8, i32> {
    h.wait_value("an answer from every source address", 10 * SECOND, || {
        (1..=SOURCES)
            .map(|s| pid_from(s, port).ok().map(|pid| (s, pid)))
            .collect::<Option<BTreeMap<u8, i32>>>()
    })
}

/// The inode each worker has as fd 3.
fn fd3_inodes(workers: &BTreeSet<i32>) -> BTreeSet<String> {
    workers.iter().filter_map(|&pid| fd_link(pid, 3)).collect()
}

/// `node sio-clients.js PORT CLIENTS SOURCES`: what the clients saw.
fn socketio_clients(h: &Herdsman, port: u16, clients: usize) -> Value {
    let script = node_framework_app("sio-clients.js");
    let mut child = Command::new("node")
        .args([
            script.as_str(),
            &port.to_string(),
            &clients.to_string(),
            &SOURCES.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| h.fail(&format!("cannot run node: {e}")));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    if wait_child(&mut child, 60 * SECOND).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        h.fail("the socket.io clients did not finish within 60 s");
    }
    let text = reader.join().unwrap_or_default();
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| h.fail(&format!("the clients printed no JSON ({e}): {text:?}")))
}

/// `start tests/apps/node/socketio.js -i 4 --listen ... --balance MODE`.
fn start_socketio(h: &Herdsman, port: u16, balance: &str) -> BTreeSet<i32> {
    let script = node_framework_app("socketio.js");
    h.cmd(&[
        "start",
        script.as_str(),
        "--name",
        "chat",
        "-i",
        "4",
        "--listen",
        &listen_addr(port),
        "--balance",
        balance,
    ])
    .ok();
    pids(&h.wait_online("chat", 4))
}

#[test]
fn sticky_socketio_clients_from_eight_addresses_all_connect_and_each_address_keeps_its_worker() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = start_socketio(&h, port, "sticky");
    let sockets = fd3_inodes(&workers);
    if sockets.len() != 4 || sockets.iter().any(|s| !s.starts_with("socket:[")) {
        h.fail(&format!(
            "each worker has a socket of its own as fd 3: {sockets:?}"
        ));
    }
    let listed: Vec<Value> =
        serde_json::from_str(&h.cmd(&["list", "--json"]).ok().stdout).expect("list --json");
    if listed.iter().any(|w| w["balance"] != "sticky") {
        h.fail(&format!("list --json shows balance sticky: {listed:?}"));
    }
    let described = h.cmd(&["describe", "chat"]).ok();
    assert!(
        described.stdout.contains("balance       sticky"),
        "{described}"
    );

    let seen = socketio_clients(&h, port, 40);
    if seen["ok"] != 40 {
        h.fail(&format!(
            "every socket.io client connects and exchanges messages: {}",
            seen["failed"]
        ));
    }
    let mut by_source: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for client in seen["clients"].as_array().into_iter().flatten() {
        assert_eq!(client["upgraded"], true, "{client}");
        let pids = by_source
            .entry(client["source"].as_str().unwrap_or("?").to_string())
            .or_default();
        pids.extend(
            client["pids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64),
        );
    }
    if by_source.len() != usize::from(SOURCES) || by_source.values().any(|p| p.len() != 1) {
        h.fail(&format!(
            "every client of one source address reaches one worker: {by_source:?}"
        ));
    }
    let used: BTreeSet<i64> = by_source.values().flatten().copied().collect();
    assert!(used.len() >= 2, "8 addresses over 4 workers: {by_source:?}");
}

/// Why the mode exists: with the shared socket each request of a session goes to whichever worker accepts
/// first, and socket.io's long-polling handshake fails on the others ("Session ID unknown").
#[test]
fn shared_socket_fails_socketio_clients_with_the_default_transports() {
    let h = Herdsman::new();
    let port = free_port();
    start_socketio(&h, port, "shared");
    let seen = socketio_clients(&h, port, 40);
    let failed = seen["failed"].as_array().map_or(0, Vec::len);
    if failed == 0 {
        h.fail(&format!(
            "with 4 workers on one shared socket some socket.io clients fail: {seen}"
        ));
    }
}

#[test]
fn hash_spreads_2000_new_connections_over_4_workers_within_20_percent() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = start_balanced(&h, "web", 4, port, "hash");
    h.wait_for("the first answer", 10 * SECOND, || {
        served_pid(port).is_some()
    });
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
                let mut failures = Vec::new();
                for _ in 0..500 {
                    match http_get(port, "/", Duration::from_secs(5)) {
                        Ok(r) if r.status == 200 => {
                            *counts.entry(r.pid.unwrap_or(0)).or_default() += 1
                        }
                        Ok(r) => failures.push(format!("status {}", r.status)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (counts, failures)
            })
        })
        .collect();
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for handle in handles {
        let (c, f) = handle.join().expect("load thread");
        for (pid, n) in c {
            *counts.entry(pid).or_default() += n;
        }
        failures.extend(f);
    }
    if !failures.is_empty() {
        h.fail(&format!(
            "{} of 2000 failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        ));
    }
    let served: BTreeSet<i32> = counts.keys().copied().collect();
    if served != workers || counts.values().any(|&n| !(400..=600).contains(&n)) {
        h.fail(&format!(
            "2000 connections over 4 workers, each within 500 ± 20 %: {counts:?} (workers {workers:?})"
        ));
    }
}

/// The worker the probe (from 127.0.0.1) reaches.
fn probed_worker(h: &Herdsman, port: u16) -> i32 {
    h.wait_value("an answer to 127.0.0.1", 10 * SECOND, || {
        pid_from(1, port).ok()
    })
}

#[test]
fn sticky_loses_no_connection_across_a_kill_9_a_reload_and_a_scale_4_2_4() {
    let h = Herdsman::new();
    let port = free_port();
    start_balanced(&h, "web", 4, port, "sticky");
    let before = sticky_map(&h, port);
    // Only a crash after a stable run (1 s) is restarted at once.
    h.wait_for("every worker up for 1.1 s", 10 * SECOND, || {
        h.workers("web")
            .iter()
            .all(|w| w.uptime_ms.unwrap_or(0) >= 1100)
    });
    let probe = Probe::start(port);
    h.wait_for("the probe's first answers", 10 * SECOND, || {
        probe.ok_count() >= 5
    });
    let more = |what: &str| {
        let ok = probe.ok_count();
        h.wait_for(
            &format!("30 more probe answers {what}"),
            20 * SECOND,
            || probe.ok_count() >= ok + 30,
        );
    };

    // kill -9 the worker the probe reaches: its connections wait on its socket for the replacement.
    let victim = probed_worker(&h, port);
    {
        let _quiet = probe.quiesce();
        kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9 the probe's worker");
    }
    h.wait_for("the killed worker replaced", 10 * SECOND, || {
        !alive(victim)
            && h.workers("web")
                .iter()
                .filter(|w| w.status == "online")
                .count()
                == 4
    });
    more("after the kill");
    let after_kill = sticky_map(&h, port);
    let replaced: BTreeSet<i32> = after_kill.values().copied().collect();
    for (source, pid) in &before {
        // Every address keeps its slot: the same worker, or the victim's replacement.
        if *pid != victim && after_kill[source] != *pid {
            h.fail(&format!("127.0.0.{source} moved from {pid} after a kill of another worker: {before:?} -> {after_kill:?}"));
        }
    }
    assert!(!replaced.contains(&victim));

    h.cmd(&["reload", "web"]).ok();
    more("after the reload");

    h.cmd(&["scale", "web", "2"]).ok();
    assert_eq!(h.workers("web").len(), 2);
    more("after scaling to 2");
    let two: BTreeSet<i32> = sticky_map(&h, port).values().copied().collect();
    assert_eq!(
        two,
        pids(&h.workers("web")),
        "the 8 addresses reach both workers"
    );

    h.cmd(&["scale", "web", "4"]).ok();
    h.wait_online("web", 4);
    more("after scaling back to 4");
    let report = probe.finish();
    assert_no_failures(
        &h,
        "kill -9, reload and scale 4 -> 2 -> 4 of a sticky app",
        &report,
    );
    let described = h.cmd(&["describe", "web"]).ok();
    assert!(described.stdout.contains("(4 sockets)"), "{described}");
}

#[test]
fn sticky_sockets_survive_an_update_and_an_adoption_and_keep_every_client_on_its_worker() {
    let next = crate::update::next_build();
    let h = Herdsman::new();
    let port = free_port();
    let workers = start_balanced(&h, "web", 4, port, "sticky");
    let sockets = fd3_inodes(&workers);
    let before = sticky_map(&h, port);
    let probe = Probe::start(port);
    h.wait_for("the probe's first answers", 10 * SECOND, || {
        probe.ok_count() >= 5
    });

    let out = h
        .cmd(&["update", "--binary", &next.display().to_string()])
        .ok();
    assert!(out.stdout.contains("daemon moved"), "{out}");
    let keeper = h.daemon_pid();
    let held: BTreeSet<String> = (0..128).filter_map(|fd| fd_link(keeper, fd)).collect();
    if !sockets.is_subset(&held) {
        h.fail(&format!(
            "the updated keeper holds every worker's socket {sockets:?}: {held:?}"
        ));
    }
    assert_eq!(
        sticky_map(&h, port),
        before,
        "every address keeps its worker across the update"
    );

    kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill -9 the keeper");
    h.wait_for("the keeper gone", 10 * SECOND, || !alive(keeper));
    let adopted = pids(&h.wait_online("web", 4));
    assert_eq!(adopted, workers, "the workers were adopted");
    let new_keeper = h.daemon_pid();
    let held: BTreeSet<String> = (0..128).filter_map(|fd| fd_link(new_keeper, fd)).collect();
    if !sockets.is_subset(&held) {
        h.fail(&format!(
            "the new keeper took back every worker's socket {sockets:?}: {held:?}"
        ));
    }
    assert_eq!(
        sticky_map(&h, port),
        before,
        "every address keeps its worker across the adoption"
    );

    // The group's order was carried over: a scale down takes exactly the removed slots out.
    h.cmd(&["scale", "web", "2"]).ok();
    let two = pids(&h.workers("web"));
    let now = sticky_map(&h, port);
    if now.values().any(|pid| !two.contains(pid)) {
        h.fail(&format!("after scaling to 2 only {two:?} answer: {now:?}"));
    }
    let ok = probe.ok_count();
    h.wait_for("30 more probe answers", 20 * SECOND, || {
        probe.ok_count() >= ok + 30
    });
    let report = probe.finish();
    assert_no_failures(
        &h,
        "update, keeper kill -9 and scale of a sticky app",
        &report,
    );
}

#[test]
fn a_change_of_balance_in_place_and_a_port_shared_with_a_sticky_app_are_refused() {
    let h = Herdsman::new();
    let port = free_port();
    let dir = h.scratch("balance");
    let script = app_arg("http.js");
    let file = |balance: &str| {
        crate::helpers::write_file(
            &dir,
            "ecosystem.toml",
            &format!(
                "[[apps]]\nname = \"web\"\nscript = \"{script}\"\ninstances = 2\nlisten = \"{}\"\nbalance = \"{balance}\"\n",
                listen_addr(port)
            ),
        )
    };
    let path = file("sticky").display().to_string();
    h.cmd(&["start", path.as_str()]).ok();
    let workers = pids(&h.wait_online("web", 2));

    file("shared");
    h.cmd(&["reload", path.as_str()])
        .fails_with("balance cannot change from \"sticky\" to \"shared\" while the app runs");
    assert_eq!(pids(&h.workers("web")), workers, "nothing changed");

    // Another app on the same port would join the sticky app's group: refused, not bound.
    h.cmd(&[
        "start",
        script.as_str(),
        "--name",
        "other",
        "--listen",
        &listen_addr(port),
        "--balance",
        "hash",
    ])
    .fails_with("already app 'web''s");

    let bad = crate::helpers::write_file(
        &dir,
        "unix.toml",
        "[[apps]]\nname = \"u\"\nscript = \"x.js\"\nlisten = \"unix:/tmp/u.sock\"\nbalance = \"sticky\"\n",
    );
    h.cmd(&["start", &bad.display().to_string()])
        .fails_with("unix.toml:5:11: `balance`: balance \"sticky\" needs TCP addresses");
}

/// What the keeper keeps in systemd's fd store, as systemd would (`FDSTORE=1` adds a descriptor under its
/// `FDNAME`, `FDSTOREREMOVE=1` removes the name's), read from the notify socket until `done` holds.
fn follow_store(
    h: &Herdsman,
    notify: &std::os::unix::net::UnixDatagram,
    store: &mut BTreeMap<String, std::os::fd::OwnedFd>,
    what: &str,
    done: impl Fn(&BTreeMap<String, std::os::fd::OwnedFd>) -> bool,
) {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let deadline = std::time::Instant::now() + 15 * SECOND;
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while !done(store) {
        if std::time::Instant::now() > deadline {
            h.fail(&format!(
                "the fd store never held {what}: {:?}",
                store.keys()
            ));
        }
        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let Ok(message) = recvmsg::<()>(
            notify.as_raw_fd(),
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
        let name = text.lines().find_map(|l| l.strip_prefix("FDNAME="));
        match (name, fd) {
            (Some(name), Some(fd)) if text.contains("FDSTORE=1") => {
                store.insert(name.to_string(), fd);
            }
            (Some(name), _) if text.contains("FDSTOREREMOVE=1") => {
                store.remove(name);
            }
            _ => {}
        }
    }
}

/// The inode of a descriptor of this process.
fn own_inode(fd: &std::os::fd::OwnedFd) -> Option<String> {
    use std::os::fd::AsRawFd;
    fd_link(std::process::id() as i32, fd.as_raw_fd() as u32)
}

/// Under systemd each worker's socket is in the unit's fd store, named after its place in the kernel's
/// group (`-slot0`, `-slot1`, ...: renamed when a closed socket's place is taken by the last one); a keeper
/// started again takes them back in that order, so connections queued meanwhile wait for the new workers.
#[test]
fn a_keeper_restarted_by_systemd_takes_each_workers_socket_back_from_the_store_in_order() {
    use crate::update::fdstore::{receive, start_keeper};
    use std::os::unix::net::UnixDatagram;

    let h = Herdsman::new();
    let port = free_port();
    let notify_path = h.scratch("systemd").join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let notify_name = notify_path.display().to_string();
    let mut first = start_keeper(&h, &notify_name, &[]);
    receive(&h, &notify, "READY=1");
    start_balanced(&h, "web", 3, port, "sticky");
    let name = |position: u32| format!("herdsman-127.0.0.1_{port}-slot{position}");
    let mut store = BTreeMap::new();
    follow_store(&h, &notify, &mut store, "3 sockets", |s| s.len() == 3);
    let by_instance: BTreeMap<u32, String> = h
        .workers("web")
        .iter()
        .filter_map(|w| Some((w.instance as u32, fd_link(w.pid?, 3)?)))
        .collect();
    for position in 0..3 {
        assert_eq!(
            store.get(&name(position)).and_then(own_inode).as_ref(),
            by_instance.get(&position),
            "slot{position} is worker {position}'s socket"
        );
    }

    // Worker 0's slot goes: the kernel moves the last socket (worker 2's) into its place, and so does the
    // store's name.
    let id = h
        .workers("web")
        .iter()
        .find(|w| w.instance == 0)
        .map(|w| w.id.to_string())
        .unwrap_or_else(|| h.fail("no worker 0"));
    h.cmd(&["delete", id.as_str()]).ok();
    let moved = by_instance[&2].clone();
    follow_store(&h, &notify, &mut store, "worker 2's socket as slot0", |s| {
        s.len() == 2 && s.get(&name(0)).and_then(own_inode).as_ref() == Some(&moved)
    });
    assert_eq!(
        store.get(&name(1)).and_then(own_inode).as_ref(),
        by_instance.get(&1)
    );
    let workers = pids(&h.wait_online("web", 2));
    let inodes: BTreeSet<String> = store.values().filter_map(own_inode).collect();
    assert_eq!(
        inodes,
        fd3_inodes(&workers),
        "the stored sockets are the workers'"
    );
    h.cmd(&["save"]).ok();

    let probe = Probe::start(port);
    h.wait_for("the probe's first answers", 10 * SECOND, || {
        probe.ok_count() > 10
    });
    // The keeper dies; systemd's KillMode=mixed kills the rest of the unit. No probe request is in flight
    // meanwhile: one a dying worker had accepted is lost whatever holds the socket.
    let keeper = h.daemon_pid();
    {
        let _quiet = probe.quiesce();
        kill(Pid::from_raw(keeper), Signal::SIGKILL).expect("kill the keeper");
        for &pid in &workers {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_child(&mut first, 10 * SECOND);
        h.wait_for("the workers gone", 10 * SECOND, || {
            workers.iter().all(|&p| !alive(p))
        });
    }
    let passed: Vec<(&std::os::fd::OwnedFd, &str)> =
        store.iter().map(|(name, fd)| (fd, name.as_str())).collect();
    let mut second = start_keeper(&h, &notify_name, &passed);
    // Only once it is up: a command finding no keeper would start one of its own (without the store).
    receive(&h, &notify, "READY=1");
    let new = pids(&h.wait_online("web", 2));
    assert!(new.is_disjoint(&workers));
    assert_eq!(
        fd3_inodes(&new),
        inodes,
        "the new workers have the stored sockets"
    );
    // In the group's order: the first worker started took slot0's socket.
    let first_new = h
        .workers("web")
        .iter()
        .min_by_key(|w| w.instance)
        .and_then(|w| fd_link(w.pid?, 3));
    assert_eq!(
        first_new,
        Some(moved),
        "the first new worker has slot0's socket"
    );
    let ok = probe.ok_count();
    h.wait_for("the new workers to serve", 10 * SECOND, || {
        probe.ok_count() > ok + 10
    });
    let report = probe.finish();
    assert_no_failures(&h, "a keeper restarted by systemd", &report);
    let answered: BTreeSet<i32> = sticky_map(&h, port).into_values().collect();
    assert!(answered.is_subset(&new), "{answered:?} of {new:?}");
    h.cmd(&["kill"]).ok();
    wait_child(&mut second, 10 * SECOND);
}

/// `hash` has no program while every slot is selected; a scale down attaches one over the remaining slots
/// while the removed ones drain, and a scale up detaches it again.
#[test]
fn hash_loses_no_connection_across_a_scale_4_2_4() {
    let h = Herdsman::new();
    let port = free_port();
    start_balanced(&h, "web", 4, port, "hash");
    let probe = Probe::start(port);
    h.wait_for("the probe's first answers", 10 * SECOND, || {
        probe.ok_count() >= 5
    });
    h.cmd(&["scale", "web", "2"]).ok();
    let two = pids(&h.workers("web"));
    let ok = probe.ok_count();
    h.wait_for(
        "30 more probe answers after scaling to 2",
        20 * SECOND,
        || probe.ok_count() >= ok + 30,
    );
    h.cmd(&["scale", "web", "4"]).ok();
    let four = pids(&h.wait_online("web", 4));
    // Every worker takes new connections again (no program left out any socket).
    let mut seen = BTreeSet::new();
    h.wait_for("answers from all 4 workers", 10 * SECOND, || {
        seen.extend(served_pid(port));
        seen == four
    });
    let report = probe.finish();
    assert_no_failures(&h, "scale 4 -> 2 -> 4 of a hash app", &report);
    assert!(two.is_subset(&four));
}
