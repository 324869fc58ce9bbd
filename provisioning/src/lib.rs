//! Carrier-side provisioning of institution certificates (機関認証).
//!
//! A medical institution is connected only once its institution certificate
//! exists; the carrier then ships a CPE that uses it for mTLS. This crate is
//! the carrier's tooling for that step, as a library (for tests of other
//! crates and, later, the provisioning server) and as the `cpe-provision` CLI:
//!
//! Each capability has one place, and the imports run one way — the
//! command line over the use cases, the use cases over the rules and the
//! store, never back (the tree, one line per module, and the picture of
//! who uses whom are in `provisioning/ARCHITECTURE.md`):
//!
//! ```text
//! cli ─► server ─► alerts, compliance::receipts, pki ─┐
//!  ├──► compliance (use cases ─► flow, order_keys) ──┼─► store
//!  ├──► devices (use cases) ─────────────────────────┘
//!  └──► pki            (cli, server ─► enrol ─► pki: renewals)
//! ```
//!
//! - [`compliance`]: the §2.2 use cases (case steps, stop, resume, drills,
//!   key rotation), the flow rules, order-signing keys, receipts, and
//!   re-verification of an order and its receipt.
//! - [`devices`]: the use cases on devices outside the flow.
//! - [`expiry`]: the fleet's certificates by expiry and alert threshold (pure, injected clock).
//! - [`enrol`]: who issues renewal certificates — the certification body
//!   over EST, or a test CA for labs — behind one interface.
//! - [`console`]: the operator listener: the JSON API under `/api/v1/` and
//!   its OpenAPI document.
//! - [`metrics`]: the Prometheus exposition of the fleet and of ingest.
//! - [`operators`]: operators of the console and API: roles, Argon2
//!   passwords, sessions.
//! - [`server`]: the HTTPS server the agents talk to (listener, TLS, routes,
//!   report ingest, command long-poll, acknowledgements, enrolment).
//! - [`alerts`]: the alert policy (pure) and delivery.
//! - [`pki`]: the test certification body, issuing, CSR signing, PKCS#12,
//!   the server certificate, subjects, validity periods.
//! - [`store`]: the storage interface, its migrations, each query written
//!   once, one module per backend (SQLite, PostgreSQL).
//! - [`clock`]: the wall clock at the edges; Unix milliseconds as text.
//!
//! The command line (`src/main.rs` and `src/cli/`: argument definitions and
//! views) is the binary's, not the library's.
//!
//! ```no_run
//! # fn main() -> Result<(), cpe_provision::ProvisionError> {
//! use cpe_provision::{CertificationBody, IssueRequest, Validity, write_pkcs12};
//! let now = time::OffsetDateTime::now_utc();
//! let ca = CertificationBody::init("ca".as_ref(), "Test Certification Body", Validity::new(now, 3650)?, false)?;
//! let code = "1312345678".parse().expect("valid code");
//! let identity = ca.issue(&IssueRequest::new(code, Validity::new(now, 825)?))?;
//! let p12 = write_pkcs12(&identity, "password")?;
//! # let _ = p12; Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod alerts;
pub mod clock;
pub mod compliance;
pub mod console;
pub mod devices;
pub mod enrol;
pub mod expiry;
pub mod metrics;
pub mod operators;
pub mod pki;
pub mod retention;
pub mod server;
pub mod store;

/// The order-signing keys under their earlier path (the agent's tests sign
/// orders with them).
pub use compliance::order_keys;
pub use pki::ca::CertificationBody;
pub use pki::csr::SignedCertificate;
pub use pki::error::{ProvisionError, Result};
pub use pki::issue::{IssueRequest, IssuedIdentity};
pub use pki::keys::{KeySource, KeyType};
pub use pki::pkcs12::{read_password_file, write_pkcs12, write_pkcs12_with, Pkcs12Encryption};
pub use pki::validity::Validity;
