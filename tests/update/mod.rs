//! Issue 13: `herdsman update` moves the running daemon onto another herdsman executable without
//! restarting any app: the keeper re-executes itself in place (same pid), keeps every worker and every
//! listening socket, and reports the new version; a binary that fails its self-check, or is missing,
//! changes nothing; a keeper in the middle of a reload is updated once the reload is done. Each runs under
//! a probe opening a new connection every few milliseconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::helpers::{
    Herdsman, Probe, SECOND, assert_no_failures, fd_link, free_port, is_helper_process, pids,
    proc_stat, wait_child,
};
use crate::start_http;

/// A second build of herdsman whose version is this one's plus `-next`, built once (in a target directory
/// of its own that starts as hard links to this build's, so only herdsman itself is compiled again).
pub(crate) fn next_build() -> &'static Path {
    static NEXT: OnceLock<PathBuf> = OnceLock::new();
    NEXT.get_or_init(|| {
        let current = PathBuf::from(env!("CARGO_BIN_EXE_herdsman"));
        let profile_dir = current.parent().expect("the binary's directory");
        let target = profile_dir.parent().expect("the target directory");
        let next_target = target.join("update-next");
        let profile = profile_dir.file_name().expect("the profile's name");
        let next_profile = next_target.join(profile);
        if !next_profile.exists() {
            fs::create_dir_all(&next_target).expect("create the second target directory");
            let copied = Command::new("cp")
                .arg("-al")
                .arg(profile_dir)
                .arg(&next_profile)
                .status()
                .expect("run cp");
            assert!(copied.success(), "cp -al of the build failed");
        }
        let version = format!("{}-next", env!("CARGO_PKG_VERSION"));
        let built = Command::new(env!("CARGO"))
            .args(["build", "--bin", "herdsman"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &next_target)
            .env("HERDSMAN_BUILD_VERSION", &version)
            .stdout(Stdio::null())
            .status()
            .expect("run cargo build");
        assert!(built.success(), "the second build of herdsman failed");
        next_profile.join("herdsman")
    })
}

/// `version --json`'s `daemon` object.
fn daemon_version(h: &Herdsman) -> Value {
    let out = h.cmd(&["version", "--json"]).ok();
    let value: Value = serde_json::from_str(&out.stdout).expect("version --json is JSON");
    value["daemon"].clone()
}

/// The inode of the listening socket each worker has as fd 3.
fn socket_inodes(workers: &std::collections::BTreeSet<i32>) -> std::collections::BTreeSet<String> {
    workers.iter().filter_map(|&pid| fd_link(pid, 3)).collect()
}

#[test]
fn update_moves_the_daemon_onto_a_new_build_with_no_app_restarted() {
    let next = next_build();
    let h = Herdsman::new();
    let port = free_port();
    let workers = pids(&start_http(&h, "web", 4, port));
    let keeper = h.daemon_pid();
    let sockets = socket_inodes(&workers);
    assert_eq!(
        sockets.len(),
        1,
        "the workers share one socket: {sockets:?}"
    );
    let keeper_sockets: Vec<String> = (0..64).filter_map(|fd| fd_link(keeper, fd)).collect();
    let socket = sockets.iter().next().cloned().unwrap_or_default();
    assert!(
        keeper_sockets.contains(&socket),
        "the keeper holds the app's socket {socket}: {keeper_sockets:?}"
    );
    let before = daemon_version(&h);

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 20
    });
    let out = h
        .cmd(&["update", "--binary", &next.display().to_string()])
        .ok();
    assert!(out.stdout.contains("daemon moved"), "{out}");
    let ok = probe.ok_count();
    h.wait_for("the probe to go on after the update", 10 * SECOND, || {
        probe.ok_count() > ok + 20
    });
    let report = probe.finish();
    assert_no_failures(&h, "during the update", &report);

    let after = daemon_version(&h);
    assert_eq!(
        after["version"],
        format!("{}-next", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(after["keeper_pid"], before["keeper_pid"]);
    assert_eq!(after["updates"], 1);
    assert_ne!(after["controller_pid"], before["controller_pid"]);
    assert_eq!(h.daemon_pid(), keeper);
    assert_eq!(pids(&h.workers("web")), workers, "no worker was restarted");
    let keeper_sockets: Vec<String> = (0..64).filter_map(|fd| fd_link(keeper, fd)).collect();
    assert!(
        keeper_sockets.contains(&socket),
        "the keeper still holds the same socket {socket}: {keeper_sockets:?}"
    );

    // The new image still parents and restarts the workers.
    let victim = *workers.iter().next().expect("a worker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill a worker");
    h.wait_for("a replacement of the killed worker", 10 * SECOND, || {
        let now = pids(&h.wait_online("web", 4));
        !now.contains(&victim) && now.len() == 4
    });
    let web = h.workers("web");
    assert_eq!(web.iter().map(|w| w.restarts).sum::<u64>(), 1, "{web:?}");
}

#[test]
fn an_update_to_a_binary_that_fails_its_self_check_or_is_missing_changes_nothing() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = pids(&start_http(&h, "web", 2, port));
    let before = daemon_version(&h);
    let scratch = h.scratch("bin");
    let broken = scratch.join("herdsman");
    fs::write(
        &broken,
        "#!/bin/sh\necho 'cannot start: libfoo missing' >&2\nexit 3\n",
    )
    .expect("write the broken binary");
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 10
    });
    let out = h
        .cmd(&["update", "--binary", &broken.display().to_string()])
        .fails_with("self-check");
    assert!(out.stderr.contains("libfoo missing"), "{out}");
    assert!(out.stderr.contains("nothing was changed"), "{out}");
    h.cmd(&[
        "update",
        "--binary",
        &scratch.join("absent").display().to_string(),
    ])
    .fails_with("not a file");
    let report = probe.finish();
    assert_no_failures(&h, "around the refused updates", &report);

    let after = daemon_version(&h);
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["keeper_pid"], before["keeper_pid"]);
    assert_eq!(after["controller_pid"], before["controller_pid"]);
    assert_eq!(after["updates"], 0);
    assert_eq!(pids(&h.workers("web")), workers);
}

#[test]
fn an_update_during_a_reload_is_made_once_the_reload_is_done() {
    let h = Herdsman::new();
    let port = free_port();
    // slow.js listens 1.5 s after it starts: the reload takes a while.
    h.cmd(&[
        "start",
        "tests/apps/slow.js",
        "--name",
        "slow",
        "-i",
        "2",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .ok();
    let old = pids(&h.wait_online("slow", 2));
    // Another path to the same build: an update needs no new version to be made.
    let scratch = h.scratch("bin");
    let copy = scratch.join("herdsman");
    fs::hard_link(env!("CARGO_BIN_EXE_herdsman"), &copy)
        .or_else(|_| fs::copy(env!("CARGO_BIN_EXE_herdsman"), &copy).map(|_| ()))
        .expect("link the binary");
    let keeper = h.daemon_pid();

    let probe = Probe::start(port);
    h.wait_for("the probe to be served", 10 * SECOND, || {
        probe.ok_count() > 10
    });
    let mut reload = h.command();
    reload
        .args(["reload", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut reload = reload.spawn().expect("start the reload");
    // A new worker is the keeper's child (the `reload` command itself is marked with the home too).
    h.wait_for("the reload to start a new worker", 10 * SECOND, || {
        h.marked_pids().into_iter().any(|p| {
            !old.contains(&p)
                && !is_helper_process(p)
                && proc_stat(p).is_some_and(|s| s.ppid == keeper)
        })
    });
    let out = h
        .cmd(&["update", "--binary", &copy.display().to_string()])
        .timeout(90 * SECOND)
        .ok();
    assert!(out.stdout.contains("daemon moved"), "{out}");
    match wait_child(&mut reload, 60 * SECOND) {
        Some(status) if status.success() => {}
        other => h.fail(&format!("the reload did not succeed: {other:?}")),
    }
    let report = probe.finish();
    assert_no_failures(&h, "during the reload and the update", &report);
    let now = pids(&h.wait_online("slow", 2));
    assert_eq!(now.len(), 2);
    assert!(now.is_disjoint(&old), "the reload replaced every worker");
    assert_eq!(h.daemon_pid(), keeper);
    let version = daemon_version(&h);
    assert_eq!(version["updates"], 1);
    assert_eq!(version["binary"], copy.display().to_string());
}
pub(crate) mod fdstore;
