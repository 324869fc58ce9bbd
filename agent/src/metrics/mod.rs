//! Device health for the carrier's monitoring (guideline §3.2.1): CPU,
//! memory, load, temperature and uptime, per-line bandwidth (§3.2.1(7)) and
//! the uplink carrying the default route (§3.2.1(6)).
//!
//! This module owns everything between the kernel's counters and the
//! [`cpe_protocol::Health`] heartbeat; what to do with the numbers (threshold
//! levels) is [`crate::thresholds`], sending them is the reporter's job.
//! Split as the house style asks, side effects behind one narrow trait and
//! pure cores:
//!
//! - [`source`]: the one side effect. [`MetricSource`] takes a [`RawSample`];
//!   [`ProcSource`] reads `/proc` and `/sys` under injectable
//!   [`SystemPaths`], so tests run against fixture trees.
//! - [`parse`]: pure parsers of each file's text (never panic; fuzzable).
//! - [`sample`]: the raw reading ([`RawSample`]) and counter arithmetic.
//! - [`aggregate`]: the pure [`Aggregator`] turning the samples of one report
//!   interval (e.g. every 5 s for 60 s, with monotonic times) into rates,
//!   maxima, 95th percentiles and deltas; and [`InstantView`], the view
//!   over the latest step alone that the thresholds judge after each sample.
//! - [`uplink`]: the pure [`UplinkWatch`] turning default-route changes into
//!   failover events.
//!
//! Files read (relative to the roots): `proc/stat` (aggregate `cpu` line),
//! `proc/meminfo` (`MemTotal`, `MemAvailable`), `proc/loadavg`,
//! `proc/uptime`, `proc/net/route` then `proc/net/ipv6_route` (default
//! route), `sys/class/thermal/thermal_zone*/temp`, and for each
//! `sys/class/net/<if>/` except `lo`: `statistics/{rx,tx}_{bytes,packets,errors,dropped}`,
//! `operstate`, `flags`, `carrier`.

pub mod aggregate;
pub mod parse;
pub mod sample;
pub mod source;
pub mod uplink;

use std::path::PathBuf;

pub use aggregate::{Aggregator, InstantView};
pub use sample::{CpuTimes, IfaceCounters, InterfaceSample, MemInfo, RawSample};
pub use source::{MetricSource, ProcSource, SystemPaths};
pub use uplink::{UplinkRole, UplinkWatch};

/// Why metrics could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Not one of `stat`, `meminfo`, `loadavg`, `uptime` could be read.
    #[error("none of stat, meminfo, loadavg, uptime could be read under {}; is /proc mounted and the configured proc_root right?", proc_root.display())]
    NoProc {
        /// The procfs root that was tried.
        proc_root: PathBuf,
    },
    /// A file's text is not in the expected format.
    #[error("unexpected content in {what}: {detail}")]
    Parse {
        /// Which file (e.g. `/proc/stat`).
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// `u64` → `f64` for rates. Exact below 2^53 (8 PB of counted bytes); the
/// rounding above is far below what a rate needs.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn to_f64(value: u64) -> f64 {
    value as f64
}

/// `f64` → `f32` for the wire's percentages and temperatures; the values are
/// small, so only precision beyond f32's 7 digits is lost.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn to_f32(value: f64) -> f32 {
    value as f32
}
