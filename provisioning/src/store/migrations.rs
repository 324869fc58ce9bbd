//! Versioned schema migrations, one ordered list for both backends.
//!
//! Each [`Migration`] has a version (strictly increasing), a name and the
//! same logical change in the SQLite and in the PostgreSQL dialect. When a
//! database is opened, the versions missing from `schema_migrations(version,
//! name, applied_at)` are applied in order, each recorded in the same
//! transaction as its change. Applying is idempotent, and serialised between
//! processes (`BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on
//! PostgreSQL). A database with a version this build does not know is refused
//! ([`super::DbError::SchemaTooNew`]). Never edit a released migration: add one.
//!
//! Performance choices (every heartbeat rewrites its device's row):
//! `devices` has no index besides its key, so that PostgreSQL can update rows
//! in place (HOT; `fillfactor = 50` leaves room) and SQLite dirties no extra
//! index page — `mark_silent` scans the table, which is small. `reports` has
//! no foreign key to `devices`: ingest writes both in one transaction, and a
//! per-row check would be the most expensive part of storing a report.
//!
//! Times are Unix milliseconds (`BIGINT`/`INTEGER`) except `cert_not_after`
//! (Unix seconds, as in the certificate). `applied_at` is Unix ms from the
//! database's clock.

/// One schema change in both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, strictly increasing in [`MIGRATIONS`].
    pub version: i64,
    /// Short description.
    pub name: &'static str,
    /// SQLite statements.
    pub sqlite: &'static str,
    /// PostgreSQL statements.
    pub postgres: &'static str,
}

/// Key of the PostgreSQL advisory lock that serialises migrations ("cpe-mig").
pub const PG_MIGRATION_LOCK: i64 = 0x0063_7065_2d6d_6967;

/// Creates the bookkeeping table (SQLite).
pub const SQLITE_BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)";

/// Creates the bookkeeping table (PostgreSQL).
pub const PG_BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Records one applied migration (SQLite; `?1` version, `?2` name).
pub const SQLITE_RECORD: &str = "INSERT INTO schema_migrations (version, name, applied_at)
    VALUES (?1, ?2, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))";

/// Records one applied migration (PostgreSQL; `$1` version, `$2` name).
pub const PG_RECORD: &str = "INSERT INTO schema_migrations (version, name, applied_at)
    VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)";

/// All migrations, in order.
pub const MIGRATIONS: &[Migration] = &[V1, V2, V3, V4, V5, V6_HEARTBEAT_ROLLUPS];

const V1: Migration = Migration {
    version: 1,
    name: "devices, reports, alerts, commands",
    sqlite: "
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    institution_code TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    state_since INTEGER NOT NULL,
    cert_not_after INTEGER,
    last_health TEXT,
    suspension TEXT
);

CREATE TABLE reports (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    recorded_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('heartbeat', 'event')),
    body BLOB NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at_ms INTEGER NOT NULL,
    cleared_at_ms INTEGER
);
CREATE INDEX alerts_open ON alerts (device_id, kind) WHERE cleared_at_ms IS NULL;
CREATE INDEX alerts_by_device ON alerts (device_id);
CREATE INDEX alerts_by_time ON alerts (raised_at_ms);

CREATE TABLE commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    deliveries INTEGER NOT NULL DEFAULT 0,
    acked_at_ms INTEGER,
    ok INTEGER CHECK (ok IN (0, 1)),
    detail TEXT
);
CREATE INDEX commands_by_device ON commands (device_id, id);
CREATE INDEX commands_pending ON commands (device_id, id) WHERE acked_at_ms IS NULL;
",
    postgres: "
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    state_since BIGINT NOT NULL,
    cert_not_after BIGINT,
    last_health TEXT,
    suspension TEXT
) WITH (fillfactor = 50);

CREATE TABLE reports (
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 0),
    recorded_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('heartbeat', 'event')),
    body BYTEA NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE alerts (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    cleared_at_ms BIGINT
);
CREATE INDEX alerts_open ON alerts (device_id, kind) WHERE cleared_at_ms IS NULL;
CREATE INDEX alerts_by_device ON alerts (device_id);
CREATE INDEX alerts_by_time ON alerts (raised_at_ms);

CREATE TABLE commands (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    acked_at_ms BIGINT,
    ok BOOLEAN,
    detail TEXT
);
CREATE INDEX commands_by_device ON commands (device_id, id);
CREATE INDEX commands_pending ON commands (device_id, id) WHERE acked_at_ms IS NULL;
",
};

/// The §2.2 compliance flow (cases and their trail, signed orders with their
/// delivery and receipts) and incident records. `devices.suspension` (from
/// version 1) holds the service state of the newest applied order.
const V2: Migration = Migration {
    version: 2,
    name: "compliance cases, orders and receipts; incidents",
    sqlite: "
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    opened_at_ms INTEGER NOT NULL
);
CREATE INDEX cases_by_device ON cases (device_id, id);

CREATE TABLE case_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    operator TEXT NOT NULL,
    text TEXT NOT NULL,
    deadline_ms INTEGER,
    corrected INTEGER CHECK (corrected IN (0, 1)),
    justification TEXT,
    recipient TEXT,
    order_id INTEGER
);
CREATE INDEX case_events_by_case ON case_events (case_id, id);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    case_id INTEGER REFERENCES cases (id),
    command_id INTEGER REFERENCES commands (id),
    kind TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence > 0),
    key_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    deadline INTEGER,
    reason_ja TEXT NOT NULL,
    reason_en TEXT NOT NULL,
    operator TEXT NOT NULL,
    justification TEXT,
    order_bytes BLOB NOT NULL,
    signed BLOB NOT NULL,
    order_hash BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    outcome TEXT CHECK (outcome IN ('applied', 'refused')),
    outcome_at_ms INTEGER,
    detail TEXT,
    receipt_bytes BLOB,
    receipt_scheme INTEGER,
    receipt_signature BLOB,
    receipt_cert BLOB,
    applied_at INTEGER,
    device_clock INTEGER,
    time_floor INTEGER,
    clock TEXT,
    resulting_state TEXT,
    drill INTEGER CHECK (drill IN (0, 1)),
    UNIQUE (device_id, sequence)
);
CREATE INDEX orders_by_command ON orders (command_id);
CREATE INDEX orders_by_case ON orders (case_id);

CREATE TABLE incidents (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    command_id INTEGER,
    segment TEXT NOT NULL,
    summary TEXT NOT NULL,
    report_json TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
);
",
    postgres: "
CREATE TABLE cases (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    opened_at_ms BIGINT NOT NULL
);
CREATE INDEX cases_by_device ON cases (device_id, id);

CREATE TABLE case_events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    case_id BIGINT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    operator TEXT NOT NULL,
    text TEXT NOT NULL,
    deadline_ms BIGINT,
    corrected BOOLEAN,
    justification TEXT,
    recipient TEXT,
    order_id BIGINT
);
CREATE INDEX case_events_by_case ON case_events (case_id, id);

CREATE TABLE orders (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    case_id BIGINT REFERENCES cases (id),
    command_id BIGINT REFERENCES commands (id),
    kind TEXT NOT NULL,
    sequence BIGINT NOT NULL CHECK (sequence > 0),
    key_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    deadline BIGINT,
    reason_ja TEXT NOT NULL,
    reason_en TEXT NOT NULL,
    operator TEXT NOT NULL,
    justification TEXT,
    order_bytes BYTEA NOT NULL,
    signed BYTEA NOT NULL,
    order_hash BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    outcome TEXT CHECK (outcome IN ('applied', 'refused')),
    outcome_at_ms BIGINT,
    detail TEXT,
    receipt_bytes BYTEA,
    receipt_scheme BIGINT,
    receipt_signature BYTEA,
    receipt_cert BYTEA,
    applied_at BIGINT,
    device_clock BIGINT,
    time_floor BIGINT,
    clock TEXT,
    resulting_state TEXT,
    drill BOOLEAN,
    UNIQUE (device_id, sequence)
);
CREATE INDEX orders_by_command ON orders (command_id);
CREATE INDEX orders_by_case ON orders (case_id);

CREATE TABLE incidents (
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    incident_id TEXT NOT NULL,
    command_id BIGINT,
    segment TEXT NOT NULL,
    summary TEXT NOT NULL,
    report_json TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
",
};

/// One spelling of the order kind "key rotation": the carrier stored
/// `key-rotation` while the devices write `key_rotation` in their audit logs
/// (which cannot be rewritten); stored orders and their commands take the
/// devices' spelling, [`cpe_protocol::order::OrderKind::name`].
const V3: Migration =
    Migration { version: 3, name: "order kind key_rotation", sqlite: KIND_SPELLING, postgres: KIND_SPELLING };

/// The same statements in both dialects.
const KIND_SPELLING: &str = "
UPDATE orders SET kind = 'key_rotation' WHERE kind = 'key-rotation';
UPDATE commands SET kind = 'order:key_rotation' WHERE kind = 'order:key-rotation';
";

/// Fleet summaries sent (one per kind and UTC day, across server
/// processes): the key makes the claim atomic.
const V4: Migration = Migration {
    version: 4,
    name: "fleet summaries",
    sqlite: "CREATE TABLE fleet_summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    day TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, day)
);",
    postgres: "CREATE TABLE fleet_summaries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    day TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, day)
);",
};

/// Operators of the carrier console and API, their sessions, who
/// acknowledged an alert when, and who queued a command (issue 10).
/// A session is valid only while its operator is enabled and was opened
/// after the operator's last password change, so that disabling an operator
/// or changing a password ends their sessions in the same one statement.
/// Only a SHA-256 of each session token is stored: a copy of the database
/// opens no session.
const V5: Migration = Migration {
    version: 5,
    name: "operators, sessions, who acknowledged and who queued",
    sqlite: OPERATORS,
    postgres: OPERATORS,
};

/// The same statements in both dialects (`BIGINT` is an integer column in SQLite too).
const OPERATORS: &str = "
CREATE TABLE operators (
    name TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'compliance')),
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    password_changed_at_ms BIGINT NOT NULL,
    disabled_at_ms BIGINT
);

CREATE TABLE operator_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    operator TEXT NOT NULL REFERENCES operators (name),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at_ms);

ALTER TABLE alerts ADD COLUMN acknowledged_at_ms BIGINT;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE commands ADD COLUMN requested_by TEXT;
";

/// Data retention (issue 10): heartbeats older than the full-resolution
/// period are rolled up into five-minute buckets, those into hourly ones,
/// and hourly ones are deleted at the end of their period (see
/// `crate::retention`). One row per device, resolution and bucket; lines
/// are a JSON array of `{name, samples, rx_bps, tx_bps}`. Retention finds
/// old reports by kind and reception time (one index, appended to at the
/// right edge by ingest) and old rollups by resolution and bucket.
const V6_HEARTBEAT_ROLLUPS: Migration = Migration {
    version: 6,
    name: "heartbeat rollups; reports by reception time",
    sqlite: HEARTBEAT_ROLLUPS,
    postgres: HEARTBEAT_ROLLUPS,
};

/// The same statements in both dialects (`DOUBLE PRECISION` is a REAL column in SQLite).
const HEARTBEAT_ROLLUPS: &str = "
CREATE TABLE heartbeat_rollups (
    device_id TEXT NOT NULL,
    resolution_s BIGINT NOT NULL CHECK (resolution_s IN (300, 3600)),
    bucket_ms BIGINT NOT NULL,
    samples BIGINT NOT NULL CHECK (samples > 0),
    cpu_min DOUBLE PRECISION NOT NULL,
    cpu_avg DOUBLE PRECISION NOT NULL,
    cpu_max DOUBLE PRECISION NOT NULL,
    mem_min DOUBLE PRECISION NOT NULL,
    mem_avg DOUBLE PRECISION NOT NULL,
    mem_max DOUBLE PRECISION NOT NULL,
    lines TEXT NOT NULL,
    PRIMARY KEY (device_id, resolution_s, bucket_ms)
);

CREATE INDEX heartbeat_rollups_by_age ON heartbeat_rollups (resolution_s, bucket_ms);
CREATE INDEX reports_by_received ON reports (kind, received_at_ms);
";

/// Highest version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The migrations a database with the `applied` versions lacks, in order;
/// refuses a database migrated by a newer build.
pub(crate) fn pending(applied: &[i64]) -> Result<Vec<&'static Migration>, super::DbError> {
    if let Some(&found) = applied.iter().max() {
        if found > latest_version() {
            return Err(super::DbError::SchemaTooNew { found, known: latest_version() });
        }
    }
    Ok(MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_are_the_missing_ones_and_newer_databases_are_refused() {
        assert_eq!(pending(&[]).unwrap().len(), MIGRATIONS.len());
        assert_eq!(pending(&[1]).unwrap().iter().map(|m| m.version).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
        assert!(pending(&[1, 2, 3, 4, 5, 6]).unwrap().is_empty());
        assert!(matches!(pending(&[latest_version() + 1]), Err(super::super::DbError::SchemaTooNew { .. })));
    }

    #[test]
    fn versions_strictly_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.first().is_some_and(|m| m.version >= 1));
        assert_eq!(latest_version(), i64::try_from(MIGRATIONS.len()).unwrap_or(-1));
    }
}
