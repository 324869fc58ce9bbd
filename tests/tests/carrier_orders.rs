//! The carrier side of compliance orders (issue 6) and incident records
//! (issue 4) end to end, with the real `cpe-provision` binary: order keys,
//! the §2.2 case flow with its refusals, delivery of signed orders to a
//! simulated device over mutual TLS, the device's signed enforcement
//! receipts (verified against its certificate; a forged one is rejected and
//! not recorded), refusals raising alerts, key rotation under the old key,
//! and diagnosis results shown per device. On SQLite, and on PostgreSQL when
//! `CPE_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, clippy::too_many_lines)]

mod support;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::postgres_url;

use cpe_e2e::{binary, Proc};
use cpe_protocol::order::{decode_order, decode_signed, signed_message, Order, OrderKind};
use cpe_protocol::receipt::{
    encode_receipt, EnforcementReceipt, ReceiptClock, ServiceState, SignedReceipt, RECEIPT_VERSION,
};
use cpe_protocol::{CommandAck, CommandKind, CommandList, Health, Incident, Payload, Record, ReportBatch};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519};
use serde_json::Value;

const CODE: &str = "1312345678";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn run(args: &[&str]) -> Output {
    let path = binary("cpe-provision");
    assert!(path.exists(), "{} not built; run `cargo build --workspace --bins` first", path.display());
    Command::new(path).args(args).env("USER", "tanaka").output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cpe-provision {args:?}: exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must be refused with exit status 1; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "cpe-provision {args:?} should be refused: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "a refusal prints nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A carrier server, its PKI and the simulated device's identity.
struct Carrier {
    dir: tempfile::TempDir,
    database: String,
    device: String,
    port: u16,
    _server: Proc,
}

impl Carrier {
    fn start(database: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let unit = cpe_e2e::unique_unit("cpe");
        cpe_e2e::carrier_pki(d, &["127.0.0.1"]).unwrap();
        for (name, unit) in [("clinic", unit.as_str()), ("impostor", "impostor")] {
            ok(&[
                "cert",
                "issue",
                "--ca",
                &s(&d.join("ca")),
                "--institution",
                CODE,
                "--device-id",
                unit,
                "--out",
                &s(&d.join(format!("{name}.p12"))),
                "--password-file",
                &s(&d.join("pw")),
                "--pem-out",
                &s(&d.join(name)),
            ]);
        }
        let database = database.unwrap_or_else(|| format!("sqlite:{}", s(&d.join("carrier.db"))));
        let args = cpe_e2e::serve_args(d, "127.0.0.1:0", &database, &["--long-poll-max", "5"]);
        let mut server = Proc::spawn("cpe-provision", &args, &d.join("server.log")).unwrap();
        let line = server.read_line_starting("listening on ").unwrap_or_else(|| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(d.join("server.log")).unwrap_or_default()
            )
        });
        let port = line.rsplit(':').next().unwrap().parse().unwrap();
        Self { dir, database, device: format!("{CODE}/{unit}"), port, _server: server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// `cpe-provision ARGS --database DB` (the database flag appended).
    fn ok(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--database", &self.database]);
        ok(&all)
    }

    fn refused(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--database", &self.database]);
        refused(&all)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn keys(&self) -> String {
        s(&self.path("keys"))
    }

    fn order(&self, id: u64) -> Value {
        self.json(&["order", "show", &id.to_string()])
    }
}

/// The simulated device: an mTLS client with its certificate's key.
struct Device {
    client: reqwest::Client,
    key: EcdsaKeyPair,
    base: String,
    seq: u64,
}

impl Device {
    fn new(carrier: &Carrier, name: &str) -> Self {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(carrier.path("ca/ca.pem")).unwrap()).unwrap();
        let mut identity = std::fs::read(carrier.path(&format!("{name}.crt.pem"))).unwrap();
        let key_pem = std::fs::read(carrier.path(&format!("{name}.key.pem"))).unwrap();
        identity.extend(&key_pem);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let der = pem::parse(&key_pem).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.contents(), &SystemRandom::new())
                .unwrap();
        Self { client, key, base: format!("https://127.0.0.1:{}", carrier.port), seq: 0 }
    }

    async fn report(&mut self, device: &str, payload: Payload) {
        self.seq += 1;
        let batch = ReportBatch {
            device: device.to_owned(),
            records: vec![Record { seq: self.seq, at_unix_ms: 1_800_000_000_000, payload }],
        };
        let resp = self
            .client
            .post(format!("{}/v1/reports", self.base))
            .body(cpe_protocol::encode(&batch))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    }

    /// Long-polls until an order command arrives; returns (command id, signed order bytes).
    async fn next_order(&self) -> (u64, cpe_protocol::order::SignedOrder) {
        for _ in 0..6 {
            let resp = self.client.get(format!("{}/v1/commands?wait=5", self.base)).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let list: CommandList = cpe_protocol::decode(&resp.bytes().await.unwrap()).unwrap();
            if let Some(command) = list.commands.into_iter().next() {
                let CommandKind::Order { signed } = command.kind else {
                    panic!("not an order: {:?}", command.kind)
                };
                return (command.id, decode_signed(&signed).unwrap());
            }
        }
        panic!("no order delivered within 30 s")
    }

    async fn ack(&self, ack: &CommandAck) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}/v1/commands/ack", self.base))
            .body(cpe_protocol::encode(ack))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned())
    }
}

/// The device's enforcement receipt for `order`, signed by `signer`.
fn signed_receipt(
    order: &Order,
    order_bytes: &[u8],
    state: ServiceState,
    signer: &EcdsaKeyPair,
) -> SignedReceipt {
    let digest = ring::digest::digest(&ring::digest::SHA256, order_bytes);
    let receipt = EnforcementReceipt {
        version: RECEIPT_VERSION,
        device: order.target.clone(),
        order_id: order.id,
        sequence: order.sequence,
        order_hash: digest.as_ref().try_into().unwrap(),
        applied_at: order.issued_at + 1,
        device_clock: 1000,
        time_floor: order.issued_at + 1,
        clock: ReceiptClock::Untrusted,
        resulting_state: state,
        drill: false,
    };
    let receipt_bytes = encode_receipt(&receipt).unwrap();
    let message = cpe_protocol::receipt::receipt_signed_message(&receipt_bytes);
    let signature = signer.sign(&SystemRandom::new(), &message).unwrap().as_ref().to_vec();
    SignedReceipt { receipt_bytes, scheme: 0x0403, signature }
}

fn verify(public_hex: &str, signed: &cpe_protocol::order::SignedOrder) -> Order {
    let public =
        (0..32).map(|i| u8::from_str_radix(&public_hex[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<u8>>();
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(&signed_message(&signed.order_bytes), &signed.signature)
        .unwrap_or_else(|_| panic!("order not signed by key {public_hex}"));
    decode_order(&signed.order_bytes).unwrap()
}

fn number_after(text: &str, prefix: &str) -> u64 {
    let rest =
        &text[text.find(prefix).unwrap_or_else(|| panic!("{prefix:?} not in {text:?}")) + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn rfc3339_in(d: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + d).format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn orders_flow(database: Option<String>) {
    let carrier = Carrier::start(database);
    let dev = carrier.device.clone();
    let mut device = Device::new(&carrier, "clinic");
    device.report(&dev, Payload::Heartbeat(Health::default())).await;

    // Order keys: created once, never overwritten, shown for provisioning.
    let keys = carrier.keys();
    ok(&["keys", "init", "--dir", &keys]);
    assert!(refused(&["keys", "init", "--dir", &keys]).contains("keys rotate"));
    let shown: Value = serde_json::from_str(&ok(&["keys", "show", "--dir", &keys, "--json"])).unwrap();
    let first_key = shown[0]["public_key"].as_str().unwrap().to_owned();
    assert_eq!((shown[0]["status"].as_str(), first_key.len()), (Some("current"), 64));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(carrier.path("keys/order-key.pk8")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(ok(&["keys", "show", "--dir", &keys]).contains(&format!("keys = [\"{first_key}\"]")));

    // ① Fact. Unknown devices and duplicate open cases are refused.
    assert!(carrier
        .refused(&["case", "open", "--device", "1312345678/nobody", "--fact", "x"])
        .contains("never reported"));
    let out =
        carrier.ok(&["case", "open", "--device", &dev, "--fact", "unauthorised remote-access tool found"]);
    let case = number_after(&out, "opened case ");
    assert!(carrier
        .refused(&["case", "open", "--device", &dev, "--fact", "again"])
        .contains("already has open case"));
    // A stop now is refused: no hearing yet; the message says what to do.
    let e = carrier.refused(&["order", "stop", "--device", &dev, "--reason", "x", "--keys", &keys]);
    assert!(e.contains("no hearing") && e.contains("case hearing --case"), "{e}");
    // ② ③ in order.
    assert!(carrier
        .refused(&["case", "report", "--case", &case.to_string(), "--to", "platform operator", "--text", "x"])
        .contains("no hearing"));
    carrier.ok(&[
        "case",
        "hearing",
        "--case",
        &case.to_string(),
        "--summary",
        "the director says a vendor installed it",
        "--operator",
        "sato",
    ]);
    carrier.ok(&[
        "case",
        "report",
        "--case",
        &case.to_string(),
        "--to",
        "platform operator",
        "--text",
        "reported by phone",
    ]);
    // ④ A deadline in the past is refused; one in an hour is recorded and a notice goes to the device.
    let e = carrier.refused(&[
        "case",
        "recommend",
        "--case",
        &case.to_string(),
        "--deadline",
        "2020-01-01T00:00:00Z",
        "--text",
        "x",
        "--keys",
        &keys,
    ]);
    assert!(e.contains("not in the future"), "{e}");
    let deadline = rfc3339_in(time::Duration::hours(1));
    carrier.ok(&[
        "case",
        "recommend",
        "--case",
        &case.to_string(),
        "--deadline",
        &deadline,
        "--text-ja",
        "遠隔操作ツールを削除してください",
        "--text-en",
        "remove the remote-access tool",
        "--keys",
        &keys,
    ]);
    let (command, signed) = device.next_order().await;
    let notice = verify(&first_key, &signed);
    assert_eq!((notice.kind.clone(), notice.sequence), (OrderKind::Notice, 1));
    assert_eq!(
        (
            notice.target.institution_code.as_str(),
            format!("{}/{}", notice.target.institution_code, notice.target.device)
        ),
        (CODE, dev.clone())
    );
    assert_eq!(notice.reason_ja, "遠隔操作ツールを削除してください");
    let deadline_s = time::OffsetDateTime::parse(&deadline, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp();
    assert_eq!(notice.deadline, Some(deadline_s));
    assert!(notice.expires_at - notice.issued_at == 7 * 86_400 && notice.not_before < notice.issued_at);
    let receipt = signed_receipt(&notice, &signed.order_bytes, ServiceState::Recommendation, &device.key);
    let (status, text) = device
        .ack(&CommandAck { id: command, ok: true, detail: "notice shown".into(), receipt: Some(receipt) })
        .await;
    assert_eq!(status, 200, "{text}");
    let shown = carrier.order(notice.id);
    assert_eq!(shown["state"], "applied", "{shown}");
    assert_eq!(shown["receipt"]["resulting_state"], "recommendation");

    // ⑥ before the deadline: refused, saying why and what to do.
    let e = carrier.refused(&["order", "stop", "--device", &dev, "--reason", "x", "--keys", &keys]);
    assert!(e.contains("has not passed") && e.contains("--urgent --justification"), "{e}");
    // Urgent: allowed with a justification.
    let started = Instant::now();
    let out = carrier.ok(&[
        "order",
        "stop",
        "--device",
        &dev,
        "--reason-ja",
        "緊急停止",
        "--reason-en",
        "urgent stop: tool is exfiltrating data",
        "--urgent",
        "--justification",
        "active data exfiltration reported by the platform",
        "--keys",
        &keys,
    ]);
    let stop_id = number_after(&out, "queued stop order ");
    let (command, signed) = device.next_order().await;
    eprintln!("figure: `order stop` start to delivery on loopback: {} ms", started.elapsed().as_millis());
    let stop = verify(&first_key, &signed);
    assert_eq!((stop.kind.clone(), stop.sequence, stop.id), (OrderKind::Stop, 2, stop_id));
    assert_eq!(carrier.order(stop_id)["state"], "delivered");
    // A receipt signed by another key (a valid certificate of the same CA) is rejected, nothing recorded.
    let impostor = Device::new(&carrier, "impostor");
    let forged = signed_receipt(&stop, &signed.order_bytes, ServiceState::Suspended, &impostor.key);
    let (status, text) = device
        .ack(&CommandAck { id: command, ok: true, detail: "forged".into(), receipt: Some(forged) })
        .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("does not verify"), "{text}");
    // Applied without any receipt: rejected too.
    let (status, _) =
        device.ack(&CommandAck { id: command, ok: true, detail: "no receipt".into(), receipt: None }).await;
    assert_eq!(status, 422);
    // Genuine, but about another order (wrong sequence): rejected.
    let mut other = stop.clone();
    other.sequence = 1;
    let mismatched = signed_receipt(&other, &signed.order_bytes, ServiceState::Suspended, &device.key);
    let (status, text) = device
        .ack(&CommandAck { id: command, ok: true, detail: "x".into(), receipt: Some(mismatched) })
        .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("sequence"), "{text}");
    let shown = carrier.order(stop_id);
    assert_eq!((shown["state"].as_str(), &shown["receipt"]), (Some("delivered"), &Value::Null), "{shown}");
    assert!(carrier.log().contains("enforcement receipt rejected"));
    // The genuine receipt: verified and recorded; the device is shown suspended.
    let receipt = signed_receipt(&stop, &signed.order_bytes, ServiceState::Suspended, &device.key);
    let (status, text) = device
        .ack(&CommandAck { id: command, ok: true, detail: "blocked".into(), receipt: Some(receipt) })
        .await;
    assert_eq!(status, 200, "{text}");
    let shown = carrier.order(stop_id);
    assert_eq!(shown["state"], "applied");
    assert_eq!(
        (shown["receipt"]["clock"].as_str(), shown["receipt"]["scheme"].as_str()),
        (Some("untrusted"), Some("0x0403"))
    );
    assert_eq!(shown["justification"], "active data exfiltration reported by the platform");
    let detail = carrier.json(&["device", "show", &dev]);
    assert_eq!(detail["service"], format!("suspended (order {stop_id})"));
    assert!(carrier
        .ok(&["device", "show", &dev])
        .contains(&format!("service      suspended (order {stop_id})")));
    // A second stop while one is in force is refused.
    assert!(carrier
        .refused(&[
            "order",
            "stop",
            "--device",
            &dev,
            "--reason",
            "x",
            "--urgent",
            "--justification",
            "y",
            "--keys",
            &keys
        ])
        .contains("already has a stop"));

    // Resume needs a confirmed correction.
    let e = carrier.refused(&["order", "resume", "--device", &dev, "--keys", &keys]);
    assert!(e.contains("case check --case") && e.contains("--justification"), "{e}");
    carrier.ok(&[
        "case",
        "check",
        "--case",
        &case.to_string(),
        "--corrected",
        "yes",
        "--note",
        "on-site visit",
    ]);
    let out = carrier.ok(&["order", "resume", "--device", &dev, "--keys", &keys]);
    let resume_id = number_after(&out, "queued resume order ");
    let (command, signed) = device.next_order().await;
    let resume = verify(&first_key, &signed);
    assert_eq!((resume.kind.clone(), resume.sequence, resume.id), (OrderKind::Resume, 3, resume_id));
    // The device refuses it (say, its clock says expired): recorded with the detail, and an alert.
    let (status, _) = device
        .ack(&CommandAck { id: command, ok: false, detail: "refused: expired".into(), receipt: None })
        .await;
    assert_eq!(status, 200);
    let shown = carrier.order(resume_id);
    assert_eq!(
        (shown["state"].as_str(), shown["detail"].as_str()),
        (Some("refused"), Some("refused: expired"))
    );
    let alerts = carrier.json(&["alerts"]);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "order-refused" && a["device_id"] == dev.as_str()),
        "{alerts}"
    );

    // The whole trail: who, when, what, why.
    let trail = carrier.json(&["case", "show", &case.to_string()]);
    let steps: Vec<&str> =
        trail["trail"].as_array().unwrap().iter().map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["fact", "hearing", "report", "recommend", "stop", "check", "resume"]);
    assert_eq!(trail["trail"][1]["operator"], "sato");
    assert_eq!(trail["trail"][0]["operator"], "tanaka");
    assert_eq!(trail["trail"][4]["justification"], "active data exfiltration reported by the platform");
    assert_eq!(trail["trail"][4]["order_id"], stop_id);
    assert_eq!(trail["status"], "closed");
    assert_eq!(trail["orders"].as_array().unwrap().len(), 3);
    let text = carrier.ok(&["case", "show", &case.to_string()]);
    assert!(
        text.contains("hearing") && text.contains("to: platform operator") && !text.contains("NOT corrected"),
        "{text}"
    );
    let list = carrier.json(&["order", "list", "--device", &dev]);
    let kinds_and_states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["state"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds_and_states, [("resume", "refused"), ("stop", "applied"), ("notice", "applied")]);

    // Key rotation: every known device gets a rotation order signed by the old key.
    ok(&["keys", "rotate", "--dir", &keys, "--database", &carrier.database]);
    let shown: Value = serde_json::from_str(&ok(&["keys", "show", "--dir", &keys, "--json"])).unwrap();
    let new_key = shown[0]["public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, first_key);
    assert_eq!(
        (shown[1]["status"].as_str(), shown[1]["public_key"].as_str()),
        (Some("retired"), Some(first_key.as_str()))
    );
    let (rotation_command, signed) = device.next_order().await;
    // The resume command was acknowledged, so the next one is the rotation.
    let rotation = verify(&first_key, &signed);
    let rotation_receipt =
        signed_receipt(&rotation, &signed.order_bytes, ServiceState::Suspended, &device.key);
    let OrderKind::KeyRotation { new_key: announced, retire } = rotation.kind else {
        panic!("{:?}", rotation.kind)
    };
    assert_eq!(rotation.sequence, 4);
    let hex = cpe_common::hex::encode(&announced);
    assert_eq!(hex, new_key);
    assert_eq!(retire.len(), 1);
    assert_eq!(cpe_common::hex::encode(&retire[0]), shown[1]["key_id"].as_str().unwrap());
    let ack = CommandAck {
        id: rotation_command,
        ok: true,
        detail: "key rotated".into(),
        receipt: Some(rotation_receipt),
    };
    assert_eq!(device.ack(&ack).await.0, 200);
    // An auditor re-verifies the stop from the store: signed by the (now retired) first key,
    // the record matches, and the receipt is the device's (certificate stored with it).
    let audit: Value = serde_json::from_str(&ok(&[
        "order",
        "verify",
        &stop_id.to_string(),
        "--keys",
        &keys,
        "--json",
        "--database",
        &carrier.database,
    ]))
    .unwrap();
    assert_eq!(audit["passed"], true, "{audit}");
    assert!(audit["checks"][0]["detail"].as_str().unwrap().contains("retired key"), "{audit}");
    assert_eq!(audit["checks"][2]["result"], "ok", "{audit}");
    // A refused order has no receipt to check; with no keys the audit cannot run.
    let audit: Value = serde_json::from_str(&ok(&[
        "order",
        "verify",
        &resume_id.to_string(),
        "--keys",
        &keys,
        "--json",
        "--database",
        &carrier.database,
    ]))
    .unwrap();
    assert_eq!(audit["checks"][2]["result"], "skipped", "{audit}");
    assert!(carrier
        .refused(&["order", "verify", &stop_id.to_string(), "--keys", &s(&carrier.path("nokeys"))])
        .contains("keys init"));
    // Later orders are signed by the new key: a drill, which needs no case.
    let out = ok(&["order", "drill", "--device", &dev, "--keys", &keys, "--database", &carrier.database]);
    let drill_id = number_after(&out, "queued drill order ");
    let (_, signed) = device.next_order().await;
    let drill = verify(&new_key, &signed);
    assert_eq!((drill.kind, drill.sequence, drill.id), (OrderKind::Drill, 5, drill_id));
    assert!(drill.reason_en.contains("drill"), "{}", drill.reason_en);
    let shown_drill = carrier.order(drill_id);
    assert_eq!(
        (shown_drill["case_id"].clone(), shown_drill["key_id"].clone()),
        (Value::Null, shown[0]["key_id"].clone())
    );

    // Incidents (issue 4): the latest diagnosis shows on the device, with its checks.
    let report_json = r#"{"id":"d-1","verdict":{"segment":"uplink","summary":"gateway unreachable","hint":"check the ONU"},"checks":[{"name":"gateway_icmp","segment":"uplink","status":"failed","evidence":"3/3 lost","duration_ms":3000}]}"#;
    device
        .report(
            &dev,
            Payload::Incident(Incident {
                id: "d-1".into(),
                command_id: None,
                segment: "uplink".into(),
                summary: "gateway unreachable".into(),
                report_json: report_json.into(),
            }),
        )
        .await;
    let detail = carrier.json(&["device", "show", &dev]);
    assert_eq!(detail["latest_incident"]["segment"], "uplink", "{detail}");
    assert_eq!(detail["latest_incident"]["report"]["checks"][0]["evidence"], "3/3 lost");
    let text = carrier.ok(&["device", "show", &dev]);
    assert!(text.contains("diagnosis    uplink: gateway unreachable"), "{text}");
    assert!(text.contains("failed  uplink/gateway_icmp  3/3 lost"), "{text}");
    let incidents = carrier.json(&["incidents", "--device", &dev]);
    assert_eq!(incidents[0]["id"], "d-1");

    // A new case after the closed one: an urgent matter skips the hearing, with a justification.
    let out = carrier.ok(&["case", "open", "--device", &dev, "--fact", "second finding"]);
    let case2 = number_after(&out, "opened case ").to_string();
    let usage = run(&["case", "hearing", "--case", &case2, "--skip-urgent", "--database", &carrier.database]);
    assert_eq!(usage.status.code(), Some(2), "--skip-urgent without --justification is a usage error");
    carrier.ok(&[
        "case",
        "hearing",
        "--case",
        &case2,
        "--skip-urgent",
        "--justification",
        "ransomware spreading",
    ]);
    carrier.ok(&["case", "report", "--case", &case2, "--to", "platform operator", "--text", "reported"]);
    let deadline = rfc3339_in(time::Duration::days(2));
    carrier.ok(&[
        "case",
        "recommend",
        "--case",
        &case2,
        "--deadline",
        &deadline,
        "--text",
        "isolate the PC",
        "--keys",
        &keys,
    ]);
    let e = carrier.refused(&["case", "check", "--case", &case2, "--corrected", "no"]);
    assert!(e.contains("has not passed"), "{e}");
    let trail = carrier.json(&["case", "show", &case2]);
    assert_eq!(trail["trail"][1]["step"], "hearing-skipped");
    assert_eq!(trail["trail"][1]["justification"], "ransomware spreading");
    assert_eq!(trail["status"], "recommended");

    // A store that cannot be opened: the command could not run (exit 2), no password shown.
    let out = run(&["order", "list", "--database", "postgres://cpe:secret@127.0.0.1:1/none"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot open the database") && !stderr.contains("secret"), "{stderr}");

    // Error paths: clear messages, exit status 1.
    assert!(carrier.refused(&["order", "show", "999999"]).contains("no order 999999"));
    assert!(carrier.refused(&["case", "show", "999999"]).contains("no case 999999"));
    assert!(carrier.refused(&["incidents", "--device", "1312345678/nobody"]).contains("no device"));
    assert!(carrier
        .refused(&["order", "stop", "--device", "1312345678/nobody", "--reason", "x", "--keys", &keys])
        .contains("no compliance case"));
    assert!(refused(&["keys", "show", "--dir", &s(&carrier.path("nokeys"))]).contains("keys init"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_case_flow_orders_receipts_rotation_and_incidents() {
    orders_flow(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_case_flow_orders_receipts_rotation_and_incidents() {
    if let Some(url) = postgres_url("orders") {
        orders_flow(Some(url)).await;
    }
}
