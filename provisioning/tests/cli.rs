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
fn operator_commands_refuse_a_missing_store_and_create_one_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    let url = format!("sqlite:{}", db.display());
    for args in [
        vec!["devices", "--database", &url],
        vec!["order", "list", "--database", &url],
        vec!["device", "show", "1312345678/x", "--database", &url],
        vec!["case", "show", "1", "--database", &url],
    ] {
        let out = provision(&args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} must not run: {stderr}");
        assert!(stderr.contains("no store at") && stderr.contains("--create"), "{args:?}: {stderr}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // The default store (carrier.db in the working directory) is not created either.
    assert_eq!(provision(&["alerts"], dir.path()).status.code(), Some(2));
    assert!(!dir.path().join("carrier.db").exists());

    // An explicit --create makes an empty store; afterwards no flag is needed.
    let out = provision_ok(&["devices", "--json", "--create", "--database", &url], dir.path());
    assert_eq!(out.trim(), "[]", "{out}");
    assert!(db.exists());
    provision_ok(&["order", "list", "--database", &url], dir.path());
}

/// A store in `dir` holding devices whose certificates end at the given Unix seconds.
fn store_with_certificates(dir: &Path, devices: &[(&str, Option<i64>)]) -> String {
    use cpe_provision::store::{Database, DeviceSeen, IngestRecord, ReportKind};
    let url = format!("sqlite:{}", dir.join("carrier.db").display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let db = Database::open(&url).await.unwrap();
        for (id, not_after) in devices {
            let seen = DeviceSeen {
                id: format!("{CODE}/{id}"),
                institution_code: CODE.into(),
                cert_not_after: *not_after,
            };
            let record = IngestRecord {
                seq: 1,
                at_unix_ms: 0,
                kind: ReportKind::Heartbeat,
                body: vec![1],
                summary_json: "{}".into(),
                health_json: None,
                incident: None,
            };
            db.ingest(&seen, vec![record], 1_000).await.unwrap();
        }
    });
    url
}

#[test]
fn cert_expiry_reports_months_and_thresholds_as_of_a_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let at = datetime!(2027-01-15 00:00 UTC);
    let in_days = |d: i64| Some((at + time::Duration::days(d) + time::Duration::hours(2)).unix_timestamp());
    let url = store_with_certificates(
        dir.path(),
        &[
            ("far", in_days(200)),
            ("d45", in_days(45)),
            ("d20", in_days(20)),
            ("d3", in_days(3)),
            ("old", in_days(-1)),
            ("new", None),
        ],
    );
    let out = provision_ok(
        &["cert", "expiry", "--json", "--at", "2027-01-15T00:00:00Z", "--database", &url],
        dir.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bucket = |days: u64| -> Vec<String> {
        let b = report["due"].as_array().unwrap().iter().find(|b| b["within_days"] == days).unwrap();
        b["devices"].as_array().unwrap().iter().map(|e| e["device"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(bucket(60), [format!("{CODE}/d45")], "{out}");
    assert_eq!(bucket(30), [format!("{CODE}/d20")], "{out}");
    assert_eq!(bucket(7), [format!("{CODE}/d3")], "{out}");
    assert_eq!(report["expired"][0]["device"], format!("{CODE}/old"), "{out}");
    assert_eq!(report["unknown"][0], format!("{CODE}/new"), "{out}");
    assert_eq!(report["by_month"]["2027-08"], 1, "{out}");
    assert_eq!(report["by_month"]["2027-01"], 2, "{out}");

    // Other thresholds, and the same store a month later: d45 is now within 30 days.
    let later = provision_ok(
        &["cert", "expiry", "--alert-days", "30,14", "--at", "2027-02-01T00:00:00Z", "--database", &url],
        dir.path(),
    );
    assert!(later.contains("within 30 days / 残り30日以内: 1 devices"), "{later}");
    assert!(later.contains(&format!("{CODE}/d45  2027-03-01 (28 days left")), "{later}");
    assert!(later.contains("expired / 期限切れ: 2 devices"), "{later}");
    assert!(!later.contains("within 60"), "{later}");
    let bad = provision_err(&["cert", "expiry", "--alert-days", "0", "--database", &url], dir.path());
    assert!(bad.contains("out of range"), "{bad}");
}

#[test]
fn operator_add_list_passwd_disable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw"), "long enough password\n").unwrap();
    std::fs::write(d.join("short"), "short\n").unwrap();
    let db = ["--database", "sqlite:ops.db"];
    let with_db = |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(db).collect() };

    // Like every operator command, `operator add` needs the store (or --create).
    let missing =
        provision(&with_db(&["operator", "add", "kato", "--role", "compliance", "--password-file", "pw"]), d);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no store at"));
    let out = provision_ok(
        &with_db(&["operator", "add", "kato", "--role", "compliance", "--password-file", "pw", "--create"]),
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

/// Retention (issue 10): `retention run` rolls up what is past its period
/// (here two heartbeats received in 1970), says what it did, and repeats harmlessly.
#[test]
fn retention_run_reports_counts_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_with_certificates(dir.path(), &[("a", None), ("b", None)]);
    let run = |extra: &[&str]| {
        let mut args = vec!["retention", "run", "--json", "--database", &url];
        args.extend_from_slice(extra);
        let out: serde_json::Value = serde_json::from_str(&provision_ok(&args, dir.path())).unwrap();
        out
    };
    let first = run(&[]);
    assert_eq!(first["heartbeats_rolled_up"], 2, "{first}");
    assert_eq!(first["batches"], 4, "{first}");
    let again = run(&["--retention-batch", "1"]);
    assert_eq!((again["heartbeats_rolled_up"].as_u64(), again["batches"].as_u64()), (Some(0), Some(4)));
    let text = provision_ok(&["retention", "run", "--database", &url], dir.path());
    assert!(text.contains("0 heartbeats rolled up"), "{text}");
    let err =
        provision_err(&["retention", "run", "--database", &url, "--retention-full-days", "40"], dir.path());
    assert!(err.contains("full resolution (40) <= five-minute (30)"), "{err}");
    let missing = format!("sqlite:{}", dir.path().join("none.db").display());
    assert_eq!(provision(&["retention", "run", "--database", &missing], dir.path()).status.code(), Some(2));
}
