//! The browser login's tokens (MISSION §4): HS256 JWTs the gateway signs with
//! `server.auth.jwt.keyFile` and accepts back as the `apimlAuthenticationToken` cookie or as
//! `Authorization: Bearer`. Only HS256 with the gateway's key, issuer `wsgate`, and an `exp` not
//! passed verify; a logged-out token's `jti` is refused until the token expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

/// The cookie that carries the token, Zowe's name.
pub const COOKIE: &str = "apimlAuthenticationToken";

/// The `iss` of the gateway's tokens.
pub const ISSUER: &str = "wsgate";

/// The only algorithm signed and accepted.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// At most this many revoked tokens are remembered: each needs a login, so the bound is only
/// reached by a flood; past it the revocation that expires soonest is forgotten first.
const MAX_REVOKED: usize = 100_000;

/// The claims of a gateway token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// The token's id, what a logout revokes.
    pub jti: String,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Why a token was not issued or not accepted. The messages never contain the token.
#[derive(Debug, Error)]
pub enum TokenError {
    /// Bad signature, other algorithm, expired, wrong issuer, malformed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The token was logged out.
    #[error("token of user {user:?} was logged out")]
    Revoked {
        /// The token's user.
        user: String,
    },
    /// The system gave no randomness for the token id.
    #[error("no randomness for the token id")]
    Random,
}

/// Signs and verifies the gateway's tokens and remembers the revoked ones.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
    random: SystemRandom,
    /// Revoked `jti` → the token's `exp`, pruned when passed.
    revoked: Mutex<HashMap<String, u64>>,
    /// At most this many revocations are kept ([`MAX_REVOKED`]).
    max_revoked: usize,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl Tokens {
    /// Tokens signed with `key` that live for `lifetime`.
    pub fn new(key: &[u8], lifetime: Duration) -> Tokens {
        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "jti"]);
        Tokens {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            lifetime,
            random: SystemRandom::new(),
            revoked: Mutex::new(HashMap::new()),
            max_revoked: MAX_REVOKED,
        }
    }

    /// How long a token lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A fresh token for `user`, with its claims.
    ///
    /// # Errors
    ///
    /// [`TokenError::Random`] without randomness for the id, [`TokenError::Invalid`] if signing fails.
    pub fn issue(&self, user: &str) -> Result<(String, Claims), TokenError> {
        let mut id = [0u8; 16];
        self.random.fill(&mut id).map_err(|_| TokenError::Random)?;
        let iat = now();
        let jti = id.iter().map(|byte| format!("{byte:02x}")).collect();
        let claims = Claims { sub: user.to_owned(), iat, exp: iat + self.lifetime.as_secs(), jti, iss: ISSUER.to_owned() };
        let token = jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// The claims of `token` when it verifies and was not logged out.
    ///
    /// # Errors
    ///
    /// [`TokenError::Invalid`] or [`TokenError::Revoked`].
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims;
        if self.lock().contains_key(&claims.jti) {
            return Err(TokenError::Revoked { user: claims.sub });
        }
        Ok(claims)
    }

    /// Refuses the token of `claims` from now until it expires.
    pub fn revoke(&self, claims: &Claims) {
        let now = now();
        let mut revoked = self.lock();
        revoked.retain(|_, exp| *exp >= now);
        if revoked.len() >= self.max_revoked {
            if let Some(soonest) = revoked.iter().min_by_key(|(_, exp)| **exp).map(|(jti, _)| jti.clone()) {
                warn!(limit = self.max_revoked, "too many logged-out tokens: the one expiring soonest is forgotten");
                revoked.remove(&soonest);
            }
        }
        revoked.insert(claims.jti.clone(), claims.exp);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Every update completes before the guard is dropped, so poisoning is ignored.
        self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The token a request carries: `Authorization: Bearer`, else the [`COOKIE`] cookie. `None` when
/// there is neither (a Basic credential is no token).
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        if let Some((scheme, token)) = value.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim());
            }
        }
    }
    cookies(headers).filter_map(|pair| pair.split_once('=')).find(|(name, _)| *name == COOKIE).map(|(_, token)| token.trim())
}

/// The cookies of `headers`' `Cookie` headers, each `name=value` as sent, trimmed, none empty.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use http::HeaderValue;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify_until_revoked() {
        let tokens = Tokens::new(KEY, Duration::from_secs(3600));
        let (token, claims) = tokens.issue("alice").unwrap();
        assert_eq!((claims.sub.as_str(), claims.iss.as_str(), claims.exp - claims.iat), ("alice", ISSUER, 3600));
        assert_eq!(tokens.verify(&token).unwrap(), claims);
        tokens.revoke(&claims);
        assert!(matches!(tokens.verify(&token), Err(TokenError::Revoked { .. })));
        let (other, _) = tokens.issue("alice").unwrap();
        assert!(tokens.verify(&other).is_ok(), "a new login gets a new id");
    }

    #[test]
    fn revocations_are_pruned_on_expiry_and_bounded() {
        let tokens = Tokens { max_revoked: 2, ..Tokens::new(KEY, Duration::from_secs(3600)) };
        let claims = |jti: &str, exp: u64| Claims { sub: "alice".into(), iat: 0, exp, jti: jti.into(), iss: ISSUER.into() };
        let soon = now() + 100;
        tokens.revoke(&claims("passed", 1));
        tokens.revoke(&claims("soonest", soon));
        assert!(!tokens.lock().contains_key("passed"), "expired revocations are pruned");
        tokens.revoke(&claims("later", soon + 10));
        tokens.revoke(&claims("latest", soon + 20));
        let mut kept: Vec<String> = tokens.lock().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["later", "latest"], "at the bound, the revocation expiring soonest goes");
    }

    #[test]
    fn other_keys_algorithms_and_expired_tokens_are_refused() {
        let tokens = Tokens::new(KEY, Duration::from_secs(3600));
        let (token, claims) = tokens.issue("alice").unwrap();
        let other = Tokens::new(b"another key of at least 32 bytes.", Duration::from_secs(3600));
        assert!(other.verify(&token).is_err());
        let hs512 = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(KEY)).unwrap();
        assert!(tokens.verify(&hs512).is_err());
        let (_, payload_and_signature) = token.split_once('.').unwrap();
        let (payload, _) = payload_and_signature.split_once('.').unwrap();
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(tokens.verify(&none).is_err());
        let expired = Claims { iat: 1, exp: 2, ..claims };
        let expired = jsonwebtoken::encode(&Header::new(ALGORITHM), &expired, &EncodingKey::from_secret(KEY)).unwrap();
        assert!(tokens.verify(&expired).is_err());
    }

    #[test]
    fn the_token_comes_from_bearer_or_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_of(&headers), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; apimlAuthenticationToken=t.o.k ; c=d"));
        assert_eq!(token_of(&headers), Some("t.o.k"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(token_of(&headers), Some("t.o.k"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer x.y.z"));
        assert_eq!(token_of(&headers), Some("x.y.z"));
    }
}
