//! `server.auth.*`: the htpasswd file, the admin users and networks, the credential cache and the
//! browser login's signing key and token lifetime, validated.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tracing::warn;

use wsgate_registry::AllowList;

use super::raw::{RawAuth, RawJwt};
use super::{invalid, relative_file, units, ConfigError};
use crate::auth::Htpasswd;

/// The default `server.auth.cacheTtl`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// The default `server.auth.jwt.expiration`.
pub const DEFAULT_JWT_EXPIRATION: Duration = Duration::from_secs(8 * 3600);

/// The key file made in `server.stateDir` when `server.auth.jwt.keyFile` is not set.
pub const GENERATED_KEY_FILE: &str = "wsgate-jwt.key";

/// The shortest signing key accepted, in bytes: HS256's output size.
const MIN_KEY_LEN: usize = 32;

/// `server.auth.jwt.*`, validated: present exactly when `server.auth.htpasswd` is set.
#[derive(Clone)]
pub struct JwtConfig {
    /// The signing key, the bytes of the key file.
    pub key: Vec<u8>,
    /// `expiration`: how long a token lives.
    pub expiration: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig").field("expiration", &self.expiration).finish_non_exhaustive()
    }
}

/// `server.auth.*`, validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `htpasswd`, loaded: when set, routes need a valid Basic credential.
    pub htpasswd: Option<Htpasswd>,
    /// `adminUsers`: the users of the htpasswd file who may read the protected diagnostics;
    /// `None` when not set.
    pub admin_users: Option<Vec<String>>,
    /// `adminAllow`: the networks the protected diagnostics answer. Defaults to loopback without
    /// `adminUsers`, to anywhere with them.
    pub admin_allow: AllowList,
    /// `cacheTtl`: how long a verified credential is remembered (zero: never).
    pub cache_ttl: Duration,
    /// `jwt.*`: the browser login, `None` without `htpasswd`.
    pub jwt: Option<JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { htpasswd: None, admin_users: None, admin_allow: AllowList::loopback(), cache_ttl: DEFAULT_CACHE_TTL, jwt: None }
    }
}

/// Validates `server.auth.*` and reads the htpasswd file; `base` is the config file's folder,
/// which a relative file name is resolved against; `state_dir` is `server.stateDir`, where the JWT
/// signing key is generated when none is configured.
pub(super) fn auth(raw: RawAuth, base: &Path, state_dir: &Path) -> Result<AuthConfig, ConfigError> {
    const HTPASSWD: &str = "server.auth.htpasswd";
    const ADMIN_USERS: &str = "server.auth.adminUsers";
    let htpasswd = match relative_file(raw.htpasswd.as_deref(), base) {
        None => None,
        Some(path) => Some(Htpasswd::load(&path).map_err(|error| invalid(HTPASSWD, error.to_string()))?),
    };
    let admin_users = htpasswd_users(ADMIN_USERS, raw.admin_users, htpasswd.as_ref())?;
    let admin_allow = match raw.admin_allow {
        Some(entries) => AllowList::parse(&entries).map_err(|error| invalid("server.auth.adminAllow", error.to_string()))?,
        None if admin_users.is_some() => AllowList::parse(&["0.0.0.0/0", "::/0"]).map_err(|error| invalid("server.auth.adminAllow", error.to_string()))?,
        None => AllowList::loopback(),
    };
    let cache_ttl = match raw.cache_ttl.as_deref() {
        None => DEFAULT_CACHE_TTL,
        Some(text) => units::parse_duration(text).ok_or_else(|| invalid("server.auth.cacheTtl", format!("`{text}` is not a duration such as 0s, 30s or 5m")))?,
    };
    let jwt = match &htpasswd {
        None => None,
        Some(_) => Some(jwt(raw.jwt, base, state_dir)?),
    };
    Ok(AuthConfig { htpasswd, admin_users, admin_allow, cache_ttl, jwt })
}

/// The users a list `key` names, each of which must be in `htpasswd` (`server.auth.htpasswd`); `None`
/// when the list is not set.
pub(super) fn htpasswd_users(key: &str, users: Option<Vec<String>>, htpasswd: Option<&Htpasswd>) -> Result<Option<Vec<String>>, ConfigError> {
    match (users, htpasswd) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(invalid(key, "needs server.auth.htpasswd, the file their passwords are in, which is not set".into())),
        (Some(users), Some(_)) if users.is_empty() => Err(invalid(key, "lists no user".into())),
        (Some(users), Some(file)) => match users.iter().find(|user| !file.contains(user)) {
            Some(unknown) => Err(invalid(key, format!("user `{unknown}` is not in the server.auth.htpasswd file"))),
            None => Ok(Some(users)),
        },
    }
}

/// Validates `server.auth.jwt.*` and reads the signing key: `keyFile`, else the generated
/// `<state dir>/wsgate-jwt.key`, made on the first start so that tokens survive restarts.
fn jwt(raw: RawJwt, base: &Path, state_dir: &Path) -> Result<JwtConfig, ConfigError> {
    const KEY_FILE: &str = "server.auth.jwt.keyFile";
    let expiration = match raw.expiration.as_deref() {
        None => DEFAULT_JWT_EXPIRATION,
        Some(text) => match units::parse_duration(text) {
            Some(duration) if duration.as_secs() > 0 => duration,
            _ => return Err(invalid("server.auth.jwt.expiration", format!("`{text}` is not a duration of at least 1s such as 30m or 8h"))),
        },
    };
    let key = match raw.key_file.as_deref().map(str::trim) {
        None | Some("") => generated_key(state_dir, GENERATED_KEY_FILE),
        Some(name) => {
            let path = base.join(name);
            if std::fs::metadata(&path).is_ok_and(|metadata| metadata.permissions().mode() & 0o077 != 0) {
                warn!(file = %path.display(), "server.auth.jwt.keyFile can be read by other users, who could make login tokens: chmod 600 it");
            }
            std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))
        }
    }
    .map_err(|detail| invalid(KEY_FILE, detail))?;
    if key.len() < MIN_KEY_LEN {
        return Err(invalid(KEY_FILE, format!("the key has {} bytes, at least {MIN_KEY_LEN} random bytes are needed", key.len())));
    }
    Ok(JwtConfig { key, expiration })
}

/// The key of `name` in `dir`, made there (mode 0600; the folder 0700 if it is new) when the file
/// does not exist yet.
fn generated_key(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = &dir.join(name);
    let describe = |error: std::io::Error| format!("not set, and the generated key file {}: {error}", path.display());
    match std::fs::read(path) {
        Ok(key) => return Ok(key),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(describe(error)),
        Err(_) => {}
    }
    let mut key = vec![0u8; 64];
    SystemRandom::new().fill(&mut key).map_err(|_| format!("not set, and the system gave no randomness for {}", path.display()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|error| format!("not set, and the state directory {} (server.stateDir): {error}", dir.display()))?;
    // create_new: of two gateways starting at once, the second reads the first one's key.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => file.write_all(&key).map(|()| key).map_err(describe),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(describe),
        Err(error) => Err(describe(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::{Config, ConfigError};

    /// A folder of its own under the system's temporary folder, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let path = std::env::temp_dir().join(format!("wsgate-auth-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Folder(path)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn parse(folder: &Folder, text: &str) -> Result<Config, ConfigError> {
        let users = format!("root:{}\nalice:{}\n", bcrypt::hash("toor", 4).unwrap(), bcrypt::hash("hunter2", 4).unwrap());
        std::fs::write(folder.0.join("users"), users).unwrap();
        plain(folder, text, [])
    }

    /// [`Config::parse`] with TLS, on by default, turned off from the environment.
    fn plain(folder: &Folder, text: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let vars = [("SERVER_SSL_ENABLED".to_owned(), "false".to_owned())].into_iter().chain(vars);
        Config::parse(text, &folder.0.join("wsgate.yml"), vars)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_check_nothing_and_keep_diagnostics_on_loopback() {
        let folder = Folder::new("defaults");
        let auth = parse(&folder, "").unwrap().auth;
        assert!(auth.htpasswd.is_none() && auth.admin_users.is_none());
        assert!(auth.admin_allow.allows(ip("127.0.0.1")) && auth.admin_allow.allows(ip("::1")));
        assert!(!auth.admin_allow.allows(ip("192.0.2.1")));
        assert_eq!(auth.cache_ttl, Duration::from_secs(60));
    }

    #[test]
    fn htpasswd_is_relative_to_the_config_file_and_admins_come_from_it() {
        let folder = Folder::new("admins");
        let auth = parse(&folder, "server: {auth: {htpasswd: users, adminUsers: root, cacheTtl: 0s}}").unwrap().auth;
        let users = auth.htpasswd.unwrap();
        assert!(users.verify("alice", "hunter2"));
        assert_eq!(auth.admin_users, Some(vec!["root".to_owned()]));
        assert!(auth.admin_allow.allows(ip("192.0.2.1")), "with admin users, any address by default");
        assert_eq!(auth.cache_ttl, Duration::ZERO);
        let narrowed = parse(&folder, "server: {auth: {htpasswd: users, adminUsers: [root, alice], adminAllow: 10.0.0.0/8}}").unwrap().auth;
        assert!(!narrowed.admin_allow.allows(ip("127.0.0.1")) && narrowed.admin_allow.allows(ip("10.1.2.3")));
        let vars = [("SERVER_AUTH_ADMINALLOW".to_owned(), "127.0.0.1/32".to_owned())];
        let from_env = plain(&folder, "", vars).unwrap().auth;
        assert!(from_env.admin_allow.allows(ip("127.0.0.1")) && !from_env.admin_allow.allows(ip("127.0.0.2")));
    }

    #[test]
    fn the_jwt_key_is_generated_next_to_the_config_once_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let folder = Folder::new("jwt-generated");
        assert!(parse(&folder, "").unwrap().auth.jwt.is_none(), "no login without htpasswd");
        assert!(!folder.0.join(super::GENERATED_KEY_FILE).exists());
        let first = parse(&folder, "server: {auth: {htpasswd: users}}").unwrap().auth.jwt.unwrap();
        assert_eq!(first.expiration, super::DEFAULT_JWT_EXPIRATION);
        let file = folder.0.join(super::GENERATED_KEY_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), first.key);
        assert!(first.key.len() >= 32);
        let second = parse(&folder, "server: {auth: {htpasswd: users, jwt: {expiration: 30m}}}").unwrap().auth.jwt.unwrap();
        assert_eq!((&second.key, second.expiration), (&first.key, Duration::from_secs(1800)));
        assert!(!format!("{first:?}").contains("key"), "the key is never shown");
    }

    #[test]
    fn the_jwt_key_is_generated_in_the_state_dir_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let folder = Folder::new("jwt-state-dir");
        let config = parse(&folder, "server: {stateDir: state/gw, auth: {htpasswd: users}}").unwrap();
        let state = folder.0.join("state/gw");
        assert_eq!(config.state_dir, state);
        assert_eq!(std::fs::read(state.join(super::GENERATED_KEY_FILE)).unwrap(), config.auth.jwt.unwrap().key);
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!folder.0.join(super::GENERATED_KEY_FILE).exists(), "not next to the config any more");
        let vars = [("SERVER_STATEDIR".to_owned(), folder.0.join("elsewhere").display().to_string())];
        let from_env = plain(&folder, "server: {auth: {htpasswd: users}}", vars).unwrap();
        assert!(from_env.state_dir.join(super::GENERATED_KEY_FILE).exists());
        assert_eq!(from_env.state_dir, folder.0.join("elsewhere"));
    }

    #[test]
    fn a_jwt_key_file_is_read_relative_to_the_config() {
        let folder = Folder::new("jwt-file");
        std::fs::write(folder.0.join("jwt.key"), [42u8; 32]).unwrap();
        let jwt = parse(&folder, "server: {auth: {htpasswd: users, jwt: {keyFile: jwt.key}}}").unwrap().auth.jwt.unwrap();
        assert_eq!(jwt.key, vec![42u8; 32]);
        assert!(!folder.0.join(super::GENERATED_KEY_FILE).exists());
    }

    #[test]
    fn bad_values_name_the_key() {
        let folder = Folder::new("errors");
        std::fs::write(folder.0.join("short"), "too short").unwrap();
        for (text, key, detail) in [
            ("server: {auth: {adminUsers: root}}", "server.auth.adminUsers", "needs server.auth.htpasswd"),
            ("server: {auth: {htpasswd: users, adminUsers: bob}}", "server.auth.adminUsers", "`bob`"),
            ("server: {auth: {htpasswd: users, adminUsers: []}}", "server.auth.adminUsers", "no user"),
            ("server: {auth: {htpasswd: missing}}", "server.auth.htpasswd", "missing"),
            ("server: {auth: {adminAllow: [localhost]}}", "server.auth.adminAllow", "localhost"),
            ("server: {auth: {cacheTtl: soon}}", "server.auth.cacheTtl", "soon"),
            ("server: {auth: {htpasswd: users, jwt: {expiration: soon}}}", "server.auth.jwt.expiration", "soon"),
            ("server: {auth: {htpasswd: users, jwt: {expiration: 0s}}}", "server.auth.jwt.expiration", "0s"),
            ("server: {auth: {htpasswd: users, jwt: {keyFile: nokey}}}", "server.auth.jwt.keyFile", "nokey"),
            ("server: {auth: {htpasswd: users, jwt: {keyFile: short}}}", "server.auth.jwt.keyFile", "at least 32"),
            ("server: {auth: {htpasswd: users, jwt: {algorithm: HS256}}}", "", "algorithm"),
        ] {
            let error = parse(&folder, text).unwrap_err().to_string();
            assert!(error.starts_with(key) && error.contains(detail), "{text}: {error}");
        }
        std::fs::write(folder.0.join("md5"), "alice:$apr1$Qn7bmQ7w$Vx9kk9hiqPaH7lwfBs/9f.\n").unwrap();
        let error = plain(&folder, "server: {auth: {htpasswd: md5}}", []).unwrap_err().to_string();
        let file = folder.0.join("md5");
        assert!(error.starts_with(&format!("server.auth.htpasswd: {} line 1: ", file.display())), "{error}");
    }
}
