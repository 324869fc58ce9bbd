//! The operator's use cases on devices outside the compliance flow: one
//! device's detail, its incident records, and queuing a command for it. The
//! fleet views (`devices`, `alerts`) are single store reads.

use cpe_protocol::CommandKind;

use crate::store::{Database, DbError, DeviceDetail, IncidentRow};

/// Why a device use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
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

/// Everything about one device.
pub async fn detail(db: &Database, device: &str) -> Result<DeviceDetail, DeviceError> {
    db.device(device).await?.ok_or_else(|| DeviceError::Unknown(device.to_owned()))
}

/// A device's incident records (self-diagnosis results), newest first.
pub async fn incidents(db: &Database, device: &str, limit: u32) -> Result<Vec<IncidentRow>, DeviceError> {
    detail(db, device).await?;
    Ok(db.incidents(device, limit).await?)
}

/// Queues `kind` for the device (delivered on its next poll); returns the command id.
pub async fn push_command(
    db: &Database,
    device: &str,
    kind: &CommandKind,
    now_ms: i64,
) -> Result<u64, DeviceError> {
    detail(db, device).await?;
    let body = postcard::to_stdvec(kind)?;
    Ok(db.enqueue_command(device, &format!("{kind:?}"), body, now_ms).await?)
}
