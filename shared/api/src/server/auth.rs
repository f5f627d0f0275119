//! Who may call what. Every route has an [`Access`]: `/healthz`, `/openapi.yaml` and the
//! status page's shell (which holds no data) are open; every `/v1` GET needs a token
//! with read scope, every POST one with write scope. A write token can read too.
//!
//! Checked by a per-route layer built from `Op::access` (see `router`), so a route
//! cannot be added without saying who may call it.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mono2mesh_infra::secret::SecretString;
use std::sync::Arc;

use super::{ApiConfig, ApiError};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Open,
    Read,
    Write,
}

impl Access {
    /// The scope name used in docs/openapi.yaml (`x-scope`).
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Access::Open => None,
            Access::Read => Some("read"),
            Access::Write => Some("write"),
        }
    }
}

/// Shortest token `serve` accepts.
pub const MIN_TOKEN_LEN: usize = 24;
/// Fewest different characters a token must use (catches `aaaa…`, `abab…`).
const MIN_DISTINCT_CHARS: usize = 8;
/// Words that mark a token someone typed in place of a real one. Compared against
/// the token lowercased with everything but letters and digits removed.
const PLACEHOLDERS: [&str; 12] = [
    "changeme",
    "replaceme",
    "secret",
    "token",
    "password",
    "passwd",
    "example",
    "placeholder",
    "default",
    "letmein",
    "qwerty",
    "xxxxxx",
];
/// How to make a good token, for the refusal message.
pub const MAKE_A_TOKEN: &str = "make one with `openssl rand -hex 32`";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakToken {
    #[error("it is {len} characters long; at least {MIN_TOKEN_LEN} are needed")]
    TooShort { len: usize },
    #[error("it contains the placeholder {word:?}")]
    Placeholder { word: &'static str },
    #[error("it uses only {distinct} different characters")]
    Repetitive { distinct: usize },
    #[error("it has characters other than printable ASCII, which an Authorization header cannot carry")]
    NotPrintable,
}

/// Refuses tokens an attacker could guess: short ones, placeholders, repetitions.
pub fn check_token_strength(token: &str) -> Result<(), WeakToken> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WeakToken::NotPrintable);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(WeakToken::TooShort { len: token.len() });
    }
    let normalized: String = token.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    if let Some(word) = PLACEHOLDERS.into_iter().find(|w| normalized.contains(w)) {
        return Err(WeakToken::Placeholder { word });
    }
    let distinct = token.bytes().collect::<std::collections::BTreeSet<u8>>().len();
    if distinct < MIN_DISTINCT_CHARS {
        return Err(WeakToken::Repetitive { distinct });
    }
    Ok(())
}

/// Compares in time independent of where the strings differ.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `token` is one of `accepted`; every candidate is compared (no early exit
/// on a match), so the time taken says nothing about which one matched.
fn any_matches(accepted: &[SecretString], token: &str) -> bool {
    accepted.iter().fold(false, |found, t| found | constant_time_eq(t.expose().as_bytes(), token.as_bytes()))
}

/// The scope the request's bearer token grants.
fn granted(config: &ApiConfig, headers: &HeaderMap) -> Result<Access, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("this endpoint needs an `Authorization: Bearer <token>` header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if any_matches(&config.tokens, token) {
        Ok(Access::Write)
    } else if any_matches(&config.read_tokens, token) {
        Ok(Access::Read)
    } else {
        Err(ApiError::unauthorized("the bearer token is not accepted"))
    }
}

/// Decides a request to a route that needs `needed`.
pub fn authorize(config: &ApiConfig, needed: Access, headers: &HeaderMap) -> Result<(), ApiError> {
    // No token configured at all: `serve --no-auth` (local experiments), all open.
    if needed == Access::Open || (config.tokens.is_empty() && config.read_tokens.is_empty()) {
        return Ok(());
    }
    let has = granted(config, headers)?;
    if has >= needed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token has read scope only; this endpoint needs a token with write scope",
        ))
    }
}

/// State of one route's guard layer.
#[derive(Clone)]
pub(super) struct Guard {
    pub config: Arc<ApiConfig>,
    pub needed: Access,
}

/// Checks the token before anything else runs (the body, a photo upload, is not read
/// for a caller without one), then refuses a declared body over the limit before
/// reading any of it.
pub(super) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Err(e) = authorize(&guard.config, guard.needed, request.headers()) {
        return e.into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > guard.config.max_body_bytes as u64) {
        return super::handlers::too_large(guard.config.max_body_bytes).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const WRITE: &str = "9f2c4e1a7b3d5f60a8c2e4b6d8f0a1c3";
    const READ: &str = "0b1d3f5a7c9e2468ace13579bdf02468";

    fn config() -> ApiConfig {
        ApiConfig {
            tokens: vec![SecretString::new(WRITE)],
            read_tokens: vec![SecretString::new(READ)],
            ..ApiConfig::default()
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    #[test]
    fn scopes_are_ordered_and_checked() {
        let c = config();
        let status = |needed, headers: &HeaderMap| authorize(&c, needed, headers).err().map(|e| e.status.as_u16());
        assert_eq!(status(Access::Read, &bearer(WRITE)), None, "a write token reads");
        assert_eq!(status(Access::Write, &bearer(WRITE)), None);
        assert_eq!(status(Access::Read, &bearer(READ)), None);
        assert_eq!(status(Access::Write, &bearer(READ)), Some(403), "a read token cannot write");
        assert_eq!(status(Access::Read, &HeaderMap::new()), Some(401));
        assert_eq!(status(Access::Read, &bearer("0b1d3f5a7c9e2468ace13579bdf0246")), Some(401), "a prefix is not the token");
        assert_eq!(status(Access::Open, &HeaderMap::new()), None);
        let open = ApiConfig::default();
        assert!(authorize(&open, Access::Write, &HeaderMap::new()).is_ok(), "no tokens configured: --no-auth");
        // Only read tokens configured: nothing can write.
        let read_only = ApiConfig { read_tokens: vec![SecretString::new(READ)], ..ApiConfig::default() };
        assert_eq!(authorize(&read_only, Access::Write, &bearer(READ)).unwrap_err().status.as_u16(), 403);
    }

    #[test]
    fn weak_tokens_are_refused_and_random_ones_pass() {
        use WeakToken::*;
        assert_eq!(check_token_strength("t"), Err(TooShort { len: 1 }));
        assert_eq!(check_token_strength("change-me"), Err(TooShort { len: 9 }));
        assert_eq!(check_token_strength("0123456789abcdef012345"), Err(TooShort { len: 22 }));
        assert_eq!(check_token_strength("please-Change-Me-before-prod-42"), Err(Placeholder { word: "changeme" }));
        assert_eq!(check_token_strength("my-super-SECRET-value-2024xyz"), Err(Placeholder { word: "secret" }));
        assert_eq!(check_token_strength("serve-test-token-0123456789"), Err(Placeholder { word: "token" }));
        assert_eq!(check_token_strength("Password1234567890abcdefg"), Err(Placeholder { word: "password" }));
        assert_eq!(check_token_strength(&"a".repeat(40)), Err(Repetitive { distinct: 1 }));
        assert_eq!(check_token_strength(&"ab12".repeat(10)), Err(Repetitive { distinct: 4 }));
        assert_eq!(check_token_strength("0123456789abcdef 0123456789"), Err(NotPrintable));
        assert_eq!(check_token_strength("ünïcödé-ünïcödé-ünïcödé-ü"), Err(NotPrintable));
        // What `openssl rand -hex 32` and `openssl rand -base64 24` make.
        assert_eq!(check_token_strength("3f9c2b7e41d08a65c3b1e9f07d2a4c8e5b6f1a0d9e3c7b2a8f4d6e1c0b9a7f35"), Ok(()));
        assert_eq!(check_token_strength("q3Zr8+Kc1vYp/Tn0LwXe5HbJ2mFdUg9A"), Ok(()));
        assert_eq!(check_token_strength(WRITE), Ok(()));
        assert_eq!(check_token_strength(READ), Ok(()));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        let accepted = [SecretString::new("a"), SecretString::new("b")];
        assert!(any_matches(&accepted, "b") && !any_matches(&accepted, "c"));
    }
}
