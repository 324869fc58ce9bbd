//! Reading files and bodies with a size limit.
//!
//! A router has 128 MiB of memory: a file or body must never be read whole
//! before its size is checked. Everything here reads at most `limit + 1`
//! bytes, so an oversized input is refused after holding `limit + 1` bytes
//! at most, whatever its real size (a 256 MiB order file, an endless pipe).
//! The refusal is an [`io::Error`] of kind [`io::ErrorKind::FileTooLarge`]
//! that names the limit, so callers keep their own error types.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The error of an input larger than `limit` bytes.
pub fn too_large(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the limit of {limit} bytes (not read further)"),
    )
}

/// Whether `error` is the refusal of an oversized input ([`too_large`]).
pub fn is_too_large(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::FileTooLarge
}

/// Reads `reader` to its end, refusing more than `limit` bytes after reading
/// at most `limit + 1`.
pub fn read_within(reader: impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// Reads the file `path`, refusing more than `limit` bytes (see [`read_within`]).
pub fn read_file(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    read_within(File::open(path)?, limit)
}

/// [`read_file`] as UTF-8 text (invalid UTF-8 is [`io::ErrorKind::InvalidData`]).
pub fn read_text(path: &Path, limit: usize) -> io::Result<String> {
    String::from_utf8(read_file(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Appends `chunk` (the next piece of a streamed body) to `body`, refusing to
/// let it grow past `limit` bytes.
pub fn extend_within(body: &mut Vec<u8>, chunk: &[u8], limit: usize) -> io::Result<()> {
    if body.len().saturating_add(chunk.len()) > limit {
        return Err(too_large(limit));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Counts the bytes a reader hands out.
    struct Counting<'a, R> {
        inner: R,
        read: &'a Cell<usize>,
    }

    impl<R: Read> Read for Counting<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn an_endless_input_is_refused_after_limit_plus_one_bytes() {
        let read = Cell::new(0);
        let endless = Counting { inner: io::repeat(7), read: &read };
        let err = read_within(endless, 4096).unwrap_err();
        assert!(is_too_large(&err), "{err}");
        assert!(err.to_string().contains("4096"), "{err}");
        assert_eq!(read.get(), 4097, "read no more than the limit + 1");
    }

    #[test]
    fn a_sparse_256_mib_file_is_refused_without_being_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        File::create(&path).unwrap().set_len(256 << 20).unwrap();
        let read = Cell::new(0);
        let counted = Counting { inner: File::open(&path).unwrap(), read: &read };
        assert!(is_too_large(&read_within(counted, 8192).unwrap_err()));
        assert!(read.get() <= 8193, "{} bytes read", read.get());
        assert!(is_too_large(&read_file(&path, 8192).unwrap_err()));
    }

    #[test]
    fn inputs_up_to_the_limit_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok");
        std::fs::write(&path, "ちょうど").unwrap();
        assert_eq!(read_text(&path, 12).unwrap(), "ちょうど");
        assert!(is_too_large(&read_text(&path, 11).unwrap_err()));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(read_text(&path, 12).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_file(&dir.path().join("none"), 1).unwrap_err().kind(), io::ErrorKind::NotFound);
        let mut body = b"ab".to_vec();
        extend_within(&mut body, b"cd", 4).unwrap();
        assert!(is_too_large(&extend_within(&mut body, b"e", 4).unwrap_err()));
        assert_eq!(body, b"abcd", "a refused chunk is not appended");
    }
}
