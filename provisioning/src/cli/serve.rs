//! `cpe-provision serve`: the server's options, its TLS material and alert
//! settings read from files and arguments, and the run until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cpe_provision::alerts::{AlertSink, MailConfig, WebhookConfig};
use cpe_provision::console::{self, ConsoleConfig};
use cpe_provision::server::{self, ServeConfig};
use cpe_provision::CertificationBody;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::support::{open_database, runtime, DEFAULT_DATABASE};

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
    /// CA directory (ca.pem + ca.key) that signs renewal CSRs; without it renewals are refused.
    #[arg(long)]
    enrol_ca: Option<PathBuf>,
    /// Validity of renewed certificates, days.
    #[arg(long, default_value_t = 825)]
    enrol_days: u32,
    /// A device silent this many seconds is "down" (alert); back → "recovered".
    #[arg(long, default_value_t = 180)]
    silent_after: u64,
    /// How often to look for silent devices, seconds.
    #[arg(long, default_value_t = 10)]
    check_every: u64,
    /// Longest command long-poll, seconds.
    #[arg(long, default_value_t = 60)]
    long_poll_max: u64,
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
    let enrol_ca = args.enrol_ca.as_deref().map(CertificationBody::load).transpose()?;
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
        enrol_ca,
        enrol_days: args.enrol_days,
    };
    runtime()?.block_on(async {
        let db = open_database(&args.database).await?;
        let alerts = AlertSink::start(mail, webhook)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        // The first line on stdout: scripts and tests read the port from it.
        println!("listening on {local}");
        tracing::info!(%local, database = %args.database, "carrier server started");
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
