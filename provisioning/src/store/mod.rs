//! Storage of the carrier server: devices, their reports, alerts and queued
//! commands, behind one API with two backends.
//!
//! - **SQLite** (`sqlite:PATH` or a plain path; the default): one file, WAL
//!   mode, `synchronous=NORMAL`. All writes go through one writer thread that
//!   owns the write connection and commits everything that is pending in one
//!   transaction (*group commit*); reads use a small pool of read-only
//!   connections on blocking threads.
//! - **PostgreSQL** (`postgres://USER:PASSWORD@HOST:PORT/DB`): for several
//!   server processes sharing one database. Ingest is group-committed too, by
//!   writer task(s) with their own connection; everything else uses a
//!   small fixed pool. Transitions (`up`→`down`, `down`→`up`, command
//!   delivery) are decided under row locks (conditional `UPDATE … RETURNING`,
//!   `SELECT … FOR UPDATE`), so each is reported to exactly one process.
//!
//! Every method takes the time it should record (`now_ms`, `at_ms`) from the
//! caller: nothing here reads a clock, so tests are deterministic.
//!
//! Every query is written once (`sql.rs`, a dialect layer: `?N` placeholders
//! become `$N` for PostgreSQL, row locks are dropped for SQLite) and every
//! row is read by one function for both backends (`rows.rs`).
//!
//! Both backends run the same versioned [`migrations`] when opened
//! (idempotent; serialised by `BEGIN IMMEDIATE` on SQLite and by
//! `pg_advisory_xact_lock` on PostgreSQL).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cpe_provision::store::DbError> {
//! use cpe_provision::store::{Database, DeviceSeen, IngestRecord, ReportKind};
//! let db = Database::open("sqlite:/var/lib/cpe-provision/carrier.db").await?;
//! let device = DeviceSeen { id: "1312345678/cpe-01".into(), institution_code: "1312345678".into(), cert_not_after: None };
//! let record = IngestRecord {
//!     seq: 1,
//!     at_unix_ms: 1_700_000_000_000,
//!     kind: ReportKind::Heartbeat,
//!     body: vec![1, 0],
//!     summary_json: "{}".into(),
//!     health_json: None,
//!     incident: None,
//! };
//! let outcome = db.ingest(&device, vec![record], 1_700_000_000_100).await?;
//! assert_eq!(outcome.accepted, 1);
//! # Ok(()) }
//! ```

pub mod migrations;
pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use postgres::PostgresDb;
pub use sqlite::SqliteDb;

/// Most records one group transaction takes, on either backend (a single
/// larger batch still goes alone).
pub const MAX_GROUP_RECORDS: usize = 20_000;

/// Commands delivered but not acknowledged for this long are delivered again.
pub const DEFAULT_REDELIVERY_MS: i64 = 120_000;

/// How many reports [`DeviceDetail::recent_reports`] and commands
/// [`DeviceDetail::recent_commands`] hold at most.
pub const DETAIL_RECENT: u32 = 20;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database URL is not one this build understands.
    #[error(
        "database URL {url:?} is not understood: {detail} \
         (use sqlite:PATH, a file path, or postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
    )]
    Url {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An operator command named a SQLite store that does not exist (only
    /// `serve` or an explicit `--create` creates one).
    #[error(
        "no store at {path}: check --database (or CPE_DATABASE); a new store is created only by \
         `cpe-provision serve` or with --create / ストアがありません: --database を確認してください"
    )]
    Missing {
        /// The SQLite file that does not exist.
        path: String,
    },
    /// An error reported by SQLite.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An error reported by PostgreSQL or its connection.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The database was migrated by a newer build.
    #[error(
        "the database schema is at version {found}, newer than this build knows ({known}): \
         upgrade cpe-provision before using this database"
    )]
    SchemaTooNew {
        /// Highest version found in `schema_migrations`.
        found: i64,
        /// Highest version this build has.
        known: i64,
    },
    /// A value does not fit the schema (for example a sequence number above 2^63-1).
    #[error("{what} is out of range: {value}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The device has never reported, so nothing can be attached to it.
    #[error("unknown device {0:?}: it has never reported to this carrier server")]
    UnknownDevice(String),
    /// The group transaction this operation was part of could not be committed,
    /// or the backend could not be reached; the operation had no effect.
    #[error("database unavailable, nothing was stored: {0}")]
    Unavailable(String),
    /// The writer of this handle has stopped (the process is shutting down).
    #[error("the database writer has stopped")]
    Closed,
    /// An order could not be signed inside its issuing transaction; nothing was stored.
    #[error("could not sign the order, nothing was stored: {0}")]
    Signing(String),
    /// The caller's [`CaseRule`] refused the step inside its transaction;
    /// nothing was stored.
    #[error("{0}")]
    Refused(RuleRefusal),
}

impl DbError {
    /// Whether trying the same operation again later may succeed (lock
    /// timeouts, lost connections, failed group commits), as opposed to an
    /// error that repeats (bad input, newer schema, wrong URL).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Closed => true,
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Self::Postgres(e) => {
                e.is_closed()
                    || e.code().is_some_and(|c| {
                        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                            || *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN
                            || *c == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                            || *c == tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS
                    })
            }
            Self::Url { .. }
            | Self::Missing { .. }
            | Self::SchemaTooNew { .. }
            | Self::OutOfRange { .. }
            | Self::UnknownDevice(_)
            | Self::Signing(_)
            | Self::Refused(_) => false,
        }
    }
}

/// Liveness of a device as the carrier sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Reported within the silence limit.
    Up,
    /// Silent for longer than the limit (an alert was raised).
    Down,
}

impl DeviceState {
    /// `up` or `down`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceState {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        match s {
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            other => Err(DbError::OutOfRange { what: "device state", value: other.to_owned() }),
        }
    }
}

/// What a stored report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// A periodic heartbeat with health metrics.
    Heartbeat,
    /// An event (threshold crossing, failover, start).
    Event,
}

impl ReportKind {
    /// `heartbeat` or `event`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::Event => "event",
        }
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportKind {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        match s {
            "heartbeat" => Ok(Self::Heartbeat),
            "event" => Ok(Self::Event),
            other => Err(DbError::OutOfRange { what: "report kind", value: other.to_owned() }),
        }
    }
}

/// The device a batch came from, as its client certificate tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeen {
    /// Device id, e.g. `1312345678/cpe-01`.
    pub id: String,
    /// Institution code (10 digits) of the certificate.
    pub institution_code: String,
    /// End of validity of the client certificate, Unix seconds.
    pub cert_not_after: Option<i64>,
}

/// One record of a batch, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRecord {
    /// Per-device sequence number (deduplication key with the device id);
    /// at most `i64::MAX`.
    pub seq: u64,
    /// When the device made it, Unix milliseconds (device clock).
    pub at_unix_ms: i64,
    /// Heartbeat or event.
    pub kind: ReportKind,
    /// The record as received (postcard).
    pub body: Vec<u8>,
    /// A JSON summary for operators.
    pub summary_json: String,
    /// Health metrics as JSON, for heartbeats; the newest stored one becomes
    /// the device's `last_health`.
    pub health_json: Option<String>,
    /// For an incident record (a self-diagnosis result): stored in the
    /// incidents table too, once.
    pub incident: Option<cpe_protocol::Incident>,
}

/// What [`Database::ingest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IngestOutcome {
    /// Records stored now.
    pub accepted: u32,
    /// Records that were already stored (same device and seq), including
    /// repeats within the batch.
    pub duplicates: u32,
    /// The device was `down` and is `up` again: the caller raises `recovered`.
    /// Reported to exactly one caller per transition, across processes.
    pub was_down: bool,
    /// The device had never reported before.
    pub new_device: bool,
}

/// A device with the number of its open alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Institution code.
    pub institution_code: String,
    /// First report, Unix ms (server clock).
    pub first_seen_ms: i64,
    /// Latest report, Unix ms (server clock).
    pub last_seen_ms: i64,
    /// Up or down.
    pub state: DeviceState,
    /// When `state` last changed (or first_seen), Unix ms.
    pub state_since_ms: i64,
    /// Certificate end of validity, Unix seconds.
    pub cert_not_after: Option<i64>,
    /// Latest health metrics (JSON text).
    pub last_health: Option<String>,
    /// Suspension in force (2.2 ⑥), if any.
    pub suspension: Option<String>,
    /// Alerts not cleared yet.
    pub open_alerts: u64,
}

/// A stored report, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// Sequence number.
    pub seq: u64,
    /// Device clock, Unix ms.
    pub recorded_at_ms: i64,
    /// Server clock, Unix ms.
    pub received_at_ms: i64,
    /// Heartbeat or event.
    pub kind: ReportKind,
    /// JSON summary.
    pub summary: String,
}

/// An alert to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// The device concerned (must have reported).
    pub device_id: String,
    /// `down`, `recovered`, `threshold`, `failover`, …
    pub kind: String,
    /// `info`, `caution`, `warning`, `critical`, …
    pub level: String,
    /// Text for the operator.
    pub message: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    /// Alert id.
    pub id: i64,
    /// Device id.
    pub device_id: String,
    /// Kind (`down`, `recovered`, `threshold`, `failover`, …).
    pub kind: String,
    /// Level.
    pub level: String,
    /// Text for the operator.
    pub message: String,
    /// When raised, Unix ms.
    pub raised_at_ms: i64,
    /// When cleared, Unix ms; `None` while open.
    pub cleared_at_ms: Option<i64>,
    /// When an operator first acknowledged it, Unix ms.
    pub acknowledged_at_ms: Option<i64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
}

/// What a fleet page shows: devices matching a search and a filter, sorted, one page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceQuery {
    /// Part of the device id or institution code (`""`: every device).
    pub search: String,
    /// Only devices in this state.
    pub filter: Option<DeviceFilter>,
    /// Sort key.
    pub sort: DeviceSort,
    /// Largest first.
    pub descending: bool,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
}

/// A fleet filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceFilter {
    /// Reporting.
    Up,
    /// Silent.
    Down,
    /// Under a stop order.
    Suspended,
    /// With open alerts.
    Alerting,
}

impl DeviceFilter {
    /// Every filter.
    pub const ALL: [Self; 4] = [Self::Up, Self::Down, Self::Suspended, Self::Alerting];

    /// As in URLs and the query.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Suspended => "suspended",
            Self::Alerting => "alerting",
        }
    }
}

/// A fleet sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSort {
    /// Device id.
    #[default]
    Id,
    /// Latest report.
    LastSeen,
    /// Certificate end of validity.
    CertNotAfter,
    /// Up or down.
    State,
}

impl DeviceSort {
    /// Every sort key.
    pub const ALL: [Self; 4] = [Self::Id, Self::LastSeen, Self::CertNotAfter, Self::State];

    /// As in URLs and the query.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::LastSeen => "last_seen",
            Self::CertNotAfter => "cert_not_after",
            Self::State => "state",
        }
    }
}

/// One page of devices and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePage {
    /// Devices matching the search and filter.
    pub total: u64,
    /// This page.
    pub rows: Vec<DeviceRow>,
}

/// `text` as a LIKE pattern matching it anywhere (a backslash escapes `%`, `_` and itself).
pub(crate) fn like_anywhere(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A queued command as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRow {
    /// Command id (echoed by the device).
    pub id: u64,
    /// Kind, for display (`report-now`, `diagnose`, …).
    pub kind: String,
    /// Queued at, Unix ms.
    pub created_at_ms: i64,
    /// Last handed to the device, Unix ms.
    pub delivered_at_ms: Option<i64>,
    /// How many times it was handed out.
    pub deliveries: u32,
    /// Acknowledged at, Unix ms.
    pub acked_at_ms: Option<i64>,
    /// Outcome reported by the device.
    pub ok: Option<bool>,
    /// Device's explanation.
    pub detail: Option<String>,
    /// The operator who queued it (`None`: the server itself, or a CLI
    /// call without `--operator`).
    pub requested_by: Option<String>,
}

/// Everything the operator sees about one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceDetail {
    /// The device.
    pub row: DeviceRow,
    /// Latest reports, newest first (at most [`DETAIL_RECENT`]).
    pub recent_reports: Vec<ReportRow>,
    /// Open alerts, newest first.
    pub open_alerts: Vec<AlertRow>,
    /// Latest commands, newest first (at most [`DETAIL_RECENT`]).
    pub recent_commands: Vec<CommandRow>,
    /// Latest compliance orders, newest first (at most [`orders::DETAIL_ORDERS`]).
    pub recent_orders: Vec<OrderRow>,
    /// The latest self-diagnosis result.
    pub latest_incident: Option<IncidentRow>,
}

/// Tuning of a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbOptions {
    /// Redeliver commands not acknowledged this long after delivery.
    pub redelivery_ms: i64,
    /// PostgreSQL: connections of the general pool (reads, alerts, commands).
    pub pg_pool_size: usize,
    /// PostgreSQL: group-committing ingest writers, each with its own
    /// connection. One is fastest on a 2-core machine that also runs
    /// PostgreSQL (bigger groups, less CPU per report); more help when
    /// PostgreSQL runs on its own hardware.
    pub pg_writers: usize,
    /// Most ingest requests one group transaction takes.
    pub max_group: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self { redelivery_ms: DEFAULT_REDELIVERY_MS, pg_pool_size: 4, pg_writers: 1, max_group: 512 }
    }
}

/// The carrier's storage: SQLite or PostgreSQL, one API. Cheap to clone (all
/// clones share the writer and connections).
#[derive(Clone)]
pub enum Database {
    /// Embedded SQLite.
    Sqlite(SqliteDb),
    /// Shared PostgreSQL.
    Postgres(PostgresDb),
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Database::Sqlite",
            Self::Postgres(_) => "Database::Postgres",
        })
    }
}

macro_rules! dispatch {
    ($self:ident, $db:ident => $e:expr) => {
        match $self {
            Database::Sqlite($db) => $e,
            Database::Postgres($db) => $e,
        }
    };
}

pub mod metrics;
pub mod operators;
pub mod orders;
pub mod series;

pub use operators::{NewSession, OperatorRow, Role};
pub use orders::{
    AckRecorded, CaseDetail, CaseEventRow, CaseRow, CaseRule, IncidentRow, IssuedOrder, NewCaseEvent,
    NewOrder, OrderEvidence, OrderOutcome, OrderRow, OrderSigner, ReceiptFields, RuleRefusal,
    SignedForDevice, Step,
};

/// One batch of data retention (what to do is decided by `crate::retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionStep {
    /// Heartbeats received before the time are rolled up into five-minute
    /// buckets and deleted.
    RollUpHeartbeats {
        /// Unix ms.
        before_ms: i64,
    },
    /// Five-minute rollups of buckets before the time are rolled up into
    /// hourly buckets and deleted.
    RollUpFiveMinutes {
        /// Unix ms.
        before_ms: i64,
    },
    /// Hourly rollups of buckets before the time are deleted.
    DeleteHourly {
        /// Unix ms.
        before_ms: i64,
    },
    /// Events received before the time are deleted.
    DeleteEvents {
        /// Unix ms.
        before_ms: i64,
    },
}

/// What one retention batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionBatch {
    /// Rows taken (deleted) from the source.
    pub taken: u64,
    /// Rollup buckets written (new or merged into).
    pub written: u64,
}

/// Resolution column value of a rollup width.
pub(crate) fn resolution_s(width_ms: i64) -> i64 {
    width_ms / 1000
}

/// How often (in `now_ms` terms) [`Database::take_commands`] re-reads when
/// each device's next command is due.
pub const COMMAND_HINT_REFRESH_MS: i64 = 250;

/// Per handle: when each device with unacknowledged commands has one due
/// (Unix ms; `i64::MIN` = now). Devices not listed have none.
#[derive(Debug, Default)]
pub(crate) struct CommandHints {
    pub refreshed_at: Option<i64>,
    pub due: std::collections::HashMap<String, i64>,
}

/// A validated ingest request, as the backends store it.
#[derive(Debug)]
pub(crate) struct IngestRequest {
    pub device: DeviceSeen,
    pub records: Vec<StoredRecord>,
    pub now_ms: i64,
}

#[derive(Debug)]
pub(crate) struct StoredRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: ReportKind,
    pub body: Vec<u8>,
    pub summary: String,
    pub health: Option<String>,
    pub incident: Option<StoredIncident>,
}

/// An incident record's columns.
#[derive(Debug)]
pub(crate) struct StoredIncident {
    pub id: String,
    pub command_id: Option<i64>,
    pub segment: String,
    pub summary: String,
    pub report_json: String,
}

/// Which backend a URL names, and its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl DbUrl {
    /// `sqlite:PATH`, `sqlite://PATH` or a plain path → SQLite;
    /// `postgres://…` or `postgresql://…` → PostgreSQL.
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let bad = |detail: &str| DbError::Url { url: redact_url(url), detail: detail.to_owned() };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite:") {
            rest.strip_prefix("//").unwrap_or(rest)
        } else if url.contains("://") {
            return Err(bad("unknown scheme"));
        } else {
            url
        };
        if path.is_empty() {
            return Err(bad("no file path"));
        }
        if path == ":memory:" {
            return Err(bad("in-memory SQLite is not supported (the reader connections need a file)"));
        }
        Ok(Self::Sqlite(path.into()))
    }
}

/// The URL with the password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else { return url.to_owned() };
    format!("{}://{}:***{}", &url[..scheme_end], &userinfo[..colon], &rest[at..])
}

/// An id or sequence number read back: identity columns and CHECKed
/// sequence numbers are never negative.
pub(crate) fn id_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

fn to_i64(what: &'static str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange { what, value: v.to_string() })
}

pub(crate) fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Database {
    /// Opens (and migrates) the database `url` names, with default options.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        Self::open_with(url, DbOptions::default()).await
    }

    /// Opens (and migrates) the database `url` names. PostgreSQL needs a tokio
    /// runtime (the connection tasks are spawned on it).
    pub async fn open_with(url: &str, options: DbOptions) -> Result<Self, DbError> {
        match DbUrl::parse(url)? {
            DbUrl::Sqlite(path) => Ok(Self::Sqlite(SqliteDb::open(&path, options).await?)),
            DbUrl::Postgres(url) => Ok(Self::Postgres(PostgresDb::open(&url, options).await?)),
        }
    }

    /// Opens (and migrates) an existing store: a SQLite file that does not
    /// exist is [`DbError::Missing`] instead of a new empty store, so that a
    /// mistyped `--database` of an operator command is not silently a fresh
    /// carrier. (A PostgreSQL database is always created by its administrator.)
    pub async fn open_existing(url: &str) -> Result<Self, DbError> {
        if let DbUrl::Sqlite(path) = DbUrl::parse(url)? {
            if !path.exists() {
                return Err(DbError::Missing { path: path.display().to_string() });
            }
        }
        Self::open(url).await
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Versions recorded in `schema_migrations`, ascending.
    pub async fn schema_versions(&self) -> Result<Vec<i64>, DbError> {
        dispatch!(self, db => db.schema_versions().await)
    }

    /// Stores a batch of one device in one transaction: upserts the device
    /// (`last_seen = now_ms`, `state = up`, `last_health` = health of the
    /// newest newly stored record that has one) and inserts the records,
    /// skipping those already stored.
    pub async fn ingest(
        &self,
        device: &DeviceSeen,
        records: Vec<IngestRecord>,
        now_ms: i64,
    ) -> Result<IngestOutcome, DbError> {
        let mut stored = Vec::with_capacity(records.len());
        for r in records {
            let incident = match r.incident {
                Some(i) => Some(StoredIncident {
                    command_id: i.command_id.map(|c| to_i64("incident command id", c)).transpose()?,
                    id: i.id,
                    segment: i.segment,
                    summary: i.summary,
                    report_json: i.report_json,
                }),
                None => None,
            };
            stored.push(StoredRecord {
                seq: to_i64("record seq", r.seq)?,
                at_ms: r.at_unix_ms,
                kind: r.kind,
                body: r.body,
                summary: r.summary_json,
                health: r.health_json,
                incident,
            });
        }
        let request = IngestRequest { device: device.clone(), records: stored, now_ms };
        dispatch!(self, db => db.ingest(request).await)
    }

    /// Marks `down` every `up` device whose `last_seen` is before
    /// `silent_before_ms`; returns the ids that changed now (sorted). Each
    /// transition is returned to exactly one caller, across processes.
    pub async fn mark_silent(&self, silent_before_ms: i64, now_ms: i64) -> Result<Vec<String>, DbError> {
        dispatch!(self, db => db.mark_silent(silent_before_ms, now_ms).await)
    }

    /// Stores an alert; returns its id. Fails with [`DbError::UnknownDevice`]
    /// if the device has never reported.
    pub async fn raise_alert(&self, alert: NewAlert) -> Result<i64, DbError> {
        dispatch!(self, db => db.raise_alert(alert).await)
    }

    /// Records that the fleet summary `kind` of `day` is being sent, with
    /// its `body`; returns its id, or `None` when another process (or an
    /// earlier run) already sent that day's. Exactly one caller gets it.
    pub async fn claim_fleet_summary(
        &self,
        kind: &str,
        day: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        dispatch!(self, db => db.claim_fleet_summary(kind.to_owned(), day.to_owned(), body.to_owned(), now_ms).await)
    }

    /// Clears the open alerts of `kind` for the device; returns how many.
    pub async fn clear_alerts(&self, device_id: &str, kind: &str, at_ms: i64) -> Result<u64, DbError> {
        dispatch!(self, db => db.clear_alerts(device_id.to_owned(), kind.to_owned(), at_ms).await)
    }

    /// Alerts, newest first (only open ones if `open_only`), at most `limit`.
    pub async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<AlertRow>, DbError> {
        dispatch!(self, db => db.alerts(open_only, limit).await)
    }

    /// One page of devices (search, filter, sort, limit, offset in SQL).
    pub async fn device_page(&self, query: &DeviceQuery) -> Result<DevicePage, DbError> {
        let offset = to_i64("page offset", query.offset)?;
        dispatch!(self, db => db.device_page(query.clone(), offset).await)
    }

    /// One alert.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, DbError> {
        dispatch!(self, db => db.alert(id).await)
    }

    /// Records the first acknowledgement of an alert by `operator`; `false`
    /// if it is unknown or acknowledged already (the first one stands).
    pub async fn acknowledge_alert(&self, id: i64, operator: &str, at_ms: i64) -> Result<bool, DbError> {
        dispatch!(self, db => db.acknowledge_alert(id, operator.to_owned(), at_ms).await)
    }

    /// All devices, by id, with their number of open alerts.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, DbError> {
        dispatch!(self, db => db.devices().await)
    }

    /// One device with its recent reports, open alerts and recent commands.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceDetail>, DbError> {
        dispatch!(self, db => db.device(id.to_owned()).await)
    }

    /// What the store holds of a device's heartbeats in [`from_ms`, `to_ms`)
    /// at every resolution; `None` if the device has never reported.
    pub async fn heartbeat_series(
        &self,
        device_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<series::StoredSeries>, DbError> {
        dispatch!(self, db => db.heartbeat_series(device_id.to_owned(), from_ms, to_ms).await)
    }

    /// Runs one retention batch of at most `limit` rows in one transaction
    /// (rollups and deletions together: a batch is done wholly or not at all,
    /// and each row is taken by one caller only, across processes).
    pub async fn retention_batch(&self, step: RetentionStep, limit: u32) -> Result<RetentionBatch, DbError> {
        dispatch!(self, db => db.retention_batch(step, i64::from(limit)).await)
    }

    /// Every stored report of a device as (seq, received at Unix ms), in seq
    /// order: for audits and for tests that prove exactly-once, in-order delivery.
    pub async fn report_seqs(&self, device_id: &str) -> Result<Vec<(u64, i64)>, DbError> {
        dispatch!(self, db => db.report_seqs(device_id.to_owned()).await)
    }

    /// Queues a command (`body`: what the device receives), recording the
    /// operator who asked; returns its id. Fails with
    /// [`DbError::UnknownDevice`] if the device has never reported.
    pub async fn enqueue_command(
        &self,
        device_id: &str,
        kind: &str,
        body: Vec<u8>,
        requested_by: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, DbError> {
        let by = requested_by.map(str::to_owned);
        let id = dispatch!(self, db => db.enqueue_command(device_id.to_owned(), kind.to_owned(), body, by, now_ms).await)?;
        self.note_command_queued(device_id).await;
        Ok(id)
    }

    /// Lets this handle's next [`Self::take_commands`] for the device look at once.
    async fn note_command_queued(&self, device_id: &str) {
        self.hints().lock().await.due.insert(device_id.to_owned(), i64::MIN);
    }

    /// Hands out the device's commands that were never delivered, or were
    /// delivered at least [`DbOptions::redelivery_ms`] ago and not
    /// acknowledged; marks them delivered at `now_ms`. Oldest first. A command
    /// is handed to one caller per redelivery period, across processes.
    ///
    /// Cheap when there is nothing to hand out, so that long-polls may call it
    /// often: each handle keeps, per device, when its next command is due,
    /// refreshed by one query over the unacknowledged commands at most every
    /// [`COMMAND_HINT_REFRESH_MS`] (of `now_ms`), and touches the database
    /// only for a device with something due. Commands queued through this
    /// handle are seen at once; through another process, within that period.
    pub async fn take_commands(&self, device_id: &str, now_ms: i64) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let redelivery_ms = self.options().redelivery_ms;
        {
            let mut hints = self.hints().lock().await;
            let stale =
                hints.refreshed_at.is_none_or(|t| now_ms < t || now_ms - t >= COMMAND_HINT_REFRESH_MS);
            if stale {
                hints.due = dispatch!(self, db => db.commands_due(redelivery_ms).await)?;
                hints.refreshed_at = Some(now_ms);
            }
            if hints.due.get(device_id).is_none_or(|&due| due > now_ms) {
                return Ok(Vec::new());
            }
        }
        let taken = dispatch!(self, db => db.take_commands(device_id.to_owned(), now_ms).await)?;
        let mut hints = self.hints().lock().await;
        if taken.is_empty() {
            // Taken by another process: the next refresh tells what is left.
            hints.due.remove(device_id);
        } else {
            hints.due.insert(device_id.to_owned(), now_ms.saturating_add(redelivery_ms));
        }
        Ok(taken)
    }

    fn hints(&self) -> &tokio::sync::Mutex<CommandHints> {
        match self {
            Self::Sqlite(db) => db.hints(),
            Self::Postgres(db) => db.hints(),
        }
    }

    fn options(&self) -> &DbOptions {
        match self {
            Self::Sqlite(db) => db.options(),
            Self::Postgres(db) => db.options(),
        }
    }

    /// Records the device's acknowledgement. Returns whether the command is
    /// known for this device (a repeated acknowledgement is known, and keeps
    /// the first outcome).
    pub async fn ack_command(
        &self,
        device_id: &str,
        id: u64,
        ok: bool,
        detail: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let Ok(id) = i64::try_from(id) else { return Ok(false) };
        dispatch!(self, db => db.ack_command(device_id.to_owned(), id, ok, detail.to_owned(), now_ms).await)
    }
}

/// Ingest outcomes of a group, attributing each stored (device, seq) to the
/// first request in the group that carried it. `inserted(device, seq)` says
/// whether the backend stored the key in this transaction.
pub(crate) fn attribute_group(
    requests: &[&IngestRequest],
    mut inserted: impl FnMut(&str, i64) -> bool,
    was_down: impl Fn(&str) -> bool,
    new_device: impl Fn(&str) -> bool,
) -> Vec<IngestOutcome> {
    let mut claimed: std::collections::HashSet<(&str, i64)> = std::collections::HashSet::new();
    let mut devices_seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    requests
        .iter()
        .map(|req| {
            let id = req.device.id.as_str();
            let first_for_device = devices_seen.insert(id);
            let mut accepted = 0usize;
            for r in &req.records {
                if claimed.insert((id, r.seq)) && inserted(id, r.seq) {
                    accepted += 1;
                }
            }
            IngestOutcome {
                accepted: count_u32(accepted),
                duplicates: count_u32(req.records.len() - accepted),
                was_down: first_for_device && was_down(id),
                new_device: first_for_device && new_device(id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(DbUrl::parse("sqlite:/tmp/a.db").ok(), Some(DbUrl::Sqlite("/tmp/a.db".into())));
        assert_eq!(DbUrl::parse("sqlite:///tmp/a.db").ok(), Some(DbUrl::Sqlite("/tmp/a.db".into())));
        assert_eq!(DbUrl::parse("carrier.db").ok(), Some(DbUrl::Sqlite("carrier.db".into())));
        assert!(matches!(DbUrl::parse("postgres://u:p@h/db"), Ok(DbUrl::Postgres(_))));
        assert!(matches!(DbUrl::parse("postgresql://h/db"), Ok(DbUrl::Postgres(_))));
        assert!(DbUrl::parse("mysql://u:secret@h/db").is_err());
        assert!(DbUrl::parse("sqlite:").is_err());
        assert!(DbUrl::parse("sqlite::memory:").is_err());
        let e = DbUrl::parse("mysql://u:secret@h/db").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("postgres://cpe:pw@127.0.0.1:5432/db"), "postgres://cpe:***@127.0.0.1:5432/db");
        assert_eq!(redact_url("postgres://cpe@h/db"), "postgres://cpe@h/db");
        assert_eq!(redact_url("postgres://h/db?user=a"), "postgres://h/db?user=a");
        assert_eq!(redact_url("sqlite:/x"), "sqlite:/x");
    }

    #[test]
    fn states_and_kinds_round_trip() {
        for s in [DeviceState::Up, DeviceState::Down] {
            assert_eq!(s.as_str().parse::<DeviceState>().ok(), Some(s));
        }
        for k in [ReportKind::Heartbeat, ReportKind::Event] {
            assert_eq!(k.as_str().parse::<ReportKind>().ok(), Some(k));
        }
        assert!("sideways".parse::<DeviceState>().is_err());
    }

    fn req(id: &str, seqs: &[i64]) -> IngestRequest {
        IngestRequest {
            device: DeviceSeen { id: id.into(), institution_code: "1".into(), cert_not_after: None },
            records: seqs
                .iter()
                .map(|&seq| StoredRecord {
                    seq,
                    at_ms: 0,
                    kind: ReportKind::Heartbeat,
                    body: vec![],
                    summary: String::new(),
                    health: None,
                    incident: None,
                })
                .collect(),
            now_ms: 0,
        }
    }

    #[test]
    fn group_attribution_counts_each_key_once() {
        let a = req("a", &[1, 2, 2]);
        let b = req("a", &[2, 3]);
        let c = req("b", &[1]);
        let stored: std::collections::HashSet<(&str, i64)> = [("a", 1), ("a", 2), ("a", 3)].into();
        let out = attribute_group(&[&a, &b, &c], |d, s| stored.contains(&(d, s)), |d| d == "a", |d| d == "b");
        assert_eq!(
            (out[0].accepted, out[0].duplicates, out[0].was_down, out[0].new_device),
            (2, 1, true, false)
        );
        assert_eq!((out[1].accepted, out[1].duplicates, out[1].was_down), (1, 1, false));
        assert_eq!((out[2].accepted, out[2].duplicates, out[2].new_device), (0, 1, true));
    }
}
