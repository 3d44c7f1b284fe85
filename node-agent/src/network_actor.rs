//! NetworkActor: owns this host's dataplane through [`Host`]. It reconciles the kernel with each
//! new cluster state (host side only: bridges, VXLAN, FDB, neighbours, firewall), attaches and
//! detaches workloads on request, and resyncs everything periodically. Work runs in spawned
//! futures over a shared `Host`; cluster changes that arrive while a reconcile runs are coalesced
//! into one follow-up reconcile with the latest state. An attach answers once the kernel side is
//! done and the book saved; its endpoint records go to etcd right after, and the host stays
//! locked until they are written, so the next change to the host sees them in order. The
//! DnsActor gets the book's endpoints after every change, so local names answer at once, and
//! every [`SubscribeLocal`] subscriber the whole book ([`LocalChanged`]). A detach waits for the
//! first restore: before it the host has no cluster state, and reconciling against an empty one
//! would take down every network on the host.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::model::Network;
use shibafu_overlay::netlink::Scope;
use shibafu_overlay::state::ClusterState;
use tokio::sync::{watch, Mutex};
use tracing::{info, warn};

use crate::host::book::{Book, Entry};
use crate::host::{AttachRequest, Host, HostError};
use crate::messages::{
    ClusterChanged, LocalChanged, LocalEndpoints, LocalWorkloads, SubscribeLocal,
};

/// How often the whole dataplane (every container namespace, the firewall) is resynced.
const RESYNC: Duration = Duration::from_secs(30);

/// Attaches a workload; answers its entry and the networks it is on.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Entry, Vec<Network>), HostError>")]
pub struct AttachWorkload(pub AttachRequest);

/// Detaches a workload from one network, or all of them.
#[derive(Debug, Message)]
#[rtype(result = "Result<Entry, HostError>")]
pub struct DetachWorkload {
    /// Workload name.
    pub name: String,
    /// The network, or `None` for all.
    pub network: Option<String>,
}

/// The actor; see the module documentation.
pub struct NetworkActor {
    host: Arc<Mutex<Host>>,
    dns: Recipient<LocalEndpoints>,
    /// Latest state not yet handed to the host; `Some` also means a reconcile is queued.
    inbox: Arc<StdMutex<Option<Arc<ClusterState>>>>,
    restored: bool,
    local: LocalSubscribers,
    /// True once the book has been restored onto the first cluster state.
    ready: Arc<watch::Sender<bool>>,
}

/// The [`LocalChanged`] subscribers and the book as last sent, shared with spawned work.
#[derive(Clone)]
struct LocalSubscribers(Arc<StdMutex<LocalFanout>>);

struct LocalFanout {
    subscribers: Vec<Recipient<LocalChanged>>,
    last: Arc<LocalWorkloads>,
}

impl LocalSubscribers {
    fn new(book: &Book) -> LocalSubscribers {
        LocalSubscribers(Arc::new(StdMutex::new(LocalFanout {
            subscribers: Vec::new(),
            last: workloads(book),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalFanout> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, subscriber: Recipient<LocalChanged>) {
        let mut fanout = self.lock();
        subscriber.do_send(LocalChanged(fanout.last.clone()));
        fanout.subscribers.push(subscriber);
    }

    fn publish(&self, book: &Book) {
        let mut fanout = self.lock();
        fanout.last = workloads(book);
        for s in &fanout.subscribers {
            s.do_send(LocalChanged(fanout.last.clone()));
        }
    }
}

fn workloads(book: &Book) -> Arc<LocalWorkloads> {
    Arc::new(
        book.entries()
            .map(|e| (e.name.clone(), e.clone()))
            .collect(),
    )
}

impl NetworkActor {
    /// The actor over a host (restored on the first cluster state), telling `dns` the host's
    /// own endpoints.
    pub fn new(host: Host, dns: Recipient<LocalEndpoints>) -> NetworkActor {
        NetworkActor {
            local: LocalSubscribers::new(host.book()),
            host: Arc::new(Mutex::new(host)),
            dns,
            inbox: Arc::default(),
            restored: false,
            ready: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Actor for NetworkActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RESYNC, |act, _ctx| {
            let host = act.host.clone();
            actix_rt::spawn(async move {
                if let Err(e) = host.lock().await.reconcile(Scope::All).await {
                    warn!(error = %e, "periodic resync failed");
                }
            });
        });
    }
}

fn lock_inbox(
    inbox: &StdMutex<Option<Arc<ClusterState>>>,
) -> std::sync::MutexGuard<'_, Option<Arc<ClusterState>>> {
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handler<ClusterChanged> for NetworkActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, _ctx: &mut Context<Self>) {
        let first = !self.restored;
        self.restored = true;
        let queued = lock_inbox(&self.inbox).replace(msg.state).is_some();
        if queued {
            return;
        }
        let (host, inbox, dns) = (self.host.clone(), self.inbox.clone(), self.dns.clone());
        let (local, ready) = (self.local.clone(), self.ready.clone());
        actix_rt::spawn(async move {
            let mut host = host.lock().await;
            let Some(state) = lock_inbox(&inbox).take() else {
                return;
            };
            host.set_state(state);
            if first {
                dns.do_send(LocalEndpoints(host.local_endpoints()));
                host.restore().await;
                local.publish(host.book());
                ready.send_replace(true);
            }
            let done = if first {
                host.reconcile(Scope::All).await
            } else {
                host.reconcile_change().await
            };
            match done {
                Ok(()) if first => info!("dataplane adopted"),
                Ok(()) => {}
                Err(e) => {
                    warn!(error = %e, "reconcile failed; retried on the next change or resync")
                }
            }
        });
    }
}

impl Handler<AttachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<(Entry, Vec<Network>), HostError>>;

    fn handle(&mut self, msg: AttachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (host, dns, subscribers) = (self.host.clone(), self.dns.clone(), self.local.clone());
        Box::pin(async move {
            let mut host = host.lock_owned().await;
            let attached = host.attach(msg.0).await?;
            let nets = host.networks_of(&attached.entry);
            let (local, publish) = (host.local_endpoints(), attached.publish);
            actix_rt::spawn(async move {
                // Let the caller's answer go out first; DNS and etcd follow at once.
                tokio::task::yield_now().await;
                dns.do_send(LocalEndpoints(local));
                subscribers.publish(host.book());
                publish.await;
                drop(host);
            });
            Ok((attached.entry, nets))
        })
    }
}

impl Handler<DetachWorkload> for NetworkActor {
    type Result = ResponseFuture<Result<Entry, HostError>>;

    fn handle(&mut self, msg: DetachWorkload, _ctx: &mut Context<Self>) -> Self::Result {
        let (host, dns, local) = (self.host.clone(), self.dns.clone(), self.local.clone());
        let mut ready = self.ready.subscribe();
        Box::pin(async move {
            let _ = ready.wait_for(|r| *r).await;
            let mut host = host.lock().await;
            let res = host.detach(&msg.name, msg.network.as_deref()).await;
            dns.do_send(LocalEndpoints(host.local_endpoints()));
            local.publish(host.book());
            res
        })
    }
}

impl Handler<SubscribeLocal> for NetworkActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeLocal, _ctx: &mut Context<Self>) {
        self.local.add(msg.0);
    }
}

#[cfg(test)]
mod tests;
