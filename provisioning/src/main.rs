//! `cpe-provision`: the carrier's command line for institution certificates.
//!
//! A thin shell over the `cpe_provision` library: parse arguments, read the
//! clock, read and write files, print what was done. Exit status 0 on
//! success, 1 on a refusal or any other error (the message says what to do
//! next), 2 when the command could not run: a usage error (from clap) or a
//! store that cannot be opened.
#![forbid(unsafe_code)]

mod compliance_ops;
mod ops;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use cpe_common::durable::{write_atomic, OsStorage, MODE_PUBLIC, MODE_SECRET};
use cpe_common::institution::InstitutionCode;
use cpe_provision::ca::{DEFAULT_CA_DAYS, DEFAULT_CA_NAME};
use cpe_provision::csr::MAX_CSR_BYTES;
use cpe_provision::issue::DEFAULT_CERT_DAYS;
use cpe_provision::subject::DEFAULT_INSTITUTION_NAME;
use cpe_provision::validity::{parse_rfc3339, rfc3339};
use cpe_provision::{
    read_password_file, write_pkcs12_with, CertificationBody, IssueRequest, KeySource, KeyType,
    Pkcs12Encryption, Validity,
};
use time::{Duration, OffsetDateTime};

/// How far before "now" validity starts by default, so that a device whose
/// clock is a little behind still accepts a certificate issued a moment ago.
const DEFAULT_BACKDATE: Duration = Duration::minutes(5);

/// Carrier tooling for institution certificates (機関認証): a test
/// certification-body CA, issuing certificates, signing device CSRs; the
/// carrier server; compliance cases and signed orders (§2.2).
#[derive(Debug, Parser)]
#[command(name = "cpe-provision", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the test certification-body CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue institution certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Sign certificate requests made on devices.
    #[command(subcommand)]
    Csr(CsrCommand),
    /// Run the carrier server: report ingest, liveness alerts, commands, renewals.
    Serve(ops::ServeArgs),
    /// List devices: state up/down, last seen, certificate expiry, open alerts.
    Devices(ops::DbArgs),
    /// Inspect one device.
    #[command(subcommand)]
    Device(ops::DeviceCommand),
    /// List open alerts (all with --all).
    Alerts {
        #[command(flatten)]
        db: ops::DbArgs,
        /// Include cleared alerts.
        #[arg(long)]
        all: bool,
    },
    /// Queue a command for a device (delivered on its next poll).
    #[command(name = "command")]
    Push {
        #[command(flatten)]
        db: ops::DbArgs,
        /// Device id (`<institution code>/<device>`).
        #[arg(long)]
        device: String,
        /// What to ask.
        #[arg(value_enum)]
        kind: ops::PushKind,
    },
    /// Manage the carrier's order-signing keys (separate from every TLS key).
    #[command(subcommand)]
    Keys(compliance_ops::KeysCommand),
    /// The compliance flow of guideline §2.2 per institution: fact, hearing,
    /// report, recommendation, check; the whole trail.
    #[command(subcommand)]
    Case(compliance_ops::CaseCommand),
    /// Signed stop and resume orders, and the state of every order.
    #[command(subcommand)]
    Order(compliance_ops::OrderCommand),
    /// A device's incident records (self-diagnosis results), newest first.
    Incidents {
        /// Device id (`<institution code>/<device>`).
        #[arg(long)]
        device: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        viewer: compliance_ops::Viewer,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a TEST certification-body CA (ECDSA P-256) in a directory.
    ///
    /// Writes DIR/ca.pem and DIR/ca.key (mode 0600). For demonstrations and
    /// tests only: in production the certification body issues certificates.
    Init(CaInitArgs),
    /// Issue the carrier server's TLS certificate (serverAuth) from this CA.
    ServerCert(ops::ServerCertArgs),
}

#[derive(Debug, Args)]
struct CaInitArgs {
    /// Directory for ca.pem and ca.key (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Name of the CA (subject CN).
    #[arg(long, default_value = DEFAULT_CA_NAME)]
    name: String,
    /// Validity of the CA certificate, in days.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CA_DAYS)]
    days: u32,
    /// Replace an existing CA (certificates it issued stop verifying).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Generate a key and an institution certificate, and write them as a
    /// password-protected PKCS#12 file.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// Directory of the CA (made with `ca init`).
    #[arg(long = "ca", value_name = "DIR")]
    ca_dir: PathBuf,
    /// The institution's 10-digit code.
    #[arg(long, value_name = "CODE")]
    institution: InstitutionCode,
    /// PKCS#12 file to write (mode 0600).
    #[arg(long, value_name = "FILE.p12")]
    out: PathBuf,
    /// File holding the PKCS#12 password (trailing newlines are ignored).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// Institution name (subject O; CN is "<name> <code>").
    #[arg(long, default_value = DEFAULT_INSTITUTION_NAME)]
    name: String,
    /// Device the certificate is meant for (subject OU).
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CERT_DAYS)]
    days: u32,
    /// Key type to generate. RSA keys cannot be generated here: make one with
    /// openssl and pass it with --key-file.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "ecdsa-p256",
        value_parser = PossibleValuesParser::new(KeyType::NAMES).try_map(|s| s.parse::<KeyType>())
    )]
    key_type: KeyType,
    /// Use this existing unencrypted PKCS#8 PEM key instead of generating one.
    #[arg(long, value_name = "PEM", conflicts_with = "key_type")]
    key_file: Option<PathBuf>,
    /// Start of validity, RFC 3339 (default: 5 minutes ago). May be in the
    /// past or the future, e.g. to make expired or not-yet-valid test
    /// certificates.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    not_before: Option<OffsetDateTime>,
    /// Also write PREFIX.crt.pem (certificate and CA chain) and PREFIX.key.pem
    /// (mode 0600).
    #[arg(long, value_name = "PREFIX")]
    pem_out: Option<PathBuf>,
    /// Encrypt the PKCS#12 file the legacy way (3DES, HMAC-SHA1) instead of
    /// AES-256/PBKDF2/HMAC-SHA256.
    #[arg(long)]
    legacy_pkcs12: bool,
}

#[derive(Debug, Subcommand)]
enum CsrCommand {
    /// Sign a PEM CSR (from `cpe-agent cert csr`) as an institution
    /// certificate: EKU clientAuth and KU digitalSignature are forced, the
    /// subject is kept and must carry the institution code.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
struct SignArgs {
    /// Directory of the CA (made with `ca init`).
    #[arg(long = "ca", value_name = "DIR")]
    ca_dir: PathBuf,
    /// The PEM certificate request.
    #[arg(value_name = "CSR_FILE")]
    csr: PathBuf,
    /// PEM file to write: certificate followed by the CA certificate.
    #[arg(long, value_name = "CERT_PEM")]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CERT_DAYS)]
    days: u32,
    /// Refuse the CSR unless it is for this institution code.
    #[arg(long, value_name = "CODE")]
    institution: Option<InstitutionCode>,
    /// Start of validity, RFC 3339 (default: 5 minutes ago).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    not_before: Option<OffsetDateTime>,
}

fn parse_time(text: &str) -> std::result::Result<OffsetDateTime, String> {
    parse_rfc3339(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, OffsetDateTime::now_utc()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<ops::CouldNotRun>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs one command with `now` as the clock.
fn run(cli: Cli, now: OffsetDateTime) -> Result<()> {
    let default_start = now.saturating_sub(DEFAULT_BACKDATE);
    match cli.command {
        Command::Ca(CaCommand::Init(args)) => ca_init(&args, default_start),
        Command::Cert(CertCommand::Issue(args)) => cert_issue(args, default_start),
        Command::Csr(CsrCommand::Sign(args)) => csr_sign(&args, default_start),
        Command::Ca(CaCommand::ServerCert(args)) => ops::server_cert(&args, default_start),
        Command::Serve(args) => ops::serve(&args),
        Command::Devices(db) => ops::devices(&db),
        Command::Device(command) => ops::device(&command),
        Command::Alerts { db, all } => ops::alerts(&db, all),
        Command::Push { db, device, kind } => ops::push_command(&db, &device, kind),
        Command::Keys(command) => compliance_ops::keys(command, now),
        Command::Case(command) => compliance_ops::case(command, now),
        Command::Order(command) => compliance_ops::order(command, now),
        Command::Incidents { device, limit, viewer } => compliance_ops::incidents(&device, limit, &viewer),
    }
}

fn ca_init(args: &CaInitArgs, start: OffsetDateTime) -> Result<()> {
    let validity = Validity::new(start, args.days)?;
    let ca = CertificationBody::init(&args.dir, &args.name, validity, args.force)?;
    println!(
        "created TEST CA {:?} in {} (ca.pem, ca.key), valid until {}",
        args.name,
        args.dir.display(),
        rfc3339(ca.not_after())
    );
    Ok(())
}

fn cert_issue(args: IssueArgs, default_start: OffsetDateTime) -> Result<()> {
    let password = read_password_file(&args.password_file)?;
    let ca = CertificationBody::load(&args.ca_dir)?;
    let validity = Validity::new(args.not_before.unwrap_or(default_start), args.days)?;
    let key = match &args.key_file {
        Some(path) => KeySource::from_pkcs8_pem(&read_text(path, 64 * 1024)?)
            .with_context(|| format!("key file {}", path.display()))?,
        None => KeySource::Generate(args.key_type),
    };
    let mut request = IssueRequest::new(args.institution, validity);
    request.name = args.name;
    request.device_id = args.device_id;
    request.key = key;
    let identity = ca.issue(&request)?;

    let encryption = if args.legacy_pkcs12 { Pkcs12Encryption::Legacy } else { Pkcs12Encryption::Modern };
    let p12 = write_pkcs12_with(&identity, &password, encryption)?;
    write_file(&args.out, &p12, MODE_SECRET)?;
    println!(
        "issued certificate for institution {} (serial {}, valid {} to {}): {}",
        identity.code,
        identity.serial_hex(),
        rfc3339(identity.not_before),
        rfc3339(identity.not_after),
        args.out.display()
    );
    if let Some(prefix) = &args.pem_out {
        let cert_path = with_suffix(prefix, ".crt.pem");
        let key_path = with_suffix(prefix, ".key.pem");
        write_file(&cert_path, identity.chain_pem.as_bytes(), MODE_PUBLIC)?;
        write_file(&key_path, identity.key_pem.as_bytes(), MODE_SECRET)?;
        println!("also wrote {} and {}", cert_path.display(), key_path.display());
    }
    Ok(())
}

fn csr_sign(args: &SignArgs, default_start: OffsetDateTime) -> Result<()> {
    let ca = CertificationBody::load(&args.ca_dir)?;
    let csr = read_text(&args.csr, MAX_CSR_BYTES)?;
    let validity = Validity::new(args.not_before.unwrap_or(default_start), args.days)?;
    let signed = ca
        .sign_csr(&csr, validity, args.institution.as_ref())
        .with_context(|| format!("CSR {}", args.csr.display()))?;
    write_file(&args.out, signed.chain_pem.as_bytes(), MODE_PUBLIC)?;
    println!(
        "signed certificate for institution {} (serial {}, valid {} to {}): {}",
        signed.code,
        signed.serial_hex(),
        rfc3339(signed.not_before),
        rfc3339(signed.not_after),
        args.out.display()
    );
    Ok(())
}

/// `prefix` with `suffix` appended to its file name (`out/clinic` →
/// `out/clinic.crt.pem`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_text(path: &Path, max_bytes: usize) -> Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("could not read {}; check the path and its permissions", path.display()))?;
    anyhow::ensure!(
        bytes.len() <= max_bytes,
        "{} is {} bytes, larger than the {max_bytes} bytes expected; check that you picked the right file",
        path.display(),
        bytes.len()
    );
    String::from_utf8(bytes).with_context(|| format!("{} is not a PEM text file", path.display()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_atomic(&OsStorage, path, bytes, mode).with_context(|| {
        format!("could not write {}; check that its directory exists and is writable", path.display())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn pem_out_prefix_gets_suffixes() {
        assert_eq!(with_suffix(Path::new("out/clinic"), ".crt.pem"), PathBuf::from("out/clinic.crt.pem"));
    }
}
