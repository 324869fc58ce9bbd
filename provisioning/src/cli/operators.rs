//! `cpe-provision operator add|list|disable|passwd`: the console's
//! operators, managed on the machine that holds the database.
//!
//! Passwords are read from a file (`--password-file`, one line; `-` reads
//! standard input), never from the command line, where other users of the
//! machine could see them in the process list.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cpe_provision::clock::now_ms;
use cpe_provision::operators;
use cpe_provision::pki::pkcs12::{password_from_text, read_password_file};
use cpe_provision::store::Role;

use super::devices::DbArgs;
use super::support::runtime;
use super::views;

/// `cpe-provision operator …`.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add an operator who signs in to the console and the API.
    Add {
        /// Login name (recorded in the trails as the operator).
        name: String,
        /// viewer: read only; operator: also commands, diagnosis, alerts,
        /// incidents; compliance: also the §2.2 case flow and signed orders.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List operators with their roles and whether they are disabled.
    List(DbArgs),
    /// Disable an operator: no more sign-ins, its sessions end at once.
    Disable {
        /// Login name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set an operator's password; its sessions end at once.
    Passwd {
        /// Login name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Where the new password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// File holding the password on one line (`-`: standard input); at
    /// least 12 characters.
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
}

impl PasswordArgs {
    fn read(&self) -> Result<String> {
        if self.password_file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut text)
                .context("could not read the password from standard input")?;
            return Ok(password_from_text(&text)?);
        }
        Ok(read_password_file(&self.password_file)?)
    }
}

/// Operator roles on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Read only.
    Viewer,
    /// Commands, diagnosis, alerts, incidents.
    Operator,
    /// The §2.2 case flow and signed stop/resume orders.
    Compliance,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Self::Viewer,
            RoleArg::Operator => Self::Operator,
            RoleArg::Compliance => Self::Compliance,
        }
    }
}

/// Runs one `operator` command.
pub fn operator(command: &OperatorCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            OperatorCommand::Add { name, role, password, db } => {
                let password = password.read()?;
                let role = Role::from(*role);
                operators::add(&db.open().await?, name, role, &password, now_ms()).await?;
                println!(
                    "operator {name} added with role {role}; they sign in to the console with this password"
                );
            }
            OperatorCommand::List(db) => {
                let rows = operators::list(&db.open().await?).await?;
                print!("{}", views::render_operators(&rows, db.json()));
            }
            OperatorCommand::Disable { name, db } => {
                operators::disable(&db.open().await?, name, now_ms()).await?;
                println!("operator {name} disabled; their sessions have ended");
            }
            OperatorCommand::Passwd { name, password, db } => {
                let password = password.read()?;
                operators::set_password(&db.open().await?, name, &password, now_ms()).await?;
                println!("password of {name} changed; their sessions have ended");
            }
        }
        Ok(())
    })
}
