//! NetworkActor: attaches and detaches this node's workloads, one at a time, through the
//! owners of each concern: IPAM for addresses, the local registry for the book and the
//! endpoint records, the dataplane reconciler for the kernel (see [`attach`] for the sequence).
//! It keeps the latest cluster state to validate requests, and on the first one recovers the
//! addresses its workloads use (when etcd does not answer then, before every attach until it
//! does: an allocator that does not know them would hand them out again). An attach naming a network etcd has but the watch has not brought
//! yet waits for it ([`catch_up`]). Before any state an attach is refused (retry) and a detach waits
//! (the runtime detaches containers that exited while the agent was down right at start):
//! reconciling against no cluster at all would take every network off the host.

mod attach;
mod catch_up;
mod error;
#[cfg(test)]
mod tests;
mod upkeep;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use shibafu_overlay::model::Network;
use shibafu_overlay::state::ClusterState;
use tokio::sync::{watch, Mutex};
use tracing::{info_span, warn, Instrument};

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
    /// The latest cluster state (`None` before the first).
    state: watch::Sender<Option<Arc<ClusterState>>>,
    /// Held by the attach or detach running: they happen one at a time, in order.
    serial: Arc<Mutex<()>>,
    /// True once the first cluster state is read and the local addresses' recovery tried.
    ready: watch::Sender<bool>,
    /// True once the local addresses are recovered: until then every attach tries again first,
    /// and fails rather than hand out an address a workload may use.
    recovered: Arc<AtomicBool>,
}

impl NetworkActor {
    /// The actor over the owners in `links`.
    pub fn new(links: Links) -> NetworkActor {
        NetworkActor {
            links,
            state: watch::Sender::new(None),
            serial: Arc::default(),
            ready: watch::Sender::new(false),
            recovered: Arc::default(),
        }
    }
}

impl Actor for NetworkActor {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for NetworkActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, _ctx: &mut Context<Self>) {
        let first = self.state.send_replace(Some(msg.state.clone())).is_none();
        if first {
            let (links, serial) = (self.links.clone(), self.serial.clone());
            let (ready, recovered) = (self.ready.clone(), self.recovered.clone());
            actix_rt::spawn(async move {
                let _turn = serial.lock().await;
                match upkeep::restore(&links, &msg.state).await {
                    Ok(()) => recovered.store(true, Ordering::SeqCst),
                    Err(e) => warn!(error = %e, "restoring local addresses failed"),
                }
                ready.send_replace(true);
            });
        }
    }
}

impl Handler<AttachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<(Entry, Vec<Network>), AttachError>>;

    fn handle(&mut self, msg: AttachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (links, serial) = (self.links.clone(), self.serial.clone());
        let (mut ready, mut states) = (self.ready.subscribe(), self.state.subscribe());
        let recovered = self.recovered.clone();
        let span = info_span!(
            "network.attach",
            container = %msg.0.name,
            network = %msg.0.networks.join(","),
            node = %links.node,
        );
        msg.0.trace.adopt(&span);
        let attach = async move {
            if states.borrow().is_none() {
                return Err(AttachError::Starting);
            }
            ready
                .wait_for(|r| *r)
                .await
                .map_err(|_| AttachError::Starting)?;
            let _turn = serial.lock().await;
            let state = catch_up::caught_up(&*links.store, &mut states, &msg.0.networks).await?;
            if !recovered.load(Ordering::SeqCst) {
                upkeep::restore(&links, &state).await?;
                recovered.store(true, Ordering::SeqCst);
            }
            let entry = attach::attach(&links, &state, msg.0).await?;
            let (store, named, seen) = (links.store.clone(), entry.clone(), state.clone());
            actix_rt::spawn(async move { upkeep::ensure_services(store, &seen, &named).await });
            let nets = entry
                .interfaces
                .iter()
                .filter_map(|i| state.networks().get(&i.endpoint.network).cloned())
                .collect();
            Ok((entry, nets))
        };
        Box::pin(attach.instrument(span))
    }
}

impl Handler<DetachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<Entry, AttachError>>;

    fn handle(&mut self, msg: DetachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (links, serial) = (self.links.clone(), self.serial.clone());
        let (mut ready, state) = (self.ready.subscribe(), self.state.subscribe());
        Box::pin(async move {
            ready
                .wait_for(|r| *r)
                .await
                .map_err(|_| AttachError::Starting)?;
            let _turn = serial.lock().await;
            let state = state.borrow().clone().ok_or(AttachError::Starting)?;
            attach::detach(&links, &state, &msg.name, msg.network.as_deref()).await
        })
    }
}
