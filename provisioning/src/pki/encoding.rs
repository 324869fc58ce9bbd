//! PEM text in and out: the one place that knows PEM tags and line endings.
//!
//! Output always uses LF line endings and 64-column base64, as OpenSSL writes
//! it. Input may hold several blocks and text around them.

use pem::{EncodeConfig, LineEnding, Pem};

/// PEM tag of an X.509 certificate.
pub const CERTIFICATE_TAG: &str = "CERTIFICATE";
/// PEM tag of an unencrypted PKCS#8 private key.
pub const PRIVATE_KEY_TAG: &str = "PRIVATE KEY";
/// PEM tags of a PKCS#10 certificate request (the second is an old spelling).
pub const CSR_TAGS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// Encodes `der` as one PEM block with `tag`.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(&Pem::new(tag, der), EncodeConfig::new().set_line_ending(LineEnding::LF))
}

/// All PEM blocks in `text`; an error (for a message) when there is none or
/// one is damaged.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<Pem>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("damaged PEM: {e}"))?;
    if blocks.is_empty() {
        Err("no PEM block found".into())
    } else {
        Ok(blocks)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_lf_and_reads_back() {
        let text = pem_encode(CERTIFICATE_TAG, &[1, 2, 3]);
        assert_eq!(text, "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n");
        let blocks = pem_blocks(&format!("comment\n{text}{text}")).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].contents(), &[1, 2, 3]);
        assert!(pem_blocks("nothing here").is_err());
    }
}
