//! Who may go through the gateway, checked before anything reaches a service or a diagnostics
//! endpoint (MISSION §4).
//!
//! - [`Authenticator`]: the gateway-side Basic check against an htpasswd file of bcrypt hashes
//!   (`server.auth.htpasswd`), reusable by any login that takes a user name and a password. bcrypt
//!   runs on the blocking pool, at most one verification per core at a time, and recent successes
//!   are remembered for `server.auth.cacheTtl`.
//! - [`OriginPolicy`]: the Origin allow-list of WebSocket handshakes.
//! - [`AdminAccess`]: who may read the diagnostics other than health.
//! - [`Tokens`]: the browser login's JWTs (`server.auth.jwt.*`), accepted wherever a Basic
//!   credential is; [`login`] serves the login, query and logout endpoints.
//!
//! [`Guard`] holds them and answers the pipelines' one question each: may this request go on? A
//! refusal is an [`AuthError`], which [`crate::failure`] turns into what the client sees.
//! Credentials and tokens are never logged; checked ones still reach the service untouched, but
//! for a [`ZOWE_JWT`] service, which gets the gateway's token instead.

mod admin;
mod cache;
mod htpasswd;
mod jwt;
pub mod login;
mod origin;
mod registry;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::AuthConfig;
use crate::discovery::Service;
use cache::VerifiedCache;

pub use admin::AdminAccess;
pub use wsgate_registry::credentials::Credentials;
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use jwt::{cookies, token_of, Claims, TokenError, Tokens, COOKIE, ISSUER};
pub use origin::{OriginError, OriginPolicy, OriginVerdict};
pub use registry::RegistryUsers;

/// The service metadata key that says how clients of the service authenticate (Zowe's name).
pub const SCHEME_METADATA: &str = "apiml.authentication.scheme";

/// The [`SCHEME_METADATA`] value by which a service opts out of the gateway's check: its clients'
/// credentials reach it unchecked.
pub const BYPASS: &str = "bypass";

/// The [`SCHEME_METADATA`] value by which a service gets the gateway's JWT as the [`COOKIE`]
/// cookie instead of its clients' credentials, as Zowe's services do.
pub const ZOWE_JWT: &str = "zoweJwt";

/// Why a request was refused before it reached a service or a diagnostics endpoint. The messages
/// are for the log: they name the user, never the password.
#[derive(Debug, Error)]
pub enum AuthError {
    /// No Basic credential or token where one is required.
    #[error("no Basic credentials or token")]
    MissingCredentials,
    /// A token that does not verify, expired or was logged out.
    #[error(transparent)]
    InvalidToken(#[from] TokenError),
    /// The gateway could not make a token (no randomness): its own failure, not the client's.
    #[error("no token could be issued: {0}")]
    TokenNotIssued(TokenError),
    /// An unknown user or a wrong password.
    #[error("invalid credentials for user {username:?}")]
    InvalidCredentials {
        /// The user name sent.
        username: String,
    },
    /// A browser page from an origin outside `server.webSocket.allowedOrigins`.
    #[error("origin {origin:?} is not in server.webSocket.allowedOrigins")]
    OriginNotAllowed {
        /// The `Origin` header as sent.
        origin: String,
    },
    /// A valid user who is not in `server.auth.adminUsers`.
    #[error("user {username:?} is not in server.auth.adminUsers")]
    NotAdmin {
        /// The user name.
        username: String,
    },
    /// A client outside `server.auth.adminAllow`.
    #[error("client address {address} is outside server.auth.adminAllow")]
    AddressNotAllowed {
        /// The client's address.
        address: IpAddr,
    },
}

/// Checks Basic credentials against an htpasswd file.
#[derive(Debug)]
pub struct Authenticator {
    users: Arc<Htpasswd>,
    /// `None` when `cacheTtl` is zero or the system gave no randomness for the cache's key.
    cache: Option<VerifiedCache>,
    /// One bcrypt verification per core at a time: a flood of wrong passwords queues here
    /// instead of taking every thread of the blocking pool.
    permits: Arc<Semaphore>,
    /// Verifications waiting for a permit. Past [`MAX_WAITING`] per core, a new credential is refused
    /// at once: a flood of made-up passwords must not queue for seconds, holding session slots, while
    /// the verifications of real users wait behind it.
    waiting: AtomicUsize,
    /// [`MAX_WAITING`] times the cores.
    max_waiting: usize,
}

/// How many verifications may wait per core (each takes tens of milliseconds at cost 10).
const MAX_WAITING: usize = 32;

/// One verification counted as waiting for a permit, until dropped (also when the request that
/// waits goes away).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts one more waiting verification, unless `max` already wait.
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Waiting<'a>> {
        count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |waiting| (waiting < max).then_some(waiting + 1)).ok().map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Authenticator {
    /// An authenticator for `users` that remembers verified credentials for `cache_ttl` (zero:
    /// never).
    pub fn new(users: Htpasswd, cache_ttl: Duration) -> Authenticator {
        let cache = if cache_ttl.is_zero() { None } else { VerifiedCache::new(cache_ttl) };
        if cache.is_none() && !cache_ttl.is_zero() {
            warn!("no randomness for the credential cache's key: every credential is verified with bcrypt");
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Authenticator { users: Arc::new(users), cache, permits: Arc::new(Semaphore::new(cores)), waiting: AtomicUsize::new(0), max_waiting: MAX_WAITING * cores }
    }

    /// Whether `password` is `username`'s in the htpasswd file: from the cache when it was
    /// verified less than `cacheTtl` ago, else with bcrypt on the blocking pool.
    pub async fn verify(&self, username: &str, password: &str) -> bool {
        let tag = self.cache.as_ref().map(|cache| cache.tag(username, password));
        if let (Some(cache), Some(tag)) = (&self.cache, &tag) {
            if cache.contains(tag, Instant::now()) {
                debug!(user = ?username, cached = true, "credentials verified");
                return true;
            }
        }
        // The semaphore is never closed, so acquiring fails only in theory; no permit, no check.
        let Some(waiting) = Waiting::enter(&self.waiting, self.max_waiting) else {
            warn!(user = ?username, "credential refused unchecked: too many verifications are waiting");
            return false;
        };
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        drop(waiting);
        let Ok(permit) = permit else {
            return false;
        };
        let users = Arc::clone(&self.users);
        let (user, secret) = (username.to_owned(), password.to_owned());
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            users.verify(&user, &secret)
        })
        .await
        .unwrap_or(false);
        if verified {
            if let (Some(cache), Some(tag)) = (&self.cache, tag) {
                cache.insert(tag, Instant::now());
            }
            debug!(user = ?username, cached = false, "credentials verified");
        }
        verified
    }

    /// The Basic credential of `headers`, verified.
    ///
    /// # Errors
    ///
    /// [`AuthError::MissingCredentials`] without a Basic credential,
    /// [`AuthError::InvalidCredentials`] when it does not verify.
    pub async fn check(&self, headers: &HeaderMap) -> Result<Credentials, AuthError> {
        let credentials = Credentials::from_headers(headers).ok_or(AuthError::MissingCredentials)?;
        if self.verify(&credentials.username, &credentials.password).await {
            Ok(credentials)
        } else {
            Err(AuthError::InvalidCredentials { username: credentials.username })
        }
    }
}

/// The checks a request passes before it goes on: its origin, its credential, its right to the
/// diagnostics.
#[derive(Debug)]
pub struct Guard {
    /// `None` without `server.auth.htpasswd`: credentials pass through unchecked. Shared with the
    /// embedded registry's credential check.
    authenticator: Option<Arc<Authenticator>>,
    /// The browser login's tokens; set exactly when `authenticator` is.
    tokens: Option<Arc<Tokens>>,
    origins: OriginPolicy,
    admin: AdminAccess,
}

impl Guard {
    /// The guard of `config` (`server.auth.*`) and `origins` (`server.webSocket.allowedOrigins`).
    pub fn new(config: AuthConfig, origins: OriginPolicy) -> Guard {
        let authenticator = config.htpasswd.map(|users| Arc::new(Authenticator::new(users, config.cache_ttl)));
        let tokens = config.jwt.map(|jwt| Arc::new(Tokens::new(&jwt.key, jwt.expiration)));
        Guard { authenticator, tokens, origins, admin: AdminAccess::new(config.admin_users, config.admin_allow) }
    }

    /// The authenticator, when `server.auth.htpasswd` is set.
    pub fn authenticator(&self) -> Option<&Arc<Authenticator>> {
        self.authenticator.as_ref()
    }

    /// The browser login's tokens, when `server.auth.htpasswd` is set.
    pub fn tokens(&self) -> Option<&Arc<Tokens>> {
        self.tokens.as_ref()
    }

    /// The user of a request: its token (`Authorization: Bearer` or the [`COOKIE`] cookie) when
    /// it carries one, else its Basic credential.
    ///
    /// # Errors
    ///
    /// [`AuthError::MissingCredentials`] without either (or without an htpasswd file),
    /// [`AuthError::InvalidToken`] or [`AuthError::InvalidCredentials`] when it does not verify.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        self.identify_with_token(headers).await.map(|(user, _)| user)
    }

    /// [`Guard::identify`], with the token that proved it, if one did.
    async fn identify_with_token<'h>(&self, headers: &'h HeaderMap) -> Result<(String, Option<&'h str>), AuthError> {
        let authenticator = self.authenticator.as_ref().ok_or(AuthError::MissingCredentials)?;
        match (&self.tokens, token_of(headers)) {
            (Some(tokens), Some(token)) => Ok((tokens.verify(token)?.sub, Some(token))),
            _ => authenticator.check(headers).await.map(|credentials| (credentials.username, None)),
        }
    }

    /// Checks the `Origin` of a WebSocket handshake.
    ///
    /// # Errors
    ///
    /// [`AuthError::OriginNotAllowed`] for a present `Origin` outside the allow-list.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        match self.origins.check(headers) {
            OriginVerdict::Allowed => Ok(()),
            OriginVerdict::Refused(origin) => Err(AuthError::OriginNotAllowed { origin }),
        }
    }

    /// Checks the credential of a request for `service`: always passes without an htpasswd file
    /// or when the service's metadata says `apiml.authentication.scheme: bypass`. For a
    /// [`ZOWE_JWT`] service, answers the token the service gets instead of the client's
    /// credentials: the client's own token, or a fresh one for a Basic credential.
    ///
    /// # Errors
    ///
    /// [`AuthError::MissingCredentials`], [`AuthError::InvalidCredentials`] or
    /// [`AuthError::InvalidToken`]; [`AuthError::TokenNotIssued`] when a `zoweJwt` service's token
    /// cannot be made.
    pub async fn admit(&self, headers: &HeaderMap, service: &Service) -> Result<Option<String>, AuthError> {
        if self.authenticator.is_none() {
            return Ok(None);
        }
        let scheme = service.metadata.get(SCHEME_METADATA).map(|scheme| scheme.trim());
        if scheme.is_some_and(|scheme| scheme.eq_ignore_ascii_case(BYPASS)) {
            return Ok(None);
        }
        let zowe_jwt = scheme.is_some_and(|scheme| scheme.eq_ignore_ascii_case(ZOWE_JWT));
        let (user, token) = self.identify_with_token(headers).await?;
        match (&self.tokens, token) {
            _ if !zowe_jwt => Ok(None),
            (_, Some(token)) => Ok(Some(token.to_owned())),
            (Some(tokens), None) => tokens.issue(&user).map(|(token, _)| Some(token)).map_err(AuthError::TokenNotIssued),
            // Never: the configuration makes the tokens with the authenticator.
            (None, None) => Ok(None),
        }
    }

    /// Checks a request for a protected diagnostics endpoint from `client`.
    ///
    /// # Errors
    ///
    /// See [`AdminAccess::admit`].
    pub async fn admit_admin(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), AuthError> {
        self.admin.admit(client, self.identify(headers)).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine as _;
    use http::header::{self, HeaderValue};

    use super::*;
    use crate::discovery::ServiceId;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap())).collect()
    }

    fn basic(user: &str, password: &str) -> (header::HeaderName, String) {
        (header::AUTHORIZATION, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    }

    fn service(scheme: Option<&str>) -> Service {
        let metadata = scheme.map(|scheme| (SCHEME_METADATA.to_owned(), scheme.to_owned())).into_iter().collect();
        Service { id: ServiceId::new("svc"), instances: Vec::new(), metadata }
    }

    fn guard(htpasswd: bool) -> Guard {
        let users = format!("alice:{}\n", bcrypt::hash("hunter2", 4).unwrap());
        let jwt = crate::config::JwtConfig { key: vec![7; 32], expiration: Duration::from_secs(60) };
        let config = AuthConfig { htpasswd: htpasswd.then(|| Htpasswd::parse(&users, Path::new("users")).unwrap()), jwt: htpasswd.then_some(jwt), ..AuthConfig::default() };
        Guard::new(config, OriginPolicy::parse(&["https://app.example"]).unwrap())
    }

    #[test]
    fn waiting_verifications_are_bounded_and_counted_back_when_dropped() {
        let count = AtomicUsize::new(0);
        let first = Waiting::enter(&count, 2).unwrap();
        let second = Waiting::enter(&count, 2).unwrap();
        assert!(Waiting::enter(&count, 2).is_none(), "a third waits past the bound");
        drop(first);
        let third = Waiting::enter(&count, 2);
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn with_htpasswd_every_service_but_bypass_ones_needs_a_valid_credential() {
        let guard = guard(true);
        let (name, good) = basic("alice", "hunter2");
        let (_, wrong) = basic("alice", "hunter3");
        assert!(guard.admit(&headers(&[(name.clone(), good.as_str())]), &service(None)).await.is_ok());
        assert!(guard.admit(&headers(&[(name.clone(), good.as_str())]), &service(Some("zoweJwt"))).await.is_ok());
        assert!(matches!(guard.admit(&HeaderMap::new(), &service(None)).await, Err(AuthError::MissingCredentials)));
        assert!(matches!(guard.admit(&headers(&[(name.clone(), wrong.as_str())]), &service(None)).await, Err(AuthError::InvalidCredentials { .. })));
        assert!(guard.admit(&HeaderMap::new(), &service(Some("bypass"))).await.is_ok());
        assert!(guard.admit(&headers(&[(name, wrong.as_str())]), &service(Some(" Bypass "))).await.is_ok());
        assert!(guard.authenticator().is_some());
    }

    #[tokio::test]
    async fn a_zowe_jwt_service_gets_the_client_token_or_a_fresh_one_and_others_none() {
        let guard = guard(true);
        let tokens = guard.tokens().unwrap();
        let (name, good) = basic("alice", "hunter2");
        let basic_headers = headers(&[(name, good.as_str())]);
        let fresh = guard.admit(&basic_headers, &service(Some("zoweJwt"))).await.unwrap().unwrap();
        assert_eq!(tokens.verify(&fresh).unwrap().sub, "alice");
        assert_eq!(guard.admit(&basic_headers, &service(None)).await.unwrap(), None);
        let (token, _) = tokens.issue("alice").unwrap();
        let cookie = headers(&[(header::COOKIE, format!("{COOKIE}={token}").as_str())]);
        assert_eq!(guard.admit(&cookie, &service(Some("zoweJwt"))).await.unwrap(), Some(token.clone()));
        assert_eq!(guard.admit(&cookie, &service(None)).await.unwrap(), None);
        assert_eq!(guard.identify(&cookie).await.unwrap(), "alice");
        let forged = headers(&[(header::AUTHORIZATION, "Bearer a.b.c")]);
        assert!(matches!(guard.admit(&forged, &service(Some("zoweJwt"))).await, Err(AuthError::InvalidToken(_))));
    }

    #[tokio::test]
    async fn without_htpasswd_credentials_pass_through_unchecked() {
        let guard = guard(false);
        assert!(guard.admit(&HeaderMap::new(), &service(None)).await.is_ok());
        let (name, wrong) = basic("alice", "hunter3");
        assert!(guard.admit(&headers(&[(name, wrong.as_str())]), &service(None)).await.is_ok());
        assert!(guard.authenticator().is_none());
    }

    #[tokio::test]
    async fn verified_credentials_are_cached_and_wrong_ones_never() {
        let users = format!("alice:{}\n", bcrypt::hash("hunter2", 4).unwrap());
        let authenticator = Authenticator::new(Htpasswd::parse(&users, Path::new("users")).unwrap(), Duration::from_secs(60));
        let cache = authenticator.cache.as_ref().unwrap();
        assert!(!authenticator.verify("alice", "hunter3").await);
        assert!(!cache.contains(&cache.tag("alice", "hunter3"), Instant::now()));
        assert!(authenticator.verify("alice", "hunter2").await);
        assert!(cache.contains(&cache.tag("alice", "hunter2"), Instant::now()));
        let uncached = Authenticator::new(Htpasswd::parse(&users, Path::new("users")).unwrap(), Duration::ZERO);
        assert!(uncached.cache.is_none() && uncached.verify("alice", "hunter2").await);
    }

    #[test]
    fn origins_are_checked_only_when_sent() {
        let guard = guard(false);
        assert!(guard.check_origin(&HeaderMap::new()).is_ok());
        assert!(guard.check_origin(&headers(&[(header::ORIGIN, "https://app.example")])).is_ok());
        let refused = guard.check_origin(&headers(&[(header::ORIGIN, "https://evil.example")]));
        assert!(matches!(refused, Err(AuthError::OriginNotAllowed { ref origin }) if origin == "https://evil.example"), "{refused:?}");
    }
}
