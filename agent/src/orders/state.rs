//! The durable order state: everything the device must remember about
//! compliance orders across restarts, reboots and power cuts.
//!
//! Layout under `<state_dir>/orders/`:
//! ```text
//! state.json       the current state (0644): sequence, floor, keys, service state, last receipt
//! state.json.prev  the previous good version, kept for recovery
//! lock             held while an order is applied or the state enforced
//! ```
//! Every change goes through [`StateStore::save`]: the current file, if it
//! is readable, is first copied to `state.json.prev`, then the new state
//! replaces `state.json` with [`write_atomic`]. So a power cut leaves the old
//! or the new state, and a damaged `state.json` (flash error, hand edit)
//! falls back to the previous good version, never silently to "normal": a
//! suspended device stays suspended. If both are unreadable, loading fails
//! with [`StateError::Corrupt`] naming both files; nothing is guessed.
//!
//! The trusted order keys are taken from the configuration (`[orders]
//! keys`) only when the state is created; afterwards only signed
//! key-rotation orders change them, so editing the configuration cannot make
//! the device trust a new signer. No agent command resets this state:
//! `cert wipe` and `cert rollback` touch only `<state_dir>/identity/`.

use std::path::{Path, PathBuf};

use cpe_common::durable::{write_atomic, Storage, MODE_PUBLIC};
use cpe_protocol::receipt::{ServiceState, SignedReceipt};
use serde::{Deserialize, Serialize};

use super::verify::{trusted_key, ClockState, TimeFloor, TrustedKey};

/// The state format version this build writes and reads.
pub const STATE_VERSION: u16 = 1;

/// Largest state file accepted and written (keys, two reasons of an order
/// of at most 6 KiB, one receipt).
pub const MAX_STATE_BYTES: usize = 256 * 1024;

const STATE_FILE: &str = "state.json";
const PREVIOUS_FILE: &str = "state.json.prev";
const LOCK_FILE: &str = "lock";

/// What the device remembers about orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderState {
    /// [`STATE_VERSION`].
    pub version: u16,
    /// Sequence number of the last applied order (0: none yet).
    pub last_sequence: u64,
    /// The persisted trusted-time floor and what set it.
    pub time_floor: TimeFloor,
    /// The clock state the last applied order was judged under.
    pub last_clock: Option<ClockState>,
    /// Trusted order keys (retired ones kept, so they can be named).
    pub keys: Vec<KeyRecord>,
    /// The service state being enforced and shown.
    pub service: ServiceRecord,
    /// The signed receipt of the last applied order (bytes as hex).
    #[serde(with = "receipt_hex")]
    pub last_receipt: Option<SignedReceipt>,
}

/// One trusted order key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Ed25519 public key, 64 hex characters.
    #[serde(with = "hex32")]
    pub public_key: [u8; 32],
    /// Retired by a key-rotation order.
    pub retired: bool,
}

/// The service state with what the notice page shows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    /// Normal, recommendation, suspended or drill.
    pub state: ServiceState,
    /// The carrier's id of the order that set this state.
    pub order_id: Option<u64>,
    /// That order's sequence number.
    pub sequence: Option<u64>,
    /// Its reason, Japanese.
    pub reason_ja: String,
    /// Its reason, English.
    pub reason_en: String,
    /// When it took effect (the judged time, unix seconds).
    pub since: Option<i64>,
    /// The corrective-recommendation deadline (unix seconds), if any.
    pub deadline: Option<i64>,
    /// Set by a drill order: shown as a drill, nothing blocked.
    pub drill: bool,
}

impl ServiceRecord {
    /// Service as usual, never changed by an order.
    pub fn normal() -> Self {
        Self {
            state: ServiceState::Normal,
            order_id: None,
            sequence: None,
            reason_ja: String::new(),
            reason_en: String::new(),
            since: None,
            deadline: None,
            drill: false,
        }
    }

    /// Whether forwarding from the LAN to the WAN must be blocked.
    pub fn blocks_forwarding(&self) -> bool {
        self.state == ServiceState::Suspended
    }
}

impl OrderState {
    /// The state of a device that has applied no order yet.
    pub fn initial(keys: &[[u8; 32]], time_floor: TimeFloor) -> Self {
        let mut records: Vec<KeyRecord> = Vec::with_capacity(keys.len());
        for key in keys {
            if !records.iter().any(|r| &r.public_key == key) {
                records.push(KeyRecord { public_key: *key, retired: false });
            }
        }
        Self {
            version: STATE_VERSION,
            last_sequence: 0,
            time_floor,
            last_clock: None,
            keys: records,
            service: ServiceRecord::normal(),
            last_receipt: None,
        }
    }

    /// The keys in the verifier's form (with their ids).
    pub fn trusted_keys(&self) -> Vec<TrustedKey> {
        self.keys.iter().map(|k| trusted_key(k.public_key, k.retired)).collect()
    }
}

/// Why the order state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state and its previous version are both unreadable.
    #[error(
        "the order state {} is damaged ({detail}) and no readable previous version exists ({}); \
         the service state is unknown: the carrier must re-deliver the last order out of band \
         (cpe-agent orders apply FILE) after the files are restored from a backup",
        path.display(), previous.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The previous-version file.
        previous: PathBuf,
        /// What is wrong with the state file.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("could not {action} {}: {source}; check free space and permissions of the state directory", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state could not be encoded (does not happen with sane values).
    #[error("cannot encode the order state: {0}")]
    Encode(String),
}

/// Why state bytes are not a valid state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than [`MAX_STATE_BYTES`].
    #[error("{len} bytes or more exceed the limit of {MAX_STATE_BYTES}")]
    TooLarge {
        /// Size found (a file is read no further than the limit + 1 byte).
        len: usize,
    },
    /// Not JSON of the state's shape.
    #[error("{0}")]
    Malformed(String),
    /// A version this build does not read.
    #[error("state version {got} is not supported (this build reads {STATE_VERSION})")]
    UnknownVersion {
        /// Version found.
        got: u16,
    },
}

/// Parses state file bytes. Never panics on any input.
pub fn parse_state(bytes: &[u8]) -> Result<OrderState, ParseError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(ParseError::TooLarge { len: bytes.len() });
    }
    let state: OrderState =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Malformed(e.to_string()))?;
    if state.version != STATE_VERSION {
        return Err(ParseError::UnknownVersion { got: state.version });
    }
    Ok(state)
}

/// Encodes the state as written to disk, within [`MAX_STATE_BYTES`] (so
/// whatever is saved can be loaded again).
pub fn render_state(state: &OrderState) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError::Encode(e.to_string()))?;
    bytes.push(b'\n');
    if bytes.len() > MAX_STATE_BYTES {
        return Err(StateError::Encode(format!(
            "{} bytes exceed the limit of {MAX_STATE_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The state as loaded, and whether it came from the previous version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// `None`: no order state exists yet (a fresh device).
    pub state: Option<OrderState>,
    /// Set when `state.json` was damaged or missing and the previous good
    /// version was used: what was wrong with it.
    pub recovered_from_previous: Option<String>,
}

/// The order state of one state directory.
#[derive(Debug)]
pub struct StateStore<S> {
    storage: S,
    dir: PathBuf,
}

impl<S: Storage> StateStore<S> {
    /// The store under `<state_dir>/orders`.
    pub fn new(storage: S, state_dir: &Path) -> Self {
        Self { storage, dir: state_dir.join("orders") }
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The previous good version.
    pub fn previous_path(&self) -> PathBuf {
        self.dir.join(PREVIOUS_FILE)
    }

    /// Takes the exclusive lock on the order state (`orders/lock`), held
    /// until the guard is dropped, so the daemon, `orders apply` and
    /// `apply-state` never interleave a load, save and enforcement.
    pub fn lock(&self) -> Result<std::fs::File, StateError> {
        let lock_path = self.dir.join(LOCK_FILE);
        self.storage.create_dir_all(&self.dir).map_err(|source| StateError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Io { action: "open", path: lock_path.clone(), source })?;
        file.lock().map_err(|source| StateError::Io { action: "lock", path: lock_path, source })?;
        Ok(file)
    }

    /// The bytes of `path` (`None`: it does not exist), read at most
    /// [`MAX_STATE_BYTES`] + 1: a larger file is [`ParseError::TooLarge`],
    /// damaged like any unparsable one.
    fn read(&self, path: &Path) -> Result<Option<Result<Vec<u8>, ParseError>>, StateError> {
        match self.storage.read_within(path, MAX_STATE_BYTES) {
            Ok(bytes) => Ok(Some(Ok(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if cpe_common::bounded::is_too_large(&e) => {
                Ok(Some(Err(ParseError::TooLarge { len: MAX_STATE_BYTES + 1 })))
            }
            Err(source) => Err(StateError::Io { action: "read", path: path.to_owned(), source }),
        }
    }

    /// Loads the state, falling back to the previous good version when the
    /// current one is damaged or missing.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let path = self.path();
        let previous = self.previous_path();
        let problem = match self.read(&path)? {
            Some(bytes) => match bytes.and_then(|b| parse_state(&b)) {
                Ok(state) => return Ok(Loaded { state: Some(state), recovered_from_previous: None }),
                Err(e) => e.to_string(),
            },
            None => "missing".to_owned(),
        };
        match self.read(&previous)? {
            Some(bytes) => match bytes.and_then(|b| parse_state(&b)) {
                Ok(state) => Ok(Loaded { state: Some(state), recovered_from_previous: Some(problem) }),
                Err(e) if problem == "missing" => {
                    Err(StateError::Corrupt { path: previous.clone(), previous, detail: e.to_string() })
                }
                Err(_) => Err(StateError::Corrupt { path, previous, detail: problem }),
            },
            None if problem == "missing" => Ok(Loaded { state: None, recovered_from_previous: None }),
            None => Err(StateError::Corrupt { path, previous, detail: problem }),
        }
    }

    /// Replaces the state durably, keeping the current readable version as
    /// the previous one.
    pub fn save(&self, state: &OrderState) -> Result<(), StateError> {
        let bytes = render_state(state)?;
        let path = self.path();
        self.storage.create_dir_all(&self.dir).map_err(|source| StateError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        if let Some(Ok(current)) = self.read(&path)? {
            if parse_state(&current).is_ok() {
                let previous = self.previous_path();
                write_atomic(&self.storage, &previous, &current, MODE_PUBLIC)
                    .map_err(|source| StateError::Io { action: "write", path: previous, source })?;
            }
        }
        write_atomic(&self.storage, &path, &bytes, MODE_PUBLIC).map_err(|source| StateError::Io {
            action: "write",
            path,
            source,
        })
    }
}

/// Hex encoding of 32-byte keys in the state file.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&cpe_common::hex::encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::config::parse_order_key(&text).map_err(serde::de::Error::custom)
    }
}

/// The last receipt in the state file: its bytes and signature as hex.
mod receipt_hex {
    use cpe_protocol::receipt::SignedReceipt;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored {
        receipt_bytes: String,
        scheme: u16,
        signature: String,
    }

    #[allow(clippy::ref_option)] // the signature serde's `with` requires
    pub fn serialize<S: Serializer>(
        receipt: &Option<SignedReceipt>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        receipt
            .as_ref()
            .map(|r| Stored {
                receipt_bytes: cpe_common::hex::encode(&r.receipt_bytes),
                scheme: r.scheme,
                signature: cpe_common::hex::encode(&r.signature),
            })
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SignedReceipt>, D::Error> {
        let Some(stored) = Option::<Stored>::deserialize(deserializer)? else { return Ok(None) };
        let bytes = |text: &str| {
            cpe_common::hex::decode(text).ok_or_else(|| serde::de::Error::custom("receipt bytes are not hex"))
        };
        Ok(Some(SignedReceipt {
            receipt_bytes: bytes(&stored.receipt_bytes)?,
            scheme: stored.scheme,
            signature: bytes(&stored.signature)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::verify::FloorSource;
    use cpe_common::durable::{FaultyStorage, OsStorage};

    fn suspended() -> OrderState {
        let mut state = OrderState::initial(&[[1; 32], [2; 32], [1; 32]], TimeFloor::from_build_time(100));
        state.last_sequence = 4;
        state.service = ServiceRecord {
            state: ServiceState::Suspended,
            order_id: Some(40),
            sequence: Some(4),
            reason_ja: "停止".into(),
            reason_en: "stopped".into(),
            since: Some(200),
            deadline: None,
            drill: false,
        };
        state.time_floor = state.time_floor.advance(FloorSource::AcceptedOrder, 200);
        state
    }

    #[test]
    fn receipts_are_stored_as_hex_and_round_trip() {
        let mut state = suspended();
        state.last_receipt =
            Some(SignedReceipt { receipt_bytes: vec![1, 2, 255], scheme: 0x0403, signature: vec![9; 70] });
        let text = String::from_utf8(render_state(&state).unwrap()).unwrap();
        assert!(text.contains("\"receipt_bytes\": \"0102ff\""), "{text}");
        assert_eq!(parse_state(text.as_bytes()).unwrap(), state);
        let bad = text.replace("0102ff", "01x2ff");
        assert!(matches!(parse_state(bad.as_bytes()), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn fuzz_seeds_are_valid_states() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/order_state");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let state = parse_state(&bytes).unwrap();
            assert_eq!(parse_state(&render_state(&state).unwrap()).unwrap(), state);
            seen += 1;
        }
        assert!(seen >= 2);
    }

    #[test]
    fn initial_state_deduplicates_keys() {
        let state = OrderState::initial(&[[1; 32], [1; 32], [2; 32]], TimeFloor::from_build_time(5));
        assert_eq!(state.keys.len(), 2);
        assert_eq!(state.trusted_keys()[0], trusted_key([1; 32], false));
        assert_eq!(state.service, ServiceRecord::normal());
    }

    #[test]
    fn round_trips_and_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(OsStorage, dir.path());
        assert_eq!(store.load().unwrap(), Loaded { state: None, recovered_from_previous: None });
        let first = OrderState::initial(&[[1; 32]], TimeFloor::from_build_time(100));
        store.save(&first).unwrap();
        assert!(!store.previous_path().exists());
        store.save(&suspended()).unwrap();
        assert_eq!(store.load().unwrap().state, Some(suspended()));
        assert_eq!(parse_state(&std::fs::read(store.previous_path()).unwrap()).unwrap(), first);
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.contains(&"01".repeat(32)), "{text}");
    }

    /// A store holding [`suspended`] as the previous version and the same
    /// at sequence 5 (returned) as the current one.
    fn saved_twice() -> (tempfile::TempDir, StateStore<OsStorage>, OrderState) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(OsStorage, dir.path());
        store.save(&suspended()).unwrap();
        let mut later = suspended();
        later.last_sequence = 5;
        store.save(&later).unwrap();
        (dir, store, later)
    }

    #[test]
    fn damaged_state_falls_back_to_the_previous_good_version_never_to_normal() {
        let (_dir, store, later) = saved_twice();
        std::fs::write(store.path(), b"{\"version\":1,").unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state, Some(suspended()));
        assert!(loaded.recovered_from_previous.is_some());
        // A save over a damaged file keeps the good previous version.
        store.save(&later).unwrap();
        assert_eq!(parse_state(&std::fs::read(store.previous_path()).unwrap()).unwrap(), suspended());
        // Deleting the state file does not reset to normal either.
        std::fs::remove_file(store.path()).unwrap();
        assert_eq!(store.load().unwrap().state, Some(suspended()));
        // Both damaged: a typed error, no guess.
        std::fs::write(store.path(), b"garbage").unwrap();
        std::fs::write(store.previous_path(), b"{}").unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("orders apply"), "{err}");
    }

    #[test]
    fn parse_refuses_bad_versions_keys_and_sizes() {
        let good = String::from_utf8(render_state(&suspended()).unwrap()).unwrap();
        assert!(parse_state(good.as_bytes()).is_ok());
        let v2 = good.replacen("\"version\": 1", "\"version\": 2", 1);
        assert_eq!(parse_state(v2.as_bytes()), Err(ParseError::UnknownVersion { got: 2 }));
        let short_key = good.replacen(&"01".repeat(32), "0101", 1);
        assert!(matches!(parse_state(short_key.as_bytes()), Err(ParseError::Malformed(_))));
        let extra = good.replacen("\"version\": 1", "\"version\": 1, \"x\": 0", 1);
        assert!(matches!(parse_state(extra.as_bytes()), Err(ParseError::Malformed(_))));
        assert!(matches!(parse_state(&vec![b' '; MAX_STATE_BYTES + 1]), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn an_oversized_state_file_is_damaged_and_not_read_whole() {
        let (_dir, store, _) = saved_twice();
        // A sparse 256 MiB file: reading it whole would take 256 MiB.
        std::fs::File::create(store.path()).unwrap().set_len(256 << 20).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state, Some(suspended()), "the previous good version");
        let problem = loaded.recovered_from_previous.unwrap();
        assert!(problem.contains("exceed the limit"), "{problem}");
        std::fs::File::create(store.previous_path()).unwrap().set_len(256 << 20).unwrap();
        assert!(matches!(store.load().unwrap_err(), StateError::Corrupt { .. }));
    }

    #[test]
    fn a_failed_write_leaves_the_old_state_readable() {
        let dir = tempfile::tempdir().unwrap();
        OsStorage.create_dir_all(&dir.path().join("orders")).unwrap();
        StateStore::new(OsStorage, dir.path()).save(&suspended()).unwrap();
        let mut later = suspended();
        later.last_sequence = 9;
        for step in 0..8 {
            let store = StateStore::new(FaultyStorage::new(OsStorage, Some(step)), dir.path());
            let result = store.save(&later);
            let loaded = StateStore::new(OsStorage, dir.path()).load().unwrap().state.unwrap();
            assert!(loaded == suspended() || loaded == later, "step {step}");
            if result.is_ok() {
                break;
            }
            StateStore::new(OsStorage, dir.path()).save(&suspended()).unwrap();
        }
    }
}
