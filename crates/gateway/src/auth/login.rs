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
        return body::text(StatusCode::NOT_FOUND, "Not found\n");
    };
    let (Some(authenticator), Some(tokens)) = (guard.authenticator(), guard.tokens()) else {
        return body::text(StatusCode::NOT_FOUND, "Login is not enabled: server.auth.htpasswd is not set\n");
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
        ("login" | "logout", _) => body::text(StatusCode::METHOD_NOT_ALLOWED, "only POST is supported here\n"),
        ("query", _) => body::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported here\n"),
        _ => body::text(StatusCode::NOT_FOUND, "Not found\n"),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine as _;
    use http_body_util::Full;

    use super::*;
    use crate::auth::{Htpasswd, OriginPolicy};
    use crate::config::{AuthConfig, JwtConfig};

    fn guard() -> Guard {
        let users = format!("alice:{}\n", bcrypt::hash("hunter2", 4).unwrap());
        let jwt = JwtConfig { key: vec![9; 32], expiration: Duration::from_secs(600) };
        let config = AuthConfig { htpasswd: Some(Htpasswd::parse(&users, Path::new("users")).unwrap()), jwt: Some(jwt), ..AuthConfig::default() };
        Guard::new(config, OriginPolicy::Any)
    }

    async fn call(guard: &Guard, method: Method, endpoint: &str, headers: &[(header::HeaderName, String)], body: &str) -> Response<Body> {
        let mut request = Request::builder().method(method).uri(format!("{PREFIX}{endpoint}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        handle(request.body(Full::new(Bytes::from(body.to_owned()))).unwrap(), "127.0.0.1:9".parse().unwrap(), guard).await
    }

    fn cookie(response: &Response<Body>) -> &str {
        response.headers()[header::SET_COOKIE].to_str().unwrap()
    }

    #[tokio::test]
    async fn login_query_logout() {
        let guard = guard();
        let json = r#"{"username": "alice", "password": "hunter2"}"#;
        let response = call(&guard, Method::POST, "login", &[], json).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let token = cookie(&response).strip_prefix("apimlAuthenticationToken=").unwrap().split(';').next().unwrap().to_owned();
        assert!(cookie(&response).ends_with("; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=600"));
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:hunter2"));
        assert_eq!(call(&guard, Method::POST, "login", &[(header::AUTHORIZATION, basic)], "").await.status(), StatusCode::NO_CONTENT);
        let wrong = call(&guard, Method::POST, "login", &[], r#"{"username": "alice", "password": "hunter3"}"#).await;
        assert!(wrong.status() == StatusCode::UNAUTHORIZED && wrong.headers().get(header::SET_COOKIE).is_none());
        let bearer = [(header::AUTHORIZATION, format!("Bearer {token}"))];
        let query = call(&guard, Method::GET, "query", &bearer, "").await;
        assert_eq!(query.status(), StatusCode::OK);
        let body = query.into_body().collect().await.unwrap().to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["userId"], "alice");
        let logout = call(&guard, Method::POST, "logout", &bearer, "").await;
        assert_eq!((logout.status(), cookie(&logout)), (StatusCode::NO_CONTENT, "apimlAuthenticationToken=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"));
        assert_eq!(call(&guard, Method::GET, "query", &bearer, "").await.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn without_htpasswd_there_is_no_login() {
        let guard = Guard::new(AuthConfig::default(), OriginPolicy::Any);
        assert_eq!(call(&guard, Method::POST, "login", &[], "").await.status(), StatusCode::NOT_FOUND);
    }
}
