//! The fleet store (issue 15) against real servers on loopback: a `redis-server` and a PostgreSQL cluster
//! of the test's own. Each scenario runs against both stores: concurrent claims of one run id have one
//! winner and increasing fences; leases expire and cannot be renewed by a non-owner; history is upserted
//! and pruned; the store's clock is close to ours; a closed port and a SIGSTOPped server give errors within
//! the timeout, and the store works again after SIGCONT. Claim latency on loopback is printed.

use std::time::{Duration, Instant};

use herdsman::fleet::{Claim, Store};
use herdsman::protocol::{RunOutcome, RunRecord};

pub mod servers;

use crate::helpers::{POLL, free_port};
use servers::{Server, runtime, test_options};

fn store(url: &str) -> Store {
    Store::with_options(url, test_options()).expect("a valid store URL")
}

fn fire(second: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + second).expect("a valid timestamp")
}

fn run_id(job: &str, at: jiff::Timestamp) -> String {
    format!("{job}@{at}")
}

/// Three hosts claim the same run ids at once: one winner each time, every host agrees on the holder and
/// the fence, and fences strictly increase from one run id to the next.
async fn three_claimers(url: &str) {
    let hosts = [store(url), store(url), store(url)];
    let names = ["host-a", "host-b", "host-c"];
    let retain = Duration::from_secs(60);
    let mut last_fence = 0;
    for second in 0..20 {
        let at = fire(second);
        let id = run_id("nightly", at);
        let claim = |i: usize| hosts[i].claim("shop", "nightly", &id, at, names[i], retain);
        let (a, b, c) = tokio::join!(claim(0), claim(1), claim(2));
        let claims: Vec<Claim> = [a, b, c]
            .into_iter()
            .map(|claim| claim.expect("claim"))
            .collect();
        let winners: Vec<usize> = (0..3).filter(|&i| claims[i].won).collect();
        assert_eq!(winners.len(), 1, "{id}: {claims:?}");
        let holder = names[winners[0]];
        for claim in &claims {
            assert_eq!(claim.holder, holder, "{id}: {claims:?}");
            assert_eq!(claim.fence, claims[winners[0]].fence, "{id}: {claims:?}");
        }
        assert!(
            claims[0].fence > last_fence,
            "{id}: {claims:?} after {last_fence}"
        );
        last_fence = claims[0].fence;
        // A later claim of the same run id (a host catching up) still loses.
        let late = hosts[0]
            .claim("shop", "nightly", &id, at, "host-late", retain)
            .await
            .expect("late claim");
        assert!(!late.won && late.holder == holder, "{late:?}");
    }
    // Another fleet and another job have their own claims.
    let at = fire(0);
    let other = hosts[1]
        .claim(
            "other",
            "nightly",
            &run_id("nightly", at),
            at,
            "host-b",
            retain,
        )
        .await
        .expect("claim in another fleet");
    assert!(other.won, "{other:?}");
}

/// A lease held by one owner: a second owner can neither take nor renew it until it expires.
async fn lease_expiry(url: &str) {
    let (a, b) = (store(url), store(url));
    let ttl = Duration::from_millis(400);
    assert!(
        a.acquire_lease("shop", "report", "a", ttl)
            .await
            .expect("acquire")
    );
    let taken = Instant::now();
    assert!(
        !b.acquire_lease("shop", "report", "b", ttl)
            .await
            .expect("acquire b")
    );
    assert!(
        !b.renew_lease("shop", "report", "b", ttl)
            .await
            .expect("renew b")
    );
    assert!(
        !b.release_lease("shop", "report", "b")
            .await
            .expect("release b")
    );
    assert!(
        a.renew_lease("shop", "report", "a", ttl)
            .await
            .expect("renew a")
    );
    let renewed = Instant::now();
    // Expires after its TTL, then b gets it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if b.acquire_lease("shop", "report", "b", ttl)
            .await
            .expect("acquire b")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(POLL).await;
    }
    assert!(
        renewed.elapsed() >= ttl - Duration::from_millis(50),
        "taken over after {:?} (ttl {ttl:?}, first taken {:?} ago)",
        renewed.elapsed(),
        taken.elapsed()
    );
    assert!(
        !a.renew_lease("shop", "report", "a", ttl)
            .await
            .expect("renew a")
    );
    assert!(
        b.release_lease("shop", "report", "b")
            .await
            .expect("release b")
    );
    assert!(
        a.acquire_lease("shop", "report", "a", ttl)
            .await
            .expect("acquire a")
    );

    // Stop requests, keyed by run id.
    let id = run_id("report", fire(0));
    assert!(
        !a.stop_requested("shop", "report", &id)
            .await
            .expect("stop?")
    );
    b.stop_request("shop", "report", &id).await.expect("stop");
    assert!(
        a.stop_requested("shop", "report", &id)
            .await
            .expect("stop?")
    );
    assert!(
        !a.stop_requested("shop", "report", &run_id("report", fire(1)))
            .await
            .expect("stop?")
    );
}

fn record(second: i64, attempt: u32, outcome: RunOutcome) -> RunRecord {
    let at = fire(second);
    let ms = u64::try_from(at.as_millisecond()).expect("positive");
    RunRecord {
        run_id: run_id("backup", at),
        scheduled_at_ms: Some(ms),
        started_at_ms: Some(ms + 5),
        ended_at_ms: (outcome != RunOutcome::Running).then_some(ms + 900),
        outcome,
        exit: None,
        exit_code: (outcome == RunOutcome::Ok).then_some(0),
        attempt,
        pid: Some(4242),
        log: None,
        detail: None,
    }
}

/// Upsert by run id + attempt, pruned to the newest `keep`, read back oldest first; hosts and clock.
async fn history_hosts_time(url: &str) {
    let s = store(url);
    for second in [3, 1, 2] {
        s.record_run(
            "shop",
            "backup",
            "host-a",
            &record(second, 1, RunOutcome::Running),
            3,
        )
        .await
        .expect("record");
    }
    // The run of second 2 ends (upsert), and has a retry on another host.
    s.record_run(
        "shop",
        "backup",
        "host-a",
        &record(2, 1, RunOutcome::Failed),
        3,
    )
    .await
    .expect("record");
    s.record_run("shop", "backup", "host-b", &record(2, 2, RunOutcome::Ok), 3)
        .await
        .expect("record");
    let runs = s.history("shop", "backup").await.expect("history");
    let seen: Vec<(String, String, u32, RunOutcome)> = runs
        .iter()
        .map(|(host, r)| (host.clone(), r.run_id.clone(), r.attempt, r.outcome))
        .collect();
    let expect = vec![
        (
            "host-a".to_string(),
            run_id("backup", fire(2)),
            1,
            RunOutcome::Failed,
        ),
        (
            "host-b".to_string(),
            run_id("backup", fire(2)),
            2,
            RunOutcome::Ok,
        ),
        (
            "host-a".to_string(),
            run_id("backup", fire(3)),
            1,
            RunOutcome::Running,
        ),
    ];
    assert_eq!(seen, expect);
    assert_eq!(runs[1].1, record(2, 2, RunOutcome::Ok));
    assert!(
        s.history("shop", "nothing")
            .await
            .expect("history")
            .is_empty()
    );

    s.heartbeat("shop", "host-a", "0.1.0")
        .await
        .expect("heartbeat");
    s.heartbeat("shop", "host-b", "0.2.0")
        .await
        .expect("heartbeat");
    s.heartbeat("shop", "host-a", "0.1.1")
        .await
        .expect("heartbeat");
    let hosts = s.hosts("shop").await.expect("hosts");
    let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).expect("positive");
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(
        (hosts[0].name.as_str(), hosts[0].version.as_str()),
        ("host-a", "0.1.1")
    );
    assert_eq!(
        (hosts[1].name.as_str(), hosts[1].version.as_str()),
        ("host-b", "0.2.0")
    );
    for host in &hosts {
        assert!(
            host.last_seen_ms.abs_diff(now_ms) < 2_000,
            "{host:?} vs {now_ms}"
        );
    }

    let server = s.server_time().await.expect("server time");
    let skew = (jiff::Timestamp::now() - server)
        .total(jiff::Unit::Millisecond)
        .expect("a span in ms")
        .abs();
    assert!(skew < 1_000.0, "store clock {server} is {skew} ms off");
}

/// Claim latency on loopback: `n` claims of distinct run ids, one host, sequential.
async fn claim_latency(url: &str, kind: &str) {
    let s = store(url);
    s.ping().await.expect("ping");
    let n = 300;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let at = fire(10_000 + i64::try_from(i).expect("small"));
        let start = Instant::now();
        let claim = s
            .claim(
                "bench",
                "tick",
                &run_id("tick", at),
                at,
                "host-a",
                Duration::from_secs(60),
            )
            .await
            .expect("claim");
        samples.push(start.elapsed());
        assert!(claim.won);
    }
    samples.sort();
    let p50 = samples[n / 2];
    let p99 = samples[n * 99 / 100];
    let ping = s.ping().await.expect("ping");
    println!("fleet store {kind}: claim latency p50 {p50:?} p99 {p99:?} (n={n}); ping {ping:?}");
    assert!(p99 < Duration::from_secs(1), "{kind} claim p99 {p99:?}");
}

/// A SIGSTOPped server: operations fail within the timeout instead of hanging, and work after SIGCONT.
async fn paused_server(server: &Server) {
    let options = test_options();
    let s = store(&server.url);
    s.ping().await.expect("ping");
    {
        let _paused = server.pause();
        for _ in 0..2 {
            let start = Instant::now();
            let error = s
                .acquire_lease("shop", "paused", "a", Duration::from_secs(5))
                .await
                .expect_err("an operation on a stopped server fails");
            let took = start.elapsed();
            assert!(
                took < options.op_timeout + options.connect_timeout + Duration::from_millis(700),
                "took {took:?}: {error}"
            );
        }
    }
    // After SIGCONT, the next calls reconnect.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s
            .acquire_lease("shop", "paused", "a", Duration::from_secs(5))
            .await
        {
            Ok(acquired) => {
                assert!(acquired);
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "no recovery: {error}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A closed port: an error naming the store within the connect timeout, and no password in it.
async fn unreachable(url: &str) {
    let s = store(url);
    let start = Instant::now();
    let error = s.ping().await.expect_err("a closed port fails");
    let took = start.elapsed();
    let message = error.to_string();
    assert!(took < Duration::from_secs(2), "took {took:?}: {message}");
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let error = s
        .claim("shop", "x", "x@1", fire(0), "a", Duration::from_secs(1))
        .await
        .expect_err("a closed port fails");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn redis_store() {
    let server = Server::redis();
    runtime().block_on(async {
        three_claimers(&server.url).await;
        lease_expiry(&server.url).await;
        history_hosts_time(&server.url).await;
        claim_latency(&server.url, "redis").await;
    });
}

#[test]
fn postgres_store() {
    let server = Server::postgres();
    runtime().block_on(async {
        // Several hosts starting at once create the schema once, without errors.
        let hosts = [
            store(&server.url),
            store(&server.url),
            store(&server.url),
            store(&server.url),
        ];
        let (a, b, c, d) = tokio::join!(
            hosts[0].ping(),
            hosts[1].ping(),
            hosts[2].ping(),
            hosts[3].ping()
        );
        for ping in [a, b, c, d] {
            ping.expect("concurrent first connections");
        }
        three_claimers(&server.url).await;
        lease_expiry(&server.url).await;
        history_hosts_time(&server.url).await;
        claim_latency(&server.url, "postgres").await;
    });
}

#[test]
fn redis_paused() {
    let server = Server::redis();
    runtime().block_on(paused_server(&server));
}

#[test]
fn postgres_paused() {
    let server = Server::postgres();
    runtime().block_on(paused_server(&server));
}

#[test]
fn unreachable_stores_fail_fast() {
    let port = free_port();
    runtime().block_on(async {
        unreachable(&format!("redis://:hunter2@127.0.0.1:{port}/0")).await;
        unreachable(&format!("postgres://herdsman:hunter2@127.0.0.1:{port}/ops")).await;
    });
}
