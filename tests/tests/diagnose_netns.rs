//! `cpe-agent diagnose` end to end in network namespaces (issue 4): for
//! each fault of the guideline's isolation step (§1.3.2 ④) the real agent
//! runs `diagnose --json` inside the CPE namespace of a
//! [`Topology`](cpe_e2e::netns::Topology), against a real carrier
//! (`cpe-provision serve` in the carrier namespace, certificates from a test
//! CA, the carrier's name served by a test DNS responder), and the verdict's
//! segment and key evidence are asserted.
//!
//! The scenarios mostly wait (probe timeouts), so this file has its own
//! runner (`harness = false`) that runs them **all at once**, each in its
//! own topology, instead of two at a time: the file's wall time is that of
//! the slowest scenario. Arguments that are not flags filter scenarios by
//! name (`cargo test --test diagnose_netns -- dns mtu`);
//! `DIAGNOSE_NETNS_JOBS=N` bounds how many run together. The runner prints
//! each scenario's verdict, the diagnosis' own `duration_ms` and the
//! scenario's wall time, then the healthy-run and worst fault-run durations;
//! each report is kept in `target/tmp/diagnose_netns/<scenario>.json`.
//! Skipped, with the reason printed, when not root or without `ip`/`nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpe_e2e::netns::{self, plan, FaultRule, LanHost, Service, Topology};
use cpe_e2e::{binary, issue_pkcs12, provision, Proc};
use serde_json::Value;

const CODE: &str = "1312345678";
/// Port of `cpe-provision serve` on the carrier host.
const CARRIER_PORT: u16 = 8443;
/// The registered terminal every topology has.
const RECEPTION: &str = "reception";

/// The test PKI, made once and shared (read-only) by every scenario.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        cpe_e2e::carrier_pki(d, &[plan::CARRIER_HOST, &plan::CARRIER.to_string()]).unwrap();
        issue_pkcs12(d, CODE, "cpe-netns", "clinic", &[]).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// One scenario's world: its topology, carrier server, DNS and agent files.
struct World {
    topology: Topology,
    dir: tempfile::TempDir,
    pki: Arc<Pki>,
    server: Option<Proc>,
    dns: Option<Service>,
    /// `[[terminal]]` entries: name, IP, MAC.
    terminals: Vec<(String, Ipv4Addr, String)>,
    /// `[diagnose] carrier_addresses` (none: not written).
    carrier_addresses: Vec<Ipv4Addr>,
}

impl World {
    /// The healthy picture: one registered terminal, DNS, carrier server.
    fn new(pki: &Arc<Pki>) -> Self {
        let topology = Topology::build(1).unwrap();
        let reception = &topology.terminals[0];
        let terminals = vec![(RECEPTION.to_owned(), reception.ip, reception.mac.clone())];
        let dns = Some(topology.start_dns().unwrap());
        let mut world = Self {
            topology,
            dir: tempfile::tempdir().unwrap(),
            pki: pki.clone(),
            server: None,
            dns,
            terminals,
            carrier_addresses: Vec::new(),
        };
        world.start_server();
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_server(&mut self) {
        let pki = self.pki.clone();
        self.start_server_with(&pki);
    }

    /// Starts the carrier server with the certificates of `pki`.
    fn start_server_with(&mut self, pki: &Pki) {
        let listen = SocketAddr::new(IpAddr::V4(plan::CARRIER), CARRIER_PORT).to_string();
        let database = format!("sqlite:{}", s(&self.path("carrier.db")));
        let args = cpe_e2e::serve_args(pki.dir.path(), &listen, &database, &[]);
        let log = self.path("server.log");
        let mut server = self.topology.carrier.spawn("cpe-provision", &args, &log).unwrap();
        server
            .read_line_starting("listening on ")
            .unwrap_or_else(|| panic!("carrier server did not start:\n{}", read(&log)));
        self.server = Some(server);
    }

    /// Registers one more terminal in the agent's configuration.
    fn register(&mut self, name: &str, host: &LanHost) {
        self.terminals.push((name.to_owned(), host.ip, host.mac.clone()));
    }

    fn write_config(&self) {
        let mut text = format!(
            "state_dir = \"state\"\ntrust_anchors = [\"{ca}\"]\ninstitution_code = \"{CODE}\"\n\
             [carrier]\nurl = \"https://{host}:{CARRIER_PORT}\"\nca = \"{ca}\"\ntimeout_s = 5\n\
             [system]\nprimary_uplink = \"{primary}\"\nbackup_uplink = \"{backup}\"\n\
             [network]\nlan = [\"{lan}\"]\nplatform = \"{platform}\"\n",
            ca = s(&self.pki.path("ca/ca.pem")),
            host = plan::CARRIER_HOST,
            primary = plan::PRIMARY,
            backup = plan::BACKUP,
            lan = plan::LAN_BRIDGE,
            platform = plan::PLATFORM,
        );
        if !self.carrier_addresses.is_empty() {
            let list =
                self.carrier_addresses.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
            let _ = write!(text, "[diagnose]\ncarrier_addresses = [{list}]\n");
        }
        for (name, ip, mac) in &self.terminals {
            let _ = write!(text, "[[terminal]]\nname = \"{name}\"\nip = \"{ip}\"\nmac = \"{mac}\"\n");
        }
        std::fs::write(self.path("agent.toml"), text).unwrap();
    }

    /// Imports the shared valid identity `clinic.p12` into the agent's store.
    fn import_clinic(&self) {
        self.write_config();
        let (p12, pw) = (s(&self.pki.path("clinic.p12")), s(&self.pki.path("pw")));
        self.agent(&["cert", "import", &p12, "--password-file", &pw]);
    }

    /// Runs `cpe-agent --config agent.toml args` (outside the namespaces:
    /// certificate handling needs no network) and requires success.
    fn agent(&self, args: &[&str]) {
        let out = std::process::Command::new(binary("cpe-agent"))
            .args(["--config", &s(&self.path("agent.toml"))])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "cpe-agent {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `cpe-agent diagnose --json` inside the CPE namespace.
    fn diagnose(&self) -> Diagnosis {
        self.write_config();
        let started = Instant::now();
        let out = self
            .topology
            .cpe
            .command(binary("cpe-agent"))
            .args(["--config", &s(&self.path("agent.toml")), "--lang", "en", "diagnose", "--json"])
            .output()
            .unwrap();
        let wall_ms = started.elapsed().as_millis();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "diagnose printed no JSON ({e}), exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        // Kept for reading after the run: target/tmp/diagnose_netns/<scenario>.json.
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diagnose_netns");
        let scenario = std::thread::current().name().unwrap_or("scenario").to_owned();
        if std::fs::create_dir_all(&keep).is_ok() {
            let _ = std::fs::write(keep.join(format!("{scenario}.json")), stdout.as_bytes());
        }
        let diagnosis = Diagnosis { json, exit: out.status.code(), wall_ms };
        diagnosis.expect_contract();
        diagnosis
    }

    /// The primary line dies as on a real CPE: the carrier's side of the
    /// link goes down (no carrier on `wan0`) and the CPE's network daemon
    /// withdraws the default route over it.
    fn primary_line_dies(&self) {
        self.topology.edge.link_down(plan::EDGE_PRIMARY).unwrap();
        self.topology.cpe.del_route("default", plan::PRIMARY_GATEWAY).unwrap();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server.log:\n{}", read(&self.path("server.log")));
            eprintln!("--- agent.toml:\n{}", read(&self.path("agent.toml")));
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The JSON document of one diagnosis run.
struct Diagnosis {
    json: Value,
    exit: Option<i32>,
    wall_ms: u128,
}

impl Diagnosis {
    fn segment(&self) -> &str {
        self.json["verdict"]["segment"].as_str().unwrap_or("?")
    }

    fn duration_ms(&self) -> u64 {
        self.json["duration_ms"].as_u64().unwrap_or(0)
    }

    /// Every check whose catalogue name (before `@`) is `name`.
    fn checks(&self, name: &str) -> Vec<&Value> {
        self.json["checks"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|c| c["name"].as_str().is_some_and(|n| n.split('@').next() == Some(name)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one check `name` (for per-instance checks: the instance whose
    /// name or evidence mentions `instance`).
    fn check(&self, name: &str, instance: Option<&str>) -> &Value {
        let found = self.checks(name).into_iter().find(|c| {
            instance.is_none_or(|i| {
                c["name"].as_str().is_some_and(|n| n.contains(i)) || c["evidence"].to_string().contains(i)
            })
        });
        found.unwrap_or_else(|| panic!("no check {name} ({instance:?}) in\n{}", self.pretty()))
    }

    fn status(&self, name: &str, instance: Option<&str>) -> &str {
        self.check(name, instance)["status"].as_str().unwrap_or("?")
    }

    /// A value of the check's evidence (`evidence.values.KEY`).
    fn evidence(&self, name: &str, instance: Option<&str>, key: &str) -> Option<String> {
        let check = self.check(name, instance);
        check["evidence"]["values"][key].as_str().map(str::to_owned)
    }

    fn names_with_status(&self, status: &str) -> Vec<String> {
        self.json["checks"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|c| c["status"] == status)
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pretty(&self) -> String {
        serde_json::to_string_pretty(&self.json).unwrap_or_default()
    }

    /// Asserts the document has the shape of issue 4's JSON contract.
    fn expect_contract(&self) {
        let j = &self.json;
        assert!(j["id"].as_str().is_some_and(|id| !id.is_empty()), "no id\n{}", self.pretty());
        let started = j["started_at"].as_str().unwrap_or("");
        assert!(
            time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339).is_ok(),
            "started_at {started:?} is not RFC 3339"
        );
        assert!(j["duration_ms"].is_u64(), "no duration_ms\n{}", self.pretty());
        for key in ["segment", "summary", "hint"] {
            assert!(j["verdict"][key].is_string(), "verdict.{key} missing\n{}", self.pretty());
        }
        let checks = j["checks"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!checks.is_empty(), "no checks\n{}", self.pretty());
        for check in checks {
            let status = check["status"].as_str().unwrap_or("");
            assert!(["ok", "warning", "failed", "skipped"].contains(&status), "status {status:?} in {check}");
            assert!(check["name"].is_string() && check["segment"].is_string(), "{check}");
            assert!(check["evidence"].is_object() && check["duration_ms"].is_u64(), "{check}");
            // Every sentence exists in both languages; the Japanese one is
            // Japanese (values and names may be embedded in it).
            let text = &check["evidence"]["text"];
            assert!(text["en"].as_str().is_some_and(|en| !en.is_empty()), "no English evidence in {check}");
            assert!(text["ja"].as_str().is_some_and(|ja| !ja.is_ascii()), "no Japanese evidence in {check}");
        }
    }

    /// Asserts the verdict segment and the exit code that goes with it.
    fn expect_segment(&self, segment: &str) {
        assert_eq!(self.segment(), segment, "verdict\n{}", self.pretty());
        let exit = i32::from(segment != "none");
        assert_eq!(self.exit, Some(exit), "exit code for verdict {segment}\n{}", self.pretty());
        assert!(
            !self.json["verdict"]["hint"].as_str().unwrap_or("").is_empty() || segment == "none",
            "no hint"
        );
    }

    fn expect_evidence(&self, name: &str, instance: Option<&str>, key: &str, value: &str) {
        let found = self.evidence(name, instance, key);
        assert_eq!(found.as_deref(), Some(value), "{name} ({instance:?}) evidence {key}\n{}", self.pretty());
    }

    /// A numeric evidence value.
    fn evidence_number(&self, name: &str, instance: Option<&str>, key: &str) -> f64 {
        let text = self.evidence(name, instance, key);
        text.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| {
            panic!("{name} ({instance:?}) evidence {key} is {text:?}, not a number\n{}", self.pretty())
        })
    }

    fn expect_status(&self, name: &str, instance: Option<&str>, status: &str) {
        assert_eq!(self.status(name, instance), status, "{name} ({instance:?})\n{}", self.pretty());
    }
}

/// What a scenario hands back for the summary table.
struct Outcome {
    segment: String,
    duration_ms: u64,
    wall_ms: u128,
}

impl From<&Diagnosis> for Outcome {
    fn from(d: &Diagnosis) -> Self {
        Self { segment: d.segment().to_owned(), duration_ms: d.duration_ms(), wall_ms: d.wall_ms }
    }
}

type Scenario = fn(&Arc<Pki>) -> Outcome;

/// A scenario's name, outcome (or panic message) and wall time in ms.
type Finished = (&'static str, Result<Outcome, String>, u128);

/// Terminal powered off: it no longer answers ARP or ICMP.
fn terminal_down(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    let reception = &world.topology.terminals[0];
    reception.netns.del_address(plan::HOST_IFACE, &format!("{}/{}", reception.ip, plan::LAN_PREFIX)).unwrap();
    let d = world.diagnose();
    d.expect_segment("terminal");
    d.expect_status("terminal.icmp", Some(RECEPTION), "failed");
    d.expect_evidence("terminal.icmp", Some(RECEPTION), "received", "0");
    d.expect_status("terminal.neighbour", Some(RECEPTION), "failed");
    d.expect_evidence("terminal.neighbour", Some(RECEPTION), "state", "incomplete");
    d.expect_status("lan.link", None, "ok");
    Outcome::from(&d)
}

/// A terminal statically configured in another subnet (192.168.20.0/24).
fn terminal_wrong_subnet(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    let exam =
        world.topology.add_lan_host(Ipv4Addr::new(192, 168, 20, 21), 24, &plan::terminal_mac(1)).unwrap();
    world.register("exam", &exam);
    world.import_clinic();
    let d = world.diagnose();
    d.expect_segment("terminal");
    d.expect_status("terminal.subnet", Some("exam"), "failed");
    d.expect_evidence("terminal.subnet", Some("exam"), "ip", "192.168.20.21");
    d.expect_status("terminal.subnet", Some(RECEPTION), "ok");
    Outcome::from(&d)
}

/// A terminal is configured (and registered) with the CPE's own LAN
/// address: a terminal fault, not a healthy ping answered by the router.
fn terminal_at_the_routers_address(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    let exam = world.topology.add_lan_host(plan::CPE_LAN, plan::LAN_PREFIX, &plan::terminal_mac(1)).unwrap();
    world.register("exam", &exam);
    world.import_clinic();
    let d = world.diagnose();
    d.expect_segment("terminal");
    d.expect_status("terminal.duplicate_ip", Some("exam"), "failed");
    d.expect_evidence("terminal.duplicate_ip", Some("exam"), "conflict_with", "router");
    d.expect_evidence("terminal.duplicate_ip", Some("exam"), "iface", plan::LAN_BRIDGE);
    d.expect_status("terminal.icmp", Some("exam"), "skipped");
    d.expect_status("terminal.icmp", Some(RECEPTION), "ok");
    let hint = d.json["verdict"]["hint"].as_str().unwrap_or("");
    assert!(hint.contains("router's own IP address"), "hint: {hint}");
    Outcome::from(&d)
}

/// A second host (another MAC) takes the reception terminal's IP.
fn duplicate_ip(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    let intruder_mac = "02:00:00:00:0b:99";
    let _intruder =
        world.topology.add_lan_host(plan::terminal_ip(0), plan::LAN_PREFIX, intruder_mac).unwrap();
    let d = world.diagnose();
    d.expect_segment("terminal");
    d.expect_status("terminal.duplicate_ip", Some(RECEPTION), "failed");
    let evidence = d.check("terminal.duplicate_ip", Some(RECEPTION))["evidence"].to_string();
    for mac in [intruder_mac, plan::terminal_mac(0).as_str()] {
        assert!(evidence.contains(mac), "{mac} is not in the evidence: {evidence}");
    }
    Outcome::from(&d)
}

/// The LAN bridge is down.
fn lan_interface_down(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.cpe.link_down(plan::LAN_BRIDGE).unwrap();
    let d = world.diagnose();
    d.expect_segment("lan");
    d.expect_status("lan.link", Some(plan::LAN_BRIDGE), "failed");
    d.expect_evidence("lan.link", Some(plan::LAN_BRIDGE), "admin_up", "false");
    // The terminal is unreachable behind the dead LAN: a consequence, not the verdict.
    d.expect_status("terminal.icmp", Some(RECEPTION), "failed");
    Outcome::from(&d)
}

/// Both access lines lose their link (ONU/modem off): no way out.
fn wan_link_down(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.primary_line_dies();
    world.topology.edge.link_down(plan::EDGE_BACKUP).unwrap();
    world.topology.cpe.del_route("default", plan::BACKUP_GATEWAY).unwrap();
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.primary.link", None, "failed");
    d.expect_status("uplink.backup.link", None, "failed");
    d.expect_status("uplink.active", None, "failed");
    d.expect_evidence("uplink.active", None, "active", "none");
    d.expect_evidence("uplink.primary.link", None, "carrier", "false");
    Outcome::from(&d)
}

/// The link is up but the primary gateway is gone (no ARP answer).
fn gateway_unreachable(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.edge.del_address(plan::EDGE_PRIMARY, &format!("{}/24", plan::PRIMARY_GATEWAY)).unwrap();
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.primary.link", None, "ok");
    d.expect_status("uplink.gateway_arp", None, "failed");
    d.expect_evidence("uplink.gateway_arp", None, "gateway", &plan::PRIMARY_GATEWAY.to_string());
    Outcome::from(&d)
}

/// The DNS server is down: the carrier's name does not resolve.
fn dns_failure(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    world.import_clinic();
    world.dns.take().unwrap().stop();
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.gateway_icmp", None, "ok");
    d.expect_status("uplink.dns", None, "failed");
    d.expect_evidence("uplink.dns", None, "host", plan::CARRIER_HOST);
    Outcome::from(&d)
}

/// Packets over 1400 bytes vanish at the edge router without an ICMP error.
fn mtu_black_hole(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.edge.set_faults(&[FaultRule::DropLargerThan { bytes: 1400 }]).unwrap();
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.path_mtu", None, "failed");
    d.expect_evidence("uplink.path_mtu", None, "black_hole", "true");
    let found = d.evidence_number("uplink.path_mtu", None, "mtu_found");
    assert!(found <= 1400.0, "path MTU {found} found through a 1400-byte black hole");
    d.expect_status("uplink.gateway_icmp", None, "ok");
    Outcome::from(&d)
}

/// 70 % of the packets from the CPE are lost at the edge (nftables
/// `numgen`, as the kernel has no `tc netem`).
fn heavy_loss(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world
        .topology
        .edge
        .set_faults(&[FaultRule::Loss { iface: Some(plan::EDGE_PRIMARY.into()), percent: 70 }])
        .unwrap();
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.loss", None, "failed");
    let loss = d.evidence_number("uplink.loss", None, "loss_pct");
    assert!(loss >= 25.0, "measured loss {loss} % with 70 % injected");
    Outcome::from(&d)
}

/// `cpe-provision serve` is not running: the carrier host refuses.
fn carrier_server_stopped(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    world.import_clinic();
    world.server.take().unwrap().kill();
    let d = world.diagnose();
    d.expect_segment("carrier");
    d.expect_status("carrier.status", None, "failed");
    d.expect_evidence("carrier.status", None, "refused", "true");
    // The refusal proves the path: the uplink is fine.
    d.expect_status("uplink.tcp_connect", None, "ok");
    Outcome::from(&d)
}

/// The institution certificate has expired: the carrier refuses it in the
/// mTLS handshake (and the device itself sees it expired).
fn certificate_expired(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.write_config();
    // The device makes its key and CSR; the CA signs a certificate that is
    // valid for a few more seconds (the agent refuses to import an expired
    // one), the device installs it, and it expires.
    world.agent(&["cert", "csr", "--out", &s(&world.path("req.pem"))]);
    let expiry = time::OffsetDateTime::now_utc() + Duration::from_secs(4);
    let not_before =
        (expiry - time::Duration::days(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let (ca, csr, signed) = (s(&pki.path("ca")), s(&world.path("req.pem")), s(&world.path("signed.pem")));
    provision(&[
        "csr",
        "sign",
        "--ca",
        &ca,
        &csr,
        "--out",
        &signed,
        "--days",
        "1",
        "--not-before",
        &not_before,
    ])
    .unwrap();
    world.agent(&["cert", "import", &signed]);
    let left = expiry + Duration::from_secs(1) - time::OffsetDateTime::now_utc();
    std::thread::sleep(left.try_into().unwrap_or_default());
    let d = world.diagnose();
    d.expect_status("carrier.certificate_accepted", None, "failed");
    d.expect_evidence("carrier.certificate_accepted", None, "alert", "CertificateExpired");
    d.expect_status("device.certificate", None, "failed");
    d.expect_evidence("device.certificate", None, "state", "expired");
    // The device's own check comes first on the path: a device-side fault with a fix hint.
    d.expect_segment("device");
    Outcome::from(&d)
}

/// The platform beyond the demarcation point does not answer.
fn platform_unreachable(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.platform.set_faults(&[FaultRule::DropAll { iface: plan::HOST_IFACE.into() }]).unwrap();
    let d = world.diagnose();
    d.expect_segment("carrier");
    d.expect_status("carrier.status", None, "ok");
    d.expect_status("carrier.platform", None, "failed");
    d.expect_evidence("carrier.platform", None, "target", &plan::PLATFORM.to_string());
    d.expect_evidence("carrier.platform", None, "received", "0");
    Outcome::from(&d)
}

/// The primary line is down and traffic flows over the backup: healthy,
/// with the lost redundancy as a warning.
fn backup_uplink_carries_traffic(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.primary_line_dies();
    let d = world.diagnose();
    d.expect_segment("none");
    d.expect_evidence("uplink.active", None, "active", "backup");
    // The dead line's own check stays failed in the list; the verdict turns it into a warning.
    d.expect_status("uplink.primary.link", None, "failed");
    d.expect_evidence("uplink.primary.link", None, "carrier", "false");
    let summary = d.json["verdict"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains("Warnings:") && summary.contains("uplink.primary.link"),
        "summary without the warning: {summary}"
    );
    d.expect_status("uplink.tls_handshake", None, "ok");
    d.expect_status("carrier.status", None, "ok");
    Outcome::from(&d)
}

/// Echo to the gateway and to the carrier host is filtered upstream while
/// ARP, TCP and TLS work: warnings, not a line fault.
fn icmp_filtered_upstream(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    let filtered = vec![plan::PRIMARY_GATEWAY, plan::CARRIER];
    world.topology.edge.set_faults(&[FaultRule::DropEchoTo { addresses: filtered }]).unwrap();
    let d = world.diagnose();
    d.expect_segment("none");
    d.expect_status("uplink.gateway_arp", None, "ok");
    d.expect_status("uplink.gateway_icmp", None, "warning");
    d.expect_evidence("uplink.gateway_icmp", None, "echo_filtered", "true");
    d.expect_status("uplink.loss", None, "warning");
    d.expect_evidence("uplink.loss", None, "echo_filtered", "true");
    d.expect_status("uplink.tls_handshake", None, "ok");
    d.expect_status("carrier.status", None, "ok");
    Outcome::from(&d)
}

/// A PPPoE-sized path MTU (1454) between the edge and the carrier, with
/// "fragmentation needed" working: a warning, not a fault.
fn small_path_mtu_announced(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.edge.set_mtu(plan::EDGE_CARRIER, 1454).unwrap();
    world.topology.carrier.set_mtu(plan::HOST_IFACE, 1454).unwrap();
    let d = world.diagnose();
    d.expect_segment("none");
    d.expect_status("uplink.path_mtu", None, "warning");
    d.expect_evidence("uplink.path_mtu", None, "black_hole", "false");
    let found = d.evidence_number("uplink.path_mtu", None, "mtu_found");
    assert!((1420.0..=1454.0).contains(&found), "path MTU {found} through a 1454-byte link");
    d.expect_status("carrier.status", None, "ok");
    Outcome::from(&d)
}

/// The carrier host answers ping but its server port drops SYNs silently:
/// the carrier's side, told apart from a refusing port and a dead line.
fn carrier_port_drops_syn(pki: &Arc<Pki>) -> Outcome {
    let world = World::new(pki);
    world.import_clinic();
    world.topology.carrier.set_faults(&[FaultRule::DropTcpPort { port: CARRIER_PORT }]).unwrap();
    let d = world.diagnose();
    d.expect_segment("carrier");
    d.expect_status("uplink.tcp_connect", None, "warning");
    d.expect_evidence("uplink.tcp_connect", None, "syn", "unanswered");
    d.expect_status("carrier.status", None, "failed");
    d.expect_evidence("carrier.status", None, "syn_unanswered", "true");
    d.expect_status("uplink.loss", None, "ok");
    Outcome::from(&d)
}

/// Something on the path answers the carrier's address with a certificate
/// from another CA (an intercepting box): a security fault on the line
/// side, not the institution's certificate.
fn carrier_certificate_from_unknown_ca(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    world.import_clinic();
    world.server.take().unwrap().kill();
    let rogue = Pki::new();
    world.start_server_with(&rogue);
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.tcp_connect", None, "ok");
    d.expect_status("uplink.tls_handshake", None, "failed");
    d.expect_evidence("uplink.tls_handshake", None, "interception_suspected", "true");
    d.expect_status("device.certificate", None, "ok");
    let hint = d.json["verdict"]["hint"].as_str().unwrap_or("");
    assert!(hint.contains("intercepted") && !hint.contains("cert import"), "hint: {hint}");
    Outcome::from(&d)
}

/// The resolver answers the carrier's name with another live host (the
/// platform, which refuses the port) while the carrier's known address is
/// configured: DNS is named, not the carrier.
fn dns_answers_a_wrong_address(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    world.carrier_addresses = vec![plan::CARRIER];
    world.import_clinic();
    world.dns.take().unwrap().stop();
    let listen = SocketAddr::new(IpAddr::V4(plan::CARRIER), 53);
    let log = world.topology.log_path("dns-wrong.log");
    world.dns = Some(
        world.topology.carrier.start_dns(listen, &[(plan::CARRIER_HOST, plan::PLATFORM)], &log).unwrap(),
    );
    let d = world.diagnose();
    d.expect_segment("uplink");
    d.expect_status("uplink.dns", None, "failed");
    d.expect_evidence("uplink.dns", None, "wrong_address", &plan::PLATFORM.to_string());
    d.expect_evidence("uplink.dns", None, "expected", &plan::CARRIER.to_string());
    let hint = d.json["verdict"]["hint"].as_str().unwrap_or("");
    assert!(hint.contains("hijacked"), "hint: {hint}");
    Outcome::from(&d)
}

/// Nothing is wrong (with the carrier's known address configured).
fn healthy(pki: &Arc<Pki>) -> Outcome {
    let mut world = World::new(pki);
    world.carrier_addresses = vec![plan::CARRIER];
    world.import_clinic();
    let d = world.diagnose();
    d.expect_segment("none");
    assert_eq!(d.names_with_status("failed"), Vec::<String>::new(), "{}", d.pretty());
    for check in [
        "terminal.icmp",
        "lan.link",
        "device.certificate",
        "uplink.dns",
        "carrier.certificate_accepted",
        "carrier.platform",
    ] {
        d.expect_status(check, None, "ok");
    }
    d.expect_evidence("uplink.active", None, "active", "primary");
    Outcome::from(&d)
}

const SCENARIOS: &[(&str, Scenario)] = &[
    ("healthy", healthy),
    ("terminal_down", terminal_down),
    ("terminal_wrong_subnet", terminal_wrong_subnet),
    ("duplicate_ip", duplicate_ip),
    ("lan_interface_down", lan_interface_down),
    ("wan_link_down", wan_link_down),
    ("gateway_unreachable", gateway_unreachable),
    ("dns_failure", dns_failure),
    ("mtu_black_hole", mtu_black_hole),
    ("heavy_loss", heavy_loss),
    ("carrier_server_stopped", carrier_server_stopped),
    ("certificate_expired", certificate_expired),
    ("platform_unreachable", platform_unreachable),
    ("backup_uplink_carries_traffic", backup_uplink_carries_traffic),
    ("icmp_filtered_upstream", icmp_filtered_upstream),
    ("small_path_mtu_announced", small_path_mtu_announced),
    ("carrier_port_drops_syn", carrier_port_drops_syn),
    ("carrier_certificate_from_unknown_ca", carrier_certificate_from_unknown_ca),
    ("dns_answers_a_wrong_address", dns_answers_a_wrong_address),
    ("terminal_at_the_routers_address", terminal_at_the_routers_address),
];

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<(&str, Scenario)> = SCENARIOS
        .iter()
        .copied()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    if netns::skip(&format!("diagnose_netns ({} scenarios)", selected.len())) {
        return;
    }
    let jobs: usize =
        std::env::var("DIAGNOSE_NETNS_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(usize::MAX).max(1);
    println!(
        "running {} diagnosis scenarios in network namespaces, {}",
        selected.len(),
        if jobs >= selected.len() { "all at once".to_owned() } else { format!("{jobs} at a time") }
    );
    let started = Instant::now();
    let pki = Arc::new(Pki::new());
    let queue = Arc::new(Mutex::new(selected.clone()));
    let results: Arc<Mutex<Vec<Finished>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs.min(selected.len()))
        .map(|_| {
            let (queue, results, pki) = (queue.clone(), results.clone(), pki.clone());
            std::thread::spawn(move || loop {
                let Some((name, scenario)) = queue.lock().unwrap().pop() else { return };
                let begun = Instant::now();
                let pki = pki.clone();
                let outcome = std::thread::Builder::new()
                    .name(name.to_owned())
                    .spawn(move || scenario(&pki))
                    .unwrap()
                    .join()
                    .map_err(|panic| {
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default()
                    });
                let wall = begun.elapsed().as_millis();
                let line = match &outcome {
                    Ok(o) => format!(
                        "test {name} ... ok   verdict={} diagnose duration_ms={} (run {} ms) scenario wall {wall} ms",
                        o.segment, o.duration_ms, o.wall_ms
                    ),
                    Err(_) => format!("test {name} ... FAILED (scenario wall {wall} ms)"),
                };
                println!("{line}");
                results.lock().unwrap().push((name, outcome, wall));
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let results = results.lock().unwrap();
    let failed: Vec<&str> = results.iter().filter(|(_, o, _)| o.is_err()).map(|(n, _, _)| *n).collect();
    let healthy = results.iter().find(|(n, _, _)| *n == "healthy").and_then(|(_, o, _)| o.as_ref().ok());
    let worst = results
        .iter()
        .filter(|(n, _, _)| *n != "healthy")
        .filter_map(|(n, o, _)| o.as_ref().ok().map(|o| (n, o)))
        .max_by_key(|(_, o)| o.duration_ms);
    println!();
    if let Some(h) = healthy {
        println!("healthy run: diagnose duration_ms={} (process {} ms)", h.duration_ms, h.wall_ms);
    }
    if let Some((name, o)) = worst {
        println!(
            "worst fault run: {name}: diagnose duration_ms={} (process {} ms)",
            o.duration_ms, o.wall_ms
        );
    }
    println!(
        "test result: {}. {} passed; {} failed; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        println!("failed scenarios: {}", failed.join(" "));
        std::process::exit(101);
    }
}
