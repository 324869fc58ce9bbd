//! The one side effect of the diagnosis: [`Probes`], the narrow trait through
//! which the runner looks at the system and the network, and
//! [`SystemProbes`], the real implementation.
//!
//! The trait hands back raw observations (an interface's state, the ARP
//! table, echo round-trip times, what a TLS exchange with the carrier ended
//! in); turning them into check results is the runner's pure work
//! ([`super::run`]), so tests drive the runner with a fake. The real
//! implementation reads files under the configured `/proc` and `/sys` roots
//! (fixture trees in tests) and opens sockets:
//!
//! - **ICMP echo**: a raw ICMP socket (root, as the agent runs on the
//!   router), else an unprivileged ICMP datagram socket
//!   (`net.ipv4.ping_group_range`); `IP_MTU_DISCOVER=DO` for path MTU probes.
//! - **Duplicate IP**: an `AF_PACKET` socket listens to every ARP packet
//!   while the kernel is made to ask for the address by broadcast (a learnt,
//!   non-static neighbour entry is flushed over rtnetlink first, then a UDP
//!   datagram to port 9 makes the kernel resolve the address); every
//!   distinct sender MAC claiming the address is collected. Two hosts owning
//!   the IP both answer the broadcast request, so two MACs show up.
//! - **Carrier**: TCP, then TLS with the institution identity
//!   ([`crate::identity::tls::client_config`]), then `GET /v1/ping`, each
//!   step's failure kept apart (refused, server certificate, our certificate
//!   refused by alert, HTTP status).
//! - **Firewall**: whether the agent's nftables table exists, asked through
//!   [`crate::orders::firewall::Firewall`], which owns everything nftables.
//!
//! Blocking socket work runs on tokio's blocking pool; every probe is
//! bounded by its own request (counts, windows) and the runner's timeouts.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_common::durable::OsStorage;
use nix::errno::Errno;
use nix::sys::socket::{
    self as socket, sockopt, AddressFamily, LinkAddr, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType, SockaddrStorage,
};
use nix::sys::time::{TimeVal, TimeValLike};
use time::OffsetDateTime;

use super::exchange::{Exchange, ExchangeLimits};
use super::observe::{self, IcmpMessage, Inet6Address, InterfaceState, Lease, Neighbour, RouteV4};
use crate::config::AgentConfig;
use crate::identity::status::{self, CertStatus};
use crate::identity::store::IdentityStore;
use crate::metrics::{parse, CpuTimes, MemInfo};
use crate::orders::firewall::{Firewall, FirewallError, NftFirewall};

/// One ICMP echo series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRequest {
    /// Requests to send.
    pub count: u16,
    /// Time between requests.
    pub interval: Duration,
    /// How long to wait for replies after the last request.
    pub timeout: Duration,
    /// Size of the IP packet (header included); at least the header plus 8.
    pub packet_size: usize,
    /// Set "don't fragment" (path MTU probes).
    pub dont_fragment: bool,
}

impl PingRequest {
    /// `count` small echoes `interval` apart, waiting `timeout` for the last.
    pub fn echo(count: u16, interval: Duration, timeout: Duration) -> Self {
        Self { count, interval, timeout, packet_size: 84, dont_fragment: false }
    }
}

/// What an echo series saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PingOutcome {
    /// Requests that left the socket.
    pub sent: u16,
    /// Round-trip times of the answered requests, microseconds, in sequence order.
    pub rtts_us: Vec<u64>,
    /// A router answered "fragmentation needed" with this MTU.
    pub too_big_mtu: Option<u32>,
    /// The kernel refused to send: larger than the path MTU it knows (EMSGSIZE).
    pub local_too_big: bool,
    /// Why the series could not run (no socket, no route), if so.
    pub error: Option<String>,
}

impl PingOutcome {
    /// Replies received.
    pub fn received(&self) -> usize {
        self.rtts_us.len()
    }
}

/// Free space of the state partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to the agent.
    pub available_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

/// Everything the diagnosis needs from the system and the network.
///
/// Synchronous methods read small kernel files and must not block for
/// long; the async ones send packets and are bounded by their arguments
/// (the runner adds its own timeouts on top).
pub trait Probes: Send + Sync + 'static {
    /// The state of interface `name`; `None` when it does not exist (or vanished).
    fn interface(&self, name: &str) -> Option<InterfaceState>;
    /// The IPv4 neighbour table.
    fn neighbours(&self) -> Vec<Neighbour>;
    /// The IPv4 routing table.
    fn routes(&self) -> Vec<RouteV4>;
    /// The IPv6 addresses of all interfaces.
    fn inet6_addresses(&self) -> Vec<Inet6Address>;
    /// The DHCP leases; `None` when this device serves no DHCP (not configured).
    fn leases(&self) -> Option<Result<Vec<Lease>, String>>;
    /// `/proc/meminfo`.
    fn memory(&self) -> Option<MemInfo>;
    /// The aggregate CPU times of `/proc/stat`.
    fn cpu(&self) -> Option<CpuTimes>;
    /// Free space where the agent keeps its state.
    fn disk(&self) -> Result<DiskSpace, String>;
    /// Whether the agent's state directory is usable (creates `diagnosis/`).
    fn state_dir_writable(&self) -> Result<(), String>;
    /// The installed institution certificate's status (`state` = `none` when missing).
    fn certificate(&self) -> Result<CertStatus, String>;
    /// The device clock.
    fn now(&self) -> OffsetDateTime;
    /// When the agent was built (a floor for a sane clock).
    fn build_time(&self) -> OffsetDateTime;
    /// Whether the agent's nftables table (e.g. `inet cpe_agent`) exists.
    fn firewall_table(&self, table: &str) -> impl Future<Output = Result<bool, String>> + Send;
    /// An ICMP echo series to `target`.
    fn ping(&self, target: IpAddr, request: PingRequest) -> impl Future<Output = PingOutcome> + Send;
    /// Every MAC that claimed `ip` in an ARP packet while the kernel was
    /// made to resolve it anew, listening for `window`.
    fn arp_claimants(
        &self,
        ip: Ipv4Addr,
        window: Duration,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;
    /// Resolves `host` with the system resolver.
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = Result<Vec<SocketAddr>, String>> + Send;
    /// TCP, TLS with the institution identity, then `GET /v1/ping` at `addr`.
    fn carrier_exchange(
        &self,
        addr: SocketAddr,
        server_name: &str,
        limits: ExchangeLimits,
    ) -> impl Future<Output = Exchange> + Send;
}

/// The real probes, reading under the configured roots.
#[derive(Debug, Clone)]
pub struct SystemProbes {
    proc_root: PathBuf,
    sys_root: PathBuf,
    state_dir: PathBuf,
    dhcp_leases: Option<PathBuf>,
    code_field: cpe_common::institution::CodeField,
    renewal: crate::identity::renewal::RenewalPolicy,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    firewall: NftFirewall,
}

impl SystemProbes {
    /// Probes for the device `config` describes; the TLS client
    /// configuration is built once from the stored identity and the
    /// carrier CA (its absence is reported by the TLS check).
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            proc_root: config.system.proc_root.clone(),
            sys_root: config.system.sys_root.clone(),
            state_dir: config.state_dir.clone(),
            dhcp_leases: config.network.dhcp_leases.clone(),
            code_field: config.institution_code_field,
            renewal: config.renewal.clone(),
            tls: tls_config(config).map(Arc::new),
            firewall: NftFirewall::default(),
        }
    }
}

fn read_opt(path: &Path) -> Option<String> {
    read_small(path).ok()
}

fn tls_config(config: &AgentConfig) -> Result<rustls::ClientConfig, String> {
    let store = IdentityStore::new(OsStorage, &config.state_dir);
    let identity = store
        .load_current()
        .map_err(|e| e.to_string())?
        .ok_or("no institution certificate is installed (cpe-agent cert import)")?;
    let ca = config.carrier.ca.as_ref().ok_or("carrier.ca is not configured")?;
    let roots = crate::identity::load_trust_anchors(std::slice::from_ref(ca)).map_err(|e| e.to_string())?;
    crate::identity::tls::client_config(&identity, &roots).map_err(|e| e.to_string())
}

/// Reads at most 1 MiB of a text file (kernel files are small; a lease file
/// of a clinic is too).
fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(1 << 20).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Probes for SystemProbes {
    fn interface(&self, name: &str) -> Option<InterfaceState> {
        read_interface(&self.sys_root.join("class/net"), name)
    }

    fn neighbours(&self) -> Vec<Neighbour> {
        read_opt(&self.proc_root.join("net/arp")).map(|t| observe::parse_arp(&t)).unwrap_or_default()
    }

    fn routes(&self) -> Vec<RouteV4> {
        read_opt(&self.proc_root.join("net/route")).map(|t| parse::parse_route_v4(&t)).unwrap_or_default()
    }

    fn inet6_addresses(&self) -> Vec<Inet6Address> {
        read_opt(&self.proc_root.join("net/if_inet6"))
            .map(|t| observe::parse_if_inet6(&t))
            .unwrap_or_default()
    }

    fn leases(&self) -> Option<Result<Vec<Lease>, String>> {
        let path = self.dhcp_leases.as_ref()?;
        Some(
            read_small(path)
                .map(|text| observe::parse_leases(&text))
                .map_err(|e| format!("cannot read the lease file {}: {e}", path.display())),
        )
    }

    fn memory(&self) -> Option<MemInfo> {
        read_opt(&self.proc_root.join("meminfo")).and_then(|t| parse::parse_meminfo(&t).ok())
    }

    fn cpu(&self) -> Option<CpuTimes> {
        read_opt(&self.proc_root.join("stat")).and_then(|t| parse::parse_stat(&t).ok())
    }

    fn disk(&self) -> Result<DiskSpace, String> {
        let stat = nix::sys::statvfs::statvfs(&self.state_dir)
            .map_err(|e| format!("cannot stat {}: {}", self.state_dir.display(), io::Error::from(e)))?;
        // The C types are 32 bits wide on 32-bit targets, 64 on others.
        #[allow(clippy::useless_conversion)]
        let (available, total, fragment) =
            (u64::from(stat.blocks_available()), u64::from(stat.blocks()), u64::from(stat.fragment_size()));
        Ok(DiskSpace {
            available_bytes: available.saturating_mul(fragment),
            total_bytes: total.saturating_mul(fragment),
        })
    }

    fn state_dir_writable(&self) -> Result<(), String> {
        let dir = self.state_dir.join("diagnosis");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let probe = dir.join(".writable");
        std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    fn certificate(&self) -> Result<CertStatus, String> {
        let store = IdentityStore::new(OsStorage, &self.state_dir);
        let current = store.load_current().map_err(|e| e.to_string())?;
        status::report(current.as_ref(), self.code_field, &self.renewal, crate::clock::now())
            .map(|report| report.status)
    }

    fn now(&self) -> OffsetDateTime {
        crate::clock::now()
    }

    fn build_time(&self) -> OffsetDateTime {
        crate::clock::build_time()
    }

    fn firewall_table(&self, table: &str) -> impl Future<Output = Result<bool, String>> + Send {
        let (firewall, table) = (self.firewall.clone(), table.to_owned());
        blocking(move || {
            firewall.has_table(&table).map_err(|e| match e {
                // The text `nft` gave: the check's evidence shows it as is.
                FirewallError::Nft(why) | FirewallError::Config(why) => why,
            })
        })
    }

    async fn ping(&self, target: IpAddr, request: PingRequest) -> PingOutcome {
        blocking(move || Ok(ping_blocking(target, request)))
            .await
            .unwrap_or_else(|error| PingOutcome { error: Some(error), ..PingOutcome::default() })
    }

    fn arp_claimants(
        &self,
        ip: Ipv4Addr,
        window: Duration,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send {
        let entry = self.neighbours().into_iter().find(|n| n.ip == ip);
        let ifindex = entry.as_ref().and_then(|n| {
            read_opt(&self.sys_root.join("class/net").join(&n.device).join("ifindex"))
                .and_then(|t| t.trim().parse::<i32>().ok())
        });
        let flush = entry.filter(|n| !n.is_permanent()).and(ifindex);
        blocking(move || arp_claimants_blocking(ip, flush, window))
    }

    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = Result<Vec<SocketAddr>, String>> + Send {
        let host = host.to_owned();
        async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect)
                .map_err(|e| e.to_string())
        }
    }

    fn carrier_exchange(
        &self,
        addr: SocketAddr,
        server_name: &str,
        limits: ExchangeLimits,
    ) -> impl Future<Output = Exchange> + Send {
        let tls = self.tls.clone();
        let server_name = server_name.to_owned();
        async move { super::exchange::run(addr, &server_name, tls, limits).await }
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("probe task failed: {e}"))?
}

/// One interface's state from `<net_dir>/<name>/`; `None` when the
/// directory is gone. Unreadable attributes degrade to defaults/`None`.
pub fn read_interface(net_dir: &Path, name: &str) -> Option<InterfaceState> {
    let dir = net_dir.join(name);
    let read = |file: &str| read_small(&dir.join(file)).ok();
    let operstate = read("operstate")?.trim().to_owned();
    let flags = read("flags");
    let admin_up = flags
        .as_deref()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 1 != 0);
    let counter =
        |file: &str| read(&format!("statistics/{file}")).and_then(|t| parse::parse_counter(&t).ok());
    let errors = (|| {
        Some(observe::ErrorCounters {
            rx_errors: counter("rx_errors")?,
            tx_errors: counter("tx_errors")?,
            rx_dropped: counter("rx_dropped")?,
            tx_dropped: counter("tx_dropped")?,
        })
    })();
    let bridge_ports = std::fs::read_dir(dir.join("brif")).ok().map(|entries| {
        let mut ports: Vec<String> =
            entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect();
        ports.sort();
        ports
    });
    let master = std::fs::read_link(dir.join("master"))
        .ok()
        .and_then(|target| target.file_name().and_then(|n| n.to_str()).map(str::to_owned));
    Some(InterfaceState {
        name: name.to_owned(),
        oper_up: parse::interface_up(&operstate, flags.as_deref()),
        operstate,
        admin_up,
        carrier: read("carrier").is_some_and(|t| parse::parse_carrier(&t)),
        speed_mbps: read("speed")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|s| u32::try_from(s).ok()),
        duplex: read("duplex").map(|t| t.trim().to_owned()).filter(|d| d == "full" || d == "half"),
        mtu: read("mtu").and_then(|t| t.trim().parse().ok()),
        errors,
        bridge_ports,
        master,
    })
}

/// Identifiers for our echo requests: distinct per series in this process.
fn next_echo_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
}

/// A raw ICMP socket (IPv4 raw sockets deliver the IP header too), else an
/// unprivileged ICMP datagram socket.
fn open_icmp(v6: bool) -> io::Result<(OwnedFd, bool)> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    match socket::socket(family, SockType::Raw, SockFlag::empty(), protocol) {
        Ok(fd) => Ok((fd, true)),
        Err(raw_error) => socket::socket(family, SockType::Datagram, SockFlag::empty(), protocol)
            .map(|fd| (fd, false))
            .map_err(|dgram_error| {
                io::Error::other(format!(
                    "cannot open an ICMP socket (raw: {}; datagram: {}); run as root or \
                     allow ping sockets (net.ipv4.ping_group_range)",
                    io::Error::from(raw_error),
                    io::Error::from(dgram_error)
                ))
            }),
    }
}

/// Sets the receive timeout of `fd` (at least one microsecond: zero would
/// mean "wait forever").
fn set_receive_timeout(fd: &impl AsFd, wait: Duration) -> Result<(), Errno> {
    let micros = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX).max(1);
    socket::setsockopt(fd, sockopt::ReceiveTimeout, &TimeVal::microseconds(micros))
}

/// "Don't fragment" for path MTU probes (`IP_MTU_DISCOVER` /
/// `IPV6_MTU_DISCOVER` = `DO`). nix has no safe wrapper for these two
/// options on Linux and a hand-written one needs `unsafe`, so they are the
/// agent's only rustix calls.
fn set_dont_fragment(fd: &impl AsFd, v6: bool) -> io::Result<()> {
    use rustix::net::sockopt::{
        set_ip_mtu_discover, set_ipv6_mtu_discover, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery,
    };
    if v6 {
        set_ipv6_mtu_discover(fd, Ipv6PathMtuDiscovery::DO)?;
    } else {
        set_ip_mtu_discover(fd, Ipv4PathMtuDiscovery::DO)?;
    }
    Ok(())
}

fn ping_blocking(target: IpAddr, request: PingRequest) -> PingOutcome {
    let mut out = PingOutcome::default();
    let v6 = target.is_ipv6();
    let (fd, raw) = match open_icmp(v6) {
        Ok(socket) => socket,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    if request.dont_fragment {
        if let Err(e) = set_dont_fragment(&fd, v6) {
            out.error = Some(format!("cannot set don't-fragment: {e}"));
            return out;
        }
    }
    let id = next_echo_id();
    let icmp_len = request.packet_size.saturating_sub(if v6 { 40 } else { 20 }).max(8);
    let addr = SockaddrStorage::from(SocketAddr::new(target, 0));
    let count = usize::from(request.count);
    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let mut rtts: Vec<Option<u64>> = vec![None; count];
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let mut next = 0usize;
    let mut deadline = start + request.timeout;
    loop {
        let now = Instant::now();
        let due = start + request.interval * u32::try_from(next).unwrap_or(u32::MAX);
        if next < count && now >= due {
            let seq = u16::try_from(next).unwrap_or(u16::MAX);
            let packet = observe::echo_request(v6, id, seq, icmp_len);
            match socket::sendto(fd.as_raw_fd(), &packet, &addr, MsgFlags::empty()) {
                Ok(_) => {
                    sent_at[next] = Some(now);
                    out.sent += 1;
                }
                Err(Errno::EMSGSIZE) => out.local_too_big = true,
                Err(e) => {
                    out.error
                        .get_or_insert_with(|| format!("cannot send to {target}: {}", io::Error::from(e)));
                }
            }
            next += 1;
            if next == count {
                deadline = now + request.timeout;
            }
            continue;
        }
        let answered = rtts.iter().flatten().count();
        if next == count && (now >= deadline || answered == usize::from(out.sent)) {
            break;
        }
        let wake = if next < count { due } else { deadline };
        let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
        if set_receive_timeout(&fd, wait).is_err() {
            break;
        }
        let (len, from) = match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf[..]) {
            Ok(received) => received,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                out.error.get_or_insert_with(|| format!("receive failed: {}", io::Error::from(e)));
                break;
            }
        };
        let from_ip = from.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        match observe::parse_icmp(v6, raw && !v6, buf.get(..len).unwrap_or_default()) {
            Some(IcmpMessage::EchoReply { id: reply_id, seq })
                if from_ip == Some(target) && (!raw || reply_id == id) =>
            {
                let index = usize::from(seq);
                if let (Some(Some(sent)), Some(slot @ None)) = (sent_at.get(index), rtts.get_mut(index)) {
                    *slot = Some(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }
            Some(IcmpMessage::TooBig { id: quoted, mtu }) if !raw || quoted == id => {
                out.too_big_mtu = Some(mtu);
            }
            _ => {}
        }
    }
    out.rtts_us = rtts.into_iter().flatten().collect();
    out
}

/// Netlink: `RTM_DELNEIGH`, request + ack flags.
const RTM_DELNEIGH: u16 = 29;
const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;

/// The rtnetlink message deleting the IPv4 neighbour entry of `ip` on
/// interface `ifindex` (what `ip neigh del IP dev IF` sends).
pub fn neighbour_delete_message(ip: Ipv4Addr, ifindex: i32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(36);
    msg.extend(36u32.to_ne_bytes()); // nlmsg_len
    msg.extend(RTM_DELNEIGH.to_ne_bytes()); // nlmsg_type
    msg.extend(NLM_F_REQUEST_ACK.to_ne_bytes()); // nlmsg_flags
    msg.extend(1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend(0u32.to_ne_bytes()); // nlmsg_pid
    msg.extend([2u8, 0, 0, 0]); // ndm_family AF_INET, padding
    msg.extend(ifindex.to_ne_bytes()); // ndm_ifindex
    msg.extend(0u16.to_ne_bytes()); // ndm_state
    msg.extend([0u8, 0]); // ndm_flags, ndm_type
    msg.extend(8u16.to_ne_bytes()); // rta_len
    msg.extend(1u16.to_ne_bytes()); // NDA_DST
    msg.extend(ip.octets());
    msg
}

fn flush_neighbour(ip: Ipv4Addr, ifindex: i32) {
    let Ok(fd) =
        socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::empty(), SockProtocol::NetlinkRoute)
    else {
        return;
    };
    let kernel = NetlinkAddr::new(0, 0);
    let message = neighbour_delete_message(ip, ifindex);
    if socket::sendto(fd.as_raw_fd(), &message, &kernel, MsgFlags::empty()).is_ok() {
        // Wait briefly for the acknowledgement so the deletion is done
        // before the kernel is asked to resolve the address again.
        let mut ack = [0u8; 512];
        let _ = set_receive_timeout(&fd, Duration::from_millis(200));
        let _ = socket::recv(fd.as_raw_fd(), &mut ack[..], MsgFlags::empty());
    }
}

/// The link-layer protocol number of ARP (`ETH_P_ARP`).
const ETH_P_ARP: u16 = 0x0806;

fn arp_claimants_blocking(ip: Ipv4Addr, flush: Option<i32>, window: Duration) -> Result<Vec<String>, String> {
    // nix names no `ETH_P_ARP` socket protocol: the socket takes every
    // protocol and the loop keeps the ARP packets (by their link-layer
    // protocol), which is what an `ETH_P_ARP` socket would have delivered.
    let fd =
        socket::socket(AddressFamily::Packet, SockType::Datagram, SockFlag::empty(), SockProtocol::EthAll)
            .map_err(|e| {
                format!("cannot listen to ARP packets ({}); needs CAP_NET_RAW", io::Error::from(e))
            })?;
    if let Some(ifindex) = flush {
        flush_neighbour(ip, ifindex);
    }
    // Any datagram to the address makes the kernel resolve it (port 9 is
    // "discard"; the ICMP port-unreachable answer is harmless).
    if let Ok(socket) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        let _ = socket.send_to(b"cpe-agent diagnose", (ip, 9));
    }
    let mut claimants: Vec<String> = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        set_receive_timeout(&fd, left)
            .map_err(|e| format!("cannot set a receive timeout: {}", io::Error::from(e)))?;
        match socket::recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf[..]) {
            Ok((len, from)) => {
                let arp = from.is_some_and(|link| u16::from_be(link.protocol()) == ETH_P_ARP);
                let packet = if arp { buf.get(..len).unwrap_or_default() } else { &[] };
                if let Some((_, mac, sender)) = observe::parse_arp_packet(packet) {
                    if sender == ip && !claimants.contains(&mac) {
                        claimants.push(mac);
                    }
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(format!("receive failed: {}", io::Error::from(e))),
        }
    }
    Ok(claimants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_from_a_sys_tree_and_a_vanished_one() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path();
        let lan = net.join("br-lan");
        std::fs::create_dir_all(lan.join("statistics")).unwrap();
        std::fs::create_dir_all(lan.join("brif/lan1")).unwrap();
        std::fs::create_dir_all(lan.join("brif/lan0")).unwrap();
        std::fs::write(lan.join("operstate"), "up\n").unwrap();
        std::fs::write(lan.join("flags"), "0x1003\n").unwrap();
        std::fs::write(lan.join("carrier"), "1\n").unwrap();
        std::fs::write(lan.join("speed"), "-1\n").unwrap();
        std::fs::write(lan.join("duplex"), "unknown\n").unwrap();
        std::fs::write(lan.join("mtu"), "1500\n").unwrap();
        for (file, value) in
            [("rx_errors", "1"), ("tx_errors", "2"), ("rx_dropped", "3"), ("tx_dropped", "4")]
        {
            std::fs::write(lan.join("statistics").join(file), value).unwrap();
        }
        let state = read_interface(net, "br-lan").unwrap();
        assert!(state.admin_up && state.oper_up && state.carrier);
        assert_eq!((state.speed_mbps, state.duplex.as_deref(), state.mtu), (None, None, Some(1500)));
        assert_eq!(state.errors.unwrap().dropped(), 7);
        assert_eq!(state.bridge_ports, Some(vec!["lan0".to_owned(), "lan1".to_owned()]));
        assert_eq!(state.master, None);

        let port = net.join("lan0");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("operstate"), "down\n").unwrap();
        std::fs::write(port.join("flags"), "0x1002\n").unwrap();
        std::fs::write(port.join("speed"), "100\n").unwrap();
        std::fs::write(port.join("duplex"), "half\n").unwrap();
        std::os::unix::fs::symlink(&lan, port.join("master")).unwrap();
        let state = read_interface(net, "lan0").unwrap();
        assert!(!state.admin_up && !state.oper_up && !state.carrier);
        assert_eq!((state.speed_mbps, state.duplex.as_deref()), (Some(100), Some("half")));
        assert_eq!(state.errors, None, "no counters: not invented");
        assert_eq!(state.master.as_deref(), Some("br-lan"));
        assert_eq!(read_interface(net, "gone0"), None);
    }

    #[test]
    fn reads_a_fixture_proc_tree_and_degrades_when_files_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/net")).unwrap();
        std::fs::write(
            root.join("proc/net/arp"),
            "IP address       HW type     Flags       HW address            Mask     Device\n\
             192.168.10.20    0x1         0x2         02:00:00:00:00:20     *        br-lan\n",
        )
        .unwrap();
        std::fs::write(
            root.join("proc/net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             wan0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             br-lan\t000AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        std::fs::write(root.join("proc/net/if_inet6"), "20010db8000000000000000000000001 03 40 00 00 wan0\n")
            .unwrap();
        std::fs::write(root.join("proc/meminfo"), "MemTotal: 1000 kB\nMemAvailable: 250 kB\n").unwrap();
        std::fs::write(root.join("proc/stat"), "cpu  1 2 3 4\n").unwrap();
        std::fs::write(root.join("leases"), "0 02:00:00:00:00:20 192.168.10.20 reception *\n").unwrap();
        let toml = format!(
            "state_dir = \"state\"\n[system]\nproc_root = \"{0}/proc\"\nsys_root = \"{0}/sys\"\n\
             [network]\ndhcp_leases = \"{0}/leases\"\n",
            root.display()
        );
        let config = AgentConfig::from_merged(toml.parse().unwrap(), &root.join("agent.toml")).unwrap();
        let probes = SystemProbes::new(&config);
        assert_eq!(probes.neighbours()[0].mac, "02:00:00:00:00:20");
        let routes = probes.routes();
        assert_eq!(
            (routes[0].gateway, routes[1].destination),
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 168, 10, 0))
        );
        assert_eq!(probes.inet6_addresses()[0].iface, "wan0");
        assert_eq!(probes.memory().unwrap().available_kib, 250);
        assert_eq!(probes.cpu().unwrap().idle, 4);
        assert_eq!(probes.leases().unwrap().unwrap()[0].hostname, "reception");
        assert!(probes.state_dir_writable().is_ok());
        assert!(probes.disk().unwrap().total_bytes > 0);
        assert_eq!(probes.certificate().unwrap().state, crate::identity::renewal::CertState::None);
        assert_eq!(probes.interface("wan0"), None);

        for file in
            ["proc/net/arp", "proc/net/route", "proc/net/if_inet6", "proc/meminfo", "proc/stat", "leases"]
        {
            std::fs::remove_file(root.join(file)).unwrap();
        }
        assert!(
            probes.neighbours().is_empty()
                && probes.routes().is_empty()
                && probes.inet6_addresses().is_empty()
        );
        assert!(probes.memory().is_none() && probes.cpu().is_none());
        assert!(probes.leases().unwrap().is_err());
    }

    #[test]
    fn neighbour_delete_is_a_well_formed_rtnetlink_message() {
        let msg = neighbour_delete_message(Ipv4Addr::new(192, 168, 10, 20), 7);
        assert_eq!(msg.len(), 36);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), RTM_DELNEIGH);
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 7);
        assert_eq!(&msg[32..36], &[192, 168, 10, 20]);
    }

    #[tokio::test]
    async fn loopback_echo_answers() {
        let config =
            AgentConfig::from_merged(toml::Table::new(), Path::new("/nonexistent/agent.toml")).unwrap();
        let probes = SystemProbes::new(&config);
        let outcome = probes
            .ping(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                PingRequest::echo(3, Duration::from_millis(10), Duration::from_secs(1)),
            )
            .await;
        if let Some(error) = &outcome.error {
            eprintln!("skipped: {error}");
            return;
        }
        assert_eq!((outcome.sent, outcome.received()), (3, 3), "{outcome:?}");
        let big = PingRequest {
            packet_size: 1500,
            dont_fragment: true,
            ..PingRequest::echo(1, Duration::ZERO, Duration::from_secs(1))
        };
        let outcome = probes.ping(IpAddr::V4(Ipv4Addr::LOCALHOST), big).await;
        assert_eq!(outcome.received(), 1, "{outcome:?}");
    }
}
