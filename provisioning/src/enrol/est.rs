//! The EST backend (RFC 7030): the carrier is an EST client of a
//! certification body and forwards each checked renewal request as a
//! `simplereenroll` (the device already holds a certificate of the body).
//!
//! The carrier authenticates to the body over TLS with its own client
//! certificate (its registration-authority credential from the body); the
//! device's key never leaves the device, and the device's own certificate
//! was verified on the carrier's mutual-TLS channel before the request got
//! here. The body's answer — a base64 PKCS#7 certs-only message — is
//! untrusted: it is parsed by [`crate::pki::pkcs7`], and the certificate
//! passed on must carry the requested key and the device's institution
//! code (the device checks the chain against its trust anchors itself).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{EnrolError, EnrolmentRequest, Issued};
use crate::pki::encoding::{pem_encode, CERTIFICATE_TAG};
use crate::pki::pkcs7;
use crate::pki::subject::code_in_subject;

/// Longest the carrier waits for the body's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of an error text from the body kept in a message.
const MAX_REASON_CHARS: usize = 300;

/// Where the body's EST service is and how the carrier authenticates to it.
#[derive(Debug)]
pub struct EstConfig {
    /// The EST base, e.g. `https://est.body.example/.well-known/est` (with
    /// an optional label segment); operations are appended to it.
    pub base_url: String,
    /// CA certificates that the EST server's certificate must chain to.
    pub server_roots: Vec<CertificateDer<'static>>,
    /// The carrier's client certificate chain for the body (leaf first).
    pub client_chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub client_key: PrivateKeyDer<'static>,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

/// Why an EST client cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("EST client: {0}; check --est-url, --est-ca, --est-client-cert and --est-client-key")]
pub struct EstSetupError(String);

/// An EST client of one certification body.
#[derive(Debug)]
pub struct EstClient {
    base_url: String,
    http: reqwest::Client,
}

impl EstClient {
    /// A client for `config` (TLS 1.2+ with the carrier's client certificate).
    pub fn new(config: EstConfig) -> Result<Self, EstSetupError> {
        let setup = |e: &dyn std::fmt::Display| EstSetupError(e.to_string());
        if !config.base_url.starts_with("https://") {
            return Err(EstSetupError(format!(
                "{} is not an https:// URL (EST runs over TLS)",
                config.base_url
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        for root in config.server_roots {
            roots.add(root).map_err(|e| setup(&e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(config.client_chain, config.client_key)
            .map_err(|e| setup(&e))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Self { base_url: config.base_url.trim_end_matches('/').to_owned(), http })
    }

    /// The EST base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(super) async fn enrol(&self, request: &EnrolmentRequest<'_>) -> Result<Issued, EnrolError> {
        let checked = request.checked()?;
        let url = format!("{}/simplereenroll", self.base_url);
        let body = base64::engine::general_purpose::STANDARD.encode(&checked.csr_der);
        let answer = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/pkcs10")
            .header("Content-Transfer-Encoding", "base64")
            .body(body)
            .send()
            .await
            .map_err(|e| EnrolError::Unavailable(format!("{url}: {e}")))?;
        let status = answer.status();
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status.as_u16() == 202 {
            let after = retry_after.map(|s| format!(", retry after {s}")).unwrap_or_default();
            return Err(EnrolError::Unavailable(format!(
                "the body accepted the request and has not issued yet{after}"
            )));
        }
        let bytes = read_limited(answer).await.map_err(|e| EnrolError::Unavailable(format!("{url}: {e}")))?;
        if status.is_server_error() {
            return Err(EnrolError::Unavailable(format!("{url} answered {status}: {}", reason(&bytes))));
        }
        if !status.is_success() {
            return Err(EnrolError::Refused(format!("the body answered {status}: {}", reason(&bytes))));
        }
        let issued = certificates_for(&bytes, &checked.spki_der, request)?;
        tracing::info!(device = %request.device, serial = %issued.serial_hex, "certificate issued over EST");
        Ok(issued)
    }
}

/// The answer body, refused above the PKCS#7 limit (base64 is 4/3 larger).
async fn read_limited(mut answer: reqwest::Response) -> Result<Vec<u8>, String> {
    let limit = pkcs7::MAX_PKCS7_BYTES / 3 * 4 + 4096;
    let mut bytes = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn reason(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().chars().take(MAX_REASON_CHARS).collect()
}

/// The chain to hand to the device from a base64 certs-only answer: the
/// certificate for `spki_der` first, then the others as the body sent them.
fn certificates_for(
    answer: &[u8],
    spki_der: &[u8],
    request: &EnrolmentRequest<'_>,
) -> Result<Issued, EnrolError> {
    let text: Vec<u8> = answer.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| EnrolError::BadAnswer(format!("the answer is not base64: {e}")))?;
    let certs = pkcs7::certificates(&der).map_err(|e| EnrolError::BadAnswer(e.to_string()))?;
    let leaf_at = certs
        .iter()
        .position(|der| X509Certificate::from_der(der).is_ok_and(|(_, c)| c.public_key().raw == spki_der))
        .ok_or_else(|| {
            EnrolError::BadAnswer("no certificate in the answer carries the requested key".into())
        })?;
    let (_, leaf) =
        X509Certificate::from_der(&certs[leaf_at]).map_err(|e| EnrolError::BadAnswer(e.to_string()))?;
    let code = code_in_subject(leaf.subject()).map_err(|e| EnrolError::BadAnswer(e.to_string()))?;
    if code != *request.institution_code {
        return Err(EnrolError::BadAnswer(format!(
            "the certificate names institution {code}, the device belongs to {}",
            request.institution_code
        )));
    }
    let serial_hex = cpe_common::hex::encode(leaf.raw_serial());
    let mut chain_pem = pem_encode(CERTIFICATE_TAG, &certs[leaf_at]);
    for (i, der) in certs.iter().enumerate() {
        if i != leaf_at {
            chain_pem.push_str(&pem_encode(CERTIFICATE_TAG, der));
        }
    }
    Ok(Issued { chain_pem, serial_hex, leaf_der: certs[leaf_at].clone() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use base64::Engine;
    use cpe_common::institution::{InstitutionCode, SERIAL_NUMBER_OID_ARCS};

    use super::*;
    use crate::pki::ca::CertificationBody;
    use crate::pki::csr::check_csr;
    use crate::pki::pkcs7::encode::certs_only;
    use crate::pki::validity::Validity;

    /// A test body, a CSR of institution 1312345678 and the body's certificate for it.
    fn issued() -> (CertificationBody, crate::pki::csr::CheckedCsr, Vec<u8>) {
        let now = time::OffsetDateTime::now_utc();
        let body = CertificationBody::generate("EST test body", Validity::new(now, 30).unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()), "1312345678");
        params.distinguished_name.push(rcgen::DnType::CommonName, "clinic");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let signed = body.sign_csr(&csr, Validity::new(now, 10).unwrap(), None).unwrap();
        (body, check_csr(&csr, None).unwrap(), signed.cert_der)
    }

    fn answer(certs: &[Vec<u8>]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.encode(certs_only(certs)).into_bytes()
    }

    fn request(code: &InstitutionCode) -> EnrolmentRequest<'_> {
        EnrolmentRequest { csr_pem: "", institution_code: code, device: "1312345678/cpe" }
    }

    #[test]
    fn the_certificate_for_the_requested_key_comes_first() {
        let (body, csr, leaf) = issued();
        let code: InstitutionCode = "1312345678".parse().unwrap();
        // The body lists its CA first; line breaks in the base64 are allowed.
        let mut text = answer(&[body.ca_cert_der().to_vec(), leaf.clone()]);
        text.insert(10, b'\n');
        let issued = certificates_for(&text, &csr.spki_der, &request(&code)).unwrap();
        assert_eq!(issued.leaf_der, leaf);
        let blocks = pem::parse_many(&issued.chain_pem).unwrap();
        assert_eq!(
            blocks.iter().map(|b| b.contents().to_vec()).collect::<Vec<_>>(),
            [leaf, body.ca_cert_der().to_vec()]
        );
    }

    #[test]
    fn an_answer_for_another_key_or_institution_or_not_base64_is_unusable() {
        let (body, csr, leaf) = issued();
        let code: InstitutionCode = "1312345678".parse().unwrap();
        let only_ca = answer(&[body.ca_cert_der().to_vec()]);
        let e = certificates_for(&only_ca, &csr.spki_der, &request(&code)).unwrap_err();
        assert!(matches!(&e, EnrolError::BadAnswer(m) if m.contains("requested key")), "{e}");
        let other: InstitutionCode = "2712345678".parse().unwrap();
        let e = certificates_for(&answer(&[leaf]), &csr.spki_der, &request(&other)).unwrap_err();
        assert!(matches!(&e, EnrolError::BadAnswer(m) if m.contains("names institution 1312345678")), "{e}");
        let e = certificates_for(b"<html>maintenance</html>", &csr.spki_der, &request(&code)).unwrap_err();
        assert!(matches!(&e, EnrolError::BadAnswer(m) if m.contains("not base64")), "{e}");
        assert!(!e.is_retryable());
    }
}
