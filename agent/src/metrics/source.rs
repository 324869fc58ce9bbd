//! Reading a [`RawSample`] from the kernel's `/proc` and `/sys` files.
//!
//! [`MetricSource`] is the one side effect of the metrics module; the daemon
//! owns a [`ProcSource`], tests use fixture trees through [`SystemPaths`] or
//! their own implementation of the trait. A sample degrades field by field:
//! a missing or unparsable file leaves its field `None` (an interface whose
//! counters cannot be read is left out), with a `debug` log line naming the
//! path, because sensors, IPv6 and interfaces legitimately come and go on a
//! router. Only a sample in which no `/proc` file at all could be read is an
//! error, since that means the root is wrong or `/proc` is not mounted.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tracing::debug;

use super::parse;
use super::sample::{IfaceCounters, InterfaceSample, RawSample};
use super::MetricsError;

/// Most bytes read from one file; `/proc/stat` on a big machine has a long
/// `intr` line we do not need, and sysfs attributes are at most a page.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Where the kernel's pseudo file systems are; tests point these at fixture trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPaths {
    /// The procfs root, `/proc` on a device.
    pub proc_root: PathBuf,
    /// The sysfs root, `/sys` on a device.
    pub sys_root: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        Self { proc_root: PathBuf::from("/proc"), sys_root: PathBuf::from("/sys") }
    }
}

impl SystemPaths {
    /// `<root>/proc` and `<root>/sys`, for a fixture tree laid out like `/`.
    pub fn under(root: &Path) -> Self {
        Self { proc_root: root.join("proc"), sys_root: root.join("sys") }
    }
}

/// Something that can take a [`RawSample`] now.
pub trait MetricSource {
    /// Reads the device's counters and gauges. Fails only when nothing at
    /// all could be read; partial failures degrade fields of the sample.
    fn sample(&mut self) -> Result<RawSample, MetricsError>;
}

/// A [`MetricSource`] reading the files under [`SystemPaths`].
#[derive(Debug, Clone, Default)]
pub struct ProcSource {
    paths: SystemPaths,
}

impl ProcSource {
    /// A source reading under `paths`.
    pub fn new(paths: SystemPaths) -> Self {
        Self { paths }
    }

    /// Where this source reads.
    pub fn paths(&self) -> &SystemPaths {
        &self.paths
    }

    /// Reads and parses `<proc_root>/<name>`, counting whether the file
    /// could be read at all.
    fn proc_file<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, MetricsError>,
        readable: &mut usize,
    ) -> Option<T> {
        let path = self.paths.proc_root.join(name);
        let text = read_logged(&path)?;
        *readable += 1;
        parsed(&path, parse(&text))
    }

    fn temperature(&self) -> Option<f32> {
        let dir = self.paths.sys_root.join("class/thermal");
        let zones = sorted_entries(&dir, |name| name.starts_with("thermal_zone"))?;
        zones
            .iter()
            .filter_map(|zone| {
                let path = dir.join(zone).join("temp");
                parsed(&path, parse::parse_millidegrees(&read_logged(&path)?))
            })
            .reduce(f32::max)
    }

    fn interfaces(&self) -> Vec<InterfaceSample> {
        let dir = self.paths.sys_root.join("class/net");
        // `bonding_masters` is a plain file in the same directory.
        let names = sorted_entries(&dir, |name| name != "lo").unwrap_or_default();
        names
            .into_iter()
            .filter(|name| dir.join(name).is_dir())
            .filter_map(|name| read_interface(&dir.join(&name), name))
            .collect()
    }

    fn default_route(&self) -> Option<String> {
        let v4 = self.paths.proc_root.join("net/route");
        if let Some(iface) = read_logged(&v4).and_then(|text| parse::default_route_v4(&text)) {
            return Some(iface);
        }
        let v6 = self.paths.proc_root.join("net/ipv6_route");
        read_logged(&v6).and_then(|text| parse::default_route_v6(&text))
    }
}

impl MetricSource for ProcSource {
    fn sample(&mut self) -> Result<RawSample, MetricsError> {
        let mut readable = 0;
        let cpu = self.proc_file("stat", parse::parse_stat, &mut readable);
        let memory = self.proc_file("meminfo", parse::parse_meminfo, &mut readable);
        let load = self.proc_file("loadavg", parse::parse_loadavg, &mut readable);
        let uptime_s = self.proc_file("uptime", parse::parse_uptime, &mut readable);
        if readable == 0 {
            return Err(MetricsError::NoProc { proc_root: self.paths.proc_root.clone() });
        }
        Ok(RawSample {
            cpu,
            memory,
            load,
            uptime_s,
            temperature_c: self.temperature(),
            interfaces: self.interfaces(),
            default_route: self.default_route(),
        })
    }
}

/// One interface's state and counters; `None` when a counter cannot be read,
/// which in practice means the interface vanished while being read.
fn read_interface(dir: &Path, name: String) -> Option<InterfaceSample> {
    let counter = |file: &str| {
        let path = dir.join("statistics").join(file);
        parsed(&path, parse::parse_counter(&read_logged(&path)?))
    };
    let counters = IfaceCounters {
        rx_bytes: counter("rx_bytes")?,
        tx_bytes: counter("tx_bytes")?,
        rx_packets: counter("rx_packets")?,
        tx_packets: counter("tx_packets")?,
        rx_errors: counter("rx_errors")?,
        tx_errors: counter("tx_errors")?,
        rx_dropped: counter("rx_dropped")?,
        tx_dropped: counter("tx_dropped")?,
    };
    let operstate = read_logged(&dir.join("operstate")).unwrap_or_default();
    let flags = read_logged(&dir.join("flags"));
    // Reading `carrier` fails with EINVAL while the interface is down: no carrier.
    let carrier = read_logged(&dir.join("carrier")).is_some_and(|text| parse::parse_carrier(&text));
    Some(InterfaceSample { name, up: parse::interface_up(&operstate, flags.as_deref()), carrier, counters })
}

/// Entry names of `dir` accepted by `keep`, sorted; `None` if `dir` cannot be listed.
fn sorted_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            debug!(path = %dir.display(), error = %e, "metrics: cannot list directory");
            return None;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| keep(name))
        .collect();
    names.sort();
    Some(names)
}

/// The text of a file (at most [`MAX_FILE_BYTES`], invalid UTF-8 replaced),
/// or `None` with a debug line.
fn read_logged(path: &Path) -> Option<String> {
    match read_text(path) {
        Ok(text) => Some(text),
        Err(e) => {
            debug!(path = %path.display(), error = %e, "metrics: cannot read");
            None
        }
    }
}

/// The text of a file, at most [`MAX_FILE_BYTES`], invalid UTF-8 replaced.
pub(crate) fn read_text(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn parsed<T>(path: &Path, result: Result<T, MetricsError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            debug!(path = %path.display(), error = %e, "metrics: cannot parse");
            None
        }
    }
}
