//! Who may read the diagnostics other than health (`/application/websockets`, `/routes`...):
//! clients inside `server.auth.adminAllow`, and, when `server.auth.adminUsers` is set, only with
//! the Basic credential or the login token of one of those users.

use std::future::Future;
use std::net::IpAddr;

use wsgate_registry::AllowList;

use super::AuthError;

/// The rule for the protected diagnostics.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// `server.auth.adminUsers`; `None`: no credential is asked.
    users: Option<Vec<String>>,
    /// `server.auth.adminAllow`.
    allow: AllowList,
}

impl AdminAccess {
    /// Access for clients in `allow`, with the credential of one of `users` when they are set.
    pub fn new(users: Option<Vec<String>>, allow: AllowList) -> AdminAccess {
        AdminAccess { users, allow }
    }

    /// Checks a request from `client` whose verified user `user` tells. Its address is checked
    /// first, then its credential (`user` is awaited only when `adminUsers` is set), then whether
    /// the user is an admin, so that a wrong password says nothing about who is one.
    ///
    /// # Errors
    ///
    /// [`AuthError::AddressNotAllowed`] outside `adminAllow`; `user`'s error without a valid
    /// credential when `adminUsers` is set; [`AuthError::NotAdmin`] for a valid user who is not an
    /// admin.
    pub async fn admit(&self, client: IpAddr, user: impl Future<Output = Result<String, AuthError>>) -> Result<(), AuthError> {
        if !self.allow.allows(client) {
            return Err(AuthError::AddressNotAllowed { address: client });
        }
        let Some(admins) = &self.users else {
            return Ok(());
        };
        let username = user.await?;
        if admins.contains(&username) {
            Ok(())
        } else {
            Err(AuthError::NotAdmin { username })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use base64::Engine as _;
    use http::header::{self, HeaderValue};

    use http::HeaderMap;

    use super::*;
    use crate::auth::{Authenticator, Htpasswd};

    /// The user of `headers` as the guard tells it without tokens.
    async fn user(authenticator: Option<&Authenticator>, headers: HeaderMap) -> Result<String, AuthError> {
        Ok(authenticator.ok_or(AuthError::MissingCredentials)?.check(&headers).await?.username)
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).unwrap());
        headers
    }

    fn authenticator() -> Authenticator {
        let line = |user, password| format!("{user}:{}", bcrypt::hash(password, 4).unwrap());
        let text = format!("{}\n{}\n", line("root", "toor"), line("alice", "hunter2"));
        Authenticator::new(Htpasswd::parse(&text, Path::new("users")).unwrap(), Duration::from_secs(60))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn without_admin_users_the_address_decides() {
        let access = AdminAccess::new(None, AllowList::loopback());
        assert!(access.admit(ip("127.0.0.1"), user(None, HeaderMap::new())).await.is_ok());
        assert!(access.admit(ip("::1"), user(None, HeaderMap::new())).await.is_ok());
        let refused = access.admit(ip("192.0.2.1"), user(None, HeaderMap::new())).await;
        assert!(matches!(refused, Err(AuthError::AddressNotAllowed { .. })), "{refused:?}");
        let narrow = AdminAccess::new(None, AllowList::parse(&["127.0.0.1/32"]).unwrap());
        assert!(matches!(narrow.admit(ip("127.0.0.2"), user(None, HeaderMap::new())).await, Err(AuthError::AddressNotAllowed { .. })));
    }

    #[tokio::test]
    async fn admin_users_need_their_credential() {
        let authenticator = authenticator();
        let access = AdminAccess::new(Some(vec!["root".into()]), AllowList::parse(&["0.0.0.0/0", "::/0"]).unwrap());
        let remote = ip("192.0.2.1");
        assert!(access.admit(remote, user(Some(&authenticator), basic("root", "toor"))).await.is_ok());
        let outcome = access.admit(remote, user(Some(&authenticator), HeaderMap::new())).await;
        assert!(matches!(outcome, Err(AuthError::MissingCredentials)), "{outcome:?}");
        let outcome = access.admit(remote, user(Some(&authenticator), basic("root", "wrong"))).await;
        assert!(matches!(outcome, Err(AuthError::InvalidCredentials { .. })), "{outcome:?}");
        let outcome = access.admit(remote, user(Some(&authenticator), basic("alice", "wrong"))).await;
        assert!(matches!(outcome, Err(AuthError::InvalidCredentials { .. })), "a wrong password must not tell who is an admin: {outcome:?}");
        let outcome = access.admit(remote, user(Some(&authenticator), basic("alice", "hunter2"))).await;
        assert!(matches!(outcome, Err(AuthError::NotAdmin { .. })), "{outcome:?}");
        let outcome = access.admit(remote, user(None, basic("root", "toor"))).await;
        assert!(matches!(outcome, Err(AuthError::MissingCredentials)), "{outcome:?}");
    }
}
