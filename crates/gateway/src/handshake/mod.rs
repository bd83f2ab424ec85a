//! The WebSocket opening handshake (RFC 6455 §4), upstream first.
//!
//! The gateway checks the client's upgrade request ([`Offer::inspect`]), opens the session to the
//! service with the client's end-to-end headers ([`upstream_request`]), checks the service's answer
//! ([`check_service_response`]) and only then answers the client ([`client_response`]) with what the
//! service chose: subprotocol, extensions, cookies. After the 101 hyper hands over both connections;
//! bytes either side sent right behind its handshake are inside hyper's `Upgraded` and come out of it
//! first, so the relay never loses them.

mod headers;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::body::{self, Body};
use crate::config::SubprotocolPolicy;
pub use headers::{end_to_end, Forwarded};

const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a client's upgrade request is not a valid WebSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The upgrade request is not a GET.
    #[error("WebSocket handshake must be a GET request")]
    NotGet,
    /// `Connection` does not list `upgrade`.
    #[error("WebSocket handshake needs `Connection: upgrade`")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported Sec-WebSocket-Version, only 13 is supported")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
}

/// Why a service's answer to the upgrade does not open a session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceRefusal {
    /// The service answered with another status than 101.
    #[error("{}", status_text(*.status))]
    Status {
        /// The status.
        status: StatusCode,
        /// Its `WWW-Authenticate` header, kept for a 401.
        www_authenticate: Option<HeaderValue>,
    },
    /// The 101 carries a wrong `Sec-WebSocket-Accept`.
    #[error("invalid Sec-WebSocket-Accept")]
    BadAccept,
    /// The service chose a subprotocol that was not offered to it.
    #[error("unexpected subprotocol")]
    UnexpectedSubprotocol,
}

/// `403 Forbidden`, as close reasons show a status.
pub fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// What a valid client upgrade request offers.
#[derive(Debug, Clone)]
pub struct Offer {
    key: HeaderValue,
    /// Offered subprotocols that the gateway forwards, in the client's order.
    pub protocols: Vec<String>,
    /// The first subprotocol the client offered, forwarded or not.
    first_offered: Option<String>,
}

impl Offer {
    /// Checks whether `request` asks for a WebSocket upgrade.
    ///
    /// Returns `Ok(None)` for requests without `Upgrade: websocket`, which are plain HTTP.
    ///
    /// # Errors
    ///
    /// [`HandshakeError`] when the request asks for a WebSocket but is not a valid handshake.
    pub fn inspect<B>(request: &Request<B>, policy: &SubprotocolPolicy) -> Result<Option<Offer>, HandshakeError> {
        let headers = request.headers();
        if !headers::has_token(headers, &header::UPGRADE, "websocket") {
            return Ok(None);
        }
        if request.method() != Method::GET {
            return Err(HandshakeError::NotGet);
        }
        if !headers::has_token(headers, &header::CONNECTION, "upgrade") {
            return Err(HandshakeError::NoConnectionUpgrade);
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::BadKey)?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).map_err(|_| HandshakeError::BadKey)?;
        if decoded.len() != 16 {
            return Err(HandshakeError::BadKey);
        }
        let protocols = headers::tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).filter(|p| policy.allows(p)).map(str::to_owned).collect();
        let first_offered = headers::tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).next().map(str::to_owned);
        Ok(Some(Offer { key: key.clone(), protocols, first_offered }))
    }

    /// The `Sec-WebSocket-Accept` value for this offer's key.
    pub fn accept(&self) -> HeaderValue {
        let mut sha1 = Sha1::new();
        sha1.update(self.key.as_bytes());
        sha1.update(WEBSOCKET_GUID);
        let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
        HeaderValue::try_from(accept).unwrap_or_else(|_| unreachable!("base64 is a valid header value"))
    }
}

/// Builds the upgrade request to the service: the client's end-to-end headers, the gateway's
/// `Host` and `X-Forwarded-*`, and only the offered subprotocols the gateway forwards.
pub fn upstream_request(client: &HeaderMap, offer: &Offer, target: &PathAndQuery, authority: &str, forwarded: &Forwarded) -> Request<()> {
    let mut headers = headers::end_to_end(client);
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    // An upgrade request has no body; a stray length would make the service read frames as one.
    headers.remove(header::CONTENT_LENGTH);
    if !offer.protocols.is_empty() {
        if let Ok(value) = HeaderValue::try_from(offer.protocols.join(", ")) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    forwarded.apply(&mut headers);
    if let Ok(host) = HeaderValue::try_from(authority) {
        headers.insert(header::HOST, host);
    }
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = Uri::from(target.clone());
    *request.headers_mut() = headers;
    request
}

/// What the service accepted, for the client's 101.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The subprotocol the service chose.
    pub protocol: Option<String>,
    headers: HeaderMap,
}

/// Checks the service's answer to the upgrade request.
///
/// # Errors
///
/// [`ServiceRefusal`] when the answer does not open a session.
pub fn check_service_response<B>(offer: &Offer, response: &Response<B>) -> Result<Accepted, ServiceRefusal> {
    let headers = response.headers();
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let www_authenticate = headers.get(header::WWW_AUTHENTICATE).cloned();
        return Err(ServiceRefusal::Status { status: response.status(), www_authenticate });
    }
    if headers.get(header::SEC_WEBSOCKET_ACCEPT) != Some(&offer.accept()) {
        return Err(ServiceRefusal::BadAccept);
    }
    let protocol = match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        None => None,
        Some(value) => {
            let chosen = value.to_str().map_err(|_| ServiceRefusal::UnexpectedSubprotocol)?.trim();
            if !offer.protocols.iter().any(|p| p == chosen) {
                return Err(ServiceRefusal::UnexpectedSubprotocol);
            }
            Some(chosen.to_owned())
        }
    };
    Ok(Accepted { protocol, headers: headers::end_to_end(headers) })
}

/// The 101 to the client once the service accepted: the service's end-to-end headers (cookies,
/// chosen subprotocol and extensions) with the upgrade headers.
pub fn client_response<B: Default>(offer: &Offer, accepted: &Accepted) -> Response<B> {
    switching_protocols(offer, accepted.headers.clone())
}

/// The 101 that opens a session only to close it with a failure's code and reason (`close-code`
/// mode). It echoes the first offered subprotocol, if any: browsers and node `ws` fail a handshake
/// whose answer names none of the offered ones, and would then never see the reason.
pub fn refusal_response<B: Default>(offer: &Offer) -> Response<B> {
    let mut headers = HeaderMap::new();
    if let Some(protocol) = offer.first_offered.as_deref().and_then(|p| HeaderValue::try_from(p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    switching_protocols(offer, headers)
}

fn switching_protocols<B: Default>(offer: &Offer, headers: HeaderMap) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, offer.accept());
    response
}

/// Answers an invalid handshake: 426 with the supported version, else 400.
pub fn reject(error: HandshakeError) -> Response<Body> {
    let status = match error {
        HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = body::text(status, format!("{error}\n"));
    if status == StatusCode::UPGRADE_REQUIRED {
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/discoverableclient/ws/v1/uppercase");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const VALID: &[(&str, &str)] = &[
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "foo, v12.stomp,v11.stomp"),
    ];

    fn stomp() -> SubprotocolPolicy {
        SubprotocolPolicy::Only(vec!["v12.stomp".into(), "v11.stomp".into()])
    }

    #[test]
    fn valid_offer_filters_subprotocols_and_computes_rfc_accept() {
        let offer = Offer::inspect(&request(VALID), &stomp()).unwrap().unwrap();
        assert_eq!(offer.protocols, ["v12.stomp", "v11.stomp"]);
        assert_eq!(offer.accept(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let any = Offer::inspect(&request(VALID), &SubprotocolPolicy::Any).unwrap().unwrap();
        assert_eq!(any.protocols, ["foo", "v12.stomp", "v11.stomp"]);
        // A refusal names the first offered subprotocol, supported or not, so clients accept the 101.
        let refusal: Response<()> = refusal_response(&offer);
        assert_eq!(refusal.headers()["sec-websocket-protocol"], "foo");
        assert_eq!(refusal.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn plain_http_is_not_an_offer() {
        assert!(Offer::inspect(&request(&[("Connection", "upgrade")]), &stomp()).unwrap().is_none());
    }

    #[test]
    fn invalid_handshakes() {
        let without = |name: &str| VALID.iter().copied().filter(|(n, _)| *n != name).collect::<Vec<_>>();
        let with = |name: &str, value: &'static str| {
            let mut headers = without(name);
            headers.push((Box::leak(name.to_owned().into_boxed_str()), value));
            headers
        };
        let check = |headers: Vec<(&str, &str)>| Offer::inspect(&request(&headers), &stomp()).unwrap_err();
        assert_eq!(check(without("Sec-WebSocket-Key")), HandshakeError::BadKey);
        assert_eq!(check(with("Sec-WebSocket-Key", "c2hvcnQ=")), HandshakeError::BadKey);
        assert_eq!(check(with("Sec-WebSocket-Version", "8")), HandshakeError::UnsupportedVersion);
        assert_eq!(check(with("Connection", "keep-alive")), HandshakeError::NoConnectionUpgrade);
        let mut post = request(VALID);
        *post.method_mut() = Method::POST;
        assert_eq!(Offer::inspect(&post, &stomp()).unwrap_err(), HandshakeError::NotGet);
        let rejected = reject(HandshakeError::UnsupportedVersion);
        assert_eq!(rejected.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(rejected.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(reject(HandshakeError::BadKey).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn upstream_request_carries_end_to_end_headers_only() {
        let mut headers = request(VALID).headers().clone();
        headers.insert("content-length", HeaderValue::from_static("5"));
        headers.insert("cookie", HeaderValue::from_static("a=b"));
        let offer = Offer::inspect(&request(VALID), &stomp()).unwrap().unwrap();
        let forwarded = Forwarded { client: "127.0.0.1:9".parse().unwrap(), proto: "http", host: None, port: 10010, service_token: None };
        let target = PathAndQuery::from_static("/ws/uppercase?x=1");
        let upstream = upstream_request(&headers, &offer, &target, "127.0.0.1:7", &forwarded);
        assert_eq!(upstream.uri(), "/ws/uppercase?x=1");
        let sent = upstream.headers();
        assert!(sent.get("content-length").is_none());
        assert_eq!(sent["cookie"], "a=b");
        assert_eq!(sent["host"], "127.0.0.1:7");
        assert_eq!(sent["sec-websocket-protocol"], "v12.stomp, v11.stomp");
        assert_eq!(sent["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!((&sent["upgrade"], &sent["connection"]), (&HeaderValue::from_static("websocket"), &HeaderValue::from_static("Upgrade")));
    }

    #[test]
    fn service_response_checks() {
        let offer = Offer::inspect(&request(VALID), &stomp()).unwrap().unwrap();
        let response = |status: u16, headers: &[(&str, &str)]| {
            let mut builder = Response::builder().status(status);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let ok = response(101, &[("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), ("Sec-WebSocket-Protocol", "v11.stomp"), ("Set-Cookie", "a=b"), ("Sec-WebSocket-Extensions", "permessage-deflate")]);
        let accepted = check_service_response(&offer, &ok).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("v11.stomp"));
        let to_client: Response<()> = client_response(&offer, &accepted);
        assert_eq!(to_client.headers()["set-cookie"], "a=b");
        assert_eq!(to_client.headers()["sec-websocket-extensions"], "permessage-deflate");
        assert_eq!(to_client.headers()["sec-websocket-protocol"], "v11.stomp");

        let foo = response(101, &[("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), ("Sec-WebSocket-Protocol", "foo")]);
        assert_eq!(check_service_response(&offer, &foo).unwrap_err(), ServiceRefusal::UnexpectedSubprotocol);
        let bad = response(101, &[("Sec-WebSocket-Accept", "xx")]);
        assert_eq!(check_service_response(&offer, &bad).unwrap_err(), ServiceRefusal::BadAccept);
        let denied = response(401, &[("WWW-Authenticate", "Basic realm=\"x\"")]);
        let refusal = check_service_response(&offer, &denied).unwrap_err();
        assert_eq!(refusal.to_string(), "401 Unauthorized");
        assert!(matches!(refusal, ServiceRefusal::Status { www_authenticate: Some(_), .. }));
    }
}
