//! Helpers for Strata's cross-crate integration tests, which start real Strata processes.
//!
//! The binaries are found next to the test executable's profile directory, so run
//! `cargo build --workspace --bins` before `cargo test --workspace` (the README's test
//! command does both).

use std::path::PathBuf;

/// The path of a workspace binary built in the same profile as the running test.
///
/// # Panics
/// If the binary has not been built, with a message saying how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}
