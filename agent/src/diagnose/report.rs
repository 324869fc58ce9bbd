//! The diagnosis report: the one document a run produces, printed by
//! `cpe-agent diagnose --json`, stored on the device and sent to the carrier
//! as an incident record (guideline §1.3.1).
//!
//! This module owns the wire shape (exactly the JSON of issue 4), the human
//! text rendering in Japanese and English (a table of checks, then the
//! verdict) and the exit codes. The verdict itself comes from
//! [`super::verdict()`]; summary and hint are stored in the requested
//! [`Lang`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{CheckResult, CheckStatus, Segment, Suspension, Verdict, VerdictSegment};
use crate::lang::Lang;

/// Exit code: healthy (verdict `none`, at least one check ran).
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code: a fault was found (verdict printed), or service is suspended
/// by a carrier order (verdict `suspended`): the institution's traffic does
/// not flow either way.
pub const EXIT_FAULT: u8 = 1;
/// Exit code: the diagnosis could not run (bad configuration, no
/// privileges, or not a single check ran).
pub const EXIT_COULD_NOT_RUN: u8 = 2;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The start time cannot be written as RFC 3339 (year out of range).
    #[error("start time cannot be formatted as RFC 3339: {0}")]
    Time(#[from] time::error::Format),
}

/// The verdict part of the report: `{"segment", "summary", "hint"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportVerdict {
    /// `terminal`, `lan`, `device`, `uplink`, `carrier`, `none` or `suspended`.
    pub segment: VerdictSegment,
    /// The verdict's summary in the report's language.
    pub summary: String,
    /// The next-step hint in the report's language.
    pub hint: String,
}

/// One diagnosis run. Serialises to exactly
/// `{"id", "started_at", "duration_ms", "verdict": {"segment", "summary",
/// "hint"}, "checks": [{"name", "segment", "status", "evidence",
/// "duration_ms"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisReport {
    /// Unique id of the run (incident record id), chosen by the caller.
    pub id: String,
    /// When the run started, UTC RFC 3339.
    pub started_at: String,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// Where the fault is and what to do.
    pub verdict: ReportVerdict,
    /// Every check, in the order run.
    pub checks: Vec<CheckResult>,
}

impl DiagnosisReport {
    /// Builds the report of a run from its checks: computes the verdict
    /// with [`super::verdict()`] and keeps summary and hint in `lang`.
    /// Also returns the full [`Verdict`] (both languages, failed and
    /// unverified lists) for the caller's display and exit code.
    pub fn build(
        id: impl Into<String>,
        started_at: OffsetDateTime,
        duration_ms: u64,
        checks: Vec<CheckResult>,
        suspension: Option<&Suspension>,
        lang: Lang,
    ) -> Result<(Self, Verdict), ReportError> {
        let verdict = super::verdict(&checks, suspension);
        let report = Self::from_verdict(id, started_at, duration_ms, checks, &verdict, lang)?;
        Ok((report, verdict))
    }

    /// Builds the report from a verdict already computed over `checks`.
    pub fn from_verdict(
        id: impl Into<String>,
        started_at: OffsetDateTime,
        duration_ms: u64,
        checks: Vec<CheckResult>,
        verdict: &Verdict,
        lang: Lang,
    ) -> Result<Self, ReportError> {
        let started_at = started_at.to_offset(time::UtcOffset::UTC).format(&Rfc3339)?;
        Ok(Self {
            id: id.into(),
            started_at,
            duration_ms,
            verdict: ReportVerdict {
                segment: verdict.segment,
                summary: verdict.summary.get(lang).to_owned(),
                hint: verdict.hint.get(lang).to_owned(),
            },
            checks,
        })
    }

    /// The exit code of `cpe-agent diagnose` for this report (see
    /// [`Verdict::exit_code`]; the same rule, from the report alone).
    pub fn exit_code(&self) -> u8 {
        match self.verdict.segment {
            VerdictSegment::None if self.checks.iter().all(|c| c.status == CheckStatus::Skipped) => {
                EXIT_COULD_NOT_RUN
            }
            VerdictSegment::None => EXIT_HEALTHY,
            _ => EXIT_FAULT,
        }
    }

    /// The JSON document (one line).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The human rendering in `lang`: a header, a table of the checks
    /// (status, segment, name, duration, evidence), then the verdict.
    /// Summary and hint are those stored in the report.
    pub fn render_text(&self, lang: Lang) -> String {
        let heads = match lang {
            Lang::Ja => ["状態", "区間", "確認項目", "時間", "証跡"],
            Lang::En => ["STATUS", "SEGMENT", "CHECK", "TIME", "EVIDENCE"],
        };
        let rows: Vec<[String; 5]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.status.label(lang).to_owned(),
                    c.segment.label(lang).to_owned(),
                    check_label(&c.name, lang),
                    format!("{} ms", c.duration_ms),
                    c.evidence.text.clone(),
                ]
            })
            .collect();
        let mut widths = heads.map(width);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        match lang {
            Lang::Ja => {
                let _ = write!(
                    out,
                    "診断 {}（開始 {}、所要 {} ms）\n\n",
                    self.id, self.started_at, self.duration_ms
                );
            }
            Lang::En => {
                let _ = write!(
                    out,
                    "Diagnosis {} (started {}, took {} ms)\n\n",
                    self.id, self.started_at, self.duration_ms
                );
            }
        }
        push_row(&mut out, &heads.map(String::from), &widths);
        for row in &rows {
            push_row(&mut out, row, &widths);
        }
        out.push('\n');
        let segment = verdict_label(self.verdict.segment, lang);
        match lang {
            Lang::Ja => {
                let _ =
                    write!(out, "判定: {segment}\n{}\n対処: {}\n", self.verdict.summary, self.verdict.hint);
            }
            Lang::En => {
                let _ = write!(
                    out,
                    "Verdict: {segment}\n{}\nNext step: {}\n",
                    self.verdict.summary, self.verdict.hint
                );
            }
        }
        out
    }
}

/// How a check is named to people in `lang`: in Japanese what it looks at
/// with its id (「ゲートウェイへの ping（uplink.gateway_icmp）」), in English the id.
pub fn check_label(name: &str, lang: Lang) -> String {
    match (lang, super::checks::label_ja(name)) {
        (Lang::Ja, Some(label)) => format!("{label}（{name}）"),
        _ => name.to_owned(),
    }
}

/// The user-facing name of a verdict segment in `lang`.
pub fn verdict_label(segment: VerdictSegment, lang: Lang) -> &'static str {
    match (segment.fault(), segment, lang) {
        (Some(s), _, _) => Segment::label(s, lang),
        (None, VerdictSegment::Suspended, Lang::Ja) => "サービス停止中（通信事業者の命令）",
        (None, VerdictSegment::Suspended, Lang::En) => "suspended (carrier order)",
        (None, _, Lang::Ja) => "異常なし",
        (None, _, Lang::En) => "none (healthy)",
    }
}

/// Display width on a terminal: ASCII counts 1, everything else 2 (the
/// text is Japanese or ASCII).
fn width(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

fn push_row(out: &mut String, cells: &[String; 5], widths: &[usize; 5]) {
    let last = cells.len() - 1;
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        out.push_str(cell);
        if i < last {
            out.push_str(&" ".repeat(w.saturating_sub(width(cell)) + 2));
        }
    }
    out.push('\n');
}
