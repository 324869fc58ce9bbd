//! The `cpe-provision` binary as an operator uses it, with openssl as the
//! independent reader of what it writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use support::{assert_institution_profile, openssl_ok, parse, pem_certs, subject_serial_number};
use time::macros::datetime;

const CODE: &str = "1312345678";

fn provision(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpe-provision")).args(args).current_dir(dir).output().unwrap()
}

fn provision_ok(args: &[&str], dir: &Path) -> String {
    let out = provision(args, dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs a command that must fail with exit status 1; returns stderr.
fn provision_err(args: &[&str], dir: &Path) -> String {
    let out = provision(args, dir);
    assert_eq!(out.status.code(), Some(1), "{args:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A temp dir with a CA in `ca/` and a password file `pw`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    provision_ok(&["ca", "init", "--dir", "ca"], dir.path());
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    dir
}

#[test]
fn ca_init_writes_private_key_and_refuses_to_overwrite_without_force() {
    let dir = setup();
    let ca = dir.path().join("ca");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert_eq!(mode(&ca.join("ca.pem")), 0o644);
    let first = read(&ca, "ca.pem");
    assert!(read(&ca, "ca.key").starts_with("-----BEGIN PRIVATE KEY-----"));
    let (subject, _) = openssl_ok(&["x509", "-in", "ca/ca.pem", "-noout", "-subject"], dir.path());
    assert!(subject.contains("Test Certification Body"), "{subject}");

    let stderr = provision_err(&["ca", "init", "--dir", "ca", "--name", "Other"], dir.path());
    assert!(stderr.contains("already exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(read(&ca, "ca.pem"), first, "unchanged");

    provision_ok(&["ca", "init", "--dir", "ca", "--name", "Other", "--force"], dir.path());
    assert_ne!(read(&ca, "ca.pem"), first);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
}

#[test]
fn cert_issue_writes_a_p12_openssl_reads_and_pem_files() {
    let dir = setup();
    let stdout = provision_ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--institution",
            CODE,
            "--out",
            "clinic.p12",
            "--password-file",
            "pw",
            "--name",
            "Sakura Clinic",
            "--device-id",
            "CPE-0001",
            "--pem-out",
            "clinic",
        ],
        dir.path(),
    );
    assert!(stdout.contains(CODE), "{stdout}");
    assert_eq!(mode(&dir.path().join("clinic.p12")), 0o600);
    assert_eq!(mode(&dir.path().join("clinic.key.pem")), 0o600);

    let (p12_text, info) =
        openssl_ok(&["pkcs12", "-in", "clinic.p12", "-passin", "file:pw", "-nodes", "-info"], dir.path());
    assert!(info.contains("AES-256-CBC"), "modern encryption by default: {info}");
    let chain = read(dir.path(), "clinic.crt.pem");
    assert_eq!(pem_certs(&p12_text), pem_certs(&chain), "p12 and PEM hold the same chain");
    let certs = pem_certs(&chain);
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1], pem_certs(&read(dir.path(), "ca/ca.pem"))[0]);
    assert_institution_profile(&certs[0], &certs[1], false);
    let leaf = parse(&certs[0]);
    assert_eq!(subject_serial_number(&leaf).as_deref(), Some(CODE));
    assert_eq!(
        leaf.subject().to_string(),
        format!("O=Sakura Clinic, OU=CPE-0001, CN=Sakura Clinic {CODE}, serialNumber={CODE}")
    );

    // openssl accepts key and chain for TLS client use.
    openssl_ok(&["verify", "-purpose", "sslclient", "-CAfile", "ca/ca.pem", "clinic.crt.pem"], dir.path());
    let (key_pub, _) = openssl_ok(&["pkey", "-in", "clinic.key.pem", "-pubout"], dir.path());
    let (cert_pub, _) = openssl_ok(&["x509", "-in", "clinic.crt.pem", "-noout", "-pubkey"], dir.path());
    assert_eq!(key_pub, cert_pub);
}

#[test]
fn cert_issue_makes_expired_and_legacy_test_certificates() {
    let dir = setup();
    provision_ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--institution",
            CODE,
            "--out",
            "old.p12",
            "--password-file",
            "pw",
            "--not-before",
            "2020-01-01T09:00:00+09:00",
            "--days",
            "30",
            "--key-type",
            "ed25519",
            "--legacy-pkcs12",
            "--pem-out",
            "old",
        ],
        dir.path(),
    );
    let (_, info) =
        openssl_ok(&["pkcs12", "-in", "old.p12", "-passin", "file:pw", "-nodes", "-info"], dir.path());
    assert!(info.contains("3-KeyTripleDES"), "{info}");
    let certs = pem_certs(&read(dir.path(), "old.crt.pem"));
    let leaf = parse(&certs[0]);
    assert_eq!(leaf.validity().not_before.to_datetime(), datetime!(2020-01-01 00:00 UTC));
    assert_eq!(leaf.validity().not_after.to_datetime(), datetime!(2020-01-31 00:00 UTC));
}

#[test]
fn cert_issue_explains_refusals() {
    let dir = setup();
    let issue = |extra: &[&str], pw: &str| {
        let mut args = vec![
            "cert",
            "issue",
            "--ca",
            "ca",
            "--institution",
            CODE,
            "--out",
            "x.p12",
            "--password-file",
            pw,
        ];
        args.extend_from_slice(extra);
        provision_err(&args, dir.path())
    };
    let stderr = issue(&["--key-type", "rsa2048"], "pw");
    assert!(stderr.contains("RSA key generation is not supported by cpe-provision"), "{stderr}");
    assert!(stderr.contains("openssl"), "{stderr}");

    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let stderr = issue(&[], "empty");
    assert!(stderr.contains("password is empty"), "{stderr}");

    let stderr = issue(&["--days", "36500"], "pw");
    assert!(stderr.contains("CA expires"), "{stderr}");

    let stderr = provision_err(
        &[
            "cert",
            "issue",
            "--ca",
            "nowhere",
            "--institution",
            CODE,
            "--out",
            "x.p12",
            "--password-file",
            "pw",
        ],
        dir.path(),
    );
    assert!(stderr.contains("ca init"), "{stderr}");
    assert!(!dir.path().join("x.p12").exists(), "nothing written on refusal");

    let usage = provision(
        &["cert", "issue", "--ca", "ca", "--institution", "123", "--out", "x", "--password-file", "pw"],
        dir.path(),
    );
    assert_eq!(usage.status.code(), Some(2), "bad code is a usage error");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("10 ASCII digits"));
}

#[test]
fn cert_issue_uses_an_openssl_rsa_key() {
    let dir = setup();
    openssl_ok(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"],
        dir.path(),
    );
    provision_ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--institution",
            CODE,
            "--out",
            "rsa.p12",
            "--password-file",
            "pw",
            "--key-file",
            "rsa.pem",
            "--pem-out",
            "rsa",
        ],
        dir.path(),
    );
    let certs = pem_certs(&read(dir.path(), "rsa.crt.pem"));
    assert_institution_profile(&certs[0], &certs[1], true);
    openssl_ok(&["pkcs12", "-in", "rsa.p12", "-passin", "file:pw", "-nodes", "-info"], dir.path());
}

#[test]
fn csr_sign_signs_an_openssl_csr_for_the_right_institution_only() {
    let dir = setup();
    openssl_ok(
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "dev.key"],
        dir.path(),
    );
    let subject = format!("/serialNumber={CODE}/CN=Sakura Clinic {CODE}");
    openssl_ok(&["req", "-new", "-key", "dev.key", "-subj", &subject, "-out", "dev.csr"], dir.path());

    let stderr = provision_err(
        &["csr", "sign", "--ca", "ca", "dev.csr", "--out", "dev.crt", "--institution", "2712345678"],
        dir.path(),
    );
    assert!(stderr.contains("not 2712345678"), "{stderr}");
    assert!(!dir.path().join("dev.crt").exists());

    let stdout = provision_ok(
        &["csr", "sign", "--ca", "ca", "dev.csr", "--out", "dev.crt", "--institution", CODE, "--days", "90"],
        dir.path(),
    );
    assert!(stdout.contains(CODE), "{stdout}");
    openssl_ok(&["verify", "-purpose", "sslclient", "-CAfile", "ca/ca.pem", "dev.crt"], dir.path());
    let certs = pem_certs(&read(dir.path(), "dev.crt"));
    assert_institution_profile(&certs[0], &certs[1], false);
    let leaf = parse(&certs[0]);
    let validity = leaf.validity();
    assert_eq!((validity.not_after.to_datetime() - validity.not_before.to_datetime()).whole_days(), 90);
    let (key_pub, _) = openssl_ok(&["pkey", "-in", "dev.key", "-pubout"], dir.path());
    let (cert_pub, _) = openssl_ok(&["x509", "-in", "dev.crt", "-noout", "-pubkey"], dir.path());
    assert_eq!(key_pub, cert_pub, "the device's key");

    openssl_ok(
        &["req", "-new", "-key", "dev.key", "-subj", "/CN=Sakura Clinic", "-out", "nocode.csr"],
        dir.path(),
    );
    let stderr = provision_err(&["csr", "sign", "--ca", "ca", "nocode.csr", "--out", "x.crt"], dir.path());
    assert!(stderr.contains("no institution code"), "{stderr}");
}

#[test]
fn operator_add_list_passwd_disable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw"), "long enough password\n").unwrap();
    std::fs::write(d.join("short"), "short\n").unwrap();
    let db = ["--database", "sqlite:ops.db"];
    let with_db = |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(db).collect() };

    let out = provision_ok(
        &with_db(&["operator", "add", "kato", "--role", "compliance", "--password-file", "pw"]),
        d,
    );
    assert!(out.contains("kato") && out.contains("compliance"), "{out}");
    provision_ok(&with_db(&["operator", "add", "yamada", "--role", "viewer", "--password-file", "pw"]), d);
    let err =
        provision_err(&with_db(&["operator", "add", "kato", "--role", "viewer", "--password-file", "pw"]), d);
    assert!(err.contains("exists already"), "{err}");
    let err = provision_err(
        &with_db(&["operator", "add", "sato", "--role", "viewer", "--password-file", "short"]),
        d,
    );
    assert!(err.contains("at least 12"), "{err}");
    let err =
        provision_err(&with_db(&["operator", "add", "a b", "--role", "viewer", "--password-file", "pw"]), d);
    assert!(err.contains("not usable"), "{err}");

    let list = provision_ok(&with_db(&["operator", "list"]), d);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].starts_with("kato") && lines[1].contains("compliance") && lines[1].contains("enabled"),
        "{list}"
    );
    assert!(lines[2].starts_with("yamada") && lines[2].contains("viewer"), "{list}");
    assert!(!list.contains("argon2"), "{list}");

    provision_ok(&with_db(&["operator", "passwd", "yamada", "--password-file", "pw"]), d);
    let err = provision_err(&with_db(&["operator", "passwd", "nobody", "--password-file", "pw"]), d);
    assert!(err.contains("no operator named"), "{err}");
    provision_ok(&with_db(&["operator", "disable", "yamada"]), d);
    let err = provision_err(&with_db(&["operator", "disable", "yamada"]), d);
    assert!(err.contains("disabled already"), "{err}");

    let json: serde_json::Value =
        serde_json::from_str(&provision_ok(&with_db(&["operator", "list", "--json"]), d)).unwrap();
    assert_eq!(json[0]["name"], "kato");
    assert!(json[0]["disabled_at_ms"].is_null());
    assert!(json[1]["disabled_at_ms"].is_i64(), "{json}");
    assert!(json[1].get("password_hash").is_none(), "{json}");
}
