//! Self-diagnosis for the isolation step of guideline §1.3.2 (Fig. 5, Fig. 7,
//! step ④): the device itself checks the terminal, the LAN, itself, the
//! uplink and the carrier, and names the segment where the fault is.
//!
//! This module owns the **pure decision core** of `cpe-agent diagnose`: the
//! vocabulary of check results ([`CheckResult`], [`Segment`],
//! [`CheckStatus`], [`Evidence`]), the catalogue of check names the probes
//! report under ([`checks`]), the verdict ([`verdict()`], in [`mod@verdict`]) and
//! the report document with its JSON shape, text rendering and exit code
//! ([`report`]). The core touches nothing: probes (ICMP, ARP, DNS, TLS,
//! MTU, …) sit behind a trait and hand their results in, so the verdict can
//! be tested exhaustively without a network.
//!
//! Around the core, each in its own module:
//!
//! - [`observe`]: what probes see and the pure parsers of kernel files and
//!   packets; [`probes`]: the [`probes::Probes`] trait (the one side
//!   effect) and the real [`probes::SystemProbes`]; [`exchange`]: the
//!   step-by-step TCP/TLS/HTTP probe of the carrier.
//! - [`run`]: which checks run, concurrently and time-bounded, and the pure
//!   judgement of each observation into a [`CheckResult`].
//! - [`session`]: one diagnosis of this device end to end (CLI and daemon);
//!   [`store`]: `last.json`, history, and the incident for the carrier.
//!
//! The path is walked in a fixed order, [`Segment::PATH`]: terminal → LAN →
//! device → uplink → carrier. The rules (first failure wins, warnings never
//! fault, skipped segments, suspension, backup uplink) are documented on
//! [`verdict()`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lang::Lang;

pub mod exchange;
pub mod observe;
pub mod probes;
pub mod report;
pub mod run;
pub mod session;
pub mod store;
pub mod verdict;

pub use report::{DiagnosisReport, ReportError, ReportVerdict, EXIT_COULD_NOT_RUN, EXIT_FAULT, EXIT_HEALTHY};
pub use verdict::{hint_for, verdict, Verdict};

/// A segment of the path from the clinic's terminal to the platform, in the
/// order the verdict walks it. Every check belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    /// The clinic's registered terminals (PCs, receipt computers): the
    /// clinic's own equipment, looked after by its PC vendor.
    Terminal,
    /// The LAN side of the CPE: interfaces, cabling, bridge.
    Lan,
    /// The CPE itself: agent, certificate, clock, resources, firewall.
    Device,
    /// The access line(s) from the CPE to the carrier: link, addressing,
    /// routing, DNS, TLS, MTU, loss.
    Uplink,
    /// The carrier's service and the platform one hop beyond the
    /// demarcation point (§3.2.1(1)).
    Carrier,
}

impl Segment {
    /// The walking order of the verdict: terminal → LAN → device → uplink → carrier.
    pub const PATH: [Segment; 5] =
        [Segment::Terminal, Segment::Lan, Segment::Device, Segment::Uplink, Segment::Carrier];

    /// The stable lower-case id used in JSON and check names (`"terminal"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Segment::Terminal => "terminal",
            Segment::Lan => "lan",
            Segment::Device => "device",
            Segment::Uplink => "uplink",
            Segment::Carrier => "carrier",
        }
    }

    /// The user-facing name in `lang`.
    pub const fn label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Segment::Terminal, Lang::Ja) => "端末",
            (Segment::Terminal, Lang::En) => "terminal",
            (Segment::Lan, _) => "LAN",
            (Segment::Device, Lang::Ja) => "ネットワーク機器",
            (Segment::Device, Lang::En) => "network device",
            (Segment::Uplink, Lang::Ja) => "回線",
            (Segment::Uplink, Lang::En) => "uplink",
            (Segment::Carrier, Lang::Ja) => "通信事業者",
            (Segment::Carrier, Lang::En) => "carrier",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The segment a verdict names: one of the five path segments, `none` when
/// nothing failed, or `suspended` when service is stopped by a carrier order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictSegment {
    /// A fault in the clinic's terminal(s).
    Terminal,
    /// A fault on the LAN side.
    Lan,
    /// A fault in the CPE itself.
    Device,
    /// A fault on the access line.
    Uplink,
    /// A fault at the carrier or beyond the demarcation point.
    Carrier,
    /// No fault found (warnings may still be listed).
    None,
    /// Service is suspended by a carrier order: not a fault.
    Suspended,
}

impl VerdictSegment {
    /// The stable lower-case id used in JSON (`"none"`, `"suspended"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            VerdictSegment::Terminal => "terminal",
            VerdictSegment::Lan => "lan",
            VerdictSegment::Device => "device",
            VerdictSegment::Uplink => "uplink",
            VerdictSegment::Carrier => "carrier",
            VerdictSegment::None => "none",
            VerdictSegment::Suspended => "suspended",
        }
    }

    /// The faulty path segment, if this verdict names one.
    pub const fn fault(self) -> Option<Segment> {
        match self {
            VerdictSegment::Terminal => Some(Segment::Terminal),
            VerdictSegment::Lan => Some(Segment::Lan),
            VerdictSegment::Device => Some(Segment::Device),
            VerdictSegment::Uplink => Some(Segment::Uplink),
            VerdictSegment::Carrier => Some(Segment::Carrier),
            VerdictSegment::None | VerdictSegment::Suspended => None,
        }
    }
}

impl From<Segment> for VerdictSegment {
    fn from(s: Segment) -> Self {
        match s {
            Segment::Terminal => VerdictSegment::Terminal,
            Segment::Lan => VerdictSegment::Lan,
            Segment::Device => VerdictSegment::Device,
            Segment::Uplink => VerdictSegment::Uplink,
            Segment::Carrier => VerdictSegment::Carrier,
        }
    }
}

impl fmt::Display for VerdictSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check (the `aziotctl check` vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check passed.
    Ok,
    /// Something is degraded but service works; never a fault by itself.
    Warning,
    /// The check failed: evidence of a fault in its segment.
    Failed,
    /// The check did not run (not configured, not applicable, or a
    /// prerequisite failed). Proves neither health nor fault.
    Skipped,
}

impl CheckStatus {
    /// The stable lower-case id used in JSON (`"ok"`, `"warning"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Failed => "failed",
            CheckStatus::Skipped => "skipped",
        }
    }

    /// A short label for the text table in `lang`.
    pub const fn label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (CheckStatus::Ok, Lang::Ja) => "正常",
            (CheckStatus::Ok, Lang::En) => "OK",
            (CheckStatus::Warning, Lang::Ja) => "注意",
            (CheckStatus::Warning, Lang::En) => "WARN",
            (CheckStatus::Failed, Lang::Ja) => "異常",
            (CheckStatus::Failed, Lang::En) => "FAIL",
            (CheckStatus::Skipped, Lang::Ja) => "省略",
            (CheckStatus::Skipped, Lang::En) => "SKIP",
        }
    }
}

/// What a check saw: structured key/values for the carrier and the incident
/// record (`"gateway": "192.0.2.1"`, `"loss_pct": "42"`), plus one short
/// sentence for the person reading the report, in Japanese and English.
/// Keys and values are language-neutral (English snake_case keys, values as
/// the system shows them); only `text` is translated.
///
/// JSON: `{"text": {"ja": "…", "en": "…"}, "values": {…}}`. A report stored
/// before the text was translated (`"text": "…"`, English only) still reads:
/// the English sentence stands in for both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// One short sentence in both languages, e.g. 「192.0.2.1 から ARP の
    /// 応答がありません（3 回）」 / `"no ARP reply from 192.0.2.1 after 3 tries"`.
    #[serde(deserialize_with = "text_or_legacy_string")]
    pub text: Text,
    /// Structured facts, sorted by key so the JSON is stable.
    pub values: BTreeMap<String, String>,
}

impl Evidence {
    /// Evidence with a sentence (Japanese, English) and no values.
    pub fn new(ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self { text: Text::new(ja, en), values: BTreeMap::new() }
    }

    /// Adds one key/value fact (builder style); numbers go in as text
    /// (`.with("loss_pct", 60.to_string())`).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// The same values with another sentence.
    #[must_use]
    pub fn saying(self, ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self { text: Text::new(ja, en), ..self }
    }
}

/// Reads `evidence.text` as `{"ja", "en"}`, or as the plain English string
/// of reports stored before the translation (used for both languages).
fn text_or_legacy_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Both(Text),
        English(String),
    }
    Ok(match Stored::deserialize(d)? {
        Stored::Both(text) => text,
        Stored::English(en) => Text::new(en.clone(), en),
    })
}

/// The result of one named check, as the probes hand it to the verdict.
///
/// Serialises to `{"name", "segment", "status", "evidence", "duration_ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable snake_case id from [`checks`], e.g. `"uplink.default_route"`,
    /// optionally followed by `@instance` for per-terminal or
    /// per-interface checks (`"terminal.icmp@reception-pc"`,
    /// `"lan.link@lan1"`). Hints are keyed by the part before `@`.
    pub name: String,
    /// The segment this check is evidence about.
    pub segment: Segment,
    /// Outcome.
    pub status: CheckStatus,
    /// What the check saw.
    pub evidence: Evidence,
    /// How long the check took.
    pub duration_ms: u64,
}

impl CheckResult {
    /// A result with the given fields.
    pub fn new(
        name: impl Into<String>,
        segment: Segment,
        status: CheckStatus,
        evidence: Evidence,
        duration_ms: u64,
    ) -> Self {
        Self { name: name.into(), segment, status, evidence, duration_ms }
    }

    /// The catalogue part of the name, without an `@instance` suffix.
    pub fn base_name(&self) -> &str {
        base_name(&self.name)
    }
}

/// The catalogue part of a check name: everything before the first `@`.
pub fn base_name(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

/// A service suspension in force (guideline §2.2 ⑥): the verified stop order
/// the device is enforcing. An input to the verdict, not a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The carrier's order id (`cpe-provision order show N`).
    pub order: u64,
    /// The order's reason, in Japanese, as the carrier wrote it.
    pub reason_ja: String,
    /// The order's reason, in English.
    pub reason_en: String,
}

/// A user-facing text in both languages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// 日本語.
    pub ja: String,
    /// English.
    pub en: String,
}

impl Text {
    /// A text from its Japanese and English versions.
    pub fn new(ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self { ja: ja.into(), en: en.into() }
    }

    /// The version in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ja => &self.ja,
            Lang::En => &self.en,
        }
    }
}

/// The catalogue of check names the probes report under. Names are stable
/// ids (they are stored in incident records and matched by the carrier);
/// per-instance checks append `@instance` (terminal name, interface name).
///
/// Which probe result maps to which name matters for the verdict; the
/// boundaries are documented on each constant.
pub mod checks {
    /// Terminal: neighbour (ARP/ND) entry state of the terminal's IP.
    pub const TERMINAL_NEIGHBOUR: &str = "terminal.neighbour";
    /// Terminal: ICMP echo to the terminal (terminal down, powered off).
    pub const TERMINAL_ICMP: &str = "terminal.icmp";
    /// Terminal: a DHCP lease is held by the terminal's MAC (only when the CPE serves DHCP).
    pub const TERMINAL_DHCP_LEASE: &str = "terminal.dhcp_lease";
    /// Terminal: the terminal's IP lies in the LAN subnet (wrong subnet / static misconfiguration).
    pub const TERMINAL_SUBNET: &str = "terminal.subnet";
    /// Terminal: only one MAC answers for the terminal's IP (duplicate IP).
    pub const TERMINAL_DUPLICATE_IP: &str = "terminal.duplicate_ip";

    /// LAN: admin/oper state and carrier of a LAN interface (`lan.link@lan1`).
    pub const LAN_LINK: &str = "lan.link";
    /// LAN: negotiated speed/duplex (a half-duplex or 10 Mb/s link is a warning).
    pub const LAN_SPEED_DUPLEX: &str = "lan.speed_duplex";
    /// LAN: error and drop counter deltas during the run.
    pub const LAN_ERRORS: &str = "lan.errors";
    /// LAN: the interface is a member of the LAN bridge.
    pub const LAN_BRIDGE: &str = "lan.bridge";

    /// Device: the agent's own state (configuration loaded, state directory writable).
    pub const DEVICE_AGENT: &str = "device.agent";
    /// Device: the institution certificate exists, parses and is within validity.
    pub const DEVICE_CERTIFICATE: &str = "device.certificate";
    /// Device: the clock is set (not before the build time) and plausible.
    pub const DEVICE_CLOCK: &str = "device.clock";
    /// Device: free memory.
    pub const DEVICE_MEMORY: &str = "device.memory";
    /// Device: free disk (state partition).
    pub const DEVICE_DISK: &str = "device.disk";
    /// Device: CPU load.
    pub const DEVICE_CPU: &str = "device.cpu";
    /// Device: the nftables ruleset is the one the agent expects.
    pub const DEVICE_FIREWALL: &str = "device.firewall";
    /// Device: whether a stop order is in force (informational: `ok` when
    /// not suspended, `skipped` when the order store is unreadable; the
    /// suspension itself reaches the verdict as a [`super::Suspension`]).
    pub const DEVICE_SUSPENSION: &str = "device.suspension";

    /// Uplink: which uplink carries the default route (`ok` with evidence
    /// `active=primary|backup`; `failed` when none does).
    pub const UPLINK_ACTIVE: &str = "uplink.active";
    /// Uplink: link state of the primary WAN interface.
    pub const UPLINK_PRIMARY_LINK: &str = "uplink.primary.link";
    /// Uplink: address on the primary WAN interface.
    pub const UPLINK_PRIMARY_ADDRESS: &str = "uplink.primary.address";
    /// Uplink: link state of the backup WAN interface.
    pub const UPLINK_BACKUP_LINK: &str = "uplink.backup.link";
    /// Uplink: address on the backup WAN interface.
    pub const UPLINK_BACKUP_ADDRESS: &str = "uplink.backup.address";
    /// Uplink: a default route exists.
    pub const UPLINK_DEFAULT_ROUTE: &str = "uplink.default_route";
    /// Uplink: the gateway answers ARP.
    pub const UPLINK_GATEWAY_ARP: &str = "uplink.gateway_arp";
    /// Uplink: the gateway answers ICMP echo.
    pub const UPLINK_GATEWAY_ICMP: &str = "uplink.gateway_icmp";
    /// Uplink: the carrier host name resolves.
    pub const UPLINK_DNS: &str = "uplink.dns";
    /// Uplink: TCP connect to the carrier server. Fails only when nothing
    /// answers (timeout, ICMP unreachable). A refusal (RST from the carrier
    /// host) proves the path works: report this check `ok` with evidence
    /// `refused=true` and fail [`CARRIER_STATUS`] (carrier server stopped).
    pub const UPLINK_TCP_CONNECT: &str = "uplink.tcp_connect";
    /// Uplink: the TLS handshake completes at the transport level (a TLS
    /// server answers with a valid certificate). A handshake the carrier
    /// *refuses because of our certificate* is [`CARRIER_CERTIFICATE_ACCEPTED`].
    pub const UPLINK_TLS_HANDSHAKE: &str = "uplink.tls_handshake";
    /// Uplink: path MTU; DF probes of full size vanish while small ones pass (MTU black hole).
    pub const UPLINK_PATH_MTU: &str = "uplink.path_mtu";
    /// Uplink: packet loss over N probes (heavy loss fails, some loss warns).
    pub const UPLINK_LOSS: &str = "uplink.loss";
    /// Uplink: round-trip latency over N probes.
    pub const UPLINK_LATENCY: &str = "uplink.latency";
    /// Uplink: jitter over N probes.
    pub const UPLINK_JITTER: &str = "uplink.jitter";

    /// Carrier: the carrier server's own status answer (connection refused
    /// by the carrier host, HTTP 5xx, no answer once connected).
    pub const CARRIER_STATUS: &str = "carrier.status";
    /// Carrier: the carrier accepted the institution certificate in the
    /// mTLS handshake (alert `bad_certificate`, `certificate_revoked`,
    /// `certificate_expired`, … fail this check).
    pub const CARRIER_CERTIFICATE_ACCEPTED: &str = "carrier.certificate_accepted";
    /// Carrier: the configured platform address one hop beyond the demarcation point answers.
    pub const CARRIER_PLATFORM: &str = "carrier.platform";

    /// Every catalogued name with its segment, in path order, and within a
    /// segment in **dependency order**: a check comes before the checks its
    /// failure would drag down (clock before certificate, loss and MTU
    /// before TCP/TLS, the carrier's refusal of the certificate before its
    /// status answer). The verdict's hint follows the earliest failed check
    /// in this order, i.e. the most basic cause.
    pub const ALL: &[(&str, super::Segment)] = {
        use super::Segment::{Carrier, Device, Lan, Terminal, Uplink};
        &[
            (TERMINAL_SUBNET, Terminal),
            (TERMINAL_DUPLICATE_IP, Terminal),
            (TERMINAL_DHCP_LEASE, Terminal),
            (TERMINAL_NEIGHBOUR, Terminal),
            (TERMINAL_ICMP, Terminal),
            (LAN_LINK, Lan),
            (LAN_BRIDGE, Lan),
            (LAN_SPEED_DUPLEX, Lan),
            (LAN_ERRORS, Lan),
            (DEVICE_CLOCK, Device),
            (DEVICE_AGENT, Device),
            (DEVICE_MEMORY, Device),
            (DEVICE_DISK, Device),
            (DEVICE_CPU, Device),
            (DEVICE_FIREWALL, Device),
            (DEVICE_CERTIFICATE, Device),
            (DEVICE_SUSPENSION, Device),
            (UPLINK_PRIMARY_LINK, Uplink),
            (UPLINK_PRIMARY_ADDRESS, Uplink),
            (UPLINK_BACKUP_LINK, Uplink),
            (UPLINK_BACKUP_ADDRESS, Uplink),
            (UPLINK_ACTIVE, Uplink),
            (UPLINK_DEFAULT_ROUTE, Uplink),
            (UPLINK_GATEWAY_ARP, Uplink),
            (UPLINK_GATEWAY_ICMP, Uplink),
            (UPLINK_LOSS, Uplink),
            (UPLINK_PATH_MTU, Uplink),
            (UPLINK_DNS, Uplink),
            (UPLINK_TCP_CONNECT, Uplink),
            (UPLINK_TLS_HANDSHAKE, Uplink),
            (UPLINK_LATENCY, Uplink),
            (UPLINK_JITTER, Uplink),
            (CARRIER_CERTIFICATE_ACCEPTED, Carrier),
            (CARRIER_STATUS, Carrier),
            (CARRIER_PLATFORM, Carrier),
        ]
    };

    /// What a catalogued check looks at, in Japanese, for the Japanese report
    /// (clinic staff read 「端末への ping」 more easily than `terminal.icmp`).
    /// Takes a full name (`terminal.icmp@reception`); `None` outside the catalogue.
    pub fn label_ja(name: &str) -> Option<&'static str> {
        Some(match super::base_name(name) {
            TERMINAL_SUBNET => "端末の IP アドレスの範囲",
            TERMINAL_DUPLICATE_IP => "IP アドレスの重複",
            TERMINAL_DHCP_LEASE => "DHCP による払い出し",
            TERMINAL_NEIGHBOUR => "端末の ARP 応答",
            TERMINAL_ICMP => "端末への ping",
            LAN_LINK => "LAN ポートのリンク",
            LAN_BRIDGE => "LAN ブリッジの構成",
            LAN_SPEED_DUPLEX => "LAN の速度・通信方式",
            LAN_ERRORS => "LAN のエラー・破棄",
            DEVICE_CLOCK => "時刻",
            DEVICE_AGENT => "エージェントの状態",
            DEVICE_MEMORY => "空きメモリ",
            DEVICE_DISK => "保存領域の空き",
            DEVICE_CPU => "CPU 使用率",
            DEVICE_FIREWALL => "ファイアウォール設定",
            DEVICE_CERTIFICATE => "機関証明書",
            DEVICE_SUSPENSION => "利用停止命令",
            UPLINK_PRIMARY_LINK => "主回線のリンク",
            UPLINK_PRIMARY_ADDRESS => "主回線のアドレス",
            UPLINK_BACKUP_LINK => "予備回線のリンク",
            UPLINK_BACKUP_ADDRESS => "予備回線のアドレス",
            UPLINK_ACTIVE => "使用中の回線",
            UPLINK_DEFAULT_ROUTE => "デフォルトルート",
            UPLINK_GATEWAY_ARP => "ゲートウェイの ARP 応答",
            UPLINK_GATEWAY_ICMP => "ゲートウェイへの ping",
            UPLINK_DNS => "名前解決（DNS）",
            UPLINK_TCP_CONNECT => "通信事業者サーバへの TCP 接続",
            UPLINK_TLS_HANDSHAKE => "TLS ハンドシェイク",
            UPLINK_PATH_MTU => "経路 MTU",
            UPLINK_LOSS => "パケット損失",
            UPLINK_LATENCY => "遅延",
            UPLINK_JITTER => "揺らぎ（ジッタ）",
            CARRIER_CERTIFICATE_ACCEPTED => "機関証明書の受理",
            CARRIER_STATUS => "通信事業者サーバの応答",
            CARRIER_PLATFORM => "分界点の先（接続先）への到達性",
            _ => return None,
        })
    }

    /// The position of a name (the part before `@`) in [`ALL`]; names not
    /// in the catalogue rank last.
    pub fn rank(name: &str) -> usize {
        let base = super::base_name(name);
        ALL.iter().position(|(n, _)| *n == base).unwrap_or(usize::MAX)
    }

    /// The segment of a catalogued name (the part before `@` is looked up).
    pub fn segment_of(name: &str) -> Option<super::Segment> {
        let base = super::base_name(name);
        ALL.iter().find(|(n, _)| *n == base).map(|(_, s)| *s)
    }
}
