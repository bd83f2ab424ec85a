//! The HTTP proxy: requests without a WebSocket upgrade go through the same route table to a
//! service's REST API or web UI.
//!
//! Instances are picked as for WebSocket sessions. A request is retried on another instance only
//! when it was never sent: its connection could not be made (refused, reset, unreachable) and it has
//! no body, so nothing is lost by sending it again whatever its method. A time-out is not retried,
//! because the service may have received the request.
//!
//! A secure instance is reached over https, through hyper-rustls with the gateway's one
//! [`ServiceTls`] configuration (the WebSocket upstream's too); a failed TLS handshake counts as a
//! connection that could not be made.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tracing::warn;

use crate::balance::{Picker, Tried};
use crate::body::{self, Body};
use crate::discovery::Instance;
use crate::failure::Failure;
use crate::handshake::{end_to_end, Forwarded};
use crate::route::Resolved;
use crate::tls::client::ServiceTls;
use crate::upstream::{self, ConnectCause, ConnectError, TlsFailure};

/// Forwards plain HTTP requests over pooled keep-alive connections.
#[derive(Debug, Clone)]
pub struct HttpProxy {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    tls: ServiceTls,
    timeout: Duration,
}

/// Why one try failed, and whether the request was sent.
struct TryError {
    failure: Failure,
    /// The connection could not be made, so the service never saw the request.
    unsent: bool,
}

impl HttpProxy {
    /// A proxy that gives each service `timeout` to answer with its response headers, and reaches
    /// secure instances with `tls`.
    pub fn new(timeout: Duration, tls: &ServiceTls) -> HttpProxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // `https` URIs pass through this connector to the TLS layer around it.
        connector.enforce_http(false);
        let connector = HttpsConnector::from((connector, Arc::clone(tls.config())));
        HttpProxy { client: Client::builder(TokioExecutor::new()).build(connector), tls: tls.clone(), timeout }
    }

    /// Sends `request` to an instance of the `resolved` service, chosen by `picker`, and streams the
    /// answer back; a request without a body whose connection failed is retried on another instance.
    ///
    /// # Errors
    ///
    /// [`Failure::NoInstance`] when no instance is UP; [`Failure::Connect`] (the last try's) when the
    /// instance cannot be reached or does not answer in time.
    pub async fn forward(&self, request: Request<Incoming>, picker: &Picker, resolved: &Resolved, forwarded: &Forwarded) -> Result<Response<Body>, Failure> {
        let (parts, incoming) = request.into_parts();
        let replayable = incoming.is_end_stream();
        let mut incoming = Some(incoming);
        let mut headers = end_to_end(&parts.headers);
        forwarded.apply(&mut headers);
        let mut tried = Tried::default();
        let mut retries = 0;
        let mut last_failure = None;
        loop {
            let Some(pick) = picker.pick_for_try(&resolved.service, &parts.headers, &tried, retries).await else {
                return Err(last_failure.unwrap_or_else(|| Failure::NoInstance { service_id: resolved.requested_id.clone() }));
            };
            let body = incoming.take().map_or_else(body::empty, |incoming| incoming.boxed());
            // Only a request that may be sent again needs its headers kept.
            let headers = if replayable { headers.clone() } else { std::mem::take(&mut headers) };
            match self.send(&parts.method, headers, body, pick.instance, &resolved.target).await {
                Ok(response) => return Ok(response),
                Err(TryError { failure, unsent: true }) => {
                    picker.failed(pick, &mut tried, Instant::now());
                    if !replayable || retries == picker.retries() {
                        return Err(failure);
                    }
                    retries += 1;
                    warn!(%failure, retry = retries, "connect failed; trying another instance");
                    last_failure = Some(failure);
                }
                Err(TryError { failure, unsent: false }) => return Err(failure),
            }
        }
    }

    /// One try: sends the request to `target` (path and query) on `instance`.
    async fn send(&self, method: &Method, headers: HeaderMap, body: Body, instance: &Instance, target: &PathAndQuery) -> Result<Response<Body>, TryError> {
        let authority = instance.authority();
        let scheme = if instance.secure { "https" } else { "http" };
        let url = format!("{scheme}://{authority}{target}");
        if instance.secure {
            self.tls.warn_if_unverified(&url);
        }
        let connect_error = |cause, unsent| TryError { failure: Failure::Connect(ConnectError { url: url.clone(), cause }), unsent };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query(target.clone())
            .build()
            .map_err(|_| connect_error(ConnectCause::BadAddress, true))?;
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if let Ok(host) = HeaderValue::try_from(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => return Err(connect_error(ConnectCause::TimedOut, false)),
            Ok(Err(error)) => {
                let unsent = error.is_connect();
                return Err(connect_error(cause_of(error), unsent));
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        parts.headers = end_to_end(&parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// What a client error means for the client: refused and timed-out connections and TLS failures are
/// told apart.
fn cause_of(error: hyper_util::client::legacy::Error) -> ConnectCause {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return ConnectCause::Tls(TlsFailure::Rejected(tls.clone()));
        }
        let Some(io_error) = current.downcast_ref::<io::Error>() else {
            source = current.source();
            continue;
        };
        if let Some(cause) = upstream::classify(io_error) {
            return cause;
        }
        // An I/O error's `source` skips the error it wraps.
        source = io_error.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)).or_else(|| current.source());
    }
    ConnectCause::Proxy(error)
}
