//! The PostgreSQL fleet store: tables in the `herdsman` schema, created if missing (see [`SCHEMA`]).
//!
//! Leases are rows with an expiry computed from the server's `now()`, not advisory locks: a session
//! advisory lock lives as long as the session, so it breaks behind a transaction-mode pooler (PgBouncer
//! hands the session to someone else) and outlives a vanished host until the server notices the dead TCP
//! connection. A row with an expiry behaves the same through any pooler and frees itself after its TTL.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use super::{
    Backoff, Claim, FleetError, HostSeen, Options, Result, StoreUrl, StoredRun, bounded, millis,
    order_ms,
};
use crate::protocol::RunRecord;

/// The schema version this herdsman writes; stored in `herdsman.schema_version`.
pub const SCHEMA_VERSION: i32 = 1;

/// The tables, created idempotently. Run in one transaction holding a transaction-level advisory lock, so
/// several hosts starting at once do not race on `CREATE … IF NOT EXISTS` (which can fail with a unique
/// violation when two sessions create the same object concurrently).
const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS herdsman.schema_version (
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS herdsman.claims (
    fleet text NOT NULL,
    job text NOT NULL,
    run_id text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    host text NOT NULL,
    fence bigint NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (fleet, job, run_id)
);
CREATE INDEX IF NOT EXISTS claims_expiry ON herdsman.claims (fleet, job, expires_at);
CREATE TABLE IF NOT EXISTS herdsman.fences (
    fleet text NOT NULL,
    job text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (fleet, job)
);
CREATE TABLE IF NOT EXISTS herdsman.leases (
    fleet text NOT NULL,
    job text NOT NULL,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (fleet, job)
);
CREATE TABLE IF NOT EXISTS herdsman.stop_requests (
    fleet text NOT NULL,
    job text NOT NULL,
    run_id text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fleet, job, run_id)
);
CREATE TABLE IF NOT EXISTS herdsman.runs (
    fleet text NOT NULL,
    job text NOT NULL,
    run_id text NOT NULL,
    attempt integer NOT NULL,
    host text NOT NULL,
    order_ms bigint NOT NULL,
    record text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fleet, job, run_id, attempt)
);
CREATE TABLE IF NOT EXISTS herdsman.hosts (
    fleet text NOT NULL,
    host text NOT NULL,
    version text NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (fleet, host)
);
-- One round trip per claim. Each statement of a volatile function takes a new snapshot (read committed), so
-- a claimer that waited on the unique index for the winner's commit then reads the winner's row and fence.
CREATE OR REPLACE FUNCTION herdsman.claim(
    p_fleet text, p_job text, p_run_id text, p_scheduled_ms bigint, p_host text, p_retain_ms bigint,
    OUT o_won boolean, OUT o_holder text, OUT o_fence bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM herdsman.claims c
     WHERE c.fleet = p_fleet AND c.job = p_job AND c.expires_at < now();
    INSERT INTO herdsman.claims (fleet, job, run_id, scheduled_at, host, fence, expires_at)
    VALUES (p_fleet, p_job, p_run_id, to_timestamp(p_scheduled_ms / 1000.0), p_host, 0,
            now() + p_retain_ms * interval '1 millisecond')
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO herdsman.fences AS f (fleet, job, value) VALUES (p_fleet, p_job, 1)
        ON CONFLICT (fleet, job) DO UPDATE SET value = f.value + 1
        RETURNING f.value INTO o_fence;
        UPDATE herdsman.claims c SET fence = o_fence
         WHERE c.fleet = p_fleet AND c.job = p_job AND c.run_id = p_run_id;
        o_won := true;
        o_holder := p_host;
    ELSE
        SELECT c.host, c.fence INTO o_holder, o_fence FROM herdsman.claims c
         WHERE c.fleet = p_fleet AND c.job = p_job AND c.run_id = p_run_id;
        o_won := false;
    END IF;
END
$$;
";

/// The key of the transaction-level advisory lock taken while creating the schema ("herdsman" in ASCII).
const SCHEMA_LOCK: i64 = 0x6865_7264_736d_616e;

struct Conn {
    client: Client,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct PgStore {
    pub(crate) url: StoreUrl,
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    options: Options,
    conn: Mutex<Option<Conn>>,
    backoff: std::sync::Mutex<Backoff>,
}

impl PgStore {
    pub(crate) fn new(url: StoreUrl, options: Options) -> Result<PgStore> {
        let mut config: tokio_postgres::Config =
            url.raw
                .parse()
                .map_err(|error: tokio_postgres::Error| FleetError::InvalidUrl {
                    url: url.redacted.clone(),
                    reason: url.scrub(error.to_string()),
                })?;
        config
            .application_name("herdsman")
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(options.keepalive_idle)
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .tcp_user_timeout(options.keepalive_idle + options.op_timeout);
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector().map_err(|reason| FleetError::InvalidUrl {
                url: url.redacted.clone(),
                reason,
            })?),
            _ => None,
        };
        Ok(PgStore {
            url,
            config,
            tls,
            options,
            conn: Mutex::new(None),
            backoff: std::sync::Mutex::new(Backoff::new(&options)),
        })
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<Conn> {
        let (client, task) = match &self.tls {
            Some(tls) => {
                let connect = self.config.connect(tls.clone());
                let (client, connection) =
                    bounded(&self.url, "connect", self.options.connect_timeout, connect).await?;
                (client, tokio::spawn(drive(connection)))
            }
            None => {
                let connect = self.config.connect(NoTls);
                let (client, connection) =
                    bounded(&self.url, "connect", self.options.connect_timeout, connect).await?;
                (client, tokio::spawn(drive(connection)))
            }
        };
        let mut conn = Conn { client, task };
        bounded(
            &self.url,
            "create schema",
            self.options.connect_timeout,
            ensure_schema(&mut conn.client),
        )
        .await?;
        Ok(conn)
    }

    /// Runs one operation with the connection (connecting first, after the backoff, if there is none),
    /// under the operation timeout. Any failure drops the connection so the next call reconnects.
    async fn run<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            let wait = self.backoff().wait();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            match self.connect().await {
                Ok(conn) => {
                    self.backoff().succeeded();
                    *slot = Some(conn);
                }
                Err(error) => {
                    self.backoff().failed();
                    return Err(error);
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return Err(self.url.error(op, "no connection"));
        };
        let result = bounded(&self.url, op, self.options.op_timeout, f(&mut conn.client)).await;
        if result.is_err() {
            slot.take();
            self.backoff().failed();
        }
        result
    }

    pub(crate) async fn claim(
        &self,
        fleet: &str,
        job: &str,
        run_id: &str,
        scheduled_at: jiff::Timestamp,
        host: &str,
        retain: Duration,
    ) -> Result<Claim> {
        let scheduled_ms = scheduled_at.as_millisecond();
        let retain_ms = i64::try_from(millis(retain)).unwrap_or(i64::MAX);
        let row = self
            .run("claim", async |client| {
                client
                    .query_one(
                        "SELECT o_won, o_holder, o_fence FROM herdsman.claim($1, $2, $3, $4, $5, $6)",
                        &[&fleet, &job, &run_id, &scheduled_ms, &host, &retain_ms],
                    )
                    .await
            })
            .await?;
        let fields = (|| -> Result<(bool, Option<String>, Option<i64>), tokio_postgres::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        })();
        let (won, holder, fence) = match fields {
            Ok((won, Some(holder), Some(fence))) => (won, holder, fence),
            // The conflicting claim expired and was deleted between the insert and the read.
            Ok(_) => {
                return Err(self
                    .url
                    .error("claim", "the claim vanished while being read; retry"));
            }
            Err(error) => return Err(self.url.error("claim", error)),
        };
        Ok(Claim {
            won,
            holder,
            fence: u64::try_from(fence).unwrap_or_default(),
        })
    }

    pub(crate) async fn acquire_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl_ms = i64::try_from(millis(ttl)).unwrap_or(i64::MAX);
        let rows = self
            .run("acquire lease", async |client| {
                client
                    .execute(
                        "INSERT INTO herdsman.leases AS l (fleet, job, owner, expires_at)
                         VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')
                         ON CONFLICT (fleet, job) DO UPDATE
                           SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                           WHERE l.owner = EXCLUDED.owner OR l.expires_at <= now()",
                        &[&fleet, &job, &owner, &ttl_ms],
                    )
                    .await
            })
            .await?;
        Ok(rows == 1)
    }

    pub(crate) async fn renew_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl_ms = i64::try_from(millis(ttl)).unwrap_or(i64::MAX);
        let rows = self
            .run("renew lease", async |client| {
                client
                    .execute(
                        "UPDATE herdsman.leases SET expires_at = now() + $4::bigint * interval '1 millisecond'
                         WHERE fleet = $1 AND job = $2 AND owner = $3 AND expires_at > now()",
                        &[&fleet, &job, &owner, &ttl_ms],
                    )
                    .await
            })
            .await?;
        Ok(rows == 1)
    }

    pub(crate) async fn release_lease(&self, fleet: &str, job: &str, owner: &str) -> Result<bool> {
        let rows = self
            .run("release lease", async |client| {
                client
                    .execute(
                        "DELETE FROM herdsman.leases WHERE fleet = $1 AND job = $2 AND owner = $3",
                        &[&fleet, &job, &owner],
                    )
                    .await
            })
            .await?;
        Ok(rows == 1)
    }

    pub(crate) async fn stop_request(&self, fleet: &str, job: &str, run_id: &str) -> Result<()> {
        self.run("stop request", async |client| {
            client
                .execute(
                    "DELETE FROM herdsman.stop_requests
                     WHERE fleet = $1 AND job = $2 AND requested_at < now() - interval '1 day'",
                    &[&fleet, &job],
                )
                .await?;
            client
                .execute(
                    "INSERT INTO herdsman.stop_requests (fleet, job, run_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&fleet, &job, &run_id],
                )
                .await
        })
        .await
        .map(drop)
    }

    pub(crate) async fn stop_requested(
        &self,
        fleet: &str,
        job: &str,
        run_id: &str,
    ) -> Result<bool> {
        let row = self
            .run("stop requested", async |client| {
                client
                    .query_opt(
                        "SELECT 1 FROM herdsman.stop_requests WHERE fleet = $1 AND job = $2 AND run_id = $3",
                        &[&fleet, &job, &run_id],
                    )
                    .await
            })
            .await?;
        Ok(row.is_some())
    }

    pub(crate) async fn record_run(
        &self,
        fleet: &str,
        job: &str,
        host: &str,
        record: &RunRecord,
        keep: u32,
    ) -> Result<()> {
        let value = serde_json::to_string(&StoredRun {
            host: host.to_string(),
            record: record.clone(),
        })
        .map_err(|error| self.url.error("record run", error))?;
        let attempt = i32::try_from(record.attempt).unwrap_or(i32::MAX);
        let order = i64::try_from(order_ms(record)).unwrap_or(i64::MAX);
        let keep = i64::from(keep);
        let run_id = record.run_id.as_str();
        self.run("record run", async |client| {
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO herdsman.runs (fleet, job, run_id, attempt, host, order_ms, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (fleet, job, run_id, attempt) DO UPDATE
                   SET host = EXCLUDED.host, order_ms = EXCLUDED.order_ms, record = EXCLUDED.record,
                       updated_at = now()",
                &[&fleet, &job, &run_id, &attempt, &host, &order, &value],
            )
            .await?;
            tx.execute(
                "DELETE FROM herdsman.runs r WHERE r.fleet = $1 AND r.job = $2
                   AND (r.run_id, r.attempt) NOT IN (
                     SELECT k.run_id, k.attempt FROM herdsman.runs k WHERE k.fleet = $1 AND k.job = $2
                     ORDER BY k.order_ms DESC, k.run_id DESC, k.attempt DESC LIMIT $3)",
                &[&fleet, &job, &keep],
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    pub(crate) async fn history(&self, fleet: &str, job: &str) -> Result<Vec<(String, RunRecord)>> {
        let rows = self
            .run("history", async |client| {
                client
                    .query(
                        "SELECT record FROM herdsman.runs WHERE fleet = $1 AND job = $2",
                        &[&fleet, &job],
                    )
                    .await
            })
            .await?;
        rows.iter()
            .map(|row| {
                let text: &str = row
                    .try_get(0)
                    .map_err(|error| self.url.error("history", error))?;
                serde_json::from_str::<StoredRun>(text)
                    .map(|run| (run.host, run.record))
                    .map_err(|error| self.url.error("history", error))
            })
            .collect()
    }

    pub(crate) async fn heartbeat(&self, fleet: &str, host: &str, version: &str) -> Result<()> {
        self.run("heartbeat", async |client| {
            client
                .execute(
                    "INSERT INTO herdsman.hosts (fleet, host, version, last_seen) VALUES ($1, $2, $3, now())
                     ON CONFLICT (fleet, host) DO UPDATE SET version = EXCLUDED.version, last_seen = now()",
                    &[&fleet, &host, &version],
                )
                .await
        })
        .await
        .map(drop)
    }

    pub(crate) async fn hosts(&self, fleet: &str) -> Result<Vec<HostSeen>> {
        let rows = self
            .run("hosts", async |client| {
                client
                    .query(
                        "SELECT host, version, (extract(epoch FROM last_seen) * 1000)::bigint
                         FROM herdsman.hosts WHERE fleet = $1",
                        &[&fleet],
                    )
                    .await
            })
            .await?;
        rows.iter()
            .map(|row| {
                let seen: i64 = row
                    .try_get(2)
                    .map_err(|error| self.url.error("hosts", error))?;
                Ok(HostSeen {
                    name: row
                        .try_get(0)
                        .map_err(|error| self.url.error("hosts", error))?,
                    version: row
                        .try_get(1)
                        .map_err(|error| self.url.error("hosts", error))?,
                    last_seen_ms: u64::try_from(seen).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub(crate) async fn server_time(&self) -> Result<jiff::Timestamp> {
        let micros: i64 = self
            .run("server time", async |client| {
                client
                    .query_one(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                        &[],
                    )
                    .await?
                    .try_get(0)
            })
            .await?;
        jiff::Timestamp::from_microsecond(micros)
            .map_err(|error| self.url.error("server time", error))
    }

    pub(crate) async fn ping(&self) -> Result<Duration> {
        // Connect first, so the figure is one round trip.
        self.run("ping", async |_| Ok(())).await?;
        let start = Instant::now();
        self.run("ping", async |client| {
            client.simple_query("SELECT 1").await.map(drop)
        })
        .await?;
        Ok(start.elapsed())
    }
}

/// Drives a connection until it ends; its errors reach the caller through the client.
async fn drive<F, E>(connection: F)
where
    F: std::future::Future<Output = Result<(), E>>,
{
    let _ = connection.await;
}

/// Creates the schema and tables if missing, unless `schema_version` already says they exist (then no
/// CREATE privilege is needed: a database administrator may pre-create the schema).
async fn ensure_schema(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let current = client
        .query_opt("SELECT version FROM herdsman.schema_version LIMIT 1", &[])
        .await;
    if let Ok(Some(row)) = current
        && row.try_get::<_, i32>(0).ok() >= Some(SCHEMA_VERSION)
    {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    let has_schema = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'herdsman'", &[])
        .await?
        .is_some();
    if !has_schema {
        tx.batch_execute("CREATE SCHEMA herdsman").await?;
    }
    tx.batch_execute(SCHEMA).await?;
    let version = tx
        .query_opt("SELECT version FROM herdsman.schema_version LIMIT 1", &[])
        .await?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO herdsman.schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
        Some(row) if row.try_get::<_, i32>(0)? < SCHEMA_VERSION => {
            tx.execute(
                "UPDATE herdsman.schema_version SET version = $1",
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
        Some(_) => {}
    }
    tx.commit().await
}

/// A rustls connector trusting the system's root certificates (ring provider).
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the system lists but rustls rejects is skipped, like any TLS client does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("sslmode=require, but no system root certificates were found".to_string());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
