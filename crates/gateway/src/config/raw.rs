//! The config file as written: MISSION §8 key names, nothing validated yet
//! ([`super::Config::from_raw`] does that).

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub discovery: RawDiscovery,
    pub eureka: RawEureka,
    pub services: Vec<RawService>,
}

/// `server.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawServer {
    pub address: Option<String>,
    pub port: Option<u16>,
    pub max_http_header_size: Option<Scalar>,
    pub handshake_timeout: Option<String>,
    pub limits: RawLimits,
    pub ssl: RawSsl,
    pub web_socket: RawWebSocket,
    pub load_balancing: RawLoadBalancing,
    pub auth: RawAuth,
}

/// `server.auth.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuth {
    pub htpasswd: Option<String>,
    #[serde(deserialize_with = "comma_list")]
    pub admin_users: Option<Vec<String>>,
    #[serde(deserialize_with = "comma_list")]
    pub admin_allow: Option<Vec<String>>,
    pub cache_ttl: Option<String>,
    pub jwt: RawJwt,
}

/// `server.auth.jwt.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawJwt {
    pub key_file: Option<String>,
    pub expiration: Option<String>,
}

/// `server.limits.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawLimits {
    pub max_sessions: Option<Scalar>,
    pub max_sessions_per_client: Option<Scalar>,
    pub max_sessions_per_service: Option<Scalar>,
}

/// `server.ssl.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSsl {
    pub enabled: Option<bool>,
    pub certificate: Option<String>,
    pub certificate_key: Option<String>,
    pub key_store: Option<String>,
    /// A scalar, so that a password YAML reads as a number (`123456`) is still a password; quoted,
    /// it is kept exactly (`'0123'`).
    pub key_store_password: Option<Scalar>,
    pub trust_store: Option<String>,
    /// A scalar for the same reason as `key_store_password`.
    pub trust_store_password: Option<Scalar>,
    pub verify_services: Option<bool>,
    pub client_certificate: Option<String>,
    pub client_certificate_key: Option<String>,
    pub client_key_store: Option<String>,
    /// A scalar for the same reason as `key_store_password`.
    pub client_key_store_password: Option<Scalar>,
}

/// `server.webSocket.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawWebSocket {
    #[serde(deserialize_with = "comma_list")]
    pub supported_protocols: Option<Vec<String>>,
    pub error_mode: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub ping_interval: Option<String>,
    pub max_frame_size: Option<Scalar>,
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Option<Vec<String>>,
}

/// `server.loadBalancing.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawLoadBalancing {
    pub strategy: Option<String>,
    pub retries: Option<u32>,
    pub eject_for: Option<String>,
}

/// `discovery.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    pub embedded: RawEmbedded,
}

/// `discovery.embedded.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawEmbedded {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    #[serde(deserialize_with = "comma_list")]
    pub allow: Option<Vec<String>>,
    pub state_file: Option<String>,
    pub self_preservation: Option<bool>,
    pub renewal_percent_threshold: Option<Scalar>,
    pub eviction_interval: Option<String>,
    #[serde(deserialize_with = "comma_list")]
    pub users: Option<Vec<String>>,
    pub ssl: RawEmbeddedSsl,
}

/// `discovery.embedded.ssl.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawEmbeddedSsl {
    pub enabled: Option<bool>,
    pub client_auth: Option<String>,
    pub trust_store: Option<String>,
    /// A scalar for the same reason as `RawSsl::key_store_password`.
    pub trust_store_password: Option<Scalar>,
}

/// `eureka.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawEureka {
    pub client: RawEurekaClient,
    pub instance: RawEurekaInstance,
}

/// `eureka.instance.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawEurekaInstance {
    pub lease_renewal_interval_in_seconds: Option<u64>,
}

/// `eureka.client.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawEurekaClient {
    pub service_url: RawServiceUrl,
    pub registry_fetch_interval_seconds: Option<u64>,
}

/// `eureka.client.serviceUrl.*`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawServiceUrl {
    pub default_zone: Option<String>,
}

/// One entry of `services`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawService {
    pub service_id: String,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    #[serde(default)]
    pub metadata: BTreeMap<String, Scalar>,
}

/// One instance of a static service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawInstance {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub secure: bool,
}

/// A YAML scalar kept as text: metadata values and sizes may be written as numbers or strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A list written either as a YAML sequence or, as in Spring and the environment, comma-separated.
fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        List(Vec<String>),
    }
    let items = match Option::<Form>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Form::Text(text)) => text.split(',').map(str::to_owned).collect(),
        Some(Form::List(items)) => items,
    };
    Ok(Some(items.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()))
}
