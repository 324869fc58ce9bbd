//! The guideline §2.2 compliance side of the carrier: the case flow, the
//! carrier's order-signing keys, and the evidence that orders were applied.
//!
//! - [`flow`]: the §2.2 flow rules (may this case step, stop or resume
//!   happen now?), pure.
//! - [`order_keys`]: the Ed25519 order-signing keys (separate from every TLS
//!   key), their directory, and signing of orders.
//! - [`receipts`]: verification of the devices' signed enforcement receipts.
//! - [`reverify`]: re-verification of a stored order and its receipt for an
//!   auditor, long after the fact.

pub mod flow;
pub mod order_keys;
pub mod receipts;
pub mod reverify;
