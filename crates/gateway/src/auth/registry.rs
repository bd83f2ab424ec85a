//! The embedded registry's credential check (`discovery.embedded.users`): the named users of the
//! htpasswd file, verified by the gateway's own [`Authenticator`] (its cache and bcrypt pool).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::warn;
use wsgate_registry::credentials::CheckCredentials;

use super::Authenticator;

/// Lets into the registry the users it names, with their htpasswd password.
#[derive(Debug)]
pub struct RegistryUsers {
    users: Vec<String>,
    authenticator: Arc<Authenticator>,
}

impl RegistryUsers {
    /// A check letting in `users`, verified by `authenticator`.
    pub fn new(users: Vec<String>, authenticator: Arc<Authenticator>) -> RegistryUsers {
        RegistryUsers { users, authenticator }
    }
}

impl CheckCredentials for RegistryUsers {
    fn check<'a>(&'a self, user: &'a str, password: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            // The password is verified even for a user not named, so the answer's timing does not
            // tell which users the registry lets in.
            let verified = self.authenticator.verify(user, password).await;
            let named = self.users.iter().any(|named| named == user);
            if verified && !named {
                warn!(user, "registry request refused: the user is not in discovery.embedded.users");
            }
            verified && named
        })
    }
}
