//! `cpe-provision serve`: the server's options, its TLS material and alert
//! settings read from files and arguments, and the run until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cpe_provision::alerts::{AlertSink, MailConfig, WebhookConfig};
use cpe_provision::console::{self, ConsoleConfig};
use cpe_provision::enrol::est::{self, EstClient, EstConfig};
use cpe_provision::enrol::test_ca::TestCaSigner;
use cpe_provision::enrol::Enroller;
use cpe_provision::expiry::{self, DEFAULT_ALERT_DAYS};
use cpe_provision::server::limits::{fit_to_file_limit, raise_open_file_limit, ConnectionLimits};
use cpe_provision::server::{self, ServeConfig};
use cpe_provision::CertificationBody;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::retention::RetentionArgs;
use super::support::{create_or_open_database, runtime, DEFAULT_DATABASE};

/// `cpe-provision serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Store: `sqlite:PATH` (default, zero set-up) or `postgres://user:pass@host/db`
    /// (several server processes may share one PostgreSQL).
    #[arg(long, env = "CPE_DATABASE", default_value = DEFAULT_DATABASE)]
    database: String,
    /// Server certificate chain (PEM), e.g. from `cpe-provision ca server-cert`.
    #[arg(long)]
    tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// CA certificate(s) (PEM) that device certificates must chain to; repeatable.
    #[arg(long, required = true)]
    client_ca: Vec<PathBuf>,
    /// Renewals through the certification body's EST service (RFC 7030): its
    /// base URL, e.g. https://est.body.example/.well-known/est. Without this
    /// or --enrol-test-ca renewals are refused.
    #[arg(long, value_name = "URL", requires_all = ["est_ca", "est_client_cert", "est_client_key"], conflicts_with = "enrol_test_ca")]
    enrol_est: Option<String>,
    /// CA certificate(s) (PEM) the EST server's certificate must chain to.
    #[arg(long, value_name = "PEM")]
    est_ca: Option<PathBuf>,
    /// The carrier's client certificate chain (PEM) for the EST server (its
    /// registration-authority credential from the body).
    #[arg(long, value_name = "PEM")]
    est_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --est-client-cert.
    #[arg(long, value_name = "PEM")]
    est_client_key: Option<PathBuf>,
    /// LABS AND DEMOS ONLY: sign renewal CSRs with this test CA directory
    /// (ca.pem + ca.key) held by the carrier. What it signs is not an
    /// institution certificate of the certification body.
    #[arg(long, value_name = "DIR", alias = "enrol-ca")]
    enrol_test_ca: Option<PathBuf>,
    /// Validity of certificates the test CA signs, days.
    #[arg(long, default_value_t = 825)]
    enrol_days: u32,
    /// Certificate-expiry alert thresholds, days left (comma-separated): one
    /// fleet summary a day lists the devices at each.
    #[arg(long, value_name = "DAYS", value_delimiter = ',', default_values_t = DEFAULT_ALERT_DAYS)]
    cert_alert_days: Vec<u32>,
    /// How often to look at certificate expiry, seconds (a summary goes out once a day).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    cert_check_every: u64,
    /// A device silent this many seconds is "down" (alert); back → "recovered".
    #[arg(long, default_value_t = 180)]
    silent_after: u64,
    /// How often to look for silent devices, seconds.
    #[arg(long, default_value_t = 10)]
    check_every: u64,
    /// Longest command long-poll, seconds.
    #[arg(long, default_value_t = 60)]
    long_poll_max: u64,
    /// A connection that has not finished its TLS handshake after this many seconds is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    handshake_timeout: u64,
    /// A connection with no request in flight for this many seconds is closed
    /// (a waiting long-poll is in flight).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Most connections at once; when reached, the oldest handshaking or idle
    /// one makes room. Lowered to fit the open-file limit (raised to its hard limit at start).
    #[arg(long, default_value_t = ConnectionLimits::default().max_total)]
    max_connections: usize,
    /// Most connections from one client address (routers behind one NAT share it).
    #[arg(long, default_value_t = ConnectionLimits::default().max_per_address)]
    max_connections_per_address: usize,
    /// Most connections of one device certificate; when reached, its oldest idle one makes room.
    #[arg(long, default_value_t = ConnectionLimits::default().max_per_device)]
    max_connections_per_device: usize,
    /// Requests per second one device may make, sustained, over all its
    /// connections; above it the server answers 429 (the agent backs off).
    #[arg(long, default_value_t = ConnectionLimits::default().device_requests_per_s,
          value_parser = clap::value_parser!(u32).range(1..))]
    device_request_rate: u32,
    /// Requests one device may make at once above --device-request-rate.
    #[arg(long, default_value_t = ConnectionLimits::default().device_request_burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    device_request_burst: u32,
    /// POST every alert as JSON to this URL.
    #[arg(long)]
    webhook: Option<String>,
    /// Extra CA (PEM) to trust for an https webhook.
    #[arg(long)]
    webhook_ca: Option<PathBuf>,
    /// Send alert mail through this SMTP relay (HOST:PORT).
    #[arg(long, requires = "mail_to")]
    smtp: Option<String>,
    /// Sender of alert mail.
    #[arg(long, default_value = "cpe-alerts@localhost")]
    mail_from: String,
    /// Recipient of alert mail; repeatable.
    #[arg(long)]
    mail_to: Vec<String>,
    /// Also serve the operator API (/api/v1/, sign-in with `cpe-provision
    /// operator add`) on this address, over TLS with the same server
    /// certificate; it asks for no client certificate.
    #[arg(long, value_name = "ADDR:PORT")]
    operator_listen: Option<SocketAddr>,
    /// Order-key directory for the API's steps that sign orders
    /// (recommend, stop, resume) and for audit verification.
    #[arg(long, env = "CPE_ORDER_KEYS", value_name = "DIR")]
    order_keys: Option<PathBuf>,
    /// Days an order signed through the API stays valid.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365))]
    order_valid_days: u32,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Minutes between retention runs (the first runs at start).
    #[arg(long, value_name = "MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    retention_every: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The enrolment backend the options name, if any.
fn enroller(args: &ServeArgs) -> Result<Option<Enroller>> {
    if let Some(dir) = &args.enrol_test_ca {
        let ca = CertificationBody::load(dir)?;
        return Ok(Some(Enroller::TestCa(Box::new(TestCaSigner::new(ca, args.enrol_days)))));
    }
    let Some(url) = &args.enrol_est else { return Ok(None) };
    let (Some(ca), Some(cert), Some(key)) = (&args.est_ca, &args.est_client_cert, &args.est_client_key)
    else {
        bail!("--enrol-est needs --est-ca, --est-client-cert and --est-client-key");
    };
    let client_key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let client = EstClient::new(EstConfig {
        base_url: url.clone(),
        server_roots: read_certs(ca)?,
        client_chain: read_certs(cert)?,
        client_key,
        timeout: est::DEFAULT_TIMEOUT,
    })?;
    Ok(Some(Enroller::Est(client)))
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(args: &ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    let tls_chain = read_certs(&args.tls_cert)?;
    let tls_key = PrivateKeyDer::from_pem_file(&args.tls_key)
        .with_context(|| format!("cannot read the private key {}", args.tls_key.display()))?;
    let mut client_cas = Vec::new();
    for path in &args.client_ca {
        client_cas.extend(read_certs(path)?);
    }
    let enroller = enroller(args)?;
    let mail = match &args.smtp {
        Some(relay) => {
            let (host, port) = relay.rsplit_once(':').context("--smtp takes HOST:PORT")?;
            let port = port.parse().context("--smtp port is not a number")?;
            let to = args
                .mail_to
                .iter()
                .map(|a| a.parse().with_context(|| format!("--mail-to {a:?} is not a mail address")))
                .collect::<Result<Vec<_>>>()?;
            let from = args.mail_from.parse().with_context(|| format!("--mail-from {:?}", args.mail_from))?;
            Some(MailConfig { host: host.to_owned(), port, from, to })
        }
        None => None,
    };
    let webhook = match &args.webhook {
        Some(url) => Some(WebhookConfig {
            url: url.clone(),
            ca_pem: args.webhook_ca.as_deref().map(std::fs::read).transpose().context("--webhook-ca")?,
        }),
        None => None,
    };
    let retention = args.retention.policy()?;
    let limits = connection_limits(args)?;
    let console = args.operator_listen.map(|addr| {
        let config = ConsoleConfig {
            tls_chain: tls_chain.clone(),
            tls_key: tls_key.clone_key(),
            order_keys: args.order_keys.clone(),
            order_valid_days: args.order_valid_days,
        };
        (addr, config)
    });
    let config = ServeConfig {
        tls_chain,
        tls_key,
        client_cas,
        silent_after: Duration::from_secs(args.silent_after),
        liveness_every: Duration::from_secs(args.check_every.max(1)),
        long_poll_max: Duration::from_secs(args.long_poll_max),
        enroller,
        cert_alert_days: expiry::alert_days(args.cert_alert_days.clone())
            .map_err(|e| anyhow::anyhow!("--cert-alert-days: {e}"))?,
        cert_check_every: Duration::from_secs(args.cert_check_every.max(1)),
        limits,
    };
    runtime()?.block_on(async {
        let db = create_or_open_database(&args.database).await?;
        let alerts = AlertSink::start(mail, webhook)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        // The first line on stdout: scripts and tests read the port from it.
        println!("listening on {local}");
        let renewals = config.enroller.as_ref().map_or_else(|| "refused".to_owned(), Enroller::describe);
        tracing::info!(%local, database = %args.database, %renewals, "carrier server started");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
            let _ = rx.changed().await;
        };
        let operator_api = match console {
            Some((addr, config)) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (--operator-listen)"))?;
                let local = listener.local_addr()?;
                println!("operator API listening on {local}");
                tracing::info!(%local, "operator API started");
                Some(tokio::spawn(console::run(listener, config, db.clone(), stopped(stop_rx.clone()))))
            }
            None => None,
        };
        tokio::spawn(cpe_provision::retention::run_periodically(
            db.clone(),
            retention,
            Duration::from_secs(args.retention_every.saturating_mul(60)),
            stopped(stop_rx.clone()),
        ));
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(());
        });
        server::run(listener, config, db, alerts, stopped(stop_rx)).await?;
        if let Some(task) = operator_api {
            task.await.context("the operator API task failed")??;
        }
        tracing::info!("carrier server stopped");
        Ok(())
    })
}

/// The connection limits from the options, the overall one fitted under the
/// open-file limit, which is raised to its hard limit first.
fn connection_limits(args: &ServeArgs) -> Result<ConnectionLimits> {
    if args.max_connections == 0
        || args.max_connections_per_address == 0
        || args.max_connections_per_device == 0
    {
        bail!("--max-connections, --max-connections-per-address and --max-connections-per-device must be above 0");
    }
    let mut max_total = args.max_connections;
    match raise_open_file_limit() {
        Ok(files) => {
            tracing::info!(soft = files.soft, hard = files.hard, "open-file limit");
            let (fitted, warning) = fit_to_file_limit(max_total, files);
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            max_total = fitted;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; --max-connections is used as given");
        }
    }
    Ok(ConnectionLimits {
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_total,
        max_per_address: args.max_connections_per_address,
        max_per_device: args.max_connections_per_device,
        device_requests_per_s: args.device_request_rate,
        device_request_burst: args.device_request_burst,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
