//! Opening the queue: the lock, the persisted `state`, and the recovery of
//! every segment (see *Crash guarantees* in the [module documentation](super)):
//! damaged tails cut off, damaged regions skipped, foreign files left alone,
//! and the next sequence number placed after everything ever handed out.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use cpe_common::durable::{temp_path_for, OsStorage, Storage};

use super::frame::{self, FrameMeta, TailKind};
use super::segment::{parse_segment_name, read_segment_file, segment_name, truncate};
use super::state::{State, STATE_BYTES};
use super::{
    io_error, Entry, Queue, QueueError, QueueLimits, QueueStats, RecordClass, Segment, Stream, LOCK_FILE,
    SEGMENT_MODE, STATE_FILE,
};

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
        // Read no more than a state holds (+ 1 byte): a larger file is damaged.
        match cpe_common::bounded::read_file(&path, STATE_BYTES) {
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
