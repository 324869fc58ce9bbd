//! PostgreSQL backend: group-committing ingest writers and a small pool.
//!
//! **Ingest.** Requests go over a bounded channel to [`DbOptions::pg_writers`]
//! writer tasks (one by default), each with its own connection. A writer
//! takes everything queued (up to [`DbOptions::max_group`] requests or
//! [`super::MAX_GROUP_RECORDS`] records) and stores the whole group in
//! one transaction of three set-based statements, whatever its size:
//!
//! 1. `SELECT … FOR UPDATE` of the group's devices, in id order: their state
//!    before this transaction (→ `was_down`), and a lock so that no other
//!    process can mark them `down` in between;
//! 2. one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`
//!    for all records (what was stored → exact accepted/duplicate counts and
//!    the newest stored health of each device);
//! 3. one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` for all
//!    devices, with that health (`RETURNING (xmax = 0)` → `new_device`).
//!
//! The statements are pipelined: `BEGIN`, 1 and 2 go out back to back, then 3
//! and `COMMIT` — two network round trips per group, whatever its size.
//!
//! A deadlock or serialisation failure retries the group; any other error
//! retries its requests one by one so that one bad request fails alone.
//!
//! **Everything else** uses a fixed pool of [`DbOptions::pg_pool_size`]
//! connections with per-connection prepared statements. Connections are made
//! lazily, replaced when closed, and each one's I/O task is spawned on the
//! caller's tokio runtime.
//!
//! Exactly-once transitions across processes come from row locks plus
//! PostgreSQL's re-check of the `WHERE` clause on the newest row version
//! (READ COMMITTED): `mark_silent` is `UPDATE … WHERE state = 'up' AND
//! last_seen < $1 RETURNING id`, and command delivery is `UPDATE … WHERE
//! delivered_at_ms IS NULL OR delivered_at_ms <= $3 RETURNING id, body`.
//!
//! Connections are unencrypted (`NoTls`): use a local server or a private
//! network between the carrier servers and PostgreSQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::metrics::FleetMetrics;
use super::migrations::{pending, PG_BOOKKEEPING, PG_MIGRATION_LOCK, PG_RECORD};
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
    attribute_group, id_u64, like_anywhere, redact_url, resolution_s, to_i64, AlertRow, CommandHints,
    DbError, DbOptions, DeviceDetail, DeviceFilter, DevicePage, DeviceQuery, DeviceRow, IngestOutcome,
    IngestRequest, NewAlert, RetentionBatch, RetentionStep, StoredRecord, DETAIL_RECENT, MAX_GROUP_RECORDS,
};

/// Key of the advisory lock that serialises retention batches ("cpe-ret").
const PG_RETENTION_LOCK: i64 = 0x0063_7065_2d72_6574;
/// Takes [`PG_RETENTION_LOCK`] until the end of the transaction.
const PG_RETENTION_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

/// Ingest requests that may wait for a writer before senders wait.
const QUEUE_DEPTH: usize = 4096;
/// Attempts of a group that hits a deadlock or serialisation failure.
const CONFLICT_ATTEMPTS: u32 = 5;

/// The PostgreSQL backend of [`super::Database`].
#[derive(Clone)]
pub struct PostgresDb {
    inner: Arc<PgInner>,
}

struct PgInner {
    pool: Pool,
    ingest: mpsc::Sender<IngestJob>,
    options: DbOptions,
    hints: tokio::sync::Mutex<CommandHints>,
}

struct IngestJob {
    req: IngestRequest,
    reply: oneshot::Sender<Result<IngestOutcome, DbError>>,
}

/// One connection with its prepared statements.
struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    async fn connect(config: &Config) -> Result<Self, DbError> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Self { client, statements: HashMap::new() })
    }

    async fn prepare(&mut self, sql: &'static str) -> Result<Statement, DbError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.client.query(&stmt, params).await?)
    }

    /// Prepares `queries` and starts a read-only REPEATABLE READ
    /// transaction: one consistent snapshot for all of them.
    async fn snapshot(
        &mut self,
        queries: &[Sql],
    ) -> Result<(Vec<Statement>, tokio_postgres::Transaction<'_>), DbError> {
        let mut stmts = Vec::with_capacity(queries.len());
        for q in queries {
            stmts.push(self.prepare(q.postgres).await?);
        }
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        Ok((stmts, tx))
    }

    async fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.client.execute(&stmt, params).await?)
    }
}

/// A fixed-size pool: a semaphore bounds the connections in use, idle ones wait in a stack.
struct Pool {
    config: Config,
    idle: Mutex<Vec<PgConn>>,
    permits: Semaphore,
}

struct Pooled<'a> {
    conn: Option<PgConn>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    async fn get(&self) -> Result<Pooled<'_>, DbError> {
        let permit = self.permits.acquire().await.map_err(|_| DbError::Closed)?;
        let idle = { self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() };
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => PgConn::connect(&self.config).await?,
        };
        Ok(Pooled { conn: Some(conn), pool: self, _permit: permit })
    }
}

impl Pooled<'_> {
    fn conn(&mut self) -> Result<&mut PgConn, DbError> {
        self.conn.as_mut().ok_or(DbError::Closed)
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() {
                self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
            }
        }
    }
}

fn is_conflict(e: &DbError) -> bool {
    matches!(e, DbError::Postgres(e) if e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    }))
}

impl PostgresDb {
    pub(crate) async fn open(url: &str, options: DbOptions) -> Result<Self, DbError> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| DbError::Url {
            url: redact_url(url),
            detail: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("cpe-provision");
        }
        let mut first = PgConn::connect(&config).await?;
        migrate(&mut first).await?;

        let (ingest, jobs) = mpsc::channel(QUEUE_DEPTH);
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        for _ in 0..options.pg_writers.max(1) {
            let conn = PgConn::connect(&config).await?;
            tokio::spawn(writer_task(conn, config.clone(), Arc::clone(&jobs), options.max_group.max(1)));
        }
        let pool = Pool {
            config,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(options.pg_pool_size.max(1)),
        };
        Ok(Self { inner: Arc::new(PgInner { pool, ingest, options, hints: tokio::sync::Mutex::default() }) })
    }

    pub(crate) async fn schema_versions(&self) -> Result<Vec<i64>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::SCHEMA_VERSIONS.postgres, &[]).await?;
        rows.iter().map(|r| r.i64_at(0)).collect()
    }

    pub(crate) async fn ingest(&self, req: IngestRequest) -> Result<IngestOutcome, DbError> {
        let (reply, answer) = oneshot::channel();
        self.inner.ingest.send(IngestJob { req, reply }).await.map_err(|_| DbError::Closed)?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    pub(crate) async fn mark_silent(
        &self,
        silent_before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let mut attempt = 1;
        loop {
            let result = conn.query(sql::MARK_SILENT.postgres, &[&silent_before_ms, &now_ms]).await;
            match result {
                Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
                Ok(rows) => {
                    let mut ids = rows.iter().map(|r| r.str_at(0)).collect::<Result<Vec<String>, _>>()?;
                    ids.sort();
                    return Ok(ids);
                }
            }
        }
    }

    pub(crate) async fn raise_alert(&self, alert: NewAlert) -> Result<i64, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let a = &alert;
        let rows = pooled
            .conn()?
            .query(sql::RAISE_ALERT.postgres, &[&a.device_id, &a.kind, &a.level, &a.message, &a.at_ms])
            .await?;
        match rows.first() {
            Some(row) => row.i64_at(0),
            None => Err(DbError::UnknownDevice(alert.device_id)),
        }
    }

    pub(crate) async fn claim_fleet_summary(
        &self,
        kind: String,
        day: String,
        body: String,
        now_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows =
            pooled.conn()?.query(sql::CLAIM_FLEET_SUMMARY.postgres, &[&kind, &day, &now_ms, &body]).await?;
        rows.first().map(|row| row.i64_at(0)).transpose()
    }

    pub(crate) async fn clear_alerts(
        &self,
        device_id: String,
        kind: String,
        at_ms: i64,
    ) -> Result<u64, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        pooled.conn()?.execute(sql::CLEAR_ALERTS.postgres, &[&device_id, &kind, &at_ms]).await
    }

    pub(crate) async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<AlertRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::ALERTS.postgres, &[&open_only, &i64::from(limit)]).await?;
        rows.iter().map(alert_row).collect()
    }

    pub(crate) async fn device_page(&self, q: DeviceQuery, offset: i64) -> Result<DevicePage, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let pattern = like_anywhere(&q.search);
        let filter = q.filter.map_or("", DeviceFilter::as_str);
        let total =
            first(conn, sql::DEVICES_COUNT, &[&pattern, &filter], |r| r.i64_at(0)).await?.unwrap_or(0);
        let (sort, limit) = (q.sort.as_str(), i64::from(q.limit));
        let rows = conn
            .query(sql::DEVICES_PAGE.postgres, &[&pattern, &filter, &sort, &q.descending, &limit, &offset])
            .await?;
        Ok(DevicePage { total: id_u64(total), rows: rows.iter().map(device_row).collect::<Result<_, _>>()? })
    }

    pub(crate) async fn alert(&self, id: i64) -> Result<Option<AlertRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::ALERT, &[&id], alert_row).await
    }

    pub(crate) async fn acknowledge_alert(
        &self,
        id: i64,
        operator: String,
        at_ms: i64,
    ) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        Ok(pooled.conn()?.execute(sql::ACKNOWLEDGE_ALERT.postgres, &[&id, &at_ms, &operator]).await? == 1)
    }

    pub(crate) async fn devices(&self) -> Result<Vec<DeviceRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::DEVICES.postgres, &[]).await?;
        rows.iter().map(device_row).collect()
    }

    pub(crate) async fn heartbeat_series(
        &self,
        id: String,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<StoredSeries>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        // A retention batch moving rows between resolutions is seen wholly or not at all.
        let (stmts, tx) = pooled
            .conn()?
            .snapshot(&[sql::DEVICE_KNOWN, sql::HEARTBEATS_BETWEEN, sql::ROLLUPS_BETWEEN])
            .await?;
        if tx.query_opt(&stmts[0], &[&id]).await?.is_none() {
            return Ok(None);
        }
        let mut heartbeats = Vec::new();
        for row in tx.query(&stmts[1], &[&id, &from_ms, &to_ms]).await? {
            heartbeats.extend(heartbeat_sample(&row)?);
        }
        let mut tiers = [Vec::new(), Vec::new()];
        for (tier, width) in tiers.iter_mut().zip([FIVE_MINUTES_MS, HOUR_MS]) {
            for row in tx.query(&stmts[2], &[&id, &resolution_s(width), &from_ms, &to_ms]).await? {
                tier.push(rollup_row(&row)?);
            }
        }
        tx.commit().await?;
        let [five_minutes, hourly] = tiers;
        Ok(Some(StoredSeries { heartbeats, five_minutes, hourly }))
    }

    pub(crate) async fn retention_batch(
        &self,
        step: RetentionStep,
        limit: i64,
    ) -> Result<RetentionBatch, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled.conn()?.client.transaction().await?;
        // One retention batch at a time across processes: two batches
        // merging into the same bucket would lose one's samples.
        tx.execute(PG_RETENTION_LOCK_SQL, &[&PG_RETENTION_LOCK]).await?;
        let (taken, into_ms) = match step {
            RetentionStep::RollUpHeartbeats { before_ms } => {
                let mut rows = Vec::new();
                for r in tx.query(sql::TAKE_OLD_HEARTBEATS.postgres, &[&before_ms, &limit]).await? {
                    rows.push(heartbeat_sample(&r)?.map(|s| r.str_at(3).map(|d| (d, s))).transpose()?);
                }
                (rows, FIVE_MINUTES_MS)
            }
            RetentionStep::RollUpFiveMinutes { before_ms } => {
                let mut rows = Vec::new();
                let res = resolution_s(FIVE_MINUTES_MS);
                for r in tx.query(sql::TAKE_OLD_ROLLUPS.postgres, &[&res, &before_ms, &limit]).await? {
                    rows.push(Some((r.str_at(9)?, rollup_row(&r)?)));
                }
                (rows, HOUR_MS)
            }
            RetentionStep::DeleteHourly { before_ms } => {
                let res = resolution_s(HOUR_MS);
                let n = tx.query(sql::TAKE_OLD_ROLLUPS.postgres, &[&res, &before_ms, &limit]).await?.len();
                tx.commit().await?;
                return Ok(RetentionBatch { taken: n as u64, written: 0 });
            }
            RetentionStep::DeleteEvents { before_ms } => {
                let n = tx.execute(sql::DELETE_OLD_EVENTS.postgres, &[&before_ms, &limit]).await?;
                tx.commit().await?;
                return Ok(RetentionBatch { taken: n, written: 0 });
            }
        };
        let count = taken.len() as u64;
        let fresh = merge_per_device(taken.into_iter().flatten().collect(), into_ms);
        let res = resolution_s(into_ms);
        let (get, put) =
            (tx.prepare(sql::ROLLUP.postgres).await?, tx.prepare(sql::PUT_ROLLUP.postgres).await?);
        for (device, bucket) in &fresh {
            let stored = tx.query_opt(&get, &[device, &res, &bucket.start_ms]).await?;
            let r = absorb(stored.map(|row| rollup_row(&row)).transpose()?, bucket.clone(), into_ms);
            let lines = serde_json::to_string(&r.lines).unwrap_or_else(|_| "[]".into());
            let samples = i64::from(r.samples);
            tx.execute(
                &put,
                &[
                    device,
                    &res,
                    &r.start_ms,
                    &samples,
                    &r.cpu.min,
                    &r.cpu.avg,
                    &r.cpu.max,
                    &r.mem.min,
                    &r.mem.avg,
                    &r.mem.max,
                    &lines,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(RetentionBatch { taken: count, written: fresh.len() as u64 })
    }

    pub(crate) async fn report_seqs(&self, id: String) -> Result<Vec<(u64, i64)>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::REPORT_SEQS.postgres, &[&id]).await?;
        rows.iter().map(|r| Ok((id_u64(r.i64_at(0)?), r.i64_at(1)?))).collect()
    }

    pub(crate) async fn device(&self, id: String) -> Result<Option<DeviceDetail>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let queries = [
            sql::DEVICE,
            sql::RECENT_REPORTS,
            sql::OPEN_ALERTS_OF_DEVICE,
            sql::RECENT_COMMANDS,
            sql::ORDERS_OF_DEVICE,
            sql::INCIDENTS,
        ];
        let limit = i64::from(DETAIL_RECENT);
        let (stmts, tx) = pooled.conn()?.snapshot(&queries).await?;
        let Some(row) = tx.query_opt(&stmts[0], &[&id]).await? else { return Ok(None) };
        let row = device_row(&row)?;
        let recent_reports =
            tx.query(&stmts[1], &[&id, &limit]).await?.iter().map(report_row).collect::<Result<_, _>>()?;
        let open_alerts =
            tx.query(&stmts[2], &[&id]).await?.iter().map(alert_row).collect::<Result<_, _>>()?;
        let recent_commands =
            tx.query(&stmts[3], &[&id, &limit]).await?.iter().map(command_row).collect::<Result<_, _>>()?;
        let recent_orders = tx
            .query(&stmts[4], &[&id, &i64::from(DETAIL_ORDERS)])
            .await?
            .iter()
            .map(order_row)
            .collect::<Result<_, _>>()?;
        let latest_incident =
            tx.query_opt(&stmts[5], &[&id, &1i64]).await?.map(|r| incident_row(&r)).transpose()?;
        tx.commit().await?;
        Ok(Some(DeviceDetail {
            row,
            recent_reports,
            open_alerts,
            recent_commands,
            recent_orders,
            latest_incident,
        }))
    }

    pub(crate) async fn enqueue_command(
        &self,
        device_id: String,
        kind: String,
        body: Vec<u8>,
        requested_by: Option<String>,
        now_ms: i64,
    ) -> Result<u64, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled
            .conn()?
            .query(sql::ENQUEUE_COMMAND.postgres, &[&device_id, &kind, &body, &now_ms, &requested_by])
            .await?;
        match rows.first() {
            Some(row) => Ok(id_u64(row.i64_at(0)?)),
            None => Err(DbError::UnknownDevice(device_id)),
        }
    }

    pub(crate) fn hints(&self) -> &tokio::sync::Mutex<CommandHints> {
        &self.inner.hints
    }

    pub(crate) fn options(&self) -> &DbOptions {
        &self.inner.options
    }

    /// When each device's next unacknowledged command is due.
    pub(crate) async fn commands_due(&self, redelivery_ms: i64) -> Result<HashMap<String, i64>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::COMMANDS_DUE.postgres, &[&redelivery_ms]).await?;
        rows.iter().map(|r| Ok((r.str_at(0)?, r.i64_at(1)?))).collect()
    }

    pub(crate) async fn take_commands(
        &self,
        device_id: String,
        now_ms: i64,
    ) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let redeliver_before = now_ms.saturating_sub(self.inner.options.redelivery_ms);
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled
            .conn()?
            .query(sql::TAKE_COMMANDS.postgres, &[&device_id, &now_ms, &redeliver_before])
            .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((id_u64(r.i64_at(0)?), r.bytes_at(1)?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub(crate) async fn ack_command(
        &self,
        device_id: String,
        id: i64,
        ok: bool,
        detail: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let n = conn.execute(sql::ACK_COMMAND.postgres, &[&device_id, &id, &now_ms, &ok, &detail]).await?;
        if n > 0 {
            return Ok(true);
        }
        Ok(!conn.query(sql::COMMAND_KNOWN.postgres, &[&device_id, &id]).await?.is_empty())
    }
}

impl PostgresDb {
    pub(crate) async fn open_case(
        &self,
        device_id: String,
        fact: NewCaseEvent,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<u64, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled.conn()?.client.transaction().await?;
        if let Some(rule) = &rule {
            // The device row lock serialises the opening of its cases across processes.
            if tx.query_opt(sql::LOCK_DEVICE.postgres, &[&device_id]).await?.is_none() {
                return Err(DbError::UnknownDevice(device_id));
            }
            let latest = tx.query_one(sql::LATEST_CASE.postgres, &[&device_id]).await?.opt_i64_at(0)?;
            if let Some(id) = latest {
                if let Some(case) = load_case(&tx, id).await? {
                    rule(&case).map_err(DbError::Refused)?;
                }
            }
        }
        let Some(row) = tx.query_opt(sql::INSERT_CASE.postgres, &[&device_id, &fact.at_ms]).await? else {
            return Err(DbError::UnknownDevice(device_id));
        };
        let id = row.i64_at(0)?;
        insert_event(&tx, id, &fact, None).await?;
        tx.commit().await?;
        Ok(id_u64(id))
    }

    pub(crate) async fn add_case_event(
        &self,
        case_id: i64,
        event: NewCaseEvent,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<Option<u64>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled.conn()?.client.transaction().await?;
        // The case row lock serialises the steps of one case across processes.
        if tx.query_opt(sql::LOCK_CASE.postgres, &[&case_id]).await?.is_none() {
            return Ok(None);
        }
        if let Some(rule) = &rule {
            if let Some(case) = load_case(&tx, case_id).await? {
                rule(&case).map_err(DbError::Refused)?;
            }
        }
        let id = insert_event(&tx, case_id, &event, None).await?;
        tx.commit().await?;
        Ok(Some(id_u64(id)))
    }

    pub(crate) async fn case(&self, case_id: i64) -> Result<Option<CaseDetail>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled
            .conn()?
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let case = load_case(&tx, case_id).await?;
        tx.commit().await?;
        Ok(case)
    }

    pub(crate) async fn latest_case(&self, device_id: String) -> Result<Option<i64>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let row = pooled.conn()?.client.query_one(sql::LATEST_CASE.postgres, &[&device_id]).await?;
        row.opt_i64_at(0)
    }

    pub(crate) async fn issue_order(
        &self,
        new: NewOrder,
        event: Option<NewCaseEvent>,
        sign: Arc<OrderSigner>,
        rule: Option<Arc<CaseRule>>,
    ) -> Result<IssuedOrder, DbError> {
        let device_id = new.device_id();
        let o = &new.order;
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled.conn()?.client.transaction().await?;
        // The device row lock serialises sequence allocation (and, with the
        // case lock, the case's steps) across processes.
        if tx.query_opt(sql::LOCK_DEVICE.postgres, &[&device_id]).await?.is_none() {
            return Err(DbError::UnknownDevice(device_id));
        }
        let case_id = new.case_id.map(|c| to_i64("case id", c)).transpose()?;
        if let (Some(rule), Some(case_id)) = (&rule, case_id) {
            if tx.query_opt(sql::LOCK_CASE.postgres, &[&case_id]).await?.is_some() {
                if let Some(case) = load_case(&tx, case_id).await? {
                    rule(&case).map_err(DbError::Refused)?;
                }
            }
        }
        let sequence = tx.query_one(sql::NEXT_SEQUENCE.postgres, &[&device_id]).await?.i64_at(0)?;
        let empty: Vec<u8> = Vec::new();
        let id = tx
            .query_one(
                sql::INSERT_ORDER.postgres,
                &[
                    &device_id,
                    &case_id,
                    &o.kind.name(),
                    &sequence,
                    &o.issued_at,
                    &o.not_before,
                    &o.expires_at,
                    &o.deadline,
                    &o.reason_ja,
                    &o.reason_en,
                    &new.operator,
                    &new.justification,
                    &empty,
                    &new.now_ms,
                ],
            )
            .await?
            .i64_at(0)?;
        let cols = sign_columns(&*sign, &new, id, sequence)?;
        let command_id = tx
            .query_one(
                sql::INSERT_ORDER_COMMAND.postgres,
                &[&device_id, &cols.command_kind, &cols.command_body, &new.now_ms],
            )
            .await?
            .i64_at(0)?;
        tx.execute(
            sql::COMPLETE_ORDER.postgres,
            &[
                &id,
                &cols.signed.key_id,
                &cols.signed.order_bytes,
                &cols.signed.signed,
                &cols.signed.order_hash.as_slice(),
                &command_id,
            ],
        )
        .await?;
        if let (Some(case_id), Some(event)) = (case_id, event.as_ref()) {
            insert_event(&tx, case_id, event, Some(id)).await?;
        }
        tx.commit().await?;
        Ok(IssuedOrder {
            order_id: id_u64(id),
            sequence: id_u64(sequence),
            command_id: id_u64(command_id),
            kind: o.kind.name(),
        })
    }

    pub(crate) async fn orders(
        &self,
        device_id: Option<String>,
        limit: u32,
    ) -> Result<Vec<OrderRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let limit = i64::from(limit);
        let rows = match device_id {
            Some(device) => conn.query(sql::ORDERS_OF_DEVICE.postgres, &[&device, &limit]).await?,
            None => conn.query(sql::ORDERS.postgres, &[&limit]).await?,
        };
        rows.iter().map(order_row).collect()
    }

    pub(crate) async fn order(&self, id: i64) -> Result<Option<OrderRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::ORDER, &[&id], order_row).await
    }

    pub(crate) async fn order_by_command(
        &self,
        device_id: String,
        command_id: i64,
    ) -> Result<Option<OrderRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::ORDER_BY_COMMAND, &[&device_id, &command_id], order_row).await
    }

    pub(crate) async fn record_order_ack(&self, a: StoredAck) -> Result<AckRecorded, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let tx = pooled.conn()?.client.transaction().await?;
        let n = tx
            .execute(sql::ACK_COMMAND.postgres, &[&a.device_id, &a.command_id, &a.now_ms, &a.ok, &a.detail])
            .await?;
        if n == 0 {
            let known =
                tx.query_opt(sql::COMMAND_KNOWN.postgres, &[&a.device_id, &a.command_id]).await?.is_some();
            return Ok(AckRecorded { known, first: false });
        }
        let updated = tx
            .query_opt(
                sql::RECORD_OUTCOME.postgres,
                &[
                    &a.device_id,
                    &a.command_id,
                    &a.outcome,
                    &a.now_ms,
                    &a.detail,
                    &a.receipt_bytes,
                    &a.scheme,
                    &a.signature,
                    &a.applied_at,
                    &a.device_clock,
                    &a.time_floor,
                    &a.clock,
                    &a.resulting_state,
                    &a.drill,
                    &a.cert,
                ],
            )
            .await?;
        if let (Some(row), "applied") = (updated, a.outcome) {
            let (id, sequence) = (row.i64_at(0)?, row.i64_at(1)?);
            tx.execute(sql::SET_SERVICE_STATE.postgres, &[&a.device_id, &sequence, &a.service_state(id)])
                .await?;
        }
        tx.commit().await?;
        Ok(AckRecorded { known: true, first: true })
    }

    pub(crate) async fn order_evidence(&self, id: i64) -> Result<Option<OrderEvidence>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::EVIDENCE, &[&id], evidence_row).await
    }

    pub(crate) async fn incidents(&self, device_id: String, limit: u32) -> Result<Vec<IncidentRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::INCIDENTS.postgres, &[&device_id, &i64::from(limit)]).await?;
        rows.iter().map(incident_row).collect()
    }

    pub(crate) async fn fleet_metrics(&self) -> Result<FleetMetrics, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let (suspended, alerting) =
            first(conn, sql::METRIC_SUSPENDED_ALERTING, &[], |r| Ok((r.i64_at(0)?, r.i64_at(1)?)))
                .await?
                .unwrap_or_default();
        let devices = conn.query(sql::METRIC_DEVICES.postgres, &[]).await?;
        let alerts = conn.query(sql::METRIC_ALERTS_OPEN.postgres, &[]).await?;
        let commands = conn.query(sql::METRIC_COMMANDS.postgres, &[]).await?;
        let orders = conn.query(sql::METRIC_ORDERS.postgres, &[]).await?;
        Ok(FleetMetrics {
            devices: devices.iter().map(state_count).collect::<Result<_, _>>()?,
            suspended: id_u64(suspended),
            alerting: id_u64(alerting),
            alerts_open: alerts.iter().map(alert_count).collect::<Result<_, _>>()?,
            commands: commands.iter().map(labelled_count).collect::<Result<_, _>>()?,
            orders: orders.iter().map(labelled_count).collect::<Result<_, _>>()?,
        })
    }

    pub(crate) async fn add_operator(
        &self,
        name: String,
        role: Role,
        hash: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let changed = pooled
            .conn()?
            .execute(sql::INSERT_OPERATOR.postgres, &[&name, &role.as_str(), &hash, &now_ms])
            .await?;
        Ok(changed == 1)
    }

    pub(crate) async fn operators(&self) -> Result<Vec<OperatorRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let rows = pooled.conn()?.query(sql::OPERATORS.postgres, &[]).await?;
        rows.iter().map(operator_row).collect()
    }

    pub(crate) async fn operator(&self, name: String) -> Result<Option<OperatorRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::OPERATOR, &[&name], operator_row).await
    }

    pub(crate) async fn disable_operator(&self, name: String, now_ms: i64) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        Ok(pooled.conn()?.execute(sql::DISABLE_OPERATOR.postgres, &[&name, &now_ms]).await? == 1)
    }

    pub(crate) async fn set_operator_password(
        &self,
        name: String,
        hash: String,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        Ok(pooled.conn()?.execute(sql::SET_OPERATOR_PASSWORD.postgres, &[&name, &hash, &now_ms]).await? == 1)
    }

    pub(crate) async fn open_session(&self, session: NewSession) -> Result<(), DbError> {
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn()?;
        let s = &session;
        conn.execute(sql::DELETE_EXPIRED_SESSIONS.postgres, &[&s.created_at_ms]).await?;
        conn.execute(
            sql::INSERT_SESSION.postgres,
            &[&s.token_hash, &s.operator, &s.created_at_ms, &s.expires_at_ms],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn session_operator(
        &self,
        token_hash: String,
        now_ms: i64,
    ) -> Result<Option<OperatorRow>, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        first(pooled.conn()?, sql::SESSION_OPERATOR, &[&token_hash, &now_ms], operator_row).await
    }

    pub(crate) async fn close_session(&self, token_hash: String) -> Result<bool, DbError> {
        let mut pooled = self.inner.pool.get().await?;
        Ok(pooled.conn()?.execute(sql::DELETE_SESSION.postgres, &[&token_hash]).await? == 1)
    }
}

/// The first row of `query`, mapped.
async fn first<T>(
    conn: &mut PgConn,
    query: Sql,
    params: &[&(dyn ToSql + Sync)],
    map: impl Fn(&Row) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    conn.query(query.postgres, params).await?.first().map(map).transpose()
}

/// A case with its trail and orders, inside `tx`.
async fn load_case(
    tx: &tokio_postgres::Transaction<'_>,
    case_id: i64,
) -> Result<Option<CaseDetail>, DbError> {
    let Some(case) = tx.query_opt(sql::CASE.postgres, &[&case_id]).await? else { return Ok(None) };
    let case = case_row(&case)?;
    let events =
        tx.query(sql::EVENTS.postgres, &[&case_id]).await?.iter().map(event_row).collect::<Result<_, _>>()?;
    let orders = tx
        .query(sql::ORDERS_OF_CASE.postgres, &[&case_id])
        .await?
        .iter()
        .map(order_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(CaseDetail { case, events, orders }))
}

async fn insert_event(
    tx: &tokio_postgres::Transaction<'_>,
    case_id: i64,
    e: &NewCaseEvent,
    order_id: Option<i64>,
) -> Result<i64, DbError> {
    let row = tx
        .query_one(
            sql::INSERT_EVENT.postgres,
            &[
                &case_id,
                &e.step.as_str(),
                &e.at_ms,
                &e.operator,
                &e.text,
                &e.deadline_ms,
                &e.corrected,
                &e.justification,
                &e.recipient,
                &order_id,
            ],
        )
        .await?;
    row.i64_at(0)
}

/// Applies missing migrations in one transaction under an advisory lock.
async fn migrate(conn: &mut PgConn) -> Result<(), DbError> {
    let tx = conn.client.transaction().await?;
    // Several servers starting together: the first migrates, the others wait
    // here and then find nothing left to do. Released at commit/rollback.
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")).await?;
    tx.batch_execute(PG_BOOKKEEPING).await?;
    let applied = tx
        .query(sql::SCHEMA_VERSIONS.postgres, &[])
        .await?
        .iter()
        .map(|r| r.i64_at(0))
        .collect::<Result<Vec<_>, _>>()?;
    for m in pending(&applied)? {
        tx.batch_execute(m.postgres).await?;
        tx.execute(PG_RECORD, &[&m.version, &m.name]).await?;
        tracing::info!(version = m.version, name = m.name, "applied PostgreSQL schema migration");
    }
    tx.commit().await?;
    Ok(())
}

/// One group-committing ingest writer. Ends when every handle is dropped.
async fn writer_task(
    conn: PgConn,
    config: Config,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<IngestJob>>>,
    max_group: usize,
) {
    let mut conn = Some(conn);
    loop {
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else { return };
            let mut weight = first.req.records.len();
            let mut group = vec![first];
            while group.len() < max_group && weight < MAX_GROUP_RECORDS {
                match jobs.try_recv() {
                    Ok(job) => {
                        weight += job.req.records.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let current = match conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => match PgConn::connect(&config).await {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, "PostgreSQL ingest writer cannot connect");
                    for job in group {
                        let _ = job.reply.send(Err(DbError::Unavailable(msg.clone())));
                    }
                    continue;
                }
            },
        };
        let current = conn.insert(current);
        process_group(current, group).await;
    }
}

async fn process_group(conn: &mut PgConn, group: Vec<IngestJob>) {
    let requests: Vec<&IngestRequest> = group.iter().map(|j| &j.req).collect();
    let result = apply_with_retry(conn, &requests).await;
    drop(requests);
    match result {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(job) = group.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, requests = group.len(), "PostgreSQL ingest group failed; retrying one by one");
            for job in group {
                let result = apply_with_retry(conn, &[&job.req]).await;
                let _ = job.reply.send(result.and_then(|mut v| v.pop().ok_or(DbError::Closed)));
            }
        }
    }
}

async fn apply_with_retry(
    conn: &mut PgConn,
    requests: &[&IngestRequest],
) -> Result<Vec<IngestOutcome>, DbError> {
    let mut attempt = 1;
    loop {
        match apply_group(conn, requests).await {
            Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Per-device values of a group: the latest institution code, the latest time,
/// the latest certificate expiry given, and the newest stored health (seq, JSON).
struct DeviceUpdate<'a> {
    code: &'a str,
    now_ms: i64,
    cert_not_after: Option<i64>,
    health: Option<(i64, &'a str)>,
}

/// A group's requests merged: devices in id order (the lock order of every
/// writer), and the first occurrence of each (device, seq) in key order.
struct Group<'a> {
    devices: BTreeMap<&'a str, DeviceUpdate<'a>>,
    records: BTreeMap<(&'a str, i64), (&'a StoredRecord, i64)>,
}

impl<'a> Group<'a> {
    fn new(requests: &[&'a IngestRequest]) -> Self {
        let mut devices: BTreeMap<&str, DeviceUpdate<'_>> = BTreeMap::new();
        let mut records = BTreeMap::new();
        for req in requests {
            let d = &req.device;
            let entry = devices.entry(d.id.as_str()).or_insert(DeviceUpdate {
                code: &d.institution_code,
                now_ms: req.now_ms,
                cert_not_after: None,
                health: None,
            });
            entry.code = &d.institution_code;
            entry.now_ms = entry.now_ms.max(req.now_ms);
            if d.cert_not_after.is_some() {
                entry.cert_not_after = d.cert_not_after;
            }
            for rec in &req.records {
                records.entry((d.id.as_str(), rec.seq)).or_insert((rec, req.now_ms));
            }
        }
        Self { devices, records }
    }

    /// The group's own `&'a str` for a device id read from a row.
    fn device_key(&self, id: &str) -> Option<&'a str> {
        self.devices.get_key_value(id).map(|(&k, _)| k)
    }

    /// Devices among `rows` (`id, state`) that were `down`.
    fn were_down(&self, rows: Vec<Row>) -> Result<HashSet<&'a str>, DbError> {
        let mut out = HashSet::new();
        for row in rows {
            if row.try_get::<_, &str>(1)? == "down" {
                out.extend(self.device_key(row.try_get(0)?));
            }
        }
        Ok(out)
    }

    /// Keys among `rows` (`device_id, seq`) that were stored; notes the newest
    /// stored health of each device.
    fn stored(&mut self, rows: Vec<Row>) -> Result<HashSet<(&'a str, i64)>, DbError> {
        let mut out = HashSet::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(1)?;
            let Some(dev) = self.device_key(row.try_get(0)?) else { continue };
            let Some((&key, &(rec, _))) = self.records.get_key_value(&(dev, seq)) else { continue };
            out.insert(key);
            if let (Some(h), Some(d)) = (&rec.health, self.devices.get_mut(dev)) {
                if d.health.is_none_or(|(s, _)| seq > s) {
                    d.health = Some((seq, h));
                }
            }
        }
        Ok(out)
    }

    /// Devices among `rows` (`id, inserted`) that were inserted now.
    fn inserted(&self, rows: Vec<Row>) -> Result<HashSet<&'a str>, DbError> {
        let mut out = HashSet::new();
        for row in rows {
            if row.try_get::<_, bool>(1)? {
                out.extend(self.device_key(row.try_get(0)?));
            }
        }
        Ok(out)
    }
}

const LOCK_DEVICES: &str = "SELECT id, state FROM devices WHERE id = ANY($1) ORDER BY id FOR UPDATE";
const INSERT_REPORTS: &str = "INSERT INTO reports
        (device_id, seq, recorded_at_ms, received_at_ms, kind, body, summary)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bytea[], $7::text[])
    ON CONFLICT (device_id, seq) DO NOTHING
    RETURNING device_id, seq";
const UPSERT_DEVICES: &str = "INSERT INTO devices
        (id, institution_code, first_seen, last_seen, state, state_since, cert_not_after, last_health)
    SELECT u.id, u.code, u.now, u.now, 'up', u.now, u.cert, u.health
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) AS u(id, code, now, cert, health)
    ON CONFLICT (id) DO UPDATE SET
        institution_code = EXCLUDED.institution_code,
        last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen),
        state_since = CASE WHEN devices.state = 'down' THEN EXCLUDED.last_seen ELSE devices.state_since END,
        state = 'up',
        cert_not_after = COALESCE(EXCLUDED.cert_not_after, devices.cert_not_after),
        last_health = COALESCE(EXCLUDED.last_health, devices.last_health)
    RETURNING id, (xmax = 0) AS inserted";

async fn apply_group(conn: &mut PgConn, requests: &[&IngestRequest]) -> Result<Vec<IngestOutcome>, DbError> {
    let lock = conn.prepare(LOCK_DEVICES).await?;
    let insert = conn.prepare(INSERT_REPORTS).await?;
    let upsert = conn.prepare(UPSERT_DEVICES).await?;
    let mut group = Group::new(requests);
    let ids: Vec<&str> = group.devices.keys().copied().collect();
    let n = group.records.len();
    let (mut r_dev, mut r_seq, mut r_at, mut r_recv) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut r_kind, mut r_body, mut r_summary) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (&(dev, seq), &(rec, received)) in &group.records {
        r_dev.push(dev);
        r_seq.push(seq);
        r_at.push(rec.at_ms);
        r_recv.push(received);
        r_kind.push(rec.kind.as_str());
        r_body.push(rec.body.as_slice());
        r_summary.push(rec.summary.as_str());
    }

    // Round trip 1, pipelined (sent back to back, executed in order): BEGIN,
    // lock the group's devices (their state before; nobody marks them down
    // until we commit), insert the records.
    let client = &conn.client;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let insert_params: [&(dyn ToSql + Sync); 7] =
        [&r_dev, &r_seq, &r_at, &r_recv, &r_kind, &r_body, &r_summary];
    let (begin, locked, stored) = tokio::join!(
        biased;
        client.batch_execute("BEGIN"),
        client.query(&lock, &lock_params),
        client.query(&insert, &insert_params),
    );
    let first = (|| Ok::<_, DbError>((begin.map(|()| group.were_down(locked?))??, group.stored(stored?)?)))();
    let (was_down, inserted) = match first {
        Ok(v) => v,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    // Incident records (rare): stored with their report, in this transaction.
    for (&(dev, seq), &(rec, received)) in &group.records {
        let Some(i) = &rec.incident else { continue };
        if !inserted.contains(&(dev, seq)) {
            continue;
        }
        let result = client
            .execute(
                sql::INSERT_INCIDENT.postgres,
                &[
                    &dev,
                    &seq,
                    &i.id,
                    &i.command_id,
                    &i.segment,
                    &i.summary,
                    &i.report_json,
                    &rec.at_ms,
                    &received,
                ],
            )
            .await;
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
    }

    // Round trip 2, pipelined: upsert the devices with their newest stored
    // health, and COMMIT.
    let codes: Vec<&str> = group.devices.values().map(|d| d.code).collect();
    let nows: Vec<i64> = group.devices.values().map(|d| d.now_ms).collect();
    let certs: Vec<Option<i64>> = group.devices.values().map(|d| d.cert_not_after).collect();
    let healths: Vec<Option<&str>> = group.devices.values().map(|d| d.health.map(|(_, h)| h)).collect();
    let upsert_params: [&(dyn ToSql + Sync); 5] = [&ids, &codes, &nows, &certs, &healths];
    let (upserted, committed) = tokio::join!(
        biased;
        client.query(&upsert, &upsert_params),
        client.batch_execute("COMMIT"),
    );
    // After a failed statement PostgreSQL turns COMMIT into ROLLBACK: check
    // the upsert's own result first.
    let upserted = match upserted.and_then(|rows| committed.map(|()| rows)) {
        Ok(rows) => rows,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
    };
    let new_devices = group.inserted(upserted)?;

    Ok(attribute_group(
        requests,
        |dev, seq| inserted.contains(&(dev, seq)),
        |dev| was_down.contains(dev),
        |dev| new_devices.contains(dev),
    ))
}
