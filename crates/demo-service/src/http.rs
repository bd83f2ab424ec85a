//! The plain HTTP endpoints (index page, greeting, request echo) and the shared response
//! helpers.
//!
//! Responses are built with `Response::new` and header constants, never with the fallible
//! builder, so no handler has an error path it cannot answer.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tracing::debug;

use crate::headers;
use crate::route::Context;

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

/// The largest request body `/api/v1/request` echoes; larger ones get `413`.
const MAX_ECHO_BODY: usize = 1024 * 1024;

/// The greeting for a missing or empty `name` parameter.
const DEFAULT_NAME: &str = "world";

/// The JSON answer of `/api/v1/greeting`.
#[derive(Debug, Serialize)]
struct Greeting<'a> {
    /// `Hello, NAME!`.
    greeting: String,
    /// The instance that answered.
    #[serde(rename = "instanceId")]
    instance_id: &'a str,
}

/// The JSON answer of `/api/v1/request`.
#[derive(Debug, Serialize)]
struct RequestEcho<'a> {
    /// The request method.
    method: &'a str,
    /// The request target as received (path and query).
    uri: String,
    /// The request headers, see [`headers::joined`].
    headers: BTreeMap<&'a str, String>,
    /// The request body, decoded as UTF-8 lossily.
    body: String,
}

/// `/` and `/index.html`: a tiny HTML page naming the instance and the endpoints.
pub(crate) fn index<B>(request: &Request<B>, context: &Context) -> Response<Body> {
    if !is_get_or_head(request.method()) {
        return method_not_allowed();
    }
    let id = escape_html(&context.instance_id);
    let base = escape_html(context.base_path.as_str());
    let page = format!(
        "<!DOCTYPE html>\n\
         <html><head><meta charset=\"utf-8\"><title>wsgate demo service {id}</title></head>\n\
         <body>\n\
         <h1>wsgate demo service</h1>\n\
         <p>Instance <code>{id}</code>.</p>\n\
         <ul>\n\
         <li><code>GET {base}/api/v1/greeting?name=X</code>: a JSON greeting</li>\n\
         <li><code>{base}/api/v1/request</code> (any method): the request echoed as JSON</li>\n\
         <li><code>{base}/ws/uppercase</code> (WebSocket): messages upper-cased; <code>bye</code> closes</li>\n\
         <li><code>{base}/ws/header</code> (WebSocket): the upgrade request's URI and headers as JSON</li>\n\
         </ul>\n\
         </body></html>\n"
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", page)
}

/// `/api/v1/greeting?name=X`: `{"greeting":"Hello, X!","instanceId":"ID"}`.
pub(crate) fn greeting<B>(request: &Request<B>, instance_id: &str) -> Response<Body> {
    if !is_get_or_head(request.method()) {
        return method_not_allowed();
    }
    let name = request
        .uri()
        .query()
        .and_then(|query| query_param(query, "name"))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_NAME.to_owned());
    json(
        StatusCode::OK,
        &Greeting {
            greeting: format!("Hello, {name}!"),
            instance_id,
        },
    )
}

/// `/api/v1/request`: the request (any method) described as JSON.
///
/// Bodies over 1 MiB get `413`; a body the client fails to deliver gets `400`.
pub(crate) async fn request_echo(request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // A declared length over the cap is refused before reading anything.
    if body.size_hint().lower() > MAX_ECHO_BODY as u64 {
        return payload_too_large();
    }
    let body = match Limited::new(body, MAX_ECHO_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return payload_too_large(),
        Err(error) => {
            debug!(%error, "request body could not be read");
            return text(
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            );
        }
    };
    json(
        StatusCode::OK,
        &RequestEcho {
            method: parts.method.as_str(),
            uri: parts.uri.to_string(),
            headers: headers::joined(&parts.headers),
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    )
}

/// `404 Not Found` for paths that are no endpoint.
pub(crate) fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// `500 Internal Server Error`, for the response bodies that could not be built.
pub(crate) fn internal_error() -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// `405 Method Not Allowed` for endpoints that only answer `GET` (and `HEAD`).
fn method_not_allowed() -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// `413 Payload Too Large` for echo bodies over the cap.
fn payload_too_large() -> Response<Body> {
    text(StatusCode::PAYLOAD_TOO_LARGE, "request body over 1 MiB\n")
}

/// A JSON response (or `500` if the value cannot be serialised).
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(error) => {
            debug!(%error, "response could not be serialised");
            internal_error()
        }
    }
}

/// A response with a status, a content type and a body.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Whether the method only reads (`GET` or `HEAD`).
fn is_get_or_head(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The first value of a query parameter, form-decoded (`+` is a space, then `%XX`;
/// invalid UTF-8 is decoded lossily).
fn query_param(query: &str, wanted: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(name) == wanted).then(|| form_decode(value))
    })
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(component: &str) -> String {
    let spaced = component.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Escapes text for use in HTML content.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_is_form_decoded() {
        assert_eq!(
            query_param("name=J%C3%BCrgen", "name").as_deref(),
            Some("Jürgen")
        );
        assert_eq!(
            query_param("a=1&name=Ada+L&name=x", "name").as_deref(),
            Some("Ada L")
        );
        assert_eq!(
            query_param("n%61me=encoded", "name").as_deref(),
            Some("encoded")
        );
        assert_eq!(query_param("name", "name").as_deref(), Some(""));
        assert_eq!(
            query_param("name=%ff%", "name").as_deref(),
            Some("\u{fffd}%")
        );
        assert_eq!(query_param("other=1", "name"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
