//! Black-box tests of the built binaries live in `tests/`; this library holds their helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Why the cluster suites cannot run here, if they cannot: no `KUBECONFIG`, no `kubectl`, or
/// no reachable cluster.
pub fn cluster_skip_reason() -> Option<String> {
    let Ok(kubeconfig) = std::env::var("KUBECONFIG") else {
        return Some("KUBECONFIG is not set".to_owned());
    };
    if !Path::new(&kubeconfig).is_file() {
        return Some(format!("KUBECONFIG={kubeconfig} is not a file"));
    }
    match Command::new("kubectl")
        .args(["version", "--request-timeout=5s"])
        .output()
    {
        Err(e) => Some(format!("kubectl cannot run: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "the cluster is not reachable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}
