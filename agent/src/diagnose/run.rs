//! The diagnosis runner: which checks run, in which order, concurrently,
//! each bounded by its own timeout and the whole run by
//! `[diagnose] total_timeout_ms`; and the pure judgement turning each probe's
//! observation into a [`CheckResult`] with its evidence.
//!
//! Groups that do not depend on each other run concurrently: one per
//! terminal, one per LAN interface, the device, and the path (uplink and
//! carrier: link and route first, then gateway, DNS and the platform, then
//! once the carrier's address is known loss/latency/jitter, path MTU and the
//! TLS exchange). Every check a group owns is always reported, as `skipped`
//! with the reason when a prerequisite failed, so the set of names of a run
//! depends only on the configuration and `--segment`. A check still running
//! when the run's time is up is reported `failed` ("did not finish").
//! Results are handed to a progress callback as they finish.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::observe::{in_subnet, InterfaceState, RouteV4};
use super::probes::{
    ConnectFailure, Exchange, ExchangeLimits, ExchangeOutcome, PingOutcome, PingRequest, Probes,
};
use super::{base_name, checks, CheckResult, CheckStatus, Evidence, Segment, Suspension};
use crate::config::{AgentConfig, DiagnoseConfig};
use crate::identity::renewal::CertState;
use crate::metrics::to_f64;

/// A terminal to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalTarget {
    /// Instance name in check names (`terminal.icmp@<name>`).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its registered MAC (lower case), if any.
    pub mac: Option<String>,
}

/// The carrier server to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierTarget {
    /// Host name or address literal from `[carrier] url`.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Everything a run needs besides the probes.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The segments whose checks are reported.
    pub segments: BTreeSet<Segment>,
    /// Terminals to check.
    pub terminals: Vec<TerminalTarget>,
    /// LAN interfaces.
    pub lan: Vec<String>,
    /// Primary uplink interface.
    pub primary: Option<String>,
    /// Backup uplink interface.
    pub backup: Option<String>,
    /// The carrier server, if configured.
    pub carrier: Option<CarrierTarget>,
    /// The platform address one hop beyond the demarcation point.
    pub platform: Option<IpAddr>,
    /// Timeouts, counts and thresholds.
    pub settings: DiagnoseConfig,
    /// The stop order in force, if any (the agent's table must then exist).
    pub suspension: Option<Suspension>,
}

impl RunInput {
    /// The run the configuration describes, limited to `segments`; with
    /// `terminal`, only that terminal is checked (its configured name and
    /// MAC are used when it is a registered one).
    pub fn from_config(
        config: &AgentConfig,
        segments: BTreeSet<Segment>,
        terminal: Option<IpAddr>,
        suspension: Option<Suspension>,
    ) -> Self {
        let registered = config.terminals.iter().map(|t| TerminalTarget {
            name: t.name.clone(),
            ip: t.ip,
            mac: t.mac.as_deref().and_then(super::observe::normalise_mac),
        });
        let terminals = match terminal {
            Some(ip) => vec![registered.clone().find(|t| t.ip == ip).unwrap_or_else(|| TerminalTarget {
                name: ip.to_string(),
                ip,
                mac: None,
            })],
            None => registered.collect(),
        };
        Self {
            segments,
            terminals,
            lan: config.network.lan.clone(),
            primary: config.system.primary_uplink.clone(),
            backup: config.system.backup_uplink.clone(),
            carrier: carrier_target(&config.carrier.url),
            platform: config.network.platform,
            settings: config.diagnose.clone(),
            suspension,
        }
    }

    /// Names (with segments) of every check this run reports, in catalogue order.
    pub fn planned(&self) -> Vec<(String, Segment)> {
        let mut names = Vec::new();
        for (base, segment) in checks::ALL {
            if !self.segments.contains(segment) {
                continue;
            }
            let instances: Vec<String> = match segment {
                Segment::Terminal => self.terminals.iter().map(|t| format!("{base}@{}", t.name)).collect(),
                Segment::Lan => self.lan.iter().map(|i| format!("{base}@{i}")).collect(),
                _ => vec![(*base).to_owned()],
            };
            names.extend(instances.into_iter().map(|n| (n, *segment)));
        }
        names
    }
}

/// Host and port of `[carrier] url` (`https://host[:port][/…]`); `None`
/// when no carrier is configured or the URL is unusable.
pub fn carrier_target(url: &str) -> Option<CarrierTarget> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    Some(CarrierTarget { host, port: parsed.port_or_known_default()? })
}

/// Called with each check result as it finishes.
pub type Progress = Arc<dyn Fn(&CheckResult) + Send + Sync>;

/// Collects results of the selected segments and reports progress.
struct Sink {
    segments: BTreeSet<Segment>,
    results: Mutex<Vec<CheckResult>>,
    progress: Progress,
}

impl Sink {
    fn emit(&self, result: CheckResult) {
        if !self.segments.contains(&result.segment) {
            return;
        }
        (self.progress)(&result);
        self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(result);
    }
}

/// Times one check and emits its result.
struct Timed<'a> {
    sink: &'a Sink,
    name: String,
    segment: Segment,
    started: Instant,
}

impl<'a> Timed<'a> {
    fn start(sink: &'a Sink, name: impl Into<String>, segment: Segment) -> Self {
        Self { sink, name: name.into(), segment, started: Instant::now() }
    }

    fn finish(self, (status, evidence): (CheckStatus, Evidence)) {
        let ms = millis(self.started.elapsed());
        self.sink.emit(CheckResult::new(self.name, self.segment, status, evidence, ms));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

type Judged = (CheckStatus, Evidence);

fn ok(text: impl Into<String>) -> Evidence {
    Evidence::new(text)
}

fn skipped(text: impl Into<String>) -> Judged {
    (CheckStatus::Skipped, Evidence::new(text))
}

/// Runs the diagnosis and returns every planned check's result, in
/// catalogue order (instances in the order configured).
pub async fn run<P: Probes>(probes: Arc<P>, input: Arc<RunInput>, progress: Progress) -> Vec<CheckResult> {
    let sink = Arc::new(Sink { segments: input.segments.clone(), results: Mutex::new(Vec::new()), progress });
    let mut tasks = tokio::task::JoinSet::new();
    let wants = |s: Segment| input.segments.contains(&s);
    if wants(Segment::Terminal) {
        for terminal in input.terminals.clone() {
            let (p, i, s) = (probes.clone(), input.clone(), sink.clone());
            tasks.spawn(async move { terminal_group(&*p, &i, &terminal, &s).await });
        }
    }
    if wants(Segment::Lan) {
        for iface in input.lan.clone() {
            let (p, i, s) = (probes.clone(), input.clone(), sink.clone());
            tasks.spawn(async move { lan_group(&*p, &i, &iface, &s).await });
        }
    }
    if wants(Segment::Device) {
        let (p, i, s) = (probes.clone(), input.clone(), sink.clone());
        tasks.spawn(async move { device_group(&*p, &i, &s).await });
    }
    if wants(Segment::Uplink) || wants(Segment::Carrier) {
        let (p, i, s) = (probes.clone(), input.clone(), sink.clone());
        tasks.spawn(async move { path_group(&*p, &i, &s).await });
    }
    let total = Duration::from_millis(input.settings.total_timeout_ms);
    let _ = tokio::time::timeout(total, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    let mut results =
        std::mem::take(&mut *sink.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for (name, segment) in input.planned() {
        if !results.iter().any(|r| r.name == name) {
            let evidence = Evidence::new(format!("did not finish within the run's {} ms", total.as_millis()))
                .with("timed_out", "true");
            let result = CheckResult::new(name, segment, CheckStatus::Failed, evidence, millis(total));
            (sink.progress)(&result);
            results.push(result);
        }
    }
    reconcile(&mut results, &input.settings);
    let order = input.planned();
    results.sort_by_key(|r| order.iter().position(|(n, _)| *n == r.name).unwrap_or(usize::MAX));
    results
}

/// Cross-check rules that need two results: an echo-filtering carrier is
/// not a loss; under heavy loss a vanished large probe proves no MTU black
/// hole (a warning, the loss is the finding); a device clock far from the
/// carrier's is a device fault.
pub fn reconcile(results: &mut [CheckResult], settings: &DiagnoseConfig) {
    let connected = results
        .iter()
        .any(|r| base_name(&r.name) == checks::UPLINK_TCP_CONNECT && r.status == CheckStatus::Ok);
    for r in results.iter_mut() {
        if base_name(&r.name) == checks::UPLINK_LOSS
            && r.status == CheckStatus::Failed
            && connected
            && r.evidence.values.get("received").is_some_and(|v| v == "0")
        {
            r.status = CheckStatus::Warning;
            r.evidence.text =
                format!("{} (the carrier answers TCP: echo is filtered, not lost)", r.evidence.text);
            r.evidence.values.insert("echo_filtered".into(), "true".into());
        }
    }
    let heavy_loss =
        results.iter().any(|r| base_name(&r.name) == checks::UPLINK_LOSS && r.status == CheckStatus::Failed);
    for r in results.iter_mut() {
        if heavy_loss && base_name(&r.name) == checks::UPLINK_PATH_MTU && r.status == CheckStatus::Failed {
            r.status = CheckStatus::Warning;
            r.evidence.text = format!("{} (unreliable: heavy packet loss)", r.evidence.text);
            r.evidence.values.insert("unreliable_under_loss".into(), "true".into());
        }
    }
    let skew = results
        .iter()
        .find(|r| base_name(&r.name) == checks::CARRIER_STATUS)
        .and_then(|r| r.evidence.values.get("clock_skew_s"))
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(skew) = skew.filter(|s| s.abs() > settings.max_clock_skew_s) {
        for r in results
            .iter_mut()
            .filter(|r| base_name(&r.name) == checks::DEVICE_CLOCK && r.status == CheckStatus::Ok)
        {
            r.status = CheckStatus::Failed;
            r.evidence.text = format!("the device clock is {skew} s off the carrier's");
            r.evidence.values.insert("clock_skew_s".into(), skew.to_string());
        }
    }
}

// ---------------------------------------------------------------- terminal

async fn terminal_group<P: Probes>(probes: &P, input: &RunInput, t: &TerminalTarget, sink: &Sink) {
    let name = |base: &str| format!("{base}@{}", t.name);
    let settings = &input.settings;
    let subnet = Timed::start(sink, name(checks::TERMINAL_SUBNET), Segment::Terminal);
    let lan_subnets = lan_subnets(probes, &input.lan);
    let on_lan = lan_subnets.iter().find(|(net, len, _)| in_subnet(t.ip, *net, *len)).cloned();
    subnet.finish(judge_subnet(t.ip, &lan_subnets));

    let lease = Timed::start(sink, name(checks::TERMINAL_DHCP_LEASE), Segment::Terminal);
    lease.finish(judge_lease(t, probes.leases(), probes.now().unix_timestamp()));

    let off_lan = on_lan.is_none() && !lan_subnets.is_empty();
    let duplicate = Timed::start(sink, name(checks::TERMINAL_DUPLICATE_IP), Segment::Terminal);
    let window = Duration::from_millis(settings.duplicate_window_ms);
    match t.ip {
        _ if off_lan => duplicate.finish(skipped("the terminal's address is outside the LAN")),
        IpAddr::V4(ip) => {
            let scan = tokio::time::timeout(
                window * 2 + Duration::from_millis(500),
                probes.arp_claimants(ip, window),
            )
            .await
            .unwrap_or_else(|_| Err("the ARP listener did not finish".into()));
            duplicate.finish(judge_duplicate(t, scan));
        }
        IpAddr::V6(_) => duplicate.finish(skipped("duplicate detection covers IPv4 (ARP) only")),
    }

    let icmp = Timed::start(sink, name(checks::TERMINAL_ICMP), Segment::Terminal);
    if off_lan {
        icmp.finish(skipped("the terminal's address is outside the LAN"));
    } else {
        let outcome = ping(probes, t.ip, echo(settings)).await;
        icmp.finish(judge_reachable(&outcome, &t.ip.to_string()));
    }

    let neighbour = Timed::start(sink, name(checks::TERMINAL_NEIGHBOUR), Segment::Terminal);
    match t.ip {
        _ if off_lan => neighbour.finish(skipped("the terminal's address is outside the LAN")),
        IpAddr::V4(ip) => {
            let entry = probes.neighbours().into_iter().find(|n| n.ip == ip);
            neighbour.finish(judge_neighbour(t, entry.as_ref()));
        }
        IpAddr::V6(_) => neighbour.finish(skipped("the IPv6 neighbour table is not read (needs netlink)")),
    }
}

/// Connected subnets of the LAN interfaces (and of the bridges they are
/// ports of): `(network, prefix length, interface)`.
fn lan_subnets<P: Probes>(probes: &P, lan: &[String]) -> Vec<(IpAddr, u32, String)> {
    let mut ifaces: Vec<String> = lan.to_vec();
    for iface in lan {
        if let Some(master) = probes.interface(iface).and_then(|s| s.master) {
            ifaces.push(master);
        }
    }
    let mut subnets: Vec<(IpAddr, u32, String)> = probes
        .routes()
        .into_iter()
        .filter(|r| !r.is_default() && r.gateway.is_unspecified() && ifaces.contains(&r.iface))
        .map(|r| (IpAddr::V4(r.destination), r.prefix_len(), r.iface))
        .collect();
    subnets.extend(
        probes
            .inet6_addresses()
            .into_iter()
            .filter(|a| ifaces.contains(&a.iface))
            .map(|a| (IpAddr::V6(a.address), u32::from(a.prefix_len), a.iface)),
    );
    subnets
}

fn judge_subnet(ip: IpAddr, subnets: &[(IpAddr, u32, String)]) -> Judged {
    if subnets.is_empty() {
        return skipped("no LAN subnet is known ([network] lan unset, or no address on it)");
    }
    let list = subnets.iter().map(|(n, l, i)| format!("{n}/{l} ({i})")).collect::<Vec<_>>().join(", ");
    match subnets.iter().find(|(net, len, _)| in_subnet(ip, *net, *len)) {
        Some((net, len, iface)) => (
            CheckStatus::Ok,
            ok(format!("{ip} is in {net}/{len} on {iface}"))
                .with("ip", ip.to_string())
                .with("subnet", format!("{net}/{len}")),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("{ip} is outside the LAN subnets {list}"))
                .with("ip", ip.to_string())
                .with("lan_subnets", list),
        ),
    }
}

fn judge_lease(
    t: &TerminalTarget,
    leases: Option<Result<Vec<super::observe::Lease>, String>>,
    now_unix: i64,
) -> Judged {
    let leases = match leases {
        None => return skipped("this device serves no DHCP ([network] dhcp_leases unset)"),
        Some(Err(e)) => return skipped(e),
        Some(Ok(leases)) => leases,
    };
    let found = leases
        .iter()
        .filter(|l| t.mac.as_deref().map_or(l.ip == t.ip, |mac| l.mac == mac))
        .max_by_key(|l| if l.expiry_unix == 0 { i64::MAX } else { l.expiry_unix });
    let by = t.mac.clone().map_or_else(|| format!("address {}", t.ip), |mac| format!("MAC {mac}"));
    match found {
        Some(lease) if lease.is_active(now_unix) => {
            let mut e = Evidence::new(format!("lease of {} for {by}", lease.ip))
                .with("leased_ip", lease.ip.to_string())
                .with("mac", lease.mac.clone())
                .with("expiry_unix", lease.expiry_unix.to_string());
            if lease.ip != t.ip {
                e.text = format!("{by} holds a lease of {}, not the registered {}", lease.ip, t.ip);
                return (CheckStatus::Warning, e);
            }
            e = e.with("ip", t.ip.to_string());
            (CheckStatus::Ok, e)
        }
        Some(lease) => (
            CheckStatus::Failed,
            Evidence::new(format!("the lease of {} for {by} expired", lease.ip))
                .with("leased_ip", lease.ip.to_string())
                .with("expiry_unix", lease.expiry_unix.to_string()),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("no DHCP lease for {by}")).with("ip", t.ip.to_string()),
        ),
    }
}

fn judge_duplicate(t: &TerminalTarget, scan: Result<Vec<String>, String>) -> Judged {
    match scan {
        Err(e) => skipped(e),
        Ok(macs) if macs.is_empty() => skipped(format!("no host answered ARP for {}", t.ip)),
        Ok(macs) if macs.len() > 1 => (
            CheckStatus::Failed,
            Evidence::new(format!("{} MACs answer for {}: {}", macs.len(), t.ip, macs.join(", ")))
                .with("ip", t.ip.to_string())
                .with("macs", macs.join(",")),
        ),
        Ok(macs) => {
            let mac = macs.join(",");
            match &t.mac {
                Some(registered) if *registered != mac => (
                    CheckStatus::Warning,
                    Evidence::new(format!("{} is answered by {mac}, not the registered {registered}", t.ip))
                        .with("ip", t.ip.to_string())
                        .with("macs", mac)
                        .with("registered_mac", registered.clone()),
                ),
                _ => (
                    CheckStatus::Ok,
                    ok(format!("only {mac} answers for {}", t.ip))
                        .with("ip", t.ip.to_string())
                        .with("macs", mac),
                ),
            }
        }
    }
}

fn judge_neighbour(t: &TerminalTarget, entry: Option<&super::observe::Neighbour>) -> Judged {
    match entry {
        Some(n) if n.is_complete() => {
            let e = Evidence::new(format!("{} is at {} on {}", n.ip, n.mac, n.device))
                .with("ip", n.ip.to_string())
                .with("mac", n.mac.clone())
                .with("device", n.device.clone());
            match &t.mac {
                Some(registered) if *registered != n.mac => {
                    let text = format!("{} is at {}, not the registered {registered}", n.ip, n.mac);
                    (CheckStatus::Warning, Evidence { text, ..e }.with("registered_mac", registered.clone()))
                }
                _ => (CheckStatus::Ok, e),
            }
        }
        Some(n) => (
            CheckStatus::Failed,
            Evidence::new(format!("no ARP answer from {} (entry incomplete on {})", n.ip, n.device))
                .with("ip", n.ip.to_string())
                .with("state", "incomplete"),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("no neighbour entry for {}", t.ip))
                .with("ip", t.ip.to_string())
                .with("state", "none"),
        ),
    }
}

// --------------------------------------------------------------------- LAN

async fn lan_group<P: Probes>(probes: &P, input: &RunInput, iface: &str, sink: &Sink) {
    let name = |base: &str| format!("{base}@{iface}");
    let link = Timed::start(sink, name(checks::LAN_LINK), Segment::Lan);
    let Some(before) = probes.interface(iface) else {
        link.finish((
            CheckStatus::Failed,
            Evidence::new(format!("interface {iface} does not exist"))
                .with("iface", iface)
                .with("present", "false"),
        ));
        for base in [checks::LAN_BRIDGE, checks::LAN_SPEED_DUPLEX, checks::LAN_ERRORS] {
            Timed::start(sink, name(base), Segment::Lan)
                .finish(skipped(format!("interface {iface} does not exist")));
        }
        return;
    };
    link.finish(judge_link(&before));
    Timed::start(sink, name(checks::LAN_BRIDGE), Segment::Lan).finish(judge_bridge(probes, &before));
    Timed::start(sink, name(checks::LAN_SPEED_DUPLEX), Segment::Lan).finish(judge_speed(&before));
    let errors = Timed::start(sink, name(checks::LAN_ERRORS), Segment::Lan);
    let window = Duration::from_millis(input.settings.counter_window_ms);
    tokio::time::sleep(window).await;
    let after = probes.interface(iface);
    errors.finish(judge_errors(iface, &before, after.as_ref(), window));
}

fn judge_link(s: &InterfaceState) -> Judged {
    let e = Evidence::new(String::new())
        .with("iface", s.name.clone())
        .with("operstate", s.operstate.clone())
        .with("admin_up", s.admin_up.to_string())
        .with("carrier", s.carrier.to_string());
    let e = match s.mtu {
        Some(mtu) => e.with("mtu", mtu.to_string()),
        None => e,
    };
    if !s.admin_up {
        (CheckStatus::Failed, Evidence { text: format!("{} is administratively down", s.name), ..e })
    } else if !s.carrier || !s.oper_up {
        (
            CheckStatus::Failed,
            Evidence { text: format!("{} has no link (operstate {}, no carrier)", s.name, s.operstate), ..e },
        )
    } else {
        (CheckStatus::Ok, Evidence { text: format!("{} is up with carrier", s.name), ..e })
    }
}

fn judge_bridge<P: Probes>(probes: &P, s: &InterfaceState) -> Judged {
    if let Some(ports) = &s.bridge_ports {
        let up: Vec<&String> =
            ports.iter().filter(|p| probes.interface(p).is_some_and(|i| i.carrier && i.oper_up)).collect();
        let e = Evidence::new(String::new())
            .with("bridge", s.name.clone())
            .with("ports", ports.join(","))
            .with("ports_up", up.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","));
        return if ports.is_empty() {
            (CheckStatus::Failed, Evidence { text: format!("bridge {} has no ports", s.name), ..e })
        } else if up.is_empty() {
            (
                CheckStatus::Failed,
                Evidence {
                    text: format!("no port of bridge {} has a link ({})", s.name, ports.join(", ")),
                    ..e
                },
            )
        } else {
            (
                CheckStatus::Ok,
                Evidence {
                    text: format!("bridge {}: {} of {} ports up", s.name, up.len(), ports.len()),
                    ..e
                },
            )
        };
    }
    match &s.master {
        Some(bridge) => {
            (CheckStatus::Ok, ok(format!("{} is a port of {bridge}", s.name)).with("bridge", bridge.clone()))
        }
        None => skipped(format!("{} is neither a bridge nor a bridge port", s.name)),
    }
}

fn judge_speed(s: &InterfaceState) -> Judged {
    let (Some(speed), duplex) = (s.speed_mbps, s.duplex.clone()) else {
        return skipped(format!("{} reports no speed (virtual interface or no link)", s.name));
    };
    let duplex = duplex.unwrap_or_else(|| "unknown".into());
    let e = Evidence::new(format!("{} at {speed} Mb/s, {duplex} duplex", s.name))
        .with("speed_mbps", speed.to_string())
        .with("duplex", duplex.clone());
    if duplex == "half" || speed < 100 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

fn judge_errors(
    iface: &str,
    before: &InterfaceState,
    after: Option<&InterfaceState>,
    window: Duration,
) -> Judged {
    let Some(after) = after else {
        return (
            CheckStatus::Failed,
            Evidence::new(format!("{iface} vanished during the run")).with("present", "false"),
        );
    };
    let (Some(b), Some(a)) = (before.errors, after.errors) else {
        return skipped(format!("{iface} has no readable error counters"));
    };
    let d = a.delta_since(&b);
    let e = Evidence::new(format!(
        "{} errors and {} drops on {iface} in {} ms",
        d.errors(),
        d.dropped(),
        window.as_millis()
    ))
    .with("rx_errors", d.rx_errors.to_string())
    .with("tx_errors", d.tx_errors.to_string())
    .with("rx_dropped", d.rx_dropped.to_string())
    .with("tx_dropped", d.tx_dropped.to_string())
    .with("window_ms", window.as_millis().to_string());
    if d.errors() > 0 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

// ------------------------------------------------------------------ device

async fn device_group<P: Probes>(probes: &P, input: &RunInput, sink: &Sink) {
    let settings = &input.settings;
    let clock = Timed::start(sink, checks::DEVICE_CLOCK, Segment::Device);
    clock.finish(judge_clock(probes.now(), probes.build_time()));
    let agent = Timed::start(sink, checks::DEVICE_AGENT, Segment::Device);
    agent.finish(match probes.state_dir_writable() {
        Ok(()) => (
            CheckStatus::Ok,
            ok("configuration loaded, state directory writable").with("version", env!("CARGO_PKG_VERSION")),
        ),
        Err(e) => (CheckStatus::Failed, Evidence::new(e).with("version", env!("CARGO_PKG_VERSION"))),
    });
    Timed::start(sink, checks::DEVICE_MEMORY, Segment::Device)
        .finish(judge_memory(probes.memory(), settings));
    Timed::start(sink, checks::DEVICE_DISK, Segment::Device).finish(judge_disk(probes.disk(), settings));
    Timed::start(sink, checks::DEVICE_CERTIFICATE, Segment::Device)
        .finish(judge_certificate(probes.certificate()));
    Timed::start(sink, checks::DEVICE_SUSPENSION, Segment::Device).finish(match &input.suspension {
        None => (CheckStatus::Ok, ok("no stop order in force").with("suspended", "false")),
        Some(s) => (
            CheckStatus::Warning,
            Evidence::new(format!("service suspended by order {}: {}", s.order, s.reason_en))
                .with("suspended", "true")
                .with("order", s.order.to_string()),
        ),
    });
    let firewall = async {
        let check = Timed::start(sink, checks::DEVICE_FIREWALL, Segment::Device);
        let present =
            tokio::time::timeout(Duration::from_secs(3), probes.firewall_table(&settings.firewall_table))
                .await
                .unwrap_or_else(|_| Err("nft did not answer within 3 s".into()));
        check.finish(judge_firewall(&settings.firewall_table, present, input.suspension.is_some()));
    };
    let cpu = async {
        let check = Timed::start(sink, checks::DEVICE_CPU, Segment::Device);
        let before = probes.cpu();
        tokio::time::sleep(Duration::from_millis(settings.counter_window_ms)).await;
        check.finish(judge_cpu(before, probes.cpu(), settings));
    };
    tokio::join!(firewall, cpu);
}

fn judge_clock(now: time::OffsetDateTime, build: time::OffsetDateTime) -> Judged {
    let e = Evidence::new(String::new())
        .with("now", now.unix_timestamp().to_string())
        .with("build_time", build.unix_timestamp().to_string());
    if now < build {
        (
            CheckStatus::Failed,
            Evidence { text: "the clock is before the agent's build time: it is not set".into(), ..e },
        )
    } else {
        (CheckStatus::Ok, Evidence { text: "the clock is set (after the agent's build time)".into(), ..e })
    }
}

fn judge_memory(memory: Option<crate::metrics::MemInfo>, settings: &DiagnoseConfig) -> Judged {
    let Some(m) = memory.filter(|m| m.total_kib > 0) else { return skipped("/proc/meminfo is unreadable") };
    let free_pct = to_f64(m.available_kib) * 100.0 / to_f64(m.total_kib);
    let e = Evidence::new(format!("{free_pct:.0}% of {} MiB available", m.total_kib / 1024))
        .with("available_kib", m.available_kib.to_string())
        .with("total_kib", m.total_kib.to_string())
        .with("available_pct", format!("{free_pct:.1}"));
    if free_pct < settings.min_free_memory_pct {
        (CheckStatus::Failed, e)
    } else if free_pct < settings.min_free_memory_pct * 2.0 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

fn judge_disk(disk: Result<super::probes::DiskSpace, String>, settings: &DiagnoseConfig) -> Judged {
    match disk {
        Err(e) => (CheckStatus::Failed, Evidence::new(e)),
        Ok(d) => {
            let kib = d.available_bytes / 1024;
            let e = Evidence::new(format!("{kib} KiB free on the state partition"))
                .with("available_kib", kib.to_string())
                .with("total_kib", (d.total_bytes / 1024).to_string());
            if kib < settings.min_free_disk_kib {
                (CheckStatus::Failed, e)
            } else if kib < settings.min_free_disk_kib.saturating_mul(4) {
                (CheckStatus::Warning, e)
            } else {
                (CheckStatus::Ok, e)
            }
        }
    }
}

fn judge_cpu(
    before: Option<crate::metrics::CpuTimes>,
    after: Option<crate::metrics::CpuTimes>,
    settings: &DiagnoseConfig,
) -> Judged {
    let (Some(b), Some(a)) = (before, after) else { return skipped("/proc/stat is unreadable") };
    let busy = a.busy_ticks().saturating_sub(b.busy_ticks());
    let idle = a.idle_ticks().saturating_sub(b.idle_ticks());
    let total = busy.saturating_add(idle);
    if total == 0 {
        return skipped("no CPU time passed between two readings");
    }
    let pct = to_f64(busy) * 100.0 / to_f64(total);
    let e = Evidence::new(format!("CPU {pct:.0}% busy")).with("busy_pct", format!("{pct:.1}"));
    if pct >= settings.cpu_warn_pct {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

fn judge_firewall(table: &str, present: Result<bool, String>, suspended: bool) -> Judged {
    match present {
        Err(e) => skipped(e),
        Ok(present) => {
            let e = Evidence::new(String::new())
                .with("table", table)
                .with("present", present.to_string())
                .with("expected", suspended.to_string());
            match (present, suspended) {
                (true, true) => (
                    CheckStatus::Ok,
                    Evidence { text: format!("table {table} enforces the suspension"), ..e },
                ),
                (false, false) => {
                    (CheckStatus::Ok, Evidence { text: format!("no table {table}: nothing blocked"), ..e })
                }
                (true, false) => (
                    CheckStatus::Failed,
                    Evidence { text: format!("table {table} is present but no stop order is in force"), ..e },
                ),
                (false, true) => (
                    CheckStatus::Failed,
                    Evidence { text: format!("a stop order is in force but table {table} is missing"), ..e },
                ),
            }
        }
    }
}

fn judge_certificate(status: Result<crate::identity::status::CertStatus, String>) -> Judged {
    let s = match status {
        Err(e) => {
            return (
                CheckStatus::Failed,
                Evidence::new(format!("the stored certificate is unreadable: {e}"))
                    .with("state", "unreadable"),
            )
        }
        Ok(s) => s,
    };
    let state =
        serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut e = Evidence::new(String::new()).with("state", state);
    for (key, value) in
        [("not_after", &s.not_after), ("subject", &s.subject), ("institution_code", &s.institution_code)]
    {
        if let Some(v) = value {
            e = e.with(key, v.clone());
        }
    }
    if let Some(days) = s.days_left {
        e = e.with("days_left", days.to_string());
    }
    let until = s.not_after.clone().unwrap_or_default();
    match s.state {
        CertState::Valid => (CheckStatus::Ok, Evidence { text: format!("valid until {until}"), ..e }),
        CertState::Expiring => {
            (CheckStatus::Warning, Evidence { text: format!("expires soon ({until}); renewal is due"), ..e })
        }
        CertState::Expired => (CheckStatus::Failed, Evidence { text: format!("expired at {until}"), ..e }),
        CertState::NotYetValid => {
            (CheckStatus::Failed, Evidence { text: "not yet valid (is the clock behind?)".into(), ..e })
        }
        CertState::None => {
            (CheckStatus::Failed, Evidence { text: "no institution certificate is installed".into(), ..e })
        }
    }
}

// -------------------------------------------------------- uplink + carrier

fn echo(settings: &DiagnoseConfig) -> PingRequest {
    PingRequest::echo(
        settings.echo_count,
        Duration::from_millis(settings.echo_interval_ms),
        Duration::from_millis(settings.echo_timeout_ms),
    )
}

/// A ping bounded by its own schedule plus a margin.
async fn ping<P: Probes>(probes: &P, target: IpAddr, request: PingRequest) -> PingOutcome {
    let bound = request.interval * u32::from(request.count) + request.timeout + Duration::from_millis(500);
    tokio::time::timeout(bound, probes.ping(target, request)).await.unwrap_or_else(|_| PingOutcome {
        sent: request.count,
        error: Some("the echo probe did not finish".into()),
        ..PingOutcome::default()
    })
}

fn loss_pct(outcome: &PingOutcome) -> f64 {
    let sent = outcome.sent.max(1);
    to_f64(u64::from(sent).saturating_sub(outcome.received() as u64)) * 100.0 / to_f64(u64::from(sent))
}

fn ms(us: u64) -> f64 {
    to_f64(us) / 1000.0
}

fn ping_evidence(outcome: &PingOutcome, target: &str) -> Evidence {
    let mut e = Evidence::new(String::new())
        .with("target", target)
        .with("sent", outcome.sent.to_string())
        .with("received", outcome.received().to_string())
        .with("loss_pct", format!("{:.0}", loss_pct(outcome)));
    if !outcome.rtts_us.is_empty() {
        let avg = outcome.rtts_us.iter().sum::<u64>() / outcome.rtts_us.len() as u64;
        e = e.with("rtt_avg_ms", format!("{:.1}", ms(avg)));
    }
    if let Some(error) = &outcome.error {
        e = e.with("error", error.clone());
    }
    e
}

/// Reachability: any answer is ok; none fails; a probe that could not send at all is skipped.
fn judge_reachable(outcome: &PingOutcome, target: &str) -> Judged {
    let e = ping_evidence(outcome, target);
    if outcome.sent == 0 {
        let why = outcome.error.clone().unwrap_or_else(|| "nothing was sent".into());
        if why.contains("ICMP socket") {
            return (CheckStatus::Skipped, Evidence { text: why, ..e });
        }
        return (CheckStatus::Failed, Evidence { text: format!("cannot send to {target}: {why}"), ..e });
    }
    if outcome.received() == 0 {
        (
            CheckStatus::Failed,
            Evidence { text: format!("no echo reply from {target} ({} sent)", outcome.sent), ..e },
        )
    } else {
        let text = format!("{target} answers ({}/{} replies)", outcome.received(), outcome.sent);
        (CheckStatus::Ok, Evidence { text, ..e })
    }
}

struct PathFacts {
    default_route: Option<RouteV4>,
}

/// `uplink.dns`: the carrier's addresses (a literal needs no resolution).
async fn resolve_carrier<P: Probes>(probes: &P, input: &RunInput, sink: &Sink) -> Option<Vec<SocketAddr>> {
    let settings = &input.settings;
    let check = Timed::start(sink, checks::UPLINK_DNS, Segment::Uplink);
    let Some(carrier) = &input.carrier else {
        check.finish(skipped("no carrier is configured ([carrier] url)"));
        return None;
    };
    if let Ok(ip) = carrier.host.parse::<IpAddr>() {
        check.finish(skipped(format!("the carrier address {ip} is a literal: nothing to resolve")));
        return Some(vec![SocketAddr::new(ip, carrier.port)]);
    }
    let limit = Duration::from_millis(settings.dns_timeout_ms);
    let resolved = tokio::time::timeout(limit, probes.resolve(&carrier.host, carrier.port))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())));
    let e = Evidence::new(String::new()).with("host", carrier.host.clone());
    match resolved {
        Ok(addrs) if !addrs.is_empty() => {
            let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(",");
            check.finish((
                CheckStatus::Ok,
                Evidence { text: format!("{} resolves to {list}", carrier.host), ..e }
                    .with("addresses", list),
            ));
            Some(addrs)
        }
        Ok(_) => {
            check.finish((
                CheckStatus::Failed,
                Evidence { text: format!("{} has no address", carrier.host), ..e }
                    .with("error", "no address"),
            ));
            None
        }
        Err(error) => {
            check.finish((
                CheckStatus::Failed,
                Evidence { text: format!("cannot resolve {}: {error}", carrier.host), ..e }
                    .with("error", error),
            ));
            None
        }
    }
}

/// Link and address of the primary and backup uplink.
fn line_checks<P: Probes>(probes: &P, input: &RunInput, routes: &[RouteV4], sink: &Sink) {
    let inet6 = probes.inet6_addresses();
    for (iface, link_name, address_name) in [
        (&input.primary, checks::UPLINK_PRIMARY_LINK, checks::UPLINK_PRIMARY_ADDRESS),
        (&input.backup, checks::UPLINK_BACKUP_LINK, checks::UPLINK_BACKUP_ADDRESS),
    ] {
        let link = Timed::start(sink, link_name, Segment::Uplink);
        let Some(iface) = iface else {
            link.finish(skipped("not configured ([system] primary_uplink / backup_uplink)"));
            Timed::start(sink, address_name, Segment::Uplink).finish(skipped("not configured"));
            continue;
        };
        match probes.interface(iface) {
            Some(state) => link.finish(judge_link(&state)),
            None => link.finish((
                CheckStatus::Failed,
                Evidence::new(format!("interface {iface} does not exist"))
                    .with("iface", iface.clone())
                    .with("present", "false"),
            )),
        }
        let address = Timed::start(sink, address_name, Segment::Uplink);
        let mut subnets: Vec<String> = routes
            .iter()
            .filter(|r| &r.iface == iface && !r.is_default() && r.gateway.is_unspecified())
            .map(|r| format!("{}/{}", r.destination, r.prefix_len()))
            .collect();
        subnets.extend(
            inet6
                .iter()
                .filter(|a| &a.iface == iface && a.scope == 0)
                .map(|a| format!("{}/{}", a.address, a.prefix_len)),
        );
        // Whether this line has a default route of its own (the active one
        // or a standby with a higher metric).
        let default_via = routes
            .iter()
            .filter(|r| &r.iface == iface && r.is_default() && r.is_usable())
            .map(|r| r.gateway.to_string())
            .next()
            .unwrap_or_default();
        let e = Evidence::new(String::new()).with("iface", iface.clone()).with("default_via", default_via);
        address.finish(if subnets.is_empty() {
            (CheckStatus::Failed, Evidence { text: format!("{iface} has no address"), ..e })
        } else {
            let text = format!("{iface} is on {}", subnets.join(", "));
            (CheckStatus::Ok, Evidence { text, ..e }.with("subnets", subnets.join(",")))
        });
    }
}

async fn path_group<P: Probes>(probes: &P, input: &RunInput, sink: &Sink) {
    let settings = &input.settings;
    let routes = probes.routes();
    line_checks(probes, input, &routes, sink);

    let route_check = Timed::start(sink, checks::UPLINK_DEFAULT_ROUTE, Segment::Uplink);
    let facts = PathFacts { default_route: crate::metrics::parse::best_default_v4(&routes).cloned() };
    route_check.finish(match &facts.default_route {
        Some(r) => (
            CheckStatus::Ok,
            ok(format!("default route via {} on {}", r.gateway, r.iface))
                .with("iface", r.iface.clone())
                .with("gateway", r.gateway.to_string())
                .with("metric", r.metric.to_string()),
        ),
        None => (CheckStatus::Failed, Evidence::new("no default route")),
    });
    let active = Timed::start(sink, checks::UPLINK_ACTIVE, Segment::Uplink);
    active.finish(judge_active(probes, input, facts.default_route.as_ref()));

    let gateway = async {
        let arp = Timed::start(sink, checks::UPLINK_GATEWAY_ARP, Segment::Uplink);
        let icmp = Timed::start(sink, checks::UPLINK_GATEWAY_ICMP, Segment::Uplink);
        let Some(route) = facts.default_route.as_ref().filter(|r| !r.gateway.is_unspecified()) else {
            let why = if facts.default_route.is_some() {
                "the default route has no gateway (point-to-point)"
            } else {
                "no default route"
            };
            arp.finish(skipped(why));
            icmp.finish(skipped(why));
            return;
        };
        let outcome = ping(probes, IpAddr::V4(route.gateway), echo(settings)).await;
        let entry = probes.neighbours().into_iter().find(|n| n.ip == route.gateway);
        arp.finish(match entry {
            Some(n) if n.is_complete() => (
                CheckStatus::Ok,
                ok(format!("gateway {} is at {}", n.ip, n.mac))
                    .with("gateway", n.ip.to_string())
                    .with("mac", n.mac),
            ),
            _ => (
                CheckStatus::Failed,
                Evidence::new(format!("no ARP answer from the gateway {}", route.gateway))
                    .with("gateway", route.gateway.to_string()),
            ),
        });
        icmp.finish(judge_reachable(&outcome, &route.gateway.to_string()));
    };
    let dns = resolve_carrier(probes, input, sink);
    let platform = async {
        let check = Timed::start(sink, checks::CARRIER_PLATFORM, Segment::Carrier);
        match input.platform {
            None => check.finish(skipped("no platform address is configured ([network] platform)")),
            Some(ip) => {
                let outcome = ping(probes, ip, echo(settings)).await;
                check.finish(judge_reachable(&outcome, &ip.to_string()));
            }
        }
    };
    let ((), addrs, ()) = tokio::join!(gateway, dns, platform);

    let carrier_addr = addrs.as_ref().and_then(|a| a.iter().find(|s| s.is_ipv4()).or(a.first()).copied());
    let target = carrier_addr.map(|a| a.ip()).or(facts
        .default_route
        .as_ref()
        .map(|r| IpAddr::V4(r.gateway))
        .filter(|ip| !ip.is_unspecified()));
    beyond_gateway(probes, input, sink, carrier_addr, target).await;
}

/// Loss/latency/jitter and path MTU towards `target` (the carrier, else the
/// gateway), and the TLS exchange with the carrier at `carrier_addr`.
async fn beyond_gateway<P: Probes>(
    probes: &P,
    input: &RunInput,
    sink: &Sink,
    carrier_addr: Option<SocketAddr>,
    target: Option<IpAddr>,
) {
    let settings = &input.settings;
    let quality = async {
        let checks3 = [
            Timed::start(sink, checks::UPLINK_LOSS, Segment::Uplink),
            Timed::start(sink, checks::UPLINK_LATENCY, Segment::Uplink),
            Timed::start(sink, checks::UPLINK_JITTER, Segment::Uplink),
        ];
        let Some(target) = target else {
            for c in checks3 {
                c.finish(skipped("neither the carrier's address nor a gateway is known"));
            }
            return;
        };
        let request = PingRequest::echo(
            settings.quality_probes,
            Duration::from_millis(settings.quality_interval_ms),
            Duration::from_millis(settings.echo_timeout_ms),
        );
        let outcome = ping(probes, target, request).await;
        let [loss, latency, jitter] = checks3;
        let (l, lat, jit) = judge_quality(&outcome, &target.to_string(), settings);
        loss.finish(l);
        latency.finish(lat);
        jitter.finish(jit);
    };
    let mtu = async {
        let check = Timed::start(sink, checks::UPLINK_PATH_MTU, Segment::Uplink);
        let Some(target) = target else {
            check.finish(skipped("neither the carrier's address nor a gateway is known"));
            return;
        };
        let mut outcomes = mtu_round(probes, target, mtu_ladder(settings.expected_mtu), settings).await;
        // Narrow the gap between the largest size that passed and the
        // smallest that did not, so the evidence names the path MTU closely.
        if let Some(sizes) = mtu_refinement(&outcomes) {
            outcomes.extend(mtu_round(probes, target, sizes, settings).await);
        }
        check.finish(judge_mtu(&outcomes, settings.expected_mtu, &target.to_string()));
    };
    let exchange = async {
        let tcp = Timed::start(sink, checks::UPLINK_TCP_CONNECT, Segment::Uplink);
        let tls = Timed::start(sink, checks::UPLINK_TLS_HANDSHAKE, Segment::Uplink);
        let accepted = Timed::start(sink, checks::CARRIER_CERTIFICATE_ACCEPTED, Segment::Carrier);
        let status = Timed::start(sink, checks::CARRIER_STATUS, Segment::Carrier);
        let (Some(addr), Some(carrier)) = (carrier_addr, &input.carrier) else {
            let why = if input.carrier.is_none() {
                "no carrier is configured ([carrier] url)"
            } else {
                "the carrier's address is unknown (DNS failed)"
            };
            for c in [tcp, tls, accepted, status] {
                c.finish(skipped(why));
            }
            return;
        };
        let limits = ExchangeLimits {
            connect: Duration::from_millis(settings.connect_timeout_ms),
            tls: Duration::from_millis(settings.tls_timeout_ms),
        };
        let bound = limits.connect + limits.tls + Duration::from_millis(500);
        let result = tokio::time::timeout(bound, probes.carrier_exchange(addr, &carrier.host, limits))
            .await
            .unwrap_or(Exchange {
                outcome: ExchangeOutcome::NotConnected(ConnectFailure::Timeout),
                connect_ms: None,
                handshake_ms: None,
                tls_version: None,
            });
        let [t, h, a, s] = judge_exchange(&result, addr, probes.now().unix_timestamp());
        tcp.finish(t);
        tls.finish(h);
        accepted.finish(a);
        status.finish(s);
    };
    tokio::join!(quality, mtu, exchange);
}

/// Runs futures concurrently, results in input order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn judge_active<P: Probes>(probes: &P, input: &RunInput, route: Option<&RouteV4>) -> Judged {
    let Some(route) = route else {
        return (
            CheckStatus::Failed,
            Evidence::new("no uplink carries a default route").with("active", "none"),
        );
    };
    let role = if input.primary.as_deref() == Some(route.iface.as_str()) {
        "primary"
    } else if input.backup.as_deref() == Some(route.iface.as_str()) {
        "backup"
    } else {
        "other"
    };
    let e = Evidence::new(String::new()).with("active", role).with("iface", route.iface.clone());
    match probes.interface(&route.iface) {
        Some(s) if s.oper_up && s.carrier => (
            CheckStatus::Ok,
            Evidence { text: format!("traffic leaves over the {role} uplink {}", route.iface), ..e },
        ),
        Some(s) => (
            CheckStatus::Failed,
            Evidence {
                text: format!(
                    "the default route uses {} ({role}) but it has no link (operstate {})",
                    route.iface, s.operstate
                ),
                ..e
            },
        ),
        None => (
            CheckStatus::Failed,
            Evidence { text: format!("the default route uses {}, which does not exist", route.iface), ..e },
        ),
    }
}

fn judge_quality(outcome: &PingOutcome, target: &str, settings: &DiagnoseConfig) -> (Judged, Judged, Judged) {
    if outcome.sent == 0 {
        let why = outcome.error.clone().unwrap_or_else(|| "nothing was sent".into());
        let status = if why.contains("ICMP socket") { CheckStatus::Skipped } else { CheckStatus::Failed };
        let e = ping_evidence(outcome, target);
        return ((status, Evidence { text: why.clone(), ..e }), skipped(why.clone()), skipped(why));
    }
    let loss = loss_pct(outcome);
    let e = ping_evidence(outcome, target);
    let loss_status = if loss >= settings.loss_fail_pct {
        CheckStatus::Failed
    } else if loss >= settings.loss_warn_pct && loss > 0.0 {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let loss_judged = (
        loss_status,
        Evidence {
            text: format!("{loss:.0}% loss to {target} ({}/{} replies)", outcome.received(), outcome.sent),
            ..e
        },
    );
    if outcome.rtts_us.is_empty() {
        let why = format!("no reply from {target}");
        return (loss_judged, skipped(why.clone()), skipped(why));
    }
    let n = outcome.rtts_us.len() as u64;
    let avg = ms(outcome.rtts_us.iter().sum::<u64>() / n);
    let min = ms(outcome.rtts_us.iter().copied().min().unwrap_or(0));
    let max = ms(outcome.rtts_us.iter().copied().max().unwrap_or(0));
    let latency_status = if avg >= settings.latency_fail_ms {
        CheckStatus::Failed
    } else if avg >= settings.latency_warn_ms {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let latency = (
        latency_status,
        Evidence::new(format!("round trip to {target}: avg {avg:.1} ms (min {min:.1}, max {max:.1})"))
            .with("target", target)
            .with("rtt_avg_ms", format!("{avg:.1}"))
            .with("rtt_min_ms", format!("{min:.1}"))
            .with("rtt_max_ms", format!("{max:.1}")),
    );
    let diffs: Vec<u64> = outcome.rtts_us.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
    let jitter = if diffs.is_empty() {
        skipped("one reply only: no jitter")
    } else {
        let j = ms(diffs.iter().sum::<u64>() / diffs.len() as u64);
        let status = if j >= settings.jitter_warn_ms { CheckStatus::Warning } else { CheckStatus::Ok };
        (
            status,
            Evidence::new(format!("jitter {j:.1} ms to {target}"))
                .with("target", target)
                .with("jitter_ms", format!("{j:.1}")),
        )
    };
    (loss_judged, latency, jitter)
}

/// Probes each of `sizes` with three "don't fragment" echoes, concurrently.
async fn mtu_round<P: Probes>(
    probes: &P,
    target: IpAddr,
    sizes: Vec<u32>,
    settings: &DiagnoseConfig,
) -> Vec<(u32, PingOutcome)> {
    let running = sizes.into_iter().map(|size| {
        let request = PingRequest {
            packet_size: size as usize,
            dont_fragment: true,
            ..PingRequest::echo(
                3,
                Duration::from_millis(settings.echo_interval_ms),
                Duration::from_millis(settings.echo_timeout_ms),
            )
        };
        async move { (size, ping(probes, target, request).await) }
    });
    join_all(running).await
}

/// Seven sizes evenly between the largest size that passed and the
/// smallest larger one that did not, when they are more than 8 bytes apart.
pub fn mtu_refinement(outcomes: &[(u32, PingOutcome)]) -> Option<Vec<u32>> {
    let passed = outcomes.iter().filter(|(_, o)| o.received() > 0).map(|(s, _)| *s).max()?;
    let failed = outcomes.iter().filter(|(s, o)| *s > passed && o.received() == 0).map(|(s, _)| *s).min()?;
    let gap = failed - passed;
    (gap > 8).then(|| {
        let mut sizes: Vec<u32> =
            (1..8).map(|k| passed + gap * k / 8).filter(|s| *s > passed && *s < failed).collect();
        sizes.dedup();
        sizes
    })
}

/// The IP packet sizes probed with "don't fragment", largest first: the
/// expected MTU, the usual tunnel overheads below it, and common floors.
pub fn mtu_ladder(expected: u32) -> Vec<u32> {
    let mut sizes: Vec<u32> = [0, 8, 20, 40, 80]
        .iter()
        .map(|d| expected.saturating_sub(*d))
        .chain([1280, 1000, 576])
        .filter(|s| *s <= expected && *s >= 576)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
}

fn judge_mtu(outcomes: &[(u32, PingOutcome)], expected: u32, target: &str) -> Judged {
    let largest_ok = outcomes.iter().filter(|(_, o)| o.received() > 0).map(|(s, _)| *s).max();
    let announced = outcomes.iter().find_map(|(_, o)| o.too_big_mtu);
    let local = outcomes.iter().any(|(_, o)| o.local_too_big);
    let mut e =
        Evidence::new(String::new()).with("target", target).with("expected_mtu", expected.to_string());
    if let Some(mtu) = announced {
        e = e.with("too_big_mtu", mtu.to_string());
    }
    let Some(found) = largest_ok else {
        let why = outcomes
            .iter()
            .find_map(|(_, o)| o.error.clone())
            .unwrap_or_else(|| format!("{target} answers no echo"));
        return (CheckStatus::Skipped, Evidence { text: format!("path MTU unknown: {why}"), ..e });
    };
    e = e.with("mtu_found", found.to_string());
    if found >= expected {
        return (
            CheckStatus::Ok,
            Evidence { text: format!("{expected}-byte packets pass unfragmented to {target}"), ..e },
        );
    }
    if let Some(size) =
        outcomes.iter().filter(|(s, o)| *s > found && o.received() == 0).map(|(s, _)| *s).min()
    {
        e = e.with("mtu_lost_from", size.to_string());
    }
    if announced.is_some() || local {
        let text =
            format!("path MTU {found} is below {expected}, but the path says so (PMTU discovery works)");
        (CheckStatus::Warning, Evidence { text, ..e }.with("black_hole", "false"))
    } else {
        let text = format!(
            "MTU black hole: {found}-byte DF packets pass but larger ones up to {expected} vanish without an ICMP error"
        );
        (CheckStatus::Failed, Evidence { text, ..e }.with("black_hole", "true"))
    }
}

#[allow(clippy::too_many_lines)] // one arm per way the exchange can end
/// Maps a carrier exchange to `[uplink.tcp_connect, uplink.tls_handshake,
/// carrier.certificate_accepted, carrier.status]`.
fn judge_exchange(x: &Exchange, addr: SocketAddr, now_unix: i64) -> [Judged; 4] {
    let mut base = Evidence::new(String::new()).with("address", addr.to_string());
    if let Some(ms) = x.connect_ms {
        base = base.with("connect_ms", ms.to_string());
    }
    let tcp_ok = |text: String| (CheckStatus::Ok, Evidence { text, ..base.clone() });
    let mut tls_e = Evidence::new(String::new()).with("address", addr.to_string());
    if let Some(ms) = x.handshake_ms {
        tls_e = tls_e.with("handshake_ms", ms.to_string());
    }
    if let Some(v) = &x.tls_version {
        tls_e = tls_e.with("tls_version", v.clone());
    }
    let tls_ok = (
        CheckStatus::Ok,
        Evidence {
            text: "TLS handshake completed; the carrier's certificate is valid".into(),
            ..tls_e.clone()
        },
    );
    let connected = format!("connected to {addr}");
    match &x.outcome {
        ExchangeOutcome::NotConnected(ConnectFailure::Refused) => [
            (
                CheckStatus::Ok,
                Evidence { text: format!("{addr} answered with a reset: the path works"), ..base.clone() }
                    .with("refused", "true"),
            ),
            skipped("the carrier refused the connection"),
            skipped("the carrier refused the connection"),
            (
                CheckStatus::Failed,
                Evidence::new(format!("connection refused by {addr}: the carrier server is not running"))
                    .with("address", addr.to_string())
                    .with("refused", "true"),
            ),
        ],
        ExchangeOutcome::NotConnected(failure) => {
            let why = match failure {
                ConnectFailure::Timeout => "no answer (timeout)".to_owned(),
                ConnectFailure::Other(e) => e.clone(),
                ConnectFailure::Refused => "refused".to_owned(),
            };
            [
                (
                    CheckStatus::Failed,
                    Evidence { text: format!("cannot connect to {addr}: {why}"), ..base.clone() }
                        .with("error", why),
                ),
                skipped("not connected"),
                skipped("not connected"),
                skipped("not connected"),
            ]
        }
        ExchangeOutcome::NoTls(why) => {
            [tcp_ok(connected), skipped(why.clone()), skipped(why.clone()), skipped(why.clone())]
        }
        ExchangeOutcome::ServerCertificate(why) => [
            tcp_ok(connected),
            (
                CheckStatus::Failed,
                Evidence {
                    text: format!("the server's certificate is not accepted: {why}"),
                    ..tls_e.clone()
                }
                .with("error", why.clone()),
            ),
            skipped("no trusted TLS session"),
            skipped("no trusted TLS session"),
        ],
        ExchangeOutcome::CertificateRefused { alert } => [
            tcp_ok(connected),
            tls_ok,
            (
                CheckStatus::Failed,
                Evidence::new(format!("the carrier refused the institution certificate (TLS alert {alert})"))
                    .with("alert", alert.clone()),
            ),
            skipped("the carrier refused the institution certificate"),
        ],
        ExchangeOutcome::TlsBroken(why) => [
            tcp_ok(connected),
            (
                CheckStatus::Failed,
                Evidence { text: format!("the TLS handshake broke off: {why}"), ..tls_e.clone() }
                    .with("error", why.clone()),
            ),
            skipped("no TLS session"),
            skipped("no TLS session"),
        ],
        ExchangeOutcome::NoAnswer(why) => [
            tcp_ok(connected),
            tls_ok,
            skipped("no HTTP answer"),
            (
                CheckStatus::Failed,
                Evidence::new(format!("no answer to GET /v1/ping: {why}")).with("error", why.clone()),
            ),
        ],
        ExchangeOutcome::Answered { status, pong, message } => {
            let http = status.to_string();
            if *status == 401 || *status == 403 {
                return [
                    tcp_ok(connected),
                    tls_ok,
                    (
                        CheckStatus::Failed,
                        Evidence::new(format!("the carrier answered {status}: {message}"))
                            .with("http_status", http),
                    ),
                    skipped("the carrier refused the institution certificate"),
                ];
            }
            let accepted =
                (CheckStatus::Ok, Evidence::new("the carrier accepted the institution certificate"));
            let status_judged = match pong {
                Some(p) if *status == 200 => {
                    let skew = now_unix - p.server_unix;
                    (
                        CheckStatus::Ok,
                        Evidence::new(format!("the carrier answers (device {})", p.device_id))
                            .with("http_status", http)
                            .with("device_id", p.device_id.clone())
                            .with("server_unix", p.server_unix.to_string())
                            .with("clock_skew_s", skew.to_string()),
                    )
                }
                _ => {
                    let mut text = String::new();
                    let _ = write!(text, "the carrier answered {status}");
                    if !message.is_empty() {
                        let _ = write!(text, ": {message}");
                    }
                    (CheckStatus::Failed, Evidence::new(text).with("http_status", http))
                }
            };
            [tcp_ok(connected), tls_ok, accepted, status_judged]
        }
    }
}

#[cfg(test)]
mod tests;
