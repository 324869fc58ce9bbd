//! Data retention: what the carrier keeps of its devices' reports, and for
//! how long.
//!
//! Heartbeats are kept at full resolution for [`RetentionPolicy::full_resolution`]
//! (default 7 days), then rolled up into five-minute buckets (min/avg/max of
//! CPU and memory, mean bandwidth per line) kept for
//! [`RetentionPolicy::five_minutes`] (default 30 days), then into hourly
//! buckets kept for [`RetentionPolicy::hourly`] (default 400 days, a little
//! over 13 months, so a year can be compared with the one before); events
//! are kept as long as the hourly rollups. So the store is bounded: per
//! device about 10,080 heartbeats (at one a minute), 6,624 five-minute and
//! 8,900 hourly buckets.
//!
//! [`plan`] decides, from the policy and the time, which batches to run
//! (pure); [`run_once`] runs them through a [`RetentionStore`] until each
//! source is drained, one batch of at most [`RetentionPolicy::batch`] rows per
//! transaction, so that the SQLite writer is never held for long (ingest runs
//! between batches). A batch rolls up and deletes in one transaction, and
//! every row is taken by one batch only, so a run is idempotent and may be
//! interrupted, repeated, or run by several processes at once.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::store::series::HOUR_MS;
use crate::store::{Database, DbError, RetentionBatch, RetentionStep};

/// Default full-resolution period of heartbeats.
pub const DEFAULT_FULL_RESOLUTION_DAYS: u32 = 7;
/// Default period of five-minute rollups.
pub const DEFAULT_FIVE_MINUTE_DAYS: u32 = 30;
/// Default period of hourly rollups and events.
pub const DEFAULT_HOURLY_DAYS: u32 = 400;
/// Default rows per batch (a few milliseconds of the SQLite writer).
pub const DEFAULT_BATCH: u32 = 2000;
/// Largest batch.
pub const MAX_BATCH: u32 = 20_000;
/// Default time between runs of `serve`.
pub const DEFAULT_EVERY: Duration = Duration::from_mins(10);

const DAY_MS: i64 = 24 * HOUR_MS;

/// How long each resolution is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days heartbeats are kept as received.
    pub full_resolution_days: u32,
    /// Days five-minute rollups are kept.
    pub five_minute_days: u32,
    /// Days hourly rollups and events are kept.
    pub hourly_days: u32,
    /// Rows per transaction.
    pub batch: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            full_resolution_days: DEFAULT_FULL_RESOLUTION_DAYS,
            five_minute_days: DEFAULT_FIVE_MINUTE_DAYS,
            hourly_days: DEFAULT_HOURLY_DAYS,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Why retention did not run (wholly).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The periods do not nest.
    #[error(
        "retention periods must satisfy 1 <= full resolution ({full}) <= five-minute ({five}) <= hourly ({hourly}) days; \
         fix the --retention-* options / 保持期間の指定が不正です"
    )]
    Periods {
        /// Full-resolution days.
        full: u32,
        /// Five-minute days.
        five: u32,
        /// Hourly days.
        hourly: u32,
    },
    /// The batch size is out of range.
    #[error("a retention batch holds 1 to {MAX_BATCH} rows, not {0}")]
    Batch(u32),
    /// The store failed; the batches reported in `done` were committed.
    #[error("retention stopped after {done}: {source}")]
    Store {
        /// What was committed before the failure.
        done: RetentionReport,
        /// The store's error.
        source: DbError,
    },
}

impl RetentionPolicy {
    /// Checks that the periods nest and the batch size is sensible.
    pub fn validate(&self) -> Result<(), RetentionError> {
        let (full, five, hourly) = (self.full_resolution_days, self.five_minute_days, self.hourly_days);
        if full == 0 || full > five || five > hourly {
            return Err(RetentionError::Periods { full, five, hourly });
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(RetentionError::Batch(self.batch));
        }
        Ok(())
    }
}

/// The batches a run at `now_ms` makes, in order: heartbeats received
/// before the full-resolution period into five-minute rollups; five-minute
/// buckets older than their period into hourly ones (the cut on an hour, so
/// an hour moves whole); hourly buckets and events older than theirs deleted.
pub fn plan(policy: &RetentionPolicy, now_ms: i64) -> [RetentionStep; 4] {
    let ago = |days: u32| now_ms.saturating_sub(i64::from(days) * DAY_MS);
    let on_hour = |ms: i64| ms.div_euclid(HOUR_MS) * HOUR_MS;
    [
        RetentionStep::RollUpHeartbeats { before_ms: ago(policy.full_resolution_days) },
        RetentionStep::RollUpFiveMinutes { before_ms: on_hour(ago(policy.five_minute_days)) },
        RetentionStep::DeleteHourly { before_ms: on_hour(ago(policy.hourly_days)) },
        RetentionStep::DeleteEvents { before_ms: ago(policy.hourly_days) },
    ]
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Heartbeats rolled up into five-minute buckets and deleted.
    pub heartbeats_rolled_up: u64,
    /// Five-minute buckets written (new or merged into).
    pub five_minute_buckets_written: u64,
    /// Five-minute buckets rolled up into hourly ones and deleted.
    pub five_minute_buckets_rolled_up: u64,
    /// Hourly buckets written.
    pub hourly_buckets_written: u64,
    /// Hourly buckets deleted at the end of their period.
    pub hourly_buckets_deleted: u64,
    /// Events deleted at the end of their period.
    pub events_deleted: u64,
    /// Transactions committed.
    pub batches: u64,
}

impl RetentionReport {
    fn add(&mut self, step: RetentionStep, b: RetentionBatch) {
        self.batches += 1;
        match step {
            RetentionStep::RollUpHeartbeats { .. } => {
                self.heartbeats_rolled_up += b.taken;
                self.five_minute_buckets_written += b.written;
            }
            RetentionStep::RollUpFiveMinutes { .. } => {
                self.five_minute_buckets_rolled_up += b.taken;
                self.hourly_buckets_written += b.written;
            }
            RetentionStep::DeleteHourly { .. } => self.hourly_buckets_deleted += b.taken,
            RetentionStep::DeleteEvents { .. } => self.events_deleted += b.taken,
        }
    }
}

impl std::fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} heartbeats rolled up into {} five-minute buckets, {} five-minute buckets into {} hourly, \
             {} hourly buckets and {} events deleted, in {} batches",
            self.heartbeats_rolled_up,
            self.five_minute_buckets_written,
            self.five_minute_buckets_rolled_up,
            self.hourly_buckets_written,
            self.hourly_buckets_deleted,
            self.events_deleted,
            self.batches
        )
    }
}

/// Where retention batches run: the store, or a fake in tests.
pub trait RetentionStore {
    /// Runs one batch of at most `limit` rows in one transaction.
    fn batch(
        &self,
        step: RetentionStep,
        limit: u32,
    ) -> impl Future<Output = Result<RetentionBatch, DbError>> + Send;
}

impl RetentionStore for Database {
    fn batch(
        &self,
        step: RetentionStep,
        limit: u32,
    ) -> impl Future<Output = Result<RetentionBatch, DbError>> + Send {
        self.retention_batch(step, limit)
    }
}

impl<T: RetentionStore + Sync + Send> RetentionStore for std::sync::Arc<T> {
    fn batch(
        &self,
        step: RetentionStep,
        limit: u32,
    ) -> impl Future<Output = Result<RetentionBatch, DbError>> + Send {
        T::batch(self, step, limit)
    }
}

/// One run at `now_ms`: each step of [`plan`] in batches until a batch
/// comes back short (its source is drained). Other work runs between batches.
pub async fn run_once(
    store: &impl RetentionStore,
    policy: &RetentionPolicy,
    now_ms: i64,
) -> Result<RetentionReport, RetentionError> {
    policy.validate()?;
    let mut report = RetentionReport::default();
    for step in plan(policy, now_ms) {
        loop {
            let batch = store
                .batch(step, policy.batch)
                .await
                .map_err(|source| RetentionError::Store { done: report, source })?;
            report.add(step, batch);
            if batch.taken < u64::from(policy.batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(report)
}

/// Runs [`run_once`] on `store` now and then every `every` until `shutdown`,
/// logging what each run did (a failed run is logged and retried at the
/// next period: batches already committed stay done). For `serve`.
pub async fn run_periodically(
    store: impl RetentionStore,
    policy: RetentionPolicy,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            let started = std::time::Instant::now();
            match run_once(&store, &policy, crate::clock::now_ms()).await {
                Ok(r) => tracing::info!(
                    heartbeats_rolled_up = r.heartbeats_rolled_up,
                    five_minute_buckets_written = r.five_minute_buckets_written,
                    five_minute_buckets_rolled_up = r.five_minute_buckets_rolled_up,
                    hourly_buckets_written = r.hourly_buckets_written,
                    hourly_buckets_deleted = r.hourly_buckets_deleted,
                    events_deleted = r.events_deleted,
                    batches = r.batches,
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "retention run"
                ),
                Err(e) => tracing::warn!(error = %e, "retention run failed; retried at the next period"),
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A store with `left[i]` rows left for step `i` of the plan, that records every call.
    struct Fake {
        left: Mutex<[u64; 4]>,
        calls: Mutex<Vec<(RetentionStep, u32)>>,
        fail_at_call: Option<usize>,
    }

    fn index(step: RetentionStep) -> usize {
        match step {
            RetentionStep::RollUpHeartbeats { .. } => 0,
            RetentionStep::RollUpFiveMinutes { .. } => 1,
            RetentionStep::DeleteHourly { .. } => 2,
            RetentionStep::DeleteEvents { .. } => 3,
        }
    }

    impl RetentionStore for Fake {
        async fn batch(&self, step: RetentionStep, limit: u32) -> Result<RetentionBatch, DbError> {
            let mut calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            calls.push((step, limit));
            if self.fail_at_call == Some(calls.len()) {
                return Err(DbError::Unavailable("disk full".into()));
            }
            let mut left = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let taken = left[index(step)].min(u64::from(limit));
            left[index(step)] -= taken;
            Ok(RetentionBatch { taken, written: taken / 10 })
        }
    }

    fn fake(left: [u64; 4], fail_at_call: Option<usize>) -> Fake {
        Fake { left: Mutex::new(left), calls: Mutex::new(Vec::new()), fail_at_call }
    }

    const NOW: i64 = 1_800_000_000_000 + 1234; // not on an hour

    #[test]
    fn the_plan_cuts_each_period_from_now() {
        let policy = RetentionPolicy::default();
        let [heartbeats, five, hourly, events] = plan(&policy, NOW);
        assert_eq!(heartbeats, RetentionStep::RollUpHeartbeats { before_ms: NOW - 7 * DAY_MS });
        let RetentionStep::RollUpFiveMinutes { before_ms } = five else { unreachable!() };
        assert!(before_ms <= NOW - 30 * DAY_MS && NOW - 30 * DAY_MS - before_ms < HOUR_MS);
        assert_eq!(before_ms % HOUR_MS, 0);
        let RetentionStep::DeleteHourly { before_ms } = hourly else { unreachable!() };
        assert_eq!((before_ms % HOUR_MS, (NOW - before_ms) / DAY_MS), (0, 400));
        assert_eq!(events, RetentionStep::DeleteEvents { before_ms: NOW - 400 * DAY_MS });
        // A later clock moves every cut by as much (rounded to the hour for rollups).
        let later = plan(&policy, NOW + DAY_MS);
        assert_eq!(later[0], RetentionStep::RollUpHeartbeats { before_ms: NOW - 6 * DAY_MS });
    }

    #[test]
    fn periods_must_nest() {
        assert!(RetentionPolicy::default().validate().is_ok());
        let p = RetentionPolicy { full_resolution_days: 31, ..RetentionPolicy::default() };
        assert!(matches!(p.validate(), Err(RetentionError::Periods { full: 31, five: 30, .. })));
        let p = RetentionPolicy { full_resolution_days: 0, ..RetentionPolicy::default() };
        assert!(p.validate().is_err());
        let p = RetentionPolicy { batch: 0, ..RetentionPolicy::default() };
        assert!(matches!(p.validate(), Err(RetentionError::Batch(0))));
        let same = RetentionPolicy { full_resolution_days: 3, five_minute_days: 3, hourly_days: 3, batch: 1 };
        assert!(same.validate().is_ok());
    }

    #[tokio::test]
    async fn a_run_drains_each_source_in_batches_and_counts() {
        let store = fake([4500, 2000, 0, 7], None);
        let policy = RetentionPolicy::default();
        let report = run_once(&store, &policy, NOW).await.unwrap_or_default();
        let calls = store.calls.into_inner().unwrap_or_default();
        let steps: Vec<usize> = calls.iter().map(|(s, _)| index(*s)).collect();
        // 4500 = 2000 + 2000 + 500 (short: drained); 2000 exactly needs one empty batch to know.
        assert_eq!(steps, [0, 0, 0, 1, 1, 2, 3]);
        assert!(calls.iter().all(|&(_, limit)| limit == policy.batch));
        assert_eq!(report.heartbeats_rolled_up, 4500);
        assert_eq!(report.five_minute_buckets_written, 200 + 200 + 50);
        assert_eq!((report.five_minute_buckets_rolled_up, report.hourly_buckets_written), (2000, 200));
        assert_eq!((report.hourly_buckets_deleted, report.events_deleted, report.batches), (0, 7, 7));
        // A second run finds nothing left: one empty batch per step.
        let again = run_once(&fake([0; 4], None), &policy, NOW).await.unwrap_or_default();
        assert_eq!(again, RetentionReport { batches: 4, ..RetentionReport::default() });
    }

    #[tokio::test(start_paused = true)]
    async fn serve_runs_at_start_and_every_period_until_shutdown() {
        let store = Arc::new(fake([0; 4], None));
        let every = Duration::from_mins(10);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task =
            tokio::spawn(run_periodically(Arc::clone(&store), RetentionPolicy::default(), every, async {
                let _ = stopped.await;
            }));
        let calls = |s: &Fake| s.calls.lock().map(|c| c.len()).unwrap_or_default();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls(&store), 4, "one run (four empty batches) at start");
        tokio::time::sleep(every * 2).await;
        assert_eq!(calls(&store), 12, "and one per period");
        let _ = stop.send(());
        assert!(task.await.is_ok());
        tokio::time::sleep(every * 3).await;
        assert_eq!(calls(&store), 12, "none after shutdown");
    }

    #[tokio::test]
    async fn a_failure_stops_the_run_and_says_what_was_committed() {
        let store = fake([4500, 0, 0, 0], Some(2));
        let err = run_once(&store, &RetentionPolicy::default(), NOW).await.err();
        let Some(RetentionError::Store { done, .. }) = err else { unreachable!("{err:?}") };
        assert_eq!((done.heartbeats_rolled_up, done.batches), (2000, 1));
        assert_eq!(store.calls.into_inner().unwrap_or_default().len(), 2);
        // Bad policy: nothing runs.
        let store = fake([1; 4], None);
        let bad = RetentionPolicy { batch: MAX_BATCH + 1, ..RetentionPolicy::default() };
        assert!(run_once(&store, &bad, NOW).await.is_err());
        assert!(store.calls.into_inner().unwrap_or_default().is_empty());
    }
}
