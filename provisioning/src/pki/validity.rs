//! Validity periods of issued certificates, with the clock injected.
//!
//! The library never reads the clock: callers give the start of validity
//! (`not_before`, which may lie in the past or the future so that tests can
//! make expired or not-yet-valid certificates) and a number of days. This
//! module owns the checks that the period is encodable in X.509 and the
//! RFC 3339 formatting used in messages.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::pki::error::{ProvisionError, Result};

/// Longest validity accepted, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// Earliest year accepted for `not_before` (start of X.509 UTCTime).
const MIN_YEAR: i32 = 1950;
/// Latest year accepted for `not_after` (end of X.509 GeneralizedTime).
const MAX_YEAR: i32 = 9999;

/// A certificate validity period: `not_before` and a whole number of days.
///
/// Times are kept in UTC with whole seconds, as X.509 encodes them, so that
/// [`Validity::not_before`] and [`Validity::not_after`] equal what a parser
/// reads back from the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    days: u32,
}

impl Validity {
    /// A period of `days` days starting at `not_before` (converted to UTC and
    /// truncated to the second).
    pub fn new(not_before: OffsetDateTime, days: u32) -> Result<Self> {
        if days == 0 || days > MAX_DAYS {
            return Err(ProvisionError::InvalidValidity { detail: format!("{days} days is out of range") });
        }
        let not_before = not_before
            .to_offset(UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| ProvisionError::InvalidValidity { detail: e.to_string() })?;
        if not_before.year() < MIN_YEAR {
            return Err(ProvisionError::InvalidValidity {
                detail: format!("not-before {} is before {MIN_YEAR}", rfc3339(not_before)),
            });
        }
        let validity = Self { not_before, days };
        match not_before.checked_add(Duration::days(i64::from(days))) {
            Some(end) if end.year() <= MAX_YEAR => Ok(validity),
            _ => Err(ProvisionError::InvalidValidity {
                detail: format!("the period ends after the year {MAX_YEAR}"),
            }),
        }
    }

    /// Start of validity (UTC, whole seconds).
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity: `not_before` plus the number of days.
    pub fn not_after(&self) -> OffsetDateTime {
        // Checked in `new`; saturate rather than panic should that ever change.
        self.not_before.checked_add(Duration::days(i64::from(self.days))).unwrap_or(self.not_before)
    }

    /// Length of the period in days.
    pub fn days(&self) -> u32 {
        self.days
    }
}

/// Formats `t` as RFC 3339 in UTC (e.g. `2025-04-01T00:00:00Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Parses an RFC 3339 timestamp such as `2025-04-01T09:00:00+09:00`.
pub fn parse_rfc3339(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| ProvisionError::InvalidValidity {
        detail: format!("{text:?} is not an RFC 3339 time ({e})"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn period_is_utc_whole_seconds_and_days_long() {
        let v = Validity::new(datetime!(2025-04-01 09:00:00.75 +09:00), 30).unwrap();
        assert_eq!(v.not_before(), datetime!(2025-04-01 00:00:00 UTC));
        assert_eq!(v.not_after(), datetime!(2025-05-01 00:00:00 UTC));
        assert_eq!(rfc3339(v.not_after()), "2025-05-01T00:00:00Z");
    }

    #[test]
    fn rejects_zero_huge_and_unencodable_periods() {
        let t = datetime!(2025-01-01 00:00 UTC);
        assert!(Validity::new(t, 0).is_err());
        assert!(Validity::new(t, MAX_DAYS + 1).is_err());
        assert!(Validity::new(datetime!(1949-12-31 00:00 UTC), 1).is_err());
        assert!(Validity::new(datetime!(9999-12-01 00:00 UTC), 365).is_err());
        assert!(Validity::new(t, MAX_DAYS).is_ok());
    }

    #[test]
    fn parses_rfc3339_with_offset() {
        let t = parse_rfc3339("2025-04-01T09:00:00+09:00").unwrap();
        assert_eq!(t, datetime!(2025-04-01 00:00 UTC));
        assert!(parse_rfc3339("2025-04-01").is_err());
    }
}
