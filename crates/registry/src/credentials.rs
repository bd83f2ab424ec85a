//! Basic credentials: the check a registry may require of its clients (`Authorization: Basic`), and
//! the header itself, read and written.
//!
//! The registry does not know where passwords live: the gateway hands it a [`CheckCredentials`]
//! backed by its htpasswd file. Eureka clients send the credential of a service URL written as
//! `http://USER:PASSWORD@HOST:PORT/eureka`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};

/// Decides whether a Basic credential may use the registry.
pub trait CheckCredentials: Send + Sync + fmt::Debug {
    /// Whether `user` with `password` is let in. May be slow (bcrypt): it is awaited off the
    /// registry's locks.
    fn check<'a>(&'a self, user: &'a str, password: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// A Basic credential as sent. `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Basic {
    /// The credential of a request's `Authorization: Basic` header, if it has a well-formed one:
    /// base64 of UTF-8 `user:password` (RFC 7617; the scheme name is case-insensitive).
    pub fn from_headers(headers: &HeaderMap) -> Option<Basic> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Basic { user: user.to_owned(), password: password.to_owned() })
    }

    /// The `Authorization` header value carrying this credential, marked sensitive so that it is
    /// never shown by `Debug` or compressed into HTTP/2 tables.
    pub fn header_value(&self) -> HeaderValue {
        let encoded = STANDARD.encode(format!("{}:{}", self.user, self.password));
        // Base64 is always a valid header value.
        let mut value = HeaderValue::try_from(format!("Basic {encoded}")).unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        value.set_sensitive(true);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn reads_and_writes_the_header() {
        let basic = Basic { user: "eureka".into(), password: "s3cret:with colon".into() };
        let value = basic.header_value();
        assert!(value.is_sensitive());
        let mut map = HeaderMap::new();
        map.insert(header::AUTHORIZATION, value);
        assert_eq!(Basic::from_headers(&map), Some(basic.clone()));
        assert_eq!(Basic::from_headers(&headers("basic ZXVyZWthOnB3")), Some(Basic { user: "eureka".into(), password: "pw".into() }));
        assert!(!format!("{basic:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_headers_carry_no_credential() {
        for value in ["Bearer abc", "Basic", "Basic !!!", "Basic bm9jb2xvbg==", "Basic //79"] {
            assert_eq!(Basic::from_headers(&headers(value)), None, "{value}");
        }
        assert_eq!(Basic::from_headers(&HeaderMap::new()), None);
    }
}
