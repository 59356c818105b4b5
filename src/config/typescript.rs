//! TypeScript scripts (`.ts`, `.mts`, `.cts`) given no interpreter run with what is installed, chosen when
//! the app is defined (`start`, or an ecosystem file applied) and recorded in its spec, so `describe` and
//! `start` say which:
//!
//! 1. `tsx`, then 2. `ts-node`: found in `node_modules/.bin` of the script's directory or one above it,
//!    then of the working directory or one above it, then on PATH. Each is loaded into Node itself
//!    (`node --import <tsx's loader>`, `node --require <ts-node>/register`) rather than run as its own
//!    command: `tsx app.ts` runs the app in a child process, which herdsman's Node preload (shared sockets,
//!    readiness) deliberately leaves alone, so a cluster-mode app would bind its port again.
//! 3. Node's own type stripping: Node 23.6 or later as it is, 22.6 to 23.5 with
//!    `--experimental-strip-types`.
//!
//! With none of them the app is refused with a message naming what to install.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::find_program;

/// True for the extensions this module handles.
pub fn is_typescript(script: &Path) -> bool {
    matches!(
        script.extension().and_then(OsStr::to_str),
        Some("ts" | "mts" | "cts")
    )
}

/// How a TypeScript script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// The interpreter: `node`, or a runner's own command when it cannot be loaded into Node.
    pub interpreter: String,
    /// Interpreter arguments, before the app's own.
    pub args: Vec<String>,
    /// What was chosen, for `describe` and `start`: `tsx 4.21.0 (/srv/app/node_modules/tsx)`.
    pub description: String,
}

/// A Node version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NodeVersion {
    /// Parses `node --version` (`v20.20.2`).
    pub fn parse(text: &str) -> Option<NodeVersion> {
        let mut parts = text.trim().trim_start_matches('v').split('.');
        let mut next = || parts.next()?.parse().ok();
        Some(NodeVersion {
            major: next()?,
            minor: next()?,
            patch: next().unwrap_or(0),
        })
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `--import` preloads ESM modules (Node 18.19, 20.6 and later).
    fn has_import(self) -> bool {
        self.at_least(20, 6) || (self.major == 18 && self.minor >= 19)
    }

    /// The flags that make Node strip types itself, or `None` when this version cannot.
    pub fn strip_types_args(self) -> Option<Vec<String>> {
        if self.at_least(23, 6) {
            Some(Vec::new())
        } else if self.at_least(22, 6) {
            Some(vec!["--experimental-strip-types".into()])
        } else {
            None
        }
    }
}

impl std::fmt::Display for NodeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Chooses how `script` runs, looking for runners as the module's docs say. `path` is the app's PATH.
pub fn choose(script: &Path, cwd: &Path, path: Option<&str>) -> Result<Runner, String> {
    let node = find_program("node", path, cwd);
    let version = node.as_deref().and_then(node_version);
    let find = |name: &str| find_runner(name, script, cwd, path);
    for name in ["tsx", "ts-node"] {
        if let Some(bin) = find(name) {
            return Ok(through_node(name, &bin, node.is_some(), version, ""));
        }
    }
    if let Some(v) = version
        && let Some(args) = v.strip_types_args()
    {
        let how = if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        };
        return Ok(Runner {
            interpreter: "node".into(),
            args,
            description: format!("Node {v}'s own type stripping (node{how})"),
        });
    }
    let found = match version {
        Some(v) => format!("node {v} cannot strip types (22.6 or later can)"),
        None => "no node on PATH".into(),
    };
    Err(format!(
        "no way to run TypeScript {}: no tsx or ts-node in node_modules/.bin (of the script's or working \
         directory, or above) or on PATH, and {found}; install tsx (`npm install --save-dev tsx` in the \
         app's directory), or give --interpreter",
        script.display()
    ))
}

/// An interpreter given as `tsx` or `ts-node` (a name, found as [`choose`] finds it, or a path): loaded
/// into Node as [`choose`] would, so the Node preload works in cluster mode. `None` for any other
/// interpreter, or when it is not found (the usual "not found" error follows).
pub fn given(interpreter: &str, script: &Path, cwd: &Path, path: Option<&str>) -> Option<Runner> {
    let name = Path::new(interpreter).file_name()?.to_str()?;
    if !matches!(name, "tsx" | "ts-node") {
        return None;
    }
    let bin = if interpreter.contains('/') {
        find_program(interpreter, path, cwd)?
    } else {
        find_runner(name, script, cwd, path)?
    };
    let node = find_program("node", path, cwd);
    let version = node.as_deref().and_then(node_version);
    Some(through_node(
        name,
        &bin,
        node.is_some(),
        version,
        &format!(" (given as interpreter {interpreter})"),
    ))
}

/// tsx or ts-node, found at `bin`: loaded into Node when its package and this Node allow, else its own
/// command.
fn through_node(
    name: &str,
    bin: &Path,
    has_node: bool,
    version: Option<NodeVersion>,
    note: &str,
) -> Runner {
    let package = package_of(bin, name);
    let preload = match name {
        "tsx" => package
            .as_ref()
            .and_then(|p| tsx_loader(&p.dir))
            .filter(|_| version.is_some_and(NodeVersion::has_import))
            .map(|loader| ("--import", loader)),
        _ => package
            .as_ref()
            .map(|p| p.dir.join("register"))
            .filter(|r| has_node && r.join("index.js").is_file())
            .map(|register| ("--require", register)),
    };
    match preload {
        Some((flag, file)) => Runner {
            interpreter: "node".into(),
            args: vec![flag.into(), file.display().to_string()],
            description: format!(
                "{}{note}, through node {flag}",
                describe(name, package.as_ref(), bin)
            ),
        },
        None => Runner {
            interpreter: bin.display().to_string(),
            args: Vec::new(),
            description: format!(
                "{}{note}, through its own command",
                describe(name, package.as_ref(), bin)
            ),
        },
    }
}

/// A runner's command: in `node_modules/.bin` of the script's directory or one above it, then of the
/// working directory or one above it, then on PATH.
fn find_runner(name: &str, script: &Path, cwd: &Path, path: Option<&str>) -> Option<PathBuf> {
    search_dirs(script, cwd)
        .iter()
        .map(|dir| dir.join("node_modules/.bin").join(name))
        .find(|bin| is_executable(bin))
        .or_else(|| find_program(name, path, cwd))
}

/// The script's directory and its ancestors, then the working directory and its ancestors.
fn search_dirs(script: &Path, cwd: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for start in [script.parent(), Some(cwd)].into_iter().flatten() {
        for dir in start.ancestors() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    dirs
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `node --version` of this node.
fn node_version(node: &Path) -> Option<NodeVersion> {
    let output = std::process::Command::new(node)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    NodeVersion::parse(std::str::from_utf8(&output.stdout).ok()?)
}

/// An npm package on disk.
#[derive(Debug)]
struct Package {
    dir: PathBuf,
    version: Option<String>,
}

/// The package a runner's command belongs to: its `.bin` link followed, then up to the `package.json`
/// that names it.
fn package_of(bin: &Path, name: &str) -> Option<Package> {
    let real = std::fs::canonicalize(bin).ok()?;
    real.ancestors().skip(1).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
        let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
        (manifest.get("name")?.as_str()? == name).then(|| Package {
            dir: dir.to_path_buf(),
            version: manifest
                .get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    })
}

/// tsx's loader for `node --import`: its package's main export.
fn tsx_loader(dir: &Path) -> Option<PathBuf> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).ok()?).ok()?;
    let export = manifest.get("exports")?.get(".")?;
    let file = export
        .as_str()
        .or_else(|| export.get("import").and_then(|i| i.as_str()))
        .or_else(|| export.get("default").and_then(|i| i.as_str()))?;
    let loader = dir.join(file.trim_start_matches("./"));
    loader.is_file().then_some(loader)
}

fn describe(name: &str, package: Option<&Package>, bin: &Path) -> String {
    let version = package
        .and_then(|p| p.version.as_deref())
        .map_or(String::new(), |v| format!(" {v}"));
    let place = package.map_or_else(
        || bin.display().to_string(),
        |p| p.dir.display().to_string(),
    );
    format!("{name}{version} from {place}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions_parse_and_choose_type_stripping() {
        let v = |t: &str| NodeVersion::parse(t).expect("a version");
        assert_eq!(
            v("v20.20.2\n"),
            NodeVersion {
                major: 20,
                minor: 20,
                patch: 2
            }
        );
        assert_eq!(v("v20.20.2").strip_types_args(), None);
        assert_eq!(v("v22.5.1").strip_types_args(), None);
        assert_eq!(
            v("v22.6.0").strip_types_args(),
            Some(vec!["--experimental-strip-types".to_string()])
        );
        assert_eq!(
            v("v23.5.0").strip_types_args(),
            Some(vec!["--experimental-strip-types".to_string()])
        );
        assert_eq!(v("v23.6.0").strip_types_args(), Some(vec![]));
        assert_eq!(v("v24.1.0").strip_types_args(), Some(vec![]));
        assert!(v("v20.6.0").has_import() && v("v18.19.0").has_import());
        assert!(!v("v20.5.1").has_import() && !v("v19.9.0").has_import());
        assert_eq!(NodeVersion::parse("not a version"), None);
    }

    #[test]
    fn extensions() {
        for name in ["a.ts", "a.mts", "a.cts"] {
            assert!(is_typescript(Path::new(name)), "{name}");
        }
        assert!(!is_typescript(Path::new("a.js")));
        assert!(!is_typescript(Path::new("a.d")));
    }

    /// A fake package with a `.bin` link, as npm lays one out.
    fn fake_package(root: &Path, name: &str, files: &[(&str, &str)], manifest: &str) {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = root.join("node_modules").join(name);
        std::fs::create_dir_all(&dir).expect("package dir");
        std::fs::write(dir.join("package.json"), manifest).expect("manifest");
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
            std::fs::write(&path, text).expect("file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
        }
        let bin = root.join("node_modules/.bin");
        std::fs::create_dir_all(&bin).expect(".bin");
        symlink(dir.join(files[0].0), bin.join(name)).expect("link");
    }

    #[test]
    fn ts_node_above_the_script_is_loaded_into_node_and_tsx_wins_over_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let app = root.path().join("src/deep");
        std::fs::create_dir_all(&app).expect("app dir");
        let script = app.join("main.ts");
        std::fs::write(&script, "").expect("script");
        fake_package(
            root.path(),
            "ts-node",
            &[("dist/bin.js", ""), ("register/index.js", "")],
            r#"{"name":"ts-node","version":"10.9.2"}"#,
        );
        let path = std::env::var("PATH").ok();
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let runner = choose(&script, elsewhere.path(), path.as_deref()).expect("ts-node");
        if find_program("node", path.as_deref(), elsewhere.path()).is_some() {
            assert_eq!(runner.interpreter, "node");
            assert_eq!(runner.args[0], "--require");
            assert!(runner.args[1].ends_with("node_modules/ts-node/register"));
        }
        assert!(
            runner.description.starts_with("ts-node 10.9.2 from "),
            "{runner:?}"
        );

        fake_package(
            &app,
            "tsx",
            &[("dist/cli.mjs", ""), ("dist/loader.mjs", "")],
            r#"{"name":"tsx","version":"4.21.0","exports":{".":"./dist/loader.mjs"}}"#,
        );
        let runner = choose(&script, elsewhere.path(), path.as_deref()).expect("tsx");
        assert!(
            runner.description.starts_with("tsx 4.21.0 from "),
            "{runner:?}"
        );
    }
}
