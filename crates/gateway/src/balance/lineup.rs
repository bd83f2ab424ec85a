//! One service's balancing state: its round-robin turn, and the [`InstanceLoad`] of each instance
//! lined up with the instance list of the route table in use.
//!
//! Routes are rebuilt whenever the registry changes, so the line-up is redone when a pick sees a new
//! [`ServiceRoutes`]: loads are carried over by instance id (an update does not reset session counts
//! or ejections), instances that are gone are forgotten, and new ones start afresh. Between updates a
//! pick only compares one pointer under a read lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use super::load::InstanceLoad;
use crate::route::ServiceRoutes;

/// The metadata key and value that turn on sticky routing by `X-InstanceId` (Zowe's names).
const LB_TYPE: &str = "apiml.lb.type";
const HEADER_REQUEST: &str = "headerRequest";

/// A service's balancing state.
#[derive(Debug, Default)]
pub(super) struct ServiceBalance {
    turn: AtomicUsize,
    lineup: RwLock<Lined>,
}

/// The current line-up, and every instance load still alive by id: an instance that leaves the route
/// table for a while (evicted, then registered again) while its sessions stay open gets its own load
/// back, with their count, instead of a fresh one at zero.
#[derive(Debug, Default)]
struct Lined {
    current: Arc<Lineup>,
    loads: HashMap<Arc<str>, Weak<InstanceLoad>>,
}

/// The loads of one version of a service's instance list, index for index.
#[derive(Debug, Default)]
pub(super) struct Lineup {
    /// The route table entry lined up with; held weakly, so its address cannot be reused by another
    /// entry while it is compared.
    routes: Weak<ServiceRoutes>,
    /// Whether the service asked for sticky routing by `X-InstanceId`.
    pub(super) sticky: bool,
    /// `loads[i]` belongs to `routes.service.instances[i]`.
    pub(super) loads: Vec<Arc<InstanceLoad>>,
}

impl ServiceBalance {
    /// The service's next round-robin turn.
    pub(super) fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// The loads lined up with `service`'s instances, lining them up first if the service changed.
    pub(super) fn lineup(&self, service: &Arc<ServiceRoutes>) -> Arc<Lineup> {
        let current = Arc::clone(&self.lineup.read().unwrap_or_else(|poisoned| poisoned.into_inner()).current);
        if current.routes.as_ptr() == Arc::as_ptr(service) {
            return current;
        }
        // A line-up is replaced whole, so a panicking holder cannot leave it half done.
        let mut slot = self.lineup.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another pick may have lined up the same version meanwhile.
        if slot.current.routes.as_ptr() != Arc::as_ptr(service) {
            let Lined { current, loads } = &mut *slot;
            *current = Arc::new(Lineup::new(service, loads));
        }
        Arc::clone(&slot.current)
    }
}

impl Lineup {
    fn new(service: &Arc<ServiceRoutes>, alive: &mut HashMap<Arc<str>, Weak<InstanceLoad>>) -> Lineup {
        let loads = service
            .service
            .instances
            .iter()
            .map(|instance| match alive.get(&instance.instance_id).and_then(Weak::upgrade) {
                Some(load) => load,
                None => {
                    let load = Arc::new(InstanceLoad::new(Arc::clone(&instance.instance_id)));
                    alive.insert(Arc::clone(&instance.instance_id), Arc::downgrade(&load));
                    load
                }
            })
            .collect::<Vec<_>>();
        // Loads that no line-up and no open session holds are forgotten (the line-up being replaced
        // still holds its own, so those go at the next update).
        alive.retain(|_, load| load.strong_count() > 0);
        let sticky = service.service.metadata.get(LB_TYPE).is_some_and(|value| value.eq_ignore_ascii_case(HEADER_REQUEST));
        Lineup { routes: Arc::downgrade(service), sticky, loads }
    }
}
