//! The carrier under load: `cpe-provision serve` as its own process (so its
//! RSS is its own), driven over loopback by simulated devices.
//!
//! - handshakes: full mutual-TLS handshakes per second (new TCP + TLS with a
//!   client certificate + one request each), against `openssl s_server
//!   -Verify` measured the same way in the same run; then the same with
//!   session resumption (tickets), as reconnecting devices do.
//! - storm: a reconnect storm of `--storm-devices` device connections (each
//!   TCP + TLS + one report), as fast as the server takes them.
//! - peak: `--rate` reports/s for `--duration` s on keep-alive connections,
//!   paced open-loop (latency from the scheduled send time); afterwards the
//!   stored rows are counted, the latency p99 and the server RSS printed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpe_common::institution::{device_id, InstitutionCode};
use cpe_protocol::{ReportBatch, CONTENT_TYPE};
use cpe_provision::{CertificationBody, IssueRequest, Validity};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::record;

/// Test PKI on disk: the CA, the server certificate for 127.0.0.1.
pub struct Pki {
    pub ca: CertificationBody,
    pub dir: tempfile::TempDir,
    now: time::OffsetDateTime,
}

impl Pki {
    pub fn new() -> anyhow::Result<Self> {
        let now = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let ca = CertificationBody::generate("Bench CA", Validity::new(now, 30)?)?;
        let server = ca.issue_server(&["127.0.0.1".into()], &Validity::new(now, 10)?)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), ca.ca_cert_pem())?;
        std::fs::write(dir.path().join("server.pem"), &server.chain_pem)?;
        std::fs::write(dir.path().join("server.key"), &server.key_pem)?;
        Ok(Self { ca, dir, now })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A device of institution `n` with unit `unit`: its id and TLS client
    /// configuration (resumption as asked).
    pub fn device(&self, n: u64, unit: &str, resume: bool) -> anyhow::Result<Device> {
        let code: InstitutionCode = format!("{:010}", 1_600_000_000 + n).parse()?;
        let mut request = IssueRequest::new(code.clone(), Validity::new(self.now, 10)?);
        request.device_id = Some(unit.into());
        let issued = self.ca.issue(&request)?;
        let chain =
            CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.ca_cert_der().to_vec()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        tls.resumption = if resume { Resumption::in_memory_sessions(4) } else { Resumption::disabled() };
        Ok(Device {
            id: device_id(&code, Some(unit)),
            connector: TlsConnector::from(Arc::new(tls)),
            seq: Arc::new(AtomicU64::new(1)),
        })
    }
}

/// One simulated device.
#[derive(Clone)]
pub struct Device {
    pub id: String,
    connector: TlsConnector,
    seq: Arc<AtomicU64>,
}

/// What one connection did.
struct Outcome {
    ok: bool,
    resumed: bool,
}

impl Device {
    /// New TCP + TLS connection, one request, close. `report`: POST one
    /// report (else GET `path`).
    async fn connect_once(&self, addr: std::net::SocketAddr, request: &[u8]) -> anyhow::Result<Outcome> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = self.connector.connect(name, tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        tls.write_all(request).await?;
        let mut answer = Vec::with_capacity(4096);
        // `openssl s_server -www` closes without close_notify: what was read counts.
        let _ = tls.read_to_end(&mut answer).await;
        let ok = answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200");
        Ok(Outcome { ok, resumed })
    }

    fn report_request(&self) -> Vec<u8> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let body = cpe_protocol::encode(&ReportBatch { device: self.id.clone(), records: vec![record(seq)] });
        let mut request = format!(
            "POST /v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {CONTENT_TYPE}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    }
}

const PING: &[u8] = b"GET /v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// Latencies in microseconds, summarised.
fn percentiles(mut micros: Vec<u64>) -> String {
    if micros.is_empty() {
        return "no samples".into();
    }
    micros.sort_unstable();
    let at = |p: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((micros.len() - 1) as f64 * p).round() as usize;
        micros[i] as f64 / 1000.0
    };
    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", at(0.5), at(0.99), at(1.0))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The server process and its address.
pub struct Server {
    child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Starts `cpe-provision serve` on a free loopback port.
    pub async fn start(binary: &Path, pki: &Pki, database: &str) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .arg("--tls-cert")
            .arg(pki.path("server.pem"))
            .arg("--tls-key")
            .arg(pki.path("server.key"))
            .arg("--client-ca")
            .arg(pki.path("ca.pem"))
            .args(["--silent-after", "86400", "--check-every", "3600"])
            // Room for the simulated devices, which all share 127.0.0.1.
            .args(["--max-connections-per-address", "8192", "--max-connections", "8192"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        tokio::time::timeout(
            Duration::from_mins(1),
            tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
        )
        .await
        .context("the server did not say where it listens")??;
        let addr = line.trim().strip_prefix("listening on ").context("unexpected first line")?.parse()?;
        Ok(Self { child, addr })
    }

    /// The server's resident set: (now, peak) in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let pid = self.child.id().context("server exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        }
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await??;
        anyhow::ensure!(status.success(), "the server exited with {status}");
        Ok(())
    }
}

/// `openssl s_server` with client verification, for the reference figure.
struct OpensslServer {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl OpensslServer {
    async fn start(pki: &Pki) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = tokio::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-Verify", "1", "-accept"])
            .arg(addr.to_string())
            .arg("-cert")
            .arg(pki.path("server.pem"))
            .arg("-key")
            .arg(pki.path("server.key"))
            .arg("-CAfile")
            .arg(pki.path("ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting openssl s_server (scripts/setup.sh installs openssl)")?;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(Self { child, addr });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("openssl s_server did not start listening on {addr}")
    }
}

/// Connections per second over `duration` with `concurrency` at once, each
/// device a new connection per request; (rate, resumed share, failures).
async fn connection_rate(
    devices: &[Device],
    addr: std::net::SocketAddr,
    request: Option<&'static [u8]>,
    concurrency: usize,
    until: Until,
) -> anyhow::Result<RateFigures> {
    let started = Instant::now();
    let remaining = Arc::new(AtomicU64::new(match until {
        Until::Connections(n) => n,
        Until::Elapsed(_) => u64::MAX,
    }));
    let deadline = match until {
        Until::Elapsed(d) => Some(started + d),
        Until::Connections(_) => None,
    };
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let devices: Vec<Device> = devices.iter().skip(w).step_by(concurrency).cloned().collect();
        let remaining = remaining.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut resumed, mut failed, mut lat) = (0u64, 0u64, 0u64, Vec::new());
            for device in devices.iter().cycle() {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                let req = request.map_or_else(|| device.report_request(), <[u8]>::to_vec);
                let at = Instant::now();
                match device.connect_once(addr, &req).await {
                    Ok(o) if o.ok => {
                        ok += 1;
                        resumed += u64::from(o.resumed);
                        lat.push(micros(at.elapsed()));
                    }
                    _ => failed += 1,
                }
            }
            (ok, resumed, failed, lat)
        }));
    }
    let mut figures = RateFigures::default();
    let mut latencies = Vec::new();
    for t in tasks {
        let (ok, resumed, failed, lat) = t.await?;
        figures.ok += ok;
        figures.resumed += resumed;
        figures.failed += failed;
        latencies.extend(lat);
    }
    figures.elapsed = started.elapsed();
    figures.latency = percentiles(latencies);
    Ok(figures)
}

#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Connections(u64),
}

#[derive(Default)]
struct RateFigures {
    ok: u64,
    resumed: u64,
    failed: u64,
    elapsed: Duration,
    latency: String,
}

impl RateFigures {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for RateFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s ({} in {:.1} s, {} resumed, {} failed; {})",
            self.per_second(),
            self.ok,
            self.elapsed.as_secs_f64(),
            self.resumed,
            self.failed,
            self.latency
        )
    }
}

/// Settings of the load phases.
pub struct LoadArgs {
    pub concurrency: usize,
    pub handshake_seconds: u64,
    pub storm_devices: u64,
    pub rate: u64,
    pub duration: u64,
    pub peak_devices: u64,
}

/// Handshakes per second: ours (full, then resumed) against openssl's.
pub async fn handshakes(server: &Server, pki: &Pki, args: &LoadArgs, run: i64) -> anyhow::Result<()> {
    let unit = format!("hs-{run}");
    // Enough devices that none goes over the server's request rate.
    let full: Vec<Device> = (0..1024).map(|n| pki.device(n, &unit, false)).collect::<Result<_, _>>()?;
    let resuming: Vec<Device> = (0..1024).map(|n| pki.device(n, &unit, true)).collect::<Result<_, _>>()?;
    let window = Until::Elapsed(Duration::from_secs(args.handshake_seconds));
    let reference = OpensslServer::start(pki).await?;
    let openssl =
        connection_rate(&full, reference.addr, Some(b"GET / HTTP/1.0\r\n\r\n"), args.concurrency, window)
            .await?;
    drop(reference.child);
    let ours = connection_rate(&full, server.addr, Some(PING), args.concurrency, window).await?;
    let resumed = connection_rate(&resuming, server.addr, Some(PING), args.concurrency, window).await?;
    println!("full mTLS handshakes (new TCP + TLS + one request), {} at once:", args.concurrency);
    println!("  openssl s_server -Verify (reference): {openssl}");
    println!("  cpe-provision serve:                  {ours}");
    println!("  ratio cpe-provision / openssl: {:.2}", ours.per_second() / openssl.per_second());
    println!("resumed (session tickets), cpe-provision serve: {resumed}");
    println!("  ratio resumed / full: {:.2}", resumed.per_second() / ours.per_second());
    anyhow::ensure!(ours.failed == 0 && resumed.failed == 0, "connections to the carrier server failed");
    Ok(())
}

/// A reconnect storm: every device reconnects once and reports.
pub async fn storm(server: &Server, pki: &Pki, args: &LoadArgs, run: i64) -> anyhow::Result<()> {
    let unit = format!("storm-{run}");
    // One certificate stands for many devices (issuing 250,000 would take
    // longer than the storm; 4,096 keep each under the server's request
    // rate); each has its own ticket cache.
    let devices: Vec<Device> = (0..4096).map(|n| pki.device(n, &unit, true)).collect::<Result<_, _>>()?;
    let storm = connection_rate(
        &devices,
        server.addr,
        None,
        args.concurrency,
        Until::Connections(args.storm_devices),
    )
    .await?;
    println!(
        "reconnect storm, {} device connections (TCP + TLS + one report each): {storm}",
        args.storm_devices
    );
    println!("  250,000 devices reconnect within {:.0} s at this rate", 250_000.0 / storm.per_second());
    let (rss, peak) = server.rss_mib()?;
    println!("  server RSS {rss:.1} MiB (peak {peak:.1} MiB)");
    anyhow::ensure!(storm.failed == 0, "{} storm connections failed", storm.failed);
    Ok(())
}

/// `--rate` reports/s for `--duration` s, keep-alive, one report each.
pub async fn peak(
    server: &Server,
    pki: &Pki,
    args: &LoadArgs,
    database: &str,
    run: i64,
) -> anyhow::Result<()> {
    let unit = format!("peak-{run}");
    let url = format!("https://{}/v1/reports", server.addr);
    let period = Duration::from_secs_f64(args.peak_devices as f64 / args.rate as f64);
    let duration = Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    let mut devices = Vec::new();
    for n in 0..args.peak_devices {
        devices.push(https_device(&pki.ca, pki.now, 1_700_000_000 + n, &unit)?);
    }
    // All certificates issued and clients built: the schedule starts now.
    let started = Instant::now() + Duration::from_secs(1);
    for (n, (client, device)) in devices.into_iter().enumerate() {
        let url = url.clone();
        // Spread the devices over one period.
        let offset = period.mul_f64(n as f64 / args.peak_devices as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((started + offset).into(), period);
            let (mut sent, mut acked, mut failed, mut lat) = (0u64, 0u64, 0u64, (Vec::new(), Vec::new()));
            let mut seq = 0;
            let end = started + duration;
            loop {
                let scheduled = tick.tick().await;
                // A server behind its schedule does not stretch the window:
                // what was not sent by the end is "not sent", not queued.
                if scheduled.into_std() >= end || Instant::now() >= end {
                    break;
                }
                seq += 1;
                sent += 1;
                let body =
                    cpe_protocol::encode(&ReportBatch { device: device.clone(), records: vec![record(seq)] });
                let sent_at = Instant::now();
                let answer = async {
                    let resp = client.post(&url).body(body).send().await?;
                    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
                    let ack: cpe_protocol::BatchAck = cpe_protocol::decode(&resp.bytes().await?)?;
                    anyhow::Ok(u64::from(ack.accepted))
                };
                match answer.await {
                    Ok(n) => {
                        acked += n;
                        lat.0.push(micros(scheduled.elapsed()));
                        lat.1.push(micros(sent_at.elapsed()));
                    }
                    Err(_) => failed += 1,
                }
            }
            (sent, acked, failed, lat)
        }));
    }
    let (mut sent, mut acked, mut failed, mut from_schedule, mut service) = (0, 0, 0, Vec::new(), Vec::new());
    for t in tasks {
        let (task_sent, task_acked, task_failed, (task_from_schedule, task_service)) = t.await?;
        sent += task_sent;
        acked += task_acked;
        failed += task_failed;
        from_schedule.extend(task_from_schedule);
        service.extend(task_service);
    }
    let elapsed = started.elapsed();
    let (rss, hwm) = server.rss_mib()?;
    let rows = count_rows(database, &format!("%/{unit}")).await?;
    println!(
        "peak: {} reports/s asked for {} s ({} reports) from {} keep-alive devices: {sent} sent, \
         {acked} acknowledged, {failed} failed, achieved {:.0} reports/s",
        args.rate,
        args.duration,
        args.rate * args.duration,
        args.peak_devices,
        acked as f64 / elapsed.as_secs_f64()
    );
    println!("  rows stored {rows}, lost {}", sent.saturating_sub(rows));
    println!("  latency from the scheduled send (open loop): {}", percentiles(from_schedule));
    println!("  latency from the actual send (request to answer): {}", percentiles(service));
    println!("  server RSS {rss:.1} MiB at the end, peak {hwm:.1} MiB");
    anyhow::ensure!(rows == sent && failed == 0, "reports lost: {sent} sent, {rows} stored, {failed} failed");
    Ok(())
}

/// A keep-alive HTTPS client (one connection) of the device of institution
/// `code` with `unit`, trusting `ca`'s server certificates; and its device id.
pub fn https_device(
    ca: &CertificationBody,
    not_before: time::OffsetDateTime,
    code: u64,
    unit: &str,
) -> anyhow::Result<(reqwest::Client, String)> {
    let code: InstitutionCode = format!("{code:010}").parse()?;
    let mut request = IssueRequest::new(code.clone(), Validity::new(not_before, 10)?);
    request.device_id = Some(unit.into());
    let issued = ca.issue(&request)?;
    let identity = reqwest::Identity::from_pem(format!("{}{}", issued.chain_pem, issued.key_pem).as_bytes())?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(ca.ca_cert_der())?)
        .identity(identity)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok((client, device_id(&code, Some(unit))))
}

/// Rows in `reports` whose device id is `LIKE pattern`, straight from the store.
async fn count_rows(database: &str, pattern: &str) -> anyhow::Result<u64> {
    if let Some(path) = database.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path)?;
        let n: i64 =
            conn.query_row("SELECT count(*) FROM reports WHERE device_id LIKE ?1", [pattern], |r| r.get(0))?;
        return Ok(u64::try_from(n)?);
    }
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT count(*) FROM reports WHERE device_id LIKE $1", &[&pattern]).await?;
    drop(client);
    task.abort();
    Ok(u64::try_from(row.get::<_, i64>(0))?)
}
