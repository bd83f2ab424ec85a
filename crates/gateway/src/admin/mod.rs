//! Diagnostics under `/application/` (MISSION §6): health for everyone; the rest, `websockets`
//! (open sessions) and [`routes`] (the route table), only for the clients
//! [`crate::auth::AdminAccess`] admits (loopback by default).

mod routes;

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tracing::warn;

use crate::auth::Guard;
use crate::body::{self, Body};
use crate::failure::Failure;
use crate::discovery::ServiceDirectory;
use crate::session::{Session, SessionTable};

/// The path prefix the diagnostics own; no service can be routed under it.
pub const PREFIX: &str = "/application/";

/// Answers a request under [`PREFIX`]; every endpoint but health first asks `guard` whether
/// `client` may see it.
pub async fn handle<B>(request: &Request<B>, client: SocketAddr, guard: &Guard, sessions: &SessionTable, directory: &ServiceDirectory) -> Response<Body> {
    let (method, path) = (request.method(), request.uri().path());
    if method != Method::GET && method != Method::HEAD {
        return body::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported here\n");
    }
    let endpoint = path.strip_prefix(PREFIX);
    if endpoint == Some("health") {
        return json_response(&json!({ "status": "UP" }));
    }
    if let Err(refusal) = guard.admit_admin(request.headers(), client.ip()).await {
        warn!(%client, path, error = %refusal, "diagnostics refused");
        return Failure::from(refusal).response();
    }
    match endpoint {
        Some("websockets") => json_response(&serde_json::Value::Array(sessions.snapshot().iter().map(|s| describe(s)).collect())),
        Some("routes") => json_response(&routes::describe(&directory.listing())),
        _ => body::text(StatusCode::NOT_FOUND, "unknown diagnostics endpoint\n"),
    }
}

/// One session as `/application/websockets` lists it: Zowe's fields, then wsgate's.
fn describe(session: &Session) -> serde_json::Value {
    let info = &session.info;
    json!({
        "sessionId": session.id.to_string(),
        "clientAddress": info.client_address.to_string(),
        "gatewayPath": info.gateway_path,
        "serviceUrl": info.service_url,
        "serviceSessionId": format!("{}.service", session.id),
        "serviceId": &*info.service_id,
        "instanceId": &*info.instance_id,
        "subprotocol": info.subprotocol,
        "startedAt": humantime::format_rfc3339_millis(session.started).to_string(),
        "messagesFromClient": session.from_client.messages(),
        "messagesToClient": session.to_client.messages(),
        "bytesFromClient": session.from_client.bytes(),
        "bytesToClient": session.to_client.bytes(),
    })
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::OriginPolicy;
    use crate::config::AuthConfig;
    use crate::session::SessionInfo;
    use http_body_util::BodyExt;

    /// `GET path` from `client`, with the default access rule (loopback, no credential).
    async fn get(path: &str, client: &str, sessions: &SessionTable, directory: &ServiceDirectory) -> Response<Body> {
        let request = Request::get(path).body(()).unwrap();
        let guard = Guard::new(AuthConfig::default(), OriginPolicy::Any);
        handle(&request, client.parse().unwrap(), &guard, sessions, directory).await
    }

    async fn body_of(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn lists_open_sessions_to_loopback_clients_only() {
        let sessions = SessionTable::new(1);
        let open = sessions.open(
            sessions.next_id(),
            SessionInfo {
                client_address: "127.0.0.1:5000".parse().unwrap(),
                gateway_path: "/dc/ws/v1/uppercase".into(),
                service_url: "ws://127.0.0.1:6000/dc/ws/uppercase".into(),
                service_id: "dc".into(),
                instance_id: "127.0.0.1:6000".into(),
                subprotocol: Some("v12.stomp".into()),
            },
        );
        open.from_client.record(12, 1);
        let local = "127.0.0.1:1";
        let listed = body_of(get("/application/websockets", local, &sessions, &ServiceDirectory::new()).await).await;
        assert_eq!(listed[0]["sessionId"], open.id.to_string());
        assert_eq!(listed[0]["subprotocol"], "v12.stomp");
        assert_eq!(listed[0]["bytesFromClient"], 12);
        assert_eq!(listed[0]["messagesToClient"], 0);
        let remote = "192.0.2.1:1";
        assert_eq!(get("/application/websockets", remote, &sessions, &ServiceDirectory::new()).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(get("/application/health", remote, &sessions, &ServiceDirectory::new()).await.status(), StatusCode::OK);
        drop(open);
        assert_eq!(body_of(get("/application/websockets", local, &sessions, &ServiceDirectory::new()).await).await, json!([]));
    }

    #[tokio::test]
    async fn lists_the_route_table_with_sources() {
        use crate::discovery::{Discovered, Instance, InstanceStatus, Service, ServiceId, Source, Unroutable};
        let directory = ServiceDirectory::new();
        let instance = |id: &str, port, secure| Instance { instance_id: id.into(), host: "127.0.0.1".into(), port, secure, status: InstanceStatus::Up };
        let metadata = [("apiml.routes.ws_v1.gatewayUrl", "/ws/v1/"), ("apiml.routes.ws_v1.serviceUrl", "/dc/ws"), ("apiml.routes.web.gatewayUrl", "web"), ("apiml.routes.web.serviceUrl", "/")];
        let service = Service { id: ServiceId::new("DC"), instances: vec![instance("a", 1, false)], metadata: metadata.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect() };
        let unroutable = vec![Unroutable { service: ServiceId::new("dc"), instance: instance("b", 2, true), reason: "TLS" }];
        directory.update_discovered(Source::Embedded, Discovered { services: vec![service], unroutable });
        let local = "127.0.0.1:1";
        let sessions = SessionTable::new(1);
        let listed = body_of(get("/application/routes", local, &sessions, &directory).await).await;
        assert_eq!(
            listed,
            json!({"services": [{
                "serviceId": "DC",
                "instances": [
                    {"instanceId": "a", "host": "127.0.0.1", "port": 1, "secure": false, "status": "UP", "source": "embedded", "routable": true},
                    {"instanceId": "b", "host": "127.0.0.1", "port": 2, "secure": true, "status": "UP", "source": "embedded", "routable": false, "reason": "TLS"},
                ],
                "routes": [
                    {"name": "ws_v1", "kind": "ws", "gatewayUrl": "ws/v1", "serviceUrl": "/dc/ws", "gatewayPath": "/dc/ws/v1"},
                    {"name": "web", "kind": "other", "gatewayUrl": "web", "serviceUrl": "/", "gatewayPath": "/dc/web"},
                ],
            }]})
        );
        let remote = "192.0.2.1:1";
        assert_eq!(get("/application/routes", remote, &sessions, &directory).await.status(), StatusCode::FORBIDDEN);
    }
}
