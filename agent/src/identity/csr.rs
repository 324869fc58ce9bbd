//! Making a key on the device and asking for its certificate (CSR).
//!
//! The key never leaves the device: it is kept as the pending key until the
//! certificate signed for it is imported. The CSR subject follows the
//! institution convention of [`cpe_common::institution`]: the code in
//! `serialNumber`, and a common name that contains it.

use cpe_common::institution::{InstitutionCode, SERIAL_NUMBER_OID_ARCS};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;

/// Key algorithms the device can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (default: small, fast on ARM).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

/// What goes into the CSR subject.
#[derive(Debug, Clone)]
pub struct CsrSubject<'a> {
    /// The institution code (also in the common name).
    pub institution_code: &'a InstitutionCode,
    /// Name shown before the code in the common name.
    pub common_name: Option<&'a str>,
    /// Organization (O).
    pub organization: Option<&'a str>,
    /// The unit (OU) naming this device among the institution's devices; the
    /// carrier's device id is `<code>/<unit>`, so a renewal must keep it.
    pub unit: Option<&'a str>,
}

/// A new key and its CSR.
#[derive(Debug)]
pub struct NewRequest {
    /// The private key (PKCS#8), to keep as pending.
    pub key: PrivateKeyDer<'static>,
    /// The PEM CSR to hand to the certification body.
    pub csr_pem: String,
}

/// Why a CSR could not be made.
#[derive(Debug, thiserror::Error)]
#[error("could not create the key or CSR: {0}")]
pub struct CsrError(#[from] rcgen::Error);

/// Generates a key of `algorithm` and a CSR for `subject`.
pub fn generate(subject: &CsrSubject<'_>, algorithm: KeyAlgorithm) -> Result<NewRequest, CsrError> {
    let alg = match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let key_pair = KeyPair::generate_for(alg)?;
    let code = subject.institution_code.as_str();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()), code);
    let cn = subject.common_name.map_or_else(|| code.to_owned(), |name| format!("{name} {code}"));
    dn.push(DnType::CommonName, cn);
    if let Some(org) = subject.organization {
        dn.push(DnType::OrganizationName, org);
    }
    if let Some(unit) = subject.unit {
        dn.push(DnType::OrganizationalUnitName, unit);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key_pair)?.pem()?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok(NewRequest { key, csr_pem })
}
