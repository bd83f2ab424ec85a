//! wsgate: an API gateway whose headline feature is a WebSocket reverse proxy for services found
//! through a service registry (the WebSocket support of the Zowe API Mediation Layer, in Rust).
//!
//! # Brief overview
//!
//! A request flows one way through these stages, each a module named after its concept:
//!
//! 1. [`server`]: accepts connections on one worker per core, completes TLS with [`tls`] when it is
//!    on, and serves HTTP/1.1 with hyper;
//! 2. [`handshake`]: tells WebSocket upgrades from plain HTTP and checks them, and [`auth`] checks
//!    the client's origin and credential before any service is contacted;
//! 3. [`route`]: resolves `/{serviceId}/{gatewayUrl}/...` in the [`route::RouteTable`], which the
//!    [`discovery::ServiceDirectory`] rebuilds whenever a source of services changes: the static
//!    config, or the embedded Eureka registry (`wsgate-registry`), which [`server`] serves on its own
//!    port and [`discovery::embedded`] follows; a WebSocket session is then counted by [`limits`]
//!    (`server.limits.*`), before any service is contacted;
//! 4. [`balance`]: picks an instance, and another one when connecting fails;
//! 5. [`upstream`]: opens the session to the service before the client gets its answer, over TLS
//!    ([`tls::client`]) when the instance is secure;
//! 6. [`relay`]: forwards frames both ways with fixed buffers, or [`proxy`] forwards plain HTTP;
//! 7. [`session`]: accounts for open sessions, which [`admin`] lists.
//!
//! [`failure`] is the one place where errors become close codes or HTTP statuses, and [`config`]
//! loads and validates the configuration before anything is bound.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod balance;
pub mod body;
pub mod config;
pub mod discovery;
pub mod drain;
pub mod failure;
pub mod handshake;
pub mod limits;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod server;
pub mod session;
pub mod tls;
mod worker;
pub mod upstream;
mod websocket;

pub use config::{Config, ConfigError};
pub use server::{Gateway, GatewayError, Running};
