//! Session limits (`server.limits.*`): how many WebSocket sessions may be open at once, in all, from
//! one client address and to one service.
//!
//! A session counts from its accepted upgrade request, before any connection to a service is made
//! (a refused client costs no upstream connect), until its relay ends. [`SessionLimits::admit`]
//! checks and counts in one step and returns an [`Admission`] whose drop gives the count back, so no
//! path (a failed connect, a client gone before its upgrade, a relay that ends) can leak one.
//!
//! | per session | cost |
//! | --- | --- |
//! | admitting, ending | one lock each, a single one for all workers (contended only by sessions opening or ending at the same moment); a hash map lookup per limit |
//! | memory | the [`Admission`] in the session's task (48 bytes); one map entry per client address and, with `maxSessionsPerService`, per service with sessions open |

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;
use tracing::{info, warn};

use crate::config::LimitsConfig;
use crate::discovery::ServiceId;

/// Descriptors kept out of the default `maxSessions`: a tenth of the open-file limit, at least this
/// many. Listening sockets, the HTTP proxy's connections, handshakes in progress and refused clients
/// being closed hold descriptors that are not sessions.
const MIN_RESERVED_FILES: u64 = 100;

/// Why a session was not admitted. The limit is checked per client first, so a client at its own
/// limit learns so even when the gateway is full too.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitExceeded {
    /// `server.limits.maxSessionsPerClient` sessions are open from the client's address.
    #[error("{limit} sessions open from {client} (server.limits.maxSessionsPerClient)")]
    PerClient {
        /// The client's address.
        client: IpAddr,
        /// The limit.
        limit: usize,
    },
    /// `server.limits.maxSessionsPerService` sessions are open to the service.
    #[error("{limit} sessions open to service {service_id} (server.limits.maxSessionsPerService)")]
    PerService {
        /// The service's id, as the route table spells it.
        service_id: String,
        /// The limit.
        limit: usize,
    },
    /// `server.limits.maxSessions` sessions are open on the gateway.
    #[error("{limit} sessions open on the gateway (server.limits.maxSessions)")]
    Total {
        /// The limit.
        limit: usize,
    },
}

/// The session counts of the whole gateway, shared by all workers. Cheap to clone: clones share the
/// counts.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_sessions: usize,
    per_client: usize,
    per_service: Option<usize>,
    counts: Mutex<Counts>,
}

/// Only addresses and services with sessions open have an entry: one whose count drops to 0 is
/// removed, so the maps never outgrow the sessions.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    clients: HashMap<IpAddr, usize>,
    /// Keyed by the case-folded service id; empty without `maxSessionsPerService`.
    services: HashMap<Arc<str>, usize>,
}

impl SessionLimits {
    /// Limits as configured; `maxSessions`, when not written, is derived from the process's
    /// open-file limit. Logs the limits in force.
    pub fn new(config: &LimitsConfig) -> SessionLimits {
        let files = open_file_limit();
        let max_sessions = match (config.max_sessions, files) {
            (Some(configured), Ok(files)) => {
                if sessions_for_files(files) < configured {
                    warn!(
                        max_sessions = configured,
                        open_file_limit = files,
                        "server.limits.maxSessions needs about two descriptors per session, more than the open-file limit leaves; raise it (ulimit -n, LimitNOFILE=)"
                    );
                }
                configured
            }
            (Some(configured), Err(_)) => configured,
            (None, Ok(files)) => sessions_for_files(files),
            (None, Err(error)) => {
                let assumed = 1024;
                warn!(%error, assumed, "cannot read the open-file limit; server.limits.maxSessions derived from an assumed one");
                sessions_for_files(assumed)
            }
        };
        let how = if config.max_sessions.is_some() { "configured" } else { "derived from the open-file limit" };
        // Unset values (no per-service limit, an unknown open-file limit) are left out of the line.
        info!(
            max_sessions,
            max_sessions_per_client = config.max_sessions_per_client,
            max_sessions_per_service = config.max_sessions_per_service,
            open_file_limit = files.as_ref().ok().copied(),
            "session limits (maxSessions {how})"
        );
        SessionLimits::with_total(max_sessions, config)
    }

    /// Limits with `max_sessions` in all, whatever the configuration says about it.
    fn with_total(max_sessions: usize, config: &LimitsConfig) -> SessionLimits {
        let inner = Inner {
            max_sessions,
            per_client: config.max_sessions_per_client,
            per_service: config.max_sessions_per_service,
            counts: Mutex::new(Counts::default()),
        };
        SessionLimits { inner: Arc::new(inner) }
    }

    /// Counts a new session from `client` to `service` when every limit allows it.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`] naming the first limit reached: per client, then per service, then in all.
    pub fn admit(&self, client: IpAddr, service: &ServiceId) -> Result<Admission, LimitExceeded> {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; it is the same address.
        let client = client.to_canonical();
        let inner = &self.inner;
        let mut counts = inner.lock();
        let from_client = counts.clients.get(&client).copied().unwrap_or(0);
        if from_client >= inner.per_client {
            return Err(LimitExceeded::PerClient { client, limit: inner.per_client });
        }
        let service_key = match inner.per_service {
            None => None,
            Some(limit) => {
                let (key, open) = counts.services.get_key_value(service.key()).map_or_else(|| (Arc::from(service.key()), 0), |(key, &open)| (Arc::clone(key), open));
                if open >= limit {
                    return Err(LimitExceeded::PerService { service_id: service.as_str().to_owned(), limit });
                }
                Some(key)
            }
        };
        if counts.total >= inner.max_sessions {
            return Err(LimitExceeded::Total { limit: inner.max_sessions });
        }
        counts.total += 1;
        counts.clients.insert(client, from_client + 1);
        if let Some(key) = &service_key {
            *counts.services.entry(Arc::clone(key)).or_insert(0) += 1;
        }
        drop(counts);
        Ok(Admission { limits: Arc::clone(inner), client, service: service_key })
    }

    /// How many sessions are counted: in all, client addresses and services with entries.
    #[cfg(test)]
    fn counted(&self) -> (usize, usize, usize) {
        let counts = self.inner.lock();
        (counts.total, counts.clients.len(), counts.services.len())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Every update completes before the guard is dropped, so poisoning is ignored.
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A counted session; dropping it gives the count back.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<Inner>,
    client: IpAddr,
    service: Option<Arc<str>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.total -= 1;
        release(&mut counts.clients, &self.client);
        if let Some(service) = &self.service {
            release(&mut counts.services, service);
        }
    }
}

/// Takes one off `key`'s count, removing the entry at 0.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(open) = map.get_mut(key) {
        *open -= 1;
        if *open == 0 {
            map.remove(key);
        }
    }
}

/// The soft open-file limit of the process (`ulimit -n`).
fn open_file_limit() -> nix::Result<u64> {
    let (soft, _hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    Ok(soft)
}

/// The default `maxSessions` under an open-file limit of `files`: each session holds two descriptors
/// (client and service), after a reserve of a tenth (at least [`MIN_RESERVED_FILES`]); at least 1.
fn sessions_for_files(files: u64) -> usize {
    let reserved = (files / 10).max(MIN_RESERVED_FILES);
    let sessions = files.saturating_sub(reserved) / 2;
    usize::try_from(sessions).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize, per_service: Option<usize>) -> SessionLimits {
        let config = LimitsConfig { max_sessions: Some(total), max_sessions_per_client: per_client, max_sessions_per_service: per_service };
        SessionLimits::with_total(total, &config)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_client_refuses_the_next_session_until_one_ends() {
        let limits = limits(100, 2, None);
        let svc = ServiceId::new("svc");
        let first = limits.admit(ip("10.0.0.1"), &svc).unwrap();
        let _second = limits.admit(ip("10.0.0.1"), &svc).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.1"), &svc).unwrap_err(), LimitExceeded::PerClient { client: ip("10.0.0.1"), limit: 2 });
        // Another address is counted on its own.
        let _other = limits.admit(ip("10.0.0.2"), &svc).unwrap();
        drop(first);
        assert!(limits.admit(ip("10.0.0.1"), &svc).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_same_client() {
        let limits = limits(100, 1, None);
        let svc = ServiceId::new("svc");
        let _held = limits.admit(ip("10.0.0.1"), &svc).unwrap();
        assert!(matches!(limits.admit(ip("::ffff:10.0.0.1"), &svc), Err(LimitExceeded::PerClient { .. })));
        assert!(limits.admit(ip("2001:db8::1"), &svc).is_ok());
    }

    #[test]
    fn per_service_ignores_the_case_of_the_id() {
        let limits = limits(100, 100, Some(1));
        let _held = limits.admit(ip("10.0.0.1"), &ServiceId::new("DiscoverableClient")).unwrap();
        let refused = limits.admit(ip("10.0.0.2"), &ServiceId::new("DISCOVERABLECLIENT")).unwrap_err();
        assert_eq!(refused, LimitExceeded::PerService { service_id: "DISCOVERABLECLIENT".into(), limit: 1 });
        assert!(limits.admit(ip("10.0.0.2"), &ServiceId::new("other")).is_ok());
    }

    #[test]
    fn total_counts_every_client_and_service() {
        let limits = limits(2, 100, None);
        let _a = limits.admit(ip("10.0.0.1"), &ServiceId::new("a")).unwrap();
        let b = limits.admit(ip("10.0.0.2"), &ServiceId::new("b")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.3"), &ServiceId::new("c")).unwrap_err(), LimitExceeded::Total { limit: 2 });
        drop(b);
        assert!(limits.admit(ip("10.0.0.3"), &ServiceId::new("c")).is_ok());
    }

    #[test]
    fn the_client_limit_is_reported_before_the_others() {
        let limits = limits(1, 1, Some(1));
        let svc = ServiceId::new("svc");
        let _held = limits.admit(ip("10.0.0.1"), &svc).unwrap();
        assert!(matches!(limits.admit(ip("10.0.0.1"), &svc), Err(LimitExceeded::PerClient { .. })));
        assert!(matches!(limits.admit(ip("10.0.0.2"), &svc), Err(LimitExceeded::PerService { .. })));
        assert!(matches!(limits.admit(ip("10.0.0.2"), &ServiceId::new("other")), Err(LimitExceeded::Total { .. })));
    }

    #[test]
    fn a_refusal_counts_nothing_and_ended_sessions_leave_no_entry() {
        let limits = limits(1000, 3, Some(500));
        let held: Vec<Admission> = (0..300).map(|i| limits.admit(IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]), &ServiceId::new(&format!("s{}", i % 7))).unwrap()).collect();
        assert_eq!(limits.counted(), (300, 300, 7));
        let more: Vec<_> = (0..3).map(|_| limits.admit(IpAddr::from([10, 0, 0, 0]), &ServiceId::new("s0"))).collect();
        assert_eq!(more.iter().filter(|admitted| admitted.is_err()).count(), 1, "two more fit the client's limit of 3");
        assert_eq!(limits.counted(), (302, 300, 7));
        drop(more);
        drop(held);
        assert_eq!(limits.counted(), (0, 0, 0));
    }

    #[test]
    fn an_admission_costs_a_session_48_bytes() {
        assert!(std::mem::size_of::<Admission>() <= 48, "{}", std::mem::size_of::<Admission>());
    }

    #[test]
    fn default_total_from_the_open_file_limit() {
        assert_eq!(sessions_for_files(1024), 461);
        assert_eq!(sessions_for_files(65_536), 29_491);
        assert_eq!(sessions_for_files(50), 1);
        // RLIM_INFINITY.
        assert!(sessions_for_files(u64::MAX) > 1 << 30);
        let derived = SessionLimits::new(&LimitsConfig { max_sessions: None, max_sessions_per_client: 1, max_sessions_per_service: None });
        assert_eq!(derived.inner.max_sessions, sessions_for_files(open_file_limit().unwrap()));
    }
}
