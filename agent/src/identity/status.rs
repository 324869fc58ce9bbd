//! `cpe-agent cert status`: what the installed identity is and how long it lasts.
//!
//! The JSON keys are a contract with the carrier's tooling and monitoring
//! scripts: `subject, issuer, serial, not_before, not_after, days_left,
//! fingerprint_sha256, institution_code, key_type, state`, nothing else. When
//! no identity is installed every field but `state` (`"none"`) is null.

use std::fmt::Write;

use cpe_common::institution::CodeField;
use serde::Serialize;
use time::OffsetDateTime;

use super::renewal::{Assessment, CertState, RenewalPolicy};
use super::store::StoredIdentity;
use super::validate::{cert_info, rfc3339, CertInfo};
use crate::lang::Lang;

/// The status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// Subject DN.
    pub subject: Option<String>,
    /// Issuer DN.
    pub issuer: Option<String>,
    /// Serial number (colon-separated hex).
    pub serial: Option<String>,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: Option<String>,
    /// End of validity, RFC 3339 UTC.
    pub not_after: Option<String>,
    /// Whole days until expiry (negative when expired).
    pub days_left: Option<i64>,
    /// SHA-256 of the certificate (hex).
    pub fingerprint_sha256: Option<String>,
    /// Institution code in the certificate.
    pub institution_code: Option<String>,
    /// Key type, e.g. `ecdsa-p256`.
    pub key_type: Option<String>,
    /// valid / expiring / expired / not_yet_valid / none.
    pub state: CertState,
}

/// Status plus what the human view adds (renewal point, warnings).
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The JSON-facing status.
    pub status: CertStatus,
    /// Renewal assessment, when an identity exists.
    pub assessment: Option<Assessment>,
    /// Generation name of the current identity.
    pub generation: Option<String>,
}

/// Builds the status of `identity` at `now`.
pub fn report(
    identity: Option<&StoredIdentity>,
    code_field: CodeField,
    policy: &RenewalPolicy,
    now: OffsetDateTime,
) -> Result<StatusReport, String> {
    let Some(identity) = identity else {
        return Ok(StatusReport { status: none(), assessment: None, generation: None });
    };
    let leaf = identity.chain.first().ok_or("stored chain is empty")?;
    let info: CertInfo = cert_info(leaf, code_field)?;
    let assessment = policy.assess(info.not_before, info.not_after, now);
    let status = CertStatus {
        subject: Some(info.subject),
        issuer: Some(info.issuer),
        serial: Some(info.serial),
        not_before: Some(rfc3339(info.not_before)),
        not_after: Some(rfc3339(info.not_after)),
        days_left: Some(assessment.days_left),
        fingerprint_sha256: Some(info.fingerprint_sha256),
        institution_code: info.institution_code.map(String::from),
        key_type: Some(info.key_type),
        state: assessment.state,
    };
    Ok(StatusReport { status, assessment: Some(assessment), generation: Some(identity.generation.clone()) })
}

/// Column width of the labels, in terminal cells.
const LABEL_CELLS: usize = 22;

/// Pads `label` to [`LABEL_CELLS`] terminal cells; CJK characters take two.
fn pad(label: &str) -> String {
    let cells: usize = label.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum();
    format!("{label}{}", " ".repeat(LABEL_CELLS.saturating_sub(cells)))
}

/// East Asian wide characters (Hangul Jamo to CJK, Hangul, compatibility and
/// full-width forms): enough for the labels this module prints.
fn is_wide(c: char) -> bool {
    matches!(u32::from(c), 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6)
}

fn none() -> CertStatus {
    CertStatus {
        subject: None,
        issuer: None,
        serial: None,
        not_before: None,
        not_after: None,
        days_left: None,
        fingerprint_sha256: None,
        institution_code: None,
        key_type: None,
        state: CertState::None,
    }
}

/// The human view, in `lang`.
pub fn render_text(report: &StatusReport, lang: Lang) -> String {
    let s = &report.status;
    let state = match (s.state, lang) {
        (CertState::Valid, Lang::Ja) => "有効 (valid)",
        (CertState::Expiring, Lang::Ja) => "期限間近 (expiring)",
        (CertState::Expired, Lang::Ja) => "期限切れ (expired)",
        (CertState::NotYetValid, Lang::Ja) => "有効期間前 (not yet valid)",
        (CertState::None, Lang::Ja) => "未設定 (none)",
        (CertState::Valid, Lang::En) => "valid",
        (CertState::Expiring, Lang::En) => "expiring",
        (CertState::Expired, Lang::En) => "expired",
        (CertState::NotYetValid, Lang::En) => "not yet valid",
        (CertState::None, Lang::En) => "none",
    };
    let labels: [&str; 12] = match lang {
        Lang::Ja => [
            "状態",
            "主体者",
            "発行者",
            "シリアル",
            "有効期間開始",
            "有効期限",
            "残り日数",
            "指紋 (SHA-256)",
            "医療機関コード",
            "鍵種別",
            "更新予定",
            "世代",
        ],
        Lang::En => [
            "state",
            "subject",
            "issuer",
            "serial",
            "not before",
            "not after",
            "days left",
            "fingerprint (SHA-256)",
            "institution code",
            "key type",
            "renewal due",
            "generation",
        ],
    };
    let mut out = String::new();
    let _ = writeln!(out, "{} {state}", pad(labels[0]));
    if s.state == CertState::None {
        out.push_str(match lang {
            Lang::Ja => "証明書が設定されていません。`cpe-agent cert import` で機関証明書を取り込んでください。\n",
            Lang::En => "No certificate is installed. Import the institution certificate with `cpe-agent cert import`.\n",
        });
        return out;
    }
    let dash = || "-".to_owned();
    let rows = [
        (labels[1], s.subject.clone().unwrap_or_else(dash)),
        (labels[2], s.issuer.clone().unwrap_or_else(dash)),
        (labels[3], s.serial.clone().unwrap_or_else(dash)),
        (labels[4], s.not_before.clone().unwrap_or_else(dash)),
        (labels[5], s.not_after.clone().unwrap_or_else(dash)),
        (labels[6], s.days_left.map_or_else(dash, |d| d.to_string())),
        (labels[7], s.fingerprint_sha256.clone().unwrap_or_else(dash)),
        (labels[8], s.institution_code.clone().unwrap_or_else(dash)),
        (labels[9], s.key_type.clone().unwrap_or_else(dash)),
        (labels[10], report.assessment.as_ref().map_or_else(dash, |a| rfc3339(a.renew_at))),
        (labels[11], report.generation.clone().unwrap_or_else(dash)),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{} {value}", pad(label));
    }
    if let Some(days) = report.assessment.as_ref().and_then(|a| a.warning_days) {
        if s.state == CertState::Expiring {
            let _ = match lang {
                Lang::Ja => writeln!(out, "警告: 有効期限まで {days} 日以内です。証明書を更新してください。"),
                Lang::En => writeln!(out, "warning: the certificate expires within {days} days; renew it."),
            };
        }
    }
    out
}
