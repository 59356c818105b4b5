//! `herdsman import`: a PM2 ecosystem file (`ecosystem.config.js`, evaluated with node; or JSON) turned into
//! an `ecosystem.toml`. Every PM2 option herdsman supports is mapped; each one it cannot map is printed with
//! the reason, and nothing is silently dropped.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use toml::{Table, Value as Toml};

/// Reads a PM2 file and writes the TOML (to `output`, or stdout). Unmapped options go to stderr.
pub fn run(input: &Path, output: Option<&Path>, force: bool) -> Result<()> {
    let Converted {
        text,
        skipped,
        apps,
    } = convert_file(input)?;
    for note in &skipped {
        eprintln!("not imported: {note}");
    }
    match output {
        Some(path) => {
            if path.exists() && !force {
                bail!(
                    "{} already exists; use --force to overwrite it",
                    path.display()
                );
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} app(s), {} option(s) not imported)",
                path.display(),
                apps,
                skipped.len()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A PM2 file as an `ecosystem.toml`.
pub struct Converted {
    /// The TOML, with paths relative to the PM2 file's directory.
    pub text: String,
    /// Each option that was not mapped: `apps[0] (web): watch: herdsman does not watch files ...`.
    pub skipped: Vec<String>,
    /// How many apps.
    pub apps: usize,
}

/// True when `target` names a PM2 ecosystem file: `*.config.js`, `.cjs` or `.mjs` (PM2's own test), or a
/// JSON file whose value has an `apps` array.
pub fn is_pm2_file(target: &str) -> bool {
    if [".config.js", ".config.cjs", ".config.mjs"]
        .iter()
        .any(|suffix| target.ends_with(suffix))
    {
        return true;
    }
    target.ends_with(".json")
        && std::fs::read_to_string(target)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|value| value.get("apps").is_some_and(Value::is_array))
}

/// Reads a PM2 file and converts every app of it.
pub fn convert_file(input: &Path) -> Result<Converted> {
    convert_text(&read_pm2(input)?, input)
}

/// Converts the JSON text of a PM2 file (as [`convert_file`] reads it from `input`, which the errors and
/// the TOML's header name).
pub fn convert_text(text: &str, input: &Path) -> Result<Converted> {
    let config: Value = serde_json::from_str(text)
        .with_context(|| format!("{} is not a PM2 ecosystem file", input.display()))?;
    let apps = match &config {
        Value::Object(map) => map.get("apps").cloned().unwrap_or(Value::Null),
        Value::Array(_) => config.clone(),
        _ => Value::Null,
    };
    let Value::Array(apps) = apps else {
        bail!(
            "{}: no `apps` array found (expected module.exports = {{ apps: [...] }})",
            input.display()
        );
    };
    let mut converted = Vec::new();
    let mut skipped = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        let Value::Object(app) = app else {
            bail!("{}: apps[{index}] is not an object", input.display());
        };
        let label = match app.get("name").and_then(Value::as_str) {
            Some(name) => format!("apps[{index}] ({name})"),
            None => format!("apps[{index}]"),
        };
        let (table, notes) = convert(app);
        skipped.extend(notes.into_iter().map(|note| format!("{label}: {note}")));
        converted.push(Toml::Table(table));
    }
    let mut root = Table::new();
    root.insert("apps".into(), Toml::Array(converted));
    let text = format!(
        "# Converted from {} by `herdsman import`.\n# Paths are relative to this file; check them if it is not next to the original.\n\n{}",
        input.display(),
        toml::to_string_pretty(&root).context("cannot write TOML")?
    );
    Ok(Converted {
        text,
        skipped,
        apps: apps.len(),
    })
}

/// The file's JSON text: read directly, or JavaScript evaluated by node (as PM2 does).
fn read_pm2(input: &Path) -> Result<String> {
    let text = if input.extension().is_some_and(|e| e == "json") {
        std::fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?
    } else {
        let absolute = std::path::absolute(input)?;
        let script = "const c = require(process.argv[1]); \
                      process.stdout.write(JSON.stringify(c && c.default ? c.default : c));";
        let out = Command::new("node")
            .args(["-e", script])
            .arg(&absolute)
            .output()
            .context("cannot run node to read the PM2 file (is node on PATH?)")?;
        if !out.status.success() {
            bail!(
                "node could not load {}: {}",
                input.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("node printed something that is not UTF-8")?
    };
    Ok(text)
}

/// PM2 options with no herdsman equivalent, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "watch_options",
        "chokidar's options do not apply: herdsman watches with inotify (see `watch`, `ignore_watch`, `watch_delay`)",
    ),
    (
        "restart_delay",
        "herdsman backs off exponentially instead (restart_backoff)",
    ),
    (
        "combine_logs",
        "each app's workers always share one out and one error log; each line names its instance",
    ),
    (
        "merge_logs",
        "each app's workers always share one out and one error log; each line names its instance",
    ),
    (
        "log_file",
        "herdsman keeps stdout and stderr apart (out_file, error_file)",
    ),
    (
        "pid_file",
        "herdsman keeps no pid files; `herdsman list --json` has the pids",
    ),
    ("source_map_support", "no equivalent"),
    (
        "instance_var",
        "herdsman sets HERDSMAN_INSTANCE and NODE_APP_INSTANCE",
    ),
    ("vizion", "no equivalent"),
    ("post_update", "no equivalent"),
    ("force", "no equivalent: an app name is unique"),
    (
        "shutdown_with_message",
        "herdsman stops workers with a signal (kill_signal)",
    ),
    (
        "treekill",
        "herdsman always stops a worker's whole process group",
    ),
    ("namespace", "no equivalent"),
    ("automation", "no equivalent"),
    ("pmx", "no equivalent"),
    ("disable_trace", "no equivalent"),
    (
        "filter_env",
        "no equivalent: workers get the environment of the command that starts them",
    ),
    ("append_env_to_name", "no equivalent"),
    ("exec_interpreter", "use `interpreter`"),
];

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn words(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        Value::Array(items) => items.iter().map(text).collect(),
        _ => None,
    }
}

fn env_table(value: &Value) -> Option<Toml> {
    let Value::Object(map) = value else {
        return None;
    };
    let table: Table = map
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), Toml::String(text(v)?))))
        .collect();
    Some(Toml::Table(table))
}

/// A PM2 `ignore_watch` entry as a herdsman pattern: chokidar takes globs, in which `\\.` is a dot; an
/// entry that only makes sense as a regular expression cannot be mapped.
fn watch_pattern(pattern: &str) -> Option<String> {
    let glob = pattern.replace("\\.", ".");
    let glob = glob.strip_prefix("./").unwrap_or(&glob).to_string();
    let regex_only = ['^', '$', '(', ')', '|', '+', '\\'];
    (!glob.is_empty() && !glob.contains(regex_only)).then_some(glob)
}

/// Maps one PM2 app; returns the table and a note for each option not mapped.
fn convert(app: &serde_json::Map<String, Value>) -> (Table, Vec<String>) {
    let mut table = Table::new();
    let mut notes = Vec::new();
    let mut port = None;
    let cluster = app
        .get("exec_mode")
        .and_then(Value::as_str)
        .is_some_and(|m| m.contains("cluster"))
        || app
            .get("instances")
            .is_some_and(|i| i.as_i64() != Some(1) && !i.is_null());
    // PM2's `cron_restart` (`0` turns it off) with `autorestart: false` is its idiom for a cron job: the
    // process exits, stays stopped, and the cron starts it again. That is herdsman's `schedule`.
    let cron = app
        .get("cron_restart")
        .and_then(text)
        .filter(|c| !matches!(c.trim(), "" | "0"));
    let job = cron.is_some() && app.get("autorestart").and_then(Value::as_bool) == Some(false);
    let not_for_a_job = |key: &str| {
        format!(
            "`{key}`: dropped: with `cron_restart` and `autorestart: false` the app is a scheduled job \
             (`schedule`), which runs one process per run"
        )
    };
    for (key, value) in app {
        let several = match key.as_str() {
            "instances" => !value.is_null() && text(value).as_deref() != Some("1"),
            "exec_mode" => value.as_str().is_some_and(|m| m.contains("cluster")),
            _ => false,
        };
        if job && several {
            notes.push(not_for_a_job(key));
            continue;
        }
        if job && matches!(key.as_str(), "watch" | "ignore_watch" | "watch_delay") {
            notes.push(format!(
                "`{key}`: dropped: a scheduled job (`schedule`, from `cron_restart` and \
                 `autorestart: false`) is not reloaded on changes; each run starts the current files"
            ));
            continue;
        }
        let mut put = |name: &str, v: Option<Toml>| match v {
            Some(v) => {
                table.insert(name.into(), v);
            }
            None => notes.push(format!("`{key}`: cannot read the value {value}")),
        };
        match key.as_str() {
            "name" | "script" | "cwd" | "interpreter" | "increment_var" | "user" | "group" => {
                put(key, text(value).map(Toml::String))
            }
            "uid" => put("user", text(value).map(Toml::String)),
            "gid" => put("group", text(value).map(Toml::String)),
            "args" => put(
                "args",
                words(value).map(|w| Toml::Array(w.into_iter().map(Toml::String).collect())),
            ),
            "interpreter_args" | "node_args" => put(
                "interpreter_args",
                words(value).map(|w| Toml::Array(w.into_iter().map(Toml::String).collect())),
            ),
            "instances" => put(
                "instances",
                match value {
                    Value::Number(n) => n.as_i64().map(Toml::Integer),
                    Value::String(s) if s == "max" => Some(Toml::String("max".into())),
                    Value::String(s) => s.parse::<i64>().ok().map(Toml::Integer),
                    _ => None,
                },
            ),
            "exec_mode" => {}
            "cron_restart" => match &cron {
                Some(expr) => put(
                    if job { "schedule" } else { "cron_restart" },
                    Some(Toml::String(expr.trim().to_string())),
                ),
                None if text(value).is_some() => {
                    notes.push(format!(
                        "`cron_restart`: {value} turns PM2's cron restart off"
                    ));
                }
                None => notes.push(format!("`{key}`: cannot read the value {value}")),
            },
            "max_memory_restart" => put(
                key,
                match value {
                    Value::Number(n) => n.as_i64().map(Toml::Integer),
                    Value::String(s) if crate::config::parse_size(s).is_ok() => {
                        Some(Toml::String(s.clone()))
                    }
                    _ => None,
                },
            ),
            "kill_timeout" | "listen_timeout" | "min_uptime" => put(
                key,
                match value {
                    Value::Number(n) => n.as_i64().map(Toml::Integer),
                    Value::String(s) => Some(Toml::String(s.clone())),
                    _ => None,
                },
            ),
            "exp_backoff_restart_delay" => {
                put("restart_backoff", value.as_i64().map(Toml::Integer))
            }
            "max_restarts" => put("max_restarts", value.as_i64().map(Toml::Integer)),
            "wait_ready" | "autorestart" => put(key, value.as_bool().map(Toml::Boolean)),
            "stop_exit_codes" => put(
                "stop_exit_codes",
                match value {
                    Value::Array(codes) => codes
                        .iter()
                        .map(|c| c.as_i64().map(Toml::Integer))
                        .collect::<Option<Vec<_>>>()
                        .map(Toml::Array),
                    Value::Number(n) => n.as_i64().map(|c| Toml::Array(vec![Toml::Integer(c)])),
                    _ => None,
                },
            ),
            "watch" => put(
                "watch",
                match value {
                    Value::Bool(b) => Some(Toml::Boolean(*b)),
                    Value::String(s) => Some(Toml::Array(vec![Toml::String(s.clone())])),
                    Value::Array(_) => {
                        words(value).map(|w| Toml::Array(w.into_iter().map(Toml::String).collect()))
                    }
                    _ => None,
                },
            ),
            "ignore_watch" => {
                let patterns = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items.iter().filter_map(text).collect(),
                    _ => Vec::new(),
                };
                let mut kept = Vec::new();
                for pattern in patterns {
                    match watch_pattern(&pattern) {
                        Some(glob) => kept.push(Toml::String(glob)),
                        None => notes.push(format!(
                            "`ignore_watch`: the pattern {pattern:?} looks like a regular expression; herdsman takes names and globs (`*.log`, `tmp`, `data/**`)"
                        )),
                    }
                }
                if !kept.is_empty() {
                    table.insert("ignore_watch".into(), Toml::Array(kept));
                }
            }
            "watch_delay" => put(
                "watch_delay",
                match value {
                    Value::Number(n) => n.as_i64().map(Toml::Integer),
                    Value::String(s) => Some(Toml::String(s.clone())),
                    _ => None,
                },
            ),
            "out_file" | "output" => put("out_file", text(value).map(Toml::String)),
            "error_file" | "error" | "err_file" => put("error_file", text(value).map(Toml::String)),
            "env" => {
                port = value.get("PORT").and_then(text);
                put("env", env_table(value));
            }
            profile if profile.starts_with("env_") => put(profile, env_table(value)),
            // herdsman stamps every line (in UTC unless told otherwise); PM2's `time` only turns that on.
            "time" => {}
            "log_date_format" => match value.as_str().map(dayjs_to_strftime) {
                Some(Ok(format)) => {
                    table.insert("log_date_format".into(), Toml::String(format));
                    // PM2 writes its dates in local time.
                    table.insert("log_timezone".into(), Toml::String("local".into()));
                }
                Some(Err(e)) => notes.push(format!("`log_date_format`: {e}")),
                None => notes.push(format!("`{key}`: cannot read the value {value}")),
            },
            "log_type" => match value.as_str() {
                Some("json") => {
                    table.insert("log_format".into(), Toml::String("json".into()));
                }
                Some("raw" | "text" | "") => {}
                _ => notes.push(format!(
                    "`log_type`: {value} is not a log type herdsman knows (\"json\")"
                )),
            },
            other => {
                let reason = UNSUPPORTED
                    .iter()
                    .find(|(name, _)| *name == other)
                    .map_or("not a herdsman option", |(_, why)| why);
                notes.push(format!("`{other}`: {reason}"));
            }
        }
    }
    if cluster && !job {
        match port {
            // PM2's cluster mode shares the port the app listens on; herdsman binds it itself.
            Some(port) if port.parse::<u16>().is_ok() => {
                table.insert("listen".into(), Toml::String(port));
            }
            _ => notes.push(
                "`exec_mode: cluster`: herdsman binds the socket itself and needs its address: add `listen` \
                 (the app's env has no PORT to take it from); the app runs in fork mode until then"
                    .into(),
            ),
        }
    }
    (table, notes)
}

/// PM2's `log_date_format` (a dayjs format: `YYYY-MM-DD HH:mm:ss Z`) as a strftime format
/// (`%Y-%m-%d %H:%M:%S %:z`). Text in brackets is literal, as are letters dayjs does not know.
pub fn dayjs_to_strftime(format: &str) -> Result<String, String> {
    const TOKENS: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("YY", "%y"),
        ("MMMM", "%B"),
        ("MMM", "%b"),
        ("MM", "%m"),
        ("M", "%-m"),
        ("DD", "%d"),
        ("D", "%-d"),
        ("dddd", "%A"),
        ("ddd", "%a"),
        ("HH", "%H"),
        ("H", "%-H"),
        ("hh", "%I"),
        ("h", "%-I"),
        ("mm", "%M"),
        ("m", "%-M"),
        ("ss", "%S"),
        ("s", "%-S"),
        ("SSS", "%3f"),
        ("ZZ", "%z"),
        ("Z", "%:z"),
        ("A", "%p"),
        ("a", "%P"),
        ("X", "%s"),
    ];
    let mut out = String::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if c == '[' {
            let Some(end) = rest.find(']') else {
                return Err(format!("'{format}' has a `[` without its `]`"));
            };
            out.push_str(&rest[1..end].replace('%', "%%"));
            rest = &rest[end + 1..];
            continue;
        }
        if let Some((token, directive)) = TOKENS.iter().find(|(t, _)| rest.starts_with(t)) {
            out.push_str(directive);
            rest = &rest[token.len()..];
            continue;
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    crate::logs::LineFormat::check_date_format(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pm2_cluster_app_maps_to_a_listen_address_and_reports_what_it_cannot_map() {
        let app = serde_json::json!({
            "name": "api", "script": "server.js", "exec_mode": "cluster", "instances": "max",
            "env": { "PORT": 3000, "NODE_ENV": "dev" }, "env_production": { "NODE_ENV": "production" },
            "kill_timeout": 3000, "watch": true, "node_args": "--max-old-space-size=512",
            "error_file": "logs/api.err", "ignore_watch": ["node_modules", "\\.git", "*.log", "^tmp$"],
            "watch_delay": 1000, "watch_options": { "usePolling": true }
        });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert_eq!(table["listen"].as_str(), Some("3000"));
        assert_eq!(table["instances"].as_str(), Some("max"));
        assert_eq!(table["env"]["PORT"].as_str(), Some("3000"));
        assert_eq!(
            table["env_production"]["NODE_ENV"].as_str(),
            Some("production")
        );
        assert_eq!(table["interpreter_args"].as_array().map(Vec::len), Some(1));
        assert_eq!(table["error_file"].as_str(), Some("logs/api.err"));
        assert_eq!(table["watch"].as_bool(), Some(true));
        let ignored: Vec<&str> = table["ignore_watch"]
            .as_array()
            .map(|a| a.iter().filter_map(Toml::as_str).collect())
            .unwrap_or_default();
        assert_eq!(ignored, ["node_modules", ".git", "*.log"]);
        assert_eq!(table["watch_delay"].as_integer(), Some(1000));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("^tmp$"), "{notes:?}");
        assert!(notes[1].contains("`watch_options`"), "{notes:?}");
        let mut root = Table::new();
        root.insert("apps".into(), Toml::Array(vec![Toml::Table(table)]));
        let root = toml::to_string(&root).expect("serialise");
        crate::config::file::parse(&root).expect("the converted app is a valid herdsman app");
    }

    #[test]
    fn pm2_log_options_map_to_herdsman_ones() {
        let app = serde_json::json!({
            "name": "api", "script": "server.js", "time": true,
            "log_date_format": "YYYY-MM-DD HH:mm:ss.SSS Z", "log_type": "json"
        });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            table["log_date_format"].as_str(),
            Some("%Y-%m-%d %H:%M:%S.%3f %:z")
        );
        assert_eq!(table["log_timezone"].as_str(), Some("local"));
        assert_eq!(table["log_format"].as_str(), Some("json"));
        assert!(!table.contains_key("time"));
        assert_eq!(
            dayjs_to_strftime("[at] h:mm A, D MMM YYYY (100%)").as_deref(),
            Ok("at %-I:%M %p, %-d %b %Y (100%%)")
        );
        assert!(dayjs_to_strftime("YYYY [unclosed").is_err());
        let mut root = Table::new();
        root.insert("apps".into(), Toml::Array(vec![Toml::Table(table)]));
        let root = toml::to_string(&root).expect("serialise");
        crate::config::file::parse(&root).expect("the converted app is a valid herdsman app");
    }

    fn valid(table: Table) {
        let mut root = Table::new();
        root.insert("apps".into(), Toml::Array(vec![Toml::Table(table)]));
        let root = toml::to_string(&root).expect("serialise");
        crate::config::file::parse(&root).expect("the converted app is a valid herdsman app");
    }

    #[test]
    fn pm2_cron_restart_maps_to_cron_restart() {
        let app = serde_json::json!({
            "name": "api", "script": "server.js", "exec_mode": "cluster", "instances": 4,
            "env": { "PORT": 3000 }, "cron_restart": "0 4 * * *"
        });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(table["cron_restart"].as_str(), Some("0 4 * * *"));
        assert!(!table.contains_key("schedule"));
        assert_eq!(table["instances"].as_integer(), Some(4));
        assert_eq!(table["listen"].as_str(), Some("3000"));
        valid(table);
        // `0` turns it off in PM2.
        let app = serde_json::json!({ "script": "server.js", "cron_restart": 0 });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert!(!table.contains_key("cron_restart"));
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn pm2_cron_restart_without_autorestart_is_a_scheduled_job() {
        let app = serde_json::json!({
            "name": "report", "script": "report.js", "cron_restart": "*/5 * * * *",
            "autorestart": false, "exec_mode": "cluster", "instances": "max", "watch": true
        });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert_eq!(table["schedule"].as_str(), Some("*/5 * * * *"));
        assert!(!table.contains_key("cron_restart"));
        assert!(!table.contains_key("instances"));
        assert!(!table.contains_key("listen"));
        assert!(!table.contains_key("watch"));
        assert_eq!(table["autorestart"].as_bool(), Some(false));
        assert_eq!(notes.len(), 3, "{notes:?}");
        for key in ["`exec_mode`", "`instances`", "`watch`"] {
            assert!(notes.iter().any(|n| n.starts_with(key)), "{key}: {notes:?}");
        }
        valid(table);
        // One instance in fork mode: nothing to drop.
        let app = serde_json::json!({
            "script": "report.js", "cron_restart": "0 3 * * *", "autorestart": false,
            "instances": 1, "exec_mode": "fork"
        });
        let (table, notes) = convert(app.as_object().expect("object"));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(table["schedule"].as_str(), Some("0 3 * * *"));
        valid(table);
    }
}
