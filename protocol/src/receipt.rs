//! Enforcement receipts: the device's signed statement that it applied a
//! compliance order, so the carrier can prove to an auditor when a stop (or
//! resume, notice, key rotation, drill) took effect and under which clock.
//!
//! This module owns the wire format only: [`EnforcementReceipt`], the signed
//! envelope [`SignedReceipt`] and the exact signed message
//! ([`receipt_signed_message`]). The device signs with the private key of its
//! institution certificate (the key its TLS client identity uses), so the
//! carrier verifies a receipt against the certificate that authenticated the
//! connection it came over; no second device key exists to lose.
//!
//! As with orders, the signature covers the exact bytes that travel
//! ([`SignedReceipt::receipt_bytes`]) behind a domain prefix
//! ([`RECEIPT_SIGNATURE_DOMAIN`]), and the verifier checks it before decoding.

use serde::{Deserialize, Serialize};

use crate::order::OrderTarget;

/// The receipt format version this build writes and accepts.
pub const RECEIPT_VERSION: u16 = 1;

/// Prefix of every signed receipt message.
pub const RECEIPT_SIGNATURE_DOMAIN: &[u8] = b"cpe-receipt-v1\0";

/// Largest encoded [`EnforcementReceipt`].
pub const MAX_RECEIPT_BYTES: usize = 2 * 1024;

/// Largest receipt signature accepted (ECDSA P-384 DER is at most 104 bytes;
/// RSA-4096 is 512).
pub const MAX_RECEIPT_SIGNATURE_BYTES: usize = 512;

/// The institution's service state as the device enforces it; also what the
/// notice page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceState {
    /// Service as usual.
    Normal,
    /// Service as usual, with a corrective recommendation and its deadline
    /// on the notice page (§2.2 ④).
    Recommendation,
    /// Forwarding from the institution LAN to the WAN is blocked (§2.2 ⑥).
    Suspended,
    /// A drill (§1.3.4): the notice shows as if suspended, nothing is blocked.
    Drill,
}

impl ServiceState {
    /// Lower-case English name, stable for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Recommendation => "recommendation",
            Self::Suspended => "suspended",
            Self::Drill => "drill",
        }
    }
}

/// Whether the device trusted its clock when it decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReceiptClock {
    /// Synchronised or confirmed by the carrier.
    Trusted,
    /// Not trusted: the decision was judged against the persisted time floor.
    Untrusted,
}

/// What the device applied, when, and with which result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementReceipt {
    /// Format version, [`RECEIPT_VERSION`].
    pub version: u16,
    /// The device that applied the order.
    pub device: OrderTarget,
    /// The carrier's order id.
    pub order_id: u64,
    /// The order's sequence number.
    pub sequence: u64,
    /// SHA-256 of the order's signed bytes.
    pub order_hash: [u8; 32],
    /// The time the device judged the order at (unix seconds): its clock if
    /// trusted, otherwise the later of its clock and the time floor.
    pub applied_at: i64,
    /// The device's raw clock reading when it applied (unix seconds).
    pub device_clock: i64,
    /// The persisted trusted-time floor at that moment (unix seconds).
    pub time_floor: i64,
    /// Which clock state the decision used.
    pub clock: ReceiptClock,
    /// The service state after applying.
    pub resulting_state: ServiceState,
    /// True for a drill order: nothing was blocked.
    pub drill: bool,
}

/// The receipt as it travels: exact bytes, signature scheme and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// `postcard(EnforcementReceipt)`, exactly as signed.
    pub receipt_bytes: Vec<u8>,
    /// The TLS `SignatureScheme` code of the signature (e.g. 0x0403 for
    /// ECDSA P-256 SHA-256, 0x0807 for Ed25519).
    pub scheme: u16,
    /// Signature over [`receipt_signed_message`]`(receipt_bytes)` by the key
    /// of the device's institution certificate.
    pub signature: Vec<u8>,
}

/// Why receipt bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Larger than a limit.
    #[error("{len} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// Size found.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a receipt of this version (bad encoding, truncated, trailing bytes).
    #[error("malformed receipt: {detail}")]
    Malformed {
        /// Decoder message.
        detail: String,
    },
    /// A version this build does not know.
    #[error("receipt version {got} is not supported (this build accepts {RECEIPT_VERSION})")]
    UnknownVersion {
        /// The version found.
        got: u16,
    },
}

/// The exact message a receipt signature covers.
pub fn receipt_signed_message(receipt_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(RECEIPT_SIGNATURE_DOMAIN.len() + receipt_bytes.len());
    message.extend_from_slice(RECEIPT_SIGNATURE_DOMAIN);
    message.extend_from_slice(receipt_bytes);
    message
}

/// Encodes a receipt (the bytes to sign).
pub fn encode_receipt(receipt: &EnforcementReceipt) -> Result<Vec<u8>, ReceiptError> {
    let bytes =
        postcard::to_stdvec(receipt).map_err(|e| ReceiptError::Malformed { detail: e.to_string() })?;
    if bytes.len() > MAX_RECEIPT_BYTES {
        return Err(ReceiptError::TooLarge { len: bytes.len(), limit: MAX_RECEIPT_BYTES });
    }
    Ok(bytes)
}

/// Decodes receipt bytes: size, version, no trailing bytes. Call only on
/// bytes whose signature has been verified.
pub fn decode_receipt(bytes: &[u8]) -> Result<EnforcementReceipt, ReceiptError> {
    if bytes.len() > MAX_RECEIPT_BYTES {
        return Err(ReceiptError::TooLarge { len: bytes.len(), limit: MAX_RECEIPT_BYTES });
    }
    let (version, _) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| ReceiptError::Malformed { detail: e.to_string() })?;
    if version != RECEIPT_VERSION {
        return Err(ReceiptError::UnknownVersion { got: version });
    }
    let (receipt, trailing) = postcard::take_from_bytes::<EnforcementReceipt>(bytes)
        .map_err(|e| ReceiptError::Malformed { detail: e.to_string() })?;
    if !trailing.is_empty() {
        return Err(ReceiptError::Malformed { detail: format!("{} trailing bytes", trailing.len()) });
    }
    Ok(receipt)
}

/// Checks the envelope's size limits (the signature is checked by the
/// carrier against the device certificate).
pub fn check_signed_receipt(signed: &SignedReceipt) -> Result<(), ReceiptError> {
    if signed.receipt_bytes.len() > MAX_RECEIPT_BYTES {
        return Err(ReceiptError::TooLarge { len: signed.receipt_bytes.len(), limit: MAX_RECEIPT_BYTES });
    }
    if signed.signature.len() > MAX_RECEIPT_SIGNATURE_BYTES {
        return Err(ReceiptError::TooLarge {
            len: signed.signature.len(),
            limit: MAX_RECEIPT_SIGNATURE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> EnforcementReceipt {
        EnforcementReceipt {
            version: RECEIPT_VERSION,
            device: OrderTarget { institution_code: "1312345678".into(), device: "main".into() },
            order_id: 4,
            sequence: 2,
            order_hash: [7; 32],
            applied_at: 1_800_000_100,
            device_clock: 100,
            time_floor: 1_800_000_100,
            clock: ReceiptClock::Untrusted,
            resulting_state: ServiceState::Suspended,
            drill: false,
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let bytes = encode_receipt(&receipt()).unwrap();
        assert_eq!(decode_receipt(&bytes).unwrap(), receipt());
        assert!(matches!(decode_receipt(&bytes[..bytes.len() - 1]), Err(ReceiptError::Malformed { .. })));
        let mut long = bytes.clone();
        long.push(1);
        assert!(matches!(decode_receipt(&long), Err(ReceiptError::Malformed { .. })));
        let mut other = receipt();
        other.version = 9;
        let bytes = postcard::to_stdvec(&other).unwrap();
        assert_eq!(decode_receipt(&bytes), Err(ReceiptError::UnknownVersion { got: 9 }));
    }

    #[test]
    fn signed_message_is_prefixed_and_limits_hold() {
        assert_eq!(receipt_signed_message(b"x"), b"cpe-receipt-v1\0x".to_vec());
        let signed = SignedReceipt { receipt_bytes: vec![0; 10], scheme: 0x0403, signature: vec![0; 600] };
        assert!(check_signed_receipt(&signed).is_err());
    }
}
