//! Judging: the pure functions turning what a probe saw into a check's
//! status and evidence ([`local`]: terminal, LAN and device; [`path`]:
//! uplink and carrier), and [`reconcile`], the rules that need two results.

use super::super::{base_name, checks, CheckResult, CheckStatus, Evidence};
use crate::config::DiagnoseConfig;

pub mod local;
pub mod path;

pub type Judged = (CheckStatus, Evidence);

pub fn ok(text: impl Into<String>) -> Evidence {
    Evidence::new(text)
}

pub fn skipped(text: impl Into<String>) -> Judged {
    (CheckStatus::Skipped, Evidence::new(text))
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
