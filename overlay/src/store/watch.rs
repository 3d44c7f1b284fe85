//! A watch that never gives up: resumes after disconnects and re-lists after compaction.
//!
//! It yields [`ClusterChange`]s: a `Snapshot` of the whole prefix (first, unless a start
//! revision is given, and again whenever the revision it needs was compacted), then `Events`.
//! Every revision after the snapshot arrives exactly once, in order: after a broken watch it
//! resumes from the last revision seen + 1, waiting with bounded exponential backoff between
//! attempts. Errors are logged, never returned: the stream does not end.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{KeyValue, Store, StoreError, WatchEvent, WatchStream};

/// What the resilient watch yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChange {
    /// Everything under the prefix at `revision` (replaces whatever the consumer held).
    Snapshot {
        /// Every key under the prefix.
        kvs: Vec<KeyValue>,
        /// Store revision the list was taken at.
        revision: i64,
    },
    /// Changes after the previous item, in revision order.
    Events(Vec<WatchEvent>),
}

/// The endless stream of changes of one prefix.
pub type ClusterChangeStream = BoxStream<'static, ClusterChange>;

/// Bounds of the delay between reconnect attempts (doubles from `initial` up to `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay after a failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Watches `prefix` with the default backoff. `start`: the first revision the caller has not
/// seen (no snapshot first), or `None` to begin with a snapshot.
pub fn watch_changes(
    store: Arc<dyn Store>,
    prefix: impl Into<String>,
    start: Option<i64>,
) -> ClusterChangeStream {
    watch_changes_with(store, prefix, start, Backoff::default())
}

/// [`watch_changes`] with explicit reconnect backoff bounds.
pub fn watch_changes_with(
    store: Arc<dyn Store>,
    prefix: impl Into<String>,
    start: Option<i64>,
    backoff: Backoff,
) -> ClusterChangeStream {
    let runner = Runner {
        store,
        prefix: prefix.into(),
        next: start,
        watch: None,
        watch_opened: Instant::now(),
        backoff,
        delay: backoff.initial,
    };
    stream::unfold(runner, |mut r| async move {
        let change = r.next_change().await;
        Some((change, r))
    })
    .boxed()
}

struct Runner {
    store: Arc<dyn Store>,
    prefix: String,
    /// Next revision to receive; `None` = the next step is a (re-)list.
    next: Option<i64>,
    watch: Option<WatchStream>,
    watch_opened: Instant,
    backoff: Backoff,
    delay: Duration,
}

impl Runner {
    async fn next_change(&mut self) -> ClusterChange {
        loop {
            let Some(from) = self.next else {
                match self.store.list(&self.prefix).await {
                    Ok((kvs, revision)) => {
                        self.next = Some(revision + 1);
                        self.delay = self.backoff.initial;
                        return ClusterChange::Snapshot { kvs, revision };
                    }
                    Err(e) => {
                        self.fail("list failed", &e).await;
                        continue;
                    }
                }
            };
            let Some(watch) = self.watch.as_mut() else {
                match self.store.watch(&self.prefix, from).await {
                    Ok(w) => {
                        self.watch = Some(w);
                        self.watch_opened = Instant::now();
                    }
                    Err(e) => self.handle_error(from, e, false).await,
                }
                continue;
            };
            match watch.next().await {
                Some(Ok(events)) => {
                    let events: Vec<WatchEvent> = events
                        .into_iter()
                        .filter(|e| e.revision() >= from)
                        .collect();
                    let Some(last) = events.iter().map(WatchEvent::revision).max() else {
                        continue;
                    };
                    self.next = Some(last + 1);
                    self.delay = self.backoff.initial;
                    return ClusterChange::Events(events);
                }
                Some(Err(e)) => {
                    self.watch = None;
                    self.handle_error(from, e, true).await;
                }
                None => {
                    self.watch = None;
                    let e = StoreError::Unavailable("watch stream ended".into());
                    self.handle_error(from, e, true).await;
                }
            }
        }
    }

    /// `was_open`: the error ended a watch that had been opened (not a failed attempt to open).
    async fn handle_error(&mut self, from: i64, e: StoreError, was_open: bool) {
        if let StoreError::Compacted {
            compact_revision, ..
        } = e
        {
            info!(
                prefix = %self.prefix,
                from,
                compact_revision,
                "watch revision compacted; re-listing"
            );
            self.next = None;
            return;
        }
        // A watch that was healthy for a while starts over with a short delay; failed attempts
        // to open one keep backing off.
        if was_open && self.watch_opened.elapsed() > self.backoff.max {
            self.delay = self.backoff.initial;
        }
        self.fail("watch broken", &e).await;
    }

    async fn fail(&mut self, what: &str, e: &StoreError) {
        warn!(
            prefix = %self.prefix,
            next_revision = ?self.next,
            retry_in = ?self.delay,
            error = %e,
            "{what}; retrying"
        );
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.backoff.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const FAST: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };

    async fn next(s: &mut ClusterChangeStream) -> ClusterChange {
        tokio::time::timeout(Duration::from_secs(2), s.next())
            .await
            .expect("change in time")
            .expect("stream never ends")
    }

    fn revisions(c: &ClusterChange) -> Vec<i64> {
        match c {
            ClusterChange::Events(evs) => evs.iter().map(WatchEvent::revision).collect(),
            ClusterChange::Snapshot { .. } => panic!("unexpected snapshot {c:?}"),
        }
    }

    #[tokio::test]
    async fn snapshot_then_events() {
        let m = MemoryStore::new();
        m.put("/p/a", b"1".to_vec(), None).await.expect("put");
        m.put("/q/a", b"1".to_vec(), None).await.expect("put");
        let mut w = watch_changes_with(Arc::new(m.clone()), "/p/", None, FAST);
        match next(&mut w).await {
            ClusterChange::Snapshot { kvs, revision } => {
                assert_eq!(kvs.len(), 1);
                assert_eq!(revision, 3);
            }
            other => panic!("expected snapshot, got {other:?}"),
        }
        m.put("/p/b", b"1".to_vec(), None).await.expect("put");
        assert_eq!(revisions(&next(&mut w).await), vec![4]);
    }

    #[tokio::test]
    async fn start_revision_skips_snapshot() {
        let m = MemoryStore::new();
        for i in 0..3 {
            m.put(&format!("/p/{i}"), vec![], None).await.expect("put");
        }
        let mut w = watch_changes_with(Arc::new(m.clone()), "/p/", Some(3), FAST);
        assert_eq!(revisions(&next(&mut w).await), vec![3]);
        assert_eq!(revisions(&next(&mut w).await), vec![4]);
    }

    #[tokio::test]
    async fn resumes_after_breaks_without_loss_or_duplicates() {
        let m = MemoryStore::new();
        let mut w = watch_changes_with(Arc::new(m.clone()), "/p/", None, FAST);
        let ClusterChange::Snapshot { revision, .. } = next(&mut w).await else {
            panic!("expected snapshot");
        };
        let writer = {
            let m = m.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    m.put(&format!("/p/{}", i % 7), vec![], None)
                        .await
                        .expect("put");
                    if i % 25 == 0 {
                        m.break_watches();
                    }
                    if i == 100 {
                        m.set_available(false);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        m.set_available(true);
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 200 {
            seen.extend(revisions(&next(&mut w).await));
        }
        writer.await.expect("writer");
        let expected: Vec<i64> = (revision + 1..=revision + 200).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn compaction_while_away_yields_a_snapshot_then_events() {
        let m = MemoryStore::new();
        for i in 0..5 {
            m.put(&format!("/p/{i}"), vec![], None).await.expect("put");
        }
        m.delete("/p/0").await.expect("delete");
        m.compact(m.revision());
        let mut w = watch_changes_with(Arc::new(m.clone()), "/p/", Some(2), FAST);
        match next(&mut w).await {
            ClusterChange::Snapshot { kvs, revision } => {
                assert_eq!(kvs.len(), 4);
                assert_eq!(revision, m.revision());
            }
            other => panic!("expected snapshot, got {other:?}"),
        }
        m.put("/p/9", vec![], None).await.expect("put");
        assert_eq!(revisions(&next(&mut w).await), vec![m.revision()]);
    }
}
