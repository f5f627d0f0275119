//! Object keys. The whole key scheme lives in [`keys`]: every artifact of a job is
//! under `jobs/<job_id>/<stage>/<name>`, so a retried stage writes the same keys
//! and overwrites instead of duplicating.

use super::BlobError;
use mono2mesh_core::{JobId, Stage};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest key S3 accepts.
const MAX_KEY_BYTES: usize = 1024;

/// A validated object key: relative, '/'-separated, no empty, `.` or `..` segments,
/// no segment starting with '.' (reserved for the local store's temporary files),
/// printable ASCII without backslashes. Safe to join onto a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobKey(String);

impl BlobKey {
    pub fn parse(key: impl Into<String>) -> Result<BlobKey, BlobError> {
        let key = key.into();
        let invalid = |reason| Err(BlobError::InvalidKey { key: key.clone(), reason });
        if key.is_empty() {
            return invalid("empty");
        }
        if key.len() > MAX_KEY_BYTES {
            return invalid("longer than 1024 bytes");
        }
        if !key.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return invalid("only printable ASCII without spaces or backslashes is allowed");
        }
        if key.split('/').any(|segment| segment.is_empty()) {
            return invalid("empty path segment (leading, trailing or doubled '/')");
        }
        if key.split('/').any(|segment| segment.starts_with('.')) {
            return invalid("path segments may not start with '.'");
        }
        Ok(BlobKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BlobKey {
    type Error = BlobError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        BlobKey::parse(value)
    }
}

impl From<BlobKey> for String {
    fn from(key: BlobKey) -> String {
        key.0
    }
}

impl AsRef<str> for BlobKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The key scheme. Nothing else in the workspace formats object keys by hand.
pub mod keys {
    use super::*;

    /// Segment under a job for the uploaded photo (it precedes every stage).
    pub const INPUT_SEGMENT: &str = "input";

    /// Well-known artifact names, so every stage reads what the previous one wrote.
    pub const GATED_IMAGE: &str = "gated.png";
    pub const GATE_REPORT: &str = "report.json";
    pub const CLASSIFICATION: &str = "classification.json";
    pub const VOXELS_BINVOX: &str = "voxels.binvox";
    pub const VOXEL_PROBABILITIES: &str = "probabilities.npy";
    pub const MESH_OBJ: &str = "mesh.obj";

    /// `jobs/<job_id>/`: everything a job stored.
    pub fn job_prefix(job: JobId) -> String {
        format!("jobs/{job}/")
    }

    /// `jobs/<job_id>/<stage>/`: everything one stage of a job stored.
    pub fn stage_prefix(job: JobId, stage: Stage) -> String {
        format!("jobs/{job}/{stage}/")
    }

    /// `jobs/<job_id>/input/<name>`: the submitted photo.
    pub fn input(job: JobId, name: &str) -> Result<BlobKey, BlobError> {
        BlobKey::parse(format!("jobs/{job}/{INPUT_SEGMENT}/{name}"))
    }

    /// `jobs/<job_id>/<stage>/<name>`: an artifact `stage` produced for `job`.
    pub fn stage_artifact(job: JobId, stage: Stage, name: &str) -> Result<BlobKey, BlobError> {
        BlobKey::parse(format!("{}{name}", stage_prefix(job, stage)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_deterministic_per_job_and_stage() {
        let job = JobId::new();
        let a = keys::stage_artifact(job, Stage::Reconstruct, keys::VOXELS_BINVOX).unwrap();
        let b = keys::stage_artifact(job, Stage::Reconstruct, keys::VOXELS_BINVOX).unwrap();
        assert_eq!(a, b, "a retried stage writes the same key");
        assert_eq!(a.as_str(), format!("jobs/{job}/reconstruct/voxels.binvox"));
        assert!(a.as_str().starts_with(&keys::stage_prefix(job, Stage::Reconstruct)));
        assert!(a.as_str().starts_with(&keys::job_prefix(job)));
        assert_eq!(a.file_name(), "voxels.binvox");
        assert_eq!(keys::input(job, "photo.jpg").unwrap().as_str(), format!("jobs/{job}/input/photo.jpg"));
        assert!(keys::input(job, "../../etc/passwd").is_err());
    }

    #[test]
    fn unsafe_keys_are_refused() {
        for bad in ["", "/abs", "a//b", "a/", "a/../b", "..", "a/.tmp", "a\\b", "a b", "é", "a\nb"] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(BlobKey::parse("x".repeat(1025)).is_err());
        for good in ["a", "jobs/1/gate/gated.png", "models/chair-v2.safetensors", "a/b.c/d=e"] {
            assert!(BlobKey::parse(good).is_ok(), "{good:?} must be accepted");
        }
        let json = serde_json::to_string(&BlobKey::parse("a/b").unwrap()).unwrap();
        assert_eq!(json, "\"a/b\"");
        assert!(serde_json::from_str::<BlobKey>("\"../x\"").is_err());
    }
}
