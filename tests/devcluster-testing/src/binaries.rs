//! The project's release binaries, built by `make build` (`cargo build --release --workspace
//! --bins`) into `$WA_BIN_DIR`: tests run them and never build them.

use std::path::{Path, PathBuf};

/// The command that builds what [`release_program`] looks for.
const BUILD: &str = "make build (cargo build --release --workspace --bins)";

/// Where the project's release binaries are: `$WA_BIN_DIR`, `$CARGO_TARGET_DIR/release`, or
/// the directory of the running test binary's profile (`target/release/deps/..`).
pub fn release_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WA_BIN_DIR").filter(|v| !v.is_empty()) {
        return d.into();
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("release");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release"))
        })
}

/// A program of the project's release build in [`release_dir`], for a test that runs a
/// package's binary (the operator's tests run the hub, the plugin's the agent); panics, naming
/// the missing binary and the command that builds it, when it is not built.
pub fn release_program(name: &str) -> PathBuf {
    find_release_program(name).unwrap_or_else(|| {
        panic!(
            "{} is not built: run `{BUILD}`, or point WA_BIN_DIR at the directory that holds it",
            release_dir().join(name).display()
        )
    })
}

/// As [`release_program`], None when it is not built (for a test that skips then).
pub fn find_release_program(name: &str) -> Option<PathBuf> {
    Some(release_dir().join(name)).filter(|p| p.is_file())
}

/// The `devcluster` launcher: `$DEVCLUSTER_BIN`, else the release build's, which must also
/// hold `devcluster-testpod` (the test pod image is built from it).
pub(crate) fn devcluster_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("DEVCLUSTER_BIN").filter(|v| !v.is_empty()) {
        return p.into();
    }
    release_program("devcluster-testpod");
    release_program("devcluster")
}

/// A binary of the package under test: cargo builds a package's binaries for its integration
/// tests into the profile's directory, the parent of the test binary's `deps/` (what
/// `env!("CARGO_BIN_EXE_<name>")` names in the package's own tests).
pub(crate) fn package_program(name: &str) -> PathBuf {
    let p = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)))
        .unwrap_or_else(|| PathBuf::from(name));
    assert!(
        p.is_file(),
        "{} is not built: run the package's tests with cargo test (it builds the package's binaries)",
        p.display()
    );
    p
}
