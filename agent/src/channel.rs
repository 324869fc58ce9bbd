//! The agent's side of the carrier channel: HTTPS with the institution
//! certificate (mutual TLS), versioned postcard bodies ([`cpe_protocol`]).
//!
//! The agent initiates every connection (the CPE sits behind the carrier's
//! edge). Errors are split into [`ChannelError::is_retryable`] ones (line
//! down, server busy: try again with [`Backoff`]) and refusals that retrying
//! will not fix (the server said the body or identity is wrong: log loudly).
//! The carrier's HTTP `Date` of the last successful exchange is kept
//! ([`CarrierClient::carrier_time`]): it confirms the device clock for
//! compliance orders ([`crate::orders::timesync`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpe_protocol::{
    decode, encode, BatchAck, CommandAck, CommandList, Empty, EnrolRequest, EnrolResponse, Pong, Record,
    ReportBatch, CONTENT_TYPE, MAX_BODY_BYTES,
};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::identity::store::StoredIdentity;
use crate::identity::tls::{client_config, TlsError};
use crate::orders::timesync::{parse_http_date, CarrierTime};

/// Why a call to the carrier failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// TLS set-up from the stored identity failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// No connection, timeout, TLS handshake refused: the line or the server.
    #[error("cannot reach the carrier at {url}: {detail}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("the carrier answered {status} to {url}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// The server's answer could not be decoded.
    #[error("unreadable answer from {url}: {detail}")]
    Decode {
        /// The URL called.
        url: String,
        /// Decoder message.
        detail: String,
    },
}

impl ChannelError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Decode { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Tls(_) | Self::Client(_) => false,
        }
    }
}

/// A client for one carrier server, presenting one identity.
#[derive(Debug, Clone)]
pub struct CarrierClient {
    http: reqwest::Client,
    base: String,
    device: String,
    /// The carrier's `Date` from the last successful exchange, with the
    /// monotonic and system clocks at that moment (shared by clones).
    server_time: Arc<Mutex<Option<ServerTime>>>,
}

#[derive(Debug, Clone, Copy)]
struct ServerTime {
    server_unix: i64,
    observed: Instant,
    clock_at_observation: i64,
}

impl CarrierClient {
    /// A client for `base_url` (e.g. `https://carrier.example:8443`) that
    /// trusts `carrier_roots` and presents `identity`, claiming `device`.
    pub fn new(
        identity: &StoredIdentity,
        carrier_roots: &[CertificateDer<'_>],
        base_url: &str,
        device: String,
        timeout: Duration,
    ) -> Result<Self, ChannelError> {
        let tls = client_config(identity, carrier_roots)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ChannelError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            device,
            server_time: Arc::new(Mutex::new(None)),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The device id this client claims.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The carrier's time as last seen on a successful mutual-TLS exchange
    /// (its HTTP `Date`), aged by the monotonic clock; for clock trust.
    pub fn carrier_time(&self) -> Option<CarrierTime> {
        let seen = (*self.server_time.lock().unwrap_or_else(std::sync::PoisonError::into_inner))?;
        Some(CarrierTime {
            server_unix: seen.server_unix,
            clock_at_observation: seen.clock_at_observation,
            age_secs: i64::try_from(seen.observed.elapsed().as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// Sends `records` (oldest first) and returns the server's acknowledgement.
    pub async fn send_batch(&self, records: Vec<Record>) -> Result<BatchAck, ChannelError> {
        let batch = ReportBatch { device: self.device.clone(), records };
        self.post("/v1/reports", &batch).await
    }

    /// Waits up to `wait` for commands.
    pub async fn poll_commands(&self, wait: Duration) -> Result<CommandList, ChannelError> {
        let path = format!("/v1/commands?wait={}", wait.as_secs());
        self.call(self.http.get(self.url(&path)).timeout(wait + Duration::from_secs(15)), &path).await
    }

    /// Reports what became of a command.
    pub async fn ack_command(&self, ack: &CommandAck) -> Result<(), ChannelError> {
        self.post::<_, Empty>("/v1/commands/ack", ack).await.map(|_| ())
    }

    /// Asks the carrier to sign a renewal CSR.
    pub async fn enrol(&self, csr_pem: String) -> Result<EnrolResponse, ChannelError> {
        self.post("/v1/enrol", &EnrolRequest { csr_pem }).await
    }

    /// Checks the channel end to end (TLS with this identity, server answer).
    pub async fn ping(&self) -> Result<Pong, ChannelError> {
        self.call(self.http.get(self.url("/v1/ping")), "/v1/ping").await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, ChannelError> {
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(encode(body));
        self.call(request, path).await
    }

    async fn call<R: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<R, ChannelError> {
        let url = self.url(path);
        let response = request
            .send()
            .await
            .map_err(|e| ChannelError::Unreachable { url: url.clone(), detail: error_chain(&e) })?;
        let status = response.status();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ChannelError::Unreachable { url: url.clone(), detail: error_chain(&e) })?
        {
            // Never more than the protocol's body limit in memory.
            cpe_common::bounded::extend_within(&mut bytes, &chunk, MAX_BODY_BYTES)
                .map_err(|e| ChannelError::Decode { url: url.clone(), detail: e.to_string() })?;
        }
        if !status.is_success() {
            let message = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(ChannelError::Status { url, status: status.as_u16(), message });
        }
        if let Some(server_unix) = date {
            let seen = ServerTime {
                server_unix,
                observed: Instant::now(),
                clock_at_observation: crate::clock::now().unix_timestamp(),
            };
            *self.server_time.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen);
        }
        decode(&bytes).map_err(|e| ChannelError::Decode { url, detail: e.to_string() })
    }
}

/// The error and its causes on one line (reqwest hides the TLS reason in a source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff with full jitter: the n-th retry waits a random time
/// in `[0, min(max, base * 2^n)]`, so that a thousand units coming back after
/// a carrier outage do not all retry in the same second.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, never waits longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, attempt: 0 }
    }

    /// The next wait, given a random fraction in `[0, 1]`.
    pub fn delay_with(&mut self, fraction: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// The next wait with a random fraction from the OS.
    pub fn next_delay(&mut self) -> Duration {
        self.delay_with(random_fraction())
    }

    /// After a success: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_mins(1));
        let ceilings: Vec<u64> = (0..8).map(|_| b.delay_with(1.0).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay_with(0.0), Duration::ZERO);
        b.reset();
        assert_eq!(b.delay_with(0.5), Duration::from_millis(500));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_mins(1));
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let status = |status| ChannelError::Status { url: "u".into(), status, message: String::new() };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(403).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(ChannelError::Unreachable { url: "u".into(), detail: String::new() }.is_retryable());
    }
}
