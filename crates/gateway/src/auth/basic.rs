//! The `Authorization: Basic` credential of a request (RFC 7617).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use http::header::{self, HeaderMap};

/// Standard base64, with or without its `=` padding: some clients leave it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// A user name and password sent with Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (everything before the first `:`).
    pub username: String,
    /// The password (everything after it).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The Basic credential of `headers`, `None` when there is no `Authorization` header, when it
    /// holds another scheme, or when it is not base64 of UTF-8 `user:password`. Two or more
    /// `Authorization` headers are none either: the service, which gets them all, might read
    /// another one than the gateway checked.
    pub fn from_headers(headers: &HeaderMap) -> Option<Credentials> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let value = value.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(BASE64.decode(encoded.trim_start()).ok()?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials { username: username.to_owned(), password: password.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn credentials(value: &str) -> Option<Credentials> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        Credentials::from_headers(&headers)
    }

    #[test]
    fn reads_basic_credentials() {
        let expected = Credentials { username: "alice".into(), password: "pa:ss wörd".into() };
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss wörd");
        assert_eq!(credentials(&format!("Basic {encoded}")), Some(expected.clone()));
        assert_eq!(credentials(&format!("basic   {encoded}")), Some(expected.clone()));
        assert_eq!(credentials(&format!("BASIC {}", encoded.trim_end_matches('='))), Some(expected));
        assert_eq!(credentials("Basic Om5vdXNlcg=="), Some(Credentials { username: String::new(), password: "nouser".into() }));
    }

    #[test]
    fn anything_else_is_no_credential() {
        assert_eq!(Credentials::from_headers(&HeaderMap::new()), None);
        assert_eq!(credentials("Bearer abc.def.ghi"), None);
        assert_eq!(credentials("Basic"), None);
        assert_eq!(credentials("Basic !!!"), None);
        assert_eq!(credentials("Basic YWxpY2U="), None, "no colon");
        assert_eq!(credentials("Basic /w=="), None, "not UTF-8");
        let mut twice = HeaderMap::new();
        for user in ["alice:hunter2", "bob:secret"] {
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user));
            twice.append(header::AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        }
        assert_eq!(Credentials::from_headers(&twice), None, "two Authorization headers");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", Credentials { username: "alice".into(), password: "hunter2".into() });
        assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
    }
}
