//! Crash-safe file writes.
//!
//! A router loses power without warning; a half-written key or certificate
//! must never replace a good one. [`write_atomic`] writes a temporary file,
//! fsyncs it, renames it over the target and fsyncs the directory, so that a
//! reader sees either the old or the new content. Every step goes through the
//! [`Storage`] trait: production uses [`OsStorage`], tests wrap it in
//! [`FaultyStorage`] to fail any chosen step and prove nothing is lost.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// File mode for private keys and other secrets.
pub const MODE_SECRET: u32 = 0o600;
/// File mode for public material (certificates, state pointers).
pub const MODE_PUBLIC: u32 = 0o644;

/// The file-system operations a durable store is built from.
pub trait Storage {
    /// Creates `dir` and its parents (mode 0700 for new directories).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates or truncates `path` with `mode`, writes `bytes`, fsyncs the file.
    fn write_synced(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs the directory `dir`, making renames and creations in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes the directory `dir` and everything below it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Reads the whole file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads the file `path`, refusing one larger than `limit` bytes after
    /// reading at most `limit + 1` (see [`crate::bounded`]).
    fn read_within(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>>;
}

/// [`Storage`] on the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }

    fn write_synced(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
        // The file may have existed with other permissions (a leftover temp file).
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_within(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        crate::bounded::read_file(path, limit)
    }
}

/// The temporary sibling that [`write_atomic`] writes before renaming.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the
/// old or the new content: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_path_for(path);
    storage.write_synced(&tmp, bytes, mode)?;
    storage.rename(&tmp, path)?;
    storage.sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A [`Storage`] that fails its N-th mutating operation (counting from 0) with
/// an I/O error and passes everything else to the inner storage. Reads never
/// fail, so that a test can inspect the state after the injected failure.
#[derive(Debug)]
pub struct FaultyStorage<S> {
    inner: S,
    fail_at: Option<usize>,
    count: AtomicUsize,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner`, failing the mutating operation number `fail_at`.
    pub fn new(inner: S, fail_at: Option<usize>) -> Self {
        Self { inner, fail_at, count: AtomicUsize::new(0) }
    }

    /// How many mutating operations were attempted so far.
    pub fn operations(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn step(&self, what: &str, path: &Path) -> io::Result<()> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_at {
            Err(io::Error::other(format!("injected failure at step {n}: {what} {}", path.display())))
        } else {
            Ok(())
        }
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.step("create_dir_all", dir)?;
        self.inner.create_dir_all(dir)
    }

    fn write_synced(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.step("write_synced", path)?;
        self.inner.write_synced(path, bytes, mode)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step("rename", from)?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step("sync_dir", dir)?;
        self.inner.sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step("remove_file", path)?;
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.step("remove_dir_all", dir)?;
        self.inner.remove_dir_all(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn read_within(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.inner.read_within(path, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_replaces_content_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&OsStorage, &path, b"old", MODE_SECRET).unwrap();
        write_atomic(&OsStorage, &path, b"new", MODE_SECRET).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!temp_path_for(&path).exists());
    }

    #[test]
    fn failure_at_each_step_keeps_old_or_new_content_never_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&OsStorage, &path, b"old", MODE_PUBLIC).unwrap();
        for step in 0..3 {
            let faulty = FaultyStorage::new(OsStorage, Some(step));
            let result = write_atomic(&faulty, &path, b"new", MODE_PUBLIC);
            assert!(result.is_err(), "step {step} must fail");
            let content = fs::read(&path).unwrap();
            // Before the rename the old content stays; after it, the new one.
            let expected: &[u8] = if step < 2 { b"old" } else { b"new" };
            assert_eq!(content, expected, "step {step}");
            write_atomic(&OsStorage, &path, b"old", MODE_PUBLIC).unwrap();
        }
    }
}
