//! Packaging an issued identity as a password-protected PKCS#12 (.p12) file,
//! and reading the password an operator gives in a file.
//!
//! The archive holds one private key and its chain (institution certificate,
//! then the CA certificate). By default it is encrypted the modern way
//! (PBES2: PBKDF2-HMAC-SHA256 and AES-256-CBC, HMAC-SHA256 integrity), which
//! OpenSSL 3 and the agent read. The legacy form (3DES, HMAC-SHA1) exists to
//! test older installers' files.

use std::path::Path;

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};
use ring::digest::{digest, SHA256};

use crate::pki::error::{ProvisionError, Result};
use crate::pki::issue::IssuedIdentity;

/// Key-derivation and MAC iterations used when writing.
pub const PKCS12_ITERATIONS: u32 = 10_000;

/// Largest password file accepted, in bytes.
pub const MAX_PASSWORD_FILE_BYTES: usize = 4096;

/// How the PKCS#12 archive is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pkcs12Encryption {
    /// PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC; HMAC-SHA256 MAC.
    #[default]
    Modern,
    /// PBE-SHA1-3DES and an HMAC-SHA1 MAC, as older tools write.
    Legacy,
}

/// The identity as a PKCS#12 archive with modern encryption.
pub fn write_pkcs12(identity: &IssuedIdentity, password: &str) -> Result<Vec<u8>> {
    write_pkcs12_with(identity, password, Pkcs12Encryption::Modern)
}

/// The identity as a PKCS#12 archive with the chosen encryption. The entry
/// alias (friendly name) is the institution code.
pub fn write_pkcs12_with(
    identity: &IssuedIdentity,
    password: &str,
    encryption: Pkcs12Encryption,
) -> Result<Vec<u8>> {
    if password.is_empty() {
        return Err(ProvisionError::EmptyPassword);
    }
    let failed = |e: p12_keystore::error::Error| ProvisionError::Pkcs12 { detail: e.to_string() };
    let key = PrivateKey::from_der(&identity.key_pkcs8_der).map_err(failed)?;
    let leaf = Certificate::from_der(&identity.cert_der).map_err(failed)?;
    let ca = Certificate::from_der(&identity.ca_cert_der).map_err(failed)?;
    // Like OpenSSL, tie key and certificate with a digest of the certificate.
    let local_key_id = digest(&SHA256, &identity.cert_der).as_ref()[..20].to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        identity.code.as_str(),
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, [leaf, ca])),
    );
    let writer =
        store.writer(password).encryption_iterations(PKCS12_ITERATIONS).mac_iterations(PKCS12_ITERATIONS);
    let writer = match encryption {
        Pkcs12Encryption::Modern => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256),
        Pkcs12Encryption::Legacy => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1),
    };
    writer.write().map_err(failed)
}

/// Reads a password from a file: the content with trailing line breaks
/// (`\n`, `\r\n`) removed. Empty passwords are refused.
pub fn read_password_file(path: &Path) -> Result<String> {
    let unusable = |detail: String| ProvisionError::PasswordFile { path: path.to_owned(), detail };
    let bytes = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    if bytes.len() > MAX_PASSWORD_FILE_BYTES {
        return Err(unusable(format!("{} bytes; a password file holds one line", bytes.len())));
    }
    let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8 text".into()))?;
    password_from_text(&text)
}

/// The password in `text`: trailing `\n` and `\r` removed, not empty.
pub fn password_from_text(text: &str) -> Result<String> {
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        Err(ProvisionError::EmptyPassword)
    } else {
        Ok(password.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn trailing_line_breaks_are_trimmed_but_spaces_kept() {
        assert_eq!(password_from_text("s3cret\n").unwrap(), "s3cret");
        assert_eq!(password_from_text("s3cret\r\n\n").unwrap(), "s3cret");
        assert_eq!(password_from_text(" pass word ").unwrap(), " pass word ");
        for empty in ["", "\n", "\r\n\r\n"] {
            assert!(matches!(password_from_text(empty), Err(ProvisionError::EmptyPassword)));
        }
    }

    #[test]
    fn unreadable_password_file_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing");
        let err = read_password_file(&path).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_password_file(&path), Err(ProvisionError::PasswordFile { .. })));
    }
}
