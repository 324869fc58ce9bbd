//! `GET /v1/commands?wait=S`: the device's pending commands, held open up
//! to the long-poll limit while there are none.

use std::time::Duration;

use cpe_protocol::CommandList;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::routes::{body, text, Reply};
use super::tls::DeviceIdentity;
use super::{now_ms, State};

pub(super) async fn commands(
    state: &State,
    identity: &DeviceIdentity,
    req: &Request<Incoming>,
) -> Result<Reply, Reply> {
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
