//! The device views and command pushing of `cpe-provision`: `devices`,
//! `device show`, `alerts`, `alert ack`, `command`, `cert expiry`.

use anyhow::Result;
use clap::{Args, Subcommand};
use cpe_provision::clock::now_ms;
use cpe_provision::devices;
use cpe_provision::expiry::{self, DEFAULT_ALERT_DAYS};
use cpe_provision::store::{Database, DeviceFilter, DeviceQuery, DeviceSort};
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

impl DbArgs {
    /// Opens the store (a missing one is an error unless `--create`).
    pub async fn open(&self) -> Result<Database> {
        self.store.open().await
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
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

/// `cpe-provision devices`: one page of the fleet.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only devices whose id or institution code contains this.
    #[arg(long, default_value = "")]
    search: String,
    /// Only devices that are up, down, suspended or alerting.
    #[arg(long, value_enum)]
    filter: Option<FilterArg>,
    /// Sort by.
    #[arg(long, value_enum, default_value_t = SortArg::Id)]
    sort: SortArg,
    /// Largest first.
    #[arg(long)]
    desc: bool,
    /// Devices per page (at most 1000).
    #[arg(long, default_value_t = devices::MAX_PAGE)]
    limit: u32,
    /// Devices skipped (the next page starts at offset + limit).
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

/// `--filter`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FilterArg {
    /// Reporting.
    Up,
    /// Silent.
    Down,
    /// Under a stop order.
    Suspended,
    /// With open alerts.
    Alerting,
}

/// `--sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    /// Device id.
    Id,
    /// Latest report.
    LastSeen,
    /// Certificate expiry.
    CertNotAfter,
    /// Up or down.
    State,
}

impl FleetArgs {
    fn query(&self) -> DeviceQuery {
        DeviceQuery {
            search: self.search.clone(),
            filter: self.filter.map(|f| match f {
                FilterArg::Up => DeviceFilter::Up,
                FilterArg::Down => DeviceFilter::Down,
                FilterArg::Suspended => DeviceFilter::Suspended,
                FilterArg::Alerting => DeviceFilter::Alerting,
            }),
            sort: match self.sort {
                SortArg::Id => DeviceSort::Id,
                SortArg::LastSeen => DeviceSort::LastSeen,
                SortArg::CertNotAfter => DeviceSort::CertNotAfter,
                SortArg::State => DeviceSort::State,
            },
            descending: self.desc,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

/// `cpe-provision alert …`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Record that you have seen an alert (its id from `cpe-provision alerts`).
    Ack {
        /// Alert id.
        id: i64,
        /// Who acknowledges (recorded with the alert; default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        operator: String,
        #[command(flatten)]
        db: DbArgs,
    },
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
    db.open().await
}

/// `cpe-provision devices`.
pub fn devices(args: &FleetArgs) -> Result<()> {
    runtime()?.block_on(async {
        let page = devices::page(&open(&args.db).await?, &args.query()).await?;
        print!("{}", views::render_devices(&page.rows, now_ms(), args.db.json));
        let shown = u64::try_from(page.rows.len()).unwrap_or(u64::MAX);
        if !args.db.json && shown < page.total {
            let first = if shown == 0 { 0 } else { args.offset + 1 };
            println!(
                "devices {first}–{} of {}; the next page: --offset {}",
                args.offset + shown,
                page.total,
                args.offset + shown
            );
        }
        Ok(())
    })
}

/// `cpe-provision alert ack`.
pub fn alert(command: &AlertCommand) -> Result<()> {
    let AlertCommand::Ack { id, operator, db } = command;
    runtime()?.block_on(async {
        let row = devices::acknowledge_alert(&open(db).await?, *id, operator, now_ms()).await?;
        let by = row.acknowledged_by.as_deref().unwrap_or_default();
        println!("alert {id} ({} on {}) acknowledged by {by}", row.kind, row.device_id);
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
pub fn push_command(db: &DbArgs, device: &str, kind: PushKind, operator: Option<&str>) -> Result<()> {
    let kind = match kind {
        PushKind::ReportNow => cpe_protocol::CommandKind::ReportNow,
        PushKind::Diagnose => cpe_protocol::CommandKind::Diagnose,
    };
    runtime()?.block_on(async {
        let id = devices::push_command(&open(db).await?, device, &kind, operator, now_ms()).await?;
        println!("queued command {id} ({kind:?}) for {device}; it is delivered on the device's next poll");
        Ok(())
    })
}
