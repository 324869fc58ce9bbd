//! Issuing an institution identity in one step: the carrier (acting for the
//! certification body) creates the key and the certificate and hands both to
//! the installer, usually as a password-protected PKCS#12 file
//! ([`crate::pki::pkcs12`]). The alternative, where the key never leaves the
//! device, is [`crate::pki::csr`].

use cpe_common::hex::encode as hex;
use std::fmt;

use cpe_common::institution::InstitutionCode;
use time::OffsetDateTime;

use crate::pki::ca::{CertificationBody, LeafPurpose};
use crate::pki::encoding::{pem_encode, PRIVATE_KEY_TAG};
use crate::pki::error::Result;
use crate::pki::keys::KeySource;
use crate::pki::subject::{institution_subject, DEFAULT_INSTITUTION_NAME};
use crate::pki::validity::Validity;

/// Default validity of an institution certificate, in days.
pub const DEFAULT_CERT_DAYS: u32 = 825;

/// What to put in an institution certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The institution's 10-digit code (subject serialNumber and in the CN).
    pub code: InstitutionCode,
    /// Institution name: subject O, and CN `"<name> <code>"`. At most 53
    /// characters, no 10-digit number in it.
    pub name: String,
    /// Identifier of the device the certificate is meant for (subject OU).
    pub device_id: Option<String>,
    /// Generate a key, or use a given one.
    pub key: KeySource,
    /// Validity period (the caller's clock).
    pub validity: Validity,
}

impl IssueRequest {
    /// A request for `code` with the default name, no device id and a
    /// generated ECDSA P-256 key.
    pub fn new(code: InstitutionCode, validity: Validity) -> Self {
        Self {
            code,
            name: DEFAULT_INSTITUTION_NAME.to_owned(),
            device_id: None,
            key: KeySource::default(),
            validity,
        }
    }
}

/// An issued institution identity: key, certificate and chain.
#[derive(Clone)]
pub struct IssuedIdentity {
    /// The institution code in the certificate.
    pub code: InstitutionCode,
    /// The institution certificate (DER).
    pub cert_der: Vec<u8>,
    /// The institution certificate (PEM).
    pub cert_pem: String,
    /// Institution certificate followed by the CA certificate (PEM).
    pub chain_pem: String,
    /// The CA certificate (DER).
    pub ca_cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER. Secret.
    pub key_pkcs8_der: Vec<u8>,
    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`). Secret.
    pub key_pem: String,
    /// Certificate serial number (big-endian, positive).
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl IssuedIdentity {
    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }
}

impl fmt::Debug for IssuedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedIdentity")
            .field("code", &self.code)
            .field("serial", &self.serial_hex())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificationBody {
    /// Creates a key (or takes the given one) and an institution certificate
    /// for it, signed by this CA.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedIdentity> {
        // Check the cheap things before generating a key.
        let subject = institution_subject(&request.code, &request.name, request.device_id.as_deref())?;
        let key = request.key.key_pair()?;
        let leaf = self.sign_leaf(subject, &key, &request.validity, &LeafPurpose::InstitutionClient)?;
        let key_pkcs8_der = key.serialize_der();
        Ok(IssuedIdentity {
            code: request.code.clone(),
            chain_pem: format!("{}{}", leaf.cert_pem, self.ca_cert_pem()),
            cert_der: leaf.cert_der,
            cert_pem: leaf.cert_pem,
            ca_cert_der: self.ca_cert_der().to_vec(),
            key_pem: pem_encode(PRIVATE_KEY_TAG, &key_pkcs8_der),
            key_pkcs8_der,
            serial: leaf.serial,
            not_before: request.validity.not_before(),
            not_after: request.validity.not_after(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pki::error::ProvisionError;
    use crate::pki::keys::KeyType;
    use time::macros::datetime;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn ca() -> CertificationBody {
        let v = Validity::new(datetime!(2025-01-01 00:00 UTC), 3650).unwrap();
        CertificationBody::generate("Test CA", v).unwrap()
    }

    fn request(days: u32) -> IssueRequest {
        let v = Validity::new(datetime!(2025-02-01 00:00 UTC), days).unwrap();
        IssueRequest::new("1312345678".parse().unwrap(), v)
    }

    #[test]
    fn issued_certificate_follows_the_profile() {
        let ca = ca();
        let mut req = request(DEFAULT_CERT_DAYS);
        req.name = "Sakura Clinic".into();
        req.device_id = Some("CPE-0001".into());
        let id = ca.issue(&req).unwrap();
        let (_, cert) = X509Certificate::from_der(&id.cert_der).unwrap();
        assert_eq!(
            cert.subject().to_string(),
            "O=Sakura Clinic, OU=CPE-0001, CN=Sakura Clinic 1312345678, serialNumber=1312345678"
        );
        assert_eq!(cert.raw_serial(), id.serial.as_slice());
        assert_eq!(cert.validity().not_before.to_datetime(), id.not_before);
        assert_eq!(cert.validity().not_after.to_datetime(), id.not_after);
        assert!(!cert.is_ca());
        assert!(id.chain_pem.ends_with(ca.ca_cert_pem()));
        assert!(id.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{id:?}").contains("key"), "Debug hides the key");
    }

    #[test]
    fn a_certificate_may_not_outlive_its_ca() {
        let err = ca().issue(&request(3650)).unwrap_err();
        assert!(matches!(err, ProvisionError::OutlivesCa { .. }));
        assert!(err.to_string().contains("2034-12-30T00:00:00Z"), "{err}");
    }

    #[test]
    fn rsa_generation_is_refused_before_anything_is_made() {
        let mut req = request(30);
        req.key = KeySource::Generate(KeyType::Rsa2048);
        assert!(matches!(ca().issue(&req), Err(ProvisionError::RsaKeyGenerationUnsupported { bits: 2048 })));
    }
}
