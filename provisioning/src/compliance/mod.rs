//! The guideline §2.2 compliance side of the carrier: the operator's use
//! cases (one function each, which the CLI and later the console call), the
//! flow rules they follow, the carrier's order-signing keys, and the
//! evidence that orders were applied.
//!
//! - [`cases`]: ① open a case, ② hearing, ③ report, ④ recommendation (with
//!   its notice order), ⑤ check.
//! - [`orders`]: the order template; ⑥ stop, resume, drills, key rotation.
//! - [`flow`]: the §2.2 flow rules (may this step happen now?), pure.
//! - [`order_keys`]: the Ed25519 order-signing keys (separate from every TLS
//!   key), their directory, and signing of orders.
//! - [`receipts`]: verification of the devices' signed enforcement receipts.
//! - [`reverify`]: re-verification of a stored order and its receipt for an
//!   auditor, long after the fact.
//! - [`error`]: [`ComplianceError`], whose messages say what to run instead.
//!
//! The use cases check a rule twice: on the trail as read (so that a refusal
//! comes before the order key is touched) and inside the store's recording
//! transaction on the trail as it stands there (so that two operators acting
//! at once cannot both take a step the flow allows once).

pub mod cases;
pub mod error;
pub mod flow;
pub mod order_keys;
pub mod orders;
pub mod receipts;
pub mod reverify;

pub use error::ComplianceError;
