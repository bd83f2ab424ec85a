//! Basic credentials (RFC 7617): the check a registry may require of its clients, and the
//! `Authorization: Basic` header itself, read and written. The gateway reads its own routes' Basic
//! credentials with the same [`Credentials::from_headers`].
//!
//! The registry does not know where passwords live: the gateway hands it a [`CheckCredentials`]
//! backed by its htpasswd file. Eureka clients send the credential of a service URL written as
//! `http://USER:PASSWORD@HOST:PORT/eureka`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use http::header::{self, HeaderMap, HeaderValue};

/// Standard base64, with or without its `=` padding: some clients leave it out.
const LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// Decides whether a Basic credential may use the registry.
pub trait CheckCredentials: Send + Sync + fmt::Debug {
    /// Whether `user` with `password` is let in. May be slow (bcrypt): it is awaited off the
    /// registry's locks.
    fn check<'a>(&'a self, user: &'a str, password: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// A user name and password sent with Basic authentication. `Debug` shows the user name only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (everything before the first `:`).
    pub username: String,
    /// The password (everything after it).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The Basic credential of `headers`; `None` when there is no `Authorization` header, when it
    /// holds another scheme (case-insensitive), or when it is not base64 of UTF-8 `user:password`.
    /// Two or more `Authorization` headers are none either: whoever reads the request next, which
    /// gets them all, might read another one than the one checked.
    pub fn from_headers(headers: &HeaderMap) -> Option<Credentials> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(LENIENT.decode(encoded.trim_start()).ok()?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials { username: username.to_owned(), password: password.to_owned() })
    }

    /// The `Authorization` header value carrying this credential, marked sensitive so that it is
    /// never shown by `Debug` or compressed into HTTP/2 tables.
    pub fn header_value(&self) -> HeaderValue {
        let encoded = STANDARD.encode(format!("{}:{}", self.username, self.password));
        // Base64 is always a valid header value.
        let mut value = HeaderValue::try_from(format!("Basic {encoded}")).unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        value.set_sensitive(true);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(value: &str) -> Option<Credentials> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        Credentials::from_headers(&headers)
    }

    #[test]
    fn reads_basic_credentials() {
        let expected = Credentials { username: "alice".into(), password: "pa:ss wörd".into() };
        let encoded = STANDARD.encode("alice:pa:ss wörd");
        assert_eq!(credentials(&format!("Basic {encoded}")), Some(expected.clone()));
        assert_eq!(credentials(&format!("basic   {encoded}")), Some(expected.clone()));
        assert_eq!(credentials(&format!("BASIC {}", encoded.trim_end_matches('='))), Some(expected));
        assert_eq!(credentials("Basic Om5vdXNlcg=="), Some(Credentials { username: String::new(), password: "nouser".into() }));
    }

    #[test]
    fn writes_what_it_reads() {
        let sent = Credentials { username: "eureka".into(), password: "s3cret:with colon".into() };
        let value = sent.header_value();
        assert!(value.is_sensitive());
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        assert_eq!(Credentials::from_headers(&headers), Some(sent));
    }

    #[test]
    fn anything_else_is_no_credential() {
        assert_eq!(Credentials::from_headers(&HeaderMap::new()), None);
        for value in ["Bearer abc.def.ghi", "Basic", "Basic !!!", "Basic YWxpY2U=", "Basic /w=="] {
            assert_eq!(credentials(value), None, "{value}");
        }
        let mut twice = HeaderMap::new();
        for user in ["alice:hunter2", "bob:secret"] {
            twice.append(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(user))).unwrap());
        }
        assert_eq!(Credentials::from_headers(&twice), None, "two Authorization headers");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", Credentials { username: "alice".into(), password: "hunter2".into() });
        assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
    }
}
