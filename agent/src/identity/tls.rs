//! The TLS client configuration that presents the institution identity.
//!
//! Everything the agent sends to the carrier goes over mutual TLS with the
//! stored identity. The crypto provider is ring (no OpenSSL on the device).
//!
//! The configuration keeps a small TLS session cache: a reconnect (after a
//! line drop, or a storm of them nationwide) resumes with the carrier's
//! session ticket instead of a full handshake with certificate signatures,
//! cheaper for the router and for the carrier. It lives as long as the
//! configuration: a new identity gets a new configuration and no old tickets.

use std::sync::Arc;

use rustls::client::{ClientConfig, Resumption};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::store::StoredIdentity;

/// Why the TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No carrier root certificate was usable.
    #[error("no usable carrier CA certificate ({0}); check `carrier_ca` in the agent configuration")]
    NoRoots(String),
    /// rustls refused the identity or the settings.
    #[error("the stored identity cannot be used for TLS ({0}); run `cpe-agent cert status` and re-import if needed")]
    Identity(#[from] rustls::Error),
}

/// TLS sessions kept for resumption: one carrier, a ticket per connection
/// (the agent holds two: reports and the command long-poll), and spares.
pub const SESSION_CACHE: usize = 8;

/// A rustls client configuration that trusts `server_roots` and presents
/// `identity` as its client certificate.
pub fn client_config(
    identity: &StoredIdentity,
    server_roots: &[CertificateDer<'_>],
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) =
        roots.add_parsable_certificates(server_roots.iter().map(|c| c.clone().into_owned()));
    if added == 0 {
        return Err(TlsError::NoRoots(format!("{ignored} certificate(s) ignored")));
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.resumption = Resumption::in_memory_sessions(SESSION_CACHE);
    Ok(config)
}
