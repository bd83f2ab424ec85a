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

/// Answers one request of the Eureka REST API from `peer`. Usable as the body of any hyper service
/// (this is what [`super::serve`] runs), so the API can be mounted on another server.
pub async fn handle<B>(request: Request<B>, peer: SocketAddr, registry: &Registry) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(endpoint) = Endpoint::parse(request.uri().path()) else {
        return not_found();
    };
    let method = request.method().clone();
    if !allowed_methods(&endpoint).contains(&method) {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    if method != Method::GET && !registry.config().allow.allows(peer.ip()) {
        tracing::warn!(%peer, %method, path = request.uri().path(), "registry change refused: peer not in the allow list");
        return text(StatusCode::FORBIDDEN, "registry changes are not allowed from this address");
    }
    if let Some(check) = &registry.config().credentials {
        let accepted = match Credentials::from_headers(request.headers()) {
            Some(credentials) => check.check(&credentials.username, &credentials.password).await,
            None => false,
        };
        if !accepted {
            tracing::warn!(%peer, %method, path = request.uri().path(), "registry request refused: no valid credential");
            let mut response = text(StatusCode::UNAUTHORIZED, "the registry needs a valid Basic credential");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"wsgate registry\""));
            return response;
        }
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
