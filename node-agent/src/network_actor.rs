//! NetworkActor: owns this host's dataplane through [`Host`]. It reconciles the kernel with each
//! new cluster state (host side only: bridges, VXLAN, FDB, neighbours, firewall), attaches and
//! detaches workloads on request, and resyncs everything periodically. Work runs in spawned
//! futures over a shared `Host`; cluster changes that arrive while a reconcile runs are coalesced
//! into one follow-up reconcile with the latest state. An attach answers once the kernel side is
//! done and the book saved; its endpoint records go to etcd right after, and the host stays
//! locked until they are written, so the next change to the host sees them in order. The
//! DnsActor gets the book's endpoints after every change, so local names answer at once.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::model::Network;
use shibafu_overlay::netlink::Scope;
use shibafu_overlay::state::ClusterState;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::host::book::Entry;
use crate::host::{AttachRequest, Host, HostError};
use crate::messages::{ClusterChanged, LocalEndpoints};

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

/// Lists local workloads.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Entry>")]
pub struct ListWorkloads;

/// The actor; see the module documentation.
pub struct NetworkActor {
    host: Arc<Mutex<Host>>,
    dns: Recipient<LocalEndpoints>,
    /// Latest state not yet handed to the host; `Some` also means a reconcile is queued.
    inbox: Arc<StdMutex<Option<Arc<ClusterState>>>>,
    restored: bool,
}

impl NetworkActor {
    /// The actor over a host (restored on the first cluster state), telling `dns` the host's
    /// own endpoints.
    pub fn new(host: Host, dns: Recipient<LocalEndpoints>) -> NetworkActor {
        NetworkActor {
            host: Arc::new(Mutex::new(host)),
            dns,
            inbox: Arc::default(),
            restored: false,
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
        actix_rt::spawn(async move {
            let mut host = host.lock().await;
            let Some(state) = lock_inbox(&inbox).take() else {
                return;
            };
            host.set_state(state);
            if first {
                dns.do_send(LocalEndpoints(host.local_endpoints()));
                host.restore().await;
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
        let (host, dns) = (self.host.clone(), self.dns.clone());
        Box::pin(async move {
            let mut host = host.lock_owned().await;
            let attached = host.attach(msg.0).await?;
            let nets = host.networks_of(&attached.entry);
            let (local, publish) = (host.local_endpoints(), attached.publish);
            actix_rt::spawn(async move {
                // Let the caller's answer go out first; DNS and etcd follow at once.
                tokio::task::yield_now().await;
                dns.do_send(LocalEndpoints(local));
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
        let (host, dns) = (self.host.clone(), self.dns.clone());
        Box::pin(async move {
            let mut host = host.lock().await;
            let res = host.detach(&msg.name, msg.network.as_deref()).await;
            dns.do_send(LocalEndpoints(host.local_endpoints()));
            res
        })
    }
}

impl Handler<ListWorkloads> for NetworkActor {
    type Result = ResponseFuture<Vec<Entry>>;

    fn handle(&mut self, _msg: ListWorkloads, _ctx: &mut Context<Self>) -> Self::Result {
        let host = self.host.clone();
        Box::pin(async move { host.lock().await.book().entries().cloned().collect() })
    }
}
