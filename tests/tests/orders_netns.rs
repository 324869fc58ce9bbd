//! Compliance stop and resume orders enforced with real nftables in network
//! namespaces (issue 6):
//!
//! ```text
//!  lan host ── eth0 ═══ lan0 ── CPE (ip_forward=1, cpe-agent) ── wan0 ═══ eth0 ── platform host
//!  192.168.77.10/24        192.168.77.1/24          10.77.0.1/24         10.77.0.2/24
//!                          notice page :8080                             :443 platform service
//!                                                                        :53 DNS (udp + tcp)
//!                                                                        :9443 the CPE's own channel
//!                                                                        :8443 cpe-provision serve (second test)
//! ```
//! The platform host also runs a plain web server on :80 (`platform web
//! server`). A stop order, signed in the test with the carrier's tooling
//! (`cpe_provision::order_keys`) and applied with `cpe-agent orders apply`,
//! blocks the LAN host from the platform, while forwarded DNS, the notice
//! page on the CPE's LAN address and the CPE's own connection beyond the WAN
//! keep working. After the table is flushed (a reboot, a firewall reload),
//! `cpe-agent apply-state` and a restarted `cpe-agent run` put the block
//! back. A resume lifts it and leaves the operator's own table alone; the
//! old stop replayed afterwards is refused. The times from `orders apply`
//! to the rules being in place and to traffic stopping or flowing again are
//! printed.
//!
//! During a suspension the LAN host's plain HTTP to any address is answered
//! by the notice page (DNAT) and HTTPS is refused with a reset within a
//! second; headless Chromium (Debian's `chromium` driven by
//! `playwright-core` from `tests/browser/`) loads the page in every state
//! from the LAN host, presses the self-check button and keeps screenshots
//! under `target/notice-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, clippy::too_many_lines)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use cpe_e2e::netns::{self, dns, Netns, Reach};
use cpe_e2e::{binary, issue_pkcs12, provision, wait_for, Proc};
use cpe_protocol::order::{encode_signed, Order, OrderKind, OrderTarget, ORDER_VERSION};
use cpe_provision::order_keys::{sign, OrderSigningKey};

const CODE: &str = "1312345678";
const LAN_CPE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 10);
const WAN_CPE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PLATFORM: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const NOTICE_PORT: u16 = 8080;
/// A TCP service beyond the WAN standing for the agent's own carrier channel.
const OWN_CHANNEL_PORT: u16 = 9443;
/// The carrier server (`cpe-provision serve`) on the platform host.
const CARRIER_PORT: u16 = 8443;
/// What the platform's web server answers.
const PLATFORM_WEB: &str = "platform web server";

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

struct World {
    dir: tempfile::TempDir,
    lan: Netns,
    cpe: Netns,
    platform: Netns,
    _services: Vec<netns::Service>,
}

impl World {
    /// The three namespaces, routed; the platform's services; no agent configuration yet.
    fn build() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (lan, cpe, platform) =
            (Netns::new("olan").unwrap(), Netns::new("ocpe").unwrap(), Netns::new("oplat").unwrap());
        cpe.veth("lan0", &lan, "eth0", [None, None]).unwrap();
        cpe.veth("wan0", &platform, "eth0", [None, None]).unwrap();
        cpe.add_address("lan0", &format!("{LAN_CPE}/24")).unwrap();
        cpe.add_address("wan0", &format!("{WAN_CPE}/24")).unwrap();
        cpe.enable_forwarding().unwrap();
        lan.add_address("eth0", &format!("{LAN_HOST}/24")).unwrap();
        lan.add_route("default", LAN_CPE, 0).unwrap();
        platform.add_address("eth0", &format!("{PLATFORM}/24")).unwrap();
        platform.add_route("192.168.77.0/24", WAN_CPE, 0).unwrap();
        let log = |name: &str| dir.path().join(name);
        let services = vec![
            platform.start_tcp_echo(at(PLATFORM, 443), &log("platform.log")).unwrap(),
            platform.start_http(at(PLATFORM, 80), PLATFORM_WEB, &log("web.log")).unwrap(),
            platform.start_tcp_echo(at(PLATFORM, 53), &log("dns-tcp.log")).unwrap(),
            platform.start_tcp_echo(at(PLATFORM, OWN_CHANNEL_PORT), &log("own-channel.log")).unwrap(),
            platform.start_dns(at(PLATFORM, 53), &[("platform.example", PLATFORM)], &log("dns.log")).unwrap(),
        ];
        Self { dir, lan, cpe, platform, _services: services }
    }

    /// Writes the agent configuration trusting `order_key` (hex), plus `extra` lines.
    fn write_config(&self, order_key: &str, extra: &str) {
        let config = format!(
            "state_dir = \"state\"\ninstitution_code = \"{CODE}\"\n{extra}\n\
             [orders]\nkeys = [\"{order_key}\"]\n\
             [network]\nlan = [\"lan0\"]\n\
             [system]\nprimary_uplink = \"wan0\"\n\
             [notice]\nlisten = [\"{LAN_CPE}:{NOTICE_PORT}\"]\ncontact_ja = \"回線窓口 0120-000-000\"\ncontact_en = \"Carrier desk +81-120-000-000\"\nself_check_interval_s = 1\n"
        );
        std::fs::write(self.config(), config).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// `cpe-agent --config … args` inside the CPE namespace.
    fn agent(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.to_str().unwrap(), "--lang", "en"];
        all.extend_from_slice(args);
        self.cpe.output(binary("cpe-agent"), &all).unwrap()
    }

    fn run_agent(&self, log: &str) -> Proc {
        let args = ["--config".to_owned(), self.config().to_string_lossy().into_owned(), "run".to_owned()];
        self.cpe.spawn("cpe-agent", &args, &self.dir.path().join(log)).unwrap()
    }

    fn order_file(&self, key: &OrderSigningKey, name: &str, kind: OrderKind, sequence: u64) -> PathBuf {
        self.order_file_until(key, name, kind, sequence, None)
    }

    /// [`World::order_file`] with a corrective deadline (Unix seconds).
    fn order_file_until(
        &self,
        key: &OrderSigningKey,
        name: &str,
        kind: OrderKind,
        sequence: u64,
        deadline: Option<i64>,
    ) -> PathBuf {
        let issued = now() - 60;
        let order = Order {
            version: ORDER_VERSION,
            id: 9000 + sequence,
            target: OrderTarget { institution_code: CODE.into(), device: "main".into() },
            kind,
            sequence,
            issued_at: issued,
            not_before: issued,
            expires_at: issued + 86_400,
            reason_ja: "是正勧告の期限までに是正されませんでした".into(),
            reason_en: "Not corrected by the deadline".into(),
            deadline,
        };
        let path = self.dir.path().join(name);
        std::fs::write(&path, encode_signed(&sign(&order, key).unwrap()).unwrap()).unwrap();
        path
    }

    fn platform_reachable(&self) -> bool {
        self.lan.tcp_connect(at(PLATFORM, 443), 1000).unwrap() == Reach::Connected
    }

    fn table_present(&self) -> bool {
        self.cpe.output("nft", &["list", "table", "inet", "cpe_agent"]).unwrap().status.success()
    }

    /// A UDP DNS query from the LAN host to the platform's resolver,
    /// forwarded by the CPE (bash's `/dev/udp`, no extra tools).
    fn lan_dns_answers(&self) -> bool {
        let query = dns::query(0x4242, "platform.example");
        let escaped = query.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "\\x{b:02x}");
            s
        });
        let script = format!(
            "exec 3<>/dev/udp/{PLATFORM}/53; printf '{escaped}' >&3; timeout 2 head -c 2 <&3 | od -An -tx1"
        );
        let out = self.lan.output("bash", &["-c", &script]).unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>() == ["42", "42"]
    }

    /// The notice page fetched from the LAN host.
    fn lan_notice_page(&self) -> String {
        self.lan_http(at(LAN_CPE, NOTICE_PORT), "GET / HTTP/1.0\r\nHost: cpe\r\n\r\n")
    }

    /// One HTTP request (`request`, all of it) from the LAN host to `to`
    /// and the whole answer (bash's `/dev/tcp`, no extra tools).
    fn lan_http(&self, to: SocketAddr, request: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} && printf '%s' \"$REQUEST\" >&3 && timeout 3 cat <&3",
            to.ip(),
            to.port()
        );
        let out = self.lan.command("bash").args(["-c", &script]).env("REQUEST", request).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The carrier (`cpe-provision serve`, with `serve_extra`) on the
    /// platform host, its test PKI, and this device as its client: the
    /// configuration trusting `order_key` with `[carrier]` pointing at it
    /// (plus `carrier_extra` lines), the institution certificate of device
    /// `unit` imported. Returns the server and its database.
    fn start_carrier(
        &self,
        order_key: &str,
        unit: &str,
        carrier_extra: &str,
        serve_extra: &[&str],
    ) -> (Proc, String) {
        let d = self.dir.path();
        let p = |name: &str| self.path(name).to_string_lossy().into_owned();
        cpe_e2e::carrier_pki(d, &[&PLATFORM.to_string()]).unwrap();
        issue_pkcs12(d, CODE, unit, "clinic", &[]).unwrap();
        self.write_config(
            order_key,
            &format!(
                "trust_anchors = [\"ca/ca.pem\"]\n[carrier]\nurl = \"https://{PLATFORM}:{CARRIER_PORT}\"\nca = \"ca/ca.pem\"\n\
                 interval_s = 1\nsample_s = 1\nlong_poll_s = 1\nbackoff_max_s = 1\n{carrier_extra}"
            ),
        );
        let imported = self.agent(&["cert", "import", &p("clinic.p12"), "--password-file", &p("pw")]);
        assert!(imported.status.success(), "{}", text(&imported));
        let database = format!("sqlite:{}", p("carrier.db"));
        let serve = cpe_e2e::serve_args(d, &format!("{PLATFORM}:{CARRIER_PORT}"), &database, serve_extra);
        let mut server = self.platform.spawn("cpe-provision", &serve, &self.path("server.log")).unwrap();
        server
            .read_line_starting("listening on ")
            .unwrap_or_else(|| panic!("carrier did not start\n{}", self.log("server.log")));
        (server, database)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Times `orders apply FILE`: until the command returned (rules in place),
/// and until `traffic_flows() == want` as seen from the LAN host.
fn apply_and_time(world: &World, file: &Path, want_flowing: bool) -> (Output, Duration, Duration) {
    let started = Instant::now();
    let out = world.agent(&["orders", "apply", file.to_str().unwrap()]);
    let rules = started.elapsed();
    let traffic = wait_for(Duration::from_secs(10), || {
        (world.platform_reachable() == want_flowing).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("traffic never became flowing={want_flowing}\n{}", text(&out)));
    (out, rules, traffic)
}

#[test]
fn stop_blocks_the_lan_keeps_dns_notice_and_own_channel_survives_reboot_and_resume_lifts_it() {
    if netns::skip("orders_netns") {
        return;
    }
    let world = World::build();
    let key = OrderSigningKey::generate().unwrap();
    world
        .write_config(&cpe_common::hex::encode(&key.public_key()), "[carrier]\ninterval_s = 1\nsample_s = 1");
    // The operator's own firewall table, which a resume must leave alone.
    world
        .cpe
        .nft("table inet operator {\n chain operator_forward {\n type filter hook forward priority 0; policy accept;\n counter\n }\n}\n")
        .unwrap();
    assert!(world.platform_reachable(), "baseline: the LAN host reaches the platform");
    assert!(world.lan.ping(IpAddr::V4(PLATFORM), 1, 2));

    // `run` before any order: it serves the notice page and touches no firewall.
    let mut daemon = world.run_agent("agent-1.log");
    let page = wait_for(Duration::from_secs(10), || {
        let page = world.lan_notice_page();
        page.contains("200 OK").then_some(page)
    })
    .unwrap_or_else(|| panic!("notice page not served\n{}", world.log("agent-1.log")));
    assert!(page.contains("state normal"), "{page}");
    assert!(!world.table_present());

    // Stop.
    let stop = world.order_file(&key, "stop.order", OrderKind::Stop, 1);
    let (out, rules, blocked) = apply_and_time(&world, &stop, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(world.table_present());
    println!(
        "orders apply (stop) → nft rules in place: {:.1} ms (process wall time)",
        rules.as_secs_f64() * 1e3
    );
    println!("  agent's own figure: {}", String::from_utf8_lossy(&out.stdout).trim());
    println!("orders apply (stop) → LAN host blocked: {:.1} ms", blocked.as_secs_f64() * 1e3);

    assert!(!world.platform_reachable());
    // HTTPS is refused with a reset (browsers fail at once, issue 17); any
    // other port with ICMP administratively prohibited.
    assert_eq!(world.lan.tcp_connect(at(PLATFORM, 443), 1000).unwrap(), Reach::Refused);
    assert!(matches!(
        world.lan.tcp_connect(at(PLATFORM, OWN_CHANNEL_PORT), 1000).unwrap(),
        Reach::Unreachable(_)
    ));
    assert!(!world.lan.ping(IpAddr::V4(PLATFORM), 1, 1), "ICMP is blocked too");
    assert!(world.lan_dns_answers(), "forwarded DNS over UDP still works");
    assert_eq!(world.lan.tcp_connect(at(PLATFORM, 53), 1000).unwrap(), Reach::Connected, "DNS over TCP");
    assert_eq!(
        world.cpe.tcp_connect(at(PLATFORM, OWN_CHANNEL_PORT), 1000).unwrap(),
        Reach::Connected,
        "the CPE's own channel beyond the WAN is untouched"
    );
    let page = world.lan_notice_page();
    assert!(
        page.contains("state suspended") && page.contains("ネットワークサービスを停止しています"),
        "{page}"
    );
    assert!(
        page.contains("是正勧告の期限までに是正されませんでした") && page.contains("回線窓口 0120-000-000")
    );

    let status = world.agent(&["orders", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "suspended");
    assert_eq!(status["last_sequence"], 1);
    assert_eq!(status["clock"]["last_decision"], "untrusted");

    // The same stop again is a replay: refused, exit 1, nothing changed.
    let again = world.agent(&["orders", "apply", stop.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("replay"));
    assert!(world.table_present());

    // Reboot: the daemon stops, the ruleset is gone; apply-state restores the block.
    daemon.terminate(Duration::from_secs(5));
    world.cpe.exec("nft", &["delete", "table", "inet", "cpe_agent"]).unwrap();
    assert!(world.platform_reachable(), "without the table the LAN is open (the reboot case)");
    let started = Instant::now();
    let restored = world.agent(&["apply-state"]);
    let apply_state_time = started.elapsed();
    assert!(restored.status.success(), "{}", text(&restored));
    assert!(text(&restored).contains("suspended"));
    assert!(!world.platform_reachable());
    println!("apply-state after a flush → rules in place: {:.1} ms", apply_state_time.as_secs_f64() * 1e3);
    // Idempotent.
    assert!(world.agent(&["apply-state"]).status.success());
    assert!(!world.platform_reachable());

    // An agent restart with the table gone also puts the block back first.
    world.cpe.exec("nft", &["delete", "table", "inet", "cpe_agent"]).unwrap();
    let _daemon = world.run_agent("agent-2.log");
    wait_for(Duration::from_secs(10), || (!world.platform_reachable()).then_some(()))
        .unwrap_or_else(|| panic!("restart did not restore the block\n{}", world.log("agent-2.log")));

    // Resume.
    let resume = world.order_file(&key, "resume.order", OrderKind::Resume, 2);
    let (out, rules, flowing) = apply_and_time(&world, &resume, true);
    assert!(out.status.success(), "{}", text(&out));
    println!(
        "orders apply (resume) → nft table removed: {:.1} ms (process wall time)",
        rules.as_secs_f64() * 1e3
    );
    println!("orders apply (resume) → LAN traffic flowing: {:.1} ms", flowing.as_secs_f64() * 1e3);
    assert!(!world.table_present());
    assert!(world.cpe.output("nft", &["list", "table", "inet", "operator"]).unwrap().status.success());
    assert!(world.lan.ping(IpAddr::V4(PLATFORM), 1, 2));
    let page = wait_for(Duration::from_secs(5), || {
        let page = world.lan_notice_page();
        page.contains("state normal").then_some(page)
    });
    assert!(page.is_some());

    // The old stop replayed after the resume changes nothing.
    let replay = world.agent(&["orders", "apply", stop.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(1), "{}", text(&replay));
    assert!(world.platform_reachable());
    assert!(!world.table_present());
    // The reconciling daemon keeps the LAN open too.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(world.platform_reachable());
}

/// `cpe-provision ARGS` (the carrier's CLI, run on the host: it only needs
/// the database and the key directory).
fn carrier(args: &[&str]) -> String {
    provision(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The number after `prefix` in `text` (e.g. "queued stop order 12").
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest =
        &text[text.find(prefix).unwrap_or_else(|| panic!("{prefix:?} not in {text:?}")) + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The daemon's own figure: command received → rules in place, from its log.
fn daemon_figures(log: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("order applied and enforced"))
        .filter_map(|l| l.split("elapsed_ms=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

/// The whole chain with the real carrier: `cpe-provision` (§2.2 case flow,
/// signed orders, command channel, receipt verification) on the platform
/// host, `cpe-agent run` on the CPE reaching it over the WAN. The stop
/// arrives by long-poll and blocks the LAN; the agent's own channel keeps
/// working while suspended, so the resume arrives the same way; the carrier
/// verifies both receipts against the device certificate.
#[test]
fn orders_from_the_real_carrier_reach_the_daemon_over_the_wan_and_receipts_verify() {
    if netns::skip("orders_netns carrier") {
        return;
    }
    let world = World::build();
    let p = |name: &str| world.path(name).to_string_lossy().into_owned();
    let device = format!("{CODE}/cpe-77");
    carrier(&["keys", "init", "--dir", &p("keys")]);
    let keys: serde_json::Value =
        serde_json::from_str(&carrier(&["keys", "show", "--dir", &p("keys"), "--json"])).unwrap();
    let order_key = keys[0]["public_key"].as_str().unwrap().to_owned();
    let (_server, database) = world.start_carrier(&order_key, "cpe-77", "", &["--long-poll-max", "2"]);
    let _daemon = world.run_agent("agent.log");
    // Every step of the case trail names who took it.
    let db = |args: &[&str]| {
        let mut all = args.to_vec();
        let reads = matches!(args.get(1), Some(&"show" | &"verify"));
        if !reads && !args.contains(&"--operator") {
            all.extend(["--operator", "tanaka"]);
        }
        all.extend(["--database", &database]);
        carrier(&all)
    };
    let keys_dir = p("keys");

    // ① – ④: the case, then the recommendation reaches the device as a notice.
    let mut last_error = String::new();
    let opened = wait_for(Duration::from_secs(20), || {
        let mut all = vec!["case", "open", "--device", &device, "--fact", "unauthorised remote-access tool"];
        all.extend(["--operator", "tanaka", "--database", &database]);
        provision(&all).map_err(|e| last_error = e).ok()
    })
    .unwrap_or_else(|| panic!("case open refused: {last_error}\n{}", world.log("agent.log")));
    let case = number_after(&opened, "opened case ").to_string();
    db(&["case", "hearing", "--case", &case, "--summary", "vendor installed it", "--operator", "sato"]);
    db(&["case", "report", "--case", &case, "--to", "platform operator", "--text", "by phone"]);
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let deadline = deadline.format(&time::format_description::well_known::Rfc3339).unwrap();
    let recommend = ["case", "recommend", "--case", &case, "--deadline", &deadline];
    let mut recommend = recommend.to_vec();
    recommend.extend([
        "--text-ja",
        "遠隔操作ツールを削除してください",
        "--text-en",
        "remove the tool",
        "--keys",
        &keys_dir,
    ]);
    db(&recommend);
    let page = wait_for(Duration::from_secs(20), || {
        let page = world.lan_notice_page();
        page.contains("state recommendation").then_some(page)
    })
    .unwrap_or_else(|| panic!("notice not applied\n{}", world.log("agent.log")));
    assert!(page.contains("遠隔操作ツールを削除してください"), "{page}");
    assert!(world.platform_reachable(), "a recommendation blocks nothing");

    // ⑥ Urgent stop: delivered by long-poll, enforced, receipt verified by the carrier.
    let started = Instant::now();
    let out = db(&[
        "order",
        "stop",
        "--device",
        &device,
        "--reason-ja",
        "緊急停止",
        "--reason-en",
        "urgent stop",
        "--urgent",
        "--justification",
        "active exfiltration",
        "--keys",
        &keys_dir,
    ]);
    let stop_id = number_after(&out, "queued stop order ");
    wait_for(Duration::from_secs(20), || (!world.platform_reachable()).then_some(()))
        .unwrap_or_else(|| panic!("stop not enforced\n{}", world.log("agent.log")));
    println!(
        "carrier `order stop` → LAN host blocked (long-poll delivery included): {} ms",
        started.elapsed().as_millis()
    );
    let shown = wait_for(Duration::from_secs(10), || {
        let shown: serde_json::Value =
            serde_json::from_str(&db(&["order", "show", &stop_id.to_string(), "--json"])).ok()?;
        (shown["state"] == "applied").then_some(shown)
    })
    .unwrap_or_else(|| panic!("stop receipt not verified\n{}", world.log("server.log")));
    assert_eq!(shown["receipt"]["resulting_state"], "suspended", "{shown}");
    assert!(world.lan_dns_answers());

    // A remote diagnosis while suspended (§1.3.2 ⑤, §2.2): the daemon runs it,
    // its incident reaches the carrier, and the verdict names the stop order.
    let started = Instant::now();
    carrier(&["command", "--device", &device, "diagnose", "--database", &database]);
    let incident = wait_for(Duration::from_secs(30), || {
        let shown: serde_json::Value =
            serde_json::from_str(&carrier(&["device", "show", &device, "--json", "--database", &database]))
                .ok()?;
        let incident = shown["latest_incident"].clone();
        incident["command_id"].is_u64().then_some(incident)
    })
    .unwrap_or_else(|| panic!("remote diagnosis not reported\n{}", world.log("agent.log")));
    println!("carrier `command diagnose` → incident in `device show`: {} ms", started.elapsed().as_millis());
    assert_eq!(incident["segment"], "suspended", "{incident}");
    assert!(incident["summary"].as_str().unwrap().contains(&format!("order {stop_id}")), "{incident}");
    assert_eq!(incident["report"]["verdict"]["segment"], "suspended", "{incident}");

    // The agent's channel to the carrier keeps working while suspended: the resume arrives.
    db(&["case", "check", "--case", &case, "--corrected", "yes", "--note", "on-site visit"]);
    let started = Instant::now();
    let out = db(&["order", "resume", "--device", &device, "--keys", &keys_dir]);
    let resume_id = number_after(&out, "queued resume order ");
    wait_for(Duration::from_secs(20), || world.platform_reachable().then_some(()))
        .unwrap_or_else(|| panic!("resume not enforced\n{}", world.log("agent.log")));
    println!(
        "carrier `order resume` → LAN traffic flowing (long-poll delivery included): {} ms",
        started.elapsed().as_millis()
    );
    wait_for(Duration::from_secs(10), || {
        let shown: serde_json::Value =
            serde_json::from_str(&db(&["order", "show", &resume_id.to_string(), "--json"])).ok()?;
        (shown["state"] == "applied").then_some(())
    })
    .unwrap_or_else(|| panic!("resume receipt not verified\n{}", world.log("server.log")));
    // An auditor re-checks both from the carrier's store: signatures, records, device receipts.
    for id in [stop_id, resume_id] {
        db(&["order", "verify", &id.to_string(), "--keys", &keys_dir]);
    }
    let figures = daemon_figures(&world.log("agent.log"));
    assert_eq!(figures.len(), 3, "notice, stop, resume\n{}", world.log("agent.log"));
    println!(
        "daemon: command received → rules in place (notice, stop, resume): {} ms",
        figures.join(" ms, ")
    );
}

/// `orders apply FILE` in the CPE namespace, required to succeed.
fn apply(world: &World, file: &Path) {
    let out = world.agent(&["orders", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Waits until the notice page (fetched from the LAN host) contains `needle`.
fn wait_for_page(world: &World, needle: &str, log: &str) -> String {
    wait_for(Duration::from_secs(20), || {
        let page = world.lan_notice_page();
        page.contains(needle).then_some(page)
    })
    .unwrap_or_else(|| panic!("the notice page never showed {needle:?}\n{}", world.log(log)))
}

/// A GET of `/` on `to` from the LAN host, naming `to` as its host.
fn lan_get(world: &World, to: SocketAddr) -> String {
    world.lan_http(to, &format!("GET / HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"))
}

/// Issue 17: while suspended, the LAN host's plain HTTP to a platform web
/// server (or to any other address) is answered by the notice page, HTTPS is
/// refused with a reset within a second, DNS keeps working, and the page's
/// self-check can be pressed through the redirected address; after the
/// resume the web server answers again and the agent's table is gone.
#[test]
fn suspension_sends_lan_http_to_the_notice_page_and_refuses_https_at_once() {
    if netns::skip("orders_netns notice redirect") {
        return;
    }
    let world = World::build();
    let key = OrderSigningKey::generate().unwrap();
    world
        .write_config(&cpe_common::hex::encode(&key.public_key()), "[carrier]\ninterval_s = 1\nsample_s = 1");
    let _daemon = world.run_agent("agent.log");
    wait_for_page(&world, "200 OK", "agent.log");
    let web = at(PLATFORM, 80);
    assert!(lan_get(&world, web).ends_with(PLATFORM_WEB), "baseline: the real web server answers");

    let stop = world.order_file(&key, "stop.order", OrderKind::Stop, 1);
    let started = Instant::now();
    apply(&world, &stop);
    let applied = started.elapsed();
    let chain = world.cpe.output("nft", &["list", "chain", "inet", "cpe_agent", "notice_redirect"]).unwrap();
    let chain = text(&chain);
    assert!(chain.contains(&format!("dnat ip to {LAN_CPE}:{NOTICE_PORT}")), "{chain}");
    let redirected = wait_for(Duration::from_secs(5), || {
        lan_get(&world, web).contains("state suspended").then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("HTTP never reached the notice page\n{}", world.log("agent.log")));
    println!(
        "suspension → DNAT in place: {:.1} ms (orders apply, process wall time); → the LAN host's HTTP answered by the notice page: {:.1} ms",
        applied.as_secs_f64() * 1e3,
        redirected.as_secs_f64() * 1e3
    );
    let page = lan_get(&world, web);
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("ネットワークサービスを停止しています"),
        "{page}"
    );
    assert!(!page.contains(PLATFORM_WEB));
    let elsewhere = lan_get(&world, at(Ipv4Addr::new(10, 77, 0, 99), 80));
    assert!(elsewhere.contains("state suspended"), "any address, even one nobody has:\n{elsewhere}");
    let own = world.lan_notice_page();
    assert!(own.contains("state suspended"), "the page on its own address too");

    let mut https = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let reach = world.lan.tcp_connect(at(PLATFORM, 443), 3000).unwrap();
        https.push(started.elapsed());
        assert_eq!(reach, Reach::Refused, "HTTPS is reset, not dropped");
    }
    let slowest = https.iter().max().copied().unwrap_or_default();
    println!(
        "HTTPS (tcp 443) from the LAN refused: slowest of 3 {:.1} ms (netns-helper connect, process wall time)",
        slowest.as_secs_f64() * 1e3
    );
    assert!(slowest <= Duration::from_secs(1), "HTTPS refused within 1 s, took {slowest:?}");
    assert!(world.lan_dns_answers(), "DNS keeps working");
    assert_eq!(world.lan.tcp_connect(at(PLATFORM, 53), 1000).unwrap(), Reach::Connected, "DNS over TCP");

    // The button through the redirected address: its own origin.
    let cross = format!(
        "POST /self-check HTTP/1.1\r\nHost: {web}\r\nOrigin: http://evil.example\r\nContent-Length: 5\r\n\r\nrun=1"
    );
    assert!(world.lan_http(web, &cross).starts_with("HTTP/1.1 403"));
    assert!(world
        .lan_http(web, &format!("GET /self-check HTTP/1.1\r\nHost: {web}\r\n\r\n"))
        .contains("state suspended"));
    let press = format!(
        "POST /self-check HTTP/1.1\r\nHost: {PLATFORM}\r\nOrigin: http://{PLATFORM}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nrun=1"
    );
    let started = Instant::now();
    let accepted = world.lan_http(web, &press);
    assert!(accepted.starts_with("HTTP/1.1 303 See Other"), "{accepted}");
    let status = wait_for(Duration::from_secs(30), || {
        let status =
            world.lan_http(web, &format!("GET /self-check/status HTTP/1.1\r\nHost: {PLATFORM}\r\n\r\n"));
        status.contains("\"state\":\"done\"").then_some(status)
    })
    .unwrap_or_else(|| panic!("self-check did not finish\n{}", world.log("agent.log")));
    println!("self-check from the LAN host (POST → done): {} ms", started.elapsed().as_millis());
    assert!(status.contains("\"segment\":\"suspended\""), "{status}");
    let page = lan_get(&world, web);
    assert!(
        page.contains("サービス停止中（通信事業者の命令）") && page.contains("機器の修理や再起動は不要です"),
        "{page}"
    );

    let resume = world.order_file(&key, "resume.order", OrderKind::Resume, 2);
    apply(&world, &resume);
    assert!(!world.table_present());
    let back = wait_for(Duration::from_secs(5), || {
        let answer = lan_get(&world, web);
        answer.ends_with(PLATFORM_WEB).then_some(answer)
    });
    assert!(back.is_some(), "after the resume HTTP reaches the real web server");
    assert_eq!(world.lan.tcp_connect(at(PLATFORM, 443), 1000).unwrap(), Reach::Connected, "and HTTPS too");
}

/// Why the browser test cannot run here, if it cannot: root for the
/// namespaces, then what every browser test needs.
fn browser_unavailable(script: &Path) -> Option<String> {
    netns::unavailable().or_else(|| cpe_e2e::browser_unavailable(script))
}

/// One visit with headless Chromium from the LAN host (`tests/browser/notice.mjs`).
fn browse(world: &World, script: &Path, step: &serde_json::Value) -> serde_json::Value {
    let out = world.lan.command("node").arg(script).arg(step.to_string()).output().unwrap();
    assert!(
        out.status.success(),
        "chromium visit {step} failed:\n{}\n{}",
        text(&out),
        world.log("agent.log")
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    println!(
        "chromium: {} ({}): page {} bytes{}",
        step["url"],
        seen["headline_class"],
        seen["bytes"],
        seen["self_check_ms"]
            .as_u64()
            .map(|ms| format!(", self-check click → result {ms} ms"))
            .unwrap_or_default()
    );
    seen
}

fn field<'a>(seen: &'a serde_json::Value, name: &str) -> &'a str {
    seen[name].as_str().unwrap_or_else(|| panic!("{name} missing in {seen}"))
}

fn has_japanese(text: &str) -> bool {
    text.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c) || ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Issue 17 in a real browser: Debian's Chromium, headless, on a phone-sized
/// screen, on the LAN host, loads the notice page in every state — normal,
/// recommendation, suspended (through the DNAT of a platform web address),
/// drill, line down — and checks the headline and the Japanese hint, presses
/// 「自己診断を実行」, sees the progress and then the result; the daemon's
/// incident reaches the carrier. Screenshots: `target/notice-screenshots/`.
/// Skipped (said so) without root, chromium, node, playwright-core or the
/// Japanese fonts, except under CI=true, where that fails.
#[test]
fn notice_page_in_headless_chromium_in_every_state() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/notice.mjs");
    if let Some(reason) = browser_unavailable(&script) {
        cpe_e2e::skip_or_fail("orders_netns chromium", &reason);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let shots = root.join("target/notice-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |name: &str| shots.join(format!("{name}.png")).to_string_lossy().into_owned();
    let world = World::build();
    // A default route and a resolver beyond the WAN, as on a real line.
    world.cpe.add_route("default", PLATFORM, 0).unwrap();
    world.cpe.set_resolv_conf(&[IpAddr::V4(PLATFORM)]).unwrap();
    let key = OrderSigningKey::generate().unwrap();
    let (_server, database) = world.start_carrier(
        &cpe_common::hex::encode(&key.public_key()),
        "main",
        // A report stuck on a dead line gives up after 2 s (30 s by default).
        "timeout_s = 2",
        &[],
    );
    let _daemon = world.run_agent("agent.log");
    let page_url = format!("http://{LAN_CPE}:{NOTICE_PORT}/");
    wait_for_page(&world, "state normal", "agent.log");
    let device = format!("{CODE}/main");
    let device_json = || -> serde_json::Value {
        serde_json::from_str(&carrier(&["device", "show", &device, "--json", "--database", &database]))
            .unwrap_or_default()
    };
    // Normal: headline, then the button: progress, result, hint.
    let seen = browse(
        &world,
        &script,
        &serde_json::json!({"url": page_url, "screenshot": shot("normal"), "press": true,
                            "progress_screenshot": shot("self-check-progress")}),
    );
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["html_lang"], "ja");
    assert_eq!(seen["japanese_font"], true, "Noto Sans CJK JP is used: no tofu\n{seen}");
    assert_eq!(seen["horizontal_scroll"], false, "fits a phone's width\n{seen}");
    assert!(field(&seen, "progress_ja").contains("自己診断を実行中です"), "{seen}");
    assert!(field(&seen, "result_ja").contains("自己診断が完了しました"), "{seen}");
    assert!(has_japanese(field(&seen, "verdict_ja")) && has_japanese(field(&seen, "hint_ja")), "{seen}");
    assert!(seen["bytes"].as_u64().is_some_and(|b| b < 16 * 1024), "the page stays small: {seen}");
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.path("state/diagnosis/last.json")).unwrap()).unwrap();
    let normal_hint = field(&seen, "hint_ja").to_owned();
    println!("chromium: the normal state's self-check verdict: {}", last["verdict"]["segment"]);
    let reported = wait_for(Duration::from_secs(20), || {
        let incident = device_json()["latest_incident"].clone();
        (incident["id"] == last["id"]).then_some(incident)
    })
    .unwrap_or_else(|| {
        panic!("the self-check's incident never reached the carrier\n{}", world.log("agent.log"))
    });
    assert!(reported["command_id"].is_null(), "pressed on site, not a carrier command: {reported}");

    // Recommendation with its deadline; the last diagnosis and its hint stay.
    let deadline = now() + 7 * 86_400;
    apply(&world, &world.order_file_until(&key, "notice.order", OrderKind::Notice, 1, Some(deadline)));
    let seen =
        browse(&world, &script, &serde_json::json!({"url": page_url, "screenshot": shot("recommendation")}));
    assert!(field(&seen, "headline_ja").contains("是正勧告が出ています。期限: "), "{seen}");
    assert!(field(&seen, "headline_en").contains("Deadline: "), "{seen}");
    assert_eq!(field(&seen, "hint_ja"), normal_hint);

    // Suspended: a platform web address shows the page (DNAT); the button there.
    apply(&world, &world.order_file(&key, "stop.order", OrderKind::Stop, 2));
    let seen = browse(
        &world,
        &script,
        &serde_json::json!({"url": format!("http://{PLATFORM}/"), "screenshot": shot("suspended"), "press": true}),
    );
    assert!(field(&seen, "url").starts_with(&format!("http://{PLATFORM}/")), "{seen}");
    assert!(field(&seen, "headline_ja").contains("ネットワークサービスを停止しています"), "{seen}");
    assert_eq!(field(&seen, "verdict_ja"), "サービス停止中（通信事業者の命令）", "{seen}");
    assert!(field(&seen, "hint_ja").starts_with("機器の修理や再起動は不要です"), "{seen}");
    assert!(field(&seen, "hint_en").starts_with("Do not repair or restart anything"), "{seen}");

    // Drill (after a resume: a drill never lifts a suspension).
    apply(&world, &world.order_file(&key, "resume.order", OrderKind::Resume, 3));
    apply(&world, &world.order_file(&key, "drill.order", OrderKind::Drill, 4));
    let seen = browse(&world, &script, &serde_json::json!({"url": page_url, "screenshot": shot("drill")}));
    assert!(field(&seen, "headline_ja").starts_with("【訓練】"), "{seen}");
    assert!(has_japanese(field(&seen, "hint_ja")), "{seen}");

    // Line down: the uplink goes down; the daemon's reports fail; the headline
    // says so before any diagnosis, and the self-check names the line.
    apply(&world, &world.order_file(&key, "resume-drill.order", OrderKind::Resume, 5));
    world.cpe.link_down("wan0").unwrap();
    wait_for_page(&world, "state outage", "agent.log");
    let seen = browse(
        &world,
        &script,
        &serde_json::json!({"url": page_url, "screenshot": shot("line-down"), "press": true}),
    );
    assert!(field(&seen, "headline_ja").contains("通信事業者に接続できません"), "{seen}");
    assert!(field(&seen, "headline_en").contains("cannot reach the carrier"), "{seen}");
    assert_eq!(field(&seen, "verdict_ja"), "回線", "{seen}");
    assert!(
        has_japanese(field(&seen, "hint_ja")) && field(&seen, "failed_ja").contains("（uplink."),
        "{seen}"
    );
    println!("chromium: screenshots in {}", shots.display());
}
