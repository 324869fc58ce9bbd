//! Storage of the §2.2 compliance flow: cases and their trail, signed orders
//! with their delivery and the devices' receipts, and the devices' incident
//! records (self-diagnosis results).
//!
//! The SQL is written once (SQLite `?N` placeholders; `pg_sql` turns them
//! into PostgreSQL's `$N`) and rows are read through `Cols`, implemented
//! for both backends' row types, so both backends store and return exactly
//! the same thing.
//!
//! [`Database::issue_order`] is one transaction: it locks the device, takes
//! the next per-device sequence number (`max + 1`; `UNIQUE (device_id,
//! sequence)` backs it), inserts the order, has the caller sign it with the
//! id and sequence it got, queues the signed order as a command and records
//! the case step, so an order is never half issued and sequence numbers are
//! strictly increasing per device, across processes.

use cpe_protocol::order::{Order, OrderKind, OrderTarget};
use cpe_protocol::receipt::{EnforcementReceipt, ReceiptClock, SignedReceipt};
use serde::Serialize;

use super::{to_i64, Database, DbError};
use crate::compliance::flow::{Step, Trail, TrailEvent};

/// How many orders [`super::DeviceDetail::recent_orders`] holds at most.
pub const DETAIL_ORDERS: u32 = 10;

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

impl CaseDetail {
    /// The trail the flow rules judge.
    pub fn trail(&self) -> Trail {
        Trail {
            case_id: self.case.id,
            events: self
                .events
                .iter()
                .map(|e| TrailEvent {
                    step: e.step,
                    at_ms: e.at_ms,
                    deadline_ms: e.deadline_ms,
                    corrected: e.corrected,
                })
                .collect(),
        }
    }
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

/// Stable name of an order kind, as stored and printed.
pub fn kind_label(kind: &OrderKind) -> &'static str {
    match kind {
        OrderKind::Stop => "stop",
        OrderKind::Resume => "resume",
        OrderKind::Notice => "notice",
        OrderKind::KeyRotation { .. } => "key-rotation",
        OrderKind::Drill => "drill",
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
}

/// Signs an order whose id and sequence number the issuing transaction has
/// just set. May be called again if the transaction is retried.
pub type OrderSigner = dyn Fn(&Order) -> Result<SignedForDevice, String> + Send + Sync;

/// What [`Database::issue_order`] allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IssuedOrder {
    /// Order id.
    pub order_id: u64,
    /// Per-device sequence number.
    pub sequence: u64,
    /// The command that carries it.
    pub command_id: u64,
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

pub(crate) fn evidence_row(r: &impl Cols) -> Result<OrderEvidence, DbError> {
    let receipt = match (r.opt_bytes_at(1)?, r.opt_i64_at(2)?, r.opt_bytes_at(3)?) {
        (Some(receipt_bytes), Some(scheme), Some(signature)) => Some(SignedReceipt {
            receipt_bytes,
            scheme: u16::try_from(scheme).unwrap_or_default(),
            signature,
        }),
        _ => None,
    };
    Ok(OrderEvidence { signed: r.bytes_at(0)?, receipt, receipt_cert: r.opt_bytes_at(4)? })
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

/// Reads typed columns from either backend's row.
pub(crate) trait Cols {
    fn i64_at(&self, i: usize) -> Result<i64, DbError>;
    fn opt_i64_at(&self, i: usize) -> Result<Option<i64>, DbError>;
    fn str_at(&self, i: usize) -> Result<String, DbError>;
    fn opt_str_at(&self, i: usize) -> Result<Option<String>, DbError>;
    fn opt_bool_at(&self, i: usize) -> Result<Option<bool>, DbError>;
    fn bytes_at(&self, i: usize) -> Result<Vec<u8>, DbError>;
    fn opt_bytes_at(&self, i: usize) -> Result<Option<Vec<u8>>, DbError>;
}

/// Implements [`Cols`] for a backend's row type with its fallible getter.
macro_rules! impl_cols {
    ($row:ty, $get:ident) => {
        impl Cols for $row {
            fn i64_at(&self, i: usize) -> Result<i64, DbError> {
                Ok(self.$get(i)?)
            }
            fn opt_i64_at(&self, i: usize) -> Result<Option<i64>, DbError> {
                Ok(self.$get(i)?)
            }
            fn str_at(&self, i: usize) -> Result<String, DbError> {
                Ok(self.$get(i)?)
            }
            fn opt_str_at(&self, i: usize) -> Result<Option<String>, DbError> {
                Ok(self.$get(i)?)
            }
            fn opt_bool_at(&self, i: usize) -> Result<Option<bool>, DbError> {
                Ok(self.$get(i)?)
            }
            fn bytes_at(&self, i: usize) -> Result<Vec<u8>, DbError> {
                Ok(self.$get(i)?)
            }
            fn opt_bytes_at(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
                Ok(self.$get(i)?)
            }
        }
    };
}

impl_cols!(rusqlite::Row<'_>, get);
impl_cols!(tokio_postgres::Row, try_get);

/// The statement in PostgreSQL's placeholder syntax (`?N` → `$N`).
pub(crate) fn pg_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

fn id_u64(v: i64) -> u64 {
    // Identity columns and CHECKed sequence numbers are never negative.
    u64::try_from(v).unwrap_or_default()
}

fn opt_id(v: Option<i64>) -> Option<u64> {
    v.map(id_u64)
}

pub(crate) const CASE_SELECT: &str = "SELECT id, device_id, opened_at_ms FROM cases WHERE id = ?1";
pub(crate) const LATEST_CASE: &str = "SELECT max(id) FROM cases WHERE device_id = ?1";
pub(crate) const INSERT_CASE: &str = "INSERT INTO cases (device_id, opened_at_ms)
    SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1) RETURNING id";
pub(crate) const CASE_EXISTS: &str = "SELECT 1 FROM cases WHERE id = ?1";
pub(crate) const INSERT_EVENT: &str = "INSERT INTO case_events
    (case_id, step, at_ms, operator, text, deadline_ms, corrected, justification, recipient, order_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id";
pub(crate) const EVENTS_SELECT: &str = "SELECT id, step, at_ms, operator, text, deadline_ms, corrected,
    justification, recipient, order_id FROM case_events WHERE case_id = ?1 ORDER BY id";
pub(crate) const ORDER_SELECT: &str = "SELECT o.id, o.device_id, o.case_id, o.command_id, o.kind, o.sequence,
    o.key_id, o.issued_at, o.not_before, o.expires_at, o.deadline, o.reason_ja, o.reason_en, o.operator,
    o.justification, o.created_at_ms, o.order_hash, c.delivered_at_ms, CAST(coalesce(c.deliveries, 0) AS BIGINT),
    o.outcome, o.outcome_at_ms, o.detail, o.applied_at, o.device_clock, o.time_floor, o.clock,
    o.resulting_state, o.drill, o.receipt_scheme
    FROM orders o LEFT JOIN commands c ON c.id = o.command_id";
pub(crate) const NEXT_SEQUENCE: &str =
    "SELECT coalesce(max(sequence), 0) + 1 FROM orders WHERE device_id = ?1";
pub(crate) const INSERT_ORDER: &str =
    "INSERT INTO orders (device_id, case_id, kind, sequence, key_id, issued_at,
    not_before, expires_at, deadline, reason_ja, reason_en, operator, justification, order_bytes, signed,
    order_hash, created_at_ms)
    VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?13, ?14) RETURNING id";
pub(crate) const INSERT_ORDER_COMMAND: &str =
    "INSERT INTO commands (device_id, kind, body, created_at_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id";
pub(crate) const COMPLETE_ORDER: &str = "UPDATE orders SET key_id = ?2, order_bytes = ?3, signed = ?4,
    order_hash = ?5, command_id = ?6 WHERE id = ?1";
pub(crate) const ACK_COMMAND: &str = "UPDATE commands SET acked_at_ms = ?3, ok = ?4, detail = ?5
    WHERE device_id = ?1 AND id = ?2 AND acked_at_ms IS NULL";
pub(crate) const COMMAND_KNOWN: &str = "SELECT 1 FROM commands WHERE device_id = ?1 AND id = ?2";
pub(crate) const RECORD_OUTCOME: &str = "UPDATE orders SET outcome = ?3, outcome_at_ms = ?4, detail = ?5,
    receipt_bytes = ?6, receipt_scheme = ?7, receipt_signature = ?8, applied_at = ?9, device_clock = ?10,
    time_floor = ?11, clock = ?12, resulting_state = ?13, drill = ?14, receipt_cert = ?15
    WHERE device_id = ?1 AND command_id = ?2 AND outcome IS NULL RETURNING id, sequence";
pub(crate) const SET_SERVICE_STATE: &str = "UPDATE devices SET suspension = ?3 WHERE id = ?1
    AND NOT EXISTS (SELECT 1 FROM orders WHERE device_id = ?1 AND outcome = 'applied' AND sequence > ?2)";
pub(crate) const INSERT_INCIDENT: &str =
    "INSERT INTO incidents (device_id, seq, incident_id, command_id, segment,
    summary, report_json, recorded_at_ms, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (device_id, seq) DO NOTHING";
pub(crate) const EVIDENCE_SELECT: &str =
    "SELECT signed, receipt_bytes, receipt_scheme, receipt_signature, receipt_cert FROM orders WHERE id = ?1";
pub(crate) const INCIDENTS_SELECT: &str =
    "SELECT seq, incident_id, command_id, segment, summary, report_json,
    recorded_at_ms, received_at_ms FROM incidents WHERE device_id = ?1 ORDER BY seq DESC LIMIT ?2";

pub(crate) fn case_row(r: &impl Cols) -> Result<CaseRow, DbError> {
    Ok(CaseRow { id: id_u64(r.i64_at(0)?), device_id: r.str_at(1)?, opened_at_ms: r.i64_at(2)? })
}

pub(crate) fn event_row(r: &impl Cols) -> Result<CaseEventRow, DbError> {
    let step = r.str_at(1)?;
    Ok(CaseEventRow {
        id: id_u64(r.i64_at(0)?),
        step: step.parse().map_err(|_| DbError::OutOfRange { what: "case step", value: step })?,
        at_ms: r.i64_at(2)?,
        operator: r.str_at(3)?,
        text: r.str_at(4)?,
        deadline_ms: r.opt_i64_at(5)?,
        corrected: r.opt_bool_at(6)?,
        justification: r.opt_str_at(7)?,
        recipient: r.opt_str_at(8)?,
        order_id: opt_id(r.opt_i64_at(9)?),
    })
}

pub(crate) fn order_row(r: &impl Cols) -> Result<OrderRow, DbError> {
    let outcome = r.opt_str_at(19)?;
    let receipt = match (outcome.as_deref(), r.opt_i64_at(22)?) {
        (Some("applied"), Some(applied_at)) => Some(ReceiptFields {
            applied_at,
            device_clock: r.opt_i64_at(23)?.unwrap_or_default(),
            time_floor: r.opt_i64_at(24)?.unwrap_or_default(),
            clock: r.opt_str_at(25)?.unwrap_or_default(),
            resulting_state: r.opt_str_at(26)?.unwrap_or_default(),
            drill: r.opt_bool_at(27)?.unwrap_or_default(),
            scheme: u16::try_from(r.opt_i64_at(28)?.unwrap_or_default()).unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(OrderRow {
        id: id_u64(r.i64_at(0)?),
        device_id: r.str_at(1)?,
        case_id: opt_id(r.opt_i64_at(2)?),
        command_id: opt_id(r.opt_i64_at(3)?),
        kind: r.str_at(4)?,
        sequence: id_u64(r.i64_at(5)?),
        key_id: r.str_at(6)?,
        issued_at: r.i64_at(7)?,
        not_before: r.i64_at(8)?,
        expires_at: r.i64_at(9)?,
        deadline: r.opt_i64_at(10)?,
        reason_ja: r.str_at(11)?,
        reason_en: r.str_at(12)?,
        operator: r.str_at(13)?,
        justification: r.opt_str_at(14)?,
        created_at_ms: r.i64_at(15)?,
        order_hash: r.bytes_at(16)?,
        delivered_at_ms: r.opt_i64_at(17)?,
        deliveries: u32::try_from(r.i64_at(18)?).unwrap_or(u32::MAX),
        outcome,
        outcome_at_ms: r.opt_i64_at(20)?,
        detail: r.opt_str_at(21)?,
        receipt,
    })
}

pub(crate) fn incident_row(r: &impl Cols) -> Result<IncidentRow, DbError> {
    Ok(IncidentRow {
        seq: id_u64(r.i64_at(0)?),
        incident_id: r.str_at(1)?,
        command_id: opt_id(r.opt_i64_at(2)?),
        segment: r.str_at(3)?,
        summary: r.str_at(4)?,
        report_json: r.str_at(5)?,
        recorded_at_ms: r.i64_at(6)?,
        received_at_ms: r.i64_at(7)?,
    })
}

/// The columns an issued order gets once signed: the signer's output, the
/// command body the device receives and the order hash.
pub(crate) struct SignedColumns {
    pub signed: SignedForDevice,
    pub command_body: Vec<u8>,
    pub order_hash: Vec<u8>,
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
    let order_hash = crate::compliance::receipts::order_hash(&signed.order_bytes).to_vec();
    Ok(SignedColumns {
        signed,
        command_body,
        order_hash,
        command_kind: format!("order:{}", kind_label(&order.kind)),
    })
}

/// An acknowledgement ready to store: the columns of [`RECORD_OUTCOME`].
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
        dispatch!(self, db => db.open_case(device_id.to_owned(), fact).await)
    }

    /// Adds a step to a case; returns the event id, or `None` if there is no such case.
    pub async fn add_case_event(&self, case_id: u64, event: NewCaseEvent) -> Result<Option<u64>, DbError> {
        let case_id = to_i64("case id", case_id)?;
        dispatch!(self, db => db.add_case_event(case_id, event).await)
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
        sign: std::sync::Arc<OrderSigner>,
    ) -> Result<IssuedOrder, DbError> {
        let device_id = order.device_id();
        let issued = dispatch!(self, db => db.issue_order(order, event, sign).await)?;
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
