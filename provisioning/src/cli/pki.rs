//! The certificate commands of `cpe-provision`: `ca init`, `ca server-cert`,
//! `cert issue`, `csr sign` (`cert expiry` reads the store: [`super::devices`]). Parsing, reading and writing files, printing;
//! the certificates are made by the library ([`cpe_provision::pki`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use cpe_common::durable::{MODE_PUBLIC, MODE_SECRET};
use cpe_common::institution::InstitutionCode;
use cpe_provision::pki::ca::{DEFAULT_CA_DAYS, DEFAULT_CA_NAME};
use cpe_provision::pki::csr::MAX_CSR_BYTES;
use cpe_provision::pki::issue::DEFAULT_CERT_DAYS;
use cpe_provision::pki::subject::DEFAULT_INSTITUTION_NAME;
use cpe_provision::pki::validity::rfc3339;
use cpe_provision::{
    read_password_file, write_pkcs12_with, CertificationBody, IssueRequest, KeySource, KeyType,
    Pkcs12Encryption, Validity,
};
use time::OffsetDateTime;

use super::support::{parse_time, read_text, with_suffix, write_file};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a TEST certification-body CA (ECDSA P-256) in a directory.
    ///
    /// Writes DIR/ca.pem and DIR/ca.key (mode 0600). For demonstrations and
    /// tests only: in production the certification body issues certificates.
    Init(CaInitArgs),
    /// Issue the carrier server's TLS certificate (serverAuth) from this CA.
    ServerCert(ServerCertArgs),
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
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
pub enum CertCommand {
    /// Generate a key and an institution certificate, and write them as a
    /// password-protected PKCS#12 file.
    Issue(IssueArgs),
    /// The fleet's institution certificates by month of expiry, and the
    /// devices at each alert threshold (days left) or already expired.
    Expiry(super::devices::ExpiryArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
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
pub enum CsrCommand {
    /// Sign a PEM CSR (from `cpe-agent cert csr`) as an institution
    /// certificate: EKU clientAuth and KU digitalSignature are forced, the
    /// subject is kept and must carry the institution code.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
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

pub fn ca_init(args: &CaInitArgs, start: OffsetDateTime) -> Result<()> {
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

pub fn cert_issue(args: IssueArgs, default_start: OffsetDateTime) -> Result<()> {
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

pub fn csr_sign(args: &SignArgs, default_start: OffsetDateTime) -> Result<()> {
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
        MODE_SECRET,
    )
    .with_context(|| format!("cannot write {}", key.display()))?;
    cpe_common::durable::write_atomic(
        &cpe_common::durable::OsStorage,
        &chain,
        issued.chain_pem.as_bytes(),
        MODE_PUBLIC,
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
