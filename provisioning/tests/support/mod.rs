//! Helpers shared by the integration tests: the openssl CLI as an independent
//! reader, and certificate inspection with x509-parser.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use x509_parser::prelude::{FromDer, X509Certificate};

/// Runs `openssl` with `args`; fails the test with a clear message when the
/// openssl CLI is not installed.
pub fn openssl(args: &[&str], dir: &Path) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "these tests use the openssl CLI as an independent reader, but `openssl` is not installed; install it (apt-get install openssl)"
        ),
        Err(e) => panic!("could not run openssl: {e}"),
    }
}

/// Runs `openssl` and fails the test unless it succeeds; returns stdout and stderr.
pub fn openssl_ok(args: &[&str], dir: &Path) -> (String, String) {
    let out = openssl(args, dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "openssl {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// DER certificates of a PEM text, in order.
pub fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect()
}

/// Parses a DER certificate (no trailing bytes).
pub fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

/// The subject serialNumber attribute (2.5.4.5) as text.
pub fn subject_serial_number(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject().iter_attributes().find_map(|attr| {
        let arcs: Vec<u64> = attr.attr_type().iter()?.collect();
        (arcs == cpe_common::institution::SERIAL_NUMBER_OID_ARCS).then(|| attr.as_str().unwrap().to_owned())
    })
}

/// The subject common name.
pub fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned()
}

/// Checks the institution-certificate profile: EKU clientAuth only,
/// KU digitalSignature (+ keyEncipherment when `rsa`), not a CA, signed by
/// `ca_der`'s key and issued under its subject.
pub fn assert_institution_profile(leaf_der: &[u8], ca_der: &[u8], rsa: bool) {
    let leaf = parse(leaf_der);
    let ca = parse(ca_der);
    let eku = leaf.extended_key_usage().unwrap().expect("EKU present").value;
    assert!(eku.client_auth, "clientAuth");
    assert!(!eku.server_auth && !eku.any && !eku.code_signing && eku.other.is_empty());
    let ku = leaf.key_usage().unwrap().expect("KU present").value;
    assert!(ku.digital_signature());
    assert_eq!(ku.key_encipherment(), rsa);
    assert!(!ku.key_cert_sign() && !ku.crl_sign());
    let bc = leaf.basic_constraints().unwrap().expect("basicConstraints present").value;
    assert!(!bc.ca);
    assert!(leaf.subject_alternative_name().unwrap().is_none(), "no SAN");
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    leaf.verify_signature(Some(ca.public_key())).expect("signed by the CA");
    let serial = leaf.raw_serial();
    assert_eq!(serial.len(), 16);
    assert_eq!(serial[0] & 0x80, 0, "positive serial");
}
