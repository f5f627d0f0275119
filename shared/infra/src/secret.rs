//! Values that must never reach a log line: secret keys, passwords, URLs with
//! credentials. `Debug`, `Display` and `Serialize` all redact; the real value is
//! only reachable through `expose()`, which makes every use greppable.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const REDACTED: &str = "[redacted]";

/// A secret string (password, secret access key). Printed as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The real value, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

/// A connection URL that may carry a password (`postgres://user:pw@host/db`,
/// `amqp://guest:guest@host`). Printed with the password replaced, so logs still
/// say which host and user a worker talks to.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        SecretUrl(value.into())
    }

    /// The real URL, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        redact_url_password(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretUrl)
    }
}

/// Replaces the password in `scheme://user:password@host...` and leaves every other
/// URL untouched. Query-string secrets (`?password=`) are redacted wholesale, since
/// their position is not known.
pub fn redact_url_password(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/', '?' or '#'; userinfo ends at its last '@'.
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}@{host}{tail}"),
                    None => url.to_string(),
                },
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    if let Some(query_start) = out.find('?') {
        if out[query_start..].to_ascii_lowercase().contains("password") {
            out.truncate(query_start);
            out.push('?');
            out.push_str(REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_never_prints_its_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
        let back: SecretString = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn url_passwords_are_masked_but_hosts_kept() {
        let u = SecretUrl::new("amqp://guest:s3cret@rabbit:5672/%2f");
        assert_eq!(u.to_string(), "amqp://guest:[redacted]@rabbit:5672/%2f");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&u).unwrap().contains("s3cret"));
        assert_eq!(u.expose(), "amqp://guest:s3cret@rabbit:5672/%2f");
        // '@' inside the password: userinfo ends at the last '@' of the authority
        assert_eq!(
            redact_url_password("postgres://me:p@ss@db/x"),
            "postgres://me:[redacted]@db/x"
        );
        assert_eq!(redact_url_password("postgres://postgres@127.0.0.1:5432/m"), "postgres://postgres@127.0.0.1:5432/m");
        assert_eq!(redact_url_password("not a url"), "not a url");
        assert_eq!(redact_url_password("postgres://db/x?user=a&password=b"), "postgres://db/x?[redacted]");
    }
}
