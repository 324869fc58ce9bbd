//! `POST /v1/reports`: a batch of a device's records, stored once, and the
//! alerts its events raise.

use cpe_protocol::{decode, BatchAck, Event, Payload, Record, ReportBatch, MAX_BATCH_RECORDS};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::alerting;
use super::routes::{body, decode_error, read_body, text, Reply};
use super::tls::DeviceIdentity;
use super::{now_ms, State};
use crate::alerts::Happened;
use crate::store::{DeviceSeen, IngestRecord, ReportKind};

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
    let started = std::time::Instant::now();
    let outcome = state.db.ingest(&seen, records, now).await.map_err(|e| {
        tracing::error!(device = %identity.id, error = %e, "could not store reports");
        text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
    })?;
    crate::metrics::INGEST.observe(started.elapsed(), outcome.accepted, outcome.duplicates);
    if outcome.was_down {
        alerting::carry_out(state, &identity.id, &Happened::Recovered, now).await;
    }
    // A batch is stored in one transaction and the agent sends its queue in
    // seq order, so the records stored now are the last `accepted` ones; the
    // rest were stored by an earlier delivery whose acknowledgement was lost.
    // Alerts are raised for new records only.
    let fresh = usize::try_from(outcome.accepted).unwrap_or(usize::MAX).min(batch.records.len());
    for record in &batch.records[batch.records.len() - fresh..] {
        if let Payload::Event(event) = &record.payload {
            if let Event::Started { agent_version } = event {
                tracing::info!(device = %identity.id, agent_version, "agent started");
            }
            alerting::carry_out(state, &identity.id, &Happened::Event(event), now).await;
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
