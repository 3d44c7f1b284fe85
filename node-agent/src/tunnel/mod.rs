//! TunnelActor: owns this node's WireGuard device through the [`owner::TunnelOwner`]. A pass
//! runs after cluster changes that concern it (nodes, networks, tunnel statuses, rotations;
//! changes arriving meanwhile fold into one follow-up) and every [`TICK`], which retries a
//! failed configuration, reads handshakes and ends a rotation that waited long enough. The
//! dataplane is told the tunnel address whenever the device comes up or goes.

pub mod args;
pub mod metrics;
pub mod owner;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::api::TunnelReport;
use shibafu_overlay::model::key_fingerprint;
use shibafu_overlay::state::{ClusterState, StateChange};
use tokio::sync::Mutex;

use crate::messages::ClusterChanged;
use owner::TunnelOwner;

/// How often a pass runs without a change.
pub const TICK: Duration = Duration::from_secs(2);

/// The tunnel address while the device is up, `None` while it is not (to the dataplane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct TunnelChanged(pub Option<Ipv4Addr>);

/// Asks how this node's encryption stands (for `shibafu status`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "TunnelReport")]
pub struct GetTunnel;

/// The actor; see the module documentation.
pub struct TunnelActor {
    owner: Arc<Mutex<TunnelOwner>>,
    dataplane: Recipient<TunnelChanged>,
    state: Option<Arc<ClusterState>>,
    running: bool,
    again: bool,
    told: Option<Option<Ipv4Addr>>,
}

/// A pass finished with this result.
#[derive(Message)]
#[rtype(result = "()")]
struct Passed(Option<Ipv4Addr>);

impl TunnelActor {
    /// The actor over `owner`, telling `dataplane` the tunnel address.
    pub fn new(owner: TunnelOwner, dataplane: Recipient<TunnelChanged>) -> TunnelActor {
        TunnelActor {
            owner: Arc::new(Mutex::new(owner)),
            dataplane,
            state: None,
            running: false,
            again: false,
            told: None,
        }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else {
            return;
        };
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let owner = self.owner.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let result = owner.lock().await.pass(&state).await;
            me.do_send(Passed(result.tunnel));
        });
    }
}

impl Actor for TunnelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.kick(ctx));
    }
}

impl Handler<ClusterChanged> for TunnelActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, ctx: &mut Context<Self>) {
        let first = self.state.is_none();
        self.state = Some(msg.state);
        let concerns = msg.changes.iter().any(|c| {
            matches!(
                c,
                StateChange::Node(_)
                    | StateChange::Network(_)
                    | StateChange::Tunnel(_)
                    | StateChange::Rotation(_)
            )
        });
        if first || concerns {
            self.kick(ctx);
        }
    }
}

impl Handler<Passed> for TunnelActor {
    type Result = ();

    fn handle(&mut self, msg: Passed, ctx: &mut Context<Self>) {
        self.running = false;
        if self.told != Some(msg.0) {
            self.told = Some(msg.0);
            self.dataplane.do_send(TunnelChanged(msg.0));
        }
        if std::mem::take(&mut self.again) {
            self.kick(ctx);
        }
    }
}

impl Handler<GetTunnel> for TunnelActor {
    type Result = ResponseFuture<TunnelReport>;

    fn handle(&mut self, _msg: GetTunnel, _ctx: &mut Context<Self>) -> Self::Result {
        let owner = self.owner.clone();
        let up = matches!(self.told, Some(Some(_)));
        Box::pin(async move {
            let o = owner.lock().await;
            let (backend, fallback, error) = o.standing();
            let record = o.record();
            TunnelReport {
                up,
                backend: backend.map(|b| b.to_string()),
                fallback: fallback.map(str::to_string),
                error: error.map(str::to_string),
                key: key_fingerprint(&record.public_key),
                tunnel: record.tunnel.to_string(),
                mtu: o.mtu(),
                port: record.port,
                rotating: record.next_key.is_some(),
            }
        })
    }
}
