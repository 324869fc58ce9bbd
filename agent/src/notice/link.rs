//! What the daemon knows about its own channel to the carrier, shared with
//! the notice page: when a report batch last reached the carrier, and the
//! failures since. The daemon's sender records every attempt
//! ([`LinkState::delivered`], [`LinkState::failed`]); the page judges from
//! it whether the line or the carrier is unreachable ([`LinkState::down`]).

use std::sync::{Arc, Mutex};

/// Consecutive failed deliveries after which the carrier counts as
/// unreachable: one failure is a blip the sender's retry absorbs; three in a
/// row (the backoff spreads them over seconds to minutes) are an outage.
pub const DOWN_AFTER_FAILURES: u32 = 3;

/// The sender's record of the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// When a batch was last acknowledged by the carrier (Unix seconds).
    pub last_delivered: Option<i64>,
    /// The first failure since then (Unix seconds).
    pub failing_since: Option<i64>,
    /// Failed attempts since the last delivery.
    pub failures: u32,
    /// The latest failure, as the sender logged it (English, technical).
    pub last_error: Option<String>,
}

/// The record shared between the daemon's sender and the page.
pub type LinkSlot = Arc<Mutex<LinkState>>;

impl LinkState {
    /// A batch reached the carrier at `at`.
    pub fn delivered(&mut self, at: i64) {
        *self = Self { last_delivered: Some(at), ..Self::default() };
    }

    /// A delivery failed at `at` with `error`.
    pub fn failed(&mut self, at: i64, error: &str) {
        self.failing_since.get_or_insert(at);
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error.to_owned());
    }

    /// Since when the carrier is unreachable, if it is (at least
    /// [`DOWN_AFTER_FAILURES`] failures in a row).
    pub fn down(&self) -> Option<i64> {
        self.failing_since.filter(|_| self.failures >= DOWN_AFTER_FAILURES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_are_an_outage_one_delivery_ends_it() {
        let mut link = LinkState::default();
        assert_eq!(link.down(), None, "nothing tried yet");
        link.failed(100, "connection refused");
        link.failed(101, "connection refused");
        assert_eq!(link.down(), None, "a blip");
        link.failed(105, "timed out");
        assert_eq!(link.down(), Some(100));
        assert_eq!((link.failures, link.last_error.as_deref()), (3, Some("timed out")));
        link.delivered(200);
        assert_eq!(link, LinkState { last_delivered: Some(200), ..LinkState::default() });
        link.failed(300, "x");
        assert_eq!((link.last_delivered, link.failing_since, link.down()), (Some(200), Some(300), None));
    }
}
