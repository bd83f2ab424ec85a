//! Which headers cross the gateway (RFC 9110 §7.6.1) and the `X-Forwarded-*` it adds.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::{cookies, COOKIE};

/// Hop-by-hop headers: they describe one connection and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The comma-separated tokens of every `name` header, trimmed.
pub(crate) fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Whether a `name` header lists `token` (case-insensitively).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The end-to-end headers of `headers`: without hop-by-hop ones, those `Connection` names, `Upgrade`
/// (the gateway sets its own) and `Host` (rewritten for the instance).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named_by_connection: Vec<HeaderName> =
        tokens(headers, &header::CONNECTION).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()).collect();
    let mut kept = headers.clone();
    for name in HOP_BY_HOP.iter().chain(&named_by_connection).chain(&[header::UPGRADE, header::HOST]) {
        kept.remove(name);
    }
    kept
}

/// The facts behind `X-Forwarded-For`, `-Proto`, `-Host` and `-Port`.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The client's address.
    pub client: SocketAddr,
    /// `http` or `https`: the scheme of the client's connection.
    pub proto: &'static str,
    /// The `Host` the client asked for.
    pub host: Option<HeaderValue>,
    /// The gateway port the client connected to.
    pub port: u16,
    /// For an `apiml.authentication.scheme: zoweJwt` service, the gateway's JWT, which replaces the
    /// client's credentials ([`crate::auth::Guard::admit`]).
    pub service_token: Option<String>,
}

impl Forwarded {
    /// Adds the `X-Forwarded-*` headers, appending the client to an existing `X-Forwarded-For` chain.
    pub fn apply(&self, headers: &mut HeaderMap) {
        const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        let client = self.client.ip().to_string();
        let chain = match headers.get(&FOR).and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing}, {client}"),
            None => client,
        };
        if let Ok(chain) = HeaderValue::try_from(chain) {
            headers.insert(FOR, chain);
        }
        headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(self.proto));
        if let Some(host) = &self.host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        headers.insert(HeaderName::from_static("x-forwarded-port"), HeaderValue::from(self.port));
        if let Some(token) = &self.service_token {
            pass_token(headers, token);
        }
    }
}

/// Replaces the credentials of `headers` with `token` as the [`COOKIE`] cookie: no `Authorization`,
/// the client's other cookies kept in one `Cookie` header.
fn pass_token(headers: &mut HeaderMap, token: &str) {
    headers.remove(header::AUTHORIZATION);
    let mut kept: Vec<String> =
        cookies(headers).filter(|pair| pair.split_once('=').is_none_or(|(name, _)| name.trim() != COOKIE)).map(str::to_owned).collect();
    kept.push(format!("{COOKIE}={token}"));
    headers.remove(header::COOKIE);
    // A token is base64url and dots, and the kept cookies were header values: always valid.
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_drops_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "Upgrade, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("host", "gw:10010"),
            ("authorization", "Basic dTpw"),
            ("cookie", "a=b"),
            ("x-test", "yes"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let kept = end_to_end(&headers);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "cookie", "x-test"]);
    }

    #[test]
    fn forwarded_headers_extend_the_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let forwarded = Forwarded {
            client: "127.0.0.5:4000".parse().unwrap(),
            proto: "http",
            host: Some(HeaderValue::from_static("gw:10010")),
            port: 10010,
            service_token: None,
        };
        forwarded.apply(&mut headers);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.5");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "gw:10010");
        assert_eq!(headers["x-forwarded-port"], "10010");
        assert!(headers.get("cookie").is_none());
    }

    #[test]
    fn a_service_token_replaces_the_client_credentials_and_keeps_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=b; apimlAuthenticationToken=client.token"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=d"));
        let forwarded = Forwarded { client: "127.0.0.5:4000".parse().unwrap(), proto: "https", host: None, port: 10010, service_token: Some("gw.jwt.sig".into()) };
        forwarded.apply(&mut headers);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert_eq!(headers.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["a=b; c=d; apimlAuthenticationToken=gw.jwt.sig"]);
    }
}
