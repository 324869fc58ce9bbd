//! The test certification body (機関認証主体): its CA key and certificate, how
//! they are created, stored and loaded, and the common part of signing an
//! institution certificate (serial number, validity, key usages, extensions).
//!
//! In production a real certification body issues institution certificates;
//! this CA exists for demonstrations and tests. It is an ECDSA P-256 CA
//! (keyCertSign, cRLSign, basicConstraints CA with path length 0) kept in a
//! directory as `ca.pem` (certificate, mode 0644) and `ca.key` (PKCS#8 PEM,
//! mode 0600), both written with [`cpe_common::durable::write_atomic`].
//!
//! What an institution certificate contains is decided here for both ways of
//! issuing one ([`crate::pki::issue`] and [`crate::pki::csr`]): a random positive
//! 16-byte serial, EKU clientAuth only, KU digitalSignature (plus
//! keyEncipherment for RSA keys), basicConstraints CA:FALSE, subject and
//! authority key identifiers, and a validity that does not outlast the CA.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use cpe_common::durable::{write_atomic, OsStorage, Storage, MODE_PUBLIC, MODE_SECRET};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::pki::encoding::{pem_blocks, pem_encode, CERTIFICATE_TAG};
use crate::pki::error::{ProvisionError, Result};
use crate::pki::keys::{classify_spki, KeyKind};
use crate::pki::subject::ca_subject;
use crate::pki::validity::Validity;

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Name of the test CA when none is given.
pub const DEFAULT_CA_NAME: &str = "Test Certification Body";
/// Default validity of the test CA, in days.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Length of the random serial numbers, in bytes.
pub const SERIAL_LEN: usize = 16;

/// A certification body's CA: signing key and certificate.
pub struct CertificationBody {
    key: KeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: OffsetDateTime,
}

impl fmt::Debug for CertificationBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificationBody").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl CertificationBody {
    /// Creates a new CA in memory (not stored): ECDSA P-256 key, self-signed
    /// certificate with subject `CN=<name>`.
    pub fn generate(name: &str, validity: Validity) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_subject(name)?;
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| ProvisionError::KeyGeneration { detail: e.to_string() })?;
        let cert = params.self_signed(&key).map_err(ProvisionError::signing)?;
        Ok(Self { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key, not_after: validity.not_after() })
    }

    /// Creates a new CA and stores it in `dir` (created with mode 0700 if
    /// missing). Refuses to replace an existing CA unless `force`.
    pub fn init(dir: &Path, name: &str, validity: Validity, force: bool) -> Result<Self> {
        refuse_existing(dir, force)?;
        let ca = Self::generate(name, validity)?;
        ca.save(dir, force)?;
        Ok(ca)
    }

    /// Stores this CA in `dir`: the key first, then the certificate, each
    /// atomically, so that a crash never leaves a half-written file (and
    /// [`CertificationBody::load`] detects a key without its certificate).
    pub fn save(&self, dir: &Path, force: bool) -> Result<()> {
        refuse_existing(dir, force)?;
        let storage = OsStorage;
        storage.create_dir_all(dir).map_err(|e| ProvisionError::io("create directory", dir, e))?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = self.key.serialize_pem();
        write_atomic(&storage, &key_path, key_pem.as_bytes(), MODE_SECRET)
            .map_err(|e| ProvisionError::io("write", key_path, e))?;
        let cert_path = dir.join(CA_CERT_FILE);
        write_atomic(&storage, &cert_path, self.cert_pem.as_bytes(), MODE_PUBLIC)
            .map_err(|e| ProvisionError::io("write", cert_path, e))
    }

    /// Loads the CA stored in `dir` and checks that key and certificate
    /// belong together and that the certificate is a CA certificate.
    pub fn load(dir: &Path) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_text = read_ca_file(dir, &cert_path)?;
        let key_text = read_ca_file(dir, &key_path)?;

        let invalid =
            |path: &Path, detail: String| ProvisionError::CaInvalid { path: path.to_owned(), detail };
        let key = KeyPair::from_pem(&key_text)
            .map_err(|e| invalid(&key_path, format!("not an unencrypted PKCS#8 private key: {e}")))?;
        let blocks = pem_blocks(&cert_text).map_err(|e| invalid(&cert_path, e))?;
        let mut certs = blocks.into_iter().filter(|b| b.tag() == CERTIFICATE_TAG);
        let (Some(block), None) = (certs.next(), certs.next()) else {
            return Err(invalid(&cert_path, "expected exactly one CERTIFICATE block".into()));
        };
        let cert_der = block.into_contents();
        let (rest, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|e| invalid(&cert_path, format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid(&cert_path, "trailing bytes after the certificate".into()));
        }
        if !cert.is_ca() {
            return Err(invalid(&cert_path, "not a CA certificate".into()));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(ProvisionError::CaKeyMismatch { dir: dir.to_owned() });
        }
        let not_after = cert.validity().not_after.to_datetime();
        Ok(Self { cert_pem: pem_encode(CERTIFICATE_TAG, &cert_der), cert_der, key, not_after })
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// End of validity of the CA certificate.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs a leaf certificate for `public_key` with `subject` and the
    /// institution-certificate profile (see the module documentation).
    pub(crate) fn sign_leaf(
        &self,
        subject: DistinguishedName,
        public_key: &impl PublicKeyData,
        validity: &Validity,
        purpose: &LeafPurpose,
    ) -> Result<Leaf> {
        let not_after = validity.not_after();
        if not_after > self.not_after {
            return Err(ProvisionError::OutlivesCa { not_after, ca_not_after: self.not_after });
        }
        let kind = classify_spki(&public_key.subject_public_key_info())
            .map_err(|detail| ProvisionError::UnsupportedKey { detail })?;
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.not_before = validity.not_before();
        params.not_after = not_after;
        params.serial_number = Some(serial.clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if kind == KeyKind::Rsa {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        match purpose {
            LeafPurpose::InstitutionClient => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            LeafPurpose::Server { names } => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names = names
                    .iter()
                    .map(|name| match name.parse::<std::net::IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => is_dns_name(name)
                            .then(|| name.as_str().try_into().ok())
                            .flatten()
                            .map(SanType::DnsName)
                            .ok_or_else(|| ProvisionError::InvalidName {
                                name: name.clone(),
                                reason: "not a DNS name or IP address".into(),
                            }),
                    })
                    .collect::<Result<_>>()?;
            }
        }
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(ProvisionError::signing)?;
        let cert: Certificate = params.signed_by(public_key, &issuer).map_err(ProvisionError::signing)?;
        Ok(Leaf { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), serial: serial.to_bytes() })
    }
}

/// A host name of letters, digits and hyphens in dot-separated labels of
/// 1 to 63 characters (RFC 1123), at most 253 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeafPurpose {
    /// An institution (device) client certificate: EKU clientAuth only.
    InstitutionClient,
    /// The carrier server's TLS certificate: EKU serverAuth, these SANs.
    Server {
        /// DNS names or IP addresses.
        names: Vec<String>,
    },
}

/// A freshly signed leaf certificate.
pub(crate) struct Leaf {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) cert_pem: String,
    pub(crate) serial: Vec<u8>,
}

fn refuse_existing(dir: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    for file in [CA_CERT_FILE, CA_KEY_FILE] {
        let path = dir.join(file);
        match path.symlink_metadata() {
            Ok(_) => return Err(ProvisionError::CaExists { dir: dir.to_owned() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ProvisionError::io("inspect", path, e)),
        }
    }
    Ok(())
}

fn read_ca_file(dir: &Path, path: &Path) -> Result<String> {
    match OsStorage.read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| ProvisionError::CaInvalid {
            path: path.to_owned(),
            detail: "not a PEM text file".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ProvisionError::CaMissing { dir: dir.to_owned(), path: PathBuf::from(path) })
        }
        Err(e) => Err(ProvisionError::io("read", path, e)),
    }
}

/// A random positive serial of exactly [`SERIAL_LEN`] bytes: the top bit is
/// cleared (positive) and the next one set (no leading zero byte to strip).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; SERIAL_LEN];
    SystemRandom::new().fill(&mut bytes).map_err(|_| ProvisionError::KeyGeneration {
        detail: "the system random number generator failed".into(),
    })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use time::macros::datetime;

    fn validity() -> Validity {
        Validity::new(datetime!(2025-01-01 00:00 UTC), 3650).unwrap()
    }

    #[test]
    fn init_then_load_gives_the_same_ca_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = CertificationBody::init(&ca_dir, DEFAULT_CA_NAME, validity(), false).unwrap();
        let loaded = CertificationBody::load(&ca_dir).unwrap();
        assert_eq!(loaded.ca_cert_der(), ca.ca_cert_der());
        assert_eq!(loaded.ca_cert_pem(), ca.ca_cert_pem());
        assert_eq!(loaded.not_after(), datetime!(2034-12-30 00:00 UTC));
        let mode = |f: &str| std::fs::metadata(ca_dir.join(f)).unwrap().mode() & 0o777;
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode(CA_CERT_FILE), 0o644);
        assert_eq!(
            std::fs::metadata(&ca_dir).unwrap().mode() & 0o777,
            0o700,
            "a new CA directory is private"
        );

        let (_, cert) = X509Certificate::from_der(ca.ca_cert_der()).unwrap();
        assert!(cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert_eq!(cert.subject().to_string(), "CN=Test Certification Body");
        assert_eq!(cert.raw_serial().len(), SERIAL_LEN);
        cert.verify_signature(None).unwrap();
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificationBody::init(dir.path(), "A", validity(), false).unwrap();
        let err = CertificationBody::init(dir.path(), "B", validity(), false).unwrap_err();
        assert!(matches!(err, ProvisionError::CaExists { .. }));
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            CertificationBody::load(dir.path()).unwrap().ca_cert_der(),
            first.ca_cert_der(),
            "the refused init changed nothing"
        );
        let second = CertificationBody::init(dir.path(), "B", validity(), true).unwrap();
        assert_ne!(second.ca_cert_der(), first.ca_cert_der());
        assert_eq!(CertificationBody::load(dir.path()).unwrap().ca_cert_der(), second.ca_cert_der());
    }

    #[test]
    fn load_reports_missing_and_mismatched_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = CertificationBody::load(dir.path()).unwrap_err();
        assert!(matches!(err, ProvisionError::CaMissing { .. }));
        assert!(err.to_string().contains("ca init"));

        let a = tempfile::tempdir().unwrap();
        CertificationBody::init(a.path(), "A", validity(), false).unwrap();
        CertificationBody::init(dir.path(), "B", validity(), false).unwrap();
        std::fs::copy(a.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        assert!(matches!(CertificationBody::load(dir.path()), Err(ProvisionError::CaKeyMismatch { .. })));

        std::fs::write(dir.path().join(CA_CERT_FILE), "garbage").unwrap();
        assert!(matches!(CertificationBody::load(dir.path()), Err(ProvisionError::CaInvalid { .. })));
    }

    #[test]
    fn serials_are_positive_and_full_length() {
        for _ in 0..64 {
            let s = random_serial().unwrap().to_bytes();
            assert_eq!(s.len(), SERIAL_LEN);
            assert_eq!(s[0] & 0xc0, 0x40);
        }
    }
}
