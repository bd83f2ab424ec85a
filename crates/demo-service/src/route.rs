//! Which endpoint a request is for, and the dispatch to it.

use hyper::body::Incoming;
use hyper::{Request, Response};
use tracing::debug;

use crate::error::DemoError;
use crate::http::{self, Body};
use crate::server::Stopped;
use crate::ws::{self, WsEndpoint};

/// The validated path prefix of every endpoint: empty for the root, otherwise `/a/b`
/// without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BasePath(String);

/// What every request handler needs to know about the service.
#[derive(Debug)]
pub(crate) struct Context {
    /// The prefix every endpoint path starts with.
    pub(crate) base_path: BasePath,
    /// The instance id reported by the greeting endpoint and the index page.
    pub(crate) instance_id: String,
}

/// The endpoints the service answers, found from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/` or `/index.html` (or the bare base path): the HTML page.
    Index,
    /// `/api/v1/greeting`: the JSON greeting.
    Greeting,
    /// `/api/v1/request`: the JSON description of the request.
    RequestEcho,
    /// `/ws/...`: a WebSocket endpoint.
    WebSocket(WsEndpoint),
}

/// Answers one HTTP request (possibly by upgrading it to a WebSocket session).
pub(crate) async fn handle(
    request: Request<Incoming>,
    context: &Context,
    stopped: Stopped,
) -> Response<Body> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = match Endpoint::find(&context.base_path, uri.path()) {
        None => http::not_found(),
        Some(Endpoint::Index) => http::index(&request, context),
        Some(Endpoint::Greeting) => http::greeting(&request, &context.instance_id),
        Some(Endpoint::RequestEcho) => http::request_echo(request).await,
        Some(Endpoint::WebSocket(endpoint)) => ws::upgrade(request, endpoint, stopped),
    };
    debug!(%method, %uri, status = response.status().as_u16(), "request answered");
    response
}

// ===== impl BasePath =====

impl BasePath {
    /// Validates a configured base path and drops its trailing `/`s.
    ///
    /// # Errors
    ///
    /// [`DemoError::InvalidBasePath`] if it does not start with `/`, or holds anything but
    /// visible ASCII, or holds `?` or `#`.
    pub(crate) fn parse(raw: &str) -> Result<Self, DemoError> {
        let invalid = |reason| DemoError::InvalidBasePath {
            base_path: raw.to_owned(),
            reason,
        };
        if !raw.starts_with('/') {
            return Err(invalid("it must start with `/`"));
        }
        if raw
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
        {
            return Err(invalid("it must be visible ASCII without `?` or `#`"));
        }
        Ok(Self(raw.trim_end_matches('/').to_owned()))
    }

    /// The prefix, empty for the root.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

// ===== impl Endpoint =====

impl Endpoint {
    /// The endpoint a request path (as received, still percent-encoded) is for, if any.
    fn find(base_path: &BasePath, path: &str) -> Option<Self> {
        let endpoint = match path.strip_prefix(base_path.as_str())? {
            "" | "/" | "/index.html" => Self::Index,
            "/api/v1/greeting" => Self::Greeting,
            "/api/v1/request" => Self::RequestEcho,
            "/ws/uppercase" => Self::WebSocket(WsEndpoint::Uppercase),
            "/ws/header" => Self::WebSocket(WsEndpoint::Header),
            _ => return None,
        };
        Some(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(raw: &str) -> BasePath {
        BasePath::parse(raw).unwrap()
    }

    #[test]
    fn base_path_drops_trailing_slashes() {
        assert_eq!(base("/discoverableclient/").as_str(), "/discoverableclient");
        assert_eq!(base("/a/b").as_str(), "/a/b");
        assert_eq!(base("/").as_str(), "");
    }

    #[test]
    fn base_path_rejects_unusable_prefixes() {
        for raw in ["", "relative", "/a?b", "/a#b", "/a b", "/ä"] {
            assert!(
                matches!(BasePath::parse(raw), Err(DemoError::InvalidBasePath { .. })),
                "{raw:?} was accepted"
            );
        }
    }

    #[test]
    fn endpoints_are_found_under_the_base_path() {
        let dc = base("/discoverableclient");
        let find = |path| Endpoint::find(&dc, path);
        assert_eq!(find("/discoverableclient"), Some(Endpoint::Index));
        assert_eq!(find("/discoverableclient/"), Some(Endpoint::Index));
        assert_eq!(
            find("/discoverableclient/index.html"),
            Some(Endpoint::Index)
        );
        assert_eq!(
            find("/discoverableclient/api/v1/greeting"),
            Some(Endpoint::Greeting)
        );
        assert_eq!(
            find("/discoverableclient/api/v1/request"),
            Some(Endpoint::RequestEcho)
        );
        assert_eq!(
            find("/discoverableclient/ws/uppercase"),
            Some(Endpoint::WebSocket(WsEndpoint::Uppercase))
        );
        assert_eq!(
            find("/discoverableclient/ws/header"),
            Some(Endpoint::WebSocket(WsEndpoint::Header))
        );
    }

    #[test]
    fn other_paths_are_not_found() {
        let dc = base("/discoverableclient");
        for path in [
            "/",
            "/discoverableclientx/ws/uppercase",
            "/discoverableclient/ws/uppercase/",
            "/discoverableclient/ws",
            "/other/ws/uppercase",
            "*",
        ] {
            assert_eq!(Endpoint::find(&dc, path), None, "{path:?} was found");
        }
    }

    #[test]
    fn root_base_path_serves_at_the_root() {
        let root = base("/");
        assert_eq!(Endpoint::find(&root, "/"), Some(Endpoint::Index));
        assert_eq!(
            Endpoint::find(&root, "/ws/header"),
            Some(Endpoint::WebSocket(WsEndpoint::Header))
        );
    }
}
