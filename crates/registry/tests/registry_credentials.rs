//! A registry that requires Basic credentials, with the crate's own client and registration sending
//! the credential of a `http://USER:PASSWORD@HOST:PORT/eureka` service URL, on loopback sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use wsgate_registry::client::{FetchError, InstanceDescription, RegisterError, Registration};
use wsgate_registry::credentials::CheckCredentials;
use wsgate_registry::{ClientConfig, EurekaClient, Registry, RegistryConfig};

/// Lets in `eureka` with password `p@ss:word` only.
#[derive(Debug)]
struct OneUser;

impl CheckCredentials for OneUser {
    fn check<'a>(&'a self, user: &'a str, password: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { user == "eureka" && password == "p@ss:word" })
    }
}

/// The registry with [`OneUser`] as its check, served on a kernel-chosen loopback port.
struct Server {
    address: String,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let registry = Registry::new(RegistryConfig { credentials: Some(Arc::new(OneUser)), ..RegistryConfig::default() }).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wsgate_registry::server::serve(listener, registry.clone(), async { drop(stopped.await) }));
    Server { address, registry, _stop: stop }
}

fn registration(url: &str) -> Registration {
    let mut instance = serde_json::Map::new();
    instance.insert("hostName".into(), "127.0.0.1".into());
    instance.insert("ipAddr".into(), "127.0.0.1".into());
    instance.insert("port".into(), serde_json::json!({"$": 9000, "@enabled": "true"}));
    instance.insert("dataCenterInfo".into(), serde_json::json!({"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}));
    instance.insert("status".into(), "UP".into());
    let description = InstanceDescription { app: "svc".into(), instance_id: "127.0.0.1:svc:9000".into(), instance, heartbeat_interval: Duration::from_secs(30) };
    Registration::new(&[url.to_owned()], None, description).unwrap()
}

/// The status line and headers of a raw `GET /eureka/apps` with `extra` header lines.
async fn raw_get(address: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET /eureka/apps HTTP/1.1\r\nhost: {address}\r\naccept: application/json\r\nconnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    answer
}

#[tokio::test]
async fn requests_without_a_valid_credential_get_401_with_a_challenge() {
    let server = start().await;
    for extra in ["", "authorization: Basic ZXVyZWthOndyb25n\r\n", "authorization: Bearer x\r\n"] {
        let answer = raw_get(&server.address, extra).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{extra:?}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("www-authenticate: basic realm=\"wsgate registry\""), "{answer}");
    }
    // base64("eureka:p@ss:word")
    let answer = raw_get(&server.address, "authorization: Basic ZXVyZWthOnBAc3M6d29yZA==\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_client_and_the_registration_send_the_credential_of_their_url() {
    let server = start().await;
    let secured = format!("http://eureka:p%40ss%3Aword@{}/eureka/", server.address);

    registration(&secured).register().await.unwrap();
    assert!(server.registry.instance("SVC", "127.0.0.1:svc:9000").is_some(), "registered with the URL's credential");

    let client = EurekaClient::new(ClientConfig::new(vec![secured])).unwrap();
    assert!(!client.config().service_urls[0].contains("p%40ss"), "the normalized URL drops the credential");
    client.refresh().await.unwrap();
    assert_eq!(client.snapshot().applications.len(), 1, "fetched with the URL's credential");

    let wrong = format!("http://eureka:nope@{}/eureka", server.address);
    match registration(&wrong).cancel().await {
        Err(RegisterError::Status { status, url, .. }) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(!url.contains("nope"), "errors never show the password: {url}");
        }
        other => panic!("a wrong password must be refused with 401, got {other:?}"),
    }
    let anonymous = EurekaClient::new(ClientConfig::new(vec![format!("http://{}/eureka", server.address)])).unwrap();
    match anonymous.refresh().await {
        Err(FetchError::Status { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => panic!("a fetch without the credential must get 401, got {other:?}"),
    }
    assert!(server.registry.instance("SVC", "127.0.0.1:svc:9000").is_some(), "the refused cancel changed nothing");
}
