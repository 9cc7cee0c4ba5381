use crate::PkiError;
use std::time::Duration;

/// The longest duration the grammar reads: past it a value is a typo, and
/// validity ends or deadlines computed from it could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The one duration grammar, for flags and config files alike: `250ms`,
/// `90s`, `15m`, `24h`, `30d`, `2w`, `1y` (365 days); a bare number is
/// seconds. 0 is read (callers that need more say so, as
/// [`parse_duration`] does); anything longer than `max` is refused.
pub fn parse_duration_within(text: &str, max: Duration) -> Result<Duration, PkiError> {
    let bad = || PkiError::InvalidDuration(text.to_string());
    let too_long = || PkiError::DurationTooLong { text: text.to_string(), max: format_duration(max) };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        std::num::IntErrorKind::PosOverflow => too_long(),
        _ => bad(),
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" | "m" | "h" | "d" | "w" | "y" => {
            let unit_secs: u64 = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 7 * 86_400,
                _ => 365 * 86_400,
            };
            Duration::from_secs(n.checked_mul(unit_secs).ok_or_else(too_long)?)
        }
        _ => return Err(bad()),
    };
    if d > max {
        return Err(too_long());
    }
    Ok(d)
}

/// [`parse_duration_within`] up to [`MAX_DURATION`], and more than 0 (a
/// lifetime or a deadline of 0 would be useless).
pub fn parse_duration(text: &str) -> Result<Duration, PkiError> {
    let d = parse_duration_within(text, MAX_DURATION)?;
    if d.is_zero() {
        return Err(PkiError::ZeroDuration(text.to_string()));
    }
    Ok(d)
}

/// Shortest exact rendering, the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
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
        for (text, want) in [
            ("250ms", Duration::from_millis(250)),
            ("90", Duration::from_secs(90)),
            ("90s", Duration::from_secs(90)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("2w", Duration::from_secs(14 * 86_400)),
            ("1y", Duration::from_secs(365 * 86_400)),
            ("100y", MAX_DURATION),
        ] {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
            assert_eq!(parse_duration(&format_duration(want)).unwrap(), want, "{text}");
        }
        for bad in ["", "d", "10x", "-1d", "1.5h", "1 h", "ms", "s"] {
            assert!(matches!(parse_duration(bad), Err(PkiError::InvalidDuration(_))), "{bad}");
        }
        for zero in ["0s", "0", "0ms"] {
            assert!(matches!(parse_duration(zero), Err(PkiError::ZeroDuration(_))), "{zero}");
            assert_eq!(parse_duration_within(zero, MAX_DURATION).unwrap(), Duration::ZERO);
        }
        assert_eq!(format_duration(parse_duration("48h").unwrap()), "2d");
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        for text in [
            "5124095576030433h",
            "18446744073709551615s",
            "99999999999999999999999s",
            "18446744073709551615ms",
            "101y",
            "36501d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(matches!(err, PkiError::DurationTooLong { .. }), "{text}: {err}");
            assert!(err.to_string().contains("100y"), "{err}");
        }
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        assert!(parse_duration_within("10y", ten_years).is_ok());
        assert!(parse_duration_within("3651d", ten_years).unwrap_err().to_string().contains("10y"));
    }
}
