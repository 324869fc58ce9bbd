//! `POST /v1/reports`: a batch of a device's records, stored once, and the
//! alerts its events raise.

use cpe_protocol::{decode, BatchAck, Event, Level, Payload, Record, ReportBatch, MAX_BATCH_RECORDS};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::DeviceIdentity;
use super::{now_ms, State};
use crate::alerts::Alert;
use crate::pki::validity::rfc3339;
use crate::store::{DeviceSeen, IngestRecord, NewAlert, ReportKind};

pub(super) async fn reports(
    state: &State,
    identity: &DeviceIdentity,
    req: Request<Incoming>,
) -> Result<Reply, Reply> {
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
pub(super) fn summary(payload: &Payload) -> String {
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

pub(super) async fn on_event(state: &State, device: &str, event: &Event, now: i64) {
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

pub(super) async fn raise(state: &State, device: &str, kind: &str, level: Level, message: String, now: i64) {
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
