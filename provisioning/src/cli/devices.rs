//! The device views and command pushing of `cpe-provision`: `devices`,
//! `device show`, `alerts`, `command`, `cert expiry`.

use anyhow::Result;
use clap::{Args, Subcommand};
use cpe_provision::clock::now_ms;
use cpe_provision::devices;
use cpe_provision::expiry::{self, DEFAULT_ALERT_DAYS};
use cpe_provision::store::Database;
use time::OffsetDateTime;

use super::support::{parse_time, runtime, StoreArgs};
use super::views;

/// Read-only operator views and command pushing.
#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `cpe-provision cert expiry`.
#[derive(Debug, Args)]
pub struct ExpiryArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Alert thresholds in days left, comma-separated; a device is listed
    /// under the smallest one it has reached.
    #[arg(long, value_name = "DAYS", value_delimiter = ',', default_values_t = DEFAULT_ALERT_DAYS)]
    alert_days: Vec<u32>,
    /// Report as of this time (RFC 3339; default: now), e.g. to see what
    /// will be due by the end of a quarter.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<OffsetDateTime>,
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

async fn open(db: &DbArgs) -> Result<Database> {
    db.store.open().await
}

/// `cpe-provision devices`.
pub fn devices(db: &DbArgs) -> Result<()> {
    runtime()?.block_on(async {
        let rows = open(db).await?.devices().await?;
        print!("{}", views::render_devices(&rows, now_ms(), db.json));
        Ok(())
    })
}

/// `cpe-provision device show`.
pub fn device(command: &DeviceCommand) -> Result<()> {
    let DeviceCommand::Show { id, db } = command;
    runtime()?.block_on(async {
        let detail = devices::detail(&open(db).await?, id).await?;
        print!("{}", views::render_device(&detail, now_ms(), db.json));
        Ok(())
    })
}

/// `cpe-provision alerts`.
pub fn alerts(db: &DbArgs, all: bool) -> Result<()> {
    runtime()?.block_on(async {
        let rows = open(db).await?.alerts(!all, 500).await?;
        print!("{}", views::render_alerts(&rows, db.json));
        Ok(())
    })
}

/// `cpe-provision cert expiry`.
pub fn cert_expiry(args: &ExpiryArgs, now: OffsetDateTime) -> Result<()> {
    let thresholds = expiry::alert_days(args.alert_days.clone()).map_err(anyhow::Error::msg)?;
    let at = args.at.unwrap_or(now);
    runtime()?.block_on(async {
        let report = expiry::fleet_expiry(&open(&args.db).await?, at, &thresholds).await?;
        print!("{}", views::render_expiry(&report, at, args.db.json));
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
        let id = devices::push_command(&open(db).await?, device, &kind, now_ms()).await?;
        println!("queued command {id} ({kind:?}) for {device}; it is delivered on the device's next poll");
        Ok(())
    })
}
