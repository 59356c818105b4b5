//! Filesystem safety of a root daemon: log paths and the home are opened without following links, only
//! in directories no other user can write, and only as regular files; the Node preload for `--user` apps
//! lives where no other user can block it and comes back when it is deleted; a failing rotation does not
//! flood the daemon's log, and the daemon's log itself is rotated.
//!
//! The tests that need a second user (`other_user`) say SKIPPED and return when not run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Pid, Uid, chown, mkfifo};

use crate::helpers::{
    Herdsman, OTHER_USER, SECOND, free_port, listen_addr, open_path_to, other_user, pids,
    run_as_other, wait_served_by, write_file,
};

/// A root-only file (0600) holding `text`, in a scratch directory of its own: what an attack aims at.
fn root_only_file(h: &Herdsman, text: &str) -> PathBuf {
    let path = write_file(&h.scratch("root-only"), "target", text);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod the target");
    path
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

/// Gives `dir` to the other user and makes it reachable for them.
fn give_to_other(dir: &Path, (uid, gid): (u32, u32)) {
    chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("chown the directory");
    open_path_to(dir);
}

/// Runs `script` as the other user and requires it to succeed.
#[track_caller]
fn as_other(h: &Herdsman, script: &str) {
    let out = run_as_other(script, 10 * SECOND);
    if !out.success() {
        h.fail(&format!("as {OTHER_USER}: {script}\n{out}"));
    }
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

/// The app still runs the same process, and `refused` was not created.
#[track_caller]
fn assert_untouched(h: &Herdsman, name: &str, pid: i32, refused: &str) {
    let list = h.list();
    if list.iter().any(|p| p.name == refused) {
        h.fail(&format!("the refused app `{refused}` exists: {list:?}"));
    }
    let kept = h.workers(name);
    if kept.len() != 1 || kept[0].pid != Some(pid) || kept[0].status != "online" {
        h.fail(&format!(
            "`{name}` (pid {pid}) must be left alone: {kept:?}"
        ));
    }
}

// =============================================================================================
// App log paths
// =============================================================================================

#[test]
fn a_log_in_a_directory_another_user_owns_is_refused_and_its_link_is_not_followed() {
    let Some(other) = other_user() else {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let keep = start_sleeper(&h, "keep");
    let target = root_only_file(&h, "ROOT-ONLY-CONTENT\n");
    let dir = h.scratch("app-logs");
    give_to_other(&dir, other);
    as_other(
        &h,
        &format!("ln -s '{}' '{}/out.log'", target.display(), dir.display()),
    );
    let out_log = dir.join("out.log");
    let out = h
        .cmd(&[
            "start",
            "/bin/sh",
            "--name",
            "sym",
            "--user",
            OTHER_USER,
            "-o",
            &out_log.display().to_string(),
            "--",
            "-c",
            "echo attacker-controlled-line; exec sleep 1000",
        ])
        .fails_with("is owned by uid");
    if !out.stderr.contains(&dir.display().to_string()) || !out.stderr.contains("sym") {
        h.fail(&format!(
            "the error must name the app and the directory\n{out}"
        ));
    }
    if read(&target) != "ROOT-ONLY-CONTENT\n" {
        h.fail(&format!(
            "the link's target was written: {:?}",
            read(&target)
        ));
    }
    assert_untouched(&h, "keep", keep, "sym");
}

#[test]
fn a_log_swapped_for_a_link_later_is_neither_written_nor_flushed_through_it() {
    let Some(other) = other_user() else {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let target = root_only_file(&h, "ROOT-ONLY-CONTENT\n");
    let dir = h.scratch("app-logs");
    let out_log = dir.join("out.log");
    h.cmd(&[
        "start",
        "/bin/sh",
        "--name",
        "tick",
        "--user",
        OTHER_USER,
        "-o",
        &out_log.display().to_string(),
        "--",
        "-c",
        "while :; do echo tick; sleep 0.05; done",
    ])
    .ok();
    h.wait_for("the first tick in the log", 10 * SECOND, || {
        read(&out_log).contains("tick")
    });
    // The directory changes hands while the app runs; its new owner swaps the log for a link.
    give_to_other(&dir, other);
    as_other(
        &h,
        &format!(
            "mv '{d}/out.log' '{d}/moved.log' && ln -s '{t}' '{d}/out.log'",
            d = dir.display(),
            t = target.display()
        ),
    );
    let moved = dir.join("moved.log");
    let ticks = read(&moved).matches("tick").count();
    h.wait_for(
        "ticks to go on into the file the keeper holds",
        10 * SECOND,
        || read(&moved).matches("tick").count() >= ticks + 10,
    );
    h.assert_stays("the link's target is never written", SECOND, || {
        read(&target) == "ROOT-ONLY-CONTENT\n"
    });
    h.cmd(&["flush", "tick"]).fails_with("is owned by uid");
    if read(&target) != "ROOT-ONLY-CONTENT\n" {
        h.fail(&format!(
            "flush truncated the link's target: {:?}",
            read(&target)
        ));
    }
}

#[test]
fn a_fifo_as_a_log_path_fails_the_start_at_once_and_the_daemon_goes_on() {
    let h = Herdsman::new();
    let keep = start_sleeper(&h, "keep");
    let fifo = h.scratch("fifo").join("out.fifo");
    mkfifo(&fifo, Mode::from_bits_truncate(0o600)).expect("mkfifo");
    for flag in ["-o", "-e"] {
        let out = h
            .cmd(&[
                "start",
                "/bin/sleep",
                "--name",
                "fifo",
                flag,
                &fifo.display().to_string(),
                "--",
                "1000",
            ])
            .timeout(10 * SECOND)
            .fails_with("not a regular file");
        if !out.stderr.contains(&fifo.display().to_string()) || !out.stderr.contains("fifo") {
            h.fail(&format!("the error must name the app and the path\n{out}"));
        }
        assert_untouched(&h, "keep", keep, "fifo");
    }
}

#[test]
fn a_missing_log_directory_is_created_through_a_trusted_link_only() {
    let h = Herdsman::new();
    let base = h.scratch("logs");
    // A link in a directory only its owner can write (a deploy's `current`) is followed.
    let elsewhere = h.scratch("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, base.join("current")).expect("symlink");
    let through_link = base.join("current").join("new").join("out.log");
    h.cmd(&[
        "start",
        "/bin/sh",
        "--name",
        "linked",
        "-o",
        &through_link.display().to_string(),
        "--",
        "-c",
        "echo through; exec sleep 1000",
    ])
    .ok();
    h.wait_for("the line in the log behind the link", 10 * SECOND, || {
        read(&elsewhere.join("new").join("out.log")).contains("through")
    });
    // Another user's link in a directory everyone can write (sticky, as /tmp) is not.
    if let Some((uid, _)) = other_user() {
        let shared = h.scratch("shared");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
        let target = h.scratch("target");
        let link = shared.join("theirs");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        std::os::unix::fs::lchown(&link, Some(uid), None).expect("lchown the link");
        h.cmd(&[
            "start",
            "/bin/sleep",
            "--name",
            "theirs",
            "-o",
            &link.join("new").join("out.log").display().to_string(),
            "--",
            "1000",
        ])
        .fails_with("in a directory others can write");
        if target.join("new").exists() {
            h.fail("a directory was created through another user's link");
        }
    } else {
        eprintln!("SKIPPED the other user's link: the test process is not root");
    }
    let fresh = base.join("a").join("b").join("out.log");
    h.cmd(&[
        "start",
        "/bin/sh",
        "--name",
        "fresh",
        "-o",
        &fresh.display().to_string(),
        "--",
        "-c",
        "echo hello; exec sleep 1000",
    ])
    .ok();
    h.wait_for("the line in the new directory's log", 10 * SECOND, || {
        read(&fresh).contains("hello")
    });
}

#[test]
fn dev_null_as_a_log_path_discards_the_lines() {
    let h = Herdsman::new();
    h.cmd(&[
        "start",
        "/bin/sh",
        "--name",
        "quiet",
        "-o",
        "/dev/null",
        "--",
        "-c",
        "while :; do echo discarded; sleep 0.1; done",
    ])
    .ok();
    h.wait_online("quiet", 1);
    h.cmd(&["flush", "quiet"]).ok();
    let meta = fs::metadata("/dev/null").expect("stat /dev/null");
    if !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) {
        h.fail("/dev/null is not a character device any more");
    }
}

// =============================================================================================
// The home
// =============================================================================================

/// Runs `herdsman daemon --foreground` on this home and requires it to refuse with `needle`.
#[track_caller]
fn daemon_refuses(h: &Herdsman, needle: &str) {
    h.cmd(&["daemon", "--foreground"])
        .timeout(10 * SECOND)
        .fails_with(needle);
}

#[test]
fn a_home_another_user_owns_is_refused_and_nothing_in_it_is_followed() {
    let Some(other) = other_user() else {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let target = root_only_file(&h, "ROOT-ONLY-CONTENT\n");
    fs::create_dir(h.home()).expect("create the home");
    give_to_other(h.home(), other);
    as_other(
        &h,
        &format!(
            "ln -s '{}' '{}/daemon.pid'",
            target.display(),
            h.home().display()
        ),
    );
    let mode_before = fs::metadata(h.home())
        .expect("stat the home")
        .permissions()
        .mode();
    daemon_refuses(&h, "is owned by uid");
    h.cmd(&["start", "/bin/sleep", "--name", "s", "--", "1000"])
        .fails_with("is owned by uid");
    if read(&target) != "ROOT-ONLY-CONTENT\n" {
        h.fail(&format!(
            "the link's target was written: {:?}",
            read(&target)
        ));
    }
    let mode = fs::metadata(h.home())
        .expect("stat the home")
        .permissions()
        .mode();
    if mode != mode_before {
        h.fail(&format!(
            "the mode of another user's home changed from {mode_before:o} to {mode:o}"
        ));
    }
    if h.home().join("logs").exists() || h.home().join("node").exists() {
        h.fail("the daemon created directories in another user's home");
    }
}

/// Puts something in a fresh home, given the path of a root-only file.
type Plant = dyn Fn(&Herdsman, &Path);

#[test]
fn links_and_loose_modes_in_the_home_are_refused() {
    let cases: [(&str, &Plant, &str); 4] = [
        (
            "daemon.pid is a link",
            &|h, target| {
                std::os::unix::fs::symlink(target, h.home().join("daemon.pid")).expect("symlink")
            },
            "daemon.pid",
        ),
        (
            "the home is group-writable",
            &|h, _| {
                fs::set_permissions(h.home(), fs::Permissions::from_mode(0o770)).expect("chmod")
            },
            "writable by its group or others",
        ),
        (
            "node/ is a link",
            &|h, target| {
                let dir = target.parent().expect("the target's directory");
                std::os::unix::fs::symlink(dir, h.home().join("node")).expect("symlink")
            },
            "symbolic link",
        ),
        (
            "logs/ is world-writable",
            &|h, _| {
                let logs = h.home().join("logs");
                fs::create_dir(&logs).expect("mkdir logs");
                fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).expect("chmod")
            },
            "writable by its group or others",
        ),
    ];
    for (what, plant, needle) in cases {
        let h = Herdsman::new();
        let target = root_only_file(&h, "ROOT-ONLY-CONTENT\n");
        fs::create_dir(h.home()).expect("create the home");
        fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
        plant(&h, &target);
        let out = h
            .cmd(&["daemon", "--foreground"])
            .timeout(10 * SECOND)
            .run();
        if out.code() != Some(1) || !out.stderr.contains(needle) {
            h.fail(&format!(
                "{what}: the daemon must refuse naming {needle:?}\n{out}"
            ));
        }
        if read(&target) != "ROOT-ONLY-CONTENT\n" {
            h.fail(&format!(
                "{what}: the target was written: {:?}",
                read(&target)
            ));
        }
    }
}

// =============================================================================================
// The Node preload of `--user` apps
// =============================================================================================

/// The file a Node worker `--require`s, from its `NODE_OPTIONS`.
fn preload_of(h: &Herdsman, pid: i32) -> PathBuf {
    let environ = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| h.fail(&format!("cannot read the environment of {pid}: {e}")));
    let options = environ
        .split(|&b| b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|v| v.strip_prefix("NODE_OPTIONS="))
        .unwrap_or_else(|| h.fail(&format!("worker {pid} has no NODE_OPTIONS")));
    let quoted = options
        .split("--require \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| h.fail(&format!("no --require in {options:?}")));
    PathBuf::from(quoted)
}

/// Starts `tests/apps/http.js` as the other user on a fresh port, with `TMPDIR` set to `tmp` (where an
/// older herdsman kept the shared preload); returns the port.
#[track_caller]
fn start_user_node_app(h: &Herdsman, tmp: &Path) -> u16 {
    let port = free_port();
    h.cmd(&[
        "start",
        "tests/apps/http.js",
        "--name",
        "web",
        "--user",
        OTHER_USER,
        "--listen",
        &listen_addr(port),
    ])
    .env("TMPDIR", tmp.display().to_string())
    .ok();
    let workers = h.wait_online("web", 1);
    wait_served_by(h, port, &pids(&workers), 10 * SECOND);
    port
}

/// A scratch directory shaped like /tmp (1777), that the other user can reach.
fn shared_tmp(h: &Herdsman) -> PathBuf {
    let tmp = h.scratch("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    open_path_to(&tmp);
    tmp
}

#[test]
fn a_user_node_app_starts_though_another_user_took_the_old_preload_directory() {
    let Some((uid, _)) = other_user() else {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    };
    let h = Herdsman::new();
    let tmp = shared_tmp(&h);
    as_other(&h, &format!("mkdir '{}/herdsman-preload-0'", tmp.display()));
    start_user_node_app(&h, &tmp);
    let pid = h.workers("web")[0].pid.expect("an online worker has a pid");
    let preload = preload_of(&h, pid);
    let meta = fs::symlink_metadata(&preload).expect("stat the preload");
    if std::os::unix::fs::MetadataExt::uid(&meta) == uid || preload.starts_with(&tmp) {
        h.fail(&format!(
            "the preload {} is not the daemon's own",
            preload.display()
        ));
    }
}

#[test]
fn a_deleted_preload_is_written_again_before_the_next_start() {
    if other_user().is_none() {
        println!("SKIPPED: needs root to switch to a second user");
        return;
    }
    let h = Herdsman::new();
    let tmp = shared_tmp(&h);
    let port = start_user_node_app(&h, &tmp);
    let old = h.workers("web")[0].pid.expect("an online worker has a pid");
    let preload = preload_of(&h, old);
    // A tmp cleaner (or anyone) removes it while the app runs.
    fs::remove_file(&preload).expect("remove the preload");
    kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill the worker");
    let new = h.wait_value("a new worker online", 10 * SECOND, || {
        h.workers("web")
            .into_iter()
            .find(|w| w.status == "online" && w.pid.is_some_and(|p| p != old))
    });
    wait_served_by(&h, port, &pids(&[new]), 10 * SECOND);
    if !preload.is_file() {
        h.fail(&format!("{} was not written again", preload.display()));
    }
}

// =============================================================================================
// Rotation failures and the daemon's own log
// =============================================================================================

#[test]
fn a_rotation_that_keeps_failing_warns_a_bounded_number_of_times() {
    let h = Herdsman::new();
    let dir = h.scratch("logs");
    let out_log = dir.join("out.log");
    // `out.log.1` is a directory: the rotation cannot remove it (keep 1), and fails every time.
    fs::create_dir(dir.join("out.log.1")).expect("mkdir out.log.1");
    h.cmd(&[
        "start",
        "/bin/sh",
        "--name",
        "chatty",
        "--log-max-size",
        "1K",
        "--log-keep",
        "1",
        "-o",
        &out_log.display().to_string(),
        "--",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo \"line $i padding padding padding\"; i=$((i+1)); done; exec sleep 1000",
    ])
    .ok();
    h.wait_for("the 300 lines in the log", 10 * SECOND, || {
        read(&out_log).contains("line 299 ")
    });
    let daemon_log = read(&h.home().join("daemon.log"));
    let warnings = daemon_log.matches("cannot rotate").count();
    if !(1..=3).contains(&warnings) {
        h.fail(&format!(
            "expected one warning (a few at most) for the failing rotation, got {warnings}"
        ));
    }
}

#[test]
fn a_large_daemon_log_is_rotated_and_the_daemon_goes_on_writing_the_new_one() {
    let h = Herdsman::new();
    fs::create_dir(h.home()).expect("create the home");
    fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
    let daemon_log = h.home().join("daemon.log");
    let mut old = "old line of an earlier daemon\n".repeat(400_000); // 12 MB
    old.push_str("LAST-OLD-LINE\n");
    fs::write(&daemon_log, &old).expect("write the old log");
    let rotated = h.home().join("daemon.log.1");
    start_sleeper(&h, "first");
    h.wait_for("daemon.log rotated to daemon.log.1", 10 * SECOND, || {
        read(&rotated).contains("LAST-OLD-LINE\n")
    });
    start_sleeper(&h, "second");
    h.wait_for(
        "the daemon to log into the new daemon.log",
        10 * SECOND,
        || {
            let now = read(&daemon_log);
            now.contains("app=second") && !now.contains("old line")
        },
    );
}
