//! One request of the Eureka REST API to one response, with the Java server's status codes.
//!
//! Every rejected request (403, 4xx, 5xx) is answered before the registry is touched, so it
//! changes nothing.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

use super::body::{self, BodyError, Wants};
use super::route::{query_pairs, query_value, Endpoint};
use crate::codec::{self, validate_registration};
use crate::credentials::Credentials;
use crate::model::Status;
use crate::registry::{MetadataUpdateError, Registry};

/// A response with a plain-text body (errors; Java answers them as text too).
fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(message.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The request headers every document response depends on: the format (`Accept`), the
/// compression (`Accept-Encoding`) and the view (`X-Eureka-Accept`). Caches must key on them.
const VARY: &str = "Accept, Accept-Encoding, X-Eureka-Accept";

/// A 200 document in the negotiated format, gzipped when `compressible` and the client accepts it.
fn document(wants: Wants, body: Vec<u8>, compressible: bool) -> Response<Full<Bytes>> {
    let zipped = if compressible && wants.gzip { body::gzip(&body) } else { None };
    let (body, gzipped) = match zipped {
        Some(zipped) => (zipped, true),
        None => (body, false),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(wants.format.content_type()));
    headers.insert(header::VARY, header::HeaderValue::from_static(VARY));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
    }
    response
}

fn not_found() -> Response<Full<Bytes>> {
    empty(StatusCode::NOT_FOUND)
}

fn allowed_methods(endpoint: &Endpoint) -> &'static [Method] {
    match endpoint {
        Endpoint::Apps | Endpoint::Delta | Endpoint::InstanceById { .. } | Endpoint::Vip { .. } => &[Method::GET],
        Endpoint::App { .. } => &[Method::GET, Method::POST],
        Endpoint::Instance { .. } => &[Method::GET, Method::PUT, Method::DELETE],
        Endpoint::Status { .. } => &[Method::PUT, Method::DELETE],
        Endpoint::Metadata { .. } => &[Method::PUT],
    }
}

/// What the connection knows of a request's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    /// Certificates play no part: plain HTTP, or TLS that asks for none.
    NotAsked,
    /// Asked for (TLS with client authentication) and not presented.
    Absent,
    /// Presented and verified by the TLS layer against its trust anchors.
    Verified,
}

/// Who sent a request: its address and, over TLS, its client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address, checked against [`crate::RegistryConfig::allow`] for changes.
    pub address: SocketAddr,
    /// Its client certificate.
    pub certificate: ClientCertificate,
}

impl From<SocketAddr> for Peer {
    /// A peer whose certificate plays no part (plain HTTP).
    fn from(address: SocketAddr) -> Peer {
        Peer { address, certificate: ClientCertificate::NotAsked }
    }
}

/// Answers one request of the Eureka REST API from `peer`. Usable as the body of any hyper service
/// (this is what [`super::serve`] runs), so the API can be mounted on another server.
///
/// Access: changes need [`crate::RegistryConfig::allow`] (else 403). When the registry authenticates
/// (a [`crate::RegistryConfig::credentials`] check, or TLS asking for client certificates), every
/// request also needs a verified client certificate or a Basic credential the check accepts (else 401).
pub async fn handle<B>(request: Request<B>, peer: impl Into<Peer>, registry: &Registry) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = peer.into();
    let Some(endpoint) = Endpoint::parse(request.uri().path()) else {
        return not_found();
    };
    let method = request.method().clone();
    if !allowed_methods(&endpoint).contains(&method) {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    if method != Method::GET && !registry.config().allow.allows(peer.address.ip()) {
        tracing::warn!(peer = %peer.address, %method, path = request.uri().path(), "registry change refused: peer not in the allow list");
        return text(StatusCode::FORBIDDEN, "registry changes are not allowed from this address");
    }
    if !authenticated(&request, peer.certificate, registry).await {
        tracing::warn!(peer = %peer.address, %method, path = request.uri().path(), "registry request refused: no client certificate and no valid credential");
        let message = match peer.certificate {
            ClientCertificate::NotAsked => "the registry needs a valid Basic credential",
            ClientCertificate::Absent | ClientCertificate::Verified => "the registry needs a client certificate or a valid Basic credential",
        };
        let mut response = text(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"wsgate registry\""));
        return response;
    }
    let wants = Wants::of(request.headers());
    let query = query_pairs(request.uri().query());
    let last_dirty = query_value(&query, "lastDirtyTimestamp").and_then(|v| v.trim().parse::<u64>().ok());
    match (method, endpoint) {
        (Method::GET, Endpoint::Apps) => document(wants, codec::encode_applications(&registry.full(), wants.format, wants.view), true),
        (Method::GET, Endpoint::Delta) => document(wants, codec::encode_applications(&registry.delta(), wants.format, wants.view), true),
        (Method::GET, Endpoint::App { app }) => match registry.application(&app) {
            Some(application) => document(wants, codec::encode_application(&application, wants.format, wants.view), false),
            None => not_found(),
        },
        (Method::GET, Endpoint::Instance { app, id }) => match registry.instance(&app, &id) {
            Some(instance) => document(wants, codec::encode_instance(&instance, wants.format, wants.view), false),
            None => not_found(),
        },
        (Method::GET, Endpoint::InstanceById { id }) => match registry.instance_by_id(&id) {
            Some(instance) => document(wants, codec::encode_instance(&instance, wants.format, wants.view), false),
            None => not_found(),
        },
        (Method::GET, Endpoint::Vip { vip, secure }) => document(wants, codec::encode_applications(&registry.by_vip(&vip, secure), wants.format, wants.view), false),
        (Method::POST, Endpoint::App { app }) => register(request, &app, registry).await,
        (Method::PUT, Endpoint::Instance { app, id }) => match registry.renew(&app, &id, last_dirty) {
            Ok(()) => empty(StatusCode::OK),
            Err(error) => {
                tracing::debug!(app, instance = id, %error, "heartbeat answered 404");
                not_found()
            }
        },
        (Method::DELETE, Endpoint::Instance { app, id }) => outcome(registry.cancel(&app, &id)),
        (Method::PUT, Endpoint::Status { app, id }) => {
            // Java looks the instance up first (404), then parses the value (500 when bad).
            if registry.instance(&app, &id).is_none() {
                return not_found();
            }
            match query_value(&query, "value").and_then(Status::parse_strict) {
                Some(status) => outcome(registry.set_status_override(&app, &id, status, last_dirty)),
                None => text(StatusCode::INTERNAL_SERVER_ERROR, "invalid status value"),
            }
        }
        (Method::DELETE, Endpoint::Status { app, id }) => {
            let status = query_value(&query, "value").map_or(Status::Unknown, Status::parse_lenient);
            outcome(registry.delete_status_override(&app, &id, status, last_dirty))
        }
        (Method::PUT, Endpoint::Metadata { app, id }) => match registry.update_metadata(&app, &id, &query) {
            Ok(()) => empty(StatusCode::OK),
            Err(MetadataUpdateError::Lease(_)) => not_found(),
            Err(MetadataUpdateError::TooLarge(error)) => text(StatusCode::BAD_REQUEST, error.to_string()),
        },
        // `allowed_methods` admitted only the pairs above.
        _ => empty(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// Whether `request` passes the registry's authentication: always when none is configured (no
/// credential check, no client certificate asked for); else with a verified client certificate or a
/// Basic credential the check accepts, either one sufficing.
async fn authenticated<B>(request: &Request<B>, certificate: ClientCertificate, registry: &Registry) -> bool {
    let check = registry.config().credentials.as_ref();
    match certificate {
        ClientCertificate::Verified => true,
        ClientCertificate::NotAsked if check.is_none() => true,
        ClientCertificate::NotAsked | ClientCertificate::Absent => match (check, Credentials::from_headers(request.headers())) {
            (Some(check), Some(credentials)) => check.check(&credentials.username, &credentials.password).await,
            _ => false,
        },
    }
}

fn outcome<E>(result: Result<(), E>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => empty(StatusCode::OK),
        Err(_) => not_found(),
    }
}

/// `POST /apps/{APP}`: 204 on success, as every client requires.
async fn register<B>(request: Request<B>, app: &str, registry: &Registry) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let (bytes, format) = match body::read(&parts.headers, body, registry.config().max_body_bytes).await {
        Ok(read) => read,
        Err(error) => {
            let status = match error {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
                BodyError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                BodyError::Unreadable => StatusCode::BAD_REQUEST,
            };
            return text(status, error.to_string());
        }
    };
    let instance = match codec::decode_instance(&bytes, format) {
        Ok(instance) => instance,
        Err(error) => {
            tracing::debug!(app, %error, "registration body not understood");
            return text(StatusCode::BAD_REQUEST, "cannot parse request body");
        }
    };
    if let Err(error) = validate_registration(&instance, app) {
        tracing::debug!(app, %error, "registration refused");
        return text(StatusCode::BAD_REQUEST, error.to_string());
    }
    match registry.register(instance) {
        Ok(_) => empty(StatusCode::NO_CONTENT),
        // 503, not 4xx: the registration is right, the registry has no room now (see RegistryFull).
        Err(full) => text(StatusCode::SERVICE_UNAVAILABLE, full.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use super::*;
    use crate::credentials::CheckCredentials;
    use crate::{AllowList, RegistryConfig};

    /// Lets in `eureka` with password `secret` only.
    #[derive(Debug)]
    struct OneUser;

    impl CheckCredentials for OneUser {
        fn check<'a>(&'a self, user: &'a str, password: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
            Box::pin(async move { user == "eureka" && password == "secret" })
        }
    }

    const GOOD: &str = "Basic ZXVyZWthOnNlY3JldA=="; // eureka:secret
    const BAD: &str = "Basic ZXVyZWthOndyb25n"; // eureka:wrong

    fn registry(users: bool) -> Registry {
        let credentials: Option<Arc<dyn CheckCredentials>> = if users { Some(Arc::new(OneUser)) } else { None };
        Registry::new(RegistryConfig { credentials, allow: AllowList::parse(&["127.0.0.1/32"]).unwrap(), ..RegistryConfig::default() }).unwrap()
    }

    /// The status of `method /eureka/apps[/SVC]` from `address` with `certificate` and `authorization`.
    async fn status(registry: &Registry, method: Method, address: &str, certificate: ClientCertificate, authorization: Option<&str>) -> StatusCode {
        let path = if method == Method::GET { "/eureka/apps" } else { "/eureka/apps/SVC" };
        let mut request = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        // Not a valid registration: a request past the access checks gets 400, not 204.
        let request = request.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
        let response = handle(request, Peer { address: format!("{address}:5000").parse().unwrap(), certificate }, registry).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"wsgate registry\"");
        }
        response.status()
    }

    #[tokio::test]
    async fn without_authentication_reads_are_open_and_changes_need_the_allow_list() {
        let open = registry(false);
        assert_eq!(status(&open, Method::GET, "10.0.0.1", ClientCertificate::NotAsked, None).await, StatusCode::OK);
        assert_eq!(status(&open, Method::POST, "127.0.0.1", ClientCertificate::NotAsked, None).await, StatusCode::BAD_REQUEST);
        assert_eq!(status(&open, Method::POST, "127.0.0.2", ClientCertificate::NotAsked, None).await, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_verified_certificate_or_a_credential_suffices_when_certificates_are_asked_for() {
        for users in [false, true] {
            let registry = registry(users);
            for (method, passed) in [(Method::GET, StatusCode::OK), (Method::POST, StatusCode::BAD_REQUEST)] {
                assert_eq!(status(&registry, method.clone(), "127.0.0.1", ClientCertificate::Verified, None).await, passed, "{method} users={users}");
                assert_eq!(status(&registry, method.clone(), "127.0.0.1", ClientCertificate::Absent, None).await, StatusCode::UNAUTHORIZED, "{method} users={users}");
                assert_eq!(status(&registry, method.clone(), "127.0.0.1", ClientCertificate::Absent, Some(BAD)).await, StatusCode::UNAUTHORIZED, "{method} users={users}");
                let with_credential = if users { passed } else { StatusCode::UNAUTHORIZED };
                assert_eq!(status(&registry, method.clone(), "127.0.0.1", ClientCertificate::Absent, Some(GOOD)).await, with_credential, "{method} users={users}");
            }
            // The allow list applies to certificate holders too.
            assert_eq!(status(&registry, Method::POST, "127.0.0.2", ClientCertificate::Verified, Some(GOOD)).await, StatusCode::FORBIDDEN);
        }
    }

    #[tokio::test]
    async fn with_users_and_no_certificates_asked_for_a_credential_is_needed() {
        let registry = registry(true);
        assert_eq!(status(&registry, Method::GET, "127.0.0.1", ClientCertificate::NotAsked, None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&registry, Method::GET, "127.0.0.1", ClientCertificate::NotAsked, Some(GOOD)).await, StatusCode::OK);
        assert_eq!(status(&registry, Method::POST, "127.0.0.1", ClientCertificate::NotAsked, Some(GOOD)).await, StatusCode::BAD_REQUEST);
    }
}
