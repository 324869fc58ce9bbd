//! `cpe-agent run`: the long-running service.
//!
//! One current-thread tokio runtime (small footprint on the router) runs:
//! - the sampler: reads metrics every `sample_s`, checks the two-level
//!   thresholds and the active uplink after every sample, and queues a
//!   threshold or failover event at once; every `interval_s` it queues a
//!   heartbeat with the interval's aggregates;
//! - the sender: sends the queue in order, in batches, drops what the carrier
//!   acknowledged, and backs off with jitter while the line or the carrier is
//!   down (nothing is lost: the queue is on disk);
//! - the command poller (long-poll): compliance orders go through the
//!   order pipeline ([`crate::orders`]) and are acknowledged with the
//!   signed receipt or the refusal class; and the renewal check;
//! - the notice page on `[notice] listen` ([`crate::notice`]), which sees
//!   the sender's delivery record and whose self-check button runs the
//!   remote-diagnosis path.
//!
//! Before any of it, the persisted order state is enforced (a suspended
//! device is blocked again at once). Two more jobs have their own tick of
//! one heartbeat interval: the firewall is reconciled with the order state,
//! and diagnoses the CLI left in the outbox are queued.
//!
//! SIGTERM stops it cleanly; SIGHUP reloads the configuration (thresholds,
//! carrier settings). Everything it needs from the OS sits behind the
//! queue, the metric source and the identity store, so tests drive it with a
//! fixture `/proc` and a real carrier server on loopback.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpe_common::durable::OsStorage;
use cpe_protocol::{Command, CommandAck, CommandKind, Event, Payload, Record};
use rustls::pki_types::CertificateDer;
use tokio::sync::Notify;

use crate::audit::{self, AuditKind, AuditLog};
use crate::channel::{Backoff, CarrierClient};
use crate::config::AgentConfig;
use crate::diagnose::run::Progress;
use crate::diagnose::{session, store, DiagnosisReport, Segment};
use crate::identity::store::IdentityStore;
use crate::identity::{self, validate};
use crate::metrics::source::{MetricSource, ProcSource, SystemPaths};
use crate::metrics::uplink::UplinkWatch;
use crate::metrics::{Aggregator, InstantView};
use crate::notice::{self, HealthSlot, LinkSlot, NoticeSource, SelfCheck};
use crate::orders;
use crate::orders::apply::ApplyError;
use crate::orders::device::DeviceOrders;
use crate::orders::firewall::NftFirewall;
use crate::orders::timesync::CarrierTime;
use crate::queue::{Queue, RecordClass};
use crate::renew::{renew_if_due, RenewContext, RenewError, RenewOutcome};
use crate::thresholds::ThresholdSet;

/// Why the daemon could not start (after start it logs and keeps going).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The report queue could not be opened.
    #[error("cannot open the report queue in {}: {detail}; check the state directory", dir.display())]
    Queue {
        /// Queue directory.
        dir: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The configuration is unusable for the daemon.
    #[error("{0}")]
    Config(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update; the
    // queue's on-disk state is still consistent, so keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_unix_ms() -> i64 {
    crate::clock::now()
        .unix_timestamp_nanos()
        .checked_div(1_000_000)
        .and_then(|ms| i64::try_from(ms).ok())
        .unwrap_or(0)
}

/// State shared by the daemon's tasks.
struct Daemon {
    config_path: PathBuf,
    config: Mutex<AgentConfig>,
    queue: Mutex<Queue>,
    client: Mutex<Option<CarrierClient>>,
    wake_sender: Notify,
    report_now: Notify,
    /// The latest heartbeat figures, for the notice page.
    health: HealthSlot,
    /// The sender's delivery record, for the notice page.
    link: LinkSlot,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config_path: &Path,
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let queue_dir = config.state_dir.join("queue");
    let queue = Queue::open(&queue_dir, config.queue.limits())
        .map_err(|e| DaemonError::Queue { dir: queue_dir.clone(), detail: e.to_string() })?;
    // The persisted order state first: a suspended device is blocked again
    // before anything else runs (also done earlier by `cpe-agent apply-state`).
    reconcile_firewall(&config, true);
    let notice_listen = config.notice.listen.clone();
    let shared = Arc::new(Daemon {
        config_path: config_path.to_owned(),
        config: Mutex::new(config),
        queue: Mutex::new(queue),
        client: Mutex::new(None),
        wake_sender: Notify::new(),
        report_now: Notify::new(),
        health: HealthSlot::default(),
        link: LinkSlot::default(),
    });
    let notice = (!notice_listen.is_empty())
        .then(|| tokio::spawn(notice::serve(notice_listen, notice_source(&shared))));
    push(&shared, RecordClass::Event, &Payload::Event(Event::Started { agent_version: version() }));
    drain_diagnosis_outbox(&shared);
    let tasks = [
        tokio::spawn(sender_loop(shared.clone())),
        tokio::spawn(command_loop(shared.clone())),
        tokio::spawn(renewal_loop(shared.clone())),
        tokio::spawn(every_interval(shared.clone(), reconcile_firewall_tick)),
        tokio::spawn(every_interval(shared.clone(), drain_diagnosis_outbox)),
    ];
    sampler_loop(&shared, shutdown).await;
    for task in tasks {
        task.abort();
    }
    if let Some(notice) = notice {
        notice.abort();
    }
    if let Err(e) = lock(&shared.queue).checkpoint() {
        tracing::warn!(error = %e, "could not save the queue position (acknowledged records may be sent again)");
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The notice page's view of the daemon; its self-check button runs
/// [`diagnose_and_report`], the remote-diagnosis path.
fn notice_source(shared: &Arc<Daemon>) -> NoticeSource {
    let config = lock(&shared.config).clone();
    let daemon = shared.clone();
    let runner: notice::selfcheck::Runner = Arc::new(move |progress| {
        let daemon = daemon.clone();
        Box::pin(async move { diagnose_and_report(&daemon, None, progress).await })
    });
    NoticeSource {
        state_dir: config.state_dir.clone(),
        contact_ja: config.notice.contact_ja.clone(),
        contact_en: config.notice.contact_en.clone(),
        health: shared.health.clone(),
        link: shared.link.clone(),
        self_check: Some(Arc::new(SelfCheck::new(
            runner,
            Duration::from_secs(config.notice.self_check_interval_s),
            config.network.lan.clone(),
            &config.system.proc_root,
        ))),
    }
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

fn push(shared: &Daemon, class: RecordClass, payload: &Payload) {
    let bytes = match postcard::to_stdvec(payload) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "could not encode a record");
            return;
        }
    };
    let result = lock(&shared.queue).push(class, now_unix_ms(), &bytes);
    match result {
        Ok(seq) => {
            tracing::debug!(seq, ?class, "queued");
            shared.wake_sender.notify_one();
        }
        Err(e) => tracing::error!(error = %e, ?class, "could not queue a record; it is lost"),
    }
}

async fn sampler_loop(shared: &Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let (mut source, mut thresholds, mut uplinks, mut sample_every, mut report_every) =
        sampler_parts(&lock(&shared.config));
    let mut aggregator = Aggregator::new();
    let mut instant = InstantView::new();
    let started = Instant::now();
    let mut sample_tick = tokio::time::interval(sample_every);
    let mut report_tick = tokio::time::interval_at(tokio::time::Instant::now() + report_every, report_every);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = sample_tick.tick() => {
                match source.sample() {
                    Ok(sample) => {
                        let at = started.elapsed();
                        if let Some(now_view) = instant.step(sample.clone(), at) {
                            for event in thresholds.observe(&now_view, at) {
                                tracing::info!(?event, "threshold transition");
                                push(shared, RecordClass::Event, &Payload::Event(event));
                            }
                        }
                        // The route needs no second sample: watch it from the first one.
                        if let Some(event) = uplinks.observe(sample.default_route.as_deref()) {
                            tracing::warn!(?event, "uplink failover");
                            push(shared, RecordClass::Event, &Payload::Event(event));
                        }
                        aggregator.add(sample, at);
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics sample failed"),
                }
            }
            _ = report_tick.tick() => heartbeat(shared, &mut aggregator),
            () = shared.report_now.notified() => heartbeat(shared, &mut aggregator),
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                match AgentConfig::load(&shared.config_path) {
                    Ok(config) => {
                        (source, thresholds, uplinks, sample_every, report_every) = sampler_parts(&config);
                        sample_tick = tokio::time::interval(sample_every);
                        report_tick = tokio::time::interval_at(tokio::time::Instant::now() + report_every, report_every);
                        *lock(&shared.config) = config;
                        *lock(&shared.client) = None;
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not reloaded, keeping the old one"),
                }
            }
        }
    }
}

type SamplerParts = (ProcSource, ThresholdSet, UplinkWatch, Duration, Duration);

fn sampler_parts(config: &AgentConfig) -> SamplerParts {
    let paths =
        SystemPaths { proc_root: config.system.proc_root.clone(), sys_root: config.system.sys_root.clone() };
    (
        ProcSource::new(paths),
        ThresholdSet::new(&config.thresholds),
        UplinkWatch::new(config.system.primary_uplink.clone(), config.system.backup_uplink.clone()),
        Duration::from_secs(config.carrier.sample_s),
        Duration::from_secs(config.carrier.interval_s),
    )
}

/// Queues the interval's heartbeat and shows its figures on the notice page.
fn heartbeat(shared: &Daemon, aggregator: &mut Aggregator) {
    let mut health = aggregator.finish();
    health.agent_version = version();
    let config = lock(&shared.config).clone();
    health.cert_not_after = current_not_after(&config);
    *lock(&shared.health) = Some(health.clone());
    push(shared, RecordClass::Metric, &Payload::Heartbeat(health));
}

/// Runs `job` once every heartbeat interval (`[carrier] interval_s`, read
/// again before each wait, so a SIGHUP reload changes it).
async fn every_interval(shared: Arc<Daemon>, job: fn(&Daemon)) {
    loop {
        let every = Duration::from_secs(lock(&shared.config).carrier.interval_s);
        tokio::time::sleep(every).await;
        job(&shared);
    }
}

/// Puts the block back if something (a firewall reload) removed it, or
/// removes a table no order asks for.
fn reconcile_firewall_tick(shared: &Daemon) {
    let config = lock(&shared.config).clone();
    reconcile_firewall(&config, false);
}

/// Makes the firewall match the persisted order state; `at_start` records a
/// block in the audit log (see [`orders::device::apply_state`]).
fn reconcile_firewall(config: &AgentConfig, at_start: bool) {
    let audit = AuditLog::with_config(&config.state_dir, config.audit);
    match orders::device::apply_state(config, &NftFirewall::default(), &audit, at_start) {
        Ok(Some(state)) if at_start => {
            tracing::info!(
                state = state.service.state.as_str(),
                sequence = state.last_sequence,
                "order state enforced"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "the firewall does not match the order state"),
    }
}

fn current_not_after(config: &AgentConfig) -> Option<i64> {
    let store = IdentityStore::new(OsStorage, &config.state_dir);
    let current = store.load_current().ok()??;
    let info = validate::cert_info(current.chain.first()?, config.institution_code_field).ok()?;
    Some(info.not_after.unix_timestamp())
}

/// The carrier client, built from the current identity on first use.
fn client(shared: &Daemon) -> Result<CarrierClient, String> {
    if let Some(client) = lock(&shared.client).as_ref() {
        return Ok(client.clone());
    }
    let config = lock(&shared.config).clone();
    let built = build_client(&config)?;
    *lock(&shared.client) = Some(built.clone());
    Ok(built)
}

fn carrier_roots(config: &AgentConfig) -> Result<Vec<CertificateDer<'static>>, String> {
    let path = config.carrier.ca.as_ref().ok_or("carrier.ca is not configured")?;
    identity::load_trust_anchors(std::slice::from_ref(path)).map_err(|e| e.to_string())
}

fn build_client(config: &AgentConfig) -> Result<CarrierClient, String> {
    if config.carrier.url.is_empty() {
        return Err("carrier.url is not configured".into());
    }
    let store = IdentityStore::new(OsStorage, &config.state_dir);
    let current = store
        .load_current()
        .map_err(|e| e.to_string())?
        .ok_or("no identity is installed; import the institution certificate (cpe-agent cert import)")?;
    let leaf = current.chain.first().ok_or("the stored chain is empty")?;
    let device = device_claim(leaf).ok_or("the certificate carries no institution code")?;
    CarrierClient::new(
        &current,
        &carrier_roots(config)?,
        &config.carrier.url,
        device,
        Duration::from_secs(config.carrier.timeout_s),
    )
    .map_err(|e| e.to_string())
}

/// The device id the certificate gives (same rule as the carrier).
fn device_claim(leaf: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let code = validate::institution_code_of(&cert, cpe_common::institution::CodeField::SerialNumber)?;
    let unit = cert.subject().iter_organizational_unit().find_map(|ou| ou.as_str().ok());
    Some(cpe_common::institution::device_id(&code, unit))
}

async fn sender_loop(shared: Arc<Daemon>) {
    let (batch_max, backoff_max) = {
        let config = lock(&shared.config);
        (config.carrier.batch_max, Duration::from_secs(config.carrier.backoff_max_s))
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), backoff_max);
    loop {
        let peeked = {
            let mut queue = lock(&shared.queue);
            if let Err(e) = queue.enforce_limits(now_unix_ms()) {
                tracing::warn!(error = %e, "could not apply the queue limits");
            }
            queue.peek_batch(batch_max, cpe_protocol::MAX_BODY_BYTES / 2)
        };
        let batch = match peeked {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the report queue");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.wake_sender.notified().await;
            continue;
        }
        let records: Vec<Record> = batch
            .iter()
            .filter_map(|r| match postcard::from_bytes::<Payload>(&r.payload) {
                Ok(payload) => Some(Record { seq: r.seq, at_unix_ms: r.at_unix_ms, payload }),
                Err(e) => {
                    tracing::error!(seq = r.seq, error = %e, "queued record unreadable; skipped");
                    None
                }
            })
            .collect();
        let last = batch.last().map_or(0, |r| r.seq);
        let result = match client(&shared) {
            Ok(client) if !records.is_empty() => {
                let sent = client.send_batch(records).await.map_err(|e| (e.is_retryable(), e.to_string()));
                let at = crate::clock::now().unix_timestamp();
                match &sent {
                    Ok(_) => lock(&shared.link).delivered(at),
                    Err((_, e)) => lock(&shared.link).failed(at, e),
                }
                sent
            }
            Ok(_) => Ok(cpe_protocol::BatchAck { accepted: 0, duplicates: 0, through_seq: last }),
            Err(e) => Err((true, e)),
        };
        match result {
            Ok(ack) => {
                let through = ack.through_seq.min(last);
                if let Err(e) = lock(&shared.queue).ack_through(through) {
                    tracing::error!(error = %e, "could not drop acknowledged records (they will be sent again)");
                }
                tracing::debug!(
                    through,
                    accepted = ack.accepted,
                    duplicates = ack.duplicates,
                    "batch delivered"
                );
                backoff.reset();
            }
            Err((retryable, message)) => {
                let delay = backoff.next_delay();
                if retryable {
                    tracing::warn!(error = %message, retry_in_ms = delay.as_millis(), "reports not delivered; kept in the queue");
                } else {
                    tracing::error!(error = %message, retry_in_ms = delay.as_millis(), "the carrier refused the reports; kept in the queue");
                    *lock(&shared.client) = None;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn command_loop(shared: Arc<Daemon>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_mins(1));
    loop {
        let wait = Duration::from_secs(lock(&shared.config).carrier.long_poll_s);
        let polled = match client(&shared) {
            Ok(client) => {
                client.poll_commands(wait).await.map(|list| (client, list)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        match polled {
            Ok((client, list)) => {
                backoff.reset();
                for command in list.commands {
                    let ack = execute(&shared, &command, client.carrier_time()).await;
                    if let Err(e) = client.ack_command(&ack).await {
                        tracing::warn!(id = command.id, error = %e, "command acknowledgement not delivered");
                    }
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::debug!(error = %e, retry_in_ms = delay.as_millis(), "command poll failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn execute(shared: &Daemon, command: &Command, carrier_time: Option<CarrierTime>) -> CommandAck {
    let kind = match &command.kind {
        CommandKind::ReportNow => "report-now",
        CommandKind::Diagnose => "diagnose",
        CommandKind::Order { .. } => "order",
    };
    tracing::info!(id = command.id, kind, "command received");
    match &command.kind {
        CommandKind::ReportNow => {
            shared.report_now.notify_one();
            CommandAck { id: command.id, ok: true, detail: "heartbeat queued".into(), receipt: None }
        }
        CommandKind::Order { signed } => {
            let config = lock(&shared.config).clone();
            apply_order_command(&config, command.id, signed, carrier_time)
        }
        CommandKind::Diagnose => diagnose_remote(shared, command.id).await,
    }
}

/// Applies a compliance order received as a command and acknowledges it:
/// `ok` with the signed receipt, or `ok = false` with `<class>: <reason>`.
fn apply_order_command(
    config: &AgentConfig,
    id: u64,
    signed: &[u8],
    carrier_time: Option<CarrierTime>,
) -> CommandAck {
    let received = Instant::now();
    let refused = |detail: String| CommandAck { id, ok: false, detail, receipt: None };
    let device = match DeviceOrders::load(config, carrier_time) {
        Ok(device) => device,
        Err(e) => return refused(format!("no_institution: {e}")),
    };
    let clock = orders::device::current_clock(config, carrier_time);
    match device.apply(config, signed, clock, &NftFirewall::default()) {
        Ok(applied) => {
            let elapsed_ms = received.elapsed().as_secs_f64() * 1000.0;
            let state = applied.state.service.state.as_str();
            tracing::info!(
                sequence = applied.verified.order.sequence,
                state,
                elapsed_ms,
                "order applied and enforced (command received → rules in place)"
            );
            let mut detail = format!(
                "applied order {} (sequence {}): {state}{}",
                applied.verified.order.id,
                applied.verified.order.sequence,
                if applied.state.service.drill { " (drill)" } else { "" }
            );
            if let Some(problem) = applied.receipt_problem {
                detail = format!("{detail}; no receipt: {problem}");
            }
            CommandAck { id, ok: true, detail, receipt: applied.receipt }
        }
        Err(ApplyError::AlreadyApplied { sequence, receipt }) => CommandAck {
            id,
            ok: true,
            detail: format!("order sequence {sequence} was already applied; its receipt is sent again"),
            receipt: Some(*receipt),
        },
        Err(e) => refused(format!("{}: {e}", e.class())),
    }
}

/// A remote diagnosis (§1.3.2 ⑤) by [`diagnose_and_report`]; the
/// acknowledgement says the verdict ("suspended" while a stop order is in
/// force).
async fn diagnose_remote(shared: &Daemon, id: u64) -> CommandAck {
    match diagnose_and_report(shared, Some(id), Arc::new(|_| {})).await {
        Ok(report) => {
            tracing::info!(diagnosis = %report.id, verdict = %report.verdict.segment, "remote diagnosis done");
            CommandAck {
                id,
                ok: true,
                detail: format!(
                    "diagnosis {}: {}: {}",
                    report.id, report.verdict.segment, report.verdict.summary
                ),
                receipt: None,
            }
        }
        Err(e) => CommandAck { id, ok: false, detail: e, receipt: None },
    }
}

/// One diagnosis of this device, as the carrier's Diagnose command
/// (`command_id`) or the notice page's self-check button asks for it: runs
/// every check, keeps the report on the device and queues it for the
/// carrier as an incident.
async fn diagnose_and_report(
    shared: &Daemon,
    command_id: Option<u64>,
    progress: Progress,
) -> Result<DiagnosisReport, String> {
    let config = lock(&shared.config).clone();
    let segments = Segment::PATH.into_iter().collect();
    let diagnosis =
        session::diagnose_system(&config, segments, None, orders::device::suspension(&config), progress)
            .await
            .map_err(|e| format!("diagnosis failed: {e}"))?;
    let report = diagnosis.report;
    if let Err(e) = store::record(&config, &report, command_id) {
        tracing::warn!(error = %e, "diagnosis not stored on the device");
    }
    let budget = store::incident_budget(lock(&shared.queue).limits());
    match store::incident(&report, command_id, budget) {
        Ok(incident) => push(shared, RecordClass::Event, &Payload::Incident(incident)),
        Err(e) => tracing::error!(error = %e, "diagnosis could not be queued for the carrier"),
    }
    Ok(report)
}

/// Moves diagnoses the CLI left in the outbox (while this daemon held the
/// queue) into the queue.
fn drain_diagnosis_outbox(shared: &Daemon) {
    let state_dir = lock(&shared.config).state_dir.clone();
    let queued = store::drain_outbox(&state_dir, &mut lock(&shared.queue), now_unix_ms());
    if queued > 0 {
        tracing::info!(queued, "diagnoses from the CLI queued for the carrier");
        shared.wake_sender.notify_one();
    }
}

async fn renewal_loop(shared: Arc<Daemon>) {
    loop {
        let config = lock(&shared.config).clone();
        if let (Ok(client), Ok(roots)) = (client(&shared), carrier_roots(&config)) {
            match identity::load_trust_anchors(&config.trust_anchors) {
                Ok(anchors) => {
                    let store = IdentityStore::new(OsStorage, &config.state_dir);
                    let ctx = RenewContext {
                        store: &store,
                        config: &config,
                        trust_anchors: &anchors,
                        carrier_roots: &roots,
                        client: &client,
                    };
                    match renew_if_due(&ctx, crate::clock::now(), false).await {
                        Ok(RenewOutcome::Renewed(generation)) => {
                            tracing::info!(%generation, "identity renewed");
                            audit::record_or_log(
                                &config.state_dir,
                                config.audit,
                                AuditKind::Certificate,
                                serde_json::json!({ "event": "renewed", "generation": generation }),
                            );
                            *lock(&shared.client) = None;
                        }
                        Ok(RenewOutcome::NotDue) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "certificate renewal failed; will retry");
                            if let RenewError::ProofFailed(reason) = &e {
                                audit::record_or_log(
                                    &config.state_dir,
                                    config.audit,
                                    AuditKind::Certificate,
                                    serde_json::json!({ "event": "renewal_rolled_back", "reason": reason }),
                                );
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "renewal skipped: trust anchors unreadable"),
            }
        }
        tokio::time::sleep(Duration::from_hours(1)).await;
    }
}
