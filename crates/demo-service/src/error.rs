//! The error type of the public API.

use std::net::SocketAddr;

/// Why the demo service could not be bound or served.
///
/// The `Display` text is meant for people and is not a contract; match on the variants.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The configured base path is not usable as a URL path prefix.
    #[error("invalid base path {base_path:?}: {reason}")]
    InvalidBasePath {
        /// The base path as configured.
        base_path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The listener could not be bound (address in use, permission denied, ...).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that was asked for.
        address: SocketAddr,
        /// The cause reported by the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The Eureka client cannot be set up (its registry URL is not usable).
    #[error(transparent)]
    Eureka(#[from] crate::eureka::EurekaError),
    /// The TLS files for an https registry cannot be used.
    #[error(transparent)]
    RegistryTls(#[from] crate::eureka::RegistryTlsError),
}
