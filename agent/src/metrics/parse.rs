//! Parsers for the text of `/proc` and `/sys` files.
//!
//! Pure functions from a file's text to a value, so they can be tested with
//! captured text and fuzzed without a kernel. They never panic: anything
//! unexpected is a [`MetricsError::Parse`] naming what was being read, and
//! the caller degrades that one field.

use super::sample::{CpuTimes, MemInfo};
use super::MetricsError;

/// Route flag `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x0001;
/// Route flag `RTF_REJECT`: an unreachable/prohibit route (the kernel lists
/// one on `lo` in `ipv6_route`).
const RTF_REJECT: u32 = 0x0200;
/// Interface flag `IFF_UP`: administratively up.
const IFF_UP: u32 = 0x1;

fn parse_error(what: &'static str, detail: impl Into<String>) -> MetricsError {
    MetricsError::Parse { what, detail: detail.into() }
}

/// Parses the aggregate `cpu` line of `/proc/stat`
/// (`cpu  user nice system idle [iowait irq softirq steal guest guest_nice]`).
/// At least the first four numbers are required; older kernels have fewer
/// than ten, and missing ones count as 0.
pub fn parse_stat(text: &str) -> Result<CpuTimes, MetricsError> {
    const WHAT: &str = "/proc/stat";
    let line = text
        .lines()
        .find(|l| l.split_ascii_whitespace().next() == Some("cpu"))
        .ok_or_else(|| parse_error(WHAT, "no aggregate `cpu` line"))?;
    let mut values = [0u64; 8];
    let mut count = 0;
    for (i, field) in line.split_ascii_whitespace().skip(1).enumerate() {
        let value: u64 =
            field.parse().map_err(|_| parse_error(WHAT, format!("`{field}` is not a counter")))?;
        if let Some(slot) = values.get_mut(i) {
            *slot = value;
        }
        count += 1;
    }
    if count < 4 {
        return Err(parse_error(WHAT, format!("the `cpu` line has {count} fields, at least 4 expected")));
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = values;
    Ok(CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal })
}

/// Parses `/proc/meminfo`. `MemTotal` is required; `MemAvailable` is used
/// when present, else (kernels before 3.14) `MemFree + Buffers + Cached +
/// SReclaimable`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, MetricsError> {
    const WHAT: &str = "/proc/meminfo";
    let mut total = None;
    let mut available = None;
    let mut estimate: Option<u64> = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" | "Buffers" | "Cached" | "SReclaimable" => &mut estimate,
            _ => continue,
        };
        let number = rest.split_ascii_whitespace().next().unwrap_or_default();
        let value: u64 = number
            .parse()
            .map_err(|_| parse_error(WHAT, format!("{}: `{number}` is not a number", key.trim())))?;
        *slot = Some(match key.trim() {
            "MemTotal" | "MemAvailable" => value,
            _ => slot.unwrap_or(0).saturating_add(value),
        });
    }
    let total_kib = total.ok_or_else(|| parse_error(WHAT, "no MemTotal"))?;
    if total_kib == 0 {
        return Err(parse_error(WHAT, "MemTotal is 0"));
    }
    let available_kib =
        available.or(estimate).ok_or_else(|| parse_error(WHAT, "no MemAvailable nor MemFree"))?;
    Ok(MemInfo { total_kib, available_kib })
}

/// Parses `/proc/loadavg` (`0.12 0.34 0.56 1/123 4567`) into the three averages.
pub fn parse_loadavg(text: &str) -> Result<[f32; 3], MetricsError> {
    const WHAT: &str = "/proc/loadavg";
    let mut fields = text.split_ascii_whitespace();
    let mut load = [0.0f32; 3];
    for slot in &mut load {
        let field = fields.next().ok_or_else(|| parse_error(WHAT, "fewer than 3 load averages"))?;
        let value: f32 =
            field.parse().map_err(|_| parse_error(WHAT, format!("`{field}` is not a number")))?;
        if !value.is_finite() || value < 0.0 {
            return Err(parse_error(WHAT, format!("`{field}` is not a load average")));
        }
        *slot = value;
    }
    Ok(load)
}

/// Parses `/proc/uptime` (`12345.67 54321.00`) into whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, MetricsError> {
    const WHAT: &str = "/proc/uptime";
    let field = text.split_ascii_whitespace().next().ok_or_else(|| parse_error(WHAT, "empty"))?;
    let (whole, fraction) = field.split_once('.').unwrap_or((field, "0"));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_error(WHAT, format!("`{field}` is not a number of seconds")));
    }
    whole.parse().map_err(|_| parse_error(WHAT, format!("`{field}` is not a number of seconds")))
}

/// Parses a thermal zone's `temp` (millidegrees Celsius) into °C.
pub fn parse_millidegrees(text: &str) -> Result<f32, MetricsError> {
    let field = text.trim();
    let milli: i32 = field
        .parse()
        .map_err(|_| parse_error("thermal_zone*/temp", format!("`{field}` is not in millidegrees")))?;
    Ok(super::to_f32(f64::from(milli) / 1000.0))
}

/// Parses a decimal counter file such as `statistics/rx_bytes`.
pub fn parse_counter(text: &str) -> Result<u64, MetricsError> {
    let field = text.trim();
    field.parse().map_err(|_| parse_error("statistics counter", format!("`{field}` is not a counter")))
}

/// Whether an interface counts as up, from its `operstate` and `flags`
/// files. `up` is up; `unknown` (PPP, tunnels and some drivers never report
/// a state) is up when the administrative `IFF_UP` flag is set; anything
/// else (`down`, `dormant`, `lowerlayerdown`, …) is not.
pub fn interface_up(operstate: &str, flags: Option<&str>) -> bool {
    match operstate.trim() {
        "up" => true,
        "unknown" => flags.and_then(parse_hex).is_some_and(|f| f & IFF_UP != 0),
        _ => false,
    }
}

/// Parses a `carrier` file: `1` is carrier, anything else is not.
pub fn parse_carrier(text: &str) -> bool {
    text.trim() == "1"
}

fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// One usable line of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteV4 {
    /// Interface name.
    pub iface: String,
    /// Destination network.
    pub destination: std::net::Ipv4Addr,
    /// Next hop (`0.0.0.0` for a connected route).
    pub gateway: std::net::Ipv4Addr,
    /// `RTF_*` flags.
    pub flags: u32,
    /// Route metric.
    pub metric: u32,
    /// Destination mask.
    pub mask: std::net::Ipv4Addr,
}

impl RouteV4 {
    /// A default route (destination and mask `0.0.0.0`).
    pub fn is_default(&self) -> bool {
        self.destination.is_unspecified() && self.mask.is_unspecified()
    }

    /// Usable: `RTF_UP`, not a reject route, not on `lo`.
    pub fn is_usable(&self) -> bool {
        is_usable(&self.iface, self.flags)
    }

    /// The prefix length of the mask (contiguous masks; others count their set bits).
    pub fn prefix_len(&self) -> u32 {
        u32::from(self.mask).count_ones()
    }
}

/// `/proc/net/route` prints addresses as the hex of the in-memory
/// (network order) `u32` on a little-endian host: `0101A8C0` is 192.168.1.1.
fn parse_route_addr(field: &str) -> Option<std::net::Ipv4Addr> {
    let value = u32::from_str_radix(field, 16).ok()?;
    Some(std::net::Ipv4Addr::from(value.to_le_bytes()))
}

/// Every well-formed line of `/proc/net/route` (the header and malformed
/// lines are skipped).
pub fn parse_route_v4(text: &str) -> Vec<RouteV4> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [iface, destination, gateway, flags, _refcnt, _use, metric, mask, ..] = fields[..] else {
                return None;
            };
            Some(RouteV4 {
                iface: iface.to_owned(),
                destination: parse_route_addr(destination)?,
                gateway: parse_route_addr(gateway)?,
                flags: parse_hex(flags)?,
                metric: metric.parse().ok()?,
                mask: parse_route_addr(mask)?,
            })
        })
        .collect()
}

/// The usable IPv4 default route of `/proc/net/route` with the lowest
/// metric (the first listed on a tie).
pub fn best_default_v4(routes: &[RouteV4]) -> Option<&RouteV4> {
    let mut best: Option<&RouteV4> = None;
    for route in routes.iter().filter(|r| r.is_default() && r.is_usable()) {
        if best.is_none_or(|b| route.metric < b.metric) {
            best = Some(route);
        }
    }
    best
}

/// The interface of the IPv4 default route in `/proc/net/route`: destination
/// and mask `00000000`, flag `RTF_UP`, not a reject route, not `lo`; the
/// lowest metric wins, the first listed on a tie. Malformed lines are skipped.
pub fn default_route_v4(text: &str) -> Option<String> {
    best_default_v4(&parse_route_v4(text)).map(|r| r.iface.clone())
}

/// The interface of the IPv6 default route in `/proc/net/ipv6_route`
/// (destination `::/0`, flag `RTF_UP`, not a reject route, not `lo`); the
/// lowest metric wins, the first listed on a tie. Malformed lines are skipped.
pub fn default_route_v6(text: &str) -> Option<String> {
    let mut best: Option<(u32, &str)> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [destination, prefix_len, _src, _src_len, _next_hop, metric, _refcnt, _use, flags, iface] =
            fields[..]
        else {
            continue;
        };
        let (Some(flags), Some(metric)) = (parse_hex(flags), parse_hex(metric)) else { continue };
        let default = destination.len() == 32 && destination.bytes().all(|b| b == b'0') && prefix_len == "00";
        if default && is_usable(iface, flags) {
            consider(&mut best, metric, iface);
        }
    }
    best.map(|(_, iface)| iface.to_owned())
}

fn is_usable(iface: &str, flags: u32) -> bool {
    iface != "lo" && flags & RTF_UP != 0 && flags & RTF_REJECT == 0
}

fn consider<'a>(best: &mut Option<(u32, &'a str)>, metric: u32, iface: &'a str) {
    if best.is_none_or(|(m, _)| metric < m) {
        *best = Some((metric, iface));
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn stat_full_short_and_garbage() {
        let text = "cpu  10 20 30 400 50 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\n";
        let t = parse_stat(text).unwrap();
        assert_eq!(
            t,
            CpuTimes { user: 10, nice: 20, system: 30, idle: 400, iowait: 50, irq: 6, softirq: 7, steal: 8 }
        );
        let old = parse_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!((old.idle, old.iowait, old.steal), (4, 0, 0));
        for bad in
            ["", "cpu0 1 2 3 4", "cpu 1 2 3", "cpu 1 2 x 4", "cpu -1 2 3 4", "\u{0}\u{ff}garbage", "cpu"]
        {
            assert!(matches!(parse_stat(bad), Err(MetricsError::Parse { .. })), "{bad:?}");
        }
    }

    #[test]
    fn meminfo_available_and_old_kernel_estimate() {
        let text = "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\n";
        assert_eq!(parse_meminfo(text).unwrap(), MemInfo { total_kib: 1_000_000, available_kib: 250_000 });
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSwapCached: 9 kB\nSReclaimable: 25 kB\n";
        assert_eq!(parse_meminfo(old).unwrap(), MemInfo { total_kib: 1000, available_kib: 375 });
        for bad in [
            "",
            "MemTotal: 0 kB\nMemAvailable: 0 kB",
            "MemTotal: lots",
            "MemTotal: 10 kB\n",
            "MemAvailable: 5 kB",
        ] {
            assert!(parse_meminfo(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loadavg_and_uptime() {
        assert_eq!(parse_loadavg("0.50 1.25 2.00 1/123 4567\n").unwrap(), [0.5, 1.25, 2.0]);
        for bad in ["", "0.5 1.0", "a b c", "NaN 1 1", "-1 0 0", "inf 0 0"] {
            assert!(parse_loadavg(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_uptime("12345.67 54321.00\n").unwrap(), 12345);
        assert_eq!(parse_uptime("42\n").unwrap(), 42);
        for bad in ["", "-5.0 1", "1e9 2", "12.x 1", "abc"] {
            assert!(parse_uptime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn temperature_counters_state_and_carrier() {
        assert_eq!(parse_millidegrees("52500\n").unwrap(), 52.5);
        assert_eq!(parse_millidegrees("-5000").unwrap(), -5.0);
        assert!(parse_millidegrees("hot").is_err());
        assert_eq!(parse_counter("18446744073709551615\n").unwrap(), u64::MAX);
        assert!(parse_counter("18446744073709551616").is_err());
        assert!(parse_counter("").is_err());
        assert!(interface_up("up\n", None));
        assert!(interface_up("unknown\n", Some("0x1091\n")));
        assert!(!interface_up("unknown\n", Some("0x1090\n")));
        assert!(!interface_up("unknown\n", None));
        assert!(!interface_up("down\n", Some("0x1003")));
        assert!(!interface_up("lowerlayerdown", Some("0x1003")));
        assert!(parse_carrier("1\n"));
        assert!(!parse_carrier("0\n"));
        assert!(!parse_carrier(""));
    }

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t00000000\t0102A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
        eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
        eth2\t00000000\t0103A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";

    #[test]
    fn v4_default_route_lowest_metric_first_on_tie() {
        assert_eq!(default_route_v4(ROUTE).as_deref(), Some("eth0"));
        let down = ROUTE.replace("0101A8C0\t0003", "0101A8C0\t0002");
        assert_eq!(default_route_v4(&down).as_deref(), Some("eth2"));
        let only_subnet = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_v4(only_subnet), None);
        assert_eq!(default_route_v4(""), None);
        assert_eq!(default_route_v4("eth0 00000000 0 zz 0 0 1 00000000\nshort line\n"), None);
        let routes = parse_route_v4(ROUTE);
        assert_eq!(routes.len(), 4);
        let best = best_default_v4(&routes).unwrap();
        assert_eq!(best.gateway, std::net::Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(routes[2].destination, std::net::Ipv4Addr::new(192, 168, 1, 0));
        assert_eq!(routes[2].prefix_len(), 24);
        assert!(!routes[2].is_default());
    }

    #[test]
    fn v6_default_route_ignores_reject_on_lo() {
        let zero = "00000000000000000000000000000000";
        let text = format!(
            "{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n\
             fe800000000000000000000000000000 40 {zero} 00 {zero} 00000100 00000001 00000000 00000001     eth0\n\
             {zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     ppp1\n\
             {zero} 00 {zero} 00 fe800000000000000000000000000001 00000100 00000001 00000000 00450003     ppp0\n"
        );
        assert_eq!(default_route_v6(&text).as_deref(), Some("ppp0"));
        assert_eq!(
            default_route_v6(&text.replace("00450003     ppp0", "00450203     ppp0")).as_deref(),
            Some("ppp1")
        );
        assert_eq!(default_route_v6("garbage\n"), None);
    }
}
