//! Carrier-side provisioning of institution certificates (機関認証).
//!
//! A medical institution is connected only once its institution certificate
//! exists; the carrier then ships a CPE that uses it for mTLS. This crate is
//! the carrier's tooling for that step, as a library (for tests of other
//! crates and, later, the provisioning server) and as the `cpe-provision` CLI:
//!
//! - [`ca`]: a *test* certification body — CA key and certificate, stored in a
//!   directory, and the fixed profile of institution certificates.
//! - [`issue`]: issue key and certificate in one step ([`IssueRequest`] →
//!   [`IssuedIdentity`]).
//! - [`csr`]: sign a CSR made on the device, the key never leaving it.
//! - [`pkcs12`]: package an identity as a password-protected PKCS#12 file.
//! - [`subject`]: where the institution code goes in a subject, and how it is
//!   found in a CSR.
//! - [`keys`]: key types, given keys, RSA policy.
//! - [`order_keys`]: the carrier's Ed25519 order-signing keys (separate from
//!   every TLS key), their directory, and signing of compliance orders.
//! - [`compliance`]: the guideline §2.2 flow rules (may this case step, stop
//!   or resume happen now?), pure.
//! - [`receipts`]: verification of the devices' signed enforcement receipts.
//! - [`audit`]: re-verification of a stored order and its receipt for an auditor.
//! - [`validity`]: validity periods with an injected clock.
//! - [`encoding`]: PEM in and out.
//! - [`error`]: [`ProvisionError`], whose messages say what to do next.
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
pub mod audit;
pub mod ca;
pub mod compliance;
pub mod csr;
pub mod db;
pub mod encoding;
pub mod error;
pub mod issue;
pub mod keys;
pub mod operator;
pub mod order_keys;
pub mod pkcs12;
pub mod receipts;
pub mod server;
pub mod server_cert;
pub mod subject;
pub mod validity;

pub use ca::CertificationBody;
pub use csr::SignedCertificate;
pub use error::{ProvisionError, Result};
pub use issue::{IssueRequest, IssuedIdentity};
pub use keys::{KeySource, KeyType};
pub use pkcs12::{read_password_file, write_pkcs12, write_pkcs12_with, Pkcs12Encryption};
pub use validity::Validity;
