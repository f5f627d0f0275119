//! What the deployment-file tests (compose.yaml, deploy/k8s) check against: the repository
//! and the binaries its packages build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Binary names declared by the workspace's packages.
pub fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for manifest in ["mono2mesh", "workers/gate", "workers/classify", "workers/reconstruct", "workers/refine"] {
        let text = std::fs::read_to_string(repo().join(manifest).join("Cargo.toml")).unwrap();
        let mut in_bin = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && line.starts_with("name") {
                bins.insert(line.split('"').nth(1).unwrap().to_string());
            }
        }
    }
    bins
}
