//! What the agent and the carrier server say to each other.
//!
//! Every body on the wire is `postcard(Envelope { version, body })`: a
//! protocol version first, so that a server can refuse a body from a newer
//! agent with a clear message instead of misreading it, then the body. The
//! device's identity is never in a body: the server takes it from the
//! client certificate of the mutual-TLS connection.
//!
//! Endpoints (HTTPS, `application/x-postcard`):
//!
//! | method + path | request | response |
//! |---|---|---|
//! | `POST /v1/reports` | [`ReportBatch`] | [`BatchAck`] |
//! | `GET /v1/commands?wait=SECONDS` | – | [`CommandList`] (long-poll) |
//! | `POST /v1/commands/ack` | [`CommandAck`] | [`Empty`] |
//! | `POST /v1/enrol` | [`EnrolRequest`] | [`EnrolResponse`] |
//! | `GET /v1/ping` | – | [`Pong`] |
//!
//! Errors are plain-text bodies with an HTTP status (400 bad body, 401/403
//! identity, 413 too large, 422 wrong version) so that an operator reading
//! a log understands them without a decoder.
//!
//! - [`order`]: signed compliance orders (stop, resume, notice, key rotation,
//!   drill): the format, its size limits and the exact signed bytes.
//! - [`receipt`]: the device's signed enforcement receipts for applied orders.
#![forbid(unsafe_code)]

pub mod order;
pub mod receipt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest body accepted by either side.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Most records in one [`ReportBatch`].
pub const MAX_BATCH_RECORDS: usize = 1000;

/// Media type of every body.
pub const CONTENT_TYPE: &str = "application/x-postcard";

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("body of {len} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")]
    TooLarge {
        /// Body size.
        len: usize,
    },
    /// The version prefix names a version this build does not speak.
    #[error("protocol version {got} is not supported (this side speaks {PROTOCOL_VERSION}); update the agent or the server")]
    UnsupportedVersion {
        /// The version found.
        got: u16,
    },
    /// The bytes are not a valid body (garbage, truncated, wrong type).
    #[error("malformed body: {detail}")]
    Malformed {
        /// Decoder message.
        detail: String,
    },
}

/// Encodes `body` with the current version prefix.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail: no maps with non-string
    // keys, no sequences of unknown length.
    postcard::to_stdvec(&(PROTOCOL_VERSION, body)).unwrap_or_default()
}

/// Decodes a versioned body, checking size, version and that no bytes trail.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let (version, rest) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| DecodeError::Malformed { detail: format!("version prefix: {e}") })?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion { got: version });
    }
    let (body, trailing) =
        postcard::take_from_bytes::<T>(rest).map_err(|e| DecodeError::Malformed { detail: e.to_string() })?;
    if !trailing.is_empty() {
        return Err(DecodeError::Malformed { detail: format!("{} trailing bytes", trailing.len()) });
    }
    Ok(body)
}

/// Records sent together, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    /// The device id the agent believes it has (`<institution code>/<device>`).
    /// The server trusts only the client certificate and refuses a batch
    /// whose claim differs from it, so a misconfigured or cloned unit shows
    /// up in the carrier's log instead of writing into another device.
    pub device: String,
    /// The records, in increasing `seq`.
    pub records: Vec<Record>,
}

/// One queued record of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Per-device sequence number, strictly increasing, never reused: the
    /// carrier deduplicates by (device, seq).
    pub seq: u64,
    /// When the record was made, Unix milliseconds (device clock).
    pub at_unix_ms: i64,
    /// What it says.
    pub payload: Payload,
}

/// What a record carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// The periodic heartbeat with metrics.
    Heartbeat(Health),
    /// Something that happened and must reach the carrier at once.
    Event(Event),
    /// A self-diagnosis result (guideline §1.3.1 incident record).
    Incident(Incident),
}

/// Largest diagnosis report (JSON) carried in an [`Incident`].
pub const MAX_INCIDENT_REPORT_BYTES: usize = 64 * 1024;

/// A self-diagnosis result, sent as an incident record (§1.3.1, §1.3.2 ⑤).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The diagnosis id (the report's `id`).
    pub id: String,
    /// The remote-diagnosis command that asked for it, if any.
    pub command_id: Option<u64>,
    /// The verdict's segment: `terminal`, `lan`, `device`, `uplink`,
    /// `carrier`, `none` or `suspended`.
    pub segment: String,
    /// The verdict's one-line summary (English).
    pub summary: String,
    /// The whole report as the `cpe-agent diagnose --json` document, at most
    /// [`MAX_INCIDENT_REPORT_BYTES`].
    pub report_json: String,
}

/// Periodic health metrics of the device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Health {
    /// Seconds since boot.
    pub uptime_s: u64,
    /// CPU busy percentage over the interval.
    pub cpu_pct: f32,
    /// Memory in use (total - available) as a percentage.
    pub mem_pct: f32,
    /// Load averages (1, 5, 15 minutes).
    pub load: [f32; 3],
    /// Highest thermal-zone temperature, degrees Celsius, if the device has sensors.
    pub temperature_c: Option<f32>,
    /// Per-interface traffic over the interval.
    pub interfaces: Vec<InterfaceStats>,
    /// The uplink interface carrying the default route, if any.
    pub active_uplink: Option<String>,
    /// End of validity of the installed certificate, Unix seconds.
    pub cert_not_after: Option<i64>,
    /// Agent version.
    pub agent_version: String,
}

/// Traffic of one interface over the report interval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Operational state is up.
    pub up: bool,
    /// Carrier (link) detected.
    pub carrier: bool,
    /// Mean receive rate, bits/s.
    pub rx_bps: f64,
    /// Mean transmit rate, bits/s.
    pub tx_bps: f64,
    /// Highest sampled receive rate, bits/s.
    pub rx_bps_max: f64,
    /// Highest sampled transmit rate, bits/s.
    pub tx_bps_max: f64,
    /// 95th percentile of sampled receive rates, bits/s.
    pub rx_bps_p95: f64,
    /// 95th percentile of sampled transmit rates, bits/s.
    pub tx_bps_p95: f64,
    /// Mean receive packets/s.
    pub rx_pps: f64,
    /// Mean transmit packets/s.
    pub tx_pps: f64,
    /// Receive errors during the interval.
    pub rx_errors: u64,
    /// Transmit errors during the interval.
    pub tx_errors: u64,
    /// Receive drops during the interval.
    pub rx_drops: u64,
    /// Transmit drops during the interval.
    pub tx_drops: u64,
}

/// Threshold levels (guideline §3.2.1(5): caution 注意 and warning 警告).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// Below the caution threshold.
    Normal,
    /// At or above caution (注意).
    Caution,
    /// At or above warning (警告).
    Warning,
}

impl Level {
    /// Lower-case English name (`normal`, `caution`, `warning`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Caution => "caution",
            Self::Warning => "warning",
        }
    }
}

/// Events that are sent at once, not at the next interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The agent started.
    Started {
        /// Agent version.
        agent_version: String,
    },
    /// A metric crossed a threshold level (up or down).
    Threshold {
        /// Metric name (`cpu`, `memory`, `temperature`, `load1`, …).
        metric: String,
        /// Level before.
        from: Level,
        /// Level now.
        to: Level,
        /// The value that caused the change.
        value: f64,
    },
    /// The default route moved to another uplink (§3.2.1(6)).
    Failover {
        /// Uplink before (None: no default route).
        from: Option<String>,
        /// Uplink now.
        to: Option<String>,
    },
}

/// The server's answer to a [`ReportBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// Records stored now.
    pub accepted: u32,
    /// Records already stored before (same device and seq).
    pub duplicates: u32,
    /// Highest seq of the batch; the agent may drop everything up to it.
    pub through_seq: u64,
}

/// Commands waiting for the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandList {
    /// Oldest first.
    pub commands: Vec<Command>,
}

/// One command from the carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Carrier-assigned id, echoed in the acknowledgement.
    pub id: u64,
    /// What to do.
    pub kind: CommandKind,
}

/// Kinds of commands. Orders that change service carry their own signature;
/// the others need none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Send a heartbeat now.
    ReportNow,
    /// Run a self-diagnosis and report it (as an [`Incident`] record).
    Diagnose,
    /// Apply a compliance order: `order::encode_signed(SignedOrder)` bytes,
    /// verified on the device before anything is decoded or changed.
    Order {
        /// The encoded signed order.
        signed: Vec<u8>,
    },
}

/// The device's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandAck {
    /// The command's id.
    pub id: u64,
    /// Whether it was carried out.
    pub ok: bool,
    /// What happened, for the operator (for a refused order: the refusal
    /// class and reason).
    pub detail: String,
    /// For an applied order: the device's signed enforcement receipt.
    pub receipt: Option<receipt::SignedReceipt>,
}

/// A certificate request for renewal, over the existing mTLS channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// PEM CSR made on the device.
    pub csr_pem: String,
}

/// The new certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// Leaf first, then the chain (PEM).
    pub chain_pem: String,
}

/// Answer to `/v1/ping`: who the server thinks the device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Device id as taken from the client certificate.
    pub device_id: String,
    /// Server time, Unix seconds (a carrier-signed time source comes with orders).
    pub server_unix: i64,
}

/// An empty body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> ReportBatch {
        ReportBatch {
            device: "1312345678/main".into(),
            records: vec![
                Record {
                    seq: 1,
                    at_unix_ms: 1_700_000_000_000,
                    payload: Payload::Heartbeat(Health::default()),
                },
                Record {
                    seq: 2,
                    at_unix_ms: 1_700_000_000_500,
                    payload: Payload::Event(Event::Threshold {
                        metric: "cpu".into(),
                        from: Level::Normal,
                        to: Level::Caution,
                        value: 81.5,
                    }),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&batch());
        assert_eq!(decode::<ReportBatch>(&bytes), Ok(batch()));
    }

    #[test]
    fn wrong_version_truncated_trailing_and_oversized_are_refused() {
        let mut bytes = encode(&batch());
        bytes[0] = 9;
        assert_eq!(decode::<ReportBatch>(&bytes), Err(DecodeError::UnsupportedVersion { got: 9 }));
        let bytes = encode(&batch());
        for cut in 0..bytes.len() {
            assert!(decode::<ReportBatch>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode::<ReportBatch>(&long), Err(DecodeError::Malformed { .. })));
        let huge = vec![1u8; MAX_BODY_BYTES + 1];
        assert!(matches!(decode::<ReportBatch>(&huge), Err(DecodeError::TooLarge { .. })));
    }
}
