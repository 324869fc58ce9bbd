//! The compliance commands of `cpe-provision` (guideline §2.2, issue 6) and
//! the incident list (issue 4): `keys`, `case`, `order`, `incidents`.
//! Parsing, checking the flow rules of [`cpe_provision::compliance`] against
//! the stored trail, and printing; storage and signing are in the library.
//!
//! Every refusal exits with status 1 and says why and what to run instead.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cpe_protocol::order::{Order, OrderKind, ORDER_VERSION};
use cpe_provision::compliance::flow::{self as compliance, Step};
use cpe_provision::compliance::order_keys::{order_signer, KeyStore, OrderSigningKey};
use cpe_provision::store::orders::target_of;
use cpe_provision::store::{CaseDetail, Database, DbError, IssuedOrder, NewCaseEvent, NewOrder};
use time::OffsetDateTime;

use super::support::{open_database, parse_time, runtime, DEFAULT_DATABASE};
use super::views;

/// Default validity of an order, days: long enough for a device that is
/// offline over a long weekend, short enough that a lost order dies.
pub const DEFAULT_ORDER_DAYS: u32 = 7;

/// Default validity of key-rotation orders, days: a device that is offline
/// for long must still be able to apply the rotation, or it could verify no
/// later order (a late rotation is harmless: it only adds the new key and
/// retires the old one, and its sequence number stops replays).
pub const ROTATION_ORDER_DAYS: u32 = 365;

/// How far before "now" an order becomes valid, seconds, so that a device
/// whose trusted clock is a little behind still accepts it.
const NOT_BEFORE_BACKDATE_S: i64 = 300;

/// Store and operator of a command that records something.
#[derive(Debug, Args)]
pub struct Recorder {
    /// Store (same as `serve --database`).
    #[arg(long, env = "CPE_DATABASE", default_value = DEFAULT_DATABASE)]
    database: String,
    /// Who takes this step (recorded in the trail; default: $USER).
    #[arg(long, env = "USER", value_name = "NAME")]
    operator: String,
}

/// Store and output format of a read-only command.
#[derive(Debug, Args)]
pub struct Viewer {
    /// Store (same as `serve --database`).
    #[arg(long, env = "CPE_DATABASE", default_value = DEFAULT_DATABASE)]
    database: String,
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
    fn texts(&self, default: Option<(&str, &str)>) -> Result<(String, String)> {
        let ja = self.reason_ja.clone().or_else(|| self.reason.clone()).or(default.map(|d| d.0.to_owned()));
        let en = self.reason_en.clone().or_else(|| self.reason.clone()).or(default.map(|d| d.1.to_owned()));
        match (ja, en) {
            (Some(ja), Some(en)) if !ja.trim().is_empty() && !en.trim().is_empty() => Ok((ja, en)),
            _ => bail!("give the reason shown on the device: --reason \"…\" (both languages), or both --reason-ja and --reason-en"),
        }
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

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

async fn open(database: &str) -> Result<Database> {
    open_database(database).await
}

fn unknown_device(e: DbError) -> anyhow::Error {
    match e {
        DbError::UnknownDevice(device) => anyhow::anyhow!(
            "no device {device:?}: it has never reported to this carrier server; list them with `cpe-provision devices`"
        ),
        other => other.into(),
    }
}

fn event(step: Step, recorder: &Recorder, text: &str, now: OffsetDateTime) -> NewCaseEvent {
    NewCaseEvent {
        step,
        operator: recorder.operator.clone(),
        text: text.to_owned(),
        deadline_ms: None,
        corrected: None,
        justification: None,
        recipient: None,
        at_ms: unix_ms(now),
    }
}

async fn load_case(db: &Database, case_id: u64) -> Result<CaseDetail> {
    db.case(case_id).await?.with_context(|| {
        format!("no case {case_id}; open one with `cpe-provision case open --device ID --fact \"…\"`")
    })
}

async fn device_case(db: &Database, device: &str) -> Result<CaseDetail> {
    db.latest_case(device).await?.with_context(|| {
        format!("no compliance case for {device}; open one first with `cpe-provision case open --device {device} --fact \"…\"`")
    })
}

/// What an order says, before the store gives it an id and sequence.
struct OrderSpec<'a> {
    device: &'a str,
    case_id: Option<u64>,
    kind: OrderKind,
    reason: (String, String),
    deadline: Option<i64>,
    justification: Option<String>,
    valid_days: u32,
}

async fn issue(
    db: &Database,
    key: OrderSigningKey,
    spec: OrderSpec<'_>,
    operator: &str,
    event: Option<NewCaseEvent>,
    now: OffsetDateTime,
) -> Result<IssuedOrder> {
    let issued_at = now.unix_timestamp();
    let expires_at = issued_at.saturating_add(i64::from(spec.valid_days) * 86_400);
    let template = Order {
        version: ORDER_VERSION,
        id: 0,
        target: target_of(spec.device),
        kind: spec.kind,
        sequence: 0,
        issued_at,
        not_before: issued_at - NOT_BEFORE_BACKDATE_S,
        expires_at,
        reason_ja: spec.reason.0,
        reason_en: spec.reason.1,
        deadline: spec.deadline,
    };
    let new = NewOrder {
        order: template,
        case_id: spec.case_id,
        operator: operator.to_owned(),
        justification: spec.justification,
        now_ms: unix_ms(now),
    };
    db.issue_order(new, event, order_signer(key)).await.map_err(unknown_device)
}

fn print_issued(issued: &IssuedOrder, label: &str, device: &str) {
    println!(
        "queued {label} order {} (sequence {}) for {device} as command {}; it is delivered on the device's next poll (follow it with `cpe-provision order show {}`)",
        issued.order_id, issued.sequence, issued.command_id, issued.order_id
    );
}

/// `cpe-provision keys …`.
pub fn keys(command: KeysCommand, now: OffsetDateTime) -> Result<()> {
    match command {
        KeysCommand::Init { dir } => {
            let key = KeyStore::new(&dir).init()?;
            println!(
                "created order-signing key {} in {}\npublic key (provision devices with it): {}",
                cpe_provision::compliance::order_keys::hex(&key.key_id()),
                dir.display(),
                cpe_provision::compliance::order_keys::hex(&key.public_key())
            );
            Ok(())
        }
        KeysCommand::Show { dir, json } => {
            print!("{}", views::render_keys(&KeyStore::new(&dir).list()?, json));
            Ok(())
        }
        KeysCommand::Rotate { dir, recorder, valid_days } => runtime()?.block_on(async {
            let db = open(&recorder.database).await?;
            let store = KeyStore::new(&dir);
            let devices = db.devices().await?;
            let (old, new) = store.begin_rotation()?;
            let mut queued = 0usize;
            for device in &devices {
                let key = OrderSigningKey::from_pkcs8(old.pkcs8_der())?;
                let spec = OrderSpec {
                    device: &device.id,
                    case_id: None,
                    kind: OrderKind::KeyRotation { new_key: new.public_key(), retire: vec![old.key_id()] },
                    reason: ("命令署名鍵の更新".into(), "order-signing key rotation".into()),
                    deadline: None,
                    justification: None,
                    valid_days,
                };
                let issued = issue(&db, key, spec, &recorder.operator, None, now).await.with_context(|| {
                    format!("queuing the rotation for {} failed after {queued} of {} devices; the rotation is unfinished (see `cpe-provision order list`)", device.id, devices.len())
                })?;
                print_issued(&issued, "key-rotation", &device.id);
                queued += 1;
            }
            store.finish_rotation(&new)?;
            println!(
                "rotated order-signing key {} → {} ({queued} devices get a key-rotation order signed by the old key; the old public key is kept as retired)\nnew public key: {}",
                cpe_provision::compliance::order_keys::hex(&old.key_id()),
                cpe_provision::compliance::order_keys::hex(&new.key_id()),
                cpe_provision::compliance::order_keys::hex(&new.public_key())
            );
            Ok(())
        }),
    }
}

/// `cpe-provision case …`.
#[allow(clippy::too_many_lines)]
pub fn case(command: CaseCommand, now: OffsetDateTime) -> Result<()> {
    let now_ms = unix_ms(now);
    runtime()?.block_on(async {
        match command {
            CaseCommand::Open { device, fact, recorder } => {
                let db = open(&recorder.database).await?;
                if let Some(previous) = db.latest_case(&device).await? {
                    let state = compliance::CaseState::of(&previous.trail());
                    if !state.closed() {
                        bail!(
                            "{device} already has open case {} ({}); continue it (`cpe-provision case show {}`)",
                            previous.case.id,
                            state.label(),
                            previous.case.id
                        );
                    }
                }
                let id = db.open_case(&device, event(Step::Fact, &recorder, &fact, now)).await.map_err(unknown_device)?;
                println!("opened case {id} for {device}; next: `cpe-provision case hearing --case {id} --summary \"…\"`");
            }
            CaseCommand::Hearing { case_id, summary, skip_urgent, justification, recorder } => {
                let db = open(&recorder.database).await?;
                compliance::may_hear(&load_case(&db, case_id).await?.trail())?;
                let (step, text) = if skip_urgent {
                    (Step::HearingSkipped, "hearing skipped: urgent".to_owned())
                } else {
                    (Step::Hearing, summary.unwrap_or_default())
                };
                if let Some(j) = &justification {
                    if j.trim().is_empty() {
                        return Err(compliance::Refusal::EmptyJustification.into());
                    }
                }
                let mut e = event(step, &recorder, &text, now);
                e.justification = justification;
                db.add_case_event(case_id, e).await?;
                println!("case {case_id}: {step} recorded; next: `cpe-provision case report --case {case_id} --to \"platform operator\" --text \"…\"`");
            }
            CaseCommand::Report { case_id, to, text, recorder } => {
                let db = open(&recorder.database).await?;
                compliance::may_report(&load_case(&db, case_id).await?.trail())?;
                let mut e = event(Step::Report, &recorder, &text, now);
                e.recipient = Some(to);
                db.add_case_event(case_id, e).await?;
                println!("case {case_id}: report recorded; next: `cpe-provision case recommend --case {case_id} --deadline RFC3339 --text \"…\"`");
            }
            CaseCommand::Recommend { case_id, deadline, text, text_ja, text_en, signing, recorder } => {
                let db = open(&recorder.database).await?;
                let case = load_case(&db, case_id).await?;
                let deadline_ms = unix_ms(deadline);
                compliance::may_recommend(&case.trail(), deadline_ms, now_ms)?;
                let reason = ReasonArgs { reason: text, reason_ja: text_ja, reason_en: text_en }.texts(None).map_err(|_| {
                    anyhow::anyhow!("give the recommendation: --text \"…\" (both languages), or both --text-ja and --text-en")
                })?;
                let key = KeyStore::new(&signing.keys).current()?;
                let mut e = event(Step::Recommend, &recorder, &reason.1, now);
                e.deadline_ms = Some(deadline_ms);
                let spec = OrderSpec {
                    device: &case.case.device_id,
                    case_id: Some(case_id),
                    kind: OrderKind::Notice,
                    reason,
                    deadline: Some(deadline.unix_timestamp()),
                    justification: None,
                    valid_days: signing.valid_days,
                };
                let issued = issue(&db, key, spec, &recorder.operator, Some(e), now).await?;
                println!(
                    "case {case_id}: corrective recommendation recorded, deadline {}",
                    cpe_provision::clock::rfc3339_ms(deadline_ms)
                );
                print_issued(&issued, "notice", &case.case.device_id);
            }
            CaseCommand::Check { case_id, corrected, note, recorder } => {
                let db = open(&recorder.database).await?;
                let corrected = corrected == "yes";
                compliance::may_check(&load_case(&db, case_id).await?.trail(), corrected, now_ms)?;
                let mut e = event(Step::Check, &recorder, &note, now);
                e.corrected = Some(corrected);
                db.add_case_event(case_id, e).await?;
                if corrected {
                    println!("case {case_id}: correction confirmed; lift the notice or suspension with `cpe-provision order resume --device ID`");
                } else {
                    println!("case {case_id}: not corrected; a stop is now possible with `cpe-provision order stop --device ID --reason \"…\"`");
                }
            }
            CaseCommand::Show { case_id, viewer } => {
                let db = open(&viewer.database).await?;
                print!("{}", views::render_case(&load_case(&db, case_id).await?, viewer.json));
            }
        }
        Ok(())
    })
}

/// `cpe-provision order …`.
pub fn order(command: OrderCommand, now: OffsetDateTime) -> Result<()> {
    let now_ms = unix_ms(now);
    runtime()?.block_on(async {
        match command {
            OrderCommand::Stop { device, reason, urgent, justification, signing, recorder } => {
                let db = open(&recorder.database).await?;
                let case = device_case(&db, &device).await?;
                let urgent_justification = if urgent { justification.as_deref() } else { None };
                compliance::may_stop(&case.trail(), now_ms, urgent_justification)?;
                let reason = reason.texts(None)?;
                let key = KeyStore::new(&signing.keys).current()?;
                let mut e = event(Step::Stop, &recorder, &reason.1, now);
                e.justification.clone_from(&justification);
                let spec = OrderSpec {
                    device: &device,
                    case_id: Some(case.case.id),
                    kind: OrderKind::Stop,
                    reason,
                    deadline: None,
                    justification,
                    valid_days: signing.valid_days,
                };
                let issued = issue(&db, key, spec, &recorder.operator, Some(e), now).await?;
                print_issued(&issued, "stop", &device);
            }
            OrderCommand::Resume { device, reason, justification, signing, recorder } => {
                let db = open(&recorder.database).await?;
                let case = device_case(&db, &device).await?;
                compliance::may_resume(&case.trail(), justification.as_deref())?;
                let reason = reason.texts(Some((
                    "是正が確認されたため、サービスを再開しました",
                    "service resumed: the correction was confirmed",
                )))?;
                let key = KeyStore::new(&signing.keys).current()?;
                let mut e = event(Step::Resume, &recorder, &reason.1, now);
                e.justification.clone_from(&justification);
                let spec = OrderSpec {
                    device: &device,
                    case_id: Some(case.case.id),
                    kind: OrderKind::Resume,
                    reason,
                    deadline: None,
                    justification,
                    valid_days: signing.valid_days,
                };
                let issued = issue(&db, key, spec, &recorder.operator, Some(e), now).await?;
                print_issued(&issued, "resume", &device);
                println!("case {} is closed", case.case.id);
            }
            OrderCommand::Drill { device, reason, signing, recorder } => {
                let db = open(&recorder.database).await?;
                let reason = reason.texts(Some((
                    "停止訓練です（実際の通信は止まっていません）",
                    "suspension drill: no traffic is blocked",
                )))?;
                let key = KeyStore::new(&signing.keys).current()?;
                let spec = OrderSpec {
                    device: &device,
                    case_id: None,
                    kind: OrderKind::Drill,
                    reason,
                    deadline: None,
                    justification: None,
                    valid_days: signing.valid_days,
                };
                let issued = issue(&db, key, spec, &recorder.operator, None, now).await?;
                print_issued(&issued, "drill", &device);
            }
            OrderCommand::List { device, limit, viewer } => {
                let db = open(&viewer.database).await?;
                print!("{}", views::render_orders(&db.orders(device.as_deref(), limit).await?, viewer.json));
            }
            OrderCommand::Verify { id, keys, viewer } => {
                let db = open(&viewer.database).await?;
                let (Some(order), Some(evidence)) = (db.order(id).await?, db.order_evidence(id).await?)
                else {
                    bail!("no order {id}; list them with `cpe-provision order list`");
                };
                let checks = cpe_provision::compliance::reverify::audit_order(
                    &order,
                    &evidence,
                    &KeyStore::new(&keys).list()?,
                );
                print!("{}", views::render_audit(id, &checks, viewer.json));
                if checks.iter().any(|c| c.result == "failed") {
                    bail!("order {id} did not verify; see the failed checks above");
                }
            }
            OrderCommand::Show { id, viewer } => {
                let db = open(&viewer.database).await?;
                let Some(order) = db.order(id).await? else {
                    bail!("no order {id}; list them with `cpe-provision order list`");
                };
                print!("{}", views::render_order(&order, viewer.json));
            }
        }
        Ok(())
    })
}

/// `cpe-provision incidents --device ID`.
pub fn incidents(device: &str, limit: u32, viewer: &Viewer) -> Result<()> {
    runtime()?.block_on(async {
        let db = open(&viewer.database).await?;
        if db.device(device).await?.is_none() {
            bail!("no device {device:?}; list them with `cpe-provision devices`");
        }
        print!("{}", views::render_incidents(&db.incidents(device, limit).await?, viewer.json));
        Ok(())
    })
}
