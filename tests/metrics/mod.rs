//! Issue 16 (items 4-7): the metrics endpoint (`[daemon] metrics`), checked with `promtool check metrics`
//! and against `list --json`; OpenMetrics on request; the addresses it refuses; the Node runtime figures an
//! unmodified app gets from the preload; and the mark of an app whose connections nobody accepts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Herdsman, SECOND, app_arg, free_port, listen_addr, write_file};

/// A scrape: the status code, the content type and the body.
struct Scrape {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET /metrics` on 127.0.0.1:port with an optional `Accept` header; `None` while nothing answers.
fn scrape(port: u16, accept: Option<&str>) -> Option<Scrape> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(10 * SECOND)).ok()?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some(Scrape {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if the page has it.
fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `promtool check metrics` on a page: its exit status and what it said.
fn promtool(page: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(page.as_bytes())
        .expect("write the page to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn list_values(h: &Herdsman) -> Vec<Value> {
    let out = h.cmd(&["list", "--json"]).ok();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| h.fail(&format!("`list --json` is not JSON: {e}\n{out}")))
}

/// An ecosystem file: `[daemon]` lines (if any) and one Node app `web` of `instances` on `port`.
fn ecosystem(
    h: &Herdsman,
    daemon: &str,
    app: &str,
    script: &str,
    instances: u32,
    port: u16,
) -> PathBuf {
    let dir = h.scratch("eco");
    let text = format!(
        "{daemon}\n[[apps]]\nname = \"{app}\"\nscript = \"{script}\"\ninstances = {instances}\nlisten = \"{}\"\n",
        listen_addr(port)
    );
    write_file(&dir, &format!("{app}.toml"), &text)
}

fn worker_labels(w: &Value) -> String {
    format!(
        "{{app=\"{}\",instance=\"{}\",id=\"{}\"}}",
        w["name"].as_str().unwrap_or_default(),
        w["instance"],
        w["id"]
    )
}

#[test]
fn the_metrics_endpoint_passes_promtool_matches_list_and_speaks_openmetrics_on_request() {
    let h = Herdsman::new();
    let (metrics, port) = (free_port(), free_port());
    let file = ecosystem(
        &h,
        &format!("[daemon]\nmetrics = \"127.0.0.1:{metrics}\"\n"),
        "web",
        &app_arg("http.js"),
        2,
        port,
    );
    h.cmd(&["start", &file.display().to_string()]).ok();
    h.wait_online("web", 2);
    h.cmd(&["reload", "web"]).ok();
    // Every worker's preload has reported once (the page then has every family this app can have).
    h.wait_for("a runtime report from both workers", 15 * SECOND, || {
        let list = list_values(&h);
        list.len() == 2 && list.iter().all(|w| w["runtime"].is_object())
    });

    let page = h.wait_value("the metrics endpoint to answer", 10 * SECOND, || {
        scrape(metrics, None).filter(|s| s.status == 200)
    });
    let list = list_values(&h);
    if page.content_type != "text/plain; version=0.0.4; charset=utf-8" {
        h.fail(&format!("content type {:?}", page.content_type));
    }
    let (ok, said) = promtool(&page.body);
    if !ok {
        h.fail(&format!(
            "promtool check metrics failed:\n{said}\n{}",
            page.body
        ));
    }
    let body = &page.body;
    let get = |name: &str| {
        sample(body, name).unwrap_or_else(|| h.fail(&format!("no sample {name} in\n{body}")))
    };
    for w in &list {
        let labels = worker_labels(w);
        let restarts = get(&format!("herdsman_worker_restarts_total{labels}"));
        if restarts != w["restarts"].as_f64().unwrap_or(-1.0) {
            h.fail(&format!("restarts {restarts} on the page, list says {w}"));
        }
        let status = w["status"].as_str().unwrap_or_default();
        let online = get(&format!(
            "herdsman_worker_status{}status=\"{status}\"}}",
            labels.trim_end_matches('}').to_string() + ","
        ));
        if online != 1.0 {
            h.fail(&format!(
                "status {status} of {w} is not 1 on the page\n{body}"
            ));
        }
        // Memory and uptime are sampled again for the scrape: close to `list`'s, not equal.
        let memory = get(&format!("herdsman_worker_memory_bytes{labels}"));
        let listed = w["memory"].as_f64().unwrap_or(0.0);
        if listed <= 0.0 || (memory - listed).abs() > listed * 0.25 {
            h.fail(&format!("memory {memory} on the page, {listed} in list"));
        }
        let heap = get(&format!("herdsman_node_heap_used_bytes{labels}"));
        if heap <= 0.0 {
            h.fail(&format!("heap used {heap} for {w}"));
        }
    }
    let app = "{app=\"web\"}";
    for (name, expected) in [
        ("herdsman_app_workers_desired", 2.0),
        ("herdsman_app_workers_online", 2.0),
        ("herdsman_app_nobody_accepting", 0.0),
        ("herdsman_app_reload_duration_seconds_count", 1.0),
    ] {
        let got = get(&format!("{name}{app}"));
        if got != expected {
            h.fail(&format!("{name} is {got}, expected {expected}\n{body}"));
        }
    }
    let reloads = get("herdsman_app_reloads_total{app=\"web\",outcome=\"ok\"}");
    if Some(reloads) != list[0]["reloads"]["ok"].as_f64() || reloads != 1.0 {
        h.fail(&format!("reloads {reloads} on the page, list: {}", list[0]));
    }
    let queue = &list[0]["accept_queues"][0];
    let limit = get(&format!(
        "herdsman_listener_accept_queue_limit{{app=\"web\",address=\"{}\"}}",
        listen_addr(port)
    ));
    if Some(limit) != queue["limit"].as_f64() || limit <= 0.0 {
        h.fail(&format!(
            "accept queue limit {limit} on the page, list: {queue}"
        ));
    }

    let open = scrape(metrics, Some("application/openmetrics-text; version=1.0.0"))
        .unwrap_or_else(|| h.fail("no answer to an OpenMetrics scrape"));
    if !open
        .content_type
        .starts_with("application/openmetrics-text; version=1.0.0")
        || !open.body.ends_with("# EOF\n")
        || !open
            .body
            .contains("# TYPE herdsman_worker_restarts counter\n")
        || !open.body.contains("herdsman_worker_restarts_total{")
    {
        h.fail(&format!(
            "not OpenMetrics ({}):\n{}",
            open.content_type, open.body
        ));
    }
    let not_found = {
        let mut stream = TcpStream::connect(("127.0.0.1", metrics)).expect("connect");
        stream
            .set_read_timeout(Some(10 * SECOND))
            .expect("read timeout");
        stream
            .write_all(b"GET /nothing HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    if !not_found.starts_with("HTTP/1.1 404") {
        h.fail(&format!("GET /nothing: {not_found:?}"));
    }
}

#[test]
fn a_metrics_address_in_use_or_beyond_loopback_is_refused_and_nothing_changes() {
    let h = Herdsman::new();
    let port = free_port();
    let http = app_arg("http.js");

    // Beyond loopback without allow_remote, and an address that is none: refused where they are written.
    let remote = ecosystem(
        &h,
        "[daemon]\nmetrics = \"0.0.0.0:9615\"\n",
        "web",
        &http,
        1,
        port,
    );
    let out = h
        .cmd(&["start", &remote.display().to_string()])
        .fails_with("allow_remote = true");
    if !out.stderr.contains("web.toml:2:11") || !out.stderr.contains("daemon.metrics") {
        h.fail(&format!("expected the position of `metrics`\n{out}"));
    }
    let bad = ecosystem(
        &h,
        "[daemon]\nmetrics = \"nowhere\"\n",
        "web",
        &http,
        1,
        port,
    );
    let out = h
        .cmd(&["start", &bad.display().to_string()])
        .fails_with("invalid metrics address \"nowhere\"");
    if !out.stderr.contains("web.toml:2:11") {
        h.fail(&format!("expected the position of `metrics`\n{out}"));
    }
    if !list_values(&h).is_empty() {
        h.fail("an app was started from a refused file");
    }

    // An address in use: the file is not applied, the running app is untouched.
    let plain = ecosystem(&h, "", "web", &http, 1, port);
    h.cmd(&["start", &plain.display().to_string()]).ok();
    let before = h.wait_online("web", 1);
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let taken_port = taken.local_addr().expect("its address").port();
    let busy = ecosystem(
        &h,
        &format!("[daemon]\nmetrics = \"127.0.0.1:{taken_port}\"\n"),
        "other",
        &http,
        1,
        free_port(),
    );
    h.cmd(&["start", &busy.display().to_string()])
        .fails_with(&format!(
            "metrics address 127.0.0.1:{taken_port} is already in use"
        ));
    let after = h.workers("web");
    if !h.workers("other").is_empty() || after.len() != 1 || after[0].pid != before[0].pid {
        h.fail(&format!("the refused file changed the apps: {after:?}"));
    }

    // A free address is served; a later refused one leaves it served.
    let metrics = free_port();
    let good = ecosystem(
        &h,
        &format!("[daemon]\nmetrics = \"127.0.0.1:{metrics}\"\n"),
        "web",
        &http,
        1,
        port,
    );
    h.cmd(&["start", &good.display().to_string()]).ok();
    h.wait_value("the endpoint on the free address", 10 * SECOND, || {
        scrape(metrics, None).filter(|s| s.status == 200)
    });
    h.cmd(&["start", &busy.display().to_string()])
        .fails_with("is already in use");
    let still = scrape(metrics, None).unwrap_or_else(|| h.fail("the endpoint stopped"));
    if still.status != 200
        || !still
            .body
            .contains("herdsman_worker_cpu_percent{app=\"web\"")
    {
        h.fail(&format!(
            "the endpoint after a refused change:\n{}",
            still.body
        ));
    }
    drop(taken);
}

#[test]
fn an_unmodified_node_app_reports_its_event_loop_delay_and_heap() {
    let h = Herdsman::new();
    let port = free_port();
    // An app that knows nothing of herdsman and blocks its event loop for 300 ms every second.
    let script = write_file(
        &h.scratch("blocky"),
        "blocky.js",
        "const http = require('http');\n\
         http.createServer((req, res) => res.end('ok')).listen(process.env.PORT);\n\
         setInterval(() => { const end = Date.now() + 300; while (Date.now() < end); }, 1000);\n",
    );
    h.cmd(&[
        "start",
        &script.display().to_string(),
        "--name",
        "blocky",
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    h.wait_online("blocky", 1);
    let runtime = h.wait_value(
        "a runtime report showing the 300 ms blocks in the p99 delay",
        20 * SECOND,
        || {
            let list = list_values(&h);
            let runtime = list.first()?["runtime"].clone();
            (runtime["loop_delay_p99_us"].as_u64()? >= 200_000).then_some(runtime)
        },
    );
    if runtime["heap_used"].as_u64().unwrap_or(0) == 0
        || runtime["heap_total"].as_u64() < runtime["heap_used"].as_u64()
    {
        h.fail(&format!("heap figures: {runtime}"));
    }
    let out = h.cmd(&["describe", "blocky"]).ok();
    if !out.stdout.contains("event loop delay p50") || !out.stdout.contains("heap") {
        h.fail(&format!("describe shows no runtime figures\n{out}"));
    }
    // Turned off, the worker reports nothing.
    h.cmd(&["delete", "blocky"]).ok();
    h.cmd(&[
        "start",
        &script.display().to_string(),
        "--name",
        "quiet",
        "--listen",
        &listen_addr(port),
    ])
    .env("HERDSMAN_NODE_RUNTIME", "off")
    .ok();
    h.wait_online("quiet", 1);
    h.assert_stays(
        "no runtime report with HERDSMAN_NODE_RUNTIME=off",
        Duration::from_millis(3000),
        || list_values(&h).iter().all(|w| w["runtime"].is_null()),
    );
}

#[test]
fn an_app_whose_worker_binds_its_own_port_is_marked_nobody_accepting() {
    let h = Herdsman::new();
    let (port, own) = (free_port(), free_port());
    // A server that ignores LISTEN_FDS and binds a port of its own: herdsman's socket is never accepted on.
    let script = write_file(
        &h.scratch("own"),
        "own_port.py",
        &format!(
            "import http.server\n\
             http.server.HTTPServer(('127.0.0.1', {own}), http.server.BaseHTTPRequestHandler).serve_forever()\n"
        ),
    );
    h.cmd(&[
        "start",
        &script.display().to_string(),
        "--name",
        "own",
        "--interpreter",
        "python3",
        "--listen",
        &listen_addr(port),
    ])
    .ok();
    h.wait_online("own", 1);
    // Clients connect: the kernel completes their handshakes, and they wait in the queue.
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect to the app's socket"))
        .collect();
    let marked = h.wait_value("`own` marked nobody accepting", 15 * SECOND, || {
        list_values(&h)
            .into_iter()
            .find(|w| w["nobody_accepting"] == Value::Bool(true))
    });
    let queue = &marked["accept_queues"][0];
    if queue["depth"].as_u64() != Some(3) || queue["stalled_ms"].as_u64().unwrap_or(0) < 3000 {
        h.fail(&format!(
            "expected 3 connections waiting for 3 s or more: {marked}"
        ));
    }
    let table = h.cmd(&["list"]).ok();
    if !table.stdout.contains("(nobody accepting)")
        || !table.stdout.contains("own: nobody accepting")
    {
        h.fail(&format!("`list` does not mark the app\n{table}"));
    }
    let describe = h.cmd(&["describe", "own"]).ok();
    if !describe
        .stdout
        .contains("accepting     NOBODY: connections wait")
        || !describe.stdout.contains("3 waiting of")
    {
        h.fail(&format!("`describe` does not show the queue\n{describe}"));
    }
    let log = std::fs::read_to_string(h.home().join("daemon.log")).unwrap_or_default();
    if !log.contains("no worker accepts any") {
        h.fail(&format!("the daemon did not log it:\n{log}"));
    }
    drop(clients);
}
