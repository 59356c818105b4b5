//! The small value types of an app's specification, each with the one parser the CLI (and later the
//! ecosystem file) uses: listen addresses, instance counts, durations, signals and app names.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// A value that did not parse, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{found}': expected {expected}")]
pub struct ValueError {
    pub what: &'static str,
    pub found: String,
    pub expected: &'static str,
}

impl ValueError {
    fn new(what: &'static str, found: &str, expected: &'static str) -> ValueError {
        ValueError {
            what,
            found: found.to_string(),
            expected,
        }
    }
}

/// An address the daemon binds for an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddr {
    /// `PORT`: every interface, IPv6 and IPv4, as Node's `listen(PORT)` does.
    Port(u16),
    /// `HOST:PORT` or `[V6]:PORT`.
    Tcp(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP port, when there is one.
    pub fn port(&self) -> Option<u16> {
        match self {
            ListenAddr::Port(port) => Some(*port),
            ListenAddr::Tcp(addr) => Some(addr.port()),
            ListenAddr::Unix(_) => None,
        }
    }
}

const LISTEN_EXPECTED: &str =
    "PORT, HOST:PORT, [V6]:PORT or unix:PATH, with a port from 1 to 65535";

impl FromStr for ListenAddr {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ValueError::new("listen address", text, LISTEN_EXPECTED);
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            return match text.parse::<u16>() {
                Ok(port) if port > 0 => Ok(ListenAddr::Port(port)),
                _ => Err(invalid()),
            };
        }
        let addr = if let Ok(addr) = text.parse::<SocketAddr>() {
            addr
        } else {
            // `localhost:3000` is common enough to accept; it means the IPv4 loopback.
            let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
            let port: u16 = port.parse().map_err(|_| invalid())?;
            let ip: IpAddr = match host {
                "localhost" => IpAddr::from([127, 0, 0, 1]),
                _ => host.parse().map_err(|_| invalid())?,
            };
            SocketAddr::new(ip, port)
        };
        if addr.port() == 0 {
            return Err(invalid());
        }
        Ok(ListenAddr::Tcp(addr))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Port(port) => write!(f, "*:{port}"),
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.strip_prefix("*:") {
            Some(port) => port.parse(),
            None => text.parse(),
        }
    }
}

impl From<ListenAddr> for String {
    fn from(addr: ListenAddr) -> String {
        addr.to_string()
    }
}

/// How many workers an app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Instances {
    Count(u32),
    /// One per logical core (`0` or `max`).
    Max,
    /// One per logical core, less this many (`-1`), at least one.
    LessThanMax(u32),
}

impl Instances {
    /// The number of workers on a machine with `cores` logical cores.
    pub fn resolve(self, cores: u32) -> u32 {
        match self {
            Instances::Count(n) => n,
            Instances::Max => cores.max(1),
            Instances::LessThanMax(k) => cores.saturating_sub(k).max(1),
        }
    }
}

impl FromStr for Instances {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            ValueError::new(
                "instance count",
                text,
                "a number of workers, 0 or 'max' for one per core, or a negative number for that many fewer",
            )
        };
        if text.eq_ignore_ascii_case("max") {
            return Ok(Instances::Max);
        }
        let n: i64 = text.parse().map_err(|_| invalid())?;
        match n {
            0 => Ok(Instances::Max),
            1..=4096 => Ok(Instances::Count(n as u32)),
            -4096..=-1 => Ok(Instances::LessThanMax(n.unsigned_abs() as u32)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instances::Count(n) => write!(f, "{n}"),
            Instances::Max => f.write_str("max"),
            Instances::LessThanMax(k) => write!(f, "-{k}"),
        }
    }
}

impl TryFrom<String> for Instances {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Instances> for String {
    fn from(instances: Instances) -> String {
        instances.to_string()
    }
}

/// `1.5s` as (1.5, "s"): the leading number and what follows it, trimmed.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// Parses `1600` (milliseconds), `1600ms`, `5s`, `1.5s`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let invalid = || {
        ValueError::new(
            "duration",
            text,
            "a number of milliseconds, or a number with ms, s, m or h",
        )
    };
    let (value, unit) = number_and_unit(text).ok_or_else(invalid)?;
    let millis = match unit {
        "" | "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        "h" => value * 3600e3,
        _ => return Err(invalid()),
    };
    if !millis.is_finite() || !(0.0..=1e12).contains(&millis) {
        return Err(invalid());
    }
    Ok(Duration::from_micros((millis * 1e3) as u64))
}

/// Parses a size in bytes: `1048576`, `512K`, `300M`, `1G` (also `300MB`, `300MiB`; powers of 1024, as PM2).
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let invalid = || {
        ValueError::new(
            "size",
            text,
            "a number of bytes, or a number with K, M or G (e.g. 300M)",
        )
    };
    let (value, unit) = number_and_unit(text).ok_or_else(invalid)?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || !(0.0..=1e15).contains(&bytes) {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// A signal by name (`SIGINT`, `INT`, `int`) or number (`2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignalName(pub Signal);

impl FromStr for SignalName {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            ValueError::new(
                "signal",
                text,
                "a signal name such as SIGINT, SIGTERM, SIGQUIT, or its number",
            )
        };
        if let Ok(number) = text.parse::<i32>() {
            return Signal::try_from(number)
                .map(SignalName)
                .map_err(|_| invalid());
        }
        let upper = text.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        match Signal::from_str(&name) {
            Ok(Signal::SIGKILL | Signal::SIGSTOP) | Err(_) => Err(invalid()),
            Ok(signal) => Ok(SignalName(signal)),
        }
    }
}

impl TryFrom<String> for SignalName {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<SignalName> for String {
    fn from(signal: SignalName) -> String {
        signal.0.as_str().to_string()
    }
}

/// Checks an app name: it names log files and is typed on the command line, so it is kept plain.
pub fn check_name(name: &str) -> Result<(), ValueError> {
    let expected = "1 to 64 letters, digits, '.', '_', '-' or '@', not starting with '.' or '-', \
                    not only digits, and not 'all'";
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    let ok = plain
        && (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name != "all";
    if ok {
        Ok(())
    } else {
        Err(ValueError::new("app name", name, expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!("3000".parse(), Ok(ListenAddr::Port(3000)));
        assert_eq!(
            "127.0.0.1:8080".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:8080".parse().expect("addr")))
        );
        assert_eq!(
            "[::1]:8080".parse(),
            Ok(ListenAddr::Tcp("[::1]:8080".parse().expect("addr")))
        );
        assert_eq!(
            "localhost:80".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:80".parse().expect("addr")))
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        for bad in [
            "",
            "0",
            "70000",
            "notaport",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "unix:",
            "host:80",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad} should not parse");
        }
        let round: ListenAddr = String::from(ListenAddr::Port(3000))
            .try_into()
            .expect("round trip");
        assert_eq!(round, ListenAddr::Port(3000));
    }

    #[test]
    fn instances() {
        assert_eq!("4".parse(), Ok(Instances::Count(4)));
        assert_eq!("0".parse(), Ok(Instances::Max));
        assert_eq!("max".parse(), Ok(Instances::Max));
        assert_eq!("-1".parse(), Ok(Instances::LessThanMax(1)));
        assert!("abc".parse::<Instances>().is_err());
        assert!("1.5".parse::<Instances>().is_err());
        assert_eq!(Instances::Max.resolve(8), 8);
        assert_eq!(Instances::LessThanMax(1).resolve(8), 7);
        assert_eq!(Instances::LessThanMax(3).resolve(2), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_size("300M"), Ok(300 * 1024 * 1024));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("1.5G"), Ok(3 * 512 * 1024 * 1024));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("1600"), Ok(Duration::from_millis(1600)));
        assert_eq!(parse_duration("1600ms"), Ok(Duration::from_millis(1600)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!("SIGINT".parse(), Ok(SignalName(Signal::SIGINT)));
        assert_eq!("term".parse(), Ok(SignalName(Signal::SIGTERM)));
        assert_eq!("3".parse(), Ok(SignalName(Signal::SIGQUIT)));
        assert!("SIGKILL".parse::<SignalName>().is_err());
        assert!("SIGNOPE".parse::<SignalName>().is_err());
    }

    #[test]
    fn names() {
        for good in ["api", "my-app", "app.v2", "worker_1", "a@b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "all",
            "42",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
