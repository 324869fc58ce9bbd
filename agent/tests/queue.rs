//! The store-and-forward queue against real files: order across segments,
//! sequence numbers across restarts, torn writes at every byte, flipped
//! bytes, foreign files, the drop policy, a real SIGKILL of a pushing
//! process, and a measurement of fsync'd pushes on this machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_precision_loss, missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cpe_agent::queue::{
    Queue, QueueError, QueueLimits, QueueStats, QueuedRecord, RecordClass, FRAME_OVERHEAD,
};

const DAY_MS: i64 = 24 * 3_600 * 1_000;
/// Set in a child process started by a test: which role to play.
const CHILD_ENV: &str = "CPE_QUEUE_TEST_CHILD";
const CHILD_DIR_ENV: &str = "CPE_QUEUE_TEST_DIR";

/// Opens the queue, waiting while the lock is held: a process that another
/// test is starting holds a copy of every descriptor until its `exec`.
fn open_queue(dir: &Path, limits: QueueLimits) -> Result<Queue, QueueError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Queue::open(dir, limits) {
            Err(QueueError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

fn limits(segment_bytes: u32, max_total_bytes: u64) -> QueueLimits {
    QueueLimits { max_total_bytes, max_age_ms: 7 * DAY_MS, segment_bytes, clock_floor_unix_ms: 0 }
}

/// A payload that tells which seq it belongs to (checked on every read).
fn payload_for(seq: u64, len: usize) -> Vec<u8> {
    let mut p = format!("record {seq:>8} ").into_bytes();
    p.resize(len, u8::try_from(seq % 251).unwrap());
    p.truncate(len);
    p
}

fn all(q: &mut Queue) -> Vec<QueuedRecord> {
    q.peek_batch(usize::MAX, usize::MAX).unwrap()
}

fn seqs(q: &mut Queue) -> Vec<u64> {
    all(q).iter().map(|r| r.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Pushes `n` records of `len` bytes; every `event_every`-th one is an event.
fn fill(q: &mut Queue, n: u64, len: usize, event_every: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let class = if event_every > 0 && i % event_every == 0 {
                RecordClass::Event
            } else {
                RecordClass::Metric
            };
            let expected = q.next_seq();
            let seq = q.push(class, 1_000 + i64::try_from(i).unwrap(), &payload_for(expected, len)).unwrap();
            assert_eq!(seq, expected);
            seq
        })
        .collect()
}

fn assert_payloads(records: &[QueuedRecord], len: usize) {
    for r in records {
        assert_eq!(r.payload, payload_for(r.seq, len), "payload of seq {}", r.seq);
    }
}

#[test]
fn push_peek_ack_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open_queue(dir.path(), limits(256, 1 << 20)).unwrap();
    assert!(q.is_empty());
    let pushed = fill(&mut q, 40, 50, 5);
    assert_eq!(pushed, (1..=40).collect::<Vec<_>>());
    assert_eq!(q.len(), 40);
    assert_eq!(q.bytes(), 40 * (50 + FRAME_OVERHEAD) as u64);
    let files = segment_files(dir.path());
    assert!(files.iter().filter(|f| f.to_str().unwrap().contains("metric")).count() >= 10, "{files:?}");
    assert!(files.iter().filter(|f| f.to_str().unwrap().contains("event")).count() >= 2, "{files:?}");

    let records = all(&mut q);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), pushed);
    assert_payloads(&records, 50);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.class, if i % 5 == 0 { RecordClass::Event } else { RecordClass::Metric });
        assert_eq!(r.at_unix_ms, 1_000 + i64::try_from(i).unwrap());
    }

    // Batch bounds: count, payload bytes, and always at least one record.
    assert_eq!(q.peek_batch(5, usize::MAX).unwrap().len(), 5);
    assert_eq!(q.peek_batch(usize::MAX, 120).unwrap().len(), 2);
    assert_eq!(q.peek_batch(usize::MAX, 10).unwrap().len(), 1);
    assert!(q.peek_batch(0, usize::MAX).unwrap().is_empty());
    // Peeking removes nothing.
    assert_eq!(q.len(), 40);

    q.ack_through(10).unwrap();
    assert_eq!(seqs(&mut q)[0], 11);
    assert_eq!(q.len(), 30);
    assert!(segment_files(dir.path()).len() < files.len(), "acknowledged segments are deleted");
    q.ack_through(5).unwrap();
    assert_eq!(q.len(), 30, "an older ack changes nothing");
    assert!(matches!(q.ack_through(41), Err(QueueError::AckAhead { seq: 41, last: 40 })));

    q.ack_through(40).unwrap();
    assert!(q.is_empty());
    assert!(all(&mut q).is_empty());
    assert_eq!(q.stats(), QueueStats::default());
}

#[test]
fn seq_continues_after_reopen_and_after_everything_was_acked() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(256, 1 << 20);
    let mut q = open_queue(dir.path(), lim).unwrap();
    fill(&mut q, 3, 20, 0);
    drop(q);

    let mut q = open_queue(dir.path(), lim).unwrap();
    assert_eq!(seqs(&mut q), [1, 2, 3]);
    let after_reopen = q.push(RecordClass::Event, 5, b"x").unwrap();
    assert!(after_reopen > 3);
    q.ack_through(after_reopen).unwrap();
    q.checkpoint().unwrap();
    drop(q);

    // Everything acknowledged, and even every segment gone.
    for f in segment_files(dir.path()) {
        fs::remove_file(f).unwrap();
    }
    let mut q = open_queue(dir.path(), lim).unwrap();
    assert!(q.is_empty());
    let next = q.push(RecordClass::Metric, 6, b"y").unwrap();
    assert!(next > after_reopen, "{next} must exceed {after_reopen}");
    drop(q);

    // Without a state file at all, the seqs on disk still bound the next one.
    fs::remove_file(dir.path().join("state")).unwrap();
    let mut q = open_queue(dir.path(), lim).unwrap();
    assert_eq!(seqs(&mut q), [next]);
    assert!(q.push(RecordClass::Metric, 7, b"z").unwrap() > next);
}

#[test]
fn acknowledgements_survive_restarts_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let mut q = open_queue(dir.path(), lim).unwrap();
    let pushed = fill(&mut q, 60, 40, 4);
    // Acks without a checkpoint: at most the unpersisted ones come back.
    for through in [3, 7, 30, 31] {
        q.ack_through(through).unwrap();
    }
    drop(q);
    let mut q = open_queue(dir.path(), lim).unwrap();
    let back = seqs(&mut q);
    let expected_tail: Vec<u64> = pushed.iter().copied().filter(|&s| s > 31).collect();
    assert!(back.ends_with(&expected_tail), "nothing unacknowledged is lost: {back:?}");
    assert!(back.len() <= 60);
    // With a checkpoint nothing acknowledged comes back.
    q.ack_through(45).unwrap();
    q.checkpoint().unwrap();
    drop(q);
    let mut q = open_queue(dir.path(), lim).unwrap();
    assert_eq!(seqs(&mut q), (46..=60).collect::<Vec<_>>());
}

/// Builds a queue whose newest metric segment ends with the last pushed
/// record; returns (seqs, file of the last segment, its length before the
/// last frame).
fn torn_fixture(dir: &Path, lim: QueueLimits) -> (Vec<u64>, PathBuf, u64) {
    let mut q = open_queue(dir, lim).unwrap();
    let seqs = fill(&mut q, 14, 60, 3);
    let last_class = all(&mut q).last().unwrap().class;
    assert_eq!(last_class, RecordClass::Metric);
    drop(q);
    let last = segment_files(dir).into_iter().rfind(|f| f.to_str().unwrap().contains("metric")).unwrap();
    let len = fs::metadata(&last).unwrap().len();
    (seqs, last, len - (60 + FRAME_OVERHEAD) as u64)
}

#[test]
fn torn_write_at_every_byte_of_the_last_record() {
    let pristine = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let (pushed, last_file, base) = torn_fixture(pristine.path(), lim);
    let frame = (60 + FRAME_OVERHEAD) as u64;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("q");
    for cut in 0..=frame {
        copy_dir(pristine.path(), &dir);
        let file = dir.join(last_file.file_name().unwrap());
        fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(base + cut).unwrap();

        let mut q = open_queue(&dir, lim).unwrap();
        let records = all(&mut q);
        let expected = if cut == frame { &pushed[..] } else { &pushed[..pushed.len() - 1] };
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "cut {cut}");
        assert_payloads(&records, 60);
        let stats = q.stats();
        assert_eq!(stats.torn_tails, u64::from(cut > 0 && cut < frame), "cut {cut}");
        assert_eq!(stats.corrupt, 0, "cut {cut}");
        let kept = if cut == frame { base + frame } else { base };
        assert_eq!(fs::metadata(&file).unwrap().len(), kept, "the torn part is cut off (cut {cut})");

        // The queue goes on, never reusing the lost record's seq.
        let seq = q.push(RecordClass::Metric, 9, &payload_for(q.next_seq(), 60)).unwrap();
        assert!(seq > *pushed.last().unwrap());
        drop(q);
        let mut q = open_queue(&dir, lim).unwrap();
        let again = seqs(&mut q);
        assert_eq!(again.last(), Some(&seq), "cut {cut}");
        assert_eq!(q.stats(), QueueStats::default(), "clean after the repair (cut {cut})");
    }
}

#[test]
fn torn_write_with_zeros_is_cut_off() {
    // ext4 may extend the file before the data reaches flash: zeros at the end.
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let (pushed, last_file, base) = torn_fixture(dir.path(), lim);
    let mut bytes = fs::read(&last_file).unwrap();
    bytes.truncate(usize::try_from(base).unwrap());
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&last_file, bytes).unwrap();
    let mut q = open_queue(dir.path(), lim).unwrap();
    assert_eq!(seqs(&mut q), pushed[..pushed.len() - 1]);
    assert_eq!(q.stats().torn_tails, 1);
    assert_eq!(fs::metadata(&last_file).unwrap().len(), base);
}

#[test]
fn flipped_byte_in_a_middle_record_loses_that_record_only() {
    let pristine = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let mut q = open_queue(pristine.path(), lim).unwrap();
    let pushed = fill(&mut q, 20, 100, 0);
    drop(q);
    // 126-byte frames, 4 per 512-byte segment: record 6 is the second frame
    // of the second segment; record 18 the second of the last segment.
    let frame = 100 + FRAME_OVERHEAD;
    let files = segment_files(pristine.path());
    assert_eq!(files.len(), 5);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("q");
    for (file_index, lost) in [(1usize, 6u64), (4, 18)] {
        for byte in 0..frame {
            copy_dir(pristine.path(), &dir);
            let path = dir.join(files[file_index].file_name().unwrap());
            let mut bytes = fs::read(&path).unwrap();
            bytes[frame + byte] ^= 0xFF;
            fs::write(&path, &bytes).unwrap();

            let mut q = open_queue(&dir, lim).unwrap();
            let records = all(&mut q);
            let expected: Vec<u64> = pushed.iter().copied().filter(|&s| s != lost).collect();
            assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "byte {byte} of {lost}");
            assert_payloads(&records, 100);
            assert_eq!(q.stats().corrupt, 1, "byte {byte} of {lost}");
            assert_eq!(q.stats().torn_tails, 0);
            let next = q.push(RecordClass::Event, 1, b"after").unwrap();
            assert!(next > 20);
        }
    }
}

#[test]
fn damage_found_while_running_is_skipped_at_peek() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open_queue(dir.path(), limits(4096, 1 << 20)).unwrap();
    fill(&mut q, 3, 30, 0);
    let file = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    bytes[(30 + FRAME_OVERHEAD) + 40] ^= 1;
    fs::write(&file, bytes).unwrap();
    assert_eq!(seqs(&mut q), [1, 3]);
    assert_eq!(q.stats().corrupt, 1);
    assert_eq!(q.len(), 2);
}

#[test]
fn foreign_and_garbage_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let mut q = open_queue(dir.path(), lim).unwrap();
    let pushed = fill(&mut q, 12, 40, 3);
    drop(q);
    let d = dir.path();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                u8::try_from(rng >> 56).unwrap()
            })
            .collect()
    };
    fs::write(d.join("notes.txt"), noise(3000)).unwrap();
    fs::write(d.join("seg-metric-abc.log"), noise(100)).unwrap();
    fs::write(d.join(".state.tmp"), noise(10)).unwrap();
    fs::create_dir(d.join("seg-event-000000090.log")).unwrap();
    // Bigger than any segment: not ours (sparse, costs no disk).
    let big = d.join("seg-metric-000000091.log");
    fs::File::create(&big).unwrap().set_len(3 << 20).unwrap();
    // A segment of a future format version.
    let future = d.join("seg-event-000000000.log");
    fs::write(&future, [&[0xD2][..], &noise(200)].concat()).unwrap();
    // Random bytes in place of a segment (metrics 2 … 11): damage, counted.
    let random = d.join("seg-metric-000000002.log");
    assert!(random.exists());
    fs::write(&random, noise(700)).unwrap();

    let mut q = open_queue(d, lim).unwrap();
    let records = all(&mut q);
    let expected: Vec<u64> = vec![1, 4, 7, 10, 12];
    assert_eq!(pushed.len(), 12);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
    assert_payloads(&records, 40);
    let stats = q.stats();
    assert_eq!(stats.ignored_files, 5, "{stats:?}");
    assert!(stats.corrupt >= 1, "{stats:?}");
    // Pushes still work; they go after the big file's id.
    let seq = q.push(RecordClass::Metric, 1, b"new").unwrap();
    assert!(seq > 12);
    assert!(d.join("seg-metric-000000092.log").exists());
    for kept in ["notes.txt", "seg-metric-abc.log", "seg-event-000000090.log"] {
        assert!(d.join(kept).exists(), "{kept} is left in place");
    }
    assert!(big.exists() && future.exists());
    drop(q);
    let mut q = open_queue(d, lim).unwrap();
    assert_eq!(seqs(&mut q).last(), Some(&seq));
}

#[test]
fn skipped_records_still_hold_their_seq() {
    // Found by the fuzzer: a metric frame inside an event segment is skipped,
    // but a new frame appended after it must still get a higher seq.
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let mut q = open_queue(dir.path(), lim).unwrap();
    q.push(RecordClass::Metric, 1, b"m").unwrap();
    drop(q);
    let d = dir.path();
    fs::rename(d.join("seg-metric-000000001.log"), d.join("seg-event-000000001.log")).unwrap();
    fs::remove_file(d.join("state")).unwrap();
    let mut q = open_queue(d, lim).unwrap();
    assert!(q.is_empty());
    assert_eq!(q.stats().corrupt, 1);
    let seq = q.push(RecordClass::Event, 2, b"e").unwrap();
    assert!(seq > 1);
    drop(q);
    let mut q = open_queue(d, lim).unwrap();
    assert_eq!(seqs(&mut q), [seq]);
}

#[test]
fn damaged_state_file_never_lets_seqs_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(512, 1 << 20);
    let mut q = open_queue(dir.path(), lim).unwrap();
    fill(&mut q, 5, 10, 0);
    drop(q);
    fs::write(dir.path().join("state"), b"garbage").unwrap();
    let mut q = open_queue(dir.path(), lim).unwrap();
    assert_eq!(seqs(&mut q), [1, 2, 3, 4, 5]);
    assert!(q.push(RecordClass::Metric, 1, b"n").unwrap() > 5);
}

#[test]
fn size_limit_drops_oldest_metrics_before_any_event() {
    use RecordClass::{Event as E, Metric as M};
    fn push(q: &mut Queue, class: RecordClass) -> Result<u64, QueueError> {
        q.push(class, 1, &[7; 50])
    }
    let dir = tempfile::tempdir().unwrap();
    // 76-byte frames, 3 per 256-byte segment; room for 13 frames.
    let mut q = open_queue(dir.path(), limits(256, 1024)).unwrap();
    for class in [E, M, M, M, M, E, M, M, M, M, M, M, M] {
        push(&mut q, class).unwrap();
    }
    assert_eq!(q.bytes(), 13 * 76);
    assert_eq!(q.stats().dropped_size, 0);
    // 14th frame: the oldest metric segment (2, 3, 4) goes, whole.
    assert_eq!(push(&mut q, M).unwrap(), 14);
    assert_eq!(seqs(&mut q), [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert_eq!(q.stats().dropped_size, 3);

    // Events keep coming: metrics go segment by segment, no event is touched.
    for _ in 15..=23 {
        push(&mut q, E).unwrap();
    }
    assert_eq!(seqs(&mut q), [1, 6, 15, 16, 17, 18, 19, 20, 21, 22, 23]);
    assert_eq!(q.stats().dropped_size, 12);

    // A metric still fits while there is room; it is the first to go.
    assert_eq!(push(&mut q, M).unwrap(), 24);
    push(&mut q, E).unwrap(); // 25
    push(&mut q, E).unwrap(); // 26: drops metric 24
    assert_eq!(q.stats().dropped_size, 13);
    // Only events left and no room: a metric is refused, no seq is used.
    assert!(matches!(push(&mut q, M), Err(QueueError::Full { .. })));
    assert_eq!(q.stats().rejected_full, 1);
    // An event now drops the oldest events (segment 1, 6, 15).
    assert_eq!(push(&mut q, E).unwrap(), 27);
    assert_eq!(seqs(&mut q), [16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27]);
    assert_eq!(q.stats().dropped_size, 16);
    assert!(q.bytes() <= 1024);
    drop(q);
    let mut q = open_queue(dir.path(), limits(256, 1024)).unwrap();
    assert_eq!(seqs(&mut q), [16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27]);
}

#[test]
fn acknowledged_space_is_reused_before_anything_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open_queue(dir.path(), limits(256, 1024)).unwrap();
    for _ in 0..3 {
        q.push(RecordClass::Metric, 1, &[1; 50]).unwrap();
    }
    // The metric segment is finished but stays: it is still the one appended to.
    q.ack_through(3).unwrap();
    assert_eq!(q.bytes(), 3 * 76);
    for _ in 0..11 {
        q.push(RecordClass::Event, 1, &[2; 50]).unwrap();
    }
    // The 11th event needed its space: the finished segment went, nothing was lost.
    assert_eq!(q.stats().dropped_size, 0);
    assert_eq!(seqs(&mut q), (4..=14).collect::<Vec<_>>());
    assert!(segment_files(dir.path()).iter().all(|f| !f.to_str().unwrap().contains("metric")));
}

#[test]
fn shrinking_the_limit_applies_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open_queue(dir.path(), limits(256, 1 << 20)).unwrap();
    for class in [RecordClass::Event, RecordClass::Metric, RecordClass::Metric, RecordClass::Metric] {
        q.push(class, 1, &[0; 200]).unwrap();
    }
    drop(q);
    // 226-byte frames, one per segment: only two segments fit now.
    let mut q = open_queue(dir.path(), limits(256, 512)).unwrap();
    assert_eq!(seqs(&mut q), [1, 4]);
    assert_eq!(q.stats().dropped_size, 2);
}

#[test]
fn age_limit_with_injected_time_and_unset_clock() {
    let dir = tempfile::tempdir().unwrap();
    let lim = QueueLimits {
        max_total_bytes: 1 << 20,
        max_age_ms: 1_000,
        segment_bytes: 256,
        clock_floor_unix_ms: 10_000,
    };
    let mut q = open_queue(dir.path(), lim).unwrap();
    let stamps = [
        (RecordClass::Metric, 5_000), // clock unset when made
        (RecordClass::Metric, 20_000),
        (RecordClass::Event, 20_500),
        (RecordClass::Metric, 21_000),
        (RecordClass::Event, 25_000),
    ];
    for (class, at) in stamps {
        q.push(class, at, &[3; 100]).unwrap();
    }
    // The device clock itself is unset: nothing is judged by age.
    q.enforce_limits(9_000).unwrap();
    assert_eq!(q.len(), 5);
    q.enforce_limits(21_600).unwrap();
    assert_eq!(seqs(&mut q), [1, 4, 5]);
    assert_eq!(q.stats().dropped_age, 2);
    // Expiry is recomputed from the stored timestamps after a restart.
    drop(q);
    let mut q = open_queue(dir.path(), lim).unwrap();
    q.enforce_limits(21_600).unwrap();
    assert_eq!(seqs(&mut q), [1, 4, 5]);
    // Far in the future only the record with an unknown time is left; the
    // finished segments are deleted.
    q.enforce_limits(1_000_000).unwrap();
    assert_eq!(seqs(&mut q), [1]);
    assert_eq!(q.stats().dropped_age, 4);
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open_queue(dir.path(), limits(256, 1024)).unwrap();
    assert_eq!(q.limits().max_payload(), 256 - FRAME_OVERHEAD);
    assert!(matches!(
        q.push(RecordClass::Event, 1, &[0; 231]),
        Err(QueueError::TooLarge { len: 231, max: 230 })
    ));
    assert_eq!(q.push(RecordClass::Event, 1, &[0; 230]).unwrap(), 1);
    assert!(matches!(Queue::open(dir.path(), limits(256, 1024)), Err(QueueError::Locked { .. })));
    drop(q);
    assert!(matches!(Queue::open(dir.path(), limits(64, 1024)), Err(QueueError::InvalidLimits(_))));
    assert!(open_queue(dir.path(), limits(256, 1024)).is_ok());
}

/// Random pushes, acks, peeks and restarts against a model.
#[test]
fn random_operations_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(300, 1 << 24);
    let mut q = open_queue(dir.path(), lim).unwrap();
    let mut model: BTreeMap<u64, (RecordClass, i64, Vec<u8>)> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut last_seq = 0;
    let mut acked = 0;
    for step in 0..3_000 {
        match next() % 100 {
            0..=59 => {
                let class = if next() % 4 == 0 { RecordClass::Event } else { RecordClass::Metric };
                let len = usize::try_from(next() % 200).unwrap();
                let at = i64::try_from(next() % 1_000_000).unwrap();
                let payload = payload_for(q.next_seq(), len);
                let seq = q.push(class, at, &payload).unwrap();
                assert!(seq > last_seq);
                last_seq = seq;
                model.insert(seq, (class, at, payload));
            }
            60..=79 => {
                if let Some(&first) = model.keys().next() {
                    let span = model.len() as u64;
                    let target =
                        model.keys().nth(usize::try_from(next() % span).unwrap()).copied().unwrap_or(first);
                    q.ack_through(target).unwrap();
                    acked = target;
                    model.retain(|&s, _| s > target);
                }
            }
            80..=94 => {
                let n = usize::try_from(next() % 20).unwrap() + 1;
                let got = q.peek_batch(n, usize::MAX).unwrap();
                let want: Vec<u64> = model.keys().take(n).copied().collect();
                assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), want, "step {step}");
            }
            _ => {
                // Half of the restarts are clean; after the others, already
                // acknowledged records come back until acknowledged again.
                if next() % 2 == 0 {
                    q.checkpoint().unwrap();
                    drop(q);
                    q = open_queue(dir.path(), lim).unwrap();
                } else {
                    drop(q);
                    q = open_queue(dir.path(), lim).unwrap();
                    assert!(q.len() >= model.len());
                    q.ack_through(acked).unwrap();
                }
            }
        }
        assert_eq!(q.len(), model.len(), "step {step}");
    }
    let got = all(&mut q);
    assert_eq!(got.len(), model.len());
    for r in got {
        let (class, at, payload) = &model[&r.seq];
        assert_eq!((&r.class, &r.at_unix_ms, &r.payload), (class, at, payload));
    }
    assert_eq!(q.stats(), QueueStats::default());
}

// ---------------------------------------------------------------------------
// Child processes: a pusher killed with SIGKILL, and the measurement.

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from)
}

fn spawn_child(role: &str, test: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, role)
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

const KILL_LIMITS: QueueLimits = QueueLimits {
    max_total_bytes: 64 << 20,
    max_age_ms: 7 * DAY_MS,
    segment_bytes: 1024,
    clock_floor_unix_ms: 0,
};

/// The child role: pushes forever, printing each seq once push returned,
/// and acknowledges now and then (printing the seq before acknowledging).
#[test]
fn child_pusher() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("pusher") {
        return;
    }
    let dir = child_dir().unwrap();
    let mut q = open_queue(&dir, KILL_LIMITS).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let class = if i % 7 == 0 { RecordClass::Event } else { RecordClass::Metric };
        let seq = q.next_seq();
        let pushed = q.push(class, 1, &payload_for(seq, 90)).unwrap();
        writeln!(out, "pushed {pushed}").unwrap();
        out.flush().unwrap();
        if i % 10 == 9 {
            // Announced before it happens: the kill may come right after.
            let through = pushed - 5;
            writeln!(out, "acking {through}").unwrap();
            out.flush().unwrap();
            q.ack_through(through).unwrap();
        }
    }
}

#[test]
fn sigkill_during_pushes_loses_nothing_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_pushed: Vec<u64> = Vec::new();
    let mut acked = 0;
    for round in 0..6u32 {
        let mut child = spawn_child("pusher", "child_pusher", dir.path());
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let target = 150 + 61 * round as usize;
        let mut round_pushed = Vec::new();
        let mut line = String::new();
        while round_pushed.len() < target {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("the child ended early: {err}");
            }
            if let Some(seq) = line.strip_prefix("pushed ") {
                round_pushed.push(seq.trim().parse::<u64>().unwrap());
            } else if let Some(seq) = line.strip_prefix("acking ") {
                acked = seq.trim().parse().unwrap();
            }
        }
        // Let it run a little further, then SIGKILL it mid-flight.
        std::thread::sleep(Duration::from_micros(300 * u64::from(round)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines printed before the kill are still in the pipe.
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        // Only complete lines: the kill may cut the last one.
        for line in rest.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')) {
            if let Some(seq) = line.strip_prefix("pushed ") {
                round_pushed.push(seq.parse::<u64>().unwrap());
            } else if let Some(seq) = line.strip_prefix("acking ") {
                acked = seq.parse().unwrap();
            }
        }
        // Seqs are never reused across the kills.
        assert!(round_pushed.windows(2).all(|w| w[0] < w[1]));
        if let (Some(prev), Some(first)) = (all_pushed.last(), round_pushed.first()) {
            assert!(first > prev, "round {round}: seq {first} after {prev}");
        }
        all_pushed.extend(&round_pushed);

        let mut q = open_queue(dir.path(), KILL_LIMITS).unwrap();
        let records = all(&mut q);
        let present: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert!(present.windows(2).all(|w| w[0] < w[1]), "round {round}: order");
        assert_payloads(&records, 90);
        for seq in all_pushed.iter().filter(|&&s| s > acked) {
            assert!(
                present.binary_search(seq).is_ok(),
                "round {round}: confirmed seq {seq} lost; acked {acked}; present {present:?}; \
                 pushed this round {round_pushed:?}"
            );
        }
        // Nothing but confirmed records, and at most the one in flight.
        let last = *all_pushed.last().unwrap();
        let unknown: Vec<u64> =
            present.iter().copied().filter(|s| all_pushed.binary_search(s).is_err()).collect();
        assert!(unknown.iter().all(|&s| s > last) && unknown.len() <= 1, "round {round}: {unknown:?}");
        assert_eq!(q.stats().corrupt, 0, "round {round}: {:?}", q.stats());
        eprintln!(
            "sigkill round {round}: {} pushes confirmed, killed after seq {last}; {} pending, torn tails {}",
            round_pushed.len(),
            present.len(),
            q.stats().torn_tails
        );
        if let Some(&in_flight) = unknown.first() {
            all_pushed.push(in_flight);
        }
    }
}

/// The child role: pushes 300-byte reports and reports what it wrote.
#[test]
fn child_measure() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("measure") {
        return;
    }
    let dir = child_dir().unwrap();
    let mut q = open_queue(&dir, QueueLimits { clock_floor_unix_ms: 0, ..QueueLimits::default() }).unwrap();
    let n: u64 = 1_000;
    let payload = [0x5a; 300];
    let io_before = proc_io();
    let start = Instant::now();
    for i in 0..n {
        let class = if i % 20 == 0 { RecordClass::Event } else { RecordClass::Metric };
        q.push(class, 1, &payload).unwrap();
    }
    let elapsed = start.elapsed();
    let io_after = proc_io();
    let per =
        |key: &str| (io_after.get(key).unwrap_or(&0) - io_before.get(key).unwrap_or(&0)) as f64 / n as f64;
    println!(
        "measure pushes={n} secs={:.3} pushes_per_s={:.0} logical_bytes_per_push={:.1} \
         page_bytes_per_push={:.1} syscalls_w_per_push={:.2} queue_bytes={}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        per("wchar"),
        per("write_bytes"),
        per("syscw"),
        q.bytes()
    );
    // Drain in batches of 50 like the uploader would.
    let io_before = proc_io();
    let start = Instant::now();
    loop {
        let batch = q.peek_batch(50, 64 << 10).unwrap();
        let Some(last) = batch.last() else { break };
        q.ack_through(last.seq).unwrap();
    }
    let elapsed = start.elapsed();
    let io_after = proc_io();
    println!(
        "measure drain batches={} secs={:.3} logical_bytes_written={} page_bytes_written={}",
        n.div_ceil(50),
        elapsed.as_secs_f64(),
        io_after["wchar"] - io_before["wchar"],
        io_after["write_bytes"] - io_before["write_bytes"],
    );
}

fn proc_io() -> BTreeMap<String, u64> {
    fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

#[test]
fn measure_fsynced_pushes_on_this_machine() {
    // On the disk of the build machine (tmpfs would hide the fsync cost).
    let base = std::env::var_os("CPE_QUEUE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let output = spawn_child("measure", "child_measure", dir.path()).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().filter_map(|l| l.find("measure ").map(|i| &l[i..])).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        eprintln!("queue {line}");
    }
}
