//! Network-namespace test topologies: real interfaces, routes, firewalls and
//! helper services, built with `ip netns`, veth pairs and a bridge, so the
//! agent's probes (ARP, ICMP, DNS, TCP, TLS, path MTU, loss) meet a real
//! kernel network instead of fakes.
//!
//! What this module owns:
//! - [`Netns`]: one namespace with a unique name (this crate's [`PREFIX`],
//!   the test process id, a counter and a role), commands run inside it
//!   (`ip netns exec`), links, addresses, routes, sysctls, nftables and a
//!   private `resolv.conf`. Dropping it kills what still runs inside and
//!   deletes the namespace (with its links and nftables tables) and its
//!   `/etc/netns/<name>` directory, also when a test panics.
//! - [`FaultRule`] / [`render_fault_table`]: the faults the kernel can
//!   inject without `tc netem` (random loss with `numgen`, silent drop of big
//!   packets, drop of ICMP "fragmentation needed", drop of a port).
//! - [`Service`]: the `netns-helper` binary (DNS responder, TCP echo, delay
//!   relay) or any workspace binary running inside a namespace.
//! - [`Topology`]: the diagnosis picture — terminals on the clinic LAN, the
//!   CPE with its LAN bridge and two uplinks, the carrier's edge router and
//!   server host, and the platform one hop beyond the demarcation point.
//!
//! Namespaces left behind by a test process that died without unwinding
//! (SIGKILL, abort) are swept when the next process creates its first
//! namespace: every name carries the pid of its creator, and names whose
//! creator is gone are deleted.
//!
//! Tests call [`unavailable`] first and skip, with a printed reason, when
//! not root or when `ip`/`nft` are missing.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::{binary, Proc};

/// The prefix of every namespace this crate creates (`cpee2e-<pid>-<n>-<role>`).
pub const PREFIX: &str = "cpee2e";

/// Name of the `nftables` table that holds injected faults in a namespace.
pub const FAULT_TABLE: &str = "cpee2e_faults";

/// Where `ip netns exec` finds per-namespace files it bind-mounts over `/etc`.
const ETC_NETNS: &str = "/etc/netns";

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}; install iproute2/nftables and run the tests as root")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file under `/etc/netns` or a log directory could not be written.
    #[error("{path}: {source}; check that /etc is writable (tests must run as root)")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A helper service did not announce its listening address.
    #[error("{service} did not start; see its log {log}")]
    ServiceStart {
        /// What was started.
        service: String,
        /// Its stderr log.
        log: PathBuf,
    },
}

/// Why the namespace tests cannot run here, or `None` when they can: they
/// need root and the `ip` and `nft` tools. See [`skip`].
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
    });
    if uid.as_deref() != Some("0") {
        return Some(
            "network-namespace tests need root (run them as root or in a privileged container)".into(),
        );
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "`{tool}` is not installed (scripts/setup.sh installs iproute2 and nftables)"
            ));
        }
    }
    None
}

/// Returns `true` (the test returns) when the namespace tests cannot run
/// here (see [`unavailable`]), having said so, or fails the test under CI
/// ([`crate::skip_or_fail`]).
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(reason) => {
            crate::skip_or_fail(test, &reason);
            true
        }
        None => false,
    }
}

/// A fresh namespace name: `cpee2e-<pid>-<counter>-<role>`. Unique within
/// the process (counter) and across parallel test processes (pid).
pub fn unique_name(role: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let role: String = role.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    format!("{PREFIX}-{}-{n}-{role}", std::process::id())
}

/// The pid of the process that created the namespace `name`, when `name` is
/// one of this crate's.
pub fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

/// Namespace names from `ip netns list` output (`name (id: 3)` or `name`).
pub fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// The namespaces of this crate that exist now.
pub fn existing() -> Result<Vec<String>, NetnsError> {
    let list = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(parse_netns_list(&list).into_iter().filter(|n| creator_pid(n).is_some()).collect())
}

/// Deletes this crate's namespaces (and `/etc/netns` directories) whose
/// creating process is gone; namespaces of live (parallel) test processes
/// stay. [`Netns::new`] runs it once per process before the first
/// namespace is created.
pub fn sweep_leftovers() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    for name in existing().unwrap_or_default() {
        if creator_pid(&name).is_some_and(|pid| !alive(pid)) {
            eprintln!("netns: removing leftover namespace {name}");
            remove_namespace(&name);
        }
    }
    if let Ok(dir) = std::fs::read_dir(ETC_NETNS) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if creator_pid(&name).is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Kills every process inside namespace `name`, deletes it and its
/// `/etc/netns/<name>` directory. Errors are ignored: this is cleanup.
fn remove_namespace(name: &str) {
    if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", name])) {
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(name));
}

/// Runs `command`, requires success, returns its stdout.
fn run(command: &mut Command) -> Result<String, NetnsError> {
    let output = output(command)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetnsError::Failed {
            command: describe(command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `command` and returns its output whatever the exit status.
fn output(command: &mut Command) -> Result<Output, NetnsError> {
    command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn { command: describe(command), source })
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The text of a `resolv.conf` naming `nameservers`, with a short timeout
/// and one attempt so a DNS fault shows within a second.
pub fn render_resolv_conf(nameservers: &[IpAddr]) -> String {
    let mut text = String::new();
    for server in nameservers {
        let _ = writeln!(text, "nameserver {server}");
    }
    text.push_str("options timeout:1 attempts:1\n");
    text
}

/// A fault the kernel injects in a namespace (see [`Netns::set_faults`]).
/// Every rule acts on packets entering the namespace (nftables prerouting,
/// so on forwarded and local traffic alike) unless noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultRule {
    /// Random loss of `percent` % of the packets arriving on `iface` (all
    /// interfaces when `None`): `numgen random mod 100 < N drop` (100 and
    /// more drop everything, 0 nothing).
    Loss {
        /// Interface the packets arrive on, or all.
        iface: Option<String>,
        /// Share dropped, 0–100.
        percent: u8,
    },
    /// Silent drop of IPv4 packets longer than `bytes` (no ICMP error): a
    /// path MTU black hole of `bytes`.
    DropLargerThan {
        /// Largest IP packet that still passes.
        bytes: u16,
    },
    /// Drop of ICMP "fragmentation needed" and ICMPv6 "packet too big",
    /// arriving or sent from this namespace: with a small MTU on a link, the
    /// classic black hole of a router whose errors are filtered.
    DropFragNeeded,
    /// Drop of ICMP echo requests to `addresses` (an upstream filter of
    /// ping towards the gateway and the carrier host; ARP, TCP and echo to
    /// other hosts pass).
    DropEchoTo {
        /// Destinations whose echo requests vanish.
        addresses: Vec<Ipv4Addr>,
    },
    /// Drop of TCP packets to `port` (no RST: connections time out).
    DropTcpPort {
        /// Destination port.
        port: u16,
    },
    /// Drop of UDP packets to `port`.
    DropUdpPort {
        /// Destination port.
        port: u16,
    },
    /// Drop of every packet arriving on `iface` (a dead link that keeps
    /// its carrier).
    DropAll {
        /// Interface the packets arrive on.
        iface: String,
    },
}

impl FaultRule {
    /// The nftables rule (prerouting chain).
    fn prerouting(&self) -> String {
        match self {
            FaultRule::Loss { iface, percent } => {
                let on = iface.as_ref().map(|i| format!("iifname \"{i}\" ")).unwrap_or_default();
                match percent {
                    0 => format!("# no loss{}", iface.as_ref().map(|i| format!(" on {i}")).unwrap_or_default()),
                    1..=99 => format!("{on}numgen random mod 100 < {percent} drop"),
                    _ => format!("{on}drop"),
                }
            }
            FaultRule::DropLargerThan { bytes } => format!("ip length > {bytes} drop"),
            FaultRule::DropFragNeeded => {
                "icmp type destination-unreachable icmp code frag-needed drop\n\t\ticmpv6 type packet-too-big drop".into()
            }
            FaultRule::DropEchoTo { addresses } => {
                let list = addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                format!("ip daddr {{ {list} }} icmp type echo-request drop")
            }
            FaultRule::DropTcpPort { port } => format!("tcp dport {port} drop"),
            FaultRule::DropUdpPort { port } => format!("udp dport {port} drop"),
            FaultRule::DropAll { iface } => format!("iifname \"{iface}\" drop"),
        }
    }
}

/// The nftables script that (re)creates [`FAULT_TABLE`] with `rules`
/// (replacing earlier faults atomically; no rules = no faults).
pub fn render_fault_table(rules: &[FaultRule]) -> String {
    let mut text =
        format!("table inet {FAULT_TABLE}\ndelete table inet {FAULT_TABLE}\ntable inet {FAULT_TABLE} {{\n");
    text.push_str("\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n");
    for rule in rules {
        let _ = writeln!(text, "\t\t{}", rule.prerouting());
    }
    text.push_str("\t}\n\tchain output {\n\t\ttype filter hook output priority raw; policy accept;\n");
    if rules.contains(&FaultRule::DropFragNeeded) {
        let _ = writeln!(text, "\t\t{}", FaultRule::DropFragNeeded.prerouting());
    }
    text.push_str("\t}\n}\n");
    text
}

/// One network namespace, deleted on drop with everything inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named after `role` (see [`unique_name`]) with its
    /// loopback up. The first call of a process sweeps leftovers.
    pub fn new(role: &str) -> Result<Self, NetnsError> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_leftovers);
        let name = unique_name(role);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name (for `ip netns exec NAME`, `ip -n NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`,
    /// which also bind-mounts `/etc/netns/<name>/resolv.conf`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program args` inside the namespace, requires success, returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        run(self.command(program).args(args))
    }

    /// Runs `program args` inside the namespace and returns its output
    /// whatever the exit status (for probes expected to fail).
    pub fn output(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<Output, NetnsError> {
        output(self.command(program).args(args))
    }

    /// Starts the workspace binary `bin` (see [`binary`]) inside the
    /// namespace; stdout is piped, stderr goes to `log`. Killed on drop.
    pub fn spawn(&self, bin: &str, args: &[String], log: &Path) -> Result<Proc, NetnsError> {
        let stderr =
            std::fs::File::create(log).map_err(|source| NetnsError::File { path: log.to_owned(), source })?;
        let mut command = self.command(binary(bin));
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).env("RUST_LOG", "info");
        let child =
            command.spawn().map_err(|source| NetnsError::Spawn { command: describe(&command), source })?;
        Ok(Proc { child, name: format!("{bin} in {}", self.name) })
    }

    /// Runs `ip -n <name> args` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets `iface` administratively up.
    pub fn link_up(&self, iface: &str) -> Result<(), NetnsError> {
        self.ip(&["link", "set", iface, "up"]).map(drop)
    }

    /// Sets `iface` administratively down (the peer of a veth loses carrier).
    pub fn link_down(&self, iface: &str) -> Result<(), NetnsError> {
        self.ip(&["link", "set", iface, "down"]).map(drop)
    }

    /// Sets the MTU of `iface`.
    pub fn set_mtu(&self, iface: &str, mtu: u16) -> Result<(), NetnsError> {
        self.ip(&["link", "set", iface, "mtu", &mtu.to_string()]).map(drop)
    }

    /// Adds `cidr` (`192.0.2.1/24`) to `iface`.
    pub fn add_address(&self, iface: &str, cidr: &str) -> Result<(), NetnsError> {
        self.ip(&["address", "add", cidr, "dev", iface]).map(drop)
    }

    /// Removes `cidr` from `iface` (a gateway that stops answering ARP).
    pub fn del_address(&self, iface: &str, cidr: &str) -> Result<(), NetnsError> {
        self.ip(&["address", "del", cidr, "dev", iface]).map(drop)
    }

    /// Adds a route to `destination` (`default`, `192.0.2.0/24`) via
    /// `gateway` with `metric`.
    pub fn add_route(&self, destination: &str, gateway: Ipv4Addr, metric: u32) -> Result<(), NetnsError> {
        self.ip(&["route", "add", destination, "via", &gateway.to_string(), "metric", &metric.to_string()])
            .map(drop)
    }

    /// Deletes the route to `destination` via `gateway`.
    pub fn del_route(&self, destination: &str, gateway: Ipv4Addr) -> Result<(), NetnsError> {
        self.ip(&["route", "del", destination, "via", &gateway.to_string()]).map(drop)
    }

    /// Writes the sysctl `key` (`net.ipv4.ip_forward`) inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]).map(drop)
    }

    /// Turns IPv4 forwarding on (a router).
    pub fn enable_forwarding(&self) -> Result<(), NetnsError> {
        self.sysctl("net.ipv4.ip_forward", "1")
    }

    /// Creates the veth pair `iface` (here) ↔ `peer_iface` (in `peer`),
    /// both up; MACs are set when given. The kernel deletes the pair with
    /// either namespace.
    pub fn veth(
        &self,
        iface: &str,
        peer: &Netns,
        peer_iface: &str,
        macs: [Option<&str>; 2],
    ) -> Result<Veth, NetnsError> {
        let mut args = vec!["link", "add", iface, "netns", &self.name];
        if let Some(mac) = macs[0] {
            args.extend(["address", mac]);
        }
        args.extend(["type", "veth", "peer", "name", peer_iface, "netns", &peer.name]);
        if let Some(mac) = macs[1] {
            args.extend(["address", mac]);
        }
        run(Command::new("ip").args(&args))?;
        self.link_up(iface)?;
        peer.link_up(peer_iface)?;
        Ok(Veth { iface: iface.to_owned(), peer_iface: peer_iface.to_owned() })
    }

    /// Creates the bridge `name`, up, with STP off (ports forward at once).
    pub fn bridge(&self, name: &str) -> Result<Bridge, NetnsError> {
        self.ip(&["link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
        self.link_up(name)?;
        Ok(Bridge { name: name.to_owned() })
    }

    /// Loads an nftables script (`nft -f -`) inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), NetnsError> {
        let mut command = self.command("nft");
        command.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            command.spawn().map_err(|source| NetnsError::Spawn { command: describe(&command), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|source| NetnsError::Spawn { command: describe(&command), source })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|source| NetnsError::Spawn { command: describe(&command), source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetnsError::Failed {
                command: format!("{} <<< {script}", describe(&command)),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Replaces the injected faults of this namespace with `rules` (an
    /// empty slice removes them all).
    pub fn set_faults(&self, rules: &[FaultRule]) -> Result<(), NetnsError> {
        self.nft(&render_fault_table(rules))
    }

    /// Gives the namespace its own `resolv.conf` naming `nameservers`
    /// (`/etc/netns/<name>/resolv.conf`, seen by every `ip netns exec`
    /// command; removed with the namespace).
    pub fn set_resolv_conf(&self, nameservers: &[IpAddr]) -> Result<(), NetnsError> {
        let dir = Path::new(ETC_NETNS).join(&self.name);
        let file = |source| NetnsError::File { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(file)?;
        std::fs::write(dir.join("resolv.conf"), render_resolv_conf(nameservers)).map_err(file)
    }

    /// Whether `ip` answers `count` ICMP echoes (at least one reply)
    /// within `timeout_s` seconds, sent from inside this namespace.
    pub fn ping(&self, ip: IpAddr, count: u32, timeout_s: u32) -> bool {
        self.output(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                &timeout_s.to_string(),
                &ip.to_string(),
            ],
        )
        .is_ok_and(|o| o.status.success())
    }

    /// Tries one TCP connection to `to` from inside the namespace (with
    /// `netns-helper connect`) and says how it went.
    pub fn tcp_connect(&self, to: SocketAddr, timeout_ms: u64) -> Result<Reach, NetnsError> {
        let out = self.output(
            binary("netns-helper"),
            &["connect", "--to", &to.to_string(), "--timeout-ms", &timeout_ms.to_string()],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(Reach::parse(text.trim()))
    }

    /// The pids of the processes running inside the namespace.
    pub fn pids(&self) -> Result<Vec<u32>, NetnsError> {
        let text = run(Command::new("ip").args(["netns", "pids", &self.name]))?;
        Ok(text.split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }

    /// Starts a `netns-helper` service inside the namespace and waits for
    /// its `listening on ADDR` line; `log` receives its stderr.
    pub fn start_helper(&self, args: &[String], log: &Path) -> Result<Service, NetnsError> {
        let mut proc = self.spawn("netns-helper", args, log)?;
        let service = args.first().cloned().unwrap_or_default();
        let addr =
            proc.read_line_starting("listening on ").and_then(|a| a.parse().ok()).ok_or_else(|| {
                NetnsError::ServiceStart { service: format!("netns-helper {service}"), log: log.to_owned() }
            })?;
        Ok(Service { proc, addr })
    }

    /// Starts the DNS responder on `listen` (UDP) answering A queries for
    /// `records` (NXDOMAIN for other names).
    pub fn start_dns(
        &self,
        listen: SocketAddr,
        records: &[(&str, Ipv4Addr)],
        log: &Path,
    ) -> Result<Service, NetnsError> {
        let mut args = vec!["dns".to_owned(), "--listen".to_owned(), listen.to_string()];
        for (name, ip) in records {
            args.extend(["--name".to_owned(), format!("{name}={ip}")]);
        }
        self.start_helper(&args, log)
    }

    /// Starts a TCP echo server on `listen`.
    pub fn start_tcp_echo(&self, listen: SocketAddr, log: &Path) -> Result<Service, NetnsError> {
        self.start_helper(&["tcp-echo".to_owned(), "--listen".to_owned(), listen.to_string()], log)
    }

    /// Starts a web server on `listen` answering every request with `body`.
    pub fn start_http(&self, listen: SocketAddr, body: &str, log: &Path) -> Result<Service, NetnsError> {
        let args = ["http", "--listen", &listen.to_string(), "--body", body].map(str::to_owned);
        self.start_helper(&args, log)
    }

    /// Starts a relay on `listen` forwarding to `to` with `delay_ms` added
    /// in each direction (TCP, or UDP when `udp`).
    pub fn start_relay(
        &self,
        listen: SocketAddr,
        to: SocketAddr,
        delay_ms: u64,
        udp: bool,
        log: &Path,
    ) -> Result<Service, NetnsError> {
        let mut args = vec![
            "relay".to_owned(),
            "--listen".to_owned(),
            listen.to_string(),
            "--to".to_owned(),
            to.to_string(),
            "--delay-ms".to_owned(),
            delay_ms.to_string(),
        ];
        if udp {
            args.push("--udp".to_owned());
        }
        self.start_helper(&args, log)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

/// The outcome of a TCP connection attempt ([`Netns::tcp_connect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The three-way handshake completed.
    Connected,
    /// The host answered with a reset: reachable, nothing listening.
    Refused,
    /// Nothing answered in time (dropped on the way or at the host).
    Timeout,
    /// An ICMP error or a local error (no route, network unreachable, …).
    Unreachable(String),
}

impl Reach {
    /// Reads the line `netns-helper connect` prints.
    pub fn parse(line: &str) -> Self {
        match line {
            "connected" => Reach::Connected,
            "refused" => Reach::Refused,
            "timeout" => Reach::Timeout,
            other => Reach::Unreachable(other.strip_prefix("unreachable: ").unwrap_or(other).to_owned()),
        }
    }
}

/// A veth pair (see [`Netns::veth`]); removed by the kernel with its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The end in the namespace that created the pair.
    pub iface: String,
    /// The end in the peer namespace.
    pub peer_iface: String,
}

/// A bridge (see [`Netns::bridge`]); removed by the kernel with its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// The bridge interface's name.
    pub name: String,
}

impl Bridge {
    /// Enslaves `port` (an interface of `netns`) to the bridge.
    pub fn attach(&self, netns: &Netns, port: &str) -> Result<(), NetnsError> {
        netns.ip(&["link", "set", port, "master", &self.name]).map(drop)
    }
}

/// A helper process serving inside a namespace; killed on drop.
#[derive(Debug)]
pub struct Service {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Service {
    /// Stops the service now (SIGKILL).
    pub fn stop(mut self) {
        self.proc.kill();
    }
}

/// Addresses and interface names of a [`Topology`].
pub mod plan {
    use std::net::Ipv4Addr;

    /// The clinic LAN bridge in the CPE namespace.
    pub const LAN_BRIDGE: &str = "br-lan";
    /// The CPE's address on the clinic LAN (the terminals' gateway).
    pub const CPE_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
    /// Prefix length of the clinic LAN.
    pub const LAN_PREFIX: u8 = 24;
    /// The primary WAN interface of the CPE.
    pub const PRIMARY: &str = "wan0";
    /// The CPE's address on the primary access line.
    pub const PRIMARY_CPE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// The primary line's gateway (the carrier edge router).
    pub const PRIMARY_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The edge router's interface facing the primary line.
    pub const EDGE_PRIMARY: &str = "cpe0";
    /// The backup WAN interface of the CPE.
    pub const BACKUP: &str = "wwan0";
    /// The CPE's address on the backup access line.
    pub const BACKUP_CPE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    /// The backup line's gateway (the carrier edge router).
    pub const BACKUP_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    /// The edge router's interface facing the backup line.
    pub const EDGE_BACKUP: &str = "cpe1";
    /// Metric of the default route via the primary line.
    pub const PRIMARY_METRIC: u32 = 100;
    /// Metric of the default route via the backup line (used when the primary is gone).
    pub const BACKUP_METRIC: u32 = 200;
    /// The carrier server host's address (where `cpe-provision serve` and the DNS responder run).
    pub const CARRIER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    /// The edge router's address on the carrier server segment.
    pub const CARRIER_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The carrier server's host name (answered by the test DNS responder).
    pub const CARRIER_HOST: &str = "carrier.cpe-e2e.test";
    /// The edge router's interface facing the carrier server host.
    pub const EDGE_CARRIER: &str = "srv0";
    /// The edge router's address towards the demarcation router.
    pub const EDGE_BORDER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    /// The demarcation router's address towards the edge.
    pub const BORDER_EDGE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
    /// The edge router's interface facing the demarcation router.
    pub const EDGE_TO_BORDER: &str = "bdr0";
    /// The demarcation router's address on the platform segment.
    pub const BORDER_PLATFORM: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    /// The demarcation router's interface facing the platform.
    pub const BORDER_TO_PLATFORM: &str = "plat0";
    /// The platform host, one hop beyond the demarcation point.
    pub const PLATFORM: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    /// The interface name of every end host (terminals, carrier, platform).
    pub const HOST_IFACE: &str = "eth0";

    /// The address of terminal `index` (0-based): 192.168.10.20, .21, …
    pub fn terminal_ip(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 10, 20u8.saturating_add(index))
    }

    /// The MAC of LAN host `index`: `02:00:00:00:0a:<index+0x20>`.
    pub fn terminal_mac(index: u8) -> String {
        format!("02:00:00:00:0a:{:02x}", 0x20u8.saturating_add(index))
    }

    /// The CPE bridge port of LAN host `index`: `lan1`, `lan2`, …
    pub fn lan_port(index: u8) -> String {
        format!("lan{}", u16::from(index) + 1)
    }
}

/// A host on the clinic LAN (a terminal), attached to the CPE's bridge.
#[derive(Debug)]
pub struct LanHost {
    /// Its namespace.
    pub netns: Netns,
    /// Its address (what it is configured with, maybe outside the LAN subnet).
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: String,
    /// The CPE's bridge port it hangs on.
    pub port: String,
}

/// The diagnosis picture, all in namespaces:
///
/// ```text
/// terminal(s) ──lanN── [cpe: br-lan 192.168.10.1]
///                        │ wan0 198.51.100.2 ── cpe0 .1 ─┐
///                        │ wwan0 203.0.113.2 ── cpe1 .1 ─┤ [edge router] ── srv0 192.0.2.1 ── [carrier 192.0.2.10]
///                                                         └ bdr0 100.64.0.1 ── [border] ── 172.16.0.1 ── [platform 172.16.0.2]
/// ```
///
/// The CPE's default route goes via the primary gateway (metric 100) with a
/// backup default via the backup gateway (metric 200); routers ignore routes
/// over links without carrier, so a dead primary line moves traffic to the
/// backup. The carrier host and the platform are end hosts; the border
/// router stands for the demarcation point.
#[derive(Debug)]
pub struct Topology {
    /// The clinic's terminals, in order.
    pub terminals: Vec<LanHost>,
    /// The CPE, where the agent runs.
    pub cpe: Netns,
    /// The carrier's edge router (gateway of both access lines).
    pub edge: Netns,
    /// The carrier server host.
    pub carrier: Netns,
    /// The demarcation router in front of the platform.
    pub border: Netns,
    /// The platform host one hop beyond the demarcation point.
    pub platform: Netns,
    /// The LAN bridge in the CPE namespace.
    pub lan_bridge: Bridge,
    logs: PathBuf,
}

impl Topology {
    /// Builds the picture with `terminals` terminals (see [`plan`]).
    pub fn build(terminals: u8) -> Result<Self, NetnsError> {
        let cpe = Netns::new("cpe")?;
        let edge = Netns::new("edge")?;
        let carrier = Netns::new("carrier")?;
        let border = Netns::new("border")?;
        let platform = Netns::new("platform")?;
        let logs = std::env::temp_dir().join(format!("{}-logs", cpe.name()));
        std::fs::create_dir_all(&logs).map_err(|source| NetnsError::File { path: logs.clone(), source })?;
        for router in [&cpe, &edge, &border] {
            router.enable_forwarding()?;
            router.sysctl("net.ipv4.conf.all.ignore_routes_with_linkdown", "1")?;
        }
        for netns in [&cpe, &edge, &carrier, &border, &platform] {
            netns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        }
        let lan_bridge = cpe.bridge(plan::LAN_BRIDGE)?;
        cpe.add_address(plan::LAN_BRIDGE, &format!("{}/{}", plan::CPE_LAN, plan::LAN_PREFIX))?;

        cpe.veth(plan::PRIMARY, &edge, plan::EDGE_PRIMARY, [None, None])?;
        cpe.add_address(plan::PRIMARY, &format!("{}/24", plan::PRIMARY_CPE))?;
        edge.add_address(plan::EDGE_PRIMARY, &format!("{}/24", plan::PRIMARY_GATEWAY))?;
        cpe.veth(plan::BACKUP, &edge, plan::EDGE_BACKUP, [None, None])?;
        cpe.add_address(plan::BACKUP, &format!("{}/24", plan::BACKUP_CPE))?;
        edge.add_address(plan::EDGE_BACKUP, &format!("{}/24", plan::BACKUP_GATEWAY))?;
        cpe.add_route("default", plan::PRIMARY_GATEWAY, plan::PRIMARY_METRIC)?;
        cpe.add_route("default", plan::BACKUP_GATEWAY, plan::BACKUP_METRIC)?;
        let lan = format!("{}/{}", Ipv4Addr::from(u32::from(plan::CPE_LAN) & !0xff), plan::LAN_PREFIX);
        edge.add_route(&lan, plan::PRIMARY_CPE, plan::PRIMARY_METRIC)?;
        edge.add_route(&lan, plan::BACKUP_CPE, plan::BACKUP_METRIC)?;

        edge.veth(plan::EDGE_CARRIER, &carrier, plan::HOST_IFACE, [None, None])?;
        edge.add_address(plan::EDGE_CARRIER, &format!("{}/24", plan::CARRIER_GATEWAY))?;
        carrier.add_address(plan::HOST_IFACE, &format!("{}/24", plan::CARRIER))?;
        carrier.add_route("default", plan::CARRIER_GATEWAY, 0)?;

        edge.veth(plan::EDGE_TO_BORDER, &border, plan::HOST_IFACE, [None, None])?;
        edge.add_address(plan::EDGE_TO_BORDER, &format!("{}/30", plan::EDGE_BORDER))?;
        border.add_address(plan::HOST_IFACE, &format!("{}/30", plan::BORDER_EDGE))?;
        border.add_route("default", plan::EDGE_BORDER, 0)?;
        border.veth(plan::BORDER_TO_PLATFORM, &platform, plan::HOST_IFACE, [None, None])?;
        border.add_address(plan::BORDER_TO_PLATFORM, &format!("{}/24", plan::BORDER_PLATFORM))?;
        platform.add_address(plan::HOST_IFACE, &format!("{}/24", plan::PLATFORM))?;
        platform.add_route("default", plan::BORDER_PLATFORM, 0)?;
        edge.add_route(
            &format!("{}/24", Ipv4Addr::from(u32::from(plan::PLATFORM) & !0xff)),
            plan::BORDER_EDGE,
            0,
        )?;

        let mut topology =
            Self { terminals: Vec::new(), cpe, edge, carrier, border, platform, lan_bridge, logs };
        for index in 0..terminals {
            let host = topology.add_lan_host(
                plan::terminal_ip(index),
                plan::LAN_PREFIX,
                &plan::terminal_mac(index),
            )?;
            topology.terminals.push(host);
        }
        Ok(topology)
    }

    /// Attaches one more host to the LAN bridge with address `ip/prefix`
    /// and `mac` (its default route points at the CPE when `ip` is another
    /// address of the LAN subnet). Used for the terminals and for faults
    /// such as a second host with a duplicate IP, a terminal in a wrong
    /// subnet or one at the CPE's own address.
    pub fn add_lan_host(&self, ip: Ipv4Addr, prefix: u8, mac: &str) -> Result<LanHost, NetnsError> {
        let index = self.cpe.ip(&["-o", "link", "show", "master", plan::LAN_BRIDGE])?.lines().count();
        let port = plan::lan_port(u8::try_from(index).unwrap_or(u8::MAX));
        let netns = Netns::new("lanhost")?;
        netns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        self.cpe.veth(&port, &netns, plan::HOST_IFACE, [None, Some(mac)])?;
        self.lan_bridge.attach(&self.cpe, &port)?;
        netns.add_address(plan::HOST_IFACE, &format!("{ip}/{prefix}"))?;
        if same_subnet(ip, plan::CPE_LAN, plan::LAN_PREFIX) && ip != plan::CPE_LAN {
            netns.add_route("default", plan::CPE_LAN, 0)?;
        }
        Ok(LanHost { netns, ip, mac: mac.to_owned(), port })
    }

    /// Starts the DNS responder on the carrier host (port 53) answering
    /// [`plan::CARRIER_HOST`], and points the CPE's resolver at it.
    pub fn start_dns(&self) -> Result<Service, NetnsError> {
        let listen = SocketAddr::new(IpAddr::V4(plan::CARRIER), 53);
        let service = self.carrier.start_dns(
            listen,
            &[(plan::CARRIER_HOST, plan::CARRIER)],
            &self.log_path("dns.log"),
        )?;
        self.cpe.set_resolv_conf(&[IpAddr::V4(plan::CARRIER)])?;
        Ok(service)
    }

    /// A path for a log file of this topology (kept after a failing test,
    /// removed with the topology otherwise).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// The names of every namespace of this topology.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [&self.cpe, &self.edge, &self.carrier, &self.border, &self.platform]
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        names.extend(self.terminals.iter().map(|t| t.netns.name().to_owned()));
        names
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("netns: logs kept in {}", self.logs.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// Whether `a` and `b` share the first `prefix` bits.
pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// The DNS wire format the responder of `netns-helper dns` speaks: enough
/// of RFC 1035 to answer one A question from a table.
pub mod dns {
    use std::net::Ipv4Addr;

    /// Query type A.
    const TYPE_A: u16 = 1;
    /// Response code NXDOMAIN.
    const RCODE_NXDOMAIN: u8 = 3;

    /// The answer to `query` from `records` (name → IPv4, names compared
    /// case-insensitively without the trailing dot): the A record for a
    /// known name, an empty NOERROR answer for other types of a known name,
    /// NXDOMAIN otherwise. `None` for a message that is not a query with
    /// one well-formed question.
    pub fn answer(query: &[u8], records: &[(String, Ipv4Addr)]) -> Option<Vec<u8>> {
        let header = query.get(..12)?;
        let is_query = header[2] & 0x80 == 0;
        let questions = u16::from_be_bytes([header[4], header[5]]);
        if !is_query || questions != 1 {
            return None;
        }
        let (name, end) = read_name(query, 12)?;
        let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
        query.get(end + 3)?;
        let question = &query[12..end + 4];
        let found = records
            .iter()
            .find(|(n, _)| n.trim_end_matches('.').eq_ignore_ascii_case(&name))
            .map(|(_, ip)| *ip);
        let mut reply = Vec::with_capacity(question.len() + 28);
        reply.extend_from_slice(&header[..2]);
        // QR=1, opcode and RD copied, AA=1; RA=1 and the response code.
        reply.push(0x84 | (header[2] & 0x79));
        let answers = u16::from(found.is_some() && qtype == TYPE_A);
        reply.push(0x80 | if found.is_none() { RCODE_NXDOMAIN } else { 0 });
        reply.extend_from_slice(&1u16.to_be_bytes());
        reply.extend_from_slice(&answers.to_be_bytes());
        reply.extend_from_slice(&[0, 0, 0, 0]);
        reply.extend_from_slice(question);
        if let (Some(ip), 1) = (found, answers) {
            // Name pointer to the question, type A, class IN, TTL 5, 4 bytes.
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            reply.extend_from_slice(&ip.octets());
        }
        Some(reply)
    }

    /// Reads an uncompressed name starting at `offset`; returns it (labels
    /// joined by dots) and the offset after it.
    fn read_name(message: &[u8], mut offset: usize) -> Option<(String, usize)> {
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*message.get(offset)?);
            offset += 1;
            if len == 0 {
                return Some((labels.join("."), offset));
            }
            if len > 63 {
                return None;
            }
            labels.push(String::from_utf8_lossy(message.get(offset..offset + len)?).into_owned());
            offset += len;
        }
    }

    /// An A query for `name` with id `id` (for tests and probes).
    pub fn query(id: u16, name: &str) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&id.to_be_bytes());
        message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.trim_end_matches('.').split('.') {
            message.push(u8::try_from(label.len()).unwrap_or(63).min(63));
            message.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
        }
        message.extend_from_slice(&[0, 0, 1, 0, 1]);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_carry_the_pid_and_parse_back() {
        let a = unique_name("cpe");
        let b = unique_name("cpe");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{PREFIX}-{}-", std::process::id())), "{a}");
        assert!(a.ends_with("-cpe"));
        assert_eq!(creator_pid(&a), Some(std::process::id()));
        assert_eq!(creator_pid("cpee2e-x-1-cpe"), None);
        assert_eq!(creator_pid("other-12-1-cpe"), None);
        // Odd roles are reduced to a safe, bounded token.
        let odd = unique_name("a b/c;d-very-long-role-name");
        assert!(odd.ends_with("-abcdverylong"), "{odd}");
    }

    #[test]
    fn netns_list_output_is_parsed_with_and_without_ids() {
        let names = parse_netns_list("cpee2e-1-0-cpe (id: 3)\nother\n\ncpee2e-1-1-edge\n");
        assert_eq!(names, ["cpee2e-1-0-cpe", "other", "cpee2e-1-1-edge"]);
    }

    #[test]
    fn resolv_conf_lists_servers_with_a_short_timeout() {
        let text = render_resolv_conf(&["192.0.2.10".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        assert_eq!(text, "nameserver 192.0.2.10\nnameserver 2001:db8::1\noptions timeout:1 attempts:1\n");
    }

    #[test]
    fn fault_table_replaces_itself_and_renders_each_rule() {
        let text = render_fault_table(&[
            FaultRule::Loss { iface: Some("cpe0".into()), percent: 40 },
            FaultRule::Loss { iface: None, percent: 5 },
            FaultRule::Loss { iface: Some("cpe1".into()), percent: 100 },
            FaultRule::Loss { iface: Some("cpe2".into()), percent: 0 },
            FaultRule::DropLargerThan { bytes: 1400 },
            FaultRule::DropFragNeeded,
            FaultRule::DropTcpPort { port: 8443 },
            FaultRule::DropEchoTo {
                addresses: vec![Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(192, 0, 2, 10)],
            },
            FaultRule::DropUdpPort { port: 53 },
            FaultRule::DropAll { iface: "eth0".into() },
        ]);
        assert!(text.starts_with("table inet cpee2e_faults\ndelete table inet cpee2e_faults\n"), "{text}");
        for rule in [
            "iifname \"cpe0\" numgen random mod 100 < 40 drop",
            "\t\tnumgen random mod 100 < 5 drop",
            "\t\tiifname \"cpe1\" drop",
            "\t\t# no loss on cpe2",
            "ip length > 1400 drop",
            "tcp dport 8443 drop",
            "ip daddr { 198.51.100.1, 192.0.2.10 } icmp type echo-request drop",
            "udp dport 53 drop",
            "iifname \"eth0\" drop",
        ] {
            assert!(text.contains(rule), "missing {rule:?} in\n{text}");
        }
        // Frag-needed errors are dropped on the way in and when sent by this namespace.
        assert_eq!(text.matches("icmp code frag-needed drop").count(), 2, "{text}");
        let empty = render_fault_table(&[]);
        assert!(!empty.contains("drop"), "{empty}");
    }

    #[test]
    fn connection_outcomes_are_read_back() {
        assert_eq!(Reach::parse("connected"), Reach::Connected);
        assert_eq!(Reach::parse("refused"), Reach::Refused);
        assert_eq!(Reach::parse("timeout"), Reach::Timeout);
        assert_eq!(
            Reach::parse("unreachable: No route to host"),
            Reach::Unreachable("No route to host".into())
        );
        assert_eq!(Reach::parse(""), Reach::Unreachable(String::new()));
    }

    #[test]
    fn subnets_compare_by_prefix() {
        let lan = plan::CPE_LAN;
        assert!(same_subnet(plan::terminal_ip(0), lan, 24));
        assert!(!same_subnet(Ipv4Addr::new(192, 168, 20, 20), lan, 24));
        assert!(same_subnet(Ipv4Addr::new(10, 0, 0, 1), lan, 0));
        assert!(!same_subnet(Ipv4Addr::new(192, 168, 10, 2), lan, 32));
        assert_eq!(plan::terminal_mac(1), "02:00:00:00:0a:21");
        assert_eq!(plan::lan_port(0), "lan1");
    }

    #[test]
    fn dns_answers_known_names_and_refuses_others() {
        let records = vec![("carrier.cpe-e2e.test.".to_owned(), Ipv4Addr::new(192, 0, 2, 10))];
        let reply = dns::answer(&dns::query(0x1234, "Carrier.CPE-e2e.test"), &records).unwrap();
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(reply[2] & 0x80, 0x80, "a response");
        assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer");
        assert_eq!(&reply[reply.len() - 4..], &[192, 0, 2, 10]);

        let reply = dns::answer(&dns::query(7, "platform.cpe-e2e.test"), &records).unwrap();
        assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 0);

        // AAAA for a known name: NOERROR without answers (so resolvers keep the A).
        let mut aaaa = dns::query(8, "carrier.cpe-e2e.test");
        let len = aaaa.len();
        aaaa[len - 3] = 28;
        let reply = dns::answer(&aaaa, &records).unwrap();
        assert_eq!((reply[3] & 0x0f, u16::from_be_bytes([reply[6], reply[7]])), (0, 0));

        // Garbage, responses and truncated questions get no answer.
        assert_eq!(dns::answer(&[1, 2, 3], &records), None);
        let mut response = dns::query(9, "x");
        response[2] |= 0x80;
        assert_eq!(dns::answer(&response, &records), None);
        let truncated = dns::query(9, "carrier.cpe-e2e.test");
        assert_eq!(dns::answer(&truncated[..truncated.len() - 2], &records), None);
        assert_eq!(dns::answer(&[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 200], &records), None);
    }
}
