//! `cpe-provision serve`: the carrier server the agents talk to.
//!
//! HTTPS (rustls) with mandatory client certificates chaining to the
//! institution CA(s). The device identity — `<institution code>/<device>`,
//! from the certificate's serialNumber (or CN) and OU — comes only from the
//! certificate; a body claiming another identity is refused and logged.
//! Endpoints and bodies are defined in [`cpe_protocol`]. Behind it: the
//! [`crate::store`] store (SQLite or PostgreSQL), the liveness watcher that
//! turns silent devices "down", and [`crate::alerts`].
//!
//! Acknowledgements of compliance orders get more than a flag: an applied
//! order must come with the device's enforcement receipt, verified against
//! the client certificate of the very connection ([`crate::compliance::receipts`]) and
//! stored with it; a bad or mismatched receipt is answered 422 and nothing
//! is recorded (the order stays "delivered" and is redelivered); a refusal
//! is recorded with the device's reason and raises an `order-refused` alert.
//! Incident records are stored in the incidents table as well.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests run it on
//! `127.0.0.1:0` and stop it at will.
//!
//! - this module: the listener, one task per connection, the liveness
//!   watcher, the certificate-expiry watcher (one fleet summary a day);
//! - `limits`: connection limits and deadlines (handshake, idle, per address,
//!   per device, overall), per-device request rates and the open-file limit;
//! - `tls`: the rustls configuration (session tickets for reconnecting
//!   devices) and the identity a client certificate gives;
//! - `routes`: which handler serves which endpoint, reply and body helpers;
//! - `ingest`: `POST /v1/reports` and the alerts its events raise;
//! - `long_poll`: `GET /v1/commands?wait=S`;
//! - `acks`: `POST /v1/commands/ack`, with order receipts;
//! - `alerting`: carries out the actions of the alert policy;
//! - `enrol`: `POST /v1/enrol`, renewal CSRs (handed to [`crate::enrol`]).

mod acks;
mod alerting;
mod enrol;
mod ingest;
pub mod limits;
mod long_poll;
mod routes;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::alerts::{Alert, AlertSink, Happened};
use crate::clock::now_ms;
use crate::enrol::Enroller;
use crate::expiry;
use crate::pki::validity::rfc3339;
use crate::store::Database;

pub use ingest::ingest_record;
pub use tls::{identity_from_certificate, DeviceIdentity};

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
    /// Who issues renewal certificates (`/v1/enrol`); `None` refuses renewals.
    pub enroller: Option<Enroller>,
    /// Certificate-expiry alert thresholds, days left (largest first,
    /// checked by [`crate::expiry::alert_days`]).
    pub cert_alert_days: Vec<u32>,
    /// How often the expiry watcher looks (it sends at most one fleet summary a day).
    pub cert_check_every: Duration,
    /// Connection limits and deadlines.
    pub limits: limits::ConnectionLimits,
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

struct State {
    db: Database,
    alerts: AlertSink,
    config: ServeConfig,
}

/// Serves until `shutdown` completes. Also runs the liveness and expiry watchers.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    db: Database,
    alerts: AlertSink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls::tls_config(&config)?));
    let registry = limits::Registry::new(config.limits);
    let state = Arc::new(State { db, alerts, config });
    let watcher = tokio::spawn(liveness_loop(state.clone()));
    let expiry_watcher = tokio::spawn(expiry_loop(state.clone()));
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
                // Over a limit: closed at once (the registry logs it).
                let Ok(slot) = registry.admit(peer.ip()) else { continue };
                connections.spawn(serve_connection(state.clone(), acceptor.clone(), stream, peer, slot));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    watcher.abort();
    expiry_watcher.abort();
    // Give in-flight requests a moment, then drop the rest.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

/// Serves one connection within its [`limits::Slot`]: the handshake
/// deadline, the device limit, then HTTP until the client closes, the
/// connection is idle too long, or it is evicted to make room.
async fn serve_connection(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: limits::Slot,
) {
    let limits = state.config.limits;
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
    let handshake = tokio::select! {
        result = handshake => result,
        () = slot.closing() => {
            tracing::debug!(%peer, "connection closed during its TLS handshake to make room");
            return;
        }
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let Some(der) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        tracing::warn!(%peer, "no client certificate");
        return;
    };
    let identity = match identity_from_certificate(der.as_ref()) {
        Ok(identity) => Arc::new(tls::Peer { identity, cert_der: der.as_ref().to_vec() }),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "client certificate carries no usable identity");
            return;
        }
    };
    if let Err(e) = slot.authenticate(&identity.identity.id) {
        tracing::debug!(%peer, device = %identity.identity.id, error = %e, "connection closed");
        return;
    }
    let slot = Arc::new(slot);
    let in_service = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let peer = identity.clone();
        // In flight (not idle) until the reply is made; a long-poll included.
        let request = in_service.request();
        let within_rate = in_service.take_request_token();
        async move {
            let reply = match within_rate {
                Ok(()) => routes::handle(&state, &peer, req).await,
                Err(refusal) => routes::too_many_requests(refusal),
            };
            drop(request);
            Ok::<_, Infallible>(reply)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = slot.closing() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Once a day at most, a fleet summary of the certificates at an alert
/// threshold ([`crate::expiry::daily_summary`]), delivered like an alert.
async fn expiry_loop(state: Arc<State>) {
    let mut tick = tokio::time::interval(state.config.cert_check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = time::OffsetDateTime::now_utc();
        match expiry::daily_summary(&state.db, now, &state.config.cert_alert_days).await {
            Ok(Some(summary)) => state.alerts.raise(Alert {
                id: summary.id,
                device_id: "fleet".to_owned(),
                kind: expiry::SUMMARY_KIND.to_owned(),
                level: summary.level.as_str().to_owned(),
                message: summary.text,
                at: rfc3339(now),
            }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "certificate expiry check failed"),
        }
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
                let silent = Happened::WentSilent { silent_after: state.config.silent_after };
                for device in down {
                    alerting::carry_out(&state, &device, &silent, now).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "liveness check failed"),
        }
    }
}
