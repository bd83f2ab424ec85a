//! The session table: every routed WebSocket session open right now, with its traffic counters.
//!
//! The relay updates a session's [`Traffic`] with relaxed atomic adds once per read (not per frame),
//! and `/application/websockets` reads them; nothing else is shared between sessions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Identifies a session in logs and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    prefix: u32,
    serial: u64,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.prefix, self.serial)
    }
}

/// Bytes and messages relayed in one direction.
#[derive(Debug, Default)]
pub struct Traffic {
    bytes: AtomicU64,
    messages: AtomicU64,
}

impl Traffic {
    /// Counts `bytes` more wire bytes, and sets the number of complete messages so far.
    pub fn record(&self, bytes: u64, messages: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.messages.store(messages, Ordering::Relaxed);
    }

    /// Wire bytes relayed (frame headers included).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Complete data messages relayed.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

/// What is known about a session when it opens.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The client's address.
    pub client_address: SocketAddr,
    /// The path the client asked the gateway for (with its query).
    pub gateway_path: String,
    /// The URL of the service session (`ws://host:port/path?query`).
    pub service_url: String,
    /// The service's id.
    pub service_id: Arc<str>,
    /// The instance serving the session.
    pub instance_id: Arc<str>,
    /// The subprotocol the service chose.
    pub subprotocol: Option<String>,
}

/// An open session.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Its route and peers.
    pub info: SessionInfo,
    /// When it opened.
    pub started: SystemTime,
    /// Traffic from the client to the service.
    pub from_client: Traffic,
    /// Traffic from the service to the client.
    pub to_client: Traffic,
}

/// All open sessions. Cheap to clone: clones share the table.
#[derive(Debug, Clone)]
pub struct SessionTable {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    prefix: u32,
    next: AtomicU64,
    open: Mutex<BTreeMap<SessionId, Arc<Session>>>,
}

impl SessionTable {
    /// An empty table; `prefix` tells apart the session ids of different gateway processes.
    pub fn new(prefix: u32) -> SessionTable {
        SessionTable { inner: Arc::new(Inner { prefix, next: AtomicU64::new(1), open: Mutex::new(BTreeMap::new()) }) }
    }

    /// A fresh id, for a session being set up (failed set-ups are logged under it too).
    pub fn next_id(&self) -> SessionId {
        SessionId { prefix: self.inner.prefix, serial: self.inner.next.fetch_add(1, Ordering::Relaxed) }
    }

    /// Lists a session as open until the returned guard is dropped.
    pub fn open(&self, id: SessionId, info: SessionInfo) -> OpenSession {
        let session = Arc::new(Session {
            id,
            info,
            started: SystemTime::now(),
            from_client: Traffic::default(),
            to_client: Traffic::default(),
        });
        self.lock().insert(id, Arc::clone(&session));
        OpenSession { table: self.clone(), session }
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open sessions, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, Arc<Session>>> {
        // The map stays consistent whatever a panicking holder did, so poisoning is ignored.
        self.inner.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A session listed in the table; dropping it removes the session.
#[derive(Debug)]
pub struct OpenSession {
    table: SessionTable,
    session: Arc<Session>,
}

impl std::ops::Deref for OpenSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.table.lock().remove(&self.session.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_listed_while_open() {
        let table = SessionTable::new(0xabc);
        let info = SessionInfo {
            client_address: "127.0.0.1:1".parse().unwrap(),
            gateway_path: "/s/ws/v1".into(),
            service_url: "ws://127.0.0.1:2/ws".into(),
            service_id: "s".into(),
            instance_id: "127.0.0.1:2".into(),
            subprotocol: None,
        };
        let first = table.open(table.next_id(), info.clone());
        let second = table.open(table.next_id(), info);
        assert_eq!(first.id.to_string(), "00000abc-1");
        second.to_client.record(10, 1);
        second.to_client.record(5, 2);
        assert_eq!((second.to_client.bytes(), second.to_client.messages()), (15, 2));
        assert_eq!((table.snapshot().len(), table.len()), (2, 2));
        drop(first);
        let open = table.snapshot();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, second.id);
    }
}
