//! `discovery.embedded.*` and `eureka.client.*`: the embedded Eureka registry's listener and
//! options, and the external Eureka cluster the gateway follows, validated.

use std::path::Path;
use std::time::Duration;

use wsgate_registry::{AllowList, ClientConfig, RegistryConfig};

use super::raw::{RawEmbedded, RawEmbeddedSsl, RawEureka, Scalar};
use super::auth::htpasswd_users;
use super::{invalid, relative_file, units, ConfigError};
use crate::auth::Htpasswd;
use crate::tls::client::{ServiceTlsSettings, TrustStoreKeys, SERVICE_TRUST_STORE};
use crate::tls::registry::{ClientAuth, RegistryTls, TrustStore};
use crate::tls::Password;

/// The default `discovery.embedded.port`, as Zowe's discovery service.
pub const DEFAULT_REGISTRY_PORT: u16 = 10011;

/// The config key of the registry's users, for messages.
const USERS: &str = "discovery.embedded.users";

/// The config keys of the registry's TLS, for messages.
const SSL_ENABLED: &str = "discovery.embedded.ssl.enabled";
const CLIENT_AUTH: &str = "discovery.embedded.ssl.clientAuth";
const REGISTRY_TRUST_STORE: TrustStoreKeys = TrustStoreKeys { store: "discovery.embedded.ssl.trustStore", password: "discovery.embedded.ssl.trustStorePassword" };

/// The embedded registry, when `discovery.embedded.enabled` (the default).
#[derive(Debug, Clone)]
pub struct EmbeddedRegistry {
    /// `discovery.embedded.port` (`0`: any free port); the address is `server.address`.
    pub port: u16,
    /// The registry's options: `allow`, `stateFile`, `selfPreservation`, `renewalPercentThreshold`,
    /// `evictionInterval`. Its credential check is set by the gateway from [`Self::users`].
    pub registry: RegistryConfig,
    /// `discovery.embedded.users`: the users of `server.auth.htpasswd` the registry lets in; `None`:
    /// no credential needed.
    pub users: Option<Vec<String>>,
    /// `discovery.embedded.ssl.*`: https on the registry's port with the gateway's certificate; `None`
    /// (the default): plain HTTP.
    pub tls: Option<RegistryTls>,
}

/// What `discovery.embedded.ssl.*` may take from `server.ssl.*`.
#[derive(Debug, Clone, Copy)]
pub(super) struct GatewaySsl<'a> {
    /// Whether the gateway has a certificate (`server.ssl.enabled` with its files), which the registry's
    /// port presents too.
    pub certificate: bool,
    /// `server.ssl.trustStore` and its password, the default trust store for client certificates.
    pub services: &'a ServiceTlsSettings,
    /// The config file's folder, which a relative `discovery.embedded.ssl.trustStore` is resolved
    /// against, as `server.ssl.trustStore` is.
    pub config_dir: &'a Path,
}

/// Validates `discovery.embedded.*`; `None` when the registry is disabled. `state_dir` is
/// `server.stateDir`, which a relative `stateFile` is resolved against; `htpasswd` is
/// `server.auth.htpasswd`, which `users` must come from; `ssl` is what the registry's TLS borrows from
/// the gateway's.
pub(super) fn embedded(raw: RawEmbedded, state_dir: &Path, htpasswd: Option<&Htpasswd>, ssl: GatewaySsl<'_>) -> Result<Option<EmbeddedRegistry>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let defaults = RegistryConfig::default();
    let allow = match raw.allow {
        None => defaults.allow,
        Some(entries) => AllowList::parse(&entries).map_err(|error| invalid("discovery.embedded.allow", error.to_string()))?,
    };
    let state_file = relative_file(raw.state_file.as_deref(), state_dir);
    let renewal_percent_threshold = match raw.renewal_percent_threshold {
        None => defaults.renewal_percent_threshold,
        Some(Scalar(text)) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|share| *share > 0.0 && *share <= 1.0)
            .ok_or_else(|| invalid("discovery.embedded.renewalPercentThreshold", format!("`{text}` is not a share between 0 and 1, such as 0.85")))?,
    };
    let eviction_interval = match raw.eviction_interval.as_deref() {
        None => defaults.eviction_interval,
        Some(text) => units::parse_duration(text)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| invalid("discovery.embedded.evictionInterval", format!("`{text}` is not a duration such as 200ms, 1s or 60s")))?,
    };
    let registry = RegistryConfig {
        allow,
        state_file,
        // Off by default, unlike Java: in a registry of a few instances self-preservation keeps a
        // dead instance registered (and routed to) for ever, since the survivors' renewals never
        // reach the threshold. See the README's Discovery section.
        self_preservation: raw.self_preservation.unwrap_or(false),
        renewal_percent_threshold,
        eviction_interval,
        ..defaults
    };
    let users = htpasswd_users(USERS, raw.users, htpasswd)?;
    let tls = registry_tls(raw.ssl, ssl)?;
    Ok(Some(EmbeddedRegistry { port: raw.port.unwrap_or(DEFAULT_REGISTRY_PORT), registry, users, tls }))
}

/// Validates `discovery.embedded.ssl.*`; `None` when `enabled` is not true (plain HTTP).
fn registry_tls(raw: RawEmbeddedSsl, gateway: GatewaySsl<'_>) -> Result<Option<RegistryTls>, ConfigError> {
    // What a trust store makes of `want` or `need`; `None` for `none`.
    let asked: Option<fn(TrustStore) -> ClientAuth> = match raw.client_auth.as_deref().map(|word| word.trim().to_ascii_lowercase()).as_deref() {
        None | Some("none") => None,
        Some("want") => Some(ClientAuth::Want),
        Some("need") => Some(ClientAuth::Need),
        Some(other) => return Err(invalid(CLIENT_AUTH, format!("`{other}` is none of `none`, `want` and `need`"))),
    };
    let asks = asked.is_some();
    let own_store = relative_file(raw.trust_store.as_deref(), gateway.config_dir);
    let password = raw.trust_store_password.map(|Scalar(text)| Password::new(text));
    if !asks && (own_store.is_some() || password.is_some()) {
        let key = if own_store.is_some() { REGISTRY_TRUST_STORE.store } else { REGISTRY_TRUST_STORE.password };
        return Err(invalid(key, format!("is only used with {CLIENT_AUTH} `want` or `need`, which is not set")));
    }
    if own_store.is_none() && password.is_some() {
        return Err(invalid(REGISTRY_TRUST_STORE.password, format!("is only used with {}, which is not set", REGISTRY_TRUST_STORE.store)));
    }
    if raw.enabled != Some(true) {
        if asks {
            return Err(invalid(CLIENT_AUTH, format!("asks for client certificates, which only TLS carries: set {SSL_ENABLED}: true")));
        }
        return Ok(None);
    }
    if !gateway.certificate {
        return Err(invalid(
            SSL_ENABLED,
            "is true, but the registry's port presents the gateway's certificate and there is none: set server.ssl.certificate and server.ssl.certificateKey, or server.ssl.keyStore, with server.ssl.enabled true".into(),
        ));
    }
    let Some(asked) = asked else {
        return Ok(Some(RegistryTls { client_auth: ClientAuth::None }));
    };
    let store = match (own_store, &gateway.services.trust_store) {
        (Some(path), _) => TrustStore { path, password, keys: REGISTRY_TRUST_STORE },
        (None, Some(path)) => TrustStore { path: path.clone(), password: gateway.services.trust_store_password.clone(), keys: SERVICE_TRUST_STORE },
        (None, None) => {
            return Err(invalid(
                REGISTRY_TRUST_STORE.store,
                format!("is required with {CLIENT_AUTH} `want` or `need`: the CA certificates client certificates must chain to (PEM bundle or PKCS#12); server.ssl.trustStore, the default, is not set either"),
            ))
        }
    };
    Ok(Some(RegistryTls { client_auth: asked(store) }))
}

/// Validates `eureka.client.*` and `eureka.instance.*`; `None` when `serviceUrl.defaultZone` is
/// not set (no external cluster). The URLs are checked as the client will use them,
/// `http[s]://[USER:PASSWORD@]HOST[:PORT][/PATH]`, and kept as given: the credentials in them are the
/// client's and the registration's. TLS towards https URLs is `server.ssl.*`'s towards services, set
/// when the gateway starts.
pub(super) fn eureka_client(raw: &RawEureka) -> Result<Option<ClientConfig>, ConfigError> {
    const DEFAULT_ZONE: &str = "eureka.client.serviceUrl.defaultZone";
    const FETCH_INTERVAL: &str = "eureka.client.registryFetchIntervalSeconds";
    const RENEWAL_INTERVAL: &str = "eureka.instance.leaseRenewalIntervalInSeconds";
    let renewal = raw.instance.lease_renewal_interval_in_seconds;
    let raw = &raw.client;
    let Some(default_zone) = raw.service_url.default_zone.as_deref() else {
        if raw.registry_fetch_interval_seconds.is_some() {
            return Err(invalid(FETCH_INTERVAL, format!("is only used with {DEFAULT_ZONE}, which is not set")));
        }
        if renewal.is_some() {
            return Err(invalid(RENEWAL_INTERVAL, format!("is only used with {DEFAULT_ZONE}, which is not set")));
        }
        return Ok(None);
    };
    let mut config = ClientConfig::from_default_zone(default_zone);
    if let Some(seconds) = raw.registry_fetch_interval_seconds {
        if seconds == 0 {
            return Err(invalid(FETCH_INTERVAL, "must be at least 1 (seconds between fetches)".into()));
        }
        config.fetch_interval = Duration::from_secs(seconds);
    }
    if let Some(seconds) = renewal {
        if seconds == 0 {
            return Err(invalid(RENEWAL_INTERVAL, "must be at least 1 (seconds between heartbeats)".into()));
        }
        config.lease_renewal_interval = Duration::from_secs(seconds);
    }
    // The client's own check, so the config refuses exactly what the client would.
    config.check().map_err(|error| invalid(DEFAULT_ZONE, format!("{error} (expected comma-separated URLs such as https://eureka1:8761/eureka)")))?;
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, ConfigError};
    use crate::tls::registry::ClientAuth;
    use crate::tls::Password;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        // Plain ws: TLS, on by default, would need certificate files.
        let vars = [("SERVER_SSL_ENABLED", "false")].iter().chain(vars).map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::parse(text, Path::new("/srv/gw/wsgate.yml"), vars)
    }

    #[test]
    fn enabled_by_default_on_10011_loopback_only_without_self_preservation() {
        let embedded = parse("", &[]).unwrap().embedded.unwrap();
        assert_eq!(embedded.port, 10011);
        assert!(embedded.registry.allow.allows("127.0.0.1".parse().unwrap()));
        assert!(!embedded.registry.allow.allows("10.0.0.1".parse().unwrap()));
        assert!(!embedded.registry.self_preservation);
        assert_eq!(embedded.registry.state_file, None);
        assert_eq!(embedded.registry.eviction_interval, Duration::from_secs(1));
        assert!(parse("discovery: {embedded: {enabled: false, port: 1}}", &[]).unwrap().embedded.is_none());
    }

    #[test]
    fn every_key_is_read_from_the_file_and_the_environment() {
        let text = "discovery:\n  embedded:\n    port: 0\n    allow: [10.0.0.0/8, '::1']\n    stateFile: state/registry.json\n    selfPreservation: true\n    renewalPercentThreshold: 0.5\n    evictionInterval: 200ms\n";
        let embedded = parse(text, &[]).unwrap().embedded.unwrap();
        assert_eq!(embedded.port, 0);
        assert!(embedded.registry.allow.allows("10.1.2.3".parse().unwrap()));
        assert!(!embedded.registry.allow.allows("127.0.0.1".parse().unwrap()));
        assert_eq!(embedded.registry.state_file.as_deref(), Some(Path::new("/srv/gw/state/registry.json")));
        assert!(embedded.registry.self_preservation);
        assert_eq!(embedded.registry.renewal_percent_threshold, 0.5);
        assert_eq!(embedded.registry.eviction_interval, Duration::from_millis(200));
        let in_state_dir = parse(&format!("server: {{stateDir: /var/lib/gw}}\n{text}"), &[]).unwrap().embedded.unwrap();
        assert_eq!(in_state_dir.registry.state_file.as_deref(), Some(Path::new("/var/lib/gw/state/registry.json")));
        let vars = [
            ("DISCOVERY_EMBEDDED_PORT", "12011"),
            ("DISCOVERY_EMBEDDED_ALLOW", "192.168.0.0/16,127.0.0.1"),
            ("DISCOVERY_EMBEDDED_SELFPRESERVATION", "false"),
            ("DISCOVERY_EMBEDDED_STATEFILE", "/var/lib/wsgate/registry.json"),
        ];
        let embedded = parse(text, &vars).unwrap().embedded.unwrap();
        assert_eq!(embedded.port, 12011);
        assert!(embedded.registry.allow.allows("192.168.7.7".parse().unwrap()));
        assert!(!embedded.registry.allow.allows("10.1.2.3".parse().unwrap()));
        assert!(!embedded.registry.self_preservation);
        assert_eq!(embedded.registry.state_file.as_deref(), Some(Path::new("/var/lib/wsgate/registry.json")));
        assert!(parse("", &[("DISCOVERY_EMBEDDED_ENABLED", "false")]).unwrap().embedded.is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("discovery: {embedded: {allow: [localhost]}}", "discovery.embedded.allow"),
            ("discovery: {embedded: {allow: 10.0.0.0/40}}", "discovery.embedded.allow"),
            ("discovery: {embedded: {renewalPercentThreshold: 2}}", "discovery.embedded.renewalPercentThreshold"),
            ("discovery: {embedded: {evictionInterval: 0s}}", "discovery.embedded.evictionInterval"),
        ] {
            let error = parse(text, &[]).unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
        let error = parse("discovery: {embedded: {port: many}}", &[]).unwrap_err().to_string();
        assert!(error.contains("discovery.embedded.port"), "{error}");
    }

    /// The gateway with a certificate, for the registry's TLS.
    const WITH_CERTIFICATE: [(&str, &str); 3] = [("SERVER_SSL_ENABLED", "true"), ("SERVER_SSL_CERTIFICATE", "gw.pem"), ("SERVER_SSL_CERTIFICATEKEY", "gw-key.pem")];

    #[test]
    fn registry_tls_is_off_by_default_and_takes_its_trust_store_or_the_gateways() {
        assert!(parse("", &[]).unwrap().embedded.unwrap().tls.is_none());
        let plain = parse("discovery: {embedded: {ssl: {enabled: true}}}", &WITH_CERTIFICATE).unwrap().embedded.unwrap().tls.unwrap();
        assert_eq!(plain.client_auth, ClientAuth::None);
        let own = "discovery: {embedded: {ssl: {enabled: true, clientAuth: want, trustStore: tls/clients.p12, trustStorePassword: '0123'}}}\nserver: {ssl: {trustStore: /etc/ca.pem}}";
        let ClientAuth::Want(store) = parse(own, &WITH_CERTIFICATE).unwrap().embedded.unwrap().tls.unwrap().client_auth else { panic!("not want") };
        assert_eq!(store.path, Path::new("/srv/gw/tls/clients.p12"));
        assert_eq!(store.password, Some(Password::new("0123".into())));
        assert_eq!(store.keys.store, "discovery.embedded.ssl.trustStore");
        let default = "discovery: {embedded: {ssl: {enabled: true, clientAuth: NEED}}}\nserver: {ssl: {trustStore: /etc/ca.p12, trustStorePassword: changeit}}";
        let ClientAuth::Need(store) = parse(default, &WITH_CERTIFICATE).unwrap().embedded.unwrap().tls.unwrap().client_auth else { panic!("not need") };
        assert_eq!((store.path.as_path(), store.password), (Path::new("/etc/ca.p12"), Some(Password::new("changeit".into()))));
        assert_eq!(store.keys.store, "server.ssl.trustStore");
        let vars = [
            ("DISCOVERY_EMBEDDED_SSL_ENABLED", "true"),
            ("DISCOVERY_EMBEDDED_SSL_CLIENTAUTH", "need"),
            ("DISCOVERY_EMBEDDED_SSL_TRUSTSTORE", "/etc/clients.pem"),
            ("DISCOVERY_EMBEDDED_SSL_TRUSTSTOREPASSWORD", "007"),
        ];
        let ClientAuth::Need(store) = parse("", &[&WITH_CERTIFICATE[..], &vars].concat()).unwrap().embedded.unwrap().tls.unwrap().client_auth else { panic!("not need") };
        assert_eq!((store.path.as_path(), store.password), (Path::new("/etc/clients.pem"), Some(Password::new("007".into()))));
    }

    #[test]
    fn bad_registry_tls_names_the_key() {
        for (text, with_certificate, key) in [
            ("discovery: {embedded: {ssl: {enabled: true}}}", false, "discovery.embedded.ssl.enabled: "),
            ("discovery: {embedded: {ssl: {clientAuth: need, trustStore: ca.pem}}}", true, "discovery.embedded.ssl.clientAuth: "),
            ("discovery: {embedded: {ssl: {enabled: true, clientAuth: want}}}", true, "discovery.embedded.ssl.trustStore: "),
            ("discovery: {embedded: {ssl: {enabled: true, clientAuth: required, trustStore: ca.pem}}}", true, "discovery.embedded.ssl.clientAuth: "),
            ("discovery: {embedded: {ssl: {enabled: true, trustStore: ca.pem}}}", true, "discovery.embedded.ssl.trustStore: "),
            ("discovery: {embedded: {ssl: {enabled: true, clientAuth: need, trustStorePassword: x}}}\nserver: {ssl: {trustStore: ca.pem}}", true, "discovery.embedded.ssl.trustStorePassword: "),
        ] {
            let vars: &[(&str, &str)] = if with_certificate { &WITH_CERTIFICATE } else { &[] };
            let error = parse(text, vars).unwrap_err().to_string();
            assert!(error.starts_with(key), "{text}: {error}");
        }
        let error = parse("discovery: {embedded: {ssl: {enabled: true, clientAuth: want, trust: x}}}", &WITH_CERTIFICATE).unwrap_err().to_string();
        assert!(error.contains("unknown field `trust`"), "{error}");
    }

    #[test]
    fn eureka_client_is_off_unless_a_default_zone_is_set() {
        assert!(parse("", &[]).unwrap().eureka.is_none());
    }

    #[test]
    fn eureka_client_keys_from_the_file_and_the_environment() {
        let text = "eureka:\n  client:\n    serviceUrl:\n      defaultZone: ' http://127.0.0.1:1/eureka/ , https://eureka:s3cret@eureka2:8761/eureka'\n    registryFetchIntervalSeconds: 1\n";
        let eureka = parse(text, &[]).unwrap().eureka.unwrap();
        // Kept as given, credential included: the client and the gateway's registration take it out.
        assert_eq!(eureka.service_urls, ["http://127.0.0.1:1/eureka/", "https://eureka:s3cret@eureka2:8761/eureka"]);
        assert!(eureka.tls.is_none(), "set by the gateway from server.ssl.* when it starts");
        assert_eq!(eureka.fetch_interval, Duration::from_secs(1));
        let defaults = parse("eureka: {client: {serviceUrl: {defaultZone: 'http://e:8761/eureka'}}}", &[]).unwrap().eureka.unwrap();
        assert_eq!(defaults.fetch_interval, Duration::from_secs(30));
        assert_eq!(defaults.lease_renewal_interval, Duration::from_secs(30));
        let renewal = parse("eureka: {client: {serviceUrl: {defaultZone: 'http://e:8761/eureka'}}, instance: {leaseRenewalIntervalInSeconds: 1}}", &[]).unwrap().eureka.unwrap();
        assert_eq!(renewal.lease_renewal_interval, Duration::from_secs(1));
        let vars = [("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", "http://a:1/eureka,http://b:2/eureka"), ("EUREKA_CLIENT_REGISTRYFETCHINTERVALSECONDS", "5")];
        let eureka = parse(text, &vars).unwrap().eureka.unwrap();
        assert_eq!(eureka.service_urls, ["http://a:1/eureka", "http://b:2/eureka"]);
        assert_eq!(eureka.fetch_interval, Duration::from_secs(5));
        let from_env_only = parse("", &[("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", "http://a:1/eureka")]).unwrap().eureka.unwrap();
        assert_eq!(from_env_only.service_urls, ["http://a:1/eureka"]);
    }

    #[test]
    fn bad_eureka_client_values_name_the_key() {
        for (text, key) in [
            ("eureka: {client: {serviceUrl: {defaultZone: 'ftp://e:8761/eureka'}}}", "eureka.client.serviceUrl.defaultZone"),
            ("eureka: {client: {serviceUrl: {defaultZone: 'https://e:8761/eureka?zone=1'}}}", "eureka.client.serviceUrl.defaultZone"),
            ("eureka: {client: {serviceUrl: {defaultZone: 'http://a:1/eureka,e:8761/eureka'}}}", "eureka.client.serviceUrl.defaultZone"),
            ("eureka: {client: {serviceUrl: {defaultZone: ' , '}}}", "eureka.client.serviceUrl.defaultZone"),
            ("eureka: {client: {serviceUrl: {defaultZone: 'http://e/eureka'}, registryFetchIntervalSeconds: 0}}", "eureka.client.registryFetchIntervalSeconds"),
            ("eureka: {client: {registryFetchIntervalSeconds: 5}}", "eureka.client.registryFetchIntervalSeconds"),
            ("eureka: {client: {serviceUrl: {defaultZone: 'http://e/eureka'}}, instance: {leaseRenewalIntervalInSeconds: 0}}", "eureka.instance.leaseRenewalIntervalInSeconds"),
            ("eureka: {instance: {leaseRenewalIntervalInSeconds: 5}}", "eureka.instance.leaseRenewalIntervalInSeconds"),
        ] {
            let error = parse(text, &[]).unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
        let error = parse("eureka: {client: {registryFetchIntervalSeconds: soon}}", &[]).unwrap_err().to_string();
        assert!(error.contains("eureka.client.registryFetchIntervalSeconds"), "{error}");
    }
}
