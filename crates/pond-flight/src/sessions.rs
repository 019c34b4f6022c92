//! Flight connections to engine sessions (one per bearer token), and results
//! parked between `GetFlightInfo` and `DoGet`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parking_lot::Mutex;
use pond_auth::Identity;
use pond_engine::{Engine, QueryStream, Session};
use sha2_free_digest::digest;

/// A result waiting for its `DoGet`.
pub enum ParkedResult {
    /// A running statement streaming from DuckDB.
    Stream(QueryStream),
    /// A small, already computed answer (metadata requests).
    Batches(SchemaRef, Vec<RecordBatch>),
}

struct Parked {
    session_id: String,
    result: ParkedResult,
    at: Instant,
}

pub struct Sessions {
    engine: Engine,
    by_token: Mutex<HashMap<u64, String>>,
    parked: Mutex<HashMap<Vec<u8>, Parked>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(engine: Engine, ttl: Duration) -> Self {
        Self { engine, by_token: Mutex::new(HashMap::new()), parked: Mutex::new(HashMap::new()), ttl }
    }

    /// The session of a bearer token, opened on first use (or again after it
    /// was closed for being idle).
    pub async fn session_for(&self, token: &str, identity: &Identity) -> pond_engine::Result<Arc<Session>> {
        let key = digest(token);
        if let Some(id) = self.by_token.lock().get(&key).cloned() {
            if let Some(s) = self.engine.session(&id) {
                if &s.identity == identity {
                    return Ok(s);
                }
            }
        }
        let s = self.engine.open_session_async(identity.clone(), "flight", None, true).await?;
        self.by_token.lock().insert(key, s.id.clone());
        Ok(s)
    }

    pub fn forget_token(&self, token: &str) -> Option<String> {
        self.by_token.lock().remove(&digest(token))
    }

    pub fn park(&self, session_id: &str, result: ParkedResult) -> Vec<u8> {
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut parked = self.parked.lock();
        let ttl = self.ttl;
        parked.retain(|_, p| p.at.elapsed() < ttl);
        parked.insert(handle.clone(), Parked { session_id: session_id.to_string(), result, at: Instant::now() });
        handle
    }

    /// Drops results nobody fetched in time (their statements stop).
    pub fn sweep(&self) {
        let ttl = self.ttl;
        let expired: Vec<Parked> = {
            let mut parked = self.parked.lock();
            let keys: Vec<Vec<u8>> = parked.iter().filter(|(_, p)| p.at.elapsed() >= ttl).map(|(k, _)| k.clone()).collect();
            keys.iter().filter_map(|k| parked.remove(k)).collect()
        };
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "dropped results that were never fetched");
        }
        // Tokens whose session was closed (idle, CloseSession) need no entry.
        self.by_token.lock().retain(|_, id| self.engine.session_exists(id));
    }

    pub fn take(&self, handle: &[u8], session_id: &str) -> Option<ParkedResult> {
        let mut parked = self.parked.lock();
        match parked.get(handle) {
            Some(p) if p.session_id == session_id => parked.remove(handle).map(|p| p.result),
            _ => None,
        }
    }

    /// Drops every parked result of a session (its statements stop).
    pub fn drop_for_session(&self, session_id: &str) {
        self.parked.lock().retain(|_, p| p.session_id != session_id);
    }
}

mod sha2_free_digest {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;

    /// A keyed 64-bit hash of a token, so the map never holds tokens in clear.
    pub fn digest(token: &str) -> u64 {
        static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut h = KEY.get_or_init(Default::default).build_hasher();
        h.write(token.as_bytes());
        h.finish()
    }
}
