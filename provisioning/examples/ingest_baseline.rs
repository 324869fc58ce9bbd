//! Baseline ingest throughput straight through the storage API: no HTTP, no
//! TLS, no decoding. The HTTPS benchmark of `cpe-provision serve` is compared
//! with this.
//!
//! ```text
//! cargo run --release -p cpe-provision --example ingest_baseline -- \
//!     --database sqlite:/tmp/bench.db --devices 200 --reports 100000 --concurrency 32 [--batch 1]
//! cargo run --release -p cpe-provision --example ingest_baseline -- \
//!     --database "$CPE_TEST_POSTGRES_URL" --devices 200 --reports 100000 --concurrency 32
//! ```
//!
//! `--concurrency` tasks call `Database::ingest` in a loop, each call carrying
//! `--batch` records of one device (devices taken in turn, sequence numbers
//! increasing per device), like agents posting their reports. Records are
//! the real thing: a postcard-encoded heartbeat (every 20th an event), its
//! JSON summary and, for heartbeats, the health JSON. Device ids carry the
//! start time, so runs against the same database do not collide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use cpe_protocol::{Event, Health, InterfaceStats, Level, Payload, Record};
use cpe_provision::db::{Database, DbOptions, DeviceSeen, IngestRecord, ReportKind};

/// Ingest baseline through the Database API.
#[derive(Parser, Debug)]
struct Args {
    /// sqlite:PATH, a path, or postgres://USER:PASSWORD@HOST:PORT/DB.
    #[arg(long)]
    database: String,
    /// Distinct devices.
    #[arg(long, default_value_t = 200)]
    devices: u64,
    /// Reports to store in all.
    #[arg(long, default_value_t = 100_000)]
    reports: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Records per ingest call.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// PostgreSQL: group-committing ingest writers (connections).
    #[arg(long, default_value_t = DbOptions::default().pg_writers)]
    pg_writers: usize,
}

fn health(d: u64, seq: u64) -> Health {
    let f = |x: u64| f32::from(u16::try_from(x % 1000).unwrap_or_default()) / 10.0;
    let iface = |name: &str, k: u64| InterfaceStats {
        name: name.into(),
        up: true,
        carrier: true,
        rx_bps: 1.0e6 + f64::from(u32::try_from(k * 977 % 10_000).unwrap_or_default()),
        tx_bps: 2.5e5 + f64::from(u32::try_from(k * 131 % 10_000).unwrap_or_default()),
        rx_bps_max: 4.0e6,
        tx_bps_max: 1.0e6,
        rx_bps_p95: 3.1e6,
        tx_bps_p95: 8.0e5,
        rx_pps: 900.0,
        tx_pps: 400.0,
        rx_errors: 0,
        tx_errors: 0,
        rx_drops: k % 3,
        tx_drops: 0,
    };
    Health {
        uptime_s: 86_400 + seq * 60,
        cpu_pct: f(d * 7 + seq),
        mem_pct: f(d * 13 + seq * 3),
        load: [0.4, 0.3, 0.2],
        temperature_c: Some(48.5),
        interfaces: vec![iface("wan0", seq), iface("wan1", seq + 1), iface("lan0", seq + 2)],
        active_uplink: Some("wan0".into()),
        cert_not_after: Some(1_900_000_000),
        agent_version: "0.1.0".into(),
    }
}

fn make_record(d: u64, seq: u64, at_ms: i64) -> IngestRecord {
    if seq.is_multiple_of(20) {
        let event =
            Event::Threshold { metric: "cpu".into(), from: Level::Normal, to: Level::Caution, value: 81.5 };
        let summary = serde_json::json!({"event": "threshold", "metric": "cpu", "from": "normal", "to": "caution", "value": 81.5});
        let body = cpe_protocol::encode(&Record { seq, at_unix_ms: at_ms, payload: Payload::Event(event) });
        return IngestRecord {
            seq,
            at_unix_ms: at_ms,
            kind: ReportKind::Event,
            body,
            summary_json: summary.to_string(),
            health_json: None,
        };
    }
    let h = health(d, seq);
    let summary = serde_json::json!({
        "cpu_pct": h.cpu_pct, "mem_pct": h.mem_pct, "load1": h.load[0], "temperature_c": h.temperature_c,
        "uplink": h.active_uplink, "rx_bps": h.interfaces[0].rx_bps, "tx_bps": h.interfaces[0].tx_bps,
    });
    let health_json = serde_json::to_string(&h).unwrap_or_default();
    let body = cpe_protocol::encode(&Record { seq, at_unix_ms: at_ms, payload: Payload::Heartbeat(h) });
    IngestRecord {
        seq,
        at_unix_ms: at_ms,
        kind: ReportKind::Heartbeat,
        body,
        summary_json: summary.to_string(),
        health_json: Some(health_json),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// CPU seconds (user + system) used so far by this process's threads, by
/// thread name (Linux `/proc`; empty elsewhere).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15 (clock ticks).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
        let name = comm.trim().to_owned();
        let name = if name.starts_with("tokio-rt") { "tokio workers".to_owned() } else { name };
        *out.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.devices > 0 && args.batch > 0 && args.concurrency > 0,
        "all counts must be positive"
    );
    let options = DbOptions { pg_writers: args.pg_writers, ..DbOptions::default() };
    let db = Database::open_with(&args.database, options).await.context("opening the database")?;
    let run = now_ms() / 1000;
    let devices: Arc<Vec<DeviceSeen>> = Arc::new(
        (0..args.devices)
            .map(|d| {
                let code = format!("{:010}", 1_300_000_000 + d);
                DeviceSeen {
                    id: format!("{code}/bench-{run}-{d:04}"),
                    institution_code: code,
                    cert_not_after: Some(1_900_000_000),
                }
            })
            .collect(),
    );
    let seqs: Arc<Vec<AtomicU64>> = Arc::new((0..args.devices).map(|_| AtomicU64::new(1)).collect());
    let calls = args.reports.div_ceil(args.batch);
    let next_call = Arc::new(AtomicU64::new(0));
    println!(
        "ingest baseline: backend {}, {} devices, {} reports in {calls} calls of {} record(s), concurrency {}",
        db.backend(),
        args.devices,
        args.reports,
        args.batch,
        args.concurrency
    );

    let cpu_before = cpu_by_thread();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (db, devices, seqs, next_call) = (db.clone(), devices.clone(), seqs.clone(), next_call.clone());
        let (batch, total) = (args.batch, args.reports);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut accepted, mut duplicates) = (0u64, 0u64);
            loop {
                let k = next_call.fetch_add(1, Ordering::Relaxed);
                let first = k * batch;
                if first >= total {
                    break;
                }
                let n = batch.min(total - first);
                let d = k % devices.len() as u64;
                let idx = usize::try_from(d).unwrap_or_default();
                let first_seq = seqs[idx].fetch_add(n, Ordering::Relaxed);
                let now = now_ms();
                let records = (first_seq..first_seq + n).map(|s| make_record(d, s, now - 50)).collect();
                let t = Instant::now();
                let out = db.ingest(&devices[idx], records, now).await?;
                latencies.push(t.elapsed());
                accepted += u64::from(out.accepted);
                duplicates += u64::from(out.duplicates);
            }
            anyhow::Ok((accepted, duplicates, latencies))
        }));
    }
    let (mut accepted, mut duplicates, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (a, d, l) = t.await??;
        accepted += a;
        duplicates += d;
        latencies.extend(l);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let per_s = |n: u64| n as f64 / elapsed.as_secs_f64();
    println!(
        "stored {accepted} reports (duplicates {duplicates}) in {:.3} s: {:.0} reports/s, {:.0} calls/s",
        elapsed.as_secs_f64(),
        per_s(accepted),
        per_s(calls)
    );
    println!(
        "call latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let cpu_after = cpu_by_thread();
    let mut cpu = Vec::new();
    for (name, after) in &cpu_after {
        let used = after - cpu_before.get(name).copied().unwrap_or(0.0);
        if used > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let us_per_report = used * 1e6 / accepted.max(1) as f64;
            cpu.push(format!("{name} {used:.2} s ({us_per_report:.1} us/report)"));
        }
    }
    println!("CPU: {}", cpu.join(", "));
    let t = Instant::now();
    let listed = db.devices().await?.len();
    println!("devices(): {listed} rows in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    anyhow::ensure!(accepted == args.reports, "expected {} stored reports, got {accepted}", args.reports);
    Ok(())
}
