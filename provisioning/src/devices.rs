//! The operator's use cases on devices outside the compliance flow: a page
//! of the fleet, one device's detail, its incident records, queuing a
//! command for it, acknowledging an alert, its graph over a window. The
//! alert list is a single store read.

use cpe_protocol::CommandKind;

use crate::store::series::{self, Series};
use crate::store::{AlertRow, Database, DbError, DeviceDetail, DevicePage, DeviceQuery, IncidentRow};

/// Largest page of devices one request gets.
pub const MAX_PAGE: u32 = 1000;

/// Longest graph window, hours (30 days).
pub const MAX_SERIES_HOURS: u32 = 720;

/// Why a device use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A page size outside 1..=[`MAX_PAGE`].
    #[error("a page holds 1 to {MAX_PAGE} devices, not {0}; page through with offset")]
    PageSize(u32),
    /// A graph window outside 1..=[`MAX_SERIES_HOURS`] hours.
    #[error("a graph covers 1 to {MAX_SERIES_HOURS} hours, not {0}")]
    SeriesHours(u32),
    /// No such alert.
    #[error("no alert {0}; list them with `cpe-provision alerts --all`")]
    UnknownAlert(i64),
    /// No such device.
    #[error("no device {0:?}; list them with `cpe-provision devices`")]
    Unknown(String),
    /// The command could not be encoded.
    #[error("encode command: {0}")]
    Encode(#[from] postcard::Error),
    /// The store.
    #[error(transparent)]
    Store(#[from] DbError),
}

/// One page of the fleet: search, filter, sort and paging happen in the store.
pub async fn page(db: &Database, query: &DeviceQuery) -> Result<DevicePage, DeviceError> {
    if !(1..=MAX_PAGE).contains(&query.limit) {
        return Err(DeviceError::PageSize(query.limit));
    }
    Ok(db.device_page(query).await?)
}

/// Records that `operator` has seen an alert (the first acknowledgement
/// stands); returns the alert as it is now.
pub async fn acknowledge_alert(
    db: &Database,
    id: i64,
    operator: &str,
    now_ms: i64,
) -> Result<AlertRow, DeviceError> {
    db.acknowledge_alert(id, operator, now_ms).await?;
    db.alert(id).await?.ok_or(DeviceError::UnknownAlert(id))
}

/// Everything about one device.
pub async fn detail(db: &Database, device: &str) -> Result<DeviceDetail, DeviceError> {
    db.device(device).await?.ok_or_else(|| DeviceError::Unknown(device.to_owned()))
}

/// A device's incident records (self-diagnosis results), newest first.
pub async fn incidents(db: &Database, device: &str, limit: u32) -> Result<Vec<IncidentRow>, DeviceError> {
    detail(db, device).await?;
    Ok(db.incidents(device, limit).await?)
}

/// Queues `kind` for the device (delivered on its next poll), recording
/// who asked; returns the command id.
pub async fn push_command(
    db: &Database,
    device: &str,
    kind: &CommandKind,
    requested_by: Option<&str>,
    now_ms: i64,
) -> Result<u64, DeviceError> {
    detail(db, device).await?;
    let body = postcard::to_stdvec(kind)?;
    Ok(db.enqueue_command(device, &format!("{kind:?}"), body, requested_by, now_ms).await?)
}

/// The window of a graph over the last `hours` before `now_ms`: (from, to) Unix ms.
pub fn last_hours(hours: u32, now_ms: i64) -> Result<(i64, i64), DeviceError> {
    if !(1..=MAX_SERIES_HOURS).contains(&hours) {
        return Err(DeviceError::SeriesHours(hours));
    }
    Ok((now_ms - i64::from(hours) * series::HOUR_MS, now_ms))
}

/// A device's CPU, memory and per-line bandwidth in [`from_ms`, `to_ms`),
/// read from the heartbeats and the rollups retention made of them, at the
/// resolution of the coarsest data in the window (see [`series::series`]).
pub async fn series(db: &Database, device: &str, from_ms: i64, to_ms: i64) -> Result<Series, DeviceError> {
    let stored = db
        .heartbeat_series(device, from_ms, to_ms)
        .await?
        .ok_or_else(|| DeviceError::Unknown(device.to_owned()))?;
    Ok(series::series(stored, to_ms.saturating_sub(from_ms)))
}
