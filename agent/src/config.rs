//! The agent configuration: `/etc/cpe-agent/agent.toml` plus drop-ins.
//!
//! Drop-ins in `agent.d/*.toml` beside the main file are merged over it in
//! file-name order (tables merge key by key, other values replace), so a
//! carrier can ship defaults and a unit can carry its own small override.
//! Unknown keys are errors: a typo must not silently fall back to a default.
//! Relative paths are taken relative to the directory of the main file.
//!
//! Imports run one way through this module: it embeds the section types of
//! the feature cores that never read the whole configuration (the CSR key
//! type and renewal policy of [`crate::identity`], [`crate::thresholds`],
//! [`crate::audit`], the limits of [`crate::queue`]); the modules that read
//! the whole configuration (orders, diagnose, renew, the daemon, the CLI)
//! import it, and it imports none of them.

use std::path::{Path, PathBuf};

use cpe_common::institution::{CodeField, InstitutionCode};
use serde::Deserialize;

use crate::identity::csr::KeyAlgorithm;
use crate::identity::renewal::RenewalPolicy;
use crate::thresholds::ThresholdsConfig;

/// Default location of the main configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cpe-agent/agent.toml";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cpe-agent";

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the identity and other state live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// PEM files of the certification body's CA certificates.
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    /// The 10-digit code of the institution this device serves.
    pub institution_code: Option<InstitutionCode>,
    /// Which subject attribute carries the code.
    #[serde(default)]
    pub institution_code_field: CodeField,
    /// Subject and key of CSRs made on the device.
    #[serde(default)]
    pub csr: CsrConfig,
    /// When to renew.
    #[serde(default)]
    pub renewal: RenewalPolicy,
    /// The carrier server and the report cadence (`cpe-agent run`).
    #[serde(default)]
    pub carrier: CarrierConfig,
    /// Where the store-and-forward queue lives and how large it may grow.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Where metrics are read from (tests point these at fixture trees).
    #[serde(default)]
    pub system: SystemConfig,
    /// Two-level thresholds (caution 注意 / warning 警告) per metric.
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// The clinic side and the far side of the device: LAN interfaces, the
    /// platform address beyond the demarcation point (diagnosis, orders).
    #[serde(default)]
    pub network: NetworkConfig,
    /// The clinic's registered terminals (`[[terminal]]`), checked by
    /// `cpe-agent diagnose`.
    #[serde(default, rename = "terminal")]
    pub terminals: Vec<TerminalConfig>,
    /// Compliance orders: the carrier's order keys, clock trust.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// The notice page on the LAN.
    #[serde(default)]
    pub notice: NoticeConfig,
    /// How much audit log the device keeps (`[audit] max_bytes`, `segment_bytes`).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Timeouts, probe counts and limits of `cpe-agent diagnose`.
    #[serde(default)]
    pub diagnose: DiagnoseConfig,
}

/// `[orders]`: how the device verifies compliance orders.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// The carrier's order public keys (Ed25519, 64 hex characters each).
    /// Read only when the order state is first created; afterwards only
    /// signed key-rotation orders change the trusted keys.
    pub keys: Vec<String>,
    /// A file whose existence says the clock is synchronised (e.g.
    /// `/run/systemd/timesync/synchronized`).
    pub time_synced_flag: Option<PathBuf>,
}

impl OrdersConfig {
    /// The keys as bytes (checked when the configuration was loaded).
    pub fn public_keys(&self) -> Vec<[u8; 32]> {
        self.keys.iter().filter_map(|k| parse_order_key(k).ok()).collect()
    }
}

/// Parses an order public key (Ed25519, 32 bytes) written as 64 hex
/// characters, the form of `[orders] keys` and of the order state file.
pub fn parse_order_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    cpe_common::hex::decode(text)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| format!("order key {text:?} is not 64 hex characters (an Ed25519 public key)"))
}

/// `[notice]`: the local notice page (§2.2 ⑦).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeConfig {
    /// Addresses to serve it on, e.g. `["192.168.1.1:80"]` (the LAN
    /// address); empty: no notice page.
    pub listen: Vec<std::net::SocketAddr>,
    /// The carrier's contact, Japanese (e.g. a phone number and hours).
    pub contact_ja: String,
    /// The carrier's contact, English.
    pub contact_en: String,
    /// Least seconds between two starts of the page's self-check (60).
    pub self_check_interval_s: u64,
}

impl Default for NoticeConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            contact_ja: String::new(),
            contact_en: String::new(),
            self_check_interval_s: 60,
        }
    }
}

/// `[diagnose]`: how `cpe-agent diagnose` probes and judges. The defaults
/// keep the worst case of a run under 10 s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnoseConfig {
    /// Hard limit of a whole run, ms; checks still running then fail as timed out.
    pub total_timeout_ms: u64,
    /// Wait for an echo reply after the last request, ms.
    pub echo_timeout_ms: u64,
    /// Time between echo requests of one series, ms.
    pub echo_interval_ms: u64,
    /// Echo requests to each terminal, the gateway and the platform.
    pub echo_count: u16,
    /// Echo requests to the carrier for loss, latency and jitter.
    pub quality_probes: u16,
    /// Time between the quality echoes, ms.
    pub quality_interval_ms: u64,
    /// DNS resolution of the carrier host, ms.
    pub dns_timeout_ms: u64,
    /// TCP connect to the carrier, ms.
    pub connect_timeout_ms: u64,
    /// TLS handshake plus `/v1/ping`, ms.
    pub tls_timeout_ms: u64,
    /// The MTU the uplink should carry (IP packet size of the largest DF probe).
    pub expected_mtu: u32,
    /// How long to listen for ARP answers when looking for a duplicate IP, ms.
    pub duplicate_window_ms: u64,
    /// Window over which LAN error/drop counters and CPU use are measured, ms.
    pub counter_window_ms: u64,
    /// Loss (%) from which `uplink.loss` warns.
    pub loss_warn_pct: f64,
    /// Loss (%) from which `uplink.loss` fails.
    pub loss_fail_pct: f64,
    /// Average round trip (ms) from which `uplink.latency` warns.
    pub latency_warn_ms: f64,
    /// Average round trip (ms) from which `uplink.latency` fails.
    pub latency_fail_ms: f64,
    /// Jitter (ms, mean difference of successive round trips) from which `uplink.jitter` warns.
    pub jitter_warn_ms: f64,
    /// Free memory (% of total) below which `device.memory` fails.
    pub min_free_memory_pct: f64,
    /// Free space (KiB) on the state partition below which `device.disk` fails.
    pub min_free_disk_kib: u64,
    /// CPU busy (%) from which `device.cpu` warns.
    pub cpu_warn_pct: f64,
    /// Largest tolerated difference (s) between the device and carrier clocks.
    pub max_clock_skew_s: i64,
    /// The agent's nftables table, present only while service is suspended.
    pub firewall_table: String,
    /// Reports kept in `<state_dir>/diagnosis/history/`.
    pub history: usize,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        Self {
            total_timeout_ms: 10_000,
            echo_timeout_ms: 1_000,
            echo_interval_ms: 100,
            echo_count: 3,
            quality_probes: 20,
            quality_interval_ms: 50,
            dns_timeout_ms: 2_000,
            connect_timeout_ms: 2_000,
            tls_timeout_ms: 3_000,
            expected_mtu: 1500,
            duplicate_window_ms: 800,
            counter_window_ms: 1_000,
            loss_warn_pct: 5.0,
            loss_fail_pct: 25.0,
            latency_warn_ms: 200.0,
            latency_fail_ms: 1_000.0,
            jitter_warn_ms: 50.0,
            min_free_memory_pct: 5.0,
            min_free_disk_kib: 1024,
            cpu_warn_pct: 90.0,
            max_clock_skew_s: 300,
            firewall_table: "inet cpe_agent".into(),
            history: 20,
        }
    }
}

impl DiagnoseConfig {
    /// Checks the values; returns a message naming the bad one.
    pub fn check(&self) -> Result<(), String> {
        if self.total_timeout_ms == 0
            || self.echo_timeout_ms == 0
            || self.echo_count == 0
            || self.quality_probes == 0
        {
            return Err(
                "diagnose.total_timeout_ms, echo_timeout_ms, echo_count and quality_probes must be above 0"
                    .into(),
            );
        }
        if !(576..=9000).contains(&self.expected_mtu) {
            return Err(format!(
                "diagnose.expected_mtu is {}; it must be between 576 and 9000",
                self.expected_mtu
            ));
        }
        if self.loss_warn_pct > self.loss_fail_pct || self.latency_warn_ms > self.latency_fail_ms {
            return Err("diagnose: the warn thresholds must not be above the fail thresholds".into());
        }
        Ok(())
    }
}

/// `[network]`: the interfaces and addresses around the device. The uplinks
/// (WAN side) are `[system] primary_uplink` / `backup_uplink`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// LAN interfaces facing the clinic (a bridge such as `br-lan`, or ports).
    pub lan: Vec<String>,
    /// An address one hop beyond the demarcation point (§3.2.1(1)), e.g. the
    /// platform's gateway, probed by the carrier segment of a diagnosis.
    pub platform: Option<std::net::IpAddr>,
    /// The DHCP server's lease file, if this device serves DHCP on the LAN
    /// (dnsmasq format: `expiry mac ip name client-id`).
    pub dhcp_leases: Option<PathBuf>,
}

/// One `[[terminal]]`: a registered clinic terminal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// A name the clinic knows it by (e.g. `reception-pc`).
    pub name: String,
    /// Its LAN address.
    pub ip: std::net::IpAddr,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`, if registered.
    pub mac: Option<String>,
}

/// `[carrier]`: the server the agent reports to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarrierConfig {
    /// Base URL, e.g. `https://carrier.example.jp:8443`; empty: no reporting.
    pub url: String,
    /// PEM file of the CA that signed the carrier server's certificate.
    pub ca: Option<PathBuf>,
    /// Seconds between heartbeats.
    pub interval_s: u64,
    /// Seconds between metric samples inside an interval (rates, max, p95).
    pub sample_s: u64,
    /// Seconds a command long-poll is held open.
    pub long_poll_s: u64,
    /// Most records per batch.
    pub batch_max: usize,
    /// Seconds of request timeout.
    pub timeout_s: u64,
    /// Longest wait between retries, seconds.
    pub backoff_max_s: u64,
}

impl Default for CarrierConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca: None,
            interval_s: 60,
            sample_s: 5,
            long_poll_s: 30,
            batch_max: 200,
            timeout_s: 30,
            backoff_max_s: 300,
        }
    }
}

/// `[queue]`: bounds of the on-disk report queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Largest total size, bytes.
    pub max_bytes: u64,
    /// Oldest record kept, days.
    pub max_age_days: u64,
}

impl QueueConfig {
    /// The queue's limits from this section (other limits at their defaults).
    pub fn limits(&self) -> crate::queue::QueueLimits {
        crate::queue::QueueLimits {
            max_total_bytes: self.max_bytes,
            max_age_ms: i64::try_from(self.max_age_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX),
            ..crate::queue::QueueLimits::default()
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_bytes: 4 * 1024 * 1024, max_age_days: 7 }
    }
}

/// `[system]`: roots of the kernel's views and the uplinks to watch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Usually `/proc`.
    pub proc_root: PathBuf,
    /// Usually `/sys`.
    pub sys_root: PathBuf,
    /// Primary uplink interface (e.g. `wan0`).
    pub primary_uplink: Option<String>,
    /// Backup uplink interface (e.g. `wwan0`).
    pub backup_uplink: Option<String>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self { proc_root: "/proc".into(), sys_root: "/sys".into(), primary_uplink: None, backup_uplink: None }
    }
}

/// `[csr]`: what `cert csr` puts in the request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrConfig {
    /// Name before the code in the common name (e.g. the clinic's name).
    pub common_name: Option<String>,
    /// Organization (O).
    pub organization: Option<String>,
    /// Device unit (OU) for a first enrolment; renewals keep the current one.
    pub unit: Option<String>,
    /// Key algorithm (`ecdsa-p256`, `ecdsa-p384`, `ed25519`).
    #[serde(default)]
    pub key_type: KeyAlgorithm,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The main file does not exist.
    #[error("configuration file {} not found; create it (see README.md) or pass --config PATH", path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid TOML or has wrong keys or values.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file (or the merged result, named after the main file).
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
}

impl AgentConfig {
    /// Loads `path` and the drop-ins of `<dir of path>/agent.d/`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut merged = read_table(path)?;
        for drop_in in drop_ins(path)? {
            let table = read_table(&drop_in)?;
            merge(&mut merged, table);
        }
        Self::from_merged(merged, path)
    }

    /// Builds the configuration from the merged TOML of the main file at
    /// `path` and its drop-ins: checks keys and values, resolves relative paths.
    pub fn from_merged(merged: toml::Table, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| {
            ConfigError::Invalid { path: path.to_owned(), message: e.message().to_owned() }
        })?;
        config.renewal.check().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        let base = cpe_common::durable::parent_dir(path).to_owned();
        config.state_dir = base.join(&config.state_dir);
        for anchor in &mut config.trust_anchors {
            *anchor = base.join(&*anchor);
        }
        if let Some(ca) = &mut config.carrier.ca {
            *ca = base.join(&*ca);
        }
        config.system.proc_root = base.join(&config.system.proc_root);
        config.system.sys_root = base.join(&config.system.sys_root);
        if let Some(leases) = &mut config.network.dhcp_leases {
            *leases = base.join(&*leases);
        }
        if let Some(flag) = &mut config.orders.time_synced_flag {
            *flag = base.join(&*flag);
        }
        for key in &config.orders.keys {
            parse_order_key(key).map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("[orders] keys: {message}"),
            })?;
        }
        config.diagnose.check().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        config
            .thresholds
            .check()
            .map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        if config.carrier.interval_s == 0 || config.carrier.sample_s == 0 || config.carrier.batch_max == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "carrier.interval_s, carrier.sample_s and carrier.batch_max must be above 0".into(),
            });
        }
        Ok(config)
    }
}

/// Largest configuration file (or drop-in) read.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = cpe_common::bounded::read_text(path, MAX_CONFIG_BYTES).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound { path: path.to_owned() }
        } else {
            ConfigError::Read { path: path.to_owned(), source }
        }
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Invalid { path: path.to_owned(), message: e.to_string() })
}

fn drop_ins(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = cpe_common::durable::parent_dir(path).join("agent.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hex_round_trips_and_refuses_bad_text() {
        let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 7).unwrap());
        assert_eq!(parse_order_key(&cpe_common::hex::encode(&key)).unwrap(), key);
        assert_eq!(
            parse_order_key(&format!(" {} ", cpe_common::hex::encode(&key).to_uppercase())).unwrap(),
            key
        );
        assert!(parse_order_key(&"0".repeat(63)).is_err());
        assert!(parse_order_key(&"g".repeat(64)).is_err());
        assert!(parse_order_key(&"é".repeat(32)).is_err());
        assert!(parse_order_key("+1").is_err());
    }

    #[test]
    fn defaults_drop_ins_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("agent.toml");
        std::fs::write(&main, "institution_code = \"1312345678\"\ntrust_anchors = [\"ca.pem\"]\n[csr]\ncommon_name = \"Clinic\"\n").unwrap();
        std::fs::create_dir(dir.path().join("agent.d")).unwrap();
        std::fs::write(dir.path().join("agent.d/20-state.toml"), "state_dir = \"/data/state\"\n").unwrap();
        std::fs::write(dir.path().join("agent.d/10-csr.toml"), "[csr]\norganization = \"Org\"\n").unwrap();
        std::fs::write(dir.path().join("agent.d/README"), "not toml").unwrap();
        let config = AgentConfig::load(&main).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/data/state"));
        assert_eq!(config.trust_anchors, vec![dir.path().join("ca.pem")]);
        assert_eq!(config.csr.common_name.as_deref(), Some("Clinic"));
        assert_eq!(config.csr.organization.as_deref(), Some("Org"));
        assert_eq!(config.institution_code_field, CodeField::SerialNumber);
        assert_eq!(config.renewal, RenewalPolicy::default());
    }

    #[test]
    fn network_and_terminals() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("agent.toml");
        std::fs::write(
            &main,
            "[network]\nlan = [\"br-lan\"]\nplatform = \"10.9.0.2\"\ndhcp_leases = \"leases\"\n\
             [[terminal]]\nname = \"reception\"\nip = \"192.168.10.20\"\nmac = \"02:00:00:00:00:20\"\n\
             [[terminal]]\nname = \"exam\"\nip = \"192.168.10.21\"\n",
        )
        .unwrap();
        let config = AgentConfig::load(&main).unwrap();
        assert_eq!(config.network.lan, vec!["br-lan".to_string()]);
        assert_eq!(config.network.platform, Some("10.9.0.2".parse().unwrap()));
        assert_eq!(config.network.dhcp_leases, Some(dir.path().join("leases")));
        assert_eq!(config.terminals.len(), 2);
        assert_eq!(config.terminals[1].mac, None);
        assert_eq!(config.diagnose, DiagnoseConfig::default());
        std::fs::write(&main, "[diagnose]\nexpected_mtu = 1400\necho_count = 5\n").unwrap();
        let config = AgentConfig::load(&main).unwrap();
        assert_eq!((config.diagnose.expected_mtu, config.diagnose.echo_count), (1400, 5));
        std::fs::write(&main, "[diagnose]\nexpected_mtu = 100\n").unwrap();
        assert!(AgentConfig::load(&main).unwrap_err().to_string().contains("expected_mtu"));
        std::fs::write(&main, "[[terminal]]\nname = \"x\"\nip = \"192.168.10.300\"\n").unwrap();
        assert!(AgentConfig::load(&main).unwrap_err().to_string().contains("invalid IP"));
    }

    #[test]
    fn orders_and_notice() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("agent.toml");
        let key = "ab".repeat(32);
        std::fs::write(
            &main,
            format!(
                "[orders]\nkeys = [\"{key}\"]\ntime_synced_flag = \"run/synced\"\n\
                 [notice]\nlisten = [\"192.168.1.1:80\"]\ncontact_ja = \"電話\"\n"
            ),
        )
        .unwrap();
        let config = AgentConfig::load(&main).unwrap();
        assert_eq!(config.orders.public_keys(), vec![[0xab; 32]]);
        assert_eq!(config.orders.time_synced_flag, Some(dir.path().join("run/synced")));
        assert_eq!(config.notice.listen, vec!["192.168.1.1:80".parse().unwrap()]);
        assert_eq!(config.notice.contact_ja, "電話");
        assert_eq!(config.notice.self_check_interval_s, 60, "once a minute unless configured");
        std::fs::write(&main, "[notice]\nself_check_interval_s = 5\n").unwrap();
        assert_eq!(AgentConfig::load(&main).unwrap().notice.self_check_interval_s, 5);
        std::fs::write(&main, "[orders]\nkeys = [\"abcd\"]\n").unwrap();
        assert!(AgentConfig::load(&main).unwrap_err().to_string().contains("[orders] keys"));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("agent.toml");
        assert!(matches!(AgentConfig::load(&main), Err(ConfigError::NotFound { .. })));
        for (text, needle) in [
            ("institution_code = \"12\"", "10 ASCII digits"),
            ("instituton_code = \"1312345678\"", "unknown field"),
            ("state_dir = ", "line 1, column 13"),
            ("[renewal]\nlifetime_fraction = 1.5", "between 0 and 1"),
        ] {
            std::fs::write(&main, text).unwrap();
            let err = AgentConfig::load(&main).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("agent.toml"), "{text:?} gave {err}");
        }
    }
}
