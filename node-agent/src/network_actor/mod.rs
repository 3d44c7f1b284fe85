//! NetworkActor: attaches and detaches this node's workloads, one at a time, through the
//! owners of each concern: IPAM for addresses, the local registry for the book and the
//! endpoint records, the dataplane reconciler for the kernel (see [`attach`] for the sequence).
//! It keeps the latest cluster state to validate requests, and on the first one recovers the
//! addresses its workloads use.

mod attach;
mod error;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use actix::prelude::*;
use shibafu_overlay::model::Network;
use shibafu_overlay::state::ClusterState;
use tokio::sync::Mutex;
use tracing::warn;

pub use attach::{AttachRequest, Links};
pub use error::AttachError;

use crate::messages::ClusterChanged;
use crate::registry::book::Entry;

/// Attaches a workload; answers its entry and the networks it is on.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Entry, Vec<Network>), AttachError>")]
pub struct AttachWorkload(pub AttachRequest);

/// Detaches a workload from one network, or all of them.
#[derive(Debug, Message)]
#[rtype(result = "Result<Entry, AttachError>")]
pub struct DetachWorkload {
    /// Workload name.
    pub name: String,
    /// The network, or `None` for all.
    pub network: Option<String>,
}

/// The actor; see the module documentation.
pub struct NetworkActor {
    links: Links,
    state: Option<Arc<ClusterState>>,
    /// Held by the attach or detach running: they happen one at a time, in order.
    serial: Arc<Mutex<()>>,
}

impl NetworkActor {
    /// The actor over the owners in `links`.
    pub fn new(links: Links) -> NetworkActor {
        NetworkActor {
            links,
            state: None,
            serial: Arc::default(),
        }
    }
}

impl Actor for NetworkActor {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for NetworkActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, _ctx: &mut Context<Self>) {
        let first = self.state.is_none();
        self.state = Some(msg.state.clone());
        if first {
            let (links, serial) = (self.links.clone(), self.serial.clone());
            actix_rt::spawn(async move {
                let _turn = serial.lock().await;
                if let Err(e) = attach::restore(&links, &msg.state).await {
                    warn!(error = %e, "restoring local addresses failed");
                }
            });
        }
    }
}

impl Handler<AttachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<(Entry, Vec<Network>), AttachError>>;

    fn handle(&mut self, msg: AttachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (links, serial, state) = (self.links.clone(), self.serial.clone(), self.state.clone());
        Box::pin(async move {
            let state = state.ok_or(AttachError::Starting)?;
            let _turn = serial.lock().await;
            let entry = attach::attach(&links, &state, msg.0).await?;
            let nets = entry
                .interfaces
                .iter()
                .filter_map(|i| state.networks().get(&i.endpoint.network).cloned())
                .collect();
            Ok((entry, nets))
        })
    }
}

impl Handler<DetachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<Entry, AttachError>>;

    fn handle(&mut self, msg: DetachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (links, serial, state) = (self.links.clone(), self.serial.clone(), self.state.clone());
        Box::pin(async move {
            let state = state.ok_or(AttachError::Starting)?;
            let _turn = serial.lock().await;
            attach::detach(&links, &state, &msg.name, msg.network.as_deref()).await
        })
    }
}
