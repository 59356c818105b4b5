//! Languages and environments: TypeScript scripts (tsx from `tests/apps/node`, or the refusal naming what
//! to install), `.env` files (`env_file`, `--env-file`), and servers in other languages on the inherited
//! socket: a Go server on the standard library and puma (both from Debian; each test says SKIPPED when its
//! tool is missing).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    Herdsman, SECOND, app, app_arg, env_of, fd_link, free_port, http_get, listen_addr, pids, q,
    wait_served_by, write_file,
};

/// A program on the test's PATH.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// `tests/apps/node/<file>`, after checking that `.ci/run` installed the packages (tsx among them).
fn node_app(file: &str) -> String {
    let dir = app("node");
    assert!(
        dir.join("node_modules/.bin/tsx").is_file(),
        "{}/node_modules/.bin/tsx is missing: run .ci/run (npm ci) to install the test apps' npm packages",
        dir.display()
    );
    dir.join(file).display().to_string()
}

/// Checks that every worker's fd 3 is the same socket (the one herdsman bound).
#[track_caller]
fn same_socket_on_fd_3(h: &Herdsman, workers: &[crate::helpers::Proc]) {
    let links: Vec<Option<String>> = workers
        .iter()
        .map(|w| fd_link(w.pid.expect("an online worker has a pid"), 3))
        .collect();
    let first = links[0].clone().unwrap_or_default();
    if !first.starts_with("socket:[") || links.iter().any(|l| l.as_deref() != Some(&first)) {
        h.fail(&format!(
            "every worker's fd 3 must be the same socket, got {links:?}"
        ));
    }
}

// =============================================================================================
// TypeScript
// =============================================================================================

#[test]
fn typescript_runs_with_tsx_in_cluster_mode_and_start_and_describe_say_so() {
    let h = Herdsman::new();
    let port = free_port();
    let script = node_app("server.ts");
    let dir = h.scratch("ts");
    write_file(&dir, ".env", "GREETING=\"hello from .env\"\n");
    // Run from elsewhere: tsx is found next to the script, not in the current directory.
    let out = h
        .cmd(&[
            "start",
            &script,
            "--name",
            "ts",
            "-i",
            "2",
            "--listen",
            &listen_addr(port),
            "--env-file",
            ".env",
        ])
        .cwd(&dir)
        .ok();
    if !out.stdout.contains("server.ts runs with tsx 4.") {
        h.fail(&format!("`start` must say that tsx runs the script\n{out}"));
    }
    let workers = h.wait_online("ts", 2);
    same_socket_on_fd_3(&h, &workers);
    // Only the workers answer, each on the shared socket (the Node preload runs inside tsx's process).
    wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
    let reply = http_get(port, "/", Duration::from_secs(5))
        .unwrap_or_else(|e| h.fail(&format!("GET /: {e}")));
    if !reply.body.ends_with(" hello from .env") {
        h.fail(&format!(
            "the TypeScript app must see GREETING from --env-file, answered {:?}",
            reply.body
        ));
    }
    let described = h.cmd(&["describe", "ts"]).ok();
    let runner = described
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("runner"))
        .unwrap_or_default();
    if !runner.contains("tsx 4.") || !runner.contains("node --import") {
        h.fail(&format!("describe must name the runner\n{described}"));
    }
}

#[test]
fn an_interpreter_given_as_tsx_is_loaded_into_node_so_cluster_mode_works() {
    // PM2 files often say `interpreter: "tsx"`; the tsx command would run the app in a child process,
    // out of reach of the Node preload, so it would bind the port again and fail.
    let h = Herdsman::new();
    let port = free_port();
    let dir = h.scratch("given");
    write_file(
        &dir,
        "ecosystem.toml",
        &format!(
            "[[apps]]\nname = \"given\"\nscript = {}\ninterpreter = \"tsx\"\ninstances = 2\nlisten = {}\n",
            q(node_app("server.ts")),
            q(listen_addr(port))
        ),
    );
    let out = h
        .cmd(&["start", &dir.join("ecosystem.toml").display().to_string()])
        .ok();
    if !out
        .stdout
        .contains("(given as interpreter tsx), through node --import")
    {
        h.fail(&format!("`start` must say tsx is loaded into node\n{out}"));
    }
    let workers = h.wait_online("given", 2);
    same_socket_on_fd_3(&h, &workers);
    wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
}

#[test]
fn typescript_with_no_runner_is_refused_at_start_naming_what_to_install() {
    let h = Herdsman::new();
    let dir = h.scratch("bare");
    let script = dir.join("server.ts");
    fs::copy(app("node/server.ts"), &script).expect("copy server.ts");
    // A PATH with node and nothing else: no tsx or ts-node anywhere.
    let bin = h.scratch("bin");
    let node = installed("node").expect("node is required by the tests");
    std::os::unix::fs::symlink(&node, bin.join("node")).expect("link node");
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .expect("node --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let (major, minor) = {
        let mut parts = version.trim_start_matches('v').split('.');
        let mut next = || {
            parts
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        (next(), next())
    };
    let port = free_port();
    let start = h
        .cmd(&[
            "start",
            script.to_str().expect("a UTF-8 path"),
            "--listen",
            &listen_addr(port),
        ])
        .cwd(&dir)
        .env("PATH", bin.display().to_string());
    if (major, minor) >= (22, 6) {
        // This Node strips types itself: the app runs, and `start` says so.
        let out = start.ok();
        if !out.stdout.contains("type stripping") {
            h.fail(&format!("`start` must say Node strips the types\n{out}"));
        }
        let workers = h.wait_online("server", 1);
        wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
        return;
    }
    let out = start.fails_with("no way to run TypeScript");
    for needle in ["install tsx", "npm install --save-dev tsx", &version] {
        if !out.stderr.contains(needle) {
            h.fail(&format!("the refusal must name {needle:?}\n{out}"));
        }
    }
    let list = h.cmd(&["list", "--json"]).ok();
    if list.stdout.trim() != "[]" {
        h.fail(&format!("nothing may be started\n{list}"));
    }
}

// =============================================================================================
// .env files
// =============================================================================================

const DOTENV: &str = r#"# shared settings
export FROM_FILE=file
OVERRIDDEN_BY_TABLE=file
OVERRIDES_CALLER=file   # a comment
QUOTED="a\tb \"q\""
LITERAL='$HOME \n'
LATER=first
API_TOKEN=s3cret-from-file
"#;

#[test]
fn env_files_sit_between_the_callers_environment_and_the_env_table() {
    let h = Herdsman::new();
    let dir = h.scratch("app");
    let out_dir = h.scratch("env-out");
    write_file(&dir, ".env", DOTENV);
    write_file(&dir, "more.env", "LATER=second\n");
    write_file(
        &dir,
        "ecosystem.toml",
        &format!(
            "[[apps]]\nname = \"envfile\"\nscript = {}\nenv_file = [\".env\", \"more.env\"]\n\
             env = {{ OVERRIDDEN_BY_TABLE = \"table\", ENV_OUT_DIR = {} }}\n",
            q(app_arg("env.sh")),
            q(out_dir.display().to_string())
        ),
    );
    // Started from the repository root: the files are found next to the ecosystem file.
    h.cmd(&["start", &dir.join("ecosystem.toml").display().to_string()])
        .env("OVERRIDES_CALLER", "caller")
        .env("CALLER_ONLY", "caller")
        .ok();
    let pid = h.wait_online("envfile", 1)[0].pid.expect("a pid");
    let env = env_of(&h, &out_dir, pid);
    let expected: BTreeMap<&str, &str> = BTreeMap::from([
        ("FROM_FILE", "file"),
        ("OVERRIDDEN_BY_TABLE", "table"),
        ("OVERRIDES_CALLER", "file"),
        ("CALLER_ONLY", "caller"),
        ("LITERAL", "$HOME \\n"),
        ("LATER", "second"),
        ("API_TOKEN", "s3cret-from-file"),
    ]);
    for (key, value) in expected {
        if env.get(key).map(String::as_str) != Some(value) {
            h.fail(&format!(
                "expected {key}={value:?}, the worker has {:?}\n{env:#?}",
                env.get(key)
            ));
        }
    }
    // (env.sh's `env` output is line-based: the tab survives, checked on its own.)
    if env.get("QUOTED").map(String::as_str) != Some("a\tb \"q\"") {
        h.fail(&format!("QUOTED: {:?}", env.get("QUOTED")));
    }
    let described = h.cmd(&["describe", "envfile"]).ok();
    if described.stdout.contains("s3cret-from-file") || !described.stdout.contains("API_TOKEN=") {
        h.fail(&format!(
            "describe must list API_TOKEN with its value masked\n{described}"
        ));
    }
    if !described
        .stdout
        .contains(&dir.join("more.env").display().to_string())
    {
        h.fail(&format!("describe must list the env files\n{described}"));
    }

    // `--env-file` on the command line: relative to the current directory, repeatable, later wins.
    h.cmd(&[
        "start",
        &app_arg("env.sh"),
        "--name",
        "flagged",
        "--env-file",
        ".env",
        "--env-file",
        "more.env",
    ])
    .cwd(&dir)
    .env("ENV_OUT_DIR", out_dir.display().to_string())
    .env("OVERRIDES_CALLER", "caller")
    .ok();
    let pid = h.wait_online("flagged", 1)[0].pid.expect("a pid");
    let env = env_of(&h, &out_dir, pid);
    for (key, value) in [
        ("FROM_FILE", "file"),
        ("OVERRIDES_CALLER", "file"),
        ("LATER", "second"),
    ] {
        if env.get(key).map(String::as_str) != Some(value) {
            h.fail(&format!(
                "--env-file: expected {key}={value:?}, got {:?}",
                env.get(key)
            ));
        }
    }

    // `reload --update-env` takes a new caller environment, under the app's own variables still.
    h.cmd(&["reload", "flagged", "--update-env"])
        .env("ENV_OUT_DIR", out_dir.display().to_string())
        .env("OVERRIDES_CALLER", "new caller")
        .env("NEW_CALLER_VAR", "new")
        .ok();
    let reloaded = h.wait_value("the reloaded worker online", 10 * SECOND, || {
        h.workers("flagged")
            .into_iter()
            .find(|w| w.status == "online" && w.pid.is_some_and(|p| p != pid))
    });
    let env = env_of(&h, &out_dir, reloaded.pid.expect("a pid"));
    for (key, value) in [
        ("FROM_FILE", "file"),
        ("OVERRIDES_CALLER", "file"),
        ("NEW_CALLER_VAR", "new"),
    ] {
        if env.get(key).map(String::as_str) != Some(value) {
            h.fail(&format!(
                "after reload --update-env: expected {key}={value:?}, got {:?}",
                env.get(key)
            ));
        }
    }
}

#[test]
fn a_malformed_env_file_is_reported_by_line_and_changes_nothing() {
    let h = Herdsman::new();
    let dir = h.scratch("bad");
    let out_dir = h.scratch("env-out");
    h.cmd(&["start", &app_arg("env.sh"), "--name", "running"])
        .env("ENV_OUT_DIR", out_dir.display().to_string())
        .ok();
    let before = h.wait_online("running", 1);
    write_file(
        &dir,
        "bad.env",
        "GOOD=1\n# fine\nthis is not an assignment\nOPEN=\"never closed\n",
    );
    write_file(
        &dir,
        "ecosystem.toml",
        &format!(
            "[[apps]]\nname = \"broken\"\nscript = {}\nenv_file = \"bad.env\"\n",
            q(app_arg("env.sh"))
        ),
    );
    let file = dir.join("ecosystem.toml").display().to_string();
    let bad = dir.join("bad.env").display().to_string();
    let out = h
        .cmd(&["start", &file])
        .fails_with(&format!("{bad}:3:1: expected KEY=VALUE"));
    for needle in [
        format!("{file}:4:12: `env_file`"),
        format!("{bad}:4:6: unterminated"),
        "nothing was changed".to_string(),
    ] {
        if !out.stderr.contains(&needle) {
            h.fail(&format!("expected {needle:?} on stderr\n{out}"));
        }
    }
    h.cmd(&["start", &app_arg("env.sh"), "--env-file", "bad.env"])
        .cwd(&dir)
        .fails_with(&format!("--env-file: {bad}:3:1: expected KEY=VALUE"));
    h.cmd(&["start", &app_arg("env.sh"), "--env-file", "missing.env"])
        .cwd(&dir)
        .fails_with("cannot read env file");
    let after = h.list();
    if after.len() != 1 || after[0].pid != before[0].pid || after[0].status != "online" {
        h.fail(&format!(
            "the running app must be untouched and nothing added: before {before:?}, after {after:?}"
        ));
    }
}

// =============================================================================================
// Other languages on the inherited socket
// =============================================================================================

/// Says why a test does not run here.
fn skipped(test: &str, tool: &str, package: &str) {
    println!(
        "SKIPPED {test}: `{tool}` is not installed (apt-get install -y {package}; .ci/run does)"
    );
}

#[test]
fn go_standard_library_server_serves_from_fd_3_in_two_workers() {
    let Some(go) = installed("go") else {
        return skipped("go_standard_library_server", "go", "golang-go");
    };
    let h = Herdsman::new();
    let dir = h.scratch("go");
    let binary = dir.join("server");
    // Offline and self-contained: the standard library only, caches in the scratch directory.
    let build = Command::new(go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(app("go/main.go"))
        .current_dir(&dir)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("run go build");
    if !build.status.success() {
        h.fail(&format!(
            "go build failed: {}",
            String::from_utf8_lossy(&build.stderr)
        ));
    }
    let port = free_port();
    h.cmd(&[
        "start",
        binary.to_str().expect("a UTF-8 path"),
        "--name",
        "go",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    let workers = h.wait_online("go", 2);
    wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
}

#[test]
fn puma_serves_from_the_inherited_socket_when_its_bind_matches() {
    let Some(puma) = installed("puma") else {
        return skipped("puma", "puma", "puma");
    };
    let h = Herdsman::new();
    let port = free_port();
    let bind = format!("tcp://127.0.0.1:{port}");
    h.cmd(&[
        "start",
        puma.to_str().expect("a UTF-8 path"),
        "--name",
        "puma",
        "-i",
        "2",
        "--listen",
        &listen_addr(port),
        "--cwd",
        &app_arg("puma"),
        "--",
        "-b",
        &bind,
        "config.ru",
    ])
    .ok();
    let workers = h.wait_online("puma", 2);
    same_socket_on_fd_3(&h, &workers);
    // puma in single mode: each herdsman worker is the process that answers.
    wait_served_by(&h, port, &pids(&workers), 30 * SECOND);
    h.wait_for(
        "puma to log that it took the inherited socket",
        10 * SECOND,
        || {
            h.out_log("puma")
                .contains(&format!("Activated tcp://127.0.0.1:{port}"))
        },
    );
}
