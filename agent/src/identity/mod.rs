//! The institution certificate (機関認証) on the device: reading, checking,
//! storing, renewing and using it.
//!
//! - [`material`]: parse PEM / DER / PKCS#12 input (untrusted bytes).
//! - [`validate`]: the pure decision whether material is an acceptable identity.
//! - [`store`]: durable generations on flash with rollback and wipe.
//! - [`renewal`]: the pure renewal policy.
//! - [`status`]: the `cert status` document.
//! - [`csr`]: key generation on the device and certificate requests.
//! - [`tls`]: the mutual-TLS client configuration from the stored identity.
//!
//! [`import`] ties them together: read, validate, then store. Nothing reaches
//! the store unless every check passed.

pub mod csr;
pub mod material;
pub mod renewal;
pub mod status;
pub mod store;
pub mod tls;
pub mod validate;

use std::path::{Path, PathBuf};

use cpe_common::durable::Storage;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use material::{read_key_file, read_material, MaterialError};
use store::{IdentityStore, StoreError};
use validate::{CertInfo, Policy, ValidationError};

/// Why an import did not happen. In every case the previous identity is
/// unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The input is not readable certificate material.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// The material is not an acceptable identity.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// A stable identifier for scripts and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "unreadable_file",
            Self::Material(e) => match e {
                MaterialError::BadSize { .. } => "bad_size",
                MaterialError::UnknownFormat => "unknown_format",
                MaterialError::CorruptPem { .. } => "corrupt_pem",
                MaterialError::EncryptedPemKey => "encrypted_pem_key",
                MaterialError::CorruptPkcs12 { .. } => "corrupt_pkcs12",
                MaterialError::PasswordRequired => "password_required",
                MaterialError::WrongPassword => "wrong_password",
                MaterialError::UnsupportedPkcs12 { .. } => "unsupported_pkcs12",
                MaterialError::SeveralKeys { .. } => "several_keys",
                MaterialError::NoKeyInKeyFile => "no_key_in_key_file",
            },
            Self::Invalid(e) => e.code(),
            Self::Store(_) => "store_failed",
        }
    }

    /// Whether the input was refused (as opposed to the device failing).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Material(_) | Self::Invalid(_))
    }
}

/// What an import is given.
#[derive(Debug, Clone, Copy)]
pub struct ImportInput<'a> {
    /// The certificate file's content.
    pub file: &'a [u8],
    /// A separate key file's content (`--key`).
    pub key_file: Option<&'a [u8]>,
    /// The PKCS#12 password.
    pub password: Option<&'a str>,
}

/// The outcome of a successful import.
#[derive(Debug)]
pub struct Imported {
    /// The new generation's name.
    pub generation: String,
    /// The installed leaf's facts.
    pub info: CertInfo,
    /// Whether the key came from `cert csr` (pending key).
    pub used_pending_key: bool,
}

/// Reads, validates and installs an identity.
pub fn import<S: Storage>(
    store: &IdentityStore<S>,
    input: ImportInput<'_>,
    policy: &Policy<'_>,
    now: OffsetDateTime,
) -> Result<Imported, ImportError> {
    let mut material = read_material(input.file, input.password)?;
    if let Some(key_file) = input.key_file {
        if material.key.is_some() {
            return Err(MaterialError::SeveralKeys { count: 2 }.into());
        }
        material.key = Some(read_key_file(key_file)?);
    }
    let pending = if material.key.is_none() { store.load_pending_key()? } else { None };
    let used_pending_key = pending.is_some();
    let identity = validate::validate(material, pending, policy, now)?;
    let generation = store.install(&identity.chain, &identity.key)?;
    if used_pending_key {
        if let Err(e) = store.discard_pending_key() {
            tracing::warn!(error = %e, "installed, but could not remove the pending key");
        }
    }
    Ok(Imported { generation, info: identity.info, used_pending_key })
}

/// Loads the configured trust anchors (PEM files, any number of
/// certificates each).
pub fn load_trust_anchors(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, ImportError> {
    let mut anchors = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let bytes = cpe_common::bounded::read_file(path, material::MAX_INPUT_BYTES)
            .map_err(|source| ImportError::Read { path: path.clone(), source })?;
        let certs = material::read_pem(&bytes)
            .map_err(|e| ValidationError::BadTrustAnchor {
                index,
                detail: format!("{}: {e}", path.display()),
            })?
            .certs;
        if certs.is_empty() {
            return Err(ValidationError::BadTrustAnchor {
                index,
                detail: format!("{}: no certificate", path.display()),
            }
            .into());
        }
        anchors.extend(certs);
    }
    Ok(anchors)
}

/// Largest password file read.
pub const MAX_PASSWORD_FILE_BYTES: usize = 4096;

/// Reads a password file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<String, ImportError> {
    let text = cpe_common::bounded::read_text(path, MAX_PASSWORD_FILE_BYTES)
        .map_err(|source| ImportError::Read { path: path.to_owned(), source })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
