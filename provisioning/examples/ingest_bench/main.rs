//! Benchmarks of the carrier server. Phases (`--phase`, repeatable):
//!
//! - `ingest` (default): report ingest of the server over HTTPS with mutual
//!   TLS, next to a baseline of the same inserts straight through the
//!   storage API, both measured in the same run. The figure is the ratio.
//! - `handshakes`, `storm`, `peak`: the carrier under load, with
//!   `cpe-provision serve` in its own process (see `load.rs`).
//!
//! ```text
//! cargo build --profile carrier-bench -p cpe-provision --bin cpe-provision --example ingest_bench
//! target/carrier-bench/examples/ingest_bench \
//!     [--database sqlite:/tmp/bench.db | --database "$CPE_TEST_POSTGRES_URL"] \
//!     [--phase ingest] [--clients 32] [--reports 50000] [--batch 1] \
//!     [--phase handshakes --phase storm --phase peak] [--duration 600] [--rate 12500]
//! ```
//!
//! In the ingest phase, each of `--clients` simulated devices has its own institution certificate
//! and one keep-alive HTTPS connection, and posts `--batch` records per
//! request (heartbeats with three interfaces; every 20th record an event)
//! until `--reports` are stored in all. The baseline stores the identical
//! records, converted exactly as the server converts them
//! ([`cpe_provision::server::ingest_record`]), with the same concurrency.
//! Server and clients share this machine's cores, so the HTTPS figure is a
//! floor for a server with the machine to itself.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use cpe_protocol::{Event, Health, InterfaceStats, Level, Payload, Record, ReportBatch};
use cpe_provision::alerts::AlertSink;
use cpe_provision::clock::now_ms;
use cpe_provision::server::{self, ingest_record, ServeConfig};
use cpe_provision::store::{Database, DeviceSeen};
use cpe_provision::{CertificationBody, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod load;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Ingest,
    Handshakes,
    Storm,
    Peak,
}

#[derive(Parser, Debug)]
struct Args {
    /// What to measure; repeatable.
    #[arg(long, value_enum, default_values_t = [Phase::Ingest])]
    phase: Vec<Phase>,
    /// The server binary of the load phases; default: `cpe-provision` next to this example's directory.
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// Connections at once in the handshake and storm phases.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds each handshake measurement lasts.
    #[arg(long, default_value_t = 10)]
    handshake_seconds: u64,
    /// Device connections of the reconnect storm.
    #[arg(long, default_value_t = 250_000)]
    storm_devices: u64,
    /// Reports per second of the peak phase (3x the national peak by default).
    #[arg(long, default_value_t = 12_500)]
    rate: u64,
    /// Seconds the peak phase lasts (shorter for trial runs).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Keep-alive devices of the peak phase (each under the server's
    /// request rate of 10/s: 2,500 send 5/s each at 12,500/s).
    #[arg(long, default_value_t = 2500)]
    peak_devices: u64,
    /// Store; default: a new SQLite file in a temp directory.
    #[arg(long)]
    database: Option<String>,
    /// Concurrent devices (one connection each).
    #[arg(long, default_value_t = 32)]
    clients: u64,
    /// Reports in all, per phase.
    #[arg(long, default_value_t = 50_000)]
    reports: u64,
    /// Records per request.
    #[arg(long, default_value_t = 1)]
    batch: u64,
}

fn health(seq: u64) -> Health {
    let iface = |name: &str| InterfaceStats {
        name: name.into(),
        up: true,
        carrier: true,
        rx_bps: 1.0e6,
        tx_bps: 2.5e5,
        rx_bps_max: 4.0e6,
        tx_bps_max: 1.0e6,
        rx_bps_p95: 3.1e6,
        tx_bps_p95: 8.0e5,
        rx_pps: 900.0,
        tx_pps: 400.0,
        ..InterfaceStats::default()
    };
    Health {
        uptime_s: 86_400 + seq * 60,
        cpu_pct: 12.5,
        mem_pct: 40.0,
        load: [0.4, 0.3, 0.2],
        temperature_c: Some(48.5),
        interfaces: vec![iface("wan0"), iface("wan1"), iface("lan0")],
        active_uplink: Some("wan0".into()),
        cert_not_after: Some(1_900_000_000),
        agent_version: "0.1.0".into(),
    }
}

fn record(seq: u64) -> Record {
    let payload = if seq.is_multiple_of(20) {
        Payload::Event(Event::Threshold {
            metric: "cpu".into(),
            from: Level::Normal,
            to: Level::Normal,
            value: 10.0,
        })
    } else {
        Payload::Heartbeat(health(seq))
    };
    Record { seq, at_unix_ms: 1_800_000_000_000, payload }
}

/// Requests each client sends: `reports / clients / batch`, at least one.
fn per_client(args: &Args) -> u64 {
    (args.reports / args.clients / args.batch).max(1)
}

async fn baseline(db: &Database, args: &Args, run: i64) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let db = db.clone();
        let (batch, requests) = (args.batch, per_client(args));
        let code = format!("{:010}", 1_400_000_000 + c);
        let seen =
            DeviceSeen { id: format!("{code}/base-{run}"), institution_code: code, cert_not_after: None };
        tasks.push(tokio::spawn(async move {
            let mut stored = 0u64;
            for r in 0..requests {
                let records =
                    (r * batch + 1..=r * batch + batch).map(|s| ingest_record(&record(s))).collect();
                stored += u64::from(db.ingest(&seen, records, now_ms()).await?.accepted);
            }
            anyhow::Ok(stored)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??;
    }
    Ok((stored, start.elapsed()))
}

async fn https(db: Database, args: &Args, run: i64) -> anyhow::Result<(u64, Duration)> {
    let now = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let ca = CertificationBody::generate("Bench CA", Validity::new(now, 30)?)?;
    let server_cert = ca.issue_server(&["127.0.0.1".into()], &Validity::new(now, 10)?)?;
    let config = ServeConfig {
        tls_chain: CertificateDer::pem_slice_iter(server_cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()?,
        tls_key: PrivateKeyDer::from_pem_slice(server_cert.key_pem.as_bytes())?,
        client_cas: vec![CertificateDer::from(ca.ca_cert_der().to_vec())],
        silent_after: Duration::from_hours(1),
        liveness_every: Duration::from_mins(1),
        long_poll_max: Duration::from_secs(1),
        enroller: None,
        cert_alert_days: cpe_provision::expiry::DEFAULT_ALERT_DAYS.to_vec(),
        cert_check_every: Duration::from_hours(1),
        limits: server::limits::ConnectionLimits::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerts = AlertSink::start(None, None)?;
    let server = tokio::spawn(server::run(listener, config, db, alerts, async {
        let _ = stop_rx.await;
    }));
    let unit = format!("https-{run}");
    let clients = (0..args.clients)
        .map(|c| load::https_device(&ca, now, 1_500_000_000 + c, &unit))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = format!("https://{addr}/v1/reports");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (client, device) in clients {
        let url = url.clone();
        let (batch, requests) = (args.batch, per_client(args));
        tasks.push(tokio::spawn(async move {
            let mut stored = 0u64;
            for r in 0..requests {
                let records = (r * batch + 1..=r * batch + batch).map(record).collect();
                let body = cpe_protocol::encode(&ReportBatch { device: device.clone(), records });
                let resp = client.post(&url).body(body).send().await?;
                anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
                let ack: cpe_protocol::BatchAck = cpe_protocol::decode(&resp.bytes().await?)?;
                stored += u64::from(ack.accepted);
            }
            anyhow::Ok(stored)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??;
    }
    let elapsed = start.elapsed();
    let _ = stop_tx.send(());
    server.await??;
    Ok((stored, elapsed))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.clients > 0 && args.batch > 0 && args.reports > 0, "all counts must be positive");
    let temp = tempfile::tempdir()?;
    let url =
        args.database.clone().unwrap_or_else(|| format!("sqlite:{}", temp.path().join("bench.db").display()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let load_phases: Vec<Phase> = args.phase.iter().copied().filter(|p| *p != Phase::Ingest).collect();
    runtime.block_on(async {
        if !load_phases.is_empty() {
            anyhow::ensure!(args.concurrency > 0 && args.rate > 0 && args.peak_devices > 0, "counts must be positive");
            let binary = match &args.server_bin {
                Some(path) => path.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .and_then(std::path::Path::parent)
                    .context("no directory above this example")?
                    .join("cpe-provision"),
            };
            let pki = load::Pki::new()?;
            let server = load::Server::start(&binary, &pki, &url).await?;
            let run = now_ms() / 1000;
            let settings = load::LoadArgs {
                concurrency: args.concurrency,
                handshake_seconds: args.handshake_seconds,
                storm_devices: args.storm_devices,
                rate: args.rate,
                duration: args.duration,
                peak_devices: args.peak_devices,
            };
            println!("carrier under load: {} (server pid own process), database {}", binary.display(), url.split('@').next_back().unwrap_or(""));
            for phase in load_phases {
                match phase {
                    Phase::Handshakes => load::handshakes(&server, &pki, &settings, run).await?,
                    Phase::Storm => load::storm(&server, &pki, &settings, run).await?,
                    Phase::Peak => load::peak(&server, &pki, &settings, &url, run).await?,
                    Phase::Ingest => {}
                }
            }
            server.stop().await?;
        }
        if !args.phase.contains(&Phase::Ingest) {
            return Ok(());
        }
        let db = Database::open(&url).await.context("opening the database")?;
        let run = now_ms() / 1000;
        println!(
            "ingest benchmark: backend {}, {} clients, {} records per request, {} requests per client",
            db.backend(),
            args.clients,
            args.batch,
            per_client(&args)
        );
        let (base_n, base_t) = baseline(&db, &args, run).await?;
        let base_rate = base_n as f64 / base_t.as_secs_f64();
        println!(
            "baseline (Database::ingest, no HTTP/TLS): {base_n} reports in {:.2} s = {base_rate:.0} reports/s",
            base_t.as_secs_f64()
        );
        let (https_n, https_t) = https(db, &args, run).await?;
        let https_rate = https_n as f64 / https_t.as_secs_f64();
        println!(
            "HTTPS + mTLS + postcard, keep-alive:     {https_n} reports in {:.2} s = {https_rate:.0} reports/s",
            https_t.as_secs_f64()
        );
        println!("ratio HTTPS / baseline: {:.2}", https_rate / base_rate);
        println!(
            "national scale (250,000 devices every 60 s = 4,167 reports/s): {:.1}x that over HTTPS",
            https_rate / 4167.0
        );
        anyhow::ensure!(base_n == https_n, "phases stored different counts: {base_n} vs {https_n}");
        Ok(())
    })
}
