//! Configuration (MISSION §8), loaded in two stages.
//!
//! [`raw`] mirrors the file's keys as an operator writes them; environment variables override them
//! with Spring's relaxed binding ([`env`]). [`Config::load`] then validates everything into typed
//! values. Nothing reads the environment after loading.

mod auth;
mod discovery;
mod env;
mod raw;
mod units;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tracing::warn;

use crate::auth::OriginPolicy;
use crate::balance::{BalancePolicy, UnknownStrategy};
use crate::discovery::{Instance, InstanceStatus, Service, ServiceId};
use crate::tls::client::{ServiceTlsSettings, Verification};
use crate::tls::{IdentityKeys, Password, TlsFiles, CLIENT_IDENTITY, SERVER_IDENTITY};
use raw::RawConfig;

pub use auth::{AuthConfig, JwtConfig, DEFAULT_CACHE_TTL, DEFAULT_JWT_EXPIRATION, GENERATED_KEY_FILE};
pub use discovery::{EmbeddedRegistry, DEFAULT_REGISTRY_PORT};
pub(crate) use units::format_duration;
pub use wsgate_registry::ClientConfig as EurekaClientConfig;

/// The default `server.port`.
pub const DEFAULT_PORT: u16 = 10010;

/// The default `server.shutdownTimeout`: room for the sessions' closes, which peers answer at once;
/// one whose peers do not answer ends within 3 × [`crate::relay::LINGER`] (15 s) anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The smallest `server.maxHttpHeaderSize`: a request head carrying three 3,000-byte headers (as the
/// Zowe gateway's tests send) and the usual ones around them must fit.
pub const MIN_HTTP_HEADER_SIZE: usize = 16 << 10;

/// The largest `server.maxHttpHeaderSize`: a head must fit hyper's read buffer (about 400 KiB), and
/// no client needs more.
pub const MAX_HTTP_HEADER_SIZE: usize = 256 << 10;

/// How routing and upstream failures reach the client (MISSION §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// Complete the client's handshake, then close with a code and a reason (browsers can read them).
    CloseCode,
    /// Answer the handshake with an HTTP error status.
    HttpStatus,
}

/// Which offered subprotocols are forwarded to services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubprotocolPolicy {
    /// `*`: every offered subprotocol.
    Any,
    /// Only these (compared case-sensitively, as RFC 6455 tokens are).
    Only(Vec<String>),
}

impl SubprotocolPolicy {
    /// Whether `protocol` may be forwarded.
    pub fn allows(&self, protocol: &str) -> bool {
        match self {
            SubprotocolPolicy::Any => true,
            SubprotocolPolicy::Only(list) => list.iter().any(|p| p == protocol),
        }
    }
}

/// `server.webSocket.*`, validated.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// `supportedProtocols`.
    pub subprotocols: SubprotocolPolicy,
    /// `errorMode`.
    pub error_mode: ErrorMode,
    /// `connectTimeout`: connecting to a service and receiving its handshake response.
    pub connect_timeout: Duration,
    /// `maxFrameSize`: the largest frame payload relayed, in bytes.
    pub max_frame_size: u64,
    /// `allowedOrigins`: the browser origins that may open sessions.
    pub allowed_origins: OriginPolicy,
    /// `idleTimeout`: a session in which neither peer sent anything for this long is closed; `None`
    /// keeps quiet sessions open.
    pub idle_timeout: Option<Duration>,
    /// `pingInterval`: a peer the gateway has sent nothing to for this long gets a ping; `None`
    /// sends no pings of the gateway's own.
    pub ping_interval: Option<Duration>,
}

/// `server.limits.*`, validated: how many WebSocket sessions may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `maxSessions`: in all; `None` when not written, derived from the open-file limit at start.
    pub max_sessions: Option<usize>,
    /// `maxSessionsPerClient`: from one client IP address.
    pub max_sessions_per_client: usize,
    /// `maxSessionsPerService`: to one service; `None` is unlimited.
    pub max_sessions_per_service: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `server.address` and `server.port`.
    pub listen: SocketAddr,
    /// `server.maxHttpHeaderSize`: the largest request head (request line and headers) accepted, in
    /// bytes; a larger one gets 431.
    pub max_http_header_size: usize,
    /// `server.handshakeTimeout`: how long a client has, from its connection's accept, to complete
    /// the TLS handshake and send its whole request head.
    pub handshake_timeout: Duration,
    /// `server.shutdownTimeout`: how long a stopping gateway waits for its sessions to answer their
    /// closes and its requests in flight to finish.
    pub shutdown_timeout: Duration,
    /// `server.stateDir`: where the gateway keeps what it makes itself (the generated JWT signing key)
    /// and where a relative `discovery.embedded.stateFile` goes; by default the config file's folder.
    pub state_dir: PathBuf,
    /// `server.limits.*`.
    pub limits: LimitsConfig,
    /// `server.ssl.certificate` and `certificateKey`, or `keyStore` and `keyStorePassword`, when
    /// `server.ssl.enabled` (the default): the client-facing TLS identity; `None` serves plain ws and http.
    pub tls: Option<TlsFiles>,
    /// `server.ssl.trustStore`, `clientCertificate`, `clientCertificateKey` and `verifyServices`: TLS
    /// towards secure instances, whether or not the gateway's own port speaks TLS.
    pub service_tls: ServiceTlsSettings,
    /// `server.webSocket.*`.
    pub websocket: WebSocketConfig,
    /// The static `services`.
    pub services: Vec<Service>,
    /// `server.loadBalancing.*`.
    pub load_balancing: BalancePolicy,
    /// `server.auth.*`.
    pub auth: AuthConfig,
    /// `discovery.embedded.*`: the embedded Eureka registry, `None` when disabled.
    pub embedded: Option<EmbeddedRegistry>,
    /// `eureka.client.*`: the external Eureka cluster the gateway follows, `None` when
    /// `serviceUrl.defaultZone` is not set.
    pub eureka: Option<EurekaClientConfig>,
}

/// Why a configuration was refused. The message names the key (and, for the file, its position).
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown key or a value of the wrong type.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the key and position.
        source: serde_yaml_ng::Error,
    },
    /// An environment variable does not fit the key it binds.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// A value is of the right type but not allowed.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `server.webSocket.errorMode`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Loads `path` (or only defaults when `None`) and applies overrides from `vars`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first key that is wrong.
    pub fn load(path: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?,
            None => String::new(),
        };
        Config::parse(&text, path.unwrap_or(Path::new("<defaults>")), vars)
    }

    /// Like [`Config::load`], from the text of a config file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first key that is wrong.
    pub fn parse(text: &str, path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let parse_error = |source| ConfigError::Parse { path: path.to_owned(), source };
        let text = if text.trim().is_empty() { "{}" } else { text };
        // Parse the file alone first, so that its errors carry line and column.
        serde_yaml_ng::from_str::<RawConfig>(text).map_err(parse_error)?;
        let overrides = env::overrides(vars);
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        for o in &overrides {
            env::apply(&mut doc, o.key, &o.value);
        }
        let raw: RawConfig = serde_yaml_ng::from_value(doc).map_err(|error| {
            let variable = overrides.iter().map(|o| o.variable.as_str()).collect::<Vec<_>>().join(", ");
            ConfigError::Environment { variable, message: error.to_string() }
        })?;
        // Relative file names in the config are relative to the file's folder.
        Config::from_raw(raw, path.parent().unwrap_or(Path::new("")))
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let tls = tls_files(&raw.server.ssl, base)?;
        let service_tls = service_tls(&raw.server.ssl, base)?;
        let address: IpAddr = match raw.server.address.as_deref() {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(text) => text.parse().map_err(|_| invalid("server.address", format!("`{text}` is not an IP address")))?,
        };
        let ws = raw.server.web_socket;
        let subprotocols = match ws.supported_protocols {
            None => SubprotocolPolicy::Only(vec!["v12.stomp".into(), "v11.stomp".into()]),
            Some(list) if list.iter().any(|p| p == "*") => SubprotocolPolicy::Any,
            Some(list) => SubprotocolPolicy::Only(list),
        };
        let error_mode = match ws.error_mode.as_deref() {
            None | Some("close-code") => ErrorMode::CloseCode,
            Some("http-status") => ErrorMode::HttpStatus,
            Some(other) => return Err(invalid("server.webSocket.errorMode", format!("`{other}` is neither `close-code` nor `http-status`"))),
        };
        let connect_timeout = match ws.connect_timeout.as_deref() {
            None => Duration::from_secs(30),
            Some(text) => units::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid("server.webSocket.connectTimeout", format!("`{text}` is not a duration such as 500ms, 30s or 5m")))?,
        };
        let max_frame_size = match ws.max_frame_size {
            None => 16 << 20,
            // Control frames carry up to 125 bytes; a smaller limit would refuse legitimate close frames.
            Some(raw::Scalar(text)) => units::parse_size(&text)
                .filter(|&n| n >= 125)
                .ok_or_else(|| invalid("server.webSocket.maxFrameSize", format!("`{text}` is not a size of at least 125 bytes, such as 64KiB or 16MiB")))?,
        };
        let max_http_header_size = match raw.server.max_http_header_size {
            None => 32 << 10,
            Some(raw::Scalar(text)) => units::parse_size(&text)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (MIN_HTTP_HEADER_SIZE..=MAX_HTTP_HEADER_SIZE).contains(n))
                .ok_or_else(|| invalid("server.maxHttpHeaderSize", format!("`{text}` is not a size from 16KiB to 256KiB, such as 32KiB")))?,
        };
        let handshake_timeout = match raw.server.handshake_timeout.as_deref() {
            None => Duration::from_secs(10),
            Some(text) => units::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid("server.handshakeTimeout", format!("`{text}` is not a duration above zero, such as 500ms, 10s or 1m")))?,
        };
        let shutdown_timeout = match raw.server.shutdown_timeout.as_deref() {
            None => DEFAULT_SHUTDOWN_TIMEOUT,
            Some(text) => units::parse_duration(text)
                .ok_or_else(|| invalid("server.shutdownTimeout", format!("`{text}` is not a duration such as 0s, 500ms or 10s")))?,
        };
        let raw_limits = raw.server.limits;
        let limits = LimitsConfig {
            max_sessions: session_count("server.limits.maxSessions", raw_limits.max_sessions)?,
            max_sessions_per_client: session_count("server.limits.maxSessionsPerClient", raw_limits.max_sessions_per_client)?.unwrap_or(1000),
            max_sessions_per_service: session_count("server.limits.maxSessionsPerService", raw_limits.max_sessions_per_service)?,
        };
        let allowed_origins = match ws.allowed_origins {
            None => OriginPolicy::Any,
            Some(list) => OriginPolicy::parse(&list).map_err(|error| invalid("server.webSocket.allowedOrigins", error.to_string()))?,
        };
        let idle_timeout = optional_duration("server.webSocket.idleTimeout", ws.idle_timeout.as_deref())?;
        let ping_interval = optional_duration("server.webSocket.pingInterval", ws.ping_interval.as_deref())?;
        if let (Some(idle), Some(ping)) = (idle_timeout, ping_interval) {
            // Allowed: such pings still keep the quiet direction of a busy session alive (NAT, proxies).
            if ping >= idle {
                warn!(
                    "server.webSocket.pingInterval ({}) is not shorter than server.webSocket.idleTimeout ({}): the gateway's pings will not keep silent sessions open",
                    units::format_duration(ping),
                    units::format_duration(idle)
                );
            }
        }
        let load_balancing = load_balancing(&raw.server.load_balancing)?;
        let state_dir = relative_file(raw.server.state_dir.as_deref(), base).unwrap_or_else(|| base.to_owned());
        let auth = auth::auth(raw.server.auth, base, &state_dir)?;
        let services = raw.services.into_iter().enumerate().map(|(i, s)| service(i, s)).collect::<Result<_, _>>()?;
        let gateway_ssl = discovery::GatewaySsl { certificate: tls.is_some(), services: &service_tls, config_dir: base };
        let embedded = discovery::embedded(raw.discovery.embedded, &state_dir, auth.htpasswd.as_ref(), gateway_ssl)?;
        let eureka = discovery::eureka_client(&raw.eureka)?;
        Ok(Config {
            listen: SocketAddr::new(address, raw.server.port.unwrap_or(DEFAULT_PORT)),
            max_http_header_size,
            handshake_timeout,
            shutdown_timeout,
            state_dir,
            limits,
            tls,
            service_tls,
            websocket: WebSocketConfig { subprotocols, error_mode, connect_timeout, max_frame_size, allowed_origins, idle_timeout, ping_interval },
            load_balancing,
            auth,
            services,
            embedded,
            eureka,
        })
    }
}

/// `name` resolved against `base` (a relative name; an absolute one stays as it is); `None` when not
/// set or blank.
fn relative_file(name: Option<&str>, base: &Path) -> Option<PathBuf> {
    name.map(str::trim).filter(|name| !name.is_empty()).map(|name| base.join(name))
}

/// The TLS identity files when `server.ssl.enabled` (the default) is true: PEM files or a PKCS#12 keystore,
/// never both.
fn tls_files(ssl: &raw::RawSsl, base: &Path) -> Result<Option<TlsFiles>, ConfigError> {
    if ssl.enabled == Some(false) {
        return Ok(None);
    }
    let files = identity_files(SERVER_IDENTITY, [&ssl.certificate, &ssl.certificate_key, &ssl.key_store], &ssl.key_store_password, base)?;
    let default = if ssl.enabled.is_some() { "" } else { " (the default)" };
    files.map(Some).ok_or_else(|| {
        invalid(
            "server.ssl.enabled",
            format!("is true{default} but no certificate is configured: set server.ssl.certificate and server.ssl.certificateKey (PEM files) or server.ssl.keyStore and server.ssl.keyStorePassword (PKCS#12), or set server.ssl.enabled: false to serve plain ws and http"),
        )
    })
}

/// The files of one identity from its keys (`keys`, whose values are `certificate`, `key` and
/// `key_store`, and `password`): PEM files or a PKCS#12 keystore, never both; `None` when none is set.
fn identity_files(keys: IdentityKeys, [certificate, key, key_store]: [&Option<String>; 3], password: &Option<raw::Scalar>, base: &Path) -> Result<Option<TlsFiles>, ConfigError> {
    let file = |value: &Option<String>| relative_file(value.as_deref(), base);
    let password = password.clone().map(|raw::Scalar(text)| Password::new(text));
    match (file(certificate), file(key), file(key_store), password) {
        (None, None, None, None) => Ok(None),
        (None, None, None, Some(_)) | (Some(_), Some(_), None, Some(_)) => Err(invalid(keys.key_store_password, format!("is only used with {}, which is not set", keys.key_store))),
        (None, None, Some(_), None) => Err(invalid(keys.key_store_password, format!("is required with {} (write \"\" for a keystore without a password)", keys.key_store))),
        (None, None, Some(path), Some(password)) => Ok(Some(TlsFiles::KeyStore { path, password })),
        (_, _, Some(_), _) => Err(invalid(keys.key_store, format!("set either {} (PKCS#12) or {} and {} (PEM), not both", keys.key_store, keys.certificate, keys.key))),
        (Some(certificate), Some(key), None, None) => Ok(Some(TlsFiles::Pem { certificate, key })),
        (None, Some(_), None, _) => Err(invalid(keys.certificate, format!("is required with {}: the path of a PEM certificate", keys.key))),
        (Some(_), None, None, _) => Err(invalid(keys.key, format!("is required with {}: the path of a PEM private key", keys.certificate))),
    }
}

/// The keys of TLS towards services. The client certificate and its key go together.
fn service_tls(ssl: &raw::RawSsl, base: &Path) -> Result<ServiceTlsSettings, ConfigError> {
    let file = |value: &Option<String>| relative_file(value.as_deref(), base);
    let client_identity = identity_files(CLIENT_IDENTITY, [&ssl.client_certificate, &ssl.client_certificate_key, &ssl.client_key_store], &ssl.client_key_store_password, base)?;
    let verification = if ssl.verify_services == Some(false) { Verification::Off } else { Verification::On };
    let trust_store_password = ssl.trust_store_password.clone().map(|raw::Scalar(text)| Password::new(text));
    Ok(ServiceTlsSettings { trust_store: file(&ssl.trust_store), trust_store_password, client_identity, verification })
}

/// `server.loadBalancing.*`, with defaults for the keys not written.
fn load_balancing(raw: &raw::RawLoadBalancing) -> Result<BalancePolicy, ConfigError> {
    let defaults = BalancePolicy::default();
    let strategy = match raw.strategy.as_deref() {
        None => defaults.strategy,
        Some(text) => text.parse().map_err(|error: UnknownStrategy| invalid("server.loadBalancing.strategy", error.to_string()))?,
    };
    let eject_for = match raw.eject_for.as_deref() {
        None => defaults.eject_for,
        Some(text) => units::parse_duration(text)
            .ok_or_else(|| invalid("server.loadBalancing.ejectFor", format!("`{text}` is not a duration such as 500ms, 30s or 5m")))?,
    };
    Ok(BalancePolicy { strategy, retries: raw.retries.unwrap_or(defaults.retries), eject_for })
}

/// A `server.limits.*` number of sessions: a whole number of at least 1, when written.
fn session_count(key: &str, value: Option<raw::Scalar>) -> Result<Option<usize>, ConfigError> {
    let Some(raw::Scalar(text)) = value else { return Ok(None) };
    match text.trim().parse::<usize>() {
        Ok(count) if count > 0 => Ok(Some(count)),
        _ => Err(invalid(key, format!("`{text}` is not a number of sessions of at least 1"))),
    }
}

/// A duration key without a default: unset, or greater than zero.
fn optional_duration(key: &str, text: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    match units::parse_duration(text).filter(|d| !d.is_zero()) {
        Some(duration) => Ok(Some(duration)),
        None => Err(invalid(key, format!("`{text}` is not a duration greater than zero, such as 500ms, 30s or 5m"))),
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message }
}

fn service(index: usize, raw: raw::RawService) -> Result<Service, ConfigError> {
    if raw.service_id.trim().is_empty() || raw.service_id.contains('/') {
        return Err(invalid(&format!("services[{index}].serviceId"), format!("`{}` is not a valid service id", raw.service_id)));
    }
    let instances = raw
        .instances
        .into_iter()
        .map(|i| Instance {
            instance_id: format!("{}:{}", i.host, i.port).into(),
            host: i.host,
            port: i.port,
            secure: i.secure,
            status: InstanceStatus::Up,
        })
        .collect();
    let metadata: BTreeMap<String, String> = raw.metadata.into_iter().map(|(k, v)| (k, v.0)).collect();
    Ok(Service { id: ServiceId::new(&raw.service_id), instances, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Strategy;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::parse(text, Path::new("test.yml"), vars)
    }

    /// [`parse`] with TLS, on by default, turned off from the environment.
    fn plain(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse(text, &[&[("SERVER_SSL_ENABLED", "false")], vars].concat())
    }

    const FULL: &str = r#"
server:
  address: 127.0.0.1
  port: 0
  maxHttpHeaderSize: 16KiB
  handshakeTimeout: 1500ms
  limits:
    maxSessions: 5000
    maxSessionsPerClient: 10
    maxSessionsPerService: 200
  ssl:
    enabled: false
  webSocket:
    supportedProtocols: [v12.stomp, wamp]
    errorMode: http-status
    connectTimeout: 500ms
    maxFrameSize: 64KiB
  loadBalancing:
    strategy: least-sessions
    retries: 4
    ejectFor: 1500ms
discovery:
  embedded:
    enabled: false
    port: 10011
services:
  - serviceId: discoverableclient
    instances:
      - host: 127.0.0.1
        port: 10012
    metadata:
      apiml.routes.ws_v1.gatewayUrl: ws/v1
      apiml.routes.ws_v1.serviceUrl: /discoverableclient/ws
      apiml.service.version: 1
"#;

    #[test]
    fn full_file() {
        let config = parse(FULL, &[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.websocket.subprotocols, SubprotocolPolicy::Only(vec!["v12.stomp".into(), "wamp".into()]));
        assert_eq!(config.websocket.error_mode, ErrorMode::HttpStatus);
        assert_eq!(config.websocket.connect_timeout, Duration::from_millis(500));
        assert_eq!(config.websocket.max_frame_size, 65_536);
        assert_eq!((config.max_http_header_size, config.handshake_timeout), (16_384, Duration::from_millis(1500)));
        assert_eq!(config.limits, LimitsConfig { max_sessions: Some(5000), max_sessions_per_client: 10, max_sessions_per_service: Some(200) });
        assert_eq!(config.load_balancing, BalancePolicy { strategy: Strategy::LeastSessions, retries: 4, eject_for: Duration::from_millis(1500) });
        assert_eq!(&*config.services[0].instances[0].instance_id, "127.0.0.1:10012");
        assert_eq!(config.services[0].metadata["apiml.service.version"], "1");
    }

    #[test]
    fn defaults() {
        let config = plain("", &[]).unwrap();
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert_eq!(config.websocket.subprotocols, SubprotocolPolicy::Only(vec!["v12.stomp".into(), "v11.stomp".into()]));
        assert_eq!(config.websocket.error_mode, ErrorMode::CloseCode);
        assert_eq!(config.websocket.connect_timeout, Duration::from_secs(30));
        assert_eq!(config.websocket.max_frame_size, 16 << 20);
        assert_eq!((config.max_http_header_size, config.handshake_timeout), (32 << 10, Duration::from_secs(10)));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.limits, LimitsConfig { max_sessions: None, max_sessions_per_client: 1000, max_sessions_per_service: None });
        assert_eq!((config.websocket.idle_timeout, config.websocket.ping_interval), (None, None));
        assert_eq!(config.load_balancing, BalancePolicy { strategy: Strategy::RoundRobin, retries: 2, eject_for: Duration::from_secs(30) });
    }

    #[test]
    fn allowed_origins_as_a_list_or_comma_separated() {
        assert_eq!(plain("", &[]).unwrap().websocket.allowed_origins, OriginPolicy::Any);
        let listed = plain("server: {webSocket: {allowedOrigins: [HTTPS://App.example, 'http://localhost:8080']}}", &[]).unwrap();
        assert_eq!(listed.websocket.allowed_origins, OriginPolicy::Only(vec!["https://app.example".into(), "http://localhost:8080".into()]));
        let from_env = plain("", &[("SERVER_WEBSOCKET_ALLOWEDORIGINS", "https://a.example, https://b.example:8443")]).unwrap();
        assert_eq!(from_env.websocket.allowed_origins, OriginPolicy::Only(vec!["https://a.example".into(), "https://b.example:8443".into()]));
        let error = plain("server: {webSocket: {allowedOrigins: 'https://a.example/app'}}", &[]).unwrap_err().to_string();
        assert!(error.starts_with("server.webSocket.allowedOrigins: `https://a.example/app`"), "{error}");
    }

    #[test]
    fn idle_timeout_and_ping_interval() {
        let config = plain("server: {webSocket: {idleTimeout: 5m, pingInterval: 30s}}", &[]).unwrap();
        assert_eq!((config.websocket.idle_timeout, config.websocket.ping_interval), (Some(Duration::from_secs(300)), Some(Duration::from_secs(30))));
        let vars = [("SERVER_WEBSOCKET_IDLETIMEOUT", "1500ms"), ("SERVER_WEBSOCKET_PINGINTERVAL", "2s")];
        let config = plain("", &vars).unwrap();
        assert_eq!((config.websocket.idle_timeout, config.websocket.ping_interval), (Some(Duration::from_millis(1500)), Some(Duration::from_secs(2))));
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = parse(FULL, &[("SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS", "v12.stomp,v11.stomp,wamp"), ("SERVER_PORT", "10999")]).unwrap();
        assert_eq!(config.websocket.subprotocols, SubprotocolPolicy::Only(vec!["v12.stomp".into(), "v11.stomp".into(), "wamp".into()]));
        assert_eq!(config.listen.port(), 10999);
        let any = plain("", &[("server_websocket_supportedprotocols", "*")]).unwrap();
        assert_eq!(any.websocket.subprotocols, SubprotocolPolicy::Any);
        let error = parse("", &[("SERVER_PORT", "many")]).unwrap_err().to_string();
        assert!(error.contains("SERVER_PORT"), "{error}");
    }

    #[test]
    fn load_balancing_keys_from_the_environment() {
        let vars = [("SERVER_LOADBALANCING_STRATEGY", "least-sessions"), ("SERVER_LOADBALANCING_RETRIES", "0"), ("SERVER_LOADBALANCING_EJECTFOR", "0s")];
        let config = parse(FULL, &vars).unwrap();
        assert_eq!(config.load_balancing, BalancePolicy { strategy: Strategy::LeastSessions, retries: 0, eject_for: Duration::ZERO });
        let error = parse("", &[("SERVER_LOADBALANCING_RETRIES", "-1")]).unwrap_err().to_string();
        assert!(error.contains("SERVER_LOADBALANCING_RETRIES"), "{error}");
        let error = parse("server:\n  loadBalancing:\n    retries: many\n", &[]).unwrap_err().to_string();
        assert!(error.contains("server.loadBalancing.retries") && error.contains("line 3"), "{error}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_key_and_position() {
        let error = parse("server:\n  webSocket:\n    supportedProtocol: x\n", &[]).unwrap_err().to_string();
        assert!(error.contains("supportedProtocol") && error.contains("line 3"), "{error}");
        let error = parse("server:\n  port: high\n", &[]).unwrap_err().to_string();
        assert!(error.contains("server.port") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("server: {webSocket: {errorMode: loud}}", "server.webSocket.errorMode"),
            ("server: {webSocket: {connectTimeout: soon}}", "server.webSocket.connectTimeout"),
            ("server: {loadBalancing: {strategy: random}}", "server.loadBalancing.strategy"),
            ("server: {loadBalancing: {ejectFor: a while}}", "server.loadBalancing.ejectFor"),
            ("server: {webSocket: {maxFrameSize: huge}}", "server.webSocket.maxFrameSize"),
            ("server: {webSocket: {maxFrameSize: 100}}", "server.webSocket.maxFrameSize"),
            ("server: {webSocket: {idleTimeout: 0s}}", "server.webSocket.idleTimeout"),
            ("server: {webSocket: {idleTimeout: soon}}", "server.webSocket.idleTimeout"),
            ("server: {webSocket: {pingInterval: 0ms}}", "server.webSocket.pingInterval"),
            ("server: {webSocket: {pingInterval: often}}", "server.webSocket.pingInterval"),
            ("server: {address: localhost.example}", "server.address"),
            ("server: {maxHttpHeaderSize: large}", "server.maxHttpHeaderSize"),
            ("server: {maxHttpHeaderSize: 8KiB}", "server.maxHttpHeaderSize"),
            ("server: {maxHttpHeaderSize: 1MiB}", "server.maxHttpHeaderSize"),
            ("server: {maxHttpHeaderSize: 0}", "server.maxHttpHeaderSize"),
            ("server: {handshakeTimeout: 0s}", "server.handshakeTimeout"),
            ("server: {handshakeTimeout: -1s}", "server.handshakeTimeout"),
            ("server: {handshakeTimeout: soon}", "server.handshakeTimeout"),
            ("server: {shutdownTimeout: later}", "server.shutdownTimeout"),
            ("server: {limits: {maxSessions: 0}}", "server.limits.maxSessions"),
            ("server: {limits: {maxSessions: -1}}", "server.limits.maxSessions"),
            ("server: {limits: {maxSessions: many}}", "server.limits.maxSessions"),
            ("server: {limits: {maxSessionsPerClient: 0}}", "server.limits.maxSessionsPerClient"),
            ("server: {limits: {maxSessionsPerClient: 2.5}}", "server.limits.maxSessionsPerClient"),
            ("server: {limits: {maxSessionsPerService: -3}}", "server.limits.maxSessionsPerService"),
            ("server: {ssl: {clientCertificate: client.pem}}", "server.ssl.clientCertificateKey"),
            ("server: {ssl: {clientCertificateKey: client-key.pem}}", "server.ssl.clientCertificate:"),
            ("server: {ssl: {clientKeyStore: client.p12}}", "server.ssl.clientKeyStorePassword: is required"),
            ("server: {ssl: {clientKeyStorePassword: x}}", "server.ssl.clientKeyStorePassword: is only used"),
            ("server: {ssl: {clientKeyStore: c.p12, clientKeyStorePassword: x, clientCertificate: c.pem}}", "server.ssl.clientKeyStore: set either"),
        ] {
            let error = plain(text, &[]).unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
    }

    #[test]
    fn limits_from_the_environment() {
        let vars = [("SERVER_LIMITS_MAXSESSIONSPERCLIENT", "7"), ("SERVER_MAXHTTPHEADERSIZE", "64KiB"), ("SERVER_HANDSHAKETIMEOUT", "3s")];
        let config = plain("", &vars).unwrap();
        assert_eq!(config.limits.max_sessions_per_client, 7);
        assert_eq!((config.max_http_header_size, config.handshake_timeout), (65_536, Duration::from_secs(3)));
        let error = plain("", &[("SERVER_LIMITS_MAXSESSIONS", "0")]).unwrap_err().to_string();
        assert!(error.starts_with("server.limits.maxSessions"), "{error}");
    }

    #[test]
    fn tls_is_on_by_default_and_then_needs_one_identity() {
        let error = parse("", &[]).unwrap_err().to_string();
        assert!(error.starts_with("server.ssl.enabled: is true (the default) but no certificate"), "{error}");
        for key in ["server.ssl.certificate and server.ssl.certificateKey", "server.ssl.keyStore", "server.ssl.enabled: false"] {
            assert!(error.contains(key), "{error}");
        }
        for (text, key) in [
            ("server: {ssl: {enabled: true}}", "server.ssl.enabled"),
            ("server: {ssl: {certificateKey: key.pem}}", "server.ssl.certificate"),
            ("server: {ssl: {enabled: true, certificate: cert.pem}}", "server.ssl.certificateKey"),
            ("server: {ssl: {keyStore: gw.p12}}", "server.ssl.keyStorePassword"),
            ("server: {ssl: {certificate: c.pem, certificateKey: k.pem, keyStorePassword: x}}", "server.ssl.keyStorePassword"),
            ("server: {ssl: {keyStore: gw.p12, keyStorePassword: x, certificate: c.pem}}", "server.ssl.keyStore"),
            ("server: {ssl: {keyStore: gw.p12, keyStorePassword: x, certificateKey: k.pem}}", "server.ssl.keyStore"),
        ] {
            let error = parse(text, &[]).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{key}: ")), "{text}: {error}");
        }
    }

    #[test]
    fn a_keystore_is_relative_to_the_config_file_and_its_password_can_come_from_the_environment() {
        let text = "server: {ssl: {keyStore: tls/gateway.p12}}";
        // Passwords stay text, also when they look like numbers.
        let config = Config::parse(text, Path::new("/srv/gw/wsgate.yml"), [("SERVER_SSL_KEYSTOREPASSWORD".to_owned(), "0123".to_owned())]).unwrap();
        assert_eq!(config.tls, Some(TlsFiles::KeyStore { path: "/srv/gw/tls/gateway.p12".into(), password: Password::new("0123".into()) }));
        let empty = parse("server: {ssl: {keyStore: /etc/gw.p12, keyStorePassword: ''}}", &[]).unwrap();
        assert_eq!(empty.tls, Some(TlsFiles::KeyStore { path: "/etc/gw.p12".into(), password: Password::new(String::new()) }));
        assert!(!format!("{:?}", config.tls).contains("0123"), "the password must not reach Debug output");
        let numeric = parse("server: {ssl: {keyStore: /etc/gw.p12, keyStorePassword: 123456}}", &[]).unwrap();
        assert_eq!(numeric.tls, Some(TlsFiles::KeyStore { path: "/etc/gw.p12".into(), password: Password::new("123456".into()) }));
    }

    #[test]
    fn tls_files_are_relative_to_the_config_file_and_only_used_when_enabled() {
        let text = "server: {ssl: {enabled: true, certificate: tls/cert.pem, certificateKey: /etc/wsgate/key.pem}}";
        let config = Config::parse(text, Path::new("/srv/gw/wsgate.yml"), []).unwrap();
        assert_eq!(config.tls, Some(TlsFiles::Pem { certificate: "/srv/gw/tls/cert.pem".into(), key: "/etc/wsgate/key.pem".into() }));
        let disabled = parse("server: {ssl: {enabled: false, certificate: c.pem, certificateKey: k.pem}}", &[]).unwrap();
        assert_eq!(disabled.tls, None);
    }

    #[test]
    fn tls_towards_services_keys() {
        let text = "server: {ssl: {trustStore: ca.pem, clientCertificate: tls/client.pem, clientCertificateKey: /etc/k.pem}}\nservices: [{serviceId: s, instances: [{host: h, port: 1, secure: true}]}]";
        let config = Config::parse(text, Path::new("/srv/gw/wsgate.yml"), [("SERVER_SSL_ENABLED".to_owned(), "false".to_owned())]).unwrap();
        let identity = TlsFiles::Pem { certificate: "/srv/gw/tls/client.pem".into(), key: "/etc/k.pem".into() };
        assert_eq!(config.service_tls, ServiceTlsSettings { trust_store: Some("/srv/gw/ca.pem".into()), trust_store_password: None, client_identity: Some(identity), verification: Verification::On });
        assert!(config.services[0].instances[0].secure);
        assert_eq!(plain("", &[]).unwrap().service_tls, ServiceTlsSettings::default());
        let off = plain("", &[("SERVER_SSL_VERIFYSERVICES", "false"), ("SERVER_SSL_TRUSTSTORE", "/ca.pem")]).unwrap().service_tls;
        assert_eq!((off.verification, off.trust_store), (Verification::Off, Some("/ca.pem".into())));
    }
}
