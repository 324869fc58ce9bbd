//! Segment files: their names (`seg-<class>-<id>.log`), reading one whole
//! and bounded, appending a record ([`Queue::push`]: one frame, then
//! `fdatasync`), starting, cutting and deleting files, and the directory
//! fsync that makes a creation or deletion durable.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use cpe_common::durable::{OsStorage, Storage};

use super::{
    frame, io_error, Entry, Queue, QueueError, RecordClass, Segment, FRAME_OVERHEAD, MAX_SEGMENT_BYTES,
    SEGMENT_MODE, SEQ_RESERVATION,
};

/// A file bigger than this is not one of our segments (whatever the limits).
const MAX_SEGMENT_FILE_BYTES: u64 = 2 * MAX_SEGMENT_BYTES as u64;

pub(super) fn segment_name(class: RecordClass, id: u64) -> String {
    format!("seg-{}-{id:09}.log", class.as_str())
}

pub(super) fn parse_segment_name(name: &str) -> Option<(RecordClass, u64)> {
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
pub(super) fn read_segment_file(path: &Path) -> Result<Vec<u8>, String> {
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

pub(super) fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

impl Queue {
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

    /// Deletes one segment file; returns how many pending records it held.
    pub(super) fn delete_segment(&mut self, stream: usize, id: u64) -> Result<usize, QueueError> {
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

    pub(super) fn sync_dir(&self) -> Result<(), QueueError> {
        OsStorage.sync_dir(&self.dir).map_err(io_error("sync the directory", &self.dir))
    }
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
}
