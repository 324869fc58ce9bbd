//! Heartbeat figures over time, for the graphs and for data retention.
//!
//! A heartbeat is a [`Rollup`] of one sample; a stored rollup summarises the
//! heartbeats of one device over a bucket of [`FIVE_MINUTES_MS`] or
//! [`HOUR_MS`]; [`merge`] turns any mix of them into buckets of one width
//! (weighted by samples, so merging is associative and late heartbeats can
//! join a stored bucket). Retention rolls heartbeats up with it and the graph
//! reads use it too, so a graph over rolled-up days says what the heartbeats
//! said. [`series`] picks a graph's resolution: the finest that the data in
//! the window has, coarsened until the points fit [`MAX_POINTS`]. Pure.

use std::collections::BTreeMap;

use cpe_protocol::Health;
use serde::{Deserialize, Serialize};

/// The finest resolution a graph shows (the agent's default heartbeat interval).
pub const MINUTE_MS: i64 = 60_000;
/// Width of the first rollups.
pub const FIVE_MINUTES_MS: i64 = 300_000;
/// Width of the coarsest rollups.
pub const HOUR_MS: i64 = 3_600_000;
/// Most points one series holds (a day at one point a minute).
pub const MAX_POINTS: i64 = 1440;

/// Minimum, mean and maximum of one figure over a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Smallest value.
    pub min: f64,
    /// Mean over the samples.
    pub avg: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    fn one(v: f64) -> Self {
        Self { min: v, avg: v, max: v }
    }
}

/// Mean bandwidth of one line over the samples that carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineMean {
    /// Interface name (`wan0`, `lte0`, …).
    pub name: String,
    /// Heartbeats that reported the line.
    pub samples: u32,
    /// Mean received bits per second.
    pub rx_bps: f64,
    /// Mean sent bits per second.
    pub tx_bps: f64,
}

/// A device's heartbeats summarised over the bucket that starts at `start_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// Start of the bucket (a heartbeat: its time), Unix ms.
    pub start_ms: i64,
    /// Heartbeats summarised (at least 1).
    pub samples: u32,
    /// CPU use, percent.
    pub cpu: Spread,
    /// Memory use, percent.
    pub mem: Spread,
    /// Per-line mean bandwidth, by name.
    pub lines: Vec<LineMean>,
}

impl Rollup {
    /// One heartbeat at `at_ms` as a rollup of one sample; `None` if its CPU
    /// or memory figure is not a number (a line whose rates are not is left out).
    pub fn of_heartbeat(at_ms: i64, health: &Health) -> Option<Self> {
        let (cpu, mem) = (f64::from(health.cpu_pct), f64::from(health.mem_pct));
        if !cpu.is_finite() || !mem.is_finite() {
            return None;
        }
        let lines = health
            .interfaces
            .iter()
            .filter(|i| i.rx_bps.is_finite() && i.tx_bps.is_finite())
            .map(|i| LineMean { name: i.name.clone(), samples: 1, rx_bps: i.rx_bps, tx_bps: i.tx_bps })
            .collect();
        Some(Self { start_ms: at_ms, samples: 1, cpu: Spread::one(cpu), mem: Spread::one(mem), lines })
    }
}

/// Sums of one figure while merging.
#[derive(Debug, Clone, Copy)]
struct SpreadSum {
    min: f64,
    weighted: f64,
    max: f64,
}

impl Default for SpreadSum {
    fn default() -> Self {
        Self { min: f64::INFINITY, weighted: 0.0, max: f64::NEG_INFINITY }
    }
}

impl SpreadSum {
    fn add(&mut self, s: Spread, samples: f64) {
        self.min = self.min.min(s.min);
        self.max = self.max.max(s.max);
        self.weighted += s.avg * samples;
    }

    fn finish(self, samples: f64) -> Spread {
        Spread { min: self.min, avg: self.weighted / samples, max: self.max }
    }
}

/// One bucket while merging.
#[derive(Debug, Default)]
struct BucketSum {
    samples: u64,
    cpu: SpreadSum,
    mem: SpreadSum,
    /// Per line: samples, weighted rx, weighted tx.
    lines: BTreeMap<String, (u64, f64, f64)>,
}

impl BucketSum {
    fn add(&mut self, r: Rollup) {
        let n = f64::from(r.samples);
        self.samples += u64::from(r.samples);
        self.cpu.add(r.cpu, n);
        self.mem.add(r.mem, n);
        for line in r.lines {
            let ln = f64::from(line.samples);
            let sum = self.lines.entry(line.name).or_default();
            sum.0 += u64::from(line.samples);
            sum.1 += line.rx_bps * ln;
            sum.2 += line.tx_bps * ln;
        }
    }

    #[allow(clippy::cast_precision_loss)] // sample counts stay far below 2^52
    fn finish(self, start_ms: i64) -> Rollup {
        let n = self.samples as f64;
        Rollup {
            start_ms,
            samples: u32::try_from(self.samples).unwrap_or(u32::MAX),
            cpu: self.cpu.finish(n),
            mem: self.mem.finish(n),
            lines: self
                .lines
                .into_iter()
                .map(|(name, (samples, rx, tx))| LineMean {
                    name,
                    samples: u32::try_from(samples).unwrap_or(u32::MAX),
                    rx_bps: rx / samples as f64,
                    tx_bps: tx / samples as f64,
                })
                .collect(),
        }
    }
}

/// `parts` merged into buckets `width_ms` wide (starting at multiples of
/// it), oldest first. Means are weighted by samples; parts without samples
/// are left out.
pub fn merge(parts: impl IntoIterator<Item = Rollup>, width_ms: i64) -> Vec<Rollup> {
    let width = width_ms.max(1);
    let mut buckets: BTreeMap<i64, BucketSum> = BTreeMap::new();
    for part in parts {
        if part.samples == 0 {
            continue;
        }
        let start = part.start_ms.div_euclid(width).saturating_mul(width);
        buckets.entry(start).or_default().add(part);
    }
    buckets.into_iter().map(|(start, sum)| sum.finish(start)).collect()
}

/// Rollups of several devices merged, per device, into buckets `width_ms` wide.
pub fn merge_per_device(parts: Vec<(String, Rollup)>, width_ms: i64) -> Vec<(String, Rollup)> {
    let mut by_device: BTreeMap<String, Vec<Rollup>> = BTreeMap::new();
    for (device, part) in parts {
        by_device.entry(device).or_default().push(part);
    }
    by_device
        .into_iter()
        .flat_map(|(device, parts)| merge(parts, width_ms).into_iter().map(move |r| (device.clone(), r)))
        .collect()
}

/// `fresh` (a bucket of [`merge`]) merged into the bucket already `stored` for it, if any.
pub fn absorb(stored: Option<Rollup>, fresh: Rollup, width_ms: i64) -> Rollup {
    let merged = merge(stored.into_iter().chain([fresh.clone()]), width_ms);
    merged.into_iter().find(|r| r.start_ms == fresh.start_ms).unwrap_or(fresh)
}

/// What the store holds of one device over a window, by resolution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSeries {
    /// Heartbeats at full resolution.
    pub heartbeats: Vec<Rollup>,
    /// Five-minute rollups.
    pub five_minutes: Vec<Rollup>,
    /// Hourly rollups.
    pub hourly: Vec<Rollup>,
}

/// A graph of one device: CPU, memory and per-line bandwidth over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Width of each point, seconds.
    pub resolution_s: i64,
    /// Points, oldest first (buckets without heartbeats are left out).
    pub points: Vec<SeriesPoint>,
}

/// One point of a [`Series`]: means over its bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket, Unix ms.
    pub at_unix_ms: i64,
    /// Mean CPU use, percent.
    pub cpu_pct: f64,
    /// Mean memory use, percent.
    pub mem_pct: f64,
    /// Mean bandwidth per line.
    pub lines: Vec<LinePoint>,
}

/// Mean bandwidth of one line in a [`SeriesPoint`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinePoint {
    /// Interface name.
    pub name: String,
    /// Mean received bits per second.
    pub rx_bps: f64,
    /// Mean sent bits per second.
    pub tx_bps: f64,
}

/// The bucket width of a graph spanning `span_ms` whose coarsest data is
/// `finest_ms` wide: that width, or a multiple of it that keeps the points
/// within [`MAX_POINTS`].
pub fn resolution_ms(span_ms: i64, finest_ms: i64) -> i64 {
    let finest = finest_ms.max(1);
    let ceil = |a: i64, b: i64| a.saturating_add(b - 1) / b;
    let needed = ceil(span_ms.max(0), MAX_POINTS);
    ceil(needed, finest).max(1).saturating_mul(finest)
}

/// The graph over a window `span_ms` long from what the store holds in it:
/// the resolution of the coarsest rollups present (full resolution when
/// there are only heartbeats), at most [`MAX_POINTS`] points (plus one, when
/// the window does not start on a bucket boundary).
pub fn series(stored: StoredSeries, span_ms: i64) -> Series {
    let finest = if !stored.hourly.is_empty() {
        HOUR_MS
    } else if !stored.five_minutes.is_empty() {
        FIVE_MINUTES_MS
    } else {
        MINUTE_MS
    };
    let width = resolution_ms(span_ms, finest);
    let all = stored.heartbeats.into_iter().chain(stored.five_minutes).chain(stored.hourly);
    let points = merge(all, width)
        .into_iter()
        .map(|r| SeriesPoint {
            at_unix_ms: r.start_ms,
            cpu_pct: round(r.cpu.avg, 100.0),
            mem_pct: round(r.mem.avg, 100.0),
            lines: r
                .lines
                .into_iter()
                .map(|l| LinePoint {
                    name: l.name,
                    rx_bps: round(l.rx_bps, 1.0),
                    tx_bps: round(l.tx_bps, 1.0),
                })
                .collect(),
        })
        .collect();
    Series { resolution_s: width / 1000, points }
}

/// `v` rounded to `1 / scale` (figures are measurements, not exact values).
fn round(v: f64, scale: f64) -> f64 {
    (v * scale).round() / scale
}

#[cfg(test)]
// Exact figures are intended: the merges are of small integers.
#[allow(clippy::float_cmp, clippy::cast_precision_loss)]
mod tests {
    use super::*;
    use cpe_protocol::InterfaceStats;

    fn health(cpu: f32, mem: f32, lines: &[(&str, f64, f64)]) -> Health {
        Health {
            cpu_pct: cpu,
            mem_pct: mem,
            interfaces: lines
                .iter()
                .map(|&(name, rx, tx)| InterfaceStats {
                    name: name.into(),
                    rx_bps: rx,
                    tx_bps: tx,
                    ..InterfaceStats::default()
                })
                .collect(),
            ..Health::default()
        }
    }

    fn beat(at_ms: i64, cpu: f32, lines: &[(&str, f64, f64)]) -> Rollup {
        Rollup::of_heartbeat(at_ms, &health(cpu, cpu / 2.0, lines)).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn merging_weights_means_by_samples_and_keeps_extremes() {
        let parts = vec![
            beat(0, 10.0, &[("wan0", 100.0, 10.0)]),
            beat(60_000, 20.0, &[("wan0", 300.0, 30.0), ("lte0", 8.0, 4.0)]),
            beat(299_999, 60.0, &[]),
            beat(300_000, 50.0, &[("wan0", 1.0, 1.0)]),
        ];
        let five = merge(parts, FIVE_MINUTES_MS);
        assert_eq!(five.len(), 2);
        let first = &five[0];
        assert_eq!((first.start_ms, first.samples), (0, 3));
        assert_eq!((first.cpu.min, first.cpu.avg, first.cpu.max), (10.0, 30.0, 60.0));
        assert_eq!((first.mem.min, first.mem.max), (5.0, 30.0));
        // Each line's mean is over the heartbeats that carried it.
        assert_eq!(first.lines.len(), 2);
        assert_eq!(
            (first.lines[0].name.as_str(), first.lines[0].samples, first.lines[0].rx_bps),
            ("lte0", 1, 8.0)
        );
        assert_eq!((first.lines[1].name.as_str(), first.lines[1].samples), ("wan0", 2));
        assert_eq!((first.lines[1].rx_bps, first.lines[1].tx_bps), (200.0, 20.0));
        assert_eq!((five[1].start_ms, five[1].samples), (300_000, 1));

        // Merging rollups again equals merging the heartbeats at once.
        let mut beats: Vec<Rollup> =
            (0..24).map(|i| beat(i * 600_000, (i % 7) as f32, &[("wan0", i as f64, 1.0)])).collect();
        let hourly_at_once = merge(beats.clone(), HOUR_MS);
        let late = beats.split_off(20);
        let hourly_in_steps =
            merge(merge(beats, FIVE_MINUTES_MS).into_iter().chain(merge(late, FIVE_MINUTES_MS)), HOUR_MS);
        assert_eq!(hourly_at_once.len(), 4);
        for (a, b) in hourly_at_once.iter().zip(&hourly_in_steps) {
            assert_eq!(
                (a.start_ms, a.samples, a.cpu.min, a.cpu.max),
                (b.start_ms, b.samples, b.cpu.min, b.cpu.max)
            );
            assert!(
                (a.cpu.avg - b.cpu.avg).abs() < 1e-9 && (a.lines[0].rx_bps - b.lines[0].rx_bps).abs() < 1e-9
            );
        }
    }

    #[test]
    fn heartbeats_without_numbers_are_not_samples() {
        assert!(Rollup::of_heartbeat(0, &health(f32::NAN, 1.0, &[])).is_none());
        let r =
            Rollup::of_heartbeat(0, &health(1.0, 1.0, &[("wan0", f64::INFINITY, 1.0), ("lte0", 1.0, 1.0)]));
        assert_eq!(r.map(|r| r.lines.len()), Some(1));
        // Buckets before 1970 start on their boundary too.
        assert_eq!(merge(vec![beat(-1, 1.0, &[])], HOUR_MS)[0].start_ms, -HOUR_MS);
    }

    #[test]
    fn resolution_is_the_coarsest_present_and_points_are_bounded() {
        let day = 24 * HOUR_MS;
        assert_eq!(resolution_ms(day, MINUTE_MS), MINUTE_MS);
        assert_eq!(resolution_ms(7 * day, MINUTE_MS), 7 * MINUTE_MS);
        assert_eq!(resolution_ms(30 * day, FIVE_MINUTES_MS), 2 * 900_000);
        assert_eq!(resolution_ms(day, HOUR_MS), HOUR_MS);
        assert_eq!(resolution_ms(0, MINUTE_MS), MINUTE_MS);

        // A day of heartbeats every 30 s: one point a minute.
        let beats: Vec<Rollup> = (0..2880).map(|i| beat(i * 30_000, 1.0, &[])).collect();
        let s = series(StoredSeries { heartbeats: beats, ..StoredSeries::default() }, day);
        assert_eq!((s.resolution_s, s.points.len()), (60, 1440));
        assert!(s.points.iter().all(|p| p.cpu_pct == 1.0));

        // Thirty days: rolled-up days and recent heartbeats in one graph at the rollups' resolution.
        let stored = StoredSeries {
            heartbeats: (0..100).map(|i| beat(29 * day + i * 60_000, 2.0, &[("wan0", 10.0, 20.0)])).collect(),
            five_minutes: merge((0..2000).map(|i| beat(i * 60_000, 4.0, &[])), FIVE_MINUTES_MS),
            hourly: Vec::new(),
        };
        let s = series(stored, 30 * day);
        assert_eq!(s.resolution_s, 1800);
        assert!(s.points.len() <= usize::try_from(MAX_POINTS).unwrap_or(0) + 1);
        assert_eq!(s.points.first().map(|p| p.cpu_pct), Some(4.0));
        let last = s.points.last().map(|p| (p.cpu_pct, p.lines.clone()));
        assert_eq!(last, Some((2.0, vec![LinePoint { name: "wan0".into(), rx_bps: 10.0, tx_bps: 20.0 }])));
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert!(json["points"][0]["at_unix_ms"].is_i64() && json["resolution_s"] == 1800);
    }
}
