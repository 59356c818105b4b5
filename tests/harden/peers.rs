//! Another user is refused: on the control socket (SO_PEERCRED: the daemon's own user or root) and on the
//! keeper's (its controller only), with a clear answer and one line in the daemon's log however often they
//! try; root may use any user's daemon; socket files someone else owns or can write stop the daemon at start.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, chown};

use super::shared_binary;
use crate::helpers::{
    Herdsman, OTHER_USER, Output, SECOND, open_path_to, other_user, proc_uids, run_as_other,
};

/// `herdsman ARGS` as the other user, `times` times in a row with `HERDSMAN_HOME=home`; the output of all.
fn herdsman_as_other(home: &Path, args: &str, times: usize) -> Output {
    let script = format!(
        "cd / && for i in $(seq {times}); do HERDSMAN_HOME='{home}' '{exe}' {args}; echo \"exit=$?\"; done",
        home = home.display(),
        exe = shared_binary().display(),
    );
    run_as_other(&script, 60 * SECOND)
}

/// Lines of the daemon's log holding every one of `needles`.
fn log_lines_with(h: &Herdsman, needles: &[&str]) -> usize {
    fs::read_to_string(h.home().join("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Starts `/bin/sleep` as app `name`; returns its pid once online.
#[track_caller]
fn start_sleeper(h: &Herdsman, name: &str) -> i32 {
    h.cmd(&["start", "/bin/sleep", "--name", name, "--", "1000"])
        .ok();
    h.wait_online(name, 1)[0]
        .pid
        .expect("an online worker has a pid")
}

#[test]
fn another_user_is_refused_on_both_sockets_with_a_reason_and_logged_once() {
    let Some((uid, gid)) = other_user() else {
        println!("SKIPPED: needs root to create and switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let keep = start_sleeper(&h, "keep");
    // Only the files' modes kept the other user out so far; open them, so that what refuses is the daemon.
    open_path_to(h.home());
    for socket in ["herdsman.sock", "keeper.sock"] {
        fs::set_permissions(h.home().join(socket), fs::Permissions::from_mode(0o666))
            .expect("chmod the socket");
    }

    let attempts = 10;
    let control = herdsman_as_other(h.home(), "list", attempts);
    let refused = control
        .stderr
        .matches("may not use the daemon of uid 0")
        .count();
    if refused != attempts || control.stdout.matches("exit=1").count() != attempts {
        h.fail(&format!(
            "each of {attempts} `list` calls of uid {uid} must exit 1 saying it is refused\n{control}"
        ));
    }

    // The keeper's socket, reached through a link in a home of the other user's own.
    let theirs = h.scratch("their-home");
    chown(&theirs, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("chown");
    open_path_to(&theirs);
    let keeper_sock = h.home().join("keeper.sock");
    let link = run_as_other(
        &format!(
            "ln -s '{}' '{}/herdsman.sock'",
            keeper_sock.display(),
            theirs.display()
        ),
        10 * SECOND,
    );
    if !link.success() {
        h.fail(&format!("as {OTHER_USER}: cannot make the link\n{link}"));
    }
    let keeper = herdsman_as_other(&theirs, "list", attempts);
    let refused = keeper
        .stderr
        .matches("only the controller this keeper started may connect")
        .count();
    if refused != attempts || keeper.stdout.matches("exit=1").count() != attempts {
        h.fail(&format!(
            "each of {attempts} connections of uid {uid} to keeper.sock must be refused with the reason\n{keeper}"
        ));
    }
    // Root is no controller either.
    let root_link = h.scratch("root-home");
    std::os::unix::fs::symlink(&keeper_sock, root_link.join("herdsman.sock")).expect("symlink");
    let out = h
        .command()
        .env("HERDSMAN_HOME", &root_link)
        .args(["list"])
        .output()
        .expect("run herdsman list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1)
        || !stderr.contains("only the controller this keeper started may connect")
    {
        h.fail(&format!(
            "root's connection to keeper.sock must be refused too: {:?}\n{stderr}",
            out.status
        ));
    }

    let peer = format!("peer_uid={uid}");
    h.wait_for(
        "one refusal of each socket in the daemon's log",
        10 * SECOND,
        || {
            log_lines_with(&h, &["refused a connection to the control socket", &peer]) == 1
                && log_lines_with(&h, &["refused a connection to the keeper socket", &peer]) == 1
        },
    );
    h.assert_stays(
        "still one line each (not one per attempt)",
        SECOND / 2,
        || {
            log_lines_with(&h, &["refused a connection to the control socket", &peer]) == 1
                && log_lines_with(&h, &["refused a connection to the keeper socket", &peer]) == 1
        },
    );
    let kept = h.workers("keep");
    if kept.len() != 1 || kept[0].pid != Some(keep) || kept[0].status != "online" {
        h.fail(&format!("`keep` (pid {keep}) must be left alone: {kept:?}"));
    }
}

#[test]
fn root_may_drive_the_daemon_of_another_user() {
    let Some((uid, gid)) = other_user() else {
        println!("SKIPPED: needs root to create and switch to a second user");
        return;
    };
    let h = Herdsman::new();
    fs::create_dir(h.home()).expect("create the home");
    fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
    chown(h.home(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("chown");
    open_path_to(h.home().parent().expect("the home's parent"));
    let started = herdsman_as_other(h.home(), "start /bin/sleep --name theirs -- 1000", 1);
    if !started.stdout.contains("exit=0") {
        h.fail(&format!(
            "{OTHER_USER} cannot start its own daemon\n{started}"
        ));
    }
    let daemon = h.daemon_pid();
    if proc_uids(daemon).and_then(|u| u.first().copied()) != Some(uid) {
        h.fail(&format!("the daemon {daemon} does not run as uid {uid}"));
    }
    // Root's CLI, on the other user's daemon.
    let pid = h.wait_online("theirs", 1)[0]
        .pid
        .expect("an online worker has a pid");
    h.cmd(&["stop", "theirs"]).ok();
    let stopped = h.workers("theirs");
    if stopped.len() != 1 || stopped[0].status != "stopped" || crate::helpers::alive(pid) {
        h.fail(&format!("root's `stop` must stop their app: {stopped:?}"));
    }
    if log_lines_with(&h, &["refused a connection"]) != 0 {
        h.fail("root was refused");
    }
}

/// Binds a Unix socket at `path` and leaves its file behind (as a dead daemon would).
fn leave_socket_file(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind a socket file"));
}

#[test]
fn socket_files_someone_else_owns_or_can_write_stop_the_daemon_at_start() {
    type Plant = dyn Fn(&Path);
    let mut cases: Vec<(&str, Box<Plant>, &str)> = vec![
        (
            "keeper.sock is group-writable",
            Box::new(|home: &Path| {
                let path = home.join("keeper.sock");
                leave_socket_file(&path);
                fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).expect("chmod");
            }),
            "keeper.sock is writable by its group or others (mode 660)",
        ),
        (
            "herdsman.sock is world-writable",
            Box::new(|home: &Path| {
                let path = home.join("herdsman.sock");
                leave_socket_file(&path);
                fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).expect("chmod");
            }),
            "herdsman.sock is writable by its group or others (mode 777)",
        ),
    ];
    if let Some((uid, gid)) = other_user() {
        cases.push((
            "herdsman.sock is another user's",
            Box::new(move |home: &Path| {
                let path = home.join("herdsman.sock");
                leave_socket_file(&path);
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
                chown(&path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("chown");
            }),
            "herdsman.sock is owned by uid",
        ));
    } else {
        println!("SKIPPED the other user's socket file: needs root");
    }
    for (what, plant, needle) in cases {
        let h = Herdsman::new();
        fs::create_dir(h.home()).expect("create the home");
        fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
        plant(h.home());
        let out = h
            .cmd(&["daemon", "--foreground"])
            .timeout(10 * SECOND)
            .run();
        if out.code() != Some(1) || !out.stderr.contains(needle) {
            h.fail(&format!(
                "{what}: the daemon must refuse naming {needle:?}\n{out}"
            ));
        }
        // A command that starts the daemon says why it could not.
        h.cmd(&["start", "/bin/sleep", "--name", "s", "--", "1000"])
            .timeout(20 * SECOND)
            .fails_with(needle);
        if !h.marked_pids().is_empty() {
            h.fail(&format!("{what}: a daemon runs: {:?}", h.marked_pids()));
        }
    }
}
