//! `cpe-agent diagnose` as a user runs it, on loopback only: exactly one
//! JSON document on stdout in the shape, the exit codes (0 healthy,
//! 1 fault, 2 could not run), the report kept in `last.json` and queued for
//! the carrier as an incident.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use cpe_agent::queue::{Queue, QueueLimits};
use cpe_protocol::Payload;
use serde_json::Value;

fn diagnose(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpe-agent"))
        .arg("--config")
        .arg(config)
        .arg("diagnose")
        .args(args)
        .env("LANG", "C")
        .output()
        .unwrap()
}

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, format!("state_dir = \"state\"\n{extra}")).unwrap();
    path
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "one JSON document on one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn healthy_loopback_lan_exits_0_with_the_report_shape() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[network]\nlan = [\"lo\"]\n");
    let started = Instant::now();
    let out = diagnose(&config, &["--json", "--segment", "lan"]);
    eprintln!("healthy LAN run on loopback: {} ms wall", started.elapsed().as_millis());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["checks", "duration_ms", "id", "started_at", "verdict"]);
    assert_eq!(report["verdict"]["segment"], "none");
    for check in report["checks"].as_array().unwrap() {
        let keys: Vec<&str> = check.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["duration_ms", "evidence", "name", "segment", "status"]);
        assert_eq!(check["segment"], "lan");
    }
    let link = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "lan.link@lo").unwrap();
    assert_eq!(
        (link["status"].as_str(), link["evidence"]["values"]["iface"].as_str()),
        (Some("ok"), Some("lo"))
    );

    // Kept on the device and queued for the carrier under the same id.
    let last: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/diagnosis/last.json")).unwrap())
            .unwrap();
    assert_eq!(last["id"], report["id"]);
    let mut queue = Queue::open(&dir.path().join("state/queue"), QueueLimits::default()).unwrap();
    let records = queue.peek_batch(10, 1 << 20).unwrap();
    let Payload::Incident(incident) = postcard::from_bytes::<Payload>(&records[0].payload).unwrap() else {
        panic!("not an incident")
    };
    assert_eq!((incident.id.as_str(), incident.segment.as_str()), (report["id"].as_str().unwrap(), "none"));
    assert_eq!(incident.command_id, None);
    queue.ack_through(records[0].seq).unwrap();
}

#[test]
fn a_stopped_carrier_is_a_carrier_fault_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = config(dir.path(), &format!("[carrier]\nurl = \"https://127.0.0.1:{port}\"\n"));
    let out = diagnose(&config, &["--json", "--segment", "carrier", "--lang", "ja"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["verdict"]["segment"], "carrier");
    assert!(report["verdict"]["hint"].as_str().unwrap().contains("通信事業者"), "{report}");
    let status = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "carrier.status").unwrap();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["evidence"]["values"]["refused"], "true");
}

#[test]
fn nothing_to_run_or_no_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let out = diagnose(&config, &["--json", "--segment", "terminal"]);
    assert_eq!(out.status.code(), Some(2), "no terminal configured: nothing ran");
    assert_eq!(json(&out)["checks"].as_array().unwrap().len(), 0);
    let out = diagnose(&dir.path().join("missing.toml"), &["--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let text = diagnose(&config, &["--segment", "lan", "--lang", "en"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Verdict:"), "text mode renders the table");
}
