//! Limits: a daemon started under a low `RLIMIT_NOFILE` or `RLIMIT_NPROC` fails the start that hits the limit
//! with an error naming the app and the cause, and nothing else changes (the other apps keep their pids, the
//! daemon answers, a start after room came back works). And no descriptor leaks: the keeper, its controller
//! and the log keeper hold as many descriptors after 1000 starts and deletes as before.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, chown};

use crate::helpers::{
    Herdsman, SECOND, Spawned, fd_link, fds, free_port, is_controller, is_log_keeper, listen_addr,
    open_path_to, poll,
};

/// Starts `herdsman daemon --foreground` on this home under `prefix` (`prlimit ...`, `setpriv ...`), and
/// waits until it answers.
#[track_caller]
fn limited_daemon(h: &Herdsman, prefix: &[String]) -> Spawned {
    let mut command = Command::new(&prefix[0]);
    command
        .args(&prefix[1..])
        .arg(super::shared_binary())
        .args(["daemon", "--foreground"])
        .env("HERDSMAN_HOME", h.home())
        .current_dir("/");
    let mut daemon = Spawned::spawn(command, &h.scratch("daemon"), "daemon");
    h.wait_for("the limited daemon to answer", 10 * SECOND, || {
        if daemon.try_wait().is_some() {
            h.fail(&format!("the daemon exited\n{}", daemon.describe()));
        }
        h.home().join("herdsman.sock").exists() && h.cmd(&["list", "--json"]).run().success()
    });
    daemon
}

/// Starts app NAME, a shell that writes `hello NAME` and then sleeps (not required to succeed); with
/// `listen`, on a socket of its own (which the daemon holds: one descriptor more per app).
fn start_sleeper(h: &Herdsman, name: &str, listen: bool) -> crate::helpers::Output {
    let script = format!("echo hello {name}; exec sleep 1000");
    let mut args = vec!["start", "/bin/sh", "--name", name];
    let address = listen_addr(free_port());
    if listen {
        args.extend(["--listen", &address]);
    }
    args.extend(["--", "-c", &script]);
    h.cmd(&args).run()
}

/// The pid of each app's worker.
fn pids_by_app(h: &Herdsman) -> BTreeMap<String, Option<i32>> {
    h.list().into_iter().map(|p| (p.name, p.pid)).collect()
}

/// Starts sleepers until a start fails; requires the failure to name the app and one of `causes`, the
/// apps started before to be untouched, and a start to work again once `free_room` ran.
#[track_caller]
fn starts_until_the_limit(
    h: &Herdsman,
    listen: bool,
    causes: &[&str],
    free_room: impl Fn(&Herdsman),
) {
    let mut started = Vec::new();
    let failed = loop {
        let name = format!("s{}", started.len());
        let out = start_sleeper(h, &name, listen);
        if !out.success() {
            break (name, out);
        }
        started.push(name);
        if started.len() > 200 {
            h.fail("200 apps started: the limit was never reached");
        }
    };
    let (name, out) = failed;
    println!("the start that hit the limit: {}", out.stderr.trim());
    if started.is_empty() {
        h.fail(&format!("not even one app could start\n{out}"));
    }
    if out.code() != Some(1)
        || !out.stderr.contains(&format!("'{name}'"))
        || !causes.iter().any(|c| out.stderr.contains(c))
    {
        h.fail(&format!(
            "the start that hit the limit must fail naming the app `{name}` and one of {causes:?}\n{out}"
        ));
    }
    let before: BTreeMap<String, Option<i32>> = pids_by_app(h)
        .into_iter()
        .filter(|(n, _)| started.contains(n))
        .collect();
    if before.len() != started.len() || before.values().any(Option::is_none) {
        h.fail(&format!(
            "every app started before must still run: {before:?}"
        ));
    }
    // Another failing start, a list, a describe: the others keep their pids.
    let again = start_sleeper(h, &name, listen);
    h.cmd(&["describe", &started[0]]).ok();
    let after: BTreeMap<String, Option<i32>> = pids_by_app(h)
        .into_iter()
        .filter(|(n, _)| started.contains(n))
        .collect();
    if after != before {
        h.fail(&format!(
            "the failed starts changed other apps\nbefore: {before:?}\nafter:  {after:?}\n{again}"
        ));
    }
    // Each app started before the limit had its output taken to its log (no pipe lost on the way).
    for app in &started {
        h.wait_for(&format!("`hello {app}` in its log"), 10 * SECOND, || {
            h.out_log(app).contains(&format!("hello {app}"))
        });
    }
    // Room comes back: the same start works.
    free_room(h);
    h.cmd(&["delete", &name]).run();
    let out = start_sleeper(h, &name, listen);
    if !out.success() {
        h.fail(&format!(
            "the start must work once there is room again\n{out}"
        ));
    }
    h.wait_online(&name, 1);
    h.wait_for(&format!("`hello {name}` in its log"), 10 * SECOND, || {
        h.out_log(&name).contains(&format!("hello {name}"))
    });
}

#[test]
fn a_low_descriptor_limit_fails_only_the_start_that_hits_it() {
    let h = Herdsman::new();
    let _daemon = limited_daemon(
        &h,
        &["prlimit".into(), "--nofile=64:64".into(), "--".into()],
    );
    starts_until_the_limit(&h, true, &["RLIMIT_NOFILE"], |h| {
        h.cmd(&["delete", "s0"]).ok();
        h.cmd(&["delete", "s1"]).ok();
    });
}

/// The account the process-limit test runs its daemon as: its own, so no other test's processes count
/// against the limit. Created (`useradd`) the first time; `None` when the tests do not run as root.
fn limits_user() -> Option<(u32, u32)> {
    const NAME: &str = "herdsman-limits";
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let lookup = || {
        nix::unistd::User::from_name(NAME)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    };
    let found = poll(20 * SECOND, || {
        if let Some(ids) = lookup() {
            return Some(ids);
        }
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", NAME])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        lookup()
    });
    Some(found.unwrap_or_else(|| panic!("cannot create the test account {NAME} (useradd)")))
}

#[test]
fn a_low_process_limit_fails_only_the_start_that_hits_it() {
    // RLIMIT_NPROC does not apply to root: the daemon runs as an account of its own.
    let Some((uid, gid)) = limits_user() else {
        println!("SKIPPED: needs root to run a daemon as another user (root ignores RLIMIT_NPROC)");
        return;
    };
    let h = Herdsman::new();
    fs::create_dir(h.home()).expect("create the home");
    fs::set_permissions(h.home(), fs::Permissions::from_mode(0o700)).expect("chmod");
    chown(h.home(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("chown");
    open_path_to(h.home().parent().expect("the home's parent"));
    let _daemon = limited_daemon(
        &h,
        &[
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "prlimit".into(),
            "--nproc=16".into(),
            "--".into(),
        ],
    );
    starts_until_the_limit(&h, false, &["RLIMIT_NPROC"], |h| {
        h.cmd(&["delete", "s0"]).ok();
        h.cmd(&["delete", "s1"]).ok();
    });
}

/// The descriptors of the keeper, its controller and its log keeper (by role), with their targets.
fn daemon_fds(h: &Herdsman) -> BTreeMap<&'static str, BTreeMap<u32, String>> {
    let keeper = h.daemon_pid();
    let mut v = BTreeMap::new();
    let mut add = |role, pid| {
        let table = fds(pid)
            .into_iter()
            .map(|fd| (fd, fd_link(pid, fd).unwrap_or_default()))
            .collect();
        v.insert(role, table);
    };
    add("keeper", keeper);
    for pid in h.marked_pids() {
        if is_controller(pid) {
            add("controller", pid);
        } else if is_log_keeper(pid) {
            add("log keeper", pid);
        }
    }
    v
}

/// How many descriptors each role holds.
fn counts(table: &BTreeMap<&'static str, BTreeMap<u32, String>>) -> BTreeMap<&'static str, usize> {
    table.iter().map(|(role, fds)| (*role, fds.len())).collect()
}

#[test]
fn a_thousand_starts_and_deletes_leak_no_descriptor() {
    const APPS: usize = 20;
    const ROUNDS: usize = 50;
    let h = Herdsman::new();
    let mut file = String::new();
    for i in 0..APPS {
        file.push_str(&format!(
            "[[apps]]\nname = \"s{i}\"\nscript = \"/bin/sleep\"\nargs = [\"1000\"]\n\n"
        ));
    }
    let eco = crate::helpers::write_file(&h.scratch("eco"), "ecosystem.toml", &file);
    let eco = eco.display().to_string();
    // Each round's `list` has the sampler read every worker, keeping their statm files open until they are
    // gone.
    let round = |h: &Herdsman| {
        h.cmd(&["start", &eco]).ok();
        h.cmd(&["list"]).ok();
        h.cmd(&["delete", "all"]).ok();
    };
    // A first round starts what lives as long as the daemon (the log keeper, the metrics, ...).
    round(&h);
    h.cmd(&["list"]).ok();
    let before = daemon_fds(&h);
    if !before.contains_key("controller") || !before.contains_key("log keeper") {
        h.fail(&format!(
            "the controller and log keeper were not found: {before:?}"
        ));
    }
    for _ in 0..ROUNDS {
        round(&h);
    }
    h.cmd(&["list"]).ok();
    let settled = poll(5 * SECOND, || {
        let now = daemon_fds(&h);
        (counts(&now) == counts(&before)).then_some(now)
    });
    println!(
        "descriptors before {:?}, after {} starts and deletes {:?}",
        counts(&before),
        APPS * ROUNDS,
        settled.as_ref().map(counts)
    );
    if settled.is_none() {
        let now = daemon_fds(&h);
        let changes = |from: &BTreeMap<&'static str, BTreeMap<u32, String>>,
                       to: &BTreeMap<&'static str, BTreeMap<u32, String>>| {
            let mut changed = Vec::new();
            for (role, table) in to {
                for (fd, link) in table {
                    if from.get(role).and_then(|b| b.get(fd)) != Some(link) {
                        changed.push(format!("{role} fd {fd} -> {link}"));
                    }
                }
            }
            changed
        };
        h.fail(&format!(
            "descriptors after {} starts and deletes: {:?}, before: {:?}; new or changed: {:?}; gone: {:?}",
            APPS * ROUNDS,
            counts(&now),
            counts(&before),
            changes(&before, &now),
            changes(&now, &before)
        ));
    }
}
