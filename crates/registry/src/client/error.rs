//! Errors of the Eureka client. `Display` texts are for logs, not a contract: match on variants.

use http::StatusCode;
use thiserror::Error;

use crate::codec::DecodeError;

/// Why the client could not be built.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// No service URL was given (`defaultZone` empty or only commas).
    #[error("no Eureka service URL given")]
    NoServiceUrls,
    /// A service URL is not a usable `http://` or `https://` URL.
    #[error("invalid Eureka service URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The default TLS configuration (the system's roots) could not be built.
    #[error("cannot set up TLS for https Eureka URLs: {0}")]
    Tls(#[source] rustls::Error),
}

/// Why one attempt at one endpoint failed. Every variant quarantines that endpoint.
#[derive(Debug, Error)]
pub enum AttemptError {
    /// Connecting, sending or reading failed.
    #[error("request failed: {}", super::tls::with_causes(.0.as_ref()))]
    Io(Box<dyn std::error::Error + Send + Sync>),
    /// The TLS handshake or session failed: the server's certificate is not trusted or does not name
    /// its host, or the server refused the client (no or an unknown client certificate).
    #[error("TLS failed: {0}")]
    Tls(#[source] rustls::Error),
    /// No answer within this time (the connect and read time-outs together).
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The server answered 5xx.
    #[error("server error {0}")]
    ServerError(StatusCode),
    /// The answer was larger than [`crate::client::MAX_BODY_BYTES`], compressed or not.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The gzip-encoded answer did not decompress.
    #[error("bad gzip answer: {0}")]
    Gzip(#[source] std::io::Error),
    /// The answer (status 200) was not an applications document.
    #[error("unreadable answer: {0}")]
    Decode(#[source] DecodeError),
}

/// Why a fetch failed; the client's copy of the registry is left as it was.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Every attempt failed; `last` is the failure of the last one.
    #[error("{url}: {last} ({attempts} attempt(s), no endpoint left)")]
    AllFailed {
        /// How many attempts were made.
        attempts: usize,
        /// The URL of the last attempt.
        url: String,
        /// Its failure.
        #[source]
        last: AttemptError,
    },
    /// No endpoint could be tried (not expected: the quarantine clears before it covers them all).
    #[error("no Eureka endpoint to try")]
    NoEndpoint,
    /// A full fetch was answered with a status that is neither 200 nor 5xx (such as 403 or 404).
    #[error("{url}: answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: StatusCode,
    },
}
