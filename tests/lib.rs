//! End-to-end tests that drive the built `cpe-agent` and `cpe-provision`
//! binaries the way a field engineer and a carrier operator do. The tests
//! live in `tests/tests/*.rs`; this library only finds the binaries.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Path of a workspace binary built next to the running test
/// (`target/<profile>/<name>`). `scripts/test.sh` builds them first with
/// `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(std::path::Path::parent).map(PathBuf::from).unwrap_or_default();
    dir.join(name)
}
