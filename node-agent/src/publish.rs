//! Publishing keys this node owns (endpoint records, problem reports) under the node lease: a
//! small trait so owners are tested without a store, its implementation over the StoreActor, and
//! an ordered queue so a put and a later delete of the same key reach etcd in that order.

use std::sync::Arc;

use actix::Recipient;
use async_trait::async_trait;
use shibafu_overlay::model::{self, Object};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::StoreError;
use tokio::sync::mpsc;
#[cfg(test)]
use tokio::sync::oneshot;
use tracing::{info_span, warn, Instrument, Span};

use crate::messages::{DeleteOwned, PutOwned};

/// Writes and deletes keys this node owns.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes (creates or replaces) a key.
    async fn put(&self, key: Key, value: Vec<u8>) -> Result<(), StoreError>;
    /// Deletes a key.
    async fn delete(&self, key: Key) -> Result<(), StoreError>;
}

/// [`Publisher`] through the StoreActor, which rewrites owned keys after a lease loss.
pub struct StorePublisher {
    /// Where puts go.
    pub put: Recipient<PutOwned>,
    /// Where deletes go.
    pub delete: Recipient<DeleteOwned>,
}

fn mailbox(e: actix::MailboxError) -> StoreError {
    StoreError::Unavailable(format!("store actor: {e}"))
}

#[async_trait]
impl Publisher for StorePublisher {
    async fn put(&self, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        self.put
            .send(PutOwned { key, value })
            .await
            .map_err(mailbox)?
    }

    async fn delete(&self, key: Key) -> Result<(), StoreError> {
        self.delete
            .send(DeleteOwned { key })
            .await
            .map_err(mailbox)?
    }
}

enum Job {
    Put(Key, Vec<u8>, Span),
    Delete(Key),
    #[cfg(test)]
    Flush(oneshot::Sender<()>),
}

/// Owned-key writes in the order they were queued, each answered before the next starts. A
/// failed write is logged: the StoreActor writes owned keys again when etcd is back.
#[derive(Clone)]
pub struct PublishQueue {
    tx: mpsc::UnboundedSender<Job>,
}

impl PublishQueue {
    /// Starts the queue's task (on the current runtime) over `publisher`.
    pub fn start(publisher: Arc<dyn Publisher>) -> PublishQueue {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let (key, done) = match job {
                    Job::Put(key, value, span) => (
                        key.clone(),
                        publisher.put(key, value).instrument(span).await,
                    ),
                    Job::Delete(key) => (key.clone(), publisher.delete(key).await),
                    #[cfg(test)]
                    Job::Flush(ack) => {
                        let _ = ack.send(());
                        continue;
                    }
                };
                if let Err(e) = done {
                    warn!(key = %key, error = %e, "owned key not written yet; retried on reconnect");
                }
            }
        });
        PublishQueue { tx }
    }

    /// Queues a put of `value` at its key. A value carrying a trace is written in an `etcd.put`
    /// span continuing it, and stored naming that span, so watchers continue from the write.
    pub fn put<T: Object>(&self, value: &T) {
        let key = value.key();
        let span = if value.trace().is_none() {
            Span::none()
        } else {
            info_span!("etcd.put", key = %key)
        };
        value.trace().adopt(&span);
        match span.in_scope(|| model::encode(value)) {
            Ok(bytes) => {
                let _ = self.tx.send(Job::Put(key, bytes, span));
            }
            Err(e) => warn!(key = %value.key(), error = %e, "cannot encode an owned key"),
        }
    }

    /// Queues a delete of `key`.
    pub fn delete(&self, key: Key) {
        let _ = self.tx.send(Job::Delete(key));
    }

    /// Resolves once everything queued before it has been answered.
    #[cfg(test)]
    pub async fn flushed(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Job::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}
