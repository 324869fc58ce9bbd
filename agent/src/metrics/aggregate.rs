//! Turning the samples of one report interval into a [`Health`] report.
//!
//! Pure: samples come in with the monotonic time they were taken, nothing is
//! read and no clock is consulted, so every number can be checked exactly.
//!
//! A *step* is the span between two consecutive samples that both have a
//! value. Rates are means over the steps of the interval (total increase ÷
//! total step time), and each step's bits/s is kept for the maximum and the
//! 95th percentile (nearest rank). The last sample of an interval stays as
//! the baseline of the next one, so no time between reports goes uncounted.
//! A counter that went down (reset or wrap) contributes 0 for that step.
//! An interface missing from a sample loses its baseline: when it comes
//! back (a PPP session or USB modem re-created) counting starts afresh.

use std::collections::BTreeMap;
use std::time::Duration;

use cpe_protocol::{Health, InterfaceStats};

use super::sample::{CpuTimes, IfaceCounters, InterfaceSample, RawSample};
use super::{to_f32, to_f64};

/// Collects samples over one report interval; [`finish`](Self::finish)
/// makes the report and starts the next interval.
#[derive(Debug, Default)]
pub struct Aggregator {
    /// Last CPU reading, the baseline of the next step (kept across intervals).
    cpu_last: Option<CpuTimes>,
    /// Busy ticks over the interval's steps.
    cpu_busy: u64,
    /// Busy + idle ticks over the interval's steps.
    cpu_total: u64,
    /// Latest gauges seen in this interval.
    mem_pct: Option<f32>,
    load: Option<[f32; 3]>,
    temperature_c: Option<f32>,
    /// Latest uptime reading and when it was taken (kept across intervals).
    uptime: Option<(u64, Duration)>,
    /// Time of the latest sample (kept across intervals).
    last_at: Option<Duration>,
    /// Default-route interface at the latest sample (kept across intervals).
    default_route: Option<String>,
    interfaces: BTreeMap<String, IfaceAcc>,
    samples: usize,
}

/// Operational state and carrier of an interface.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    up: bool,
    carrier: bool,
}

/// Per-interface accumulation.
#[derive(Debug, Default)]
struct IfaceAcc {
    /// Counters and time of the last sample that had this interface; `None`
    /// once it was missing from a sample.
    base: Option<(IfaceCounters, Duration)>,
    /// In the latest sample.
    present: bool,
    /// In at least one sample of this interval.
    seen: bool,
    /// Link state in the latest sample that had this interface.
    link: Link,
    /// Sum of step increases over the interval.
    sum: IfaceCounters,
    /// Sum of step durations.
    seconds: f64,
    rx_steps: Vec<f64>,
    tx_steps: Vec<f64>,
}

impl IfaceAcc {
    fn add(&mut self, sample: &InterfaceSample, at: Duration) {
        self.present = true;
        self.seen = true;
        self.link = Link { up: sample.up, carrier: sample.carrier };
        if let Some((before, then)) = self.base {
            let Some(dt) = at.checked_sub(then).filter(|dt| !dt.is_zero()) else {
                // No time has passed (or time went backwards): keep the old
                // baseline, so the next step spans the whole gap.
                return;
            };
            let delta = sample.counters.delta_since(&before);
            let secs = dt.as_secs_f64();
            self.sum = self.sum.saturating_add(&delta);
            self.seconds += secs;
            self.rx_steps.push(to_f64(delta.rx_bytes) * 8.0 / secs);
            self.tx_steps.push(to_f64(delta.tx_bytes) * 8.0 / secs);
        }
        self.base = Some((sample.counters, at));
    }

    fn vanish(&mut self) {
        self.present = false;
        self.base = None;
    }

    fn stats(&self, name: &str) -> InterfaceStats {
        let rate = |count: u64| if self.seconds > 0.0 { to_f64(count) / self.seconds } else { 0.0 };
        let max = |steps: &[f64]| steps.iter().copied().fold(0.0, f64::max);
        InterfaceStats {
            name: name.to_owned(),
            up: self.present && self.link.up,
            carrier: self.present && self.link.carrier,
            rx_bps: rate(self.sum.rx_bytes) * 8.0,
            tx_bps: rate(self.sum.tx_bytes) * 8.0,
            rx_bps_max: max(&self.rx_steps),
            tx_bps_max: max(&self.tx_steps),
            rx_bps_p95: p95(&self.rx_steps),
            tx_bps_p95: p95(&self.tx_steps),
            rx_pps: rate(self.sum.rx_packets),
            tx_pps: rate(self.sum.tx_packets),
            rx_errors: self.sum.rx_errors,
            tx_errors: self.sum.tx_errors,
            rx_drops: self.sum.rx_dropped,
            tx_drops: self.sum.tx_dropped,
        }
    }

    fn next_interval(&mut self) {
        *self = Self { base: self.base, present: self.present, link: self.link, ..Self::default() };
    }
}

/// The 95th percentile by nearest rank: the smallest value with at least
/// 95 % of the values at or below it (`sorted[ceil(0.95 n) - 1]`); 0 for no values.
fn p95(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (sorted.len() * 95).div_ceil(100);
    rank.checked_sub(1).and_then(|i| sorted.get(i)).copied().unwrap_or(0.0)
}

impl Aggregator {
    /// An empty aggregator; the first sample is only a baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples added since the last [`finish`](Self::finish).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Adds a sample taken at monotonic time `at` (e.g. the time since the
    /// agent started). Samples must come in time order; a sample not later
    /// than the previous one updates the gauges but makes no step.
    pub fn add(&mut self, sample: RawSample, at: Duration) {
        self.samples += 1;
        if let Some(cpu) = sample.cpu {
            if let Some(before) = self.cpu_last {
                // A counter going down (never expected) makes the step count as 0.
                let busy = cpu.busy_ticks().checked_sub(before.busy_ticks());
                let idle = cpu.idle_ticks().checked_sub(before.idle_ticks());
                if let (Some(busy), Some(idle)) = (busy, idle) {
                    self.cpu_busy = self.cpu_busy.saturating_add(busy);
                    self.cpu_total = self.cpu_total.saturating_add(busy.saturating_add(idle));
                }
            }
            self.cpu_last = Some(cpu);
        }
        if let Some(pct) = sample.memory.and_then(|m| m.used_pct()) {
            self.mem_pct = Some(pct);
        }
        if sample.load.is_some() {
            self.load = sample.load;
        }
        if sample.temperature_c.is_some() {
            self.temperature_c = sample.temperature_c;
        }
        if let Some(uptime) = sample.uptime_s {
            self.uptime = Some((uptime, at));
        }
        let mut seen_now: Vec<&str> = Vec::with_capacity(sample.interfaces.len());
        for iface in &sample.interfaces {
            self.interfaces.entry(iface.name.clone()).or_default().add(iface, at);
            seen_now.push(&iface.name);
        }
        for (name, acc) in &mut self.interfaces {
            if !seen_now.contains(&name.as_str()) {
                acc.vanish();
            }
        }
        self.default_route = sample.default_route;
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
    }

    /// The report for the interval since the previous `finish`, and the start
    /// of the next interval (the last sample stays as its baseline).
    ///
    /// Without data for a gauge in this interval, `cpu_pct`, `mem_pct` and
    /// `load` are NaN (unknown, which threshold checks ignore) and
    /// `temperature_c` is `None`; `uptime_s` is the latest reading advanced
    /// by the monotonic time since, or 0 if there never was one. Interfaces
    /// are those in at least one sample of the interval, sorted by name; one
    /// missing from the last sample is reported down and without carrier.
    /// `cert_not_after` is left `None` for the caller to fill in.
    pub fn finish(&mut self) -> Health {
        let cpu_pct = if self.cpu_total > 0 {
            to_f32(to_f64(self.cpu_busy) * 100.0 / to_f64(self.cpu_total))
        } else {
            f32::NAN
        };
        let uptime_s = self.uptime.map_or(0, |(uptime, at)| {
            let since = self.last_at.and_then(|last| last.checked_sub(at)).unwrap_or_default();
            uptime.saturating_add(since.as_secs())
        });
        let interfaces =
            self.interfaces.iter().filter(|(_, acc)| acc.seen).map(|(name, acc)| acc.stats(name)).collect();
        let health = Health {
            uptime_s,
            cpu_pct,
            mem_pct: self.mem_pct.unwrap_or(f32::NAN),
            load: self.load.unwrap_or([f32::NAN; 3]),
            temperature_c: self.temperature_c,
            interfaces,
            active_uplink: self.default_route.clone(),
            cert_not_after: None,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        self.cpu_busy = 0;
        self.cpu_total = 0;
        self.mem_pct = None;
        self.load = None;
        self.temperature_c = None;
        self.samples = 0;
        self.interfaces.retain(|_, acc| acc.present);
        self.interfaces.values_mut().for_each(IfaceAcc::next_interval);
        health
    }
}

/// The view over the latest step alone (the two most recent samples): what
/// the thresholds judge after every sample, so that a transition is known
/// at once, while the [`Aggregator`] collects the whole report interval.
#[derive(Debug, Default)]
pub struct InstantView {
    last: Option<(RawSample, Duration)>,
}

impl InstantView {
    /// No sample yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the sample made at monotonic time `at` and returns the report
    /// over the step from the previous sample to it; `None` for the first
    /// sample, which is only a baseline.
    pub fn step(&mut self, sample: RawSample, at: Duration) -> Option<Health> {
        let (previous, previous_at) = self.last.replace((sample.clone(), at))?;
        let mut step = Aggregator::new();
        step.add(previous, previous_at);
        step.add(sample, at);
        Some(step.finish())
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::metrics::sample::MemInfo;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn iface(name: &str, rx_bytes: u64, tx_bytes: u64) -> InterfaceSample {
        InterfaceSample {
            name: name.to_owned(),
            up: true,
            carrier: true,
            counters: IfaceCounters { rx_bytes, tx_bytes, ..IfaceCounters::default() },
        }
    }

    fn with(interfaces: Vec<InterfaceSample>) -> RawSample {
        RawSample { interfaces, ..RawSample::default() }
    }

    fn only<'a>(health: &'a Health, name: &str) -> &'a InterfaceStats {
        health.interfaces.iter().find(|i| i.name == name).unwrap()
    }

    #[test]
    fn the_instant_view_covers_the_latest_step_only() {
        let mut view = InstantView::new();
        assert_eq!(
            view.step(with(vec![iface("eth0", 0, 0)]), secs(0)),
            None,
            "the first sample is a baseline"
        );
        let first = view.step(with(vec![iface("eth0", 1_000, 0)]), secs(1)).unwrap();
        assert_eq!(only(&first, "eth0").rx_bps, 8_000.0);
        // The next step alone, not the mean since the start.
        let second = view.step(with(vec![iface("eth0", 1_000, 0)]), secs(2)).unwrap();
        assert_eq!(only(&second, "eth0").rx_bps, 0.0);
        let third = view.step(with(vec![iface("eth0", 5_000, 0)]), secs(4)).unwrap();
        assert_eq!(only(&third, "eth0").rx_bps, 16_000.0);
    }

    #[test]
    fn a_million_bytes_in_eight_seconds_is_a_million_bits_per_second() {
        let mut agg = Aggregator::new();
        let mut start = iface("eth0", 0, 0);
        start.counters.rx_packets = 10;
        agg.add(with(vec![start]), secs(100));
        let mut end = iface("eth0", 1_000_000, 250_000);
        end.counters.rx_packets = 810;
        end.counters.tx_packets = 80;
        agg.add(with(vec![end]), secs(108));
        assert_eq!(agg.samples(), 2);
        let health = agg.finish();
        let eth0 = only(&health, "eth0");
        assert_eq!(eth0.rx_bps, 1_000_000.0);
        assert_eq!(eth0.tx_bps, 250_000.0);
        assert_eq!(eth0.rx_bps_max, 1_000_000.0);
        assert_eq!(eth0.rx_bps_p95, 1_000_000.0);
        assert_eq!(eth0.rx_pps, 100.0);
        assert_eq!(eth0.tx_pps, 10.0);
        assert!(eth0.up && eth0.carrier);
        assert_eq!(agg.samples(), 0);
    }

    #[test]
    fn mean_max_and_nearest_rank_p95_over_twenty_steps() {
        let mut agg = Aggregator::new();
        let mut rx = 0;
        agg.add(with(vec![iface("eth0", rx, 0)]), secs(0));
        for k in 1..=20u64 {
            rx += k * 1000;
            agg.add(with(vec![iface("eth0", rx, 0)]), secs(k));
        }
        let health = agg.finish();
        let eth0 = only(&health, "eth0");
        assert_eq!(eth0.rx_bps, 210.0 * 1000.0 * 8.0 / 20.0);
        assert_eq!(eth0.rx_bps_max, 160_000.0);
        assert_eq!(eth0.rx_bps_p95, 152_000.0);
        assert_eq!(eth0.tx_bps_p95, 0.0);
    }

    #[test]
    fn p95_nearest_rank() {
        assert_eq!(p95(&[]), 0.0);
        assert_eq!(p95(&[5.0]), 5.0);
        assert_eq!(p95(&[3.0, 1.0, 2.0]), 3.0);
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(p95(&hundred), 95.0);
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(p95(&ten), 10.0);
    }

    #[test]
    fn counter_reset_counts_as_zero_for_that_step_but_time_still_counts() {
        let mut agg = Aggregator::new();
        let mut a = iface("eth0", 1000, 0);
        a.counters.rx_errors = 7;
        a.counters.tx_dropped = 3;
        agg.add(with(vec![a]), secs(0));
        let mut b = iface("eth0", 500, 0);
        b.counters.rx_errors = 2;
        b.counters.tx_dropped = 5;
        agg.add(with(vec![b]), secs(5));
        let mut c = iface("eth0", 1500, 0);
        c.counters.rx_errors = 6;
        c.counters.tx_dropped = 5;
        agg.add(with(vec![c]), secs(10));
        let health = agg.finish();
        let eth0 = only(&health, "eth0");
        assert_eq!(eth0.rx_bps, 800.0);
        assert_eq!(eth0.rx_bps_max, 1600.0);
        assert_eq!((eth0.rx_errors, eth0.tx_drops), (4, 2));
    }

    #[test]
    fn cpu_over_the_interval_and_unknown_without_a_step() {
        let cpu = |busy: u64, idle: u64| CpuTimes { user: busy, idle, ..CpuTimes::default() };
        let mut agg = Aggregator::new();
        agg.add(RawSample { cpu: Some(cpu(1000, 1000)), ..RawSample::default() }, secs(0));
        assert!(agg.finish().cpu_pct.is_nan(), "one sample is no step");
        agg.add(RawSample { cpu: Some(cpu(1100, 1100)), ..RawSample::default() }, secs(5));
        // A sample without a CPU reading: the next step spans it.
        agg.add(RawSample::default(), secs(10));
        agg.add(RawSample { cpu: Some(cpu(1300, 1200)), ..RawSample::default() }, secs(15));
        // Busy 100 + 200 of 200 + 300 ticks.
        assert_eq!(agg.finish().cpu_pct, 60.0);
        // Counters going backwards: that step counts as nothing.
        agg.add(RawSample { cpu: Some(cpu(10, 10)), ..RawSample::default() }, secs(20));
        agg.add(RawSample { cpu: Some(cpu(20, 40)), ..RawSample::default() }, secs(25));
        assert_eq!(agg.finish().cpu_pct, 25.0);
    }

    #[test]
    fn the_last_sample_is_the_baseline_of_the_next_interval() {
        let mut agg = Aggregator::new();
        agg.add(with(vec![iface("eth0", 0, 0)]), secs(0));
        agg.add(with(vec![iface("eth0", 5000, 0)]), secs(5));
        assert_eq!(only(&agg.finish(), "eth0").rx_bps, 8000.0);
        agg.add(with(vec![iface("eth0", 15_000, 0)]), secs(10));
        let next = agg.finish();
        assert_eq!(only(&next, "eth0").rx_bps, 16_000.0);
        assert_eq!(only(&next, "eth0").rx_bps_max, 16_000.0);
        // An interval without samples reports no interfaces.
        assert!(agg.finish().interfaces.is_empty());
    }

    #[test]
    fn a_vanished_interface_is_reported_down_and_restarts_counting_when_back() {
        let mut agg = Aggregator::new();
        agg.add(with(vec![iface("eth0", 0, 0), iface("ppp0", 0, 0)]), secs(0));
        agg.add(with(vec![iface("eth0", 100, 0), iface("ppp0", 4000, 0)]), secs(1));
        agg.add(with(vec![iface("eth0", 200, 0)]), secs(2));
        let health = agg.finish();
        let ppp0 = only(&health, "ppp0");
        assert_eq!(ppp0.rx_bps, 32_000.0);
        assert!(!ppp0.up && !ppp0.carrier);
        assert_eq!(only(&health, "eth0").rx_bps, 800.0);

        // Back with fresh counters: no step across the gap.
        agg.add(with(vec![iface("eth0", 300, 0), iface("ppp0", 9_000_000, 0)]), secs(3));
        let back = agg.finish();
        assert_eq!(only(&back, "ppp0").rx_bps, 0.0);
        assert!(only(&back, "ppp0").up);
        agg.add(with(vec![iface("eth0", 400, 0), iface("ppp0", 9_000_100, 0)]), secs(4));
        assert_eq!(only(&agg.finish(), "ppp0").rx_bps, 800.0);

        // Gone for a whole interval: not reported at all.
        agg.add(with(vec![iface("eth0", 500, 0)]), secs(5));
        agg.finish();
        agg.add(with(vec![iface("eth0", 600, 0)]), secs(6));
        let names: Vec<_> = agg.finish().interfaces.into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["eth0"]);
    }

    #[test]
    fn a_sample_at_the_same_time_makes_no_step() {
        let mut agg = Aggregator::new();
        agg.add(with(vec![iface("eth0", 0, 0)]), secs(10));
        agg.add(with(vec![iface("eth0", 1000, 0)]), secs(10));
        agg.add(with(vec![iface("eth0", 1000, 0)]), secs(9));
        agg.add(with(vec![iface("eth0", 2000, 0)]), secs(12));
        let health = agg.finish();
        assert_eq!(only(&health, "eth0").rx_bps, 8000.0);
        assert_eq!(only(&health, "eth0").rx_bps_max, 8000.0);
    }

    #[test]
    fn gauges_latest_value_unknown_without_data_and_uptime_advances() {
        let mut agg = Aggregator::new();
        let empty = agg.finish();
        assert!(empty.cpu_pct.is_nan() && empty.mem_pct.is_nan() && empty.load.iter().all(|l| l.is_nan()));
        assert_eq!((empty.uptime_s, empty.temperature_c, empty.active_uplink), (0, None, None));
        assert_eq!(empty.agent_version, env!("CARGO_PKG_VERSION"));

        agg.add(
            RawSample {
                memory: Some(MemInfo { total_kib: 1000, available_kib: 500 }),
                load: Some([1.0, 2.0, 3.0]),
                uptime_s: Some(1000),
                temperature_c: Some(60.0),
                default_route: Some("eth0".into()),
                ..RawSample::default()
            },
            secs(50),
        );
        agg.add(
            RawSample {
                memory: Some(MemInfo { total_kib: 1000, available_kib: 100 }),
                default_route: Some("eth1".into()),
                ..RawSample::default()
            },
            secs(55),
        );
        let health = agg.finish();
        assert_eq!(health.mem_pct, 90.0);
        assert_eq!(health.load, [1.0, 2.0, 3.0]);
        assert_eq!(health.temperature_c, Some(60.0));
        assert_eq!(health.uptime_s, 1005);
        assert_eq!(health.active_uplink.as_deref(), Some("eth1"));

        agg.add(RawSample::default(), secs(65));
        let later = agg.finish();
        assert!(later.mem_pct.is_nan());
        assert_eq!(later.temperature_c, None);
        assert_eq!(later.uptime_s, 1015);
        assert_eq!(later.active_uplink, None, "no default route at the last sample");
    }
}
