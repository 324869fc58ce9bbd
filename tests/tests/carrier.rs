//! The carrier channel end to end on loopback, with real processes: a
//! `cpe-provision serve` (SQLite, and PostgreSQL when
//! `CPE_TEST_POSTGRES_URL` is set — the test command sets it), an SMTP sink
//! for alert mail, and `cpe-agent run` reading a fake `/proc`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod est_server;
mod support;

use cpe_e2e::{binary, wait_for, FakeSystem, Proc, SmtpSink, WebhookSink};
use serde_json::Value;
use support::postgres_url;

const CODE: &str = "1312345678";

fn issue_pkcs12(dir: &Path, code: &str, unit: &str, name: &str) {
    cpe_e2e::issue_pkcs12(dir, code, unit, name, &[]).unwrap();
}

fn provision(args: &[&str]) -> String {
    cpe_e2e::provision(args).unwrap()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Test PKI, server and agent configuration in one temp directory.
struct World {
    dir: tempfile::TempDir,
    /// The server's renewal options (default: the test CA `ca/` signs).
    enrol: Vec<String>,
    /// Extra lines appended to the agent configuration.
    extra_config: String,
    /// Unique per run, so tests sharing one PostgreSQL never see each other's devices.
    device: String,
    database: String,
    smtp: SmtpSink,
    webhook: WebhookSink,
    server: Option<Proc>,
    port: u16,
}

impl World {
    fn new(database: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let unit = cpe_e2e::unique_unit("cpe");
        cpe_e2e::carrier_pki(d, &["localhost", "127.0.0.1"]).unwrap();
        issue_pkcs12(d, CODE, &unit, "clinic");
        issue_pkcs12(d, "2712345678", "other", "other");
        let database = database.unwrap_or_else(|| format!("sqlite:{}", s(&d.join("carrier.db"))));
        let device = format!("{CODE}/{unit}");
        let enrol = vec!["--enrol-test-ca".into(), s(&d.join("ca"))];
        let mut world = Self {
            dir,
            enrol,
            extra_config: String::new(),
            device,
            database,
            smtp: SmtpSink::start().unwrap(),
            webhook: WebhookSink::start().unwrap(),
            server: None,
            port: 0,
        };
        world.start_server();
        world.write_agent_config();
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_server(&mut self) {
        let listen =
            if self.port == 0 { "127.0.0.1:0".to_owned() } else { format!("127.0.0.1:{}", self.port) };
        let (server, port) = self.spawn_server(&listen, "server.log");
        self.port = port;
        self.server = Some(server);
    }

    /// Starts a `cpe-provision serve` on `listen` with this world's store and sinks.
    fn spawn_server(&self, listen: &str, log: &str) -> (Proc, u16) {
        let mut extra: Vec<&str> = self.enrol.iter().map(String::as_str).collect();
        extra.extend([
            "--silent-after",
            "3",
            "--check-every",
            "1",
            "--long-poll-max",
            "2",
            "--smtp",
            &self.smtp.addr,
            "--mail-to",
            "noc@carrier.example",
            "--webhook",
            &self.webhook.url,
            "--cert-check-every",
            "1",
        ]);
        let args = cpe_e2e::serve_args(self.dir.path(), listen, &self.database, &extra);
        let mut server = Proc::spawn("cpe-provision", &args, &self.path(log)).unwrap();
        let line = server
            .read_line_starting("listening on ")
            .unwrap_or_else(|| panic!("server did not start: {}", self.log(log)));
        (server, line.rsplit(':').next().unwrap().parse().unwrap())
    }

    fn stop_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            assert_eq!(server.terminate(Duration::from_secs(10)), Some(0), "server did not stop cleanly");
        }
    }

    fn write_agent_config(&self) {
        let text = format!(
            "state_dir = \"state\"\ntrust_anchors = [\"ca/ca.pem\"]\ninstitution_code = \"{CODE}\"\n\
             [carrier]\nurl = \"https://127.0.0.1:{}\"\nca = \"ca/ca.pem\"\ninterval_s = 1\nsample_s = 1\nlong_poll_s = 1\nbackoff_max_s = 1\n\
             [system]\nproc_root = \"root/proc\"\nsys_root = \"root/sys\"\nprimary_uplink = \"wan0\"\nbackup_uplink = \"wwan0\"\n\
             [thresholds.cpu]\ncaution = 50\nwarning = 90\nhysteresis = 5\nmin_duration_s = 0\n",
            self.port
        );
        std::fs::write(self.path("agent.toml"), text + &self.extra_config).unwrap();
    }

    fn import(&self) {
        self.import_file("clinic.p12");
    }

    fn import_file(&self, name: &str) {
        let out = Command::new(binary("cpe-agent"))
            .args([
                "--config",
                &s(&self.path("agent.toml")),
                "cert",
                "import",
                &s(&self.path(name)),
                "--password-file",
                &s(&self.path("pw")),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn start_agent(&self) -> Proc {
        let args = vec!["--config".to_owned(), s(&self.path("agent.toml")), "run".to_owned()];
        Proc::spawn("cpe-agent", &args, &self.path("agent.log")).unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn devices(&self) -> Vec<Value> {
        let out = provision(&["devices", "--json", "--database", &self.database]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().cloned().unwrap_or_default()
    }

    fn device_state(&self) -> Option<String> {
        self.devices()
            .into_iter()
            .find(|d| d["id"] == self.device.as_str())
            .and_then(|d| d["state"].as_str().map(str::to_owned))
    }

    /// Open alerts of this world's device (the store may hold other devices).
    fn alerts(&self) -> Vec<Value> {
        let out = provision(&["device", "show", &self.device, "--json", "--database", &self.database]);
        let detail: Value = serde_json::from_str(&out).unwrap();
        detail["open_alerts"].as_array().cloned().unwrap_or_default()
    }

    fn wait_state(&self, state: &str, what: &str) {
        wait_for(Duration::from_secs(20), || (self.device_state().as_deref() == Some(state)).then_some(()))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: device never {state}\nserver log:\n{}\nagent log:\n{}",
                    self.log("server.log"),
                    self.log("agent.log")
                )
            });
    }

    /// Mail about this world's device (a shared PostgreSQL may hold other devices).
    fn mails(&self) -> Vec<String> {
        self.smtp.messages().into_iter().filter(|m| m.contains(&self.device)).collect()
    }

    fn wait_mail(&self, needle: &str) -> String {
        wait_for(Duration::from_secs(20), || self.mails().into_iter().find(|m| m.contains(needle)))
            .unwrap_or_else(|| {
                panic!(
                    "no mail containing {needle:?}; got {:?}\nserver log:\n{}",
                    self.smtp.messages(),
                    self.log("server.log")
                )
            })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }
}

fn liveness_and_thresholds(database: Option<String>) {
    let world = World::new(database);
    world.import();
    let system = FakeSystem::start(&world.path("root"), 10).unwrap();

    // The agent reports: the device is up.
    let mut agent = world.start_agent();
    world.wait_state("up", "first report");

    // Agent stopped (cleanly): down, and a mail says so.
    assert_eq!(
        agent.terminate(Duration::from_secs(10)),
        Some(0),
        "agent did not stop on SIGTERM:\n{}",
        world.log("agent.log")
    );
    world.wait_state("down", "agent stopped");
    let mail = world.wait_mail("kind: down");
    // The webhook got the same alert as JSON.
    let hook = wait_for(Duration::from_secs(20), || {
        world
            .webhook
            .bodies()
            .into_iter()
            .find(|b| b.contains(&world.device) && b.contains("\"kind\":\"down\""))
    })
    .unwrap_or_else(|| panic!("no webhook delivery: {:?}", world.webhook.bodies()));
    let hook: Value = serde_json::from_str(&hook).unwrap();
    assert_eq!(hook["level"], "warning");
    assert!(mail.contains("Subject: [CPE") && mail.contains("level: warning"), "{mail}");

    // Started again: recovered.
    let mut agent = world.start_agent();
    world.wait_state("up", "agent restarted");
    world.wait_mail("kind: recovered");

    // A command pushed by the operator reaches the agent by long-poll and is acknowledged.
    provision(&["command", "--device", &world.device, "report-now", "--database", &world.database]);
    wait_for(Duration::from_secs(20), || {
        let out = provision(&["device", "show", &world.device, "--json", "--database", &world.database]);
        let detail: Value = serde_json::from_str(&out).unwrap();
        (detail["recent_commands"][0]["ok"] == true).then_some(())
    })
    .unwrap_or_else(|| panic!("command not acknowledged\n{}", world.log("agent.log")));

    // The primary line fails and the backup carries the default route: a failover alert.
    // Let the agent see the primary first (it takes a route seen at start as its starting point).
    std::thread::sleep(Duration::from_secs(2));
    system.set_default_route("wwan0").unwrap();
    wait_for(Duration::from_secs(20), || {
        world.alerts().iter().any(|a| a["kind"] == "failover").then_some(())
    })
    .unwrap_or_else(|| {
        let detail = provision(&["device", "show", &world.device, "--database", &world.database]);
        panic!("no failover alert: {:?}\n{detail}\n{}", world.alerts(), world.log("agent.log"))
    });
    system.set_default_route("wan0").unwrap();

    // SIGHUP reloads the configuration and the agent keeps running.
    let pid = agent.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(Duration::from_secs(10), || {
        world.log("agent.log").contains("configuration reloaded").then_some(())
    })
    .unwrap_or_else(|| panic!("no reload\n{}", world.log("agent.log")));
    assert!(agent.child.try_wait().unwrap().is_none(), "agent exited on SIGHUP");

    // CPU over caution, then over warning: two alerts, in that order, each mailed.
    system.set_cpu(70);
    wait_for(Duration::from_secs(20), || {
        world.alerts().iter().any(|a| a["kind"] == "threshold:cpu").then_some(())
    })
    .unwrap_or_else(|| panic!("no caution alert\n{}", world.log("agent.log")));
    system.set_cpu(97);
    let alerts = wait_for(Duration::from_secs(20), || {
        let cpu: Vec<Value> = world.alerts().into_iter().filter(|a| a["kind"] == "threshold:cpu").collect();
        (cpu.len() >= 2).then_some(cpu)
    })
    .unwrap_or_else(|| panic!("no warning alert: {:?}\n{}", world.alerts(), world.log("agent.log")));
    let mut by_id = alerts.clone();
    by_id.sort_by_key(|a| a["id"].as_i64());
    let levels: Vec<&str> = by_id.iter().map(|a| a["level"].as_str().unwrap_or("")).collect();
    assert_eq!(&levels[..2], &["caution", "warning"], "{alerts:?}");
    // Bodies carry kind and level in plain text (the subject is RFC 2047 encoded).
    let is =
        |m: &String, level: &str| m.contains("kind: threshold:cpu") && m.contains(&format!("level: {level}"));
    let mails = wait_for(Duration::from_secs(20), || {
        let mails = world.mails();
        mails.iter().any(|m| is(m, "warning")).then_some(mails)
    })
    .unwrap_or_else(|| panic!("no warning mail: {:?}", world.mails()));
    let caution = mails.iter().position(|m| is(m, "caution")).unwrap();
    let warning = mails.iter().position(|m| is(m, "warning")).unwrap();
    assert!(caution < warning, "mail order: {mails:?}");
}

#[test]
fn sqlite_liveness_mail_and_two_level_thresholds() {
    liveness_and_thresholds(None);
}

#[test]
fn postgres_liveness_mail_and_two_level_thresholds() {
    if let Some(url) = postgres_url("e2e") {
        liveness_and_thresholds(Some(url));
    }
}

fn client(world: &World, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(world.path("ca/ca.pem")).unwrap()).unwrap();
    let mut builder =
        reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).timeout(Duration::from_secs(10));
    if let Some(name) = identity {
        let mut pem = std::fs::read(world.path(&format!("{name}.crt.pem"))).unwrap();
        pem.extend(std::fs::read(world.path(&format!("{name}.key.pem"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

fn batch(device: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    use cpe_protocol::{Health, Payload, Record, ReportBatch};
    let records = seqs
        .map(|seq| Record {
            seq,
            at_unix_ms: 1_700_000_000_000,
            payload: Payload::Heartbeat(Health::default()),
        })
        .collect();
    cpe_protocol::encode(&ReportBatch { device: device.to_owned(), records })
}

async fn post(client: &reqwest::Client, world: &World, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let url = format!("https://127.0.0.1:{}/v1/reports", world.port);
    let resp = client.post(url).body(body).send().await.map_err(|e| format!("{e:?}"))?;
    Ok((resp.status().as_u16(), resp.bytes().await.map_err(|e| e.to_string())?.to_vec()))
}

async fn bad_input(database: Option<String>) {
    let world = World::new(database);
    let clinic = client(&world, Some("clinic"));

    let (status, body) = post(&clinic, &world, batch(&world.device, 1..=5)).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ack: cpe_protocol::BatchAck = cpe_protocol::decode(&body).unwrap();
    assert_eq!((ack.accepted, ack.duplicates, ack.through_seq), (5, 0, 5));
    // Replayed: accepted 0, duplicates 5, nothing stored twice.
    let (status, body) = post(&clinic, &world, batch(&world.device, 1..=5)).await.unwrap();
    assert_eq!(status, 200);
    let ack: cpe_protocol::BatchAck = cpe_protocol::decode(&body).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (0, 5));
    // Overlapping: only the new ones count.
    let (_, body) = post(&clinic, &world, batch(&world.device, 4..=7)).await.unwrap();
    let ack: cpe_protocol::BatchAck = cpe_protocol::decode(&body).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (2, 2));

    let good = batch(&world.device, 8..=8);
    let mut wrong_version = good.clone();
    wrong_version[0] = 7;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("garbage", b"\xff\xfe not postcard at all".to_vec(), 400, "malformed"),
        ("truncated", good[..good.len() - 3].to_vec(), 400, "malformed"),
        ("oversized", vec![1u8; cpe_protocol::MAX_BODY_BYTES + 1], 413, "exceeds"),
        ("wrong version", wrong_version, 422, "version 7"),
        ("claims another device", batch("1312345678/someone-else", 9..=9), 403, "claims device"),
        (
            "empty",
            cpe_protocol::encode(&cpe_protocol::ReportBatch {
                device: world.device.clone(),
                records: vec![],
            }),
            400,
            "1 to",
        ),
        (
            "out of order",
            {
                use cpe_protocol::{Health, Payload, Record, ReportBatch};
                let r = |seq| Record { seq, at_unix_ms: 0, payload: Payload::Heartbeat(Health::default()) };
                cpe_protocol::encode(&ReportBatch {
                    device: world.device.clone(),
                    records: vec![r(20), r(19)],
                })
            },
            400,
            "increasing",
        ),
    ];
    for (what, body, expected, needle) in cases {
        let (status, text) = post(&clinic, &world, body).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, expected, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    // A valid certificate of another institution cannot write into this device.
    let other = client(&world, Some("other"));
    let (status, text) = post(&other, &world, batch(&world.device, 100..=100)).await.unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&text));
    // No client certificate: the handshake is refused.
    let anonymous = client(&world, None);
    assert!(post(&anonymous, &world, batch(&world.device, 101..=101)).await.is_err());

    // The server kept serving, and stored each record once.
    let (status, _) = post(&clinic, &world, batch(&world.device, 8..=8)).await.unwrap();
    assert_eq!(status, 200);
    let seqs = report_seqs(&world).await;
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert!(world.log("server.log").contains("claims another device"), "refusal not logged");
}

async fn report_seqs(world: &World) -> Vec<u64> {
    stored(world).await.into_iter().map(|(seq, _)| seq).collect()
}

/// (seq, received at) of every stored report, in seq order.
async fn stored(world: &World) -> Vec<(u64, i64)> {
    let db = cpe_provision::store::Database::open(&world.database).await.unwrap();
    db.report_seqs(&world.device).await.unwrap()
}

#[tokio::test]
async fn sqlite_bad_input_is_refused_and_nothing_is_stored_twice() {
    bad_input(None).await;
}

#[tokio::test]
async fn postgres_bad_input_is_refused_and_nothing_is_stored_twice() {
    if let Some(url) = postgres_url("e2e") {
        bad_input(Some(url)).await;
    }
}

/// A renewal CSR for `code` and, if given, `unit` (OU), with a fresh key.
fn renewal_csr(code: &str, unit: Option<&str>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Clinic");
    if let Some(unit) = unit {
        params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, unit);
    }
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("Clinic {code}"));
    (params.serialize_request(&key).unwrap().pem().unwrap(), key.serialize_pem())
}

async fn call(client: &reqwest::Client, world: &World, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
    let url = format!("https://127.0.0.1:{}{path}", world.port);
    let request = match body {
        Some(body) => client.post(url).body(body),
        None => client.get(url),
    };
    let resp = request.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// Issue 19, item 1: the router `<code>/main` asked for unit `ward2` and got
/// a certificate for it. A renewal keeps exactly the code and the unit of
/// the certificate that authenticated it; anything else is 403 and alerted.
#[tokio::test]
async fn renewal_keeps_the_device_identity_and_another_unit_is_refused_and_alerted() {
    let world = World::new(None);
    let clinic = client(&world, Some("clinic"));
    // The device reports first, so the carrier knows it (and shows its alerts).
    assert_eq!(post(&clinic, &world, batch(&world.device, 1..=1)).await.unwrap().0, 200);
    let unit = world.device.split_once('/').unwrap().1.to_owned();
    let enrol = |csr_pem: String| cpe_protocol::encode(&cpe_protocol::EnrolRequest { csr_pem });

    let sibling = renewal_csr(CODE, Some("ward2")).0;
    let other_code = renewal_csr("2712345678", Some(&unit)).0;
    let no_unit = renewal_csr(CODE, None).0;
    for (csr, asked) in [
        (sibling, format!("{CODE}/ward2")),
        (other_code, "2712345678".into()),
        (no_unit, format!("{CODE}/main")),
    ] {
        let (status, body) = call(&clinic, &world, "/v1/enrol", Some(enrol(csr))).await;
        let message = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{asked}: {message}");
        assert!(message.contains(&asked) && message.contains(&world.device), "{message}");
        assert!(message.contains("keeps the device identity") && message.contains("拒否"), "{message}");
    }
    let alerts = world.alerts();
    let alert = alerts
        .iter()
        .find(|a| a["kind"] == "enrol-refused")
        .unwrap_or_else(|| panic!("no alert: {alerts:?}"));
    assert!(alert["message"].as_str().unwrap().contains("renewal refused"), "{alert}");

    // The same identity is renewed, and the new certificate is that same device.
    let (csr, key_pem) = renewal_csr(CODE, Some(&unit));
    let (status, body) = call(&clinic, &world, "/v1/enrol", Some(enrol(csr))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let renewed: cpe_protocol::EnrolResponse = cpe_protocol::decode(&body).unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(world.path("ca/ca.pem")).unwrap()).unwrap();
    let identity = reqwest::Identity::from_pem(format!("{}{key_pem}", renewed.chain_pem).as_bytes()).unwrap();
    let renewed_client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .identity(identity)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (status, body) = call(&renewed_client, &world, "/v1/ping", None).await;
    assert_eq!(status, 200);
    let pong: cpe_protocol::Pong = cpe_protocol::decode(&body).unwrap();
    assert_eq!(pong.device_id, world.device);
}

/// The carrier is away for many report intervals: the agent keeps every
/// record on disk and, once the carrier is back, delivers each exactly
/// once and in order. Then the agent is killed with SIGKILL and restarted:
/// its queue opens cleanly and reporting continues.
fn outage(database: Option<String>) {
    let mut world = World::new(database);
    world.import();
    let _system = FakeSystem::start(&world.path("root"), 10).unwrap();
    let mut agent = world.start_agent();
    world.wait_state("up", "first report");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let before = rt.block_on(report_seqs(&world)).len();

    world.stop_server();
    std::thread::sleep(Duration::from_secs(8));
    world.start_server();
    // Everything queued during the outage arrives: at least 6 more heartbeats.
    let seqs = wait_for(Duration::from_secs(30), || {
        let seqs = rt.block_on(report_seqs(&world));
        (seqs.len() >= before + 6).then_some(seqs)
    })
    .unwrap_or_else(|| panic!("queued reports not delivered\nagent log:\n{}", world.log("agent.log")));
    // Exactly once and in order: one agent run numbers its records without
    // gaps, and the store holds each (device, seq) once.
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>(), "gaps or repeats");
    // In order: a higher seq never arrived before a lower one.
    let arrivals = rt.block_on(stored(&world));
    assert!(arrivals.windows(2).all(|w| w[0].1 <= w[1].1), "received out of order: {arrivals:?}");

    // SIGKILL mid-run, restart: the queue opens, reporting goes on.
    agent.kill();
    let count = seqs.len();
    let _agent = world.start_agent();
    wait_for(Duration::from_secs(20), || (rt.block_on(report_seqs(&world)).len() >= count + 3).then_some(()))
        .unwrap_or_else(|| panic!("no reports after SIGKILL + restart\n{}", world.log("agent.log")));
    let after = rt.block_on(report_seqs(&world));
    assert!(after.windows(2).all(|w| w[0] < w[1]));
    assert!(
        !world.log("agent.log").contains("corrupt"),
        "queue reported corruption:\n{}",
        world.log("agent.log")
    );
}

#[test]
fn sqlite_outage_delivers_every_queued_report_once_in_order() {
    outage(None);
}

#[test]
fn postgres_outage_delivers_every_queued_report_once_in_order() {
    if let Some(url) = postgres_url("e2e") {
        outage(Some(url));
    }
}

/// The certificate events (`detail.event`) in the agent's audit log, from
/// an export checked with `cpe-agent log verify`.
fn certificate_audit_events(world: &World) -> Vec<String> {
    let export = world.path("audit.jsonl");
    let config = s(&world.path("agent.toml"));
    let run = |args: &[&str]| Command::new(binary("cpe-agent")).args(args).output().unwrap();
    assert!(run(&["--config", &config, "log", "export", "--out", &s(&export)]).status.success());
    assert!(run(&["log", "verify", &s(&export)]).status.success());
    std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| serde_json::from_str::<Value>(line.split_once(' ')?.1).ok())
        .filter(|entry| entry["kind"] == "certificate")
        .map(|entry| entry["detail"]["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn agent_status(world: &World) -> Value {
    let out = Command::new(binary("cpe-agent"))
        .args(["--config", &s(&world.path("agent.toml")), "cert", "status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A certificate past its renewal point: the running agent enrols a new key
/// over the channel, installs it and keeps reporting with it. When the
/// renewed identity cannot talk to the carrier (signed by a CA the carrier
/// does not accept), the agent restores the previous one.
#[test]
fn renewal_over_the_channel_and_rollback_when_the_new_identity_fails() {
    for proof_fails in [false, true] {
        let mut world = World::new(None);
        if proof_fails {
            provision(&["ca", "init", "--dir", &s(&world.path("ca2"))]);
            world.enrol = vec!["--enrol-test-ca".into(), s(&world.path("ca2"))];
            world.stop_server();
            world.start_server();
        }
        let trust = if proof_fails { r#"["ca/ca.pem", "ca2/ca.pem"]"# } else { r#"["ca/ca.pem"]"# };
        let before = install_short_certificate(&mut world, trust);
        let _system = FakeSystem::start(&world.path("root"), 10).unwrap();
        let _agent = world.start_agent();
        world.wait_state("up", "first report");
        if proof_fails {
            wait_for(Duration::from_secs(30), || {
                world.log("agent.log").contains("previous identity was restored").then_some(())
            })
            .unwrap_or_else(|| panic!("no rollback\n{}", world.log("agent.log")));
            assert_eq!(agent_status(&world)["fingerprint_sha256"], before["fingerprint_sha256"]);
            let rolled_back = wait_for(Duration::from_secs(10), || {
                certificate_audit_events(&world).contains(&"renewal_rolled_back".to_owned()).then_some(())
            });
            assert!(rolled_back.is_some(), "{:?}", certificate_audit_events(&world));
        } else {
            let after = wait_for(Duration::from_secs(30), || {
                let now = agent_status(&world);
                (now["fingerprint_sha256"] != before["fingerprint_sha256"]).then_some(now)
            })
            .unwrap_or_else(|| panic!("not renewed\n{}", world.log("agent.log")));
            assert!(after["days_left"].as_i64().unwrap() > 800, "{after}");
            assert_eq!(after["institution_code"], CODE);
            // The audit entry follows the handshake that proves the new identity.
            let events = wait_for(Duration::from_secs(10), || {
                let events = certificate_audit_events(&world);
                (events.len() >= 2).then_some(events)
            });
            assert_eq!(events.unwrap_or_default(), ["imported", "renewed"]);
            // Still reporting, now with the renewed certificate.
            let count = wait_for(Duration::from_secs(10), || Some(world.devices().len())).unwrap();
            assert!(count >= 1);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let n = rt.block_on(report_seqs(&world)).len();
            wait_for(Duration::from_secs(20), || {
                (rt.block_on(report_seqs(&world)).len() > n + 1).then_some(())
            })
            .unwrap_or_else(|| panic!("no reports after renewal\n{}", world.log("agent.log")));
        }
    }
}

/// A one-day certificate that started two hours ago (past 5 % of its life),
/// imported on the device, with an agent configuration that renews at 5 %
/// and trusts `trust_anchors` (a TOML array). Returns the device's
/// certificate status before renewal.
fn install_short_certificate(world: &mut World, trust_anchors: &str) -> Value {
    world.extra_config = "[renewal]\nlifetime_fraction = 0.05\n".into();
    world.write_agent_config();
    let config = std::fs::read_to_string(world.path("agent.toml")).unwrap();
    std::fs::write(
        world.path("agent.toml"),
        config.replace(r#"trust_anchors = ["ca/ca.pem"]"#, &format!("trust_anchors = {trust_anchors}")),
    )
    .unwrap();
    let started = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let started = started.format(&time::format_description::well_known::Rfc3339).unwrap();
    let unit = world.device.rsplit('/').next().unwrap().to_owned();
    provision(&[
        "cert",
        "issue",
        "--ca",
        &s(&world.path("ca")),
        "--institution",
        CODE,
        "--device-id",
        &unit,
        "--days",
        "1",
        "--not-before",
        &started,
        "--out",
        &s(&world.path("short.p12")),
        "--password-file",
        &s(&world.path("pw")),
    ]);
    world.import_file("short.p12");
    let before = agent_status(world);
    assert!(before["days_left"].as_i64().unwrap() <= 1, "{before}");
    before
}

/// Renewal through the certification body's EST service: the carrier holds
/// no CA, forwards the device's CSR as an EST `simplereenroll` with its own
/// client certificate, and hands the body's certificate to the device. While
/// the body is down the device keeps its identity; its next attempt succeeds.
#[test]
fn renewal_through_the_certification_bodys_est_service() {
    let mut world = World::new(None);
    // The carrier's registration-authority credential from the body.
    issue_pkcs12(world.dir.path(), "2712345678", "carrier-ra", "ra");
    let est = est_server::EstServer::start(
        &world.path("ca"),
        &world.path("server.crt.pem"),
        &world.path("server.key.pem"),
        &world.path("ca/ca.pem"),
        world.dir.path(),
    );
    world.enrol = [
        "--enrol-est",
        &est.url,
        "--est-ca",
        &s(&world.path("ca/ca.pem")),
        "--est-client-cert",
        &s(&world.path("ra.crt.pem")),
        "--est-client-key",
        &s(&world.path("ra.key.pem")),
    ]
    .map(str::to_owned)
    .to_vec();
    world.stop_server();
    world.start_server();
    let before = install_short_certificate(&mut world, r#"["ca/ca.pem"]"#);
    let _system = FakeSystem::start(&world.path("root"), 10).unwrap();

    // The body is down: the renewal fails, retryable, and the device keeps its certificate.
    est.unavailable.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut agent = world.start_agent();
    world.wait_state("up", "first report");
    wait_for(Duration::from_secs(30), || {
        world.log("agent.log").contains("certification body is not available now").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no failed attempt
agent:
{}
server:
{}",
            world.log("agent.log"),
            world.log("server.log")
        )
    });
    assert_eq!(agent_status(&world)["fingerprint_sha256"], before["fingerprint_sha256"]);
    assert_eq!(est.seen().iter().map(|r| r.status).collect::<Vec<_>>(), [503]);
    assert_eq!(agent.terminate(Duration::from_secs(10)), Some(0));

    // The next attempt (here: the agent's start) gets the body's certificate.
    let _agent = world.start_agent();
    let after = wait_for(Duration::from_secs(30), || {
        let now = agent_status(&world);
        (now["fingerprint_sha256"] != before["fingerprint_sha256"]).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "not renewed
agent:
{}
server:
{}",
            world.log("agent.log"),
            world.log("server.log")
        )
    });
    assert!(after["days_left"].as_i64().unwrap() > 800, "{after}");
    assert_eq!(after["institution_code"], CODE);
    let seen = est.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[1].path.as_str(), seen[1].status), ("/.well-known/est/simplereenroll", 200));
    assert!(seen.iter().all(|r| r.client_subject.contains("carrier-ra")), "{seen:?}");
    assert!(world.log("server.log").contains("EST at https://127.0.0.1:"), "{}", world.log("server.log"));
    assert!(world.log("server.log").contains("certificate issued over EST"), "{}", world.log("server.log"));
    let events = wait_for(Duration::from_secs(10), || {
        let events = certificate_audit_events(&world);
        (events.len() >= 2).then_some(events)
    });
    assert_eq!(events.unwrap_or_default(), ["imported", "renewed"]);
}

/// Certificate expiry at the carrier: a device whose certificate has a day
/// left is in the daily fleet summary (mail, warning) — once, although the
/// server looks every second — and in `cert expiry`.
#[test]
fn expiry_summary_once_a_day_and_expiry_report() {
    let mut world = World::new(None);
    install_short_certificate(&mut world, r#"["ca/ca.pem"]"#);
    // Renewal at the default 2/3 of the life: not due during the test.
    world.extra_config = String::new();
    world.write_agent_config();
    let _system = FakeSystem::start(&world.path("root"), 10).unwrap();
    let _agent = world.start_agent();
    world.wait_state("up", "first report");
    let mail = world.wait_mail("kind: cert-expiry");
    assert!(mail.contains("device: fleet") && mail.contains("level: warning"), "{mail}");
    assert!(mail.contains(&format!("{} (0 days left", world.device)), "{mail}");
    assert!(mail.contains("within 7 days"), "{mail}");
    std::thread::sleep(Duration::from_secs(3));
    let summaries = world.mails().into_iter().filter(|m| m.contains("kind: cert-expiry")).count();
    assert_eq!(summaries, 1, "{:?}", world.mails());

    let report: Value =
        serde_json::from_str(&provision(&["cert", "expiry", "--json", "--database", &world.database]))
            .unwrap();
    let within_7 = report["due"].as_array().unwrap().iter().find(|b| b["within_days"] == 7).unwrap();
    assert_eq!(within_7["devices"][0]["device"], world.device.as_str(), "{report}");
}

/// Two server processes share one PostgreSQL: a device that falls silent is
/// reported down exactly once (one alert, one mail) although both watchers
/// look, and it may come back through the other server.
#[test]
fn postgres_two_servers_share_one_database() {
    let Some(url) = postgres_url("e2e") else { return };
    let mut world = World::new(Some(url));
    let (_second, second_port) = world.spawn_server("127.0.0.1:0", "server2.log");
    world.import();
    let _system = FakeSystem::start(&world.path("root"), 10).unwrap();
    let mut agent = world.start_agent();
    world.wait_state("up", "first report");
    agent.terminate(Duration::from_secs(10));
    world.wait_state("down", "agent stopped");
    // Both watchers have had several chances to see the silence.
    std::thread::sleep(Duration::from_secs(3));
    let downs = world.alerts().into_iter().filter(|a| a["kind"] == "down").count();
    assert_eq!(downs, 1, "{:?}", world.alerts());
    // Mail goes out in raise order, after whatever else the watchers raised in the shared store.
    world.wait_mail("kind: down");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.mails().iter().filter(|m| m.contains("kind: down")).count(), 1, "{:?}", world.mails());
    // Back through the second server: recovered once.
    world.port = second_port;
    world.write_agent_config();
    let _agent = world.start_agent();
    world.wait_state("up", "agent on the second server");
    world.wait_mail("kind: recovered");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        world.mails().iter().filter(|m| m.contains("kind: recovered")).count(),
        1,
        "{:?}",
        world.mails()
    );
    assert!(
        world.alerts().iter().all(|a| a["kind"] != "down"),
        "down alert not cleared: {:?}",
        world.alerts()
    );
    world.stop_server();
}
