//! An Apache htpasswd file of bcrypt entries (`user:$2y$10$…`), as `htpasswd -B` writes it.
//!
//! Only bcrypt is accepted: the other kinds htpasswd can write (MD5 `$apr1$`, `{SHA}`, crypt,
//! plain text) are too fast to guess against, so a file holding one is refused at start with its
//! line, rather than left to fail at the first login.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The bcrypt prefixes accepted: `2y` (Apache), `2b` (OpenBSD, Python), `2a` (older libraries).
/// `2x` marks hashes made by a known-broken implementation and is refused.
const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2b$", "$2a$"];

/// The characters of bcrypt's own base64 alphabet.
fn is_bcrypt_base64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '/'
}

/// Why an htpasswd file cannot be used.
#[derive(Debug, Error)]
pub enum HtpasswdError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a `user:bcrypt-hash` entry.
    #[error("{path} line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it (never the hash itself).
        problem: String,
    },
}

/// The users of an htpasswd file and their bcrypt hashes.
#[derive(Clone)]
pub struct Htpasswd {
    hashes: HashMap<String, String>,
    /// Verified for users not in the file, so that an unknown user costs as much time as a known
    /// one: a well-formed hash at the file's usual cost that no password matches in practice
    /// (an all-zero salt and digest).
    dummy: String,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hashes stay out of debug output: they can be attacked offline.
        f.debug_struct("Htpasswd").field("users", &self.hashes.len()).finish_non_exhaustive()
    }
}

impl Htpasswd {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// [`HtpasswdError::Read`] when the file cannot be read, [`HtpasswdError::Line`] for the first
    /// line that is not a bcrypt entry.
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read { path: path.to_owned(), source })?;
        Htpasswd::parse(&text, path)
    }

    /// Parses the text of an htpasswd file; `path` names it in errors. Empty lines and lines
    /// starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// [`HtpasswdError::Line`] for the first line that is not a bcrypt entry, or that repeats a user.
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let mut hashes = HashMap::new();
        let mut costs: HashMap<u32, usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |problem: String| HtpasswdError::Line { path: path.to_owned(), line: index + 1, problem };
            let (user, hash) = line.split_once(':').ok_or_else(|| error("not a `user:hash` entry".into()))?;
            if user.is_empty() {
                return Err(error("the user name is empty".into()));
            }
            let cost = bcrypt_cost(hash).map_err(|problem| error(format!("user `{user}`: {problem}")))?;
            if hashes.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(error(format!("user `{user}` is listed twice")));
            }
            *costs.entry(cost).or_default() += 1;
        }
        // The most common cost, the higher one on a tie.
        let usual_cost = costs.into_iter().max_by_key(|&(cost, count)| (count, cost)).map_or(10, |(cost, _)| cost);
        let dummy = format!("$2b${usual_cost:02}${}", ".".repeat(53));
        Ok(Htpasswd { hashes, dummy })
    }

    /// Whether `user` is in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    /// Whether `password` is `user`'s. Slow on purpose (bcrypt at the cost written in the hash:
    /// tens of milliseconds at cost 10), and as slow for a user who is not in the file; call it off
    /// the async workers. The digests are compared in constant time by `bcrypt`.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let known = self.hashes.get(user);
        let hash = known.map_or(self.dummy.as_str(), String::as_str);
        // An error means a password bcrypt cannot take (a NUL byte): no match.
        let matches = bcrypt::verify(password, hash).unwrap_or(false);
        matches && known.is_some()
    }
}

/// The cost of a bcrypt hash, or what makes it unusable.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let Some(prefix) = BCRYPT_PREFIXES.iter().find(|prefix| hash.starts_with(**prefix)) else {
        return Err(format!("only bcrypt hashes ($2y$, $2b$, $2a$; `htpasswd -B`) are supported, this one is {}", hash_kind(hash)));
    };
    let rest = &hash[prefix.len()..];
    let (cost, digest) = rest.split_once('$').ok_or("the bcrypt hash has no cost")?;
    let cost: u32 = cost.parse().ok().filter(|c| (4..=31).contains(c) && cost.len() == 2).ok_or("the bcrypt cost is not a number from 04 to 31")?;
    if digest.len() != 53 || !digest.chars().all(is_bcrypt_base64) {
        return Err("the bcrypt salt and digest are not 53 characters of bcrypt's base64".into());
    }
    Ok(cost)
}

/// A name for a hash that is not bcrypt, for the error message.
fn hash_kind(hash: &str) -> &'static str {
    match hash {
        h if h.starts_with("$apr1$") => "MD5 ($apr1$)",
        h if h.starts_with("{SHA}") => "SHA-1 ({SHA})",
        h if h.starts_with("$2x$") => "bcrypt $2x$ (made by a broken implementation)",
        h if h.starts_with("$5$") => "SHA-256 crypt ($5$)",
        h if h.starts_with("$6$") => "SHA-512 crypt ($6$)",
        h if h.starts_with('$') => "an unknown crypt kind",
        "" => "empty",
        _ => "crypt or plain text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6";

    fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        Htpasswd::parse(text, Path::new("/etc/wsgate/users"))
    }

    /// An entry for `user` with `password` at `cost`, written with `version`'s prefix.
    fn entry(user: &str, password: &str, cost: u32, version: bcrypt::Version) -> String {
        format!("{user}:{}", bcrypt::hash_with_result(password, cost).unwrap().format_for_version(version))
    }

    #[test]
    fn verifies_bcrypt_entries_of_any_prefix_and_cost() {
        let alice = entry("alice", "hunter2", 4, bcrypt::Version::TwoB);
        let bob = entry("bob", "se:cret", 5, bcrypt::Version::TwoY);
        let ann = entry("ann", "pw", 4, bcrypt::Version::TwoA);
        let file = parse(&format!("# users\n\n{alice}\r\n{bob}\n{ann}\n")).unwrap();
        assert!(file.verify("alice", "hunter2"));
        assert!(!file.verify("alice", "hunter3"));
        assert!(file.verify("bob", "se:cret"));
        assert!(!file.verify("bob", "hunter2"));
        assert!(file.verify("ann", "pw"));
        assert!(!file.verify("carol", "hunter2"));
        assert!(!file.verify("alice", "hun\0ter2"));
        assert!(file.contains("bob") && !file.contains("carol"));
    }

    #[test]
    fn the_dummy_hash_has_the_usual_cost_and_matches_nothing() {
        let file = parse(&format!("a:{HASH}\nb:{HASH}\nc:$2b$04$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6\n")).unwrap();
        assert!(file.dummy.starts_with("$2b$05$"), "{}", file.dummy);
        assert_eq!(bcrypt_cost(&file.dummy), Ok(5));
        assert!(!file.verify("nobody", ""));
        assert!(!file.verify("nobody", "x"));
        assert!(parse("").unwrap().dummy.starts_with("$2b$10$"));
    }

    #[test]
    fn refuses_other_kinds_and_malformed_lines_with_their_line() {
        for (line, problem) in [
            ("carol:$apr1$Qn7bmQ7w$Vx9kk9hiqPaH7lwfBs/9f.", "MD5 ($apr1$)"),
            ("carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "SHA-1 ({SHA})"),
            ("carol:$6$salt$abc", "SHA-512 crypt"),
            ("carol:plaintext", "crypt or plain text"),
            ("carol:$2x$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6", "broken implementation"),
            ("carol:$2y$5$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6", "cost"),
            ("carol:$2y$32$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6", "cost"),
            ("carol:$2y$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb", "53 characters"),
            ("carol:$2y$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7l!6", "53 characters"),
            ("carol", "not a `user:hash` entry"),
            (":$2y$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6", "user name is empty"),
            ("alice:$2y$05$GvPJTbV0c2FVMc30jHhSYu9D95LZQdBdVfeqbr5vqEJZg8ogr7lb6", "listed twice"),
        ] {
            let error = parse(&format!("alice:{HASH}\n# comment\n{line}\n")).unwrap_err().to_string();
            assert!(error.starts_with("/etc/wsgate/users line 3: "), "{error}");
            assert!(error.contains(problem), "{line}: {error}");
        }
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let error = Htpasswd::load(Path::new("/nonexistent/wsgate-users")).unwrap_err().to_string();
        assert!(error.starts_with("cannot read /nonexistent/wsgate-users: "), "{error}");
    }
}
