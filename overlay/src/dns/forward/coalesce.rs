//! In-flight coalescing: the first asker of a key becomes the leader and queries upstream; later
//! identical askers follow, waiting for the leader's outcome instead of sending their own query.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

type Slot<T> = watch::Receiver<Option<T>>;

/// Queries in flight, by cache key.
pub struct InFlight<T> {
    map: Mutex<HashMap<Box<[u8]>, Slot<T>>>,
}

/// What a caller of [`InFlight::join`] must do.
pub enum Role<'a, T> {
    /// Ask upstream, then publish the outcome with [`Lead::finish`].
    Leader(Lead<'a, T>),
    /// Wait for the leader with [`follow`].
    Follower(Slot<T>),
}

/// The leader's duty. Dropping it unfinished (e.g. the leader's future was cancelled) releases
/// the followers, which then try again on their own.
pub struct Lead<'a, T> {
    owner: &'a InFlight<T>,
    key: Box<[u8]>,
    tx: watch::Sender<Option<T>>,
}

impl<T: Clone> Default for InFlight<T> {
    fn default() -> Self {
        InFlight {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> InFlight<T> {
    /// Registers interest in `key`: the first caller leads, the others follow.
    pub fn join(&self, key: &[u8]) -> Role<'_, T> {
        let mut map = self.lock();
        if let Some(rx) = map.get(key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.into(), rx);
        Role::Leader(Lead {
            owner: self,
            key: key.into(),
            tx,
        })
    }

    /// Number of distinct queries in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Slot<T>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Lead<'_, T> {
    /// Hands `value` to every follower and retires this query.
    pub fn finish(self, value: T) {
        self.tx.send_replace(Some(value));
    }
}

impl<T> Drop for Lead<'_, T> {
    fn drop(&mut self) {
        self.owner
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Waits for the leader's outcome; None when the leader gave up without one.
pub async fn follow<T: Clone>(mut rx: Slot<T>) -> Option<T> {
    rx.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|v| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_the_key_is_retired() {
        let f = InFlight::<u32>::default();
        let Role::Leader(lead) = f.join(b"k") else {
            panic!("first caller must lead")
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match f.join(b"k") {
                Role::Follower(rx) => rx,
                Role::Leader(_) => panic!("second caller must follow"),
            })
            .collect();
        assert!(matches!(f.join(b"other"), Role::Leader(_)));
        assert_eq!(f.len(), 1);
        lead.finish(7);
        assert_eq!(f.len(), 0);
        for rx in followers {
            assert_eq!(follow(rx).await, Some(7));
        }
        assert!(matches!(f.join(b"k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn an_abandoned_lead_releases_followers_empty_handed() {
        let f = InFlight::<u32>::default();
        let lead = f.join(b"k");
        let Role::Follower(rx) = f.join(b"k") else {
            panic!("second caller must follow")
        };
        drop(lead);
        assert_eq!(follow(rx).await, None);
        assert_eq!(f.len(), 0);
    }
}
