//! SQLite backend: one writer thread with group commit, pooled readers.
//!
//! **Writes.** [`SqliteDb`] owns one write connection on a dedicated thread
//! (`cpe-db-writer`). Every write (ingest, `mark_silent`, alerts, commands) is
//! a job sent over a bounded channel; the thread takes the first job, then
//! everything else already queued (up to [`DbOptions::max_group`] jobs or
//! [`super::MAX_GROUP_RECORDS`] records), runs them in one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then answers every job through its
//! oneshot channel. Under load, one commit (one WAL append; no fsync with
//! `synchronous=NORMAL`) covers many requests, and callers are never told
//! "stored" before the commit. There is no extra waiting: an idle writer
//! commits a lone job at once. If a job fails (which valid input does not
//! make happen), the group is rolled back and its jobs are run again one
//! transaction each, so that only the failing job fails — cheaper in the
//! normal case than a savepoint per job.
//!
//! The WAL is checkpointed every 10,000 pages (instead of 1,000): devices'
//! rows are rewritten at every heartbeat, and a longer interval copies each
//! hot page back to the database file fewer times.
//!
//! **Reads** run on tokio's blocking threads with read-only connections kept in
//! a small pool; WAL lets them proceed while the writer commits.
//!
//! Several processes may open the same file (the operator CLI next to the
//! server): `BEGIN IMMEDIATE` with a busy timeout serialises their writers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use super::metrics::FleetMetrics;
use super::migrations::{pending, SQLITE_BOOKKEEPING, SQLITE_RECORD};
use super::operators::{NewSession, OperatorRow, Role};
use super::orders::{
    sign_columns, AckRecorded, CaseDetail, CaseRule, IncidentRow, IssuedOrder, NewCaseEvent, NewOrder,
    OrderEvidence, OrderRow, OrderSigner, StoredAck, DETAIL_ORDERS,
};
use super::rows::{
    alert_count, alert_row, case_row, command_row, device_row, event_row, evidence_row, heartbeat_sample,
    incident_row, labelled_count, operator_row, order_row, report_row, rollup_row, state_count, Cols,
};
use super::series::{absorb, merge_per_device, StoredSeries, FIVE_MINUTES_MS, HOUR_MS};
use super::sql::{self, Sql};
use super::{
    count_u32, id_u64, like_anywhere, resolution_s, to_i64, AlertRow, CommandHints, DbError, DbOptions,
    DeviceDetail, DeviceFilter, DevicePage, DeviceQuery, DeviceRow, IngestOutcome, IngestRequest, NewAlert,
    RetentionBatch, RetentionStep, DETAIL_RECENT, MAX_GROUP_RECORDS,
};

/// Jobs that may wait for the writer before senders wait (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept.
const KEEP_READERS: usize = 4;

/// The SQLite backend of [`super::Database`].
#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Box<dyn WriteJob>>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    options: DbOptions,
    hints: tokio::sync::Mutex<CommandHints>,
}

/// A write queued for the writer thread.
trait WriteJob: Send {
    /// Records it writes (for the group size limit).
    fn weight(&self) -> usize;
    /// Runs inside a transaction; `false` if it failed. May run again (alone)
    /// if its group is rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's fate is known.
    fn finish(self: Box<Self>, commit_error: Option<&str>);
}

struct Op<T, F> {
    weight: usize,
    f: F,
    result: Option<Result<T, DbError>>,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> WriteJob for Op<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, DbError> + Send,
{
    fn weight(&self) -> usize {
        self.weight
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        let out = match (self.result, commit_error) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), None) => Ok(v),
            (_, Some(e)) => Err(DbError::Unavailable(e.to_owned())),
            (None, None) => Err(DbError::Closed),
        };
        // The caller may have gone away (request cancelled): nothing to do.
        let _ = self.reply.send(out);
    }
}

impl SqliteDb {
    pub(crate) async fn open(path: &Path, options: DbOptions) -> Result<Self, DbError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Box<dyn WriteJob>>(QUEUE_DEPTH);
        let (ready_tx, ready_rx) = oneshot::channel();
        let writer_path = path.to_owned();
        std::thread::Builder::new()
            .name("cpe-db-writer".into())
            .spawn(move || writer_thread(&writer_path, options, jobs_rx, ready_tx))
            .map_err(|e| DbError::Unavailable(format!("cannot start the SQLite writer thread: {e}")))?;
        ready_rx.await.map_err(|_| DbError::Closed)??;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: jobs_tx,
                path: path.to_owned(),
                readers: Mutex::new(Vec::new()),
                options,
                hints: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// Queues `f` for the writer and waits until its group is committed.
    async fn write<T, F>(&self, weight: usize, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Op { weight, f, result: None, reply });
        self.inner.jobs.send(job).await.map_err(|_| DbError::Closed)?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    /// Runs `f` with a read-only connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let result = f(&conn);
            let mut idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < KEEP_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| DbError::Unavailable(format!("SQLite reader task failed: {e}")))?
    }

    pub(crate) async fn schema_versions(&self) -> Result<Vec<i64>, DbError> {
        self.read(|conn| all(conn, sql::SCHEMA_VERSIONS, [], |r| r.i64_at(0))).await
    }

    pub(crate) async fn ingest(&self, req: IngestRequest) -> Result<IngestOutcome, DbError> {
        self.write(req.records.len() + 1, move |conn| ingest_one(conn, &req)).await
    }

    pub(crate) async fn mark_silent(
        &self,
        silent_before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, DbError> {
        self.write(1, move |conn| {
            let mut ids = all(conn, sql::MARK_SILENT, params![silent_before_ms, now_ms], |r| r.str_at(0))?;
            ids.sort();
            Ok(ids)
        })
        .await
    }

    pub(crate) async fn raise_alert(&self, alert: NewAlert) -> Result<i64, DbError> {
        self.write(1, move |conn| {
            let a = &alert;
            first(conn, sql::RAISE_ALERT, params![a.device_id, a.kind, a.level, a.message, a.at_ms], |r| {
                r.i64_at(0)
            })?
            .ok_or_else(|| DbError::UnknownDevice(a.device_id.clone()))
        })
        .await
    }

    pub(crate) async fn claim_fleet_summary(
        &self,
        kind: String,
        day: String,
        body: String,
        now_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        self.write(1, move |conn| {
            first(conn, sql::CLAIM_FLEET_SUMMARY, params![kind, day, now_ms, body], |r| r.i64_at(0))
        })
        .await
    }

    pub(crate) async fn clear_alerts(
        &self,
        device_id: String,
        kind: String,
        at_ms: i64,
    ) -> Result<u64, DbError> {
        self.write(1, move |conn| execute(conn, sql::CLEAR_ALERTS, params![device_id, kind, at_ms])).await
    }

    pub(crate) async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<AlertRow>, DbError> {
        self.read(move |conn| all(conn, sql::ALERTS, params![open_only, i64::from(limit)], |r| alert_row(r)))
            .await
    }

    pub(crate) async fn device_page(&self, q: DeviceQuery, offset: i64) -> Result<DevicePage, DbError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let pattern = like_anywhere(&q.search);
            let filter = q.filter.map_or("", DeviceFilter::as_str);
            let total = scalar(&tx, sql::DEVICES_COUNT, params![pattern, filter])?;
            let rows = all(
                &tx,
                sql::DEVICES_PAGE,
                params![pattern, filter, q.sort.as_str(), q.descending, i64::from(q.limit), offset],
                |r| device_row(r),
            )?;
            Ok(DevicePage { total: id_u64(total), rows })
        })
        .await
    }

    pub(crate) async fn alert(&self, id: i64) -> Result<Option<AlertRow>, DbError> {
        self.read(move |conn| first(conn, sql::ALERT, [id], |r| alert_row(r))).await
    }

    pub(crate) async fn acknowledge_alert(
        &self,
        id: i64,
        operator: String,
        at_ms: i64,
    ) -> Result<bool, DbError> {
        self.write(1, move |conn| {
            Ok(execute(conn, sql::ACKNOWLEDGE_ALERT, params![id, at_ms, operator])? == 1)
        })
        .await
    }

    pub(crate) async fn devices(&self) -> Result<Vec<DeviceRow>, DbError> {
        self.read(|conn| all(conn, sql::DEVICES, [], |r| device_row(r))).await
    }

    pub(crate) async fn device(&self, id: String) -> Result<Option<DeviceDetail>, DbError> {
        self.read(move |conn| {
            // One read transaction: a consistent snapshot of the queries.
            let tx = conn.unchecked_transaction()?;
            let Some(row) = first(&tx, sql::DEVICE, [&id], |r| device_row(r))? else { return Ok(None) };
            let recent = i64::from(DETAIL_RECENT);
            Ok(Some(DeviceDetail {
                row,
                recent_reports: all(&tx, sql::RECENT_REPORTS, params![id, recent], |r| report_row(r))?,
                open_alerts: all(&tx, sql::OPEN_ALERTS_OF_DEVICE, [&id], |r| alert_row(r))?,
                recent_commands: all(&tx, sql::RECENT_COMMANDS, params![id, recent], |r| command_row(r))?,
                recent_orders: all(&tx, sql::ORDERS_OF_DEVICE, params![id, i64::from(DETAIL_ORDERS)], |r| {
                    order_row(r)
                })?,
                latest_incident: first(&tx, sql::INCIDENTS, params![id, 1], |r| incident_row(r))?,
            }))
        })
        .await
    }

    pub(crate) async fn heartbeat_series(
        &self,
        id: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<StoredSeries>, DbError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            if first(&tx, sql::DEVICE_KNOWN, [&id], |_| Ok(()))?.is_none() {
                return Ok(None);
            }
            let rollups = |width: i64| {
                all(&tx, sql::ROLLUPS_BETWEEN, params![id, resolution_s(width), from_ms, to_ms], |r| {
                    rollup_row(r)
                })
            };
            Ok(Some(StoredSeries {
                heartbeats: all(&tx, sql::HEARTBEATS_BETWEEN, params![id, from_ms, to_ms], |r| {
                    heartbeat_sample(r)
                })?
                .into_iter()
                .flatten()
                .collect(),
                five_minutes: rollups(FIVE_MINUTES_MS)?,
                hourly: rollups(HOUR_MS)?,
            }))
        })
        .await
    }

    pub(crate) async fn retention_batch(
        &self,
        step: RetentionStep,
        limit: i64,
    ) -> Result<RetentionBatch, DbError> {
        let weight = usize::try_from(limit).unwrap_or(MAX_GROUP_RECORDS).min(MAX_GROUP_RECORDS);
        self.write(weight, move |conn| {
            let (taken, into_ms) = match step {
                RetentionStep::RollUpHeartbeats { before_ms } => {
                    let rows = all(conn, sql::TAKE_OLD_HEARTBEATS, params![before_ms, limit], |r| {
                        heartbeat_sample(r)?.map(|s| r.str_at(3).map(|d| (d, s))).transpose()
                    })?;
                    (rows, FIVE_MINUTES_MS)
                }
                RetentionStep::RollUpFiveMinutes { before_ms } => {
                    let rows = all(
                        conn,
                        sql::TAKE_OLD_ROLLUPS,
                        params![resolution_s(FIVE_MINUTES_MS), before_ms, limit],
                        |r| Ok(Some((r.str_at(9)?, rollup_row(r)?))),
                    )?;
                    (rows, HOUR_MS)
                }
                RetentionStep::DeleteHourly { before_ms } => {
                    let n = all(
                        conn,
                        sql::TAKE_OLD_ROLLUPS,
                        params![resolution_s(HOUR_MS), before_ms, limit],
                        |_| Ok(()),
                    )?;
                    return Ok(RetentionBatch { taken: n.len() as u64, written: 0 });
                }
                RetentionStep::DeleteEvents { before_ms } => {
                    let n = execute(conn, sql::DELETE_OLD_EVENTS, params![before_ms, limit])?;
                    return Ok(RetentionBatch { taken: n, written: 0 });
                }
            };
            let count = taken.len() as u64;
            let fresh = merge_per_device(taken.into_iter().flatten().collect(), into_ms);
            let res = resolution_s(into_ms);
            for (device, bucket) in &fresh {
                let stored =
                    first(conn, sql::ROLLUP, params![device, res, bucket.start_ms], |r| rollup_row(r))?;
                let r = absorb(stored, bucket.clone(), into_ms);
                let lines = serde_json::to_string(&r.lines).unwrap_or_else(|_| "[]".into());
                execute(
                    conn,
                    sql::PUT_ROLLUP,
                    params![
                        device,
                        res,
                        r.start_ms,
                        i64::from(r.samples),
                        r.cpu.min,
                        r.cpu.avg,
                        r.cpu.max,
                        r.mem.min,
                        r.mem.avg,
                        r.mem.max,
                        lines
                    ],
                )?;
            }
            Ok(RetentionBatch { taken: count, written: fresh.len() as u64 })
        })
        .await
    }

    pub(crate) async fn report_seqs(&self, id: String) -> Result<Vec<(u64, i64)>, DbError> {
        self.read(move |conn| {
            all(conn, sql::REPORT_SEQS, [&id], |r| Ok((id_u64(r.i64_at(0)?), r.i64_at(1)?)))
        })
        .await
    }

    pub(crate) async fn enqueue_command(
        &self,
        device_id: String,
        kind: String,
        body: Vec<u8>,
        requested_by: Option<String>,
        now_ms: i64,
    ) -> Result<u64, DbError> {
        self.write(1, move |conn| {
            let id = first(
                conn,
                sql::ENQUEUE_COMMAND,
                params![device_id, kind, body, now_ms, requested_by],
                |r| r.i64_at(0),
            )?;
            id.map(id_u64).ok_or_else(|| DbError::UnknownDevice(device_id.clone()))
        })
        .await
    }

    pub(crate) fn hints(&self) -> &tokio::sync::Mutex<CommandHints> {
        &self.inner.hints
    }

    pub(crate) fn options(&self) -> &DbOptions {
        &self.inner.options
    }

    /// When each device's next unacknowledged command is due.
    pub(crate) async fn commands_due(&self, redelivery_ms: i64) -> Result<HashMap<String, i64>, DbError> {
        self.read(move |conn| {
            let due = all(conn, sql::COMMANDS_DUE, [redelivery_ms], |r| Ok((r.str_at(0)?, r.i64_at(1)?)))?;
            Ok(due.into_iter().collect())
        })
        .await
    }

    pub(crate) async fn take_commands(
        &self,
        device_id: String,
        now_ms: i64,
    ) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let redeliver_before = now_ms.saturating_sub(self.inner.options.redelivery_ms);
        self.write(1, move |conn| {
            let mut out = all(conn, sql::TAKE_COMMANDS, params![device_id, now_ms, redeliver_before], |r| {
                Ok((id_u64(r.i64_at(0)?), r.bytes_at(1)?))
            })?;
            out.sort_by_key(|(id, _)| *id);
            Ok(out)
        })
        .await
    }

    pub(crate) async fn ack_command(
        &self,
        device_id: String,
        id: i64,
        ok: bool,
        detail: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        self.write(1, move |conn| {
            if execute(conn, sql::ACK_COMMAND, params![device_id, id, now_ms, ok, detail])? > 0 {
                return Ok(true);
            }
            Ok(first(conn, sql::COMMAND_KNOWN, params![device_id, id], |_| Ok(()))?.is_some())
        })
        .await
    }
}

impl SqliteDb {
    pub(crate) async fn open_case(
        &self,
        device_id: String,
        fact: NewCaseEvent,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<u64, DbError> {
        self.write(1, move |conn| {
            if let Some(rule) = &rule {
                let latest = first(conn, sql::LATEST_CASE, [&device_id], |r| r.opt_i64_at(0))?.flatten();
                if let Some(case) = latest.map(|id| load_case(conn, id)).transpose()?.flatten() {
                    rule(&case).map_err(DbError::Refused)?;
                }
            }
            let id = first(conn, sql::INSERT_CASE, params![device_id, fact.at_ms], |r| r.i64_at(0))?
                .ok_or_else(|| DbError::UnknownDevice(device_id.clone()))?;
            insert_event(conn, id, &fact, None)?;
            Ok(id_u64(id))
        })
        .await
    }

    pub(crate) async fn add_case_event(
        &self,
        case_id: i64,
        event: NewCaseEvent,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<Option<u64>, DbError> {
        self.write(1, move |conn| {
            // The writer's transaction (BEGIN IMMEDIATE) already excludes
            // every other writer: the case read here is the case as stored.
            let Some(case) = load_case(conn, case_id)? else { return Ok(None) };
            if let Some(rule) = &rule {
                rule(&case).map_err(DbError::Refused)?;
            }
            Ok(Some(id_u64(insert_event(conn, case_id, &event, None)?)))
        })
        .await
    }

    pub(crate) async fn case(&self, case_id: i64) -> Result<Option<CaseDetail>, DbError> {
        self.read(move |conn| {
            // One read transaction: a consistent snapshot of the case.
            let tx = conn.unchecked_transaction()?;
            load_case(&tx, case_id)
        })
        .await
    }

    pub(crate) async fn latest_case(&self, device_id: String) -> Result<Option<i64>, DbError> {
        self.read(move |conn| Ok(first(conn, sql::LATEST_CASE, [device_id], |r| r.opt_i64_at(0))?.flatten()))
            .await
    }

    pub(crate) async fn issue_order(
        &self,
        order: NewOrder,
        event: Option<NewCaseEvent>,
        sign: Arc<OrderSigner>,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<IssuedOrder, DbError> {
        self.write(1, move |conn| issue_order_tx(conn, &order, event.as_ref(), &*sign, rule.as_deref())).await
    }

    pub(crate) async fn orders(
        &self,
        device_id: Option<String>,
        limit: u32,
    ) -> Result<Vec<OrderRow>, DbError> {
        let limit = i64::from(limit);
        self.read(move |conn| match device_id {
            Some(device) => all(conn, sql::ORDERS_OF_DEVICE, params![device, limit], |r| order_row(r)),
            None => all(conn, sql::ORDERS, params![limit], |r| order_row(r)),
        })
        .await
    }

    pub(crate) async fn order(&self, id: i64) -> Result<Option<OrderRow>, DbError> {
        self.read(move |conn| first(conn, sql::ORDER, [id], |r| order_row(r))).await
    }

    pub(crate) async fn order_by_command(
        &self,
        device_id: String,
        command_id: i64,
    ) -> Result<Option<OrderRow>, DbError> {
        self.read(move |conn| {
            first(conn, sql::ORDER_BY_COMMAND, params![device_id, command_id], |r| order_row(r))
        })
        .await
    }

    pub(crate) async fn record_order_ack(&self, ack: StoredAck) -> Result<AckRecorded, DbError> {
        self.write(1, move |conn| {
            let a = &ack;
            let n = execute(
                conn,
                sql::ACK_COMMAND,
                params![a.device_id, a.command_id, a.now_ms, a.ok, a.detail],
            )?;
            if n == 0 {
                let known = first(conn, sql::COMMAND_KNOWN, params![a.device_id, a.command_id], |_| Ok(()))?;
                return Ok(AckRecorded { known: known.is_some(), first: false });
            }
            let updated = first(
                conn,
                sql::RECORD_OUTCOME,
                params![
                    a.device_id,
                    a.command_id,
                    a.outcome,
                    a.now_ms,
                    a.detail,
                    a.receipt_bytes,
                    a.scheme,
                    a.signature,
                    a.applied_at,
                    a.device_clock,
                    a.time_floor,
                    a.clock,
                    a.resulting_state,
                    a.drill,
                    a.cert
                ],
                |r| Ok((r.i64_at(0)?, r.i64_at(1)?)),
            )?;
            if let (Some((id, sequence)), "applied") = (updated, a.outcome) {
                execute(conn, sql::SET_SERVICE_STATE, params![a.device_id, sequence, a.service_state(id)])?;
            }
            Ok(AckRecorded { known: true, first: true })
        })
        .await
    }

    pub(crate) async fn order_evidence(&self, id: i64) -> Result<Option<OrderEvidence>, DbError> {
        self.read(move |conn| first(conn, sql::EVIDENCE, [id], |r| evidence_row(r))).await
    }

    pub(crate) async fn incidents(&self, device_id: String, limit: u32) -> Result<Vec<IncidentRow>, DbError> {
        self.read(move |conn| {
            all(conn, sql::INCIDENTS, params![device_id, i64::from(limit)], |r| incident_row(r))
        })
        .await
    }

    pub(crate) async fn fleet_metrics(&self) -> Result<FleetMetrics, DbError> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let (suspended, alerting) =
                first(&tx, sql::METRIC_SUSPENDED_ALERTING, [], |r| Ok((r.i64_at(0)?, r.i64_at(1)?)))?
                    .unwrap_or_default();
            Ok(FleetMetrics {
                devices: all(&tx, sql::METRIC_DEVICES, [], |r| state_count(r))?,
                suspended: id_u64(suspended),
                alerting: id_u64(alerting),
                alerts_open: all(&tx, sql::METRIC_ALERTS_OPEN, [], |r| alert_count(r))?,
                commands: all(&tx, sql::METRIC_COMMANDS, [], |r| labelled_count(r))?,
                orders: all(&tx, sql::METRIC_ORDERS, [], |r| labelled_count(r))?,
            })
        })
        .await
    }

    pub(crate) async fn add_operator(
        &self,
        name: String,
        role: Role,
        hash: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        self.write(1, move |conn| {
            Ok(execute(conn, sql::INSERT_OPERATOR, params![name, role.as_str(), hash, now_ms])? == 1)
        })
        .await
    }

    pub(crate) async fn operators(&self) -> Result<Vec<OperatorRow>, DbError> {
        self.read(|conn| all(conn, sql::OPERATORS, [], |r| operator_row(r))).await
    }

    pub(crate) async fn operator(&self, name: String) -> Result<Option<OperatorRow>, DbError> {
        self.read(move |conn| first(conn, sql::OPERATOR, [&name], |r| operator_row(r))).await
    }

    pub(crate) async fn disable_operator(&self, name: String, now_ms: i64) -> Result<bool, DbError> {
        self.write(1, move |conn| Ok(execute(conn, sql::DISABLE_OPERATOR, params![name, now_ms])? == 1)).await
    }

    pub(crate) async fn set_operator_password(
        &self,
        name: String,
        hash: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        self.write(1, move |conn| {
            Ok(execute(conn, sql::SET_OPERATOR_PASSWORD, params![name, hash, now_ms])? == 1)
        })
        .await
    }

    pub(crate) async fn open_session(&self, session: NewSession) -> Result<(), DbError> {
        self.write(1, move |conn| {
            let s = &session;
            execute(conn, sql::DELETE_EXPIRED_SESSIONS, [s.created_at_ms])?;
            execute(
                conn,
                sql::INSERT_SESSION,
                params![s.token_hash, s.operator, s.created_at_ms, s.expires_at_ms],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn session_operator(
        &self,
        token_hash: String,
        now_ms: i64,
    ) -> Result<Option<OperatorRow>, DbError> {
        self.read(move |conn| {
            first(conn, sql::SESSION_OPERATOR, params![token_hash, now_ms], |r| operator_row(r))
        })
        .await
    }

    pub(crate) async fn close_session(&self, token_hash: String) -> Result<bool, DbError> {
        self.write(1, move |conn| Ok(execute(conn, sql::DELETE_SESSION, [&token_hash])? == 1)).await
    }
}

/// Every row of `query`, mapped.
fn all<T>(
    conn: &Connection,
    query: Sql,
    params: impl rusqlite::Params,
    map: impl Fn(&Row<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut stmt = conn.prepare_cached(query.sqlite)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row of `query`, mapped.
fn first<T>(
    conn: &Connection,
    query: Sql,
    params: impl rusqlite::Params,
    map: impl Fn(&Row<'_>) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    let mut stmt = conn.prepare_cached(query.sqlite)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(map).transpose()
}

/// The one value `query` returns (a count, an id from `RETURNING`).
fn scalar(conn: &Connection, query: Sql, params: impl rusqlite::Params) -> Result<i64, DbError> {
    Ok(conn.prepare_cached(query.sqlite)?.query_row(params, |r| r.get(0))?)
}

/// Runs `query`; returns how many rows it changed.
fn execute(conn: &Connection, query: Sql, params: impl rusqlite::Params) -> Result<u64, DbError> {
    Ok(conn.prepare_cached(query.sqlite)?.execute(params)? as u64)
}

/// A case with its trail and orders.
fn load_case(conn: &Connection, case_id: i64) -> Result<Option<CaseDetail>, DbError> {
    let Some(case) = first(conn, sql::CASE, [case_id], |r| case_row(r))? else { return Ok(None) };
    let events = all(conn, sql::EVENTS, [case_id], |r| event_row(r))?;
    let orders = all(conn, sql::ORDERS_OF_CASE, [case_id], |r| order_row(r))?;
    Ok(Some(CaseDetail { case, events, orders }))
}

fn insert_event(
    conn: &Connection,
    case_id: i64,
    e: &NewCaseEvent,
    order_id: Option<i64>,
) -> Result<i64, DbError> {
    let params = params![
        case_id,
        e.step.as_str(),
        e.at_ms,
        e.operator,
        e.text,
        e.deadline_ms,
        e.corrected,
        e.justification,
        e.recipient,
        order_id
    ];
    scalar(conn, sql::INSERT_EVENT, params)
}

fn issue_order_tx(
    conn: &Connection,
    new: &NewOrder,
    event: Option<&NewCaseEvent>,
    sign: &OrderSigner,
    rule: Option<&CaseRule>,
) -> Result<IssuedOrder, DbError> {
    let device_id = new.device_id();
    let o = &new.order;
    if first(conn, sql::LOCK_DEVICE, [&device_id], |_| Ok(()))?.is_none() {
        return Err(DbError::UnknownDevice(device_id));
    }
    let case_id = new.case_id.map(|c| to_i64("case id", c)).transpose()?;
    if let (Some(rule), Some(case_id)) = (rule, case_id) {
        if let Some(case) = load_case(conn, case_id)? {
            rule(&case).map_err(DbError::Refused)?;
        }
    }
    let sequence = scalar(conn, sql::NEXT_SEQUENCE, params![device_id])?;
    let id = scalar(
        conn,
        sql::INSERT_ORDER,
        params![
            device_id,
            case_id,
            o.kind.name(),
            sequence,
            o.issued_at,
            o.not_before,
            o.expires_at,
            o.deadline,
            o.reason_ja,
            o.reason_en,
            new.operator,
            new.justification,
            Vec::<u8>::new(),
            new.now_ms
        ],
    )?;
    let cols = sign_columns(sign, new, id, sequence)?;
    let command_id = scalar(
        conn,
        sql::INSERT_ORDER_COMMAND,
        params![device_id, cols.command_kind, cols.command_body, new.now_ms],
    )?;
    execute(
        conn,
        sql::COMPLETE_ORDER,
        params![
            id,
            cols.signed.key_id,
            cols.signed.order_bytes,
            cols.signed.signed,
            cols.signed.order_hash.to_vec(),
            command_id
        ],
    )?;
    if let (Some(case_id), Some(event)) = (case_id, event) {
        insert_event(conn, case_id, event, Some(id))?;
    }
    Ok(IssuedOrder {
        order_id: id_u64(id),
        sequence: id_u64(sequence),
        command_id: id_u64(command_id),
        kind: o.kind.name(),
    })
}

/// One ingest request inside the group transaction: the device's previous
/// state, the records, then one upsert of the device with the newest stored
/// health (two statements besides the records).
fn ingest_one(conn: &Connection, req: &IngestRequest) -> Result<IngestOutcome, DbError> {
    let dev = &req.device;
    let previous: Option<String> = conn
        .prepare_cached("SELECT state FROM devices WHERE id = ?1")?
        .query_row([&dev.id], |r| r.get(0))
        .optional()?;

    let mut insert = conn.prepare_cached(
        "INSERT INTO reports (device_id, seq, recorded_at_ms, received_at_ms, kind, body, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device_id, seq) DO NOTHING",
    )?;
    let mut accepted = 0usize;
    let mut newest_health: Option<(i64, &str)> = None;
    for r in &req.records {
        let n = insert.execute(params![
            dev.id,
            r.seq,
            r.at_ms,
            req.now_ms,
            r.kind.as_str(),
            r.body,
            r.summary
        ])?;
        if n == 1 {
            accepted += 1;
            if let Some(i) = &r.incident {
                conn.prepare_cached(sql::INSERT_INCIDENT.sqlite)?.execute(params![
                    dev.id,
                    r.seq,
                    i.id,
                    i.command_id,
                    i.segment,
                    i.summary,
                    i.report_json,
                    r.at_ms,
                    req.now_ms
                ])?;
            }
            if let Some(h) = &r.health {
                if newest_health.is_none_or(|(seq, _)| r.seq > seq) {
                    newest_health = Some((r.seq, h));
                }
            }
        }
    }
    conn.prepare_cached(
        "INSERT INTO devices
            (id, institution_code, first_seen, last_seen, state, state_since, cert_not_after, last_health)
         VALUES (?1, ?2, ?3, ?3, 'up', ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET
            institution_code = excluded.institution_code,
            last_seen = max(devices.last_seen, excluded.last_seen),
            state_since = CASE WHEN devices.state = 'down' THEN excluded.last_seen ELSE devices.state_since END,
            state = 'up',
            cert_not_after = coalesce(excluded.cert_not_after, devices.cert_not_after),
            last_health = coalesce(excluded.last_health, devices.last_health)",
    )?
    .execute(params![
        dev.id,
        dev.institution_code,
        req.now_ms,
        dev.cert_not_after,
        newest_health.map(|(_, h)| h)
    ])?;
    Ok(IngestOutcome {
        accepted: count_u32(accepted),
        duplicates: count_u32(req.records.len() - accepted),
        was_down: previous.as_deref() == Some("down"),
        new_device: previous.is_none(),
    })
}

fn open_writer(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        retry_while_busy(|| Ok(conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Unavailable(format!(
            "SQLite database {} cannot use WAL mode (got {mode}): use a local file system",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32000;
         PRAGMA wal_autocheckpoint = 10000;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    retry_while_busy(|| migrate(&conn))?;
    Ok(conn)
}

/// Runs `step` again while SQLite answers "busy" without waiting out the
/// busy timeout, up to [`BUSY_TIMEOUT`] in all. SQLite skips the busy handler
/// where waiting could deadlock: switching a new database to WAL and taking
/// the write lock of the migrations while several servers open the same
/// fresh file at once (seen as "database is locked" from one of them).
fn retry_while_busy<T>(mut step: impl FnMut() -> Result<T, DbError>) -> Result<T, DbError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -8000;")?;
    Ok(conn)
}

/// Applies missing migrations in one `BEGIN IMMEDIATE` transaction.
fn migrate(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        conn.execute_batch(SQLITE_BOOKKEEPING)?;
        let applied = all(conn, sql::SCHEMA_VERSIONS, [], |r| r.i64_at(0))?;
        for m in pending(&applied)? {
            conn.execute_batch(m.sqlite)?;
            conn.execute(SQLITE_RECORD, params![m.version, m.name])?;
            tracing::info!(version = m.version, name = m.name, "applied SQLite schema migration");
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn writer_thread(
    path: &Path,
    options: DbOptions,
    mut jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    ready: oneshot::Sender<Result<(), DbError>>,
) {
    let conn = match open_writer(path) {
        Ok(conn) => conn,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let max_group = options.max_group.max(1);
    let mut group: Vec<Box<dyn WriteJob>> = Vec::with_capacity(max_group);
    // Ends when every handle (sender) is dropped and the queue is drained.
    while let Some(first) = jobs.blocking_recv() {
        let mut weight = first.weight();
        group.push(first);
        while group.len() < max_group && weight < MAX_GROUP_RECORDS {
            match jobs.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        run_group(&conn, &mut group);
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs a group in one transaction and answers every job after the commit.
/// If a job fails, the group is rolled back and each job runs again alone.
fn run_group(conn: &Connection, group: &mut Vec<Box<dyn WriteJob>>) {
    match run_in_transaction(conn, group) {
        Err(TxError::Job) if group.len() > 1 => {
            tracing::debug!(jobs = group.len(), "a job of a SQLite group failed; running them one by one");
            for mut job in group.drain(..) {
                let result = run_in_transaction(conn, std::slice::from_mut(&mut job));
                job.finish(result.err().as_ref().and_then(TxError::message));
            }
        }
        result => {
            let error = result.err();
            let message = error.as_ref().and_then(TxError::message);
            if let Some(m) = message {
                tracing::warn!(error = %m, jobs = group.len(), "SQLite group transaction failed");
            }
            for job in group.drain(..) {
                job.finish(message);
            }
        }
    }
}

enum TxError {
    /// A job failed; it holds its own error.
    Job,
    /// The transaction itself failed (begin, commit: busy, I/O).
    Tx(String),
}

impl TxError {
    fn message(&self) -> Option<&str> {
        match self {
            Self::Job => None,
            Self::Tx(m) => Some(m),
        }
    }
}

fn run_in_transaction(conn: &Connection, jobs: &mut [Box<dyn WriteJob>]) -> Result<(), TxError> {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| TxError::Tx(e.to_string()))?;
    for job in jobs.iter_mut() {
        if !job.run(conn) {
            let _ = exec(conn, "ROLLBACK");
            return Err(TxError::Job);
        }
    }
    exec(conn, "COMMIT").map_err(|e| {
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        TxError::Tx(e.to_string())
    })
}
