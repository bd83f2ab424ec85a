//! The one place where failures become what a client sees: a close code with a reason, or an HTTP
//! status (MISSION §2).

use std::borrow::Cow;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use wsgate_frame::{CloseCode, Violation};

use crate::auth::AuthError;
use crate::body::{self, Body};
use crate::config::format_duration;
use crate::handshake::ServiceRefusal;
use crate::limits::LimitExceeded;
use crate::relay::Direction;
use crate::route::RouteError;
use crate::upstream::{ConnectCause, ConnectError};

/// Why a request could not be routed to a service.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The path did not resolve.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The service has no instance taking new sessions.
    #[error("service {service_id} has no available instance")]
    NoInstance {
        /// The id as the client wrote it.
        service_id: String,
    },
    /// The service could not be reached or refused.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A session limit is reached (`server.limits.*`); checked before any connection to a service.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The gateway refused the client itself: its credential, its origin, or its right to the
    /// diagnostics.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// The challenge of the gateway's own 401s.
const CHALLENGE: &str = "Basic realm=\"wsgate\"";

/// A close frame's content.
pub type Close = (CloseCode, Cow<'static, str>);

impl Failure {
    /// The close code and reason for `close-code` mode.
    pub fn close(&self) -> Close {
        match self {
            Failure::Route(RouteError::InvalidUrl) => (CloseCode::UNSUPPORTED_DATA, "Invalid URL format".into()),
            Failure::Route(RouteError::UnknownService { service_id }) => {
                (CloseCode::UNSUPPORTED_DATA, format!("Requested service {service_id} is not known by the gateway").into())
            }
            Failure::Route(RouteError::NoRoute { gateway_url }) => {
                (CloseCode::UNSUPPORTED_DATA, format!("Requested {gateway_url} url is not known by the gateway").into())
            }
            Failure::NoInstance { service_id } => {
                (CloseCode::SERVICE_RESTART, format!("Requested service {service_id} does not have available instance").into())
            }
            Failure::Connect(ConnectError { cause: ConnectCause::Refusal(ServiceRefusal::Status { status, .. }), .. })
                if *status == StatusCode::UNAUTHORIZED =>
            {
                (CloseCode::UNSUPPORTED_DATA, "Invalid login credentials".into())
            }
            Failure::Connect(ConnectError { url, cause }) => {
                let code = match cause {
                    ConnectCause::Refusal(ServiceRefusal::Status { status, .. }) if status.is_client_error() => CloseCode::UNSUPPORTED_DATA,
                    _ => CloseCode::INTERNAL_ERROR,
                };
                // The same failure on a REST or web route is about a request, not a session.
                let what = if url.starts_with("ws") { "opening session to WebSocket service" } else { "forwarding request to service" };
                (code, format!("Error {what} at {url}: {cause}").into())
            }
            // The client itself is over its share: waiting for other sessions to end does not help it.
            Failure::Limit(LimitExceeded::PerClient { limit, .. }) => {
                (CloseCode::POLICY_VIOLATION, format!("Too many sessions from this client address (server.limits.maxSessionsPerClient: {limit})").into())
            }
            Failure::Limit(LimitExceeded::PerService { service_id, limit }) => {
                (CloseCode::TRY_AGAIN_LATER, format!("Too many sessions to service {service_id} (server.limits.maxSessionsPerService: {limit})").into())
            }
            Failure::Limit(LimitExceeded::Total { limit }) => {
                (CloseCode::TRY_AGAIN_LATER, format!("Too many sessions on the gateway (server.limits.maxSessions: {limit})").into())
            }
            Failure::Auth(AuthError::MissingCredentials | AuthError::InvalidCredentials { .. } | AuthError::InvalidToken(_)) => (CloseCode::UNSUPPORTED_DATA, "Invalid login credentials".into()),
            Failure::Auth(AuthError::OriginNotAllowed { .. }) => (CloseCode::POLICY_VIOLATION, "Origin not allowed".into()),
            Failure::Auth(AuthError::TokenNotIssued(_)) => (CloseCode::INTERNAL_ERROR, "No login token could be issued".into()),
            Failure::Auth(AuthError::NotAdmin { .. } | AuthError::AddressNotAllowed { .. }) => (CloseCode::POLICY_VIOLATION, "Access denied".into()),
        }
    }

    /// The HTTP status for `http-status` mode and for plain HTTP requests.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::Route(_) => StatusCode::NOT_FOUND,
            Failure::NoInstance { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Connect(ConnectError { cause, .. }) => match cause {
                ConnectCause::Refusal(ServiceRefusal::Status { status, .. }) if status.is_client_error() => *status,
                ConnectCause::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            Failure::Limit(LimitExceeded::PerClient { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Failure::Limit(LimitExceeded::PerService { .. } | LimitExceeded::Total { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Auth(AuthError::MissingCredentials | AuthError::InvalidCredentials { .. } | AuthError::InvalidToken(_)) => StatusCode::UNAUTHORIZED,
            Failure::Auth(AuthError::OriginNotAllowed { .. } | AuthError::NotAdmin { .. } | AuthError::AddressNotAllowed { .. }) => StatusCode::FORBIDDEN,
            Failure::Auth(AuthError::TokenNotIssued(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The HTTP error response: the status, the close reason as text, and a 401's `WWW-Authenticate`
    /// (the service's, or the gateway's own `Basic realm="wsgate"`).
    pub fn response(&self) -> Response<Body> {
        let (_, reason) = self.close();
        let mut response = body::text(self.status(), format!("{reason}\n"));
        let headers = response.headers_mut();
        match self {
            Failure::Connect(ConnectError { cause: ConnectCause::Refusal(ServiceRefusal::Status { www_authenticate: Some(challenge), .. }), .. }) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            Failure::Auth(AuthError::MissingCredentials | AuthError::InvalidCredentials { .. } | AuthError::InvalidToken(_)) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
            }
            _ => {}
        }
        response
    }
}

/// The closes sent when the frames read in `direction` break a rule: `(to the sender of the frame,
/// to the other peer)`.
pub fn violation(direction: Direction, violation: Violation) -> (Close, Close) {
    let protocol_error = |reason: &'static str| (CloseCode::PROTOCOL_ERROR, Cow::Borrowed(reason));
    let to_sender = match violation {
        Violation::TooLarge => (CloseCode::TOO_BIG, Cow::Borrowed("Frame too large")),
        Violation::BadLength => protocol_error("Invalid frame length"),
        Violation::Unmasked => protocol_error("Client frames must be masked"),
        Violation::Masked => protocol_error("Service frames must not be masked"),
    };
    let to_other = match (direction, violation) {
        (Direction::ClientToService, _) => (CloseCode::GOING_AWAY, Cow::Borrowed("Client closed the session")),
        (Direction::ServiceToClient, Violation::TooLarge) => (CloseCode::GOING_AWAY, Cow::Borrowed("WebSocket service closed the session")),
        (Direction::ServiceToClient, _) => (CloseCode::INTERNAL_ERROR, Cow::Borrowed("WebSocket service protocol error")),
    };
    (to_sender, to_other)
}

/// The close sent to the other peer when the peer read in `direction` vanished without a close.
pub fn vanished(direction: Direction) -> Close {
    match direction {
        Direction::ClientToService => (CloseCode::GOING_AWAY, "Client went away".into()),
        Direction::ServiceToClient => (CloseCode::INTERNAL_ERROR, "WebSocket service connection lost".into()),
    }
}

/// The close both peers get when neither sent anything for `timeout` (`server.webSocket.idleTimeout`):
/// 1001, as the gateway, an endpoint of both connections, is going away from the session; nothing
/// failed, so not 1011, and neither peer broke a rule, so not 1008.
pub fn idle(timeout: Duration) -> Close {
    (CloseCode::GOING_AWAY, format!("Session idle for more than {}", format_duration(timeout)).into())
}

/// The close both peers of a session get when the gateway stops: 1001, the gateway going away.
pub fn stopping() -> Close {
    (CloseCode::GOING_AWAY, "Gateway stopping".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TlsFailure;

    fn connect(cause: ConnectCause) -> Failure {
        Failure::Connect(ConnectError { url: "ws://127.0.0.1:1/ws/x?q=1".into(), cause })
    }

    fn refused(status: StatusCode) -> Failure {
        let www_authenticate = (status == StatusCode::UNAUTHORIZED).then(|| HeaderValue::from_static("Basic realm=\"x\""));
        connect(ConnectCause::Refusal(ServiceRefusal::Status { status, www_authenticate }))
    }

    fn check(failure: Failure, code: u16, reason: &str, status: u16) {
        let (close_code, close_reason) = failure.close();
        assert_eq!((close_code.0, close_reason.as_ref()), (code, reason));
        assert_eq!(failure.status().as_u16(), status);
    }

    const AT: &str = "Error opening session to WebSocket service at ws://127.0.0.1:1/ws/x?q=1: ";

    #[test]
    fn one_row_per_mission_table_line() {
        check(RouteError::InvalidUrl.into(), 1003, "Invalid URL format", 404);
        check(RouteError::UnknownService { service_id: "Nope".into() }.into(), 1003, "Requested service Nope is not known by the gateway", 404);
        check(RouteError::NoRoute { gateway_url: "ws/v9".into() }.into(), 1003, "Requested ws/v9 url is not known by the gateway", 404);
        check(Failure::NoInstance { service_id: "dc".into() }, 1012, "Requested service dc does not have available instance", 503);
        check(refused(StatusCode::UNAUTHORIZED), 1003, "Invalid login credentials", 401);
        check(refused(StatusCode::FORBIDDEN), 1003, &format!("{AT}403 Forbidden"), 403);
        check(refused(StatusCode::NOT_FOUND), 1003, &format!("{AT}404 Not Found"), 404);
        check(refused(StatusCode::INTERNAL_SERVER_ERROR), 1011, &format!("{AT}500 Internal Server Error"), 502);
        check(connect(ConnectCause::Refused), 1011, &format!("{AT}connection refused"), 502);
        check(connect(ConnectCause::TimedOut), 1011, &format!("{AT}timed out"), 504);
        check(connect(ConnectCause::Refusal(ServiceRefusal::UnexpectedSubprotocol)), 1011, &format!("{AT}unexpected subprotocol"), 502);
        let rejected = |error| connect(ConnectCause::Tls(TlsFailure::Rejected(error)));
        check(rejected(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), 1011, &format!("{AT}TLS: invalid peer certificate: UnknownIssuer"), 502);
        check(rejected(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)), 1011, &format!("{AT}TLS: received fatal alert: CertificateRequired"), 502);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        check(connect(ConnectCause::Tls(TlsFailure::Handshake(reset))), 1011, &format!("{AT}TLS: handshake failed: connection reset"), 502);
        let rest = ConnectError { url: "https://127.0.0.1:1/api/x".into(), cause: ConnectCause::Refused };
        check(rest.into(), 1011, "Error forwarding request to service at https://127.0.0.1:1/api/x: connection refused", 502);
    }

    #[test]
    fn one_row_per_session_limit() {
        let per_client = LimitExceeded::PerClient { client: "10.0.0.1".parse().unwrap(), limit: 3 };
        check(per_client.into(), 1008, "Too many sessions from this client address (server.limits.maxSessionsPerClient: 3)", 429);
        let per_service = LimitExceeded::PerService { service_id: "dc".into(), limit: 2 };
        check(per_service.into(), 1013, "Too many sessions to service dc (server.limits.maxSessionsPerService: 2)", 503);
        check(LimitExceeded::Total { limit: 500 }.into(), 1013, "Too many sessions on the gateway (server.limits.maxSessions: 500)", 503);
    }

    #[test]
    fn one_row_per_gateway_refusal() {
        check(AuthError::MissingCredentials.into(), 1003, "Invalid login credentials", 401);
        check(AuthError::InvalidCredentials { username: "alice".into() }.into(), 1003, "Invalid login credentials", 401);
        check(AuthError::InvalidToken(crate::auth::TokenError::Revoked { user: "alice".into() }).into(), 1003, "Invalid login credentials", 401);
        check(AuthError::TokenNotIssued(crate::auth::TokenError::Random).into(), 1011, "No login token could be issued", 500);
        check(AuthError::OriginNotAllowed { origin: "https://evil.example".into() }.into(), 1008, "Origin not allowed", 403);
        check(AuthError::NotAdmin { username: "alice".into() }.into(), 1008, "Access denied", 403);
        check(AuthError::AddressNotAllowed { address: [192, 0, 2, 1].into() }.into(), 1008, "Access denied", 403);
    }

    #[test]
    fn the_gateway_challenges_its_own_401s_only() {
        for failure in [Failure::from(AuthError::MissingCredentials), AuthError::InvalidCredentials { username: "alice".into() }.into()] {
            let response = failure.response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"wsgate\"");
        }
        let forbidden = Failure::from(AuthError::NotAdmin { username: "alice".into() }).response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn unauthorized_keeps_the_challenge() {
        let response = refused(StatusCode::UNAUTHORIZED).response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"x\"");
    }

    #[test]
    fn relay_closes() {
        let ((to_client, _), (to_service, _)) = violation(Direction::ClientToService, Violation::Unmasked);
        assert_eq!((to_client.0, to_service.0), (1002, 1001));
        let ((to_client, _), (to_service, _)) = violation(Direction::ClientToService, Violation::TooLarge);
        assert_eq!((to_client.0, to_service.0), (1009, 1001));
        let ((to_service, _), (to_client, _)) = violation(Direction::ServiceToClient, Violation::Masked);
        assert_eq!((to_service.0, to_client.0), (1002, 1011));
        let ((to_client, reason), _) = violation(Direction::ClientToService, Violation::BadLength);
        assert_eq!((to_client.0, reason.as_ref()), (1002, "Invalid frame length"));
        let ((to_service, _), (to_client, _)) = violation(Direction::ServiceToClient, Violation::BadLength);
        assert_eq!((to_service.0, to_client.0), (1002, 1011));
        assert_eq!(vanished(Direction::ServiceToClient).0 .0, 1011);
        assert_eq!(vanished(Direction::ClientToService).0 .0, 1001);
        let (code, reason) = idle(Duration::from_secs(30));
        assert_eq!((code.0, reason.as_ref()), (1001, "Session idle for more than 30s"));
        assert_eq!(idle(Duration::from_millis(1500)).1, "Session idle for more than 1500ms");
    }
}
