//! Times as the carrier stores and shows them: Unix milliseconds, read from
//! the wall clock only at the edges (the server's handlers, the CLI), and
//! written as RFC 3339 in messages and views. Everything below the edges
//! takes the time as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

use time::macros::format_description;
use time::OffsetDateTime;

/// The wall clock, Unix milliseconds (0 before 1970, saturating far ahead).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `t` as Unix milliseconds (saturating).
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `2026-05-01T12:00:00Z` for Unix milliseconds (UTC, whole seconds).
pub fn rfc3339_ms(ms: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_through_text() {
        let t = time::macros::datetime!(2026-05-01 12:00:00.250 UTC);
        assert_eq!(unix_ms(t), 1_777_636_800_250);
        assert_eq!(rfc3339_ms(unix_ms(t)), "2026-05-01T12:00:00Z");
        assert_eq!(rfc3339_ms(i64::MAX), format!("@{}ms", i64::MAX));
        assert!(now_ms() > 1_700_000_000_000);
    }
}
