//! Picking the instance for a new session: round robin over the instances that are UP.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::discovery::{Instance, InstanceStatus};
use crate::route::ServiceRoutes;

/// Chooses instances, remembering per service where the round robin stands.
#[derive(Debug, Default)]
pub struct Picker {
    next: Mutex<HashMap<String, usize>>,
}

impl Picker {
    /// The instance for the next session to `service`, or `None` when no instance is UP.
    pub fn pick<'s>(&self, service: &'s ServiceRoutes) -> Option<&'s Instance> {
        let up: Vec<&Instance> = service.service.instances.iter().filter(|i| i.status == InstanceStatus::Up).collect();
        if up.is_empty() {
            return None;
        }
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let turn = next.entry(service.service.id.key().to_owned()).or_insert(0);
        let chosen = up[*turn % up.len()];
        *turn = turn.wrapping_add(1);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Service, ServiceId};
    use crate::route::RouteTable;

    fn instance(port: u16, status: InstanceStatus) -> Instance {
        Instance { instance_id: format!("h:{port}").into(), host: "h".into(), port, secure: false, status }
    }

    #[test]
    fn round_robin_over_up_instances_only() {
        let service = Service {
            id: ServiceId::new("s"),
            instances: vec![instance(1, InstanceStatus::Up), instance(2, InstanceStatus::Down), instance(3, InstanceStatus::Up)],
            metadata: Default::default(),
        };
        let table = RouteTable::build([&service]);
        let routes = table.services().next().unwrap();
        let picker = Picker::default();
        let ports: Vec<u16> = (0..4).map(|_| picker.pick(routes).unwrap().port).collect();
        assert_eq!(ports, [1, 3, 1, 3]);
    }

    #[test]
    fn nothing_to_pick_without_up_instances() {
        let service = Service { id: ServiceId::new("s"), instances: vec![instance(1, InstanceStatus::OutOfService)], metadata: Default::default() };
        let table = RouteTable::build([&service]);
        assert!(Picker::default().pick(table.services().next().unwrap()).is_none());
    }
}
