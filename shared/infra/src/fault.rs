//! A test-only fault switch, for proving that the pipeline survives a photo that kills
//! its worker. It does nothing unless `MONO2MESH_TEST_FAULT` is set, to a comma-separated
//! list of `ACTION@STAGE:SHA256`, where ACTION is `abort` (the process dies at once, as
//! on a segfault or an OOM kill) or `panic`, STAGE is the stage that misbehaves and
//! SHA256 the content hash of the photo (the job's `content_hash`; a prefix of at
//! least 12 characters is enough). Example:
//! `MONO2MESH_TEST_FAULT=abort@gate:9f86d081884c,panic@classify:2c26b46b68ff`.
//!
//! Read once per process; a malformed entry is ignored with a warning.

use mono2mesh_core::Stage;
use std::sync::OnceLock;

pub const FAULT_ENV: &str = "MONO2MESH_TEST_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Abort,
    Panic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub action: FaultAction,
    pub stage: Stage,
    pub hash_prefix: String,
}

/// Parses the switch's value; entries that do not parse are returned as errors.
pub fn parse(value: &str) -> (Vec<Fault>, Vec<String>) {
    let mut faults = Vec::new();
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = (|| {
            let (action, rest) = entry.split_once('@')?;
            let (stage, hash) = rest.split_once(':')?;
            let action = match action {
                "abort" => FaultAction::Abort,
                "panic" => FaultAction::Panic,
                _ => return None,
            };
            let hash = hash.to_ascii_lowercase();
            // Hex, or a UUID's hex and dashes (what test rigs use as a content hash).
            (hash.len() >= 12 && hash.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(())?;
            Some(Fault { action, stage: stage.parse().ok()?, hash_prefix: hash })
        })();
        match parsed {
            Some(fault) => faults.push(fault),
            None => bad.push(entry.to_string()),
        }
    }
    (faults, bad)
}

fn configured() -> &'static [Fault] {
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let Ok(value) = std::env::var(FAULT_ENV) else { return Vec::new() };
        let (faults, bad) = parse(&value);
        for entry in bad {
            tracing::warn!(%entry, "ignoring malformed {FAULT_ENV} entry (want ACTION@STAGE:SHA256)");
        }
        if !faults.is_empty() {
            tracing::warn!(?faults, "TEST FAULT SWITCH ARMED: this process will misbehave on purpose");
        }
        faults
    })
}

/// Misbehaves as configured when `stage` starts on a photo with `content_hash`.
pub fn inject(stage: Stage, content_hash: &str) {
    for fault in configured() {
        if fault.stage == stage && content_hash.to_ascii_lowercase().starts_with(&fault.hash_prefix) {
            match fault.action {
                FaultAction::Abort => {
                    tracing::error!(%stage, content_hash, "test fault: aborting the process");
                    std::process::abort();
                }
                FaultAction::Panic => panic!("test fault: forced panic in {stage} for {content_hash}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_parses_actions_stages_and_hash_prefixes() {
        let (faults, bad) = parse("abort@gate:9F86D081884C7D65, panic@classify:2c26b46b68ffc68f,nonsense,abort@gate:abc,kill@gate:9f86d081884c");
        assert_eq!(
            faults,
            vec![
                Fault { action: FaultAction::Abort, stage: Stage::Gate, hash_prefix: "9f86d081884c7d65".into() },
                Fault { action: FaultAction::Panic, stage: Stage::Classify, hash_prefix: "2c26b46b68ffc68f".into() },
            ]
        );
        assert_eq!(bad, ["nonsense", "abort@gate:abc", "kill@gate:9f86d081884c"], "short hashes and unknown actions are refused");
    }
}
