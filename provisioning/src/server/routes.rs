//! Routing of the carrier server's endpoints, and the reply and body
//! helpers every handler shares.

use bytes::Bytes;
use cpe_protocol::{encode, DecodeError, Pong, CONTENT_TYPE, MAX_BODY_BYTES};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::tls::Peer;
use super::{acks, enrol, ingest, long_poll, now_ms, State};

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(message.into())));
    *resp.status_mut() = status;
    resp
}

pub(super) fn body<T: serde::Serialize>(value: &T) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(encode(value))));
    if let Ok(v) = hyper::header::HeaderValue::from_str(CONTENT_TYPE) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

pub(super) fn decode_error(e: &DecodeError) -> Reply {
    let status = match e {
        DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DecodeError::UnsupportedVersion { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DecodeError::Malformed { .. } => StatusCode::BAD_REQUEST,
    };
    text(status, e.to_string())
}

/// Longest time a request body may take to arrive (a body trickled in
/// keeps its connection busy, so it is bounded too).
pub(super) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    let collect = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
        return Err(text(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, format!("body exceeds {MAX_BODY_BYTES} bytes")))
        }
        Err(e) => Err(text(StatusCode::BAD_REQUEST, format!("could not read the body: {e}"))),
    }
}

/// The answer to a request over its device's rate ([`super::limits`]): 429,
/// try again in a second (a token comes back within `1 / rate` ≤ 1 s).
pub(super) fn too_many_requests(refusal: super::limits::Refusal) -> Reply {
    let mut reply = text(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "{refusal}; slow down and try again / リクエストが多すぎます。間隔をあけて再試行してください"
        ),
    );
    reply.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    reply
}

pub(super) async fn handle(state: &State, peer: &Peer, req: Request<Incoming>) -> Reply {
    let identity = &peer.identity;
    let path = req.uri().path().to_owned();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::POST, "/v1/reports") => ingest::reports(state, identity, req).await,
        (Method::GET, "/v1/commands") => long_poll::commands(state, identity, &req).await,
        (Method::POST, "/v1/commands/ack") => acks::command_ack(state, peer, req).await,
        (Method::POST, "/v1/enrol") => enrol::enrol(state, identity, req).await,
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
