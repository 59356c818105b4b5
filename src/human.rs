//! How sizes and durations are shown to people: the same in `list`, `describe` and `monit`.

/// `850ms`, `12s`, `5m`, `3h`, `2d`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// `0b`, `512kb`, `41.2mb`, `1.1gb`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n < KIB {
        format!("{n}b")
    } else if n < KIB * KIB {
        format!("{:.0}kb", n / KIB)
    } else if n < KIB * KIB * KIB {
        format!("{:.1}mb", n / KIB / KIB)
    } else {
        format!("{:.1}gb", n / KIB / KIB / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(125_000), "2m");
        assert_eq!(bytes(512), "512b");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0gb");
    }
}
