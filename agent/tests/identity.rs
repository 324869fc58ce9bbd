//! Certificate lifecycle against real files: every accepted format and key
//! type, every refusal (with the previous identity proven unchanged), fault
//! injection at every storage step, rollback, wipe, CSR and mutual TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cpe_agent::identity::renewal::{CertState, RenewalPolicy};
use cpe_agent::identity::store::IdentityStore;
use cpe_agent::identity::validate::Policy;
use cpe_agent::identity::{self, status, ImportError, ImportInput, Imported};
use cpe_common::durable::{FaultyStorage, OsStorage, Storage};
use cpe_common::institution::CodeField;
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use support::{openssl, openssl_p12, openssl_pki, write, Ca, LeafSpec, P12Kind, CODE};
use time::{Duration, OffsetDateTime};

struct Env {
    dir: tempfile::TempDir,
    ca: Ca,
    anchors: Vec<CertificateDer<'static>>,
    code: cpe_common::institution::InstitutionCode,
}

impl Env {
    fn new() -> Self {
        let ca = Ca::new("Test Certification Body");
        Self { dir: tempfile::tempdir().unwrap(), anchors: vec![ca.cert.clone()], ca, code: support::code() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    fn store(&self) -> IdentityStore<OsStorage> {
        IdentityStore::new(OsStorage, &self.state_dir())
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            trust_anchors: &self.anchors,
            institution_code: &self.code,
            code_field: CodeField::SerialNumber,
            build_time: OffsetDateTime::now_utc() - Duration::days(30),
        }
    }

    fn import_with<S: Storage>(
        &self,
        store: &IdentityStore<S>,
        file: &[u8],
        key: Option<&[u8]>,
        password: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Imported, ImportError> {
        let input = ImportInput { file, key_file: key, password };
        identity::import(store, input, &self.policy(), now)
    }

    fn import(
        &self,
        file: &[u8],
        key: Option<&[u8]>,
        password: Option<&str>,
    ) -> Result<Imported, ImportError> {
        self.import_with(&self.store(), file, key, password, OffsetDateTime::now_utc())
    }

    /// Every file under the state directory with its content and mode.
    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
            use std::os::unix::fs::MetadataExt;
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
                    out.insert(path.clone(), (std::fs::read(&path).unwrap(), mode));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.state_dir(), &mut out);
        out
    }

    fn current_fingerprint(&self) -> Option<String> {
        fingerprint_of(&self.store().load_current().unwrap()?)
    }

    fn good_bundle(&self) -> (support::Leaf, String) {
        let leaf = self.ca.issue(&LeafSpec::default());
        let bundle = leaf.bundle(&self.ca);
        (leaf, bundle)
    }
}

#[test]
fn pem_bundle_installs_and_status_has_exact_keys() {
    let env = Env::new();
    let (leaf, bundle) = env.good_bundle();
    let imported = env.import(bundle.as_bytes(), None, None).unwrap();
    assert_eq!(imported.generation, "gen-000001");
    assert_eq!(imported.info.institution_code.as_ref().map(ToString::to_string).as_deref(), Some(CODE));

    let current = env.store().load_current().unwrap().unwrap();
    assert_eq!(current.chain[0], leaf.cert);
    let report = report_now(&current);
    let json = serde_json::to_value(&report.status).unwrap();
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "days_left",
        "fingerprint_sha256",
        "institution_code",
        "key_type",
        "state",
    ];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    assert_eq!(json["state"], "valid");
    assert_eq!(json["key_type"], "ecdsa-p256");
    assert_eq!(json["institution_code"], CODE);
    assert!((364..=365).contains(&json["days_left"].as_i64().unwrap()), "{json}");
    assert_eq!(json["fingerprint_sha256"].as_str().unwrap().len(), 64);

    let none =
        status::report(None, CodeField::SerialNumber, &RenewalPolicy::default(), OffsetDateTime::now_utc())
            .unwrap();
    let none = serde_json::to_value(&none.status).unwrap();
    assert_eq!(none["state"], "none");
    assert!(none["subject"].is_null() && none["days_left"].is_null());
}

#[test]
fn key_files_are_private_and_chain_public() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (_, bundle) = env.good_bundle();
    env.import(bundle.as_bytes(), None, None).unwrap();
    let gen = env.store().dir().join("gen-000001");
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(gen.join("key.pem")), 0o600);
    assert_eq!(mode(gen.join("chain.pem")), 0o644);
}

#[test]
fn every_key_type_is_accepted() {
    for (alg, expected) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, "ecdsa-p256"),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "ecdsa-p384"),
        (&rcgen::PKCS_ED25519, "ed25519"),
    ] {
        let env = Env::new();
        let leaf = env.ca.issue(&LeafSpec { alg, ..LeafSpec::default() });
        let imported = env.import(leaf.bundle(&env.ca).as_bytes(), None, None).unwrap();
        assert_eq!(imported.info.key_type, expected);
    }
    for bits in ["2048", "3072", "4096"] {
        let env = Env::new();
        let opt = format!("rsa_keygen_bits:{bits}");
        let (ca, cert, key) = openssl_pki(env.path(), &["-algorithm", "RSA", "-pkeyopt", &opt], "sha256");
        let anchors = vec![support_read_cert(&ca)];
        let policy = Policy { trust_anchors: &anchors, ..env.policy() };
        let file = [std::fs::read(&cert).unwrap(), std::fs::read(&ca).unwrap()].concat();
        let key = std::fs::read(&key).unwrap();
        let input = ImportInput { file: &file, key_file: Some(&key), password: None };
        let imported = identity::import(&env.store(), input, &policy, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(imported.info.key_type, format!("rsa-{bits}"));
    }
}

fn support_read_cert(path: &Path) -> CertificateDer<'static> {
    let material = identity::material::read_pem(&std::fs::read(path).unwrap()).unwrap();
    material.certs[0].clone()
}

#[test]
fn der_certificate_with_sec1_and_pkcs1_key_files() {
    // EC key in SEC1 ("EC PRIVATE KEY") form, certificate as DER.
    let env = Env::new();
    let leaf = env.ca.issue(&LeafSpec::default());
    let pkcs8 = write(env.path(), "leaf.pkcs8.pem", &leaf.key_pem);
    openssl(env.path(), &["ec", "-in", pkcs8.to_str().unwrap(), "-out", "leaf.sec1.pem"]);
    let sec1 = std::fs::read(env.path().join("leaf.sec1.pem")).unwrap();
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
    env.import(leaf.cert.as_ref(), Some(&sec1), None).unwrap();
    // The SEC1 key as DER works too.
    openssl(env.path(), &["ec", "-in", "leaf.sec1.pem", "-outform", "DER", "-out", "leaf.sec1.der"]);
    let sec1_der = std::fs::read(env.path().join("leaf.sec1.der")).unwrap();
    env.import(leaf.cert.as_ref(), Some(&sec1_der), None).unwrap();

    // RSA key in PKCS#1 ("RSA PRIVATE KEY") form.
    let env = Env::new();
    let (ca, cert, key) =
        openssl_pki(env.path(), &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "sha256");
    openssl(env.path(), &["rsa", "-in", key.to_str().unwrap(), "-traditional", "-out", "leaf.pkcs1.pem"]);
    let pkcs1 = std::fs::read(env.path().join("leaf.pkcs1.pem")).unwrap();
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
    let anchors = vec![support_read_cert(&ca)];
    let policy = Policy { trust_anchors: &anchors, ..env.policy() };
    let file = [std::fs::read(&cert).unwrap(), std::fs::read(&ca).unwrap()].concat();
    let input = ImportInput { file: &file, key_file: Some(&pkcs1), password: None };
    identity::import(&env.store(), input, &policy, OffsetDateTime::now_utc()).unwrap();
}

#[test]
fn pkcs12_files_from_openssl_modern_and_legacy() {
    for kind in [P12Kind::Modern, P12Kind::LegacyRc2, P12Kind::Legacy3Des] {
        let env = Env::new();
        let leaf = env.ca.issue(&LeafSpec::default());
        let cert = write(env.path(), "leaf.pem", &leaf.cert_pem);
        let key = write(env.path(), "leaf.key", &leaf.key_pem);
        let ca = write(env.path(), "ca.pem", &env.ca.pem);
        let p12 =
            std::fs::read(openssl_p12(env.path(), kind, &cert, &key, Some(&ca), "s3cret pass")).unwrap();
        let started = std::time::Instant::now();
        let imported =
            env.import(&p12, None, Some("s3cret pass")).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        eprintln!("{kind:?}: {} bytes imported in {:?}", p12.len(), started.elapsed());
        assert_eq!(imported.info.key_type, "ecdsa-p256");
        assert_eq!(env.store().load_current().unwrap().unwrap().chain[0], leaf.cert, "{kind:?}");
        // Wrong and missing passwords are told apart.
        assert_eq!(env.import(&p12, None, Some("wrong")).unwrap_err().code(), "wrong_password", "{kind:?}");
        assert_eq!(env.import(&p12, None, None).unwrap_err().code(), "password_required", "{kind:?}");
    }
}

#[test]
fn pkcs12_written_by_the_carrier_tool_imports() {
    let env = Env::new();
    let leaf = env.ca.issue(&LeafSpec::default());
    let chain = vec![leaf.cert.clone(), env.ca.cert.clone()];
    let key = match &leaf.key {
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => unreachable!(),
    };
    let p12 = cpe_provision_p12(&chain, &key, "pw");
    let imported = env.import(&p12, None, Some("pw")).unwrap();
    assert_eq!(imported.info.institution_code.unwrap().as_str(), CODE);
}

fn cpe_provision_p12(chain: &[CertificateDer<'static>], key_pkcs8: &[u8], password: &str) -> Vec<u8> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let certs = chain.iter().map(|c| Certificate::from_der(c.as_ref()).unwrap()).collect::<Vec<_>>();
    let key = PrivateKey::from_der(key_pkcs8).unwrap();
    let mut store = KeyStore::new();
    store.add_entry(
        "identity",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(b"1".to_vec(), key, certs)),
    );
    store.writer(password).write().unwrap()
}

/// Installs a good identity, runs `attempt`, and checks it failed with
/// `code` and left every file of the state directory as it was.
fn assert_refused_unchanged(
    env: &Env,
    code: &str,
    attempt: impl FnOnce(&Env) -> Result<Imported, ImportError>,
) {
    if env.current_fingerprint().is_none() {
        let (_, bundle) = env.good_bundle();
        env.import(bundle.as_bytes(), None, None).unwrap();
    }
    let before = env.snapshot();
    let fingerprint = env.current_fingerprint();
    let err = match attempt(env) {
        Ok(imported) => panic!("expected {code}, but {} was installed", imported.generation),
        Err(err) => err,
    };
    assert_eq!(err.code(), code, "wrong refusal: {err}");
    assert!(!err.to_string().is_empty());
    assert_eq!(env.snapshot(), before, "{code}: state changed");
    assert_eq!(env.current_fingerprint(), fingerprint, "{code}: identity changed");
    // Still usable for TLS.
    let current = env.store().load_current().unwrap().unwrap();
    identity::tls::client_config(&current, std::slice::from_ref(&env.ca.cert)).unwrap();
}

#[test]
fn every_refusal_has_its_error_and_changes_nothing() {
    let env = Env::new();
    let now = OffsetDateTime::now_utc();
    let (leaf, bundle) = env.good_bundle();
    let other_leaf = env.ca.issue(&LeafSpec::default());

    assert_refused_unchanged(&env, "unknown_format", |e| e.import(b"\x01\x02garbage", None, None));
    assert_refused_unchanged(&env, "bad_size", |e| e.import(b"", None, None));
    let truncated = &bundle.as_bytes()[..bundle.len() / 2];
    assert_refused_unchanged(&env, "corrupt_pem", |e| e.import(truncated, None, None));
    let mut der = leaf.cert.as_ref().to_vec();
    der.truncate(der.len() - 20);
    assert_refused_unchanged(&env, "unknown_format", |e| e.import(&der, None, None));

    let cert_path = write(env.path(), "leaf.pem", &leaf.cert_pem);
    let key_path = write(env.path(), "leaf.key", &leaf.key_pem);
    let p12 =
        std::fs::read(openssl_p12(env.path(), P12Kind::Modern, &cert_path, &key_path, None, "pw")).unwrap();
    assert_refused_unchanged(&env, "corrupt_pkcs12", |e| e.import(&p12[..p12.len() - 40], None, Some("pw")));
    assert_refused_unchanged(&env, "wrong_password", |e| e.import(&p12, None, Some("wrong")));
    assert_refused_unchanged(&env, "password_required", |e| e.import(&p12, None, None));

    assert_refused_unchanged(&env, "no_private_key", |e| e.import(leaf.cert_pem.as_bytes(), None, None));
    let mismatched = format!("{}{}", leaf.cert_pem, other_leaf.key_pem);
    assert_refused_unchanged(&env, "key_mismatch", |e| e.import(mismatched.as_bytes(), None, None));
    let two_keys = format!("{}{}{}", leaf.cert_pem, leaf.key_pem, other_leaf.key_pem);
    assert_refused_unchanged(&env, "several_keys", |e| e.import(two_keys.as_bytes(), None, None));
    let encrypted = format!(
        "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        leaf.cert_pem
    );
    assert_refused_unchanged(&env, "encrypted_pem_key", |e| e.import(encrypted.as_bytes(), None, None));

    let stranger_ca = Ca::new("Unknown Body");
    let stranger = stranger_ca.issue(&LeafSpec::default()).bundle(&stranger_ca);
    assert_refused_unchanged(&env, "untrusted_chain", |e| e.import(stranger.as_bytes(), None, None));

    let expired = env.ca.issue(&LeafSpec {
        not_before: now - Duration::days(400),
        not_after: now - Duration::days(1),
        ..LeafSpec::default()
    });
    assert_refused_unchanged(&env, "expired", |e| e.import(expired.bundle(&e.ca).as_bytes(), None, None));
    let future = env.ca.issue(&LeafSpec { not_before: now + Duration::days(2), ..LeafSpec::default() });
    assert_refused_unchanged(&env, "not_yet_valid", |e| {
        e.import(future.bundle(&e.ca).as_bytes(), None, None)
    });
    // A clock in 1970 is reported as unset, not as "not yet valid".
    let (_, fresh) = env.good_bundle();
    assert_refused_unchanged(&env, "clock_unset", |e| {
        e.import_with(&e.store(), fresh.as_bytes(), None, None, OffsetDateTime::UNIX_EPOCH)
    });

    let server_only =
        env.ca.issue(&LeafSpec { eku: vec![ExtendedKeyUsagePurpose::ServerAuth], ..LeafSpec::default() });
    assert_refused_unchanged(&env, "missing_client_auth", |e| {
        e.import(server_only.bundle(&e.ca).as_bytes(), None, None)
    });
    let no_eku = env.ca.issue(&LeafSpec { eku: vec![], ..LeafSpec::default() });
    assert_refused_unchanged(&env, "missing_client_auth", |e| {
        e.import(no_eku.bundle(&e.ca).as_bytes(), None, None)
    });
    let wrong_ku =
        env.ca.issue(&LeafSpec { ku: vec![KeyUsagePurpose::KeyEncipherment], ..LeafSpec::default() });
    assert_refused_unchanged(&env, "wrong_key_usage", |e| {
        e.import(wrong_ku.bundle(&e.ca).as_bytes(), None, None)
    });

    let other_code = env.ca.issue(&LeafSpec {
        serial_number: Some("2712345678".into()),
        common_name: "Other Clinic 2712345678".into(),
        ..LeafSpec::default()
    });
    assert_refused_unchanged(&env, "institution_code_mismatch", |e| {
        e.import(other_code.bundle(&e.ca).as_bytes(), None, None)
    });
    let no_code = env.ca.issue(&LeafSpec {
        serial_number: None,
        common_name: "Some Clinic".into(),
        ..LeafSpec::default()
    });
    assert_refused_unchanged(&env, "institution_code_missing", |e| {
        e.import(no_code.bundle(&e.ca).as_bytes(), None, None)
    });

    assert_refused_unchanged(&env, "unreadable_file", |e| {
        identity::load_trust_anchors(&[e.path().join("missing.pem")]).map(|_| unreachable!())
    });

    // A NUL in the common name: shown with the NUL dropped it reads like
    // another name, so it is refused, as any control character is.
    for common_name in
        ["Sakura Clinic\u{0} 1312345678", "Clinic\u{1b}[2J 1312345678", "\u{202e}cinilC 1312345678"]
    {
        let sneaky = env.ca.issue(&LeafSpec { common_name: common_name.into(), ..LeafSpec::default() });
        assert_refused_unchanged(&env, "control_character", |e| {
            let err = e.import(sneaky.bundle(&e.ca).as_bytes(), None, None);
            if let Err(ImportError::Invalid(v)) = &err {
                assert!(v.to_string().contains("CN (commonName)"), "{v}");
                assert!(v.ja().contains("制御文字"), "{}", v.ja());
            }
            err
        });
    }
}

/// A 256 MiB (sparse) file given to `cert import` or as a trust anchor is
/// refused after reading at most the limit + 1 byte, never read whole.
#[test]
fn oversized_certificate_files_are_refused_without_being_read_whole() {
    let env = Env::new();
    let big = env.path().join("big.p12");
    std::fs::File::create(&big).unwrap().set_len(256 << 20).unwrap();
    let err = identity::load_trust_anchors(std::slice::from_ref(&big)).unwrap_err();
    assert_eq!(err.code(), "unreadable_file", "{err}");
    assert!(err.to_string().contains("larger than the limit of 1048576 bytes"), "{err}");
    let err = identity::read_password_file(&big).unwrap_err();
    assert!(err.to_string().contains("larger than the limit of 4096 bytes"), "{err}");
}

#[test]
fn weak_rsa_key_and_sha1_signature_are_refused() {
    for (key_args, digest, code) in [
        (&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..], "sha256", "weak_key"),
        (&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..], "sha1", "weak_signature"),
    ] {
        let env = Env::new();
        let sub = env.path().join("openssl");
        std::fs::create_dir(&sub).unwrap();
        let (ca, cert, key) = openssl_pki(&sub, key_args, digest);
        let anchors = vec![support_read_cert(&ca), env.ca.cert.clone()];
        let file = [std::fs::read(&cert).unwrap(), std::fs::read(&ca).unwrap()].concat();
        let key = std::fs::read(&key).unwrap();
        assert_refused_unchanged(&env, code, |e| {
            let policy = Policy { trust_anchors: &anchors, ..e.policy() };
            let input = ImportInput { file: &file, key_file: Some(&key), password: None };
            identity::import(&e.store(), input, &policy, OffsetDateTime::now_utc())
        });
    }
}

#[test]
fn code_in_common_name_is_found_when_configured() {
    let env = Env::new();
    let leaf = env.ca.issue(&LeafSpec { serial_number: None, ..LeafSpec::default() });
    // Default field falls back to the common name.
    env.import(leaf.bundle(&env.ca).as_bytes(), None, None).unwrap();
    let policy = Policy { code_field: CodeField::CommonName, ..env.policy() };
    let bundle = leaf.bundle(&env.ca);
    let input = ImportInput { file: bundle.as_bytes(), key_file: None, password: None };
    identity::import(&env.store(), input, &policy, OffsetDateTime::now_utc()).unwrap();
}

fn report_now(identity: &identity::store::StoredIdentity) -> status::StatusReport {
    let now = OffsetDateTime::now_utc();
    status::report(Some(identity), CodeField::SerialNumber, &RenewalPolicy::default(), now).unwrap()
}

fn fingerprint_of(identity: &identity::store::StoredIdentity) -> Option<String> {
    report_now(identity).status.fingerprint_sha256
}

/// A failure injected at each storage step of an install leaves the
/// previous identity current and usable, also when read back from disk by
/// a fresh store (as after a reboot). Once the install succeeds, the new
/// identity is current and the old one is previous.
#[test]
fn failure_at_every_install_step_keeps_previous_identity() {
    let env = Env::new();
    let (_, first) = env.good_bundle();
    env.import(first.as_bytes(), None, None).unwrap();
    let (_, second) = env.good_bundle();
    env.import(second.as_bytes(), None, None).unwrap();
    let old = env.current_fingerprint().unwrap();
    let (_, bundle) = env.good_bundle();

    let mut step = 0;
    loop {
        let faulty = IdentityStore::new(FaultyStorage::new(OsStorage, Some(step)), &env.state_dir());
        let result = env.import_with(&faulty, bundle.as_bytes(), None, None, OffsetDateTime::now_utc());
        let current = env.current_fingerprint().unwrap();
        let store = env.store();
        let previous = store.load_previous().unwrap().unwrap();
        identity::tls::client_config(
            &store.load_current().unwrap().unwrap(),
            std::slice::from_ref(&env.ca.cert),
        )
        .unwrap();
        identity::tls::client_config(&previous, std::slice::from_ref(&env.ca.cert)).unwrap();
        if let Err(e) = result {
            assert_eq!(e.code(), "store_failed", "step {step}: {e}");
            assert!(e.to_string().contains("injected failure"), "{e}");
            if current != old {
                // Only possible after the switch: the old identity is previous.
                assert_eq!(fingerprint_of(&previous).as_deref(), Some(old.as_str()), "step {step}");
            }
        } else {
            assert_ne!(current, old);
            assert_eq!(fingerprint_of(&previous).as_deref(), Some(old.as_str()));
            break;
        }
        // Put the old identity back as current for the next round.
        if current != old {
            env.store().rollback().unwrap();
        }
        step += 1;
        assert!(step < 50, "install never succeeded");
    }
    assert!(step >= 7, "expected at least 7 storage steps, saw {step}");
}

#[test]
fn rollback_swaps_and_wipe_destroys_everything() {
    let env = Env::new();
    assert!(matches!(env.store().rollback(), Err(identity::store::StoreError::NoPrevious)));
    let (_, a) = env.good_bundle();
    env.import(a.as_bytes(), None, None).unwrap();
    let fa = env.current_fingerprint().unwrap();
    let (_, b) = env.good_bundle();
    env.import(b.as_bytes(), None, None).unwrap();
    let fb = env.current_fingerprint().unwrap();
    assert_ne!(fa, fb);
    env.store().rollback().unwrap();
    assert_eq!(env.current_fingerprint().unwrap(), fa);
    env.store().rollback().unwrap();
    assert_eq!(env.current_fingerprint().unwrap(), fb);
    // A third install drops the oldest generation from disk.
    let (_, c) = env.good_bundle();
    env.import(c.as_bytes(), None, None).unwrap();
    let dirs: Vec<_> =
        std::fs::read_dir(env.store().dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(dirs.iter().filter(|n| n.to_string_lossy().starts_with("gen-")).count(), 2, "{dirs:?}");

    let destroyed = env.store().wipe().unwrap();
    assert_eq!(destroyed, 2);
    assert!(env.store().load_current().unwrap().is_none());
    assert!(env.snapshot().is_empty(), "{:?}", env.snapshot().keys());
}

#[test]
fn csr_key_stays_pending_until_its_certificate_is_imported() {
    let env = Env::new();
    let subject = identity::csr::CsrSubject {
        institution_code: &env.code,
        common_name: Some("Clinic"),
        organization: None,
        unit: Some("cpe-01"),
    };
    let request = identity::csr::generate(&subject, identity::csr::KeyAlgorithm::EcdsaP256).unwrap();
    env.store().save_pending_key(&request.key).unwrap();
    // The carrier signs the CSR.
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&request.csr_pem).unwrap();
    let dn = format!("{:?}", csr.params.distinguished_name);
    assert!(dn.contains(CODE) && dn.contains("cpe-01"), "{dn}");
    let key = rcgen::KeyPair::from_der_and_sign_algo(
        &rustls::pki_types::PrivateKeyDer::try_from(request.key.secret_der().to_vec()).unwrap(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
    .unwrap();
    let leaf =
        env.ca.issue_for(&LeafSpec { common_name: format!("Clinic {CODE}"), ..LeafSpec::default() }, &key);
    // Import of the certificate alone uses the pending key, then drops it.
    let imported = env.import(leaf.cert_pem.as_bytes(), None, None).unwrap();
    assert!(imported.used_pending_key);
    assert!(env.store().load_pending_key().unwrap().is_none());
    // A certificate for another key is refused even with a pending key.
    let request = identity::csr::generate(&subject, identity::csr::KeyAlgorithm::EcdsaP256).unwrap();
    env.store().save_pending_key(&request.key).unwrap();
    let other = env.ca.issue(&LeafSpec::default());
    assert_refused_unchanged(&env, "key_mismatch", |e| e.import(other.cert_pem.as_bytes(), None, None));
}

mod tls {
    use super::*;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConnection, RootCertStore, ServerConfig, ServerConnection};
    use std::sync::Arc;

    /// Runs a handshake in memory between a client with `identity` and a
    /// server that requires client certificates from `client_ca`.
    fn handshake(identity: &identity::store::StoredIdentity, client_ca: &Ca) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_ca = Ca::new("Carrier Server CA");
        let server_cert = server_ca.issue_server("carrier.test");
        let mut roots = RootCertStore::empty();
        roots.add(client_ca.cert.clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.cert.clone()], server_cert.key.clone_key())
            .unwrap();
        let client_config =
            identity::tls::client_config(identity, std::slice::from_ref(&server_ca.cert)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("carrier.test").unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    #[test]
    fn server_requiring_client_certs_accepts_valid_and_rejects_foreign_or_expired() {
        let env = Env::new();
        let (_, bundle) = env.good_bundle();
        env.import(bundle.as_bytes(), None, None).unwrap();
        let current = env.store().load_current().unwrap().unwrap();
        handshake(&current, &env.ca).unwrap();
        // The same identity against a server that trusts another body.
        let err = handshake(&current, &Ca::new("Another Body")).unwrap_err();
        assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
        // An identity imported while valid, presented after expiry.
        let now = OffsetDateTime::now_utc();
        let short = env.ca.issue(&LeafSpec {
            not_before: now - Duration::days(10),
            not_after: now - Duration::days(1),
            ..LeafSpec::default()
        });
        let env2 = Env {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("unused"),
            anchors: env.anchors.clone(),
            code: env.code.clone(),
        };
        let when_valid = now - Duration::days(5);
        let policy = Policy { build_time: when_valid - Duration::days(1), ..env2.policy() };
        let bundle = short.bundle(&env.ca);
        let input = ImportInput { file: bundle.as_bytes(), key_file: None, password: None };
        identity::import(&env2.store(), input, &policy, when_valid).unwrap();
        let expired = env2.store().load_current().unwrap().unwrap();
        let err = handshake(&expired, &env.ca).unwrap_err();
        assert!(format!("{err:?}").contains("Expired"), "{err:?}");
    }
}

#[test]
fn status_reports_expiring_within_thirty_days() {
    let env = Env::new();
    let now = OffsetDateTime::now_utc();
    let leaf = env.ca.issue(&LeafSpec { not_after: now + Duration::days(10), ..LeafSpec::default() });
    env.import(leaf.bundle(&env.ca).as_bytes(), None, None).unwrap();
    let current = env.store().load_current().unwrap().unwrap();
    let report =
        status::report(Some(&current), CodeField::SerialNumber, &RenewalPolicy::default(), now).unwrap();
    assert_eq!(report.status.state, CertState::Expiring);
    assert_eq!(report.assessment.as_ref().unwrap().warning_days, Some(30));
    let text = status::render_text(&report, cpe_agent::lang::Lang::Ja);
    assert!(text.contains("期限間近"), "{text}");
}
