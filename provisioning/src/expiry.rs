//! Certificate expiry across the fleet, as the carrier sees it: which
//! devices' institution certificates expire when, and which have reached an
//! alert threshold (days left; default 60 / 30 / 7).
//!
//! A pure function of the devices' certificate end dates (from their
//! mutual-TLS connections) and an injected `now`; [`fleet_expiry`] reads the
//! store. A device whose certificate renews moves out of its bucket by
//! itself the next time it connects.
//!
//! Operators get one fleet summary per UTC day ([`daily_summary`]) instead of
//! one mail per device: the first server process to claim the day in the
//! store sends it, so several servers sharing one PostgreSQL send it once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cpe_protocol::Level;
use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{Database, DbError, DeviceRow};

/// Alert kind (and store key) of the daily fleet summary.
pub const SUMMARY_KIND: &str = "cert-expiry";

/// Default alert thresholds, days left.
pub const DEFAULT_ALERT_DAYS: [u32; 3] = [60, 30, 7];

/// One device's certificate end of validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertExpiry {
    /// Device id.
    pub device: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
}

/// Devices that reached one alert threshold — at most that many whole days
/// left — and not the next smaller one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThresholdBucket {
    /// The threshold, days left.
    pub within_days: u32,
    /// Its devices, soonest first.
    pub devices: Vec<CertExpiry>,
}

/// The fleet's certificates by expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Number of certificates per month of expiry (`YYYY-MM`, UTC), in order.
    pub by_month: BTreeMap<String, u32>,
    /// Already expired, soonest first.
    pub expired: Vec<CertExpiry>,
    /// Per threshold, largest first; a device is in the smallest threshold it reached.
    pub due: Vec<ThresholdBucket>,
    /// Devices whose certificate the carrier has not seen.
    pub unknown: Vec<String>,
}

impl ExpiryReport {
    /// Whether any device has reached a threshold or expired.
    pub fn needs_attention(&self) -> bool {
        !self.expired.is_empty() || self.due.iter().any(|b| !b.devices.is_empty())
    }
}

/// Checks and orders alert thresholds: at least one, each 1..=3650 days,
/// no repeats; returned largest first.
pub fn alert_days(mut days: Vec<u32>) -> Result<Vec<u32>, String> {
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    if days.is_empty() {
        return Err("give at least one alert threshold in days, e.g. 60,30,7".into());
    }
    if let Some(bad) = days.iter().find(|&&d| d == 0 || d > 3650) {
        return Err(format!("alert threshold {bad} days is out of range (1 to 3650)"));
    }
    Ok(days)
}

/// The report of `devices` at `now` with `thresholds` (largest first, see [`alert_days`]).
pub fn report(devices: &[DeviceRow], now: OffsetDateTime, thresholds: &[u32]) -> ExpiryReport {
    let now_s = now.unix_timestamp();
    let mut by_month = BTreeMap::new();
    let mut expired = Vec::new();
    let mut due: Vec<ThresholdBucket> =
        thresholds.iter().map(|&within_days| ThresholdBucket { within_days, devices: Vec::new() }).collect();
    let mut unknown = Vec::new();
    for device in devices {
        let Some(not_after) = device.cert_not_after else {
            unknown.push(device.id.clone());
            continue;
        };
        let month = OffsetDateTime::from_unix_timestamp(not_after)
            .map_or_else(|_| "unknown".to_owned(), |t| format!("{:04}-{:02}", t.year(), u8::from(t.month())));
        *by_month.entry(month).or_insert(0) += 1;
        let entry = CertExpiry {
            device: device.id.clone(),
            not_after,
            days_left: (not_after - now_s).div_euclid(86_400),
        };
        if not_after <= now_s {
            expired.push(entry);
        } else if let Some(bucket) =
            due.iter_mut().rev().find(|b| entry.days_left <= i64::from(b.within_days))
        {
            bucket.devices.push(entry);
        }
    }
    expired.sort_by_key(|e| e.not_after);
    for bucket in &mut due {
        bucket.devices.sort_by_key(|e| e.not_after);
    }
    ExpiryReport { by_month, expired, due, unknown }
}

/// The operator's text of a report that needs attention (Japanese and
/// English), and its level: warning when a certificate has expired or is
/// within the smallest threshold, caution otherwise; `None` when nothing is due.
pub fn summary(report: &ExpiryReport) -> Option<(Level, String)> {
    if !report.needs_attention() {
        return None;
    }
    let urgent = !report.expired.is_empty() || report.due.last().is_some_and(|b| !b.devices.is_empty());
    let mut text = String::from("証明書の有効期限 / institution certificates expiring\n");
    let mut list = |title: String, devices: &[CertExpiry]| {
        if devices.is_empty() {
            return;
        }
        let _ = writeln!(text, "{title}: {}", devices.len());
        for e in devices {
            let _ = writeln!(text, "  {} ({} days left / 残り{}日)", e.device, e.days_left, e.days_left);
        }
    };
    list("期限切れ / expired".to_owned(), &report.expired);
    for bucket in report.due.iter().rev() {
        list(
            format!("残り{}日以内 / within {} days", bucket.within_days, bucket.within_days),
            &bucket.devices,
        );
    }
    Some((if urgent { Level::Warning } else { Level::Caution }, text))
}

/// Today's fleet summary, claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSummary {
    /// Its id in the store.
    pub id: i64,
    /// The UTC day it is for, `YYYY-MM-DD`.
    pub day: String,
    /// Caution or warning.
    pub level: Level,
    /// The text.
    pub text: String,
}

/// The fleet summary to send at `now`, if something needs attention and no
/// process has sent today's yet (the claim is recorded in the store).
pub async fn daily_summary(
    db: &Database,
    now: OffsetDateTime,
    thresholds: &[u32],
) -> Result<Option<FleetSummary>, DbError> {
    let report = fleet_expiry(db, now, thresholds).await?;
    let Some((level, text)) = summary(&report) else { return Ok(None) };
    let day = format!("{:04}-{:02}-{:02}", now.year(), u8::from(now.month()), now.day());
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let claimed = db.claim_fleet_summary(SUMMARY_KIND, &day, &text, now_ms).await?;
    Ok(claimed.map(|id| FleetSummary { id, day, level, text }))
}

/// The report of every device in the store at `now`.
pub async fn fleet_expiry(
    db: &Database,
    now: OffsetDateTime,
    thresholds: &[u32],
) -> Result<ExpiryReport, DbError> {
    Ok(report(&db.devices().await?, now, thresholds))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::DeviceState;
    use time::macros::datetime;

    fn device(id: &str, not_after: Option<OffsetDateTime>) -> DeviceRow {
        DeviceRow {
            id: id.into(),
            institution_code: "1312345678".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            state: DeviceState::Up,
            state_since_ms: 0,
            cert_not_after: not_after.map(OffsetDateTime::unix_timestamp),
            last_health: None,
            suspension: None,
            open_alerts: 0,
        }
    }

    fn ids(b: &ThresholdBucket) -> Vec<&str> {
        b.devices.iter().map(|e| e.device.as_str()).collect()
    }

    #[test]
    fn buckets_by_smallest_threshold_reached_and_counts_months() {
        let now = datetime!(2027-01-15 12:00 UTC);
        let days = |d: i64| Some(now + time::Duration::days(d) + time::Duration::hours(1));
        let fleet = [
            device("a", days(100)),
            device("b", days(59)),
            device("c", days(60)),
            device("d", days(29)),
            device("e", days(6)),
            device("f", days(0)),
            device("g", Some(now - time::Duration::days(3))),
            device("h", None),
        ];
        let r = report(&fleet, now, &alert_days(DEFAULT_ALERT_DAYS.to_vec()).unwrap());
        assert_eq!(r.due.iter().map(|b| b.within_days).collect::<Vec<_>>(), [60, 30, 7]);
        assert_eq!(ids(&r.due[0]), ["b", "c"]);
        assert_eq!(ids(&r.due[1]), ["d"]);
        assert_eq!(ids(&r.due[2]), ["f", "e"]);
        assert_eq!(r.due[2].devices[0].days_left, 0);
        assert_eq!(
            r.expired.iter().map(|e| (e.device.as_str(), e.days_left)).collect::<Vec<_>>(),
            [("g", -3)]
        );
        assert_eq!(r.unknown, ["h"]);
        assert!(r.needs_attention());
        let months: Vec<(&str, u32)> = r.by_month.iter().map(|(m, n)| (m.as_str(), *n)).collect();
        assert_eq!(months, [("2027-01", 3), ("2027-02", 1), ("2027-03", 2), ("2027-04", 1)]);
    }

    #[test]
    fn a_later_clock_moves_devices_into_smaller_buckets() {
        let not_after = datetime!(2027-06-30 00:00 UTC);
        let fleet = [device("a", Some(not_after))];
        let thresholds = alert_days(vec![7, 30, 60]).unwrap();
        let at = |t: OffsetDateTime| {
            let r = report(&fleet, t, &thresholds);
            r.due.iter().find(|b| !b.devices.is_empty()).map(|b| b.within_days)
        };
        assert_eq!(at(datetime!(2027-04-01 00:00 UTC)), None);
        assert_eq!(at(datetime!(2027-05-15 00:00 UTC)), Some(60));
        assert_eq!(at(datetime!(2027-06-10 00:00 UTC)), Some(30));
        assert_eq!(at(datetime!(2027-06-29 00:00 UTC)), Some(7));
        assert!(report(&fleet, datetime!(2027-07-01 00:00 UTC), &thresholds).expired.len() == 1);
        assert!(!report(&fleet, datetime!(2027-01-01 00:00 UTC), &thresholds).needs_attention());
    }

    #[test]
    fn summary_lists_the_urgent_first_and_says_nothing_when_nothing_is_due() {
        let now = datetime!(2027-01-15 12:00 UTC);
        let days = |d: i64| Some(now + time::Duration::days(d) + time::Duration::hours(1));
        let thresholds = alert_days(DEFAULT_ALERT_DAYS.to_vec()).unwrap();
        let calm = report(&[device("a", days(100)), device("n", None)], now, &thresholds);
        assert_eq!(summary(&calm), None);
        let (level, text) = summary(&report(&[device("a", days(45))], now, &thresholds)).unwrap();
        assert_eq!(level, Level::Caution);
        assert!(text.contains("within 60 days: 1\n  a (45 days left"), "{text}");
        let fleet = [device("a", days(45)), device("b", days(2)), device("c", days(-1))];
        let (level, text) = summary(&report(&fleet, now, &thresholds)).unwrap();
        assert_eq!(level, Level::Warning);
        let (expired, seven, sixty) = (
            text.find("expired: 1").unwrap(),
            text.find("within 7 days: 1").unwrap(),
            text.find("within 60").unwrap(),
        );
        assert!(expired < seven && seven < sixty, "{text}");
    }

    #[test]
    fn thresholds_are_checked() {
        assert_eq!(alert_days(vec![7, 60, 30, 7]).unwrap(), [60, 30, 7]);
        assert!(alert_days(vec![]).is_err());
        assert!(alert_days(vec![0]).unwrap_err().contains("out of range"));
        assert!(alert_days(vec![5000]).is_err());
    }
}
