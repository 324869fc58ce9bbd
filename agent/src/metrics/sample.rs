//! One raw reading of the device's counters and gauges, as read at one moment.
//!
//! A [`RawSample`] holds what the kernel said, not rates: rates need two
//! samples and the time between them, which is the
//! [`Aggregator`](super::Aggregator)'s job. Every part is optional or a list
//! that may be short, because a sample degrades field by field instead of
//! failing as a whole.

/// One reading of everything the agent monitors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawSample {
    /// The aggregate `cpu` line of `/proc/stat`; `None` if unreadable.
    pub cpu: Option<CpuTimes>,
    /// `/proc/meminfo`; `None` if unreadable.
    pub memory: Option<MemInfo>,
    /// `/proc/loadavg` (1, 5, 15 minutes); `None` if unreadable.
    pub load: Option<[f32; 3]>,
    /// Whole seconds since boot from `/proc/uptime`; `None` if unreadable.
    pub uptime_s: Option<u64>,
    /// Highest thermal-zone temperature in °C; `None` without (readable) sensors.
    pub temperature_c: Option<f32>,
    /// Network interfaces except `lo`, sorted by name. An interface whose
    /// counters could not be read (e.g. it vanished while being read) is left out.
    pub interfaces: Vec<InterfaceSample>,
    /// The interface of the default route (IPv4, else IPv6); `None` if there is none.
    pub default_route: Option<String>,
}

/// Cumulative CPU time since boot, in clock ticks (`USER_HZ`), from the
/// aggregate `cpu` line of `/proc/stat`. `guest` and `guest_nice` are left
/// out because the kernel already counts them in `user` and `nice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Normal processes in user mode.
    pub user: u64,
    /// Niced processes in user mode.
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Idle while waiting for I/O.
    pub iowait: u64,
    /// Servicing interrupts.
    pub irq: u64,
    /// Servicing softirqs (on a router: most packet processing).
    pub softirq: u64,
    /// Stolen by a hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    /// Ticks spent idle (`idle + iowait`).
    pub fn idle_ticks(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    /// Ticks spent busy (everything that is not idle).
    pub fn busy_ticks(&self) -> u64 {
        [self.user, self.nice, self.system, self.irq, self.softirq, self.steal]
            .into_iter()
            .fold(0, u64::saturating_add)
    }
}

/// Memory figures from `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemAvailable`, or on kernels older than 3.14 the estimate
    /// `MemFree + Buffers + Cached + SReclaimable`.
    pub available_kib: u64,
}

impl MemInfo {
    /// Memory in use, `(total - available) / total`, as a percentage;
    /// `None` if the total is 0.
    pub fn used_pct(&self) -> Option<f32> {
        if self.total_kib == 0 {
            return None;
        }
        let used = self.total_kib.saturating_sub(self.available_kib);
        Some(super::to_f32(super::to_f64(used) * 100.0 / super::to_f64(self.total_kib)))
    }
}

/// One network interface at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSample {
    /// Interface name (`eth0`, `ppp0`, …).
    pub name: String,
    /// Operational state is up (`operstate` is `up`, or `unknown` with the
    /// administrative `IFF_UP` flag set, as for PPP and tunnel devices).
    pub up: bool,
    /// Carrier detected (`carrier` reads `1`; unreadable, as when the
    /// interface is down, counts as no carrier).
    pub carrier: bool,
    /// The cumulative counters of `statistics/`.
    pub counters: IfaceCounters,
}

/// Cumulative counters of an interface since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfaceCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
}

impl IfaceCounters {
    /// Per-counter increase from `earlier` to `self`. A counter that went
    /// down (wrapped, or the interface was re-created) counts as 0: one
    /// lost step is better than an absurd spike.
    #[must_use]
    pub fn delta_since(&self, earlier: &Self) -> Self {
        let d = u64::saturating_sub;
        Self {
            rx_bytes: d(self.rx_bytes, earlier.rx_bytes),
            tx_bytes: d(self.tx_bytes, earlier.tx_bytes),
            rx_packets: d(self.rx_packets, earlier.rx_packets),
            tx_packets: d(self.tx_packets, earlier.tx_packets),
            rx_errors: d(self.rx_errors, earlier.rx_errors),
            tx_errors: d(self.tx_errors, earlier.tx_errors),
            rx_dropped: d(self.rx_dropped, earlier.rx_dropped),
            tx_dropped: d(self.tx_dropped, earlier.tx_dropped),
        }
    }

    /// Counter-wise saturating sum.
    #[must_use]
    pub fn saturating_add(&self, other: &Self) -> Self {
        Self {
            rx_bytes: self.rx_bytes.saturating_add(other.rx_bytes),
            tx_bytes: self.tx_bytes.saturating_add(other.tx_bytes),
            rx_packets: self.rx_packets.saturating_add(other.rx_packets),
            tx_packets: self.tx_packets.saturating_add(other.tx_packets),
            rx_errors: self.rx_errors.saturating_add(other.rx_errors),
            tx_errors: self.tx_errors.saturating_add(other.tx_errors),
            rx_dropped: self.rx_dropped.saturating_add(other.rx_dropped),
            tx_dropped: self.tx_dropped.saturating_add(other.tx_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_split_busy_and_idle() {
        let t = CpuTimes { user: 1, nice: 2, system: 3, idle: 4, iowait: 5, irq: 6, softirq: 7, steal: 8 };
        assert_eq!(t.busy_ticks(), 1 + 2 + 3 + 6 + 7 + 8);
        assert_eq!(t.idle_ticks(), 9);
        let max = CpuTimes { user: u64::MAX, nice: 1, ..CpuTimes::default() };
        assert_eq!(max.busy_ticks(), u64::MAX);
    }

    #[test]
    fn memory_percentage() {
        assert_eq!(MemInfo { total_kib: 1000, available_kib: 250 }.used_pct(), Some(75.0));
        assert_eq!(MemInfo { total_kib: 1000, available_kib: 2000 }.used_pct(), Some(0.0));
        assert_eq!(MemInfo { total_kib: 0, available_kib: 0 }.used_pct(), None);
    }

    #[test]
    fn counter_going_down_counts_as_zero() {
        let before = IfaceCounters { rx_bytes: 100, tx_bytes: 100, ..IfaceCounters::default() };
        let after = IfaceCounters { rx_bytes: 150, tx_bytes: 10, ..IfaceCounters::default() };
        let d = after.delta_since(&before);
        assert_eq!((d.rx_bytes, d.tx_bytes), (50, 0));
    }
}
