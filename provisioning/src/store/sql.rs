//! Every query of the store, written once.
//!
//! **Why a dialect layer** (and not `sqlx` or a query builder): the two
//! backends differ in how they run statements — SQLite through one writer
//! thread that group-commits closures on a `rusqlite` connection, PostgreSQL
//! through pipelined `tokio-postgres` statements and set-based `unnest`
//! ingest — but not in *what* the statements say: only the placeholders
//! (`?N` / `$N`) and row locks differ. So each query is one string here, in
//! SQLite's syntax with `FOR UPDATE` where PostgreSQL needs a row lock, and
//! [`sql!`] derives both texts at compile time: PostgreSQL gets `$N`, SQLite
//! loses the row lock (its writers are serialised by `BEGIN IMMEDIATE`).
//! `sqlx` would replace both tuned execution paths and add a large
//! dependency to get what a dozen lines give; a query builder would turn
//! readable SQL into builder calls without removing any difference that
//! matters here.
//!
//! The one exception is ingest, the hot path, which is different SQL on
//! purpose: SQLite stores row by row inside its group transaction, while
//! PostgreSQL stores a whole group in three set-based statements over
//! `unnest` arrays, which SQLite has no equivalent of. Those statements live
//! with their backend ([`super::sqlite`], [`super::postgres`]).
//!
//! Rows are read through [`super::rows`], the same for both backends.

/// One query in both dialects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    /// The SQLite text (`?N` placeholders, no row locks).
    pub sqlite: &'static str,
    /// The PostgreSQL text (`$N` placeholders, row locks kept).
    pub postgres: &'static str,
}

/// A row lock, which SQLite has no syntax for.
const ROW_LOCK: &[u8] = b" FOR UPDATE";

/// `sql` with every `?` turned into `$` (same length).
pub(crate) const fn postgres_bytes<const N: usize>(sql: &str) -> [u8; N] {
    let b = sql.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if b[i] == b'?' { b'$' } else { b[i] };
        i += 1;
    }
    out
}

/// `sql` with every row lock blanked out (same length).
pub(crate) const fn sqlite_bytes<const N: usize>(sql: &str) -> [u8; N] {
    let b = sql.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        if at(b, i, ROW_LOCK) {
            let mut j = 0;
            while j < ROW_LOCK.len() {
                out[i + j] = b' ';
                j += 1;
            }
            i += ROW_LOCK.len();
        } else {
            out[i] = b[i];
            i += 1;
        }
    }
    out
}

/// Whether `pattern` occurs in `b` at `i`.
const fn at(b: &[u8], i: usize, pattern: &[u8]) -> bool {
    if i + pattern.len() > b.len() {
        return false;
    }
    let mut j = 0;
    while j < pattern.len() {
        if b[i + j] != pattern[j] {
            return false;
        }
        j += 1;
    }
    true
}

/// The bytes as text; the conversions above only swap ASCII bytes, so this
/// never fails (the test below checks that no text is empty).
pub(crate) const fn text(bytes: &'static [u8]) -> &'static str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => "",
    }
}

/// `sql!(NAME = "…");` defines the [`Sql`] constant `NAME`.
macro_rules! sql {
    ($($(#[$doc:meta])* $name:ident = $text:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) const $name: Sql = {
            const SQLITE: [u8; $text.len()] = sqlite_bytes($text);
            const POSTGRES: [u8; $text.len()] = postgres_bytes($text);
            Sql { sqlite: text(&SQLITE), postgres: text(&POSTGRES) }
        };
    )*
    /// Every query, for the test that both texts are sound.
    #[cfg(test)]
    pub(crate) const ALL: &[(&str, Sql)] = &[$((stringify!($name), $name)),*];
    };
}

/// The columns of [`super::rows::device_row`].
macro_rules! device_select {
    () => {
        "SELECT d.id, d.institution_code, d.first_seen, d.last_seen, d.state, d.state_since,
        d.cert_not_after, d.last_health, d.suspension,
        (SELECT count(*) FROM alerts a WHERE a.device_id = d.id AND a.cleared_at_ms IS NULL)
    FROM devices d"
    };
}

/// The filter of a device page (see `DEVICES_PAGE`).
macro_rules! devices_filter {
    () => {
        "
    WHERE (CAST(?1 AS TEXT) = '' OR d.id LIKE ?1 ESCAPE '\\' OR d.institution_code LIKE ?1 ESCAPE '\\')
      AND (CAST(?2 AS TEXT) = ''
        OR (?2 IN ('up', 'down') AND d.state = ?2)
        OR (?2 = 'suspended' AND d.suspension IS NOT NULL)
        OR (?2 = 'alerting' AND EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.cleared_at_ms IS NULL)))"
    };
}

/// The columns of [`super::rows::alert_row`].
macro_rules! alert_select {
    () => {
        "SELECT id, device_id, kind, level, message, raised_at_ms, cleared_at_ms, acknowledged_at_ms,
    acknowledged_by FROM alerts"
    };
}

/// The columns of [`super::rows::order_row`]: an order with its command's delivery.
macro_rules! order_select {
    () => {
        "SELECT o.id, o.device_id, o.case_id, o.command_id, o.kind, o.sequence,
    o.key_id, o.issued_at, o.not_before, o.expires_at, o.deadline, o.reason_ja, o.reason_en, o.operator,
    o.justification, o.created_at_ms, o.order_hash, c.delivered_at_ms, CAST(coalesce(c.deliveries, 0) AS BIGINT),
    o.outcome, o.outcome_at_ms, o.detail, o.applied_at, o.device_clock, o.time_floor, o.clock,
    o.resulting_state, o.drill, o.receipt_scheme
    FROM orders o LEFT JOIN commands c ON c.id = o.command_id"
    };
}

/// The columns of [`super::rows::operator_row`].
macro_rules! operator_select {
    () => {
        "SELECT name, role, password_hash, created_at_ms, password_changed_at_ms, disabled_at_ms FROM operators"
    };
}

/// The columns of [`super::rows::rollup_row`].
macro_rules! rollup_columns {
    () => {
        "bucket_ms, samples, cpu_min, cpu_avg, cpu_max, mem_min, mem_avg, mem_max, lines"
    };
}

sql! {
    /// Applied schema versions, ascending.
    SCHEMA_VERSIONS = "SELECT version FROM schema_migrations ORDER BY version";

    /// `up` devices silent since before `?1` become `down` at `?2`.
    MARK_SILENT = "UPDATE devices SET state = 'down', state_since = ?2
    WHERE state = 'up' AND last_seen < ?1 RETURNING id";

    /// Claims the fleet summary of kind `?1` for day `?2` (no row: another
    /// process has sent it).
    CLAIM_FLEET_SUMMARY = "INSERT INTO fleet_summaries (kind, day, sent_at_ms, body)
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kind, day) DO NOTHING RETURNING id";

    /// An alert for a device that has reported.
    RAISE_ALERT = "INSERT INTO alerts (device_id, kind, level, message, raised_at_ms)
    SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1)
    RETURNING id";
    /// Clears a device's open alerts of one kind.
    CLEAR_ALERTS = "UPDATE alerts SET cleared_at_ms = ?3
    WHERE device_id = ?1 AND kind = ?2 AND cleared_at_ms IS NULL";
    /// Alerts, newest first (`?1`: open ones only).
    ALERTS = concat!(alert_select!(), "
    WHERE (NOT ?1 OR cleared_at_ms IS NULL)
    ORDER BY raised_at_ms DESC, id DESC LIMIT ?2");
    /// One alert.
    ALERT = concat!(alert_select!(), " WHERE id = ?1");
    /// The first acknowledgement of an alert, by `?3` at `?2`.
    ACKNOWLEDGE_ALERT = "UPDATE alerts SET acknowledged_at_ms = ?2, acknowledged_by = ?3
    WHERE id = ?1 AND acknowledged_at_ms IS NULL";
    /// A device's open alerts, newest first.
    OPEN_ALERTS_OF_DEVICE = concat!(alert_select!(), "
    WHERE device_id = ?1 AND cleared_at_ms IS NULL ORDER BY raised_at_ms DESC, id DESC");

    /// All devices.
    DEVICES = concat!(device_select!(), " ORDER BY d.id");
    /// A page of devices: `?1` LIKE pattern on id and institution code
    /// (`''` for all), `?2` state filter (`''`, `up`, `down`, `suspended`,
    /// `alerting`), `?3` sort key (`id`, `last_seen`, `cert_not_after`,
    /// `state`), `?4` descending, `?5` limit, `?6` offset.
    DEVICES_PAGE = concat!(device_select!(), devices_filter!(), "
    ORDER BY
      CASE WHEN NOT ?4 AND ?3 = 'last_seen' THEN d.last_seen END,
      CASE WHEN ?4 AND ?3 = 'last_seen' THEN d.last_seen END DESC,
      CASE WHEN NOT ?4 AND ?3 = 'cert_not_after' THEN d.cert_not_after END,
      CASE WHEN ?4 AND ?3 = 'cert_not_after' THEN d.cert_not_after END DESC,
      CASE WHEN NOT ?4 AND ?3 = 'state' THEN d.state END,
      CASE WHEN ?4 AND ?3 = 'state' THEN d.state END DESC,
      CASE WHEN NOT ?4 THEN d.id END,
      CASE WHEN ?4 THEN d.id END DESC
    LIMIT ?5 OFFSET ?6");
    /// How many devices `DEVICES_PAGE` pages through (same `?1`, `?2`).
    DEVICES_COUNT = concat!("SELECT count(*) FROM devices d", devices_filter!());
    /// One device.
    DEVICE = concat!(device_select!(), " WHERE d.id = ?1");
    /// A device's latest reports.
    RECENT_REPORTS = "SELECT seq, recorded_at_ms, received_at_ms, kind, summary FROM reports
    WHERE device_id = ?1 ORDER BY seq DESC LIMIT ?2";
    /// Every report of a device, (seq, received at).
    REPORT_SEQS = "SELECT seq, received_at_ms FROM reports WHERE device_id = ?1 ORDER BY seq";

    /// A device's latest commands.
    RECENT_COMMANDS = "SELECT id, kind, created_at_ms, delivered_at_ms, CAST(deliveries AS BIGINT),
    acked_at_ms, ok, detail, requested_by
    FROM commands WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2";
    /// Queues a command for a device that has reported.
    ENQUEUE_COMMAND = "INSERT INTO commands (device_id, kind, body, created_at_ms, requested_by)
    SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1)
    RETURNING id";
    /// When each device's next unacknowledged command is due (`?1`: redelivery period).
    COMMANDS_DUE = "SELECT device_id, min(coalesce(delivered_at_ms + ?1, -9223372036854775808)) FROM commands
    WHERE acked_at_ms IS NULL GROUP BY device_id";
    /// Hands out a device's due commands, marked delivered at `?2`.
    TAKE_COMMANDS = "UPDATE commands SET delivered_at_ms = ?2, deliveries = deliveries + 1
    WHERE device_id = ?1 AND acked_at_ms IS NULL
      AND (delivered_at_ms IS NULL OR delivered_at_ms <= ?3)
    RETURNING id, body";
    /// The first acknowledgement of a command.
    ACK_COMMAND = "UPDATE commands SET acked_at_ms = ?3, ok = ?4, detail = ?5
    WHERE device_id = ?1 AND id = ?2 AND acked_at_ms IS NULL";
    /// Whether the device has this command.
    COMMAND_KNOWN = "SELECT 1 FROM commands WHERE device_id = ?1 AND id = ?2";

    /// One case.
    CASE = "SELECT id, device_id, opened_at_ms FROM cases WHERE id = ?1";
    /// The device's newest case.
    LATEST_CASE = "SELECT max(id) FROM cases WHERE device_id = ?1";
    /// Opens a case for a device that has reported.
    INSERT_CASE = "INSERT INTO cases (device_id, opened_at_ms)
    SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1) RETURNING id";
    /// Locks a case (steps of one case are serialised).
    LOCK_CASE = "SELECT 1 FROM cases WHERE id = ?1 FOR UPDATE";
    /// One step of a case trail.
    INSERT_EVENT = "INSERT INTO case_events
    (case_id, step, at_ms, operator, text, deadline_ms, corrected, justification, recipient, order_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id";
    /// A case's trail, oldest first.
    EVENTS = "SELECT id, step, at_ms, operator, text, deadline_ms, corrected,
    justification, recipient, order_id FROM case_events WHERE case_id = ?1 ORDER BY id";

    /// Locks a device (serialises order issuing for it).
    LOCK_DEVICE = "SELECT 1 FROM devices WHERE id = ?1 FOR UPDATE";
    /// The device's next order sequence number.
    NEXT_SEQUENCE = "SELECT coalesce(max(sequence), 0) + 1 FROM orders WHERE device_id = ?1";
    /// An order before signing (its id is needed to sign it).
    INSERT_ORDER = "INSERT INTO orders (device_id, case_id, kind, sequence, key_id, issued_at,
    not_before, expires_at, deadline, reason_ja, reason_en, operator, justification, order_bytes, signed,
    order_hash, created_at_ms)
    VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?13, ?14) RETURNING id";
    /// The command that carries a signed order.
    INSERT_ORDER_COMMAND =
    "INSERT INTO commands (device_id, kind, body, created_at_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id";
    /// The order once signed.
    COMPLETE_ORDER = "UPDATE orders SET key_id = ?2, order_bytes = ?3, signed = ?4,
    order_hash = ?5, command_id = ?6 WHERE id = ?1";
    /// The device's outcome of an order (first acknowledgement only).
    RECORD_OUTCOME = "UPDATE orders SET outcome = ?3, outcome_at_ms = ?4, detail = ?5,
    receipt_bytes = ?6, receipt_scheme = ?7, receipt_signature = ?8, applied_at = ?9, device_clock = ?10,
    time_floor = ?11, clock = ?12, resulting_state = ?13, drill = ?14, receipt_cert = ?15
    WHERE device_id = ?1 AND command_id = ?2 AND outcome IS NULL RETURNING id, sequence";
    /// The device's service state after its newest applied order.
    SET_SERVICE_STATE = "UPDATE devices SET suspension = ?3 WHERE id = ?1
    AND NOT EXISTS (SELECT 1 FROM orders WHERE device_id = ?1 AND outcome = 'applied' AND sequence > ?2)";
    /// Orders, newest first.
    ORDERS = concat!(order_select!(), " ORDER BY o.id DESC LIMIT ?1");
    /// A device's orders, newest first.
    ORDERS_OF_DEVICE = concat!(order_select!(), " WHERE o.device_id = ?1 ORDER BY o.id DESC LIMIT ?2");
    /// A case's orders, oldest first.
    ORDERS_OF_CASE = concat!(order_select!(), " WHERE o.case_id = ?1 ORDER BY o.id");
    /// One order.
    ORDER = concat!(order_select!(), " WHERE o.id = ?1");
    /// The order a device's command carries.
    ORDER_BY_COMMAND = concat!(order_select!(), " WHERE o.device_id = ?1 AND o.command_id = ?2");
    /// The signed order and its receipt evidence.
    EVIDENCE = "SELECT signed, receipt_bytes, receipt_scheme, receipt_signature, receipt_cert FROM orders WHERE id = ?1";

    /// An incident record, once.
    INSERT_INCIDENT = "INSERT INTO incidents (device_id, seq, incident_id, command_id, segment,
    summary, report_json, recorded_at_ms, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (device_id, seq) DO NOTHING";
    /// A device's incident records, newest first.
    INCIDENTS = "SELECT seq, incident_id, command_id, segment, summary, report_json,
    recorded_at_ms, received_at_ms FROM incidents WHERE device_id = ?1 ORDER BY seq DESC LIMIT ?2";

    /// Devices per state, with the newest report of each state (for the lag).
    METRIC_DEVICES = "SELECT state, count(*), max(last_seen) FROM devices GROUP BY state ORDER BY state";
    /// Devices under a stop order, and devices with open alerts.
    METRIC_SUSPENDED_ALERTING = "SELECT (SELECT count(*) FROM devices WHERE suspension IS NOT NULL),
    (SELECT count(DISTINCT device_id) FROM alerts WHERE cleared_at_ms IS NULL)";
    /// Open alerts per kind and level.
    METRIC_ALERTS_OPEN = "SELECT kind, level, count(*) FROM alerts WHERE cleared_at_ms IS NULL
    GROUP BY kind, level ORDER BY kind, level";
    /// Commands per state.
    METRIC_COMMANDS = "SELECT CASE WHEN acked_at_ms IS NULL AND delivered_at_ms IS NULL THEN 'queued'
      WHEN acked_at_ms IS NULL THEN 'delivered' WHEN ok THEN 'succeeded' ELSE 'failed' END, count(*)
    FROM commands GROUP BY 1 ORDER BY 1";
    /// Orders per state.
    METRIC_ORDERS = "SELECT coalesce(o.outcome, CASE WHEN c.delivered_at_ms IS NULL THEN 'queued' ELSE 'delivered' END),
    count(*) FROM orders o LEFT JOIN commands c ON c.id = o.command_id GROUP BY 1 ORDER BY 1";

    /// Whether a device has reported.
    DEVICE_KNOWN = "SELECT 1 FROM devices WHERE id = ?1";
    /// A device's heartbeats recorded in [`?2`, `?3`), for
    /// [`super::rows::heartbeat_sample`].
    HEARTBEATS_BETWEEN = "SELECT recorded_at_ms, received_at_ms, body FROM reports
    WHERE device_id = ?1 AND kind = 'heartbeat' AND recorded_at_ms >= ?2 AND recorded_at_ms < ?3";
    /// A device's rollups `?2` seconds wide with buckets starting in [`?3`, `?4`).
    ROLLUPS_BETWEEN = concat!("SELECT ", rollup_columns!(), " FROM heartbeat_rollups
    WHERE device_id = ?1 AND resolution_s = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4");
    /// One stored rollup.
    ROLLUP = concat!("SELECT ", rollup_columns!(), " FROM heartbeat_rollups
    WHERE device_id = ?1 AND resolution_s = ?2 AND bucket_ms = ?3");
    /// Stores a rollup, replacing the one of its bucket (which the caller has merged in).
    PUT_ROLLUP = concat!("INSERT INTO heartbeat_rollups (device_id, resolution_s, ", rollup_columns!(), ")
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (device_id, resolution_s, bucket_ms) DO UPDATE SET samples = excluded.samples,
      cpu_min = excluded.cpu_min, cpu_avg = excluded.cpu_avg, cpu_max = excluded.cpu_max,
      mem_min = excluded.mem_min, mem_avg = excluded.mem_avg, mem_max = excluded.mem_max,
      lines = excluded.lines");
    /// Takes (deletes and returns) at most `?2` heartbeats received before
    /// `?1`, oldest first, for [`super::rows::heartbeat_sample`] (+ device id).
    /// Each row is returned to one transaction only, across processes.
    TAKE_OLD_HEARTBEATS = "DELETE FROM reports WHERE kind = 'heartbeat' AND (device_id, seq) IN (
      SELECT device_id, seq FROM reports WHERE kind = 'heartbeat' AND received_at_ms < ?1
      ORDER BY received_at_ms LIMIT ?2)
    RETURNING recorded_at_ms, received_at_ms, body, device_id";
    /// Takes at most `?3` rollups `?1` seconds wide with buckets before `?2`,
    /// oldest first, for [`super::rows::rollup_row`] (+ device id).
    TAKE_OLD_ROLLUPS = concat!("DELETE FROM heartbeat_rollups WHERE resolution_s = ?1 AND (device_id, bucket_ms) IN (
      SELECT device_id, bucket_ms FROM heartbeat_rollups WHERE resolution_s = ?1 AND bucket_ms < ?2
      ORDER BY bucket_ms LIMIT ?3)
    RETURNING ", rollup_columns!(), ", device_id");
    /// Deletes at most `?2` events received before `?1`, oldest first.
    DELETE_OLD_EVENTS = "DELETE FROM reports WHERE kind = 'event' AND (device_id, seq) IN (
      SELECT device_id, seq FROM reports WHERE kind = 'event' AND received_at_ms < ?1
      ORDER BY received_at_ms LIMIT ?2)";

    /// A new operator, unless the name is taken.
    INSERT_OPERATOR = "INSERT INTO operators (name, role, password_hash, created_at_ms, password_changed_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING";
    /// Every operator, by name.
    OPERATORS = concat!(operator_select!(), " ORDER BY name");
    /// One operator.
    OPERATOR = concat!(operator_select!(), " WHERE name = ?1");
    /// Disables an enabled operator at `?2`.
    DISABLE_OPERATOR = "UPDATE operators SET disabled_at_ms = ?2 WHERE name = ?1 AND disabled_at_ms IS NULL";
    /// A new password hash, changed at `?3`.
    SET_OPERATOR_PASSWORD = "UPDATE operators SET password_hash = ?2, password_changed_at_ms = ?3 WHERE name = ?1";
    /// A new session.
    INSERT_SESSION = "INSERT INTO operator_sessions (token_hash, operator, created_at_ms, expires_at_ms)
    VALUES (?1, ?2, ?3, ?4)";
    /// The operator of a session still valid at `?2`.
    SESSION_OPERATOR = concat!(operator_select!(), " o
    WHERE o.disabled_at_ms IS NULL AND o.name = (SELECT s.operator FROM operator_sessions s
      WHERE s.token_hash = ?1 AND s.expires_at_ms > ?2 AND s.created_at_ms >= o.password_changed_at_ms)");
    /// Ends one session.
    DELETE_SESSION = "DELETE FROM operator_sessions WHERE token_hash = ?1";
    /// Forgets sessions expired before `?1`.
    DELETE_EXPIRED_SESSIONS = "DELETE FROM operator_sessions WHERE expires_at_ms <= ?1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_are_derived_from_the_one_text() {
        for (name, q) in ALL {
            assert!(!q.sqlite.is_empty() && q.sqlite.len() == q.postgres.len(), "{name}");
            assert!(!q.postgres.contains('?'), "{name}: {}", q.postgres);
            assert!(!q.sqlite.contains('$') && !q.sqlite.contains("FOR UPDATE"), "{name}: {}", q.sqlite);
        }
        assert_eq!(LOCK_DEVICE.postgres, "SELECT 1 FROM devices WHERE id = $1 FOR UPDATE");
        assert_eq!(LOCK_DEVICE.sqlite.trim_end(), "SELECT 1 FROM devices WHERE id = ?1");
    }
}
