//! Health metrics against fixture `/proc` and `/sys` trees: exact numbers
//! from two samples, interfaces vanishing, sensors and files missing or full
//! of garbage (degraded, never a panic), default routes and failover, and a
//! static snapshot of a dual-uplink router in the real files' formats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::float_cmp, missing_docs)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cpe_agent::metrics::{
    Aggregator, MetricSource, MetricsError, ProcSource, RawSample, SystemPaths, UplinkWatch,
};
use cpe_agent::thresholds::ThresholdSet;
use cpe_protocol::{Event, Health, InterfaceStats, Level};

/// A temporary tree laid out like `/` with `proc/` and `sys/`.
struct Tree {
    dir: tempfile::TempDir,
}

/// Counters in `statistics/` order: rx_bytes, tx_bytes, rx_packets,
/// tx_packets, rx_errors, tx_errors, rx_dropped, tx_dropped.
type Counters = [u64; 8];
const COUNTER_FILES: [&str; 8] = [
    "rx_bytes",
    "tx_bytes",
    "rx_packets",
    "tx_packets",
    "rx_errors",
    "tx_errors",
    "rx_dropped",
    "tx_dropped",
];

impl Tree {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn paths(&self) -> SystemPaths {
        SystemPaths::under(self.dir.path())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn remove(&self, rel: &str) {
        let path = self.path(rel);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }

    /// `/proc/stat` with user, system, idle, iowait, softirq as given.
    fn stat(&self, user: u64, system: u64, idle: u64, iowait: u64, softirq: u64) {
        self.write(
            "proc/stat",
            &format!(
                "cpu  {user} 0 {system} {idle} {iowait} 0 {softirq} 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 123 4 5\nctxt 99\n"
            ),
        );
    }

    fn basics(&self, uptime: &str) {
        self.write(
            "proc/meminfo",
            "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\nBuffers: 1 kB\n",
        );
        self.write("proc/loadavg", "0.50 0.40 0.30 2/100 999\n");
        self.write("proc/uptime", &format!("{uptime} 1.00\n"));
    }

    fn iface(&self, name: &str, operstate: &str, carrier: Option<&str>, counters: Counters) {
        self.write(&format!("sys/class/net/{name}/operstate"), &format!("{operstate}\n"));
        self.write(&format!("sys/class/net/{name}/flags"), "0x1003\n");
        match carrier {
            Some(c) => self.write(&format!("sys/class/net/{name}/carrier"), &format!("{c}\n")),
            None => {
                let _ = fs::remove_file(self.path(&format!("sys/class/net/{name}/carrier")));
            }
        }
        for (file, value) in COUNTER_FILES.iter().zip(counters) {
            self.write(&format!("sys/class/net/{name}/statistics/{file}"), &format!("{value}\n"));
        }
    }

    /// `/proc/net/route` with one default route per `(interface, metric)`
    /// and a LAN subnet route.
    fn routes(&self, defaults: &[(&str, u32)]) {
        let mut text = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        for (iface, metric) in defaults {
            writeln!(text, "{iface}\t00000000\t0101A8C0\t0003\t0\t0\t{metric}\t00000000\t0\t0\t0").unwrap();
        }
        text.push_str("br0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        self.write("proc/net/route", &text);
    }

    fn thermal(&self, zone: u32, temp: &str) {
        self.write(&format!("sys/class/thermal/thermal_zone{zone}/temp"), temp);
    }
}

fn take(source: &mut dyn MetricSource) -> RawSample {
    source.sample().unwrap()
}

fn stats<'a>(health: &'a Health, name: &str) -> &'a InterfaceStats {
    health.interfaces.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no {name} in {health:?}"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A tree with eth0 (up, primary default route), eth1 (up, backup route)
/// and eth2 (down, `carrier` unreadable), three thermal zones (one broken).
fn router() -> Tree {
    let tree = Tree::new();
    tree.stat(1000, 500, 8000, 500, 0);
    tree.basics("1000.25");
    tree.iface("lo", "unknown", Some("1"), [9; 8]);
    tree.iface("eth0", "up", Some("1"), [0, 0, 0, 0, 1, 0, 0, 0]);
    tree.iface("eth1", "up", Some("1"), [500, 500, 5, 5, 0, 0, 0, 0]);
    tree.iface("eth2", "down", None, [0; 8]);
    // Reading `carrier` of a down interface fails (EINVAL); a directory fails too.
    fs::create_dir_all(tree.path("sys/class/net/eth2/carrier")).unwrap();
    tree.thermal(0, "45000\n");
    tree.thermal(1, "52500\n");
    tree.thermal(2, "not ready\n");
    tree.routes(&[("eth1", 200), ("eth0", 100)]);
    tree
}

#[test]
fn two_samples_give_exact_health() {
    let tree = router();
    let mut source = ProcSource::new(tree.paths());
    let mut agg = Aggregator::new();
    agg.add(take(&mut source), secs(1000));

    // 8 s later: busy +300 ticks, idle +100; eth0 moved 1,000,000 bytes in.
    tree.stat(1200, 550, 8080, 520, 50);
    tree.write("proc/uptime", "1008.75 2.00\n");
    tree.write("proc/loadavg", "1.25 0.75 0.50 3/101 1000\n");
    tree.iface("eth0", "up", Some("1"), [1_000_000, 500_000, 8000, 4000, 4, 1, 2, 0]);
    tree.iface("lo", "unknown", Some("1"), [u64::MAX; 8]);
    let second = take(&mut source);
    assert_eq!(second.default_route.as_deref(), Some("eth0"));
    agg.add(second, secs(1008));

    let health = agg.finish();
    assert_eq!(health.cpu_pct, 75.0);
    assert_eq!(health.mem_pct, 75.0);
    assert_eq!(health.load, [1.25, 0.75, 0.5]);
    assert_eq!(health.uptime_s, 1008);
    assert_eq!(health.temperature_c, Some(52.5));
    assert_eq!(health.active_uplink.as_deref(), Some("eth0"));
    assert_eq!(health.cert_not_after, None);

    let names: Vec<&str> = health.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0", "eth1", "eth2"], "sorted, without lo");
    let eth0 = stats(&health, "eth0");
    assert_eq!(
        *eth0,
        InterfaceStats {
            name: "eth0".into(),
            up: true,
            carrier: true,
            rx_bps: 1_000_000.0,
            tx_bps: 500_000.0,
            rx_bps_max: 1_000_000.0,
            tx_bps_max: 500_000.0,
            rx_bps_p95: 1_000_000.0,
            tx_bps_p95: 500_000.0,
            rx_pps: 1000.0,
            tx_pps: 500.0,
            rx_errors: 3,
            tx_errors: 1,
            rx_drops: 2,
            tx_drops: 0,
        }
    );
    let eth1 = stats(&health, "eth1");
    assert_eq!((eth1.rx_bps, eth1.tx_pps, eth1.up, eth1.carrier), (0.0, 0.0, true, true));
    let eth2 = stats(&health, "eth2");
    assert!(!eth2.up && !eth2.carrier, "down, carrier unreadable: {eth2:?}");
}

#[test]
fn interface_removed_between_samples_is_left_out_and_reported_down() {
    let tree = router();
    let mut source = ProcSource::new(tree.paths());
    let mut agg = Aggregator::new();
    agg.add(take(&mut source), secs(0));

    tree.remove("sys/class/net/eth1");
    // eth2 vanishing while being read: its counters are gone, the directory not yet.
    tree.remove("sys/class/net/eth2/statistics/tx_dropped");
    tree.iface("eth0", "up", Some("1"), [4000, 0, 0, 0, 1, 0, 0, 0]);
    let sample = take(&mut source);
    let names: Vec<&str> = sample.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    agg.add(sample, secs(4));

    let health = agg.finish();
    assert_eq!(stats(&health, "eth0").rx_bps, 8000.0);
    for gone in ["eth1", "eth2"] {
        let s = stats(&health, gone);
        assert!(!s.up && !s.carrier && s.rx_bps == 0.0, "{s:?}");
    }

    // The next interval no longer mentions them.
    agg.add(take(&mut source), secs(8));
    let names: Vec<String> = agg.finish().interfaces.into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["eth0"]);
}

#[test]
fn counter_reset_between_samples_counts_as_zero() {
    let tree = router();
    let mut source = ProcSource::new(tree.paths());
    let mut agg = Aggregator::new();
    tree.iface("eth0", "up", Some("1"), [9_000_000, 9_000_000, 900, 900, 9, 9, 9, 9]);
    agg.add(take(&mut source), secs(0));
    tree.iface("eth0", "up", Some("1"), [1000, 1000, 10, 10, 0, 0, 0, 0]);
    agg.add(take(&mut source), secs(5));
    tree.iface("eth0", "up", Some("1"), [6000, 1000, 20, 10, 1, 0, 0, 0]);
    agg.add(take(&mut source), secs(10));
    let health = agg.finish();
    let eth0 = stats(&health, "eth0");
    assert_eq!((eth0.rx_bps, eth0.rx_bps_max, eth0.rx_pps, eth0.rx_errors), (4000.0, 8000.0, 1.0, 1));
}

#[test]
fn thermal_absent_or_unreadable_is_none() {
    let tree = router();
    tree.remove("sys/class/thermal");
    let sample = ProcSource::new(tree.paths()).sample().unwrap();
    assert_eq!(sample.temperature_c, None);
    assert_eq!(sample.interfaces.len(), 3);

    tree.thermal(0, "");
    tree.thermal(1, "garbage");
    fs::create_dir_all(tree.path("sys/class/thermal/cooling_device0")).unwrap();
    assert_eq!(ProcSource::new(tree.paths()).sample().unwrap().temperature_c, None);

    // Without /sys at all (a container): no interfaces, no temperature, still a sample.
    tree.remove("sys");
    let sample = ProcSource::new(tree.paths()).sample().unwrap();
    assert!(sample.interfaces.is_empty());
    assert_eq!(sample.cpu.map(|c| c.user), Some(1000));
}

#[test]
fn garbage_in_proc_stat_degrades_cpu_only() {
    let tree = router();
    let mut source = ProcSource::new(tree.paths());
    let mut agg = Aggregator::new();
    tree.write("proc/stat", "cpu  12 x 9\n\u{0}\u{7f}garbage");
    let first = take(&mut source);
    assert_eq!(first.cpu, None);
    assert!(first.memory.is_some() && first.load.is_some() && first.uptime_s.is_some());
    agg.add(first, secs(0));
    fs::write(tree.path("proc/stat"), [0xff, 0xfe, b'c', b'p', b'u', 0x80, b'\n']).unwrap();
    agg.add(take(&mut source), secs(5));
    let health = agg.finish();
    assert!(health.cpu_pct.is_nan(), "unknown, not 0");
    assert_eq!(health.mem_pct, 75.0);
    // NaN is ignored by the thresholds: no event from an unknown CPU.
    let events = ThresholdSet::default().observe(&health, secs(5));
    assert!(events.iter().all(|e| !matches!(e, Event::Threshold { metric, .. } if metric == "cpu")));
}

#[test]
fn garbage_everywhere_never_panics() {
    let tree = router();
    for (rel, junk) in [
        ("proc/meminfo", "MemTotal: lots\n"),
        ("proc/loadavg", "-\n"),
        ("proc/uptime", "\u{0}"),
        ("proc/net/route", "Iface\n\t\t\n00000000 eth0\n"),
        ("proc/net/ipv6_route", "zz 00 eth0\n"),
        ("sys/class/net/eth0/statistics/rx_bytes", "-1\n"),
        ("sys/class/net/eth1/operstate", "\u{1b}[31m\n"),
        ("sys/class/net/eth1/flags", "0xZZ\n"),
        ("sys/class/net/eth1/carrier", "yes\n"),
    ] {
        tree.write(rel, junk);
    }
    let sample = ProcSource::new(tree.paths()).sample().unwrap();
    assert_eq!(
        (sample.memory, sample.load, sample.uptime_s, sample.default_route.as_deref()),
        (None, None, None, None)
    );
    let names: Vec<&str> = sample.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth1", "eth2"], "eth0 with an unreadable counter is left out");
    assert!(!sample.interfaces[0].up && !sample.interfaces[0].carrier);
    let mut agg = Aggregator::new();
    agg.add(sample, secs(0));
    let health = agg.finish();
    assert!(health.mem_pct.is_nan() && health.load[0].is_nan());
    assert_eq!(health.uptime_s, 0);
}

#[test]
fn nothing_readable_is_an_error_naming_the_root() {
    let tree = Tree::new();
    let err = ProcSource::new(tree.paths()).sample().unwrap_err();
    assert!(matches!(&err, MetricsError::NoProc { proc_root } if proc_root == &tree.path("proc")));
    assert!(err.to_string().contains("proc_root"), "{err}");
    let missing = SystemPaths::under(Path::new("/nonexistent/cpe-agent-test"));
    assert!(ProcSource::new(missing).sample().is_err());
}

#[test]
fn default_route_lowest_metric_then_ipv6_then_none_and_failover() {
    let tree = router();
    let mut source = ProcSource::new(tree.paths());
    let mut watch = UplinkWatch::new(Some("eth0".into()), Some("eth1".into()));
    let mut agg = Aggregator::new();
    let mut step = |agg: &mut Aggregator, at: u64| {
        let sample = take(&mut source);
        let event = watch.observe(sample.default_route.as_deref());
        agg.add(sample, secs(at));
        event
    };
    let failover = |from: Option<&str>, to: Option<&str>| {
        Some(Event::Failover { from: from.map(Into::into), to: to.map(Into::into) })
    };

    assert_eq!(step(&mut agg, 0), None, "first observation");
    tree.routes(&[("eth1", 200)]);
    assert_eq!(step(&mut agg, 5), failover(Some("eth0"), Some("eth1")));
    assert_eq!(agg.finish().active_uplink.as_deref(), Some("eth1"));

    // No IPv4 default: the IPv6 default decides.
    tree.routes(&[]);
    let zero = "00000000000000000000000000000000";
    tree.write(
        "proc/net/ipv6_route",
        &format!(
            "{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n\
             {zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0\n"
        ),
    );
    assert_eq!(step(&mut agg, 10), failover(Some("eth1"), Some("eth0")), "found over IPv6");
    // No default route at all.
    tree.remove("proc/net/ipv6_route");
    assert_eq!(step(&mut agg, 15), failover(Some("eth0"), None));
    assert_eq!(step(&mut agg, 20), None);
    assert_eq!(agg.finish().active_uplink, None);
    tree.routes(&[("eth0", 100)]);
    assert_eq!(step(&mut agg, 25), failover(None, Some("eth0")));
    assert_eq!(agg.finish().active_uplink.as_deref(), Some("eth0"));
}

#[test]
fn static_fixture_of_a_dual_uplink_router() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/router");
    let sample = ProcSource::new(SystemPaths::under(&root)).sample().unwrap();
    let cpu = sample.cpu.unwrap();
    assert_eq!((cpu.busy_ticks(), cpu.idle_ticks()), (46233 + 312 + 20791 + 7718, 1_912_045 + 3012));
    let memory = sample.memory.unwrap();
    assert_eq!((memory.total_kib, memory.available_kib), (246_556, 160_204));
    assert_eq!(sample.load, Some([0.42, 0.31, 0.25]));
    assert_eq!(sample.uptime_s, Some(19_880));
    assert_eq!(sample.temperature_c, Some(47.25));
    assert_eq!(sample.default_route.as_deref(), Some("ppp0"), "metric 0 beats wwan0's 100");
    let links: Vec<(&str, bool, bool)> =
        sample.interfaces.iter().map(|i| (i.name.as_str(), i.up, i.carrier)).collect();
    assert_eq!(
        links,
        [("br-lan", true, true), ("eth1", false, false), ("ppp0", true, true), ("wwan0", true, true)],
        "PPP's `unknown` state with IFF_UP is up; lo and bonding_masters skipped"
    );
    let ppp0 = &sample.interfaces[2].counters;
    assert_eq!((ppp0.rx_bytes, ppp0.tx_bytes, ppp0.rx_packets), (3_456_789_012, 987_654_321, 3_012_345));

    // The same tree through the thresholds: 35 % memory, 47 °C, load 0.42 — all normal.
    let mut agg = Aggregator::new();
    agg.add(sample, secs(0));
    let health = agg.finish();
    assert!((health.mem_pct - 35.023).abs() < 0.001, "{}", health.mem_pct);
    let mut thresholds = ThresholdSet::default();
    assert!(thresholds.observe(&health, secs(0)).is_empty());
    assert!(thresholds.levels().iter().all(|(_, level)| *level == Level::Normal));
}
