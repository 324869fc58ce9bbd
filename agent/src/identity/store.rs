//! Where the device identity lives on flash, and how it changes safely.
//!
//! Layout under `<state_dir>/identity/`:
//! ```text
//! active              "current=gen-000002\nprevious=gen-000001\n"   (the only switch)
//! gen-000002/chain.pem  leaf first, then the rest of the chain      (0644)
//! gen-000002/key.pem    the private key                             (0600)
//! gen-000001/…          the previous identity, kept for rollback
//! pending/key.pem       a key made by `cert csr`, waiting for its certificate
//! ```
//! An install writes a new generation directory completely (each file
//! fsynced, then the directory), and only then replaces `active` atomically.
//! A power cut or error before that rename leaves the old identity active;
//! after it, the new one is active and the old one is `previous`. All I/O goes
//! through [`Storage`] so tests can fail every single step.

use std::io;
use std::path::{Path, PathBuf};

use cpe_common::durable::{write_atomic, Storage, MODE_PUBLIC, MODE_SECRET};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::material::{read_key_file, read_pem, MAX_INPUT_BYTES};

const ACTIVE: &str = "active";
const PENDING: &str = "pending";
const CHAIN_FILE: &str = "chain.pem";
const KEY_FILE: &str = "key.pem";
/// Largest `active` pointer file read (a few generation names).
const MAX_POINTER_BYTES: usize = 4096;

/// An identity as stored: certificate chain and private key.
#[derive(Debug)]
pub struct StoredIdentity {
    /// Generation name (`gen-NNNNNN`).
    pub generation: String,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// A failure of the identity store. Reading errors name the file to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O step failed; the previous identity is still in place.
    #[error("could not {action} {}: {source}; the previous identity is unchanged — check free space and permissions of the state directory", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A stored file is damaged.
    #[error("the stored identity file {} is damaged ({detail}); run `cpe-agent cert rollback` or import the certificate again", path.display())]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Rollback asked for but no previous identity exists.
    #[error("there is no previous identity to roll back to")]
    NoPrevious,
    /// An operation needing an identity found none.
    #[error("no identity is installed; import the institution certificate with `cpe-agent cert import`")]
    NoIdentity,
}

/// Which generations `active` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pointer {
    current: Option<String>,
    previous: Option<String>,
}

impl Pointer {
    fn parse(text: &str) -> Option<Self> {
        let mut pointer = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            if !is_generation_name(value) {
                return None;
            }
            match key.trim() {
                "current" => pointer.current = Some(value.to_owned()),
                "previous" => pointer.previous = Some(value.to_owned()),
                _ => return None,
            }
        }
        Some(pointer)
    }

    fn render(&self) -> String {
        let current = self.current.iter().map(|c| format!("current={c}\n"));
        let previous = self.previous.iter().map(|p| format!("previous={p}\n"));
        current.chain(previous).collect()
    }
}

fn is_generation_name(name: &str) -> bool {
    name.strip_prefix("gen-").is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn generation_number(name: &str) -> u32 {
    name.strip_prefix("gen-").and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The identity store of one state directory.
#[derive(Debug)]
pub struct IdentityStore<S> {
    storage: S,
    dir: PathBuf,
}

impl<S: Storage> IdentityStore<S> {
    /// The store under `<state_dir>/identity`.
    pub fn new(storage: S, state_dir: &Path) -> Self {
        Self { storage, dir: state_dir.join("identity") }
    }

    /// The directory holding the identity files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Installs `chain` + `key` as the new current identity; the old current
    /// becomes previous. Returns the new generation name.
    pub fn install(
        &self,
        chain: &[CertificateDer<'_>],
        key: &PrivateKeyDer<'_>,
    ) -> Result<String, StoreError> {
        let pointer = self.pointer()?;
        // After a rollback `previous` may be the newer generation: count past both.
        let newest =
            [&pointer.current, &pointer.previous].into_iter().flatten().map(|g| generation_number(g)).max();
        let next = newest.unwrap_or(0).saturating_add(1);
        let generation = format!("gen-{next:06}");
        let gen_dir = self.dir.join(&generation);
        // A directory of that name can only be left over from a failed install.
        if gen_dir.exists() {
            step("remove leftover", &gen_dir, self.storage.remove_dir_all(&gen_dir))?;
        }
        step("create", &gen_dir, self.storage.create_dir_all(&gen_dir))?;
        let key_path = gen_dir.join(KEY_FILE);
        step("write", &key_path, self.storage.write_synced(&key_path, key_pem(key).as_bytes(), MODE_SECRET))?;
        let chain_path = gen_dir.join(CHAIN_FILE);
        step(
            "write",
            &chain_path,
            self.storage.write_synced(&chain_path, chain_pem(chain).as_bytes(), MODE_PUBLIC),
        )?;
        step("sync", &gen_dir, self.storage.sync_dir(&gen_dir))?;
        step("sync", &self.dir, self.storage.sync_dir(&self.dir))?;
        let dropped = pointer.previous.clone();
        let new_pointer = Pointer { current: Some(generation.clone()), previous: pointer.current };
        self.write_pointer(&new_pointer)?;
        // Committed. Removing the identity that fell out of the window is
        // housekeeping: a failure leaves a stale directory, nothing worse.
        if let Some(old) = dropped.filter(|old| Some(old) != new_pointer.previous.as_ref()) {
            let old_dir = self.dir.join(old);
            if let Err(e) = self.scrub_dir(&old_dir) {
                tracing::warn!(dir = %old_dir.display(), error = %e, "could not remove an old identity generation");
            }
        }
        Ok(generation)
    }

    /// The current identity, if any.
    pub fn load_current(&self) -> Result<Option<StoredIdentity>, StoreError> {
        self.pointer()?.current.map(|g| self.load_generation(&g)).transpose()
    }

    /// The previous identity, if any.
    pub fn load_previous(&self) -> Result<Option<StoredIdentity>, StoreError> {
        self.pointer()?.previous.map(|g| self.load_generation(&g)).transpose()
    }

    /// Makes the previous identity current again (and the current previous).
    pub fn rollback(&self) -> Result<StoredIdentity, StoreError> {
        let pointer = self.pointer()?;
        let previous = pointer.previous.clone().ok_or(StoreError::NoPrevious)?;
        // Refuse to switch to something that does not load.
        let identity = self.load_generation(&previous)?;
        self.write_pointer(&Pointer { current: Some(previous), previous: pointer.current })?;
        Ok(identity)
    }

    /// Decommissions the device: overwrites every key with zeros, then
    /// removes all identity files. Returns how many keys were destroyed.
    pub fn wipe(&self) -> Result<usize, StoreError> {
        let mut destroyed = 0;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::Io { action: "list", path: self.dir.clone(), source: e }),
        };
        // Stop using the identity first, so a crash mid-wipe does not leave a
        // half-destroyed identity marked current.
        let active = self.dir.join(ACTIVE);
        if active.exists() {
            step("remove", &active, self.storage.remove_file(&active))?;
            step("sync", &self.dir, self.storage.sync_dir(&self.dir))?;
        }
        for path in entries.iter().filter(|p| p.is_dir()) {
            if path.join(KEY_FILE).exists() {
                destroyed += 1;
            }
            self.scrub_dir(path)?;
        }
        for path in entries.iter().filter(|p| p.is_file() && p.exists()) {
            step("remove", path, self.storage.remove_file(path))?;
        }
        step("sync", &self.dir, self.storage.sync_dir(&self.dir))?;
        Ok(destroyed)
    }

    /// Keeps a key made on the device until its certificate is imported.
    pub fn save_pending_key(&self, key: &PrivateKeyDer<'_>) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join(PENDING);
        step("create", &dir, self.storage.create_dir_all(&dir))?;
        let path = dir.join(KEY_FILE);
        step("write", &path, write_atomic(&self.storage, &path, key_pem(key).as_bytes(), MODE_SECRET))?;
        Ok(path)
    }

    /// The key waiting for its certificate, if any.
    pub fn load_pending_key(&self) -> Result<Option<PrivateKeyDer<'static>>, StoreError> {
        let path = self.dir.join(PENDING).join(KEY_FILE);
        match self.storage.read_within(&path, MAX_INPUT_BYTES) {
            Ok(bytes) => read_key_file(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { path, detail: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { action: "read", path, source: e }),
        }
    }

    /// Destroys the pending key once its certificate is installed.
    pub fn discard_pending_key(&self) -> Result<(), StoreError> {
        let dir = self.dir.join(PENDING);
        if dir.exists() {
            self.scrub_dir(&dir)?;
        }
        Ok(())
    }

    fn load_generation(&self, generation: &str) -> Result<StoredIdentity, StoreError> {
        let dir = self.dir.join(generation);
        let chain_path = dir.join(CHAIN_FILE);
        let chain_bytes = self.read(&chain_path)?;
        let chain = read_pem(&chain_bytes)
            .map_err(|e| StoreError::Corrupt { path: chain_path.clone(), detail: e.to_string() })?
            .certs;
        if chain.is_empty() {
            return Err(StoreError::Corrupt { path: chain_path, detail: "no certificate".into() });
        }
        let key_path = dir.join(KEY_FILE);
        let key = read_key_file(&self.read(&key_path)?)
            .map_err(|e| StoreError::Corrupt { path: key_path, detail: e.to_string() })?;
        Ok(StoredIdentity { generation: generation.to_owned(), chain, key })
    }

    fn pointer(&self) -> Result<Pointer, StoreError> {
        let path = self.dir.join(ACTIVE);
        match self.storage.read_within(&path, MAX_POINTER_BYTES) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(Pointer::parse)
                .ok_or_else(|| StoreError::Corrupt { path, detail: "not a generation pointer".into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Pointer::default()),
            Err(e) => Err(StoreError::Io { action: "read", path, source: e }),
        }
    }

    fn write_pointer(&self, pointer: &Pointer) -> Result<(), StoreError> {
        let path = self.dir.join(ACTIVE);
        step("switch", &path, write_atomic(&self.storage, &path, pointer.render().as_bytes(), MODE_PUBLIC))
    }

    /// Overwrites the key file of `dir` with zeros (fsynced) and removes `dir`.
    fn scrub_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let key_path = dir.join(KEY_FILE);
        if let Ok(meta) = std::fs::metadata(&key_path) {
            let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
            step("overwrite", &key_path, self.storage.write_synced(&key_path, &zeros, MODE_SECRET))?;
        }
        step("remove", dir, self.storage.remove_dir_all(dir))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        self.storage.read_within(path, MAX_INPUT_BYTES).map_err(|source| StoreError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })
    }
}

/// Names the step and path of a failed I/O operation.
fn step<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, StoreError> {
    result.map_err(|source| StoreError::Io { action, path: path.to_owned(), source })
}

fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> =
        chain.iter().map(|c| pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())).collect();
    pem::encode_many(&blocks)
}

/// PEM text of `key`, with the label of its encoding.
pub fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem::encode(&pem::Pem::new(label, key.secret_der().to_vec()))
}
