//! Scheduling a run: the groups of checks that do not depend on each other
//! run concurrently (one per terminal, one per LAN interface, the device,
//! and the path), each step bounded by its own timeout and the whole run by
//! `[diagnose] total_timeout_ms`; every result goes to the progress callback
//! as it finishes. What each observation means is [`super::judge`]'s work.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::judge::local::{
    judge_bridge, judge_certificate, judge_clock, judge_cpu, judge_disk, judge_duplicate, judge_errors,
    judge_firewall, judge_lease, judge_link, judge_memory, judge_neighbour, judge_speed, judge_subnet,
};
use super::judge::path::{
    judge_active, judge_exchange, judge_mtu, judge_quality, judge_reachable, mtu_ladder, mtu_refinement,
};
use super::judge::{ok, reconcile, skipped};
use super::plan::{RunInput, TerminalTarget};
use crate::config::DiagnoseConfig;
use crate::diagnose::exchange::{ConnectFailure, Exchange, ExchangeLimits, ExchangeOutcome};
use crate::diagnose::observe::{in_subnet, RouteV4};
use crate::diagnose::probes::{PingOutcome, PingRequest, Probes};
use crate::diagnose::{checks, CheckResult, CheckStatus, Evidence, Segment};

/// Called with each check result as it finishes.
pub type Progress = Arc<dyn Fn(&CheckResult) + Send + Sync>;

/// Collects results of the selected segments and reports progress.
pub struct Sink {
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
pub struct Timed<'a> {
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

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

pub async fn terminal_group<P: Probes>(probes: &P, input: &RunInput, t: &TerminalTarget, sink: &Sink) {
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
pub fn lan_subnets<P: Probes>(probes: &P, lan: &[String]) -> Vec<(IpAddr, u32, String)> {
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

pub async fn lan_group<P: Probes>(probes: &P, input: &RunInput, iface: &str, sink: &Sink) {
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

pub async fn device_group<P: Probes>(probes: &P, input: &RunInput, sink: &Sink) {
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

pub fn echo(settings: &DiagnoseConfig) -> PingRequest {
    PingRequest::echo(
        settings.echo_count,
        Duration::from_millis(settings.echo_interval_ms),
        Duration::from_millis(settings.echo_timeout_ms),
    )
}

/// A ping bounded by its own schedule plus a margin.
pub async fn ping<P: Probes>(probes: &P, target: IpAddr, request: PingRequest) -> PingOutcome {
    let bound = request.interval * u32::from(request.count) + request.timeout + Duration::from_millis(500);
    tokio::time::timeout(bound, probes.ping(target, request)).await.unwrap_or_else(|_| PingOutcome {
        sent: request.count,
        error: Some("the echo probe did not finish".into()),
        ..PingOutcome::default()
    })
}

pub struct PathFacts {
    default_route: Option<RouteV4>,
}

/// `uplink.dns`: the carrier's addresses (a literal needs no resolution).
pub async fn resolve_carrier<P: Probes>(
    probes: &P,
    input: &RunInput,
    sink: &Sink,
) -> Option<Vec<SocketAddr>> {
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
pub fn line_checks<P: Probes>(probes: &P, input: &RunInput, routes: &[RouteV4], sink: &Sink) {
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

pub async fn path_group<P: Probes>(probes: &P, input: &RunInput, sink: &Sink) {
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
pub async fn beyond_gateway<P: Probes>(
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
pub async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
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

/// Probes each of `sizes` with three "don't fragment" echoes, concurrently.
pub async fn mtu_round<P: Probes>(
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
