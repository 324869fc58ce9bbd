//! `cpe-provision retention run` and the retention options `serve` shares:
//! how long heartbeats are kept at each resolution.

use anyhow::Result;
use clap::{Args, Subcommand};
use cpe_provision::clock::now_ms;
use cpe_provision::retention::{
    self, RetentionPolicy, DEFAULT_BATCH, DEFAULT_FIVE_MINUTE_DAYS, DEFAULT_FULL_RESOLUTION_DAYS,
    DEFAULT_HOURLY_DAYS, MAX_BATCH,
};

use super::devices::DbArgs;
use super::support::runtime;

/// How long heartbeats are kept at each resolution (`serve` and `retention run`).
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days heartbeats are kept as received; older ones are rolled up into
    /// five-minute buckets (min/avg/max CPU and memory, mean bandwidth per line).
    #[arg(long = "retention-full-days", value_name = "DAYS", default_value_t = DEFAULT_FULL_RESOLUTION_DAYS)]
    full_days: u32,
    /// Days five-minute buckets are kept; older ones are rolled up into hourly buckets.
    #[arg(long = "retention-five-minute-days", value_name = "DAYS", default_value_t = DEFAULT_FIVE_MINUTE_DAYS)]
    five_minute_days: u32,
    /// Days hourly buckets and events are kept; older ones are deleted.
    #[arg(long = "retention-hourly-days", value_name = "DAYS", default_value_t = DEFAULT_HOURLY_DAYS)]
    hourly_days: u32,
    /// Rows per retention transaction (each holds the SQLite writer a few milliseconds).
    #[arg(long = "retention-batch", value_name = "ROWS", default_value_t = DEFAULT_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))]
    batch: u32,
}

impl RetentionArgs {
    /// The policy, checked.
    pub fn policy(&self) -> Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            full_resolution_days: self.full_days,
            five_minute_days: self.five_minute_days,
            hourly_days: self.hourly_days,
            batch: self.batch,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// `cpe-provision retention …`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Roll up and delete what is past its period now (what `serve` does
    /// every --retention-every minutes); safe to repeat or to run beside `serve`.
    Run {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        retention: RetentionArgs,
    },
}

/// Runs a retention command.
pub fn retention(command: &RetentionCommand) -> Result<()> {
    let RetentionCommand::Run { db, retention: args } = command;
    let policy = args.policy()?;
    let report = runtime()?.block_on(async {
        let store = db.open().await?;
        Ok::<_, anyhow::Error>(retention::run_once(&store, &policy, now_ms()).await?)
    })?;
    if db.json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("retention / データ保持: {report}");
    }
    Ok(())
}
