//! The registry's options. The listening port is the caller's (`discovery.embedded.port`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::allow::AllowList;
use crate::credentials::CheckCredentials;

/// Options of the embedded registry, with defaults chosen for a gateway routing live sessions.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Who may register, renew, cancel and change instances (POST, PUT, DELETE); others get 403.
    /// Reads are open to anyone who can reach the port, as in Eureka (a second gateway following this
    /// registry reads it). Default: loopback (`127.0.0.0/8`, `::1`).
    pub allow: AllowList,
    /// When set, every request (reads too: they list the services' addresses) needs an
    /// `Authorization: Basic` credential this check accepts, or a verified client certificate when
    /// the port speaks TLS asking for one ([`crate::server::serve_tls`]); others get 401. Changes must
    /// come from [`RegistryConfig::allow`] as well. Default: none.
    pub credentials: Option<Arc<dyn CheckCredentials>>,
    /// How often expired leases are evicted. Default 1 s: Java's 60 s would keep a dead instance's
    /// routes for up to a minute after its lease ran out.
    pub eviction_interval: Duration,
    /// Whether self-preservation may stop expiry when renewals fall below the threshold. Default
    /// off, unlike Java: on a small registry it keeps dead instances registered (and routed to)
    /// for ever. With one instance that crashes, no renewal arrives at all; with two and one dying,
    /// the survivor's two renewals a minute do not exceed the threshold of three. Turn it on for
    /// large registries whose clients may all lose the network at once. While it holds expired
    /// leases, each eviction run that finds a different number of them logs a warning.
    pub self_preservation: bool,
    /// Java's `renewalPercentThreshold`: the share of expected renewals below which self-preservation
    /// engages, and the share of the registry one eviction run must keep. Default 0.85.
    pub renewal_percent_threshold: f64,
    /// Where the registry's state is kept across restarts, if anywhere. Written atomically (temporary
    /// file, then rename) shortly after each change, every few seconds while heartbeats arrive, and
    /// on shutdown. Default: none.
    pub state_file: Option<PathBuf>,
    /// Most instances registrations may bring the registry to; a registration of one more is
    /// answered 503 (clients retry later) until one leaves. Registrations of instances already
    /// registered are never refused. Default 10,000.
    pub max_instances: usize,
    /// Largest accepted request body, before and after gzip decoding; larger ones get 413.
    /// Default 1 MiB (a registration is about 2 KiB).
    pub max_body_bytes: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            allow: AllowList::loopback(),
            credentials: None,
            eviction_interval: Duration::from_secs(1),
            self_preservation: false,
            renewal_percent_threshold: 0.85,
            state_file: None,
            max_instances: 10_000,
            max_body_bytes: 1024 * 1024,
        }
    }
}
