//! Command-line interface: argument definitions, dispatch, output and exit codes.
//!
//! Exit codes (all commands): 0 done; 1 the input was refused (nothing
//! changed); 2 the command could not run (configuration, storage, usage).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cpe_agent::audit::{self, AuditKind, AuditLog};
use cpe_agent::clock;
use cpe_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use cpe_agent::diagnose::{session, store, CheckResult, Segment};
use cpe_agent::identity::csr::{self, CsrSubject, KeyAlgorithm};
use cpe_agent::identity::store::IdentityStore;
use cpe_agent::identity::validate::{rfc3339, Policy};
use cpe_agent::identity::{self, status, ImportError, ImportInput};
use cpe_agent::lang::Lang;
use cpe_common::durable::{write_atomic, OsStorage, MODE_PUBLIC};
use tracing_subscriber::filter::LevelFilter;

mod orders;

const EXIT_REFUSED: u8 = 1;
const EXIT_CANNOT_RUN: u8 = 2;

/// The on-device agent of the carrier router (CPE) for the national
/// health-information network: holds the institution certificate (機関認証).
///
/// Exit codes: 0 done, 1 input refused (nothing changed), 2 could not run.
#[derive(Debug, Parser)]
#[command(name = "cpe-agent", version, about, long_about)]
pub struct Cli {
    /// Configuration file; `agent.d/*.toml` beside it are merged over it.
    #[arg(long, global = true, env = "CPE_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Language of messages (default: from LANG; ja if it starts with "ja").
    #[arg(long, global = true, value_enum)]
    lang: Option<Lang>,
    /// Log format on stderr (`RUST_LOG` sets the level).
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the institution certificate (機関証明書).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Self-diagnosis (guideline §1.3.2 ④): check the terminals, the LAN,
    /// this device, the uplink and the carrier, and name the segment at fault.
    ///
    /// Checks run concurrently, each with its own timeout (whole run ≤
    /// `[diagnose] total_timeout_ms`, 10 s by default); progress goes to
    /// stderr when it is a terminal. The report is kept in
    /// `<state_dir>/diagnosis/last.json` and queued for the carrier as an
    /// incident. Exit codes: 0 healthy, 1 fault found or service suspended,
    /// 2 could not run.
    Diagnose(DiagnoseArgs),
    /// Run the agent service: heartbeats and events to the carrier, commands,
    /// certificate renewal. Stops on SIGTERM, reloads the configuration on
    /// SIGHUP. Meant for systemd (Type=simple) or procd.
    Run,
    /// The device's hash-chained audit log (orders, enforcement, certificate
    /// changes, diagnoses): export it for an auditor, or verify an export.
    #[command(subcommand)]
    Log(LogCommand),
    /// Install the firewall for the persisted order state: the suspension
    /// block if a stop order is in force, nothing otherwise. Run it at early
    /// boot, before the LAN is served (`run` also does it first). Idempotent.
    /// Exit 0 enforced, 2 could not run (state unreadable, nft failed).
    ApplyState,
    /// Compliance orders from the carrier (stop, resume, notice, key
    /// rotation, drill). Only a signed resume order lifts a suspension: no
    /// command, configuration change or `cert wipe` does.
    #[command(subcommand)]
    Orders(orders::OrdersCommand),
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Write every kept audit entry to a file an auditor can check with
    /// `cpe-agent log verify`.
    Export {
        /// The file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export: every entry's hash, every link of the chain, the
    /// header's count and head. Exit 0 intact, 1 tampered, 2 unreadable.
    /// Needs no configuration: it runs on the auditor's machine too.
    Verify {
        /// The export file.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Check a certificate file and install it as the device identity.
    ///
    /// Accepts PEM (certificate, chain and key), DER, and PKCS#12 (.p12/.pfx).
    /// Every check runs before anything is stored; a refused file changes
    /// nothing. The identity it replaces is kept for `cert rollback`.
    Import(ImportArgs),
    /// Show the installed certificate: subject, validity, days left, state.
    Status {
        /// Print JSON (keys: subject, issuer, serial, not_before, not_after,
        /// days_left, fingerprint_sha256, institution_code, key_type, state).
        #[arg(long)]
        json: bool,
    },
    /// Generate a key on the device and write a certificate request (CSR).
    ///
    /// The key stays on the device, pending until the certificate signed for
    /// it is imported with `cert import CERT`.
    Csr {
        /// Where to write the CSR (PEM).
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm (default from [csr] key_type, else ecdsa-p256).
        #[arg(long, value_enum)]
        key_type: Option<KeyAlgorithm>,
    },
    /// Go back to the previously installed identity.
    Rollback,
    /// Decommission: overwrite and delete every key and certificate.
    ///
    /// The order state (`<state_dir>/orders/`) is not touched: a suspension
    /// stays in force until the carrier's signed resume order.
    Wipe {
        /// Confirm: the device loses its identity and cannot connect.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
struct DiagnoseArgs {
    /// Print exactly one JSON document (the report) on stdout.
    #[arg(long)]
    json: bool,
    /// Which segment's checks to run.
    #[arg(long, value_enum, default_value = "all")]
    segment: SegmentChoice,
    /// Check only this terminal (a registered one or any LAN address).
    #[arg(long, value_name = "IP")]
    terminal: Option<std::net::IpAddr>,
}

/// `--segment` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SegmentChoice {
    Terminal,
    Lan,
    Device,
    Uplink,
    Carrier,
    All,
}

impl SegmentChoice {
    fn segments(self) -> std::collections::BTreeSet<Segment> {
        match self {
            Self::Terminal => [Segment::Terminal].into(),
            Self::Lan => [Segment::Lan].into(),
            Self::Device => [Segment::Device].into(),
            Self::Uplink => [Segment::Uplink].into(),
            Self::Carrier => [Segment::Carrier].into(),
            Self::All => Segment::PATH.into_iter().collect(),
        }
    }
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Certificate file (PEM, DER or PKCS#12).
    path: PathBuf,
    /// Separate private key file (PEM or DER: PKCS#8, SEC1 or PKCS#1).
    #[arg(long)]
    key: Option<PathBuf>,
    /// File whose first line is the PKCS#12 password.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

/// Logs go to stderr at one level: `RUST_LOG` (`error`, `warn`, `info`,
/// `debug`, `trace` or `off`) overrides the default (warn for commands, info
/// for the service). Per-module filters are left out on purpose: their
/// parser (regex) would cost the router a fifth of the binary.
pub fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Run) { LevelFilter::INFO } else { LevelFilter::WARN };
    let level = std::env::var("RUST_LOG").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default);
    let builder = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A failure with the exit code it maps to and its text in both languages.
struct Failure {
    code: u8,
    en: String,
    ja: String,
}

impl Failure {
    fn cannot_run(en: impl Into<String>, ja: impl Into<String>) -> Self {
        Self { code: EXIT_CANNOT_RUN, en: en.into(), ja: ja.into() }
    }
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Self {
        let code = if e.is_refusal() { EXIT_REFUSED } else { EXIT_CANNOT_RUN };
        let ja = match &e {
            ImportError::Material(m) => m.ja(),
            ImportError::Invalid(v) => v.ja(),
            other => format!("処理できませんでした: {other}"),
        };
        Self { code, en: format!("{e} [{}]", e.code()), ja: format!("{ja} [{}]", e.code()) }
    }
}

/// Runs the parsed command and maps the outcome to an exit code.
pub fn run(cli: &Cli) -> ExitCode {
    let lang = cli.lang.unwrap_or_else(Lang::from_env);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            let text = match lang {
                Lang::Ja => format!("エラー: {}", failure.ja),
                Lang::En => format!("error: {}", failure.en),
            };
            let _ = writeln!(std::io::stderr(), "{text}");
            ExitCode::from(failure.code)
        }
    }
}

fn dispatch(cli: &Cli) -> Result<u8, Failure> {
    let lang = cli.lang.unwrap_or_else(Lang::from_env);
    if let Command::Log(LogCommand::Verify { file, json }) = &cli.command {
        return verify_log(file, *json, lang).map(|()| 0);
    }
    let config = AgentConfig::load(&cli.config)
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("設定ファイルを読み込めません: {e}")))?;
    let store = IdentityStore::new(OsStorage, &config.state_dir);
    let done = match &cli.command {
        Command::Cert(CertCommand::Import(args)) => import(&config, &store, args, lang),
        Command::Cert(CertCommand::Status { json }) => show_status(&config, &store, *json, lang),
        Command::Cert(CertCommand::Csr { out, key_type }) => make_csr(&config, &store, out, *key_type, lang),
        Command::Cert(CertCommand::Rollback) => rollback(&config, &store, lang),
        Command::Cert(CertCommand::Wipe { yes }) => wipe(&config, &store, *yes, lang),
        Command::Diagnose(args) => return diagnose(&config, args, lang),
        Command::Run => run_service(&cli.config, config),
        Command::Log(LogCommand::Export { out }) => export_log(&config, out, lang),
        Command::Log(LogCommand::Verify { file, json }) => verify_log(file, *json, lang),
        Command::ApplyState => orders::apply_state(&config, lang),
        Command::Orders(command) => orders::run(&config, command, lang),
    };
    done.map(|()| 0)
}

fn export_log(config: &AgentConfig, out: &Path, lang: Lang) -> Result<(), Failure> {
    let log = AuditLog::with_config(&config.state_dir, config.audit);
    let summary = log
        .export(&OsStorage, out, clock::now().unix_timestamp())
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("監査ログを書き出せません: {e}")))?;
    let range =
        summary.last_index.map_or_else(String::new, |last| format!("{}..={last}", summary.first_index));
    println!(
        "{}",
        match lang {
            Lang::Ja => format!(
                "監査ログ {} 件（{range}）を {} に書き出しました。末尾ハッシュ {}",
                summary.entries,
                out.display(),
                summary.head
            ),
            Lang::En => format!(
                "exported {} audit entries ({range}) to {}; head hash {}",
                summary.entries,
                out.display(),
                summary.head
            ),
        }
    );
    Ok(())
}

fn verify_log(file: &Path, json: bool, lang: Lang) -> Result<(), Failure> {
    let bytes = cpe_common::bounded::read_file(file, audit::MAX_EXPORT_BYTES).map_err(|e| {
        Failure::cannot_run(
            format!("cannot read {}: {e}", file.display()),
            format!("{} を読めません: {e}", file.display()),
        )
    })?;
    match audit::verify_export(&bytes) {
        Ok(verified) => {
            if json {
                let doc = serde_json::json!({ "valid": true, "summary": verified.summary, "kinds": verified.kinds, "span": verified.span });
                println!("{doc}");
            } else {
                let s = &verified.summary;
                let kinds: Vec<String> = verified
                    .kinds
                    .iter()
                    .map(|(kind, n)| format!("{}={n}", serde_json::json!(kind).as_str().unwrap_or("?")))
                    .collect();
                println!(
                    "{}",
                    match lang {
                        Lang::Ja => format!(
                            "改ざんは検出されませんでした: {} 件（番号 {} から、起点 {}）、末尾ハッシュ {}（{}）",
                            s.entries, s.first_index, s.anchor, s.head, kinds.join(", ")
                        ),
                        Lang::En => format!(
                            "intact: {} entries from index {} (anchor {}), head {} ({})",
                            s.entries, s.first_index, s.anchor, s.head, kinds.join(", ")
                        ),
                    }
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "valid": false, "error": e.to_string() }));
            }
            Err(Failure {
                code: EXIT_REFUSED,
                en: format!("audit export {} is not intact: {e}", file.display()),
                ja: format!("監査ログ {} に改ざんまたは欠落があります: {e}", file.display()),
            })
        }
    }
}

fn required_code(config: &AgentConfig) -> Result<&cpe_common::institution::InstitutionCode, Failure> {
    config.institution_code.as_ref().ok_or_else(|| {
        Failure::cannot_run(
            "institution_code is not configured; set it in the agent configuration (10 digits)",
            "institution_code が設定されていません。設定ファイルに医療機関コード（10 桁）を記入してください。",
        )
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    cpe_common::bounded::read_file(path, identity::material::MAX_INPUT_BYTES)
        .map_err(|source| ImportError::Read { path: path.to_owned(), source }.into())
}

fn import(
    config: &AgentConfig,
    store: &IdentityStore<OsStorage>,
    args: &ImportArgs,
    lang: Lang,
) -> Result<(), Failure> {
    let code = required_code(config)?;
    let anchors = identity::load_trust_anchors(&config.trust_anchors)?;
    let file = read_input(&args.path)?;
    let key_file = args.key.as_deref().map(read_input).transpose()?;
    let password = args.password_file.as_deref().map(identity::read_password_file).transpose()?;
    let policy = Policy {
        trust_anchors: &anchors,
        institution_code: code,
        code_field: config.institution_code_field,
        build_time: clock::build_time(),
    };
    let input = ImportInput { file: &file, key_file: key_file.as_deref(), password: password.as_deref() };
    let imported = identity::import(store, input, &policy, clock::now())?;
    tracing::info!(generation = %imported.generation, subject = %imported.info.subject, "identity installed");
    // The change has happened: a log failure is reported, not a failed command.
    audit::record_or_log(
        &config.state_dir,
        config.audit,
        AuditKind::Certificate,
        serde_json::json!({
            "event": "imported",
            "generation": imported.generation.clone(),
            "subject": imported.info.subject,
            "not_after": rfc3339(imported.info.not_after),
        }),
    );
    let not_after = rfc3339(imported.info.not_after);
    println!(
        "{}",
        match lang {
            Lang::Ja => format!(
                "機関証明書を設定しました（{}）: {}、有効期限 {not_after}",
                imported.generation, imported.info.subject
            ),
            Lang::En => format!(
                "installed institution certificate as {}: {}, valid until {not_after}",
                imported.generation, imported.info.subject
            ),
        }
    );
    Ok(())
}

fn show_status(
    config: &AgentConfig,
    store: &IdentityStore<OsStorage>,
    json: bool,
    lang: Lang,
) -> Result<(), Failure> {
    let current = store.load_current().map_err(ImportError::from)?;
    let report =
        status::report(current.as_ref(), config.institution_code_field, &config.renewal, clock::now())
            .map_err(|e| {
                Failure::cannot_run(
                    format!("stored certificate unreadable: {e}"),
                    format!("保存された証明書を読めません: {e}"),
                )
            })?;
    if json {
        let text = serde_json::to_string_pretty(&report.status)
            .map_err(|e| Failure::cannot_run(e.to_string(), e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", status::render_text(&report, lang));
    }
    Ok(())
}

fn make_csr(
    config: &AgentConfig,
    store: &IdentityStore<OsStorage>,
    out: &Path,
    key_type: Option<KeyAlgorithm>,
    lang: Lang,
) -> Result<(), Failure> {
    let code = required_code(config)?;
    let subject = CsrSubject {
        institution_code: code,
        common_name: config.csr.common_name.as_deref(),
        organization: config.csr.organization.as_deref(),
        unit: config.csr.unit.as_deref(),
    };
    let request = csr::generate(&subject, key_type.unwrap_or(config.csr.key_type))
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("鍵または CSR を作成できません: {e}")))?;
    let key_path = store.save_pending_key(&request.key).map_err(ImportError::from)?;
    write_atomic(&OsStorage, out, request.csr_pem.as_bytes(), MODE_PUBLIC).map_err(|e| {
        Failure::cannot_run(
            format!("cannot write {}: {e}", out.display()),
            format!("{} に書き込めません: {e}", out.display()),
        )
    })?;
    println!(
        "{}",
        match lang {
            Lang::Ja => format!(
                "CSR を {} に書き出しました。鍵は装置内（{}）に保管され、署名された証明書を `cpe-agent cert import` で取り込むまで保留されます。",
                out.display(),
                key_path.display()
            ),
            Lang::En => format!(
                "wrote the CSR to {}; the key stays on the device ({}) until the signed certificate is imported with `cpe-agent cert import`",
                out.display(),
                key_path.display()
            ),
        }
    );
    Ok(())
}

fn rollback(config: &AgentConfig, store: &IdentityStore<OsStorage>, lang: Lang) -> Result<(), Failure> {
    let restored = store.rollback().map_err(ImportError::from)?;
    let leaf = restored
        .chain
        .first()
        .ok_or_else(|| Failure::cannot_run("restored chain is empty", "証明書がありません"))?;
    let subject =
        identity::validate::cert_info(leaf, config.institution_code_field).map_or_else(|e| e, |i| i.subject);
    audit::record_or_log(
        &config.state_dir,
        config.audit,
        AuditKind::Certificate,
        serde_json::json!({ "event": "rolled_back", "generation": restored.generation.clone(), "subject": subject }),
    );
    println!(
        "{}",
        match lang {
            Lang::Ja => format!("以前の証明書（{}）に戻しました: {subject}", restored.generation),
            Lang::En => format!("rolled back to {}: {subject}", restored.generation),
        }
    );
    Ok(())
}

fn wipe(
    config: &AgentConfig,
    store: &IdentityStore<OsStorage>,
    yes: bool,
    lang: Lang,
) -> Result<(), Failure> {
    if !yes {
        return Err(Failure::cannot_run(
            "wipe destroys the institution keys and the device can no longer connect; add --yes to confirm",
            "wipe は機関の鍵を消去し、装置は接続できなくなります。実行するには --yes を付けてください。",
        ));
    }
    let destroyed = store.wipe().map_err(ImportError::from)?;
    audit::record_or_log(
        &config.state_dir,
        config.audit,
        AuditKind::Certificate,
        serde_json::json!({ "event": "wiped", "keys_destroyed": destroyed }),
    );
    println!(
        "{}",
        match lang {
            Lang::Ja => format!("鍵 {destroyed} 個を上書き消去しました。証明書の状態は none です。"),
            Lang::En => format!("overwrote and removed {destroyed} key(s); certificate state is now none"),
        }
    );
    Ok(())
}

fn diagnose(config: &AgentConfig, args: &DiagnoseArgs, lang: Lang) -> Result<u8, Failure> {
    use std::io::IsTerminal;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        Failure::cannot_run(
            format!("cannot start the runtime: {e}"),
            format!("実行環境を開始できません: {e}"),
        )
    })?;
    let progress: cpe_agent::diagnose::run::Progress = if std::io::stderr().is_terminal() {
        std::sync::Arc::new(move |r: &CheckResult| eprintln!("{}", progress_line(r, lang)))
    } else {
        std::sync::Arc::new(|_: &CheckResult| {})
    };
    let outcome = runtime.block_on(session::diagnose_system(
        config,
        args.segment.segments(),
        args.terminal,
        cpe_agent::orders::device::suspension(config),
        progress,
    ));
    // A resolver thread stuck past its timeout must not hold the exit.
    runtime.shutdown_background();
    let diagnosis =
        outcome.map_err(|e| Failure::cannot_run(e.to_string(), format!("診断結果を作成できません: {e}")))?;
    let report = &diagnosis.report;
    if let Err(e) = store::record(config, report, None) {
        tracing::warn!(error = %e, "the diagnosis is not stored on the device");
    }
    let limits = config.queue.limits();
    let queued = store::incident(report, None, store::incident_budget(&limits))
        .and_then(|incident| store::queue_from_cli(&config.state_dir, limits, &incident, now_unix_ms()));
    match queued {
        Ok(delivery) => tracing::info!(?delivery, "diagnosis queued for the carrier"),
        Err(e) => tracing::warn!(error = %e, "the diagnosis could not be queued for the carrier"),
    }
    let shown = diagnosis.report_in(lang);
    if args.json {
        let json = shown.to_json().map_err(|e| Failure::cannot_run(e.to_string(), e.to_string()))?;
        println!("{json}");
    } else {
        print!("{}", shown.render_text(lang));
    }
    Ok(diagnosis.verdict.exit_code())
}

fn now_unix_ms() -> i64 {
    i64::try_from(clock::now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// One line per finished check: status, name, time, evidence.
fn progress_line(r: &CheckResult, lang: Lang) -> String {
    format!("[{:<4}] {} ({} ms) {}", r.status.label(lang), r.name, r.duration_ms, r.evidence.text)
}

fn run_service(path: &Path, config: AgentConfig) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        Failure::cannot_run(
            format!("cannot start the runtime: {e}"),
            format!("実行環境を開始できません: {e}"),
        )
    })?;
    runtime
        .block_on(cpe_agent::daemon::run(path, config, terminate_signal()))
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("エージェントを開始できません: {e}")))
}

async fn terminate_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => std::future::pending().await,
    }
}
