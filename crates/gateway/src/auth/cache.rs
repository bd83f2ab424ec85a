//! Recently verified credentials, so that a client opening many sessions pays bcrypt once per
//! `server.auth.cacheTtl` instead of tens of milliseconds of CPU per session.
//!
//! Entries are keyed by an HMAC-SHA-256 of the user name and password under a key drawn at start
//! and never stored: the cache holds no password, nor anything a stolen memory image could be
//! brute-forced against offline faster than the bcrypt hashes themselves. Only successes are
//! kept; a wrong password always costs a full bcrypt verification.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ring::hmac;
use tokio::time::Instant;

/// The most entries kept. At 1,024 the cache is about 64 KiB; when it is full of live entries
/// the one expiring first makes room.
const CAPACITY: usize = 1024;

/// The key of an entry: an HMAC tag.
type Tag = [u8; 32];

/// A bounded map of verified credentials, each valid for a time-to-live.
#[derive(Debug)]
pub(crate) struct VerifiedCache {
    key: hmac::Key,
    ttl: Duration,
    /// Tag → when it expires.
    entries: Mutex<HashMap<Tag, Instant>>,
}

impl VerifiedCache {
    /// An empty cache whose entries live `ttl` (above zero: a zero `cacheTtl` makes no cache), keyed with a fresh
    /// random key; `None` when the system has no randomness to give.
    pub(crate) fn new(ttl: Duration) -> Option<VerifiedCache> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()?;
        Some(VerifiedCache { key, ttl, entries: Mutex::new(HashMap::new()) })
    }

    /// The tag of a credential. The user name's length comes first, so that no two (user,
    /// password) pairs share an input.
    pub(crate) fn tag(&self, username: &str, password: &str) -> Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(username.len() as u64).to_be_bytes());
        context.update(username.as_bytes());
        context.update(password.as_bytes());
        let mut tag = [0; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    /// Whether the credential of `tag` was verified less than the time-to-live before `now`.
    ///
    /// The lookup compares tags, not secrets: an attacker who cannot compute the keyed tag of a
    /// guess learns nothing from how long the lookup takes.
    pub(crate) fn contains(&self, tag: &Tag, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(tag).is_some_and(|expires| *expires > now)
    }

    /// Records that the credential of `tag` was verified at `now`.
    pub(crate) fn insert(&self, tag: Tag, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CAPACITY && !entries.contains_key(&tag) {
            entries.retain(|_, expires| *expires > now);
            if entries.len() >= CAPACITY {
                if let Some(first) = entries.iter().min_by_key(|(_, expires)| **expires).map(|(tag, _)| *tag) {
                    entries.remove(&first);
                }
            }
        }
        entries.insert(tag, now + self.ttl);
    }

    /// How many entries are held, expired ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |entries| entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = VerifiedCache::new(Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        let tag = cache.tag("alice", "hunter2");
        assert!(!cache.contains(&tag, now));
        cache.insert(tag, now);
        assert!(cache.contains(&tag, now + Duration::from_secs(59)));
        assert!(!cache.contains(&tag, now + Duration::from_secs(60)));
        assert!(!cache.contains(&cache.tag("alice", "hunter3"), now));
    }

    #[test]
    fn tags_depend_on_the_user_the_password_and_the_key() {
        let cache = VerifiedCache::new(Duration::from_secs(60)).unwrap();
        assert_eq!(cache.tag("alice", "pw"), cache.tag("alice", "pw"));
        assert_ne!(cache.tag("ali", "cepw"), cache.tag("alice", "pw"));
        assert_ne!(cache.tag("alice", "pw"), cache.tag("alice", "pW"));
        let other = VerifiedCache::new(Duration::from_secs(60)).unwrap();
        assert_ne!(cache.tag("alice", "pw"), other.tag("alice", "pw"));
    }

    #[test]
    fn stays_bounded_and_drops_the_entry_expiring_first() {
        let cache = VerifiedCache::new(Duration::from_secs(60)).unwrap();
        let start = Instant::now();
        let first = cache.tag("user0", "pw");
        for i in 0..CAPACITY {
            cache.insert(cache.tag(&format!("user{i}"), "pw"), start + Duration::from_millis(i as u64));
        }
        assert_eq!(cache.len(), CAPACITY);
        let later = start + Duration::from_secs(1);
        let newcomer = cache.tag("newcomer", "pw");
        cache.insert(newcomer, later);
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.contains(&newcomer, later));
        assert!(!cache.contains(&first, later), "the oldest entry made room");
        assert!(cache.contains(&cache.tag("user1", "pw"), later));
        // Once they have expired, all the old entries go at the next insertion.
        let much_later = start + Duration::from_secs(120);
        cache.insert(cache.tag("late", "pw"), much_later);
        assert_eq!(cache.len(), 1);
    }
}
