//! TLS of the carrier server: the rustls configuration with mandatory
//! client certificates, and the device identity a client certificate gives.
//!
//! Reconnecting devices resume their TLS session with a ticket (TLS 1.3
//! stateless tickets, [`rustls::crypto::ring::Ticketer`]: keys rotate every
//! 6 hours, so a ticket lives at most 12): a resumption skips the
//! certificate signatures of a full handshake, the server's most costly
//! work in a reconnect storm. The client certificate verified on the full
//! handshake travels inside the ticket, so a resumed connection has the same
//! device identity. A ticket issued before a restart is not accepted after
//! it (the keys are in memory only): the device falls back to a full handshake.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ServeConfig, ServeError};

/// Who is on the other end of a connection, from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `<institution code>/<device>`.
    pub id: String,
    /// The institution code.
    pub institution_code: String,
    /// End of validity of the presented certificate, Unix seconds.
    pub cert_not_after: i64,
}

/// Derives the device identity from a verified client certificate; a
/// subject with control characters gives none.
pub fn identity_from_certificate(der: &[u8]) -> Result<DeviceIdentity, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable client certificate: {e}"))?;
    crate::pki::subject::check_subject_text(cert.subject()).map_err(|e| e.to_string())?;
    let code = crate::pki::subject::code_in_subject(cert.subject()).map_err(|e| e.to_string())?;
    let unit = cert.subject().iter_organizational_unit().find_map(|ou| ou.as_str().ok());
    Ok(DeviceIdentity {
        id: cpe_common::institution::device_id(&code, unit),
        institution_code: code.to_string(),
        cert_not_after: cert.validity().not_after.timestamp(),
    })
}

pub(super) fn tls_config(config: &ServeConfig) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in &config.client_cas {
        roots.add(ca.clone()).map_err(|e| ServeError::Tls(format!("client CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(config.tls_chain.clone(), config.tls_key.clone_key())
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    tls.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| ServeError::Tls(e.to_string()))?;
    // One ticket per connection: each resumption brings the next one, and
    // every ticket costs an encryption on the full handshake.
    tls.send_tls13_tickets = 1;
    Ok(tls)
}

/// The other end of a connection: its identity and the certificate it
/// presented (receipts are verified against it).
pub(super) struct Peer {
    pub(super) identity: DeviceIdentity,
    pub(super) cert_der: Vec<u8>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate(unit: &str) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::OrganizationalUnitName, unit);
        params.distinguished_name.push(DnType::CommonName, "Clinic 1312345678");
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn a_client_certificate_with_control_characters_gives_no_identity() {
        assert_eq!(identity_from_certificate(&certificate("ward2")).unwrap().id, "1312345678/ward2");
        let err = identity_from_certificate(&certificate("ward2\u{0}")).unwrap_err();
        assert!(err.contains("control character U+0000"), "{err}");
    }
}
