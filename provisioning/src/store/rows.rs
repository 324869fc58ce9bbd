//! Reading rows, the same for both backends: [`Cols`] gives typed columns of
//! a `rusqlite` or a `tokio-postgres` row, and one function per row type maps
//! the columns of its query in [`super::sql`] to the type. So both backends
//! return exactly the same thing for the same stored data (counters saturate
//! and ids are never negative on both).

use super::metrics::{AlertCount, StateCount};
use super::operators::OperatorRow;
use super::orders::{CaseEventRow, CaseRow, IncidentRow, OrderEvidence, OrderRow, ReceiptFields};
use super::series::{LineMean, Rollup, Spread};
use super::{id_u64, AlertRow, CommandRow, DbError, DeviceRow, ReportRow};
use cpe_protocol::receipt::SignedReceipt;
use cpe_protocol::Payload;

/// Reads typed columns from either backend's row.
pub(crate) trait Cols {
    fn i64_at(&self, i: usize) -> Result<i64, DbError>;
    fn opt_i64_at(&self, i: usize) -> Result<Option<i64>, DbError>;
    fn str_at(&self, i: usize) -> Result<String, DbError>;
    fn opt_str_at(&self, i: usize) -> Result<Option<String>, DbError>;
    fn opt_bool_at(&self, i: usize) -> Result<Option<bool>, DbError>;
    fn bytes_at(&self, i: usize) -> Result<Vec<u8>, DbError>;
    fn opt_bytes_at(&self, i: usize) -> Result<Option<Vec<u8>>, DbError>;
    fn f64_at(&self, i: usize) -> Result<f64, DbError>;
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
            fn f64_at(&self, i: usize) -> Result<f64, DbError> {
                Ok(self.$get(i)?)
            }
        }
    };
}

impl_cols!(rusqlite::Row<'_>, get);
impl_cols!(tokio_postgres::Row, try_get);

fn opt_id(v: Option<i64>) -> Option<u64> {
    v.map(id_u64)
}

/// A counter, saturating at `u32::MAX`.
fn saturating_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// [`super::sql::DEVICES`], [`super::sql::DEVICE`].
pub(crate) fn device_row(r: &impl Cols) -> Result<DeviceRow, DbError> {
    Ok(DeviceRow {
        id: r.str_at(0)?,
        institution_code: r.str_at(1)?,
        first_seen_ms: r.i64_at(2)?,
        last_seen_ms: r.i64_at(3)?,
        state: r.str_at(4)?.parse()?,
        state_since_ms: r.i64_at(5)?,
        cert_not_after: r.opt_i64_at(6)?,
        last_health: r.opt_str_at(7)?,
        suspension: r.opt_str_at(8)?,
        open_alerts: id_u64(r.i64_at(9)?),
    })
}

/// [`super::sql::RECENT_REPORTS`].
pub(crate) fn report_row(r: &impl Cols) -> Result<ReportRow, DbError> {
    Ok(ReportRow {
        seq: id_u64(r.i64_at(0)?),
        recorded_at_ms: r.i64_at(1)?,
        received_at_ms: r.i64_at(2)?,
        kind: r.str_at(3)?.parse()?,
        summary: r.str_at(4)?,
    })
}

/// [`super::sql::ALERTS`], [`super::sql::OPEN_ALERTS_OF_DEVICE`].
pub(crate) fn alert_row(r: &impl Cols) -> Result<AlertRow, DbError> {
    Ok(AlertRow {
        id: r.i64_at(0)?,
        device_id: r.str_at(1)?,
        kind: r.str_at(2)?,
        level: r.str_at(3)?,
        message: r.str_at(4)?,
        raised_at_ms: r.i64_at(5)?,
        cleared_at_ms: r.opt_i64_at(6)?,
        acknowledged_at_ms: r.opt_i64_at(7)?,
        acknowledged_by: r.opt_str_at(8)?,
    })
}

/// [`super::sql::RECENT_COMMANDS`].
pub(crate) fn command_row(r: &impl Cols) -> Result<CommandRow, DbError> {
    Ok(CommandRow {
        id: id_u64(r.i64_at(0)?),
        kind: r.str_at(1)?,
        created_at_ms: r.i64_at(2)?,
        delivered_at_ms: r.opt_i64_at(3)?,
        deliveries: saturating_u32(r.i64_at(4)?),
        acked_at_ms: r.opt_i64_at(5)?,
        ok: r.opt_bool_at(6)?,
        detail: r.opt_str_at(7)?,
        requested_by: r.opt_str_at(8)?,
    })
}

/// [`super::sql::OPERATORS`], [`super::sql::OPERATOR`], [`super::sql::SESSION_OPERATOR`].
pub(crate) fn operator_row(r: &impl Cols) -> Result<OperatorRow, DbError> {
    Ok(OperatorRow {
        name: r.str_at(0)?,
        role: r.str_at(1)?.parse()?,
        password_hash: r.str_at(2)?,
        created_at_ms: r.i64_at(3)?,
        password_changed_at_ms: r.i64_at(4)?,
        disabled_at_ms: r.opt_i64_at(5)?,
    })
}

/// [`super::sql::METRIC_DEVICES`].
pub(crate) fn state_count(r: &impl Cols) -> Result<StateCount, DbError> {
    Ok(StateCount { state: r.str_at(0)?, devices: id_u64(r.i64_at(1)?), newest_report_ms: r.opt_i64_at(2)? })
}

/// [`super::sql::METRIC_ALERTS_OPEN`].
pub(crate) fn alert_count(r: &impl Cols) -> Result<AlertCount, DbError> {
    Ok(AlertCount { kind: r.str_at(0)?, level: r.str_at(1)?, open: id_u64(r.i64_at(2)?) })
}

/// [`super::sql::METRIC_COMMANDS`], [`super::sql::METRIC_ORDERS`].
pub(crate) fn labelled_count(r: &impl Cols) -> Result<(String, u64), DbError> {
    Ok((r.str_at(0)?, id_u64(r.i64_at(1)?)))
}

/// [`super::sql::CASE`].
pub(crate) fn case_row(r: &impl Cols) -> Result<CaseRow, DbError> {
    Ok(CaseRow { id: id_u64(r.i64_at(0)?), device_id: r.str_at(1)?, opened_at_ms: r.i64_at(2)? })
}

/// [`super::sql::EVENTS`].
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

/// The `order_select!` queries of [`super::sql`].
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
        deliveries: saturating_u32(r.i64_at(18)?),
        outcome,
        outcome_at_ms: r.opt_i64_at(20)?,
        detail: r.opt_str_at(21)?,
        receipt,
    })
}

/// [`super::sql::EVIDENCE`].
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

/// [`super::sql::INCIDENTS`].
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

/// [`super::sql::HEARTBEATS_BETWEEN`], [`super::sql::TAKE_OLD_HEARTBEATS`]:
/// a stored heartbeat as a rollup of one sample, at its recording time (or
/// its reception time if the device's clock was ahead); `None` if the body
/// holds no heartbeat with numbers.
pub(crate) fn heartbeat_sample(r: &impl Cols) -> Result<Option<Rollup>, DbError> {
    let at_ms = r.i64_at(0)?.min(r.i64_at(1)?);
    Ok(match postcard::from_bytes::<Payload>(&r.bytes_at(2)?) {
        Ok(Payload::Heartbeat(health)) => Rollup::of_heartbeat(at_ms, &health),
        _ => None,
    })
}

/// The `rollup_columns!` of [`super::sql`].
pub(crate) fn rollup_row(r: &impl Cols) -> Result<Rollup, DbError> {
    let lines = r.str_at(8)?;
    Ok(Rollup {
        start_ms: r.i64_at(0)?,
        samples: saturating_u32(r.i64_at(1)?),
        cpu: Spread { min: r.f64_at(2)?, avg: r.f64_at(3)?, max: r.f64_at(4)? },
        mem: Spread { min: r.f64_at(5)?, avg: r.f64_at(6)?, max: r.f64_at(7)? },
        lines: serde_json::from_str::<Vec<LineMean>>(&lines)
            .map_err(|e| DbError::OutOfRange { what: "rollup lines", value: format!("{lines:?}: {e}") })?,
    })
}
