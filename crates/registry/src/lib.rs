//! wsgate's embedded Eureka-compatible service registry.
//!
//! # Brief overview
//!
//! - [`model`]: the Eureka data model, [`Instance`] inside [`Application`] inside [`Applications`].
//! - [`codec`]: Eureka's JSON and XML, both ways, as real clients write and read them.
//! - [`registry`]: the [`Registry`], which holds leases, applies Eureka's rules (status precedence,
//!   expiry, eviction with self-preservation, deltas) and publishes every change as a new
//!   [`Applications`] snapshot on a `watch` channel, from which the gateway builds its routes.
//! - [`server`]: the Eureka REST API over HTTP/1.1 ([`server::serve`], or https with [`server::serve_tls`]), with the Java server's status
//!   codes, content negotiation, gzip and an allow list for state changes.
//! - [`config`]: [`RegistryConfig`], the registry's options and their defaults.
//! - [`credentials`]: Basic credentials, checked by the server and sent by the clients.
//! - [`client`]: [`EurekaClient`], a client following an external Eureka cluster, publishing its
//!   copy on a `watch` channel of the same shape as [`Registry::subscribe`].
//!
//! The registry never imports the gateway: the gateway subscribes to [`Registry::subscribe`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod model;
pub mod allow;
pub mod config;
pub mod credentials;
pub mod registry;
pub mod server;
pub mod client;

pub use allow::{AllowList, Cidr, CidrError};
pub use client::{ClientConfig, EurekaClient};
pub use config::RegistryConfig;
pub use model::{ActionType, Application, Applications, DataCenterInfo, Instance, LeaseInfo, Metadata, MetadataTooLarge, PortInfo, Status};
pub use registry::{LeaseError, MetadataUpdateError, Registry, RegistryFull, StateFileError};
