//! Where diagnosis results go: kept on the device and sent to the carrier.
//!
//! - `<state_dir>/diagnosis/last.json`: the latest report (durable write),
//!   plus `<state_dir>/diagnosis/history/<id>.json`, the last
//!   `[diagnose] history` reports (oldest deleted first).
//! - The carrier gets every report as a [`Payload::Incident`] record
//!   (§1.3.1) through the on-disk queue, so it leaves when the uplink is
//!   back. The queue admits one process at a time: while `cpe-agent run`
//!   holds it, the CLI drops the encoded record into
//!   `<state_dir>/diagnosis/outbox/` instead, and the daemon moves the
//!   outbox into its queue ([`drain_outbox`]) at start and with every
//!   heartbeat.
//! - The audit log gets every verdict ([`record`]).

use std::path::{Path, PathBuf};

use cpe_common::durable::{write_atomic, OsStorage, MODE_PUBLIC};
use cpe_protocol::{Incident, Payload, MAX_INCIDENT_REPORT_BYTES};

use super::{CheckStatus, DiagnosisReport};
use crate::audit::{self, AuditKind};
use crate::config::AgentConfig;
use crate::queue::{Queue, QueueError, QueueLimits, RecordClass};

/// Why a result could not be stored or queued.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be written or listed.
    #[error("cannot write the diagnosis to {}: {source}; check free space and permissions of the state directory", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The report could not be encoded.
    #[error("cannot encode the diagnosis: {0}")]
    Encode(String),
    /// The queue refused the record.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// The diagnosis directory of a state directory.
pub fn diagnosis_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("diagnosis")
}

/// Writes `report` as `last.json` and into the history, keeping the newest
/// `history` reports. Returns the path of `last.json`.
pub fn save(state_dir: &Path, report: &DiagnosisReport, history: usize) -> Result<PathBuf, StoreError> {
    let dir = diagnosis_dir(state_dir);
    let history_dir = dir.join("history");
    std::fs::create_dir_all(&history_dir).map_err(io(&history_dir))?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| StoreError::Encode(e.to_string()))?;
    let last = dir.join("last.json");
    write_atomic(&OsStorage, &last, &json, MODE_PUBLIC).map_err(io(&last))?;
    if history > 0 {
        let entry = history_dir.join(format!("{}.json", safe_name(&report.id)));
        write_atomic(&OsStorage, &entry, &json, MODE_PUBLIC).map_err(io(&entry))?;
    }
    prune(&history_dir, history)?;
    Ok(last)
}

/// Keeps `report` on the device ([`save`]) and records its verdict in the
/// audit log (§2.1.1(5)); `command_id` is the remote-diagnosis command that
/// asked for it. An audit failure is logged, not returned: the diagnosis
/// itself succeeded and is kept.
pub fn record(
    config: &AgentConfig,
    report: &DiagnosisReport,
    command_id: Option<u64>,
) -> Result<PathBuf, StoreError> {
    let failed: Vec<&str> =
        report.checks.iter().filter(|c| c.status == CheckStatus::Failed).map(|c| c.name.as_str()).collect();
    let detail = serde_json::json!({
        "id": report.id,
        "command_id": command_id,
        "segment": report.verdict.segment,
        "summary": report.verdict.summary,
        "failed": failed,
        "duration_ms": report.duration_ms,
    });
    audit::record_or_log(&config.state_dir, config.audit, AuditKind::Diagnosis, detail);
    save(&config.state_dir, report, config.diagnose.history)
}

/// Ids become file names: keep `[A-Za-z0-9._-]`, replace the rest.
fn safe_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// Deletes the oldest `*.json` of `dir` beyond `keep` (ids sort by time).
fn prune(dir: &Path, keep: usize) -> Result<(), StoreError> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        std::fs::remove_file(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The incident record of a report (English), with the remote-diagnosis
/// command's id when the carrier asked for it. A report too large for one
/// record keeps only its non-`ok` checks (then none), so the verdict and
/// the evidence of the fault always arrive.
pub fn incident(
    report: &DiagnosisReport,
    command_id: Option<u64>,
    max_bytes: usize,
) -> Result<Incident, StoreError> {
    let limit = max_bytes.min(MAX_INCIDENT_REPORT_BYTES);
    let encode = |r: &DiagnosisReport| r.to_json().map_err(|e| StoreError::Encode(e.to_string()));
    let mut json = encode(report)?;
    if json.len() > limit {
        let mut trimmed = report.clone();
        trimmed.checks.retain(|c| c.status != CheckStatus::Ok && c.status != CheckStatus::Skipped);
        json = encode(&trimmed)?;
        if json.len() > limit {
            trimmed.checks.clear();
            json = encode(&trimmed)?;
        }
    }
    Ok(Incident {
        id: report.id.clone(),
        command_id,
        segment: report.verdict.segment.as_str().to_owned(),
        summary: report.verdict.summary.clone(),
        report_json: json,
    })
}

/// The largest report JSON an incident may carry in a queue with `limits`
/// (room is left for the record's other fields).
pub fn incident_budget(limits: &QueueLimits) -> usize {
    limits.max_payload().saturating_sub(2048)
}

/// Where an incident went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Into the queue, with this sequence number.
    Queued(u64),
    /// Into the outbox (the daemon holds the queue and will pick it up).
    Outbox(PathBuf),
}

/// Queues `incident` for the carrier from a process other than the daemon:
/// into the queue when it is free, else into the outbox.
pub fn queue_from_cli(
    state_dir: &Path,
    limits: QueueLimits,
    incident: &Incident,
    now_unix_ms: i64,
) -> Result<Delivery, StoreError> {
    let payload = postcard::to_stdvec(&Payload::Incident(incident.clone()))
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    match Queue::open(&state_dir.join("queue"), limits) {
        Ok(mut queue) => Ok(Delivery::Queued(queue.push(RecordClass::Event, now_unix_ms, &payload)?)),
        Err(QueueError::Locked { .. }) => {
            let outbox = diagnosis_dir(state_dir).join("outbox");
            std::fs::create_dir_all(&outbox).map_err(io(&outbox))?;
            let path = outbox.join(format!("{}.postcard", safe_name(&incident.id)));
            write_atomic(&OsStorage, &path, &payload, MODE_PUBLIC).map_err(io(&path))?;
            Ok(Delivery::Outbox(path))
        }
        Err(e) => Err(e.into()),
    }
}

/// Moves every record of the outbox into `queue` (oldest first) and deletes
/// it once queued; unreadable files are deleted with a warning. Returns how
/// many were queued.
pub fn drain_outbox(state_dir: &Path, queue: &mut Queue, now_unix_ms: i64) -> usize {
    let outbox = diagnosis_dir(state_dir).join("outbox");
    let Ok(entries) = std::fs::read_dir(&outbox) else { return 0 };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "postcard"))
        .collect();
    files.sort();
    let mut queued = 0;
    for file in files {
        let bytes = match cpe_common::bounded::read_file(&file, cpe_protocol::MAX_BODY_BYTES) {
            Ok(bytes) if postcard::from_bytes::<Payload>(&bytes).is_ok() => bytes,
            Err(e) if !cpe_common::bounded::is_too_large(&e) => continue,
            _ => {
                tracing::warn!(path = %file.display(), "unreadable diagnosis in the outbox; deleted");
                let _ = std::fs::remove_file(&file);
                continue;
            }
        };
        match queue.push(RecordClass::Event, now_unix_ms, &bytes) {
            Ok(_) => {
                queued += 1;
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not queue a diagnosis from the outbox; will retry");
                break;
            }
        }
    }
    queued
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{CheckResult, Evidence, ReportVerdict, Segment, VerdictSegment};

    fn report(id: &str, checks: usize) -> DiagnosisReport {
        DiagnosisReport {
            id: id.into(),
            started_at: "2026-11-25T00:00:00Z".into(),
            duration_ms: 10,
            verdict: ReportVerdict {
                segment: VerdictSegment::Uplink,
                summary: "Fault in the uplink".into(),
                hint: "call".into(),
            },
            checks: (0..checks)
                .map(|i| {
                    let status = if i == 0 { CheckStatus::Failed } else { CheckStatus::Ok };
                    CheckResult::new(
                        format!("uplink.loss@{i}"),
                        Segment::Uplink,
                        status,
                        Evidence::new("x".repeat(200)),
                        1,
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn last_and_bounded_history() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            save(dir.path(), &report(&format!("diag-{i}"), 2), 3).unwrap();
        }
        let last: DiagnosisReport =
            serde_json::from_slice(&std::fs::read(dir.path().join("diagnosis/last.json")).unwrap()).unwrap();
        assert_eq!(last.id, "diag-4");
        let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("diagnosis/history"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["diag-2.json", "diag-3.json", "diag-4.json"]);
    }

    #[test]
    fn incidents_fit_by_dropping_healthy_checks() {
        let big = report("diag-1", 100);
        let whole = incident(&big, Some(7), 1 << 20).unwrap();
        assert_eq!((whole.command_id, whole.segment.as_str()), (Some(7), "uplink"));
        assert_eq!(serde_json::from_str::<DiagnosisReport>(&whole.report_json).unwrap().checks.len(), 100);
        let trimmed = incident(&big, None, 2000).unwrap();
        let parsed: DiagnosisReport = serde_json::from_str(&trimmed.report_json).unwrap();
        assert_eq!(parsed.checks.len(), 1, "only the failed check is kept");
        let bare = incident(&big, None, 300).unwrap();
        assert!(serde_json::from_str::<DiagnosisReport>(&bare.report_json).unwrap().checks.is_empty());
    }

    #[test]
    fn queued_directly_or_through_the_outbox_while_the_daemon_holds_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits::default();
        let first = incident(&report("diag-1", 1), None, 10_000).unwrap();
        assert!(matches!(queue_from_cli(dir.path(), limits, &first, 1).unwrap(), Delivery::Queued(_)));
        let mut held = Queue::open(&dir.path().join("queue"), limits).unwrap();
        let second = incident(&report("diag-2", 1), None, 10_000).unwrap();
        let Delivery::Outbox(path) = queue_from_cli(dir.path(), limits, &second, 2).unwrap() else {
            panic!("the queue is held: expected the outbox")
        };
        assert!(path.exists());
        assert_eq!(drain_outbox(dir.path(), &mut held, 3), 1);
        assert!(!path.exists());
        let batch = held.peek_batch(10, 1 << 20).unwrap();
        assert_eq!(batch.len(), 2);
        let Payload::Incident(got) = postcard::from_bytes::<Payload>(&batch[1].payload).unwrap() else {
            panic!("not an incident")
        };
        assert_eq!(got, second);
        assert_eq!(drain_outbox(dir.path(), &mut held, 4), 0);
    }
}
