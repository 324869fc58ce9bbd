//! Storage of the §2.2 compliance flow: cases and their trail, signed orders
//! with their delivery and the devices' receipts, and the devices' incident
//! records (self-diagnosis results).
//!
//! The SQL is in `store/sql.rs` and rows are read through `store/rows.rs`,
//! the same for both backends.
//!
//! [`Database::issue_order`] is one transaction: it locks the device, takes
//! the next per-device sequence number (`max + 1`; `UNIQUE (device_id,
//! sequence)` backs it), inserts the order, has the caller sign it with the
//! id and sequence it got, queues the signed order as a command and records
//! the case step, so an order is never half issued and sequence numbers are
//! strictly increasing per device, across processes.
//! [`Database::issue_case_order`] and [`Database::add_case_event_if`] also
//! lock the case and check the caller's [`CaseRule`] on the case as it
//! stands inside the transaction, so that a step the flow allows once
//! cannot be taken twice by two operators acting at once.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cpe_protocol::order::{Order, OrderTarget};
use cpe_protocol::receipt::{EnforcementReceipt, ReceiptClock, SignedReceipt};
use serde::Serialize;

use super::{id_u64, to_i64, Database, DbError};

/// How many orders [`super::DeviceDetail::recent_orders`] holds at most.
pub const DETAIL_ORDERS: u32 = 10;

/// One step of a case trail, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// ① The fact that opened the case.
    Fact,
    /// ② The hearing of the institution.
    Hearing,
    /// ② skipped because the matter is urgent (with a justification).
    HearingSkipped,
    /// ③ Report to the platform operator.
    Report,
    /// ④ Corrective recommendation with a deadline (a notice order goes to the device).
    Recommend,
    /// ⑤ Check whether the violation was corrected.
    Check,
    /// ⑥ A stop order was issued.
    Stop,
    /// The service was resumed (closes the case).
    Resume,
}

impl Step {
    /// Every step, in flow order.
    pub const ALL: [Self; 8] = [
        Self::Fact,
        Self::Hearing,
        Self::HearingSkipped,
        Self::Report,
        Self::Recommend,
        Self::Check,
        Self::Stop,
        Self::Resume,
    ];

    /// Stable lower-case name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fact => "fact",
            Self::Hearing => "hearing",
            Self::HearingSkipped => "hearing-skipped",
            Self::Report => "report",
            Self::Recommend => "recommend",
            Self::Check => "check",
            Self::Stop => "stop",
            Self::Resume => "resume",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown case step {s:?}"))
    }
}

/// A step to add to a case trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCaseEvent {
    /// The step.
    pub step: Step,
    /// Who (operator name).
    pub operator: String,
    /// Why / what: the fact, the hearing summary, the report, the recommendation, the reason.
    pub text: String,
    /// For a recommendation: the deadline, Unix ms.
    pub deadline_ms: Option<i64>,
    /// For a check: whether the violation was found corrected.
    pub corrected: Option<bool>,
    /// For urgent or justified steps: the justification.
    pub justification: Option<String>,
    /// For a report: to whom.
    pub recipient: Option<String>,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// A stored case step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseEventRow {
    /// Event id.
    pub id: u64,
    /// The step.
    pub step: Step,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub operator: String,
    /// What / why.
    pub text: String,
    /// Recommendation deadline, Unix ms.
    pub deadline_ms: Option<i64>,
    /// Check result.
    pub corrected: Option<bool>,
    /// Justification of an urgent or justified step.
    pub justification: Option<String>,
    /// Recipient of a report.
    pub recipient: Option<String>,
    /// The order this step issued.
    pub order_id: Option<u64>,
}

/// A case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseRow {
    /// Case id.
    pub id: u64,
    /// The device (institution) concerned.
    pub device_id: String,
    /// When opened, Unix ms.
    pub opened_at_ms: i64,
}

/// A case with its whole trail and its orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseDetail {
    /// The case.
    pub case: CaseRow,
    /// Its steps, oldest first.
    pub events: Vec<CaseEventRow>,
    /// Orders issued for it, oldest first.
    pub orders: Vec<OrderRow>,
}

/// An order to issue: the order as it will be signed (its `id` and
/// `sequence` are set by the issuing transaction) and the carrier's own
/// bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The order; `id` and `sequence` are overwritten.
    pub order: Order,
    /// The case it belongs to (none for key rotations).
    pub case_id: Option<u64>,
    /// Who issued it.
    pub operator: String,
    /// Justification (urgent stop, justified resume).
    pub justification: Option<String>,
    /// When, Unix ms.
    pub now_ms: i64,
}

impl NewOrder {
    /// The target device id, `<institution code>/<device>`.
    pub fn device_id(&self) -> String {
        format!("{}/{}", self.order.target.institution_code, self.order.target.device)
    }
}

/// What the signer returns for the id and sequence the transaction allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedForDevice {
    /// Signing key id, hex.
    pub key_id: String,
    /// The exact signed order bytes.
    pub order_bytes: Vec<u8>,
    /// `order::encode_signed(SignedOrder)`: what the device receives.
    pub signed: Vec<u8>,
    /// SHA-256 of `order_bytes` (what receipts quote).
    pub order_hash: [u8; 32],
}

/// Signs an order whose id and sequence number the issuing transaction has
/// just set. May be called again if the transaction is retried.
pub type OrderSigner = dyn Fn(&Order) -> Result<SignedForDevice, String> + Send + Sync;

/// Why a [`CaseRule`] refused; the store hands it back in [`DbError::Refused`].
pub type RuleRefusal = Box<dyn std::error::Error + Send + Sync>;

/// A rule checked inside a recording transaction on the case as it stands
/// there (its trail and orders); an `Err` rolls the transaction back.
pub type CaseRule = dyn Fn(&CaseDetail) -> Result<(), RuleRefusal> + Send + Sync;

/// What [`Database::issue_order`] allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IssuedOrder {
    /// Order id.
    pub order_id: u64,
    /// Per-device sequence number.
    pub sequence: u64,
    /// The command that carries it.
    pub command_id: u64,
    /// Its kind ([`cpe_protocol::order::OrderKind::name`]).
    pub kind: &'static str,
}

/// The decoded fields of a verified receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptFields {
    /// When the device applied it (its judgement time), Unix seconds.
    pub applied_at: i64,
    /// The device's raw clock then, Unix seconds.
    pub device_clock: i64,
    /// The device's trusted-time floor then, Unix seconds.
    pub time_floor: i64,
    /// `trusted` or `untrusted`.
    pub clock: String,
    /// Service state after applying (`normal`, `recommendation`, `suspended`, `drill`).
    pub resulting_state: String,
    /// A drill: nothing was blocked.
    pub drill: bool,
    /// TLS signature scheme code of the receipt signature.
    pub scheme: u16,
}

/// A stored order with its delivery and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    /// Order id.
    pub id: u64,
    /// Target device.
    pub device_id: String,
    /// Case, if any.
    pub case_id: Option<u64>,
    /// Carrying command.
    pub command_id: Option<u64>,
    /// Kind.
    pub kind: String,
    /// Sequence number.
    pub sequence: u64,
    /// Signing key id, hex.
    pub key_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Recommendation deadline, Unix seconds.
    pub deadline: Option<i64>,
    /// Reason, Japanese.
    pub reason_ja: String,
    /// Reason, English.
    pub reason_en: String,
    /// Who issued it.
    pub operator: String,
    /// Justification.
    pub justification: Option<String>,
    /// Queued at, Unix ms.
    pub created_at_ms: i64,
    /// SHA-256 of the signed order bytes.
    pub order_hash: Vec<u8>,
    /// Last handed to the device, Unix ms.
    pub delivered_at_ms: Option<i64>,
    /// How many times handed out.
    pub deliveries: u32,
    /// `applied` or `refused`, once acknowledged.
    pub outcome: Option<String>,
    /// Acknowledged at, Unix ms.
    pub outcome_at_ms: Option<i64>,
    /// The device's detail (refusal reason).
    pub detail: Option<String>,
    /// The verified receipt, for an applied order.
    pub receipt: Option<ReceiptFields>,
}

impl OrderRow {
    /// `queued` → `delivered` → `applied` (receipt verified) / `refused`.
    pub fn state(&self) -> &'static str {
        match (self.outcome.as_deref(), self.delivered_at_ms) {
            (Some("applied"), _) => "applied",
            (Some(_), _) => "refused",
            (None, Some(_)) => "delivered",
            (None, None) => "queued",
        }
    }

    /// The device an order is bound to, from its id `<code>/<device>`.
    pub fn target(&self) -> OrderTarget {
        target_of(&self.device_id)
    }
}

/// The order target for a device id `<institution code>/<device>`.
pub fn target_of(device_id: &str) -> OrderTarget {
    let (code, unit) = device_id.split_once('/').unwrap_or((device_id, ""));
    OrderTarget { institution_code: code.to_owned(), device: unit.to_owned() }
}

/// What the device said about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Applied, with its verified receipt.
    Applied {
        /// Decoded receipt.
        receipt: Box<EnforcementReceipt>,
        /// The receipt as received (kept for auditors).
        signed: SignedReceipt,
        /// The client certificate (DER) it was verified against (kept for auditors).
        cert_der: Vec<u8>,
    },
    /// Refused by the device.
    Refused,
}

/// What [`Database::record_order_ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRecorded {
    /// The command exists for this device.
    pub known: bool,
    /// This acknowledgement was the first (and is the one recorded).
    pub first: bool,
}

/// What an auditor needs to check an order again: the signed order as sent,
/// and the receipt as received with the certificate it was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvidence {
    /// `order::encode_signed(SignedOrder)`, as the device received it.
    pub signed: Vec<u8>,
    /// The device's receipt, if the order was applied.
    pub receipt: Option<SignedReceipt>,
    /// The device certificate (DER) of the connection that brought the receipt.
    pub receipt_cert: Option<Vec<u8>>,
}

/// A stored incident record (a self-diagnosis result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentRow {
    /// Record sequence number.
    pub seq: u64,
    /// Diagnosis id.
    pub incident_id: String,
    /// The remote-diagnosis command that asked for it.
    pub command_id: Option<u64>,
    /// Verdict segment.
    pub segment: String,
    /// Verdict summary.
    pub summary: String,
    /// The whole diagnosis report (JSON text).
    pub report_json: String,
    /// Device clock, Unix ms.
    pub recorded_at_ms: i64,
    /// Server clock, Unix ms.
    pub received_at_ms: i64,
}

/// The columns an issued order gets once signed: the signer's output and
/// the command the device receives.
pub(crate) struct SignedColumns {
    pub signed: SignedForDevice,
    pub command_body: Vec<u8>,
    pub command_kind: String,
}

/// Signs the order with id `id` and sequence `sequence`, and prepares its command.
pub(crate) fn sign_columns(
    sign: &OrderSigner,
    new: &NewOrder,
    id: i64,
    sequence: i64,
) -> Result<SignedColumns, DbError> {
    let mut order = new.order.clone();
    order.id = id_u64(id);
    order.sequence = id_u64(sequence);
    let signed = sign(&order).map_err(DbError::Signing)?;
    let command_body =
        postcard::to_stdvec(&cpe_protocol::CommandKind::Order { signed: signed.signed.clone() })
            .map_err(|e| DbError::Signing(e.to_string()))?;
    Ok(SignedColumns { signed, command_body, command_kind: format!("order:{}", order.kind.name()) })
}

/// An acknowledgement ready to store: the columns of [`super::sql::RECORD_OUTCOME`].
#[derive(Debug, Clone)]
pub(crate) struct StoredAck {
    pub device_id: String,
    pub command_id: i64,
    pub ok: bool,
    pub detail: String,
    pub now_ms: i64,
    pub outcome: &'static str,
    pub receipt_bytes: Option<Vec<u8>>,
    pub scheme: Option<i64>,
    pub signature: Option<Vec<u8>>,
    pub applied_at: Option<i64>,
    pub device_clock: Option<i64>,
    pub time_floor: Option<i64>,
    pub clock: Option<&'static str>,
    pub resulting_state: Option<&'static str>,
    pub drill: Option<bool>,
    pub cert: Option<Vec<u8>>,
}

impl StoredAck {
    /// `devices.suspension` after this order (given its id): `None` for normal service.
    pub fn service_state(&self, order_id: i64) -> Option<String> {
        match self.resulting_state {
            Some("normal") | None => None,
            Some(state) => Some(format!("{state} (order {order_id})")),
        }
    }
}

impl Database {
    /// Opens a case for a device (§2.2 ①) with its fact; returns the case id.
    /// Fails with [`DbError::UnknownDevice`] if the device has never reported.
    pub async fn open_case(&self, device_id: &str, fact: NewCaseEvent) -> Result<u64, DbError> {
        dispatch!(self, db => db.open_case(device_id.to_owned(), fact, None).await)
    }

    /// [`Self::open_case`] if `rule` allows it on the device's latest case
    /// (if it has one) as it stands inside the transaction (the device is
    /// locked); a refusal is [`DbError::Refused`] and nothing is stored.
    pub async fn open_case_if(
        &self,
        device_id: &str,
        fact: NewCaseEvent,
        rule: Arc<CaseRule>,
    ) -> Result<u64, DbError> {
        dispatch!(self, db => db.open_case(device_id.to_owned(), fact, Some(rule)).await)
    }

    /// Adds a step to a case; returns the event id, or `None` if there is no such case.
    pub async fn add_case_event(&self, case_id: u64, event: NewCaseEvent) -> Result<Option<u64>, DbError> {
        let case_id = to_i64("case id", case_id)?;
        dispatch!(self, db => db.add_case_event(case_id, event, None).await)
    }

    /// [`Self::add_case_event`] if `rule` allows it on the case as it stands
    /// inside the transaction (the case is locked); a refusal is
    /// [`DbError::Refused`] and nothing is stored.
    pub async fn add_case_event_if(
        &self,
        case_id: u64,
        event: NewCaseEvent,
        rule: Arc<CaseRule>,
    ) -> Result<Option<u64>, DbError> {
        let case_id = to_i64("case id", case_id)?;
        dispatch!(self, db => db.add_case_event(case_id, event, Some(rule)).await)
    }

    /// A case with its trail and orders.
    pub async fn case(&self, case_id: u64) -> Result<Option<CaseDetail>, DbError> {
        let Ok(case_id) = i64::try_from(case_id) else { return Ok(None) };
        dispatch!(self, db => db.case(case_id).await)
    }

    /// The device's most recent case, with its trail.
    pub async fn latest_case(&self, device_id: &str) -> Result<Option<CaseDetail>, DbError> {
        let id = dispatch!(self, db => db.latest_case(device_id.to_owned()).await)?;
        match id {
            Some(id) => dispatch!(self, db => db.case(id).await),
            None => Ok(None),
        }
    }

    /// Issues an order in one transaction (see the module documentation):
    /// allocates its id and the device's next sequence number, signs it with
    /// `sign`, queues it as a command and records `event` on its case.
    pub async fn issue_order(
        &self,
        order: NewOrder,
        event: Option<NewCaseEvent>,
        sign: Arc<OrderSigner>,
    ) -> Result<IssuedOrder, DbError> {
        self.issue(order, event, sign, None).await
    }

    /// [`Self::issue_order`] for an order of a case, if `rule` allows it on
    /// the case as it stands inside the issuing transaction (device and case
    /// locked); a refusal is [`DbError::Refused`] and nothing is stored.
    pub async fn issue_case_order(
        &self,
        order: NewOrder,
        event: Option<NewCaseEvent>,
        sign: Arc<OrderSigner>,
        rule: Arc<CaseRule>,
    ) -> Result<IssuedOrder, DbError> {
        self.issue(order, event, sign, Some(rule)).await
    }

    async fn issue(
        &self,
        order: NewOrder,
        event: Option<NewCaseEvent>,
        sign: Arc<OrderSigner>,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<IssuedOrder, DbError> {
        let device_id = order.device_id();
        let issued = dispatch!(self, db => db.issue_order(order, event, sign, rule).await)?;
        self.note_command_queued(&device_id).await;
        Ok(issued)
    }

    /// Orders, newest first: of one device, or of all; at most `limit`.
    pub async fn orders(&self, device_id: Option<&str>, limit: u32) -> Result<Vec<OrderRow>, DbError> {
        dispatch!(self, db => db.orders(device_id.map(str::to_owned), limit).await)
    }

    /// One order.
    pub async fn order(&self, id: u64) -> Result<Option<OrderRow>, DbError> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        dispatch!(self, db => db.order(id).await)
    }

    /// The order a command of this device carries, if it carries one.
    pub async fn order_by_command(
        &self,
        device_id: &str,
        command_id: u64,
    ) -> Result<Option<OrderRow>, DbError> {
        let Ok(command_id) = i64::try_from(command_id) else { return Ok(None) };
        dispatch!(self, db => db.order_by_command(device_id.to_owned(), command_id).await)
    }

    /// Records the device's acknowledgement of an order command, in one
    /// transaction: the command's acknowledgement, the order's outcome (with
    /// the verified receipt when applied) and, when this is the device's
    /// newest applied order, its service state. A repeated acknowledgement
    /// keeps the first.
    pub async fn record_order_ack(
        &self,
        device_id: &str,
        command_id: u64,
        detail: &str,
        outcome: OrderOutcome,
        now_ms: i64,
    ) -> Result<AckRecorded, DbError> {
        let Ok(command_id) = i64::try_from(command_id) else {
            return Ok(AckRecorded { known: false, first: false });
        };
        let mut ack = StoredAck {
            device_id: device_id.to_owned(),
            command_id,
            ok: matches!(outcome, OrderOutcome::Applied { .. }),
            detail: detail.to_owned(),
            now_ms,
            outcome: "refused",
            receipt_bytes: None,
            scheme: None,
            signature: None,
            applied_at: None,
            device_clock: None,
            time_floor: None,
            clock: None,
            resulting_state: None,
            drill: None,
            cert: None,
        };
        if let OrderOutcome::Applied { receipt, signed, cert_der } = outcome {
            ack.cert = Some(cert_der);
            ack.outcome = "applied";
            ack.receipt_bytes = Some(signed.receipt_bytes);
            ack.scheme = Some(i64::from(signed.scheme));
            ack.signature = Some(signed.signature);
            ack.applied_at = Some(receipt.applied_at);
            ack.device_clock = Some(receipt.device_clock);
            ack.time_floor = Some(receipt.time_floor);
            ack.clock = Some(match receipt.clock {
                ReceiptClock::Trusted => "trusted",
                ReceiptClock::Untrusted => "untrusted",
            });
            ack.resulting_state = Some(receipt.resulting_state.as_str());
            ack.drill = Some(receipt.drill);
        }
        dispatch!(self, db => db.record_order_ack(ack).await)
    }

    /// The signed order and its receipt evidence, for an audit.
    pub async fn order_evidence(&self, id: u64) -> Result<Option<OrderEvidence>, DbError> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        dispatch!(self, db => db.order_evidence(id).await)
    }

    /// Incident records of a device, newest first, at most `limit`.
    pub async fn incidents(&self, device_id: &str, limit: u32) -> Result<Vec<IncidentRow>, DbError> {
        dispatch!(self, db => db.incidents(device_id.to_owned(), limit).await)
    }
}
