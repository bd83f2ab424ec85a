//! The server side of the WebSocket opening handshake (RFC 6455 §4.2), done in hyper.
//!
//! [`accept`] checks an upgrade request and either gives an [`Accepted`] handshake, whose
//! [`Accepted::into_response`] is the `101 Switching Protocols` answer, or a
//! [`HandshakeError`], whose [`HandshakeError::into_response`] is the `4xx` answer:
//!
//! | Check (in this order)                                  | Failure answer                                |
//! |--------------------------------------------------------|-----------------------------------------------|
//! | method is `GET`                                        | `405`, `Allow: GET`                           |
//! | `Upgrade` lists `websocket`                            | `426`, `Upgrade: websocket`                   |
//! | HTTP/1.1 or later                                      | `400`                                         |
//! | `Connection` lists `upgrade`                           | `400`                                         |
//! | `Sec-WebSocket-Version` is `13`                        | `426`, `Sec-WebSocket-Version: 13`            |
//! | `Sec-WebSocket-Key` is base64 of 16 bytes              | `400`                                         |
//!
//! The first subprotocol the client offers, if any, is selected. Extensions are never
//! negotiated.
//!
//! Bytes the client sent right behind the request head (an eager first frame) are not
//! lost: hyper's `Upgraded` IO yields its `read_buf` before reading the socket again, and
//! the session reads through that IO.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Version};
use sha1::{Digest as _, Sha1};

use crate::http::{self, Body};

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The length of the decoded `Sec-WebSocket-Key` (RFC 6455 §4.1).
const KEY_LEN: usize = 16;

/// A valid upgrade request, ready to be answered with `101`.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    accept: HeaderValue,
    /// The selected subprotocol, if the client offered any.
    protocol: Option<HeaderValue>,
}

/// Why a request to a WebSocket endpoint cannot be upgraded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The method is not `GET`.
    #[error("a WebSocket endpoint only answers GET")]
    MethodNotGet,
    /// No `Upgrade: websocket`: a plain HTTP request to a WebSocket endpoint.
    #[error("this is a WebSocket endpoint; upgrade required")]
    NotUpgrade,
    /// HTTP/1.0 or older.
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    HttpVersion,
    /// `Connection` does not list `upgrade`.
    #[error("a WebSocket upgrade needs `Connection: upgrade`")]
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not `13`.
    #[error("only WebSocket version 13 is supported")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing, repeated, or not base64 of 16 bytes.
    #[error("`Sec-WebSocket-Key` must be base64 of 16 bytes")]
    InvalidKey,
}

/// Checks an upgrade request to a WebSocket endpoint.
///
/// # Errors
///
/// A [`HandshakeError`] naming the first check that failed (see the module doc).
pub(crate) fn accept<B>(request: &Request<B>) -> Result<Accepted, HandshakeError> {
    let headers = request.headers();
    if request.method() != Method::GET {
        return Err(HandshakeError::MethodNotGet);
    }
    if !lists_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if request.version() < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    if !lists_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    if single_value(headers, &SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = single_value(headers, &SEC_WEBSOCKET_KEY)
        .filter(|key| {
            BASE64
                .decode(key.as_bytes())
                .is_ok_and(|raw| raw.len() == KEY_LEN)
        })
        .ok_or(HandshakeError::InvalidKey)?;
    // Base64 text is always a valid header value, so this never fails; mapping the
    // impossible error keeps the path free of panics.
    let accept = HeaderValue::try_from(accept_key(key.as_bytes()))
        .map_err(|_| HandshakeError::InvalidKey)?;
    Ok(Accepted {
        accept,
        protocol: first_protocol(headers),
    })
}

/// The `Sec-WebSocket-Accept` value for a client key: `base64(sha1(key + GUID))`.
fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID);
    BASE64.encode(sha1.finalize())
}

/// The first subprotocol the client offers: the first non-empty item of the
/// `Sec-WebSocket-Protocol` headers.
fn first_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let first = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|item| !item.is_empty())?;
    HeaderValue::from_str(first).ok()
}

/// Whether a comma-separated header lists `token` (case-insensitive), in any of its lines.
fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// The header's value if it occurs exactly once.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

// ===== impl Accepted =====

impl Accepted {
    /// The `101 Switching Protocols` response completing the handshake.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, self.accept);
        if let Some(protocol) = self.protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        response
    }
}

// ===== impl HandshakeError =====

impl HandshakeError {
    /// The HTTP answer to a request that cannot be upgraded.
    pub(crate) fn into_response(self) -> Response<Body> {
        let status = match self {
            Self::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::HttpVersion | Self::ConnectionNotUpgrade | Self::InvalidKey => {
                StatusCode::BAD_REQUEST
            }
        };
        let mut response = http::text(status, format!("{self}\n"));
        let headers = response.headers_mut();
        match self {
            Self::MethodNotGet => {
                headers.insert(ALLOW, HeaderValue::from_static("GET"));
            }
            Self::NotUpgrade => {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
            Self::UnsupportedVersion => {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            Self::HttpVersion | Self::ConnectionNotUpgrade | Self::InvalidKey => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 6455 §1.3.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn upgrade_request() -> ::http::request::Builder {
        Request::get("/ws")
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "keep-alive, Upgrade")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, RFC_KEY)
    }

    fn check(builder: ::http::request::Builder) -> Result<Accepted, HandshakeError> {
        accept(&builder.body(()).unwrap())
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
    }

    #[test]
    fn valid_request_is_answered_with_101() {
        let response = check(upgrade_request()).unwrap().into_response();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[SEC_WEBSOCKET_ACCEPT], RFC_ACCEPT);
        assert_eq!(response.headers()[UPGRADE], "websocket");
        assert!(response.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[test]
    fn first_offered_subprotocol_is_selected() {
        let request = upgrade_request()
            .header(SEC_WEBSOCKET_PROTOCOL, " , chat.v2, chat.v1")
            .header(SEC_WEBSOCKET_PROTOCOL, "other");
        let response = check(request).unwrap().into_response();
        assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "chat.v2");
    }

    #[test]
    fn plain_get_needs_upgrade() {
        let error = check(Request::get("/ws")).unwrap_err();
        assert!(matches!(error, HandshakeError::NotUpgrade));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[UPGRADE], "websocket");
    }

    #[test]
    fn each_check_has_its_error() {
        let cases: [(::http::request::Builder, HandshakeError); 6] = [
            (
                upgrade_request().method(Method::POST),
                HandshakeError::MethodNotGet,
            ),
            (
                upgrade_request().version(Version::HTTP_10),
                HandshakeError::HttpVersion,
            ),
            (
                Request::get("/ws")
                    .header(UPGRADE, "websocket")
                    .header(CONNECTION, "keep-alive"),
                HandshakeError::ConnectionNotUpgrade,
            ),
            (
                Request::get("/ws")
                    .header(UPGRADE, "websocket")
                    .header(CONNECTION, "upgrade")
                    .header(SEC_WEBSOCKET_VERSION, "8"),
                HandshakeError::UnsupportedVersion,
            ),
            (
                Request::get("/ws")
                    .header(UPGRADE, "websocket")
                    .header(CONNECTION, "upgrade")
                    .header(SEC_WEBSOCKET_VERSION, "13")
                    .header(SEC_WEBSOCKET_KEY, "c2hvcnQ="),
                HandshakeError::InvalidKey,
            ),
            (
                upgrade_request().header(SEC_WEBSOCKET_KEY, RFC_KEY),
                HandshakeError::InvalidKey,
            ),
        ];
        for (request, expected) in cases {
            let error = check(request).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&error),
                std::mem::discriminant(&expected),
                "got {error:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn unsupported_version_names_the_supported_one() {
        let request = Request::get("/ws")
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(SEC_WEBSOCKET_VERSION, "8");
        let response = check(request).unwrap_err().into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
    }
}
