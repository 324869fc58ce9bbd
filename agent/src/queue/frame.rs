//! The record frame of a segment file, and the scanner that recovers the
//! records of a segment from its bytes without trusting any of them.
//!
//! ```text
//! offset  size  field
//!      0     1  magic/version byte 0xD1 (format 1)
//!      1     4  len: bytes after the CRC field (17 + payload length), u32 LE
//!      5     4  CRC-32 (IEEE) of those len bytes, u32 LE
//!      9     8  seq, u64 LE
//!     17     1  class: 0 metric, 1 event
//!     18     8  at_unix_ms, i64 LE
//!     26     …  payload
//! ```

use super::RecordClass;

/// The magic/version byte that starts every frame of format 1.
pub(super) const MAGIC_V1: u8 = 0xD1;
/// Magic, length and CRC.
pub(super) const HEADER_BYTES: usize = 9;
/// Seq, class and timestamp: the fixed part covered by the CRC.
const BODY_FIXED_BYTES: usize = 17;
/// Bytes a frame adds to its payload.
pub(super) const OVERHEAD_BYTES: usize = HEADER_BYTES + BODY_FIXED_BYTES;
/// The largest frame accepted from disk, whatever the configured limits: a
/// length field above this is damage, not a record.
pub(super) const MAX_FRAME_BYTES: usize = 1 << 20;

/// A frame found intact in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameMeta {
    pub seq: u64,
    pub class: RecordClass,
    pub at_unix_ms: i64,
    /// Where the frame starts in the segment.
    pub offset: usize,
    /// The whole frame, header included.
    pub frame_len: usize,
}

/// How the unusable end of a segment looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TailKind {
    /// Zeros, or the beginning of one frame: an append that a crash or a
    /// power cut interrupted. Its push never returned, so nothing is lost.
    Torn,
    /// Anything else: damage of data that had been stored.
    Corrupt,
}

/// What [`scan`] found in a segment.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Intact frames, in file order, with strictly increasing seq.
    pub frames: Vec<FrameMeta>,
    /// Damaged regions `(start, end)` followed by an intact frame.
    pub damaged: Vec<(usize, usize)>,
    /// A region from `start` to the end of the data in which no intact frame
    /// begins.
    pub tail: Option<(usize, TailKind)>,
}

/// Appends the frame of one record to `out`. The caller bounds the payload
/// (at most [`MAX_FRAME_BYTES`] minus the overhead).
pub(super) fn encode(seq: u64, class: RecordClass, at_unix_ms: i64, payload: &[u8], out: &mut Vec<u8>) {
    let body_len = BODY_FIXED_BYTES + payload.len();
    let len_field = u32::try_from(body_len).unwrap_or(u32::MAX);
    let start = out.len();
    out.reserve(HEADER_BYTES + body_len);
    out.push(MAGIC_V1);
    out.extend_from_slice(&len_field.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(class.to_byte());
    out.extend_from_slice(&at_unix_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + HEADER_BYTES..]);
    out[start + 5..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// Why no intact frame starts at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// The frame would end beyond the available bytes.
    Incomplete,
    /// Wrong magic, impossible length, CRC mismatch, unknown class, or a seq
    /// that does not follow the previous record.
    Invalid,
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
}

/// The total frame length a header at `pos` claims, if the header is
/// readable and the length is possible at all.
fn declared_frame_len(buf: &[u8], pos: usize) -> Option<usize> {
    if buf.get(pos) != Some(&MAGIC_V1) {
        return None;
    }
    let body = usize::try_from(read_u32(buf, pos + 1)?).ok()?;
    if !(BODY_FIXED_BYTES..=MAX_FRAME_BYTES - HEADER_BYTES).contains(&body) {
        return None;
    }
    Some(HEADER_BYTES + body)
}

/// Decodes the frame at `pos`, accepting it only if every check passes: magic,
/// bounded length within `buf`, known class, seq above `after_seq` and below
/// `u64::MAX`, and the CRC. Cheap checks come first so that resynchronising
/// over random bytes rarely computes a CRC.
pub(super) fn parse_at(buf: &[u8], pos: usize, after_seq: u64) -> Result<FrameMeta, Bad> {
    let Some(frame_len) = declared_frame_len(buf, pos) else {
        return Err(if buf.len().saturating_sub(pos) < 5 && buf.get(pos) == Some(&MAGIC_V1) {
            Bad::Incomplete
        } else {
            Bad::Invalid
        });
    };
    let end = pos.checked_add(frame_len).ok_or(Bad::Invalid)?;
    if end > buf.len() {
        return Err(Bad::Incomplete);
    }
    let body = &buf[pos + HEADER_BYTES..end];
    let class = body.get(8).copied().and_then(RecordClass::from_byte).ok_or(Bad::Invalid)?;
    let seq = read_u64(body, 0).ok_or(Bad::Invalid)?;
    if seq <= after_seq || seq == u64::MAX {
        return Err(Bad::Invalid);
    }
    let crc = read_u32(buf, pos + 5).ok_or(Bad::Invalid)?;
    if crc32fast::hash(body) != crc {
        return Err(Bad::Invalid);
    }
    let at_unix_ms =
        body.get(9..17).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).ok_or(Bad::Invalid)?;
    Ok(FrameMeta { seq, class, at_unix_ms, offset: pos, frame_len })
}

/// The payload of a frame already checked by [`parse_at`] on `buf`.
pub(super) fn payload(buf: &[u8], frame: &FrameMeta) -> Vec<u8> {
    buf.get(frame.offset + OVERHEAD_BYTES..frame.offset + frame.frame_len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Recovers the records of a segment. `after_seq` is the last seq of the
/// segments before it (records must keep increasing). Never panics; the work
/// is linear in the data for ordinary damage (a CRC is computed only where a
/// magic byte, a possible length, a known class and a rising seq line up).
pub(super) fn scan(buf: &[u8], after_seq: u64) -> Scan {
    let mut out = Scan::default();
    let mut prev = after_seq;
    let mut pos = 0;
    while pos < buf.len() {
        if let Ok(frame) = parse_at(buf, pos, prev) {
            prev = frame.seq;
            pos += frame.frame_len;
            out.frames.push(frame);
            continue;
        }
        // A damaged payload leaves the length intact: the next frame starts
        // where the length says. Otherwise search byte by byte.
        let skip = declared_frame_len(buf, pos)
            .map(|len| pos + len)
            .filter(|&next| next < buf.len() && parse_at(buf, next, prev).is_ok());
        if let Some(next) = skip.or_else(|| (pos + 1..buf.len()).find(|&q| parse_at(buf, q, prev).is_ok())) {
            out.damaged.push((pos, next));
            pos = next;
        } else {
            out.tail = Some((pos, classify_tail(&buf[pos..])));
            break;
        }
    }
    out
}

/// A tail is torn (an interrupted append) when it is all zeros (the file grew
/// but the data never reached flash) or the beginning of a single frame.
fn classify_tail(tail: &[u8]) -> TailKind {
    if tail.iter().all(|&b| b == 0) {
        return TailKind::Torn;
    }
    if tail.first() != Some(&MAGIC_V1) {
        return TailKind::Corrupt;
    }
    match declared_frame_len(tail, 0) {
        Some(len) if tail.len() <= len => TailKind::Torn,
        // Too short to hold the length field: a frame cut right after its magic.
        None if tail.len() < 5 => TailKind::Torn,
        _ => TailKind::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, RecordClass, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for &(seq, class, payload) in records {
            encode(seq, class, 1_000 + i64::try_from(seq).unwrap(), payload, &mut buf);
        }
        buf
    }

    #[test]
    fn round_trip() {
        let buf = segment(&[(1, RecordClass::Metric, b"abc"), (2, RecordClass::Event, b"")]);
        assert_eq!(buf.len(), 2 * OVERHEAD_BYTES + 3);
        let scan = scan(&buf, 0);
        assert!(scan.damaged.is_empty() && scan.tail.is_none());
        assert_eq!(scan.frames.len(), 2);
        assert_eq!(scan.frames[0].seq, 1);
        assert_eq!(scan.frames[0].at_unix_ms, 1_001);
        assert_eq!(payload(&buf, &scan.frames[0]), b"abc");
        assert_eq!(scan.frames[1].class, RecordClass::Event);
        assert_eq!(scan.frames[1].offset, OVERHEAD_BYTES + 3);
    }

    #[test]
    fn seq_must_rise() {
        let buf = segment(&[(5, RecordClass::Metric, b"a"), (4, RecordClass::Metric, b"b")]);
        let scan = scan(&buf, 0);
        assert_eq!(scan.frames.len(), 1);
        assert!(scan.tail.is_some());
        assert!(super::scan(&buf, 5).frames.is_empty());
    }

    #[test]
    fn damaged_length_resynchronises_on_the_next_frame() {
        let mut buf = segment(&[(1, RecordClass::Metric, b"one"), (2, RecordClass::Metric, b"two")]);
        let second = OVERHEAD_BYTES + 3;
        let third = buf.len();
        encode(3, RecordClass::Metric, 3, b"three", &mut buf);
        buf[second + 2] ^= 0x40; // record 2 now claims a frame beyond the end
        let scan = scan(&buf, 0);
        let seqs: Vec<u64> = scan.frames.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(scan.damaged, [(second, third)]);
        assert!(scan.tail.is_none());
    }

    #[test]
    fn tails_are_classified() {
        let full = segment(&[(1, RecordClass::Event, b"payload")]);
        for cut in 1..full.len() {
            let scan = scan(&full[..cut], 0);
            assert_eq!(scan.tail, Some((0, TailKind::Torn)), "cut at {cut}");
        }
        assert_eq!(scan(&[0; 40], 0).tail, Some((0, TailKind::Torn)));
        assert_eq!(scan(b"garbage", 0).tail, Some((0, TailKind::Corrupt)));
        let mut flipped = full.clone();
        flipped[20] ^= 1;
        assert_eq!(scan(&flipped, 0).tail, Some((0, TailKind::Torn)));
    }
}
