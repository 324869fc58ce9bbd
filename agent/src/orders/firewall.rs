//! Enforcement of a suspension with nftables, in the agent's own table.
//!
//! The agent owns exactly one table, [`TABLE`] (`inet cpe_agent`), and
//! nothing else: resume deletes that table and so leaves every rule the
//! operator configured untouched. The ruleset text is made by the pure
//! [`suspension_ruleset`] (unit-tested); [`NftFirewall`] feeds it to
//! `nft -f -`, which applies a file as one transaction, so installing is
//! atomic and idempotent (the table is declared, deleted and re-created in
//! the same transaction).
//!
//! What a suspension blocks and keeps (guideline §2.2 ⑥):
//! - blocked: traffic **forwarded** from the LAN interfaces toward the
//!   uplinks (WAN), rejected with ICMP "administratively prohibited" so
//!   clinic terminals fail at once instead of timing out; HTTPS (TCP 443)
//!   is refused with a TCP reset, which every browser reports at once;
//! - redirected: plain HTTP (TCP 80) from the LAN to any address that is not
//!   the CPE's own is DNAT-ed to the notice page (`[notice] listen`), so a
//!   browser's ordinary request to any web site shows staff why the service
//!   is stopped (a `nat` prerouting chain in the same table);
//! - kept: forwarded DNS (udp/tcp 53) and DHCP (udp 67/68, e.g. relayed)
//!   from the LAN; everything the CPE itself serves to the LAN (its DHCP
//!   and DNS server, the notice page) is *input* traffic, and the agent's
//!   own channel to the carrier is *output* traffic: neither passes the
//!   forward hook, so neither is touched.
//!
//! Without configured uplinks the block covers every forwarded packet from
//! the LAN that does not go back to the LAN. A drill installs nothing
//! (see [`super::state::ServiceRecord::blocks_forwarding`]).
//!
//! The interfaces come in a [`BlockPlan`] ([`super::device::block_plan`]
//! makes it from the configuration): this module reads no configuration.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The agent's nftables table (family and name).
pub const TABLE: &str = "inet cpe_agent";

/// The side effect of enforcement, narrow enough to fake.
pub trait Firewall {
    /// Installs (or replaces) the agent's table with `ruleset`.
    fn install(&self, ruleset: &str) -> Result<(), FirewallError>;
    /// Removes the agent's table if it exists; nothing else.
    fn remove(&self) -> Result<(), FirewallError>;
    /// Whether `table` (family and name, e.g. [`TABLE`]) exists: what the
    /// diagnosis checks against the order state.
    fn has_table(&self, table: &str) -> Result<bool, FirewallError>;
}

/// Why the firewall could not be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// The interface configuration cannot make a ruleset.
    #[error("{0}")]
    Config(String),
    /// `nft` could not be run or refused the ruleset.
    #[error("nft failed: {0}; check that nftables is installed and the agent runs as root")]
    Nft(String),
}

/// The interfaces a suspension is expressed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPlan {
    /// LAN interfaces (`[network] lan`).
    pub lan: Vec<String>,
    /// Uplinks (`[system] primary_uplink`, `backup_uplink`).
    pub wan: Vec<String>,
    /// Where the notice page listens (`[notice] listen`): LAN HTTP is
    /// redirected to the first IPv4 and the first IPv6 address; empty: no
    /// redirection.
    pub notice: Vec<SocketAddr>,
}

/// Interface names as the kernel allows them (at most 15 bytes, no quotes,
/// slashes or spaces), so no name can smuggle nftables syntax in.
fn check_interface(name: &str) -> Result<(), FirewallError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'));
    if ok {
        Ok(())
    } else {
        Err(FirewallError::Config(format!(
            "interface name {name:?} is not valid (1-15 characters: letters, digits, - _ . @ :); fix [network] lan / [system] uplinks"
        )))
    }
}

fn set_of(names: &[String]) -> Result<String, FirewallError> {
    for name in names {
        check_interface(name)?;
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    Ok(format!("{{ {} }}", quoted.join(", ")))
}

/// The `nat` prerouting chain that sends LAN HTTP (TCP 80) to any address
/// but the CPE's own to the notice page: one rule per address family the
/// page listens on (a wildcard address becomes `redirect`, i.e. the LAN
/// interface's own address). Empty when the page is not served.
fn notice_redirect(lan: &str, notice: &[SocketAddr]) -> String {
    let http = format!("iifname {lan} fib daddr type != local tcp dport 80");
    let comment = "comment \"suspension shows the notice page\"";
    let mut rules = String::new();
    for v4 in [true, false] {
        let Some(target) = notice.iter().find(|a| a.is_ipv4() == v4) else { continue };
        let (family, to) = match (v4, target.ip().is_unspecified()) {
            (_, true) => (if v4 { "ipv4" } else { "ipv6" }, format!("redirect to :{}", target.port())),
            (true, false) => ("ipv4", format!("dnat ip to {target}")),
            (false, false) => ("ipv6", format!("dnat ip6 to {target}")),
        };
        let _ = writeln!(rules, "\t\tmeta nfproto {family} {http} {to} {comment}");
    }
    if rules.is_empty() {
        return rules;
    }
    format!(
        "\tchain notice_redirect {{\n\
         \t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n\
         {rules}\
         \t}}\n"
    )
}

/// The `nft -f` text that installs the suspension as one transaction:
/// declare the table (so the delete cannot fail), delete it, re-create it.
pub fn suspension_ruleset(plan: &BlockPlan) -> Result<String, FirewallError> {
    if plan.lan.is_empty() {
        return Err(FirewallError::Config(
            "no LAN interface is configured; set [network] lan = [\"br-lan\"] so a suspension can be enforced"
                .into(),
        ));
    }
    let lan = set_of(&plan.lan)?;
    let toward_wan = if plan.wan.is_empty() {
        format!("iifname {lan} oifname != {lan}")
    } else {
        format!("iifname {lan} oifname {}", set_of(&plan.wan)?)
    };
    let redirect = notice_redirect(&lan, &plan.notice);
    Ok(format!(
        "table {TABLE} {{}}\n\
         delete table {TABLE}\n\
         table {TABLE} {{\n\
         {redirect}\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter - 10; policy accept;\n\
         \t\t{toward_wan} udp dport {{ 53, 67, 68 }} accept comment \"suspension keeps DNS and DHCP\"\n\
         \t\t{toward_wan} tcp dport 53 accept comment \"suspension keeps DNS\"\n\
         \t\t{toward_wan} tcp dport 443 counter reject with tcp reset comment \"suspended: HTTPS refused at once\"\n\
         \t\t{toward_wan} counter reject with icmpx type admin-prohibited comment \"suspended by carrier order\"\n\
         \t}}\n\
         }}\n"
    ))
}

/// The `nft -f` text that removes the agent's table, and only it, whether or
/// not it exists.
pub fn removal_ruleset() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// Makes the firewall match the service state: the suspension table when
/// `blocked`, no agent table otherwise. Idempotent.
pub fn enforce(firewall: &dyn Firewall, plan: &BlockPlan, blocked: bool) -> Result<(), FirewallError> {
    if blocked {
        firewall.install(&suspension_ruleset(plan)?)
    } else {
        firewall.remove()
    }
}

/// The real firewall: `nft -f -` (the binary found on `PATH`, or `nft_path`).
#[derive(Debug, Clone)]
pub struct NftFirewall {
    nft_path: String,
}

impl Default for NftFirewall {
    fn default() -> Self {
        Self { nft_path: "nft".into() }
    }
}

impl NftFirewall {
    /// Uses the `nft` binary at `nft_path`.
    pub fn with_binary(nft_path: impl Into<String>) -> Self {
        Self { nft_path: nft_path.into() }
    }

    fn run(&self, text: &str) -> Result<(), FirewallError> {
        let mut child = Command::new(&self.nft_path)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FirewallError::Nft(format!("cannot run {}: {e}", self.nft_path)))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(|e| FirewallError::Nft(e.to_string()))?;
        }
        let output = child.wait_with_output().map_err(|e| FirewallError::Nft(e.to_string()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Nft(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

impl Firewall for NftFirewall {
    fn install(&self, ruleset: &str) -> Result<(), FirewallError> {
        self.run(ruleset)
    }

    fn remove(&self) -> Result<(), FirewallError> {
        self.run(&removal_ruleset())
    }

    fn has_table(&self, table: &str) -> Result<bool, FirewallError> {
        let output = Command::new(&self.nft_path)
            .args(["list", "table"])
            .args(table.split_ascii_whitespace())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FirewallError::Nft(format!("cannot run {}: {e}", self.nft_path)))?;
        if output.status.success() {
            return Ok(true);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No such file or directory") {
            Ok(false)
        } else {
            Err(FirewallError::Nft(format!(
                "nft list table failed: {}",
                stderr.lines().next().unwrap_or("").trim()
            )))
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A firewall that records calls, for tests.
    use std::cell::RefCell;

    use super::{Firewall, FirewallError};

    /// One recorded call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Install(String),
        Remove,
    }

    /// Records calls; fails them all when `fail` is set.
    #[derive(Debug, Default)]
    pub struct FakeFirewall {
        pub calls: RefCell<Vec<Call>>,
        pub fail: bool,
    }

    impl FakeFirewall {
        pub fn blocked(&self) -> bool {
            matches!(self.calls.borrow().last(), Some(Call::Install(_)))
        }
    }

    impl Firewall for FakeFirewall {
        fn install(&self, ruleset: &str) -> Result<(), FirewallError> {
            self.calls.borrow_mut().push(Call::Install(ruleset.to_owned()));
            if self.fail {
                return Err(FirewallError::Nft("injected".into()));
            }
            Ok(())
        }

        fn remove(&self) -> Result<(), FirewallError> {
            self.calls.borrow_mut().push(Call::Remove);
            if self.fail {
                return Err(FirewallError::Nft("injected".into()));
            }
            Ok(())
        }

        fn has_table(&self, _table: &str) -> Result<bool, FirewallError> {
            if self.fail {
                return Err(FirewallError::Nft("injected".into()));
            }
            Ok(self.blocked())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lan: &[&str], wan: &[&str]) -> BlockPlan {
        BlockPlan {
            lan: lan.iter().map(ToString::to_string).collect(),
            wan: wan.iter().map(ToString::to_string).collect(),
            notice: Vec::new(),
        }
    }

    #[test]
    fn suspension_blocks_lan_to_wan_forwarding_and_keeps_dns_and_dhcp() {
        let text = suspension_ruleset(&plan(&["br-lan"], &["wan0", "wwan0"])).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // Replace atomically: declare, delete, re-create, in this order.
        assert_eq!(lines[0], "table inet cpe_agent {}");
        assert_eq!(lines[1], "delete table inet cpe_agent");
        assert_eq!(lines[2], "table inet cpe_agent {");
        assert!(lines.contains(&"type filter hook forward priority filter - 10; policy accept;"));
        let sel = "iifname { \"br-lan\" } oifname { \"wan0\", \"wwan0\" }";
        let udp =
            lines.iter().position(|l| l.starts_with(&format!("{sel} udp dport {{ 53, 67, 68 }} accept")));
        let tcp = lines.iter().position(|l| l.starts_with(&format!("{sel} tcp dport 53 accept")));
        let reject = lines.iter().position(|l| l.starts_with(&format!("{sel} counter reject")));
        assert!(udp.is_some() && tcp.is_some() && reject.is_some(), "{text}");
        assert!(udp < reject && tcp < reject, "DNS/DHCP accepts come before the reject:\n{text}");
        // Only the forward hook: input (notice page, local DHCP/DNS) and
        // output (the carrier channel) are never hooked.
        assert!(
            !text.contains("hook input") && !text.contains("hook output") && !text.contains("flush ruleset")
        );
        assert_eq!(text.matches("table ").count(), 3);
    }

    #[test]
    fn without_uplinks_everything_leaving_the_lan_is_blocked() {
        let text = suspension_ruleset(&plan(&["lan1", "lan2"], &[])).unwrap();
        assert!(
            text.contains("iifname { \"lan1\", \"lan2\" } oifname != { \"lan1\", \"lan2\" } counter reject")
        );
    }

    #[test]
    fn bad_or_missing_interfaces_are_refused() {
        assert!(suspension_ruleset(&plan(&[], &["wan0"])).unwrap_err().to_string().contains("[network] lan"));
        for bad in ["br\"lan", "a b", "", "x}; flush ruleset", "sixteen-chars-xx"] {
            assert!(suspension_ruleset(&plan(&[bad], &["wan0"])).is_err(), "{bad:?}");
            assert!(suspension_ruleset(&plan(&["lan"], &[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suspension_redirects_lan_http_to_the_notice_page_and_resets_https() {
        let mut p = plan(&["br-lan"], &["wan0"]);
        let text = suspension_ruleset(&p).unwrap();
        assert!(!text.contains("nat") && !text.contains("dnat"), "no page, no redirection:\n{text}");
        let sel = "iifname { \"br-lan\" } oifname { \"wan0\" }";
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let https = lines
            .iter()
            .position(|l| l.starts_with(&format!("{sel} tcp dport 443 counter reject with tcp reset")));
        let dns = lines.iter().position(|l| l.starts_with(&format!("{sel} tcp dport 53 accept")));
        let reject = lines.iter().position(|l| l.starts_with(&format!("{sel} counter reject with icmpx")));
        assert!(https.is_some() && dns < https && https < reject, "{text}");

        p.notice = vec!["192.168.1.1:8080".parse().unwrap(), "[fd00::1]:80".parse().unwrap()];
        let text = suspension_ruleset(&p).unwrap();
        let http = "iifname { \"br-lan\" } fib daddr type != local tcp dport 80";
        assert!(text.contains("type nat hook prerouting priority dstnat - 10; policy accept;"), "{text}");
        assert!(text.contains(&format!("meta nfproto ipv4 {http} dnat ip to 192.168.1.1:8080")), "{text}");
        assert!(text.contains(&format!("meta nfproto ipv6 {http} dnat ip6 to [fd00::1]:80")), "{text}");
        assert_eq!(text.matches("table ").count(), 3, "still one table, replaced atomically");

        p.notice = vec!["0.0.0.0:80".parse().unwrap(), "192.168.1.1:81".parse().unwrap()];
        let text = suspension_ruleset(&p).unwrap();
        assert!(text.contains(&format!("meta nfproto ipv4 {http} redirect to :80")), "{text}");
        assert_eq!(text.matches(&http).count(), 1, "the first address of a family only:\n{text}");
    }

    #[test]
    fn removal_touches_only_the_agent_table() {
        assert_eq!(removal_ruleset(), "table inet cpe_agent {}\ndelete table inet cpe_agent\n");
    }

    /// An `nft` stand-in: a shell script in `dir` (retried while another
    /// test's fork still holds the new file open: "text file busy").
    fn fake_nft(dir: &std::path::Path, name: &str, script: &str) -> impl Fn() -> Result<bool, FirewallError> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let nft = NftFirewall::with_binary(path.to_str().unwrap());
        move || loop {
            match nft.has_table(TABLE) {
                Err(FirewallError::Nft(why)) if why.contains("Text file busy") => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    #[test]
    fn table_presence_comes_from_nft_list_table() {
        let dir = tempfile::tempdir().unwrap();
        let present = fake_nft(dir.path(), "present", "[ \"$*\" = 'list table inet cpe_agent' ] || exit 3");
        assert_eq!(present(), Ok(true));
        let absent =
            fake_nft(dir.path(), "absent", "echo 'Error: No such file or directory; list table' >&2; exit 1");
        assert_eq!(absent(), Ok(false));
        let broken = fake_nft(
            dir.path(),
            "broken",
            "echo 'Error: Operation not permitted' >&2; echo more >&2; exit 1",
        );
        assert_eq!(
            broken(),
            Err(FirewallError::Nft("nft list table failed: Error: Operation not permitted".into()))
        );
        let missing = NftFirewall::with_binary("/nonexistent/nft").has_table(TABLE).unwrap_err();
        assert!(missing.to_string().contains("cannot run /nonexistent/nft"), "{missing}");
    }

    #[test]
    fn enforce_installs_or_removes() {
        let fw = fake::FakeFirewall::default();
        let p = plan(&["br-lan"], &["wan0"]);
        enforce(&fw, &p, true).unwrap();
        assert!(fw.blocked());
        enforce(&fw, &p, false).unwrap();
        assert_eq!(fw.calls.borrow().last(), Some(&fake::Call::Remove));
        assert!(enforce(&fw, &plan(&[], &[]), true).is_err());
        assert_eq!(fw.calls.borrow().len(), 2, "a bad plan reaches no firewall");
    }
}
