//! The certificate lifecycle through the command lines: the carrier makes a
//! test CA and a PKCS#12 file, the agent imports it, shows its status,
//! refuses bad input with the documented exit codes (in English and
//! Japanese), goes through CSR enrolment, rollback and wipe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output};

use cpe_e2e::binary;

const CODE: &str = "1312345678";

fn run(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let path = binary(bin);
    assert!(path.exists(), "{} not built; run `cargo build --workspace --bins` first", path.display());
    Command::new(&path).args(args).envs(envs.iter().copied()).env_remove("CPE_AGENT_CONFIG").output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A test CA, a PKCS#12 for the institution, and an agent configuration.
    fn new() -> Self {
        let site = Self { dir: tempfile::tempdir().unwrap() };
        std::fs::write(site.p("pw"), "correct horse\n").unwrap();
        ok(&run("cpe-provision", &["ca", "init", "--dir", &site.s("ca")], &[]));
        site.issue("clinic.p12");
        std::fs::write(
            site.p("agent.toml"),
            format!("state_dir = \"state\"\ntrust_anchors = [\"ca/ca.pem\"]\ninstitution_code = \"{CODE}\"\n[csr]\ncommon_name = \"Test Clinic\"\n"),
        )
        .unwrap();
        site
    }

    fn issue(&self, name: &str) {
        ok(&run(
            "cpe-provision",
            &[
                "cert",
                "issue",
                "--ca",
                &self.s("ca"),
                "--institution",
                CODE,
                "--name",
                "Test Clinic",
                "--out",
                &self.s(name),
                "--password-file",
                &self.s("pw"),
            ],
            &[],
        ));
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).to_string_lossy().into_owned()
    }

    fn agent(&self, args: &[&str]) -> Output {
        self.agent_lang(args, "C.UTF-8")
    }

    fn agent_lang(&self, args: &[&str], lang: &str) -> Output {
        let config = self.s("agent.toml");
        let mut full = vec!["--config", config.as_str()];
        full.extend_from_slice(args);
        run("cpe-agent", &full, &[("LANG", lang), ("LC_ALL", ""), ("LC_MESSAGES", "")])
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(&self.agent(&["cert", "status", "--json"]))).unwrap()
    }
}

#[test]
fn import_status_refusals_csr_rollback_wipe() {
    let site = Site::new();
    assert_eq!(site.status()["state"], "none");

    // A PKCS#12 with the right password installs.
    let out = ok(&site.agent(&["cert", "import", &site.s("clinic.p12"), "--password-file", &site.s("pw")]));
    assert!(out.contains("gen-000001"), "{out}");
    let first = site.status();
    assert_eq!(first["state"], "valid");
    assert_eq!(first["institution_code"], CODE);
    assert_eq!(first["key_type"], "ecdsa-p256");
    let key_mode = std::fs::metadata(site.p("state/identity/gen-000001/key.pem")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777, 0o600);

    // Wrong password: refused with exit 1, English or Japanese by LANG, nothing changed.
    std::fs::write(site.p("bad-pw"), "wrong\n").unwrap();
    let args = ["cert", "import", &site.s("clinic.p12"), "--password-file", &site.s("bad-pw")];
    let en = site.agent(&args);
    assert_eq!(en.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&en.stderr);
    assert!(stderr.contains("password does not open") && stderr.contains("[wrong_password]"), "{stderr}");
    let ja = site.agent_lang(&args, "ja_JP.UTF-8");
    assert_eq!(ja.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ja.stderr);
    assert!(stderr.contains("パスワードが違います"), "{stderr}");
    let en_flag = site.agent_lang(
        &["--lang", "en", "cert", "import", &site.s("clinic.p12"), "--password-file", &site.s("bad-pw")],
        "ja_JP.UTF-8",
    );
    assert!(String::from_utf8_lossy(&en_flag.stderr).contains("password does not open"));
    // A damaged file.
    std::fs::write(site.p("junk.p12"), b"\x30\x82\x01\x00\x02\x01\x03junk").unwrap();
    let junk = site.agent(&["cert", "import", &site.s("junk.p12"), "--password-file", &site.s("pw")]);
    assert_eq!(junk.status.code(), Some(1), "{}", String::from_utf8_lossy(&junk.stderr));
    assert_eq!(site.status(), first);

    // Could not run: exit 2 (missing file, missing config, wipe without --yes).
    assert_eq!(site.agent(&["cert", "import", &site.s("missing.p12")]).status.code(), Some(2));
    let no_config = run("cpe-agent", &["--config", &site.s("nope.toml"), "cert", "status"], &[]);
    assert_eq!(no_config.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_config.stderr).contains("not found"));
    assert_eq!(site.agent(&["cert", "wipe"]).status.code(), Some(2));

    // Enrolment: key made on the device, CSR signed by the carrier tool.
    ok(&site.agent(&["cert", "csr", "--out", &site.s("req.pem")]));
    assert!(site.p("state/identity/pending/key.pem").exists());
    ok(&run(
        "cpe-provision",
        &[
            "csr",
            "sign",
            "--ca",
            &site.s("ca"),
            &site.s("req.pem"),
            "--out",
            &site.s("signed.pem"),
            "--institution",
            CODE,
        ],
        &[],
    ));
    ok(&site.agent(&["cert", "import", &site.s("signed.pem")]));
    let second = site.status();
    assert_ne!(second["fingerprint_sha256"], first["fingerprint_sha256"]);
    assert!(!site.p("state/identity/pending").exists());

    // Rollback returns to the first identity.
    ok(&site.agent(&["cert", "rollback"]));
    assert_eq!(site.status()["fingerprint_sha256"], first["fingerprint_sha256"]);

    // Human status in Japanese.
    let text = ok(&site.agent_lang(&["cert", "status"], "ja_JP.UTF-8"));
    assert!(text.contains("有効") && text.contains(CODE), "{text}");

    // Wipe: keys gone, state none.
    let out = ok(&site.agent(&["cert", "wipe", "--yes"]));
    assert!(out.contains("2 key(s)"), "{out}");
    assert_eq!(site.status()["state"], "none");
    assert!(std::fs::read_dir(site.p("state/identity")).unwrap().next().is_none());

    // Every certificate change is in the audit log: import, import, rollback, wipe.
    let out = ok(&site.agent(&["log", "export", "--out", &site.s("audit.jsonl")]));
    assert!(out.contains("4 audit entries"), "{out}");
    // The auditor needs no agent configuration to verify.
    let verify = |file: &str| run("cpe-agent", &["log", "verify", "--json", file], &[]);
    let report: serde_json::Value = serde_json::from_str(&ok(&verify(&site.s("audit.jsonl")))).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["kinds"], serde_json::json!([["certificate", 4]]));
    let text = std::fs::read_to_string(site.p("audit.jsonl")).unwrap();
    for event in ["\"imported\"", "\"rolled_back\"", "\"wiped\""] {
        assert!(text.contains(event), "{event} missing: {text}");
    }
    // An edited entry and a removed entry are caught (exit 1), naming the line.
    std::fs::write(site.p("edited.jsonl"), text.replacen("\"wiped\"", "\"kept\"", 1)).unwrap();
    let edited = verify(&site.s("edited.jsonl"));
    assert_eq!(edited.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&edited.stderr).contains("line 5: entry 3 was edited"));
    let lines: Vec<&str> = text.lines().collect();
    let removed: String = [lines[0], lines[1], lines[3], lines[4]].iter().flat_map(|l| [*l, "\n"]).collect();
    std::fs::write(site.p("removed.jsonl"), removed).unwrap();
    assert_eq!(verify(&site.s("removed.jsonl")).status.code(), Some(1));
    assert_eq!(verify(&site.s("missing.jsonl")).status.code(), Some(2));
}

/// Issue 19, item 5: a 256 MiB certificate file (and a 256 MiB
/// configuration) is refused after reading the limit + 1 byte, not read
/// whole into a router's memory. The peak RSS of the agent processes of this
/// test binary is printed.
#[test]
fn oversized_certificate_and_configuration_files_are_refused_without_being_read_whole() {
    let site = Site::new();
    let big = site.p("big.p12");
    let chunk = vec![0x30u8; 1 << 20];
    let mut file = std::fs::File::create(&big).unwrap();
    for _ in 0..256 {
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
    drop(file);
    let out = site.agent(&["cert", "import", &site.s("big.p12"), "--password-file", &site.s("pw")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than the limit of 1048576 bytes"), "{stderr}");
    std::fs::rename(&big, site.p("agent.toml")).unwrap();
    let out = site.agent(&["cert", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than the limit of 262144 bytes"), "{stderr}");
    let peak_kib =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    println!("cert import / config load of 256 MiB files: peak RSS of the agent processes {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB: a file was read whole");
}

#[test]
fn help_explains_commands_and_exit_codes() {
    let out = ok(&run("cpe-agent", &["--help"], &[]));
    assert!(out.contains("Exit codes") && out.contains("cert"), "{out}");
    let out = ok(&run("cpe-agent", &["cert", "import", "--help"], &[]));
    assert!(out.contains("PKCS#12") && out.contains("--password-file"), "{out}");
    assert_eq!(run("cpe-agent", &["cert", "bogus"], &[]).status.code(), Some(2));
}
