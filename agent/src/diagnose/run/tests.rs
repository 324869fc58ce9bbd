//! The runner against a fake [`Probes`]: every planned check is reported,
//! faults land in the right check with their evidence, time limits hold,
//! groups run concurrently, progress is reported, odd state does not panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines)]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::judge::local::{
    judge_bridge, judge_certificate, judge_clock, judge_firewall, judge_lease, judge_speed,
};
use super::judge::path::judge_exchange;
use super::*;
use crate::config::DiagnoseConfig;
use crate::diagnose::exchange::{ConnectFailure, Exchange, ExchangeLimits, ExchangeOutcome};
use crate::diagnose::observe::{ErrorCounters, Inet6Address, InterfaceState, Lease, Neighbour, RouteV4};
use crate::diagnose::probes::{DiskSpace, PingOutcome, PingRequest, Probes};
use crate::diagnose::{checks, CheckResult, CheckStatus, Evidence, Segment};
use crate::diagnose::{verdict, VerdictSegment};
use crate::identity::renewal::CertState;
use crate::identity::status::CertStatus;
use crate::metrics::{CpuTimes, MemInfo};

const TERMINAL: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 20);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const PLATFORM: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn iface(name: &str) -> InterfaceState {
    InterfaceState {
        name: name.into(),
        operstate: "up".into(),
        admin_up: true,
        oper_up: true,
        carrier: true,
        speed_mbps: Some(1000),
        duplex: Some("full".into()),
        mtu: Some(1500),
        errors: Some(ErrorCounters::default()),
        bridge_ports: None,
        master: None,
    }
}

fn route(iface: &str, dest: [u8; 4], gateway: [u8; 4], prefix: u32, metric: u32) -> RouteV4 {
    RouteV4 {
        iface: iface.into(),
        destination: Ipv4Addr::from(dest),
        gateway: Ipv4Addr::from(gateway),
        flags: if gateway == [0; 4] { 0x1 } else { 0x3 },
        metric,
        mask: Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix).unwrap_or(0)),
    }
}

/// A configurable system: healthy by default.
struct Fake {
    interfaces: Mutex<HashMap<String, InterfaceState>>,
    /// Interface name → reads left before it vanishes.
    vanishing: Mutex<HashMap<String, usize>>,
    neighbours: Vec<Neighbour>,
    routes: Mutex<Vec<RouteV4>>,
    dead: BTreeSet<IpAddr>,
    lossy: Option<(IpAddr, usize)>,
    path_mtu: Option<(u32, bool)>,
    claimants: Vec<String>,
    resolve: Result<Vec<SocketAddr>, String>,
    exchange: ExchangeOutcome,
    cert: CertState,
    firewall: Result<bool, String>,
    hang: bool,
    resolver_hangs: bool,
    ping_delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    cpu_reads: AtomicUsize,
    now: time::OffsetDateTime,
}

impl Fake {
    fn healthy() -> Self {
        let mut interfaces = HashMap::new();
        for name in ["lan0", "wan0", "wwan0"] {
            interfaces.insert(name.to_owned(), iface(name));
        }
        let now = time::OffsetDateTime::now_utc();
        Self {
            interfaces: Mutex::new(interfaces),
            vanishing: Mutex::new(HashMap::new()),
            neighbours: vec![
                Neighbour {
                    ip: TERMINAL,
                    mac: "02:00:00:00:00:20".into(),
                    flags: 0x2,
                    device: "lan0".into(),
                },
                Neighbour { ip: GATEWAY, mac: "02:00:00:00:00:01".into(), flags: 0x2, device: "wan0".into() },
                Neighbour {
                    ip: Ipv4Addr::new(10, 64, 0, 1),
                    mac: "02:00:00:00:00:02".into(),
                    flags: 0x2,
                    device: "wwan0".into(),
                },
            ],
            routes: Mutex::new(vec![
                route("wan0", [0; 4], [10, 0, 0, 1], 0, 100),
                route("wwan0", [0; 4], [10, 64, 0, 1], 0, 200),
                route("wan0", [10, 0, 0, 0], [0; 4], 24, 0),
                route("wwan0", [10, 64, 0, 0], [0; 4], 24, 0),
                route("lan0", [192, 168, 10, 0], [0; 4], 24, 0),
            ]),
            dead: BTreeSet::new(),
            lossy: None,
            path_mtu: None,
            claimants: vec!["02:00:00:00:00:20".into()],
            resolve: Ok(vec![SocketAddr::new(IpAddr::V4(CARRIER), 8443)]),
            exchange: ExchangeOutcome::Answered {
                status: 200,
                pong: Some(cpe_protocol::Pong {
                    device_id: "1312345678/cpe".into(),
                    server_unix: now.unix_timestamp(),
                }),
                message: String::new(),
            },
            cert: CertState::Valid,
            firewall: Ok(false),
            hang: false,
            resolver_hangs: false,
            ping_delay: Duration::ZERO,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            cpu_reads: AtomicUsize::new(0),
            now,
        }
    }

    fn set_iface(&self, name: &str, f: impl FnOnce(&mut InterfaceState)) {
        f(self.interfaces.lock().unwrap().get_mut(name).unwrap());
    }
}

impl Probes for Fake {
    fn interface(&self, name: &str) -> Option<InterfaceState> {
        if let Some(left) = self.vanishing.lock().unwrap().get_mut(name) {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        self.interfaces.lock().unwrap().get(name).cloned()
    }
    fn neighbours(&self) -> Vec<Neighbour> {
        self.neighbours.clone()
    }
    fn routes(&self) -> Vec<RouteV4> {
        self.routes.lock().unwrap().clone()
    }
    fn inet6_addresses(&self) -> Vec<Inet6Address> {
        Vec::new()
    }
    fn leases(&self) -> Option<Result<Vec<Lease>, String>> {
        None
    }
    fn memory(&self) -> Option<MemInfo> {
        Some(MemInfo { total_kib: 1_000_000, available_kib: 600_000 })
    }
    fn cpu(&self) -> Option<CpuTimes> {
        let ticks = 100 * self.cpu_reads.fetch_add(1, Ordering::SeqCst) as u64;
        Some(CpuTimes { user: ticks / 10, idle: ticks - ticks / 10, ..CpuTimes::default() })
    }
    fn disk(&self) -> Result<DiskSpace, String> {
        Ok(DiskSpace { available_bytes: 100 << 20, total_bytes: 1 << 30 })
    }
    fn state_dir_writable(&self) -> Result<(), String> {
        Ok(())
    }
    fn certificate(&self) -> Result<CertStatus, String> {
        Ok(CertStatus {
            subject: Some("CN=clinic".into()),
            issuer: None,
            serial: None,
            not_before: None,
            not_after: Some("2027-01-01T00:00:00Z".into()),
            days_left: Some(30),
            fingerprint_sha256: None,
            institution_code: Some("1312345678".into()),
            key_type: None,
            state: self.cert,
        })
    }
    fn now(&self) -> time::OffsetDateTime {
        self.now
    }
    fn build_time(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::UNIX_EPOCH
    }
    async fn firewall_table(&self, _table: &str) -> Result<bool, String> {
        self.firewall.clone()
    }
    async fn ping(&self, target: IpAddr, request: PingRequest) -> PingOutcome {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if self.hang {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.ping_delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let count = usize::from(request.count);
        let mut answered = if self.dead.contains(&target) { 0 } else { count };
        if let Some((lossy, lost)) = self.lossy {
            if lossy == target {
                answered = count.saturating_sub(lost * count / 20);
            }
        }
        let mut outcome = PingOutcome { sent: request.count, ..PingOutcome::default() };
        if let Some((mtu, black_hole)) = self.path_mtu {
            if request.dont_fragment && request.packet_size > mtu as usize {
                answered = 0;
                if !black_hole {
                    outcome.too_big_mtu = Some(mtu);
                }
            }
        }
        outcome.rtts_us = (0..answered).map(|i| 1000 + 100 * (i as u64 % 2)).collect();
        outcome
    }
    async fn arp_claimants(&self, _ip: Ipv4Addr, _window: Duration) -> Result<Vec<String>, String> {
        Ok(self.claimants.clone())
    }
    async fn resolve(&self, _host: &str, _port: u16) -> Result<Vec<SocketAddr>, String> {
        if self.resolver_hangs {
            std::future::pending::<()>().await;
        }
        self.resolve.clone()
    }
    async fn carrier_exchange(&self, _addr: SocketAddr, _name: &str, _limits: ExchangeLimits) -> Exchange {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Exchange {
            outcome: self.exchange.clone(),
            connect_ms: Some(1),
            handshake_ms: Some(5),
            tls_version: Some("TLSv1_3".into()),
        }
    }
}

fn input() -> RunInput {
    RunInput {
        segments: Segment::PATH.into_iter().collect(),
        terminals: vec![TerminalTarget {
            name: "reception".into(),
            ip: IpAddr::V4(TERMINAL),
            mac: Some("02:00:00:00:00:20".into()),
        }],
        lan: vec!["lan0".into()],
        primary: Some("wan0".into()),
        backup: Some("wwan0".into()),
        carrier: Some(CarrierTarget { host: "carrier.example".into(), port: 8443 }),
        platform: Some(IpAddr::V4(PLATFORM)),
        settings: DiagnoseConfig {
            counter_window_ms: 20,
            echo_interval_ms: 1,
            duplicate_window_ms: 10,
            ..DiagnoseConfig::default()
        },
        suspension: None,
    }
}

async fn run_fake(fake: Fake, input: RunInput) -> (Vec<CheckResult>, Arc<Fake>) {
    let fake = Arc::new(fake);
    let results = run(fake.clone(), Arc::new(input), Arc::new(|_: &CheckResult| {})).await;
    (results, fake)
}

fn find<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} in {results:#?}"))
}

fn value<'a>(results: &'a [CheckResult], name: &str, key: &str) -> &'a str {
    find(results, name).evidence.values.get(key).map_or("", String::as_str)
}

#[tokio::test]
async fn healthy_system_reports_every_planned_check_and_no_fault() {
    let planned = input().planned();
    let (results, _) = run_fake(Fake::healthy(), input()).await;
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    let expected: Vec<&str> = planned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected, "every planned check, in catalogue order");
    let v = verdict(&results, None);
    assert_eq!(
        v.segment,
        VerdictSegment::None,
        "{:#?}",
        results.iter().filter(|r| r.status != CheckStatus::Ok).collect::<Vec<_>>()
    );
    assert_eq!(v.exit_code(), 0);
    assert_eq!(value(&results, checks::UPLINK_ACTIVE, "active"), "primary");
    assert_eq!(value(&results, checks::UPLINK_BACKUP_ADDRESS, "default_via"), "10.64.0.1");
    assert_eq!(value(&results, checks::UPLINK_PRIMARY_ADDRESS, "subnets"), "10.0.0.0/24");
    assert_eq!(value(&results, checks::UPLINK_PATH_MTU, "mtu_found"), "1500");
    assert_eq!(value(&results, checks::UPLINK_LOSS, "loss_pct"), "0");
    assert_eq!(value(&results, checks::CARRIER_STATUS, "http_status"), "200");
    assert_eq!(find(&results, checks::UPLINK_DNS).evidence.values["addresses"], CARRIER.to_string());
}

#[tokio::test]
async fn each_fault_lands_in_its_check_with_evidence() {
    let dead = |ip: Ipv4Addr| {
        let mut f = Fake::healthy();
        f.dead.insert(IpAddr::V4(ip));
        f
    };
    let cases: Vec<(&str, Fake, VerdictSegment, &str, &str, &str)> = vec![
        (
            "terminal down",
            dead(TERMINAL),
            VerdictSegment::Terminal,
            "terminal.icmp@reception",
            "received",
            "0",
        ),
        (
            "duplicate IP",
            Fake {
                claimants: vec!["02:00:00:00:00:20".into(), "02:00:00:00:00:99".into()],
                ..Fake::healthy()
            },
            VerdictSegment::Terminal,
            "terminal.duplicate_ip@reception",
            "macs",
            "02:00:00:00:00:20,02:00:00:00:00:99",
        ),
        (
            "gateway unreachable",
            dead(GATEWAY),
            VerdictSegment::Uplink,
            checks::UPLINK_GATEWAY_ICMP,
            "received",
            "0",
        ),
        (
            "DNS failure",
            Fake { resolve: Err("failed to lookup address information".into()), ..Fake::healthy() },
            VerdictSegment::Uplink,
            checks::UPLINK_DNS,
            "error",
            "failed to lookup address information",
        ),
        (
            "MTU black hole",
            Fake { path_mtu: Some((1400, true)), ..Fake::healthy() },
            VerdictSegment::Uplink,
            checks::UPLINK_PATH_MTU,
            "black_hole",
            "true",
        ),
        (
            "heavy loss",
            Fake { lossy: Some((IpAddr::V4(CARRIER), 8)), ..Fake::healthy() },
            VerdictSegment::Uplink,
            checks::UPLINK_LOSS,
            "loss_pct",
            "40",
        ),
        (
            "carrier stopped",
            Fake { exchange: ExchangeOutcome::NotConnected(ConnectFailure::Refused), ..Fake::healthy() },
            VerdictSegment::Carrier,
            checks::CARRIER_STATUS,
            "refused",
            "true",
        ),
        (
            "certificate refused",
            Fake {
                exchange: ExchangeOutcome::CertificateRefused { alert: "CertificateExpired".into() },
                ..Fake::healthy()
            },
            VerdictSegment::Carrier,
            checks::CARRIER_CERTIFICATE_ACCEPTED,
            "alert",
            "CertificateExpired",
        ),
        (
            "platform unreachable",
            dead(PLATFORM),
            VerdictSegment::Carrier,
            checks::CARRIER_PLATFORM,
            "received",
            "0",
        ),
        (
            "certificate expired",
            Fake { cert: CertState::Expired, ..Fake::healthy() },
            VerdictSegment::Device,
            checks::DEVICE_CERTIFICATE,
            "state",
            "expired",
        ),
        (
            "firewall table without an order",
            Fake { firewall: Ok(true), ..Fake::healthy() },
            VerdictSegment::Device,
            checks::DEVICE_FIREWALL,
            "present",
            "true",
        ),
    ];
    for (what, fake, segment, check, key, expected) in cases {
        let (results, _) = run_fake(fake, input()).await;
        let v = verdict(&results, None);
        assert_eq!(v.segment, segment, "{what}: {v:#?}");
        assert_eq!(find(&results, check).status, CheckStatus::Failed, "{what}");
        assert_eq!(value(&results, check, key), expected, "{what}: {:?}", find(&results, check));
        assert!(v.failed_checks.contains(&check.to_owned()), "{what}: {:?}", v.failed_checks);
    }
}

#[tokio::test]
async fn lan_and_wan_links_down() {
    let fake = Fake::healthy();
    fake.set_iface("lan0", |i| {
        i.oper_up = false;
        i.carrier = false;
        i.operstate = "down".into();
    });
    let (results, _) = run_fake(fake, input()).await;
    assert_eq!(verdict(&results, None).segment, VerdictSegment::Lan);
    assert_eq!(value(&results, "lan.link@lan0", "carrier"), "false");

    // Primary down, the default route moved to the backup: healthy with a warning.
    let fake = Fake::healthy();
    fake.set_iface("wan0", |i| i.carrier = false);
    fake.routes.lock().unwrap().retain(|r| r.iface != "wan0");
    let (results, _) = run_fake(fake, input()).await;
    let v = verdict(&results, None);
    assert_eq!(v.segment, VerdictSegment::None, "{v:#?}");
    assert!(v.warnings.contains(&checks::UPLINK_PRIMARY_LINK.to_owned()), "{v:#?}");
    assert_eq!(value(&results, checks::UPLINK_ACTIVE, "active"), "backup");

    // The only uplink down but its route still listed: a fault, not a warning.
    let fake = Fake::healthy();
    fake.set_iface("wan0", |i| i.carrier = false);
    let mut only_primary = input();
    only_primary.backup = None;
    let (results, _) = run_fake(fake, only_primary).await;
    assert_eq!(find(&results, checks::UPLINK_ACTIVE).status, CheckStatus::Failed);
    assert_eq!(verdict(&results, None).segment, VerdictSegment::Uplink);
}

#[tokio::test]
async fn a_vanishing_interface_is_a_finding_not_a_panic() {
    let fake = Fake::healthy();
    fake.vanishing.lock().unwrap().insert("lan0".into(), 1);
    let mut lan_only = input();
    lan_only.segments = [Segment::Lan].into();
    let (results, _) = run_fake(fake, lan_only).await;
    let errors = find(&results, "lan.errors@lan0");
    assert_eq!(
        (errors.status, value(&results, "lan.errors@lan0", "present")),
        (CheckStatus::Failed, "false")
    );

    let fake = Fake::healthy();
    fake.interfaces.lock().unwrap().clear();
    fake.routes.lock().unwrap().clear();
    let (results, _) = run_fake(fake, input()).await;
    assert_eq!(find(&results, "lan.link@lan0").status, CheckStatus::Failed);
    assert_eq!(find(&results, "lan.errors@lan0").status, CheckStatus::Skipped);
    assert_eq!(find(&results, checks::UPLINK_DEFAULT_ROUTE).status, CheckStatus::Failed);
    assert_eq!(find(&results, checks::UPLINK_GATEWAY_ICMP).status, CheckStatus::Skipped);
}

#[tokio::test]
async fn the_total_time_limit_holds_and_unfinished_checks_fail() {
    let mut limited = input();
    limited.settings.total_timeout_ms = 300;
    let started = Instant::now();
    let (results, _) = run_fake(Fake { hang: true, ..Fake::healthy() }, limited.clone()).await;
    // A correctness bound, not a benchmark: the probes never return.
    assert!(started.elapsed() < Duration::from_secs(5), "the run ignored its limit");
    assert_eq!(results.len(), limited.planned().len());
    for name in ["terminal.icmp@reception", checks::CARRIER_STATUS] {
        assert_eq!(find(&results, name).status, CheckStatus::Failed, "{name}");
    }
    // Checks cut off by the run's limit say so in their evidence.
    assert!(results.iter().any(|r| r.evidence.values.get("timed_out").is_some_and(|v| v == "true")));
    assert_eq!(find(&results, checks::DEVICE_CLOCK).status, CheckStatus::Ok, "finished checks are kept");
}

#[tokio::test]
async fn a_hanging_resolver_fails_dns_on_its_own_timeout_and_the_rest_goes_on() {
    let mut quick = input();
    quick.settings.dns_timeout_ms = 100;
    let (results, _) = run_fake(Fake { resolver_hangs: true, ..Fake::healthy() }, quick).await;
    let dns = find(&results, checks::UPLINK_DNS);
    assert_eq!(dns.status, CheckStatus::Failed);
    assert_eq!(dns.evidence.values["error"], "no answer within 100 ms");
    assert_eq!(find(&results, checks::UPLINK_TCP_CONNECT).status, CheckStatus::Skipped);
    // Loss and MTU fall back to the gateway; everything else still ran.
    assert_eq!(value(&results, checks::UPLINK_LOSS, "target"), GATEWAY.to_string());
    assert!(results.iter().all(|r| !r.evidence.values.contains_key("timed_out")), "{results:#?}");
    assert_eq!(verdict(&results, None).segment, VerdictSegment::Uplink);
}

#[tokio::test]
async fn groups_run_concurrently_and_report_progress() {
    let mut many = input();
    many.terminals = (20..26)
        .map(|i| TerminalTarget {
            name: format!("pc{i}"),
            ip: IpAddr::V4(Ipv4Addr::new(192, 168, 10, i)),
            mac: None,
        })
        .collect();
    let fake = Arc::new(Fake { ping_delay: Duration::from_millis(50), ..Fake::healthy() });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let progress: Progress = Arc::new(move |r: &CheckResult| sink.lock().unwrap().push(r.name.clone()));
    let results = run(fake.clone(), Arc::new(many), progress).await;
    assert!(fake.max_in_flight.load(Ordering::SeqCst) >= 6, "pings ran one at a time");
    let mut reported = seen.lock().unwrap().clone();
    reported.sort();
    let mut names: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(reported, names, "every result went through progress exactly once");
}

#[tokio::test]
async fn segment_selection_limits_the_checks() {
    let mut only = input();
    only.segments = [Segment::Carrier].into();
    let (results, _) = run_fake(Fake::healthy(), only).await;
    assert!(results.iter().all(|r| r.segment == Segment::Carrier), "{results:#?}");
    assert_eq!(results.len(), 3);
    assert_eq!(
        find(&results, checks::CARRIER_STATUS).status,
        CheckStatus::Ok,
        "uplink steps still ran underneath"
    );
}

#[test]
fn reconcile_filtered_echo_and_clock_skew() {
    let settings = DiagnoseConfig::default();
    let mut results = vec![
        CheckResult::new(
            checks::UPLINK_LOSS,
            Segment::Uplink,
            CheckStatus::Failed,
            Evidence::new("100% loss").with("received", "0"),
            1,
        ),
        CheckResult::new(
            checks::UPLINK_TCP_CONNECT,
            Segment::Uplink,
            CheckStatus::Ok,
            Evidence::new("connected"),
            1,
        ),
        CheckResult::new(checks::DEVICE_CLOCK, Segment::Device, CheckStatus::Ok, Evidence::new("set"), 1),
        CheckResult::new(
            checks::CARRIER_STATUS,
            Segment::Carrier,
            CheckStatus::Ok,
            Evidence::new("ok").with("clock_skew_s", "-4000"),
            1,
        ),
    ];
    reconcile(&mut results, &settings);
    assert_eq!(results[0].status, CheckStatus::Warning);
    let mut lossy = vec![
        CheckResult::new(
            checks::UPLINK_LOSS,
            Segment::Uplink,
            CheckStatus::Failed,
            Evidence::new("50% loss").with("received", "10"),
            1,
        ),
        CheckResult::new(
            checks::UPLINK_PATH_MTU,
            Segment::Uplink,
            CheckStatus::Failed,
            Evidence::new("black hole").with("black_hole", "true"),
            1,
        ),
    ];
    reconcile(&mut lossy, &settings);
    assert_eq!((lossy[0].status, lossy[1].status), (CheckStatus::Failed, CheckStatus::Warning));
    assert_eq!(lossy[1].evidence.values["unreliable_under_loss"], "true");
    assert_eq!(results[0].evidence.values["echo_filtered"], "true");
    assert_eq!(results[2].status, CheckStatus::Failed);
    assert_eq!(results[2].evidence.values["clock_skew_s"], "-4000");
}

#[test]
fn mtu_ladder_and_refinement() {
    assert_eq!(mtu_ladder(1500), vec![1500, 1492, 1480, 1460, 1420, 1280, 1000, 576]);
    assert_eq!(mtu_ladder(576), vec![576]);
    let outcome = |ok: bool| PingOutcome {
        sent: 3,
        rtts_us: if ok { vec![1] } else { vec![] },
        ..PingOutcome::default()
    };
    let round =
        vec![(1500, outcome(false)), (1420, outcome(false)), (1280, outcome(true)), (576, outcome(true))];
    assert_eq!(mtu_refinement(&round), Some(vec![1297, 1315, 1332, 1350, 1367, 1385, 1402]));
    assert_eq!(mtu_refinement(&[(1500, outcome(true))]), None);
    assert_eq!(mtu_refinement(&[(1500, outcome(false))]), None);
}

#[test]
fn carrier_urls() {
    assert_eq!(
        carrier_target("https://carrier.example:8443/base"),
        Some(CarrierTarget { host: "carrier.example".into(), port: 8443 })
    );
    assert_eq!(
        carrier_target("https://[2001:db8::1]/"),
        Some(CarrierTarget { host: "2001:db8::1".into(), port: 443 })
    );
    assert_eq!(carrier_target(""), None);
    assert_eq!(carrier_target("not a url"), None);
}

#[test]
fn exchange_outcomes_map_to_the_four_checks() {
    use CheckStatus::{Failed, Ok as Fine, Skipped};
    let addr: SocketAddr = "10.1.0.2:8443".parse().unwrap();
    let statuses = |outcome: ExchangeOutcome| {
        let x = Exchange { outcome, connect_ms: Some(1), handshake_ms: None, tls_version: None };
        judge_exchange(&x, addr, 1_800_000_000).map(|(status, _)| status)
    };
    let answered = |status: u16| ExchangeOutcome::Answered { status, pong: None, message: "x".into() };
    assert_eq!(
        statuses(ExchangeOutcome::NotConnected(ConnectFailure::Timeout)),
        [Failed, Skipped, Skipped, Skipped]
    );
    assert_eq!(
        statuses(ExchangeOutcome::NotConnected(ConnectFailure::Refused)),
        [Fine, Skipped, Skipped, Failed]
    );
    assert_eq!(statuses(ExchangeOutcome::NoTls("no identity".into())), [Fine, Skipped, Skipped, Skipped]);
    assert_eq!(
        statuses(ExchangeOutcome::ServerCertificate("UnknownIssuer".into())),
        [Fine, Failed, Skipped, Skipped]
    );
    assert_eq!(statuses(ExchangeOutcome::TlsBroken("reset".into())), [Fine, Failed, Skipped, Skipped]);
    assert_eq!(
        statuses(ExchangeOutcome::CertificateRefused { alert: "CertificateRevoked".into() }),
        [Fine, Fine, Failed, Skipped]
    );
    assert_eq!(statuses(ExchangeOutcome::NoAnswer("eof".into())), [Fine, Fine, Skipped, Failed]);
    assert_eq!(statuses(answered(403)), [Fine, Fine, Failed, Skipped]);
    assert_eq!(statuses(answered(401)), [Fine, Fine, Failed, Skipped]);
    assert_eq!(statuses(answered(503)), [Fine, Fine, Fine, Failed]);
    let pong = cpe_protocol::Pong { device_id: "d".into(), server_unix: 1_800_000_100 };
    let ok = Exchange {
        outcome: ExchangeOutcome::Answered { status: 200, pong: Some(pong), message: String::new() },
        connect_ms: Some(1),
        handshake_ms: Some(3),
        tls_version: Some("TLSv1_3".into()),
    };
    let [_, tls, _, status] = judge_exchange(&ok, addr, 1_800_000_000);
    assert_eq!(tls.1.values["tls_version"], "TLSv1_3");
    assert_eq!((status.0, status.1.values["clock_skew_s"].as_str()), (Fine, "-100"));
}

#[test]
fn leases_firewall_bridges_speeds_certificates_clock() {
    let t =
        TerminalTarget { name: "pc".into(), ip: IpAddr::V4(TERMINAL), mac: Some("02:00:00:00:00:20".into()) };
    let lease = |ip: [u8; 4], expiry_unix: i64| Lease {
        expiry_unix,
        mac: "02:00:00:00:00:20".into(),
        ip: IpAddr::V4(Ipv4Addr::from(ip)),
        hostname: "pc".into(),
    };
    assert_eq!(judge_lease(&t, None, 100).0, CheckStatus::Skipped);
    assert_eq!(judge_lease(&t, Some(Ok(vec![lease([192, 168, 10, 20], 200)])), 100).0, CheckStatus::Ok);
    assert_eq!(judge_lease(&t, Some(Ok(vec![lease([192, 168, 10, 20], 50)])), 100).0, CheckStatus::Failed);
    assert_eq!(judge_lease(&t, Some(Ok(vec![lease([192, 168, 10, 99], 0)])), 100).0, CheckStatus::Warning);
    assert_eq!(judge_lease(&t, Some(Ok(Vec::new())), 100).0, CheckStatus::Failed);

    let fw =
        |present: Result<bool, String>, suspended| judge_firewall("inet cpe_agent", present, suspended).0;
    assert_eq!(fw(Ok(false), false), CheckStatus::Ok);
    assert_eq!(fw(Ok(true), true), CheckStatus::Ok);
    assert_eq!(fw(Ok(true), false), CheckStatus::Failed);
    assert_eq!(fw(Ok(false), true), CheckStatus::Failed);
    assert_eq!(fw(Err("cannot run nft".into()), false), CheckStatus::Skipped);

    let fake = Fake::healthy();
    fake.interfaces.lock().unwrap().insert("lan1".into(), InterfaceState { carrier: false, ..iface("lan1") });
    let bridge = |ports: &[&str]| InterfaceState {
        bridge_ports: Some(ports.iter().map(ToString::to_string).collect()),
        ..iface("br-lan")
    };
    assert_eq!(judge_bridge(&fake, &bridge(&["lan0", "lan1"])).0, CheckStatus::Ok);
    assert_eq!(judge_bridge(&fake, &bridge(&["lan1"])).0, CheckStatus::Failed);
    assert_eq!(judge_bridge(&fake, &bridge(&[])).0, CheckStatus::Failed);
    assert_eq!(
        judge_bridge(&fake, &InterfaceState { master: Some("br-lan".into()), ..iface("lan0") }).0,
        CheckStatus::Ok
    );
    assert_eq!(judge_bridge(&fake, &iface("lan0")).0, CheckStatus::Skipped);

    assert_eq!(judge_speed(&iface("lan0")).0, CheckStatus::Ok);
    assert_eq!(
        judge_speed(&InterfaceState { duplex: Some("half".into()), ..iface("lan0") }).0,
        CheckStatus::Warning
    );
    assert_eq!(
        judge_speed(&InterfaceState { speed_mbps: Some(10), ..iface("lan0") }).0,
        CheckStatus::Warning
    );
    assert_eq!(judge_speed(&InterfaceState { speed_mbps: None, ..iface("lan0") }).0, CheckStatus::Skipped);

    for (state, status) in [
        (CertState::Valid, CheckStatus::Ok),
        (CertState::Expiring, CheckStatus::Warning),
        (CertState::Expired, CheckStatus::Failed),
        (CertState::NotYetValid, CheckStatus::Failed),
        (CertState::None, CheckStatus::Failed),
    ] {
        let fake = Fake { cert: state, ..Fake::healthy() };
        assert_eq!(judge_certificate(fake.certificate()).0, status, "{state:?}");
    }
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(judge_clock(time::OffsetDateTime::UNIX_EPOCH, now).0, CheckStatus::Failed, "1970: unset");
    assert_eq!(judge_clock(now, time::OffsetDateTime::UNIX_EPOCH).0, CheckStatus::Ok);
}
