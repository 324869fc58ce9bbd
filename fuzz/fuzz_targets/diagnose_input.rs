//! What `cpe-agent diagnose` reads from the network and from files others
//! write: ICMP and ARP packets from the wire, the carrier's HTTP answer,
//! `/proc/net/arp`, `/proc/net/route`, `/proc/net/if_inet6` and the DHCP
//! server's lease file. None may panic.
#![no_main]

use cpe_agent::diagnose::{exchange, observe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = observe::parse_arp_packet(data);
    for (v6, ip_header) in [(false, true), (false, false), (true, false)] {
        let _ = observe::parse_icmp(v6, ip_header, data);
    }
    let _ = exchange::parse_answer(data);
    let text = String::from_utf8_lossy(data);
    let _ = observe::parse_arp(&text);
    let _ = observe::parse_if_inet6(&text);
    let _ = observe::parse_leases(&text);
    let _ = cpe_agent::metrics::parse::parse_route_v4(&text);
});
