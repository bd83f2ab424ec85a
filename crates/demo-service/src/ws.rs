//! The WebSocket endpoints: the upgrade of a request and the sessions that follow.
//!
//! After a valid handshake the `101` response is returned to hyper, and a task waits for
//! hyper to hand over the connection, wraps it in a tokio-tungstenite stream (messages and
//! frames up to 64 MiB) and runs the endpoint's session until the client leaves or the
//! service stops. tungstenite answers pings and echoes the client's close code by itself.
//!
//! This service reassembles whole messages on purpose: it is an endpoint, not a relay.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::handshake;
use crate::headers;
use crate::http::{self, Body};
use crate::server::Stopped;

/// The largest message (and frame) a session accepts.
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// How long the client has to answer the close that follows `bye`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A server-side WebSocket over an upgraded hyper connection.
type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// The WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsEndpoint {
    /// `/ws/uppercase`: answers each message upper-cased; `bye` closes with 1000.
    Uppercase,
    /// `/ws/header`: answers each message with the upgrade request's URI and headers.
    Header,
}

/// A session to run once the connection is upgraded, with what it needs from the request.
#[derive(Debug)]
enum Session {
    /// See [`WsEndpoint::Uppercase`].
    Uppercase,
    /// See [`WsEndpoint::Header`]; holds the JSON reply.
    Header(Utf8Bytes),
}

/// The JSON reply of `/ws/header`.
#[derive(Debug, Serialize)]
struct HeaderReply<'a> {
    /// The request target of the upgrade request as received (path and query).
    uri: String,
    /// The headers of the upgrade request, see [`headers::joined`].
    headers: BTreeMap<&'a str, String>,
}

/// Answers a request to a WebSocket endpoint: `101` and a spawned session, or the
/// handshake's error status.
pub(crate) fn upgrade(
    mut request: Request<Incoming>,
    endpoint: WsEndpoint,
    stopped: Stopped,
) -> Response<Body> {
    let accepted = match handshake::accept(&request) {
        Ok(accepted) => accepted,
        Err(error) => {
            debug!(?endpoint, %error, "WebSocket handshake refused");
            return error.into_response();
        }
    };
    let session = match endpoint {
        WsEndpoint::Uppercase => Session::Uppercase,
        WsEndpoint::Header => {
            let reply = HeaderReply {
                uri: request.uri().to_string(),
                headers: headers::joined(request.headers()),
            };
            match serde_json::to_string(&reply) {
                Ok(json) => Session::Header(json.into()),
                Err(error) => {
                    debug!(%error, "header reply could not be serialised");
                    return http::internal_error();
                }
            }
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                debug!(?endpoint, %error, "connection was not upgraded");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config()))
                .await;
        debug!(?endpoint, "WebSocket session open");
        // Order: the session first; the stop signal only matters while it still runs.
        tokio::select! {
            biased;
            result = session.run(ws) => match result {
                Ok(()) => debug!(?endpoint, "WebSocket session closed"),
                Err(error) => debug!(?endpoint, %error, "WebSocket session ended with an error"),
            },
            () = stopped.wait() => debug!(?endpoint, "WebSocket session dropped: service stopped"),
        }
    });
    accepted.into_response()
}

/// The tungstenite configuration of every session.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

// ===== impl Session =====

impl Session {
    /// Runs the session until the client leaves.
    ///
    /// # Errors
    ///
    /// The WebSocket error that ended the session (protocol violation, message too large,
    /// connection lost, ...).
    async fn run(self, mut ws: Ws) -> Result<(), WsError> {
        match self {
            Self::Uppercase => uppercase(&mut ws).await,
            Self::Header(reply) => header(&mut ws, reply).await,
        }
    }
}

/// `/ws/uppercase`: text upper-cased as text, binary with ASCII letters upper-cased as
/// binary; after answering `bye` (any case) the session closes with 1000.
async fn uppercase(ws: &mut Ws) -> Result<(), WsError> {
    while let Some(message) = ws.next().await {
        let (reply, is_bye) = match message? {
            Message::Text(text) => (
                Message::text(text.to_uppercase()),
                text.eq_ignore_ascii_case("bye"),
            ),
            Message::Binary(data) => (
                Message::Binary(uppercase_ascii(&data)),
                data.eq_ignore_ascii_case(b"bye"),
            ),
            // tungstenite answers pings and the client's close itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => continue,
        };
        ws.send(reply).await?;
        if is_bye {
            return close_normally(ws).await;
        }
    }
    Ok(())
}

/// `/ws/header`: every data message is answered with the same JSON text.
async fn header(ws: &mut Ws, reply: Utf8Bytes) -> Result<(), WsError> {
    while let Some(message) = ws.next().await {
        match message? {
            Message::Text(_) | Message::Binary(_) => ws.send(Message::Text(reply.clone())).await?,
            // tungstenite answers pings and the client's close itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
    Ok(())
}

/// Sends close 1000 and waits (bounded by [`CLOSE_TIMEOUT`]) for the client's close, so
/// the close handshake completes before the connection is dropped.
async fn close_normally(ws: &mut Ws) -> Result<(), WsError> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    };
    ws.close(Some(frame)).await?;
    let drain = async {
        // Data the client sent before seeing our close is discarded; the stream ends
        // once its close has arrived.
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok(())
    };
    tokio::time::timeout(CLOSE_TIMEOUT, drain)
        .await
        .unwrap_or_else(|_| {
            debug!("client did not answer the close in time");
            Ok(())
        })
}

/// The bytes with ASCII letters upper-cased; other bytes are kept.
fn uppercase_ascii(data: &[u8]) -> Bytes {
    Bytes::from(data.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_uppercase_touches_only_ascii_letters() {
        let data = b"hello, World! \x00\xff\xe4z{";
        assert_eq!(&uppercase_ascii(data)[..], b"HELLO, WORLD! \x00\xff\xe4Z{");
    }

    #[test]
    fn binary_uppercase_of_empty_is_empty() {
        assert!(uppercase_ascii(b"").is_empty());
    }
}
