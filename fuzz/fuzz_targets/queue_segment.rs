//! Segment files of the report queue, as `Queue::open` recovers them after a
//! crash or flash damage. The first input byte picks the layout (which
//! stream, an older copy in front, a state file); the rest is the segment.
//! The queue is opened, read, acknowledged, appended to and reopened: no
//! panic, records in strictly increasing seq, and a confirmed push survives.
#![no_main]

use std::path::{Path, PathBuf};

use cpe_agent::queue::{Queue, QueueLimits, RecordClass};
use libfuzzer_sys::fuzz_target;

fn scratch() -> PathBuf {
    // tmpfs when there is one: the target is about parsing, not the disk.
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    base.join(format!("cpe-queue-fuzz-{}", std::process::id()))
}

const LIMITS: QueueLimits =
    QueueLimits { max_total_bytes: 1 << 20, max_age_ms: 1_000, segment_bytes: 4096, clock_floor_unix_ms: 0 };

fn all_seqs(queue: &mut Queue) -> Vec<u64> {
    let batch = queue.peek_batch(usize::MAX, usize::MAX).unwrap_or_default();
    batch.iter().map(|r| r.seq).collect()
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let (mode, segment) = data.split_first().map_or((0, data), |(m, rest)| (*m, rest));
    let name = if mode & 1 == 0 { "seg-metric-000000002.log" } else { "seg-event-000000002.log" };
    if std::fs::write(dir.join(name), segment).is_err() {
        return;
    }
    if mode & 2 != 0 {
        // The same bytes as an older segment: seqs must keep rising across files.
        let _ = std::fs::write(dir.join("seg-metric-000000001.log"), segment);
    }
    if mode & 4 != 0 {
        let _ = std::fs::write(dir.join("state"), segment.get(..25).unwrap_or(segment));
    }

    let Ok(mut queue) = Queue::open(&dir, LIMITS) else { return };
    let _ = queue.enforce_limits(i64::from(mode >> 3) * 250);
    let seqs = all_seqs(&mut queue);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order: {seqs:?}");
    assert_eq!(seqs.len(), queue.len());
    if let Some(&last) = seqs.last() {
        let _ = queue.ack_through(last / 2);
    }
    let pushed = queue.push(RecordClass::Event, 1, b"after recovery");
    if let Ok(seq) = pushed {
        assert!(seqs.iter().all(|&s| s < seq), "seq {seq} reused: {seqs:?}");
    }
    drop(queue);

    let Ok(mut queue) = Queue::open(&dir, LIMITS) else { return };
    let again = all_seqs(&mut queue);
    assert!(again.windows(2).all(|w| w[0] < w[1]), "out of order after reopen: {again:?}");
    if let Ok(seq) = pushed {
        assert!(again.contains(&seq), "confirmed seq {seq} lost after reopen: {again:?}");
    }
});
