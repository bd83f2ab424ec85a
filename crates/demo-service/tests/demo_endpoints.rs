//! End-to-end tests of the demo service: a real listener on `127.0.0.1:0`, talked to with
//! tokio-tungstenite as a WebSocket client and with raw HTTP/1.1 over TCP.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};
use wsgate_demo_service::{DemoError, DemoService, Options};

/// The deadline of every test; a hang fails instead of blocking the run.
const DEADLINE: Duration = Duration::from_secs(20);

const BASE: &str = "/discoverableclient";

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A demo service serving on a free loopback port until `stop` is sent or dropped.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DemoError>>,
}

async fn start() -> Running {
    let service = DemoService::bind(Options {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        base_path: BASE.to_owned(),
        instance_id: "demo-test".to_owned(),
    })
    .await
    .expect("bind on 127.0.0.1:0");
    let addr = service.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(async move {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, test)
        .await
        .expect("test ran past its deadline")
}

async fn connect(addr: SocketAddr, path_and_query: &str) -> Client {
    let (ws, response) = connect_async(format!("ws://{addr}{BASE}{path_and_query}"))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

async fn next_message(ws: &mut Client) -> Message {
    ws.next()
        .await
        .expect("a message before the end of the stream")
        .expect("a valid message")
}

/// Sends a raw request and returns the whole response (the request should carry
/// `Connection: close`).
async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    String::from_utf8_lossy(&response).into_owned()
}

/// The body of a raw HTTP response with a `Content-Length`.
fn body_of(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

#[tokio::test]
async fn uppercase_answers_text_and_binary() {
    within(async {
        let running = start().await;
        let mut ws = connect(running.addr, "/ws/uppercase").await;
        ws.send(Message::text("hello, straße")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("HELLO, STRASSE"));
        ws.send(Message::binary(&b"abc\xffxyz"[..])).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Message::binary(&b"ABC\xffXYZ"[..])
        );
    })
    .await;
}

#[tokio::test]
async fn uppercase_answers_bye_then_closes_with_1000() {
    within(async {
        let running = start().await;
        let mut ws = connect(running.addr, "/ws/uppercase").await;
        ws.send(Message::text("ByE")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("BYE"));
        match next_message(&mut ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected close 1000, got {other:?}"),
        }
        // The client's close reply completes the handshake and the stream ends.
        assert!(ws.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn client_close_code_is_answered_with_the_same_code() {
    within(async {
        let running = start().await;
        let mut ws = connect(running.addr, "/ws/uppercase").await;
        ws.close(Some(CloseFrame {
            code: CloseCode::from(4001),
            reason: "going".into(),
        }))
        .await
        .unwrap();
        match next_message(&mut ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::from(4001)),
            other => panic!("expected close 4001, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn header_answers_uri_and_headers_as_json() {
    within(async {
        let running = start().await;
        let url = format!("ws://{}{BASE}/ws/header?a=1&b=two%20words", running.addr);
        let mut request = url.into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.append("x-demo", HeaderValue::from_static("first"));
        headers.append("x-demo", HeaderValue::from_static("second"));
        let (mut ws, _) = connect_async(request).await.expect("WebSocket handshake");
        for message in [Message::text("anything"), Message::binary(&b"\x00"[..])] {
            ws.send(message).await.unwrap();
            let Message::Text(json) = next_message(&mut ws).await else {
                panic!("expected a text answer");
            };
            let json: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(json["uri"], format!("{BASE}/ws/header?a=1&b=two%20words"));
            assert_eq!(json["headers"]["x-demo"], "first, second");
            assert_eq!(json["headers"]["upgrade"], "websocket");
        }
    })
    .await;
}

#[tokio::test]
async fn first_offered_subprotocol_is_selected() {
    within(async {
        let running = start().await;
        for path in ["/ws/uppercase", "/ws/header"] {
            let url = format!("ws://{}{BASE}{path}", running.addr);
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("chat.v2, chat.v1"),
            );
            let (_ws, response) = connect_async(request).await.expect("WebSocket handshake");
            assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
        }
        let (_ws, response) = connect_async(format!("ws://{}{BASE}/ws/uppercase", running.addr))
            .await
            .expect("WebSocket handshake");
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    })
    .await;
}

#[tokio::test]
async fn plain_get_on_a_websocket_endpoint_gets_426() {
    within(async {
        let running = start().await;
        for path in ["/ws/uppercase", "/ws/header"] {
            let request = format!(
                "GET {BASE}{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let response = raw_http(running.addr, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
            assert!(
                response
                    .to_ascii_lowercase()
                    .contains("\r\nupgrade: websocket\r\n"),
                "{response}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn bad_websocket_version_gets_426_naming_13() {
    within(async {
        let running = start().await;
        let request = format!(
            "GET {BASE}/ws/uppercase HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Version: 8\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let response = raw_http(running.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("\r\nsec-websocket-version: 13\r\n"),
            "{response}"
        );
    })
    .await;
}

#[tokio::test]
async fn greeting_names_the_instance() {
    within(async {
        let running = start().await;
        let get = |query: &str| {
            format!(
                "GET {BASE}/api/v1/greeting{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
        };
        let response = raw_http(running.addr, get("?name=J%C3%BCrgen").as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        let json: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"greeting": "Hello, Jürgen!", "instanceId": "demo-test"})
        );
        let response = raw_http(running.addr, get("").as_bytes()).await;
        let json: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
        assert_eq!(json["greeting"], "Hello, world!");
    })
    .await;
}

#[tokio::test]
async fn request_is_echoed_as_json() {
    within(async {
        let running = start().await;
        let request = format!(
            "PUT {BASE}/api/v1/request?x=1 HTTP/1.1\r\nHost: localhost\r\nX-Demo: yes\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\nhello"
        );
        let response = raw_http(running.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        let json: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
        assert_eq!(json["method"], "PUT");
        assert_eq!(json["uri"], format!("{BASE}/api/v1/request?x=1"));
        assert_eq!(json["headers"]["x-demo"], "yes");
        assert_eq!(json["body"], "hello");
    })
    .await;
}

#[tokio::test]
async fn request_bodies_over_1_mib_get_413() {
    within(async {
        let running = start().await;
        // Declared too large: refused before any body byte is read.
        let declared = format!(
            "POST {BASE}/api/v1/request HTTP/1.1\r\nHost: localhost\r\n\
             Content-Length: 1048577\r\nConnection: close\r\n\r\n"
        );
        let response = raw_http(running.addr, declared.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 413 "), "{response}");

        // Chunked: refused once more than 1 MiB has arrived.
        let stream = TcpStream::connect(running.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let head = format!(
            "POST {BASE}/api/v1/request HTTP/1.1\r\nHost: localhost\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let chunk = vec![b'a'; 1024 * 1024 + 1];
        let writer = tokio::spawn(async move {
            // The server may stop reading once it has answered; write errors are expected.
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await;
            let _ = write.write_all(&chunk).await;
            let _ = write.write_all(b"\r\n0\r\n\r\n").await;
            write
        });
        let mut response = Vec::new();
        let _ = read.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
        drop(writer.await);
    })
    .await;
}

#[tokio::test]
async fn index_and_unknown_paths() {
    within(async {
        let running = start().await;
        let get = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        };
        for path in [format!("{BASE}/"), format!("{BASE}/index.html")] {
            let response = raw_http(running.addr, get(&path).as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
            assert!(response.contains("demo-test"), "{response}");
            assert!(
                response.contains(&format!("{BASE}/ws/uppercase")),
                "{response}"
            );
        }
        for path in ["/", "/other/ws/uppercase", &format!("{BASE}/nope")] {
            let response = raw_http(running.addr, get(path).as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 404 "), "{path}: {response}");
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_serving_and_ends_sessions() {
    within(async {
        let running = start().await;
        let mut ws = connect(running.addr, "/ws/uppercase").await;
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("STILL HERE"));

        running.stop.send(()).unwrap();
        running
            .task
            .await
            .unwrap()
            .expect("serve ends without error");

        // The open session was dropped: the stream ends (with or without an error).
        assert!(!matches!(ws.next().await, Some(Ok(Message::Text(_)))));
        // The listener is closed.
        assert!(TcpStream::connect(running.addr).await.is_err());
    })
    .await;
}
