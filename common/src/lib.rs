//! What the CPE agent and the carrier tooling must agree on, and the small
//! operating-system helpers both sides need.
//!
//! - [`institution`]: the institution code (機関コード) and where a certificate
//!   carries it. The agent checks certificates against it; the carrier's tools
//!   issue certificates that follow it. One definition keeps both sides in step.
//! - [`durable`]: crash-safe file writes (temp file, fsync, rename, fsync of the
//!   directory) behind the [`durable::Storage`] trait, so that tests can inject
//!   a failure at every step of a write.
//! - [`hex`]: the lower-case hex text form of hashes, key ids and keys.
#![forbid(unsafe_code)]

pub mod durable;
pub mod hex;
pub mod institution;
