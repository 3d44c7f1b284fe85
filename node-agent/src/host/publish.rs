//! Publishing this node's endpoint records: a small trait so the host logic is tested without a
//! store, and its implementation over the StoreActor (records live under the node lease).

use actix::Recipient;
use async_trait::async_trait;
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::StoreError;

use crate::messages::{DeleteOwned, PutOwned};

/// Writes and deletes this node's endpoint records.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes (creates or replaces) an endpoint record.
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError>;
    /// Deletes an endpoint record.
    async fn delete(&self, network: &str, id: &str) -> Result<(), StoreError>;
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
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError> {
        let value = serde_json::to_vec(ep).map_err(|e| StoreError::Malformed {
            key: ep.id.clone(),
            reason: e.to_string(),
        })?;
        let key = Key::Endpoint {
            network: ep.network.clone(),
            id: ep.id.clone(),
        };
        self.put
            .send(PutOwned { key, value })
            .await
            .map_err(mailbox)?
    }

    async fn delete(&self, network: &str, id: &str) -> Result<(), StoreError> {
        let key = Key::Endpoint {
            network: network.to_string(),
            id: id.to_string(),
        };
        self.delete
            .send(DeleteOwned { key })
            .await
            .map_err(mailbox)?
    }
}
