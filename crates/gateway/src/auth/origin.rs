//! The Origin allow-list for WebSocket handshakes (`server.webSocket.allowedOrigins`), against
//! cross-site WebSocket hijacking: a page on another site can open a WebSocket to the gateway
//! with the user's cookies, but its browser always says where the page came from.
//!
//! Origins are compared as RFC 6454 §6.2 serializes them: `scheme://host[:port]`, scheme and
//! host in lower case, the scheme's default port left out. A handshake without `Origin` (a
//! program, not a browser) passes.

use http::header::{self, HeaderMap};
use thiserror::Error;

/// Which browser origins may open WebSocket sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (the default, and `*`).
    Any,
    /// Only these, serialized.
    Only(Vec<String>),
}

/// A configured origin that is not `scheme://host[:port]`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is not an origin such as https://app.example.com or http://localhost:8080 (scheme://host[:port], no path)")]
pub struct OriginError(pub String);

/// What the policy says about a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginVerdict {
    /// No `Origin`, or one the policy allows.
    Allowed,
    /// This `Origin` (as sent) is not allowed.
    Refused(String),
}

impl OriginPolicy {
    /// The policy for the configured entries: [`OriginPolicy::Any`] when one of them is `*`.
    ///
    /// # Errors
    ///
    /// [`OriginError`] for the first entry that is not an origin.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<OriginPolicy, OriginError> {
        if entries.iter().any(|entry| entry.as_ref() == "*") {
            return Ok(OriginPolicy::Any);
        }
        let origins = entries.iter().map(|entry| serialize(entry.as_ref()).ok_or_else(|| OriginError(entry.as_ref().to_owned()))).collect::<Result<_, _>>()?;
        Ok(OriginPolicy::Only(origins))
    }

    /// Checks the `Origin` of a handshake's `headers`. An `Origin` that cannot be read as one is
    /// refused like any origin not in the list.
    pub fn check(&self, headers: &HeaderMap) -> OriginVerdict {
        let OriginPolicy::Only(allowed) = self else {
            return OriginVerdict::Allowed;
        };
        let Some(value) = headers.get(header::ORIGIN) else {
            return OriginVerdict::Allowed;
        };
        let origin = value.to_str().ok().and_then(serialize);
        match origin {
            Some(origin) if allowed.contains(&origin) => OriginVerdict::Allowed,
            _ => OriginVerdict::Refused(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        }
    }
}

/// The RFC 6454 serialization of `text`, or `None` when it is not `scheme://host[:port]` (or the
/// opaque origin `null`).
fn serialize(text: &str) -> Option<String> {
    let text = text.trim();
    if text == "null" {
        return Some(text.to_owned());
    }
    let (scheme, authority) = text.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic()) && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    // A port follows the last colon, unless that colon is inside an IPv6 literal.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() || (host.starts_with('[') != host.ends_with(']')) {
        return None;
    }
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(port) => {
            let port: u16 = port.parse().ok().filter(|_| port.chars().all(|c| c.is_ascii_digit()))?;
            if Some(port) == default_port {
                Some(format!("{scheme}://{host}"))
            } else {
                Some(format!("{scheme}://{host}:{port}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(policy: &OriginPolicy, origin: Option<&str>) -> OriginVerdict {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        policy.check(&headers)
    }

    #[test]
    fn serializes_as_rfc_6454() {
        assert_eq!(serialize("HTTPS://App.Example.COM"), Some("https://app.example.com".into()));
        assert_eq!(serialize("https://app.example.com:443"), Some("https://app.example.com".into()));
        assert_eq!(serialize("http://localhost:8080"), Some("http://localhost:8080".into()));
        assert_eq!(serialize("http://localhost:80"), Some("http://localhost".into()));
        assert_eq!(serialize("http://[::1]:8080"), Some("http://[::1]:8080".into()));
        assert_eq!(serialize("http://[::1]"), Some("http://[::1]".into()));
        assert_eq!(serialize("null"), Some("null".into()));
        for bad in ["app.example.com", "https://", "https://app.example.com/", "https://a.example/path", "https://user@a.example", "https://a.example:99999", "https://a.example:+1", "1http://a.example", "http://[::1"] {
            assert_eq!(serialize(bad), None, "{bad}");
        }
    }

    #[test]
    fn any_allows_everything() {
        assert_eq!(OriginPolicy::parse(&["https://a.example", "*"]), Ok(OriginPolicy::Any));
        assert_eq!(check(&OriginPolicy::Any, Some("https://evil.example")), OriginVerdict::Allowed);
    }

    #[test]
    fn a_list_allows_its_origins_and_handshakes_without_origin() {
        let policy = OriginPolicy::parse(&["https://App.example.com", "http://localhost:8080"]).unwrap();
        assert_eq!(check(&policy, None), OriginVerdict::Allowed);
        assert_eq!(check(&policy, Some("https://app.example.com")), OriginVerdict::Allowed);
        assert_eq!(check(&policy, Some("https://APP.example.com:443")), OriginVerdict::Allowed);
        assert_eq!(check(&policy, Some("http://localhost:8080")), OriginVerdict::Allowed);
        for refused in ["http://app.example.com", "https://app.example.com:8443", "http://localhost", "https://evil.example", "null", "garbage"] {
            assert_eq!(check(&policy, Some(refused)), OriginVerdict::Refused(refused.into()), "{refused}");
        }
    }

    #[test]
    fn a_bad_entry_is_named() {
        assert_eq!(OriginPolicy::parse(&["https://a.example", "a.example"]), Err(OriginError("a.example".into())));
    }
}
