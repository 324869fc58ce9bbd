//! Certificates (機関認証): a *test* certification body and everything it
//! issues. Nothing here touches the network or the store.
//!
//! - [`ca`]: the test CA — key and certificate in a directory, and the fixed
//!   profile of institution certificates.
//! - [`issue`]: issue key and certificate in one step.
//! - [`csr`]: sign a CSR made on the device, the key never leaving it.
//! - [`pkcs7`]: the certificates of a PKCS#7 certs-only message (EST answers).
//! - [`pkcs12`]: package an identity as a password-protected PKCS#12 file.
//! - [`server_cert`]: the carrier server's own TLS certificate.
//! - [`subject`]: where the institution code goes in a subject, and how it is
//!   found in a CSR or a client certificate.
//! - [`keys`]: key types, given keys, RSA policy.
//! - [`validity`]: validity periods with an injected clock.
//! - [`encoding`]: PEM in and out.
//! - [`error`]: [`ProvisionError`](error::ProvisionError), whose messages say
//!   what to do next.

pub mod ca;
pub mod csr;
pub mod encoding;
pub mod error;
pub mod issue;
pub mod keys;
pub mod pkcs12;
pub mod pkcs7;
pub mod server_cert;
pub mod subject;
pub mod validity;
