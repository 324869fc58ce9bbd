//! The `cpe-provision` command line: argument definitions, dispatch and
//! views. Each command parses its arguments, calls one library function
//! and renders what it returns ([`views`]); nothing here decides anything.
//!
//! - [`pki`]: `ca`, `cert`, `csr` (certificates of the test certification body);
//! - [`serve`]: the carrier server;
//! - [`devices`]: `devices`, `device show`, `alerts`, `command`, `cert expiry`;
//! - [`compliance`]: `keys`, `case`, `order`, `incidents` (§2.2);
//! - [`operators`]: `operator add|list|disable|passwd` (console sign-ins);
//! - [`retention`]: `retention run` and the retention options of `serve`;
//! - [`views`]: text tables and JSON of what the store returns;
//! - [`support`]: opening the store, the runtime of a command, files.

pub mod compliance;
pub mod devices;
pub mod operators;
pub mod pki;
pub mod retention;
pub mod serve;
pub mod support;
pub mod views;

use anyhow::Result;
use clap::{Parser, Subcommand};
use time::{Duration, OffsetDateTime};

/// How far before "now" validity starts by default, so that a device whose
/// clock is a little behind still accepts a certificate issued a moment ago.
const DEFAULT_BACKDATE: Duration = Duration::minutes(5);

/// Carrier tooling for institution certificates (機関認証): a test
/// certification-body CA, issuing certificates, signing device CSRs; the
/// carrier server; compliance cases and signed orders (§2.2).
#[derive(Debug, Parser)]
#[command(name = "cpe-provision", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the test certification-body CA.
    #[command(subcommand)]
    Ca(pki::CaCommand),
    /// Issue institution certificates; report the fleet's by expiry.
    #[command(subcommand)]
    Cert(pki::CertCommand),
    /// Sign certificate requests made on devices.
    #[command(subcommand)]
    Csr(pki::CsrCommand),
    /// Run the carrier server: report ingest, liveness alerts, commands, renewals.
    Serve(Box<serve::ServeArgs>),
    /// List devices: state up/down, last seen, certificate expiry, open alerts.
    Devices(devices::FleetArgs),
    /// Inspect one device.
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// List open alerts (all with --all).
    Alerts {
        #[command(flatten)]
        db: devices::DbArgs,
        /// Include cleared alerts.
        #[arg(long)]
        all: bool,
    },
    /// Act on one alert.
    #[command(subcommand)]
    Alert(devices::AlertCommand),
    /// Queue a command for a device (delivered on its next poll).
    #[command(name = "command")]
    Push {
        #[command(flatten)]
        db: devices::DbArgs,
        /// Device id (`<institution code>/<device>`).
        #[arg(long)]
        device: String,
        /// What to ask.
        #[arg(value_enum)]
        kind: devices::PushKind,
        /// Who asks (recorded with the command; default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        operator: Option<String>,
    },
    /// Manage the carrier's order-signing keys (separate from every TLS key).
    #[command(subcommand)]
    Keys(compliance::KeysCommand),
    /// The compliance flow of guideline §2.2 per institution: fact, hearing,
    /// report, recommendation, check; the whole trail.
    #[command(subcommand)]
    Case(compliance::CaseCommand),
    /// Signed stop and resume orders, and the state of every order.
    #[command(subcommand)]
    Order(compliance::OrderCommand),
    /// Operators of the console and the API: add, list, disable, set passwords.
    #[command(subcommand)]
    Operator(operators::OperatorCommand),
    /// Data retention: heartbeats at full resolution, then five-minute and
    /// hourly rollups, each for its period.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// A device's incident records (self-diagnosis results), newest first.
    Incidents {
        /// Device id (`<institution code>/<device>`).
        #[arg(long)]
        device: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        viewer: compliance::Viewer,
    },
}

/// Runs one command with `now` as the clock.
pub fn run(cli: Cli, now: OffsetDateTime) -> Result<()> {
    let default_start = now.saturating_sub(DEFAULT_BACKDATE);
    match cli.command {
        Command::Ca(pki::CaCommand::Init(args)) => pki::ca_init(&args, default_start),
        Command::Cert(pki::CertCommand::Issue(args)) => pki::cert_issue(args, default_start),
        Command::Cert(pki::CertCommand::Expiry(args)) => devices::cert_expiry(&args, now),
        Command::Csr(pki::CsrCommand::Sign(args)) => pki::csr_sign(&args, default_start),
        Command::Ca(pki::CaCommand::ServerCert(args)) => pki::server_cert(&args, default_start),
        Command::Serve(args) => serve::serve(&args),
        Command::Devices(args) => devices::devices(&args),
        Command::Alert(command) => devices::alert(&command),
        Command::Device(command) => devices::device(&command),
        Command::Alerts { db, all } => devices::alerts(&db, all),
        Command::Push { db, device, kind, operator } => {
            devices::push_command(&db, &device, kind, operator.as_deref())
        }
        Command::Keys(command) => compliance::keys(command, now),
        Command::Case(command) => compliance::case(command, now),
        Command::Order(command) => compliance::order(command, now),
        Command::Operator(command) => operators::operator(&command),
        Command::Retention(command) => retention::retention(&command),
        Command::Incidents { device, limit, viewer } => compliance::incidents(&device, limit, &viewer),
    }
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
}
