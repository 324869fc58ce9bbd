//! When to renew the institution certificate, and how loudly to warn.
//!
//! A pure function of the certificate's validity and the current time. The
//! daemon acts on it; `cert status` shows it. Renewing at a fraction of the
//! lifetime (default 2/3) leaves a third of the lifetime to recover from a
//! failed renewal, the same margin linkerd and Azure IoT use.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The renewal policy, from the `[renewal]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenewalPolicy {
    /// Fraction of the lifetime after which renewal is due (0 < f < 1).
    pub lifetime_fraction: f64,
    /// Days before expiry at which a warning is raised, e.g. `[30, 7, 1]`.
    pub warn_days: Vec<u32>,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self { lifetime_fraction: 2.0 / 3.0, warn_days: vec![30, 7, 1] }
    }
}

/// Where a certificate stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// Within validity and not close to expiry.
    Valid,
    /// Within validity but inside the largest warning window.
    Expiring,
    /// Past `not_after`.
    Expired,
    /// Before `not_before` (usually a clock that is behind).
    NotYetValid,
    /// No certificate installed.
    None,
}

/// What the policy says about one certificate at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The certificate's state.
    pub state: CertState,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// The moment renewal becomes due.
    pub renew_at: OffsetDateTime,
    /// Renewal is due now.
    pub renewal_due: bool,
    /// The smallest warning threshold (in days) already reached, if any.
    pub warning_days: Option<u32>,
}

impl RenewalPolicy {
    /// Checks the policy values; returns a message naming the bad value.
    pub fn check(&self) -> Result<(), String> {
        if !(self.lifetime_fraction > 0.0 && self.lifetime_fraction < 1.0) {
            return Err(format!(
                "renewal.lifetime_fraction is {}; it must be between 0 and 1 (e.g. 0.667)",
                self.lifetime_fraction
            ));
        }
        Ok(())
    }

    /// Assesses a certificate valid from `not_before` to `not_after` at `now`.
    pub fn assess(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Assessment {
        let lifetime = not_after - not_before;
        let renew_at = not_before + lifetime * self.lifetime_fraction.clamp(0.0, 1.0);
        let left = not_after - now;
        let days_left =
            left.whole_days() - i64::from(left.is_negative() && left.whole_seconds() % 86_400 != 0);
        let warning_days =
            self.warn_days.iter().copied().filter(|&d| left <= Duration::days(i64::from(d))).min();
        let largest_window = self.warn_days.iter().copied().max();
        let state = if now >= not_after {
            CertState::Expired
        } else if now < not_before {
            CertState::NotYetValid
        } else if largest_window.is_some_and(|d| left <= Duration::days(i64::from(d))) {
            CertState::Expiring
        } else {
            CertState::Valid
        };
        Assessment { state, days_left, renew_at, renewal_due: now >= renew_at, warning_days }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn assess(now: OffsetDateTime) -> Assessment {
        RenewalPolicy::default().assess(datetime!(2026-01-01 0:00 UTC), datetime!(2026-10-28 0:00 UTC), now)
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_lifetime() {
        // 300 days of life: due after 200 days, on 2026-07-20.
        assert_eq!(assess(datetime!(2026-01-02 0:00 UTC)).renew_at, datetime!(2026-07-20 0:00 UTC));
        assert!(!assess(datetime!(2026-07-19 23:59 UTC)).renewal_due);
        assert!(assess(datetime!(2026-07-20 0:00 UTC)).renewal_due);
    }

    #[test]
    fn warnings_step_through_30_7_1_days() {
        let cases = [
            (datetime!(2026-09-27 0:00 UTC), None, CertState::Valid, 31),
            (datetime!(2026-09-28 0:00 UTC), Some(30), CertState::Expiring, 30),
            (datetime!(2026-10-21 0:00 UTC), Some(7), CertState::Expiring, 7),
            (datetime!(2026-10-27 0:00 UTC), Some(1), CertState::Expiring, 1),
            (datetime!(2026-10-28 0:00 UTC), Some(1), CertState::Expired, 0),
            (datetime!(2026-10-29 12:00 UTC), Some(1), CertState::Expired, -2),
            (datetime!(2025-12-31 0:00 UTC), None, CertState::NotYetValid, 301),
        ];
        for (now, warning, state, days) in cases {
            let a = assess(now);
            assert_eq!((a.warning_days, a.state, a.days_left), (warning, state, days), "at {now}");
        }
    }

    #[test]
    fn bad_fraction_is_refused() {
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            let policy = RenewalPolicy { lifetime_fraction: f, ..RenewalPolicy::default() };
            assert!(policy.check().is_err(), "{f}");
        }
        assert!(RenewalPolicy::default().check().is_ok());
    }
}
