//! The library end to end: issue → PKCS#12 → read back (p12-keystore and
//! openssl), and CSR signing with CSRs made by rcgen and by openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::Path;

use cpe_common::institution::{InstitutionCode, SERIAL_NUMBER_OID_ARCS};
use cpe_provision::{
    write_pkcs12, write_pkcs12_with, CertificationBody, IssueRequest, KeySource, KeyType, Pkcs12Encryption,
    ProvisionError, Validity,
};
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use support::{assert_institution_profile, common_name, openssl, openssl_ok, parse, pem_certs};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

const CODE: &str = "1312345678";
const PASSWORD: &str = "correct horse 電池";

fn code() -> InstitutionCode {
    CODE.parse().unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A CA valid from ten years ago to ten years ahead, so that tests can issue
/// expired and not-yet-valid certificates under it.
fn ca() -> CertificationBody {
    CertificationBody::generate(
        "Test Certification Body",
        Validity::new(now() - Duration::days(3650), 7300).unwrap(),
    )
    .unwrap()
}

fn issue(ca: &CertificationBody, key: KeySource) -> cpe_provision::IssuedIdentity {
    let mut req = IssueRequest::new(code(), Validity::new(now(), 825).unwrap());
    req.name = "Sakura Clinic".into();
    req.key = key;
    ca.issue(&req).unwrap()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn p12_opens_with_the_password_and_holds_key_leaf_and_ca() {
    let ca = ca();
    for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519] {
        let id = issue(&ca, KeySource::Generate(key_type));
        let p12 = write_pkcs12(&id, PASSWORD).unwrap();
        let store = KeyStore::from_pkcs12(&p12, PASSWORD, Pkcs12ImportPolicy::Strict).unwrap();
        let (alias, chain) = store.private_key_chain().expect("one key with its chain");
        assert_eq!(alias, CODE);
        assert_eq!(chain.key().as_der(), id.key_pkcs8_der.as_slice());
        let certs: Vec<&[u8]> = chain.certs().iter().map(p12_keystore::Certificate::as_der).collect();
        assert_eq!(certs, [id.cert_der.as_slice(), ca.ca_cert_der()], "{key_type}: leaf then CA");

        let leaf = parse(&id.cert_der);
        assert_eq!(support::subject_serial_number(&leaf).as_deref(), Some(CODE));
        assert_eq!(common_name(&leaf), format!("Sakura Clinic {CODE}"));
        assert_institution_profile(&id.cert_der, ca.ca_cert_der(), false);
        let key = KeyPair::try_from(chain.key().as_der()).unwrap();
        assert_eq!(
            leaf.public_key().raw,
            key.subject_public_key_info().as_slice(),
            "key matches certificate"
        );
    }
}

#[test]
fn wrong_password_does_not_open_the_p12() {
    let id = issue(&ca(), KeySource::default());
    for encryption in [Pkcs12Encryption::Modern, Pkcs12Encryption::Legacy] {
        let p12 = write_pkcs12_with(&id, PASSWORD, encryption).unwrap();
        assert!(KeyStore::from_pkcs12(&p12, "wrong", Pkcs12ImportPolicy::Strict).is_err());
        assert!(KeyStore::from_pkcs12(&p12, PASSWORD, Pkcs12ImportPolicy::Strict).is_ok());
    }
    assert!(matches!(write_pkcs12(&id, ""), Err(ProvisionError::EmptyPassword)));
}

#[test]
fn openssl_reads_modern_and_legacy_p12_of_every_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    // openssl reads the first line of the password file, like read_password_file.
    write(dir.path(), "pw", format!("{PASSWORD}\n"));
    write(dir.path(), "bad-pw", "wrong\n");
    for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519] {
        let id = issue(&ca, KeySource::Generate(key_type));
        for (encryption, marker) in
            [(Pkcs12Encryption::Modern, "AES-256-CBC"), (Pkcs12Encryption::Legacy, "3-KeyTripleDES")]
        {
            write(dir.path(), "out.p12", write_pkcs12_with(&id, PASSWORD, encryption).unwrap());
            let (stdout, stderr) = openssl_ok(
                &["pkcs12", "-in", "out.p12", "-passin", "file:pw", "-nodes", "-info"],
                dir.path(),
            );
            assert!(stderr.contains(marker), "{key_type} {encryption:?}: {stderr}");
            assert_eq!(stdout.matches("-----BEGIN PRIVATE KEY-----").count(), 1, "{stdout}");
            assert_eq!(pem_certs(&stdout), [id.cert_der.clone(), ca.ca_cert_der().to_vec()]);

            let refused =
                openssl(&["pkcs12", "-in", "out.p12", "-passin", "file:bad-pw", "-nodes"], dir.path());
            assert!(!refused.status.success(), "openssl must refuse the wrong password");
        }
    }
}

#[test]
fn openssl_verifies_the_chain_for_client_use() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let id = issue(&ca, KeySource::default());
    write(dir.path(), "ca.pem", ca.ca_cert_pem());
    write(dir.path(), "leaf.pem", &id.cert_pem);
    let (stdout, _) =
        openssl_ok(&["verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "leaf.pem"], dir.path());
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn a_given_rsa_key_is_used_and_gets_key_encipherment() {
    let dir = tempfile::tempdir().unwrap();
    openssl_ok(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"],
        dir.path(),
    );
    let pem = std::fs::read_to_string(dir.path().join("rsa.pem")).unwrap();
    let ca = ca();
    let id = issue(&ca, KeySource::from_pkcs8_pem(&pem).unwrap());
    assert_institution_profile(&id.cert_der, ca.ca_cert_der(), true);
    assert_eq!(id.key_pem, pem, "the given key is passed through unchanged");

    write(dir.path(), "pw", PASSWORD);
    write(dir.path(), "out.p12", write_pkcs12(&id, PASSWORD).unwrap());
    let (stdout, _) = openssl_ok(&["pkcs12", "-in", "out.p12", "-passin", "file:pw", "-nodes"], dir.path());
    assert!(stdout.contains("BEGIN PRIVATE KEY"));
}

#[test]
fn validity_can_make_expired_and_not_yet_valid_certificates() {
    let ca = ca();
    let expired = (datetime!(2020-01-01 00:00 UTC), 30);
    let not_yet_valid = (now() + Duration::days(10), 1);
    for (not_before, days) in [expired, not_yet_valid] {
        let mut req = IssueRequest::new(code(), Validity::new(not_before, days).unwrap());
        req.device_id = Some("CPE-0042".into());
        let id = ca.issue(&req).unwrap();
        let cert = parse(&id.cert_der);
        assert_eq!(cert.validity().not_before.to_datetime(), id.not_before);
        assert_eq!(cert.validity().not_after.to_datetime(), id.not_after);
        assert_eq!((id.not_after - id.not_before).whole_days(), i64::from(days));
        assert!(!cert.validity().is_valid(), "not valid now");
    }
    assert_eq!(Validity::new(expired.0, expired.1).unwrap().not_after(), datetime!(2020-01-31 00:00 UTC));
}

/// A CSR made with rcgen, asking for much more than it may get.
fn greedy_csr(dn: DistinguishedName) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.subject_alt_names = vec![SanType::DnsName("evil.example".try_into().unwrap())];
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

fn institution_dn(serial: Option<&str>, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(serial) = serial {
        dn.push(DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()), serial);
    }
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "医療法人さくら");
    dn
}

fn validity() -> Validity {
    Validity::new(now(), 365).unwrap()
}

#[test]
fn csr_sign_forces_the_client_profile_and_keeps_key_and_subject() {
    let ca = ca();
    let (key, csr) = greedy_csr(institution_dn(Some(CODE), &format!("Sakura {CODE}")));
    let signed = ca.sign_csr(&csr, validity(), Some(&code())).unwrap();
    assert_eq!(signed.code, code());
    assert_eq!(pem_certs(&signed.chain_pem), [signed.cert_der.clone(), ca.ca_cert_der().to_vec()]);
    assert_institution_profile(&signed.cert_der, ca.ca_cert_der(), false);

    let cert = parse(&signed.cert_der);
    assert_eq!(cert.public_key().raw, key.subject_public_key_info().as_slice(), "the CSR's key");
    let csr_der = pem::parse(&csr).unwrap().into_contents();
    let (_, request) = X509CertificationRequest::from_der(&csr_der).unwrap();
    assert_eq!(cert.subject().as_raw(), request.certification_request_info.subject.as_raw());
}

#[test]
fn csr_with_the_code_only_in_the_common_name_is_accepted() {
    let (_, csr) = greedy_csr(institution_dn(None, CODE));
    assert_eq!(ca().sign_csr(&csr, validity(), None).unwrap().code, code());
}

#[test]
fn csr_without_code_or_for_another_institution_is_refused() {
    let ca = ca();
    let (_, no_code) = greedy_csr(institution_dn(None, "Sakura Clinic"));
    let err = ca.sign_csr(&no_code, validity(), None).unwrap_err();
    assert!(matches!(err, ProvisionError::NoInstitutionCode), "{err}");
    assert!(err.to_string().contains("serialNumber"));

    let (_, other) = greedy_csr(institution_dn(Some("2712345678"), "Other clinic"));
    let err = ca.sign_csr(&other, validity(), Some(&code())).unwrap_err();
    assert!(
        matches!(&err, ProvisionError::CodeMismatch { expected, found }
            if expected.as_str() == CODE && found.as_str() == "2712345678"),
        "{err}"
    );
}

#[test]
fn altered_or_foreign_input_is_refused() {
    let ca = ca();
    let (_, csr) = greedy_csr(institution_dn(Some(CODE), "Sakura Clinic"));
    let mut der = pem::parse(&csr).unwrap().into_contents();
    let at = der.windows(6).position(|w| w == b"Sakura").unwrap();
    der[at] = b'T';
    let altered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    assert!(matches!(ca.sign_csr(&altered, validity(), None), Err(ProvisionError::CsrBadSignature { .. })));
    assert!(matches!(
        ca.sign_csr(ca.ca_cert_pem(), validity(), None),
        Err(ProvisionError::CsrUnreadable { .. })
    ));
    assert!(matches!(
        ca.sign_csr("not pem at all", validity(), None),
        Err(ProvisionError::CsrUnreadable { .. })
    ));
}

#[test]
fn openssl_csrs_p384_with_sha256_and_rsa_are_signed_weak_rsa_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let subject = format!("/serialNumber={CODE}/CN=Sakura Clinic {CODE}");
    let make = |name: &str, keygen: &[&str]| {
        let key = format!("{name}.key");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(keygen);
        args.extend_from_slice(&["-out", &key]);
        openssl_ok(&args, dir.path());
        let csr = format!("{name}.csr");
        openssl_ok(&["req", "-new", "-sha256", "-key", &key, "-subj", &subject, "-out", &csr], dir.path());
        std::fs::read_to_string(dir.path().join(csr)).unwrap()
    };

    let p384 = make("p384", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    let signed = ca.sign_csr(&p384, validity(), Some(&code())).unwrap();
    assert_institution_profile(&signed.cert_der, ca.ca_cert_der(), false);

    let rsa = make("rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let signed = ca.sign_csr(&rsa, validity(), Some(&code())).unwrap();
    assert_institution_profile(&signed.cert_der, ca.ca_cert_der(), true);

    let weak = make("weak", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let err = ca.sign_csr(&weak, validity(), None).unwrap_err();
    assert!(matches!(err, ProvisionError::CsrKey { .. }), "{err}");
    assert!(err.to_string().contains("1024"), "{err}");

    // The signed certificate verifies with openssl for client use.
    write(dir.path(), "ca.pem", ca.ca_cert_pem());
    write(dir.path(), "rsa.crt", &signed.cert_pem);
    openssl_ok(&["verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "rsa.crt"], dir.path());
}

#[test]
fn truncated_or_corrupted_csrs_are_refused_without_panicking() {
    let ca = ca();
    let (_, csr) = greedy_csr(institution_dn(Some(CODE), "Sakura Clinic"));
    let der = pem::parse(&csr).unwrap().into_contents();
    let as_pem = |bytes: &[u8]| pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", bytes));
    for len in 0..der.len() {
        assert!(ca.sign_csr(&as_pem(&der[..len]), validity(), None).is_err(), "truncated at {len}");
    }
    for at in 0..der.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = der.clone();
            bad[at] ^= flip;
            // Any outcome but a panic is fine; a changed signed part must not verify.
            let _ = ca.sign_csr(&as_pem(&bad), validity(), None);
        }
    }
}
