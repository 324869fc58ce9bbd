//! Who may hold one of the notice page's connection slots (pure). A LAN
//! host that opens connections and never finishes its request (slowloris),
//! or keeps reconnecting, must not deny the page to the clinic's other
//! terminals — and the page matters most exactly when something is wrong.
//!
//! So each client holds at most [`PER_CLIENT`] slots at once (an IPv4
//! address, or an IPv6 /64, since one IPv6 host can take any address of
//! its prefix), and there are [`SLOTS`] slots in all, each cheap (a small
//! task, a few hundred bytes of buffer): one host can never fill them, and
//! it takes [`SLOTS`] / [`PER_CLIENT`] hostile hosts to. A connection over
//! either limit is closed at once, unread; the server's short head
//! deadline frees a slow client's slots within seconds.

use std::collections::HashMap;
use std::net::IpAddr;

/// Most connections one client holds at once (a browser opens up to six
/// per host; a page, its favicon and the progress script need three).
pub const PER_CLIENT: usize = 8;

/// Most connections served at once.
pub const SLOTS: usize = 256;

/// The unit one limit applies to: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// One IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl Client {
    /// The client `peer` counts as.
    pub fn of(peer: IpAddr) -> Self {
        match peer.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6Prefix(u64::try_from(v6.to_bits() >> 64).unwrap_or(u64::MAX)),
        }
    }
}

/// Why a connection was closed unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its client already holds [`PER_CLIENT`] slots.
    ClientBusy,
    /// All [`SLOTS`] slots are taken.
    Full,
}

/// The slots held, per client.
#[derive(Debug)]
pub struct Admission {
    per_client: usize,
    slots: usize,
    held: HashMap<Client, usize>,
    total: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(PER_CLIENT, SLOTS)
    }
}

impl Admission {
    /// Limits of `per_client` slots per client and `slots` in all.
    pub fn new(per_client: usize, slots: usize) -> Self {
        Self { per_client, slots, held: HashMap::new(), total: 0 }
    }

    /// Takes a slot for a connection from `peer`, or says why not.
    pub fn admit(&mut self, peer: IpAddr) -> Result<Client, Refused> {
        let client = Client::of(peer);
        let held = self.held.get(&client).copied().unwrap_or(0);
        if held >= self.per_client {
            return Err(Refused::ClientBusy);
        }
        if self.total >= self.slots {
            return Err(Refused::Full);
        }
        self.held.insert(client, held + 1);
        self.total += 1;
        Ok(client)
    }

    /// Gives back a slot taken by [`Admission::admit`] for `client`.
    pub fn release(&mut self, client: Client) {
        if let Some(held) = self.held.get_mut(&client) {
            *held -= 1;
            self.total -= 1;
            if *held == 0 {
                self.held.remove(&client);
            }
        }
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, last))
    }

    #[test]
    fn one_host_cannot_take_more_than_its_share() {
        let mut admission = Admission::new(4, 16);
        let attacker: Vec<_> = (0..4).map(|_| admission.admit(v4(66)).unwrap()).collect();
        for _ in 0..100 {
            assert_eq!(admission.admit(v4(66)), Err(Refused::ClientBusy));
        }
        assert_eq!(admission.in_use(), 4);
        let clinic = admission.admit(v4(10)).unwrap();
        admission.release(clinic);
        admission.release(attacker[0]);
        assert_eq!(
            admission.admit(v4(66)),
            Ok(Client::V4(Ipv4Addr::new(192, 168, 1, 66))),
            "a slot freed is usable again"
        );
        assert_eq!(admission.in_use(), 4);
    }

    #[test]
    fn the_total_is_bounded_and_released_slots_return() {
        let mut admission = Admission::new(2, 5);
        let held: Vec<_> = (1..=5).map(|n| admission.admit(v4(n)).unwrap()).collect();
        assert_eq!(admission.admit(v4(9)), Err(Refused::Full));
        assert_eq!(admission.admit(v4(1)), Err(Refused::Full));
        for client in held {
            admission.release(client);
        }
        assert_eq!(admission.in_use(), 0);
        assert!(admission.held.is_empty(), "no client entry outlives its slots");
        assert!(admission.admit(v4(9)).is_ok());
    }

    #[test]
    fn an_ipv6_prefix_is_one_client_and_mapped_ipv4_is_ipv4() {
        let mut admission = Admission::new(1, 16);
        let a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let other: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert!(admission.admit(a).is_ok());
        assert_eq!(admission.admit(b), Err(Refused::ClientBusy), "same /64");
        assert!(admission.admit(other).is_ok());
        let mapped: IpAddr = Ipv4Addr::new(192, 168, 1, 5).to_ipv6_mapped().into();
        assert!(admission.admit(mapped).is_ok());
        assert_eq!(admission.admit(v4(5)), Err(Refused::ClientBusy));
    }

    #[test]
    fn releasing_an_unknown_client_changes_nothing() {
        let mut admission = Admission::new(1, 1);
        admission.release(Client::of(v4(1)));
        assert_eq!(admission.in_use(), 0);
        assert!(admission.admit(v4(1)).is_ok());
    }
}
