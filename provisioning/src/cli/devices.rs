//! The device views and command pushing of `cpe-provision`: `devices`,
//! `device show`, `alerts`, `command`.

use anyhow::Result;
use clap::{Args, Subcommand};
use cpe_provision::clock::now_ms;
use cpe_provision::devices;
use cpe_provision::store::Database;

use super::support::{open_database, runtime, DEFAULT_DATABASE};
use super::views;

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

impl DbArgs {
    /// The `--database` URL.
    pub fn url(&self) -> &str {
        &self.database
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
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
    open_database(&db.database).await
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
