//! When the device believes its own clock: the [`ClockState`] an order
//! decision is made under.
//!
//! The clock is [`ClockState::Trusted`] when either
//! - a time-synchronisation flag file exists (`[orders] time_synced_flag`,
//!   e.g. `/run/systemd/timesync/synchronized`, which systemd-timesyncd
//!   creates once synchronised; an NTP hook can touch any path), or
//! - the carrier confirmed it: the HTTP `Date` of a successful mutual-TLS
//!   exchange with the carrier was within [`CARRIER_TIME_TOLERANCE_SECS`] of
//!   the device clock, that observation is at most
//!   [`CARRIER_TIME_MAX_AGE_SECS`] old (measured on the monotonic clock), and
//!   the clock has not jumped since.
//!
//! Otherwise it is untrusted, and the verifier judges against the time
//! floor and the order's signed issue time. The carrier's time also raises
//! the persisted floor when an order is applied
//! ([`super::verify::FloorSource::CarrierSigned`]): it came over a channel
//! authenticated by the carrier's TLS certificate.

use std::path::Path;

use super::verify::{ClockReading, ClockState};

/// Largest difference between the device clock and the carrier's `Date`
/// for the carrier to confirm the clock: 2 minutes.
pub const CARRIER_TIME_TOLERANCE_SECS: i64 = 120;

/// How long a carrier confirmation holds: 6 hours.
pub const CARRIER_TIME_MAX_AGE_SECS: i64 = 6 * 3600;

/// One observation of the carrier's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierTime {
    /// The carrier's `Date` (unix seconds).
    pub server_unix: i64,
    /// The device clock when the answer arrived (unix seconds).
    pub clock_at_observation: i64,
    /// Seconds since the observation, on the monotonic clock.
    pub age_secs: i64,
}

impl CarrierTime {
    /// The carrier's time now, by the monotonic clock.
    pub fn server_now(&self) -> i64 {
        self.server_unix.saturating_add(self.age_secs)
    }
}

/// The clock reading an order is judged with: `now` from the system clock,
/// its state from the evidence.
pub fn clock_reading(now: i64, synced_flag: bool, carrier: Option<CarrierTime>) -> ClockReading {
    let confirmed = carrier.is_some_and(|c| {
        (0..=CARRIER_TIME_MAX_AGE_SECS).contains(&c.age_secs)
            && c.clock_at_observation.abs_diff(c.server_unix) <= CARRIER_TIME_TOLERANCE_SECS.unsigned_abs()
            && now.abs_diff(c.server_now()) <= CARRIER_TIME_TOLERANCE_SECS.unsigned_abs()
    });
    let state = if synced_flag || confirmed { ClockState::Trusted } else { ClockState::Untrusted };
    ClockReading { now, state }
}

/// Whether the synchronisation flag file exists.
pub fn synced_flag(path: Option<&Path>) -> bool {
    path.is_some_and(Path::exists)
}

/// Parses an HTTP `Date` header (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(value: &str) -> Option<i64> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc2822)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000;

    fn seen(server: i64, clock: i64, age: i64) -> CarrierTime {
        CarrierTime { server_unix: server, clock_at_observation: clock, age_secs: age }
    }

    #[test]
    fn flag_or_a_recent_matching_carrier_time_trusts_the_clock() {
        assert_eq!(clock_reading(T, false, None).state, ClockState::Untrusted);
        assert_eq!(clock_reading(T, true, None).state, ClockState::Trusted);
        assert_eq!(clock_reading(T, false, Some(seen(T - 60, T - 50, 60))).state, ClockState::Trusted);
        assert_eq!(clock_reading(T, false, Some(seen(T, T, 0))).now, T);
    }

    #[test]
    fn carrier_time_does_not_confirm_a_wrong_jumped_or_stale_clock() {
        // The clock disagreed with the carrier when observed.
        assert_eq!(clock_reading(T, false, Some(seen(T, T + 121, 0))).state, ClockState::Untrusted);
        // It agreed, but jumped since.
        assert_eq!(
            clock_reading(T + 3600, false, Some(seen(T - 60, T - 60, 60))).state,
            ClockState::Untrusted
        );
        // Too old, or a nonsensical age.
        let old = T - CARRIER_TIME_MAX_AGE_SECS - 1;
        let stale = seen(old, old, CARRIER_TIME_MAX_AGE_SECS + 1);
        assert_eq!(clock_reading(T, false, Some(stale)).state, ClockState::Untrusted);
        assert_eq!(clock_reading(T, false, Some(seen(T, T, -1))).state, ClockState::Untrusted);
        assert_eq!(
            clock_reading(i64::MAX, false, Some(seen(i64::MAX, i64::MIN, i64::MAX))).state,
            ClockState::Untrusted
        );
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn flag_file_presence() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("synchronized");
        assert!(!synced_flag(Some(&flag)));
        assert!(!synced_flag(None));
        std::fs::write(&flag, b"").unwrap();
        assert!(synced_flag(Some(&flag)));
    }
}
