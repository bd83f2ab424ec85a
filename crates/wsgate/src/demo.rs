//! `wsgate demo`: the gateway and two demo-service instances in one process, with static routes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::sync::watch;
use wsgate_demo_service::{DemoService, Options};
use wsgate_gateway::discovery::{Instance, InstanceStatus, Service, ServiceId};
use wsgate_gateway::{Config, Gateway};

use crate::{announce, signal, Failure};

const SERVICE_ID: &str = "discoverableclient";
const BASE_PATH: &str = "/discoverableclient";

pub(crate) async fn run(address: IpAddr, port: u16) -> Result<(), Failure> {
    let mut config = Config::load(None, std::env::vars()).map_err(|error| Failure::Usage(error.to_string()))?;
    config.listen = SocketAddr::new(address, port);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut instances = Vec::new();
    for number in 1..=2 {
        let options = Options {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            base_path: BASE_PATH.to_owned(),
            instance_id: format!("demo-{number}"),
        };
        let service = DemoService::bind(options).await.map_err(|error| Failure::Runtime(error.to_string()))?;
        let bound = service.local_addr();
        instances.push(Instance {
            instance_id: format!("demo-{number}").into(),
            host: bound.ip().to_string(),
            port: bound.port(),
            secure: false,
            status: InstanceStatus::Up,
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(service.serve(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }));
    }
    let metadata: BTreeMap<String, String> = [
        ("apiml.routes.ws_v1.gatewayUrl", "ws/v1"),
        ("apiml.routes.ws_v1.serviceUrl", "/discoverableclient/ws"),
        ("apiml.routes.api_v1.gatewayUrl", "api/v1"),
        ("apiml.routes.api_v1.serviceUrl", "/discoverableclient/api/v1"),
        ("apiml.routes.ui_v1.gatewayUrl", "ui/v1"),
        ("apiml.routes.ui_v1.serviceUrl", "/discoverableclient"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let instance_list = instances.iter().map(|i| format!("{} at {}", i.instance_id, i.authority())).collect::<Vec<_>>().join(", ");
    config.services = vec![Service { id: ServiceId::new(SERVICE_ID), instances, metadata }];
    let gateway = Gateway::bind(config).await.map_err(|error| Failure::Runtime(error.to_string()))?;
    let at = gateway.local_addr();
    let host = if at.ip().is_unspecified() { "127.0.0.1".to_owned() } else { at.ip().to_string() };
    announce(
        &gateway,
        &[
            format!("demo service {SERVICE_ID}: {instance_list}"),
            format!("try: ws://{host}:{}/{SERVICE_ID}/ws/v1/uppercase   (send text, get it upper-cased; 'bye' closes)", at.port()),
            format!("     ws://{host}:{}/{SERVICE_ID}/ws/v1/header      (send anything, get the handshake headers)", at.port()),
            format!("     http://{host}:{}/{SERVICE_ID}/api/v1/greeting?name=you", at.port()),
            format!("     http://{host}:{}/{SERVICE_ID}/ui/v1/", at.port()),
            format!("     http://{host}:{}/application/websockets       (open sessions)", at.port()),
            "(plain ws/http: for wss/https, run `wsgate serve` with server.ssl; see the README)".to_owned(),
        ],
    );
    gateway.serve(signal::stop()).await.map_err(|error| Failure::Runtime(error.to_string()))?;
    let _ = stop_tx.send(true);
    Ok(())
}
