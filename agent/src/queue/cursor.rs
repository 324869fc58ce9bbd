//! The read side: which records are pending, in seq order across both
//! streams ([`Queue::peek_batch`]), each CRC-checked again when read; and
//! the acknowledged position ([`Queue::ack_through`]) with the sequence
//! reservation, persisted in `state`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use cpe_common::durable::{write_atomic, OsStorage, MODE_SECRET};

use super::frame;
use super::segment::segment_name;
use super::state::State;
use super::{io_error, Entry, Queue, QueueError, QueuedRecord, ACK_PERSIST_EVERY, STATE_FILE};

enum ReadFailure {
    Lost(String),
    Fatal(QueueError),
}

/// Whether a read error means the record is gone (rather than a passing
/// condition such as too many open files).
fn is_lost(e: &io::Error) -> bool {
    const EIO: i32 = 5;
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof)
        || e.raw_os_error() == Some(EIO)
}

impl Queue {
    /// Returns up to `max_records` of the oldest pending records, in seq
    /// order, without removing them; the payloads add up to at most
    /// `max_bytes`, except that the first record is always returned (a
    /// record larger than `max_bytes` must not block the queue). Every
    /// payload is CRC-checked again; a record that can no longer be read is
    /// dropped, counted in [`QueueStats::corrupt`](super::QueueStats::corrupt) and skipped.
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

    /// Removes acknowledged records from the pending lists.
    pub(super) fn drop_acked(&mut self) {
        let acked = self.acked_through;
        for stream in &mut self.streams {
            for segment in &mut stream.segments {
                while segment.entries.front().is_some_and(|e| e.seq <= acked) {
                    segment.entries.pop_front();
                }
            }
        }
    }

    pub(super) fn persist_state(&mut self) -> Result<(), QueueError> {
        self.write_state(self.acked_through, self.seq_reserved_until)
    }

    pub(super) fn write_state(
        &mut self,
        acked_through: u64,
        seq_reserved_until: u64,
    ) -> Result<(), QueueError> {
        let state = State { acked_through, seq_reserved_until };
        let path = self.dir.join(STATE_FILE);
        write_atomic(&OsStorage, &path, &state.encode(), MODE_SECRET).map_err(io_error("write", &path))?;
        self.persisted = state;
        self.seq_reserved_until = seq_reserved_until;
        self.acks_since_persist = 0;
        Ok(())
    }
}
