//! What the carrier's Prometheus metrics read from the store: devices per
//! state (and the newest report of each state), suspended and alerting
//! devices, open alerts per kind and level, commands and orders per state.
//! A handful of aggregate queries, each a scan of a table that holds one
//! row per device, alert, command or order (never of `reports`).

use serde::Serialize;

use super::{Database, DbError};

/// Devices in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    /// `up` or `down`.
    pub state: String,
    /// How many.
    pub devices: u64,
    /// The newest report of a device in this state, Unix ms.
    pub newest_report_ms: Option<i64>,
}

/// Open alerts of one kind and level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertCount {
    /// Kind.
    pub kind: String,
    /// Level.
    pub level: String,
    /// How many are open.
    pub open: u64,
}

/// The fleet's aggregates at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FleetMetrics {
    /// Devices per state.
    pub devices: Vec<StateCount>,
    /// Devices under a stop order.
    pub suspended: u64,
    /// Devices with open alerts.
    pub alerting: u64,
    /// Open alerts per kind and level.
    pub alerts_open: Vec<AlertCount>,
    /// Commands per state (`queued`, `delivered`, `succeeded`, `failed`).
    pub commands: Vec<(String, u64)>,
    /// Orders per state (`queued`, `delivered`, `applied`, `refused`).
    pub orders: Vec<(String, u64)>,
}

impl Database {
    /// The fleet's aggregates (one read snapshot on SQLite).
    pub async fn fleet_metrics(&self) -> Result<FleetMetrics, DbError> {
        dispatch!(self, db => db.fleet_metrics().await)
    }
}
