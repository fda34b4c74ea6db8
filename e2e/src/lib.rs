//! Black-box tests of the built binaries live in `tests/`; this library holds their helpers.

use std::path::{Path, PathBuf};

pub mod realm;
pub mod served;
pub mod totp;
pub mod upstream;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Path of a workspace binary built by `cargo build --bins` in the same profile as the running
/// test (test executables live in `target/<profile>/deps/`, binaries one level up).
///
/// Cargo only builds other packages' binaries on request, so `make test` builds them first;
/// a missing binary is a setup error and says how to fix it.
pub fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate the test binary: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary location {}", exe.display()))?;
    let path = profile_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --workspace --bins` (make test does) before these tests",
            path.display()
        ))
    }
}

/// Why the cluster suites cannot run here, if they cannot. `scripts/test.sh` starts the test
/// control plane and sets `KUBECONFIG`, or says why it could not (no Go toolchain) in
/// `PORTCULLIS_TESTCLUSTER_SKIP`; a `KUBECONFIG` set by the user points the suites at that
/// cluster instead.
pub fn cluster_skip_reason() -> Option<String> {
    if let Ok(reason) = std::env::var("PORTCULLIS_TESTCLUSTER_SKIP") {
        return Some(reason);
    }
    let Ok(kubeconfig) = std::env::var("KUBECONFIG") else {
        return Some(
            "KUBECONFIG is not set: scripts/test.sh (make test) starts the test control plane and sets it"
                .to_owned(),
        );
    };
    if !Path::new(&kubeconfig).is_file() {
        return Some(format!("KUBECONFIG={kubeconfig} is not a file"));
    }
    None
}

/// Says loudly that `what` did not run and why. Written to stderr directly, not through
/// `eprintln!`, so libtest's output capture does not hide it in an ordinary `cargo test` run.
pub fn skipped(what: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {what}: {reason} ***\n");
}
