//! Which changed paths count as a change of the app, and which directories are watched at all: plain
//! functions over paths, with their tests.
//!
//! Never counted, and never walked into: `node_modules`, `.git`, `.hg`, `.svn` and `__pycache__` anywhere
//! below a watched path, and whatever `ignore_watch` matches. Never counted: the app's own log files and
//! their rotated siblings (`web-out.log.1`, `web-out.log.2.gz`). With `watch = true`, only the app's source
//! files (by extension) and the script itself count.
//!
//! `ignore_watch` patterns are names or globs (`*` and `?` within a name, `**` across directories), as in
//! `.gitignore`: one without a `/` matches any file or directory of that name below a watched path
//! (`tmp`, `*.db`); one with a `/` matches the path relative to the app's working directory, and
//! everything under it (`data/cache`, `public/**/*.js`); an absolute one matches that path and
//! everything under it.

use std::path::{Component, Path, PathBuf};

/// Directories that never count and are never walked into.
pub const ALWAYS_IGNORED: &[&str] = &["node_modules", ".git", ".hg", ".svn", "__pycache__"];

/// A watched path: a directory (everything under it) or one file (watched through its directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Dir(PathBuf),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub roots: Vec<Root>,
    /// The app's working directory: patterns with a `/` are relative to it.
    cwd: PathBuf,
    /// `Some`: only these extensions, and `script`, count.
    extensions: Option<Vec<String>>,
    script: PathBuf,
    /// The app's log files.
    logs: Vec<PathBuf>,
    ignore: Vec<String>,
}

impl Filter {
    pub fn new(
        roots: Vec<Root>,
        cwd: &Path,
        extensions: Option<Vec<String>>,
        script: &Path,
        logs: Vec<PathBuf>,
        ignore: &[String],
    ) -> Filter {
        let ignore = ignore
            .iter()
            .map(|p| {
                let p = p.trim();
                let p = p.strip_prefix("./").unwrap_or(p);
                p.trim_end_matches('/').to_string()
            })
            .filter(|p| !p.is_empty())
            .collect();
        Filter {
            roots,
            cwd: cwd.to_path_buf(),
            extensions,
            script: script.to_path_buf(),
            logs,
            ignore,
        }
    }

    /// The part of `path` below the watched path it is in, or `None` when it is in none (or is the
    /// watched directory itself).
    fn below<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        for root in &self.roots {
            match root {
                Root::File(file) if file == path => return Some(Path::new("")),
                Root::Dir(dir) => {
                    if let Ok(rel) = path.strip_prefix(dir)
                        && !rel.as_os_str().is_empty()
                    {
                        return Some(rel);
                    }
                }
                Root::File(_) => {}
            }
        }
        None
    }

    /// Whether the path is one of the watched directories itself.
    pub fn is_root_dir(&self, path: &Path) -> bool {
        self.roots
            .iter()
            .any(|root| matches!(root, Root::Dir(dir) if dir == path))
    }

    /// Whether a directory below a watched one is watched too (walked into).
    pub fn enters(&self, dir: &Path) -> bool {
        match self.below(dir) {
            Some(rel) => !always_ignored(rel) && !self.ignored(dir),
            None => false,
        }
    }

    /// Whether a change of the file `path` counts.
    pub fn counts(&self, path: &Path) -> bool {
        let Some(rel) = self.below(path) else {
            return false;
        };
        if always_ignored(rel) || self.is_log(path) || self.ignored(path) {
            return false;
        }
        match &self.extensions {
            None => true,
            Some(extensions) => {
                path == self.script
                    || path
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| extensions.iter().any(|x| x == e))
            }
        }
    }

    /// One of the app's log files, or a rotated copy of one.
    fn is_log(&self, path: &Path) -> bool {
        self.logs.iter().any(|log| {
            if path == log {
                return true;
            }
            let (Some(name), Some(log_name)) = (path.file_name(), log.file_name()) else {
                return false;
            };
            path.parent() == log.parent()
                && name
                    .to_string_lossy()
                    .starts_with(&format!("{}.", log_name.to_string_lossy()))
        })
    }

    /// Whether an `ignore_watch` pattern matches the path or a directory it is in.
    fn ignored(&self, path: &Path) -> bool {
        if self.ignore.is_empty() {
            return false;
        }
        let rel = path
            .strip_prefix(&self.cwd)
            .ok()
            .or_else(|| self.below(path))
            .unwrap_or(path);
        let names: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        self.ignore.iter().any(|pattern| {
            if pattern.starts_with('/') {
                ancestors_match(pattern, path)
            } else if pattern.contains('/') {
                (1..=names.len()).any(|n| glob(pattern, &names[..n].join("/")))
            } else {
                names.iter().any(|name| glob(pattern, name))
            }
        })
    }
}

fn always_ignored(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(name) => ALWAYS_IGNORED.iter().any(|i| name == *i),
        _ => false,
    })
}

/// An absolute pattern matches the path or one of its ancestors.
fn ancestors_match(pattern: &str, path: &Path) -> bool {
    path.ancestors()
        .any(|a| glob(pattern, &a.to_string_lossy()))
}

/// Glob matching: `*` and `?` within a name (never a `/`), `**` across any number of directories.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_chars(&pattern, &text)
}

fn glob_chars(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') if pattern.get(1) == Some(&'*') => {
            let rest = &pattern[2..];
            match rest.split_first() {
                // `**/x`: x here, or below any number of directories.
                Some(('/', after)) => {
                    glob_chars(after, text)
                        || (0..text.len())
                            .any(|i| text[i] == '/' && glob_chars(after, &text[i + 1..]))
                }
                _ => (0..=text.len()).any(|i| glob_chars(rest, &text[i..])),
            }
        }
        Some('*') => {
            let rest = &pattern[1..];
            for i in 0..=text.len() {
                if glob_chars(rest, &text[i..]) {
                    return true;
                }
                if text.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => {
            text.first().is_some_and(|&c| c != '/') && glob_chars(&pattern[1..], &text[1..])
        }
        Some(&c) => text.first() == Some(&c) && glob_chars(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(ignore: &[&str]) -> Filter {
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        Filter::new(
            vec![Root::Dir("/srv/app".into())],
            Path::new("/srv/app"),
            Some(vec!["js".into(), "ts".into()]),
            Path::new("/srv/app/server"),
            vec!["/srv/app/logs/web-out.log".into()],
            &ignore,
        )
    }

    #[test]
    fn globs_stay_within_a_name_unless_doubled() {
        assert!(glob("*.db", "app.db"));
        assert!(!glob("*.db", "data/app.db"));
        assert!(glob("data/**", "data/a/b.js"));
        assert!(glob("public/**/*.js", "public/a.js"));
        assert!(glob("public/**/*.js", "public/x/y/a.js"));
        assert!(!glob("public/**/*.js", "public/x/a.css"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "a/c"));
        assert!(glob("tmp", "tmp"));
        assert!(!glob("tmp", "tmpx"));
    }

    #[test]
    fn only_source_files_count_by_default() {
        let f = sources(&[]);
        assert!(f.counts(Path::new("/srv/app/index.js")));
        assert!(f.counts(Path::new("/srv/app/lib/deep/util.ts")));
        assert!(f.counts(Path::new("/srv/app/server")), "the script itself");
        for path in [
            "/srv/app/app.db",
            "/srv/app/app.pid",
            "/srv/app/state.json",
            "/srv/app/.index.js.swp",
            "/srv/app/node_modules/x/index.js",
            "/srv/app/.git/HEAD",
            "/srv/app/a/__pycache__/m.js",
            "/elsewhere/index.js",
            "/srv/app",
        ] {
            assert!(!f.counts(Path::new(path)), "{path}");
        }
        assert!(!f.enters(Path::new("/srv/app/node_modules")));
        assert!(!f.enters(Path::new("/srv/app/sub/.git")));
        assert!(f.enters(Path::new("/srv/app/lib")));
    }

    #[test]
    fn named_paths_count_every_file_but_logs_and_ignored_ones() {
        let f = Filter::new(
            vec![
                Root::Dir("/srv/app/src".into()),
                Root::File("/srv/app/config.toml".into()),
            ],
            Path::new("/srv/app"),
            None,
            Path::new("/srv/app/src/main.py"),
            vec!["/srv/app/src/out.log".into()],
            &[
                "*.db".into(),
                "src/cache".into(),
                "/srv/app/src/tmp/".into(),
            ],
        );
        assert!(f.counts(Path::new("/srv/app/config.toml")));
        assert!(f.counts(Path::new("/srv/app/src/templates/index.html")));
        assert!(!f.counts(Path::new("/srv/app/other.toml")));
        assert!(!f.counts(Path::new("/srv/app/src/out.log")));
        assert!(!f.counts(Path::new("/srv/app/src/out.log.1")));
        assert!(!f.counts(Path::new("/srv/app/src/out.log.2.gz")));
        assert!(!f.counts(Path::new("/srv/app/src/data/app.db")));
        assert!(!f.counts(Path::new("/srv/app/src/cache/page.html")));
        assert!(!f.enters(Path::new("/srv/app/src/cache")));
        assert!(!f.counts(Path::new("/srv/app/src/tmp/x")));
        assert!(!f.counts(Path::new("/srv/app/src/__pycache__/main.cpython-312.pyc")));
    }
}
