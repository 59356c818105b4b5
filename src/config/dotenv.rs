//! `.env` files (`env_file` in an ecosystem file, `--env-file` on `start`): the dotenv syntax that Node's
//! `--env-file` and the `dotenv` package share (Docker Compose reads the same lines but expands `$VAR`).
//!
//! ```text
//! # a comment; blank lines are ignored
//! PORT=3000
//! export NODE_ENV=production        # `export ` is allowed, so the file can be sourced by a shell
//! GREETING = hello world            # spaces around `=` and the value are trimmed; `#` starts a comment
//! LITERAL='no $expansion, no \n escapes'
//! ESCAPED="a\tb\nnew line, a \"quote\", a backslash \\"
//! MULTI="first line
//! second line"
//! ```
//!
//! Values are never expanded (`$VAR` stays as written), as with Node's `--env-file` and `dotenv`. A key
//! given twice takes its later value. Every malformed line is reported with its line and column.

use std::collections::BTreeMap;
use std::path::Path;

use super::Location;

/// A malformed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub at: Location,
    pub message: String,
}

/// Reads a file's variables; `Err` says why the file cannot be read, or where each problem is
/// (`PATH:LINE:COLUMN: message`).
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, Vec<String>> {
    use std::io::Read;
    let cannot = |why: String| vec![format!("cannot read env file {}: {why}", path.display())];
    // A FIFO would block the read, a device (`/dev/zero`) would never end it: only a regular file of a
    // sane size is read.
    let meta = std::fs::metadata(path).map_err(|e| cannot(e.to_string()))?;
    if !meta.is_file() {
        return Err(cannot("not a regular file".into()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(ENV_FILE_MAX + 1).read_to_string(&mut text))
        .map_err(|e| cannot(e.to_string()))?;
    if text.len() as u64 > ENV_FILE_MAX {
        return Err(cannot(format!("larger than {} MiB", ENV_FILE_MAX >> 20)));
    }
    parse(&text).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    e.at.line,
                    e.at.column,
                    e.message
                )
            })
            .collect()
    })
}

/// The largest env file read.
const ENV_FILE_MAX: u64 = 1 << 20;

/// Parses dotenv text. Reports every malformed line, not just the first.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, Vec<DotenvError>> {
    // (A byte-order mark, as some Windows editors write, is not part of the first key.)
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut vars = BTreeMap::new();
    let mut errors = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let line = lines[index];
        index += 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let at = |offset: usize| Location {
            line: number,
            column: line[..offset.min(line.len())].chars().count() + 1,
        };
        let body = trimmed
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(trimmed, str::trim_start);
        let body_start = line.len() - body.len();
        let Some((key, rest)) = body.split_once('=') else {
            errors.push(DotenvError {
                at: at(indent),
                message: "expected KEY=VALUE".into(),
            });
            continue;
        };
        let key = key.trim_end();
        if !valid_key(key) {
            errors.push(DotenvError {
                at: at(body_start),
                message: format!(
                    "invalid variable name `{key}`: use letters, digits, `_`, `.` or `-`, not starting with a digit"
                ),
            });
            continue;
        }
        let value_start = line.len() - rest.trim_start().len();
        let rest = rest.trim_start();
        let quote = rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'));
        let Some(quote) = quote else {
            // Unquoted: up to a `#`, trimmed.
            let value = rest.split('#').next().unwrap_or_default().trim_end();
            vars.insert(key.to_string(), value.to_string());
            continue;
        };
        // Quoted: up to the closing quote, which may be on a later line.
        let mut raw = rest[1..].to_string();
        let mut end_line = number;
        let mut closing = closing_quote(&raw, quote);
        while closing.is_none() && index < lines.len() {
            raw.push('\n');
            raw.push_str(lines[index]);
            index += 1;
            end_line += 1;
            closing = closing_quote(&raw, quote);
        }
        let Some(close) = closing else {
            errors.push(DotenvError {
                at: at(value_start),
                message: format!("unterminated {quote}-quoted value (no closing {quote})"),
            });
            continue;
        };
        let after = raw[close + 1..].trim_start();
        if !after.is_empty() && !after.starts_with('#') {
            let last = if end_line == number {
                line
            } else {
                lines[end_line - 1]
            };
            let offset = last.len() - after.len();
            errors.push(DotenvError {
                at: Location {
                    line: end_line,
                    column: last[..offset].chars().count() + 1,
                },
                message: format!(
                    "unexpected text after the closing {quote}: `{}`",
                    after.trim_end()
                ),
            });
            continue;
        }
        let inner = &raw[..close];
        let value = if quote == '"' {
            unescape(inner)
        } else {
            inner.to_string()
        };
        vars.insert(key.to_string(), value);
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

/// A name as dotenv accepts it: `[A-Za-z_][A-Za-z0-9_.-]*`.
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The byte offset of the quote that closes a value; in double quotes, `\"` does not close it.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if quote == '"' && escaped {
            escaped = false;
        } else if quote == '"' && c == '\\' {
            escaped = true;
        } else if c == quote {
            return Some(i);
        }
    }
    None
}

/// Double-quoted escapes: `\n`, `\r`, `\t`, `\"`, `\\`; any other backslash is kept as written.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> BTreeMap<String, String> {
        parse(text).unwrap_or_else(|e| panic!("{text:?} must parse: {e:?}"))
    }

    #[test]
    fn plain_exported_spaced_and_commented_lines() {
        let v = vars(
            "# comment\n\nA=1\nexport B=two words\n  C = spaced  \nD=value # comment\nE=\nexported=x\n",
        );
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two words");
        assert_eq!(v["C"], "spaced");
        assert_eq!(v["D"], "value");
        assert_eq!(v["E"], "");
        assert_eq!(v["exported"], "x");
        assert_eq!(v.len(), 6);
    }

    #[test]
    fn quotes_single_literal_double_escaped_and_multiline() {
        let v = vars(concat!(
            "S='a $B \\n # kept'\n",
            "D=\"tab\\there \\\"q\\\" back\\\\slash\\nnext\" # comment\n",
            "M=\"one\ntwo\"\n",
            "B=`back tick`\n",
            "U=\"\\x stays\"\n",
            "AFTER=1\n",
        ));
        assert_eq!(v["S"], "a $B \\n # kept");
        assert_eq!(v["D"], "tab\there \"q\" back\\slash\nnext");
        assert_eq!(v["M"], "one\ntwo");
        assert_eq!(v["B"], "back tick");
        assert_eq!(v["U"], "\\x stays");
        assert_eq!(v["AFTER"], "1");
    }

    #[test]
    fn windows_line_endings_and_a_byte_order_mark() {
        let v = vars("\u{feff}A=1\r\nB=\"two\"\r\n");
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two");
    }

    #[test]
    fn a_later_key_wins() {
        assert_eq!(vars("A=1\nA=2\n")["A"], "2");
    }

    #[test]
    fn every_malformed_line_is_reported_with_its_position() {
        let errors = parse("OK=1\njust words\n1BAD=x\n  Q=\"open\nA=1\n").expect_err("malformed");
        let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.at.line, e.at.column)).collect();
        assert_eq!(at, [(2, 1), (3, 1), (4, 5)], "{errors:?}");
        assert!(errors[0].message.contains("KEY=VALUE"));
        assert!(errors[1].message.contains("`1BAD`"));
        assert!(errors[2].message.contains("unterminated"));
        let trailing = parse("X='a' b\n").expect_err("text after the quote");
        assert_eq!((trailing[0].at.line, trailing[0].at.column), (1, 7));
    }

    #[test]
    fn a_device_or_a_fifo_is_not_read() {
        let errors = read(Path::new("/dev/zero")).expect_err("not a regular file");
        assert!(errors[0].contains("not a regular file"), "{errors:?}");
        let dir = std::env::temp_dir().join(format!("herdsman-dotenv-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        nix::unistd::mkfifo(&dir, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let errors = read(&dir).expect_err("a FIFO is not read");
        let _ = std::fs::remove_file(&dir);
        assert!(errors[0].contains("not a regular file"), "{errors:?}");
    }
}
