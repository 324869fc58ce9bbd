//! Connection limits of the carrier server, so that no client can exhaust
//! its connections or file descriptors (issue 19: 2,000 idle TCP
//! connections, or 1,100 idle authenticated ones, made a real router's
//! request time out).
//!
//! This module owns the decisions; `mod.rs` applies them to sockets:
//!
//! - **Handshake deadline** ([`ConnectionLimits::handshake_timeout`]): a
//!   connection that has not finished its TLS handshake by then is closed.
//! - **Idle deadline** ([`ConnectionLimits::idle_timeout`]): a connection
//!   with no request in flight for that long is closed. A request in flight
//!   (a waiting long-poll included, itself bounded by `--long-poll-max`) is
//!   not idle.
//! - **Per client address** ([`ConnectionLimits::max_per_address`]): a new
//!   connection over the limit is closed at once.
//! - **Per device** ([`ConnectionLimits::max_per_device`]): an authenticated
//!   connection over the limit first evicts the oldest idle connection of
//!   the same device (a router that lost its line leaves half-open ones
//!   behind); if none is idle, the new one is closed.
//! - **Overall** ([`ConnectionLimits::max_total`]): a new connection over the
//!   limit evicts the oldest connection that is still handshaking or idle,
//!   so an attacker holding connections cannot lock out a router; if every
//!   connection is busy, the new one is closed.
//!
//! - **Requests per device** ([`ConnectionLimits::device_requests_per_s`],
//!   [`ConnectionLimits::device_request_burst`]): a token bucket per device
//!   identity, over all its connections; a request over it is answered 429
//!   with `Retry-After` (the agent backs off), so a misbehaving or hostile
//!   device cannot take the server's time from the others. Only buckets
//!   that are not full are kept (a full one is the same as none), so the
//!   map stays as small as the set of devices sending right now.
//!
//! [`Registry`] keeps the counts under one mutex; each connection holds a
//! [`Slot`] that leaves the registry when dropped. Refusals are logged at
//! most once per [`REFUSAL_LOG_EVERY`] with their count.
//!
//! The open-file limit is raised at start ([`raise_open_file_limit`]) and
//! the overall limit fitted under it ([`fit_to_file_limit`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Least time between two log lines about refused connections.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but client connections (store,
/// logs, alert delivery, the listener).
pub const RESERVED_FILES: u64 = 64;

/// The limits (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest time without a request in flight.
    pub idle_timeout: Duration,
    /// Most connections overall.
    pub max_total: usize,
    /// Most connections from one client address.
    pub max_per_address: usize,
    /// Most authenticated connections of one device identity.
    pub max_per_device: usize,
    /// Requests per second one device may make, sustained.
    pub device_requests_per_s: u32,
    /// Requests one device may make at once above the sustained rate.
    pub device_request_burst: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_mins(1),
            max_total: 8192,
            // Routers may share a carrier-grade NAT address.
            max_per_address: 512,
            // An agent uses two (reports, the long-poll).
            max_per_device: 8,
            // An agent reports about once a minute and drains a backlog in
            // batches: ten a second is far above what a healthy one sends.
            device_requests_per_s: 10,
            device_request_burst: 60,
        }
    }
}

/// Why a connection is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Too many connections from its address.
    #[error("too many connections from this address")]
    Address,
    /// Too many connections overall, and none can be evicted.
    #[error("too many connections overall, all of them busy")]
    Total,
    /// Too many connections of its device, none of them idle.
    #[error("too many connections of this device, all of them busy")]
    Device,
    /// Too many requests of its device.
    #[error("too many requests from this device")]
    Rate,
}

#[derive(Debug)]
struct Entry {
    address: IpAddr,
    device: Option<String>,
    in_flight: usize,
    /// When the last request finished (or the connection was accepted).
    last_active: Instant,
    evicted: bool,
    close: Arc<Notify>,
}

impl Entry {
    fn evictable(&self) -> bool {
        self.in_flight == 0 && !self.evicted
    }
}

#[derive(Debug, Default)]
struct Counts {
    next_id: u64,
    /// By id, so the oldest connection comes first.
    entries: BTreeMap<u64, Entry>,
    per_address: HashMap<IpAddr, usize>,
    /// Request buckets of the devices whose bucket is not full.
    buckets: HashMap<String, Bucket>,
    refused: u64,
    last_refusal_log: Option<Instant>,
}

/// A device's request tokens when last looked at.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, limits: &ConnectionLimits) -> f64 {
        let rate = f64::from(limits.device_requests_per_s);
        (self.tokens + now.duration_since(self.at).as_secs_f64() * rate)
            .min(f64::from(limits.device_request_burst))
    }
}

impl Counts {
    /// Evicts the oldest evictable connection that `matches`; whether one was.
    fn evict_oldest(&mut self, matches: impl Fn(&Entry) -> bool) -> bool {
        let Some(entry) = self.entries.values_mut().find(|e| e.evictable() && matches(e)) else {
            return false;
        };
        entry.evicted = true;
        entry.close.notify_one();
        true
    }

    fn live(&self) -> usize {
        self.entries.values().filter(|e| !e.evicted).count()
    }

    fn note_refusal(&mut self, refusal: Refusal, address: IpAddr) {
        self.refused += 1;
        let now = Instant::now();
        if self.last_refusal_log.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                %address, reason = %refusal, refused = self.refused, open = self.entries.len(),
                "connections or requests refused (see --max-connections*, --device-request-*)"
            );
            self.last_refusal_log = Some(now);
            self.refused = 0;
        }
    }
}

/// The connections of one server and their limits.
#[derive(Debug)]
pub struct Registry {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

impl Registry {
    /// An empty registry enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self { limits, counts: Mutex::new(Counts::default()) })
    }

    /// The limits enforced.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections are open (evicted ones until they have closed).
    pub fn open(&self) -> usize {
        self.counts().entries.len()
    }

    /// Admits a new connection from `address`, evicting the oldest
    /// handshaking or idle one when the overall limit is reached.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.counts();
        let from_address = counts.per_address.get(&address).copied().unwrap_or(0);
        let refusal = if from_address >= self.limits.max_per_address {
            Some(Refusal::Address)
        } else if counts.live() >= self.limits.max_total && !counts.evict_oldest(|_| true) {
            Some(Refusal::Total)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            counts.note_refusal(refusal, address);
            return Err(refusal);
        }
        let id = counts.next_id;
        counts.next_id += 1;
        let close = Arc::new(Notify::new());
        counts.entries.insert(
            id,
            Entry {
                address,
                device: None,
                in_flight: 0,
                last_active: Instant::now(),
                evicted: false,
                close: close.clone(),
            },
        );
        *counts.per_address.entry(address).or_default() += 1;
        Ok(Slot { registry: self.clone(), id, close })
    }
}

/// One admitted connection; leaves the registry when dropped.
#[derive(Debug)]
pub struct Slot {
    registry: Arc<Registry>,
    id: u64,
    close: Arc<Notify>,
}

impl Slot {
    /// Records the connection's device identity, evicting the oldest idle
    /// connection of the same device when its limit is reached.
    pub fn authenticate(&self, device: &str) -> Result<(), Refusal> {
        let limits = self.registry.limits;
        let mut counts = self.registry.counts();
        let of_device =
            counts.entries.values().filter(|e| !e.evicted && e.device.as_deref() == Some(device)).count();
        if of_device >= limits.max_per_device && !counts.evict_oldest(|e| e.device.as_deref() == Some(device))
        {
            let address = counts.entries.get(&self.id).map_or(IpAddr::from([0, 0, 0, 0]), |e| e.address);
            counts.note_refusal(Refusal::Device, address);
            return Err(Refusal::Device);
        }
        if let Some(entry) = counts.entries.get_mut(&self.id) {
            entry.device = Some(device.to_owned());
        }
        Ok(())
    }

    /// Takes a request token of the connection's device: `Err` when the
    /// device is over its request rate (answer 429; nothing else is done).
    /// Connections without an identity yet are not counted.
    pub fn take_request_token(&self) -> Result<(), Refusal> {
        let limits = self.registry.limits;
        let now = Instant::now();
        let mut guard = self.registry.counts();
        let counts = &mut *guard;
        let Some(entry) = counts.entries.get(&self.id) else { return Ok(()) };
        let Some(device) = entry.device.as_deref() else { return Ok(()) };
        let address = entry.address;
        let full = Bucket { tokens: f64::from(limits.device_request_burst), at: now };
        let tokens = counts.buckets.get(device).copied().unwrap_or(full).refilled(now, &limits);
        if tokens < 1.0 {
            counts.buckets.insert(device.to_owned(), Bucket { tokens, at: now });
            counts.note_refusal(Refusal::Rate, address);
            return Err(Refusal::Rate);
        }
        counts.buckets.insert(device.to_owned(), Bucket { tokens: tokens - 1.0, at: now });
        if counts.buckets.len() > 2 * counts.entries.len() + 1024 {
            let burst = f64::from(limits.device_request_burst);
            counts.buckets.retain(|_, b| b.refilled(now, &limits) < burst);
        }
        Ok(())
    }

    /// Marks a request in flight until the guard is dropped: the connection
    /// is not idle meanwhile.
    pub fn request(&self) -> RequestGuard {
        if let Some(entry) = self.registry.counts().entries.get_mut(&self.id) {
            entry.in_flight += 1;
        }
        RequestGuard { registry: self.registry.clone(), id: self.id }
    }

    /// Completes when the connection must close: evicted to make room, or
    /// idle for [`ConnectionLimits::idle_timeout`].
    pub async fn closing(&self) {
        let idle = self.registry.limits.idle_timeout;
        loop {
            let wake_at = {
                let counts = self.registry.counts();
                let Some(entry) = counts.entries.get(&self.id) else { return };
                if entry.evicted {
                    return;
                }
                if entry.in_flight == 0 && entry.last_active.elapsed() >= idle {
                    tracing::debug!(address = %entry.address, "idle connection closed");
                    return;
                }
                // Busy: look again after a full idle period.
                if entry.in_flight == 0 {
                    entry.last_active + idle
                } else {
                    Instant::now() + idle
                }
            };
            tokio::select! {
                () = self.close.notified() => return,
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.registry.counts();
        let Some(entry) = counts.entries.remove(&self.id) else { return };
        if let Some(n) = counts.per_address.get_mut(&entry.address) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&entry.address);
            }
        }
    }
}

/// A request in flight (see [`Slot::request`]).
#[derive(Debug)]
pub struct RequestGuard {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.registry.counts().entries.get_mut(&self.id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            entry.last_active = Instant::now();
        }
    }
}

/// What became of the open-file limit at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the most the soft one can be raised to).
    pub hard: u64,
    /// Whether raising it failed (the soft limit stayed as it was).
    pub raise_failed: bool,
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard one.
pub fn raise_open_file_limit() -> Result<FileLimit, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft >= hard {
        return Ok(FileLimit { soft, hard, raise_failed: false });
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(FileLimit { soft: hard, hard, raise_failed: false }),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
            Ok(FileLimit { soft, hard, raise_failed: true })
        }
    }
}

/// The overall connection limit that fits under `files` (with
/// [`RESERVED_FILES`] kept for the rest), and a warning when `wanted` had to
/// be lowered.
pub fn fit_to_file_limit(wanted: usize, files: FileLimit) -> (usize, Option<String>) {
    let room = usize::try_from(files.soft.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(1);
    if wanted <= room {
        return (wanted, None);
    }
    let why = if files.raise_failed { " (raising it failed)" } else { "" };
    let message = format!(
        "the open-file limit is {} (hard {}){why}: --max-connections {wanted} lowered to {room}; \
         raise it (systemd: LimitNOFILE={}) to serve more / ファイル記述子の上限 {} のため同時接続数を {room} に下げました",
        files.soft,
        files.hard,
        wanted as u64 + RESERVED_FILES,
        files.soft
    );
    (room, Some(message))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(max_total: usize, max_per_address: usize, max_per_device: usize) -> ConnectionLimits {
        ConnectionLimits { max_total, max_per_address, max_per_device, ..ConnectionLimits::default() }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_limit_refuses_and_frees_on_drop() {
        let registry = Registry::new(limits(100, 2, 8));
        let a = registry.admit(ip(2)).unwrap();
        let _b = registry.admit(ip(2)).unwrap();
        assert_eq!(registry.admit(ip(2)).unwrap_err(), Refusal::Address);
        let _other = registry.admit(ip(1)).unwrap();
        drop(a);
        let _again = registry.admit(ip(2)).unwrap();
        assert_eq!(registry.open(), 3);
    }

    #[tokio::test]
    async fn the_overall_limit_evicts_the_oldest_idle_connection_never_a_busy_one() {
        let registry = Registry::new(limits(2, 10, 8));
        let oldest = registry.admit(ip(2)).unwrap();
        let busy = registry.admit(ip(3)).unwrap();
        let _request = busy.request();
        oldest.request(); // a request that finished: idle again
        let newcomer = registry.admit(ip(1)).unwrap();
        tokio::time::timeout(Duration::from_secs(1), oldest.closing()).await.unwrap();
        drop(oldest);
        // Now the newcomer is idle and the other one busy: the newcomer goes.
        let fourth = registry.admit(ip(4)).unwrap();
        tokio::time::timeout(Duration::from_secs(1), newcomer.closing()).await.unwrap();
        drop(newcomer);
        // Everything left is busy or already evicted: refused.
        let _busy_too = fourth.request();
        assert_eq!(registry.admit(ip(5)).unwrap_err(), Refusal::Total);
    }

    #[tokio::test]
    async fn a_device_over_its_limit_evicts_its_own_oldest_idle_connection() {
        let registry = Registry::new(limits(100, 100, 2));
        let first = registry.admit(ip(2)).unwrap();
        first.authenticate("1312345678/main").unwrap();
        let second = registry.admit(ip(2)).unwrap();
        second.authenticate("1312345678/main").unwrap();
        let _busy = second.request();
        let other = registry.admit(ip(3)).unwrap();
        other.authenticate("2712345678/main").unwrap();
        let third = registry.admit(ip(2)).unwrap();
        third.authenticate("1312345678/main").unwrap();
        tokio::time::timeout(Duration::from_secs(1), first.closing()).await.unwrap();
        drop(first);
        let _third_busy = third.request();
        let fourth = registry.admit(ip(2)).unwrap();
        assert_eq!(fourth.authenticate("1312345678/main").unwrap_err(), Refusal::Device);
    }

    #[tokio::test]
    async fn idle_means_no_request_in_flight_for_the_idle_timeout() {
        let idle = Duration::from_millis(300);
        let registry = Registry::new(ConnectionLimits { idle_timeout: idle, ..limits(10, 10, 8) });
        let slot = registry.admit(ip(2)).unwrap();
        let long_poll = slot.request();
        // A waiting long-poll is not idle, however long it waits.
        assert!(tokio::time::timeout(4 * idle, slot.closing()).await.is_err());
        drop(long_poll);
        let started = Instant::now();
        tokio::time::timeout(4 * idle, slot.closing()).await.unwrap();
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_device_over_its_request_rate_is_refused_and_others_are_not() {
        let registry = Registry::new(ConnectionLimits {
            device_requests_per_s: 20,
            device_request_burst: 3,
            ..ConnectionLimits::default()
        });
        let noisy = registry.admit(ip(2)).unwrap();
        noisy.authenticate("1312345678/main").unwrap();
        // Its second connection shares the bucket.
        let noisy_too = registry.admit(ip(2)).unwrap();
        noisy_too.authenticate("1312345678/main").unwrap();
        let quiet = registry.admit(ip(3)).unwrap();
        quiet.authenticate("2712345678/main").unwrap();
        for _ in 0..2 {
            noisy.take_request_token().unwrap();
        }
        noisy_too.take_request_token().unwrap();
        assert_eq!(noisy.take_request_token().unwrap_err(), Refusal::Rate);
        assert_eq!(noisy_too.take_request_token().unwrap_err(), Refusal::Rate);
        quiet.take_request_token().unwrap();
        // 20 a second: one token back after 50 ms, and only one.
        tokio::time::sleep(Duration::from_millis(60)).await;
        noisy.take_request_token().unwrap();
        assert_eq!(noisy.take_request_token().unwrap_err(), Refusal::Rate);
        // Not yet authenticated: not counted.
        let anonymous = registry.admit(ip(4)).unwrap();
        for _ in 0..10 {
            anonymous.take_request_token().unwrap();
        }
    }

    #[test]
    fn full_request_buckets_are_not_kept() {
        let registry = Registry::new(ConnectionLimits {
            device_requests_per_s: 1000,
            max_per_address: 2000,
            ..ConnectionLimits::default()
        });
        let slots: Vec<Slot> = (0..1100)
            .map(|n| {
                let slot = registry.admit(ip(2)).unwrap();
                slot.authenticate(&format!("{:010}/main", 1_300_000_000 + n)).unwrap();
                slot.take_request_token().unwrap();
                slot
            })
            .collect();
        drop(slots);
        // Refilled by now (1000 a second, burst 60, 1 taken: 1 ms).
        std::thread::sleep(Duration::from_millis(20));
        let last = registry.admit(ip(2)).unwrap();
        last.authenticate("1399999999/main").unwrap();
        last.take_request_token().unwrap();
        let kept: Vec<String> = registry.counts().buckets.keys().cloned().collect();
        assert_eq!(kept, ["1399999999/main"]);
    }

    #[test]
    fn the_overall_limit_fits_under_the_open_file_limit() {
        let ample = FileLimit { soft: 65_536, hard: 65_536, raise_failed: false };
        assert_eq!(fit_to_file_limit(8192, ample), (8192, None));
        let small = FileLimit { soft: 1024, hard: 1024, raise_failed: true };
        let (fitted, warning) = fit_to_file_limit(8192, small);
        assert_eq!(fitted, 960);
        let warning = warning.unwrap();
        assert!(warning.contains("raising it failed") && warning.contains("LimitNOFILE=8256"), "{warning}");
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let raised = raise_open_file_limit().unwrap();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((raised.soft, raised.hard), (soft, hard));
        assert!(raised.raise_failed || soft == hard);
    }
}
