//! `cpe-provision serve`: the carrier server the agents talk to.
//!
//! HTTPS (rustls) with mandatory client certificates chaining to the
//! institution CA(s). The device identity — `<institution code>/<device>`,
//! from the certificate's serialNumber (or CN) and OU — comes only from the
//! certificate; a body claiming another identity is refused and logged.
//! Endpoints and bodies are defined in [`cpe_protocol`]. Behind it: the
//! [`crate::db`] store (SQLite or PostgreSQL), the liveness watcher that
//! turns silent devices "down", and [`crate::alerts`].
//!
//! Acknowledgements of compliance orders get more than a flag: an applied
//! order must come with the device's enforcement receipt, verified against
//! the client certificate of the very connection ([`crate::receipts`]) and
//! stored with it; a bad or mismatched receipt is answered 422 and nothing
//! is recorded (the order stays "delivered" and is redelivered); a refusal
//! is recorded with the device's reason and raises an `order-refused` alert.
//! Incident records are stored in the incidents table as well.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests run it on
//! `127.0.0.1:0` and stop it at will.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cpe_protocol::{
    decode, encode, BatchAck, CommandAck, CommandList, DecodeError, Empty, EnrolRequest, EnrolResponse,
    Event, Level, Payload, Pong, Record, ReportBatch, CONTENT_TYPE, MAX_BATCH_RECORDS, MAX_BODY_BYTES,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::alerts::{Alert, AlertSink};
use crate::db::{Database, DeviceSeen, IngestRecord, NewAlert, OrderOutcome, OrderRow, ReportKind};
use crate::receipts::{verify_receipt, ExpectedOrder};
use crate::validity::{rfc3339, Validity};
use crate::CertificationBody;

/// What the server needs besides its store and alert sink.
#[derive(Debug)]
pub struct ServeConfig {
    /// Server certificate chain (leaf first).
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// Server private key.
    pub tls_key: PrivateKeyDer<'static>,
    /// CA certificates that institution certificates must chain to.
    pub client_cas: Vec<CertificateDer<'static>>,
    /// A device silent this long is "down".
    pub silent_after: Duration,
    /// How often the liveness watcher looks.
    pub liveness_every: Duration,
    /// Longest a command long-poll is held open.
    pub long_poll_max: Duration,
    /// CA that signs renewal CSRs (`/v1/enrol`); `None` refuses enrolment.
    pub enrol_ca: Option<CertificationBody>,
    /// Validity of certificates issued by enrolment, in days.
    pub enrol_days: u32,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS settings refused by rustls.
    #[error("TLS configuration: {0}; check --tls-cert, --tls-key and --client-ca")]
    Tls(String),
    /// Accepting connections failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Who is on the other end of a connection, from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `<institution code>/<device>`.
    pub id: String,
    /// The institution code.
    pub institution_code: String,
    /// End of validity of the presented certificate, Unix seconds.
    pub cert_not_after: i64,
}

/// Derives the device identity from a verified client certificate.
pub fn identity_from_certificate(der: &[u8]) -> Result<DeviceIdentity, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let code = crate::subject::code_in_subject(cert.subject()).map_err(|e| e.to_string())?;
    let unit = cert.subject().iter_organizational_unit().find_map(|ou| ou.as_str().ok());
    Ok(DeviceIdentity {
        id: cpe_common::institution::device_id(&code, unit),
        institution_code: code.to_string(),
        cert_not_after: cert.validity().not_after.timestamp(),
    })
}

struct State {
    db: Database,
    alerts: AlertSink,
    config: ServeConfig,
}

/// Serves until `shutdown` completes. Also runs the liveness watcher.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    db: Database,
    alerts: AlertSink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config)?));
    let state = Arc::new(State { db, alerts, config });
    let watcher = tokio::spawn(liveness_loop(state.clone()));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.spawn(serve_connection(state.clone(), acceptor.clone(), stream, peer));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    watcher.abort();
    // Give in-flight requests a moment, then drop the rest.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

fn tls_config(config: &ServeConfig) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in &config.client_cas {
        roots.add(ca.clone()).map_err(|e| ServeError::Tls(format!("client CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(config.tls_chain.clone(), config.tls_key.clone_key())
        .map_err(|e| ServeError::Tls(e.to_string()))
}

async fn serve_connection(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let Some(der) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        tracing::warn!(%peer, "no client certificate");
        return;
    };
    let identity = match identity_from_certificate(der.as_ref()) {
        Ok(identity) => Arc::new(Peer { identity, cert_der: der.as_ref().to_vec() }),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "client certificate carries no usable identity");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let peer = identity.clone();
        async move { Ok::<_, Infallible>(handle(&state, &peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

type Reply = Response<Full<Bytes>>;

fn text(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(message.into())));
    *resp.status_mut() = status;
    resp
}

fn body<T: serde::Serialize>(value: &T) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(encode(value))));
    if let Ok(v) = hyper::header::HeaderValue::from_str(CONTENT_TYPE) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn decode_error(e: &DecodeError) -> Reply {
    let status = match e {
        DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DecodeError::UnsupportedVersion { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DecodeError::Malformed { .. } => StatusCode::BAD_REQUEST,
    };
    text(status, e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, format!("body exceeds {MAX_BODY_BYTES} bytes")))
        }
        Err(e) => Err(text(StatusCode::BAD_REQUEST, format!("could not read the body: {e}"))),
    }
}

/// The other end of a connection: its identity and the certificate it
/// presented (receipts are verified against it).
struct Peer {
    identity: DeviceIdentity,
    cert_der: Vec<u8>,
}

async fn handle(state: &State, peer: &Peer, req: Request<Incoming>) -> Reply {
    let identity = &peer.identity;
    let path = req.uri().path().to_owned();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::POST, "/v1/reports") => reports(state, identity, req).await,
        (Method::GET, "/v1/commands") => commands(state, identity, &req).await,
        (Method::POST, "/v1/commands/ack") => command_ack(state, peer, req).await,
        (Method::POST, "/v1/enrol") => enrol(state, identity, req).await,
        (Method::GET, "/v1/ping") => {
            Ok(body(&Pong { device_id: identity.id.clone(), server_unix: now_ms() / 1000 }))
        }
        _ => Err(text(StatusCode::NOT_FOUND, format!("no endpoint {} {path}", req.method()))),
    };
    match result {
        Ok(reply) | Err(reply) => {
            if !reply.status().is_success() {
                tracing::warn!(device = %identity.id, %path, status = %reply.status(), "request refused");
            }
            reply
        }
    }
}

async fn reports(state: &State, identity: &DeviceIdentity, req: Request<Incoming>) -> Result<Reply, Reply> {
    let bytes = read_body(req).await?;
    let batch: ReportBatch = decode(&bytes).map_err(|e| decode_error(&e))?;
    if batch.device != identity.id {
        tracing::warn!(
            certificate = %identity.id, claimed = %batch.device,
            "report claims another device than its client certificate; refused"
        );
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "batch claims device {:?} but the client certificate is for {:?}",
                batch.device, identity.id
            ),
        ));
    }
    if batch.records.is_empty() || batch.records.len() > MAX_BATCH_RECORDS {
        return Err(text(StatusCode::BAD_REQUEST, format!("a batch holds 1 to {MAX_BATCH_RECORDS} records")));
    }
    if batch.records.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(text(StatusCode::BAD_REQUEST, "records must be in strictly increasing seq order"));
    }
    let through_seq = batch.records.last().map_or(0, |r| r.seq);
    let records: Vec<IngestRecord> = batch.records.iter().map(ingest_record).collect();
    let now = now_ms();
    let seen = DeviceSeen {
        id: identity.id.clone(),
        institution_code: identity.institution_code.clone(),
        cert_not_after: Some(identity.cert_not_after),
    };
    let outcome = state.db.ingest(&seen, records, now).await.map_err(|e| {
        tracing::error!(device = %identity.id, error = %e, "could not store reports");
        text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
    })?;
    if outcome.was_down {
        let _ = state.db.clear_alerts(&identity.id, "down", now).await;
        raise(
            state,
            &identity.id,
            "recovered",
            Level::Normal,
            "heartbeats resumed / 死活監視: 復旧".into(),
            now,
        )
        .await;
        // "recovered" is a notice, not a condition: it closes at once.
        let _ = state.db.clear_alerts(&identity.id, "recovered", now).await;
    }
    // A batch is stored in one transaction and the agent sends its queue in
    // seq order, so the records stored now are the last `accepted` ones; the
    // rest were stored by an earlier delivery whose acknowledgement was lost.
    // Alerts are raised for new records only.
    let fresh = usize::try_from(outcome.accepted).unwrap_or(usize::MAX).min(batch.records.len());
    for record in &batch.records[batch.records.len() - fresh..] {
        if let Payload::Event(event) = &record.payload {
            on_event(state, &identity.id, event, now).await;
        }
    }
    Ok(body(&BatchAck { accepted: outcome.accepted, duplicates: outcome.duplicates, through_seq }))
}

/// A one-line JSON summary for operator views: the headline figures of a
/// heartbeat (the full health is kept as the device's `last_health` and in
/// the postcard body), or the whole event.
fn summary(payload: &Payload) -> String {
    match payload {
        Payload::Heartbeat(h) => serde_json::json!({
            "cpu_pct": h.cpu_pct,
            "mem_pct": h.mem_pct,
            "load1": h.load[0],
            "temperature_c": h.temperature_c,
            "active_uplink": h.active_uplink,
        })
        .to_string(),
        Payload::Event(e) => serde_json::to_string(e).unwrap_or_default(),
        Payload::Incident(i) => {
            serde_json::json!({"incident": i.id, "segment": i.segment, "summary": i.summary}).to_string()
        }
    }
}

/// How a received record is stored: its postcard body, a short JSON summary for
/// operators and, for heartbeats, the health as JSON.
pub fn ingest_record(record: &Record) -> IngestRecord {
    IngestRecord {
        seq: record.seq,
        at_unix_ms: record.at_unix_ms,
        kind: match record.payload {
            Payload::Heartbeat(_) => ReportKind::Heartbeat,
            Payload::Event(_) | Payload::Incident(_) => ReportKind::Event,
        },
        body: postcard::to_stdvec(&record.payload).unwrap_or_default(),
        summary_json: summary(&record.payload),
        health_json: match &record.payload {
            Payload::Heartbeat(h) => serde_json::to_string(h).ok(),
            Payload::Event(_) | Payload::Incident(_) => None,
        },
        incident: match &record.payload {
            Payload::Incident(i) => Some(i.clone()),
            Payload::Heartbeat(_) | Payload::Event(_) => None,
        },
    }
}

async fn on_event(state: &State, device: &str, event: &Event, now: i64) {
    match event {
        Event::Threshold { metric, from, to, value } => {
            let kind = format!("threshold:{metric}");
            if *to == Level::Normal || to < from {
                let _ = state.db.clear_alerts(device, &kind, now).await;
            }
            if *to != Level::Normal {
                let message = format!("{metric} {} → {} ({value:.1})", from.as_str(), to.as_str());
                raise(state, device, &kind, *to, message, now).await;
            }
        }
        Event::Failover { from, to } => {
            let name = |u: &Option<String>| u.clone().unwrap_or_else(|| "none".into());
            let message = format!("uplink failover {} → {} / 回線切替", name(from), name(to));
            raise(state, device, "failover", Level::Caution, message, now).await;
        }
        Event::Started { agent_version } => tracing::info!(device, agent_version, "agent started"),
    }
}

async fn raise(state: &State, device: &str, kind: &str, level: Level, message: String, now: i64) {
    let new = NewAlert {
        device_id: device.to_owned(),
        kind: kind.to_owned(),
        level: level.as_str().to_owned(),
        message: message.clone(),
        at_ms: now,
    };
    match state.db.raise_alert(new.clone()).await {
        Ok(id) => state.alerts.raise(Alert {
            id,
            device_id: new.device_id,
            kind: new.kind,
            level: new.level,
            message,
            at: rfc3339(
                time::OffsetDateTime::from_unix_timestamp(now / 1000)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            ),
        }),
        Err(e) => tracing::error!(device, kind, error = %e, "could not record an alert"),
    }
}

async fn liveness_loop(state: Arc<State>) {
    let mut tick = tokio::time::interval(state.config.liveness_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silent_ms = i64::try_from(state.config.silent_after.as_millis()).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        let now = now_ms();
        match state.db.mark_silent(now - silent_ms, now).await {
            Ok(down) => {
                for device in down {
                    let message = format!(
                        "no heartbeat for {} s / 死活監視: 応答なし",
                        state.config.silent_after.as_secs()
                    );
                    raise(&state, &device, "down", Level::Warning, message, now).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "liveness check failed"),
        }
    }
}

async fn commands(state: &State, identity: &DeviceIdentity, req: &Request<Incoming>) -> Result<Reply, Reply> {
    let wait = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("wait=")))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
        .min(state.config.long_poll_max);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let pending = state.db.take_commands(&identity.id, now_ms()).await.map_err(|e| {
            tracing::error!(device = %identity.id, error = %e, "could not read commands");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
        })?;
        let commands: Vec<cpe_protocol::Command> = pending
            .into_iter()
            .filter_map(|(id, bytes)| match postcard::from_bytes(&bytes) {
                Ok(kind) => Some(cpe_protocol::Command { id, kind }),
                Err(e) => {
                    tracing::error!(id, error = %e, "stored command is unreadable; skipped");
                    None
                }
            })
            .collect();
        if !commands.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(body(&CommandList { commands }));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn storage_unavailable(identity: &DeviceIdentity, e: &crate::db::DbError) -> Reply {
    tracing::error!(device = %identity.id, error = %e, "could not store a command acknowledgement");
    text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
}

async fn command_ack(state: &State, peer: &Peer, req: Request<Incoming>) -> Result<Reply, Reply> {
    let identity = &peer.identity;
    let ack: CommandAck = decode(&read_body(req).await?).map_err(|e| decode_error(&e))?;
    let order = state
        .db
        .order_by_command(&identity.id, ack.id)
        .await
        .map_err(|e| storage_unavailable(identity, &e))?;
    if let Some(order) = order {
        return order_ack(state, peer, &order, ack).await;
    }
    let known =
        state.db.ack_command(&identity.id, ack.id, ack.ok, &ack.detail, now_ms()).await.map_err(|e| {
            tracing::error!(device = %identity.id, error = %e, "could not store a command acknowledgement");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
        })?;
    if known {
        Ok(body(&Empty))
    } else {
        Err(text(StatusCode::NOT_FOUND, format!("no command {} for this device", ack.id)))
    }
}

/// The acknowledgement of an order: an applied order needs a receipt that
/// verifies under the connection's certificate and matches the order (else
/// 422 and nothing is recorded); a refusal is recorded and raises an alert.
async fn order_ack(state: &State, peer: &Peer, order: &OrderRow, ack: CommandAck) -> Result<Reply, Reply> {
    let identity = &peer.identity;
    let now = now_ms();
    let outcome = if ack.ok {
        let Some(signed) = ack.receipt else {
            tracing::warn!(device = %identity.id, order = order.id, "order acknowledged as applied without a receipt; refused");
            return Err(text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("order {} acknowledged as applied without an enforcement receipt", order.id),
            ));
        };
        let expected = ExpectedOrder {
            order_id: order.id,
            sequence: order.sequence,
            target: order.target(),
            order_hash: order.order_hash.as_slice().try_into().unwrap_or([0; 32]),
        };
        match verify_receipt(&peer.cert_der, &signed, &expected) {
            Ok(receipt) => {
                OrderOutcome::Applied { receipt: Box::new(receipt), signed, cert_der: peer.cert_der.clone() }
            }
            Err(e) => {
                tracing::warn!(device = %identity.id, order = order.id, error = %e, "enforcement receipt rejected; nothing recorded");
                return Err(text(StatusCode::UNPROCESSABLE_ENTITY, format!("order {}: {e}", order.id)));
            }
        }
    } else {
        OrderOutcome::Refused
    };
    let refused = matches!(outcome, OrderOutcome::Refused);
    let recorded = state
        .db
        .record_order_ack(&identity.id, ack.id, &ack.detail, outcome, now)
        .await
        .map_err(|e| storage_unavailable(identity, &e))?;
    if refused && recorded.first {
        let message = format!(
            "device refused {} order {} (sequence {}): {} / 命令拒否",
            order.kind, order.id, order.sequence, ack.detail
        );
        raise(state, &identity.id, "order-refused", Level::Warning, message, now).await;
    } else if recorded.first {
        tracing::info!(device = %identity.id, order = order.id, kind = %order.kind, "order applied; receipt verified and recorded");
    }
    Ok(body(&Empty))
}

async fn enrol(state: &State, identity: &DeviceIdentity, req: Request<Incoming>) -> Result<Reply, Reply> {
    let request: EnrolRequest = decode(&read_body(req).await?).map_err(|e| decode_error(&e))?;
    let Some(ca) = &state.config.enrol_ca else {
        return Err(text(StatusCode::NOT_IMPLEMENTED, "this server does not sign renewals (no --enrol-ca)"));
    };
    let code = identity
        .institution_code
        .parse()
        .map_err(|_| text(StatusCode::FORBIDDEN, "client certificate has no institution code"))?;
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let validity = Validity::new(now, state.config.enrol_days)
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match ca.sign_csr(&request.csr_pem, validity, Some(&code)) {
        Ok(signed) => {
            tracing::info!(device = %identity.id, serial = %signed.serial_hex(), "renewal certificate issued");
            Ok(body(&EnrolResponse { chain_pem: signed.chain_pem }))
        }
        Err(e) => Err(text(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}
