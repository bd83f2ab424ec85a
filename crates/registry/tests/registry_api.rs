//! The Eureka REST API over real loopback sockets: a registry served on 127.0.0.1:0, spoken to by a
//! hyper client, one connection per request. Every wait polls a condition against a deadline.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wsgate_registry::{codec, AllowList, Metadata, Registry, RegistryConfig, Status};

const DEADLINE: Duration = Duration::from_secs(10);

/// A registry served on a kernel-chosen loopback port, stopped on drop.
struct Server {
    addr: SocketAddr,
    registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(config: RegistryConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new(config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(wsgate_registry::server::serve(listener, registry.clone(), async { drop(stopped.await) }));
        Server { addr, registry, stop: Some(stop), task: Some(task) }
    }

    async fn default() -> Server {
        Server::start(RegistryConfig::default()).await
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task).await.expect("serve did not return after shutdown").unwrap().unwrap();
        }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(DEADLINE, sender.send_request(request.body(Full::new(body.into())).unwrap())).await.unwrap().unwrap();
        let status = response.status();
        let gzipped = response.headers().get("content-encoding").is_some_and(|v| v == "gzip");
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let vary = response.headers().get("vary").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let mut body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        if gzipped {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).unwrap();
            body = plain;
        }
        Reply { status, gzipped, content_type, vary, body: String::from_utf8(body).unwrap() }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    async fn register(&self, app: &str, body: &str) -> Reply {
        self.send(Method::POST, &format!("/eureka/apps/{app}"), &[("content-type", "application/json")], body.to_owned()).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    gzipped: bool,
    content_type: String,
    vary: String,
    body: String,
}

fn instance_json(app: &str, id: &str, port: u16) -> String {
    format!(
        r#"{{"instance":{{"instanceId":"{id}","hostName":"127.0.0.1","app":"{app}","ipAddr":"127.0.0.1","status":"UP",
        "port":{{"$":{port},"@enabled":"true"}},"securePort":{{"$":443,"@enabled":"false"}},"vipAddress":"{app}",
        "dataCenterInfo":{{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"}},
        "leaseInfo":{{"renewalIntervalInSecs":1,"durationInSecs":1}},"metadata":{{"apiml.routes.ws.gatewayUrl":"ws/v1"}}}}}}"#
    )
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut probe: impl FnMut() -> F) {
    let deadline = Instant::now() + DEADLINE;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn register_heartbeat_cancel_with_javas_status_codes() {
    let server = Server::default().await;
    let reply = server.register("demo", &instance_json("demo", "demo-1", 8080)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::NO_CONTENT, ""));

    let reply = server.get("/eureka/apps/DEMO/demo-1", &[("accept", "application/json")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, "application/json");
    let instance = codec::decode_instance(reply.body.as_bytes(), codec::Format::Json).unwrap();
    assert_eq!((instance.app.as_str(), instance.port.port, instance.status), ("DEMO", 8080, Status::Up));
    assert_eq!(instance.metadata.get("apiml.routes.ws.gatewayUrl"), Some("ws/v1"));

    assert_eq!(server.send(Method::PUT, "/eureka/apps/demo/demo-1?status=UP&lastDirtyTimestamp=1", &[], "").await.status, StatusCode::OK);
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/nobody", &[], "").await.status, StatusCode::NOT_FOUND);
    // A client whose record is newer than the registry's copy must register again.
    let newer = format!("/eureka/apps/DEMO/demo-1?lastDirtyTimestamp={}", u64::MAX / 2);
    assert_eq!(server.send(Method::PUT, &newer, &[], "").await.status, StatusCode::NOT_FOUND);

    assert_eq!(server.send(Method::DELETE, "/eureka/apps/DEMO/demo-1", &[], "").await.status, StatusCode::OK);
    assert_eq!(server.send(Method::DELETE, "/eureka/apps/DEMO/demo-1", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.get("/eureka/apps/DEMO", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/demo-1", &[], "").await.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn xml_unless_accept_says_json_on_both_prefixes() {
    let server = Server::default().await;
    // XML registration, percent-encoded id on the v2 prefix, as py-eureka-client does.
    let xml = r#"<instance><instanceId>10.1.1.1:py-svc:9090</instanceId><hostName>10.1.1.1</hostName><app>PY-SVC</app><ipAddr>10.1.1.1</ipAddr>
        <status>UP</status><port enabled="true">9090</port><dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo></instance>"#;
    assert_eq!(server.send(Method::POST, "/eureka/v2/apps/py-svc", &[("content-type", "application/xml")], xml).await.status, StatusCode::NO_CONTENT);
    assert_eq!(server.send(Method::PUT, "/eureka/v2/apps/PY-SVC/10.1.1.1%3Apy-svc%3A9090?status=UP", &[], "").await.status, StatusCode::OK);

    let reply = server.get("/eureka/apps/", &[]).await;
    assert_eq!(reply.content_type, "application/xml");
    assert!(reply.body.starts_with("<applications><versions__delta>"), "{}", reply.body);
    assert!(reply.body.contains("<port enabled=\"true\">9090</port>"), "{}", reply.body);
    let reply = server.get("/eureka/v2/apps", &[("accept", "application/json")]).await;
    assert!(reply.body.starts_with(r#"{"applications":{"versions__delta":"#), "{}", reply.body);
    let reply = server.get("/eureka/apps", &[("accept", "*/*")]).await;
    assert_eq!(reply.content_type, "application/xml");

    // A body without Content-Type is sniffed.
    assert_eq!(server.send(Method::POST, "/eureka/apps/DEMO", &[], instance_json("DEMO", "d", 1)).await.status, StatusCode::NO_CONTENT);
    for path in ["/eureka/instances/d", "/eureka/v2/instances/10.1.1.1:py-svc:9090"] {
        assert_eq!(server.get(path, &[]).await.status, StatusCode::OK, "{path}");
    }
    let reply = server.get("/eureka/vips/demo", &[("accept", "application/json")]).await;
    let apps = codec::decode_applications(reply.body.as_bytes(), codec::Format::Json).unwrap();
    assert_eq!(apps.instances().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), vec!["d"]);
    let reply = server.get("/eureka/svips/demo", &[("accept", "application/json")]).await;
    assert_eq!((reply.status, codec::decode_applications(reply.body.as_bytes(), codec::Format::Json).unwrap().applications.len()), (StatusCode::OK, 0));

    let reply = server.get("/eureka/apps/DEMO/d", &[("accept", "application/json"), ("x-eureka-accept", "compact")]).await;
    assert!(!reply.body.contains("metadata") && !reply.body.contains("leaseInfo"), "{}", reply.body);
    assert_eq!(server.get("/eureka/nothing", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.send(Method::POST, "/eureka/apps", &[], "").await.status, StatusCode::METHOD_NOT_ALLOWED);
    server.shutdown().await;
}

#[tokio::test]
async fn status_override_and_metadata() {
    let server = Server::default().await;
    server.register("DEMO", &instance_json("DEMO", "i1", 8080)).await;
    let mut routes = server.registry.subscribe();
    routes.mark_unchanged();

    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/i1/status?value=OUT_OF_SERVICE", &[], "").await.status, StatusCode::OK);
    assert!(routes.has_changed().unwrap(), "a status change publishes a snapshot");
    assert_eq!(server.registry.instance("DEMO", "i1").map(|i| (i.status, i.overridden_status)), Some((Status::OutOfService, Status::OutOfService)));
    // Re-registering UP does not lift the override.
    server.register("DEMO", &instance_json("DEMO", "i1", 8080)).await;
    assert_eq!(server.registry.instance("DEMO", "i1").map(|i| i.status), Some(Status::OutOfService));

    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/i1/status?value=SLEEPY", &[], "").await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/i1/status", &[], "").await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/nobody/status?value=UP", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.registry.instance("DEMO", "i1").map(|i| i.status), Some(Status::OutOfService), "a 500 changes nothing");

    assert_eq!(server.send(Method::DELETE, "/eureka/apps/DEMO/i1/status?value=UP", &[], "").await.status, StatusCode::OK);
    assert_eq!(server.registry.instance("DEMO", "i1").map(|i| (i.status, i.overridden_status)), Some((Status::Up, Status::Unknown)));
    // Removing the override without a value leaves UNKNOWN: the next heartbeat gets 404.
    assert_eq!(server.send(Method::DELETE, "/eureka/apps/DEMO/i1/status", &[], "").await.status, StatusCode::OK);
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/i1", &[], "").await.status, StatusCode::NOT_FOUND);

    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/i1/metadata?zone=a&wsgate.weight=2", &[], "").await.status, StatusCode::OK);
    let metadata = server.registry.instance("DEMO", "i1").unwrap().metadata;
    assert_eq!((metadata.get("zone"), metadata.get("wsgate.weight")), (Some("a"), Some("2")));
    assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/nobody/metadata?a=b", &[], "").await.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn delta_and_gzip() {
    let server = Server::default().await;
    let zipped = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(instance_json("A", "a1", 1).as_bytes()).unwrap();
        encoder.finish().unwrap()
    };
    let reply = server.send(Method::POST, "/eureka/apps/A", &[("content-type", "application/json"), ("content-encoding", "gzip")], zipped).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    server.register("B", &instance_json("B", "b1", 2)).await;
    server.send(Method::DELETE, "/eureka/apps/B/b1", &[], "").await;

    let reply = server.get("/eureka/apps/delta", &[("accept", "application/json"), ("accept-encoding", "gzip")]).await;
    assert!(reply.gzipped);
    let delta = codec::decode_applications(reply.body.as_bytes(), codec::Format::Json).unwrap();
    let actions: Vec<(String, Option<&str>)> = delta.instances().map(|i| (i.instance_id.clone(), i.action_type.map(|a| a.as_str()))).collect();
    assert_eq!(actions, vec![("a1".to_owned(), Some("ADDED")), ("b1".to_owned(), Some("DELETED"))]);
    assert_eq!(delta.apps_hashcode, "UP_1_", "the delta carries the full registry's hash code");

    let reply = server.get("/eureka/apps", &[("accept-encoding", "gzip")]).await;
    assert!(reply.gzipped && reply.body.contains("<apps__hashcode>UP_1_</apps__hashcode>"), "{reply:?}");
    assert!(!server.get("/eureka/apps", &[]).await.gzipped);
    assert!(!server.get("/eureka/apps/A", &[("accept-encoding", "gzip")]).await.gzipped, "only /apps and /apps/delta are gzipped");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_registrations_get_javas_400_and_change_nothing() {
    let server = Server::start(RegistryConfig { max_body_bytes: 64 * 1024, ..RegistryConfig::default() }).await;
    let before = server.registry.snapshot();
    let cases: Vec<(&str, String, &str)> = vec![
        ("DEMO", r#"{"instance":{"hostName":"#.to_owned(), "cannot parse request body"),
        ("DEMO", "<instance><app>DEMO</app>".to_owned(), "cannot parse request body"),
        ("DEMO", r#"{"instance":{"port":"eighty"}}"#.to_owned(), "cannot parse request body"),
        ("DEMO", "just text".to_owned(), "cannot parse request body"),
        ("DEMO", r#"{"instance":{"app":"DEMO","ipAddr":"1","dataCenterInfo":{"name":"MyOwn"}}}"#.to_owned(), "Missing instanceId"),
        ("DEMO", r#"{"instance":{"instanceId":"i","app":"DEMO","ipAddr":"1","dataCenterInfo":{"name":"MyOwn"}}}"#.to_owned(), "Missing hostname"),
        ("DEMO", r#"{"instance":{"instanceId":"i","hostName":"h","app":"DEMO","dataCenterInfo":{"name":"MyOwn"}}}"#.to_owned(), "Missing ip address"),
        ("DEMO", r#"{"instance":{"instanceId":"i","hostName":"h","ipAddr":"1","dataCenterInfo":{"name":"MyOwn"}}}"#.to_owned(), "Missing appName"),
        ("OTHER", instance_json("DEMO", "i", 1), "Mismatched appName, expecting OTHER but was DEMO"),
        ("DEMO", r#"{"instance":{"instanceId":"i","hostName":"h","app":"DEMO","ipAddr":"1"}}"#.to_owned(), "Missing dataCenterInfo"),
        ("DEMO", r#"{"instance":{"instanceId":"i","hostName":"h","app":"DEMO","ipAddr":"1","dataCenterInfo":{"@class":"x"}}}"#.to_owned(), "Missing dataCenterInfo Name"),
    ];
    for (app, body, message) in cases {
        let reply = server.register(app, &body).await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::BAD_REQUEST, message), "{body}");
    }
    let huge = format!(r#"{{"instance":{{"metadata":{{"pad":"{}"}}}}}}"#, "x".repeat(200 * 1024));
    assert_eq!(server.register("DEMO", &huge).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = server.send(Method::POST, "/eureka/apps/DEMO", &[("content-encoding", "deflate")], instance_json("DEMO", "i", 1)).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(server.registry.snapshot(), before, "no rejected request changed the registry");
    assert!(server.registry.full().applications.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn changes_from_outside_the_allow_list_get_403() {
    let config = RegistryConfig { allow: AllowList::parse(&["10.0.0.0/8"]).unwrap(), ..RegistryConfig::default() };
    let server = Server::start(config).await;
    assert_eq!(server.register("DEMO", &instance_json("DEMO", "i", 1)).await.status, StatusCode::FORBIDDEN);
    for (method, path) in [(Method::PUT, "/eureka/apps/DEMO/i"), (Method::DELETE, "/eureka/apps/DEMO/i"), (Method::PUT, "/eureka/apps/DEMO/i/status?value=UP")] {
        assert_eq!(server.send(method, path, &[], "").await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(server.registry.full().applications.is_empty());
    // Reads stay open.
    assert_eq!(server.get("/eureka/apps", &[]).await.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn silent_instances_expire_and_leave_the_snapshot() {
    let config = RegistryConfig { eviction_interval: Duration::from_millis(50), self_preservation: false, ..RegistryConfig::default() };
    let server = Server::start(config).await;
    let mut routes = server.registry.subscribe();
    // Lease of 1 s; "kept" heartbeats while "silent" does not.
    server.register("DEMO", &instance_json("DEMO", "kept", 1)).await;
    server.register("DEMO", &instance_json("DEMO", "silent", 2)).await;
    wait_until("the silent instance to be evicted", || {
        let server = &server;
        async move {
            assert_eq!(server.send(Method::PUT, "/eureka/apps/DEMO/kept", &[], "").await.status, StatusCode::OK);
            server.registry.instance("DEMO", "silent").is_none()
        }
    })
    .await;
    let snapshot = routes.borrow_and_update().clone();
    assert_eq!(snapshot.instances().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), vec!["kept"]);
    let reply = server.get("/eureka/apps/delta", &[("accept", "application/json")]).await;
    assert!(reply.body.contains(r#""instanceId":"silent""#) && reply.body.contains("DELETED"), "{}", reply.body);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_the_server_return_with_clients_connected() {
    let server = Server::default().await;
    // A connection that never sends a request...
    let silent = TcpStream::connect(server.addr).await.unwrap();
    // ...and an idle keep-alive one: a request answered, the connection kept open for the next.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get("/eureka/apps").header("host", server.addr.to_string()).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    sender.ready().await.expect("the connection stays open for another request");
    server.register("DEMO", &instance_json("DEMO", "i", 1)).await;
    server.shutdown().await;
    // The server closed the idle keep-alive connection rather than waiting for it.
    tokio::time::timeout(DEADLINE, connection).await.expect("the idle connection was not closed").unwrap().unwrap();
    drop(silent);
}

#[tokio::test]
async fn hostile_metadata_keys_stay_inside_their_elements() {
    let server = Server::default().await;
    server.register("DEMO", &instance_json("DEMO", "i1", 8080)).await;
    let put = "/eureka/apps/DEMO/i1/metadata?%40x%3D%221%22%3E%3Cevil%2F%3E%3Cy=v&%24=d&x%C2%B2=s";
    assert_eq!(server.send(Method::PUT, put, &[], "").await.status, StatusCode::OK);
    let reply = server.get("/eureka/apps", &[]).await;
    assert!(!reply.body.contains("<evil") && !reply.body.contains("<metadata x"), "{}", reply.body);
    assert!(reply.body.contains("<_.0040x_.003d_.00221_.0022_.003e_.003cevil_.002f_.003e_.003cy>v</"), "{}", reply.body);
    assert!(reply.body.contains("<_->d</_->") && reply.body.contains("<x_.00b2>s</x_.00b2>"), "{}", reply.body);
    let apps = codec::decode_applications(reply.body.as_bytes(), codec::Format::Xml).unwrap();
    let metadata = &apps.instances().next().unwrap().metadata;
    assert_eq!((metadata.get("@x=\"1\"><evil/><y"), metadata.get("$"), metadata.get("x\u{b2}")), (Some("v"), Some("d"), Some("s")));
    server.shutdown().await;
}

#[tokio::test]
async fn metadata_and_registry_size_are_bounded() {
    let server = Server::start(RegistryConfig { max_instances: 2, ..RegistryConfig::default() }).await;
    // A registration with too much metadata: 400, with a message naming the limits.
    let keys: Vec<String> = (0..=Metadata::MAX_KEYS).map(|n| format!(r#""k{n}":"v""#)).collect();
    let body = instance_json("DEMO", "i1", 1).replace(r#""metadata":{"#, &format!(r#""metadata":{{{},"#, keys.join(",")));
    let reply = server.register("DEMO", &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.starts_with("Metadata too large, expecting at most 256 keys and 65536 bytes but was 258 keys"), "{}", reply.body);
    assert!(server.registry.full().applications.is_empty());
    // A metadata update that would pass the limits: 400, and nothing is merged.
    assert_eq!(server.register("DEMO", &instance_json("DEMO", "i1", 1)).await.status, StatusCode::NO_CONTENT);
    let half = "x".repeat(Metadata::MAX_BYTES / 2 + 1);
    assert_eq!(server.send(Method::PUT, &format!("/eureka/apps/DEMO/i1/metadata?a={half}"), &[], "").await.status, StatusCode::OK);
    let reply = server.send(Method::PUT, &format!("/eureka/apps/DEMO/i1/metadata?b={half}&c=1"), &[], "").await;
    assert!(reply.status == StatusCode::BAD_REQUEST && reply.body.starts_with("Metadata too large"), "{reply:?}");
    let metadata = server.registry.instance("DEMO", "i1").unwrap().metadata;
    assert_eq!((metadata.get("b"), metadata.get("c")), (None, None), "nothing of a refused update is merged");
    // A full registry answers a new instance 503, and still takes registered ones again.
    assert_eq!(server.register("DEMO", &instance_json("DEMO", "i2", 2)).await.status, StatusCode::NO_CONTENT);
    let reply = server.register("DEMO", &instance_json("DEMO", "i3", 3)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "the registry is full: it holds at most 2 instances"));
    assert_eq!(server.register("DEMO", &instance_json("DEMO", "i1", 1)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(server.send(Method::DELETE, "/eureka/apps/DEMO/i2", &[], "").await.status, StatusCode::OK);
    assert_eq!(server.register("DEMO", &instance_json("DEMO", "i3", 3)).await.status, StatusCode::NO_CONTENT);
    server.shutdown().await;
}

#[tokio::test]
async fn negotiated_replies_vary_and_gzip_follows_its_quality() {
    let server = Server::default().await;
    server.register("DEMO", &instance_json("DEMO", "i1", 8080)).await;
    for path in ["/eureka/apps", "/eureka/apps/delta", "/eureka/apps/DEMO", "/eureka/apps/DEMO/i1", "/eureka/vips/demo"] {
        assert_eq!(server.get(path, &[]).await.vary, "Accept, Accept-Encoding, X-Eureka-Accept", "{path}");
    }
    assert!(!server.get("/eureka/apps", &[("accept-encoding", "gzip;q=0, identity")]).await.gzipped);
    assert!(server.get("/eureka/apps", &[("accept-encoding", "identity;q=0.5, gzip;q=0.8")]).await.gzipped);
    let reply = server.get("/eureka/apps/DEMO", &[("accept", "application/json")]).await;
    let application = codec::decode_application(reply.body.as_bytes(), codec::Format::Json).unwrap();
    assert_eq!((application.name.as_str(), application.instances[0].instance_id.as_str()), ("DEMO", "i1"));
    server.shutdown().await;
}

#[tokio::test]
async fn by_default_a_lone_crashed_instance_is_evicted() {
    // Self-preservation is off by default: with it, the one instance's missing renewals would hold it.
    let config = RegistryConfig { eviction_interval: Duration::ZERO, ..RegistryConfig::default() };
    assert!(!config.self_preservation);
    let server = Server::start(config).await;
    server.register("DEMO", &instance_json("DEMO", "crashed", 1)).await;
    wait_until("the crashed instance to be evicted", || async { server.registry.instance("DEMO", "crashed").is_none() }).await;
    server.shutdown().await;
}
