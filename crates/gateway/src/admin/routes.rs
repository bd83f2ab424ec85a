//! `GET /application/routes`: the live route table, as new sessions see it.
//!
//! ```json
//! {"services": [{
//!   "serviceId": "DISCOVERABLECLIENT",
//!   "instances": [{"instanceId": "127.0.0.1:discoverableclient:40001", "host": "127.0.0.1", "port": 40001,
//!                  "secure": false, "status": "UP", "source": "embedded", "routable": true}],
//!   "routes": [{"name": "ws_v1", "kind": "ws", "gatewayUrl": "ws/v1", "serviceUrl": "/discoverableclient/ws",
//!               "gatewayPath": "/discoverableclient/ws/v1"}]
//! }]}
//! ```
//!
//! Services are sorted by id, routes longest gatewayUrl first (the order they match in), instances
//! routable first. An instance that is not routable has `"routable": false` and a `reason`.

use serde_json::{json, Value};

use crate::discovery::{ListedInstance, ListedService};
use crate::route::Route;

/// The document for `listing` (from [`crate::discovery::ServiceDirectory::listing`]).
pub(super) fn describe(listing: &[ListedService]) -> Value {
    json!({ "services": listing.iter().map(service).collect::<Vec<_>>() })
}

fn service(listed: &ListedService) -> Value {
    let id = &listed.routes.service.id;
    json!({
        "serviceId": id.as_str(),
        "instances": listed.instances.iter().map(instance).collect::<Vec<_>>(),
        "routes": listed.routes.routes.iter().map(|r| route(id.key(), r)).collect::<Vec<_>>(),
    })
}

fn instance(listed: &ListedInstance) -> Value {
    let instance = &listed.instance;
    let mut value = json!({
        "instanceId": &*instance.instance_id,
        "host": instance.host,
        "port": instance.port,
        "secure": instance.secure,
        "status": instance.status.as_str(),
        "source": listed.source.as_str(),
        "routable": listed.unroutable.is_none(),
    });
    if let Some(reason) = listed.unroutable {
        value["reason"] = json!(reason);
    }
    value
}

fn route(service_key: &str, route: &Route) -> Value {
    // The first segment of a gatewayUrl says what it serves, by the apiml convention (ws/v1, api/v1, ui/v1).
    let first = route.gateway_url.split('/').next().unwrap_or_default();
    let kind = if matches!(first, "ws" | "api" | "ui") { first } else { "other" };
    json!({
        "name": route.name,
        "kind": kind,
        "gatewayUrl": route.gateway_url,
        "serviceUrl": if route.service_url.is_empty() { "/" } else { &route.service_url },
        "gatewayPath": format!("/{service_key}/{}", route.gateway_url),
    })
}
