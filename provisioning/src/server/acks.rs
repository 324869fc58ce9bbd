//! `POST /v1/commands/ack`: a device's acknowledgement of a command, and of
//! an order with its enforcement receipt.

use cpe_protocol::{decode, CommandAck, Empty};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::alerting;
use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::{DeviceIdentity, Peer};
use super::{now_ms, State};
use crate::alerts::Happened;
use crate::compliance::receipts::{verify_receipt, ExpectedOrder};
use crate::store::{OrderOutcome, OrderRow};

pub(super) fn storage_unavailable(identity: &DeviceIdentity, e: &crate::store::DbError) -> Reply {
    tracing::error!(device = %identity.id, error = %e, "could not store a command acknowledgement");
    text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
}

pub(super) async fn command_ack(state: &State, peer: &Peer, req: Request<Incoming>) -> Result<Reply, Reply> {
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
pub(super) async fn order_ack(
    state: &State,
    peer: &Peer,
    order: &OrderRow,
    ack: CommandAck,
) -> Result<Reply, Reply> {
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
        let refusal = Happened::OrderRefused {
            kind: &order.kind,
            id: order.id,
            sequence: order.sequence,
            detail: &ack.detail,
        };
        alerting::carry_out(state, &identity.id, &refusal, now).await;
    } else if recorded.first {
        tracing::info!(device = %identity.id, order = order.id, kind = %order.kind, "order applied; receipt verified and recorded");
    }
    Ok(body(&Empty))
}
