//! Issue 5: ecosystem files (`*.toml`): `start`/`reload`/`delete FILE`, validation before anything
//! runs, `--env` profiles, several listen sockets, depends_on ordering, `import` of a PM2 file,
//! `init`, `schema`, and the per-app options (autorestart, stop_exit_codes, increment_var, user).
//! Every file is written into the test's own scratch directory with free ports and absolute
//! script paths; only the first test starts the repository's own `ecosystem.toml` (ports 3000 and
//! 8000).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::helpers::{
    Herdsman, Output, Probe, Proc, SECOND, app_arg, connect_refused, env_of, fd_link, free_port,
    listen_addr, pid_list, pids, proc_uids, q, repo_root, snapshot, wait_gone, wait_served_by,
    write_file,
};

/// `tests/apps/ecosystem/<name>` as an absolute path.
fn eco_app(name: &str) -> String {
    app_arg(&format!("ecosystem/{name}"))
}

/// Waits until a connection to 127.0.0.1:port is refused (the socket is closed).
#[track_caller]
fn wait_refused(h: &Herdsman, port: u16) {
    h.wait_for(
        &format!("connections to 127.0.0.1:{port} to be refused (socket closed)"),
        10 * SECOND,
        || connect_refused(port),
    );
}

/// Fails unless `out`'s stdout has the line `expected` (trailing spaces ignored).
#[track_caller]
fn assert_line(h: &Herdsman, out: &Output, expected: &str) {
    if !out.stdout.lines().any(|l| l.trim_end() == expected) {
        h.fail(&format!("expected the line {expected:?} on stdout\n{out}"));
    }
}

/// Fails unless stdout has a line `NAME: changed (<what>): <then>` whose `<what>` mentions
/// `what`.
#[track_caller]
fn assert_changed(h: &Herdsman, out: &Output, name: &str, what: &str, then: &str) {
    let prefix = format!("{name}: changed (");
    let suffix = format!("): {then}");
    let found = out.stdout.lines().any(|l| {
        l.trim_end()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .is_some_and(|w| w.contains(what))
    });
    if !found {
        h.fail(&format!(
            "expected a line `{name}: changed (...{what}...): {then}` on stdout\n{out}"
        ));
    }
}

/// One progress line of `start FILE`/`reload FILE`: `  NAME:I  pid OLD|- -> NEW  ready after N ms`.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    name: String,
    instance: u64,
    old: Option<i32>,
    new: i32,
}

/// The progress lines of `out`, in output order; fails on a line that looks like one (`pid` and
/// `->`) but does not have the documented form.
#[track_caller]
fn progress(h: &Herdsman, out: &Output) -> Vec<Progress> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" pid ") && l.contains(" -> "))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let parsed = match f.as_slice() {
                [slot, "pid", old, "->", new, "ready", "after", ms, "ms"] => (|| {
                    let (name, instance) = slot.rsplit_once(':')?;
                    ms.parse::<u64>().ok()?;
                    Some(Progress {
                        name: name.to_string(),
                        instance: instance.parse().ok()?,
                        old: match *old {
                            "-" => None,
                            pid => Some(pid.parse().ok()?),
                        },
                        new: new.parse().ok()?,
                    })
                })(),
                _ => None,
            };
            parsed.unwrap_or_else(|| {
                h.fail(&format!(
                    "progress line {line:?} is not `  NAME:I  pid OLD -> NEW  ready after N ms`\n{out}"
                ))
            })
        })
        .collect()
}

/// Reads `<dir>/<pid>.env` written by tests/apps/env.sh (waits for it), as a map.
/// Waits until app `name` has exactly `n` workers, all online, none of them in `old`.
#[track_caller]
fn wait_replaced(h: &Herdsman, name: &str, n: usize, old: &BTreeSet<i32>) -> Vec<Proc> {
    h.wait_value(
        &format!("{n} worker(s) of `{name}` online, none of the old pids {old:?}"),
        15 * SECOND,
        || {
            let w = h.workers(name);
            (w.len() == n
                && w.iter()
                    .all(|p| p.status == "online" && p.pid.is_some_and(|pid| !old.contains(&pid))))
            .then_some(w)
        },
    )
}

// =============================================================================================
// 1. The repository's own ecosystem.toml
// =============================================================================================

#[test]
fn the_repository_ecosystem_toml_starts_and_serves_and_a_second_start_changes_nothing() {
    let h = Herdsman::new();
    let out = h
        .cmd(&["start", "ecosystem.toml"])
        .cwd(repo_root())
        .timeout(60 * SECOND)
        .ok();
    let web_count: usize = out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("web: new: starting ")?
                .strip_suffix(" worker(s)")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| h.fail(&format!("expected `web: new: starting N worker(s)`\n{out}")));
    assert_line(&h, &out, "jobs: new: starting 1 worker(s)");
    assert_line(&h, &out, "py: new: starting 2 worker(s)");
    if web_count < 1 {
        h.fail(&format!("`instances = \"max\"` started no worker\n{out}"));
    }

    let web = h.wait_online("web", web_count);
    let jobs = h.wait_online("jobs", 1);
    let py = h.wait_online("py", 2);
    for (workers, listen, mode) in [
        (&web, Some("127.0.0.1:3000"), "cluster"),
        (&py, Some("127.0.0.1:8000"), "cluster"),
        (&jobs, None, "fork"),
    ] {
        if workers
            .iter()
            .any(|w| w.listen.as_deref() != listen || w.mode != mode)
        {
            h.fail(&format!(
                "expected mode {mode} and listen {listen:?} for {workers:?}"
            ));
        }
    }
    wait_served_by(&h, 3000, &pids(&web), 15 * SECOND);
    wait_served_by(&h, 8000, &pids(&py), 15 * SECOND);

    let before = snapshot(&h.list());
    let again = h.cmd(&["start", "ecosystem.toml"]).cwd(repo_root()).ok();
    for name in ["web", "jobs", "py"] {
        assert_line(&h, &again, &format!("{name}: unchanged"));
    }
    let steps = progress(&h, &again);
    if !steps.is_empty() {
        h.fail(&format!(
            "a second start must start no worker, got {steps:?}\n{again}"
        ));
    }
    let after = snapshot(&h.list());
    if after != before {
        h.fail(&format!(
            "a second start changed the workers\nbefore: {before:?}\nafter:  {after:?}\n{again}"
        ));
    }
    wait_served_by(&h, 3000, &pids(&web), 10 * SECOND);

    h.cmd(&["delete", "ecosystem.toml"]).cwd(repo_root()).ok();
    let left = h.list();
    if !left.is_empty() {
        h.fail(&format!("`delete ecosystem.toml` left {left:?}"));
    }
    wait_refused(&h, 3000);
    wait_refused(&h, 8000);
}

// =============================================================================================
// 2. Broken files: every problem reported with its position, nothing changes
// =============================================================================================

/// One broken file: the good app `web` with a changed env (a reload would replace its workers if
/// the file were not refused), then an app `bad` with the problem.
struct Broken {
    what: &'static str,
    /// The lines of the second `[[apps]]` table (the table header is line 8).
    bad_app: Vec<String>,
    args: Vec<&'static str>,
    /// The expected problem line, up to the end of the message or the documented part of it
    /// (`<path>` is replaced by the file's path).
    problem: String,
}

/// The good app `web` (lines 1-6), with `VERSION = version`.
fn web_app(http_js: &str, port: u16, version: u32) -> String {
    format!(
        "[[apps]]\nname = \"web\"\nscript = {}\ninstances = 2\nlisten = \"127.0.0.1:{port}\"\n\
         env = {{ VERSION = \"{version}\" }}\n",
        q(http_js)
    )
}

/// The problem lines and the summary line of a refused file (the first line's `error: ` removed).
#[track_caller]
fn refused_lines(h: &Herdsman, out: &Output) -> Vec<String> {
    if out.code() != Some(1) || !out.stderr.starts_with("error: ") {
        h.fail(&format!(
            "expected exit code 1 and stderr starting with `error: `\n{out}"
        ));
    }
    let mut lines: Vec<String> = out.stderr.lines().map(str::to_string).collect();
    lines[0] = lines[0]["error: ".len()..].to_string();
    lines
}

#[test]
fn broken_files_are_refused_with_the_position_of_each_problem_and_nothing_changes() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let port = free_port();
    let http_js = app_arg("http.js");
    let idle = eco_app("idle.sh");

    // Running before: `web` from a good file and `side` from the CLI, in the same home.
    let good = write_file(&dir, "good.toml", &web_app(&http_js, port, 1));
    h.cmd(&["start", &good.display().to_string()]).ok();
    h.cmd(&["start", &idle, "--name", "side"]).ok();
    let web = h.wait_online("web", 2);
    h.wait_online("side", 1);
    wait_served_by(&h, port, &pids(&web), 10 * SECOND);
    let before = snapshot(&h.list());

    let bad = |line: &str| {
        vec![
            "name = \"bad\"".to_string(),
            format!("script = {}", q(&idle)),
            line.to_string(),
        ]
    };
    let cases = vec![
        Broken {
            what: "unknown key",
            bad_app: bad("instnaces = 2"),
            args: vec![],
            problem: "<path>:11:1: `instnaces`: unknown key `instnaces`; did you mean `instances`?"
                .into(),
        },
        Broken {
            what: "wrong type (bool)",
            bad_app: bad("autorestart = \"yes\""),
            args: vec![],
            problem: "<path>:11:15: `autorestart`: expected true or false, found a string".into(),
        },
        Broken {
            what: "wrong type (integer)",
            bad_app: bad("max_restarts = \"3\""),
            args: vec![],
            problem: "<path>:11:16: `max_restarts`: expected an integer, found a string".into(),
        },
        Broken {
            what: "bad duration",
            bad_app: bad("kill_timeout = \"soon\""),
            args: vec![],
            problem: "<path>:11:16: `kill_timeout`: invalid duration 'soon': expected ".into(),
        },
        Broken {
            what: "bad listen address",
            bad_app: bad("listen = \"127.0.0.1:99999\""),
            args: vec![],
            problem: "<path>:11:10: `listen`: invalid listen address '127.0.0.1:99999': expected "
                .into(),
        },
        Broken {
            what: "duplicate name",
            bad_app: vec!["name = \"web\"".into(), format!("script = {}", q(&idle))],
            args: vec![],
            problem: "<path>:9:8: `name`: duplicate app name 'web' (first at line 2)".into(),
        },
        Broken {
            what: "missing script file",
            bad_app: vec!["name = \"bad\"".into(), "script = \"missing.js\"".into()],
            args: vec![],
            problem: format!(
                "<path>:10:10: `script`: script not found: {}",
                dir.join("missing.js").display()
            ),
        },
        Broken {
            what: "missing key script",
            bad_app: vec!["name = \"bad\"".into()],
            args: vec![],
            problem: "<path>:8:1: `script`: missing key `script`".into(),
        },
        Broken {
            what: "TOML syntax error",
            bad_app: bad("instances = "),
            args: vec![],
            problem: "<path>:11:".into(),
        },
        Broken {
            what: "depends_on an app not in the file",
            bad_app: bad("depends_on = [\"ghost\"]"),
            args: vec![],
            problem: "<path>: app 'bad' depends on 'ghost', which the file does not define".into(),
        },
        Broken {
            what: "--env naming no profile",
            bad_app: bad(""),
            args: vec!["--env", "nosuch"],
            problem: "<path>: --env nosuch: no app defines `env_nosuch`".into(),
        },
        Broken {
            what: "--only naming no app",
            bad_app: bad(""),
            args: vec!["--only", "nosuch"],
            problem:
                "<path>: --only names app 'nosuch', which the file does not define (apps: web, bad)"
                    .into(),
        },
    ];

    for (i, case) in cases.iter().enumerate() {
        let text = format!(
            "{}\n[[apps]]\n{}\n",
            web_app(&http_js, port, 2),
            case.bad_app.join("\n")
        );
        let path = write_file(&dir, &format!("broken-{i}.toml"), &text);
        let p = path.display().to_string();
        let problem = case.problem.replace("<path>", &p);
        for command in ["start", "reload"] {
            let mut args = vec![command, p.as_str()];
            args.extend(&case.args);
            let out = h.cmd(&args).run();
            let lines = refused_lines(&h, &out);
            let summary = format!("1 problem in {p}; nothing was changed");
            if lines.len() != 2 || !lines[0].starts_with(&problem) || lines[1] != summary {
                h.fail(&format!(
                    "{}: expected exactly\n  {problem}...\n  {summary}\non stderr\n--- file ---\n{text}\n{out}",
                    case.what
                ));
            }
            let now = snapshot(&h.list());
            if now != before {
                h.fail(&format!(
                    "{}: `{command}` of a refused file changed the running apps\nbefore: {before:?}\nnow:    {now:?}\n{out}",
                    case.what
                ));
            }
        }
    }

    // One file with several problems: all of them in one run.
    let text = format!(
        "{}\n[[apps]]\nname = \"x\"\nscript = {idle}\ninstnaces = 2\nautorestart = \"yes\"\n\
         kill_timeout = \"soon\"\nlisten = \"127.0.0.1:99999\"\n\n\
         [[apps]]\nname = \"x\"\nscript = \"nope.js\"\n\n\
         [[apps]]\nname = \"y\"\nscript = {idle}\ndepends_on = \"zz\"\n",
        web_app(&http_js, port, 2),
        idle = q(&idle)
    );
    let path = write_file(&dir, "many.toml", &text);
    let p = path.display().to_string();
    let expected = [
        format!("{p}:11:1: `instnaces`: unknown key `instnaces`; did you mean `instances`?"),
        format!("{p}:12:15: `autorestart`: expected true or false, found a string"),
        format!("{p}:13:16: `kill_timeout`: invalid duration 'soon': expected "),
        format!("{p}:14:10: `listen`: invalid listen address '127.0.0.1:99999': expected "),
        format!("{p}:17:8: `name`: duplicate app name 'x' (first at line 9)"),
        format!(
            "{p}:18:10: `script`: script not found: {}",
            dir.join("nope.js").display()
        ),
        format!("{p}: app 'y' depends on 'zz', which the file does not define"),
        format!("{p}: --env nosuch: no app defines `env_nosuch`"),
    ];
    for command in ["start", "reload"] {
        let out = h.cmd(&[command, &p, "--env", "nosuch"]).run();
        let lines = refused_lines(&h, &out);
        let summary = format!("{} problems in {p}; nothing was changed", expected.len());
        let problems = &lines[..lines.len() - 1];
        let missing: Vec<&String> = expected
            .iter()
            .filter(|e| {
                problems
                    .iter()
                    .filter(|l| l.starts_with(e.as_str()))
                    .count()
                    != 1
            })
            .collect();
        if problems.len() != expected.len() || !missing.is_empty() || lines.last() != Some(&summary)
        {
            h.fail(&format!(
                "expected the {} problems (once each, any order) and {summary:?}; missing or repeated: {missing:#?}\n--- file ---\n{text}\n{out}",
                expected.len()
            ));
        }
        let now = snapshot(&h.list());
        if now != before {
            h.fail(&format!(
                "`{command}` of a refused file changed the running apps\nbefore: {before:?}\nnow:    {now:?}\n{out}"
            ));
        }
    }
    wait_served_by(&h, port, &pids(&web), 10 * SECOND);
}

// =============================================================================================
// 3. --env PROFILE
// =============================================================================================

#[test]
fn env_profile_changes_what_the_worker_sees() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let out_dir = h.scratch("env-out");
    let text = format!(
        "[[apps]]\nname = \"greet\"\nscript = {}\nenv = {{ ENV_OUT_DIR = {}, GREETING = \"dev\" }}\n\
         env_production = {{ GREETING = \"prod\" }}\n",
        q(app_arg("env.sh")),
        q(out_dir.display().to_string())
    );
    let file = write_file(&dir, "greet.toml", &text);
    let f = file.display().to_string();

    h.cmd(&["start", &f]).ok();
    let dev = pid_list(&h.wait_online("greet", 1))[0];
    let env = env_of(&h, &out_dir, dev);
    if env.get("GREETING").map(String::as_str) != Some("dev") {
        h.fail(&format!(
            "without --env the worker must see GREETING=dev: {env:?}"
        ));
    }

    let out = h.cmd(&["reload", &f, "--env", "production"]).ok();
    assert_changed(&h, &out, "greet", "env", "reloading");
    let prod = pid_list(&wait_replaced(&h, "greet", 1, &BTreeSet::from([dev])))[0];
    let env = env_of(&h, &out_dir, prod);
    if env.get("GREETING").map(String::as_str) != Some("prod")
        || env.get("ENV_OUT_DIR") != Some(&out_dir.display().to_string())
    {
        h.fail(&format!(
            "with --env production the worker must see GREETING=prod (and still the base env's ENV_OUT_DIR): {env:?}\n{out}"
        ));
    }

    // Without --env the file's definition is the base env again: a change, back to dev.
    let out = h.cmd(&["reload", &f]).ok();
    assert_changed(&h, &out, "greet", "env", "reloading");
    let back = pid_list(&wait_replaced(&h, "greet", 1, &BTreeSet::from([prod])))[0];
    let env = env_of(&h, &out_dir, back);
    if env.get("GREETING").map(String::as_str) != Some("dev") {
        h.fail(&format!(
            "a reload without --env must bring GREETING=dev back: {env:?}\n{out}"
        ));
    }

    // A fresh start with --env production.
    h.cmd(&["delete", &f]).ok();
    h.cmd(&["start", &f, "--env", "production"]).ok();
    let fresh = pid_list(&h.wait_online("greet", 1))[0];
    let env = env_of(&h, &out_dir, fresh);
    if env.get("GREETING").map(String::as_str) != Some("prod") {
        h.fail(&format!(
            "`start --env production` must give GREETING=prod: {env:?}"
        ));
    }
}

// =============================================================================================
// 4. Several listen addresses: fds 3, 4
// =============================================================================================

#[test]
fn two_listen_addresses_reach_the_worker_as_two_named_listening_fds() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let out_dir = h.scratch("fds-out");
    let (p1, p2) = (free_port(), free_port());
    let text = format!(
        "[[apps]]\nname = \"fds\"\nscript = {}\nlisten = [\"127.0.0.1:{p1}\", \"127.0.0.1:{p2}\"]\n\
         env = {{ FDS_OUT_DIR = {} }}\n",
        q(eco_app("fds.py")),
        q(out_dir.display().to_string())
    );
    let file = write_file(&dir, "fds.toml", &text);
    h.cmd(&["start", &file.display().to_string()]).ok();
    let pid = pid_list(&h.wait_online("fds", 1))[0];

    let path = out_dir.join(format!("{pid}.json"));
    let report: serde_json::Value = h.wait_value(
        &format!("{} (written by fds.py)", path.display()),
        10 * SECOND,
        || serde_json::from_str(&fs::read_to_string(&path).ok()?).ok(),
    );
    let fail = |why: &str| -> ! { h.fail(&format!("{why}\nreport of fds.py: {report:#}")) };
    if report["LISTEN_FDS"] != "2" || report["LISTEN_PID"] != pid.to_string().as_str() {
        fail(&format!("expected LISTEN_FDS=2 and LISTEN_PID={pid}"));
    }
    let names: Vec<&str> = report["LISTEN_FDNAMES"]
        .as_str()
        .unwrap_or_default()
        .split(':')
        .collect();
    if names.len() != 2 || names.iter().any(|n| n.is_empty()) {
        fail("expected two names in LISTEN_FDNAMES (colon-separated)");
    }
    let fds = report["fds"].as_array().cloned().unwrap_or_default();
    let mut links = BTreeSet::new();
    for (i, port) in [p1, p2].into_iter().enumerate() {
        let fd = &fds.get(i).cloned().unwrap_or_default();
        let link = fd["link"].as_str().unwrap_or_default();
        if fd["fd"] != 3 + i
            || fd["listening"] != true
            || fd["host"] != "127.0.0.1"
            || fd["port"] != port
            || !link.starts_with("socket:[")
        {
            fail(&format!(
                "fd {} must be a listening socket bound to 127.0.0.1:{port}",
                3 + i
            ));
        }
        // The worker still holds it: the same inode seen from outside.
        if fd_link(pid, 3 + i as u32).as_deref() != Some(link) {
            fail(&format!("/proc/{pid}/fd/{} is not {link}", 3 + i));
        }
        links.insert(link.to_string());
    }
    if links.len() != 2 {
        fail("fds 3 and 4 must be two different sockets");
    }
    let listed = h.workers("fds");
    let want = format!("127.0.0.1:{p1}, 127.0.0.1:{p2}");
    if listed[0].listen.as_deref().map(|l| l.replace(' ', "")) != Some(want.replace(' ', "")) {
        h.fail(&format!(
            "list --json should show both addresses ({want}), got {:?}",
            listed[0].listen
        ));
    }
}

// =============================================================================================
// 5, 6. reload FILE: only the changed app, scaling, apps removed from the file, a new address
// =============================================================================================

/// Two http.js apps: `a` (instances `a_n`, on `pa`, env VERSION = `version`) and, if `with_b`,
/// `b` (2 instances on `pb`).
fn two_apps(pa: u16, a_n: u32, version: u32, pb: u16, with_b: bool) -> String {
    let http_js = q(app_arg("http.js"));
    let mut s = format!(
        "[[apps]]\nname = \"a\"\nscript = {http_js}\ninstances = {a_n}\nlisten = \"127.0.0.1:{pa}\"\n\
         env = {{ VERSION = \"{version}\" }}\n"
    );
    if with_b {
        s.push_str(&format!(
            "\n[[apps]]\nname = \"b\"\nscript = {http_js}\ninstances = 2\nlisten = \"127.0.0.1:{pb}\"\n"
        ));
    }
    s
}

#[test]
fn reload_of_a_changed_file_replaces_only_the_changed_app_scales_and_prunes() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let (pa, pb) = (free_port(), free_port());
    let file = write_file(&dir, "two.toml", &two_apps(pa, 2, 1, pb, true));
    let f = file.display().to_string();

    let out = h.cmd(&["start", &f]).ok();
    assert_line(&h, &out, "a: new: starting 2 worker(s)");
    assert_line(&h, &out, "b: new: starting 2 worker(s)");
    let a0 = pid_list(&h.wait_online("a", 2));
    let b0 = pid_list(&h.wait_online("b", 2));
    wait_served_by(&h, pa, &a0.iter().copied().collect(), 10 * SECOND);
    wait_served_by(&h, pb, &b0.iter().copied().collect(), 10 * SECOND);

    // Change a's env: a is reloaded worker by worker under a probe, b keeps its pids.
    write_file(&dir, "two.toml", &two_apps(pa, 2, 2, pb, true));
    let probe = Probe::start(pa);
    h.wait_for("the probe's first 20 answers", 10 * SECOND, || {
        probe.ok_count() >= 20
    });
    let out = h.cmd(&["reload", &f]).ok();
    assert_changed(&h, &out, "a", "env", "reloading");
    assert_line(&h, &out, "b: unchanged");
    let steps = progress(&h, &out);
    let expected: Vec<(String, u64, Option<i32>)> = (0..2)
        .map(|i| ("a".to_string(), i, Some(a0[i as usize])))
        .collect();
    let got: Vec<(String, u64, Option<i32>)> = steps
        .iter()
        .map(|s| (s.name.clone(), s.instance, s.old))
        .collect();
    if got != expected {
        h.fail(&format!(
            "expected a:0 then a:1 replaced from {a0:?} (and nothing of b), got {steps:?}\n{out}"
        ));
    }
    let old_a: BTreeSet<i32> = a0.iter().copied().collect();
    let a1 = pid_list(&wait_replaced(&h, "a", 2, &old_a));
    wait_gone(&h, &old_a);
    let a1_set: BTreeSet<i32> = a1.iter().copied().collect();
    wait_served_by(&h, pa, &a1_set, 10 * SECOND);
    let seen = probe.ok_count();
    h.wait_for(
        "20 more probe answers after the reload",
        10 * SECOND,
        || probe.ok_count() >= seen + 20,
    );
    let report = probe.finish();
    if !report.failures.is_empty() {
        h.fail(&format!(
            "requests to `a` failed during its reload: ok {}, errors {:?}, failures {:?}",
            report.ok, report.errors, report.failures
        ));
    }
    if pid_list(&h.workers("b")) != b0 {
        h.fail(&format!("`b` was unchanged and must keep its pids {b0:?}"));
    }

    // Only instances 2 -> 3: scaled, the two workers stay.
    write_file(&dir, "two.toml", &two_apps(pa, 3, 2, pb, true));
    let out = h.cmd(&["reload", &f]).ok();
    assert_line(&h, &out, "a: changed (instances): scaling to 3");
    assert_line(&h, &out, "b: unchanged");
    let a2 = pid_list(&h.wait_online("a", 3));
    if a2[..2] != a1[..] || a1.contains(&a2[2]) {
        h.fail(&format!(
            "scaling to 3 must keep {a1:?} as instances 0, 1 and add one new worker, got {a2:?}\n{out}"
        ));
    }
    wait_served_by(&h, pa, &a2.iter().copied().collect(), 10 * SECOND);
    if pid_list(&h.workers("b")) != b0 {
        h.fail(&format!("`b` was unchanged and must keep its pids {b0:?}"));
    }

    // b removed from the file: left running, then deleted with --prune.
    write_file(&dir, "two.toml", &two_apps(pa, 3, 2, pb, false));
    let out = h.cmd(&["reload", &f]).ok();
    assert_line(&h, &out, "a: unchanged");
    assert_line(
        &h,
        &out,
        "b: not in the file: left running (--prune deletes it)",
    );
    let b_now = h.wait_online("b", 2);
    if pid_list(&b_now) != b0 {
        h.fail(&format!(
            "`b` must keep running with {b0:?}: {b_now:?}\n{out}"
        ));
    }
    wait_served_by(&h, pb, &b0.iter().copied().collect(), 10 * SECOND);

    let out = h.cmd(&["reload", &f, "--prune"]).ok();
    assert_line(&h, &out, "a: unchanged");
    assert_line(&h, &out, "b: not in the file: deleting (--prune)");
    let left = h.workers("b");
    if !left.is_empty() {
        h.fail(&format!(
            "`reload --prune` must delete `b`, list shows {left:?}\n{out}"
        ));
    }
    wait_gone(&h, &b0.iter().copied().collect());
    wait_refused(&h, pb);
    if pid_list(&h.workers("a")) != a2 {
        h.fail(&format!("`a` was unchanged and must keep its pids {a2:?}"));
    }
}

#[test]
fn reload_with_a_new_listen_address_serves_there_and_closes_the_old_one() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let (p_old, p_new, pb) = (free_port(), free_port(), free_port());
    let file = write_file(&dir, "two.toml", &two_apps(p_old, 2, 1, pb, true));
    let f = file.display().to_string();
    h.cmd(&["start", &f]).ok();
    let a0 = pids(&h.wait_online("a", 2));
    let b0 = pid_list(&h.wait_online("b", 2));
    wait_served_by(&h, p_old, &a0, 10 * SECOND);

    write_file(&dir, "two.toml", &two_apps(p_new, 2, 1, pb, true));
    let out = h.cmd(&["reload", &f]).ok();
    assert_changed(&h, &out, "a", "listen", "reloading");
    assert_line(&h, &out, "b: unchanged");
    let a1 = wait_replaced(&h, "a", 2, &a0);
    let want = listen_addr(p_new);
    if a1
        .iter()
        .any(|w| w.listen.as_deref() != Some(want.as_str()))
    {
        h.fail(&format!("list must show `a` on {want}: {a1:?}\n{out}"));
    }
    wait_served_by(&h, p_new, &pids(&a1), 10 * SECOND);
    wait_refused(&h, p_old);
    if pid_list(&h.workers("b")) != b0 {
        h.fail(&format!("`b` was unchanged and must keep its pids {b0:?}"));
    }
}

// =============================================================================================
// 7. depends_on: start after, stop before
// =============================================================================================

/// The `<event> <name> <pid> <ns>` lines of a stamp file written by stamp.js.
fn stamps(path: &Path) -> Vec<(String, String, i32, u128)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [e, n, p, ns] => Some((
                    e.to_string(),
                    n.to_string(),
                    p.parse().ok()?,
                    ns.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

/// Waits for the stamp `<event> <name> ...` and returns its time.
#[track_caller]
fn wait_stamp(h: &Herdsman, path: &Path, event: &str, name: &str) -> u128 {
    h.wait_value(
        &format!("`{event} {name} <pid> <ns>` in {}", path.display()),
        15 * SECOND,
        || {
            stamps(path)
                .into_iter()
                .find(|(e, n, _, _)| e == event && n == name)
                .map(|s| s.3)
        },
    )
}

#[test]
fn depends_on_starts_an_app_after_its_dependency_is_ready_and_stops_it_first() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let stamp_file = dir.join("stamps");
    let port = free_port();
    // `b` first in the file: only depends_on can make it start second. `a` takes 1.5 s to listen
    // (and so to be ready); `b` takes 0.5 s to exit once signalled.
    let stamp_js = q(eco_app("stamp.js"));
    let sf = q(stamp_file.display().to_string());
    let text = format!(
        "[[apps]]\nname = \"b\"\nscript = {stamp_js}\ndepends_on = [\"a\"]\n\
         env = {{ STAMP_FILE = {sf}, STOP_DELAY_MS = 500 }}\n\n\
         [[apps]]\nname = \"a\"\nscript = {stamp_js}\nlisten = \"127.0.0.1:{port}\"\n\
         env = {{ STAMP_FILE = {sf}, LISTEN_DELAY_MS = 1500 }}\n"
    );
    let file = write_file(&dir, "deps.toml", &text);
    let f = file.display().to_string();

    let out = h.cmd(&["start", &f]).ok();
    let order: Vec<String> = progress(&h, &out).into_iter().map(|s| s.name).collect();
    if order != ["a", "b"] {
        h.fail(&format!(
            "expected the progress line of a, then b's (b depends on a), got {order:?}\n{out}"
        ));
    }
    h.wait_online("a", 1);
    h.wait_online("b", 1);
    let a_listen = wait_stamp(&h, &stamp_file, "listen", "a");
    let b_start = wait_stamp(&h, &stamp_file, "start", "b");
    if b_start <= a_listen {
        h.fail(&format!(
            "b started before a was ready (b start {b_start} ns <= a's listen() {a_listen} ns)\n{:?}",
            stamps(&stamp_file)
        ));
    }

    h.cmd(&["delete", &f]).ok();
    let b_exit = wait_stamp(&h, &stamp_file, "exit", "b");
    let a_stop = wait_stamp(&h, &stamp_file, "stop", "a");
    if a_stop <= b_exit {
        h.fail(&format!(
            "a was signalled before b (which depends on it) had exited: a stop {a_stop} ns <= b exit {b_exit} ns\n{:?}",
            stamps(&stamp_file)
        ));
    }
    let left = h.list();
    if !left.is_empty() {
        h.fail(&format!("`delete FILE` left {left:?}"));
    }
}

// =============================================================================================
// 8. import of a PM2 ecosystem.config.js
// =============================================================================================

/// `tests/apps/ecosystem/ecosystem.config.js` with its placeholders filled, written to `dir`: `api` (cluster
/// on `port`), `bg` and `watched`.
fn pm2_file(dir: &Path, port: u16) -> PathBuf {
    let template = fs::read_to_string(crate::helpers::app("ecosystem/ecosystem.config.js"))
        .expect("read tests/apps/ecosystem/ecosystem.config.js");
    let js = template
        .replace("__APPS_DIR__", &app_arg(""))
        .replace("__API_PORT__", &port.to_string())
        .replace(
            "__STAMP_FILE__",
            &dir.join("bg.stamps").display().to_string(),
        );
    write_file(dir, "ecosystem.config.js", &js)
}

#[test]
fn import_of_a_pm2_file_reports_unmapped_options_and_starts_the_same_apps() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let port = free_port();
    let config = pm2_file(&dir, port);
    let toml = dir.join("out.toml");

    let out = h
        .cmd(&[
            "import",
            &config.display().to_string(),
            "-o",
            &toml.display().to_string(),
        ])
        .ok();
    let prefix = "not imported: apps[2] (watched): `watch_options`: ";
    if !out.stderr.lines().any(|l| {
        l.strip_prefix(prefix)
            .is_some_and(|why| !why.trim().is_empty())
    }) {
        h.fail(&format!(
            "expected a line `{prefix}<reason>` on stderr\n{out}"
        ));
    }
    let unmapped: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("not imported: "))
        .collect();
    if unmapped.len() != 1 {
        h.fail(&format!(
            "only `watch_options` cannot be imported (kill_timeout, env, instances, exec_mode, max_memory_restart can): {unmapped:?}\n{out}"
        ));
    }
    if !toml.is_file() {
        h.fail(&format!("{} was not written\n{out}", toml.display()));
    }
    let written = fs::read_to_string(&toml).unwrap_or_default();
    if !written.contains("max_memory_restart = \"300M\"") {
        h.fail(&format!(
            "max_memory_restart is mapped as written:\n{written}"
        ));
    }

    let started = h.cmd(&["start", &toml.display().to_string()]).ok();
    assert_line(&h, &started, "api: new: starting 2 worker(s)");
    assert_line(&h, &started, "bg: new: starting 1 worker(s)");
    assert_line(&h, &started, "watched: new: starting 1 worker(s)");
    let api = h.wait_online("api", 2);
    let bg = h.wait_online("bg", 1);
    let watched = h.wait_online("watched", 1);
    if api.iter().any(|w| w.mode != "cluster") || bg[0].mode != "fork" || watched[0].mode != "fork"
    {
        h.fail(&format!(
            "expected api in cluster mode, bg and watched in fork mode: {api:?} {bg:?} {watched:?}"
        ));
    }
    // PM2 cluster apps listen on all interfaces: 127.0.0.1 reaches them.
    wait_served_by(&h, port, &pids(&api), 10 * SECOND);
    let names: BTreeSet<String> = h.list().into_iter().map(|p| p.name).collect();
    if names != BTreeSet::from(["api".into(), "bg".into(), "watched".into()]) {
        h.fail(&format!(
            "expected exactly the apps api, bg, watched: {names:?}"
        ));
    }
}

#[test]
fn start_of_a_pm2_file_starts_its_apps_as_import_converts_them() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let port = free_port();
    let config = pm2_file(&dir, port);
    let config = config.display().to_string();

    // --dry-run: the TOML it stands for, and nothing started (not even a daemon).
    let dry = h.cmd(&["start", &config, "--dry-run"]).ok();
    if !dry.stdout.contains("[[apps]]") || !dry.stdout.contains("name = \"api\"") {
        h.fail(&format!("--dry-run must print the converted TOML\n{dry}"));
    }
    if h.home().join("herdsman.sock").exists() {
        h.fail("--dry-run must start nothing, not even the daemon");
    }

    let started = h.cmd(&["start", &config]).ok();
    assert_line(&h, &started, "api: new: starting 2 worker(s)");
    assert_line(&h, &started, "bg: new: starting 1 worker(s)");
    if !started
        .stderr
        .lines()
        .any(|l| l.starts_with("herdsman: not imported: apps[2] (watched): `watch_options`: "))
    {
        h.fail(&format!("each unmapped option must be printed\n{started}"));
    }
    let api = h.wait_online("api", 2);
    h.wait_online("bg", 1);
    h.wait_online("watched", 1);
    wait_served_by(&h, port, &pids(&api), 10 * SECOND);
    // The file is not itself run as a Node app.
    let names: BTreeSet<String> = h.list().into_iter().map(|p| p.name).collect();
    if names != BTreeSet::from(["api".into(), "bg".into(), "watched".into()]) {
        h.fail(&format!(
            "expected exactly the apps api, bg, watched: {names:?}"
        ));
    }
    // And the same file drives the rest, as PM2's startOrReload and delete do.
    let reloaded = h.cmd(&["reload", &config]).ok();
    assert_line(&h, &reloaded, "api: unchanged");
    // PM2's `restart FILE`: every app of the file restarts.
    h.cmd(&["restart", &config]).ok();
    let restarted = h.wait_online("api", 2);
    if restarted
        .iter()
        .any(|w| pids(&api).contains(&w.pid.unwrap_or(0)))
    {
        h.fail(&format!(
            "`restart FILE` must restart the file's apps: {api:?} -> {restarted:?}"
        ));
    }
    h.cmd(&["delete", &config]).ok();
    if !h.list().is_empty() {
        h.fail("`delete FILE` must delete the file's apps");
    }
}

// =============================================================================================
// 9. init and schema
// =============================================================================================

#[test]
fn init_writes_a_startable_file_refuses_to_overwrite_and_schema_describes_every_key() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let file = dir.join("ecosystem.toml");

    h.cmd(&["init"]).cwd(&dir).ok();
    let written = fs::read_to_string(&file)
        .unwrap_or_else(|e| h.fail(&format!("`init` did not write {}: {e}", file.display())));
    let marker = format!("{written}# edited by the test\n");
    fs::write(&file, &marker).expect("edit the file");
    let out = h.cmd(&["init"]).cwd(&dir).run();
    if out.code() != Some(1) || !out.stderr.starts_with("error: ") {
        h.fail(&format!(
            "a second `init` must refuse (exit 1, `error: `)\n{out}"
        ));
    }
    if fs::read_to_string(&file).ok().as_deref() != Some(marker.as_str()) {
        h.fail(&format!(
            "a refused `init` must leave the file as it is\n{out}"
        ));
    }
    h.cmd(&["init", "--force"]).cwd(&dir).ok();
    if fs::read_to_string(&file).ok().as_deref() != Some(written.as_str()) {
        h.fail("`init --force` must write the file again");
    }

    // The written file starts once its script and address point at a real app and a free port.
    let port = free_port();
    let mut replaced = (0, 0);
    let text: String = written
        .lines()
        .map(|l| {
            if l.starts_with("script = ") {
                replaced.0 += 1;
                format!("script = {}", q(app_arg("http.js")))
            } else if l.starts_with("listen = ") {
                replaced.1 += 1;
                format!("listen = \"127.0.0.1:{port}\"")
            } else if l.starts_with("instances = ") {
                "instances = 2".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    if replaced != (1, 1) {
        h.fail(&format!(
            "expected one active `script = ` and one `listen = ` line in the file of `init`:\n{written}"
        ));
    }
    let edited = write_file(&dir, "edited.toml", &text);
    let out = h.cmd(&["start", &edited.display().to_string()]).ok();
    let names: Vec<String> = h.list().into_iter().map(|p| p.name).collect();
    let Some(name) = names.first().cloned() else {
        h.fail(&format!("the file of `init` started nothing\n{out}"));
    };
    let workers = h.wait_online(&name, 2);
    wait_served_by(&h, port, &pids(&workers), 10 * SECOND);

    let out = h.cmd(&["schema"]).ok();
    let schema: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| h.fail(&format!("`schema` is not JSON: {e}\n{out}")));
    if !schema.get("$schema").is_some_and(|s| s.is_string()) {
        h.fail(&format!("the schema has no \"$schema\"\n{out}"));
    }
    let props = &schema["properties"]["apps"]["items"]["properties"];
    let keys = [
        "name",
        "script",
        "args",
        "interpreter",
        "interpreter_args",
        "cwd",
        "instances",
        "listen",
        "env",
        "kill_signal",
        "kill_timeout",
        "wait_ready",
        "listen_timeout",
        "min_uptime",
        "max_restarts",
        "restart_backoff",
        "restart_backoff_max",
        "autorestart",
        "stop_exit_codes",
        "out_file",
        "error_file",
        "increment_var",
        "depends_on",
        "user",
        "group",
        "no_overlap",
    ];
    let missing: Vec<&str> = keys
        .into_iter()
        .filter(|k| !props.get(k).is_some_and(|p| p.is_object()))
        .collect();
    if !missing.is_empty() {
        h.fail(&format!(
            "properties.apps.items.properties lacks {missing:?}\n{out}"
        ));
    }
}

// =============================================================================================
// 10, 11, 12. autorestart, stop_exit_codes, increment_var, user
// =============================================================================================

#[test]
fn autorestart_false_and_stop_exit_codes_leave_an_exited_worker_stopped() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let exit_sh = q(eco_app("exit.sh"));
    let text = format!(
        "[[apps]]\nname = \"done\"\nscript = {exit_sh}\nstop_exit_codes = [0]\nenv = {{ EXIT_CODE = 0 }}\n\n\
         [[apps]]\nname = \"once\"\nscript = {exit_sh}\nautorestart = false\nenv = {{ EXIT_CODE = 1 }}\n"
    );
    let file = write_file(&dir, "exits.toml", &text);
    let out = h.cmd(&["start", &file.display().to_string()]).ok();
    // The control app: the same script under the default policy is restarted, so the options
    // made the difference. (Its `start` may fail: its worker never stays up.)
    let control = write_file(
        &dir,
        "again.toml",
        &format!("[[apps]]\nname = \"again\"\nscript = {exit_sh}\nenv = {{ EXIT_CODE = 0 }}\n"),
    );
    let control_out = h.cmd(&["start", &control.display().to_string()]).run();
    if control_out.status.is_none() {
        h.fail(&format!(
            "`start` of the control app did not return\n{control_out}"
        ));
    }

    let stopped = |name: &str| {
        h.workers(name)
            .first()
            .is_some_and(|w| w.status == "stopped" && w.restarts == 0 && w.last_exit.is_some())
    };
    h.wait_for(
        "`done` and `once` stopped after their one run",
        15 * SECOND,
        || stopped("done") && stopped("once"),
    );
    h.wait_for(
        "`again` (no stop_exit_codes) restarted",
        15 * SECOND,
        || h.workers("again").first().is_some_and(|w| w.restarts >= 2),
    );
    h.assert_stays(
        "`done` and `once` stay stopped with 0 restarts",
        2 * SECOND,
        || stopped("done") && stopped("once"),
    );
    let done = h.workers("done").remove(0);
    let once = h.workers("once").remove(0);
    let (d, o) = (
        done.last_exit.clone().unwrap_or_default(),
        once.last_exit.clone().unwrap_or_default(),
    );
    if !d.starts_with("code 0") || !o.starts_with("code 1") {
        h.fail(&format!(
            "expected last_exit `code 0 ...` for done and `code 1 ...` for once: {done:?} {once:?}\n{out}"
        ));
    }
}

#[test]
fn increment_var_gives_each_instance_its_own_port_number() {
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    let out_dir = h.scratch("env-out");
    let text = format!(
        "[[apps]]\nname = \"inc\"\nscript = {}\ninstances = 3\nincrement_var = \"PORT\"\n\
         env = {{ ENV_OUT_DIR = {}, PORT = \"4000\" }}\n",
        q(app_arg("env.sh")),
        q(out_dir.display().to_string())
    );
    let file = write_file(&dir, "inc.toml", &text);
    h.cmd(&["start", &file.display().to_string()]).ok();
    let workers = h.wait_online("inc", 3);
    let seen: Vec<(String, String)> = workers
        .iter()
        .map(|w| {
            let env = env_of(&h, &out_dir, w.pid.expect("online worker has a pid"));
            (
                env.get("HERDSMAN_INSTANCE").cloned().unwrap_or_default(),
                env.get("PORT").cloned().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = (0..3)
        .map(|i| (i.to_string(), (4000 + i).to_string()))
        .collect();
    if seen != expected {
        h.fail(&format!(
            "expected (HERDSMAN_INSTANCE, PORT) {expected:?}, the workers saw {seen:?}"
        ));
    }
}

#[test]
fn user_nobody_runs_the_worker_as_nobody() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED user_nobody_runs_the_worker_as_nobody: the test process is not root, so the \
             daemon cannot switch users"
        );
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("the user `nobody` exists")
        .uid
        .as_raw();
    let h = Herdsman::new();
    let dir = h.scratch("eco");
    // cwd = "/": nobody cannot enter the test's private (0700) temp dir.
    let text = format!(
        "[[apps]]\nname = \"who\"\nscript = {}\nuser = \"nobody\"\ncwd = \"/\"\n",
        q(eco_app("idle.sh"))
    );
    let file = write_file(&dir, "user.toml", &text);
    h.cmd(&["start", &file.display().to_string()]).ok();
    let pid = pid_list(&h.wait_online("who", 1))[0];
    let uids = proc_uids(pid);
    if uids != Some(vec![nobody; 4]) {
        h.fail(&format!(
            "the worker {pid} must run as nobody (uid {nobody}): Uid line {uids:?}"
        ));
    }
}
