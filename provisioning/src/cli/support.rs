//! What every `cpe-provision` command shares: opening the store named by
//! `--database` (a store that cannot be opened, or an operator command's
//! store that does not exist, is [`CouldNotRun`], exit status 2), the tokio
//! runtime of one command, and file helpers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use cpe_common::durable::{write_atomic, OsStorage};
use cpe_provision::pki::validity::parse_rfc3339;
use cpe_provision::store::Database;
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

/// Opens (creating it if need be) the store named by `serve --database`;
/// failure is [`CouldNotRun`].
pub async fn create_or_open_database(url: &str) -> Result<Database> {
    could_not_run(url, Database::open(url).await)
}

fn could_not_run(url: &str, opened: Result<Database, cpe_provision::store::DbError>) -> Result<Database> {
    opened.with_context(|| {
        CouldNotRun(format!("cannot open the database {}", cpe_provision::store::redact_url(url)))
    })
}

/// The store of an operator command: it must exist unless `--create` is given
/// (a mistyped path would otherwise be a new, empty carrier).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store (same as `serve --database`); it must exist.
    #[arg(long, env = "CPE_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,
    /// Create the store if it does not exist (otherwise only `serve` creates one).
    #[arg(long)]
    pub create: bool,
}

impl StoreArgs {
    /// Opens the store; a missing one is [`CouldNotRun`] unless `--create`.
    pub async fn open(&self) -> Result<Database> {
        if self.create {
            create_or_open_database(&self.database).await
        } else {
            could_not_run(&self.database, Database::open_existing(&self.database).await)
        }
    }
}

/// Default store: an SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite:carrier.db";

/// The runtime of one CLI command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// `prefix` with `suffix` appended to its file name (`out/clinic` →
/// `out/clinic.crt.pem`).
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The text file `path`, refused above `max_bytes`.
pub fn read_text(path: &Path, max_bytes: usize) -> Result<String> {
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

/// Writes `path` durably with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_atomic(&OsStorage, path, bytes, mode).with_context(|| {
        format!("could not write {}; check that its directory exists and is writable", path.display())
    })
}

/// An RFC 3339 argument (clap value parser).
pub fn parse_time(text: &str) -> std::result::Result<OffsetDateTime, String> {
    parse_rfc3339(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_out_prefix_gets_suffixes() {
        assert_eq!(with_suffix(Path::new("out/clinic"), ".crt.pem"), PathBuf::from("out/clinic.crt.pem"));
    }
}
