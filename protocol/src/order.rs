//! Compliance orders (guideline §2.2): the signed commands with which the
//! carrier suspends or resumes an institution's network service, shows a
//! notice, rotates its order-signing key or runs a drill.
//!
//! This module owns only the *wire format*: [`Order`], the signed envelope
//! [`SignedOrder`], their size limits and the exact bytes a signature covers
//! ([`signed_message`]). Signing lives in `cpe_provision::order_keys`,
//! verification in `cpe_agent::orders::verify`.
//!
//! # Why the signature covers the exact bytes
//!
//! The carrier encodes the [`Order`] once with postcard and signs those bytes
//! ([`SignedOrder::order_bytes`]); the device verifies the signature over the
//! very bytes it received *before* decoding them. The order is never
//! re-encoded to check a signature, so:
//! - no second encoder (another postcard version, another field order, a
//!   non-canonical varint) can make the device accept bytes the carrier never
//!   signed, or refuse bytes it did sign;
//! - the device parses only authenticated input beyond the small envelope;
//! - the SHA-256 of `order_bytes` is a stable order hash that the device's
//!   enforcement receipt can quote and an auditor can recompute.
//!
//! The signed message is [`ORDER_SIGNATURE_DOMAIN`] followed by the order
//! bytes, so that an order signature can never be confused with a signature
//! the same key made for anything else.
//!
//! # Versions and kinds
//!
//! [`Order::version`] is the first field, so a decoder can read it before the
//! rest and refuse an order of an unknown version by name. [`OrderKind`] is a
//! closed set: a kind this build does not know decodes as a distinct error
//! ([`OrderDecodeError::UnknownKind`]) rather than as garbage.

use serde::{Deserialize, Serialize};

/// The order format version this build writes and accepts.
pub const ORDER_VERSION: u16 = 1;

/// Prefix of every signed message: `b"cpe-order-v1\0" || order_bytes`.
pub const ORDER_SIGNATURE_DOMAIN: &[u8] = b"cpe-order-v1\0";

/// Largest encoded [`SignedOrder`] accepted (envelope, order and signature).
pub const MAX_SIGNED_ORDER_BYTES: usize = 8 * 1024;

/// Largest encoded [`Order`] (the signed part).
pub const MAX_ORDER_BYTES: usize = 6 * 1024;

/// Largest signature accepted (Ed25519 signatures are 64 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 128;

/// Most keys one key-rotation order may retire.
pub const MAX_RETIRED_KEYS: usize = 16;

/// Number of known [`OrderKind`] variants (postcard tags `0..ORDER_KIND_COUNT`).
pub const ORDER_KIND_COUNT: u32 = 5;

/// Identifies an order-signing key: the first 8 bytes of SHA-256 of its
/// 32-byte Ed25519 public key.
pub type KeyId = [u8; 8];

/// The device an order is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderTarget {
    /// The institution code (医療機関コード) in the device certificate.
    pub institution_code: String,
    /// The device id (the certificate's OU) within the institution.
    pub device: String,
}

/// What an order asks the device to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderKind {
    /// Suspend the institution's network service (§2.2 ⑥).
    Stop,
    /// Lift a suspension once correction is confirmed.
    Resume,
    /// Show a notice (e.g. a corrective recommendation with its deadline).
    Notice,
    /// Trust `new_key` for later orders and stop trusting the `retire` keys.
    /// Signed by a key the device already trusts.
    KeyRotation {
        /// The new Ed25519 public key (32 bytes).
        new_key: [u8; 32],
        /// Keys the device must no longer accept.
        retire: Vec<KeyId>,
    },
    /// A drill (§1.3.4): notice and acknowledgement as if enforced, no block.
    Drill,
}

impl OrderKind {
    /// The kind's one name, as the carrier stores and prints it and as the
    /// device writes it in its audit log: `stop`, `resume`, `notice`,
    /// `key_rotation`, `drill`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Resume => "resume",
            Self::Notice => "notice",
            Self::KeyRotation { .. } => "key_rotation",
            Self::Drill => "drill",
        }
    }
}

/// A compliance order, as the carrier signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Format version, [`ORDER_VERSION`]; first, so it can be read alone.
    pub version: u16,
    /// Carrier-side order id (for the case trail and the receipt).
    pub id: u64,
    /// The only device that may apply it.
    pub target: OrderTarget,
    /// What to do.
    pub kind: OrderKind,
    /// Strictly increasing per device; a device applies only sequences above
    /// the last one it applied.
    pub sequence: u64,
    /// When the carrier issued it (unix seconds, UTC).
    pub issued_at: i64,
    /// Not valid before (unix seconds).
    pub not_before: i64,
    /// Not valid at or after (unix seconds).
    pub expires_at: i64,
    /// Reason, Japanese (shown first on the notice page).
    pub reason_ja: String,
    /// Reason, English.
    pub reason_en: String,
    /// For a notice carrying a corrective recommendation (§2.2 ④): the
    /// deadline by which the institution must correct (unix seconds), shown
    /// on the device's notice page. `None` for every other order.
    pub deadline: Option<i64>,
}

/// The envelope that travels: which key signed, the exact signed bytes and
/// the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOrder {
    /// The signing key's id (a hint for key lookup; it is not trusted).
    pub key_id: KeyId,
    /// `postcard(Order)`, exactly as signed.
    pub order_bytes: Vec<u8>,
    /// Ed25519 signature over [`signed_message`]`(order_bytes)`.
    pub signature: Vec<u8>,
}

/// Why order bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderDecodeError {
    /// Larger than the limit.
    #[error("{len} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The input ended early.
    #[error("truncated order")]
    Truncated,
    /// The input is not an order (bad encoding, trailing bytes, bad field).
    #[error("malformed order: {detail}")]
    Garbage {
        /// Decoder message.
        detail: String,
    },
    /// The order's version is not [`ORDER_VERSION`].
    #[error("order version {got} is not supported (this build accepts {ORDER_VERSION})")]
    UnknownVersion {
        /// The version found.
        got: u16,
    },
    /// The order's kind tag is not one this build knows.
    #[error("order kind tag {tag} is not known to this build")]
    UnknownKind {
        /// The postcard variant tag found.
        tag: u32,
    },
}

/// Why an order could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderEncodeError {
    /// The encoding exceeds a size limit (long reasons, many retired keys).
    #[error("encoded order of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The serializer failed.
    #[error("cannot encode order: {detail}")]
    Encode {
        /// Serializer message.
        detail: String,
    },
}

fn map_postcard(e: &postcard::Error) -> OrderDecodeError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => OrderDecodeError::Truncated,
        other => OrderDecodeError::Garbage { detail: other.to_string() },
    }
}

/// The exact message an order signature covers.
pub fn signed_message(order_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ORDER_SIGNATURE_DOMAIN.len() + order_bytes.len());
    message.extend_from_slice(ORDER_SIGNATURE_DOMAIN);
    message.extend_from_slice(order_bytes);
    message
}

/// Encodes an order (the bytes to sign), within [`MAX_ORDER_BYTES`].
pub fn encode_order(order: &Order) -> Result<Vec<u8>, OrderEncodeError> {
    if let OrderKind::KeyRotation { retire, .. } = &order.kind {
        if retire.len() > MAX_RETIRED_KEYS {
            return Err(OrderEncodeError::Encode {
                detail: format!("{} retired keys exceed the limit of {MAX_RETIRED_KEYS}", retire.len()),
            });
        }
    }
    let bytes = postcard::to_stdvec(order).map_err(|e| OrderEncodeError::Encode { detail: e.to_string() })?;
    if bytes.len() > MAX_ORDER_BYTES {
        return Err(OrderEncodeError::TooLarge { len: bytes.len(), limit: MAX_ORDER_BYTES });
    }
    Ok(bytes)
}

/// Decodes order bytes: size, then version, then kind tag, then the whole
/// order with no trailing bytes. Call only on bytes whose signature has been
/// verified.
pub fn decode_order(bytes: &[u8]) -> Result<Order, OrderDecodeError> {
    if bytes.len() > MAX_ORDER_BYTES {
        return Err(OrderDecodeError::TooLarge { len: bytes.len(), limit: MAX_ORDER_BYTES });
    }
    let (version, rest) = postcard::take_from_bytes::<u16>(bytes).map_err(|e| map_postcard(&e))?;
    if version != ORDER_VERSION {
        return Err(OrderDecodeError::UnknownVersion { got: version });
    }
    // Read the fields before the kind to reach its tag, so an unknown kind is
    // named as such instead of as garbage.
    let (_id, rest) = postcard::take_from_bytes::<u64>(rest).map_err(|e| map_postcard(&e))?;
    let (_target, rest) = postcard::take_from_bytes::<OrderTarget>(rest).map_err(|e| map_postcard(&e))?;
    let (tag, _) = postcard::take_from_bytes::<u32>(rest).map_err(|e| map_postcard(&e))?;
    if tag >= ORDER_KIND_COUNT {
        return Err(OrderDecodeError::UnknownKind { tag });
    }
    let (order, trailing) = postcard::take_from_bytes::<Order>(bytes).map_err(|e| map_postcard(&e))?;
    if !trailing.is_empty() {
        return Err(OrderDecodeError::Garbage { detail: format!("{} trailing bytes", trailing.len()) });
    }
    if let OrderKind::KeyRotation { retire, .. } = &order.kind {
        if retire.len() > MAX_RETIRED_KEYS {
            return Err(OrderDecodeError::Garbage {
                detail: format!("{} retired keys exceed the limit of {MAX_RETIRED_KEYS}", retire.len()),
            });
        }
    }
    Ok(order)
}

/// Encodes the envelope for the command channel, within
/// [`MAX_SIGNED_ORDER_BYTES`].
pub fn encode_signed(signed: &SignedOrder) -> Result<Vec<u8>, OrderEncodeError> {
    let bytes =
        postcard::to_stdvec(signed).map_err(|e| OrderEncodeError::Encode { detail: e.to_string() })?;
    if bytes.len() > MAX_SIGNED_ORDER_BYTES {
        return Err(OrderEncodeError::TooLarge { len: bytes.len(), limit: MAX_SIGNED_ORDER_BYTES });
    }
    Ok(bytes)
}

/// Decodes the envelope (not the order inside): size limits, no trailing
/// bytes. The order bytes are still unauthenticated.
pub fn decode_signed(bytes: &[u8]) -> Result<SignedOrder, OrderDecodeError> {
    if bytes.len() > MAX_SIGNED_ORDER_BYTES {
        return Err(OrderDecodeError::TooLarge { len: bytes.len(), limit: MAX_SIGNED_ORDER_BYTES });
    }
    let (signed, trailing) = postcard::take_from_bytes::<SignedOrder>(bytes).map_err(|e| map_postcard(&e))?;
    if !trailing.is_empty() {
        return Err(OrderDecodeError::Garbage { detail: format!("{} trailing bytes", trailing.len()) });
    }
    if signed.order_bytes.len() > MAX_ORDER_BYTES {
        return Err(OrderDecodeError::TooLarge { len: signed.order_bytes.len(), limit: MAX_ORDER_BYTES });
    }
    if signed.signature.len() > MAX_SIGNATURE_BYTES {
        return Err(OrderDecodeError::TooLarge { len: signed.signature.len(), limit: MAX_SIGNATURE_BYTES });
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_name() {
        let kinds = [
            OrderKind::Stop,
            OrderKind::Resume,
            OrderKind::Notice,
            OrderKind::KeyRotation { new_key: [0; 32], retire: Vec::new() },
            OrderKind::Drill,
        ];
        let names: std::collections::HashSet<&str> = kinds.iter().map(OrderKind::name).collect();
        assert_eq!(names.len(), kinds.len());
        assert_eq!(u32::try_from(kinds.len()).ok(), Some(ORDER_KIND_COUNT));
        assert_eq!(kinds[3].name(), "key_rotation");
    }

    fn order(kind: OrderKind) -> Order {
        Order {
            version: ORDER_VERSION,
            id: 7,
            target: OrderTarget { institution_code: "1312345678".into(), device: "cpe-1".into() },
            kind,
            sequence: 3,
            issued_at: 1_800_000_000,
            not_before: 1_800_000_000,
            expires_at: 1_800_086_400,
            reason_ja: "停止".into(),
            reason_en: "stop".into(),
            deadline: None,
        }
    }

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            OrderKind::Stop,
            OrderKind::Resume,
            OrderKind::Notice,
            OrderKind::KeyRotation { new_key: [9; 32], retire: vec![[1; 8]] },
            OrderKind::Drill,
        ] {
            let o = order(kind);
            assert_eq!(decode_order(&encode_order(&o).unwrap()).unwrap(), o);
        }
    }

    #[test]
    fn unknown_version_and_kind_are_named() {
        let mut o = order(OrderKind::Stop);
        o.version = 2;
        let bytes = postcard::to_stdvec(&o).unwrap();
        assert_eq!(decode_order(&bytes), Err(OrderDecodeError::UnknownVersion { got: 2 }));

        let bytes = encode_order(&order(OrderKind::Drill)).unwrap();
        // Drill is tag 4; the tag follows version (1 byte), id (1 byte) and the target.
        let target_len = postcard::to_stdvec(&order(OrderKind::Drill).target).unwrap().len();
        let mut bad = bytes.clone();
        assert_eq!(bad[2 + target_len], 4);
        bad[2 + target_len] = 9;
        assert_eq!(decode_order(&bad), Err(OrderDecodeError::UnknownKind { tag: 9 }));
    }

    #[test]
    fn truncated_trailing_and_oversized_are_refused() {
        let bytes = encode_order(&order(OrderKind::Stop)).unwrap();
        assert_eq!(decode_order(&bytes[..bytes.len() - 1]), Err(OrderDecodeError::Truncated));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode_order(&long), Err(OrderDecodeError::Garbage { .. })));
        assert!(matches!(
            decode_order(&vec![0; MAX_ORDER_BYTES + 1]),
            Err(OrderDecodeError::TooLarge { .. })
        ));
        let signed = SignedOrder { key_id: [0; 8], order_bytes: bytes, signature: vec![0; 64] };
        let env = encode_signed(&signed).unwrap();
        assert_eq!(decode_signed(&env).unwrap(), signed);
        assert_eq!(decode_signed(&env[..env.len() - 1]), Err(OrderDecodeError::Truncated));
    }

    #[test]
    fn signed_message_is_prefixed() {
        assert_eq!(signed_message(b"ab"), b"cpe-order-v1\0ab".to_vec());
    }
}
