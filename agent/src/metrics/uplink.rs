//! Failover detection for redundant access lines (guideline §3.2.1(6)).
//!
//! The kernel's default route says which line carries the traffic now: the
//! routing daemon or the PPP/DHCP client moves it when the primary line fails
//! and back when it returns. [`UplinkWatch`] is fed the default-route
//! interface of each sample and turns every change, including losing or
//! regaining the default route altogether, into one
//! [`Event::Failover`]. Pure: no I/O and no clock.

use cpe_protocol::Event;

/// What the interface carrying the default route is, by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkRole {
    /// The configured primary uplink.
    Primary,
    /// The configured backup uplink.
    Backup,
    /// An interface that is neither (a misconfiguration worth showing).
    Other,
    /// There is no default route.
    NoRoute,
}

/// Watches the default-route interface and reports changes.
#[derive(Debug, Clone)]
pub struct UplinkWatch {
    primary: Option<String>,
    backup: Option<String>,
    /// Whether anything was observed yet.
    started: bool,
    /// The current default-route interface (`None` without a default route).
    active: Option<String>,
}

impl UplinkWatch {
    /// A watch for the configured primary and backup uplink interface names
    /// (either may be unknown).
    pub fn new(primary: Option<String>, backup: Option<String>) -> Self {
        Self { primary, backup, started: false, active: None }
    }

    /// Takes the default-route interface of a new sample. Returns a
    /// [`Event::Failover`] when it differs from the previous one. The first
    /// observation only sets the starting point: the agent cannot know what
    /// happened before it started (the heartbeat's `active_uplink` shows it).
    pub fn observe(&mut self, default_route: Option<&str>) -> Option<Event> {
        if self.started && self.active.as_deref() == default_route {
            return None;
        }
        let now = default_route.map(str::to_owned);
        let before = std::mem::replace(&mut self.active, now.clone());
        let first = !std::mem::replace(&mut self.started, true);
        (!first).then_some(Event::Failover { from: before, to: now })
    }

    /// The current default-route interface (`None` before the first
    /// observation or without a default route).
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The role of the current default-route interface.
    pub fn role(&self) -> UplinkRole {
        self.role_of(self.active())
    }

    /// The role of `interface` by the configuration.
    pub fn role_of(&self, interface: Option<&str>) -> UplinkRole {
        match interface {
            None => UplinkRole::NoRoute,
            Some(name) if self.primary.as_deref() == Some(name) => UplinkRole::Primary,
            Some(name) if self.backup.as_deref() == Some(name) => UplinkRole::Backup,
            Some(_) => UplinkRole::Other,
        }
    }

    /// Whether traffic currently runs over the backup uplink.
    pub fn on_backup(&self) -> bool {
        self.role() == UplinkRole::Backup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn failover(from: Option<&str>, to: Option<&str>) -> Option<Event> {
        Some(Event::Failover { from: from.map(str::to_owned), to: to.map(str::to_owned) })
    }

    #[test]
    fn first_observation_is_silent_then_every_change_is_one_event() {
        let mut watch = UplinkWatch::new(Some("ppp0".into()), Some("wwan0".into()));
        assert_eq!(watch.role(), UplinkRole::NoRoute);
        assert_eq!(watch.observe(Some("ppp0")), None);
        assert_eq!(watch.role(), UplinkRole::Primary);
        assert_eq!(watch.observe(Some("ppp0")), None);
        assert_eq!(watch.observe(Some("wwan0")), failover(Some("ppp0"), Some("wwan0")));
        assert!(watch.on_backup());
        assert_eq!(watch.observe(Some("wwan0")), None);
        assert_eq!(watch.observe(None), failover(Some("wwan0"), None));
        assert_eq!(watch.role(), UplinkRole::NoRoute);
        assert_eq!(watch.observe(None), None);
        assert_eq!(watch.observe(Some("ppp0")), failover(None, Some("ppp0")));
        assert_eq!(watch.active(), Some("ppp0"));
        assert_eq!(watch.observe(Some("eth9")), failover(Some("ppp0"), Some("eth9")));
        assert_eq!(watch.role(), UplinkRole::Other);
    }

    #[test]
    fn starting_without_a_route_or_on_backup_is_silent() {
        let mut watch = UplinkWatch::new(Some("eth1".into()), None);
        assert_eq!(watch.observe(None), None);
        assert_eq!(watch.observe(Some("eth1")), failover(None, Some("eth1")));
        let mut watch = UplinkWatch::new(None, Some("eth2".into()));
        assert_eq!(watch.observe(Some("eth2")), None);
        assert!(watch.on_backup());
        assert_eq!(watch.role_of(Some("eth1")), UplinkRole::Other);
    }
}
