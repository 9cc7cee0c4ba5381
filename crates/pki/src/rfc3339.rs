//! The one text form of a time in ambos output: RFC 3339, UTC as `Z`
//! (`2026-01-31T12:00:00Z`; a fraction of a second only if the time has one).
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `t` as RFC 3339 (empty for a year after 9999, which it cannot write).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A Unix timestamp (seconds) as RFC 3339; the number itself if out of range.
pub fn rfc3339_unix(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_with_a_z() {
        assert_eq!(rfc3339_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_unix(1_798_761_600), "2027-01-01T00:00:00Z");
        let t = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        assert_eq!(rfc3339(t), "2027-01-01T00:00:00Z");
        assert_eq!(rfc3339(t.replace_millisecond(250).unwrap()), "2027-01-01T00:00:00.25Z");
    }

    #[test]
    fn a_timestamp_rfc3339_cannot_write_stays_a_number() {
        assert_eq!(rfc3339_unix(i64::MAX), i64::MAX.to_string());
        assert_eq!(rfc3339_unix(253_402_300_800), "253402300800", "year 10000");
    }
}
