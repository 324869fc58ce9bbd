//! The device's audit log (guideline §2.1.1(5)): an append-only,
//! hash-chained record of orders, order refusals, enforcement changes,
//! certificate changes and diagnosis results, kept so that an auditor can
//! later see what the device did and when, and tell whether anyone edited,
//! removed or reordered an entry.
//!
//! This module owns the on-disk log (`<state_dir>/audit/`), its size bound
//! and rotation, the export file and the verifier of an export.
//!
//! # Format
//!
//! Every entry is one line: the SHA-256 of the entry body in hex, a space,
//! and the body as JSON: `{"index","at","kind","prev","detail"}`, where
//! `prev` is the hash of the entry before. The hash covers the exact body
//! bytes on the line, so verifying never depends on re-encoding JSON; and
//! because each body names the previous hash, changing, dropping or swapping
//! any entry breaks every link after it.
//!
//! # Rotation
//!
//! Entries go to segment files `segment-<first index>.log` of at most
//! `[audit] segment_bytes`; when the segments together exceed
//! `[audit] max_bytes`, the oldest segment is deleted. The chain stays
//! verifiable: the first kept entry's `prev` becomes the export's anchor and
//! its index the export's `first_index`, so what rotation dropped is visible
//! as a start above 0, never as a hole.
//!
//! # Concurrency and crashes
//!
//! The daemon and CLI commands (`diagnose`, `orders apply`, `cert import`)
//! append from separate processes: each append holds an exclusive lock on
//! `<state_dir>/audit/lock`, reads the chain head from the last segment,
//! appends one line and fsyncs. A line torn by a power cut (no final
//! newline) is cut off before the next append, which then records that it
//! did so.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cpe_common::durable::{write_atomic, Storage, MODE_PUBLIC};
use serde::{Deserialize, Serialize};

/// Format name in the header line of an export file.
pub const EXPORT_FORMAT: &str = "cpe-audit-export-v1";

/// The `prev` of the very first entry of a device's log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Largest `detail` accepted, as JSON bytes: larger details are replaced by a
/// note saying how large they were (a diagnosis report is ~10 KiB).
pub const MAX_DETAIL_BYTES: usize = 32 * 1024;

/// Largest line the verifier accepts in an export.
const MAX_LINE_BYTES: usize = MAX_DETAIL_BYTES + 1024;

/// Largest export file `cpe-agent log verify` reads (32 times the default
/// `[audit] max_bytes`).
pub const MAX_EXPORT_BYTES: usize = 64 * 1024 * 1024;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A compliance order was verified and applied.
    Order,
    /// A compliance order was refused (nothing changed).
    OrderRefused,
    /// Firewall enforcement changed (installed, lifted, restored at boot).
    Enforcement,
    /// The institution certificate changed (import, renewal, rollback, wipe).
    Certificate,
    /// A self-diagnosis result.
    Diagnosis,
    /// The log itself: a torn entry was cut off after a crash.
    Log,
}

/// `[audit]`: how much log the device keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Most bytes all segments may take together; the oldest segment goes
    /// first. At least two segments' worth is always kept.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { max_bytes: 2 * 1024 * 1024, segment_bytes: 256 * 1024 }
    }
}

/// Why the audit log could not be written, exported or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A filesystem operation failed.
    #[error("audit log {path}: {source}; check that the state directory is writable and not full")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A segment on disk does not parse (the export's verifier will say more).
    #[error("audit log {path} line {line} is damaged: {detail}; run `cpe-agent log export` and `cpe-agent log verify` to see the extent")]
    Damaged {
        /// The segment.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// The body of an entry, in the order its fields are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    index: u64,
    at: i64,
    kind: AuditKind,
    prev: String,
    detail: serde_json::Value,
}

/// A handle on the audit log of one state directory. Cheap: it holds only
/// paths; every append opens, locks and closes the files.
#[derive(Debug, Clone)]
pub struct AuditLog {
    dir: PathBuf,
    config: AuditConfig,
}

impl AuditLog {
    /// The log under `<state_dir>/audit` with the default size bound.
    pub fn new(state_dir: &Path) -> Self {
        Self::with_config(state_dir, AuditConfig::default())
    }

    /// The log under `<state_dir>/audit` with an explicit size bound.
    pub fn with_config(state_dir: &Path, config: AuditConfig) -> Self {
        Self { dir: state_dir.join("audit"), config }
    }

    /// Appends one entry at `at_unix` (device clock, seconds) and makes it
    /// durable before returning.
    pub fn append(&self, kind: AuditKind, at_unix: i64, detail: serde_json::Value) -> Result<(), AuditError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;

        let segments = self.segments()?;
        let (mut head, torn) = match segments.last() {
            Some((_, path)) => self.head_of(path)?,
            None => (Head { next_index: 0, hash: GENESIS.to_string() }, None),
        };
        if let Some(dropped) = torn {
            let note = serde_json::json!({ "event": "torn_entry_removed", "bytes": dropped });
            head = self.write_entry(&segments, &head, AuditKind::Log, at_unix, note)?;
        }
        let segments = self.segments()?;
        self.write_entry(&segments, &head, kind, at_unix, bounded(detail))?;
        // The lock is released when `lock` is dropped.
        Ok(())
    }

    /// Writes an export of every kept entry to `out` (durably, mode 0644):
    /// a header line, then the entry lines exactly as stored.
    pub fn export(
        &self,
        storage: &impl Storage,
        out: &Path,
        exported_at: i64,
    ) -> Result<ExportSummary, AuditError> {
        let mut lines: Vec<String> = Vec::new();
        for (_, path) in self.segments()? {
            let text = String::from_utf8(self.read_segment(&path)?).map_err(|_| {
                io(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
            })?;
            // A torn final line (no newline) is not part of the chain.
            let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
            lines.extend(complete.lines().map(str::to_string));
        }
        let mut summary = ExportSummary {
            format: EXPORT_FORMAT.to_string(),
            exported_at,
            entries: lines.len() as u64,
            first_index: 0,
            anchor: GENESIS.to_string(),
            last_index: None,
            head: GENESIS.to_string(),
        };
        if let Some(first) = lines.first() {
            let (_, body) = parse_line(first).map_err(|detail| self.damaged(1, detail))?;
            summary.first_index = body.index;
            summary.anchor = body.prev;
        }
        if let Some(last) = lines.last() {
            let (hash, body) = parse_line(last).map_err(|detail| self.damaged(lines.len(), detail))?;
            summary.last_index = Some(body.index);
            summary.head = hash.to_string();
        }
        let mut file = serde_json::to_string(&summary).unwrap_or_default();
        file.push('\n');
        for line in &lines {
            file.push_str(line);
            file.push('\n');
        }
        write_atomic(storage, out, file.as_bytes(), MODE_PUBLIC).map_err(|e| AuditError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(summary)
    }

    /// The detail of the newest kept entry of `kind`, searching the
    /// segments newest first (`None`: no kept entry of that kind; rotation
    /// may have dropped older ones). Lines that do not parse are skipped.
    pub fn last_of_kind(&self, kind: AuditKind) -> Result<Option<serde_json::Value>, AuditError> {
        for (_, path) in self.segments()?.iter().rev() {
            let text = self.read_segment(path)?;
            let found = String::from_utf8_lossy(&text)
                .lines()
                .rev()
                .filter_map(|line| parse_line(line).ok())
                .find(|(_, body)| body.kind == kind)
                .map(|(_, body)| body.detail);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    fn write_entry(
        &self,
        segments: &[(u64, PathBuf)],
        head: &Head,
        kind: AuditKind,
        at: i64,
        detail: serde_json::Value,
    ) -> Result<Head, AuditError> {
        let body = Body { index: head.next_index, at, kind, prev: head.hash.clone(), detail };
        let body_json = serde_json::to_string(&body).unwrap_or_default();
        let hash = sha256_hex(body_json.as_bytes());
        let line = format!("{hash} {body_json}\n");

        let current = segments.last().filter(|(_, path)| {
            fs::metadata(path).is_ok_and(|m| m.len() + line.len() as u64 <= self.config.segment_bytes)
        });
        let path = match current {
            Some((_, path)) => path.clone(),
            None => self.dir.join(format!("segment-{:020}.log", head.next_index)),
        };
        let created = !path.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        file.write_all(line.as_bytes()).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        if created {
            sync_dir(&self.dir).map_err(io(&self.dir))?;
            self.enforce_bound()?;
        }
        Ok(Head { next_index: head.next_index + 1, hash })
    }

    /// Deletes the oldest segments while the total exceeds the bound, always
    /// keeping the two newest.
    fn enforce_bound(&self) -> Result<(), AuditError> {
        let segments = self.segments()?;
        let mut sizes: Vec<u64> =
            segments.iter().map(|(_, path)| fs::metadata(path).map_or(0, |m| m.len())).collect();
        let mut total: u64 = sizes.iter().sum();
        let mut removed = false;
        for (i, (_, path)) in segments.iter().enumerate() {
            if total <= self.config.max_bytes || segments.len() - i <= 2 {
                break;
            }
            fs::remove_file(path).map_err(io(path))?;
            total -= sizes[i];
            sizes[i] = 0;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir).map_err(io(&self.dir))?;
        }
        Ok(())
    }

    /// Segments by first index, oldest first.
    fn segments(&self) -> Result<Vec<(u64, PathBuf)>, AuditError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut segments: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let index = name.strip_prefix("segment-")?.strip_suffix(".log")?.parse().ok()?;
                Some((index, entry.path()))
            })
            .collect();
        segments.sort();
        Ok(segments)
    }

    /// The chain head after the last complete line of `path`, cutting off a
    /// torn final line (returned as its length).
    fn head_of(&self, path: &Path) -> Result<(Head, Option<usize>), AuditError> {
        let text = self.read_segment(path)?;
        let complete_len = text.iter().rposition(|b| *b == b'\n').map_or(0, |end| end + 1);
        let torn = (complete_len < text.len()).then(|| text.len() - complete_len);
        if torn.is_some() {
            let file = OpenOptions::new().write(true).open(path).map_err(io(path))?;
            file.set_len(complete_len as u64).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        let complete = String::from_utf8_lossy(&text[..complete_len]);
        let Some((line_no, last)) = complete.lines().enumerate().last() else {
            // An empty segment (created, then the first write was cut off):
            // its name carries the next index; the hash is in the segment before.
            return self.head_before_empty(path).map(|head| (head, torn));
        };
        let (hash, body) = parse_line(last).map_err(|detail| AuditError::Damaged {
            path: path.to_path_buf(),
            line: line_no + 1,
            detail,
        })?;
        Ok((Head { next_index: body.index + 1, hash: hash.to_string() }, torn))
    }

    fn head_before_empty(&self, empty: &Path) -> Result<Head, AuditError> {
        let segments = self.segments()?;
        let before: Vec<_> = segments.iter().take_while(|(_, p)| p != empty).collect();
        match before.last() {
            Some((_, path)) => self.head_of(path).map(|(head, _)| head),
            None => Ok(Head { next_index: 0, hash: GENESIS.to_string() }),
        }
    }

    /// Reads a segment, at most the configured bound plus one line: a
    /// segment never legitimately holds more.
    fn read_segment(&self, path: &Path) -> Result<Vec<u8>, AuditError> {
        let bound = self.config.max_bytes.max(self.config.segment_bytes);
        let limit = usize::try_from(bound).unwrap_or(usize::MAX).saturating_add(MAX_LINE_BYTES);
        cpe_common::bounded::read_file(path, limit).map_err(io(path))
    }

    fn damaged(&self, line: usize, detail: String) -> AuditError {
        AuditError::Damaged { path: self.dir.clone(), line, detail }
    }
}

/// Appends an entry for something that has already happened (a certificate
/// change, a diagnosis), now by the device clock. A failure to record it is
/// logged, not returned: the change stands either way.
pub fn record_or_log(state_dir: &Path, config: AuditConfig, kind: AuditKind, detail: serde_json::Value) {
    let log = AuditLog::with_config(state_dir, config);
    if let Err(e) = log.append(kind, crate::clock::now().unix_timestamp(), detail) {
        tracing::error!(error = %e, ?kind, "not recorded in the audit log");
    }
}

/// The chain head: the index the next entry gets and the hash it links to.
#[derive(Debug, Clone)]
struct Head {
    next_index: u64,
    hash: String,
}

/// The header line of an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSummary {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// When the export was written (device clock, unix seconds).
    pub exported_at: i64,
    /// Number of entries in the file.
    pub entries: u64,
    /// Index of the first entry (above 0 once rotation dropped old segments).
    pub first_index: u64,
    /// The `prev` hash of the first entry ([`GENESIS`] from the start).
    pub anchor: String,
    /// Index of the last entry (`None` for an empty log).
    pub last_index: Option<u64>,
    /// Hash of the last entry: compare it with a head hash noted earlier
    /// (e.g. by the carrier) to detect a cut-off end.
    pub head: String,
}

/// What is wrong with an export, by line (1-based, the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The file is empty or its header is not an export header.
    #[error("not an audit export ({detail}); export one with `cpe-agent log export --out FILE`")]
    BadHeader {
        /// What is wrong.
        detail: String,
    },
    /// A line does not parse as an entry.
    #[error("line {line}: not an audit entry ({detail})")]
    BadLine {
        /// Line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// An entry's body does not match its hash: it was edited.
    #[error("line {line}: entry {index} was edited (its hash does not match its content)")]
    Edited {
        /// Line number.
        line: usize,
        /// The entry's index.
        index: u64,
    },
    /// An entry does not link to the one before: entries were removed,
    /// inserted or reordered.
    #[error("line {line}: entry {index} does not follow entry {expected_index} (entries removed, inserted or reordered)")]
    Broken {
        /// Line number.
        line: usize,
        /// The entry's index.
        index: u64,
        /// The index that should have been here.
        expected_index: u64,
    },
    /// The header's count or head does not match the entries.
    #[error(
        "the header says {header}, the entries say {found} (entries cut off the end or the header edited)"
    )]
    HeaderMismatch {
        /// What the header says.
        header: String,
        /// What the entries say.
        found: String,
    },
}

/// What a valid export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The header.
    pub summary: ExportSummary,
    /// Entries per kind, in [`AuditKind`] order of first appearance.
    pub kinds: Vec<(AuditKind, u64)>,
    /// Time of the first and last entry (device clock).
    pub span: Option<(i64, i64)>,
}

/// Checks an export file's bytes: header, every hash, every link, contiguous
/// indexes, and that the header's count and head match the entries.
pub fn verify_export(bytes: &[u8]) -> Result<Verified, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| VerifyError::BadHeader { detail: e.to_string() })?;
    let mut lines = text.split_terminator('\n');
    let header = lines.next().ok_or_else(|| VerifyError::BadHeader { detail: "empty file".into() })?;
    let summary: ExportSummary =
        serde_json::from_str(header).map_err(|e| VerifyError::BadHeader { detail: e.to_string() })?;
    if summary.format != EXPORT_FORMAT {
        return Err(VerifyError::BadHeader { detail: format!("format {:?}", summary.format) });
    }
    let mut expected_index = summary.first_index;
    let mut prev = summary.anchor.clone();
    let mut kinds: Vec<(AuditKind, u64)> = Vec::new();
    let mut span: Option<(i64, i64)> = None;
    let mut count: u64 = 0;
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        if line.len() > MAX_LINE_BYTES {
            return Err(VerifyError::BadLine { line: line_no, detail: format!("{} bytes", line.len()) });
        }
        let (hash, body) =
            parse_line(line).map_err(|detail| VerifyError::BadLine { line: line_no, detail })?;
        let body_json = line.get(hash.len() + 1..).unwrap_or_default();
        if sha256_hex(body_json.as_bytes()) != hash {
            return Err(VerifyError::Edited { line: line_no, index: body.index });
        }
        if body.index != expected_index || body.prev != prev {
            return Err(VerifyError::Broken { line: line_no, index: body.index, expected_index });
        }
        match kinds.iter_mut().find(|(kind, _)| *kind == body.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((body.kind, 1)),
        }
        span = Some(span.map_or((body.at, body.at), |(first, _)| (first, body.at)));
        prev = hash.to_string();
        expected_index = body.index + 1;
        count += 1;
    }
    let last_index = expected_index.checked_sub(1).filter(|_| count > 0);
    if summary.entries != count || summary.head != prev || summary.last_index != last_index {
        return Err(VerifyError::HeaderMismatch {
            header: format!(
                "{} entries ending at {:?} with head {}",
                summary.entries, summary.last_index, summary.head
            ),
            found: format!("{count} entries ending at {last_index:?} with head {prev}"),
        });
    }
    Ok(Verified { summary, kinds, span })
}

/// Splits a line into its hash and parsed body.
fn parse_line(line: &str) -> Result<(&str, Body), String> {
    let (hash, body_json) = line.split_once(' ').ok_or("no space after the hash")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err("the hash is not 64 lower-case hex digits".into());
    }
    let body: Body = serde_json::from_str(body_json).map_err(|e| e.to_string())?;
    Ok((hash, body))
}

fn bounded(detail: serde_json::Value) -> serde_json::Value {
    let len = serde_json::to_string(&detail).map_or(0, |s| s.len());
    if len <= MAX_DETAIL_BYTES {
        detail
    } else {
        serde_json::json!({ "truncated": true, "original_bytes": len })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    cpe_common::hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Maps an I/O error on `path` to [`AuditError::Io`].
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_path_buf(), source }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_common::durable::OsStorage;

    fn log(dir: &Path, config: AuditConfig) -> AuditLog {
        AuditLog::with_config(dir, config)
    }

    fn export(log: &AuditLog, dir: &Path) -> String {
        let out = dir.join("export.jsonl");
        log.export(&OsStorage, &out, 1_800_000_000).unwrap();
        fs::read_to_string(out).unwrap()
    }

    fn append_n(log: &AuditLog, n: u64) {
        for i in 0..n {
            let kind = if i % 2 == 0 { AuditKind::Order } else { AuditKind::Diagnosis };
            log.append(kind, 1_800_000_000 + i64::try_from(i).unwrap(), serde_json::json!({ "n": i }))
                .unwrap();
        }
    }

    #[test]
    fn a_fresh_export_verifies_and_counts_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), AuditConfig::default());
        append_n(&log, 5);
        let verified = verify_export(export(&log, dir.path()).as_bytes()).unwrap();
        assert_eq!(verified.summary.entries, 5);
        assert_eq!(verified.summary.first_index, 0);
        assert_eq!(verified.summary.anchor, GENESIS);
        assert_eq!(verified.summary.last_index, Some(4));
        assert_eq!(verified.kinds, vec![(AuditKind::Order, 3), (AuditKind::Diagnosis, 2)]);
        assert_eq!(verified.span, Some((1_800_000_000, 1_800_000_004)));
    }

    #[test]
    fn edits_removals_reorders_and_cut_ends_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), AuditConfig::default());
        append_n(&log, 4);
        let text = export(&log, dir.path());
        let lines: Vec<&str> = text.lines().collect();
        let join = |ls: &[&str]| ls.iter().flat_map(|l| [*l, "\n"]).collect::<String>();

        let edited = text.replace("{\"n\":2}", "{\"n\":9}");
        assert_eq!(verify_export(edited.as_bytes()), Err(VerifyError::Edited { line: 4, index: 2 }));

        let removed = join(&[lines[0], lines[1], lines[2], lines[4]]);
        assert!(matches!(
            verify_export(removed.as_bytes()),
            Err(VerifyError::Broken { line: 4, index: 3, expected_index: 2 })
        ));

        let reordered = join(&[lines[0], lines[1], lines[3], lines[2], lines[4]]);
        assert!(matches!(verify_export(reordered.as_bytes()), Err(VerifyError::Broken { line: 3, .. })));

        let cut_end = join(&lines[..4]);
        assert!(matches!(verify_export(cut_end.as_bytes()), Err(VerifyError::HeaderMismatch { .. })));

        let removed_first = join(&[lines[0], lines[2], lines[3], lines[4]]);
        assert!(matches!(verify_export(removed_first.as_bytes()), Err(VerifyError::Broken { line: 2, .. })));

        assert!(matches!(verify_export(b""), Err(VerifyError::BadHeader { .. })));
        assert!(matches!(verify_export(b"{}\n"), Err(VerifyError::BadHeader { .. })));
        let garbage = join(&[lines[0], "zz not an entry"]);
        assert!(matches!(verify_export(garbage.as_bytes()), Err(VerifyError::BadLine { line: 2, .. })));
    }

    #[test]
    fn rotation_bounds_the_size_and_keeps_the_chain_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig { max_bytes: 4096, segment_bytes: 1024 };
        let log = log(dir.path(), config);
        append_n(&log, 200);
        let total: u64 = log.segments().unwrap().iter().map(|(_, p)| fs::metadata(p).unwrap().len()).sum();
        assert!(total <= config.max_bytes + config.segment_bytes, "{total} bytes kept");
        let verified = verify_export(export(&log, dir.path()).as_bytes()).unwrap();
        assert!(verified.summary.first_index > 0, "old segments were rotated out");
        assert_ne!(verified.summary.anchor, GENESIS);
        assert_eq!(verified.summary.last_index, Some(199));
        assert_eq!(verified.summary.entries, 200 - verified.summary.first_index);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_noted() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), AuditConfig::default());
        append_n(&log, 2);
        let (_, segment) = log.segments().unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(b"0123abcd {\"index\":2,").unwrap();
        drop(file);
        // An export before the next append ignores the torn line.
        assert_eq!(verify_export(export(&log, dir.path()).as_bytes()).unwrap().summary.entries, 2);
        log.append(AuditKind::Certificate, 1_800_000_100, serde_json::json!({})).unwrap();
        let verified = verify_export(export(&log, dir.path()).as_bytes()).unwrap();
        assert_eq!(verified.summary.entries, 4);
        assert!(verified.kinds.contains(&(AuditKind::Log, 1)));
    }

    #[test]
    fn oversized_details_are_replaced_by_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), AuditConfig::default());
        log.append(AuditKind::Diagnosis, 1, serde_json::json!({ "x": "y".repeat(MAX_DETAIL_BYTES) }))
            .unwrap();
        let text = export(&log, dir.path());
        assert!(text.contains("\"truncated\":true"));
        verify_export(text.as_bytes()).unwrap();
    }

    #[test]
    fn concurrent_appenders_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log(dir.path(), AuditConfig { max_bytes: 1 << 20, segment_bytes: 2048 });
                std::thread::spawn(move || append_n(&log, 25))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let log = log(dir.path(), AuditConfig::default());
        assert_eq!(verify_export(export(&log, dir.path()).as_bytes()).unwrap().summary.entries, 100);
    }
}
