//! `[fleet]` in an ecosystem file: the store `scope = "fleet"` jobs claim their runs in, the fleet's name, and
//! this host's name in it. Resolved by the CLI (`${VAR}` taken from its environment, the URL checked), so
//! each fleet job's [`super::job::JobSpec`] carries everything the daemon needs.
//!
//! ```toml
//! [fleet]
//! store = "${HERDSMAN_STORE}"   # redis://, rediss://, postgres://, postgresql://
//! name = "shop-prod"
//! host = "web-1"                # default: $HERDSMAN_HOST, else the host name
//! lease_ttl = "15s"             # overlap = "skip" across hosts: the job's lease, renewed at a third of it
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::raw::{Item, Location, Problem};

/// The lease of a running `overlap = "skip"` fleet job, unless `lease_ttl` says otherwise.
pub const LEASE_TTL_MS: u64 = 15_000;
/// The shortest and longest lease allowed: renewals go every third of it.
pub const LEASE_TTL_MIN_MS: u64 = 1_500;
pub const LEASE_TTL_MAX_MS: u64 = 3_600_000;

/// A resolved `[fleet]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    /// The store's URL, as given (it may hold a password: show [`FleetSpec::redacted`] instead).
    pub store: String,
    /// Hosts with the same fleet name share claims and history.
    pub name: String,
    /// This host's name in the fleet.
    pub host: String,
    pub lease_ttl_ms: u64,
}

impl std::fmt::Debug for FleetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSpec")
            .field("store", &self.redacted())
            .field("name", &self.name)
            .field("host", &self.host)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .finish()
    }
}

impl FleetSpec {
    /// The store's URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        match crate::fleet::Store::new(&self.store) {
            Ok(store) => store.redacted().to_string(),
            Err(_) => "<invalid store URL>".to_string(),
        }
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

/// `[fleet]` as written.
#[derive(Debug, Clone, Default)]
pub struct RawFleet {
    /// Where the table starts.
    pub at: Option<Location>,
    pub store: Option<Item<String>>,
    pub name: Option<Item<String>>,
    pub host: Option<Item<String>>,
    pub lease_ttl: Option<Item<Duration>>,
}

/// The keys of `[fleet]`.
pub const KEYS: &[(&str, &str)] = &[
    (
        "store",
        "The fleet store's URL: redis://[:password@]host[:port][/db], rediss://..., postgres://user[:password]@host[:port]/db[?sslmode=require]; ${VAR} is taken from the environment of `herdsman start`",
    ),
    (
        "name",
        "The fleet's name: hosts with the same name share claims, leases and history",
    ),
    (
        "host",
        "This host's name in the fleet [default: $HERDSMAN_HOST, else the host name]",
    ),
    (
        "lease_ttl",
        "How long a fleet job's lease (overlap = \"skip\" across hosts) lasts without renewal; renewed every third of it [default: 15s]",
    ),
];

/// What `scope = "fleet"` apps see of the file's `[fleet]`.
#[derive(Debug, Clone, Copy, Default)]
pub enum FleetTable<'a> {
    #[default]
    Absent,
    /// Present, with problems of its own (already reported).
    Invalid,
    Valid(&'a FleetSpec),
}

/// `${NAME}` in `text` replaced by the variable's value in `env`; an unset one is an error naming it.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without its closing `}`".to_string());
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{name}}}` is not a variable name"));
        }
        match env.get(name) {
            Some(value) => out.push_str(value),
            None => {
                return Err(format!(
                    "`${{{name}}}` is not set in the environment of this command"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// This machine's host name, if it has one.
pub fn hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// A fleet or host name: it keys the store, so a plain word.
fn check_word(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 64 {
        return Err(format!("a {what} must be 1 to 64 characters"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "a {what} is letters, digits, '-', '_' and '.': '{text}' has {bad:?}"
        ));
    }
    Ok(())
}

impl RawFleet {
    /// Checks `[fleet]`: every problem, with its position.
    pub fn resolve(
        &self,
        caller_env: &BTreeMap<String, String>,
    ) -> Result<FleetSpec, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |at: Option<Location>, key: &str, message: String| {
            problems.push(Problem {
                at,
                key: format!("fleet.{key}"),
                message,
            })
        };
        let store = match &self.store {
            None => {
                problem(
                    self.at,
                    "store",
                    "missing key `store`: the URL of the fleet's Redis or PostgreSQL".into(),
                );
                None
            }
            Some(item) => match expand(&item.value, caller_env) {
                Err(message) => {
                    problem(item.at, "store", message);
                    None
                }
                Ok(url) => match crate::fleet::Store::new(&url) {
                    Ok(_) => Some(url),
                    Err(error) => {
                        let message = error.to_string();
                        let message = message.strip_prefix("fleet store: ").unwrap_or(&message);
                        problem(item.at, "store", message.to_string());
                        None
                    }
                },
            },
        };
        let name = match &self.name {
            None => {
                problem(
                    self.at,
                    "name",
                    "missing key `name`: the fleet's name (hosts with the same name share claims)"
                        .into(),
                );
                None
            }
            Some(item) => match expand(&item.value, caller_env)
                .and_then(|name| check_word(&name, "fleet name").map(|()| name))
            {
                Ok(name) => Some(name),
                Err(message) => {
                    problem(item.at, "name", message);
                    None
                }
            },
        };
        let host = match &self.host {
            Some(item) => expand(&item.value, caller_env),
            None => Ok(caller_env
                .get("HERDSMAN_HOST")
                .filter(|h| !h.is_empty())
                .cloned()
                .or_else(hostname)
                .unwrap_or_else(|| "localhost".to_string())),
        };
        let host = match host.and_then(|h| check_word(&h, "host name").map(|()| h)) {
            Ok(host) => Some(host),
            Err(message) => {
                let at = self.host.as_ref().and_then(|h| h.at).or(self.at);
                problem(at, "host", message);
                None
            }
        };
        let lease_ttl_ms = match &self.lease_ttl {
            None => LEASE_TTL_MS,
            Some(item) => {
                let ms = item.value.as_millis() as u64;
                if !(LEASE_TTL_MIN_MS..=LEASE_TTL_MAX_MS).contains(&ms) {
                    problem(
                        item.at,
                        "lease_ttl",
                        "must be from 1.5s to 1h (renewals go every third of it)".into(),
                    );
                }
                ms
            }
        };
        match (store, name, host) {
            (Some(store), Some(name), Some(host)) if problems.is_empty() => Ok(FleetSpec {
                store,
                name,
                host,
                lease_ttl_ms,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "STORE".to_string(),
                "redis://:pw@10.0.0.5:6379/0".to_string(),
            ),
            ("HERDSMAN_HOST".to_string(), "web-1".to_string()),
        ])
    }

    #[test]
    fn variables_are_expanded_and_unset_ones_named() {
        assert_eq!(
            expand("${STORE}", &env()).as_deref(),
            Ok("redis://:pw@10.0.0.5:6379/0")
        );
        assert_eq!(
            expand("a${HERDSMAN_HOST}b", &env()).as_deref(),
            Ok("aweb-1b")
        );
        assert!(expand("${NOPE}", &env()).unwrap_err().contains("NOPE"));
        assert!(expand("${STORE", &env()).is_err());
        assert_eq!(expand("plain", &env()).as_deref(), Ok("plain"));
    }

    #[test]
    fn a_fleet_resolves_with_the_host_from_the_environment() {
        let raw = RawFleet {
            store: Some(Item::flag("${STORE}".into())),
            name: Some(Item::flag("shop-prod".into())),
            ..RawFleet::default()
        };
        let spec = raw.resolve(&env()).expect("valid");
        assert_eq!(spec.host, "web-1");
        assert_eq!(spec.redacted(), "redis://:***@10.0.0.5:6379/0");
        assert!(!format!("{spec:?}").contains("pw"));
        assert_eq!(spec.lease_ttl_ms, LEASE_TTL_MS);
    }

    #[test]
    fn bad_fleets_are_reported_per_key() {
        let raw = RawFleet {
            store: Some(Item::flag("mysql://db/ops".into())),
            name: Some(Item::flag("shop prod".into())),
            host: Some(Item::flag("a{b}".into())),
            lease_ttl: Some(Item::flag(Duration::from_millis(10))),
            ..RawFleet::default()
        };
        let problems = raw.resolve(&env()).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["fleet.store", "fleet.name", "fleet.host", "fleet.lease_ttl"]
        );
        assert!(problems[0].message.contains("`mysql`"), "{problems:?}");
    }
}
