//! A metadata cache with a time to live where concurrent requests for the same
//! key share one fetch: the first caller fetches, the others wait for its
//! answer. Errors are not cached.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

struct Slot<V> {
    value: Mutex<Option<(Instant, V)>>,
}

pub struct Cache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Cache { ttl, slots: Mutex::new(HashMap::new()) }
    }

    /// The cached value, or the one `fetch` returns (shared with concurrent
    /// callers of the same key). With a zero TTL every call fetches.
    pub fn get_or_fetch<E>(&self, key: &K, fetch: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if self.ttl.is_zero() {
            return fetch();
        }
        let slot = self.slots.lock().entry(key.clone()).or_insert_with(|| Arc::new(Slot { value: Mutex::new(None) })).clone();
        let mut value = slot.value.lock();
        if let Some((at, v)) = value.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(v.clone());
            }
        }
        let v = fetch()?;
        *value = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    /// The cached value, if fresh, without fetching.
    pub fn peek(&self, key: &K) -> Option<V> {
        let slot = self.slots.lock().get(key).cloned()?;
        let value = slot.value.try_lock()?;
        value.as_ref().filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    /// Drops the entries that are no longer fresh (kept: those being fetched).
    pub fn prune(&self) {
        self.slots.lock().retain(|_, slot| match slot.value.try_lock() {
            Some(v) => v.as_ref().is_some_and(|(at, _)| at.elapsed() < self.ttl),
            None => true,
        });
    }

    /// Drops the entries whose key satisfies `which`.
    pub fn invalidate(&self, which: impl Fn(&K) -> bool) {
        self.slots.lock().retain(|k, _| !which(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_callers_share_one_fetch() {
        let cache: Arc<Cache<String, usize>> = Arc::new(Cache::new(Duration::from_secs(60)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_fetch(&"t".to_string(), || {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            Ok::<_, ()>(7)
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn errors_are_not_cached_and_invalidate_drops() {
        let cache: Cache<u8, u8> = Cache::new(Duration::from_secs(60));
        assert!(cache.get_or_fetch(&1, || Err::<u8, _>("down")).is_err());
        assert_eq!(cache.get_or_fetch(&1, || Ok::<_, ()>(2)), Ok(2));
        assert_eq!(cache.get_or_fetch(&1, || Ok::<_, ()>(3)), Ok(2));
        cache.invalidate(|k| *k == 1);
        assert_eq!(cache.get_or_fetch(&1, || Ok::<_, ()>(3)), Ok(3));
        cache.prune();
        assert_eq!(cache.peek(&1), Some(3), "fresh entries survive a prune");
        let short: Cache<u8, u8> = Cache::new(Duration::from_millis(1));
        assert_eq!(short.get_or_fetch(&1, || Ok::<_, ()>(1)), Ok(1));
        std::thread::sleep(Duration::from_millis(5));
        short.prune();
        assert!(short.slots.lock().is_empty());
        let uncached: Cache<u8, u8> = Cache::new(Duration::ZERO);
        assert_eq!(uncached.get_or_fetch(&1, || Ok::<_, ()>(1)), Ok(1));
        assert_eq!(uncached.get_or_fetch(&1, || Ok::<_, ()>(2)), Ok(2));
    }
}
