//! Test PKI: a certification-body CA and institution certificates made in
//! code with rcgen, and files in real-world encodings made with the `openssl`
//! command line (PKCS#12 modern and legacy, SEC1/PKCS#1 keys, SHA-1, RSA-1024).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cpe_agent::identity::material::Material;
use cpe_common::institution::{InstitutionCode, SERIAL_NUMBER_OID_ARCS};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

pub const CODE: &str = "1312345678";

pub fn code() -> InstitutionCode {
    CODE.parse().unwrap()
}

/// A certification-body CA.
pub struct Ca {
    pub cert: CertificateDer<'static>,
    pub pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(3650);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let cert = params.self_signed(&key).unwrap();
        Self { pem: cert.pem(), cert: cert.der().clone(), key, params }
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a leaf as described by `spec`.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        let key = KeyPair::generate_for(spec.alg).unwrap();
        self.issue_for(spec, &key)
    }

    pub fn issue_for(&self, spec: &LeafSpec, key: &KeyPair) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(serial) = &spec.serial_number {
            params
                .distinguished_name
                .push(DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()), serial.as_str());
        }
        params.distinguished_name.push(DnType::CommonName, spec.common_name.as_str());
        params.extended_key_usages.clone_from(&spec.eku);
        params.key_usages.clone_from(&spec.ku);
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(key, &issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Ca {
    /// A TLS server certificate for `name` (subjectAltName), signed by this CA.
    pub fn issue_server(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }
}

pub struct LeafSpec {
    pub serial_number: Option<String>,
    pub common_name: String,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub ku: Vec<KeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub alg: &'static SignatureAlgorithm,
}

impl Default for LeafSpec {
    fn default() -> Self {
        Self {
            serial_number: Some(CODE.into()),
            common_name: format!("Test Clinic {CODE}"),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ku: vec![KeyUsagePurpose::DigitalSignature],
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(365),
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key: PrivateKeyDer<'static>,
    pub key_pem: String,
}

impl Leaf {
    /// A PEM bundle: leaf, CA, key.
    pub fn bundle(&self, ca: &Ca) -> String {
        format!("{}{}{}", self.cert_pem, ca.pem, self.key_pem)
    }

    pub fn material(&self, ca: &Ca) -> Material {
        Material { certs: vec![self.cert.clone(), ca.cert.clone()], key: Some(self.key.clone_key()) }
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed for these tests (scripts/setup.sh installs it)");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// PKCS#12 encodings produced by the openssl tool.
#[derive(Debug, Clone, Copy)]
pub enum P12Kind {
    /// OpenSSL 3 default: PBES2/PBKDF2/AES-256-CBC, HMAC-SHA-256 MAC.
    Modern,
    /// `-legacy`: RC2-40 for certificates, 3DES for the key, SHA-1 MAC.
    LegacyRc2,
    /// 3DES for both, SHA-1 MAC (Windows export style).
    Legacy3Des,
}

/// Packs `cert.pem` + `key.pem` (+ `ca.pem`) in `dir` into a PKCS#12 file with `openssl pkcs12 -export`.
pub fn openssl_p12(
    dir: &Path,
    kind: P12Kind,
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    password: &str,
) -> PathBuf {
    let out = dir.join(format!("{kind:?}.p12"));
    let pass = format!("pass:{password}");
    let mut args = vec!["pkcs12", "-export", "-in", cert.to_str().unwrap(), "-inkey", key.to_str().unwrap()];
    if let Some(ca) = ca {
        args.extend(["-certfile", ca.to_str().unwrap()]);
    }
    args.extend(["-out", out.to_str().unwrap(), "-passout", &pass]);
    match kind {
        P12Kind::Modern => {}
        P12Kind::LegacyRc2 => args.push("-legacy"),
        P12Kind::Legacy3Des => {
            args.extend(["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"]);
        }
    }
    openssl(dir, &args);
    out
}

/// A CA and leaf made entirely by openssl, for what rcgen cannot make
/// (RSA keys, SHA-1 signatures). Returns (ca.pem, leaf.pem, key.pem) paths.
pub fn openssl_pki(dir: &Path, key_args: &[&str], digest: &str) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=OpenSSL Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let mut genkey = vec!["genpkey", "-out", "leaf.key"];
    genkey.extend_from_slice(key_args);
    openssl(dir, &genkey);
    let subj = format!("/serialNumber={CODE}/CN=OpenSSL Clinic {CODE}");
    openssl(dir, &["req", "-new", "-key", "leaf.key", "-out", "leaf.csr", "-subj", &subj]);
    write(
        dir,
        "ext.cnf",
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "365",
            &format!("-{digest}"),
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"))
}
