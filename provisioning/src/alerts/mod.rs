//! Carrier alerts (guideline §3.2.1, §3.2.2(2)).
//!
//! - [`policy`]: what to raise and clear when something happens to a
//!   device — a pure function that returns [`Action`]s.
//! - [`delivery`]: where alerts go — the log always, a webhook and mail when
//!   configured — in the order they were raised.
//!
//! The server carries the actions out: it records each alert in the store,
//! then hands it to delivery.

pub mod delivery;
pub mod policy;

pub use delivery::{Alert, AlertSetupError, AlertSink, MailConfig, WebhookConfig};
pub use policy::{actions, Action, Happened};
