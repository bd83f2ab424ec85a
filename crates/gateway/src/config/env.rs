//! Environment overrides with Spring's relaxed binding: `server.webSocket.supportedProtocols` is set by
//! `SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS` (upper case, `.` → `_`, `-` dropped, matched case-insensitively).

use serde_yaml_ng::{Mapping, Value};

/// Every scalar key that the environment may override, in MISSION §8 spelling.
pub(crate) const KEYS: &[&str] = &[
    "server.address",
    "server.port",
    "server.maxHttpHeaderSize",
    "server.handshakeTimeout",
    "server.limits.maxSessions",
    "server.limits.maxSessionsPerClient",
    "server.limits.maxSessionsPerService",
    "server.ssl.enabled",
    "server.ssl.certificate",
    "server.ssl.certificateKey",
    "server.ssl.keyStore",
    "server.ssl.keyStorePassword",
    "server.ssl.trustStore",
    "server.ssl.trustStorePassword",
    "server.ssl.verifyServices",
    "server.ssl.clientCertificate",
    "server.ssl.clientCertificateKey",
    "server.ssl.clientKeyStore",
    "server.ssl.clientKeyStorePassword",
    "server.webSocket.supportedProtocols",
    "server.webSocket.errorMode",
    "server.webSocket.connectTimeout",
    "server.webSocket.idleTimeout",
    "server.webSocket.pingInterval",
    "server.webSocket.maxFrameSize",
    "server.webSocket.allowedOrigins",
    "server.loadBalancing.strategy",
    "server.loadBalancing.retries",
    "server.loadBalancing.ejectFor",
    "server.auth.htpasswd",
    "server.auth.adminUsers",
    "server.auth.adminAllow",
    "server.auth.cacheTtl",
    "discovery.embedded.enabled",
    "discovery.embedded.port",
    "discovery.embedded.allow",
    "discovery.embedded.stateFile",
    "discovery.embedded.selfPreservation",
    "discovery.embedded.renewalPercentThreshold",
    "discovery.embedded.evictionInterval",
    "discovery.embedded.ssl.enabled",
    "discovery.embedded.ssl.clientAuth",
    "discovery.embedded.ssl.trustStore",
    "discovery.embedded.ssl.trustStorePassword",
    "eureka.client.serviceUrl.defaultZone",
    "eureka.client.registryFetchIntervalSeconds",
    "eureka.instance.leaseRenewalIntervalInSeconds",
];

/// Keys whose values stay text whatever they look like: a password `0123` or `true` is not a number or a
/// boolean.
const VERBATIM: &[&str] = &["server.ssl.keyStorePassword", "server.ssl.trustStorePassword", "server.ssl.clientKeyStorePassword", "discovery.embedded.ssl.trustStorePassword"];

/// The environment variable name that binds `key`.
pub(crate) fn variable_name(key: &str) -> String {
    key.replace('.', "_").replace('-', "").to_ascii_uppercase()
}

/// One override found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    /// The key it sets, e.g. `server.port`.
    pub key: &'static str,
    /// The variable as it was spelled in the environment.
    pub variable: String,
    /// Its value.
    pub value: String,
}

/// Finds the overrides among `vars` (typically `std::env::vars()`).
pub(crate) fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found = Vec::new();
    for (variable, value) in vars {
        let normalized = variable.replace('-', "").to_ascii_uppercase();
        if let Some(key) = KEYS.iter().find(|key| variable_name(key) == normalized) {
            found.push(Override { key, variable, value });
        }
    }
    found
}

/// Writes `value` at the dotted `key` of `doc`, creating mappings on the way.
///
/// The value is read as a YAML scalar, so `10010` becomes a number and `true` a boolean, as Spring
/// converts them; anything else (`v12.stomp,wamp`, `*`) stays a string, and so does the value of a
/// password key.
pub(crate) fn apply(doc: &mut Value, key: &str, value: &str) {
    let scalar = match serde_yaml_ng::from_str::<Value>(value) {
        Ok(parsed @ (Value::Bool(_) | Value::Number(_))) if !VERBATIM.contains(&key) => parsed,
        _ => Value::String(value.to_owned()),
    };
    let mut node = doc;
    for part in key.split('.') {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { unreachable!("made a mapping just above") };
        node = map.entry(Value::String(part.to_owned())).or_insert(Value::Null);
    }
    *node = scalar;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_names() {
        assert_eq!(variable_name("server.webSocket.supportedProtocols"), "SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS");
        let vars = [
            ("SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS".to_owned(), "v12.stomp,wamp".to_owned()),
            ("server_port".to_owned(), "0".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let found = overrides(vars);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].key, "server.webSocket.supportedProtocols");
        assert_eq!(found[1].key, "server.port");
    }

    #[test]
    fn apply_types_scalars_like_spring() {
        let mut doc: Value = serde_yaml_ng::from_str("server:\n  port: 1\n").unwrap();
        apply(&mut doc, "server.port", "10010");
        apply(&mut doc, "server.ssl.enabled", "false");
        apply(&mut doc, "server.webSocket.supportedProtocols", "*");
        assert_eq!(doc["server"]["port"], Value::Number(10010.into()));
        assert_eq!(doc["server"]["ssl"]["enabled"], Value::Bool(false));
        assert_eq!(doc["server"]["webSocket"]["supportedProtocols"], Value::String("*".into()));
        apply(&mut doc, "server.ssl.keyStorePassword", "123456");
        assert_eq!(doc["server"]["ssl"]["keyStorePassword"], Value::String("123456".into()));
    }
}
