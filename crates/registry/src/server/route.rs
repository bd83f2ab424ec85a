//! Request paths and query strings of the Eureka REST API.
//!
//! Both `/eureka/apps...` (Spring Cloud) and `/eureka/v2/apps...` (the Netflix WAR) are served.
//! Segments are split before they are percent-decoded (py-eureka-client sends
//! `10.1.1.1%3Apy-svc%3A9090`, and an encoded `/` stays inside its segment); `{APP}` is upper-cased.

use percent_encoding::percent_decode_str;

/// An endpoint of the API, with its decoded path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/apps`
    Apps,
    /// `/apps/delta`
    Delta,
    /// `/apps/{APP}`
    App { app: String },
    /// `/apps/{APP}/{ID}`
    Instance { app: String, id: String },
    /// `/apps/{APP}/{ID}/status`
    Status { app: String, id: String },
    /// `/apps/{APP}/{ID}/metadata`
    Metadata { app: String, id: String },
    /// `/instances/{ID}`
    InstanceById { id: String },
    /// `/vips/{vip}` (`secure: false`) or `/svips/{svip}` (`secure: true`)
    Vip { vip: String, secure: bool },
}

fn decode(segment: &str) -> Option<String> {
    percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned())
}

impl Endpoint {
    /// The endpoint of `path`, `None` when the path is not part of the API (404).
    pub(crate) fn parse(path: &str) -> Option<Endpoint> {
        let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match raw.as_slice() {
            ["eureka", "v2", rest @ ..] => rest,
            ["eureka", rest @ ..] => rest,
            _ => return None,
        };
        let segments: Vec<String> = rest.iter().map(|s| decode(s)).collect::<Option<_>>()?;
        let upper = |s: &String| s.to_ascii_uppercase();
        let endpoint = match segments.as_slice() {
            [apps] if apps == "apps" => Endpoint::Apps,
            [apps, delta] if apps == "apps" && delta == "delta" => Endpoint::Delta,
            [apps, app] if apps == "apps" => Endpoint::App { app: upper(app) },
            [apps, app, id] if apps == "apps" => Endpoint::Instance { app: upper(app), id: id.clone() },
            [apps, app, id, status] if apps == "apps" && status == "status" => Endpoint::Status { app: upper(app), id: id.clone() },
            [apps, app, id, metadata] if apps == "apps" && metadata == "metadata" => Endpoint::Metadata { app: upper(app), id: id.clone() },
            [instances, id] if instances == "instances" => Endpoint::InstanceById { id: id.clone() },
            [vips, vip] if vips == "vips" => Endpoint::Vip { vip: vip.clone(), secure: false },
            [svips, vip] if svips == "svips" => Endpoint::Vip { vip: vip.clone(), secure: true },
            _ => return None,
        };
        Some(endpoint)
    }
}

/// The decoded `name=value` pairs of a query string, in order (`+` is a space, as in forms).
/// Pairs that do not decode to UTF-8 are dropped.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| decode(&s.replace('+', " "));
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

/// The first value of `name` among `pairs`.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_prefixes_and_every_endpoint() {
        for prefix in ["/eureka", "/eureka/v2"] {
            let parse = |rest: &str| Endpoint::parse(&format!("{prefix}{rest}"));
            assert_eq!(parse("/apps"), Some(Endpoint::Apps));
            assert_eq!(parse("/apps/"), Some(Endpoint::Apps));
            assert_eq!(parse("/apps/delta"), Some(Endpoint::Delta));
            assert_eq!(parse("/apps/jqservice"), Some(Endpoint::App { app: "JQSERVICE".into() }));
            assert_eq!(parse("/apps/py-svc/10.1.1.1%3Apy-svc%3A9090"), Some(Endpoint::Instance { app: "PY-SVC".into(), id: "10.1.1.1:py-svc:9090".into() }));
            assert_eq!(parse("/apps/a/i/status"), Some(Endpoint::Status { app: "A".into(), id: "i".into() }));
            assert_eq!(parse("/apps/a/i/metadata"), Some(Endpoint::Metadata { app: "A".into(), id: "i".into() }));
            assert_eq!(parse("/instances/a%2Fb"), Some(Endpoint::InstanceById { id: "a/b".into() }));
            assert_eq!(parse("/vips/demo"), Some(Endpoint::Vip { vip: "demo".into(), secure: false }));
            assert_eq!(parse("/svips/demo"), Some(Endpoint::Vip { vip: "demo".into(), secure: true }));
            assert_eq!(parse("/apps/a/i/other"), None);
            assert_eq!(parse("/apps/a/%FF"), None);
        }
        assert_eq!(Endpoint::parse("/apps"), None);
        assert_eq!(Endpoint::parse("/eureka"), None);
    }

    #[test]
    fn query_strings_decode() {
        let pairs = query_pairs(Some("status=UP&lastDirtyTimestamp=17&k+1=a%20b&flag&&x=%FF"));
        assert_eq!(query_value(&pairs, "status"), Some("UP"));
        assert_eq!(query_value(&pairs, "lastDirtyTimestamp"), Some("17"));
        assert_eq!(query_value(&pairs, "k 1"), Some("a b"));
        assert_eq!(query_value(&pairs, "flag"), Some(""));
        assert_eq!(query_value(&pairs, "x"), None);
        assert!(query_pairs(None).is_empty());
    }
}
