//! The storage layer, every behaviour on SQLite (a temporary directory) and on
//! PostgreSQL when `CPE_TEST_POSTGRES_URL` is set (`bash scripts/postgres.sh`
//! prints it). Each PostgreSQL test works in a fresh schema of its own, so the
//! tests run in parallel and repeatedly; without the variable they say that
//! they were skipped, and under `CI=true` they fail.
//!
//! "Two server processes" are two `Database` handles opened on the same URL:
//! separate writers, separate connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use cpe_provision::store::{
    Database, DbError, DbOptions, DeviceSeen, DeviceState, IngestRecord, NewAlert, ReportKind, DETAIL_RECENT,
};

const T0: i64 = 1_777_636_800_000;
const REDELIVERY: i64 = 60_000;
const PG_ENV: &str = "CPE_TEST_POSTGRES_URL";
/// Makes schema names unique within the test process.
static SCHEMA_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where a test's database lives; `open` gives a new handle (a new "process").
struct Backend {
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: base URL and the schema made for this test.
    pg: Option<(String, String)>,
}

fn options() -> DbOptions {
    DbOptions { redelivery_ms: REDELIVERY, ..DbOptions::default() }
}

impl Backend {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("carrier.db").display());
        Self { url, _dir: Some(dir), pg: None }
    }

    async fn postgres(test: &str) -> Option<Self> {
        let Ok(base) = std::env::var(PG_ENV) else {
            // Under CI a suite that passes without PostgreSQL proves nothing.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: db::{test}::postgres must run, but {PG_ENV} is not set (scripts/test.sh sets it)"
            );
            // Written past the test harness's capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: db::{test}::postgres: {PG_ENV} is not set (bash scripts/postgres.sh prints it)"
            );
            return None;
        };
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let schema = format!(
            "t_{test}_{}_{}_{nanos}",
            std::process::id(),
            SCHEMA_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin(&base).await;
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        Some(Self { url, _dir: None, pg: Some((base, schema)) })
    }

    async fn open(&self) -> Database {
        Database::open_with(&self.url, options()).await.unwrap()
    }

    async fn cleanup(self) {
        if let Some((base, schema)) = &self.pg {
            let client = admin(base).await;
            client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        }
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// One `mod NAME { sqlite, postgres }` per behaviour.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let backend = super::Backend::sqlite();
                super::$name(&backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = super::Backend::postgres(stringify!($name)).await else { return };
                super::$name(&backend).await;
                backend.cleanup().await;
            }
        }
    )*};
}

both!(
    ingest_upserts_and_dedups,
    replays_racing_count_exactly,
    group_failures_stay_isolated,
    down_and_recovered_exactly_once,
    migrations_idempotent,
    commands_delivered_redelivered_acked,
    commands_queued_elsewhere_seen_within_refresh,
    alerts_raised_listed_cleared,
    out_of_range_input_refused,
    case_trail_orders_delivery_and_receipts,
    order_sequences_strictly_increase_across_processes,
    incidents_stored_once_latest_shown,
    concurrent_operators_open_one_case_and_issue_one_stop,
    stored_key_rotation_orders_take_the_one_spelling,
    one_expiry_summary_per_day_across_processes,
    operator_sessions_end_on_expiry_logout_password_change_and_disable,
    device_pages_search_filter_sort_and_count_in_the_store,
    alerts_acknowledged_once_with_the_operator,
    fleet_metrics_count_states_alerts_and_commands,
);

fn device(id: &str) -> DeviceSeen {
    DeviceSeen {
        id: id.into(),
        institution_code: id.split('/').next().unwrap().into(),
        cert_not_after: Some(T0 / 1000 + 86_400 * 300),
    }
}

fn record(seq: u64, health: Option<&str>) -> IngestRecord {
    IngestRecord {
        seq,
        at_unix_ms: T0 - 1_000_000 + i64::try_from(seq % 1_000_000).unwrap(),
        kind: if health.is_some() { ReportKind::Heartbeat } else { ReportKind::Event },
        body: vec![1, u8::try_from(seq % 256).unwrap(), 0xff],
        summary_json: format!(r#"{{"seq":{seq}}}"#),
        health_json: health.map(str::to_owned),
        incident: None,
    }
}

fn records(seqs: impl IntoIterator<Item = u64>) -> Vec<IngestRecord> {
    seqs.into_iter().map(|s| record(s, Some(&format!(r#"{{"cpu_pct":{s}}}"#)))).collect()
}

async fn ingest_upserts_and_dedups(b: &Backend) {
    let db = b.open().await;
    let dev = device("1312345678/cpe-01");

    let first = db
        .ingest(
            &dev,
            vec![record(1, Some(r#"{"cpu":1}"#)), record(2, None), record(3, Some(r#"{"cpu":3}"#))],
            T0,
        )
        .await
        .unwrap();
    assert_eq!((first.accepted, first.duplicates, first.new_device, first.was_down), (3, 0, true, false));

    // The same batch again (the agent did not get the answer): all duplicates.
    let replay = db.ingest(&dev, records(1..=3), T0 + 1_000).await.unwrap();
    assert_eq!(
        (replay.accepted, replay.duplicates, replay.new_device, replay.was_down),
        (0, 3, false, false)
    );

    // Overlapping batch with a repeat inside it: 3 is old, the second 4 repeats.
    let mut overlap = records([3, 4]);
    overlap.push(record(4, None));
    overlap.push(record(5, None));
    let out = db.ingest(&dev, overlap, T0 + 2_000).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (2, 2));

    // An empty batch still counts as a sign of life.
    let empty = db.ingest(&dev, vec![], T0 + 3_000).await.unwrap();
    assert_eq!((empty.accepted, empty.duplicates), (0, 0));

    let devices = db.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    let row = &devices[0];
    assert_eq!(row.id, "1312345678/cpe-01");
    assert_eq!(row.institution_code, "1312345678");
    assert_eq!((row.first_seen_ms, row.last_seen_ms, row.state), (T0, T0 + 3_000, DeviceState::Up));
    assert_eq!(row.cert_not_after, dev.cert_not_after);
    assert_eq!(row.suspension, None);
    assert_eq!(row.open_alerts, 0);
    // Newest *stored* health: seq 4 of the third batch (the replay of 1..=3 stored nothing).
    assert_eq!(row.last_health.as_deref(), Some(r#"{"cpu_pct":4}"#));

    // A later batch without certificate info keeps the known expiry.
    let other = DeviceSeen { cert_not_after: None, ..dev.clone() };
    db.ingest(&other, records([6]), T0 + 4_000).await.unwrap();
    let detail = db.device(&dev.id).await.unwrap().unwrap();
    assert_eq!(detail.row.cert_not_after, dev.cert_not_after);
    assert_eq!(detail.row.last_health.as_deref(), Some(r#"{"cpu_pct":6}"#));
    let seqs: Vec<u64> = detail.recent_reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2, 1]);
    let r2 = &detail.recent_reports[4];
    assert_eq!((r2.kind, r2.summary.as_str(), r2.received_at_ms), (ReportKind::Event, r#"{"seq":2}"#, T0));
    assert_eq!(r2.recorded_at_ms, T0 - 1_000_000 + 2);
    assert!(detail.open_alerts.is_empty() && detail.recent_commands.is_empty());
    assert!(db.device("1312345678/nope").await.unwrap().is_none());
    let seqs = db.report_seqs(&dev.id).await.unwrap();
    assert_eq!(seqs.iter().map(|&(s, _)| s).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!((seqs[0].1, seqs[3].1, seqs[5].1), (T0, T0 + 2_000, T0 + 4_000));
    assert!(db.report_seqs("1312345678/nope").await.unwrap().is_empty());

    // Recent reports are capped.
    db.ingest(&dev, records(7..=40), T0 + 5_000).await.unwrap();
    let detail = db.device(&dev.id).await.unwrap().unwrap();
    assert_eq!(detail.recent_reports.len(), DETAIL_RECENT as usize);
    assert_eq!(detail.recent_reports[0].seq, 40);
}

async fn replays_racing_count_exactly(b: &Backend) {
    // Two handles (two server processes); 24 requests at once carrying the
    // same 50 records of one device, plus 20 other devices with distinct records.
    let dbs = [b.open().await, b.open().await];
    let dev = device("1312345678/cpe-race");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let db = dbs[i % 2].clone();
        let dev = dev.clone();
        tasks.push(tokio::spawn(async move { db.ingest(&dev, records(1..=50), T0 + 10).await }));
    }
    let mut others = Vec::new();
    for i in 0..20 {
        let db = dbs[i % 2].clone();
        let dev = device(&format!("1312345678/cpe-{i:02}"));
        others.push(tokio::spawn(async move { db.ingest(&dev, records(1..=10), T0 + 10).await }));
    }
    let (mut accepted, mut duplicates, mut new) = (0, 0, 0);
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        accepted += out.accepted;
        duplicates += out.duplicates;
        new += u32::from(out.new_device);
        assert!(!out.was_down);
    }
    assert_eq!((accepted, duplicates, new), (50, 24 * 50 - 50, 1));
    for t in others {
        let out = t.await.unwrap().unwrap();
        assert_eq!((out.accepted, out.duplicates, out.new_device), (10, 0, true));
    }
    assert_eq!(dbs[0].devices().await.unwrap().len(), 21);
    assert_eq!(
        dbs[1].device(&dev.id).await.unwrap().unwrap().row.last_health.as_deref(),
        Some(r#"{"cpu_pct":50}"#)
    );
}

async fn group_failures_stay_isolated(b: &Backend) {
    // Writes that fail (alerts for unknown devices) queued among ingests that
    // may share their group transaction: only they fail.
    let db = b.open().await;
    let mut ingests = Vec::new();
    let mut alerts = Vec::new();
    for i in 0..40 {
        let db2 = db.clone();
        let dev = device(&format!("1312345678/cpe-{i:02}"));
        ingests.push(tokio::spawn(async move { db2.ingest(&dev, records(1..=5), T0).await }));
        let db2 = db.clone();
        alerts.push(tokio::spawn(async move {
            db2.raise_alert(NewAlert {
                device_id: format!("9999999999/ghost-{i}"),
                kind: "down".into(),
                level: "warning".into(),
                message: "never seen".into(),
                at_ms: T0,
            })
            .await
        }));
    }
    for t in ingests {
        assert_eq!(t.await.unwrap().unwrap().accepted, 5);
    }
    for t in alerts {
        assert!(
            matches!(t.await.unwrap(), Err(DbError::UnknownDevice(id)) if id.starts_with("9999999999/ghost-"))
        );
    }
    assert_eq!(db.devices().await.unwrap().len(), 40);
    assert!(db.alerts(false, 100).await.unwrap().is_empty());
}

/// Two "servers" look at certificate expiry at the same moments (injected
/// clock): each day with something due gets exactly one summary; a day with
/// nothing due none; and the summary follows the clock through the thresholds.
async fn one_expiry_summary_per_day_across_processes(b: &Backend) {
    use cpe_provision::expiry::{alert_days, daily_summary, DEFAULT_ALERT_DAYS};
    use time::macros::datetime;
    let (one, two) = (b.open().await, b.open().await);
    let thresholds = alert_days(DEFAULT_ALERT_DAYS.to_vec()).unwrap();
    let not_after = datetime!(2027-06-30 00:00 UTC).unix_timestamp();
    let id = format!("1312345678/expiry-{}", std::process::id());
    one.ingest(&DeviceSeen { cert_not_after: Some(not_after), ..device(&id) }, records([1]), T0)
        .await
        .unwrap();

    // 90 days left: nothing is due, nothing is claimed.
    let calm = datetime!(2027-04-01 09:00 UTC);
    assert_eq!(daily_summary(&one, calm, &thresholds).await.unwrap(), None);
    let mut sent = Vec::new();
    for (at, expect_level) in [
        (datetime!(2027-04-01 10:00 UTC), None),
        (datetime!(2027-05-15 08:00 UTC), Some("caution")),
        (datetime!(2027-06-25 08:00 UTC), Some("warning")),
    ] {
        let (first, second) =
            tokio::join!(daily_summary(&one, at, &thresholds), daily_summary(&two, at, &thresholds));

        // The same day again, later: already sent.
        let again = daily_summary(&two, at + time::Duration::hours(5), &thresholds).await.unwrap();
        assert_eq!(again, None);
        let got: Vec<_> = [first.unwrap(), second.unwrap()].into_iter().flatten().collect();
        assert_eq!(got.len(), usize::from(expect_level.is_some()), "{at}: {got:?}");
        if let Some(summary) = got.first() {
            assert_eq!(Some(summary.level.as_str()), expect_level);
            assert!(summary.text.contains(&id), "{}", summary.text);
            sent.push(summary.day.clone());
        }
    }
    assert_eq!(sent, ["2027-05-15", "2027-06-25"]);
}

async fn down_and_recovered_exactly_once(b: &Backend) {
    let a = b.open().await;
    let c = b.open().await;
    let ids: Vec<String> = (0..30).map(|i| format!("1312345678/cpe-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Devices 0..20 last seen at T0, 20..30 at T0 + 100 s.
        let at = if i < 20 { T0 } else { T0 + 100_000 };
        a.ingest(&device(id), records([1]), at).await.unwrap();
    }

    // Both "servers" run their liveness sweep at the same moment, several times.
    let silent_before = T0 + 50_000;
    let mut sweeps = Vec::new();
    for k in 0..6 {
        let db = if k % 2 == 0 { a.clone() } else { c.clone() };
        sweeps.push(tokio::spawn(async move { db.mark_silent(silent_before, T0 + 120_000).await }));
    }
    let mut all = Vec::new();
    for s in sweeps {
        all.extend(s.await.unwrap().unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 20, "each device reported down exactly once: {all:?}");
    assert_eq!(unique, ids[..20].iter().collect());
    assert!(a.mark_silent(silent_before, T0 + 121_000).await.unwrap().is_empty());
    let rows = c.devices().await.unwrap();
    assert!(rows[..20].iter().all(|r| r.state == DeviceState::Down && r.state_since_ms == T0 + 120_000));
    assert!(rows[20..].iter().all(|r| r.state == DeviceState::Up));

    // Each down device reports again, twice at once through both servers:
    // exactly one of the two answers says it was down.
    let mut reports = Vec::new();
    for (i, id) in ids[..20].iter().enumerate() {
        for (k, db) in [&a, &c].into_iter().enumerate() {
            let db = db.clone();
            let dev = device(id);
            let seq = 2 + u64::try_from(k).unwrap();
            let now = T0 + 130_000 + i64::try_from(i).unwrap();
            reports.push(tokio::spawn(async move {
                (dev.id.clone(), db.ingest(&dev, records([seq]), now).await)
            }));
        }
    }
    let mut recovered = Vec::new();
    for r in reports {
        let (id, out) = r.await.unwrap();
        let out = out.unwrap();
        assert!(!out.new_device);
        if out.was_down {
            recovered.push(id);
        }
    }
    recovered.sort();
    assert_eq!(recovered, ids[..20], "each device reported recovered exactly once");
    let rows = a.devices().await.unwrap();
    assert!(rows.iter().all(|r| r.state == DeviceState::Up));
    assert!(rows[..20].iter().all(|r| r.state_since_ms >= T0 + 130_000));

    // A device that reported after the cut-off is not marked down.
    assert_eq!(a.mark_silent(T0 + 130_000, T0 + 200_000).await.unwrap().len(), 10);
}

async fn migrations_idempotent(b: &Backend) {
    // Four "servers" start at the same moment on a fresh database.
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = b.url.clone();
            tokio::spawn(async move { Database::open_with(&url, options()).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for o in opens {
        dbs.push(o.await.unwrap().unwrap());
    }
    let expected: Vec<i64> = cpe_provision::store::migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    for db in &dbs {
        assert_eq!(db.schema_versions().await.unwrap(), expected);
    }
    dbs[0].ingest(&device("1312345678/cpe-01"), records([1]), T0).await.unwrap();
    drop(dbs);
    // Opened again: nothing re-applied, data kept.
    let db = b.open().await;
    assert_eq!(db.schema_versions().await.unwrap(), expected);
    assert_eq!(db.devices().await.unwrap().len(), 1);
}

async fn commands_delivered_redelivered_acked(b: &Backend) {
    let db = b.open().await;
    let other = b.open().await;
    let dev = "1312345678/cpe-01";
    assert!(matches!(
        db.enqueue_command(dev, "report-now", vec![1], None, T0).await,
        Err(DbError::UnknownDevice(_))
    ));
    db.ingest(&device(dev), records([1]), T0).await.unwrap();
    db.ingest(&device("1312345678/cpe-02"), records([1]), T0).await.unwrap();
    let c1 = db.enqueue_command(dev, "report-now", vec![1, 1], None, T0 + 1).await.unwrap();
    let c2 = db.enqueue_command(dev, "diagnose", vec![2, 2], None, T0 + 2).await.unwrap();
    assert!(c2 > c1);

    // Delivered once: two servers answering long-polls at the same moment.
    let (x, y) = tokio::join!(db.take_commands(dev, T0 + 10), other.take_commands(dev, T0 + 10));
    let mut got: Vec<(u64, Vec<u8>)> = x.unwrap();
    got.extend(y.unwrap());
    got.sort();
    assert_eq!(got, vec![(c1, vec![1, 1]), (c2, vec![2, 2])]);
    assert!(db.take_commands(dev, T0 + 11).await.unwrap().is_empty());
    assert!(db.take_commands("1312345678/cpe-02", T0 + 11).await.unwrap().is_empty());
    assert!(db.take_commands(dev, T0 + 10 + REDELIVERY - 1).await.unwrap().is_empty());

    // Not acknowledged within the redelivery time: delivered again, oldest first.
    let again = db.take_commands(dev, T0 + 10 + REDELIVERY).await.unwrap();
    assert_eq!(again.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [c1, c2]);

    // Acknowledged: known; a repeat is known and keeps the first outcome;
    // unknown ids and other devices' ids are not known.
    assert!(db.ack_command(dev, c1, true, "sent a heartbeat", T0 + 70_100).await.unwrap());
    assert!(other.ack_command(dev, c1, false, "late duplicate", T0 + 70_200).await.unwrap());
    assert!(!db.ack_command(dev, c2 + 1000, true, "", T0 + 70_300).await.unwrap());
    assert!(!db.ack_command("1312345678/cpe-02", c2, true, "", T0 + 70_300).await.unwrap());
    assert!(!db.ack_command(dev, u64::MAX, true, "", T0 + 70_300).await.unwrap());

    // Only the unacknowledged one comes back after the next timeout.
    let later = db.take_commands(dev, T0 + 10 + 2 * REDELIVERY).await.unwrap();
    assert_eq!(later, vec![(c2, vec![2, 2])]);
    assert!(db.ack_command(dev, c2, false, "diagnosis failed: no uplink", T0 + 200_000).await.unwrap());
    assert!(db.take_commands(dev, T0 + 10 + 10 * REDELIVERY).await.unwrap().is_empty());

    let detail = db.device(dev).await.unwrap().unwrap();
    let cmds = &detail.recent_commands;
    assert_eq!(cmds.len(), 2);
    assert_eq!((cmds[0].id, cmds[0].kind.as_str(), cmds[0].deliveries), (c2, "diagnose", 3));
    assert_eq!((cmds[0].ok, cmds[0].detail.as_deref()), (Some(false), Some("diagnosis failed: no uplink")));
    assert_eq!((cmds[1].id, cmds[1].deliveries, cmds[1].ok), (c1, 2, Some(true)));
    assert_eq!(
        (cmds[1].acked_at_ms, cmds[1].detail.as_deref()),
        (Some(T0 + 70_100), Some("sent a heartbeat"))
    );
    assert_eq!(cmds[1].created_at_ms, T0 + 1);
    assert_eq!(cmds[1].delivered_at_ms, Some(T0 + 10 + REDELIVERY));
}

async fn commands_queued_elsewhere_seen_within_refresh(b: &Backend) {
    use cpe_provision::store::COMMAND_HINT_REFRESH_MS as REFRESH;
    // The server polls for a device; the operator CLI (another process)
    // queues a command; the server hands it out within the refresh period.
    let server = b.open().await;
    let operator = b.open().await;
    let dev = "1312345678/cpe-01";
    server.ingest(&device(dev), records([1]), T0).await.unwrap();
    assert!(server.take_commands(dev, T0).await.unwrap().is_empty());
    let id = operator.enqueue_command(dev, "diagnose", vec![9], None, T0 + 1).await.unwrap();
    assert!(server.take_commands(dev, T0 + REFRESH - 1).await.unwrap().is_empty(), "not re-read yet");
    assert_eq!(server.take_commands(dev, T0 + REFRESH).await.unwrap(), vec![(id, vec![9])]);
    assert!(server.take_commands(dev, T0 + REFRESH + 1).await.unwrap().is_empty());
    // Queued through the same handle: seen at once.
    let id2 = server.enqueue_command(dev, "report-now", vec![8], None, T0 + REFRESH + 2).await.unwrap();
    assert_eq!(server.take_commands(dev, T0 + REFRESH + 3).await.unwrap(), vec![(id2, vec![8])]);
    // Taken by the other process in between: nothing twice.
    assert!(operator.take_commands(dev, T0 + REFRESH + 4).await.unwrap().is_empty());
    // Clock going backwards forces a re-read rather than trusting old hints.
    assert!(server.take_commands(dev, T0).await.unwrap().is_empty());
}

async fn alerts_raised_listed_cleared(b: &Backend) {
    let db = b.open().await;
    let dev = "1312345678/cpe-01";
    db.ingest(&device(dev), records([1]), T0).await.unwrap();
    db.ingest(&device("1312345678/cpe-02"), records([1]), T0).await.unwrap();
    let alert = |kind: &str, level: &str, at_ms: i64| NewAlert {
        device_id: dev.into(),
        kind: kind.into(),
        level: level.into(),
        message: format!("{kind} at {at_ms}"),
        at_ms,
    };
    let down = db.raise_alert(alert("down", "warning", T0 + 1)).await.unwrap();
    let cpu = db.raise_alert(alert("threshold", "caution", T0 + 2)).await.unwrap();
    let failover = db.raise_alert(alert("failover", "warning", T0 + 3)).await.unwrap();
    assert!(down < cpu && cpu < failover);

    let open = db.alerts(true, 100).await.unwrap();
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), [failover, cpu, down]);
    assert_eq!(open[2].message, format!("down at {}", T0 + 1));
    assert_eq!(
        (open[2].kind.as_str(), open[2].level.as_str(), open[2].raised_at_ms),
        ("down", "warning", T0 + 1)
    );
    let rows = db.devices().await.unwrap();
    assert_eq!((rows[0].open_alerts, rows[1].open_alerts), (3, 0));

    assert_eq!(db.clear_alerts(dev, "down", T0 + 10).await.unwrap(), 1);
    assert_eq!(db.clear_alerts(dev, "down", T0 + 11).await.unwrap(), 0);
    assert_eq!(db.clear_alerts("1312345678/cpe-02", "threshold", T0 + 11).await.unwrap(), 0);
    let open = db.alerts(true, 100).await.unwrap();
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), [failover, cpu]);
    let all = db.alerts(false, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].cleared_at_ms, Some(T0 + 10));
    assert_eq!(db.alerts(false, 1).await.unwrap()[0].id, failover);
    let detail = db.device(dev).await.unwrap().unwrap();
    assert_eq!(detail.row.open_alerts, 2);
    assert_eq!(detail.open_alerts.iter().map(|a| a.id).collect::<Vec<_>>(), [failover, cpu]);

    assert!(matches!(
        db.raise_alert(NewAlert { device_id: "0000000000/x".into(), ..alert("down", "warning", T0) }).await,
        Err(DbError::UnknownDevice(_))
    ));
}

async fn out_of_range_input_refused(b: &Backend) {
    let db = b.open().await;
    let dev = device("1312345678/cpe-01");
    let err = db.ingest(&dev, vec![record(1, None), record(u64::MAX, None)], T0).await.unwrap_err();
    assert!(matches!(err, DbError::OutOfRange { what: "record seq", .. }), "{err}");
    assert!(!err.is_retryable());
    // Nothing of the refused batch was stored.
    assert!(db.devices().await.unwrap().is_empty());
    let ok = db.ingest(&dev, vec![record(1, None), record(u64::try_from(i64::MAX).unwrap(), None)], T0).await;
    assert_eq!(ok.unwrap().accepted, 2);
}

#[tokio::test]
async fn bad_urls_are_refused_without_leaking_passwords() {
    let err = Database::open("mysql://cpe:s3cret@localhost/db").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sqlite:PATH") && !text.contains("s3cret"), "{text}");
    let err = Database::open("sqlite:/nonexistent-dir/for/sure/carrier.db").await.unwrap_err();
    assert!(matches!(err, DbError::Sqlite(_)), "{err}");
    // Nothing listens on port 1: a connection error, retryable, no password in it.
    let err = Database::open("postgres://cpe:s3cret@127.0.0.1:1/db?connect_timeout=2").await.unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(err.is_retryable() || matches!(err, DbError::Postgres(_)), "{err}");
}

#[tokio::test]
async fn sqlite_plain_path_and_reopen_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let db = Database::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(db.backend(), "sqlite");
    db.ingest(&device("1312345678/cpe-01"), records(1..=3), T0).await.unwrap();
    drop(db);
    let db = Database::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(db.device("1312345678/cpe-01").await.unwrap().unwrap().recent_reports.len(), 3);
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    drop(Database::open(&url).await.unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)", [])
        .unwrap();
    drop(conn);
    let err = Database::open(&url).await.unwrap_err();
    assert!(matches!(err, DbError::SchemaTooNew { found: 9999, .. }), "{err}");
}

/// The futures of the API can be spawned on a multi-threaded runtime (the
/// HTTP handlers need that).
#[allow(dead_code, clippy::no_effect_underscore_binding)]
fn futures_are_send(db: &Database) {
    fn send<T: Send>(_: T) {}
    let dev = device("x/y");
    send(db.ingest(&dev, vec![], 0));
    send(db.mark_silent(0, 0));
    send(db.devices());
    send(db.device("x"));
    send(db.alerts(true, 1));
    send(db.take_commands("x", 0));
    send(db.ack_command("x", 1, true, "", 0));
    send(db.enqueue_command("x", "k", vec![], None, 0));
    send(db.clear_alerts("x", "k", 0));
    send(Database::open("x"));
}

fn case_event(
    step: cpe_provision::store::Step,
    text: &str,
    at_ms: i64,
) -> cpe_provision::store::NewCaseEvent {
    cpe_provision::store::NewCaseEvent {
        step,
        operator: "tanaka".into(),
        text: text.into(),
        deadline_ms: None,
        corrected: None,
        justification: None,
        recipient: None,
        at_ms,
    }
}

fn new_order(
    dev: &str,
    case_id: Option<u64>,
    kind: cpe_protocol::order::OrderKind,
    now_ms: i64,
) -> cpe_provision::store::NewOrder {
    cpe_provision::store::NewOrder {
        order: cpe_protocol::order::Order {
            version: cpe_protocol::order::ORDER_VERSION,
            id: 0,
            target: cpe_provision::store::orders::target_of(dev),
            kind,
            sequence: 0,
            issued_at: now_ms / 1000,
            not_before: now_ms / 1000 - 300,
            expires_at: now_ms / 1000 + 7 * 86_400,
            reason_ja: "理由".into(),
            reason_en: "reason".into(),
            deadline: None,
        },
        case_id,
        operator: "tanaka".into(),
        justification: None,
        now_ms,
    }
}

fn signer(
    key: &cpe_provision::order_keys::OrderSigningKey,
) -> std::sync::Arc<cpe_provision::store::OrderSigner> {
    let key = cpe_provision::order_keys::OrderSigningKey::from_pkcs8(key.pkcs8_der()).unwrap();
    cpe_provision::order_keys::order_signer(key)
}

fn receipt_for(
    order: &cpe_provision::store::OrderRow,
    state: cpe_protocol::receipt::ServiceState,
) -> cpe_provision::store::OrderOutcome {
    use cpe_protocol::receipt::{
        encode_receipt, EnforcementReceipt, ReceiptClock, SignedReceipt, RECEIPT_VERSION,
    };
    let receipt = EnforcementReceipt {
        version: RECEIPT_VERSION,
        device: order.target(),
        order_id: order.id,
        sequence: order.sequence,
        order_hash: order.order_hash.clone().try_into().unwrap(),
        applied_at: order.issued_at + 5,
        device_clock: 100,
        time_floor: order.issued_at + 5,
        clock: ReceiptClock::Untrusted,
        resulting_state: state,
        drill: false,
    };
    let signed = SignedReceipt {
        receipt_bytes: encode_receipt(&receipt).unwrap(),
        scheme: 0x0403,
        signature: vec![7; 70],
    };
    cpe_provision::store::OrderOutcome::Applied {
        receipt: Box::new(receipt),
        signed,
        cert_der: vec![0x30, 0],
    }
}

/// The whole life of a case in the store: trail, orders, delivery, receipts, service state.
#[allow(clippy::too_many_lines)]
async fn case_trail_orders_delivery_and_receipts(b: &Backend) {
    use cpe_protocol::order::{decode_order, decode_signed, signed_message, OrderKind};
    use cpe_protocol::receipt::ServiceState;
    use cpe_provision::store::Step;
    let db = b.open().await;
    let other = b.open().await;
    let dev = "1312345678/cpe-01";
    assert!(matches!(
        db.open_case(dev, case_event(Step::Fact, "x", T0)).await,
        Err(DbError::UnknownDevice(_))
    ));
    db.ingest(&device(dev), records([1]), T0).await.unwrap();
    db.ingest(&device("1312345678/cpe-02"), records([1]), T0).await.unwrap();
    assert!(db.latest_case(dev).await.unwrap().is_none());
    let case =
        db.open_case(dev, case_event(Step::Fact, "unauthorised VPN to the platform", T0)).await.unwrap();
    assert!(db.add_case_event(case + 100, case_event(Step::Hearing, "x", T0)).await.unwrap().is_none());
    db.add_case_event(case, case_event(Step::Hearing, "director heard", T0 + 1)).await.unwrap().unwrap();
    let mut report = case_event(Step::Report, "reported", T0 + 2);
    report.recipient = Some("platform operator".into());
    other.add_case_event(case, report).await.unwrap().unwrap();

    let key = cpe_provision::order_keys::OrderSigningKey::generate().unwrap();
    let mut recommend = case_event(Step::Recommend, "remove the VPN", T0 + 3);
    recommend.deadline_ms = Some(T0 + 86_400_000);
    let mut notice = new_order(dev, Some(case), OrderKind::Notice, T0 + 3);
    notice.order.deadline = Some(T0 / 1000 + 86_400);
    let issued = db.issue_order(notice, Some(recommend), signer(&key)).await.unwrap();
    assert_eq!(issued.sequence, 1);

    let detail = other.latest_case(dev).await.unwrap().unwrap();
    assert_eq!(detail.case.id, case);
    let steps: Vec<Step> = detail.events.iter().map(|e| e.step).collect();
    assert_eq!(steps, [Step::Fact, Step::Hearing, Step::Report, Step::Recommend]);
    assert_eq!(detail.events[2].recipient.as_deref(), Some("platform operator"));
    assert_eq!(detail.events[3].order_id, Some(issued.order_id));
    assert_eq!(detail.events[3].deadline_ms, Some(T0 + 86_400_000));
    assert_eq!(detail.events[1].operator, "tanaka");
    assert_eq!(detail.orders.len(), 1);
    assert_eq!(detail.orders[0].state(), "queued");

    // Delivered through the command channel: a signed order for this device.
    let taken = db.take_commands(dev, T0 + 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].0, issued.command_id);
    let cpe_protocol::CommandKind::Order { signed } = postcard::from_bytes(&taken[0].1).unwrap() else {
        panic!("not an order command")
    };
    let signed = decode_signed(&signed).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.public_key());
    public.verify(&signed_message(&signed.order_bytes), &signed.signature).unwrap();
    let order = decode_order(&signed.order_bytes).unwrap();
    assert_eq!(
        (order.id, order.sequence, order.kind, order.deadline),
        (issued.order_id, 1, OrderKind::Notice, Some(T0 / 1000 + 86_400))
    );
    assert_eq!(
        (order.target.institution_code.as_str(), order.target.device.as_str()),
        ("1312345678", "cpe-01")
    );
    let row = other.order(issued.order_id).await.unwrap().unwrap();
    assert_eq!((row.state(), row.delivered_at_ms, row.deliveries), ("delivered", Some(T0 + 10), 1));
    assert_eq!(row.order_hash, cpe_provision::compliance::receipts::order_hash(&signed.order_bytes).to_vec());
    assert_eq!(row.key_id, cpe_common::hex::encode(&key.key_id()));

    // Applied with a receipt: recorded once; the device shows the recommendation.
    assert!(db.order_by_command("1312345678/cpe-02", issued.command_id).await.unwrap().is_none());
    let by_command = db.order_by_command(dev, issued.command_id).await.unwrap().unwrap();
    assert_eq!(by_command.id, issued.order_id);
    let outcome = receipt_for(&by_command, ServiceState::Recommendation);
    let first =
        db.record_order_ack(dev, issued.command_id, "notice shown", outcome.clone(), T0 + 20).await.unwrap();
    assert_eq!((first.known, first.first), (true, true));
    let again = other.record_order_ack(dev, issued.command_id, "again", outcome, T0 + 30).await.unwrap();
    assert_eq!((again.known, again.first), (true, false));
    let row = db.order(issued.order_id).await.unwrap().unwrap();
    assert_eq!(
        (row.state(), row.outcome_at_ms, row.detail.as_deref()),
        ("applied", Some(T0 + 20), Some("notice shown"))
    );
    let receipt = row.receipt.unwrap();
    assert_eq!(
        (receipt.clock.as_str(), receipt.resulting_state.as_str(), receipt.drill, receipt.scheme),
        ("untrusted", "recommendation", false, 0x0403)
    );
    let evidence = other.order_evidence(issued.order_id).await.unwrap().unwrap();
    assert_eq!(decode_signed(&evidence.signed).unwrap(), signed);
    assert_eq!(evidence.receipt_cert, Some(vec![0x30, 0]));
    assert_eq!(evidence.receipt.unwrap().scheme, 0x0403);
    assert!(db.order_evidence(issued.order_id + 1000).await.unwrap().is_none());
    let shown = db.device(dev).await.unwrap().unwrap();
    assert_eq!(shown.row.suspension, Some(format!("recommendation (order {})", issued.order_id)));
    assert_eq!(shown.recent_orders.len(), 1);

    // A stop, refused by the device: recorded with its detail, state unchanged.
    let stop = db
        .issue_order(
            new_order(dev, Some(case), OrderKind::Stop, T0 + 40),
            Some(case_event(Step::Stop, "deadline passed", T0 + 40)),
            signer(&key),
        )
        .await
        .unwrap();
    assert_eq!(stop.sequence, 2);
    let refused = db
        .record_order_ack(
            dev,
            stop.command_id,
            "refused: expired",
            cpe_provision::store::OrderOutcome::Refused,
            T0 + 50,
        )
        .await
        .unwrap();
    assert!(refused.first);
    let row = db.order(stop.order_id).await.unwrap().unwrap();
    assert_eq!(
        (row.state(), row.detail.as_deref(), row.receipt.is_none()),
        ("refused", Some("refused: expired"), true)
    );
    assert_eq!(
        db.device(dev).await.unwrap().unwrap().row.suspension,
        Some(format!("recommendation (order {})", issued.order_id))
    );
    // A later stop applied: suspended; then an old receipt arriving late does not undo it.
    let stop2 = db
        .issue_order(new_order(dev, Some(case), OrderKind::Stop, T0 + 60), None, signer(&key))
        .await
        .unwrap();
    let row2 = db.order(stop2.order_id).await.unwrap().unwrap();
    db.record_order_ack(
        dev,
        stop2.command_id,
        "blocked",
        receipt_for(&row2, ServiceState::Suspended),
        T0 + 70,
    )
    .await
    .unwrap();
    assert_eq!(
        db.device(dev).await.unwrap().unwrap().row.suspension,
        Some(format!("suspended (order {})", stop2.order_id))
    );
    let orders = db.orders(Some(dev), 10).await.unwrap();
    assert_eq!(orders.iter().map(|o| o.sequence).collect::<Vec<_>>(), [3, 2, 1]);
    assert!(db.orders(Some("1312345678/cpe-02"), 10).await.unwrap().is_empty());
    assert_eq!(db.orders(None, 2).await.unwrap().len(), 2);
    assert_eq!(db.case(case).await.unwrap().unwrap().orders.len(), 3);
    // An unknown device gets no order and no command.
    let unknown =
        db.issue_order(new_order("9999999999/x", None, OrderKind::Stop, T0), None, signer(&key)).await;
    assert!(matches!(unknown, Err(DbError::UnknownDevice(_))), "{unknown:?}");
}

async fn order_sequences_strictly_increase_across_processes(b: &Backend) {
    use cpe_protocol::order::OrderKind;
    let a = b.open().await;
    let c = b.open().await;
    let dev = "1312345678/cpe-01";
    a.ingest(&device(dev), records([1]), T0).await.unwrap();
    let key = cpe_provision::order_keys::OrderSigningKey::generate().unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = if i % 2 == 0 { a.clone() } else { c.clone() };
        let sign = signer(&key);
        tasks.push(tokio::spawn(async move {
            db.issue_order(new_order(dev, None, OrderKind::Drill, T0 + i), None, sign).await
        }));
    }
    let mut sequences = Vec::new();
    for t in tasks {
        sequences.push(t.await.unwrap().unwrap().sequence);
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=16).collect::<Vec<u64>>());
    // A signer that fails: nothing is stored, no command is queued, the next order takes the next number.
    let failing: std::sync::Arc<cpe_provision::store::OrderSigner> =
        std::sync::Arc::new(|_| Err("hardware token unplugged".into()));
    let err = a.issue_order(new_order(dev, None, OrderKind::Drill, T0 + 100), None, failing).await;
    assert!(matches!(err, Err(DbError::Signing(ref m)) if m.contains("unplugged")), "{err:?}");
    assert_eq!(a.orders(Some(dev), 100).await.unwrap().len(), 16);
    assert_eq!(a.take_commands(dev, T0 + 200).await.unwrap().len(), 16);
    let next =
        a.issue_order(new_order(dev, None, OrderKind::Drill, T0 + 300), None, signer(&key)).await.unwrap();
    assert_eq!(next.sequence, 17);
}

async fn incidents_stored_once_latest_shown(b: &Backend) {
    let db = b.open().await;
    let dev = "1312345678/cpe-01";
    let incident = |seq: u64, segment: &str| {
        let mut r = record(seq, None);
        r.incident = Some(cpe_protocol::Incident {
            id: format!("diag-{seq}"),
            command_id: (seq == 3).then_some(42),
            segment: segment.into(),
            summary: format!("{segment} fault"),
            report_json: format!(
                r#"{{"id":"diag-{seq}","checks":[{{"name":"link","segment":"{segment}","status":"failed"}}]}}"#
            ),
        });
        r
    };
    db.ingest(&device(dev), vec![incident(2, "lan"), record(1, Some("{}"))], T0).await.unwrap();
    // Replayed (lost acknowledgement): stored once.
    db.ingest(&device(dev), vec![incident(2, "lan"), incident(3, "uplink")], T0 + 1000).await.unwrap();
    let rows = db.incidents(dev, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.segment.as_str())).collect::<Vec<_>>(),
        [(3, "uplink"), (2, "lan")]
    );
    assert_eq!(
        (rows[0].command_id, rows[0].received_at_ms, rows[1].received_at_ms),
        (Some(42), T0 + 1000, T0)
    );
    assert!(rows[0].report_json.contains("\"checks\""));
    let latest = db.device(dev).await.unwrap().unwrap().latest_incident.unwrap();
    assert_eq!((latest.incident_id.as_str(), latest.summary.as_str()), ("diag-3", "uplink fault"));
    assert!(db.incidents("1312345678/none", 10).await.unwrap().is_empty());
}

/// Operators opening a case for one device and then stopping it at once,
/// through two "processes": the flow allows one open case and one stop, and
/// exactly one case and one stop order result — also for an
/// operator whose check of the trail passed before the other's stop was
/// stored, because the rule is checked again inside the issuing transaction.
async fn concurrent_operators_open_one_case_and_issue_one_stop(b: &Backend) {
    use cpe_provision::compliance::flow::{self, Refusal, Trail};
    use cpe_provision::compliance::order_keys::{order_signer, KeyStore};
    use cpe_provision::compliance::orders::{self, Actor, ReasonText, Signing};
    use cpe_provision::compliance::{cases, ComplianceError};
    use cpe_provision::store::Step;
    let a = b.open().await;
    let c = b.open().await;
    let dev = "1312345678/cpe-01";
    a.ingest(&device(dev), records([1]), T0).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    KeyStore::new(keys.path()).init().unwrap();
    let actor = || Actor {
        operator: "tanaka".into(),
        now: time::OffsetDateTime::from_unix_timestamp(T0 / 1000).unwrap(),
    };
    // Two operators opening a case for the device at once: one case.
    let opening: Vec<_> = (0..6)
        .map(|i| {
            let (db, actor) = (if i % 2 == 0 { a.clone() } else { c.clone() }, actor());
            tokio::spawn(async move {
                cases::open(&db, dev, "data leaving through an unauthorised VPN", &actor).await
            })
        })
        .collect();
    let mut opened = Vec::new();
    for task in opening {
        match task.await.unwrap() {
            Ok(id) => opened.push(id),
            Err(ComplianceError::Refused(Refusal::CaseOpen { .. })) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(opened.len(), 1, "{opened:?}");
    let case = opened[0];
    assert_eq!(a.latest_case(dev).await.unwrap().unwrap().case.id, case);

    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = if i % 2 == 0 { a.clone() } else { c.clone() };
        let (dir, actor) = (keys.path().to_owned(), actor());
        tasks.push(tokio::spawn(async move {
            let signing = Signing { keys: KeyStore::new(&dir), valid_days: 7 };
            let reason =
                ReasonText { both: Some("緊急停止 / urgent stop".into()), ..ReasonText::default() };
            orders::stop(&db, dev, &reason, Some("patient data leaking".into()), &signing, &actor).await
        }));
    }
    let mut issued = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(order) => issued.push(order),
            Err(ComplianceError::Refused(Refusal::AlreadyStopped { case: refused })) => {
                assert_eq!(refused, case);
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(issued.len(), 1, "{issued:?}");
    let detail = c.case(case).await.unwrap().unwrap();
    assert_eq!(detail.orders.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>(), ["stop"]);
    assert_eq!(detail.events.iter().filter(|e| e.step == Step::Stop).count(), 1);

    // An issuer whose check passed on the trail before the stop (read then),
    // issuing after it: refused inside the transaction, nothing stored.
    let before_stop = Trail { case_id: case, events: Trail::of(&detail).events[..1].to_vec() };
    flow::may_stop(&before_stop, T0, Some("again")).unwrap();
    let now_ms = T0;
    let rule = orders::case_rule(move |trail| flow::may_stop(trail, now_ms, Some("again")).map(drop));
    let key = KeyStore::new(keys.path()).current().unwrap();
    let mut late = new_order(dev, Some(case), cpe_protocol::order::OrderKind::Stop, T0 + 1);
    late.justification = Some("again".into());
    let refused = a
        .issue_case_order(late, Some(case_event(Step::Stop, "again", T0 + 1)), order_signer(key), rule)
        .await;
    assert!(
        matches!(&refused, Err(DbError::Refused(e)) if e.to_string().contains("already has a stop order")),
        "{refused:?}"
    );
    let after = a.case(case).await.unwrap().unwrap();
    assert_eq!((after.orders.len(), after.events.len()), (1, 2));
    assert_eq!(a.take_commands(dev, T0 + 10).await.unwrap().len(), 1);
}

/// Runs `sql` on the backend directly, as an older build or an operator would.
async fn raw(b: &Backend, sql: &str) {
    if b.pg.is_some() {
        admin(&b.url).await.batch_execute(sql).await.unwrap();
    } else {
        let path = b.url.strip_prefix("sqlite:").unwrap();
        rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
    }
}

/// A database written by a build that spelled the kind `key-rotation`
/// (schema version 2) is migrated to the one spelling of
/// `OrderKind::name`, which the devices also use.
async fn stored_key_rotation_orders_take_the_one_spelling(b: &Backend) {
    use cpe_protocol::order::OrderKind;
    let dev = "1312345678/cpe-01";
    {
        let db = b.open().await;
        db.ingest(&device(dev), records([1]), T0).await.unwrap();
        let key = cpe_provision::order_keys::OrderSigningKey::generate().unwrap();
        let rotation = OrderKind::KeyRotation { new_key: [7; 32], retire: vec![[1; 8]] };
        db.issue_order(new_order(dev, None, rotation, T0), None, signer(&key)).await.unwrap();
        assert_eq!(db.orders(Some(dev), 10).await.unwrap()[0].kind, "key_rotation");
    }
    raw(
        b,
        "UPDATE orders SET kind = 'key-rotation';
         UPDATE commands SET kind = 'order:key-rotation';
         DELETE FROM schema_migrations WHERE version = 3;",
    )
    .await;
    let db = b.open().await;
    let every: Vec<i64> = (1..=cpe_provision::store::migrations::latest_version()).collect();
    assert_eq!(db.schema_versions().await.unwrap(), every);
    assert_eq!(db.orders(Some(dev), 10).await.unwrap()[0].kind, "key_rotation");
    let detail = db.device(dev).await.unwrap().unwrap();
    assert_eq!(detail.recent_commands[0].kind, "order:key_rotation");
}

async fn operator_sessions_end_on_expiry_logout_password_change_and_disable(b: &Backend) {
    use cpe_provision::operators::{self, sessions, OperatorError};
    use cpe_provision::store::Role;

    let db = b.open().await;
    let other_process = b.open().await;
    let (pw, new_pw) = ("long enough password", "another long password");
    operators::add(&db, "kato", Role::Compliance, pw, T0).await.unwrap();
    operators::add(&db, "yamada", Role::Viewer, pw, T0).await.unwrap();
    assert!(matches!(operators::add(&db, "kato", Role::Viewer, pw, T0).await, Err(OperatorError::Exists(_))));
    assert!(matches!(operators::login(&db, "kato", new_pw, T0).await, Err(OperatorError::BadCredentials)));
    assert!(matches!(operators::login(&db, "nobody", pw, T0).await, Err(OperatorError::BadCredentials)));

    let session = operators::login(&db, "kato", pw, T0).await.unwrap();
    assert_eq!(session.expires_at_ms, T0 + sessions::SESSION_LIFETIME_MS);
    let token = session.token.expose().to_owned();
    let who = operators::authenticate(&other_process, &token, T0 + 1).await.unwrap();
    assert_eq!((who.name.as_str(), who.role), ("kato", Role::Compliance));
    // The store holds the token's hash, not the token.
    assert!(db.session_operator(&token, T0 + 1).await.unwrap().is_none());
    let expired = operators::authenticate(&db, &token, T0 + sessions::SESSION_LIFETIME_MS).await;
    assert!(matches!(expired, Err(OperatorError::Unauthenticated)));
    for garbage in ["", "not a token", &"f".repeat(64)] {
        assert!(matches!(
            operators::authenticate(&db, garbage, T0).await,
            Err(OperatorError::Unauthenticated)
        ));
    }
    operators::logout(&db, &token).await.unwrap();
    assert!(matches!(
        operators::authenticate(&db, &token, T0 + 2).await,
        Err(OperatorError::Unauthenticated)
    ));

    let viewer = operators::login(&db, "yamada", pw, T0).await.unwrap();
    let viewer_token = viewer.token.expose().to_owned();
    assert!(operators::authenticate(&db, &viewer_token, T0 + 5).await.is_ok());
    operators::set_password(&db, "yamada", new_pw, T0 + 10).await.unwrap();
    let after = operators::authenticate(&db, &viewer_token, T0 + 11).await;
    assert!(matches!(after, Err(OperatorError::Unauthenticated)), "a password change ends the sessions");
    assert!(matches!(operators::login(&db, "yamada", pw, T0 + 12).await, Err(OperatorError::BadCredentials)));
    let fresh = operators::login(&db, "yamada", new_pw, T0 + 12).await.unwrap();
    let fresh_token = fresh.token.expose().to_owned();
    assert!(operators::authenticate(&db, &fresh_token, T0 + 13).await.is_ok());

    operators::disable(&db, "yamada", T0 + 20).await.unwrap();
    let after = operators::authenticate(&other_process, &fresh_token, T0 + 21).await;
    assert!(matches!(after, Err(OperatorError::Unauthenticated)), "disabling ends the sessions");
    assert!(matches!(
        operators::login(&db, "yamada", new_pw, T0 + 22).await,
        Err(OperatorError::BadCredentials)
    ));
    assert!(matches!(
        operators::disable(&db, "yamada", T0 + 23).await,
        Err(OperatorError::AlreadyDisabled(_))
    ));
    assert!(matches!(operators::disable(&db, "nobody", T0 + 23).await, Err(OperatorError::Unknown(_))));

    let listed = operators::list(&db).await.unwrap();
    let names: Vec<(&str, Role, Option<i64>)> =
        listed.iter().map(|o| (o.name.as_str(), o.role, o.disabled_at_ms)).collect();
    assert_eq!(names, [("kato", Role::Compliance, None), ("yamada", Role::Viewer, Some(T0 + 20))]);
}

async fn device_pages_search_filter_sort_and_count_in_the_store(b: &Backend) {
    use cpe_provision::devices::{self, DeviceError};
    use cpe_provision::store::{DeviceFilter, DeviceQuery, DeviceSort};

    let db = b.open().await;
    // 25 devices of 5 institutions; device i last seen at T0 + i.
    for i in 0..25_i64 {
        let id = format!("13{:08}/cpe-{:02}", i % 5, i);
        db.ingest(&device(&id), records([1]), T0 + i).await.unwrap();
    }
    let down = db.mark_silent(T0 + 3, T0 + 100).await.unwrap();
    assert_eq!(down.len(), 3);
    db.raise_alert(NewAlert {
        device_id: "1300000004/cpe-24".into(),
        kind: "threshold".into(),
        level: "warning".into(),
        message: "cpu".into(),
        at_ms: T0,
    })
    .await
    .unwrap();
    let q = |search: &str, filter, sort, descending, limit, offset| DeviceQuery {
        search: search.into(),
        filter,
        sort,
        descending,
        limit,
        offset,
    };
    let ids =
        |page: &cpe_provision::store::DevicePage| page.rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    let all = devices::page(&db, &q("", None, DeviceSort::Id, false, 10, 0)).await.unwrap();
    assert_eq!(all.total, 25);
    assert_eq!(all.rows.len(), 10);
    assert!(ids(&all).windows(2).all(|w| w[0] < w[1]));
    let third = devices::page(&db, &q("", None, DeviceSort::Id, false, 10, 20)).await.unwrap();
    assert_eq!((third.total, third.rows.len()), (25, 5));

    let one_clinic =
        devices::page(&db, &q("1300000002", None, DeviceSort::LastSeen, true, 100, 0)).await.unwrap();
    assert_eq!(
        ids(&one_clinic),
        [
            "1300000002/cpe-22",
            "1300000002/cpe-17",
            "1300000002/cpe-12",
            "1300000002/cpe-07",
            "1300000002/cpe-02"
        ]
    );
    assert_eq!(one_clinic.total, 5);
    let by_name = devices::page(&db, &q("cpe-1", None, DeviceSort::Id, false, 100, 0)).await.unwrap();
    assert_eq!(by_name.total, 10);
    // LIKE wildcards in the search are literal.
    let wildcard = devices::page(&db, &q("cpe_%", None, DeviceSort::Id, false, 100, 0)).await.unwrap();
    assert_eq!(wildcard.total, 0);

    let silent =
        devices::page(&db, &q("", Some(DeviceFilter::Down), DeviceSort::Id, false, 100, 0)).await.unwrap();
    assert_eq!(ids(&silent), ["1300000000/cpe-00", "1300000001/cpe-01", "1300000002/cpe-02"]);
    let up =
        devices::page(&db, &q("", Some(DeviceFilter::Up), DeviceSort::State, false, 100, 0)).await.unwrap();
    assert_eq!(up.total, 22);
    let alerting = devices::page(&db, &q("", Some(DeviceFilter::Alerting), DeviceSort::Id, false, 100, 0))
        .await
        .unwrap();
    assert_eq!(ids(&alerting), ["1300000004/cpe-24"]);
    assert_eq!(alerting.rows[0].open_alerts, 1);
    let suspended = devices::page(&db, &q("", Some(DeviceFilter::Suspended), DeviceSort::Id, false, 100, 0))
        .await
        .unwrap();
    assert_eq!(suspended.total, 0);
    let newest = devices::page(&db, &q("", None, DeviceSort::LastSeen, true, 1, 0)).await.unwrap();
    assert_eq!(ids(&newest), ["1300000004/cpe-24"]);
    let by_state = devices::page(&db, &q("", None, DeviceSort::State, false, 3, 0)).await.unwrap();
    assert!(by_state.rows.iter().all(|r| r.state == DeviceState::Down), "down sorts before up");

    for bad in [0, devices::MAX_PAGE + 1] {
        let refused = devices::page(&db, &q("", None, DeviceSort::Id, false, bad, 0)).await;
        assert!(matches!(refused, Err(DeviceError::PageSize(_))));
    }
}

async fn alerts_acknowledged_once_with_the_operator(b: &Backend) {
    use cpe_provision::devices::{self, DeviceError};

    let db = b.open().await;
    db.ingest(&device("1312345678/cpe-01"), records([1]), T0).await.unwrap();
    let id = db
        .raise_alert(NewAlert {
            device_id: "1312345678/cpe-01".into(),
            kind: "down".into(),
            level: "warning".into(),
            message: "silent".into(),
            at_ms: T0,
        })
        .await
        .unwrap();
    let other_process = b.open().await;
    let row = devices::acknowledge_alert(&db, id, "sato", T0 + 5).await.unwrap();
    assert_eq!((row.acknowledged_by.as_deref(), row.acknowledged_at_ms), (Some("sato"), Some(T0 + 5)));
    let again = devices::acknowledge_alert(&other_process, id, "kato", T0 + 9).await.unwrap();
    assert_eq!((again.acknowledged_by.as_deref(), again.acknowledged_at_ms), (Some("sato"), Some(T0 + 5)));
    assert!(again.cleared_at_ms.is_none(), "acknowledging does not clear");
    let listed = db.alerts(true, 10).await.unwrap();
    assert_eq!(listed[0].acknowledged_by.as_deref(), Some("sato"));
    assert!(matches!(
        devices::acknowledge_alert(&db, id + 100, "sato", T0).await,
        Err(DeviceError::UnknownAlert(_))
    ));
}

async fn fleet_metrics_count_states_alerts_and_commands(b: &Backend) {
    let db = b.open().await;
    for (i, id) in ["1312345678/cpe-01", "1312345678/cpe-02", "1398765432/cpe-01"].into_iter().enumerate() {
        db.ingest(&device(id), records([1]), T0 + i64::try_from(i).unwrap()).await.unwrap();
    }
    db.mark_silent(T0 + 1, T0 + 50).await.unwrap();
    for kind in ["down", "threshold", "threshold"] {
        let alert = NewAlert {
            device_id: "1312345678/cpe-01".into(),
            kind: kind.into(),
            level: "warning".into(),
            message: String::new(),
            at_ms: T0,
        };
        db.raise_alert(alert).await.unwrap();
    }
    let first =
        db.enqueue_command("1312345678/cpe-02", "ReportNow", vec![1], Some("sato"), T0).await.unwrap();
    db.enqueue_command("1312345678/cpe-02", "Diagnose", vec![2], None, T0).await.unwrap();
    db.enqueue_command("1398765432/cpe-01", "Diagnose", vec![2], None, T0).await.unwrap();
    assert_eq!(db.take_commands("1312345678/cpe-02", T0 + 1).await.unwrap().len(), 2);
    assert!(db.ack_command("1312345678/cpe-02", first, false, "no", T0 + 2).await.unwrap());

    let detail = db.device("1312345678/cpe-02").await.unwrap().unwrap();
    let by: Vec<Option<&str>> = detail.recent_commands.iter().map(|c| c.requested_by.as_deref()).collect();
    assert_eq!(by, [None, Some("sato")], "newest first; who queued each is kept");

    let m = db.fleet_metrics().await.unwrap();
    let states: Vec<(&str, u64, Option<i64>)> =
        m.devices.iter().map(|s| (s.state.as_str(), s.devices, s.newest_report_ms)).collect();
    assert_eq!(states, [("down", 1, Some(T0)), ("up", 2, Some(T0 + 2))]);
    assert_eq!((m.suspended, m.alerting), (0, 1));
    let alerts: Vec<(&str, u64)> = m.alerts_open.iter().map(|a| (a.kind.as_str(), a.open)).collect();
    assert_eq!(alerts, [("down", 1), ("threshold", 2)]);
    assert_eq!(m.commands, [("delivered".to_owned(), 1), ("failed".to_owned(), 1), ("queued".to_owned(), 1)]);
    assert!(m.orders.is_empty());
}

// Retention and graphs (issue 10).

both!(series_read_at_the_resolution_retention_keeps, retention_bounds_reports_and_is_idempotent);

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The CPU figure of heartbeat `i` (distinct, so that means can be checked).
fn cpu_of(i: u64) -> f32 {
    f32::from(u16::try_from(i % 97).unwrap())
}

/// A heartbeat as the server stores it, recorded at `at_ms`.
fn heartbeat(seq: u64, at_ms: i64) -> IngestRecord {
    use cpe_protocol::{Health, InterfaceStats, Payload, Record};
    let health = Health {
        cpu_pct: cpu_of(seq),
        mem_pct: 40.0,
        interfaces: vec![InterfaceStats {
            name: "wan0".into(),
            rx_bps: 1000.0,
            tx_bps: 10.0 * f64::from(cpu_of(seq)),
            ..InterfaceStats::default()
        }],
        ..Health::default()
    };
    cpe_provision::server::ingest_record(&Record {
        seq,
        at_unix_ms: at_ms,
        payload: Payload::Heartbeat(health),
    })
}

/// `days` of heartbeats every ten minutes up to `now`, each stored a
/// second after it was recorded, and one event a day; returns the heartbeats' times.
async fn seed_days(db: &Database, dev: &DeviceSeen, days: i64, now: i64) -> Vec<i64> {
    let every = 10 * MINUTE;
    let count = u64::try_from(days * DAY / every).unwrap();
    let start = now - days * DAY;
    let mut times = Vec::new();
    for seq in 1..=count {
        let at = start + i64::try_from(seq).unwrap() * every - every / 2;
        times.push(at);
        let mut batch = vec![heartbeat(seq, at)];
        if seq % 144 == 0 {
            batch.push(IngestRecord { seq: 1_000_000 + seq, at_unix_ms: at, ..record(0, None) });
        }
        db.ingest(dev, batch, at + 1000).await.unwrap();
    }
    times
}

// Exact figures are intended: means of small integers.
#[allow(clippy::float_cmp)]
async fn series_read_at_the_resolution_retention_keeps(b: &Backend) {
    use cpe_provision::devices;
    use cpe_provision::retention::{run_once, RetentionPolicy};
    let db = b.open().await;
    let dev = device("1312345678/cpe-01");
    let now = T0;
    let times = seed_days(&db, &dev, 2, now).await;

    let day = devices::series(&db, &dev.id, now - DAY, now).await.unwrap();
    assert_eq!((day.resolution_s, day.points.len()), (60, 144));
    let first = &day.points[0];
    assert_eq!(first.at_unix_ms, times[144] / MINUTE * MINUTE);
    assert_eq!(first.cpu_pct, f64::from(cpu_of(145)));
    assert_eq!((first.mem_pct, first.lines.len(), first.lines[0].name.as_str()), (40.0, 1, "wan0"));
    assert_eq!(first.lines[0].tx_bps, 10.0 * f64::from(cpu_of(145)));
    assert!(matches!(
        devices::series(&db, "1312345678/none", now - DAY, now).await,
        Err(devices::DeviceError::Unknown(_))
    ));

    // Keep one day at full resolution: the older day is read from five-minute rollups,
    // and the graph over both days takes the rollups' resolution.
    let policy = RetentionPolicy { full_resolution_days: 1, five_minute_days: 2, hourly_days: 3, batch: 50 };
    let report = run_once(&db, &policy, now).await.unwrap();
    assert_eq!(report.heartbeats_rolled_up, 144);
    assert_eq!(report.five_minute_buckets_written, 144);
    assert!(report.batches > 3, "{report:?}");
    let both_days = devices::series(&db, &dev.id, now - 2 * DAY, now).await.unwrap();
    assert_eq!((both_days.resolution_s, both_days.points.len()), (300, 288));
    let old = &both_days.points[0];
    assert_eq!((old.at_unix_ms, old.cpu_pct), (times[0] / (5 * MINUTE) * (5 * MINUTE), f64::from(cpu_of(1))));
    assert_eq!(old.lines[0].tx_bps, 10.0 * f64::from(cpu_of(1)));
    // The last day is still at full resolution.
    assert_eq!(devices::series(&db, &dev.id, now - DAY, now).await.unwrap(), day);

    // Two days later both days are hourly: each hour is the mean of its six heartbeats.
    let report = run_once(&db, &policy, now + 2 * DAY).await.unwrap();
    assert_eq!((report.heartbeats_rolled_up, report.five_minute_buckets_rolled_up), (144, 288));
    // Batches of 50 split hours: a split hour is merged into on the next batch.
    assert!((48..48 + 6).contains(&report.hourly_buckets_written), "{report:?}");
    let hourly = devices::series(&db, &dev.id, now - 2 * DAY, now).await.unwrap();
    // … and the first day's hours are past the three days hourly rollups are kept.
    assert_eq!((report.hourly_buckets_deleted, hourly.resolution_s, hourly.points.len()), (24, 3600, 24));
    assert_eq!(hourly.points[0].at_unix_ms, now - DAY);
    let mean: f64 = (145..=150).map(|i| f64::from(cpu_of(i))).sum::<f64>() / 6.0;
    assert!((hourly.points[0].cpu_pct - mean).abs() < 0.01, "{} vs {mean}", hourly.points[0].cpu_pct);
    assert!(devices::last_hours(0, now).is_err() && devices::last_hours(721, now).is_err());
    assert_eq!(devices::last_hours(24, now).unwrap(), (now - DAY, now));
}

/// Eight days of heartbeats, one retention run: `reports` keeps seven days
/// of heartbeats (and the events), the eighth day is in five-minute rollups;
/// a second run, or two processes at once, change nothing more.
async fn retention_bounds_reports_and_is_idempotent(b: &Backend) {
    use cpe_provision::retention::{run_once, RetentionPolicy};
    let db = b.open().await;
    let dev = device("1312345678/cpe-01");
    let now = T0;
    seed_days(&db, &dev, 8, now).await;
    let before = db.report_seqs(&dev.id).await.unwrap().len();
    assert_eq!(before, 8 * 144 + 8);

    let policy = RetentionPolicy { batch: 100, ..RetentionPolicy::default() };
    let second = b.open().await;
    let (a, c) = tokio::join!(run_once(&db, &policy, now), run_once(&second, &policy, now));
    let (a, c) = (a.unwrap(), c.unwrap());
    // Each old heartbeat was taken by exactly one of the two runs.
    assert_eq!(a.heartbeats_rolled_up + c.heartbeats_rolled_up, 144);
    let kept = db.report_seqs(&dev.id).await.unwrap();
    assert_eq!(kept.len(), 7 * 144 + 8);
    assert!(kept.iter().filter(|(seq, _)| *seq < 1_000_000).all(|&(_, received)| received >= now - 7 * DAY));

    let again = run_once(&db, &policy, now).await.unwrap();
    assert_eq!((again.heartbeats_rolled_up, again.five_minute_buckets_written, again.batches), (0, 0, 4));
    assert_eq!(db.report_seqs(&dev.id).await.unwrap().len(), 7 * 144 + 8);

    // The rolled-up day is still in the graph: one five-minute point per heartbeat.
    let graph = cpe_provision::devices::series(&db, &dev.id, now - 8 * DAY, now - 7 * DAY).await.unwrap();
    assert_eq!((graph.resolution_s, graph.points.len()), (300, 144));

    // 400 days later everything has aged out: heartbeats, rollups and events.
    let much_later = now + 400 * DAY + 8 * DAY;
    let report = run_once(&db, &policy, much_later).await.unwrap();
    assert_eq!(report.events_deleted, 8);
    assert_eq!(report.heartbeats_rolled_up, 7 * 144);
    assert!(db.report_seqs(&dev.id).await.unwrap().is_empty());
    let graph = cpe_provision::devices::series(&db, &dev.id, now - 8 * DAY, now).await.unwrap();
    assert!(graph.points.is_empty(), "{graph:?}");
}
