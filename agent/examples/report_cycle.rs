//! Benchmark: the agent's CPU time per report cycle on this machine.
//!
//! One cycle is what `cpe-agent run` does every interval: read /proc and
//! /sys, aggregate, check thresholds, encode the heartbeat and push it to
//! the on-disk queue (fsync), then peek and acknowledge it as the sender
//! does after delivery. Network time is not included (that is the server
//! benchmark's subject). Prints CPU time (user + system, from
//! /proc/self/stat) and wall time per cycle.
//!
//! ```text
//! cargo run --release -p cpe-agent --example report_cycle -- 2000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use cpe_agent::metrics::source::{MetricSource, ProcSource, SystemPaths};
use cpe_agent::metrics::Aggregator;
use cpe_agent::queue::{Queue, QueueLimits, RecordClass};
use cpe_agent::thresholds::{ThresholdSet, ThresholdsConfig};
use cpe_protocol::Payload;

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn main() {
    let cycles: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = Queue::open(&dir.path().join("queue"), QueueLimits::default()).unwrap();
    let mut source = ProcSource::new(SystemPaths::default());
    let mut thresholds = ThresholdSet::new(&ThresholdsConfig::default());
    let mut aggregator = Aggregator::new();
    let started = Instant::now();
    aggregator.add(source.sample().unwrap(), started.elapsed());

    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut bytes = 0usize;
    for _ in 0..cycles {
        let at = started.elapsed();
        aggregator.add(source.sample().unwrap(), at);
        let health = aggregator.finish();
        let events = thresholds.observe(&health, at);
        let payload = postcard::to_stdvec(&Payload::Heartbeat(health)).unwrap();
        bytes += payload.len();
        queue.push(RecordClass::Metric, 1_800_000_000_000, &payload).unwrap();
        for event in events {
            queue
                .push(
                    RecordClass::Event,
                    1_800_000_000_000,
                    &postcard::to_stdvec(&Payload::Event(event)).unwrap(),
                )
                .unwrap();
        }
        let batch = queue.peek_batch(200, 512 * 1024).unwrap();
        if let Some(last) = batch.last() {
            queue.ack_through(last.seq).unwrap();
        }
    }
    let (cpu, wall) = (cpu_time().saturating_sub(cpu0), wall0.elapsed());
    println!("report cycles:            {cycles}");
    println!("heartbeat size:           {} bytes (postcard)", bytes / cycles as usize);
    println!(
        "CPU time per cycle:       {:.3} ms (user+system, 10 ms tick resolution over the run)",
        cpu.as_secs_f64() * 1000.0 / f64::from(cycles)
    );
    println!(
        "wall time per cycle:      {:.3} ms (includes the queue's fsync)",
        wall.as_secs_f64() * 1000.0 / f64::from(cycles)
    );
    println!("CPU share at 60 s interval: {:.5} %", cpu.as_secs_f64() / f64::from(cycles) / 60.0 * 100.0);
}
