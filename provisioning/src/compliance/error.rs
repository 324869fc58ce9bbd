//! [`ComplianceError`]: why an operator's compliance step did not happen.
//! Every message says what to run instead; nothing was stored.

use super::flow::Refusal;
use super::order_keys::{KeyStoreError, OrderKeyError};
use crate::store::DbError;

/// Why a compliance use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    /// The §2.2 flow does not allow the step now.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No such case.
    #[error("no case {case_id}; open one with `cpe-provision case open --device ID --fact \"…\"`")]
    NoCase {
        /// The case asked for.
        case_id: u64,
    },
    /// The device has no case.
    #[error("no compliance case for {device}; open one first with `cpe-provision case open --device {device} --fact \"…\"`")]
    NoDeviceCase {
        /// The device.
        device: String,
    },
    /// The device never reported.
    #[error("no device {0:?}: it has never reported to this carrier server; list them with `cpe-provision devices`")]
    UnknownDevice(String),
    /// No reason for the device's notice page.
    #[error("give the reason shown on the device: --reason \"…\" (both languages), or both --reason-ja and --reason-en")]
    NoReason,
    /// No recommendation text.
    #[error("give the recommendation: --text \"…\" (both languages), or both --text-ja and --text-en")]
    NoRecommendation,
    /// No such order.
    #[error("no order {0}; list them with `cpe-provision order list`")]
    NoOrder(u64),
    /// The order-key directory.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// An order key.
    #[error(transparent)]
    OrderKey(#[from] OrderKeyError),
    /// Queuing a key rotation stopped part way.
    #[error("queuing the rotation for {device} failed after {queued} of {total} devices; the rotation is unfinished (see `cpe-provision order list`)")]
    RotationUnfinished {
        /// The device whose order failed.
        device: String,
        /// Devices whose rotation order was queued.
        queued: usize,
        /// Devices to queue.
        total: usize,
        /// Why.
        #[source]
        source: Box<ComplianceError>,
    },
    /// The store.
    #[error(transparent)]
    Store(DbError),
}

impl From<DbError> for ComplianceError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Refused(refusal) => match refusal.downcast::<Refusal>() {
                Ok(refusal) => Self::Refused(*refusal),
                Err(other) => Self::Store(DbError::Refused(other)),
            },
            other => Self::Store(other),
        }
    }
}
