//! One diagnosis of this device, end to end, as `cpe-agent diagnose` and the
//! daemon's remote-diagnosis command both run it: probe the real system
//! ([`SystemProbes`]), judge ([`super::verdict()`]), build the report, keep
//! it on the device ([`super::store::save`]).
//!
//! Queueing the incident differs (the daemon owns the queue, the CLI may
//! not), so it is left to the caller with [`super::store::incident`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::probes::{Probes, SystemProbes};
use super::run::{self, Progress, RunInput};
use super::{DiagnosisReport, ReportError, Segment, Suspension, Verdict};
use crate::config::AgentConfig;
use crate::lang::Lang;

/// A finished diagnosis.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The report in English: what is stored and sent to the carrier.
    pub report: DiagnosisReport,
    /// The verdict in both languages.
    pub verdict: Verdict,
}

impl Diagnosis {
    /// The report with summary and hint in `lang`, for display.
    pub fn report_in(&self, lang: Lang) -> DiagnosisReport {
        let mut report = self.report.clone();
        self.verdict.summary.get(lang).clone_into(&mut report.verdict.summary);
        self.verdict.hint.get(lang).clone_into(&mut report.verdict.hint);
        report
    }
}

/// A new diagnosis id, `diag-<unix ms>-<8 hex>`: sorts by time, unique per device.
pub fn new_id(now: OffsetDateTime) -> String {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    let ms = now.unix_timestamp_nanos() / 1_000_000;
    format!("diag-{ms:013}-{:08x}", u32::from_be_bytes(random))
}

/// Runs the checks of `segments` with `probes` and builds the report.
pub async fn diagnose_with<P: Probes>(
    probes: Arc<P>,
    input: RunInput,
    progress: Progress,
) -> Result<Diagnosis, ReportError> {
    let started_at = probes.now();
    let started = Instant::now();
    let suspension = input.suspension.clone();
    let checks = run::run(probes, Arc::new(input), progress).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (report, verdict) = DiagnosisReport::build(
        new_id(started_at),
        started_at,
        duration_ms,
        checks,
        suspension.as_ref(),
        Lang::En,
    )?;
    Ok(Diagnosis { report, verdict })
}

/// Runs a diagnosis of this device as `config` describes it.
pub async fn diagnose_system(
    config: &AgentConfig,
    segments: BTreeSet<Segment>,
    terminal: Option<IpAddr>,
    suspension: Option<Suspension>,
    progress: Progress,
) -> Result<Diagnosis, ReportError> {
    let input = RunInput::from_config(config, segments, terminal, suspension);
    diagnose_with(Arc::new(SystemProbes::new(config)), input, progress).await
}
