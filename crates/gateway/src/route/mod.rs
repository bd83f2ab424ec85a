//! The route table (MISSION §1): `/{serviceId}/{gatewayUrl}/{rest}?{query}` →
//! `{serviceUrl}/{rest}?{query}` on an instance of the service.
//!
//! Routes come from service metadata: for each `<name>`, `apiml.routes.<name>.gatewayUrl` and
//! `apiml.routes.<name>.serviceUrl`. The longest matching gatewayUrl wins, the serviceId matches
//! case-insensitively, the query string and percent-encoding are kept as they are, and `..` segments
//! in `{rest}` can never climb out of the serviceUrl prefix.

mod path;

use std::collections::HashMap;
use std::sync::Arc;

use http::uri::PathAndQuery;
use tracing::warn;

use crate::discovery::Service;

pub use path::RouteError;

const ROUTE_PREFIX: &str = "apiml.routes.";

/// One route of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route's name in metadata (`ws_v1`).
    pub name: String,
    /// The gatewayUrl without leading or trailing slashes (`ws/v1`).
    pub gateway_url: String,
    /// The serviceUrl with a leading slash and no trailing slash (`/discoverableclient/ws`; empty for `/`).
    pub service_url: String,
}

impl Route {
    fn segments(&self) -> impl Iterator<Item = &str> {
        self.gateway_url.split('/')
    }
}

/// A service and its routes, longest gatewayUrl first.
#[derive(Debug, Clone)]
pub struct ServiceRoutes {
    /// The service, with its instances.
    pub service: Service,
    /// Its routes, ordered so that the first match is the longest.
    pub routes: Vec<Route>,
}

impl ServiceRoutes {
    fn new(service: Service) -> ServiceRoutes {
        let mut routes: Vec<Route> = service
            .metadata
            .iter()
            .filter_map(|(key, gateway_url)| {
                let name = key.strip_prefix(ROUTE_PREFIX)?.strip_suffix(".gatewayUrl")?;
                let service_url = service.metadata.get(&format!("{ROUTE_PREFIX}{name}.serviceUrl"))?;
                let gateway_url = gateway_url.trim_matches('/');
                let service_url = format!("/{}", service_url.trim_matches('/')).trim_end_matches('/').to_owned();
                // Every target is the serviceUrl plus a valid request path, so a valid serviceUrl makes it valid.
                if gateway_url.is_empty() || service_url.contains(['?', '#']) || PathAndQuery::try_from(format!("{service_url}/")).is_err() {
                    warn!(service = %service.id, route = name, "ignoring a route with an invalid gatewayUrl or serviceUrl");
                    return None;
                }
                Some(Route { name: name.to_owned(), gateway_url: gateway_url.to_owned(), service_url })
            })
            .collect();
        routes.sort_by(|a, b| b.segments().count().cmp(&a.segments().count()).then_with(|| a.name.cmp(&b.name)));
        ServiceRoutes { service, routes }
    }
}

/// Where a request goes: the service, the route that matched, and the path on the instance.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The serviceId as the client wrote it.
    pub requested_id: String,
    /// The service, with its instances.
    pub service: Arc<ServiceRoutes>,
    /// Index of the matching route in `service.routes`.
    pub route: usize,
    /// Path and query to request from the instance (`/discoverableclient/ws/uppercase?x=1`).
    pub target: PathAndQuery,
}

impl Resolved {
    /// The route that matched.
    pub fn route(&self) -> &Route {
        &self.service.routes[self.route]
    }
}

/// Every routable service, by case-folded serviceId. Immutable: updates publish a new table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    services: HashMap<String, Arc<ServiceRoutes>>,
}

impl RouteTable {
    /// Builds the table from every source's services; a later duplicate serviceId replaces an earlier one.
    pub fn build<'a>(services: impl IntoIterator<Item = &'a Service>) -> RouteTable {
        let services = services
            .into_iter()
            .map(|service| (service.id.key().to_owned(), Arc::new(ServiceRoutes::new(service.clone()))))
            .collect();
        RouteTable { services }
    }

    /// All services, in no particular order.
    pub fn services(&self) -> impl Iterator<Item = &Arc<ServiceRoutes>> {
        self.services.values()
    }

    /// Resolves a request path (still percent-encoded) and its query.
    ///
    /// # Errors
    ///
    /// [`RouteError`] says which part of the path did not match.
    pub fn resolve(&self, path: &str, query: Option<&str>) -> Result<Resolved, RouteError> {
        let (service_id, after_service) = path::split_service(path)?;
        let service = self
            .services
            .get(&service_id.to_ascii_lowercase())
            .ok_or_else(|| RouteError::UnknownService { service_id: service_id.to_owned() })?;
        let (route, rest) = service
            .routes
            .iter()
            .enumerate()
            .find_map(|(index, route)| path::strip_segments(after_service, route.segments()).map(|rest| (index, rest)))
            .ok_or_else(|| RouteError::NoRoute { gateway_url: path::requested_gateway_url(after_service) })?;
        let rest = path::normalize(rest)?;
        let mut target = format!("{}{}", service.routes[route].service_url, rest);
        if target.is_empty() {
            target.push('/');
        }
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let target = PathAndQuery::try_from(target).map_err(|_| RouteError::InvalidUrl)?;
        Ok(Resolved { requested_id: service_id.to_owned(), service: Arc::clone(service), route, target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Instance, InstanceStatus, ServiceId};

    fn service(id: &str, routes: &[(&str, &str, &str)]) -> Service {
        let mut metadata = std::collections::BTreeMap::new();
        for (name, gateway_url, service_url) in routes {
            metadata.insert(format!("apiml.routes.{name}.gatewayUrl"), (*gateway_url).to_owned());
            metadata.insert(format!("apiml.routes.{name}.serviceUrl"), (*service_url).to_owned());
        }
        metadata.insert("apiml.routes.broken.gatewayUrl".into(), "no/service/url".into());
        metadata.insert("apiml.routes.spaced.gatewayUrl".into(), "spaced".into());
        metadata.insert("apiml.routes.spaced.serviceUrl".into(), "/my service".into());
        Service {
            id: ServiceId::new(id),
            instances: vec![Instance {
                instance_id: "a".into(),
                host: "127.0.0.1".into(),
                port: 1,
                secure: false,
                status: InstanceStatus::Up,
            }],
            metadata,
        }
    }

    fn table() -> RouteTable {
        RouteTable::build(&[
            service(
                "discoverableclient",
                &[
                    ("ws_v1", "ws/v1", "/discoverableclient/ws"),
                    ("ws_special", "/ws/v1/special/", "/special/"),
                    ("api_v1", "api/v1", "/discoverableclient/api/v1"),
                ],
            ),
            service("ECHO", &[("ws_v1", "ws/v1", "/")]),
        ])
    }

    fn target(path: &str, query: Option<&str>) -> Result<String, RouteError> {
        table().resolve(path, query).map(|resolved| resolved.target.to_string())
    }

    #[test]
    fn maps_gateway_paths_to_service_paths() {
        assert_eq!(target("/discoverableclient/ws/v1/uppercase", None).unwrap(), "/discoverableclient/ws/uppercase");
        assert_eq!(target("/discoverableclient/ws/v1", None).unwrap(), "/discoverableclient/ws");
        assert_eq!(target("/discoverableclient/api/v1/greeting", Some("name=a%20b")).unwrap(), "/discoverableclient/api/v1/greeting?name=a%20b");
        assert_eq!(target("/echo/ws/v1/", None).unwrap(), "/");
        assert_eq!(target("/echo/ws/v1", None).unwrap(), "/");
        assert_eq!(target("/echo/ws/v1/a/b", Some("")).unwrap(), "/a/b?");
    }

    #[test]
    fn longest_gateway_url_wins_and_service_id_is_case_insensitive() {
        let resolved = table().resolve("/DiscoverableClient/ws/v1/special/x", None).unwrap();
        assert_eq!(resolved.route().name, "ws_special");
        assert_eq!(resolved.target, "/special/x");
        assert_eq!(resolved.requested_id, "DiscoverableClient");
        assert_eq!(target("/DISCOVERABLECLIENT/ws/v1/specialist", None).unwrap(), "/discoverableclient/ws/specialist");
    }

    #[test]
    fn percent_encoding_is_kept() {
        assert_eq!(target("/echo/ws/v1/a%2Fb/c%20d", None).unwrap(), "/a%2Fb/c%20d");
    }

    #[test]
    fn dot_segments_stay_inside_the_service_url() {
        assert_eq!(target("/discoverableclient/ws/v1/a/../b/./c", None).unwrap(), "/discoverableclient/ws/b/c");
        for escape in [
            "/discoverableclient/ws/v1/..",
            "/discoverableclient/ws/v1/a/../../x",
            "/discoverableclient/ws/v1/%2e%2E/x",
            "/discoverableclient/ws/v1/.%2e",
            "/discoverableclient/ws/v1/..%2F..%2Fadmin",
            "/discoverableclient/ws/v1/a%2f..%2f..%5cadmin",
        ] {
            assert_eq!(target(escape, None), Err(RouteError::InvalidUrl), "{escape}");
        }
    }

    #[test]
    fn errors_name_what_did_not_match() {
        assert_eq!(target("/", None), Err(RouteError::InvalidUrl));
        assert_eq!(target("/discoverableclient", None), Err(RouteError::InvalidUrl));
        assert_eq!(target("/discoverableclient/", None), Err(RouteError::InvalidUrl));
        assert_eq!(target("/nope/ws/v1/x", None), Err(RouteError::UnknownService { service_id: "nope".into() }));
        assert_eq!(target("/discoverableclient/ws/v9/x", None), Err(RouteError::NoRoute { gateway_url: "ws/v9".into() }));
        assert_eq!(target("/discoverableclient/ws", None), Err(RouteError::NoRoute { gateway_url: "ws".into() }));
        // A gatewayUrl without a serviceUrl, or with an invalid one, is no route at all.
        assert_eq!(target("/discoverableclient/spaced/x", None), Err(RouteError::NoRoute { gateway_url: "spaced/x".into() }));
        assert_eq!(target("/discoverableclient/no/service/url", None), Err(RouteError::NoRoute { gateway_url: "no/service".into() }));
    }
}
