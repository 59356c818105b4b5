//! `[daemon]`: settings of the daemon itself rather than of an app. Today the metrics endpoint:
//! `metrics = "127.0.0.1:9615"` (an IP address and port, or a port alone for 127.0.0.1, or `"off"`) and
//! `allow_remote = true` to let it be an address other than loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use toml::Spanned;
use toml::de::DeValue;

use super::{Lines, Problem, unknown, wrong};
use crate::protocol::MetricsSetting;

/// The keys of `[daemon]`, with what they mean (the schema's descriptions).
pub const KEYS: &[(&str, &str)] = &[
    (
        "metrics",
        "Serve Prometheus metrics (text format 0.0.4, OpenMetrics on request) at this address: \"HOST:PORT\", a port for 127.0.0.1, or \"off\" [default: off]",
    ),
    (
        "allow_remote",
        "Allow a metrics address other than loopback [default: false]",
    ),
];

/// Reads `[daemon]`: the metrics setting it gives (`None` when it gives none), problems at their positions.
pub(super) fn read(
    lines: &Lines,
    value: &Spanned<DeValue<'_>>,
    problems: &mut Vec<Problem>,
) -> Option<MetricsSetting> {
    let DeValue::Table(table) = value.get_ref() else {
        problems.push(wrong(
            lines,
            "daemon",
            value.span().start,
            "a table ([daemon])",
            value.get_ref(),
        ));
        return None;
    };
    let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    let mut metrics: Option<(Option<SocketAddr>, usize)> = None;
    let mut allow_remote = false;
    for (key, value) in table {
        let at = value.span().start;
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("metrics", DeValue::String(text)) => match parse_address(text) {
                Ok(addr) => metrics = Some((addr, at)),
                Err(message) => problems.push(Problem {
                    at: Some(lines.locate(at)),
                    key: "daemon.metrics".into(),
                    message,
                }),
            },
            ("metrics", other) => problems.push(wrong(
                lines,
                "daemon.metrics",
                at,
                "a string (\"127.0.0.1:9615\")",
                other,
            )),
            ("allow_remote", DeValue::Boolean(b)) => allow_remote = *b,
            ("allow_remote", other) => problems.push(wrong(
                lines,
                "daemon.allow_remote",
                at,
                "true or false",
                other,
            )),
            _ => problems.push(unknown(lines, key, &known)),
        }
    }
    let (listen, at) = metrics?;
    let setting = MetricsSetting {
        listen,
        allow_remote,
    };
    if let Err(message) = setting.check() {
        problems.push(Problem {
            at: Some(lines.locate(at)),
            key: "daemon.metrics".into(),
            message,
        });
        return None;
    }
    Some(setting)
}

/// `HOST:PORT`, `[V6]:PORT`, `PORT` (for 127.0.0.1) or `off`.
fn parse_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text == "off" {
        return Ok(None);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
    }
    text.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!(
            "invalid metrics address \"{text}\": expected an IP address and port such as \
             \"127.0.0.1:9615\", a port, or \"off\""
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_ports_and_off() {
        assert_eq!(
            parse_address("127.0.0.1:9615"),
            Ok(Some("127.0.0.1:9615".parse().expect("address")))
        );
        assert_eq!(
            parse_address("9615"),
            Ok(Some("127.0.0.1:9615".parse().expect("address")))
        );
        assert_eq!(
            parse_address("[::1]:9615"),
            Ok(Some("[::1]:9615".parse().expect("address")))
        );
        assert_eq!(parse_address("off"), Ok(None));
        assert!(parse_address("localhost:9615").is_err());
    }
}
