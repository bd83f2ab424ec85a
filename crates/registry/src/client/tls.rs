//! https service URLs: the one connector of [`super::EurekaClient`] and [`super::Registration`], and
//! how a failed request reads in logs.
//!
//! The connector is hyper-rustls's around hyper's `HttpConnector`: `http` URLs go out plain, `https`
//! ones through rustls with the configuration the caller gives (the gateway gives its configuration
//! towards services). Without one, https URLs are verified against the system's root certificates, as
//! a Java Eureka client trusts the JVM's default trust store; they are read only when a URL is https.
//! The host is always checked: a DNS name against the certificate's DNS names (and sent as SNI), an IP
//! literal against its IP addresses.

use std::error::Error;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::error::{AttemptError, ConfigError};
use super::service_url::ServiceUrl;

/// The connector of both clients.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// A connector for `urls`, connecting within `connect_timeout`, with `tls` for https URLs (`None`:
/// the system's roots, no client certificate).
///
/// # Errors
/// [`ConfigError::Tls`] when rustls offers no protocol version (not expected with its ring provider).
pub(crate) fn connector(tls: Option<&Arc<rustls::ClientConfig>>, urls: &[ServiceUrl], connect_timeout: Duration) -> Result<Connector, ConfigError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // `https` URIs pass through this connector to the TLS layer around it.
    http.enforce_http(false);
    let tls = match tls {
        Some(tls) => Arc::clone(tls),
        None => {
            let roots = if urls.iter().any(ServiceUrl::is_https) { system_roots("https Eureka URLs") } else { RootCertStore::empty() };
            Arc::new(tls_config(roots, None).map_err(ConfigError::Tls)?)
        }
    };
    // `From` is the builder's `https_or_http()` minus its rule that ALPN be unset (the gateway's
    // configuration offers http/1.1), and shares the caller's configuration with its session cache.
    Ok(HttpsConnector::from((http, tls)))
}

/// A client configuration with rustls's ring provider and safe protocol versions (TLS 1.2 and 1.3),
/// trusting `roots`, presenting `identity` (a certificate chain, the client's first, and its key) to
/// servers that ask for one.
///
/// # Errors
/// rustls's, when the key does not fit the certificate or no protocol version is usable.
pub fn tls_config(roots: RootCertStore, identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key),
    }
}

/// The system's root certificates (on Linux OpenSSL's bundle and folder; `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` honoured), for `purpose` (which the logs name, such as `https Eureka URLs`).
/// Unreadable files are logged; without any root, a warning says that nothing can be verified, and
/// every https peer fails with an unknown-issuer TLS error.
pub fn system_roots(purpose: &str) -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "cannot read some of the system's root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::info!(added, ignored, "{purpose} are verified against the system's root certificates");
    if added == 0 {
        tracing::warn!("no system root certificate found: {purpose} cannot be verified");
    }
    roots
}

/// The attempt error of a request hyper's client could not complete: [`AttemptError::Tls`] with
/// rustls's reason when TLS failed (an untrusted certificate, a name it does not cover, the alert of
/// a server that wants a client certificate), else [`AttemptError::Io`].
pub(crate) fn request_error(error: hyper_util::client::legacy::Error) -> AttemptError {
    match tls_cause(&error) {
        Some(cause) => AttemptError::Tls(cause.clone()),
        None => AttemptError::Io(error.into()),
    }
}

/// The rustls error somewhere in `error`'s chain.
fn tls_cause<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's `source` skips the error it wraps, which is where tokio-rustls puts rustls's.
        if let Some(tls) = error.downcast_ref::<io::Error>().and_then(io::Error::get_ref).and_then(|inner| tls_cause(inner)) {
            return Some(tls);
        }
        next = error.source();
    }
    None
}

/// `error` and its causes, `: `-separated: hyper's own text ("client error (Connect)") says little.
pub(crate) fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_error_is_found_inside_io_errors() {
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, rustls::Error::NoCertificatesPresented));
        assert!(matches!(tls_cause(&wrapped), Some(rustls::Error::NoCertificatesPresented)));
        assert!(tls_cause(&io::Error::other("connection refused")).is_none());
    }

    #[test]
    fn causes_are_chained() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] io::Error);
        assert_eq!(with_causes(&Outer(io::Error::other("tcp connect error"))), "client error (Connect): tcp connect error");
    }
}
