//! The Eureka client against real servers on loopback sockets: the crate's own registry served on
//! 127.0.0.1:0, and small scripted HTTP servers for broken or unusual answers. Every wait polls a
//! condition against a deadline.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wsgate_registry::client::{FetchError, Fetched};
use wsgate_registry::codec::{encode_applications, Format, View};
use wsgate_registry::{Application, Applications, ClientConfig, EurekaClient, Instance, Registry, RegistryConfig, Status};

const DEADLINE: Duration = Duration::from_secs(10);

/// The crate's registry served on a kernel-chosen loopback port, stopped on drop.
struct Server {
    url: String,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new(RegistryConfig::default()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(wsgate_registry::server::serve(listener, registry.clone(), async { drop(stopped.await) }));
        Server { url: format!("http://{addr}/eureka"), registry, _stop: stop }
    }

    fn register(&self, app: &str, id: &str) {
        self.registry.register(Instance::new(app, id, "127.0.0.1", "127.0.0.1")).unwrap();
    }
}

/// A scripted HTTP/1.1 server: answers each request with `respond(path)`, counting requests.
struct Scripted {
    url: String,
    requests: Arc<AtomicUsize>,
}

type Answer = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>);

impl Scripted {
    async fn start(respond: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (respond, counter) = (Arc::clone(&respond), Arc::clone(&counter));
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        // GET requests only: the head ends the request.
                        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        buffer.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        let (status, headers, body) = respond(&path);
                        let mut reply = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len()).into_bytes();
                        for (name, value) in headers {
                            reply.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                        }
                        reply.extend_from_slice(b"\r\n");
                        reply.extend_from_slice(&body);
                        if stream.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { url: format!("http://{addr}/eureka"), requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn client(urls: &[&str], fetch_interval: Duration) -> Arc<EurekaClient> {
    let mut config = ClientConfig::new(urls.iter().map(|u| (*u).to_owned()).collect());
    config.fetch_interval = fetch_interval;
    config.connect_timeout = Duration::from_secs(2);
    config.read_timeout = Duration::from_secs(2);
    Arc::new(EurekaClient::new(config).unwrap())
}

/// (application, id, status) of every instance, the part of a copy the gateway routes by.
fn summary(apps: &Applications) -> Vec<(String, String, Status)> {
    apps.instances().map(|i| (i.app.clone(), i.instance_id.clone(), i.status)).collect()
}

async fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A closed loopback port: bound, then released.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/eureka")
}

fn document(instances: &[(&str, &str, Status)], hash: &str) -> Vec<u8> {
    let applications = instances
        .iter()
        .map(|(app, id, status)| {
            let mut instance = Instance::new(app, id, "127.0.0.1", "127.0.0.1");
            instance.status = *status;
            Application { name: app.to_ascii_uppercase(), instances: vec![Arc::new(instance)] }
        })
        .collect();
    encode_applications(&Applications { versions_delta: 1, apps_hashcode: hash.to_owned(), applications }, Format::Json, View::Full)
}

#[tokio::test]
async fn the_copy_follows_registrations_cancels_and_status_changes() {
    let server = Server::start().await;
    let client = client(&[&server.url], Duration::from_millis(50));
    let mut updates = client.subscribe();
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.run(async { drop(stopped.await) }).await }
    });
    let converged = |client: &EurekaClient, server: &Server| summary(&client.snapshot()) == summary(&server.registry.snapshot());

    server.register("alpha", "alpha-1");
    server.register("alpha", "alpha-2");
    server.register("beta", "beta-1");
    wait_until("the three registrations", || converged(&client, &server)).await;
    assert_eq!(client.snapshot().instances().count(), 3);
    assert!(updates.has_changed().unwrap(), "subscribers were not told");
    updates.mark_unchanged();

    server.registry.set_status_override("ALPHA", "alpha-1", Status::OutOfService, None).unwrap();
    wait_until("the status override", || converged(&client, &server)).await;
    assert_eq!(client.snapshot().application("alpha").unwrap().instances[0].status, Status::OutOfService);

    server.registry.cancel("BETA", "beta-1").unwrap();
    wait_until("the cancel", || converged(&client, &server)).await;
    assert!(client.snapshot().application("beta").is_none(), "an application without instances is dropped");
    assert_eq!(client.snapshot().apps_hashcode, server.registry.full().compute_hash_code());

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, runner).await.unwrap().unwrap();
}

#[tokio::test]
async fn deltas_end_with_the_hash_code_of_a_full_fetch() {
    let server = Server::start().await;
    let follower = client(&[&server.url], Duration::from_secs(30));
    server.register("alpha", "alpha-1");
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Full);

    type Step = Box<dyn Fn(&Server)>;
    let steps: Vec<Step> = vec![
        Box::new(|s| s.register("alpha", "alpha-2")),
        Box::new(|s| s.register("beta", "beta-1")),
        Box::new(|s| s.registry.set_status_override("ALPHA", "alpha-2", Status::OutOfService, None).unwrap()),
        Box::new(|s| s.registry.cancel("ALPHA", "alpha-1").unwrap()),
        Box::new(|s| s.register("gamma", "gamma-1")),
        Box::new(|s| s.registry.set_status_override("GAMMA", "gamma-1", Status::Down, None).unwrap()),
        Box::new(|s| s.registry.delete_status_override("ALPHA", "alpha-2", Status::Up, None).unwrap()),
        Box::new(|s| s.registry.cancel("BETA", "beta-1").unwrap()),
    ];
    for (n, step) in steps.iter().enumerate() {
        step(&server);
        // Every change stays in the delta window, so each refresh reconciles by delta alone.
        assert_eq!(follower.refresh().await.unwrap(), Fetched::Delta, "step {n}");
        assert_eq!(summary(&follower.snapshot()), summary(&server.registry.snapshot()), "step {n}");
    }
    // A refresh with nothing new is still a delta, and publishes nothing.
    let mut updates = follower.subscribe();
    updates.mark_unchanged();
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Delta);
    assert!(!updates.has_changed().unwrap());

    let fresh = client(&[&server.url], Duration::from_secs(30));
    assert_eq!(fresh.refresh().await.unwrap(), Fetched::Full);
    assert_eq!(follower.snapshot().apps_hashcode, fresh.snapshot().apps_hashcode);
    assert_eq!(follower.snapshot().apps_hashcode, "DOWN_1_UP_1_");
    assert_eq!(summary(&follower.snapshot()), summary(&fresh.snapshot()));
}

#[tokio::test]
async fn a_dead_first_url_fails_over_and_the_second_stays() {
    let server = Server::start().await;
    let dead = dead_url().await;
    server.register("alpha", "alpha-1");
    let follower = client(&[&dead, &server.url], Duration::from_secs(30));
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Full);
    assert_eq!(follower.current_url().as_deref(), Some(server.url.as_str()));
    assert_eq!(follower.quarantined_urls(), vec![dead.clone()]);
    server.register("alpha", "alpha-2");
    for _ in 0..3 {
        follower.refresh().await.unwrap();
        assert_eq!(follower.current_url().as_deref(), Some(server.url.as_str()), "the working endpoint is sticky");
    }
    assert_eq!(follower.snapshot().instances().count(), 2);
}

#[tokio::test]
async fn servers_answering_500_or_garbage_are_quarantined() {
    let server = Server::start().await;
    server.register("alpha", "alpha-1");
    let failing = Scripted::start(|_| ("500 Internal Server Error", vec![], b"oops".to_vec())).await;
    let garbage = Scripted::start(|_| ("200 OK", vec![("content-type", "application/json")], b"{\"applications\":[1,2".to_vec())).await;
    for broken in [&failing, &garbage] {
        let follower = client(&[&broken.url, &server.url], Duration::from_secs(30));
        assert_eq!(follower.refresh().await.unwrap(), Fetched::Full);
        assert_eq!(follower.quarantined_urls(), vec![broken.url.clone()]);
        let before = broken.requests();
        assert_eq!(before, 1);
        for _ in 0..3 {
            assert_eq!(follower.refresh().await.unwrap(), Fetched::Delta);
        }
        assert_eq!(broken.requests(), before, "a quarantined endpoint was asked again");
        assert_eq!(follower.snapshot().instances().count(), 1);
    }
    garbage.requests.store(0, Ordering::SeqCst);

    // With every endpoint broken the fetch fails, the copy is kept, and each endpoint was tried once.
    let follower = client(&[&failing.url, &garbage.url], Duration::from_secs(30));
    let before = (failing.requests(), garbage.requests());
    assert!(matches!(follower.refresh().await, Err(FetchError::AllFailed { attempts: 2, .. })));
    assert_eq!((failing.requests(), garbage.requests()), (before.0 + 1, before.1 + 1));
    assert!(follower.snapshot().applications.is_empty());
    // Both were quarantined (100 % >= 66 %): the next fetch tries them again.
    assert!(follower.refresh().await.is_err());
    assert_eq!(failing.requests(), before.0 + 2);
}

#[tokio::test]
async fn gzip_answers_are_decoded_and_unusable_deltas_reconcile_with_a_full_fetch() {
    let full_requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&full_requests);
    let scripted = Scripted::start(move |path| {
        let full = document(&[("alpha", "alpha-1", Status::Up), ("beta", "beta-1", Status::Down)], "DOWN_1_UP_1_");
        match path {
            "/eureka/apps/" => {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&full).unwrap();
                ("200 OK", vec![("content-type", "application/json"), ("content-encoding", "gzip")], encoder.finish().unwrap())
            }
            // An empty delta whose hash code is not the copy's: the copy missed something.
            "/eureka/apps/delta" if counter.load(Ordering::SeqCst) == 1 => ("200 OK", vec![], document(&[], "UP_3_")),
            // Then a server without deltas (Java answers 403 when deltas are disabled).
            _ => ("403 Forbidden", vec![], Vec::new()),
        }
    })
    .await;
    let follower = client(&[&scripted.url], Duration::from_secs(30));
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Full);
    assert_eq!(follower.snapshot().apps_hashcode, "DOWN_1_UP_1_");
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Reconciled);
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Reconciled);
    assert_eq!(full_requests.load(Ordering::SeqCst), 3);
    assert_eq!(summary(&follower.snapshot()), vec![("ALPHA".into(), "alpha-1".into(), Status::Up), ("BETA".into(), "beta-1".into(), Status::Down)]);
    // A 403 is the server's answer, not a failure: nothing is quarantined.
    assert!(follower.quarantined_urls().is_empty());
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_quarantined() {
    let server = Server::start().await;
    server.register("alpha", "alpha-1");
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/eureka", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut config = ClientConfig::new(vec![silent_url.clone(), server.url.clone()]);
    config.connect_timeout = Duration::from_millis(100);
    config.read_timeout = Duration::from_millis(100);
    let follower = EurekaClient::new(config).unwrap();
    let started = Instant::now();
    assert_eq!(follower.refresh().await.unwrap(), Fetched::Full);
    assert!(started.elapsed() < Duration::from_secs(5), "the time-out did not apply");
    assert_eq!(follower.quarantined_urls(), vec![silent_url]);
    assert_eq!(follower.current_url().as_deref(), Some(server.url.as_str()));
    holder.abort();
}
