//! One Eureka service URL as written in `defaultZone`: checked once, its credential taken out.
//!
//! `http://` and `https://` URLs are accepted, mixed as one likes in one list.
//! `https://USER:PASSWORD@HOST:PORT/eureka` is how Spring and Zowe users give a secured cluster's
//! credential. Requests go to the URL without it and carry it as `Authorization: Basic`; logs and
//! errors show the URL with the password replaced, never the password.

use percent_encoding::percent_decode_str;

use super::error::ConfigError;
use crate::credentials::Credentials;

/// What a log shows instead of a password.
const HIDDEN: &str = "***";

/// A usable service URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceUrl {
    /// `http[s]://HOST[:PORT][/PATH]`, no credential and no trailing slash: request paths are appended.
    pub(crate) base: String,
    /// The credential of the URL's user information, if it had one.
    pub(crate) credential: Option<Credentials>,
}

impl ServiceUrl {
    /// Checks and splits `url`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidUrl`] (showing the URL without its password) when it is not
    /// `http[s]://[USER:PASSWORD@]HOST[:PORT][/PATH]`.
    pub(crate) fn parse(url: &str) -> Result<ServiceUrl, ConfigError> {
        let trimmed = url.trim().trim_end_matches('/');
        let invalid = |reason| ConfigError::InvalidUrl { url: redacted(trimmed), reason };
        // The scheme in lower case, the credential taken out.
        let (credential, base) = match strip_scheme(trimmed) {
            Some((scheme, after_scheme)) => {
                let (credential, rest) = split_credential(after_scheme);
                (credential, format!("{scheme}://{rest}"))
            }
            None => (None, trimmed.to_owned()),
        };
        let uri: http::Uri = base.parse().map_err(|_| invalid("not a URL"))?;
        // What was not taken out as a credential must not reach requests or logs as part of the URL.
        if uri.authority().is_some_and(|authority| authority.as_str().contains('@')) {
            return Err(invalid("the user information needs USER:PASSWORD after http:// or https://"));
        }
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
            return Err(invalid("expected http://HOST:PORT/eureka or https://HOST:PORT/eureka"));
        }
        if uri.query().is_some() {
            return Err(invalid("a service URL takes no query"));
        }
        let credential = match credential {
            None => None,
            Some(Err(reason)) => return Err(invalid(reason)),
            Some(Ok(credential)) => Some(credential),
        };
        Ok(ServiceUrl { base, credential })
    }

    /// Whether requests to this URL go over TLS.
    pub(crate) fn is_https(&self) -> bool {
        is_https(&self.base)
    }
}

/// Whether `url` is an `https://` URL, whatever the scheme's case.
pub fn is_https(url: &str) -> bool {
    strip_scheme(url.trim()).is_some_and(|(scheme, _)| scheme == "https")
}

/// The credential of `USER:PASSWORD@REST` (what follows a URL's `://`), percent-decoded, and REST;
/// `None` and all of it when it has no user information.
fn split_credential(after_scheme: &str) -> (Option<Result<Credentials, &'static str>>, &str) {
    let Some(at) = userinfo_end(after_scheme) else { return (None, after_scheme) };
    let (userinfo, rest) = (&after_scheme[..at], &after_scheme[at + 1..]);
    let credential = userinfo
        .split_once(':')
        .ok_or("the user information needs USER:PASSWORD")
        .and_then(|(user, password)| Ok(Credentials { username: decode(user)?, password: decode(password)? }));
    (Some(credential), rest)
}

/// The scheme of `url`, `http` or `https` in lower case, and what follows its `://`, whatever the
/// scheme's case (`HTTPS://` is the same URL).
fn strip_scheme(url: &str) -> Option<(&'static str, &str)> {
    ["http", "https"].into_iter().find_map(|scheme| {
        let prefix = url.get(..scheme.len() + 3).filter(|prefix| prefix.eq_ignore_ascii_case(&format!("{scheme}://")))?;
        Some((scheme, &url[prefix.len()..]))
    })
}

fn decode(part: &str) -> Result<String, &'static str> {
    percent_decode_str(part).decode_utf8().map(|text| text.into_owned()).map_err(|_| "the user information is not UTF-8")
}

/// Where the user information of what follows a URL's `://` ends: at its last `@`. A Eureka URL has
/// no `@` in its path, and a password may hold a `/` written as is: ending at the first `/` instead
/// would send such a password to logs, or take part of it for a host.
fn userinfo_end(after_scheme: &str) -> Option<usize> {
    after_scheme.rfind('@')
}

/// `url` as logs may show it: `***` for the password of any user information, whatever the scheme.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else { return url.to_owned() };
    let after_scheme = &url[scheme_end..];
    let Some(at) = userinfo_end(after_scheme) else { return url.to_owned() };
    // Without a colon the whole user information may be a token: none of it is shown.
    let shown_userinfo = match after_scheme[..at].split_once(':') {
        Some((user, _)) => format!("{user}:{HIDDEN}"),
        None => HIDDEN.to_owned(),
    };
    format!("{}{shown_userinfo}@{}", &url[..scheme_end], &after_scheme[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_credential_out() {
        let url = ServiceUrl::parse(" http://eureka:p%40ss%3Aw0rd@127.0.0.1:10011/eureka/ ").unwrap();
        assert_eq!(url.base, "http://127.0.0.1:10011/eureka");
        assert_eq!(url.credential, Some(Credentials { username: "eureka".into(), password: "p@ss:w0rd".into() }));
        let upper = ServiceUrl::parse("HTTP://eureka:pw@h:1/eureka").unwrap();
        assert_eq!((upper.base.as_str(), upper.credential.map(|c| c.password)), ("http://h:1/eureka", Some("pw".to_owned())));
        let plain = ServiceUrl::parse("http://a:1/eureka/").unwrap();
        assert_eq!((plain.base.as_str(), plain.credential), ("http://a:1/eureka", None));
    }

    #[test]
    fn takes_https_urls_with_or_without_a_credential() {
        let secured = ServiceUrl::parse("HTTPS://eureka:pw@eureka.example:8761/eureka/").unwrap();
        assert_eq!(secured.base, "https://eureka.example:8761/eureka");
        assert_eq!(secured.credential.map(|c| (c.username, c.password)), Some(("eureka".to_owned(), "pw".to_owned())));
        for (url, base) in [("https://127.0.0.1:10011/eureka", "https://127.0.0.1:10011/eureka"), ("https://[::1]/eureka/", "https://[::1]/eureka")] {
            let parsed = ServiceUrl::parse(url).unwrap();
            assert_eq!((parsed.base.as_str(), parsed.is_https()), (base, true), "{url}");
        }
        assert!(ServiceUrl::parse("HTTPS://h/eureka").unwrap().is_https());
        assert!(!ServiceUrl::parse("http://u:p@h/eureka").unwrap().is_https());
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in ["http://u:secret@", "http://u:secret@h:1/eureka?x=1", "http://usersecret@h:1/eureka", "http://u:%FFsecret@h:1/eureka", "https://u:secret@", "https://u:secret@h:1/eureka?x", "ftp://u:secret@h:1/eureka"] {
            let error = ServiceUrl::parse(url).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
        }
        let error = ServiceUrl::parse("http://u:secret@h:1/eureka?x=1").unwrap_err().to_string();
        assert!(error.contains("http://u:***@h:1/eureka?x=1"), "{error}");
        // A password with a slash in it, as generated ones often have: still hidden.
        let error = ServiceUrl::parse("https://u:se/cret@h:1/eureka?x").unwrap_err().to_string();
        assert!(!error.contains("cret") && error.contains("https://u:***@h:1/eureka?x"), "{error}");
    }

    #[test]
    fn the_scheme_is_written_in_lower_case() {
        assert_eq!(ServiceUrl::parse("HTTPS://h:1/eureka").unwrap().base, "https://h:1/eureka");
        assert_eq!(ServiceUrl::parse("Http://u:p@h:1/eureka").unwrap().base, "http://h:1/eureka");
    }

    #[test]
    fn a_slash_in_the_password_stays_in_the_password() {
        for (url, password) in [("https://eureka:pa/ss@host/eureka", "pa/ss"), ("https://eureka:12/ab@host:8761/eureka", "12/ab")] {
            let parsed = ServiceUrl::parse(url).unwrap();
            assert!(parsed.base.starts_with("https://host"), "{url}: {}", parsed.base);
            let credential = parsed.credential.unwrap();
            assert_eq!((credential.username.as_str(), credential.password.as_str()), ("eureka", password));
            assert!(!redacted(url).contains(password), "{}", redacted(url));
        }
    }

    #[test]
    fn refuses_what_is_not_an_http_or_https_url() {
        for url in ["", "ftp://h:1/eureka", "wss://h:1/eureka", "h:1/eureka", "http:///eureka", "https:///eureka", "http://h:1/eureka?q", "https://h:1/eureka?q"] {
            assert!(ServiceUrl::parse(url).is_err(), "{url}");
        }
    }
}
