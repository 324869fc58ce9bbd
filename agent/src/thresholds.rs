//! Two-level thresholds on health metrics (guideline §3.2.1(3)–(5): CPU and
//! the like watched against a caution 注意 and a warning 警告 threshold, each
//! crossing reported).
//!
//! This module owns the decision *when a metric changes level*; the numbers
//! come from [`crate::metrics`] and the resulting events are sent at once by
//! the reporter. It is pure: values arrive with a monotonic time, nothing is
//! read and no clock is consulted.
//!
//! Per metric, [`ThresholdState`] is a small state machine over
//! [`Level`] (normal → caution → warning):
//!
//! - A level is **entered** once the value has stayed at or above it for
//!   `min_duration` (0: at once). A value that jumps past both levels enters
//!   warning directly with **one** transition normal → warning.
//! - A level is **left** once the value has stayed below `level -
//!   hysteresis` for `min_duration`; coming down from warning goes to caution
//!   or to normal depending on whether caution is also cleared.
//! - "Stayed" is judged at observations: the time runs from the first
//!   observation past the line, and any observation on the other side
//!   restarts it. So a spike shorter than `min_duration` produces nothing,
//!   and a value oscillating inside the hysteresis band does not flap.
//! - Non-finite values (NaN: metric unknown this interval) are ignored; they
//!   neither count as a crossing nor interrupt one.
//!
//! [`ThresholdSet`] applies the configured thresholds to each
//! [`Health`] report and returns [`Event::Threshold`]s in a fixed order
//! (cpu, memory, temperature, load1).

use std::time::Duration;

use cpe_protocol::{Event, Health, Level};
use serde::{Deserialize, Deserializer};

/// One metric's thresholds, e.g. `[thresholds.cpu]` in the configuration:
/// `caution = 80`, `warning = 95`, `hysteresis = 5`, `min_duration_s = 60`.
/// `caution` and `warning` are required; `hysteresis` and `min_duration_s`
/// default to 0.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The caution (注意) level, in the metric's unit.
    pub caution: f64,
    /// The warning (警告) level; above `caution`.
    pub warning: f64,
    /// How far below a level (absolute, in the metric's unit) the value must
    /// fall to leave it.
    #[serde(default)]
    pub hysteresis: f64,
    /// How long a value must stay past a line before the level changes
    /// (`min_duration_s` in seconds in the configuration).
    #[serde(default, rename = "min_duration_s", deserialize_with = "seconds")]
    pub min_duration: Duration,
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(value).map_err(|_| {
        serde::de::Error::custom(format!(
            "min_duration_s is {value}; it must be a number of seconds, 0 or more"
        ))
    })
}

impl Threshold {
    /// Checks the values; the message names the offending field as
    /// `thresholds.<metric>.<field>`.
    pub fn check(&self, metric: &str) -> Result<(), String> {
        for (field, value) in
            [("caution", self.caution), ("warning", self.warning), ("hysteresis", self.hysteresis)]
        {
            if !value.is_finite() {
                return Err(format!("thresholds.{metric}.{field} is {value}; it must be a finite number"));
            }
        }
        if self.caution >= self.warning {
            return Err(format!(
                "thresholds.{metric}.caution ({}) must be below thresholds.{metric}.warning ({})",
                self.caution, self.warning
            ));
        }
        if self.hysteresis < 0.0 {
            return Err(format!(
                "thresholds.{metric}.hysteresis is {}; it must be 0 or more",
                self.hysteresis
            ));
        }
        Ok(())
    }

    /// The line of a raised level (`Normal` has none: −∞).
    fn line(&self, level: Level) -> f64 {
        match level {
            Level::Normal => f64::NEG_INFINITY,
            Level::Caution => self.caution,
            Level::Warning => self.warning,
        }
    }
}

/// A level change of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Level before.
    pub from: Level,
    /// Level now.
    pub to: Level,
    /// The observed value that completed the change.
    pub value: f64,
}

/// The raised levels, lowest first; indexes of the per-level timers.
const RAISED: [Level; 2] = [Level::Caution, Level::Warning];

/// The level state machine of one metric.
#[derive(Debug, Clone)]
pub struct ThresholdState {
    threshold: Threshold,
    level: Level,
    /// Per raised level: since when every observation was at or above it.
    above_since: [Option<Duration>; 2],
    /// Per raised level: since when every observation was below it minus the hysteresis.
    below_since: [Option<Duration>; 2],
}

impl ThresholdState {
    /// Starts at [`Level::Normal`].
    pub fn new(threshold: Threshold) -> Self {
        Self { threshold, level: Level::Normal, above_since: [None; 2], below_since: [None; 2] }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The thresholds this state applies.
    pub fn threshold(&self) -> &Threshold {
        &self.threshold
    }

    /// Takes the value observed at monotonic time `now` (observations in
    /// time order). Returns the level change it completes, if any: at most
    /// one per observation. Non-finite values are ignored.
    pub fn observe(&mut self, value: f64, now: Duration) -> Option<Transition> {
        if !value.is_finite() {
            return None;
        }
        for (i, level) in RAISED.into_iter().enumerate() {
            let line = self.threshold.line(level);
            track(&mut self.above_since[i], value >= line, now);
            track(&mut self.below_since[i], value < line - self.threshold.hysteresis, now);
        }
        let min = self.threshold.min_duration;
        let held = |since: Option<Duration>| since.is_some_and(|s| now.saturating_sub(s) >= min);

        // Up: the highest level above the current one that has been held long enough.
        let up = RAISED
            .into_iter()
            .zip(self.above_since)
            .rev()
            .find(|&(level, since)| level > self.level && held(since))
            .map(|(level, _)| level);
        let to = up.unwrap_or_else(|| {
            // Down: the current level cleared for long enough; land on the
            // highest lower level that is not cleared too.
            let cleared = RAISED.into_iter().zip(self.below_since).find(|&(l, _)| l == self.level);
            match cleared {
                Some((_, since)) if held(since) => RAISED
                    .into_iter()
                    .zip(self.below_since)
                    .rev()
                    .find(|&(level, since)| level < self.level && !held(since))
                    .map_or(Level::Normal, |(level, _)| level),
                _ => self.level,
            }
        });
        if to == self.level {
            return None;
        }
        let from = std::mem::replace(&mut self.level, to);
        Some(Transition { from, to, value })
    }
}

/// Starts a timer when `condition` begins to hold, stops it when it breaks.
fn track(since: &mut Option<Duration>, condition: bool, now: Duration) {
    if condition {
        since.get_or_insert(now);
    } else {
        *since = None;
    }
}

/// The metrics of a [`Health`] report that have thresholds, in event order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `cpu_pct`, percent busy over the interval.
    Cpu,
    /// `mem_pct`, percent of memory in use.
    Memory,
    /// `temperature_c`, the hottest zone in °C (unknown without sensors).
    Temperature,
    /// `load[0]`, the one-minute load average.
    Load1,
}

impl Metric {
    /// All metrics, in the order their events are emitted.
    pub const ALL: [Self; 4] = [Self::Cpu, Self::Memory, Self::Temperature, Self::Load1];

    /// The name used in events and in the configuration (`cpu`, `memory`, `temperature`, `load1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Temperature => "temperature",
            Self::Load1 => "load1",
        }
    }

    /// This metric's value in `health`; NaN when unknown.
    pub fn value_in(self, health: &Health) -> f64 {
        match self {
            Self::Cpu => f64::from(health.cpu_pct),
            Self::Memory => f64::from(health.mem_pct),
            Self::Temperature => health.temperature_c.map_or(f64::NAN, f64::from),
            Self::Load1 => f64::from(health.load[0]),
        }
    }
}

/// `[thresholds]` in the configuration: one table per metric. A metric's
/// table replaces that metric's defaults as a whole (so `caution` and
/// `warning` must both be given); absent tables keep the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// CPU busy %. Default caution 80, warning 95, hysteresis 5, 60 s.
    pub cpu: Threshold,
    /// Memory in use %. Default caution 80, warning 90, hysteresis 5, 60 s.
    pub memory: Threshold,
    /// Hottest thermal zone °C. Default caution 70, warning 85, hysteresis 3, at once.
    pub temperature: Threshold,
    /// One-minute load average. Default caution 4, warning 8, hysteresis 0.5, 60 s.
    pub load1: Threshold,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        let t = |caution, warning, hysteresis, min_s| Threshold {
            caution,
            warning,
            hysteresis,
            min_duration: Duration::from_secs(min_s),
        };
        Self {
            cpu: t(80.0, 95.0, 5.0, 60),
            memory: t(80.0, 90.0, 5.0, 60),
            temperature: t(70.0, 85.0, 3.0, 0),
            load1: t(4.0, 8.0, 0.5, 60),
        }
    }
}

impl ThresholdsConfig {
    /// The thresholds of `metric`.
    pub fn get(&self, metric: Metric) -> Threshold {
        match metric {
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::Temperature => self.temperature,
            Metric::Load1 => self.load1,
        }
    }

    /// Checks every metric; the message names the first offending field.
    pub fn check(&self) -> Result<(), String> {
        Metric::ALL.into_iter().try_for_each(|metric| self.get(metric).check(metric.name()))
    }
}

/// The state machines of all metrics with thresholds.
#[derive(Debug, Clone)]
pub struct ThresholdSet {
    states: Vec<(Metric, ThresholdState)>,
}

impl Default for ThresholdSet {
    fn default() -> Self {
        Self::new(&ThresholdsConfig::default())
    }
}

impl ThresholdSet {
    /// Every metric at [`Level::Normal`] with the configured thresholds
    /// (check them first with [`ThresholdsConfig::check`]).
    pub fn new(config: &ThresholdsConfig) -> Self {
        Self { states: Metric::ALL.into_iter().map(|m| (m, ThresholdState::new(config.get(m)))).collect() }
    }

    /// Feeds one report, made at monotonic time `now`, to every metric.
    /// Returns the [`Event::Threshold`]s it causes, in [`Metric::ALL`] order.
    pub fn observe(&mut self, health: &Health, now: Duration) -> Vec<Event> {
        self.states
            .iter_mut()
            .filter_map(|(metric, state)| {
                let change = state.observe(metric.value_in(health), now)?;
                Some(Event::Threshold {
                    metric: metric.name().to_owned(),
                    from: change.from,
                    to: change.to,
                    value: change.value,
                })
            })
            .collect()
    }

    /// The current level of every metric, in [`Metric::ALL`] order (for the
    /// status page).
    pub fn levels(&self) -> Vec<(Metric, Level)> {
        self.states.iter().map(|(metric, state)| (*metric, state.level())).collect()
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use Level::{Caution, Normal, Warning};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// caution 80, warning 95, hysteresis 5, min_duration as given.
    fn state(min_s: u64) -> ThresholdState {
        ThresholdState::new(Threshold {
            caution: 80.0,
            warning: 95.0,
            hysteresis: 5.0,
            min_duration: secs(min_s),
        })
    }

    #[allow(clippy::unnecessary_wraps)]
    fn t(from: Level, to: Level, value: f64) -> Option<Transition> {
        Some(Transition { from, to, value })
    }

    /// Feeds `(time, value)` pairs and collects the transitions.
    fn run(state: &mut ThresholdState, values: &[(u64, f64)]) -> Vec<Transition> {
        values.iter().filter_map(|&(at, v)| state.observe(v, secs(at))).collect()
    }

    #[test]
    fn every_path_with_min_duration_zero() {
        let mut s = state(0);
        assert_eq!(s.level(), Normal);
        assert_eq!(s.observe(79.9, secs(0)), None);
        assert_eq!(s.observe(80.0, secs(1)), t(Normal, Caution, 80.0), "at the line counts");
        assert_eq!(s.observe(95.0, secs(2)), t(Caution, Warning, 95.0));
        assert_eq!(s.observe(85.0, secs(3)), t(Warning, Caution, 85.0));
        assert_eq!(s.observe(74.0, secs(4)), t(Caution, Normal, 74.0));
        assert_eq!(s.observe(99.0, secs(5)), t(Normal, Warning, 99.0), "one jump, one transition");
        assert_eq!(s.observe(99.0, secs(6)), None);
        assert_eq!(s.observe(10.0, secs(7)), t(Warning, Normal, 10.0), "straight down");
        assert_eq!(s.observe(10.0, secs(8)), None);
        assert_eq!(s.level(), Normal);
    }

    #[test]
    fn coming_down_from_warning_lands_by_the_value() {
        let mut s = state(0);
        s.observe(99.0, secs(0));
        // In warning's hysteresis band: stays.
        assert_eq!(s.observe(90.0, secs(1)), None);
        assert_eq!(s.level(), Warning);
        // Below warning - h, but within caution's band (75..80): caution holds.
        assert_eq!(s.observe(76.0, secs(2)), t(Warning, Caution, 76.0));
        let mut s = state(0);
        s.observe(99.0, secs(0));
        assert_eq!(s.observe(75.0, secs(1)), t(Warning, Caution, 75.0), "exactly caution - h still holds");
        assert_eq!(s.observe(74.9, secs(2)), t(Caution, Normal, 74.9));
    }

    #[test]
    fn hysteresis_prevents_flapping() {
        let mut s = state(0);
        let around_caution: Vec<(u64, f64)> =
            (0..40).map(|i| (i, if i % 2 == 0 { 81.0 } else { 76.0 })).collect();
        assert_eq!(run(&mut s, &around_caution), [Transition { from: Normal, to: Caution, value: 81.0 }]);
        let around_warning: Vec<(u64, f64)> =
            (40..80).map(|i| (i, if i % 2 == 0 { 96.0 } else { 91.0 })).collect();
        assert_eq!(run(&mut s, &around_warning), [Transition { from: Caution, to: Warning, value: 96.0 }]);
        assert_eq!(s.observe(74.0, secs(80)), t(Warning, Normal, 74.0));

        // Without hysteresis the same input does flap: the band is what stops it.
        let mut plain = ThresholdState::new(Threshold { hysteresis: 0.0, ..*s.threshold() });
        assert_eq!(run(&mut plain, &around_caution).len(), 40);
    }

    #[test]
    fn a_spike_shorter_than_min_duration_produces_nothing() {
        let mut s = state(60);
        let spike = [(0, 50.0), (5, 99.0), (30, 99.0), (60, 99.0), (64, 50.0), (120, 99.0), (125, 50.0)];
        assert!(run(&mut s, &spike).is_empty());
        assert_eq!(s.level(), Normal);
    }

    #[test]
    fn entering_and_leaving_need_min_duration() {
        let mut s = state(60);
        assert_eq!(s.observe(85.0, secs(100)), None);
        assert_eq!(s.observe(85.0, secs(159)), None);
        assert_eq!(s.observe(85.0, secs(160)), t(Normal, Caution, 85.0));
        // Leaving: a short dip does nothing; an observation in the band restarts the time.
        assert_eq!(s.observe(70.0, secs(170)), None);
        assert_eq!(s.observe(77.0, secs(200)), None);
        assert_eq!(s.observe(70.0, secs(210)), None);
        assert_eq!(s.observe(70.0, secs(269)), None);
        assert_eq!(s.observe(70.0, secs(270)), t(Caution, Normal, 70.0));
    }

    #[test]
    fn rising_over_two_observations_gives_caution_then_warning() {
        let mut s = state(0);
        assert_eq!(
            run(&mut s, &[(0, 85.0), (5, 97.0)]),
            [
                Transition { from: Normal, to: Caution, value: 85.0 },
                Transition { from: Caution, to: Warning, value: 97.0 }
            ]
        );
        // With a minimum duration each level is timed separately.
        let mut s = state(60);
        assert_eq!(
            run(&mut s, &[(0, 85.0), (30, 97.0), (60, 97.0), (89, 97.0), (90, 97.0)]),
            [
                Transition { from: Normal, to: Caution, value: 97.0 },
                Transition { from: Caution, to: Warning, value: 97.0 }
            ]
        );
        // Both held long enough at the same observation: one transition.
        let mut s = state(60);
        assert_eq!(
            run(&mut s, &[(0, 97.0), (60, 97.0)]),
            [Transition { from: Normal, to: Warning, value: 97.0 }]
        );
    }

    #[test]
    fn falling_with_min_duration_goes_through_caution_when_it_is_not_cleared_long_enough() {
        let mut s = state(60);
        run(&mut s, &[(0, 99.0), (60, 99.0)]);
        assert_eq!(s.level(), Warning);
        let down = run(&mut s, &[(100, 85.0), (130, 10.0), (160, 10.0), (189, 10.0), (190, 10.0)]);
        assert_eq!(
            down,
            [
                Transition { from: Warning, to: Caution, value: 10.0 },
                Transition { from: Caution, to: Normal, value: 10.0 }
            ]
        );
        assert_eq!((down.len(), s.level()), (2, Normal));
        // Falling all the way at once, held: one transition.
        let mut s = state(60);
        run(&mut s, &[(0, 99.0), (60, 99.0)]);
        assert_eq!(
            run(&mut s, &[(100, 10.0), (160, 10.0)]),
            [Transition { from: Warning, to: Normal, value: 10.0 }]
        );
    }

    #[test]
    fn nan_and_infinities_are_ignored_and_do_not_interrupt_a_duration() {
        let mut s = state(0);
        assert_eq!(s.observe(f64::NAN, secs(0)), None);
        assert_eq!(s.observe(f64::INFINITY, secs(1)), None);
        assert_eq!(s.level(), Normal);
        s.observe(90.0, secs(2));
        assert_eq!(s.observe(f64::NAN, secs(3)), None);
        assert_eq!(s.observe(f64::NEG_INFINITY, secs(3)), None);
        assert_eq!(s.level(), Caution);

        let mut s = state(60);
        assert_eq!(
            run(&mut s, &[(0, 90.0), (30, f64::NAN), (60, 90.0)]),
            [Transition { from: Normal, to: Caution, value: 90.0 }]
        );
    }

    #[test]
    fn check_names_the_field() {
        let ok = Threshold { caution: 80.0, warning: 95.0, hysteresis: 0.0, min_duration: Duration::ZERO };
        assert_eq!(ok.check("cpu"), Ok(()));
        let err = Threshold { caution: 95.0, ..ok }.check("cpu").unwrap_err();
        assert!(err.contains("thresholds.cpu.caution") && err.contains("thresholds.cpu.warning"), "{err}");
        assert!(Threshold { warning: 80.0, ..ok }.check("cpu").is_err(), "equal levels are refused");
        let err = Threshold { hysteresis: -1.0, ..ok }.check("memory").unwrap_err();
        assert!(err.contains("thresholds.memory.hysteresis"), "{err}");
        let err = Threshold { warning: f64::NAN, ..ok }.check("load1").unwrap_err();
        assert!(err.contains("thresholds.load1.warning"), "{err}");
        assert_eq!(ThresholdsConfig::default().check(), Ok(()));
        let bad = ThresholdsConfig {
            temperature: Threshold { caution: 90.0, ..ThresholdsConfig::default().temperature },
            ..ThresholdsConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("thresholds.temperature.caution"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        thresholds: ThresholdsConfig,
    }

    fn parse(text: &str) -> Result<ThresholdsConfig, String> {
        toml::from_str::<Doc>(text).map(|d| d.thresholds).map_err(|e| e.to_string())
    }

    #[test]
    fn configuration_from_toml() {
        assert_eq!(parse("").unwrap(), ThresholdsConfig::default());
        let config = parse(
            "[thresholds.cpu]\ncaution = 70\nwarning = 90.5\nhysteresis = 2\nmin_duration_s = 1.5\n\
             [thresholds.load1]\ncaution = 1\nwarning = 2\n",
        )
        .unwrap();
        assert_eq!(
            config.cpu,
            Threshold {
                caution: 70.0,
                warning: 90.5,
                hysteresis: 2.0,
                min_duration: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            config.load1,
            Threshold { caution: 1.0, warning: 2.0, hysteresis: 0.0, min_duration: Duration::ZERO }
        );
        assert_eq!(config.memory, ThresholdsConfig::default().memory);
        for (bad, needle) in [
            ("[thresholds.cpu]\ncaution = 70\nwarning = 90\nhysterisis = 2\n", "hysterisis"),
            ("[thresholds.cpu]\ncaution = 70\n", "warning"),
            ("[thresholds.disk]\ncaution = 70\nwarning = 90\n", "disk"),
            ("[thresholds.cpu]\ncaution = 70\nwarning = 90\nmin_duration_s = -1\n", "min_duration_s"),
            ("[thresholds.cpu]\ncaution = 70\nwarning = 90\nmin_duration = 5\n", "min_duration"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    fn health(cpu: f32, mem: f32, temperature: Option<f32>, load1: f32) -> Health {
        Health {
            cpu_pct: cpu,
            mem_pct: mem,
            temperature_c: temperature,
            load: [load1, 0.0, 0.0],
            ..Health::default()
        }
    }

    fn event(metric: &str, from: Level, to: Level, value: f64) -> Event {
        Event::Threshold { metric: metric.into(), from, to, value }
    }

    #[test]
    fn set_reports_in_metric_order_and_skips_unknown_values() {
        let immediate =
            |caution, warning| Threshold { caution, warning, hysteresis: 1.0, min_duration: Duration::ZERO };
        let config = ThresholdsConfig {
            cpu: immediate(80.0, 95.0),
            memory: immediate(80.0, 90.0),
            temperature: immediate(70.0, 85.0),
            load1: immediate(4.0, 8.0),
        };
        let mut set = ThresholdSet::new(&config);
        let events = set.observe(&health(97.0, 85.0, None, 9.0), secs(0));
        assert_eq!(
            events,
            [
                event("cpu", Normal, Warning, 97.0),
                event("memory", Normal, Caution, 85.0),
                event("load1", Normal, Warning, 9.0)
            ]
        );
        assert!(set.observe(&health(97.0, 85.0, None, 9.0), secs(60)).is_empty());
        let events = set.observe(&health(f32::NAN, 50.0, Some(86.0), 9.0), secs(120));
        assert_eq!(
            events,
            [event("memory", Caution, Normal, 50.0), event("temperature", Normal, Warning, 86.0)]
        );
        assert_eq!(
            set.levels(),
            [
                (Metric::Cpu, Warning),
                (Metric::Memory, Normal),
                (Metric::Temperature, Warning),
                (Metric::Load1, Warning)
            ]
        );
    }

    #[test]
    fn default_set_waits_a_minute_except_for_temperature() {
        let mut set = ThresholdSet::default();
        let hot = health(90.0, 50.0, Some(75.0), 0.5);
        assert_eq!(set.observe(&hot, secs(0)), [event("temperature", Normal, Caution, 75.0)]);
        assert_eq!(set.observe(&hot, secs(60)), [event("cpu", Normal, Caution, 90.0)]);
        assert_eq!(Metric::ALL.map(Metric::name), ["cpu", "memory", "temperature", "load1"]);
        assert!(Metric::Temperature.value_in(&Health::default()).is_nan());
    }
}
