//! The store-and-forward queue: health reports and events wait here while the
//! line is down, survive crashes, power cuts and reboots, and leave in order.
//!
//! # What it owns
//! One directory (by default `/var/lib/cpe-agent/queue/`), used by one
//! [`Queue`] at a time (an advisory lock on `lock` refuses a second opener):
//! ```text
//! lock                        empty; held with flock while the queue is open
//! state                       acked position + reserved seqs (25 bytes, replaced atomically)
//! seg-metric-000000007.log    append-only segments of metric records …
//! seg-event-000000008.log     … and of event records (one id counter for both)
//! ```
//! The queue stores opaque payloads (the caller encodes a
//! [`cpe_protocol::Payload`]); it gives every record a sequence number that
//! is per device, strictly increasing and never reused, also across restarts
//! and after everything was acknowledged. The carrier deduplicates by
//! (device, seq). Numbers may have gaps (see *Sequence numbers*).
//!
//! ```
//! use cpe_agent::queue::{Queue, QueueLimits, RecordClass};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut queue = Queue::open(dir.path(), QueueLimits::default())?;
//! let seq = queue.push(RecordClass::Event, 1_700_000_000_000, b"postcard-encoded Payload")?;
//! queue.enforce_limits(1_700_000_060_000)?; // now, from the caller's clock
//! let batch = queue.peek_batch(50, 64 << 10)?; // send these, in this order
//! assert_eq!(batch[0].seq, seq);
//! queue.ack_through(seq)?; // the carrier confirmed through `seq`
//! assert!(queue.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Segment format
//! A segment is a concatenation of frames; all integers little-endian:
//! ```text
//! [0xD1 magic/version][len u32 = 17 + payload][CRC-32 of the len bytes that follow]
//! [seq u64][class u8: 0 metric, 1 event][at_unix_ms i64][payload]
//! ```
//! A frame costs [`FRAME_OVERHEAD`] = 26 bytes more than its payload. Pushes
//! append to the newest segment of their class; a new segment starts when the
//! frame would take the current one over [`QueueLimits::segment_bytes`]
//! (64 KiB by default, so one segment holds ~200 reports of 300 bytes).
//! Metrics and events live in separate segment streams so that dropping
//! metrics never means rewriting a segment (see *Drop policy*);
//! [`Queue::peek_batch`] merges the two streams by seq.
//!
//! # Crash guarantees
//! - [`Queue::push`] returns only after the frame was written and
//!   `fdatasync`ed (and, for a new segment, the directory fsynced): a SIGKILL
//!   or power cut after it returned cannot lose the record.
//! - Nothing already stored is ever rewritten: a crash in the middle of an
//!   append can damage only that frame, at the end of the newest segment.
//! - [`Queue::open`] checks every frame (magic, bounded length, CRC, class,
//!   rising seq). A damaged tail of a stream's newest segment is cut off
//!   ([`QueueStats::torn_tails`] when it looks like an interrupted append,
//!   whose push never returned; otherwise [`QueueStats::corrupt`]). A damaged
//!   region elsewhere is skipped up to the next intact frame, counted in
//!   [`QueueStats::corrupt`] and logged with `tracing::warn`. Lengths read
//!   from disk are bounded by the remaining bytes and a 1 MiB format limit;
//!   a file over 2 MiB, with an unknown name, or starting with the magic of
//!   another format version (0xD0–0xDF) is ignored with a warning and left
//!   in place. An older segment left without any intact record is deleted.
//!   No file content can make the queue panic (fuzzed:
//!   `fuzz/fuzz_targets/queue_segment.rs`).
//! - Acknowledgements are applied in memory at once and persisted in `state`
//!   (with [`cpe_common::durable::write_atomic`]) before any acknowledged
//!   segment is deleted, and otherwise every [`ACK_PERSIST_EVERY`]
//!   acknowledgements. A crash can therefore only make already-acknowledged
//!   records be sent again (the carrier drops them as duplicates), never lose
//!   one. [`Queue::checkpoint`] persists it on a clean shutdown.
//! - Records are delivered at least once: if `fdatasync` fails, push reports
//!   an error, the segment is closed for appends, and the record may still
//!   reappear after a restart.
//!
//! # Sequence numbers
//! Before handing out a seq, the queue makes sure that `state` reserves it:
//! it persists "seqs below N may be in use" in blocks of [`SEQ_RESERVATION`].
//! On open the next seq is the highest of that bound, the highest seq on disk
//! plus one and the acked position plus one, so a seq can never come back,
//! even when every segment was deleted or the last frame was cut off. The
//! price is a gap of up to [`SEQ_RESERVATION`] numbers per restart.
//!
//! # Drop policy
//! Limits ([`QueueLimits`]) bound the flash used by segment files (4 MiB by
//! default) and the age of records (7 days by default). Time is injected: the
//! caller passes `now_unix_ms` to [`Queue::enforce_limits`].
//! - **Size**, checked by every push and by `enforce_limits`: while the files
//!   would exceed the limit, delete (1) segments without any pending record
//!   (acknowledged or expired: no loss), then (2) the oldest metric segment,
//!   whole, then — only when no metric segment is left — (3) the oldest event
//!   segment. Every metric dropped is thus older than every metric kept, and
//!   events are dropped only when no metric remains, oldest first. The
//!   granularity is one segment (1/64 of the queue by default), which also
//!   gives hysteresis: one deletion makes room for many pushes. A metric push
//!   that could only fit by dropping events is refused with
//!   [`QueueError::Full`] (it would be the first metric to go).
//!   Counted in [`QueueStats::dropped_size`] and [`QueueStats::rejected_full`].
//! - **Age**: records with `at_unix_ms < now - max_age` are dropped, metrics
//!   and events alike ([`QueueStats::dropped_age`]). Records stamped before
//!   [`QueueLimits::clock_floor_unix_ms`] (the device clock was unset, a
//!   router without RTC boots in 1970) are never dropped for age, and nothing
//!   is dropped for age while `now` itself is below that floor. Expiry is
//!   logical: a pending-record filter in memory, recomputed from the stored
//!   timestamps after a restart (call `enforce_limits` after `open`); the
//!   segment is deleted once none of its records is pending.
//!
//! # Flash writes
//! With R = payload bytes of a push:
//! - every push appends R + 26 bytes once and `fdatasync`s them; nothing is
//!   ever copied, compacted or rewritten (drops delete whole files);
//! - per segment (~200 pushes of 300 bytes): one file creation and one
//!   deletion (each with a directory fsync) and one 25-byte `state`
//!   replacement (temp file, fsync, rename, directory fsync);
//! - per [`SEQ_RESERVATION`] pushes and per [`ACK_PERSIST_EVERY`]
//!   acknowledgements: one `state` replacement.
//!
//! The logical write amplification is thus (R + 26) / R plus 25 bytes of
//! `state` per segment (1.09 for 300-byte reports). The physical cost is dominated by `fdatasync` of a
//! small append: the file system rewrites at least one page (2–4 KiB, plus a
//! journal block on ext4) per push, i.e. ~4 KiB of flash per report whatever
//! its size. The `queue` integration test measures both (`/proc/self/io`);
//! on the ext4 build VM: 326 bytes written and ~4.4 KiB of pages dirtied per
//! 300-byte push, and draining 1,000 records in batches of 50 wrote 100
//! bytes of `state` (4 replacements). Batching several records per push is
//! the lever if that ever matters; the per-push fsync is the price of "push
//! returned = stored".
//!
//! # Code layout
//! This module holds the vocabulary (record classes, limits, statistics,
//! errors) and the in-memory index of pending records (per stream, per
//! segment: seq, time, place in the file). The jobs on it, each in its own
//! file, all `impl Queue`:
//! - `recover`: [`Queue::open`], the lock and the recovery of every segment;
//! - `segment`: segment files (names, bounded reads, appends, deletion);
//! - `cursor`: reading pending records in order, acknowledgements and the
//!   persisted `state`;
//! - `retention`: the age and size limits (drop policy);
//! - `frame` and `state`: the pure formats of a frame and of `state`.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use state::State;

mod cursor;
mod frame;
mod recover;
mod retention;
mod segment;
mod state;

/// Bytes a stored record adds to its payload (the frame header).
pub const FRAME_OVERHEAD: usize = frame::OVERHEAD_BYTES;

/// The smallest accepted [`QueueLimits::segment_bytes`].
pub const MIN_SEGMENT_BYTES: u32 = 256;

/// The largest accepted [`QueueLimits::segment_bytes`] (also the largest
/// frame the format accepts from disk).
pub const MAX_SEGMENT_BYTES: u32 = 1 << 20;

/// How many sequence numbers one `state` write reserves.
pub const SEQ_RESERVATION: u64 = 1024;

/// After this many acknowledgements without a segment deletion, the ack
/// position is persisted anyway (bounds what a crash makes us send again).
pub const ACK_PERSIST_EVERY: u32 = 32;

const STATE_FILE: &str = "state";

const LOCK_FILE: &str = "lock";

const SEGMENT_MODE: u32 = 0o600;

/// What kind of record this is; it decides the drop order under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordClass {
    /// A periodic report: the oldest ones are dropped first when space runs out.
    Metric,
    /// Something that happened: dropped for space only when no metric is left.
    Event,
}

impl RecordClass {
    const ALL: [Self; 2] = [Self::Metric, Self::Event];

    fn to_byte(self) -> u8 {
        match self {
            Self::Metric => 0,
            Self::Event => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Metric),
            1 => Some(Self::Event),
            _ => None,
        }
    }

    fn index(self) -> usize {
        usize::from(self.to_byte())
    }

    /// The word used in segment file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Event => "event",
        }
    }
}

/// Bounds of the queue. [`QueueLimits::default`] suits the target routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most bytes the segment files may take together (default 4 MiB).
    pub max_total_bytes: u64,
    /// Records older than this (by their `at_unix_ms`) are dropped by
    /// [`Queue::enforce_limits`] (default 7 days).
    pub max_age_ms: i64,
    /// A segment is closed when the next frame would take it over this size
    /// (default 64 KiB, between [`MIN_SEGMENT_BYTES`] and
    /// [`MAX_SEGMENT_BYTES`]). It also bounds one payload: see
    /// [`QueueLimits::max_payload`].
    pub segment_bytes: u32,
    /// Timestamps below this were taken with an unset clock and are never
    /// judged by age (default: the agent's build time, [`crate::clock`]).
    pub clock_floor_unix_ms: i64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        let floor_ms =
            i64::try_from(crate::clock::build_time().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Self {
            max_total_bytes: 4 << 20,
            max_age_ms: 7 * 24 * 3_600 * 1_000,
            segment_bytes: 64 << 10,
            clock_floor_unix_ms: floor_ms,
        }
    }
}

impl QueueLimits {
    /// The largest payload one record may have: a frame must fit a segment.
    pub fn max_payload(&self) -> usize {
        usize::try_from(self.segment_bytes).map_or(0, |s| s.saturating_sub(FRAME_OVERHEAD))
    }

    fn validate(&self) -> Result<(), QueueError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(QueueError::InvalidLimits(format!(
                "segment_bytes must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}, got {}",
                self.segment_bytes
            )));
        }
        if self.max_total_bytes < u64::from(self.segment_bytes) {
            return Err(QueueError::InvalidLimits(format!(
                "max_total_bytes ({}) must hold at least one segment ({} bytes)",
                self.max_total_bytes, self.segment_bytes
            )));
        }
        if self.max_age_ms <= 0 {
            return Err(QueueError::InvalidLimits(format!(
                "max_age_ms must be positive, got {}",
                self.max_age_ms
            )));
        }
        Ok(())
    }
}

/// One record as [`Queue::peek_batch`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// The per-device sequence number given by [`Queue::push`].
    pub seq: u64,
    /// Metric or event.
    pub class: RecordClass,
    /// When the record was made (device clock), as given to push.
    pub at_unix_ms: i64,
    /// The payload, as given to push (CRC-checked on every read).
    pub payload: Vec<u8>,
}

/// What the queue lost or set aside since it was opened, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records dropped because they were older than [`QueueLimits::max_age_ms`].
    pub dropped_age: u64,
    /// Records dropped to stay within [`QueueLimits::max_total_bytes`].
    pub dropped_size: u64,
    /// Metric pushes refused because only events were left to drop.
    pub rejected_full: u64,
    /// Damaged records or regions skipped (at open, or found by a read);
    /// each region counts once, whatever number of records it held.
    pub corrupt: u64,
    /// Interrupted appends cut off at open: the push of such a frame never
    /// returned, so nothing the agent believed stored was lost.
    pub torn_tails: u64,
    /// Files in the queue directory that are not segments (left in place).
    pub ignored_files: u64,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file-system step failed.
    #[error(
        "queue: could not {action} {}: {source}; check free space and the health of the flash",
        path.display()
    )]
    Io {
        /// What was attempted.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another process has the queue directory open (or, for a moment, a
    /// child process this one is starting: it holds a copy of the lock until
    /// its `exec`).
    #[error("queue: {} is in use by another process", path.display())]
    Locked {
        /// The queue directory.
        path: PathBuf,
    },
    /// The limits given to [`Queue::open`] are impossible.
    #[error("queue: invalid limits: {0}")]
    InvalidLimits(String),
    /// The payload is larger than one record may be.
    #[error("queue: a payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The payload size.
        len: usize,
        /// [`QueueLimits::max_payload`].
        max: usize,
    },
    /// A metric did not fit without dropping events; it was not stored.
    #[error("queue: full of events ({used} of {max} bytes); the metric was not stored")]
    Full {
        /// Bytes events take that cannot be dropped for a metric.
        used: u64,
        /// [`QueueLimits::max_total_bytes`].
        max: u64,
    },
    /// The carrier acknowledged a seq that was never handed out.
    #[error("queue: acknowledgement of seq {seq} but the last seq handed out is {last}")]
    AckAhead {
        /// The acknowledged seq.
        seq: u64,
        /// The last seq [`Queue::push`] could have returned.
        last: u64,
    },
    /// A counter reached its end (only with forged files: 2^64 records).
    #[error("queue: no {0} left")]
    Exhausted(&'static str),
}

impl QueueError {
    /// Whether the same call may succeed later (I/O trouble may pass; a full
    /// queue drains when the line returns). The others will not change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Full { .. } | Self::Locked { .. })
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |source| QueueError::Io { action, path: path.to_path_buf(), source }
}

/// A pending record's place on disk.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    at_unix_ms: i64,
    offset: u32,
    frame_len: u32,
}

impl Entry {
    fn payload_len(self) -> usize {
        usize::try_from(self.frame_len).map_or(0, |l| l.saturating_sub(FRAME_OVERHEAD))
    }
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes of the file (intact frames, acknowledged ones included).
    len: u64,
    /// Records not yet acknowledged, dropped or found damaged, by seq.
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Stream {
    class: RecordClass,
    /// By id, which is also seq order.
    segments: VecDeque<Segment>,
    /// Open for appends on the last segment.
    writer: Option<File>,
    /// The last segment must not be appended to (its end is uncertain).
    sealed: bool,
}

impl Stream {
    fn new(class: RecordClass) -> Self {
        Self { class, segments: VecDeque::new(), writer: None, sealed: false }
    }
}

/// The on-disk store-and-forward queue. See the [module documentation](self).
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    limits: QueueLimits,
    streams: [Stream; 2],
    next_seq: u64,
    /// First seq not covered by the persisted reservation.
    seq_reserved_until: u64,
    acked_through: u64,
    persisted: State,
    acks_since_persist: u32,
    next_segment_id: u64,
    stats: QueueStats,
    /// Holds the advisory lock while the queue is open.
    _lock: File,
}

impl Queue {
    /// Number of pending records (pushed, not acknowledged, not dropped).
    pub fn len(&self) -> usize {
        self.streams.iter().flat_map(|s| &s.segments).map(|g| g.entries.len()).sum()
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.streams.iter().flat_map(|s| &s.segments).all(|g| g.entries.is_empty())
    }

    /// Bytes the segment files take on flash: what
    /// [`QueueLimits::max_total_bytes`] bounds. Includes acknowledged and
    /// expired records until their segment is deleted.
    pub fn bytes(&self) -> u64 {
        self.streams.iter().flat_map(|s| &s.segments).map(|g| g.len).sum()
    }

    /// The seq the next push will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Everything up to this seq has been acknowledged.
    pub fn acked_through(&self) -> u64 {
        self.acked_through
    }

    /// What was dropped or skipped since the queue was opened.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated() {
        let ok = QueueLimits::default();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.max_payload(), 64 * 1024 - 26);
        for bad in [
            QueueLimits { segment_bytes: 100, ..ok },
            QueueLimits { segment_bytes: MAX_SEGMENT_BYTES + 1, ..ok },
            QueueLimits { max_total_bytes: 1000, ..ok },
            QueueLimits { max_age_ms: 0, ..ok },
        ] {
            assert!(matches!(bad.validate(), Err(QueueError::InvalidLimits(_))), "{bad:?}");
        }
    }
}
