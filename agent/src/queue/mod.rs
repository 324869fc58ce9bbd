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

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cpe_common::durable::{temp_path_for, write_atomic, OsStorage, Storage, MODE_SECRET};

mod frame;
mod state;

use frame::{FrameMeta, TailKind};
use state::State;

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

/// A file bigger than this is not one of our segments (whatever the limits).
const MAX_SEGMENT_FILE_BYTES: u64 = 2 * MAX_SEGMENT_BYTES as u64;
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

fn segment_name(class: RecordClass, id: u64) -> String {
    format!("seg-{}-{id:09}.log", class.as_str())
}

fn parse_segment_name(name: &str) -> Option<(RecordClass, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    let (class, digits) = if let Some(d) = rest.strip_prefix("metric-") {
        (RecordClass::Metric, d)
    } else {
        (RecordClass::Event, rest.strip_prefix("event-")?)
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((class, digits.parse().ok()?))
}

/// Reads a segment file, refusing anything that cannot be one of ours.
fn read_segment_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("unreadable ({e})"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SEGMENT_FILE_BYTES {
        return Err(format!("{} bytes, larger than any segment", meta.len()));
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_SEGMENT_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("unreadable ({e})"))?;
    if bytes.len() as u64 > MAX_SEGMENT_FILE_BYTES {
        return Err("grew beyond any segment size while being read".into());
    }
    Ok(bytes)
}

/// Whether a read error means the record is gone (rather than a passing
/// condition such as too many open files).
fn is_lost(e: &io::Error) -> bool {
    const EIO: i32 = 5;
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof)
        || e.raw_os_error() == Some(EIO)
}

/// The order in which [`Queue::make_room`] deletes segments.
#[derive(Debug, Clone, Copy)]
enum DropPass {
    /// Segments without pending records: no loss.
    Finished,
    /// The oldest metric segment.
    Metrics,
    /// The oldest event segment, once no metric segment is left.
    Events,
}

enum ReadFailure {
    Lost(String),
    Fatal(QueueError),
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir`: recovers every segment
    /// (see *Crash guarantees* in the module doc), applies the persisted
    /// acknowledgement and the size limit. Call [`Queue::enforce_limits`]
    /// afterwards to apply the age limit.
    pub fn open(dir: &Path, limits: QueueLimits) -> Result<Self, QueueError> {
        limits.validate()?;
        OsStorage.create_dir_all(dir).map_err(io_error("create the queue directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(SEGMENT_MODE)
            .open(&lock_path)
            .map_err(io_error("open the lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(QueueError::Locked { path: dir.to_path_buf() }),
            Err(TryLockError::Error(e)) => return Err(io_error("lock", &lock_path)(e)),
        }

        let mut queue = Self {
            dir: dir.to_path_buf(),
            limits,
            streams: RecordClass::ALL.map(Stream::new),
            next_seq: 1,
            seq_reserved_until: 0,
            acked_through: 0,
            persisted: State::default(),
            acks_since_persist: 0,
            next_segment_id: 1,
            stats: QueueStats::default(),
            _lock: lock,
        };
        queue.persisted = queue.load_state();
        queue.acked_through = queue.persisted.acked_through;

        let names = queue.list_dir()?;
        let mut highest_seen = 0;
        for class in RecordClass::ALL {
            let ids: Vec<u64> = names.iter().filter(|(c, _)| *c == class).map(|&(_, id)| id).collect();
            highest_seen = highest_seen.max(queue.recover_stream(class, &ids));
        }
        queue.remove_cross_stream_duplicates();

        // Every intact frame counts, also those skipped (wrong class, a seq
        // twice): a new frame must sort after all of them.
        let highest_on_disk = highest_seen;
        queue.next_seq = queue
            .persisted
            .seq_reserved_until
            .max(highest_on_disk.saturating_add(1))
            .max(queue.acked_through.saturating_add(1))
            .max(1);
        // Nothing is reserved for this run yet: the first push persists a block.
        queue.seq_reserved_until = queue.next_seq;
        queue.drop_acked();
        if let Err(e) = queue.collect_garbage() {
            tracing::warn!(error = %e, "queue: could not delete finished segments at open");
        }
        queue.make_room(None, 0)?;
        tracing::info!(
            dir = %queue.dir.display(),
            records = queue.len(),
            bytes = queue.bytes(),
            next_seq = queue.next_seq,
            acked_through = queue.acked_through,
            "queue opened"
        );
        Ok(queue)
    }

    fn load_state(&mut self) -> State {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => State::decode(&bytes).unwrap_or_else(|| {
                tracing::error!(
                    path = %path.display(),
                    "queue: the state file is damaged; acknowledged records may be sent again and, if no \
                     segment is left, sequence numbers restart from the highest one on disk"
                );
                State::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "queue: cannot read the state file");
                State::default()
            }
        }
    }

    /// The segment names in the directory, warning about everything else.
    fn list_dir(&mut self) -> Result<Vec<(RecordClass, u64)>, QueueError> {
        let read = fs::read_dir(&self.dir).map_err(io_error("list the queue directory", &self.dir))?;
        let state_tmp = temp_path_for(&self.dir.join(STATE_FILE));
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(io_error("list the queue directory", &self.dir))?;
            let name = entry.file_name();
            let parsed = name.to_str().and_then(parse_segment_name);
            if let Some((class, id)) = parsed {
                names.push((class, id));
                self.next_segment_id = self.next_segment_id.max(id.saturating_add(1));
            } else if name == STATE_FILE || name == LOCK_FILE || entry.path() == state_tmp {
                // Ours: the state, the lock, a state update a crash interrupted.
            } else {
                self.stats.ignored_files += 1;
                tracing::warn!(
                    path = %entry.path().display(),
                    "queue: ignoring a file that is not a segment"
                );
            }
        }
        names.sort_unstable_by_key(|&(_, id)| id);
        Ok(names)
    }

    /// Loads the segments of one class (ids ascending), cutting a damaged
    /// tail off the newest one. Returns the highest seq of any intact frame.
    fn recover_stream(&mut self, class: RecordClass, ids: &[u64]) -> u64 {
        let mut prev_seq = 0;
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let path = self.dir.join(segment_name(class, id));
            let bytes = match read_segment_file(&path) {
                Ok(bytes) => bytes,
                Err(why) => {
                    self.stats.ignored_files += 1;
                    tracing::warn!(path = %path.display(), why, "queue: ignoring a segment file");
                    if newest {
                        // Appending to an older segment would put new seqs before it.
                        self.streams[class.index()].sealed = true;
                    }
                    continue;
                }
            };
            if let Some(&first) = bytes.first() {
                if first != frame::MAGIC_V1 && first & 0xF0 == frame::MAGIC_V1 & 0xF0 {
                    // Another format version (a newer agent before a rollback):
                    // keep it for that version, and append after it.
                    self.stats.ignored_files += 1;
                    tracing::warn!(
                        path = %path.display(),
                        version = first,
                        "queue: ignoring a segment of another format version"
                    );
                    if newest {
                        self.streams[class.index()].sealed = true;
                    }
                    continue;
                }
            }
            let scan = frame::scan(&bytes, prev_seq);
            for &(start, end) in &scan.damaged {
                self.stats.corrupt += 1;
                tracing::warn!(
                    path = %path.display(), offset = start, bytes = end - start,
                    "queue: skipped a damaged region of a segment; the records in it are lost"
                );
            }
            let mut len = bytes.len() as u64;
            if let Some((start, kind)) = scan.tail {
                let tail_bytes = bytes.len() - start;
                match kind {
                    TailKind::Torn if newest => {
                        self.stats.torn_tails += 1;
                        tracing::warn!(
                            path = %path.display(), offset = start, bytes = tail_bytes,
                            "queue: cutting off an append interrupted by a crash (its push never returned)"
                        );
                    }
                    _ => {
                        self.stats.corrupt += 1;
                        tracing::warn!(
                            path = %path.display(), offset = start, bytes = tail_bytes,
                            "queue: damaged end of a segment; the records in it are lost"
                        );
                    }
                }
                if newest {
                    match truncate(&path, start as u64) {
                        Ok(()) => len = start as u64,
                        Err(e) => {
                            tracing::warn!(
                                path = %path.display(),
                                error = %e,
                                "queue: cannot cut the damaged end off; closing the segment"
                            );
                            self.streams[class.index()].sealed = true;
                        }
                    }
                }
            }
            let mut entries = VecDeque::with_capacity(scan.frames.len());
            for frame in &scan.frames {
                prev_seq = frame.seq;
                if let Some(entry) = entry_of(frame, class) {
                    entries.push_back(entry);
                } else {
                    self.stats.corrupt += 1;
                    tracing::warn!(
                        path = %path.display(),
                        seq = frame.seq,
                        "queue: skipped a record of the wrong class"
                    );
                }
            }
            self.streams[class.index()].segments.push_back(Segment { id, len, entries });
        }
        prev_seq
    }

    /// A seq may exist once: a copy in the event stream of a metric seq is
    /// damage (or a foreign file) and is skipped.
    fn remove_cross_stream_duplicates(&mut self) {
        let [metrics, events] = &mut self.streams;
        let metric_seqs: Vec<u64> =
            metrics.segments.iter().flat_map(|g| g.entries.iter().map(|e| e.seq)).collect();
        if metric_seqs.is_empty() {
            return;
        }
        for segment in &mut events.segments {
            let before = segment.entries.len();
            segment.entries.retain(|e| metric_seqs.binary_search(&e.seq).is_err());
            let removed = before - segment.entries.len();
            if removed > 0 {
                self.stats.corrupt += removed as u64;
                tracing::warn!(
                    segment = segment.id,
                    removed,
                    "queue: skipped events whose seq a metric already has"
                );
            }
        }
    }

    /// Appends a record and returns its seq once it is on flash.
    ///
    /// Makes room first according to the drop policy (module doc); a metric
    /// that would need events to be dropped is refused with
    /// [`QueueError::Full`]. On an I/O error the record is not queued (it
    /// may reappear after a restart if the error came from `fdatasync`).
    pub fn push(&mut self, class: RecordClass, at_unix_ms: i64, payload: &[u8]) -> Result<u64, QueueError> {
        let max = self.limits.max_payload();
        if payload.len() > max {
            return Err(QueueError::TooLarge { len: payload.len(), max });
        }
        if self.next_seq == u64::MAX {
            return Err(QueueError::Exhausted("sequence numbers"));
        }
        let frame_len = payload.len() + FRAME_OVERHEAD;
        let frame_len_u64 = frame_len as u64;
        self.make_room(Some(class), frame_len_u64)?;
        if self.next_seq >= self.seq_reserved_until {
            let until = self.next_seq.saturating_add(SEQ_RESERVATION);
            self.write_state(self.acked_through, until)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.prepare_writer(class, frame_len_u64)?;

        let mut buf = Vec::new();
        frame::encode(seq, class, at_unix_ms, payload, &mut buf);
        let stream = &mut self.streams[class.index()];
        let (Some(writer), Some(segment)) = (stream.writer.as_mut(), stream.segments.back_mut()) else {
            return Err(io_error("append to", &path)(io::Error::other("no open segment")));
        };
        let offset = segment.len;
        let result = writer
            .write_all(&buf)
            .map_err(|e| (e, "append a record to"))
            .and_then(|()| writer.sync_data().map_err(|e| (e, "flush a record to")));
        match result {
            Ok(()) => {
                segment.len += frame_len_u64;
                segment.entries.push_back(Entry {
                    seq,
                    at_unix_ms,
                    offset: u32::try_from(offset).unwrap_or(u32::MAX),
                    frame_len: u32::try_from(frame_len).unwrap_or(u32::MAX),
                });
                Ok(seq)
            }
            Err((e, action)) => {
                // A failed write is taken back so that the next frame starts
                // cleanly. After a failed fdatasync the file's state is
                // unknown: the segment is closed and a new one started.
                let taken_back = action == "append a record to"
                    && writer.set_len(offset).and_then(|()| writer.sync_data()).is_ok();
                if !taken_back {
                    stream.sealed = true;
                    stream.writer = None;
                    segment.len = fs::metadata(&path).map_or(offset, |m| m.len());
                }
                Err(io_error(action, &path)(e))
            }
        }
    }

    /// Makes sure the stream of `class` has a last segment open for appends
    /// with room for `frame_len`, starting a new one if needed.
    fn prepare_writer(&mut self, class: RecordClass, frame_len: u64) -> Result<PathBuf, QueueError> {
        let limit = u64::from(self.limits.segment_bytes);
        let stream = &self.streams[class.index()];
        let need_new = match stream.segments.back() {
            None => true,
            Some(last) => stream.sealed || (last.len > 0 && last.len + frame_len > limit),
        };
        if !need_new {
            let Some(last) = stream.segments.back() else {
                return Err(QueueError::Exhausted("segment"));
            };
            let path = self.dir.join(segment_name(class, last.id));
            if stream.writer.is_none() {
                let file = OpenOptions::new().append(true).open(&path).map_err(io_error("open", &path))?;
                self.streams[class.index()].writer = Some(file);
            }
            return Ok(path);
        }
        let id = self.next_segment_id;
        self.next_segment_id = id.checked_add(1).ok_or(QueueError::Exhausted("segment ids"))?;
        let path = self.dir.join(segment_name(class, id));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(SEGMENT_MODE)
            .open(&path)
            .map_err(io_error("create the segment", &path))?;
        self.sync_dir()?;
        let stream = &mut self.streams[class.index()];
        stream.segments.push_back(Segment { id, len: 0, entries: VecDeque::new() });
        stream.writer = Some(file);
        stream.sealed = false;
        // The previous segment may be finished now.
        if let Err(e) = self.collect_garbage() {
            tracing::warn!(error = %e, "queue: could not delete finished segments");
        }
        Ok(path)
    }

    /// Returns up to `max_records` of the oldest pending records, in seq
    /// order, without removing them; the payloads add up to at most
    /// `max_bytes`, except that the first record is always returned (a
    /// record larger than `max_bytes` must not block the queue). Every
    /// payload is CRC-checked again; a record that can no longer be read is
    /// dropped, counted in [`QueueStats::corrupt`] and skipped.
    pub fn peek_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedRecord>, QueueError> {
        loop {
            let picks = self.select(max_records, max_bytes);
            let mut files: HashMap<(usize, u64), File> = HashMap::new();
            let mut out = Vec::with_capacity(picks.len());
            let mut lost = Vec::new();
            for (stream, segment, entry) in picks {
                match self.read_entry(&mut files, stream, segment, entry) {
                    Ok(record) => out.push(record),
                    Err(ReadFailure::Lost(why)) => lost.push((stream, segment, entry.seq, why)),
                    Err(ReadFailure::Fatal(e)) => return Err(e),
                }
            }
            if lost.is_empty() {
                return Ok(out);
            }
            for (stream, segment, seq, why) in lost {
                self.stats.corrupt += 1;
                tracing::warn!(seq, segment, why, "queue: a stored record can no longer be read; it is lost");
                if let Some(g) = self.streams[stream].segments.iter_mut().find(|g| g.id == segment) {
                    if let Ok(i) = g.entries.binary_search_by_key(&seq, |e| e.seq) {
                        g.entries.remove(i);
                    }
                }
            }
            if let Err(e) = self.collect_garbage() {
                tracing::warn!(error = %e, "queue: could not delete finished segments");
            }
        }
    }

    /// The oldest pending records of both streams, merged by seq.
    fn select(&self, max_records: usize, max_bytes: usize) -> Vec<(usize, u64, Entry)> {
        let mut iters = self
            .streams
            .each_ref()
            .map(|s| s.segments.iter().flat_map(|g| g.entries.iter().map(move |e| (g.id, *e))).peekable());
        let mut picks = Vec::new();
        let mut bytes = 0usize;
        while picks.len() < max_records {
            let [metrics, events] = &mut iters;
            let next = match (metrics.peek(), events.peek()) {
                (Some(m), Some(e)) => usize::from(e.1.seq < m.1.seq),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => break,
            };
            let Some((segment, entry)) = iters[next].next() else { break };
            bytes = bytes.saturating_add(entry.payload_len());
            if !picks.is_empty() && bytes > max_bytes {
                break;
            }
            picks.push((next, segment, entry));
        }
        picks
    }

    fn read_entry(
        &self,
        files: &mut HashMap<(usize, u64), File>,
        stream: usize,
        segment: u64,
        entry: Entry,
    ) -> Result<QueuedRecord, ReadFailure> {
        let class = self.streams[stream].class;
        let path = self.dir.join(segment_name(class, segment));
        let file = match files.entry((stream, segment)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match File::open(&path) {
                Ok(f) => v.insert(f),
                Err(e) if is_lost(&e) => return Err(ReadFailure::Lost(format!("segment unreadable: {e}"))),
                Err(e) => return Err(ReadFailure::Fatal(io_error("open", &path)(e))),
            },
        };
        let mut buf = vec![0; usize::try_from(entry.frame_len).unwrap_or(0)];
        match file.read_exact_at(&mut buf, u64::from(entry.offset)) {
            Ok(()) => {}
            Err(e) if is_lost(&e) => return Err(ReadFailure::Lost(format!("read failed: {e}"))),
            Err(e) => return Err(ReadFailure::Fatal(io_error("read", &path)(e))),
        }
        match frame::parse_at(&buf, 0, entry.seq.saturating_sub(1)) {
            Ok(meta) if meta.seq == entry.seq && meta.class == class && meta.frame_len == buf.len() => {
                Ok(QueuedRecord {
                    seq: meta.seq,
                    class,
                    at_unix_ms: meta.at_unix_ms,
                    payload: frame::payload(&buf, &meta),
                })
            }
            _ => Err(ReadFailure::Lost("the frame changed on flash since it was written (CRC)".into())),
        }
    }

    /// Drops every record up to and including `seq`: the carrier confirmed
    /// them. Acknowledging an older seq again does nothing.
    ///
    /// The acknowledgement takes effect in memory at once; an error means
    /// only that persisting it (or deleting a finished segment) failed, so
    /// some of these records may be sent again after a restart.
    pub fn ack_through(&mut self, seq: u64) -> Result<(), QueueError> {
        let last = self.next_seq.saturating_sub(1);
        if seq > last {
            return Err(QueueError::AckAhead { seq, last });
        }
        if seq <= self.acked_through {
            return Ok(());
        }
        self.acked_through = seq;
        self.acks_since_persist = self.acks_since_persist.saturating_add(1);
        self.drop_acked();
        self.collect_garbage()?;
        if self.acks_since_persist >= ACK_PERSIST_EVERY && self.persisted.acked_through != self.acked_through
        {
            self.persist_state()?;
        }
        Ok(())
    }

    /// Persists the acknowledged position now (e.g. at shutdown), so that a
    /// restart does not send acknowledged records again.
    pub fn checkpoint(&mut self) -> Result<(), QueueError> {
        if self.persisted.acked_through != self.acked_through {
            self.persist_state()?;
        }
        Ok(())
    }

    /// Applies the limits at `now_unix_ms` (drop policy in the module doc):
    /// drops records older than [`QueueLimits::max_age_ms`], then enforces
    /// the size limit. Call it after [`Queue::open`] and periodically (e.g.
    /// before each upload).
    pub fn enforce_limits(&mut self, now_unix_ms: i64) -> Result<(), QueueError> {
        let floor = self.limits.clock_floor_unix_ms;
        if now_unix_ms >= floor {
            let cutoff = now_unix_ms.saturating_sub(self.limits.max_age_ms);
            let mut dropped = [0usize; 2];
            for stream in &mut self.streams {
                for segment in &mut stream.segments {
                    let before = segment.entries.len();
                    segment.entries.retain(|e| e.at_unix_ms < floor || e.at_unix_ms >= cutoff);
                    dropped[stream.class.index()] += before - segment.entries.len();
                }
            }
            if dropped != [0, 0] {
                self.stats.dropped_age += (dropped[0] + dropped[1]) as u64;
                tracing::warn!(
                    metrics = dropped[0],
                    events = dropped[1],
                    max_age_ms = self.limits.max_age_ms,
                    "queue: dropped records older than the age limit"
                );
            }
        } else {
            tracing::debug!(now_unix_ms, floor, "queue: the clock is not set; no record is judged by age");
        }
        self.collect_garbage()?;
        self.make_room(None, 0)
    }

    /// Deletes segments until `extra` more bytes fit (drop policy in the
    /// module doc). `incoming` is the class about to be pushed, if any.
    fn make_room(&mut self, incoming: Option<RecordClass>, extra: u64) -> Result<(), QueueError> {
        let max = self.limits.max_total_bytes;
        if self.bytes().saturating_add(extra) <= max {
            return Ok(());
        }
        if incoming == Some(RecordClass::Metric) {
            let used: u64 = self.streams[RecordClass::Event.index()]
                .segments
                .iter()
                .filter(|g| !g.entries.is_empty())
                .map(|g| g.len)
                .sum();
            if used.saturating_add(extra) > max {
                self.stats.rejected_full += 1;
                tracing::warn!(used, max, "queue: full of events; a metric was not stored");
                return Err(QueueError::Full { used, max });
            }
        }
        let mut dropped = [0usize; 2];
        let mut deleted = false;
        for pass in [DropPass::Finished, DropPass::Metrics, DropPass::Events] {
            while self.bytes().saturating_add(extra) > max {
                let Some((s, id)) = self.drop_target(pass) else { break };
                dropped[s] += self.delete_segment(s, id)?;
                deleted = true;
            }
        }
        if deleted {
            self.sync_dir()?;
        }
        if dropped != [0, 0] {
            self.stats.dropped_size += (dropped[0] + dropped[1]) as u64;
            tracing::warn!(
                metrics = dropped[0],
                events = dropped[1],
                max_total_bytes = max,
                "queue: over its size limit; dropped the oldest records"
            );
        }
        Ok(())
    }

    /// The next segment to delete in `pass` of [`Queue::make_room`].
    fn drop_target(&self, pass: DropPass) -> Option<(usize, u64)> {
        let oldest_of = |class: RecordClass| {
            let s = class.index();
            self.streams[s].segments.front().map(|g| (s, g.id))
        };
        match pass {
            DropPass::Finished => self
                .streams
                .iter()
                .enumerate()
                .flat_map(|(s, st)| st.segments.iter().map(move |g| (s, g)))
                .filter(|(_, g)| g.entries.is_empty())
                .min_by_key(|(_, g)| g.id)
                .map(|(s, g)| (s, g.id)),
            DropPass::Metrics => oldest_of(RecordClass::Metric),
            DropPass::Events => oldest_of(RecordClass::Event),
        }
    }

    /// Removes acknowledged records from the pending lists.
    fn drop_acked(&mut self) {
        let acked = self.acked_through;
        for stream in &mut self.streams {
            for segment in &mut stream.segments {
                while segment.entries.front().is_some_and(|e| e.seq <= acked) {
                    segment.entries.pop_front();
                }
            }
        }
    }

    /// Deletes every segment without pending records except the last of each
    /// stream (still being appended to), persisting the ack position first.
    fn collect_garbage(&mut self) -> Result<(), QueueError> {
        let dead: Vec<(usize, u64)> = self
            .streams
            .iter()
            .enumerate()
            .flat_map(|(s, st)| {
                let n = st.segments.len();
                st.segments
                    .iter()
                    .take(n.saturating_sub(1))
                    .filter(|g| g.entries.is_empty())
                    .map(move |g| (s, g.id))
            })
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        if self.persisted.acked_through != self.acked_through {
            self.persist_state()?;
        }
        for (s, id) in dead {
            self.delete_segment(s, id)?;
        }
        self.sync_dir()
    }

    /// Deletes one segment file; returns how many pending records it held.
    fn delete_segment(&mut self, stream: usize, id: u64) -> Result<usize, QueueError> {
        let class = self.streams[stream].class;
        let path = self.dir.join(segment_name(class, id));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("delete the segment", &path)(e)),
        }
        let st = &mut self.streams[stream];
        let Some(i) = st.segments.iter().position(|g| g.id == id) else { return Ok(0) };
        if i + 1 == st.segments.len() {
            st.writer = None;
        }
        Ok(st.segments.remove(i).map_or(0, |g| g.entries.len()))
    }

    fn persist_state(&mut self) -> Result<(), QueueError> {
        self.write_state(self.acked_through, self.seq_reserved_until)
    }

    fn write_state(&mut self, acked_through: u64, seq_reserved_until: u64) -> Result<(), QueueError> {
        let state = State { acked_through, seq_reserved_until };
        let path = self.dir.join(STATE_FILE);
        write_atomic(&OsStorage, &path, &state.encode(), MODE_SECRET).map_err(io_error("write", &path))?;
        self.persisted = state;
        self.seq_reserved_until = seq_reserved_until;
        self.acks_since_persist = 0;
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), QueueError> {
        OsStorage.sync_dir(&self.dir).map_err(io_error("sync the directory", &self.dir))
    }

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

fn entry_of(frame: &FrameMeta, class: RecordClass) -> Option<Entry> {
    if frame.class != class {
        return None;
    }
    Some(Entry {
        seq: frame.seq,
        at_unix_ms: frame.at_unix_ms,
        offset: u32::try_from(frame.offset).ok()?,
        frame_len: u32::try_from(frame.frame_len).ok()?,
    })
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(RecordClass::Metric, 7), "seg-metric-000000007.log");
        assert_eq!(parse_segment_name("seg-metric-000000007.log"), Some((RecordClass::Metric, 7)));
        assert_eq!(
            parse_segment_name("seg-event-12345678901.log"),
            Some((RecordClass::Event, 12_345_678_901))
        );
        for bad in [
            "seg-metric-.log",
            "seg-metric-1.log.tmp",
            "seg-other-1.log",
            "seg-event--1.log",
            "seg-event-99999999999999999999.log",
            "seg-event-+1.log",
            "state",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

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
