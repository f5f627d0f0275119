//! The Khronos glTF Validator, pinned in `tools/gltf-validator` (installed by
//! `scripts/setup.sh --tests`), run under Node on GLB files. Tests that validate the GLBs
//! they make call [`validator`] and print SKIPPED when it is not there.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The validator script, when Node and the pinned package are both there; else why not.
pub fn validator() -> Result<PathBuf, String> {
    let dir = workspace().join("tools/gltf-validator");
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        return Err("node is not on PATH".into());
    }
    if !dir.join("node_modules/gltf-validator/package.json").is_file() {
        return Err(format!("the validator is not installed (run scripts/install-gltf-validator.sh) in {}", dir.display()));
    }
    Ok(dir.join("validate.mjs"))
}

/// Runs the validator on `files`: its exit status and one JSON report per file (with
/// `errors`, `warnings`, `infos`, `hints` and `messages`).
pub fn validate(script: &Path, files: &[PathBuf]) -> (i32, Vec<serde_json::Value>) {
    let output = Command::new("node").arg(script).args(files).output().expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), reports)
}

/// Asserts every report has no error and no warning (infos and hints are printed only).
pub fn assert_clean(reports: &[serde_json::Value]) {
    for report in reports {
        println!(
            "validator {}: {}: {} errors, {} warnings, {} infos, {} hints {}",
            report["validator"], report["file"], report["errors"], report["warnings"], report["infos"], report["hints"], report["messages"]
        );
        assert_eq!((report["errors"].as_u64(), report["warnings"].as_u64()), (Some(0), Some(0)), "{report}");
    }
}
