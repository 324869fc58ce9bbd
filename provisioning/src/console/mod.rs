//! The operator listener: the carrier's operators reach the web console
//! (`/`) and the JSON API (`/api/v1/`) here, and Prometheus scrapes `GET /metrics`
//! ([`crate::metrics`]; counts only, no device ids, no session needed),
//! over TLS, on a listener of its own apart from the device listener
//! ([`crate::server`]).
//!
//! The listener asks for no client certificate: operators sign in with a
//! name and password ([`crate::operators`]) and present the session token
//! as `Authorization: Bearer` or in the console's cookie, so a device or
//! institution certificate opens nothing here, and an operator's session
//! opens nothing on the device listener (which requires an institution
//! certificate). It serves the same server certificate as the device
//! listener (`--tls-cert`/`--tls-key`): both are the carrier server's name,
//! and one certificate to renew is one fewer to forget.
//!
//! - this module: [`run`] (listener, one task per connection, shutdown);
//! - `routes`: the route table, path and query parsing (pure);
//! - `api`: the handlers, each calling the library use case the CLI calls;
//! - `openapi.json`: the API's OpenAPI 3 document, served at
//!   `/api/v1/openapi.json` and checked against `routes::ROUTES` by a test;
//! - `web`: the web console's pages (embedded files under `web/`) at `/`,
//!   and the security headers every reply carries.

mod api;
pub mod routes;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, ALLOW};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::store::Database;
use api::{ApiError, State};
use routes::NoRoute;

/// The OpenAPI document of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the operator listener needs besides its store.
#[derive(Debug)]
pub struct ConsoleConfig {
    /// Server certificate chain (leaf first).
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// Server private key.
    pub tls_key: PrivateKeyDer<'static>,
    /// Order-key directory; without it the steps that sign orders answer 503.
    pub order_keys: Option<PathBuf>,
    /// Days a signed order stays valid.
    pub order_valid_days: u32,
}

/// Why the operator listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// TLS settings refused by rustls.
    #[error("operator listener TLS configuration: {0}; check --tls-cert and --tls-key")]
    Tls(String),
}

/// Serves the operator API until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: ConsoleConfig,
    db: Database,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConsoleError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsoleError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(config.tls_chain, config.tls_key)
        .map_err(|e| ConsoleError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let state =
        Arc::new(State { db, order_keys: config.order_keys, order_valid_days: config.order_valid_days });
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(state.clone(), acceptor.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "operator listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

async fn serve_connection(state: Arc<State>, acceptor: TlsAcceptor, stream: tokio::net::TcpStream) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "operator listener: TLS handshake refused");
            return;
        }
        Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "operator connection ended with an error");
    }
}

async fn handle(state: &State, req: hyper::Request<hyper::body::Incoming>) -> api::Reply {
    let method = req.method().as_str().to_owned();
    let target =
        req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    if let Some(asset) = web::asset(&method, req.uri().path()) {
        let mut reply = web::reply(asset);
        web::secure(reply.headers_mut());
        return reply;
    }
    let mut reply = match routes::route(&method, &target) {
        Ok(matched) => match api::serve(state, matched, req).await {
            Ok(reply) => reply,
            Err(e) => e.reply(),
        },
        Err(NoRoute::UnknownPath) => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no endpoint {method} {target}; see /api/v1/openapi.json"),
        )
        .reply(),
        Err(NoRoute::BadEncoding) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a path segment is not percent-encoded UTF-8",
        )
        .reply(),
        Err(NoRoute::Method(allowed)) => {
            let mut reply = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                format!("{target} answers {}", allowed.join(", ")),
            )
            .reply();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                reply.headers_mut().insert(ALLOW, v);
            }
            reply
        }
    };
    if reply.status().is_client_error() || reply.status().is_server_error() {
        tracing::info!(%method, path = %target.split('?').next().unwrap_or_default(), status = %reply.status(), "operator request refused");
    }
    web::secure(reply.headers_mut());
    reply
}
