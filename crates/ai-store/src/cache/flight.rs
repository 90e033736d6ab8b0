//! Single flight: concurrent misses of one key wait for the first, which computes the value.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One lock per key that some task is computing; a key's lock is forgotten when the last task
/// holding or awaiting it is done, so the map holds only keys in flight.
pub(crate) struct SingleFlight<K> {
    locks: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
}

impl<K: Clone + Eq + Hash> SingleFlight<K> {
    pub(crate) fn new() -> Self {
        Self {
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Waits until no other task holds `key`, then holds it until the guard is dropped.
    pub(crate) async fn lock(&self, key: K) -> FlightGuard<K> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let held = lock.clone().lock_owned().await;
        FlightGuard {
            locks: self.locks.clone(),
            key,
            lock,
            held: Some(held),
        }
    }

    #[cfg(test)]
    fn keys_in_flight(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

pub(crate) struct FlightGuard<K: Clone + Eq + Hash> {
    locks: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
    key: K,
    lock: Arc<AsyncMutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl<K: Clone + Eq + Hash> Drop for FlightGuard<K> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and ours: nobody else holds or awaits the key. Clones are made
        // only under the map's mutex, which we hold, so the count cannot grow meanwhile.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_nothing_left_behind() {
        let flight = Arc::new(SingleFlight::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (flight, inside, most) = (flight.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _guard = flight.lock("key").await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(flight.keys_in_flight(), 0);
    }
}
