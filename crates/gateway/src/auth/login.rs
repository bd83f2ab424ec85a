//! The browser login under [`PREFIX`] (MISSION §4, Zowe's API): `POST login` with a Basic credential
//! or a JSON `{"username","password"}` answers 204 with the token as the [`COOKIE`] cookie; `GET
//! query` describes a valid token; `POST logout` revokes it and clears the cookie. Without
//! `server.auth.htpasswd` there is no login: 404.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::{token_of, AuthError, Authenticator, Claims, Credentials, Guard, Tokens, COOKIE};
use crate::body::{self, Body};
use crate::failure::Failure;

/// The path prefix the login endpoints own; no service can be routed under it.
pub const PREFIX: &str = "/gateway/api/v1/auth/";

/// The largest JSON login body read; a user name and a password fit many times.
const MAX_BODY: usize = 16 * 1024;

/// The JSON form of the login.
#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// Answers a request under [`PREFIX`].
pub async fn handle<B>(request: Request<B>, client: SocketAddr, guard: &Guard) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(endpoint) = request.uri().path().strip_prefix(PREFIX).map(str::to_owned) else {
        return text(StatusCode::NOT_FOUND, "Not found\n");
    };
    let (Some(authenticator), Some(tokens)) = (guard.authenticator(), guard.tokens()) else {
        return text(StatusCode::NOT_FOUND, "Login is not enabled: server.auth.htpasswd is not set\n");
    };
    let method = request.method().clone();
    match (endpoint.as_str(), method) {
        ("login", Method::POST) => login(request, client, authenticator, tokens).await,
        ("query", Method::GET) => match valid_token(tokens, request.headers()) {
            Ok(claims) => {
                let at = |seconds| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string();
                let body = json!({ "userId": claims.sub, "creation": at(claims.iat), "expiration": at(claims.exp) });
                let mut response = Response::new(body::full(body.to_string()));
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(refusal) => refuse(client, &endpoint, refusal),
        },
        ("logout", Method::POST) => {
            // The cookie is cleared whatever the token: a browser holding a stale one is logged out too.
            if let Ok(claims) = valid_token(tokens, request.headers()) {
                tokens.revoke(&claims);
                info!(%client, user = ?claims.sub, "logged out");
            }
            set_cookie(StatusCode::NO_CONTENT, "", Duration::ZERO)
        }
        ("login" | "logout", _) => text(StatusCode::METHOD_NOT_ALLOWED, "only POST is supported here\n"),
        ("query", _) => text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported here\n"),
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

/// The login: checks the credential with `authenticator` and answers a token as a cookie.
async fn login<B>(request: Request<B>, client: SocketAddr, authenticator: &Authenticator, tokens: &Tokens) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let credentials = match Credentials::from_headers(request.headers()) {
        Some(credentials) => Some(credentials),
        None => match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => serde_json::from_slice::<LoginBody>(&body.to_bytes()).ok().map(|body| Credentials { username: body.username, password: body.password }),
            Err(_) => None,
        },
    };
    let Some(credentials) = credentials else {
        return refuse(client, "login", AuthError::MissingCredentials);
    };
    if !authenticator.verify(&credentials.username, &credentials.password).await {
        return refuse(client, "login", AuthError::InvalidCredentials { username: credentials.username });
    }
    match tokens.issue(&credentials.username) {
        Ok((token, _)) => {
            info!(%client, user = ?credentials.username, "logged in");
            set_cookie(StatusCode::NO_CONTENT, &token, tokens.lifetime())
        }
        Err(error) => refuse(client, "login", AuthError::TokenNotIssued(error)),
    }
}

/// The claims of the valid token of `headers`.
fn valid_token(tokens: &Tokens, headers: &HeaderMap) -> Result<Claims, AuthError> {
    let token = token_of(headers).ok_or(AuthError::MissingCredentials)?;
    Ok(tokens.verify(token)?)
}

/// A refusal, logged (without the credential) and answered through [`crate::failure`].
fn refuse(client: SocketAddr, endpoint: &str, refusal: AuthError) -> Response<Body> {
    warn!(%client, endpoint, error = %refusal, "login endpoint refused");
    Failure::from(refusal).response()
}

/// An empty answer setting the token cookie to `value` for `max_age` (zero: cleared).
fn set_cookie(status: StatusCode, value: &str, max_age: Duration) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    let cookie = format!("{COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}", max_age.as_secs());
    // A token is base64url and dots, always a valid header value; failing that, no cookie.
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    // No cache keeps a token, nor a logout's answer.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain-text answer.
fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
