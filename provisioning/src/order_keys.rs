//! The carrier's order-signing keys and the signing of compliance orders.
//!
//! Orders that change an institution's service (stop, resume, key rotation…)
//! are signed with an Ed25519 key that is **separate from every TLS key**:
//! not the certification body's CA key, not the carrier server's TLS key,
//! not a device key. A TLS key lives on an online server and signs
//! handshakes all day; the order key signs a handful of carefully reviewed
//! decisions and can be kept offline. Compromising one must not give the
//! other, and devices are provisioned with the order public key(s) alone.
//!
//! This module owns key generation (PKCS#8 v2 via ring), loading, the key id
//! ([`key_id`]: first 8 bytes of SHA-256 of the public key) and [`sign`],
//! which encodes an [`Order`] once and signs exactly those bytes under the
//! domain prefix of [`cpe_protocol::order::signed_message`].

use cpe_protocol::order::{encode_order, signed_message, KeyId, Order, OrderEncodeError, SignedOrder};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Why an order key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum OrderKeyError {
    /// The random generator or ring failed to make a key.
    #[error("cannot generate an order-signing key")]
    Generate,
    /// The bytes are not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 PKCS#8 order-signing key: {detail}")]
    BadKey {
        /// ring's message.
        detail: String,
    },
    /// The order cannot be encoded.
    #[error(transparent)]
    Encode(#[from] OrderEncodeError),
}

/// Key id of an Ed25519 public key: the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> KeyId {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    id
}

/// An Ed25519 order-signing key with its PKCS#8 encoding.
pub struct OrderSigningKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for OrderSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("OrderSigningKey").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl OrderSigningKey {
    /// Generates a new key from the system random generator.
    pub fn generate() -> Result<Self, OrderKeyError> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| OrderKeyError::Generate)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// Loads a key from its PKCS#8 DER encoding (as written by [`Self::pkcs8_der`]).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, OrderKeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(der).map_err(|e| OrderKeyError::BadKey { detail: e.to_string() })?;
        Ok(Self { pkcs8: der.to_vec(), pair })
    }

    /// The PKCS#8 DER encoding, to store (secret: keep it off the TLS servers).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The 32-byte public key devices are provisioned with.
    pub fn public_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        key_id(&self.public_key())
    }
}

/// Encodes `order` and signs exactly those bytes.
pub fn sign(order: &Order, key: &OrderSigningKey) -> Result<SignedOrder, OrderKeyError> {
    let order_bytes = encode_order(order)?;
    let signature = key.pair.sign(&signed_message(&order_bytes)).as_ref().to_vec();
    Ok(SignedOrder { key_id: key.key_id(), order_bytes, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_protocol::order::{decode_order, OrderKind, OrderTarget, ORDER_VERSION};
    use ring::signature::{UnparsedPublicKey, ED25519};

    fn order() -> Order {
        Order {
            version: ORDER_VERSION,
            id: 1,
            target: OrderTarget { institution_code: "1312345678".into(), device: "cpe-1".into() },
            kind: OrderKind::Stop,
            sequence: 1,
            issued_at: 1_800_000_000,
            not_before: 1_800_000_000,
            expires_at: 1_800_086_400,
            reason_ja: "是正勧告の期限超過".into(),
            reason_en: "corrective recommendation deadline passed".into(),
            deadline: None,
        }
    }

    #[test]
    fn signs_the_exact_bytes_with_domain_prefix() {
        let key = OrderSigningKey::generate().unwrap();
        let signed = sign(&order(), &key).unwrap();
        assert_eq!(signed.key_id, key.key_id());
        assert_eq!(decode_order(&signed.order_bytes).unwrap(), order());
        let public = UnparsedPublicKey::new(&ED25519, key.public_key());
        public.verify(&signed_message(&signed.order_bytes), &signed.signature).unwrap();
        // Without the domain prefix the signature does not verify.
        assert!(public.verify(&signed.order_bytes, &signed.signature).is_err());
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        let key = OrderSigningKey::generate().unwrap();
        let again = OrderSigningKey::from_pkcs8(key.pkcs8_der()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.key_id(), key.key_id());
        assert!(OrderSigningKey::from_pkcs8(b"not a key").is_err());
        assert!(!format!("{key:?}").contains("pkcs8"));
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let id = key_id(&[0u8; 32]);
        // SHA-256 of 32 zero bytes starts 66 68 7a ad f8 62 bd 77.
        assert_eq!(id, [0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77]);
        let a = OrderSigningKey::generate().unwrap();
        let b = OrderSigningKey::generate().unwrap();
        assert_ne!(a.key_id(), b.key_id());
    }

    #[test]
    fn oversized_order_is_refused() {
        let mut o = order();
        o.reason_en = "x".repeat(10_000);
        let key = OrderSigningKey::generate().unwrap();
        assert!(matches!(sign(&o, &key), Err(OrderKeyError::Encode(_))));
    }
}
