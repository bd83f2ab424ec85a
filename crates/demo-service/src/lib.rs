//! The demo WebSocket service of wsgate: the role Zowe's discoverable-client plays behind
//! the API gateway.
//!
//! # Brief overview
//!
//! One TCP listener serves HTTP/1.1 and WebSocket under a configurable base path
//! (default `/discoverableclient`):
//!
//! | Path under the base     | Kind      | Behaviour                                                   |
//! |-------------------------|-----------|-------------------------------------------------------------|
//! | `/`, `/index.html`      | HTTP GET  | a tiny HTML page naming the instance and the endpoints      |
//! | `/api/v1/greeting`      | HTTP GET  | `{"greeting":"Hello, X!","instanceId":"ID"}` (`?name=X`)    |
//! | `/api/v1/request`       | HTTP any  | echoes `{"method","uri","headers","body"}` (body ≤ 1 MiB)   |
//! | `/ws/uppercase`         | WebSocket | answers each message upper-cased; `bye` closes with 1000    |
//! | `/ws/header`            | WebSocket | answers each message with the upgrade request's URI/headers |
//!
//! The principal types:
//!
//! - [`Options`] says where to listen, under which base path, and which instance id to report.
//! - [`DemoService`] is a bound listener; [`DemoService::serve`] runs it until a shutdown
//!   future completes.
//! - [`DemoError`] is what binding or serving can fail with.
//! - [`eureka::EurekaClient`] registers the service with a Eureka registry (wsgate's embedded one),
//!   heartbeats, and cancels on shutdown, so the gateway finds it without static configuration.
//!
//! Internally, `route` maps a request path to an endpoint, `http` answers the REST and UI
//! endpoints, `handshake` validates WebSocket upgrades and builds the `101` response, and
//! `ws` runs the WebSocket sessions with tokio-tungstenite. Nothing a peer sends can make
//! the service panic: bad input becomes a `4xx` status or a closed session.

#![warn(missing_docs)]

mod error;
pub mod eureka;
mod handshake;
mod headers;
mod http;
mod route;
mod server;
mod ws;

pub use error::DemoError;
pub use server::{DemoService, Options};
