//! The fleet store: the client side of running `scope = "fleet"` jobs once across several hosts, through
//! the Redis or PostgreSQL the user already runs. See docs/fleet-store.md.
//!
//! # Protocol
//! - **Claim per fire time.** Every host computes the same run id (`<job>@<nominal fire time, UTC RFC 3339>`)
//!   from the schedule and calls [`Store::claim`]: an insert-if-absent of that run id. Exactly one host wins;
//!   the others learn which host holds it. The claim is kept after the run for at least `retain` (the
//!   catch-up window plus the skew margin), so a host with a late clock, or one catching up after a restart,
//!   cannot run the same fire time again. Redis: a Lua script doing `SET key NX PX` and `INCR` of the job's
//!   fence counter atomically. PostgreSQL: `INSERT … ON CONFLICT DO NOTHING` on the claims table and the
//!   fence counter row updated in the same transaction.
//! - **Fencing token.** Every successful claim increments a counter per (fleet, job); the winner's value is
//!   the run's fence. Only the job's own resource can enforce fencing (reject writes with a fence lower than
//!   one already seen); the store cannot.
//! - **Lease** (overlap across hosts): [`Store::acquire_lease`], renewed at a third of its TTL by
//!   [`Store::renew_lease`]; `false` from a renewal means the lease is lost and the run must be stopped.
//!   Expiry is computed by the store's clock (Redis `PX`, PostgreSQL `now()`), never by a host's.
//! - **Stop requests** ([`Store::stop_request`]) let a new owner ask the old one to stop (`overlap =
//!   "replace"`).
//!
//! # Clock skew tolerated
//! Run ids come from the schedule, not from a host's start time, so two hosts agree on a run id as long as
//! each fires it on the right side of the next fire time: skew up to **half the job's period** (and below
//! `retain` minus the catch-up window, so a late host still finds the claim) is harmless. Lease expiry and
//! history timestamps written by the store use the store's clock only, so host skew does not shorten or
//! lengthen a lease. [`Store::server_time`] lets the daemon warn when a host's clock is off by more than
//! that; [`SKEW_WARN`] is the conservative default margin (500 ms, half the period of a one-second schedule).

mod postgres_store;
mod redis_store;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::protocol::RunRecord;

/// The skew between a host's clock and the store's above which the daemon should warn: half the period of
/// the finest schedule (one second).
pub const SKEW_WARN: Duration = Duration::from_millis(500);

/// Connection and operation limits. The defaults notice a vanished server within a few seconds.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Limit on establishing a connection (TCP, TLS, authentication, schema check).
    pub connect_timeout: Duration,
    /// Limit on one operation once connected.
    pub op_timeout: Duration,
    /// TCP keepalive: idle time before the first probe (probes then go every second, 3 of them).
    pub keepalive_idle: Duration,
    /// First wait before reconnecting after a failure; doubles on every failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(3),
            op_timeout: Duration::from_secs(3),
            keepalive_idle: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// The result of [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// This call inserted the claim: this host runs the fire time.
    pub won: bool,
    /// The host holding the claim (this host when `won`).
    pub holder: String,
    /// The claim's fencing token: a counter per (fleet, job), increased by every successful claim.
    pub fence: u64,
}

/// A host as last seen through [`Store::heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSeen {
    pub name: String,
    pub version: String,
    /// The store's clock at the last heartbeat, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}

/// Why a fleet store operation failed. Never contains the store's password.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "fleet store: unknown scheme `{0}` (expected redis://, rediss://, postgres:// or postgresql://)"
    )]
    UnknownScheme(String),
    #[error("fleet store: invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("fleet store {store}: {op} timed out after {after:?}")]
    Timeout {
        store: String,
        op: &'static str,
        after: Duration,
    },
    #[error("fleet store {store}: {op}: {message}")]
    Store {
        store: String,
        op: &'static str,
        message: String,
    },
}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;

/// A connection to a fleet store (Redis or PostgreSQL). Connects lazily, reconnects after a failure on the
/// next call (after a small backoff), and bounds every operation by [`Options`]: no call hangs.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Redis(Box<redis_store::RedisStore>),
    Postgres(Box<postgres_store::PgStore>),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.redacted())
            .finish()
    }
}

/// Calls the same method on whichever backend.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Redis(store) => store.$method($($arg),*).await,
            Backend::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// A store for `url` with the default [`Options`]. Parses only; the first operation connects.
    pub fn new(url: &str) -> Result<Store> {
        Store::with_options(url, Options::default())
    }

    pub fn with_options(url: &str, options: Options) -> Result<Store> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let backend = match scheme {
            Some("redis") | Some("rediss") => Backend::Redis(Box::new(
                redis_store::RedisStore::new(StoreUrl::parse(url)?, options)?,
            )),
            Some("postgres") | Some("postgresql") => Backend::Postgres(Box::new(
                postgres_store::PgStore::new(StoreUrl::parse(url)?, options)?,
            )),
            Some(other) => return Err(FleetError::UnknownScheme(scheme_for_error(other))),
            None => return Err(FleetError::UnknownScheme(String::new())),
        };
        Ok(Store { backend })
    }

    /// The URL with its password replaced by `***`, for messages and `describe`.
    pub fn redacted(&self) -> &str {
        match &self.backend {
            Backend::Redis(store) => &store.url.redacted,
            Backend::Postgres(store) => &store.url.redacted,
        }
    }

    /// `"redis"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Redis(_) => "redis",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Claims `run_id` for `host`: insert-if-absent, kept for at least `retain`.
    pub async fn claim(
        &self,
        fleet: &str,
        job: &str,
        run_id: &str,
        scheduled_at: jiff::Timestamp,
        host: &str,
        retain: Duration,
    ) -> Result<Claim> {
        dispatch!(self.claim(fleet, job, run_id, scheduled_at, host, retain))
    }

    /// Takes the job's lease for `owner` (or extends it when `owner` already holds it). `false`: someone
    /// else holds it.
    pub async fn acquire_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        dispatch!(self.acquire_lease(fleet, job, owner, ttl))
    }

    /// Extends the job's lease held by `owner`. `false`: lost (someone else holds it, or it expired).
    pub async fn renew_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        dispatch!(self.renew_lease(fleet, job, owner, ttl))
    }

    /// Releases the job's lease if `owner` holds it; returns whether it did.
    pub async fn release_lease(&self, fleet: &str, job: &str, owner: &str) -> Result<bool> {
        dispatch!(self.release_lease(fleet, job, owner))
    }

    /// Asks the host running `run_id` to stop it (kept a day).
    pub async fn stop_request(&self, fleet: &str, job: &str, run_id: &str) -> Result<()> {
        dispatch!(self.stop_request(fleet, job, run_id))
    }

    pub async fn stop_requested(&self, fleet: &str, job: &str, run_id: &str) -> Result<bool> {
        dispatch!(self.stop_requested(fleet, job, run_id))
    }

    /// Writes a run's record (upsert by run id + attempt) and prunes the job's history to the newest `keep`.
    pub async fn record_run(
        &self,
        fleet: &str,
        job: &str,
        host: &str,
        record: &RunRecord,
        keep: u32,
    ) -> Result<()> {
        dispatch!(self.record_run(fleet, job, host, record, keep))
    }

    /// The job's runs across the fleet, oldest first, with the host that ran each.
    pub async fn history(&self, fleet: &str, job: &str) -> Result<Vec<(String, RunRecord)>> {
        let mut runs = dispatch!(self.history(fleet, job))?;
        runs.sort_by(|a, b| history_order(&a.1).cmp(&history_order(&b.1)));
        Ok(runs)
    }

    /// Records that `host` (running herdsman `version`) is alive, stamped with the store's clock.
    pub async fn heartbeat(&self, fleet: &str, host: &str, version: &str) -> Result<()> {
        dispatch!(self.heartbeat(fleet, host, version))
    }

    /// The hosts that sent a heartbeat, by name.
    pub async fn hosts(&self, fleet: &str) -> Result<Vec<HostSeen>> {
        let mut hosts = dispatch!(self.hosts(fleet))?;
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    /// The store's clock (Redis `TIME`, PostgreSQL `clock_timestamp()`).
    pub async fn server_time(&self) -> Result<jiff::Timestamp> {
        dispatch!(self.server_time())
    }

    /// One round trip to the store (connecting first if needed); returns its latency.
    pub async fn ping(&self) -> Result<Duration> {
        dispatch!(self.ping())
    }
}

/// History order: nominal fire time (or start, for manual runs), then run id, then attempt.
fn history_order(record: &RunRecord) -> (u64, &str, u32) {
    (order_ms(record), record.run_id.as_str(), record.attempt)
}

fn order_ms(record: &RunRecord) -> u64 {
    record
        .scheduled_at_ms
        .or(record.started_at_ms)
        .or(record.ended_at_ms)
        .unwrap_or(0)
}

/// A scheme as shown in an error: short, and only characters a scheme can have.
fn scheme_for_error(scheme: &str) -> String {
    scheme
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .take(32)
        .collect()
}

/// A store URL, its redacted form, and the secret to scrub from any message.
pub(crate) struct StoreUrl {
    pub(crate) raw: String,
    pub(crate) redacted: String,
    secrets: Vec<String>,
}

impl StoreUrl {
    fn parse(raw: &str) -> Result<StoreUrl> {
        let mut url = url::Url::parse(raw).map_err(|error| FleetError::InvalidUrl {
            url: redact_unparsed(raw),
            reason: error.to_string(),
        })?;
        let mut secrets = Vec::new();
        if let Some(password) = url.password() {
            secrets.push(password.to_string());
            if let Ok(decoded) = percent_decode(password) {
                secrets.push(decoded);
            }
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = url.set_password(Some("***"));
        }
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if query.iter().any(|(key, _)| key == "password") {
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for (key, value) in &query {
                if key == "password" {
                    secrets.push(value.clone());
                    pairs.append_pair(key, "***");
                } else {
                    pairs.append_pair(key, value);
                }
            }
        }
        secrets.retain(|secret| !secret.is_empty());
        Ok(StoreUrl {
            raw: raw.to_string(),
            redacted: url.to_string(),
            secrets,
        })
    }

    /// `message` with every occurrence of the password replaced by `***`.
    pub(crate) fn scrub(&self, message: String) -> String {
        let mut message = message;
        for secret in &self.secrets {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "***");
            }
        }
        message
    }

    pub(crate) fn error(&self, op: &'static str, error: impl fmt::Display) -> FleetError {
        FleetError::Store {
            store: self.redacted.clone(),
            op,
            message: self.scrub(error.to_string()),
        }
    }

    pub(crate) fn timeout(&self, op: &'static str, after: Duration) -> FleetError {
        FleetError::Timeout {
            store: self.redacted.clone(),
            op,
            after,
        }
    }
}

fn percent_decode(text: &str) -> Result<String, std::str::Utf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::str::from_utf8(&out).map(str::to_string)
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// A URL that does not parse, shown without anything between `://` and `@` (where a password would be).
fn redact_unparsed(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{}://***@{host}", scheme_for_error(scheme)),
            None => format!("{}://{rest}", scheme_for_error(scheme)),
        },
        None => "<not a URL>".to_string(),
    }
}

/// Reconnection pacing shared by both backends: after a failure, the next attempt waits a backoff that
/// doubles on each consecutive failure.
pub(crate) struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(options: &Options) -> Backoff {
        Backoff {
            failures: 0,
            not_before: None,
            min: options.min_backoff,
            max: options.max_backoff,
        }
    }

    /// How long to wait before the next connection attempt.
    pub(crate) fn wait(&self) -> Duration {
        self.not_before
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    pub(crate) fn failed(&mut self) {
        let delay = self
            .min
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some(Instant::now() + delay);
    }

    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }
}

/// Runs `future` under `limit`; a timeout becomes [`FleetError::Timeout`].
pub(crate) async fn bounded<T, E: fmt::Display>(
    url: &StoreUrl,
    op: &'static str,
    limit: Duration,
    future: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(url.error(op, error)),
        Err(_) => Err(url.timeout(op, limit)),
    }
}

/// Milliseconds as a store argument (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The JSON a history entry is stored as in either store.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredRun {
    pub(crate) host: String,
    pub(crate) record: RunRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_is_named() {
        let error = Store::new("mysql://root:hunter2@db/ops").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`mysql`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let error = Store::new("db.example:6379").unwrap_err();
        assert!(error.to_string().contains("unknown scheme"));
    }

    #[test]
    fn passwords_are_redacted() {
        let store = Store::new("redis://:s3cr%40t@10.0.0.5:6379/0").unwrap();
        assert_eq!(store.redacted(), "redis://:***@10.0.0.5:6379/0");
        assert!(!format!("{store:?}").contains("s3cr"));
        let store = Store::new("postgres://herdsman:pw@db/ops?sslmode=require").unwrap();
        assert_eq!(
            store.redacted(),
            "postgres://herdsman:***@db/ops?sslmode=require"
        );
        let store = Store::new("postgresql://db/ops?user=h&password=pw2").unwrap();
        assert!(!store.redacted().contains("pw2"), "{}", store.redacted());
        assert!(!format!("{store:?}").contains("pw2"));
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let url = StoreUrl::parse("redis://:s3cr%40t@host/0").unwrap();
        assert_eq!(url.scrub("a s3cr@t b s3cr%40t".to_string()), "a *** b ***");
    }

    #[test]
    fn invalid_urls_do_not_leak() {
        let error = Store::new("postgres://u:pw@[bad/ops").unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("pw"), "{message}");
    }

    #[test]
    fn tls_urls_are_accepted() {
        let store = Store::new("rediss://:pw@cache.example:6380/1").unwrap();
        assert_eq!(store.kind(), "redis");
        assert_eq!(store.redacted(), "rediss://:***@cache.example:6380/1");
        // TLS for PostgreSQL needs the system's root certificates; without them the error says so.
        match Store::new("postgresql://h:pw@db.example/ops?sslmode=require") {
            Ok(store) => assert_eq!(store.kind(), "postgres"),
            Err(error) => assert!(error.to_string().contains("root certificates"), "{error}"),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut backoff = Backoff::new(&Options::default());
        assert_eq!(backoff.wait(), Duration::ZERO);
        for _ in 0..10 {
            backoff.failed();
        }
        assert!(backoff.wait() <= Duration::from_secs(2));
        backoff.succeeded();
        assert_eq!(backoff.wait(), Duration::ZERO);
    }
}
