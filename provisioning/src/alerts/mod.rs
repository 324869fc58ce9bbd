//! Carrier alerts (guideline §3.2.1, §3.2.2(2)).
//!
//! - [`delivery`]: where alerts go — the log always, a webhook and mail when
//!   configured — in the order they were raised.

pub mod delivery;

pub use delivery::{Alert, AlertSetupError, AlertSink, MailConfig, WebhookConfig};
