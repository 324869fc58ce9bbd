//! Signing a device's certificate request: the key stays on the device
//! (`cpe-agent cert csr`), the carrier returns a certificate.
//!
//! The CSR is untrusted input. Its self-signature must verify (proof that the
//! requester holds the key); its subject must carry a valid institution code
//! (rules in [`crate::pki::subject`]) and, when the operator names one, that code.
//! The subject is copied unchanged. Everything else the CSR asks for —
//! extensions such as subjectAltName, other key usages, basicConstraints
//! CA:TRUE, attributes — is ignored: the certificate gets the fixed
//! institution-certificate profile of [`crate::pki::ca`].
//!
//! [`check_csr`] is the same check without signing: what an enrolment
//! backend that forwards the request to the certification body
//! ([`crate::enrol`]) does first.

use cpe_common::institution::InstitutionCode;
use rcgen::SubjectPublicKeyInfo;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::ca::{CertificationBody, LeafPurpose};
use crate::pki::encoding::{pem_blocks, CSR_TAGS};
use crate::pki::error::{ProvisionError, Result};
use crate::pki::keys::classify_spki;
use crate::pki::subject::{code_in_subject, copy_subject};
use crate::pki::validity::Validity;
use cpe_common::hex::encode as hex;

/// Largest CSR accepted, in bytes; real ones are well under 4 KiB.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// A certificate signed for a CSR.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    /// The institution code found in the CSR subject.
    pub code: InstitutionCode,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The certificate followed by the CA certificate (PEM).
    pub chain_pem: String,
    /// Certificate serial number (big-endian, positive).
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl SignedCertificate {
    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }
}

/// A certificate request whose self-signature verified and whose subject
/// carries a valid institution code: what an enrolment backend may pass on.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// The institution code in the subject.
    pub code: InstitutionCode,
    /// The request (DER), unchanged.
    pub csr_der: Vec<u8>,
    /// The requested public key (SubjectPublicKeyInfo, DER).
    pub spki_der: Vec<u8>,
}

/// Checks the PEM CSR `csr_pem` (see the module documentation); `expected_code`,
/// when given, must be the code in the CSR.
pub fn check_csr(csr_pem: &str, expected_code: Option<&InstitutionCode>) -> Result<CheckedCsr> {
    parse_checked(csr_pem, expected_code).map(|(checked, _)| checked)
}

fn parse_checked(
    csr_pem: &str,
    expected_code: Option<&InstitutionCode>,
) -> Result<(CheckedCsr, rcgen::DistinguishedName)> {
    let unreadable = |detail: String| ProvisionError::CsrUnreadable { detail };
    if csr_pem.len() > MAX_CSR_BYTES {
        return Err(unreadable(format!("{} bytes, more than {MAX_CSR_BYTES}", csr_pem.len())));
    }
    let blocks = pem_blocks(csr_pem).map_err(unreadable)?;
    let mut requests = blocks.iter().filter(|b| CSR_TAGS.contains(&b.tag()));
    let (Some(block), None) = (requests.next(), requests.next()) else {
        return Err(unreadable("expected exactly one CERTIFICATE REQUEST block".into()));
    };
    let (rest, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| unreadable(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(unreadable("trailing bytes after the request".into()));
    }
    let info = &csr.certification_request_info;
    // Key first: a weak RSA key would otherwise show up as a bad signature.
    let spki_der = info.subject_pki.raw;
    classify_spki(spki_der).map_err(|detail| ProvisionError::CsrKey { detail })?;
    csr.verify_signature().map_err(|e| ProvisionError::CsrBadSignature { detail: e.to_string() })?;

    let code = code_in_subject(&info.subject)?;
    if let Some(expected) = expected_code {
        if *expected != code {
            return Err(ProvisionError::CodeMismatch { expected: expected.clone(), found: code });
        }
    }
    let subject = copy_subject(&info.subject)?;
    let checked = CheckedCsr { code, csr_der: block.contents().to_vec(), spki_der: spki_der.to_vec() };
    Ok((checked, subject))
}

impl CertificationBody {
    /// Signs the PEM CSR `csr_pem` (see the module documentation for what is
    /// checked and what is ignored). `expected_code`, when given, must be the
    /// code in the CSR.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        validity: Validity,
        expected_code: Option<&InstitutionCode>,
    ) -> Result<SignedCertificate> {
        let (checked, subject) = parse_checked(csr_pem, expected_code)?;
        // The key algorithm comes from the key itself, not from the CSR's
        // signature algorithm (a P-384 key may sign its CSR with SHA-256).
        let public_key = SubjectPublicKeyInfo::from_der(&checked.spki_der)
            .map_err(|e| ProvisionError::CsrKey { detail: e.to_string() })?;
        let leaf = self.sign_leaf(subject, &public_key, &validity, &LeafPurpose::InstitutionClient)?;
        ensure_same_key(&leaf.cert_der, &checked.spki_der)?;

        Ok(SignedCertificate {
            code: checked.code,
            chain_pem: format!("{}{}", leaf.cert_pem, self.ca_cert_pem()),
            cert_der: leaf.cert_der,
            cert_pem: leaf.cert_pem,
            serial: leaf.serial,
            not_before: validity.not_before(),
            not_after: validity.not_after(),
        })
    }
}

/// Defence in depth: the certificate must carry the CSR's public key byte for
/// byte (re-encoding must not have altered the algorithm parameters).
pub(crate) fn ensure_same_key(cert_der: &[u8], spki_der: &[u8]) -> Result<()> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(ProvisionError::signing)?;
    if cert.public_key().raw == spki_der {
        Ok(())
    } else {
        Err(ProvisionError::CsrKey {
            detail: "this key encoding cannot be reproduced exactly in a certificate".into(),
        })
    }
}
