//! `cpe-agent apply-state` and `cpe-agent orders status|apply` without a
//! network: the paths that never reach the firewall (fresh device, refused
//! orders, unusable input), and that `cert wipe` leaves a suspension in
//! force. The enforcement paths run in `orders_netns.rs` (namespaces, nft).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cpe_e2e::binary;
use cpe_protocol::order::{encode_signed, Order, OrderKind, OrderTarget, ORDER_VERSION};
use cpe_provision::order_keys::{sign, OrderSigningKey};

struct Device {
    dir: tempfile::TempDir,
    key: OrderSigningKey,
}

impl Device {
    fn new(institution_code: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = OrderSigningKey::generate().unwrap();
        let code = if institution_code { "institution_code = \"1312345678\"\n" } else { "" };
        let config = format!(
            "state_dir = \"state\"\n{code}[orders]\nkeys = [\"{}\"]\n[network]\nlan = [\"br-lan\"]\n",
            cpe_common::hex::encode(&key.public_key())
        );
        std::fs::write(dir.path().join("agent.toml"), config).unwrap();
        Self { dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent(&self, args: &[&str]) -> Output {
        Command::new(binary("cpe-agent"))
            .arg("--config")
            .arg(self.path("agent.toml"))
            .args(["--lang", "en"])
            .args(args)
            .output()
            .unwrap()
    }

    fn state_file(&self) -> PathBuf {
        self.path("state/orders/state.json")
    }

    fn signed_stop(&self, key: &OrderSigningKey, name: &str) -> PathBuf {
        let now = i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        )
        .unwrap();
        let order = Order {
            version: ORDER_VERSION,
            id: 1,
            target: OrderTarget { institution_code: "1312345678".into(), device: "main".into() },
            kind: OrderKind::Stop,
            sequence: 1,
            issued_at: now,
            not_before: now,
            expires_at: now + 3600,
            reason_ja: "停止".into(),
            reason_en: "stop".into(),
            deadline: None,
        };
        let path = self.path(name);
        std::fs::write(&path, encode_signed(&sign(&order, key).unwrap()).unwrap()).unwrap();
        path
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_fresh_device_shows_its_keys_and_enforces_nothing() {
    let device = Device::new(true);
    let out = device.agent(&["orders", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["initialised"], false);
    assert_eq!(status["state"], "normal");
    assert_eq!(status["last_sequence"], 0);
    assert_eq!(status["time_floor"]["source"], "build_time");
    assert_eq!(status["keys"][0]["public_key"], cpe_common::hex::encode(&device.key.public_key()));
    assert_eq!(status["keys"][0]["id"], cpe_common::hex::encode(&device.key.key_id()));
    assert!(status["clock"]["state"] == "untrusted" && status["clock"]["last_decision"].is_null());

    let out = device.agent(&["apply-state"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no order was ever applied"));
    assert!(!device.state_file().exists());
}

#[test]
fn refused_orders_exit_1_and_change_nothing() {
    let device = Device::new(true);
    std::fs::write(device.path("garbage"), b"\x01\x02\x03").unwrap();
    let stranger = OrderSigningKey::generate().unwrap();
    let foreign = device.signed_stop(&stranger, "foreign.order");
    for (file, class) in [(device.path("garbage"), "truncated"), (foreign, "unknown_key")] {
        let out = device.agent(&["orders", "apply", s(&file)]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(class) && text(&out).contains("nothing changed"), "{}", text(&out));
        assert!(!device.state_file().exists(), "a refusal writes no state");
    }
    // The refusals are in the audit log, which verifies.
    let export = device.path("audit.export");
    assert!(device.agent(&["log", "export", "--out", s(&export)]).status.success());
    let exported = std::fs::read_to_string(&export).unwrap();
    assert_eq!(exported.matches("\"order_refused\"").count(), 2, "{exported}");
    assert!(device.agent(&["log", "verify", s(&export)]).status.success());
}

/// Issue 19: a 256 MiB order file used 267 MB of memory in `orders apply`
/// (read whole before the size check); a router has 128 MiB. Now it is
/// refused after reading the limit + 1 byte, and audited.
#[test]
fn an_oversized_order_file_is_refused_without_being_read_whole() {
    let device = Device::new(true);
    let big = device.path("big.order");
    // Real data, not a sparse file: every page read would count.
    let chunk = vec![0x5au8; 1 << 20];
    let mut file = std::fs::File::create(&big).unwrap();
    for _ in 0..256 {
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
    drop(file);
    let out = device.agent(&["orders", "apply", s(&big)]);
    let peak_kib =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    println!(
        "orders apply on a 256 MiB file: exit {:?}, peak RSS of the agent processes {} KiB",
        out.status.code(),
        peak_kib
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("too_large") && text(&out).contains("nothing changed"), "{}", text(&out));
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB: the file was read whole");
    assert!(!device.state_file().exists());
    let export = device.path("audit.export");
    assert!(device.agent(&["log", "export", "--out", s(&export)]).status.success());
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains("\"class\":\"too_large\""), "{exported}");
}

#[test]
fn unusable_input_exits_2() {
    let device = Device::new(true);
    let out = device.agent(&["orders", "apply", s(&device.path("missing.order"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let device = Device::new(false);
    let stop = device.signed_stop(&device.key, "stop.order");
    let out = device.agent(&["orders", "apply", s(&stop)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("institution_code"), "{}", text(&out));
}

#[test]
fn cert_wipe_leaves_a_suspension_in_force_and_a_damaged_state_falls_back() {
    let device = Device::new(true);
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/order_state/suspended.json"),
    )
    .unwrap();
    std::fs::create_dir_all(device.state_file().parent().unwrap()).unwrap();
    std::fs::write(device.state_file(), &seed).unwrap();
    let wiped = device.agent(&["cert", "wipe", "--yes"]);
    assert!(wiped.status.success(), "{}", text(&wiped));
    assert_eq!(std::fs::read_to_string(device.state_file()).unwrap(), seed);
    let status = device.agent(&["orders", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((status["state"].as_str(), status["last_sequence"].as_u64()), (Some("suspended"), Some(3)));

    // Damaged with a good previous version: still suspended, with a warning.
    std::fs::write(device.path("state/orders/state.json.prev"), &seed).unwrap();
    std::fs::write(device.state_file(), b"{\"version\":").unwrap();
    let out = device.agent(&["orders", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("suspended") && text(&out).contains("damaged"), "{}", text(&out));
    // Both damaged: exit 2, no guess.
    std::fs::write(device.path("state/orders/state.json.prev"), b"x").unwrap();
    let out = device.agent(&["orders", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("damaged"), "{}", text(&out));
}
