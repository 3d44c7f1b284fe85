//! The StoreActor's public requests: subscriptions, owned keys, deregistration, status.

use actix::prelude::*;
use shibafu_overlay::model::Network;
use shibafu_overlay::store::StoreError;

use super::StoreActor;
use crate::messages::{
    AgentStatus, ClusterChanged, DeleteOwned, Deregister, GetNetworks, GetStatus, PutOwned,
    Subscribe,
};
use shibafu_overlay::store::lease::bounded;

impl StoreActor {
    fn status(&self) -> AgentStatus {
        AgentStatus {
            node: self.cfg.node.name.clone(),
            underlay: self.cfg.node.underlay,
            version: self.cfg.node.version.clone(),
            etcd_connected: self.connected,
            registered: self.lease.is_some(),
            revision: self.state.revision(),
            networks: self.state.networks().keys().cloned().collect(),
            nodes: self.state.nodes().keys().cloned().collect(),
            upstream_dns: self.cfg.upstream_dns.clone(),
        }
    }
}

impl Handler<Subscribe> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) {
        if self.listed {
            msg.0.do_send(ClusterChanged {
                changes: Vec::new(),
                state: self.state.clone(),
            });
        }
        self.subscribers.push(msg.0);
    }
}

impl Handler<PutOwned> for StoreActor {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: PutOwned, _ctx: &mut Context<Self>) -> Self::Result {
        let key = msg.key.to_string();
        // Written again on re-registration, that write is no part of the change traced now.
        self.owned.insert(key.clone(), untraced(&msg.value));
        self.stale.remove(&key);
        self.owned_gen += 1;
        let (Some(store), Some(lease), false) = (self.store.clone(), self.lease, self.registering)
        else {
            let e = StoreError::Unavailable(format!(
                "node not registered yet: {key} is written once it is"
            ));
            return Box::pin(actix::fut::ready(Err(e)));
        };
        let limit = self.io_limit();
        let put = async move { bounded(limit, store.put(&key, msg.value, Some(lease))).await };
        Box::pin(put.into_actor(self).map(|res, act, ctx| match res {
            Ok(revision) => {
                act.wrote(revision);
                Ok(())
            }
            Err(e) => {
                if matches!(e, StoreError::LeaseNotFound(_)) {
                    act.lease_lost(ctx);
                } else {
                    act.owned_dirty = true;
                }
                Err(e)
            }
        }))
    }
}

impl Handler<DeleteOwned> for StoreActor {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: DeleteOwned, _ctx: &mut Context<Self>) -> Self::Result {
        let key = msg.key.to_string();
        self.owned.remove(&key);
        self.owned_gen += 1;
        let forget = key.clone();
        let store = self.store.clone();
        let limit = self.io_limit();
        let delete = async move {
            let store = store.ok_or_else(|| {
                StoreError::Unavailable("not connected to the cluster store".into())
            })?;
            bounded(limit, store.delete(&key)).await.map(|_| ())
        };
        Box::pin(delete.into_actor(self).map(move |res, act, _ctx| {
            // A key not deleted now is deleted once etcd answers again (unless owned again).
            if res.is_err() && !act.owned.contains_key(&forget) {
                act.owned_dirty = true;
                act.stale.insert(forget);
            }
            res
        }))
    }
}

impl Handler<Deregister> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _msg: Deregister, _ctx: &mut Context<Self>) -> Self::Result {
        // No membership work after this: the agent is leaving the cluster.
        self.deregistered = true;
        let lease = self.lease.take();
        let store = self.store.clone();
        let limit = self.io_limit();
        Box::pin(async move {
            match (store, lease) {
                (Some(store), Some(lease)) => bounded(limit, store.revoke_lease(lease)).await,
                _ => Ok(()),
            }
        })
    }
}

impl Handler<GetStatus> for StoreActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<GetNetworks> for StoreActor {
    type Result = MessageResult<GetNetworks>;

    fn handle(&mut self, _msg: GetNetworks, _ctx: &mut Context<Self>) -> Self::Result {
        let nets: Vec<Network> = self.state.networks().values().cloned().collect();
        MessageResult(nets)
    }
}

/// `value` without its top-level `trace` field (a JSON object), as written when the lease is
/// granted again; any other value as it is.
fn untraced(value: &[u8]) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice(value) else {
        return value.to_vec();
    };
    if o.remove("trace").is_none() {
        return value.to_vec();
    }
    serde_json::to_vec(&o).unwrap_or_else(|_| value.to_vec())
}

#[cfg(test)]
mod tests {
    use super::untraced;

    #[test]
    fn a_value_kept_for_re_registration_loses_its_trace_and_nothing_else() {
        let traced = br#"{"name":"web1","trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","weight":3}"#;
        assert_eq!(untraced(traced), br#"{"name":"web1","weight":3}"#.to_vec());
        let plain = br#"{"name":"web1"}"#;
        assert_eq!(untraced(plain), plain.to_vec());
        assert_eq!(untraced(b"not json"), b"not json".to_vec());
    }
}
