//! `Idempotency-Key` for job creation: the first request with a key records the job it
//! created (or found); a retry with the same key and the same request gets that job
//! again, a different request with the same key is refused.
//! The keys themselves are stored by `JobStore::idempotency_keys()` (infra).

use sha2::{Digest, Sha256};

/// Longest key accepted (the IETF draft suggests UUIDs; we allow any short token).
pub const MAX_KEY_LEN: usize = 255;

pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A fingerprint of what a request asks for, from its parts.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_fingerprints() {
        assert!(valid_key("3f1c2a9e-req-1"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
