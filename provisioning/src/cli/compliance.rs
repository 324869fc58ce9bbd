//! The compliance commands of `cpe-provision` (guideline §2.2, issue 6) and
//! the incident list (issue 4): `keys`, `case`, `order`, `incidents`.
//! Parsing and printing only: each command calls one use case of
//! [`cpe_provision::compliance`] (flow rules, signing, storage).
//!
//! Every refusal exits with status 1 and says why and what to run instead.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cpe_common::hex;
use cpe_provision::clock::{rfc3339_ms, unix_ms};
use cpe_provision::compliance::cases::{self, Hearing};
use cpe_provision::compliance::order_keys::KeyStore;
use cpe_provision::compliance::orders::{self, Actor, ReasonText, DEFAULT_ORDER_DAYS, ROTATION_ORDER_DAYS};
use cpe_provision::compliance::reverify;
use cpe_provision::devices;
use cpe_provision::store::IssuedOrder;
use time::OffsetDateTime;

use super::support::{parse_time, runtime, StoreArgs};
use super::views;

/// Store and operator of a command that records something.
#[derive(Debug, Args)]
pub struct Recorder {
    #[command(flatten)]
    store: StoreArgs,
    /// Who takes this step (recorded in the trail; default: $USER).
    #[arg(long, env = "USER", value_name = "NAME")]
    operator: String,
}

/// Store and output format of a read-only command.
#[derive(Debug, Args)]
pub struct Viewer {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// How an order is signed and how long it is valid.
#[derive(Debug, Args)]
pub struct Signing {
    /// Order-key directory (from `cpe-provision keys init`).
    #[arg(long = "keys", env = "CPE_ORDER_KEYS", value_name = "DIR")]
    keys: PathBuf,
    /// Days the order stays valid (the device refuses it afterwards).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ORDER_DAYS, value_parser = clap::value_parser!(u32).range(1..=365))]
    valid_days: u32,
}

/// The reason shown on the device, in Japanese and English.
#[derive(Debug, Args)]
pub struct ReasonArgs {
    /// Reason, used for both languages unless --reason-ja / --reason-en are given.
    #[arg(long)]
    reason: Option<String>,
    /// Reason in Japanese (shown first on the device's notice page).
    #[arg(long)]
    reason_ja: Option<String>,
    /// Reason in English.
    #[arg(long)]
    reason_en: Option<String>,
}

impl ReasonArgs {
    fn text(&self) -> ReasonText {
        ReasonText { both: self.reason.clone(), ja: self.reason_ja.clone(), en: self.reason_en.clone() }
    }
}

impl Recorder {
    fn actor(&self, now: OffsetDateTime) -> Actor {
        Actor { operator: self.operator.clone(), now }
    }
}

impl Signing {
    fn signing(&self) -> orders::Signing {
        orders::Signing { keys: KeyStore::new(&self.keys), valid_days: self.valid_days }
    }
}

/// `cpe-provision keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the carrier's order-signing key (Ed25519, separate from every
    /// TLS key) in DIR; refuses to overwrite an existing one.
    Init {
        /// Key directory (created with mode 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Replace the order-signing key: a key-rotation order signed by the old
    /// key is queued for every known device; the old public key is kept as
    /// retired so that history stays verifiable.
    Rotate {
        /// Key directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        recorder: Recorder,
        /// Days the rotation orders stay valid.
        #[arg(long, value_name = "N", default_value_t = ROTATION_ORDER_DAYS, value_parser = clap::value_parser!(u32).range(1..=365))]
        valid_days: u32,
    },
    /// Print key ids and public keys (hex) for provisioning devices.
    Show {
        /// Key directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cpe-provision case …`: the §2.2 flow per institution.
#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// ① Open a case for a device with the fact found.
    Open {
        /// Device id (`<institution code>/<device>`).
        #[arg(long)]
        device: String,
        /// The fact: what rule was broken, how it was found.
        #[arg(long)]
        fact: String,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// ② Record the hearing of the institution (or skip it when urgent).
    Hearing {
        /// Case id.
        #[arg(long = "case", value_name = "N")]
        case_id: u64,
        /// What the institution said.
        #[arg(long, required_unless_present = "skip_urgent")]
        summary: Option<String>,
        /// Skip the hearing because the matter is urgent.
        #[arg(long, requires = "justification", conflicts_with = "summary")]
        skip_urgent: bool,
        /// Why it cannot wait (with --skip-urgent).
        #[arg(long, requires = "skip_urgent")]
        justification: Option<String>,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// ③ Record the report to the platform operator.
    Report {
        /// Case id.
        #[arg(long = "case", value_name = "N")]
        case_id: u64,
        /// To whom (e.g. "platform operator").
        #[arg(long)]
        to: String,
        /// What was reported.
        #[arg(long)]
        text: String,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// ④ Issue a corrective recommendation with a deadline; a signed notice
    /// order shows it on the device.
    Recommend {
        /// Case id.
        #[arg(long = "case", value_name = "N")]
        case_id: u64,
        /// Deadline, RFC 3339 (e.g. 2026-06-01T00:00:00+09:00).
        #[arg(long, value_parser = parse_time)]
        deadline: OffsetDateTime,
        /// The recommendation, for both languages unless --text-ja / --text-en are given.
        #[arg(long)]
        text: Option<String>,
        /// The recommendation in Japanese.
        #[arg(long)]
        text_ja: Option<String>,
        /// The recommendation in English.
        #[arg(long)]
        text_en: Option<String>,
        #[command(flatten)]
        signing: Signing,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// ⑤ Record whether the violation was corrected.
    Check {
        /// Case id.
        #[arg(long = "case", value_name = "N")]
        case_id: u64,
        /// Whether it was corrected.
        #[arg(long, value_parser = ["yes", "no"])]
        corrected: String,
        /// How it was checked.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// Print a case's whole trail (who, when, what, why) and its orders.
    Show {
        /// Case id.
        case_id: u64,
        #[command(flatten)]
        viewer: Viewer,
    },
}

/// `cpe-provision order …`.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// ⑥ Suspend the device's network service (signed stop order). Refused
    /// before the recommendation deadline and without a failed check, unless
    /// --urgent --justification.
    Stop {
        /// Device id.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        reason: ReasonArgs,
        /// Urgent: skip the recommendation, deadline and check.
        #[arg(long, requires = "justification")]
        urgent: bool,
        /// Why it cannot wait (with --urgent).
        #[arg(long, requires = "urgent")]
        justification: Option<String>,
        #[command(flatten)]
        signing: Signing,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// Lift the suspension (signed resume order); needs a check that found
    /// the violation corrected, or --justification. Closes the case.
    Resume {
        /// Device id.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        reason: ReasonArgs,
        /// Why the service resumes without a confirmed correction.
        #[arg(long)]
        justification: Option<String>,
        #[command(flatten)]
        signing: Signing,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// A drill (§1.3.4): the device shows the notice and acknowledges as if
    /// suspended, without blocking anything. Needs no case.
    Drill {
        /// Device id.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        reason: ReasonArgs,
        #[command(flatten)]
        signing: Signing,
        #[command(flatten)]
        recorder: Recorder,
    },
    /// List orders (newest first): queued → delivered → applied / refused.
    List {
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        viewer: Viewer,
    },
    /// Re-verify a stored order for an auditor: its signature under the
    /// carrier's current or retired keys, its content against the record,
    /// and the device's receipt against the certificate stored with it.
    /// Exit status 1 when a check fails.
    Verify {
        /// Order id.
        id: u64,
        /// Order-key directory (public keys, current and retired).
        #[arg(long = "keys", env = "CPE_ORDER_KEYS", value_name = "DIR")]
        keys: PathBuf,
        #[command(flatten)]
        viewer: Viewer,
    },
    /// One order with its delivery and verified receipt.
    Show {
        /// Order id.
        id: u64,
        #[command(flatten)]
        viewer: Viewer,
    },
}

fn print_issued(issued: &IssuedOrder, device: &str) {
    println!(
        "queued {} order {} (sequence {}) for {device} as command {}; it is delivered on the device's next poll (follow it with `cpe-provision order show {}`)",
        issued.kind, issued.order_id, issued.sequence, issued.command_id, issued.order_id
    );
}

/// `cpe-provision keys …`.
pub fn keys(command: KeysCommand, now: OffsetDateTime) -> Result<()> {
    match command {
        KeysCommand::Init { dir } => {
            let key = KeyStore::new(&dir).init()?;
            println!(
                "created order-signing key {} in {}\npublic key (provision devices with it): {}",
                hex::encode(&key.key_id()),
                dir.display(),
                hex::encode(&key.public_key())
            );
            Ok(())
        }
        KeysCommand::Show { dir, json } => {
            print!("{}", views::render_keys(&KeyStore::new(&dir).list()?, json));
            Ok(())
        }
        KeysCommand::Rotate { dir, recorder, valid_days } => runtime()?.block_on(async {
            let db = recorder.store.open().await?;
            let rotation =
                orders::rotate_keys(&db, &KeyStore::new(&dir), valid_days, &recorder.actor(now), |device, issued| {
                    print_issued(issued, device);
                })
                .await?;
            println!(
                "rotated order-signing key {} → {} ({} devices get a key-rotation order signed by the old key; the old public key is kept as retired)\nnew public key: {}",
                hex::encode(&rotation.old.key_id()),
                hex::encode(&rotation.new.key_id()),
                rotation.queued,
                hex::encode(&rotation.new.public_key())
            );
            Ok(())
        }),
    }
}

/// `cpe-provision case …`.
pub fn case(command: CaseCommand, now: OffsetDateTime) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            CaseCommand::Open { device, fact, recorder } => {
                let db = recorder.store.open().await?;
                let id = cases::open(&db, &device, &fact, &recorder.actor(now)).await?;
                println!("opened case {id} for {device}; next: `cpe-provision case hearing --case {id} --summary \"…\"`");
            }
            CaseCommand::Hearing { case_id, summary, skip_urgent, justification, recorder } => {
                let db = recorder.store.open().await?;
                // clap: --skip-urgent and --justification require each other and exclude --summary.
                let hearing = match (skip_urgent, justification) {
                    (true, Some(j)) => Hearing::SkippedUrgent(j),
                    _ => Hearing::Held(summary.unwrap_or_default()),
                };
                let step = cases::hear(&db, case_id, hearing, &recorder.actor(now)).await?;
                println!("case {case_id}: {step} recorded; next: `cpe-provision case report --case {case_id} --to \"platform operator\" --text \"…\"`");
            }
            CaseCommand::Report { case_id, to, text, recorder } => {
                let db = recorder.store.open().await?;
                cases::report(&db, case_id, &to, &text, &recorder.actor(now)).await?;
                println!("case {case_id}: report recorded; next: `cpe-provision case recommend --case {case_id} --deadline RFC3339 --text \"…\"`");
            }
            CaseCommand::Recommend { case_id, deadline, text, text_ja, text_en, signing, recorder } => {
                let db = recorder.store.open().await?;
                let text = ReasonText { both: text, ja: text_ja, en: text_en };
                let (case, issued) =
                    cases::recommend(&db, case_id, deadline, &text, &signing.signing(), &recorder.actor(now)).await?;
                println!(
                    "case {case_id}: corrective recommendation recorded, deadline {}",
                    rfc3339_ms(unix_ms(deadline))
                );
                print_issued(&issued, &case.case.device_id);
            }
            CaseCommand::Check { case_id, corrected, note, recorder } => {
                let db = recorder.store.open().await?;
                let corrected = corrected == "yes";
                cases::check(&db, case_id, corrected, &note, &recorder.actor(now)).await?;
                if corrected {
                    println!("case {case_id}: correction confirmed; lift the notice or suspension with `cpe-provision order resume --device ID`");
                } else {
                    println!("case {case_id}: not corrected; a stop is now possible with `cpe-provision order stop --device ID --reason \"…\"`");
                }
            }
            CaseCommand::Show { case_id, viewer } => {
                let db = viewer.store.open().await?;
                print!("{}", views::render_case(&cases::load(&db, case_id).await?, viewer.json));
            }
        }
        Ok(())
    })
}

/// `cpe-provision order …`.
pub fn order(command: OrderCommand, now: OffsetDateTime) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            OrderCommand::Stop { device, reason, urgent, justification, signing, recorder } => {
                let db = recorder.store.open().await?;
                let urgent_justification = if urgent { justification } else { None };
                let issued = orders::stop(
                    &db,
                    &device,
                    &reason.text(),
                    urgent_justification,
                    &signing.signing(),
                    &recorder.actor(now),
                )
                .await?;
                print_issued(&issued, &device);
            }
            OrderCommand::Resume { device, reason, justification, signing, recorder } => {
                let db = recorder.store.open().await?;
                let (case_id, issued) = orders::resume(
                    &db,
                    &device,
                    &reason.text(),
                    justification,
                    &signing.signing(),
                    &recorder.actor(now),
                )
                .await?;
                print_issued(&issued, &device);
                println!("case {case_id} is closed");
            }
            OrderCommand::Drill { device, reason, signing, recorder } => {
                let db = recorder.store.open().await?;
                let issued =
                    orders::drill(&db, &device, &reason.text(), &signing.signing(), &recorder.actor(now))
                        .await?;
                print_issued(&issued, &device);
            }
            OrderCommand::List { device, limit, viewer } => {
                let db = viewer.store.open().await?;
                print!("{}", views::render_orders(&db.orders(device.as_deref(), limit).await?, viewer.json));
            }
            OrderCommand::Verify { id, keys, viewer } => {
                let db = viewer.store.open().await?;
                let checks = reverify::verify_stored(&db, id, &KeyStore::new(&keys)).await?;
                print!("{}", views::render_audit(id, &checks, viewer.json));
                if checks.iter().any(|c| c.result == "failed") {
                    bail!("order {id} did not verify; see the failed checks above");
                }
            }
            OrderCommand::Show { id, viewer } => {
                let db = viewer.store.open().await?;
                print!("{}", views::render_order(&orders::load(&db, id).await?, viewer.json));
            }
        }
        Ok(())
    })
}

/// `cpe-provision incidents --device ID`.
pub fn incidents(device: &str, limit: u32, viewer: &Viewer) -> Result<()> {
    runtime()?.block_on(async {
        let db = viewer.store.open().await?;
        print!("{}", views::render_incidents(&devices::incidents(&db, device, limit).await?, viewer.json));
        Ok(())
    })
}
