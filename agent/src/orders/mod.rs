//! Compliance orders on the device (guideline §2.2): the carrier's signed
//! stop, resume, notice, key-rotation and drill orders.
//!
//! - [`verify`](mod@verify): the **pure** verifier. Given the received bytes and a
//!   [`verify::VerifyContext`] (this device, trusted keys, last applied
//!   sequence, an injected clock reading and the persisted time floor), it
//!   decides whether the order may be applied, or which class of refusal it
//!   is, and records which clock state and which time it judged against.
//! - [`state`]: the durable order state (last sequence, time floor, trusted
//!   keys, service state, last receipt) with its previous good version.
//! - [`timesync`]: when the clock is trusted (sync flag, carrier time).
//! - [`firewall`]: enforcement with nftables in the agent's own table,
//!   behind the [`firewall::Firewall`] trait.
//! - [`receipt`]: signing enforcement receipts with the device key.
//! - [`apply`]: the pipeline from bytes to persisted state, enforcement,
//!   audit record and receipt.
//! - [`device`]: the glue to the configuration and identity shared by the
//!   CLI (`apply-state`, `orders status|apply`) and the daemon.

pub mod apply;
pub mod device;
pub mod firewall;
pub mod receipt;
pub mod state;
pub mod timesync;
pub mod verify;

use cpe_protocol::order::OrderKind;

pub use verify::{
    advance, trusted_key, verify, ClockReading, ClockState, FloorSource, Refusal, Refused, TimeBasis,
    TimeFloor, TimeJudgement, TrustedKey, Verified, VerifyContext, MAX_CLOCK_LEAD_SECS,
};

/// Stable lower-case name of an order kind.
pub fn kind_name(kind: &OrderKind) -> &'static str {
    kind.name()
}
