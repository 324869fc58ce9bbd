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
//! - [`text`]: the control characters refused in certificate subject text.
//! - [`bounded`]: reading files and bodies with a size limit, never more than
//!   the limit + 1 byte, so an oversized input cannot exhaust a router's memory.
#![forbid(unsafe_code)]

pub mod bounded;
pub mod durable;
pub mod hex;
pub mod institution;
pub mod text;
