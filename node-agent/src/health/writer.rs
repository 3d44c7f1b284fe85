//! Health records on their way to etcd: the latest value of each key, with a few writes in
//! flight at once and at most one per key. A burst of transitions (a thousand instances coming
//! up together, or an agent restart writing every record again) is not written one round trip
//! at a time, and a record superseded while it waits is never written. Like
//! [`crate::publish::PublishQueue`], it writes through a [`Publisher`] (the StoreActor, which
//! writes owned keys again after a lease loss) and logs a failed write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shibafu_overlay::model::Object;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::StoreError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::warn;

use crate::publish::Publisher;

/// What is to become of a key: a value to put, or `None` to delete it.
type Change = Option<Vec<u8>>;

enum Job {
    Write(Key, Change),
    #[cfg(test)]
    Flush(oneshot::Sender<()>),
}

/// The queue's handle; its task ends when every handle is dropped and the queue is empty.
#[derive(Clone)]
pub struct RecordQueue {
    tx: mpsc::UnboundedSender<Job>,
}

impl RecordQueue {
    /// Starts the queue's task (on the current runtime) over `publisher`, with at most
    /// `in_flight` writes at once.
    pub fn start(publisher: Arc<dyn Publisher>, in_flight: usize) -> RecordQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(publisher, rx, in_flight.max(1)));
        RecordQueue { tx }
    }

    /// Queues a put of `value` at its key, replacing a change of that key still waiting.
    pub fn put<T: Object>(&self, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                let _ = self.tx.send(Job::Write(value.key(), Some(bytes)));
            }
            Err(e) => warn!(key = %value.key(), error = %e, "cannot encode a health record"),
        }
    }

    /// Queues a delete of `key`, replacing a change of that key still waiting.
    pub fn delete(&self, key: Key) {
        let _ = self.tx.send(Job::Write(key, None));
    }

    /// Resolves once everything queued before it has been written.
    #[cfg(test)]
    pub async fn flushed(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Job::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

async fn write(
    publisher: Arc<dyn Publisher>,
    key: Key,
    change: Change,
) -> (Key, Result<(), StoreError>) {
    let done = match change {
        Some(value) => publisher.put(key.clone(), value).await,
        None => publisher.delete(key.clone()).await,
    };
    (key, done)
}

async fn run(
    publisher: Arc<dyn Publisher>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    in_flight: usize,
) {
    let mut waiting: BTreeMap<Key, Change> = BTreeMap::new();
    let mut writing: BTreeSet<Key> = BTreeSet::new();
    let mut writes = JoinSet::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    loop {
        let ready: Vec<Key> = waiting
            .keys()
            .filter(|k| !writing.contains(*k))
            .take(in_flight.saturating_sub(writing.len()))
            .cloned()
            .collect();
        for key in ready {
            if let Some(change) = waiting.remove(&key) {
                writing.insert(key.clone());
                writes.spawn(write(publisher.clone(), key, change));
            }
        }
        if waiting.is_empty() && writing.is_empty() {
            for ack in flushes.drain(..) {
                let _ = ack.send(());
            }
            if !open {
                return;
            }
        }
        tokio::select! {
            job = rx.recv(), if open => match job {
                Some(Job::Write(key, change)) => {
                    waiting.insert(key, change);
                }
                #[cfg(test)]
                Some(Job::Flush(ack)) => flushes.push(ack),
                None => open = false,
            },
            Some(done) = writes.join_next(), if !writes.is_empty() => {
                if let Ok((key, result)) = done {
                    if let Err(e) = result {
                        warn!(key = %key, error = %e, "health record not written yet; retried on reconnect");
                    }
                    writing.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;

    /// Writes that take 10 ms each, logged as they start and end.
    #[derive(Default)]
    struct Slow(Mutex<Vec<String>>);

    #[async_trait]
    impl Publisher for Slow {
        async fn put(&self, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
            let v = String::from_utf8_lossy(&value).into_owned();
            self.0
                .lock()
                .expect("lock")
                .push(format!("start {key} {v}"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.0.lock().expect("lock").push(format!("end {key}"));
            Ok(())
        }

        async fn delete(&self, key: Key) -> Result<(), StoreError> {
            self.0
                .lock()
                .expect("lock")
                .push(format!("start delete {key}"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.0.lock().expect("lock").push(format!("end {key}"));
            Ok(())
        }
    }

    fn key(id: &str) -> Key {
        Key::Health {
            network: "f".into(),
            id: id.into(),
        }
    }

    #[test]
    fn writes_overlap_across_keys_one_per_key_and_the_latest_value_wins() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let log = Arc::new(Slow::default());
            let q = RecordQueue::start(log.clone(), 2);
            let send = |id: &str, v: Option<&str>| {
                let change = v.map(|v| v.as_bytes().to_vec());
                let _ = q.tx.send(Job::Write(key(id), change));
            };
            send("a", Some("1"));
            send("b", Some("1"));
            send("c", Some("1"));
            tokio::time::sleep(Duration::from_millis(1)).await;
            send("a", Some("2"));
            send("a", Some("3"));
            send("c", None);
            q.flushed().await;
            let lines = log.0.lock().expect("lock").clone();
            let starts: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("start "))
                .collect();
            assert_eq!(
                starts[..2],
                ["/shibafu/v1/health/f/a 1", "/shibafu/v1/health/f/b 1"],
                "two at once, c waits"
            );
            let mut rest = starts[2..].to_vec();
            rest.sort_unstable();
            assert_eq!(
                rest,
                ["/shibafu/v1/health/f/a 3", "delete /shibafu/v1/health/f/c"],
                "a's 2 superseded by 3; c's put replaced by its delete"
            );
            let (a_end, a_again) = (
                lines.iter().position(|l| l == "end /shibafu/v1/health/f/a"),
                lines
                    .iter()
                    .position(|l| l == "start /shibafu/v1/health/f/a 3"),
            );
            assert!(a_end < a_again, "one write per key at a time: {lines:?}");
        });
    }
}
