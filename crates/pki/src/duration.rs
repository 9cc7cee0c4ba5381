use crate::PkiError;
use std::time::Duration;

/// Parses `90s`, `15m`, `24h`, `30d`, `2w`, `1y` (365 days); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, PkiError> {
    let bad = || PkiError::InvalidDuration(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(secs).ok_or_else(bad)?;
    if total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Shortest exact rendering, the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("y", 365 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_garbage() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("1y").unwrap().as_secs(), 365 * 86_400);
        for bad in ["", "d", "10x", "-1d", "0s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(parse_duration("48h").unwrap()), "2d");
    }
}
