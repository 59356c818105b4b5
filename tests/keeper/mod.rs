//! The log keeper's failure modes: a keeper killed with SIGKILL (or by the OOM killer) takes no worker with
//! it. The daemon holds a copy of every pipe's read end, so no worker gets SIGPIPE meanwhile; when it reaps
//! the dead keeper it starts a new one and hands it every pipe, and the output written in between is read
//! from the pipes, not lost.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::{
    Herdsman, SECOND, children, free_port, http_get, is_log_keeper, pids, start_request_logger,
    wait_served_by,
};

/// The daemon's log keeper, if it runs.
fn keeper(h: &Herdsman) -> Option<i32> {
    children(h.daemon_pid())
        .into_iter()
        .find(|&pid| is_log_keeper(pid))
}

#[test]
fn a_killed_keeper_is_replaced_and_no_worker_dies_or_loses_output() {
    let h = Herdsman::new();
    let port = free_port();
    let workers = BTreeSet::from([start_request_logger(&h, port, &[])]);
    wait_served_by(&h, port, &workers, 10 * SECOND);
    let first = h.wait_value("the log keeper", 10 * SECOND, || keeper(&h));

    kill(Pid::from_raw(first), Signal::SIGKILL)
        .unwrap_or_else(|e| h.fail(&format!("kill the keeper: {e}")));
    // Requests right after the kill: the worker logs each one while no keeper may be reading.
    for n in 0..50 {
        if let Err(e) = http_get(port, &format!("/after-{n}"), Duration::from_secs(5)) {
            h.fail(&format!(
                "request {n} after the keeper was killed failed: {e}"
            ));
        }
    }
    let second = h.wait_value("a new log keeper", 10 * SECOND, || {
        keeper(&h).filter(|&pid| pid != first)
    });
    let log = h.home().join("logs/web-out.log");
    h.wait_for(
        "every request after the kill in the log",
        10 * SECOND,
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (0..50).all(|n| text.contains(&format!("url=/after-{n}\n")))
        },
    );
    let now = pids(&h.wait_online("web", 1));
    if now != workers {
        h.fail(&format!(
            "the worker must survive its keeper: was {workers:?}, now {now:?} (new keeper {second})"
        ));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !text
        .lines()
        .filter(|l| l.contains("url=/after-"))
        .all(|l| l.contains("Z [0] request"))
    {
        h.fail(&format!(
            "lines after the kill carry the keeper's prefix:\n{text}"
        ));
    }
}
