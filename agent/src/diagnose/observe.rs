//! What the diagnosis probes observe, and the pure parsers that turn the
//! kernel's and the DHCP server's text into it.
//!
//! Everything here is a plain value or a pure function of a file's text (or
//! a packet's bytes), so it is unit-tested with captured fixtures and never
//! panics on odd input: `/proc/net/arp`, `/proc/net/if_inet6`, dnsmasq lease
//! files, ARP frames, ICMP echo packets. The side effects that produce the
//! text live in [`super::probes`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::metrics::parse::RouteV4;

/// `ATF_COM` in `/proc/net/arp` flags: the entry is complete (resolved).
const ATF_COM: u32 = 0x2;
/// `ATF_PERM`: a static entry the administrator set.
const ATF_PERM: u32 = 0x4;

/// One entry of the IPv4 neighbour table (`/proc/net/arp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// Its link-layer address, lower case (`00:00:00:00:00:00` while incomplete).
    pub mac: String,
    /// `ATF_*` flags.
    pub flags: u32,
    /// The interface the entry belongs to.
    pub device: String,
}

impl Neighbour {
    /// The entry is resolved (an ARP reply was seen).
    pub fn is_complete(&self) -> bool {
        self.flags & ATF_COM != 0
    }

    /// A static entry, never to be flushed by a probe.
    pub fn is_permanent(&self) -> bool {
        self.flags & ATF_PERM != 0
    }
}

/// Parses `/proc/net/arp`
/// (`IP address  HW type  Flags  HW address  Mask  Device`); the header and
/// malformed lines are skipped.
pub fn parse_arp(text: &str) -> Vec<Neighbour> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [ip, _hw_type, flags, mac, _mask, device] = fields[..] else { return None };
            Some(Neighbour {
                ip: ip.parse().ok()?,
                mac: normalise_mac(mac)?,
                flags: parse_hex(flags)?,
                device: device.to_owned(),
            })
        })
        .collect()
}

/// One IPv6 address of an interface (`/proc/net/if_inet6`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6Address {
    /// The address.
    pub address: Ipv6Addr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Scope (`0x00` global, `0x20` link).
    pub scope: u8,
    /// Interface name.
    pub iface: String,
}

/// Parses `/proc/net/if_inet6` (`addr ifindex prefix_len scope flags name`).
pub fn parse_if_inet6(text: &str) -> Vec<Inet6Address> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [addr, _index, prefix, scope, _flags, iface] = fields[..] else { return None };
            let bits = u128::from_str_radix(addr, 16).ok().filter(|_| addr.len() == 32)?;
            Some(Inet6Address {
                address: Ipv6Addr::from(bits),
                prefix_len: u8::from_str_radix(prefix, 16).ok()?,
                scope: u8::from_str_radix(scope, 16).ok()?,
                iface: iface.to_owned(),
            })
        })
        .collect()
}

/// One DHCP lease of a dnsmasq lease file (`expiry mac ip hostname client-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Expiry, Unix seconds; 0 means infinite.
    pub expiry_unix: i64,
    /// The client's MAC, lower case.
    pub mac: String,
    /// The leased address.
    pub ip: IpAddr,
    /// The client's host name (`*` when none).
    pub hostname: String,
}

impl Lease {
    /// The lease is still valid at `now_unix`.
    pub fn is_active(&self, now_unix: i64) -> bool {
        self.expiry_unix == 0 || self.expiry_unix > now_unix
    }
}

/// Parses a dnsmasq lease file; IPv6 `duid` lines and malformed lines are skipped.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let expiry_unix = fields.next()?.parse().ok()?;
            let mac = normalise_mac(fields.next()?)?;
            let ip = fields.next()?.parse().ok()?;
            let hostname = fields.next().unwrap_or("*").to_owned();
            Some(Lease { expiry_unix, mac, ip, hostname })
        })
        .collect()
}

/// A MAC address in lower case `aa:bb:cc:dd:ee:ff` form, accepting `-` as
/// separator; `None` unless it is six hex octets.
pub fn normalise_mac(text: &str) -> Option<String> {
    let octets: Vec<&str> = text.split([':', '-']).collect();
    let valid = octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && u8::from_str_radix(o, 16).is_ok());
    valid.then(|| octets.join(":").to_ascii_lowercase())
}

fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// The state of one network interface, read from `/sys/class/net/<if>/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// `operstate` text (`up`, `down`, `lowerlayerdown`, `unknown`, …).
    pub operstate: String,
    /// Administratively up (`IFF_UP` in `flags`).
    pub admin_up: bool,
    /// Operationally up (see [`crate::metrics::parse::interface_up`]).
    pub oper_up: bool,
    /// Carrier detected (`carrier` reads `1`).
    pub carrier: bool,
    /// Negotiated speed in Mb/s, when the driver reports one.
    pub speed_mbps: Option<u32>,
    /// `full` / `half`, when the driver reports it.
    pub duplex: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Error and drop counters: rx_errors, tx_errors, rx_dropped, tx_dropped.
    pub errors: Option<ErrorCounters>,
    /// Members when this interface is a bridge (from `brif/`), sorted.
    pub bridge_ports: Option<Vec<String>>,
    /// The bridge this interface is a port of (`master`), if any.
    pub master: Option<String>,
}

/// The error and drop counters of an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounters {
    /// `statistics/rx_errors`.
    pub rx_errors: u64,
    /// `statistics/tx_errors`.
    pub tx_errors: u64,
    /// `statistics/rx_dropped`.
    pub rx_dropped: u64,
    /// `statistics/tx_dropped`.
    pub tx_dropped: u64,
}

impl ErrorCounters {
    /// Growth since `earlier` (a counter that went down counts as 0: reset).
    #[must_use]
    pub fn delta_since(&self, earlier: &Self) -> Self {
        Self {
            rx_errors: self.rx_errors.saturating_sub(earlier.rx_errors),
            tx_errors: self.tx_errors.saturating_sub(earlier.tx_errors),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }

    /// Errors in both directions.
    pub fn errors(&self) -> u64 {
        self.rx_errors.saturating_add(self.tx_errors)
    }

    /// Drops in both directions.
    pub fn dropped(&self) -> u64 {
        self.rx_dropped.saturating_add(self.tx_dropped)
    }
}

/// Whether `ip` lies in `network/prefix_len`.
pub fn in_subnet(ip: IpAddr, network: IpAddr, prefix_len: u32) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if prefix_len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - prefix_len).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if prefix_len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - prefix_len).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The sender of an ARP packet (as received on an `AF_PACKET` datagram
/// socket: no Ethernet header): `(operation, sender MAC, sender IPv4)` for
/// Ethernet/IPv4 ARP, else `None`.
pub fn parse_arp_packet(bytes: &[u8]) -> Option<(u16, String, Ipv4Addr)> {
    let header: &[u8; 8] = bytes.get(..8)?.try_into().ok()?;
    // htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6, plen 4.
    if header[..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let operation = u16::from_be_bytes([header[6], header[7]]);
    let mac = bytes.get(8..14)?;
    let ip: [u8; 4] = bytes.get(14..18)?.try_into().ok()?;
    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    Some((operation, mac, Ipv4Addr::from(ip)))
}

/// ICMP echo request / reply types.
const ICMP4_ECHO_REQUEST: u8 = 8;
const ICMP4_ECHO_REPLY: u8 = 0;
const ICMP4_UNREACHABLE: u8 = 3;
const ICMP4_FRAG_NEEDED: u8 = 4;
const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;
const ICMP6_PACKET_TOO_BIG: u8 = 2;

/// An ICMP echo request of `total` bytes of ICMP message (header included,
/// at least 8) with identifier `id` and sequence `seq`; the IPv4 checksum is
/// filled in (the kernel computes the ICMPv6 one).
pub fn echo_request(v6: bool, id: u16, seq: u16, total: usize) -> Vec<u8> {
    let mut packet = vec![0u8; total.max(8)];
    packet[0] = if v6 { ICMP6_ECHO_REQUEST } else { ICMP4_ECHO_REQUEST };
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in packet.iter_mut().enumerate().skip(8) {
        *byte = u8::try_from(i & 0xff).unwrap_or(0);
    }
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// What a received ICMP message means for an echo probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMessage {
    /// An echo reply with this identifier and sequence.
    EchoReply {
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
    /// "Fragmentation needed" / "packet too big" for an echo request of
    /// ours with this identifier, announcing the next-hop MTU.
    TooBig {
        /// Identifier of the echo request that was too big.
        id: u16,
        /// The MTU the router announced (0 when it did not say).
        mtu: u32,
    },
}

/// Parses a received ICMP message. `ip_header` tells whether an IPv4
/// header precedes it (IPv4 raw sockets deliver one; datagram sockets and
/// ICMPv6 do not).
pub fn parse_icmp(v6: bool, ip_header: bool, bytes: &[u8]) -> Option<IcmpMessage> {
    let icmp = if ip_header { bytes.get(usize::from(bytes.first()? & 0x0f) * 4..)? } else { bytes };
    let kind = *icmp.first()?;
    let code = *icmp.get(1)?;
    let word = |at: usize| icmp.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match (v6, kind) {
        (false, ICMP4_ECHO_REPLY) | (true, ICMP6_ECHO_REPLY) => {
            Some(IcmpMessage::EchoReply { id: word(4)?, seq: word(6)? })
        }
        (false, ICMP4_UNREACHABLE) if code == ICMP4_FRAG_NEEDED => {
            // 8 bytes of ICMP header (next-hop MTU in bytes 6..8), then the
            // original IPv4 header and the first 8 bytes of our echo request.
            let inner = icmp.get(8..)?;
            let inner_icmp = inner.get(usize::from(inner.first()? & 0x0f) * 4..)?;
            let id = inner_icmp.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]]))?;
            Some(IcmpMessage::TooBig { id, mtu: u32::from(word(6)?) })
        }
        (true, ICMP6_PACKET_TOO_BIG) => {
            let mtu = icmp.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
            // 8 bytes of header, the 40-byte IPv6 header, then our request.
            let id = icmp.get(8 + 40 + 4..8 + 40 + 6).map(|b| u16::from_be_bytes([b[0], b[1]]))?;
            Some(IcmpMessage::TooBig { id, mtu })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str = "IP address       HW type     Flags       HW address            Mask     Device\n\
        192.168.10.20    0x1         0x2         02:00:00:00:00:20     *        br-lan\n\
        192.168.10.21    0x1         0x0         00:00:00:00:00:00     *        br-lan\n\
        192.0.2.1        0x1         0x6         02:AA:BB:CC:DD:01     *        wan0\n\
        garbage line\n\
        300.1.1.1        0x1         0x2         02:00:00:00:00:20     *        br-lan\n";

    #[test]
    fn arp_table_states() {
        let table = parse_arp(ARP);
        assert_eq!(table.len(), 3);
        assert!(table[0].is_complete() && !table[0].is_permanent());
        assert!(!table[1].is_complete());
        assert_eq!(table[2].mac, "02:aa:bb:cc:dd:01");
        assert!(table[2].is_permanent());
        assert_eq!(table[2].device, "wan0");
        assert!(parse_arp("").is_empty());
    }

    #[test]
    fn if_inet6_and_leases() {
        let text = "fe800000000000000000000000000001 02 40 20 80 br-lan\n\
                    20010db8000000000000000000000001 03 40 00 00 wan0\nshort\n";
        let addrs = parse_if_inet6(text);
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].address, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!((addrs[1].prefix_len, addrs[1].scope), (64, 0));
        let leases = parse_leases(
            "1700000000 02:00:00:00:00:20 192.168.10.20 reception 01:02:00:00:00:00:20\n\
             0 02-00-00-00-00-21 192.168.10.21 *\nduid 00:01:00:01\nbad\n",
        );
        assert_eq!(leases.len(), 2);
        assert!(leases[0].is_active(1_699_999_999) && !leases[0].is_active(1_700_000_000));
        assert!(leases[1].is_active(i64::MAX));
        assert_eq!(leases[1].mac, "02:00:00:00:00:21");
    }

    #[test]
    fn macs_subnets_and_counters() {
        assert_eq!(normalise_mac("AA-BB-CC-DD-EE-FF").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        for bad in ["", "aa:bb", "aa:bb:cc:dd:ee:gg", "aaa:bb:cc:dd:ee:f"] {
            assert_eq!(normalise_mac(bad), None, "{bad}");
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_subnet(ip("192.168.10.20"), ip("192.168.10.0"), 24));
        assert!(!in_subnet(ip("192.168.11.20"), ip("192.168.10.0"), 24));
        assert!(in_subnet(ip("10.1.2.3"), ip("0.0.0.0"), 0));
        assert!(!in_subnet(ip("10.1.2.3"), ip("10.1.2.3"), 33));
        assert!(in_subnet(ip("2001:db8::20"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("2001:db9::20"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("10.1.2.3"), ip("2001:db8::1"), 0));
        let before = ErrorCounters { rx_errors: 5, tx_errors: 1, rx_dropped: 10, tx_dropped: 0 };
        let after = ErrorCounters { rx_errors: 8, tx_errors: 0, rx_dropped: 10, tx_dropped: 2 };
        let d = after.delta_since(&before);
        assert_eq!((d.errors(), d.dropped()), (3, 2));
    }

    #[test]
    fn arp_packets() {
        let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2, 2, 0, 0, 0, 0, 0x20, 192, 168, 10, 20];
        reply.extend([0u8; 10]);
        assert_eq!(
            parse_arp_packet(&reply),
            Some((2, "02:00:00:00:00:20".to_owned(), Ipv4Addr::new(192, 168, 10, 20)))
        );
        assert_eq!(parse_arp_packet(&reply[..12]), None);
        reply[1] = 6;
        assert_eq!(parse_arp_packet(&reply), None);
    }

    #[test]
    fn echo_packets_round_trip() {
        let request = echo_request(false, 0x1234, 7, 64);
        assert_eq!(request.len(), 64);
        assert_eq!(checksum(&request), 0, "a packet with its checksum sums to zero");
        let mut reply = request.clone();
        reply[0] = ICMP4_ECHO_REPLY;
        assert_eq!(parse_icmp(false, false, &reply), Some(IcmpMessage::EchoReply { id: 0x1234, seq: 7 }));
        let mut with_header = vec![0x45u8; 20];
        with_header.extend(&reply);
        assert_eq!(
            parse_icmp(false, true, &with_header),
            Some(IcmpMessage::EchoReply { id: 0x1234, seq: 7 })
        );
        // Fragmentation needed, MTU 1400, quoting our request.
        let mut too_big = vec![ICMP4_UNREACHABLE, ICMP4_FRAG_NEEDED, 0, 0, 0, 0, 0x05, 0x78];
        too_big.extend([0x45u8; 20]);
        too_big.extend(&request[..8]);
        assert_eq!(parse_icmp(false, false, &too_big), Some(IcmpMessage::TooBig { id: 0x1234, mtu: 1400 }));
        let v6 = echo_request(true, 9, 1, 8);
        assert_eq!(v6[0], ICMP6_ECHO_REQUEST);
        let mut v6_reply = v6.clone();
        v6_reply[0] = ICMP6_ECHO_REPLY;
        assert_eq!(parse_icmp(true, false, &v6_reply), Some(IcmpMessage::EchoReply { id: 9, seq: 1 }));
        for junk in [&[][..], &[0u8][..], &[0x4f][..], &[3, 4, 0, 0][..]] {
            assert_eq!(parse_icmp(false, true, junk), None);
            let _ = parse_icmp(false, false, junk);
            let _ = parse_icmp(true, false, junk);
        }
    }
}
