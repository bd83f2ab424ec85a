//! Picking the instance for a new session (MISSION §5).
//!
//! # Brief overview
//!
//! [`Picker::pick`] chooses among the instances of a service that are UP (an instance going DOWN or
//! OUT_OF_SERVICE leaves the candidates with the next route table), that are not ejected and that
//! the request has not [`Tried`] yet, by the configured [`Strategy`]. When every UP instance is
//! ejected it chooses among them anyway: a guess beats a certain failure. A service whose metadata
//! has `apiml.lb.type: headerRequest` sends a request carrying `X-InstanceId` to that instance only.
//!
//! The caller opens the session; when the connect fails it reports [`Picker::failed`], which ejects
//! the instance for `ejectFor` (passive health, `ejection.rs`), and picks again after a short
//! [`backoff`], up to [`Picker::retries`] times. A successful pick's [`Lease`] counts the session on
//! its instance until dropped (`load.rs`).
//!
//! State is per service (`lineup.rs`) and per instance id, so route table updates keep it. A pick takes
//! two read locks briefly, makes no allocation (but for a service's first pick after a route table
//! update) and reads no clock: the caller passes `now`. Entries of services that leave the registry
//! stay (a few hundred bytes each) until the gateway restarts.

mod ejection;
mod lineup;
mod load;
mod retry;
mod strategy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::discovery::{Instance, InstanceStatus, ServiceId};
use crate::route::ServiceRoutes;
use lineup::ServiceBalance;

pub use load::Lease;
pub use retry::{backoff, Tried};
pub use strategy::{Strategy, UnknownStrategy};

/// The request header that names the instance a sticky request goes to.
pub const INSTANCE_ID_HEADER: HeaderName = HeaderName::from_static("x-instanceid");

/// `server.loadBalancing.*`: how instances are chosen, retried and ejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancePolicy {
    /// `strategy`: how the instance for a new session is chosen.
    pub strategy: Strategy,
    /// `retries`: how many times a failed connect is retried on another instance (2: three tries in all).
    pub retries: u32,
    /// `ejectFor`: how long an instance whose connect failed gets no new sessions; zero turns
    /// ejection off.
    pub eject_for: Duration,
}

impl Default for BalancePolicy {
    fn default() -> Self {
        BalancePolicy { strategy: Strategy::RoundRobin, retries: 2, eject_for: Duration::from_secs(30) }
    }
}

/// Chooses instances for new sessions and keeps each service's balancing state.
#[derive(Debug)]
pub struct Picker {
    strategy: Strategy,
    retries: u32,
    eject_for: Duration,
    /// Ejection deadlines are kept as milliseconds since this instant.
    epoch: Instant,
    services: RwLock<HashMap<String, Arc<ServiceBalance>>>,
}

/// An instance chosen for one try, with the session counted on it.
#[derive(Debug)]
pub struct Pick<'s> {
    /// The instance.
    pub instance: &'s Instance,
    service: &'s ServiceId,
    index: usize,
    lease: Lease,
}

impl Pick<'_> {
    /// The session's count on its instance, to hold while the session is open.
    pub fn into_lease(self) -> Lease {
        self.lease
    }
}

impl Picker {
    /// A picker following `policy`.
    pub fn new(policy: &BalancePolicy) -> Picker {
        Picker {
            strategy: policy.strategy,
            retries: policy.retries,
            eject_for: policy.eject_for,
            epoch: Instant::now(),
            services: RwLock::new(HashMap::new()),
        }
    }

    /// How many times a failed connect is retried on another instance.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The instance for the next try of a request to `service`, or `None` when no instance is left:
    /// none is UP, all UP ones were tried, or the request's `X-InstanceId` names no UP instance of a
    /// sticky service (`headers` are read only for those). `now` decides which ejections have run out.
    pub fn pick<'s>(&self, service: &'s Arc<ServiceRoutes>, headers: &HeaderMap, tried: &Tried, now: Instant) -> Option<Pick<'s>> {
        let balance = self.balance(service);
        let lineup = balance.lineup(service);
        let instances = &service.service.instances;
        let available = |index: usize, instance: &Instance| instance.status == InstanceStatus::Up && !tried.contains(index);
        if lineup.sticky {
            if let Some(pinned) = headers.get(INSTANCE_ID_HEADER) {
                // The client asked for this instance: no other will do, ejected or not.
                let index = instances.iter().enumerate().position(|(index, instance)| {
                    available(index, instance) && instance.instance_id.as_bytes().eq_ignore_ascii_case(pinned.as_bytes())
                })?;
                return Some(Pick { instance: &instances[index], service: &service.service.id, index, lease: lineup.loads[index].lease() });
            }
        }
        let now_ms = self.millis(now);
        let candidates = |skip_ejected: bool| {
            let lineup = &lineup;
            instances
                .iter()
                .enumerate()
                .filter(move |&(index, instance)| available(index, instance) && !(skip_ejected && lineup.loads[index].ejection.is_ejected(now_ms)))
                .map(move |(index, _)| (index, lineup.loads[index].open()))
        };
        let turn = balance.next_turn();
        let index = match self.strategy.choose(candidates(true), turn) {
            Some(index) => index,
            None => {
                let index = self.strategy.choose(candidates(false), turn)?;
                debug!(service = %service.service.id, instance = %instances[index].instance_id, "every instance left is ejected; trying one anyway");
                index
            }
        };
        let load = &lineup.loads[index];
        if load.ejection.readmit(now_ms) {
            info!(service = %service.service.id, instance = %load.id, "instance back in rotation after ejectFor");
        }
        Some(Pick { instance: &instances[index], service: &service.service.id, index, lease: load.lease() })
    }

    /// The instance for a request's try number `retry` (0 for the first). A retry first waits its
    /// back-off, but only when an instance is left to try (a lone instance fails without delay), and
    /// without holding a lease on it meanwhile: the pick is made again after the wait, on the
    /// instances as they are then.
    pub async fn pick_for_try<'s>(&self, service: &'s Arc<ServiceRoutes>, headers: &HeaderMap, tried: &Tried, retry: u32) -> Option<Pick<'s>> {
        let pick = self.pick(service, headers, tried, Instant::now())?;
        if retry == 0 {
            return Some(pick);
        }
        drop(pick);
        tokio::time::sleep(backoff(retry)).await;
        self.pick(service, headers, tried, Instant::now())
    }

    /// Reports that connecting to the picked instance failed: the request will not try it again,
    /// and new sessions avoid it for `ejectFor` from `now`.
    pub fn failed(&self, pick: Pick<'_>, tried: &mut Tried, now: Instant) {
        tried.add(pick.index);
        if self.eject_for.is_zero() {
            return;
        }
        let load = pick.lease.load();
        load.ejection.eject(self.millis(now), u64::try_from(self.eject_for.as_millis()).unwrap_or(u64::MAX));
        warn!(service = %pick.service, instance = %load.id, eject_for = ?self.eject_for, "instance ejected after a failed connect");
    }

    /// The state of `service`, created on its first pick.
    fn balance(&self, service: &ServiceRoutes) -> Arc<ServiceBalance> {
        let key = service.service.id.key();
        if let Some(balance) = self.services.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key) {
            return Arc::clone(balance);
        }
        // Entries are only ever added whole, so a panicking holder cannot leave the map half done.
        let mut services = self.services.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(services.entry(key.to_owned()).or_default())
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Service, ServiceId};
    use crate::route::RouteTable;
    use http::HeaderValue;

    fn instance(port: u16, status: InstanceStatus) -> Instance {
        Instance { instance_id: format!("h:{port}").into(), host: "h".into(), port, secure: false, status }
    }

    fn routes(instances: Vec<Instance>, sticky: bool) -> Arc<ServiceRoutes> {
        let mut metadata = std::collections::BTreeMap::new();
        if sticky {
            metadata.insert("apiml.lb.type".to_owned(), "headerRequest".to_owned());
        }
        let service = Service { id: ServiceId::new("s"), instances, metadata };
        let table = RouteTable::build([&service]);
        let routes = Arc::clone(table.services().next().unwrap());
        routes
    }

    fn up(ports: &[u16]) -> Arc<ServiceRoutes> {
        routes(ports.iter().map(|&port| instance(port, InstanceStatus::Up)).collect(), false)
    }

    fn picker(strategy: Strategy, eject_for: Duration) -> Picker {
        Picker::new(&BalancePolicy { strategy, retries: 2, eject_for })
    }

    fn port(picker: &Picker, service: &Arc<ServiceRoutes>, now: Instant) -> Option<u16> {
        picker.pick(service, &HeaderMap::new(), &Tried::default(), now).map(|pick| pick.instance.port)
    }

    fn ports(picker: &Picker, service: &Arc<ServiceRoutes>, count: usize, now: Instant) -> Vec<u16> {
        (0..count).map(|_| port(picker, service, now).unwrap()).collect()
    }

    #[test]
    fn round_robin_over_up_instances_only() {
        let service = routes(vec![instance(1, InstanceStatus::Up), instance(2, InstanceStatus::Down), instance(3, InstanceStatus::Up)], false);
        let picker = picker(Strategy::RoundRobin, Duration::from_secs(30));
        assert_eq!(ports(&picker, &service, 4, Instant::now()), [1, 3, 1, 3]);
    }

    #[test]
    fn nothing_to_pick_without_up_instances() {
        let service = routes(vec![instance(1, InstanceStatus::OutOfService), instance(2, InstanceStatus::Starting)], false);
        assert_eq!(port(&picker(Strategy::RoundRobin, Duration::ZERO), &service, Instant::now()), None);
    }

    #[test]
    fn an_instance_going_down_or_out_of_service_gets_no_new_session_from_the_next_table() {
        let picker = picker(Strategy::RoundRobin, Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(ports(&picker, &up(&[1, 2, 3]), 3, now), [1, 2, 3]);
        for status in [InstanceStatus::Down, InstanceStatus::OutOfService] {
            let updated = routes(vec![instance(1, InstanceStatus::Up), instance(2, status), instance(3, InstanceStatus::Up)], false);
            assert!(!ports(&picker, &updated, 6, now).contains(&2), "{status:?}");
        }
    }

    #[test]
    fn least_sessions_fills_the_emptiest_instances_and_counts_until_the_lease_ends() {
        let picker = picker(Strategy::LeastSessions, Duration::from_secs(30));
        let service = up(&[1, 2, 3]);
        let now = Instant::now();
        let open = |count: usize| -> Vec<(u16, Lease)> {
            (0..count)
                .map(|_| picker.pick(&service, &HeaderMap::new(), &Tried::default(), now).unwrap())
                .map(|pick| (pick.instance.port, pick.into_lease()))
                .collect()
        };
        let sorted = |held: &[(u16, Lease)]| {
            let mut ports: Vec<u16> = held.iter().map(|(port, _)| *port).collect();
            ports.sort_unstable();
            ports
        };
        // Ties take turns: two sessions each. Then those on 2 and 3 end.
        let mut held = open(6);
        assert_eq!(sorted(&held), [1, 1, 2, 2, 3, 3]);
        held.retain(|(port, _)| *port == 1);
        // Instance 1 still holds two: the next four sessions go to 2 and 3.
        let mut next = open(4);
        assert_eq!(sorted(&next), [2, 2, 3, 3]);
        let ended = next.iter().position(|(port, _)| *port == 3).unwrap();
        next.remove(ended);
        assert_eq!(port(&picker, &service, now), Some(3));
    }

    #[test]
    fn a_failed_instance_is_ejected_until_eject_for_has_passed() {
        let eject_for = Duration::from_secs(30);
        let picker = picker(Strategy::RoundRobin, eject_for);
        let service = up(&[1, 2, 3]);
        let start = Instant::now();
        let mut tried = Tried::default();
        let first = picker.pick(&service, &HeaderMap::new(), &tried, start).unwrap();
        assert_eq!(first.instance.port, 1);
        picker.failed(first, &mut tried, start);
        // The retry of the same request, and new sessions, avoid it.
        assert_eq!(picker.pick(&service, &HeaderMap::new(), &tried, start).map(|pick| pick.instance.port), Some(3));
        assert!(!ports(&picker, &service, 6, start + eject_for - Duration::from_millis(1)).contains(&1));
        let mut later = ports(&picker, &service, 3, start + eject_for);
        later.sort_unstable();
        assert_eq!(later, [1, 2, 3]);
    }

    #[test]
    fn when_every_instance_is_ejected_one_is_tried_anyway_but_never_twice_per_request() {
        let picker = picker(Strategy::RoundRobin, Duration::from_secs(30));
        let service = up(&[1, 2]);
        let now = Instant::now();
        let mut tried = Tried::default();
        for _ in 0..2 {
            let pick = picker.pick(&service, &HeaderMap::new(), &tried, now).unwrap();
            picker.failed(pick, &mut tried, now);
        }
        assert!(picker.pick(&service, &HeaderMap::new(), &tried, now).is_none());
        assert!(port(&picker, &service, now).is_some());
    }

    #[test]
    fn no_ejection_when_eject_for_is_zero() {
        let picker = picker(Strategy::RoundRobin, Duration::ZERO);
        let service = up(&[1, 2]);
        let now = Instant::now();
        let failed = picker.pick(&service, &HeaderMap::new(), &Tried::default(), now).unwrap();
        picker.failed(failed, &mut Tried::default(), now);
        assert_eq!(ports(&picker, &service, 2, now), [2, 1]);
    }

    #[test]
    fn ejection_and_counts_survive_a_route_table_update_and_gone_instances_are_forgotten() {
        let picker = picker(Strategy::LeastSessions, Duration::from_secs(30));
        let now = Instant::now();
        let before = up(&[1, 2, 3]);
        let mut tried = Tried::default();
        let failed = picker.pick(&before, &HeaderMap::new(), &tried, now).unwrap();
        assert_eq!(failed.instance.port, 1);
        picker.failed(failed, &mut tried, now);
        let held = picker.pick(&before, &HeaderMap::new(), &Tried::default(), now).unwrap();
        assert_eq!(held.instance.port, 3);
        let held = held.into_lease();
        // The registry publishes the same instances (plus one) as a new table: 1 is still ejected and
        // 3 still holds a session, so 2 and 4 come first.
        let after = up(&[3, 2, 1, 4]);
        let mut picked = ports(&picker, &after, 2, now);
        picked.sort_unstable();
        assert_eq!(picked, [2, 4]);
        drop(held);
        let lineup = picker.balance(&after).lineup(&after);
        assert_eq!(lineup.loads.iter().map(|load| &*load.id).collect::<Vec<_>>(), ["h:3", "h:2", "h:1", "h:4"]);
        let shrunk = up(&[4]);
        let lineup = picker.balance(&shrunk).lineup(&shrunk);
        assert_eq!(lineup.loads.len(), 1);
    }

    #[test]
    fn an_instance_that_leaves_the_table_and_returns_keeps_the_count_of_its_open_sessions() {
        let picker = picker(Strategy::LeastSessions, Duration::from_secs(30));
        let now = Instant::now();
        let both = up(&[1, 2]);
        let held: Vec<Lease> = (0..2).map(|_| picker.pick(&both, &HeaderMap::new(), &Tried::default(), now).unwrap().into_lease()).collect();
        // Instance 1 misses its heartbeats and is evicted, then registers again; its session stays open.
        let _ = picker.balance(&both).lineup(&up(&[2]));
        let _ = picker.balance(&both).lineup(&up(&[2, 3]));
        let back = up(&[1, 2, 3]);
        assert_eq!(port(&picker, &back, now), Some(3), "1 and 2 each still hold a session");
        drop(held);
    }

    #[test]
    fn sticky_requests_go_to_the_named_up_instance_only() {
        let picker = picker(Strategy::RoundRobin, Duration::from_secs(30));
        let service = routes(vec![instance(1, InstanceStatus::Up), instance(2, InstanceStatus::Up), instance(3, InstanceStatus::Down)], true);
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        headers.insert(INSTANCE_ID_HEADER, HeaderValue::from_static("H:2"));
        let mut tried = Tried::default();
        for _ in 0..3 {
            assert_eq!(picker.pick(&service, &headers, &tried, now).map(|pick| pick.instance.port), Some(2));
        }
        // Ejected or not, no other instance will do.
        let pick = picker.pick(&service, &headers, &tried, now).unwrap();
        picker.failed(pick, &mut tried, now);
        assert_eq!(picker.pick(&service, &headers, &Tried::default(), now).map(|pick| pick.instance.port), Some(2));
        assert!(picker.pick(&service, &headers, &tried, now).is_none());
        headers.insert(INSTANCE_ID_HEADER, HeaderValue::from_static("h:3"));
        assert!(picker.pick(&service, &headers, &Tried::default(), now).is_none());
        headers.insert(INSTANCE_ID_HEADER, HeaderValue::from_static("nope"));
        assert!(picker.pick(&service, &headers, &Tried::default(), now).is_none());
        // Without the header, or without the metadata, balancing as usual.
        assert_eq!(port(&picker, &service, now + Duration::from_secs(30)).map(|port| port != 3), Some(true));
        let plain = up(&[1, 2]);
        headers.insert(INSTANCE_ID_HEADER, HeaderValue::from_static("h:2"));
        let later = now + Duration::from_secs(30);
        let mut picked: Vec<u16> = (0..2).map(|_| picker.pick(&plain, &headers, &Tried::default(), later).unwrap().instance.port).collect();
        picked.sort_unstable();
        assert_eq!(picked, [1, 2]);
    }
}
