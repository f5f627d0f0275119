//! Which webhook URLs may be called. Callers choose them, so the dispatcher must not
//! become their way into the private network it runs in (SSRF): unless
//! `webhook.allow_private_networks` is set, a host that is, or resolves only to, a
//! non-public address is refused, IP literals at submission and names in the HTTP
//! client's own resolver, on the addresses it then connects to.

use std::net::{IpAddr, SocketAddr};

use super::WebhookError;

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2000;

/// Checks a webhook URL given at submission or in the config.
pub fn validate_url(url: &str) -> Result<(), WebhookError> {
    let bad = || WebhookError::InvalidUrl(url.to_string());
    if url.len() > MAX_URL_LEN || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let parsed: reqwest::Url = url.parse().map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(())
}

/// The address of a URL host that is an IP literal (IPv6 hosts come bracketed).
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The host of `url` when it is an IP literal that is not public (a name is not
/// resolved here: the dispatcher checks names when it calls).
pub fn non_public_literal(url: &str) -> Option<IpAddr> {
    let parsed: reqwest::Url = url.parse().ok()?;
    host_ip(parsed.host_str()?).filter(|ip| !is_public(*ip))
}

/// Whether `ip` is an address on the public internet: not loopback, private (RFC 1918,
/// unique local), link-local (169.254/16 holds cloud metadata services), shared
/// (100.64/10), unspecified, broadcast, multicast or documentation; IPv4 inside IPv6
/// is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// A webhook host that is, or resolves only to, a non-public address.
#[derive(Debug, thiserror::Error)]
#[error("refused: {host} is not a public address (set webhook.allow_private_networks to call private networks)")]
pub(super) struct NotPublic {
    /// The address, or the name with the address it resolved to.
    pub(super) host: String,
}

/// The refusal behind a failed call, if the resolver refused its host.
pub(super) fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a NotPublic> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<NotPublic>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

/// The webhook client's resolver: the system's answers, minus non-public addresses;
/// an error when none is left, so the client never connects to one.
pub(super) struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first = resolved.first().map(SocketAddr::ip);
            let public: Vec<SocketAddr> = resolved.into_iter().filter(|a| is_public(a.ip())).collect();
            if let (true, Some(ip)) = (public.is_empty(), first) {
                let refused = NotPublic { host: format!("{host} ({ip})") };
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
            "255.255.255.255", "224.0.0.1", "192.0.2.1", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1",
            "::ffff:169.254.169.254", "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} must not count as public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn webhook_urls_are_checked() {
        for good in ["https://shop.example/hooks/m2m", "http://127.0.0.1:9000/x?y=1"] {
            assert!(validate_url(good).is_ok(), "{good}");
        }
        for bad in ["", "shop.example/hook", "ftp://shop.example/", "https://", "http://a b/", "javascript:alert(1)"] {
            assert!(validate_url(bad).is_err(), "{bad:?}");
        }
        assert!(validate_url(&format!("https://a.example/{}", "x".repeat(MAX_URL_LEN))).is_err());
    }
}
