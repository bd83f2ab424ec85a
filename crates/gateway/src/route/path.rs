//! Splitting and normalizing request paths, without decoding them.

use thiserror::Error;

/// Why a path did not resolve to a route.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// The path is not `/{serviceId}/{gatewayUrl}/...`, or its `..` segments climb out of the route.
    #[error("invalid URL format")]
    InvalidUrl,
    /// No service has that id.
    #[error("service {service_id} is not known")]
    UnknownService {
        /// The id as the client wrote it.
        service_id: String,
    },
    /// The service has no route for that gatewayUrl.
    #[error("no route for {gateway_url}")]
    NoRoute {
        /// The (up to two) path segments after the serviceId, as the client wrote them.
        gateway_url: String,
    },
}

/// Splits `/{serviceId}/{more}` into the serviceId and `/{more}`; `{more}` must not be empty.
pub(super) fn split_service(path: &str) -> Result<(&str, &str), RouteError> {
    let path = path.strip_prefix('/').ok_or(RouteError::InvalidUrl)?;
    let (service_id, rest) = path.split_once('/').ok_or(RouteError::InvalidUrl)?;
    if service_id.is_empty() || rest.is_empty() {
        return Err(RouteError::InvalidUrl);
    }
    Ok((service_id, &path[service_id.len()..]))
}

/// Strips the given segments from the front of `path` (which starts with `/`), returning what follows
/// them (empty or starting with `/`), or `None` when they do not match whole segments.
pub(super) fn strip_segments<'p, 's>(path: &'p str, segments: impl Iterator<Item = &'s str>) -> Option<&'p str> {
    let mut rest = path;
    for segment in segments {
        rest = rest.strip_prefix('/')?.strip_prefix(segment)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
    }
    Some(rest)
}

/// The gatewayUrl a client asked for, for error messages: the first two segments after the serviceId.
pub(super) fn requested_gateway_url(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').take(2).filter(|s| !s.is_empty()).collect();
    segments.join("/")
}

/// Removes `.` and `..` segments (also percent-encoded ones) from `rest`, never climbing above it.
pub(super) fn normalize(rest: &str) -> Result<String, RouteError> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        let lower = s.to_ascii_lowercase();
        matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
    };
    let Some(body) = rest.strip_prefix('/') else {
        return Ok(rest.to_owned());
    };
    if climbs_when_decoded(body) {
        return Err(RouteError::InvalidUrl);
    }
    if !body.split('/').any(|s| is_dot(s) || is_dot_dot(s)) {
        return Ok(rest.to_owned());
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in body.split('/') {
        if is_dot(segment) {
            continue;
        }
        if is_dot_dot(segment) {
            kept.pop().ok_or(RouteError::InvalidUrl)?;
            continue;
        }
        kept.push(segment);
    }
    Ok(kept.iter().map(|s| format!("/{s}")).collect())
}

/// Whether `body` climbs above its start once encoded dots and separators (`%2e`, `%2f`, `%5c`) are
/// decoded and backslashes count as slashes, as some services do before normalizing a path.
fn climbs_when_decoded(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    if !lower.contains('%') && !lower.contains('\\') {
        return false;
    }
    let decoded = lower.replace("%2e", ".").replace("%2f", "/").replace("%5c", "/").replace('\\', "/");
    let mut depth = 0usize;
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}
