//! Planning a run: what is checked (terminals, LAN interfaces, uplinks, the
//! carrier and the platform) from the configuration and `--segment`, and
//! the names of every check the run reports ([`RunInput::planned`]), which
//! depend only on these inputs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::config::{AgentConfig, DiagnoseConfig};
use crate::diagnose::{checks, observe, Segment, Suspension};

/// A terminal to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalTarget {
    /// Instance name in check names (`terminal.icmp@<name>`).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its registered MAC (lower case), if any.
    pub mac: Option<String>,
}

/// The carrier server to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierTarget {
    /// Host name or address literal from `[carrier] url`.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Everything a run needs besides the probes.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The segments whose checks are reported.
    pub segments: BTreeSet<Segment>,
    /// Terminals to check.
    pub terminals: Vec<TerminalTarget>,
    /// LAN interfaces.
    pub lan: Vec<String>,
    /// Primary uplink interface.
    pub primary: Option<String>,
    /// Backup uplink interface.
    pub backup: Option<String>,
    /// The carrier server, if configured.
    pub carrier: Option<CarrierTarget>,
    /// The platform address one hop beyond the demarcation point.
    pub platform: Option<IpAddr>,
    /// Timeouts, counts and thresholds.
    pub settings: DiagnoseConfig,
    /// The stop order in force, if any (the agent's table must then exist).
    pub suspension: Option<Suspension>,
}

impl RunInput {
    /// The run the configuration describes, limited to `segments`; with
    /// `terminal`, only that terminal is checked (its configured name and
    /// MAC are used when it is a registered one).
    pub fn from_config(
        config: &AgentConfig,
        segments: BTreeSet<Segment>,
        terminal: Option<IpAddr>,
        suspension: Option<Suspension>,
    ) -> Self {
        let registered = config.terminals.iter().map(|t| TerminalTarget {
            name: t.name.clone(),
            ip: t.ip,
            mac: t.mac.as_deref().and_then(observe::normalise_mac),
        });
        let terminals = match terminal {
            Some(ip) => vec![registered.clone().find(|t| t.ip == ip).unwrap_or_else(|| TerminalTarget {
                name: ip.to_string(),
                ip,
                mac: None,
            })],
            None => registered.collect(),
        };
        Self {
            segments,
            terminals,
            lan: config.network.lan.clone(),
            primary: config.system.primary_uplink.clone(),
            backup: config.system.backup_uplink.clone(),
            carrier: carrier_target(&config.carrier.url),
            platform: config.network.platform,
            settings: config.diagnose.clone(),
            suspension,
        }
    }

    /// Names (with segments) of every check this run reports, in catalogue order.
    pub fn planned(&self) -> Vec<(String, Segment)> {
        let mut names = Vec::new();
        for (base, segment) in checks::ALL {
            if !self.segments.contains(segment) {
                continue;
            }
            let instances: Vec<String> = match segment {
                Segment::Terminal => self.terminals.iter().map(|t| format!("{base}@{}", t.name)).collect(),
                Segment::Lan => self.lan.iter().map(|i| format!("{base}@{i}")).collect(),
                _ => vec![(*base).to_owned()],
            };
            names.extend(instances.into_iter().map(|n| (n, *segment)));
        }
        names
    }
}

/// Host and port of `[carrier] url` (`https://host[:port][/…]`); `None`
/// when no carrier is configured or the URL is unusable.
pub fn carrier_target(url: &str) -> Option<CarrierTarget> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    Some(CarrierTarget { host, port: parsed.port_or_known_default()? })
}
