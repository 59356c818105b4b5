//! A worker's environment, built from its app's spec: the app's variables, the user's (`--user`), the
//! socket-activation and instance variables, and for Node the preload and the readiness pipe; and how long a
//! worker that says nothing takes to count as ready.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::config::AppSpec;

/// Variables herdsman sets itself; any value inherited from the caller is dropped.
pub(super) const RESERVED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "HERDSMAN_LISTEN",
    "NOTIFY_SOCKET",
    "HERDSMAN_READY_FD",
    "HERDSMAN_APP",
    "HERDSMAN_INSTANCE",
    "NODE_APP_INSTANCE",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// What a worker's environment is built from, besides the app's spec.
pub(super) struct EnvContext<'a> {
    pub instance: u32,
    pub preload: &'a Path,
    pub notify_socket: &'a str,
    /// The fd of the readiness pipe, for Node workers.
    pub ready_pipe: Option<usize>,
    /// The variables of the app's user (`HOME`, `USER`, ...), unless the app's own `env` sets them.
    pub user_env: &'a [(String, String)],
}

/// A worker's environment: the app's, plus the socket-activation variables (but the pid-dependent ones,
/// which the child writes itself), `NOTIFY_SOCKET`, the instance variables, and for Node the preload and
/// the readiness pipe.
pub(super) fn worker_env(spec: &AppSpec, context: &EnvContext<'_>) -> Vec<(String, String)> {
    let mut env: HashMap<String, String> = spec
        .env
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    put_user_env(&mut env, context.user_env, &spec.defined_env);
    let instance = context.instance.to_string();
    env.insert("HERDSMAN_APP".into(), spec.name.clone());
    env.insert("HERDSMAN_INSTANCE".into(), instance.clone());
    env.insert("NODE_APP_INSTANCE".into(), instance);
    env.insert("NOTIFY_SOCKET".into(), context.notify_socket.to_string());
    if let Some(watchdog) = &spec.watchdog {
        // systemd's watchdog protocol; `WATCHDOG_PID` is written by the child, as `LISTEN_PID` is.
        env.insert(
            "WATCHDOG_USEC".into(),
            (watchdog.period_ms * 1000).to_string(),
        );
    }
    if !spec.listen.is_empty() {
        env.insert("LISTEN_FDS".into(), spec.listen.len().to_string());
        let names = vec![spec.name.as_str(); spec.listen.len()].join(":");
        env.insert("LISTEN_FDNAMES".into(), names);
        // The address of each socket, fd 3 first, as a JSON array of `*:PORT` (every interface),
        // `HOST:PORT`, `[V6]:PORT` or `unix:ABSOLUTE_PATH`: the Node preload matches listen() calls to them.
        let addresses: Vec<String> = spec
            .listen
            .iter()
            .map(|addr| match addr {
                crate::config::ListenAddr::Unix(path) => {
                    format!("unix:{}", spec.cwd.join(path).display())
                }
                other => other.to_string(),
            })
            .collect();
        env.insert(
            "HERDSMAN_LISTEN".into(),
            serde_json::Value::from(addresses).to_string(),
        );
        if let Some(port) = spec.listen.first().and_then(|a| a.port()) {
            env.insert("PORT".into(), port.to_string());
        }
    }
    if let Some(fd) = context.ready_pipe {
        env.insert("HERDSMAN_READY_FD".into(), fd.to_string());
        let quoted = context
            .preload
            .to_string_lossy()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let option = format!("--require \"{quoted}\"");
        let merged = match env.get("NODE_OPTIONS").filter(|v| !v.trim().is_empty()) {
            Some(existing) => format!("{existing} {option}"),
            None => option,
        };
        env.insert("NODE_OPTIONS".into(), merged);
    }
    if let Some(var) = &spec.increment_var
        && let Some(base) = env.get(var).and_then(|v| v.parse::<i64>().ok())
    {
        env.insert(
            var.clone(),
            (base + i64::from(context.instance)).to_string(),
        );
    }
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    env
}

/// As systemd's `User=`: the user's own `HOME`, `USER`, `LOGNAME` and `SHELL` replace the ones inherited
/// from the caller (root's); only the app's definition (`defined`) may set them otherwise.
fn put_user_env(
    env: &mut HashMap<String, String>,
    user_env: &[(String, String)],
    defined: &BTreeMap<String, String>,
) {
    for (key, value) in user_env {
        if !defined.contains_key(key) {
            env.insert(key.clone(), value.clone());
        }
    }
}

/// How long after its start a process counts as ready when the app gives no signal: its `min_uptime`. A Node
/// worker in cluster mode reports the moment it listens, so it gets until its listen timeout instead, as
/// under PM2 (which also counts it ready when that runs out).
pub(super) fn grace(spec: &AppSpec) -> Duration {
    if spec.is_node() && !spec.listen.is_empty() {
        Duration::from_millis(spec.listen_timeout_ms)
    } else {
        Duration::from_millis(spec.min_uptime_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_variables_replace_the_callers_but_not_the_apps_own() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let mut env: HashMap<String, String> = HashMap::from([
            pair("HOME", "/root"),
            pair("USER", "root"),
            pair("PATH", "/bin"),
        ]);
        let user_env = [
            pair("HOME", "/home/app"),
            pair("USER", "app"),
            pair("LOGNAME", "app"),
        ];
        let defined = BTreeMap::from([pair("HOME", "/srv/app")]);
        env.insert("HOME".into(), "/srv/app".into());
        put_user_env(&mut env, &user_env, &defined);
        assert_eq!(env["HOME"], "/srv/app");
        assert_eq!(env["USER"], "app");
        assert_eq!(env["LOGNAME"], "app");
        assert_eq!(env["PATH"], "/bin");
    }
}
