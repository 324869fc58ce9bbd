//! Compliance orders on the device (guideline §2.2): the carrier's signed
//! stop, resume, notice, key-rotation and drill orders.
//!
//! - [`verify`](mod@verify): the **pure** verifier. Given the received bytes and a
//!   [`verify::VerifyContext`] (this device, trusted keys, last applied
//!   sequence, an injected clock reading and the persisted time floor), it
//!   decides whether the order may be applied, or which class of refusal it
//!   is, and records which clock state and which time it judged against. It
//!   touches no file, clock, network or firewall, so every rule is
//!   unit-tested and fuzzed.
//!
//! Storing the last applied sequence durably before the order takes effect,
//! nftables enforcement, the notice page, signed receipts and the audit log
//! build on this module and live elsewhere.

pub mod verify;

pub use verify::{
    advance, trusted_key, verify, ClockReading, ClockState, FloorSource, Refusal, Refused, TimeBasis,
    TimeFloor, TimeJudgement, TrustedKey, Verified, VerifyContext, MAX_CLOCK_LEAD_SECS,
};
