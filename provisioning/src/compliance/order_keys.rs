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
//! ([`key_id`]: first 8 bytes of SHA-256 of the public key), [`sign`], which
//! encodes an [`Order`] once and signs exactly those bytes under the domain
//! prefix of [`cpe_protocol::order::signed_message`], and the key directory
//! ([`KeyStore`]) that `cpe-provision keys init|rotate|show` manage.
//!
//! # Key directory
//!
//! - `order-key.pk8`: the current private key (PKCS#8 DER, mode 0600);
//! - `order-key.pub`: its public key, 64 hex digits (what devices are
//!   provisioned with: `[orders] keys = ["<hex>"]`);
//! - `retired/<key id>.pub`: public keys of earlier keys, kept so that the
//!   signatures of orders in the history stay verifiable (their private keys
//!   are gone);
//! - `next.pk8`: only during a rotation (new key written, rotation orders
//!   being queued). Its presence after a crash stops further signing until the
//!   operator looks (see [`KeyStoreError::RotationInterrupted`]).
//!
//! Every file is written with [`cpe_common::durable::write_atomic`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cpe_common::durable::{write_atomic, OsStorage, Storage, MODE_PUBLIC, MODE_SECRET};
use cpe_common::hex;
use cpe_protocol::order::{encode_order, signed_message, KeyId, Order, OrderEncodeError, SignedOrder};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::receipts::order_hash;
use crate::store::{OrderSigner, SignedForDevice};

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

/// A signer for [`crate::store::Database::issue_order`] with `key`.
pub fn order_signer(key: OrderSigningKey) -> Arc<OrderSigner> {
    Arc::new(move |order: &Order| {
        let signed = sign(order, &key).map_err(|e| e.to_string())?;
        let envelope = cpe_protocol::order::encode_signed(&signed).map_err(|e| e.to_string())?;
        Ok(SignedForDevice {
            key_id: hex::encode(&signed.key_id),
            order_hash: order_hash(&signed.order_bytes),
            order_bytes: signed.order_bytes,
            signed: envelope,
        })
    })
}

/// Parses 64 hex digits as an Ed25519 public key.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
}

const CURRENT_KEY: &str = "order-key.pk8";
const CURRENT_PUB: &str = "order-key.pub";
const NEXT_KEY: &str = "next.pk8";
const RETIRED_DIR: &str = "retired";

/// Why the key directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// `keys init` on a directory that has a key.
    #[error("an order-signing key already exists in {}; devices trust it, so it is never overwritten. Use `cpe-provision keys rotate --dir {}` to replace it", dir.display(), dir.display())]
    Exists {
        /// The key directory.
        dir: PathBuf,
    },
    /// No current key.
    #[error("no order-signing key in {}; create one with `cpe-provision keys init --dir {}`", dir.display(), dir.display())]
    Missing {
        /// The key directory.
        dir: PathBuf,
    },
    /// A rotation stopped half way.
    #[error("a key rotation in {} was interrupted ({} exists): the new key may already be queued to devices. Check `cpe-provision order list` for key-rotation orders; if they were queued, move {} to {}; if not, delete it; then retry", dir.display(), dir.join(NEXT_KEY).display(), dir.join(NEXT_KEY).display(), dir.join(CURRENT_KEY).display())]
    RotationInterrupted {
        /// The key directory.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("could not {action} {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is damaged.
    #[error("{}: {source}; restore the key directory from its backup", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: OrderKeyError,
    },
}

/// A public key of the directory, for `keys show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Key id, 16 hex digits.
    pub key_id: String,
    /// Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// `current` or `retired`.
    pub status: &'static str,
}

/// The carrier's order-key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The directory at `dir` (nothing is read yet).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError {
        let path = path.to_owned();
        move |source| KeyStoreError::Io { action, path, source }
    }

    fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
        let path = self.dir.join(name);
        write_atomic(&OsStorage, &path, bytes, mode).map_err(Self::io("write", &path))
    }

    /// Creates the directory (0700) and a first key; refuses to overwrite.
    pub fn init(&self) -> Result<OrderSigningKey, KeyStoreError> {
        if self.dir.join(CURRENT_KEY).exists() || self.dir.join(NEXT_KEY).exists() {
            return Err(KeyStoreError::Exists { dir: self.dir.clone() });
        }
        create_private_dir(&self.dir)?;
        let key = OrderSigningKey::generate()
            .map_err(|source| KeyStoreError::Bad { path: self.dir.join(CURRENT_KEY), source })?;
        self.install(&key)?;
        Ok(key)
    }

    fn install(&self, key: &OrderSigningKey) -> Result<(), KeyStoreError> {
        self.write(CURRENT_KEY, key.pkcs8_der(), MODE_SECRET)?;
        self.write(CURRENT_PUB, format!("{}\n", hex::encode(&key.public_key())).as_bytes(), MODE_PUBLIC)
    }

    /// The current key, for signing. Refused while a rotation is unfinished.
    pub fn current(&self) -> Result<OrderSigningKey, KeyStoreError> {
        if self.dir.join(NEXT_KEY).exists() {
            return Err(KeyStoreError::RotationInterrupted { dir: self.dir.clone() });
        }
        let path = self.dir.join(CURRENT_KEY);
        let der = match OsStorage.read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::Missing { dir: self.dir.clone() })
            }
            Err(e) => return Err(Self::io("read", &path)(e)),
        };
        OrderSigningKey::from_pkcs8(&der).map_err(|source| KeyStoreError::Bad { path, source })
    }

    /// Rotation, first half: returns (old, new). The new key is stored as
    /// `next.pk8` and the old public key under `retired/`; the caller then
    /// queues the rotation orders signed by the old key and calls
    /// [`Self::finish_rotation`].
    pub fn begin_rotation(&self) -> Result<(OrderSigningKey, OrderSigningKey), KeyStoreError> {
        let old = self.current()?;
        let new = OrderSigningKey::generate()
            .map_err(|source| KeyStoreError::Bad { path: self.dir.join(NEXT_KEY), source })?;
        create_private_dir(&self.dir.join(RETIRED_DIR))?;
        let retired = format!("{RETIRED_DIR}/{}.pub", hex::encode(&old.key_id()));
        self.write(&retired, format!("{}\n", hex::encode(&old.public_key())).as_bytes(), MODE_PUBLIC)?;
        self.write(NEXT_KEY, new.pkcs8_der(), MODE_SECRET)?;
        Ok((old, new))
    }

    /// Rotation, second half: `new` becomes the current key (the old private
    /// key is overwritten; its public key stays under `retired/`).
    pub fn finish_rotation(&self, new: &OrderSigningKey) -> Result<(), KeyStoreError> {
        self.install(new)?;
        let next = self.dir.join(NEXT_KEY);
        OsStorage.remove_file(&next).map_err(Self::io("remove", &next))?;
        OsStorage.sync_dir(&self.dir).map_err(Self::io("sync", &self.dir))
    }

    /// The current key and the retired ones (by key id).
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let current = self.current()?;
        let mut keys = vec![KeyInfo {
            key_id: hex::encode(&current.key_id()),
            public_key: hex::encode(&current.public_key()),
            status: "current",
        }];
        let dir = self.dir.join(RETIRED_DIR);
        let mut retired = Vec::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).map_err(Self::io("list", &dir))? {
                let path = entry.map_err(Self::io("list", &dir))?.path();
                if path.extension().is_none_or(|e| e != "pub") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(Self::io("read", &path))?;
                let key = parse_public_key(&text).ok_or_else(|| KeyStoreError::Bad {
                    path: path.clone(),
                    source: OrderKeyError::BadKey { detail: "not 64 hex digits".into() },
                })?;
                retired.push(KeyInfo {
                    key_id: hex::encode(&key_id(&key)),
                    public_key: hex::encode(&key),
                    status: "retired",
                });
            }
        }
        retired.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        keys.extend(retired);
        Ok(keys)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyStoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| KeyStoreError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
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
    fn key_store_init_refuses_overwrite_and_rotation_keeps_the_old_public_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&dir.path().join("keys"));
        assert!(matches!(store.current(), Err(KeyStoreError::Missing { .. })));
        let first = store.init().unwrap();
        let mode = std::fs::metadata(dir.path().join("keys/order-key.pk8")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(store.init(), Err(KeyStoreError::Exists { .. })));
        assert_eq!(store.current().unwrap().public_key(), first.public_key());

        let (old, new) = store.begin_rotation().unwrap();
        assert_eq!(old.public_key(), first.public_key());
        // Half way: nothing signs until the rotation is finished.
        assert!(matches!(store.current(), Err(KeyStoreError::RotationInterrupted { .. })));
        store.finish_rotation(&new).unwrap();
        assert_eq!(store.current().unwrap().public_key(), new.public_key());
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].status, list[0].public_key.clone()), ("current", hex::encode(&new.public_key())));
        assert_eq!((list[1].status, list[1].key_id.clone()), ("retired", hex::encode(&first.key_id())));
    }

    #[test]
    fn hex_round_trip() {
        let key = [0xab; 32];
        assert_eq!(parse_public_key(&hex::encode(&key)), Some(key));
        assert_eq!(parse_public_key("zz"), None);
        assert_eq!(parse_public_key(&"g".repeat(64)), None);
    }

    #[test]
    fn oversized_order_is_refused() {
        let mut o = order();
        o.reason_en = "x".repeat(10_000);
        let key = OrderSigningKey::generate().unwrap();
        assert!(matches!(sign(&o, &key), Err(OrderKeyError::Encode(_))));
    }
}
