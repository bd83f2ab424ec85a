//! The HTTP proxy: requests without a WebSocket upgrade go through the same route table to a
//! service's REST API or web UI.

use std::io;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::discovery::Instance;
use crate::failure::Failure;
use crate::handshake::{end_to_end, Forwarded};
use crate::upstream::{ConnectCause, ConnectError};

/// Forwards plain HTTP requests over pooled keep-alive connections.
#[derive(Debug, Clone)]
pub struct HttpProxy {
    client: Client<HttpConnector, Incoming>,
    timeout: Duration,
}

impl HttpProxy {
    /// A proxy that gives each service `timeout` to answer with its response headers.
    pub fn new(timeout: Duration) -> HttpProxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        HttpProxy { client: Client::builder(TokioExecutor::new()).build(connector), timeout }
    }

    /// Sends `request` to `target` (path and query) on `instance` and streams the answer back.
    ///
    /// # Errors
    ///
    /// [`Failure::Connect`] when the instance cannot be reached or does not answer in time.
    pub async fn forward(&self, request: Request<Incoming>, instance: &Instance, target: &PathAndQuery, forwarded: &Forwarded) -> Result<Response<Body>, Failure> {
        let authority = instance.authority();
        let url = format!("http://{authority}{target}");
        let connect_error = |cause| Failure::Connect(ConnectError { url: url.clone(), cause });
        let (mut parts, body) = request.into_parts();
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(target.clone())
            .build()
            .map_err(|_| connect_error(ConnectCause::BadAddress))?;
        parts.headers = end_to_end(&parts.headers);
        forwarded.apply(&mut parts.headers);
        if let Ok(host) = HeaderValue::try_from(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        parts.version = http::Version::HTTP_11;
        let response = match tokio::time::timeout(self.timeout, self.client.request(Request::from_parts(parts, body))).await {
            Err(_) => return Err(connect_error(ConnectCause::TimedOut)),
            Ok(Err(error)) => return Err(connect_error(cause_of(error))),
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        parts.headers = end_to_end(&parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// What a client error means for the client: refused and timed-out connections are told apart.
fn cause_of(error: hyper_util::client::legacy::Error) -> ConnectCause {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        match current.downcast_ref::<io::Error>().map(io::Error::kind) {
            Some(io::ErrorKind::ConnectionRefused) => return ConnectCause::Refused,
            Some(io::ErrorKind::TimedOut) => return ConnectCause::TimedOut,
            _ => source = current.source(),
        }
    }
    ConnectCause::Proxy(error)
}
