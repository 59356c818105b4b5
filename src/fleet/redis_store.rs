//! The Redis fleet store. Keys are `herdsman:{<fleet>}:…`; the braces are a hash tag, so a fleet's keys
//! share one cluster slot and the multi-key scripts below stay valid on a cluster-proxied Redis.
//!
//! - `…:claim:<run id>` = `<fence> <host>`, set NX with PX = retain;
//! - `…:fence:<job>` = the job's fence counter (never expires);
//! - `…:lease:<job>` = owner, PX = ttl;
//! - `…:stop:<run id>` = "1", PX = one day;
//! - `…:hist:<job>` hash `<run id>#<attempt>` → JSON, with `…:histidx:<job>`, a sorted set for pruning;
//! - `…:hosts` hash host → JSON `{version, last_seen_ms}`.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{AsyncCommands, AsyncConnectionConfig, IntoConnectionInfo, Script};
use tokio::sync::Mutex;

use super::{
    Backoff, Claim, FleetError, HostSeen, Options, Result, StoreUrl, StoredRun, bounded, millis,
    order_ms,
};
use crate::protocol::RunRecord;

const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local fence = redis.call('INCR', KEYS[2])
local value = tostring(fence) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
return {1, value}
";

const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return 1
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const RECORD: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  for _, member in ipairs(old) do
    redis.call('HDEL', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  end
end
return excess
";

const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({version = ARGV[2], last_seen_ms = ms}))
return 1
";

/// How long a stop request is kept.
const STOP_RETAIN: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct RedisStore {
    pub(crate) url: StoreUrl,
    client: redis::Client,
    config: AsyncConnectionConfig,
    options: Options,
    conn: Mutex<Option<MultiplexedConnection>>,
    backoff: std::sync::Mutex<Backoff>,
    scripts: Scripts,
}

struct Scripts {
    claim: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    record: Script,
    heartbeat: Script,
}

#[derive(serde::Deserialize)]
struct HostEntry {
    version: String,
    last_seen_ms: u64,
}

fn key(fleet: &str, kind: &str, name: &str) -> String {
    format!("herdsman:{{{fleet}}}:{kind}:{name}")
}

impl RedisStore {
    pub(crate) fn new(url: StoreUrl, options: Options) -> Result<RedisStore> {
        let keepalive = TcpKeepalive::new()
            .with_time(options.keepalive_idle)
            .with_interval(Duration::from_secs(1))
            .with_retries(3);
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive)
            .set_user_timeout(options.keepalive_idle + options.op_timeout);
        let info = url
            .raw
            .as_str()
            .into_connection_info()
            .map_err(|error| FleetError::InvalidUrl {
                url: url.redacted.clone(),
                reason: url.scrub(error.to_string()),
            })?
            .set_tcp_settings(tcp);
        let client = redis::Client::open(info).map_err(|error| FleetError::InvalidUrl {
            url: url.redacted.clone(),
            reason: url.scrub(error.to_string()),
        })?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout));
        Ok(RedisStore {
            url,
            client,
            config,
            options,
            conn: Mutex::new(None),
            backoff: std::sync::Mutex::new(Backoff::new(&options)),
            scripts: Scripts {
                claim: Script::new(CLAIM),
                acquire: Script::new(ACQUIRE),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
                record: Script::new(RECORD),
                heartbeat: Script::new(HEARTBEAT),
            },
        })
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shared connection, connecting (after the backoff) if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let wait = self.backoff().wait();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        match bounded(&self.url, "connect", self.options.connect_timeout, connect).await {
            Ok(conn) => {
                self.backoff().succeeded();
                *slot = Some(conn.clone());
                Ok(conn)
            }
            Err(error) => {
                self.backoff().failed();
                Err(error)
            }
        }
    }

    /// Runs one operation on the connection under the operation timeout; any failure drops the connection
    /// so the next call reconnects.
    async fn run<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut conn = self.connection().await?;
        let result = bounded(&self.url, op, self.options.op_timeout, f(&mut conn)).await;
        if let Err(FleetError::Timeout { .. }) | Err(FleetError::Store { .. }) = &result {
            self.conn.lock().await.take();
            self.backoff().failed();
        }
        result
    }

    pub(crate) async fn claim(
        &self,
        fleet: &str,
        job: &str,
        run_id: &str,
        _scheduled_at: jiff::Timestamp,
        host: &str,
        retain: Duration,
    ) -> Result<Claim> {
        let claim_key = key(fleet, "claim", run_id);
        let fence_key = key(fleet, "fence", job);
        let retain = millis(retain).max(1);
        let (won, value): (i64, String) = self
            .run("claim", async |conn| {
                self.scripts
                    .claim
                    .key(&claim_key)
                    .key(&fence_key)
                    .arg(host)
                    .arg(retain)
                    .invoke_async(conn)
                    .await
            })
            .await?;
        let parsed = value
            .split_once(' ')
            .and_then(|(fence, holder)| Some((fence.parse::<u64>().ok()?, holder)));
        let Some((fence, holder)) = parsed else {
            return Err(self.url.error(
                "claim",
                format!("unexpected claim value {value:?} at {claim_key}"),
            ));
        };
        Ok(Claim {
            won: won == 1,
            holder: holder.to_string(),
            fence,
        })
    }

    pub(crate) async fn acquire_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.lease_script(
            "acquire lease",
            &self.scripts.acquire,
            fleet,
            job,
            owner,
            Some(ttl),
        )
        .await
    }

    pub(crate) async fn renew_lease(
        &self,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.lease_script(
            "renew lease",
            &self.scripts.renew,
            fleet,
            job,
            owner,
            Some(ttl),
        )
        .await
    }

    pub(crate) async fn release_lease(&self, fleet: &str, job: &str, owner: &str) -> Result<bool> {
        self.lease_script(
            "release lease",
            &self.scripts.release,
            fleet,
            job,
            owner,
            None,
        )
        .await
    }

    async fn lease_script(
        &self,
        op: &'static str,
        script: &Script,
        fleet: &str,
        job: &str,
        owner: &str,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let lease_key = key(fleet, "lease", job);
        let done: i64 = self
            .run(op, async |conn| {
                let mut invocation = script.key(&lease_key);
                invocation.arg(owner);
                if let Some(ttl) = ttl {
                    invocation.arg(millis(ttl).max(1));
                }
                invocation.invoke_async(conn).await
            })
            .await?;
        Ok(done == 1)
    }

    pub(crate) async fn stop_request(&self, fleet: &str, _job: &str, run_id: &str) -> Result<()> {
        let stop_key = key(fleet, "stop", run_id);
        self.run("stop request", async |conn| {
            redis::cmd("SET")
                .arg(&stop_key)
                .arg("1")
                .arg("PX")
                .arg(millis(STOP_RETAIN))
                .query_async::<()>(conn)
                .await
        })
        .await
    }

    pub(crate) async fn stop_requested(
        &self,
        fleet: &str,
        _job: &str,
        run_id: &str,
    ) -> Result<bool> {
        let stop_key = key(fleet, "stop", run_id);
        self.run("stop requested", async |conn| conn.exists(&stop_key).await)
            .await
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
        let member = format!("{}#{:010}", record.run_id, record.attempt);
        let hist_key = key(fleet, "hist", job);
        let index_key = key(fleet, "histidx", job);
        self.run("record run", async |conn| {
            self.scripts
                .record
                .key(&hist_key)
                .key(&index_key)
                .arg(&member)
                .arg(order_ms(record))
                .arg(&value)
                .arg(keep)
                .invoke_async::<i64>(conn)
                .await
        })
        .await
        .map(drop)
    }

    pub(crate) async fn history(&self, fleet: &str, job: &str) -> Result<Vec<(String, RunRecord)>> {
        let hist_key = key(fleet, "hist", job);
        let entries: Vec<String> = self
            .run("history", async |conn| conn.hvals(&hist_key).await)
            .await?;
        entries
            .iter()
            .map(|entry| {
                serde_json::from_str::<StoredRun>(entry)
                    .map(|run| (run.host, run.record))
                    .map_err(|error| self.url.error("history", error))
            })
            .collect()
    }

    pub(crate) async fn heartbeat(&self, fleet: &str, host: &str, version: &str) -> Result<()> {
        let hosts_key = format!("herdsman:{{{fleet}}}:hosts");
        self.run("heartbeat", async |conn| {
            self.scripts
                .heartbeat
                .key(&hosts_key)
                .arg(host)
                .arg(version)
                .invoke_async::<i64>(conn)
                .await
        })
        .await
        .map(drop)
    }

    pub(crate) async fn hosts(&self, fleet: &str) -> Result<Vec<HostSeen>> {
        let hosts_key = format!("herdsman:{{{fleet}}}:hosts");
        let entries: Vec<(String, String)> = self
            .run("hosts", async |conn| conn.hgetall(&hosts_key).await)
            .await?;
        entries
            .into_iter()
            .map(|(name, entry)| {
                serde_json::from_str::<HostEntry>(&entry)
                    .map(|entry| HostSeen {
                        name,
                        version: entry.version,
                        last_seen_ms: entry.last_seen_ms,
                    })
                    .map_err(|error| self.url.error("hosts", error))
            })
            .collect()
    }

    pub(crate) async fn server_time(&self) -> Result<jiff::Timestamp> {
        let (secs, micros): (i64, i64) = self
            .run("server time", async |conn| {
                redis::cmd("TIME").query_async(conn).await
            })
            .await?;
        jiff::Timestamp::from_microsecond(secs.saturating_mul(1_000_000).saturating_add(micros))
            .map_err(|error| self.url.error("server time", error))
    }

    pub(crate) async fn ping(&self) -> Result<Duration> {
        self.connection().await?;
        let start = Instant::now();
        self.run("ping", async |conn| {
            redis::cmd("PING").query_async::<String>(conn).await
        })
        .await?;
        Ok(start.elapsed())
    }
}
