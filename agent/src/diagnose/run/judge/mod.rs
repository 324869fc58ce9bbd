//! Judging: the pure functions turning what a probe saw into a check's
//! status and evidence ([`local`]: terminal, LAN and device; [`path`]:
//! uplink and carrier), and [`reconcile`], the rules that need two results.

use super::super::{base_name, checks, CheckResult, CheckStatus, Evidence, Text};
use crate::config::DiagnoseConfig;

pub mod local;
pub mod path;

pub type Judged = (CheckStatus, Evidence);

pub fn ok(ja: impl Into<String>, en: impl Into<String>) -> Evidence {
    Evidence::new(ja, en)
}

pub fn skipped(ja: impl Into<String>, en: impl Into<String>) -> Judged {
    (CheckStatus::Skipped, Evidence::new(ja, en))
}

/// Turns a failed result into a warning, saying why (`ja`, `en`) after its
/// sentence and marking it `marker=true`.
fn downgrade(r: &mut CheckResult, ja: &str, en: &str, marker: &str) {
    r.status = CheckStatus::Warning;
    r.evidence.text = remark(&r.evidence.text, ja, en);
    r.evidence.values.insert(marker.into(), "true".into());
}

/// Appends a remark (both languages) to an evidence sentence.
fn remark(text: &Text, ja: &str, en: &str) -> Text {
    Text::new(format!("{}（{ja}）", text.ja), format!("{} ({en})", text.en))
}

/// Cross-check rules that need two results: an echo-filtering carrier is
/// not a loss, and a gateway that answers ARP but filters echo is not a
/// line fault while TCP reaches the carrier; a carrier host that answers
/// echo but lets its port's SYNs go unanswered is a carrier-side fault (a
/// filtered port), told apart from a refusing one and from a dead line;
/// under heavy loss a vanished large probe proves no MTU black hole (a
/// warning, the loss is the finding); a device clock far from the
/// carrier's is a device fault.
pub fn reconcile(results: &mut [CheckResult], settings: &DiagnoseConfig) {
    let connected = results
        .iter()
        .any(|r| base_name(&r.name) == checks::UPLINK_TCP_CONNECT && r.status == CheckStatus::Ok);
    let gateway_answers_arp = results
        .iter()
        .any(|r| base_name(&r.name) == checks::UPLINK_GATEWAY_ARP && r.status == CheckStatus::Ok);
    for r in results.iter_mut().filter(|r| {
        connected
            && gateway_answers_arp
            && base_name(&r.name) == checks::UPLINK_GATEWAY_ICMP
            && r.status == CheckStatus::Failed
            && r.evidence.values.get("received").is_some_and(|v| v == "0")
            && r.evidence.values.get("sent").is_some_and(|v| v != "0")
    }) {
        downgrade(
            r,
            "ゲートウェイは ARP に応答し、通信事業者へ TCP で接続できるため、ping が遮断されているだけで回線の障害ではありません",
            "the gateway answers ARP and TCP reaches the carrier: echo is filtered, the line works",
            "echo_filtered",
        );
    }
    port_filtered_at_the_carrier(results);
    for r in results.iter_mut() {
        if base_name(&r.name) == checks::UPLINK_LOSS
            && r.status == CheckStatus::Failed
            && connected
            && r.evidence.values.get("received").is_some_and(|v| v == "0")
        {
            downgrade(
                r,
                "通信事業者は TCP に応答しているため、ping が経路上で遮断されているだけで、パケットは失われていません",
                "the carrier answers TCP: echo is filtered, not lost",
                "echo_filtered",
            );
        }
    }
    let heavy_loss =
        results.iter().any(|r| base_name(&r.name) == checks::UPLINK_LOSS && r.status == CheckStatus::Failed);
    for r in results.iter_mut() {
        if heavy_loss && base_name(&r.name) == checks::UPLINK_PATH_MTU && r.status == CheckStatus::Failed {
            downgrade(
                r,
                "パケット損失が多いため、この結果は不確かです",
                "unreliable: heavy packet loss",
                "unreliable_under_loss",
            );
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
            r.evidence.text = Text::new(
                format!("ルーターの時計が通信事業者の時計と {skew} 秒ずれています"),
                format!("the device clock is {skew} s off the carrier's"),
            );
            r.evidence.values.insert("clock_skew_s".into(), skew.to_string());
        }
    }
}

/// A connection to the carrier whose SYNs go unanswered while the carrier
/// host answers echo over the same line: the line delivers, the carrier's
/// port is filtered (firewall, overloaded listener). `uplink.tcp_connect`
/// becomes a warning (no connection, but no line fault;
/// `host_answers_echo=true`) and
/// `carrier.status` fails with `syn_unanswered=true`; a refusing port is
/// judged in [`path::judge_exchange`], a silent host stays a line fault.
fn port_filtered_at_the_carrier(results: &mut [CheckResult]) {
    let Some(address) = results
        .iter()
        .find(|r| {
            base_name(&r.name) == checks::UPLINK_TCP_CONNECT
                && r.status == CheckStatus::Failed
                && r.evidence.values.get("syn").is_some_and(|v| v == "unanswered")
        })
        .and_then(|r| r.evidence.values.get("address"))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        return;
    };
    let host = address.ip().to_string();
    let host_answers_echo = results.iter().any(|r| {
        base_name(&r.name) == checks::UPLINK_LOSS
            && r.evidence.values.get("target") == Some(&host)
            && r.evidence.values.get("received").is_some_and(|v| v != "0")
    });
    if !host_answers_echo {
        return;
    }
    for r in results.iter_mut() {
        match base_name(&r.name) {
            checks::UPLINK_TCP_CONNECT => downgrade(
                r,
                &format!("{host} は ping に応答するため、回線は通じています"),
                &format!("{host} answers echo: the line works"),
                "host_answers_echo",
            ),
            checks::CARRIER_STATUS => {
                r.status = CheckStatus::Failed;
                r.evidence = Evidence::new(
                    format!(
                        "{address} は接続要求（SYN）に応答しません。{host} は ping に応答するため、通信事業者側でポートが遮断されているか、サーバが応答できない状態です"
                    ),
                    format!(
                        "{address} leaves SYNs unanswered while {host} answers echo: the carrier's port is filtered or its server cannot answer"
                    ),
                )
                .with("address", address.to_string())
                .with("syn_unanswered", "true");
            }
            _ => {}
        }
    }
}
