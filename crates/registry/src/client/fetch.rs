//! One `GET` of an applications document, with failover across the service URLs.
//!
//! Up to [`ATTEMPTS`] attempts per request, each at the endpoint [`Endpoints::pick`] chooses. An
//! attempt fails, and quarantines its endpoint, on an IO error, a time-out, a 5xx, or a 200 whose
//! body is not an applications document (a server answering garbage is as broken as one answering
//! 500). Other statuses are the server's answer and are returned: a non-200 delta means "fetch
//! everything", not "this server is broken".
//!
//! The HTTP client is hyper's with the connector of `tls` (http and https), as in the registration
//! client, asking for JSON and gzip; the body is decompressed with flate2 within [`MAX_BODY_BYTES`].

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::endpoints::Endpoints;
use super::error::{AttemptError, ConfigError, FetchError};
use super::service_url::ServiceUrl;
use super::tls::{self, Connector};
use crate::credentials::Credentials;
use crate::codec::{decode_applications, Format};
use crate::model::Applications;

/// Attempts per request (Java's `numberOfRetries`, 3).
pub(crate) const ATTEMPTS: usize = 3;

/// Largest applications document accepted, compressed or not. The embedded registry's 10,000
/// instances of about 2 KiB each are 20 MiB; the limit keeps a hostile or broken server (or a gzip
/// bomb) from exhausting memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What a successful request got.
#[derive(Debug)]
pub(crate) enum Reply {
    /// 200 with an applications document.
    Applications(Applications),
    /// Any status other than 200 and 5xx (not an endpoint failure).
    Status(StatusCode),
}

/// The HTTP side of the client: hyper's pooled client with the time-outs.
#[derive(Debug)]
pub(crate) struct Transport {
    client: Client<Connector, Empty<Bytes>>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Transport {
    /// A transport for `urls`, with `tls` for the https ones (see `tls::connector`).
    pub(crate) fn new(tls: Option<&Arc<rustls::ClientConfig>>, urls: &[ServiceUrl], connect_timeout: Duration, read_timeout: Duration) -> Result<Transport, ConfigError> {
        let client = Client::builder(TokioExecutor::new()).build(tls::connector(tls, urls, connect_timeout)?);
        Ok(Transport { client, connect_timeout, read_timeout })
    }

    /// `GET {endpoint}{path}` with failover: see the module documentation.
    pub(crate) async fn get(&self, endpoints: &Mutex<Endpoints>, path: &str) -> Result<(String, Reply), FetchError> {
        let mut tried = Vec::with_capacity(ATTEMPTS);
        let mut last = None;
        while tried.len() < ATTEMPTS {
            // The lock is never held across an await.
            let picked = {
                let mut endpoints = lock(endpoints);
                endpoints.pick(&tried).map(|index| (index, format!("{}{path}", endpoints.url(index)), endpoints.credential(index).map(Credentials::header_value)))
            };
            let Some((index, url, authorization)) = picked else { break };
            tried.push(index);
            match self.attempt(&url, authorization).await {
                Ok(reply) => {
                    lock(endpoints).succeeded(index);
                    return Ok((url, reply));
                }
                Err(error) => {
                    tracing::warn!(%url, %error, "Eureka request failed; quarantining the endpoint");
                    lock(endpoints).failed(index);
                    last = Some((url, error));
                }
            }
        }
        match last {
            Some((url, last)) => Err(FetchError::AllFailed { attempts: tried.len(), url, last }),
            None => Err(FetchError::NoEndpoint),
        }
    }

    /// One request to one URL.
    async fn attempt(&self, url: &str, authorization: Option<HeaderValue>) -> Result<Reply, AttemptError> {
        let mut request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Empty::new())
            .map_err(|error| AttemptError::Io(error.into()))?;
        if let Some(authorization) = authorization {
            request.headers_mut().insert(header::AUTHORIZATION, authorization);
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(tls::request_error)?;
            let status = response.status();
            let gzipped = response.headers().get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            // Read the body even when it is not used, so the connection goes back to the pool.
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await.map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() { AttemptError::TooLarge(MAX_BODY_BYTES) } else { AttemptError::Io(error) }
            })?;
            Ok::<_, AttemptError>((status, gzipped, body.to_bytes()))
        };
        // The connector bounds connecting by the connect time-out; the whole exchange is bounded by
        // both together, so a connected server always gets at least the read time-out to answer.
        let limit = self.connect_timeout + self.read_timeout;
        let (status, gzipped, body) = tokio::time::timeout(limit, exchange).await.map_err(|_| AttemptError::Timeout(limit))??;
        if status.is_server_error() {
            return Err(AttemptError::ServerError(status));
        }
        if status != StatusCode::OK {
            return Ok(Reply::Status(status));
        }
        let body = if gzipped { gunzip(&body)? } else { body.to_vec() };
        // JSON is asked for, but a server may answer XML anyway (Java does when it ignores Accept).
        let format = Format::sniff(&body).unwrap_or(Format::Json);
        decode_applications(&body, format).map(Reply::Applications).map_err(AttemptError::Decode)
    }
}

/// Decompresses a gzip body, refusing to grow past [`MAX_BODY_BYTES`].
fn gunzip(body: &[u8]) -> Result<Vec<u8>, AttemptError> {
    let mut plain = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_BODY_BYTES));
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(body).take(limit).read_to_end(&mut plain).map_err(AttemptError::Gzip)?;
    if plain.len() > MAX_BODY_BYTES {
        return Err(AttemptError::TooLarge(MAX_BODY_BYTES));
    }
    Ok(plain)
}

fn lock(endpoints: &Mutex<Endpoints>) -> std::sync::MutexGuard<'_, Endpoints> {
    // The endpoint state is a few indices updated in single steps: still consistent after a panic.
    endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_round_trips_and_refuses_garbage() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"{\"applications\":{}}").unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), b"{\"applications\":{}}");
        assert!(matches!(gunzip(b"not gzip"), Err(AttemptError::Gzip(_))));
    }
}
