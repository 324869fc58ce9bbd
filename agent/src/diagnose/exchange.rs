//! The carrier probe: TCP connect, the mutual-TLS handshake with the
//! institution identity, then `GET /v1/ping`, each step's failure told apart.
//!
//! The regular channel ([`crate::channel`]) goes through reqwest, which
//! folds every failure into one error; a diagnosis needs to know *which*
//! step failed and *who* refused: nothing listening (reset), the server's
//! certificate (our verifier), our certificate (the server's alert — during
//! the handshake with TLS 1.2, on the first read with TLS 1.3, where the
//! server checks the client certificate after the client has finished), or
//! the HTTP layer (401/403, 5xx). So this module drives tokio-rustls by hand,
//! with the same rustls client configuration the channel uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_protocol::Pong;
use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a TCP connection attempt to the carrier ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The host answered with a reset: nothing listens on the port.
    Refused,
    /// No answer in time.
    Timeout,
    /// Unreachable or another OS error.
    Other(String),
}

/// How the TLS handshake and the `/v1/ping` call ended, once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeOutcome {
    /// TCP did not connect.
    NotConnected(ConnectFailure),
    /// TLS could not be attempted (no identity or no carrier CA on the device).
    NoTls(String),
    /// The server's certificate was not accepted by the device.
    ServerCertificate(String),
    /// The server ended the handshake with an alert about our certificate
    /// (`CertificateExpired`, `BadCertificate`, `UnknownCA`, …).
    CertificateRefused {
        /// The alert, as rustls names it.
        alert: String,
    },
    /// The handshake broke off otherwise (reset, EOF, another alert, timeout).
    TlsBroken(String),
    /// The server answered the HTTP request.
    Answered {
        /// HTTP status.
        status: u16,
        /// The decoded `/v1/ping` answer on success.
        pong: Option<Pong>,
        /// First bytes of an error body.
        message: String,
    },
    /// Connected and TLS completed, but no (readable) answer came.
    NoAnswer(String),
}

/// A carrier exchange with its timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// What happened.
    pub outcome: ExchangeOutcome,
    /// TCP connect time, when connected.
    pub connect_ms: Option<u64>,
    /// TLS handshake time, when completed.
    pub handshake_ms: Option<u64>,
    /// Negotiated TLS version, when completed.
    pub tls_version: Option<String>,
}

/// Time limits of one carrier exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake plus the HTTP exchange.
    pub tls: Duration,
}

/// Most bytes read of the `/v1/ping` answer.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Runs the exchange with `addr`, verifying the server as `server_name`.
pub async fn run(
    addr: SocketAddr,
    server_name: &str,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    limits: ExchangeLimits,
) -> Exchange {
    let mut exchange = Exchange {
        outcome: ExchangeOutcome::NoTls(String::new()),
        connect_ms: None,
        handshake_ms: None,
        tls_version: None,
    };
    let started = Instant::now();
    let stream = match tokio::time::timeout(limits.connect, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return with(exchange, ExchangeOutcome::NotConnected(ConnectFailure::Timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return with(exchange, ExchangeOutcome::NotConnected(ConnectFailure::Refused))
        }
        Ok(Err(e)) => {
            return with(exchange, ExchangeOutcome::NotConnected(ConnectFailure::Other(e.to_string())))
        }
        Ok(Ok(stream)) => stream,
    };
    exchange.connect_ms = Some(millis(started.elapsed()));
    let config = match tls {
        Ok(config) => config,
        Err(reason) => return with(exchange, ExchangeOutcome::NoTls(reason)),
    };
    let Ok(name) = ServerName::try_from(server_name.to_owned()) else {
        return with(exchange, ExchangeOutcome::NoTls(format!("{server_name:?} is not a valid server name")));
    };
    let handshake_started = Instant::now();
    let deadline = handshake_started + limits.tls;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = match tokio::time::timeout(limits.tls, connector.connect(name, stream)).await {
        Err(_) => {
            return with(
                exchange,
                ExchangeOutcome::TlsBroken(format!("no TLS handshake within {} ms", limits.tls.as_millis())),
            )
        }
        Ok(Err(e)) => return with(exchange, handshake_failure(&e)),
        Ok(Ok(tls)) => tls,
    };
    exchange.handshake_ms = Some(millis(handshake_started.elapsed()));
    exchange.tls_version = tls.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
    let request = format!("GET /v1/ping HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\nUser-Agent: cpe-agent-diagnose\r\n\r\n");
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let answer = tokio::time::timeout(left, async {
        tls.write_all(request.as_bytes()).await?;
        tls.flush().await?;
        let mut bytes = Vec::new();
        (&mut tls).take(MAX_ANSWER_BYTES).read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    })
    .await;
    let outcome = match answer {
        Err(_) => {
            ExchangeOutcome::NoAnswer(format!("no answer to GET /v1/ping within {} ms", left.as_millis()))
        }
        // With TLS 1.3 the server checks our certificate after we finished
        // the handshake: any alert before its first byte of answer is its
        // refusal of our certificate (e.g. `DecryptError` when the chain's
        // signature does not verify against its CA, `CertificateExpired`).
        Ok(Err(e)) => match rustls_error(&e) {
            Some(rustls::Error::AlertReceived(alert)) if *alert != AlertDescription::CloseNotify => {
                ExchangeOutcome::CertificateRefused { alert: format!("{alert:?}") }
            }
            _ => ExchangeOutcome::NoAnswer(e.to_string()),
        },
        Ok(Ok(bytes)) => parse_answer(&bytes),
    };
    with(exchange, outcome)
}

fn with(mut exchange: Exchange, outcome: ExchangeOutcome) -> Exchange {
    exchange.outcome = outcome;
    exchange
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The alert name when the server refused *our certificate*.
fn refused_alert(e: &std::io::Error) -> Option<String> {
    match rustls_error(e)? {
        rustls::Error::AlertReceived(alert) if is_certificate_alert(*alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

/// Alerts a server sends during the handshake when it does not accept the
/// client certificate (`DecryptError`: the chain or CertificateVerify
/// signature does not verify).
pub fn is_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::DecryptError
    )
}

fn handshake_failure(e: &std::io::Error) -> ExchangeOutcome {
    if let Some(alert) = refused_alert(e) {
        return ExchangeOutcome::CertificateRefused { alert };
    }
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(why)) => {
            ExchangeOutcome::ServerCertificate(format!("{why:?}"))
        }
        Some(other) => ExchangeOutcome::TlsBroken(other.to_string()),
        None => ExchangeOutcome::TlsBroken(e.to_string()),
    }
}

/// Parses an HTTP/1.1 answer read to its end (`Connection: close`).
pub fn parse_answer(bytes: &[u8]) -> ExchangeOutcome {
    let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return ExchangeOutcome::NoAnswer("the answer has no complete HTTP header".into());
    };
    let head = String::from_utf8_lossy(&bytes[..split]);
    let body = &bytes[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_ascii_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status else {
        return ExchangeOutcome::NoAnswer(format!(
            "not an HTTP status line: {:?}",
            head.lines().next().unwrap_or("")
        ));
    };
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    let pong = (status == 200).then(|| cpe_protocol::decode::<Pong>(&body).ok()).flatten();
    let message = if status == 200 {
        String::new()
    } else {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    };
    ExchangeOutcome::Answered { status, pong, message }
}

/// The payload of a chunked body (stops at the first malformed chunk).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let Some(chunk) = body.get(end + 2..end + 2 + size) else { break };
        out.extend_from_slice(chunk);
        body = body.get(end + 2 + size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_with_status_and_pong() {
        let pong = Pong { device_id: "1312345678/cpe-1".into(), server_unix: 1_800_000_000 };
        let body = cpe_protocol::encode(&pong);
        let mut ok = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        ok.extend(&body);
        assert_eq!(
            parse_answer(&ok),
            ExchangeOutcome::Answered { status: 200, pong: Some(pong.clone()), message: String::new() }
        );
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        chunked.extend(format!("{:x}\r\n", body.len()).as_bytes());
        chunked.extend(&body);
        chunked.extend(b"\r\n0\r\n\r\n");
        assert_eq!(
            parse_answer(&chunked),
            ExchangeOutcome::Answered { status: 200, pong: Some(pong), message: String::new() }
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 403 Forbidden\r\n\r\nrevoked"),
            ExchangeOutcome::Answered { status: 403, pong: None, message: "revoked".into() }
        );
        assert!(matches!(parse_answer(b"HTTP/1.1 200"), ExchangeOutcome::NoAnswer(_)));
        assert!(matches!(parse_answer(b"garbage\r\n\r\n"), ExchangeOutcome::NoAnswer(_)));
    }

    #[test]
    fn certificate_alerts_are_told_from_others() {
        assert!(is_certificate_alert(AlertDescription::CertificateExpired));
        assert!(is_certificate_alert(AlertDescription::UnknownCA));
        assert!(!is_certificate_alert(AlertDescription::HandshakeFailure));
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
        );
        assert_eq!(
            handshake_failure(&wrapped),
            ExchangeOutcome::CertificateRefused { alert: "CertificateExpired".into() }
        );
        let server = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(handshake_failure(&server), ExchangeOutcome::ServerCertificate("UnknownIssuer".into()));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(handshake_failure(&reset), ExchangeOutcome::TlsBroken(_)));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let limits = ExchangeLimits { connect: Duration::from_secs(1), tls: Duration::from_secs(1) };
        let exchange = run(addr, "localhost", Err("none".into()), limits).await;
        assert_eq!(exchange.outcome, ExchangeOutcome::NotConnected(ConnectFailure::Refused));
    }
}
