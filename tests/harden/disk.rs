//! A full disk: an app's logs on a tiny tmpfs that fills up (the app keeps serving, the daemon keeps
//! answering, the lost lines are counted in `describe` and logged once, and logging resumes by itself when
//! space comes back), and a `save` on a full disk (a clear error, the previous dump intact).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{Herdsman, SECOND, free_port, http_get, listen_addr};

/// A tmpfs mounted for a test; unmounted (lazily: a process may still hold a file there) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mode 0700) on `path`; `None`, having said why, where mounting is not
    /// permitted (no CAP_SYS_ADMIN).
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("herdsman-test")
            .arg(path)
            .output()
            .expect("run mount");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                !nix::unistd::geteuid().is_root() || why.contains("permission denied"),
                "mount -t tmpfs failed as root: {why}"
            );
            println!("SKIPPED: cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {why}");
            return None;
        }
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fills it with a file, to the last byte it takes; returns the file.
    fn fill(&self) -> PathBuf {
        let path = self.path.join("filler");
        let mut file = fs::File::create(&path).expect("create the filler");
        for chunk in [65536, 4096, 512, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Lines of the daemon's log holding every one of `needles`.
fn log_lines_with(h: &Herdsman, needles: &[&str]) -> usize {
    fs::read_to_string(h.home().join("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// `describe NAME --json`: the drops of its log at `path` (lines, still failing with).
#[track_caller]
fn drops(h: &Herdsman, name: &str, path: &Path) -> Option<(u64, Option<String>)> {
    let out = h.cmd(&["describe", name, "--json"]).ok();
    let apps: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| h.fail(&format!("describe --json: {e}\n{out}")));
    let drops = apps[0]["log_drops"].as_array()?;
    drops
        .iter()
        .find(|d| d["path"].as_str() == Some(&path.display().to_string()))
        .map(|d| {
            (
                d["lines"].as_u64().unwrap_or(0),
                d["failing"].as_str().map(str::to_string),
            )
        })
}

/// How many lines the chatty app says it has written (its answer's body), over a new connection.
#[track_caller]
fn written(h: &Herdsman, port: u16) -> u64 {
    let response = http_get(port, "/", Duration::from_secs(2))
        .unwrap_or_else(|e| h.fail(&format!("the chatty app did not answer: {e}")));
    if response.status != 200 {
        h.fail(&format!("the chatty app answered {}", response.status));
    }
    response
        .body
        .trim()
        .parse()
        .unwrap_or_else(|e| h.fail(&format!("body {:?}: {e}", response.body)))
}

#[test]
fn a_full_log_disk_drops_and_counts_lines_while_the_app_serves_and_logging_resumes_by_itself() {
    let h = Herdsman::new();
    let dir = h.scratch("logs");
    let Some(disk) = Tmpfs::mount(&dir, "1m") else {
        return;
    };
    let (out_log, err_log) = (dir.join("out.log"), dir.join("err.log"));
    let port = free_port();
    h.cmd(&[
        "start",
        "tests/apps/chatty.js",
        "--name",
        "chatty",
        "--listen",
        &listen_addr(port),
        "-o",
        &out_log.display().to_string(),
        "-e",
        &err_log.display().to_string(),
    ])
    .ok();
    let pid = h.wait_online("chatty", 1)[0].pid;
    h.wait_for("the first lines in the log", 10 * SECOND, || {
        fs::read_to_string(&out_log).is_ok_and(|t| t.contains("chatty seq="))
    });

    let filler = disk.fill();
    let (first, error) = h.wait_value(
        "describe to count dropped lines, still failing",
        10 * SECOND,
        || drops(&h, "chatty", &out_log).filter(|(n, e)| *n > 0 && e.is_some()),
    );
    let error = error.unwrap_or_default();
    if !error.contains("No space left on device") {
        h.fail(&format!(
            "the failure should say the disk is full: {error:?}"
        ));
    }
    // The app goes on writing (its pipe is read and emptied) and serving; the daemon goes on answering.
    let before = written(&h, port);
    h.wait_for(
        "the app to write 2000 more lines while the disk is full",
        20 * SECOND,
        || {
            h.cmd(&["list", "--json"]).ok();
            written(&h, port) >= before + 2000
        },
    );
    let (later, _) = h.wait_value("the dropped count to grow", 10 * SECOND, || {
        drops(&h, "chatty", &out_log).filter(|(n, _)| *n >= first + 2000)
    });
    let shown = h.cmd(&["describe", "chatty"]).ok();
    if !shown.stdout.contains("log drops") || !shown.stdout.contains("No space left on device") {
        h.fail(&format!("describe must show the drops and why\n{shown}"));
    }
    let path = out_log.display().to_string();
    let failures = log_lines_with(&h, &["cannot write to the log", &path]);
    if failures != 1 {
        h.fail(&format!(
            "{later} lines were dropped: the daemon's log must say so once, not {failures} times"
        ));
    }

    // Space comes back: the next lines are written, without anyone asking.
    fs::remove_file(&filler).expect("remove the filler");
    let marker = format!("resumed-{port}");
    h.wait_for("a line written after space came back", 10 * SECOND, || {
        let _ = http_get(port, &format!("/mark/{marker}"), Duration::from_secs(2));
        fs::read_to_string(&out_log).is_ok_and(|t| t.contains(&format!("mark {marker}")))
    });
    h.wait_for(
        "describe to show the writes work again (count kept, no failure)",
        10 * SECOND,
        || drops(&h, "chatty", &out_log).is_some_and(|(n, e)| n >= later && e.is_none()),
    );
    h.wait_for(
        "the recovery in the daemon's log, once",
        10 * SECOND,
        || log_lines_with(&h, &["writing to the log again", &path]) == 1,
    );
    if log_lines_with(&h, &["cannot write to the log", &path]) != 1 {
        h.fail("the failure must still be logged once");
    }
    let now = h.workers("chatty");
    if now.len() != 1 || now[0].pid != pid || now[0].restarts != 0 {
        h.fail(&format!("the app must have run on untouched: {now:?}"));
    }
    drop(disk);
}

#[test]
fn a_save_on_a_full_disk_fails_clearly_and_keeps_the_previous_dump() {
    let h = Herdsman::new();
    fs::create_dir(h.home()).expect("create the home");
    let Some(disk) = Tmpfs::mount(h.home(), "1m") else {
        return;
    };
    h.cmd(&["start", "/bin/sleep", "--name", "first", "--", "1000"])
        .ok();
    h.wait_online("first", 1);
    h.cmd(&["save"]).ok();
    let dump = h.home().join("dump.json");
    let saved = fs::read(&dump).expect("read the dump");
    h.cmd(&["start", "/bin/sleep", "--name", "second", "--", "1000"])
        .ok();
    h.wait_online("second", 1);
    let before = crate::helpers::snapshot(&h.list());

    let filler = disk.fill();
    let out = h.cmd(&["save"]).fails_with("No space left on device");
    if !out.stderr.contains(&dump.display().to_string()) {
        h.fail(&format!("the error must name the dump\n{out}"));
    }
    if fs::read(&dump).ok().as_deref() != Some(saved.as_slice()) {
        h.fail("the previous dump changed");
    }
    let left: Vec<String> = fs::read_dir(h.home())
        .expect("list the home")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("tmp"))
        .collect();
    if !left.is_empty() {
        h.fail(&format!("temporary files left behind: {left:?}"));
    }
    let after = crate::helpers::snapshot(&h.list());
    if after != before {
        h.fail(&format!(
            "the apps changed\nbefore: {before:?}\nafter:  {after:?}"
        ));
    }

    fs::remove_file(&filler).expect("remove the filler");
    h.cmd(&["save"]).ok();
    let text = fs::read_to_string(&dump).expect("read the dump");
    if !text.contains("\"second\"") {
        h.fail("the save after space came back must hold `second`");
    }
    h.cmd(&["kill"]).ok();
    drop(disk);
}
