//! The operator commands of `cpe-provision`: `serve`, `ca server-cert`,
//! `devices`, `device show`, `alerts`, `command`. Parsing and printing only;
//! the work is in the library ([`cpe_provision::server`],
//! [`cpe_provision::db`], [`cpe_provision::operator`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cpe_provision::alerts::{AlertSink, MailConfig, WebhookConfig};
use cpe_provision::db::Database;
use cpe_provision::server::{self, ServeConfig};
use cpe_provision::{operator, CertificationBody, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// Marks an error after which a command could not run at all (the store
/// cannot be opened): exit status 2 instead of 1.
#[derive(Debug)]
pub struct CouldNotRun(pub String);

impl std::fmt::Display for CouldNotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Opens the store named by a `--database` argument; failure is [`CouldNotRun`].
pub async fn open_database(url: &str) -> Result<Database> {
    Database::open(url).await.with_context(|| {
        CouldNotRun(format!("cannot open the database {}", cpe_provision::db::redact_url(url)))
    })
}

/// Default store: an SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite:carrier.db";

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

/// `cpe-provision ca server-cert`.
#[derive(Debug, Args)]
pub struct ServerCertArgs {
    /// CA directory (ca.pem, ca.key).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// DNS name or IP address of the server; repeatable (the first is the CN).
    #[arg(long = "name", required = true)]
    names: Vec<String>,
    /// Output prefix: writes PREFIX.crt.pem (chain) and PREFIX.key.pem (0600).
    #[arg(long)]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 825)]
    days: u32,
}

/// Read-only operator views and command pushing.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Store (same as `serve --database`).
    #[arg(long, env = "CPE_DATABASE", default_value = DEFAULT_DATABASE)]
    database: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `cpe-provision device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Everything about one device: state, certificate, reports, alerts, commands.
    Show {
        /// Device id, `<institution code>/<device>` (see `cpe-provision devices`).
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Kinds of commands an operator can push.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PushKind {
    /// Ask for a heartbeat now.
    ReportNow,
    /// Ask for a self-diagnosis.
    Diagnose,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The runtime of one CLI command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
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
        server::run(listener, config, db, alerts, shutdown_signal()).await?;
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

/// Issues the server's TLS certificate.
pub fn server_cert(args: &ServerCertArgs, start: OffsetDateTime) -> Result<()> {
    let ca = CertificationBody::load(&args.ca)?;
    let issued = ca.issue_server(&args.names, &Validity::new(start, args.days)?)?;
    let chain = with_suffix(&args.out, ".crt.pem");
    let key = with_suffix(&args.out, ".key.pem");
    cpe_common::durable::write_atomic(
        &cpe_common::durable::OsStorage,
        &key,
        issued.key_pem.as_bytes(),
        cpe_common::durable::MODE_SECRET,
    )
    .with_context(|| format!("cannot write {}", key.display()))?;
    cpe_common::durable::write_atomic(
        &cpe_common::durable::OsStorage,
        &chain,
        issued.chain_pem.as_bytes(),
        cpe_common::durable::MODE_PUBLIC,
    )
    .with_context(|| format!("cannot write {}", chain.display()))?;
    println!(
        "wrote server certificate for {} to {} and {}",
        args.names.join(", "),
        chain.display(),
        key.display()
    );
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn open(db: &DbArgs) -> Result<Database> {
    open_database(&db.database).await
}

/// `cpe-provision devices`.
pub fn devices(db: &DbArgs) -> Result<()> {
    runtime()?.block_on(async {
        let rows = open(db).await?.devices().await?;
        print!("{}", operator::render_devices(&rows, now_ms(), db.json));
        Ok(())
    })
}

/// `cpe-provision device show`.
pub fn device(command: &DeviceCommand) -> Result<()> {
    let DeviceCommand::Show { id, db } = command;
    runtime()?.block_on(async {
        let Some(detail) = open(db).await?.device(id).await? else {
            bail!("no device {id:?}; list them with `cpe-provision devices`");
        };
        print!("{}", operator::render_device(&detail, now_ms(), db.json));
        Ok(())
    })
}

/// `cpe-provision alerts`.
pub fn alerts(db: &DbArgs, all: bool) -> Result<()> {
    runtime()?.block_on(async {
        let rows = open(db).await?.alerts(!all, 500).await?;
        print!("{}", operator::render_alerts(&rows, db.json));
        Ok(())
    })
}

/// `cpe-provision command`.
pub fn push_command(db: &DbArgs, device: &str, kind: PushKind) -> Result<()> {
    let kind = match kind {
        PushKind::ReportNow => cpe_protocol::CommandKind::ReportNow,
        PushKind::Diagnose => cpe_protocol::CommandKind::Diagnose,
    };
    runtime()?.block_on(async {
        let database = open(db).await?;
        if database.device(device).await?.is_none() {
            bail!("no device {device:?}; list them with `cpe-provision devices`");
        }
        let body = postcard::to_stdvec(&kind).context("encode command")?;
        let id = database.enqueue_command(device, &format!("{kind:?}"), body, now_ms()).await?;
        println!("queued command {id} ({kind:?}) for {device}; it is delivered on the device's next poll");
        Ok(())
    })
}
