//! Watch mode's options (`watch`, `ignore_watch`, `watch_delay`, PM2's names), resolved into a
//! [`WatchSpec`]: which paths are watched and which files under them count as a change.
//!
//! `watch = true` watches the app's working directory for the app's *source files*: the extensions of its
//! language (from the interpreter, else the script's `#!` line, else its extension), and the script
//! itself. A compiled program (no language known) counts only its own file: a rebuild replaces it. An
//! app writing data, pid, socket or log files into its own directory therefore never reloads itself, and
//! editors' swap files do not count either. `watch = ["src", "config.toml"]` names what to watch:
//! every file under those paths counts. Either way `node_modules`, `.git`, `__pycache__` and the app's own
//! log files never count, nor anything `ignore_watch` matches (see `daemon/watch/filter.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How long the files must be quiet before a change reloads the app (`watch_delay`).
pub const DEFAULT_DELAY_MS: u64 = 500;

/// `watch` as written: on, off, or the paths to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchValue {
    Flag(bool),
    /// Relative to the app's working directory. Empty: its working directory (PM2 takes `[]` so too).
    Paths(Vec<String>),
}

/// Watch mode, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// Absolute paths; directories are watched with everything under them.
    pub paths: Vec<PathBuf>,
    /// `Some`: only files with these extensions (and the script itself) count (`watch = true`). `None`:
    /// every file under `paths` (they were named).
    pub extensions: Option<Vec<String>>,
    /// `ignore_watch`: names or globs (`*.db`, `tmp`, `data/**`) that never count.
    pub ignore: Vec<String>,
    /// `watch_delay`: a reload happens once the files have been quiet this long.
    pub delay_ms: u64,
}

/// The source extensions of a language, by the interpreter's name.
fn language_extensions(interpreter: &str) -> Option<&'static [&'static str]> {
    let name = Path::new(interpreter)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(interpreter);
    const JS: &[&str] = &["js", "mjs", "cjs", "jsx", "ts", "mts", "cts", "tsx"];
    if ["node", "bun", "deno", "tsx", "ts-node"]
        .iter()
        .any(|n| name == *n || name.starts_with(&format!("{n}-")))
        || name.starts_with("node")
    {
        return Some(JS);
    }
    if name.starts_with("python") || name == "pypy" || name.starts_with("pypy3") {
        return Some(&["py"]);
    }
    if name.starts_with("ruby") {
        return Some(&["rb", "ru"]);
    }
    if ["sh", "bash", "dash", "zsh", "ksh"].contains(&name) {
        return Some(&["sh"]);
    }
    if name.starts_with("php") {
        return Some(&["php"]);
    }
    if name.starts_with("perl") {
        return Some(&["pl", "pm"]);
    }
    None
}

/// The interpreter a script's `#!` line names (`#!/usr/bin/env python3` gives `python3`).
fn shebang(script: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if program.ends_with("/env") {
        words.find(|w| !w.starts_with('-')).map(str::to_string)
    } else {
        Some(program.to_string())
    }
}

/// The extensions that count with `watch = true`: the language's, from the interpreter in effect, else
/// the script's `#!` line, else the script's own extension; none for a compiled program.
pub fn source_extensions(interpreter: Option<&str>, script: &Path) -> Vec<String> {
    let by_name = interpreter
        .and_then(language_extensions)
        .or_else(|| shebang(script).as_deref().and_then(language_extensions));
    match by_name {
        Some(list) => list.iter().map(|e| e.to_string()).collect(),
        None => script
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| vec![e.to_string()])
            .unwrap_or_default(),
    }
}

/// Checks a pattern of `ignore_watch`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("an empty pattern would match nothing: remove it".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_gives_the_extensions() {
        let js = source_extensions(Some("node"), Path::new("/a/app.js"));
        assert!(js.contains(&"js".to_string()) && js.contains(&"ts".to_string()));
        assert!(!js.contains(&"json".to_string()), "data files are not code");
        assert_eq!(
            source_extensions(Some("/usr/bin/python3.12"), Path::new("/a/app.py")),
            ["py"]
        );
        assert_eq!(source_extensions(None, Path::new("/a/app.lua")), ["lua"]);
        assert!(source_extensions(None, Path::new("/bin/true")).is_empty());
    }

    fn resolve(dir: &Path, app: crate::config::RawApp) -> Result<Option<WatchSpec>, Vec<String>> {
        use crate::config::{Context, Item, RawApp};
        let env = std::collections::BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]);
        let context = Context {
            base: dir,
            caller_env: &env,
            profile: None,
            fleet: Default::default(),
        };
        RawApp {
            script: Some(Item::flag("app.js".into())),
            ..app
        }
        .resolve(&context)
        .map(|spec| spec.watch.map(|w| *w))
        .map_err(|problems| problems.into_iter().map(|p| p.message).collect())
    }

    #[test]
    fn watch_resolves_to_paths_and_a_rule() {
        use crate::config::{Item, RawApp};
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("app.js"), "").expect("write");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let on = |value| RawApp {
            watch: Some(Item::flag(value)),
            ..RawApp::default()
        };
        let default = resolve(dir.path(), on(WatchValue::Flag(true)))
            .expect("valid")
            .expect("on");
        assert_eq!(default.paths, [dir.path()]);
        assert!(
            default
                .extensions
                .is_some_and(|e| e.contains(&"js".to_string()))
        );
        assert_eq!(default.delay_ms, DEFAULT_DELAY_MS);
        let empty = resolve(dir.path(), on(WatchValue::Paths(vec![])));
        assert_eq!(
            empty.expect("valid").map(|w| w.paths),
            Some(vec![dir.path().to_path_buf()])
        );
        assert_eq!(resolve(dir.path(), on(WatchValue::Flag(false))), Ok(None));
        let named = resolve(dir.path(), on(WatchValue::Paths(vec!["./src".into()])))
            .expect("valid")
            .expect("on");
        assert_eq!(named.paths, [dir.path().join("src")]);
        assert_eq!(named.extensions, None);
        let missing = resolve(dir.path(), on(WatchValue::Paths(vec!["lib".into()])));
        assert!(
            missing.is_err_and(|p| p[0].starts_with("path to watch not found")),
            "a path that does not exist"
        );
        let everything = RawApp {
            cwd: Some(Item::flag("/".into())),
            ..on(WatchValue::Flag(true))
        };
        assert!(
            resolve(dir.path(), everything).is_err_and(|p| p[0].contains("would watch /")),
            "watching the whole system"
        );
        let orphan = RawApp {
            ignore_watch: Some(Item::flag(vec!["*.db".into()])),
            ..RawApp::default()
        };
        assert!(
            resolve(dir.path(), orphan).is_err_and(|p| p[0].contains("without `watch`")),
            "ignore_watch alone"
        );
    }

    #[test]
    fn a_shebang_names_the_language() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("serve");
        std::fs::write(&script, "#!/usr/bin/env -S python3 -u\nprint(1)\n").expect("write");
        assert_eq!(source_extensions(None, &script), ["py"]);
        std::fs::write(&script, "#!/bin/bash\n").expect("write");
        assert_eq!(source_extensions(None, &script), ["sh"]);
    }
}
