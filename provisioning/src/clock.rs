//! Times as the carrier stores and shows them: Unix milliseconds, written
//! as RFC 3339 in messages and views.

use time::macros::format_description;
use time::OffsetDateTime;

/// `2026-05-01T12:00:00Z` for Unix milliseconds (UTC, whole seconds).
pub fn rfc3339_ms(ms: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}
