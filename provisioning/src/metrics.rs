//! The carrier server's Prometheus metrics (text exposition format 0.0.4),
//! served at `GET /metrics` on the operator listener.
//!
//! Two sources: the store's aggregates at scrape time
//! ([`crate::store::metrics::FleetMetrics`]: devices per state, suspended
//! and alerting devices, open alerts per kind and level, commands and
//! orders per state, the newest report per state) and this process's
//! ingest counters ([`INGEST`]: reports stored, duplicates, and a histogram
//! of how long storing a batch took), which the device listener updates.
//! The counters are process-wide statics, as a Prometheus client's default
//! registry is: each server process is scraped on its own.
//!
//! Names follow the Prometheus conventions: a `cpe_` prefix, base units
//! (seconds), `_total` for counters, `_info` with value 1 for build
//! information.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::metrics::FleetMetrics;

/// Upper bounds of the ingest latency buckets, in seconds.
pub const INGEST_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Counters of report ingest in this process.
#[derive(Debug)]
pub struct IngestMetrics {
    reports: AtomicU64,
    duplicates: AtomicU64,
    /// Per bucket of [`INGEST_BUCKETS`] (not cumulative), then +Inf.
    buckets: [AtomicU64; INGEST_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// This process's ingest counters.
pub static INGEST: IngestMetrics = IngestMetrics {
    reports: AtomicU64::new(0),
    duplicates: AtomicU64::new(0),
    buckets: [const { AtomicU64::new(0) }; INGEST_BUCKETS.len() + 1],
    sum_micros: AtomicU64::new(0),
};

impl IngestMetrics {
    /// One batch stored in `took`, with `accepted` new records and `duplicates` repeats.
    pub fn observe(&self, took: Duration, accepted: u32, duplicates: u32) {
        self.reports.fetch_add(u64::from(accepted), Ordering::Relaxed);
        self.duplicates.fetch_add(u64::from(duplicates), Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = INGEST_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(INGEST_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Escapes a label value (backslash, double quote, line feed).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text of `fleet` and `ingest` at `now_ms`.
#[allow(clippy::cast_precision_loss)]
pub fn render(fleet: &FleetMetrics, ingest: &IngestMetrics, now_ms: i64) -> String {
    let mut out = String::new();
    header(&mut out, "cpe_devices", "gauge", "Devices by liveness state.");
    for state in ["up", "down"] {
        let n = fleet.devices.iter().find(|s| s.state == state).map_or(0, |s| s.devices);
        let _ = writeln!(out, "cpe_devices{{state=\"{state}\"}} {n}");
    }
    header(&mut out, "cpe_devices_suspended", "gauge", "Devices under a stop order.");
    let _ = writeln!(out, "cpe_devices_suspended {}", fleet.suspended);
    header(&mut out, "cpe_devices_alerting", "gauge", "Devices with open alerts.");
    let _ = writeln!(out, "cpe_devices_alerting {}", fleet.alerting);
    header(
        &mut out,
        "cpe_newest_report_age_seconds",
        "gauge",
        "Age of the newest report of the devices in each state (queue lag).",
    );
    for s in &fleet.devices {
        if let Some(newest) = s.newest_report_ms {
            let age = (now_ms - newest).max(0) as f64 / 1000.0;
            let _ = writeln!(out, "cpe_newest_report_age_seconds{{state=\"{}\"}} {age}", label(&s.state));
        }
    }
    header(&mut out, "cpe_alerts_open", "gauge", "Open alerts by kind and level.");
    for a in &fleet.alerts_open {
        let _ = writeln!(
            out,
            "cpe_alerts_open{{kind=\"{}\",level=\"{}\"}} {}",
            label(&a.kind),
            label(&a.level),
            a.open
        );
    }
    header(&mut out, "cpe_commands", "gauge", "Commands by state.");
    for (state, n) in &fleet.commands {
        let _ = writeln!(out, "cpe_commands{{state=\"{}\"}} {n}", label(state));
    }
    header(&mut out, "cpe_orders", "gauge", "Signed compliance orders by state.");
    for (state, n) in &fleet.orders {
        let _ = writeln!(out, "cpe_orders{{state=\"{}\"}} {n}", label(state));
    }
    header(&mut out, "cpe_reports_ingested_total", "counter", "Reports stored by this process.");
    let _ = writeln!(out, "cpe_reports_ingested_total {}", ingest.reports.load(Ordering::Relaxed));
    header(
        &mut out,
        "cpe_reports_duplicate_total",
        "counter",
        "Reports received again and not stored twice.",
    );
    let _ = writeln!(out, "cpe_reports_duplicate_total {}", ingest.duplicates.load(Ordering::Relaxed));
    header(&mut out, "cpe_ingest_duration_seconds", "histogram", "Time to store one report batch.");
    let mut cumulative = 0;
    for (i, bound) in INGEST_BUCKETS.iter().enumerate() {
        cumulative += ingest.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "cpe_ingest_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += ingest.buckets[INGEST_BUCKETS.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "cpe_ingest_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let sum = ingest.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "cpe_ingest_duration_seconds_sum {sum}");
    let _ = writeln!(out, "cpe_ingest_duration_seconds_count {cumulative}");
    header(&mut out, "cpe_build_info", "gauge", "Version of the carrier server; always 1.");
    let _ = writeln!(out, "cpe_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metrics::{AlertCount, StateCount};

    #[test]
    fn histogram_is_cumulative_and_labels_are_escaped() {
        let ingest = IngestMetrics {
            reports: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; INGEST_BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        };
        ingest.observe(Duration::from_micros(800), 3, 1);
        ingest.observe(Duration::from_millis(20), 2, 0);
        ingest.observe(Duration::from_secs(9), 1, 0);
        let fleet = FleetMetrics {
            devices: vec![StateCount { state: "up".into(), devices: 2, newest_report_ms: Some(1_000) }],
            alerts_open: vec![AlertCount { kind: "thr\"eshold".into(), level: "warning".into(), open: 4 }],
            ..FleetMetrics::default()
        };
        let text = render(&fleet, &ingest, 3_500);
        for line in [
            "cpe_devices{state=\"up\"} 2",
            "cpe_devices{state=\"down\"} 0",
            "cpe_newest_report_age_seconds{state=\"up\"} 2.5",
            "cpe_alerts_open{kind=\"thr\\\"eshold\",level=\"warning\"} 4",
            "cpe_reports_ingested_total 6",
            "cpe_reports_duplicate_total 1",
            "cpe_ingest_duration_seconds_bucket{le=\"0.001\"} 1",
            "cpe_ingest_duration_seconds_bucket{le=\"0.025\"} 2",
            "cpe_ingest_duration_seconds_bucket{le=\"5\"} 2",
            "cpe_ingest_duration_seconds_bucket{le=\"+Inf\"} 3",
            "cpe_ingest_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
