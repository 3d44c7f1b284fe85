//! The tunnel owner: brings this node's WireGuard device to what the cluster state asks (up
//! with every live peer while any traffic is encrypted, gone otherwise), publishes the node's
//! key and how each tunnel stands, and rotates the key when asked. Plain async code over
//! [`WgDevice`] and [`Publisher`], driven one pass at a time by the TunnelActor.
//!
//! A rotation: write the next key to disk and publish it as `next_key`; every peer adds it
//! as a second peer entry without allowed IPs and lists it as `accepted` in its tunnel status;
//! once all live peers have (or [`ROTATION_WAIT_MS`] passed) the next key becomes the key on
//! disk, on the device and in the node record, and the peers move the tunnel address to it and
//! drop the old entry in one change.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use shibafu_overlay::health::Clock;
use shibafu_overlay::model::{
    encode, key_fingerprint, Node, NodeWireGuard, Object, PeerTunnel, TunnelStatus, SCHEMA_VERSION,
};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::StoreError;
use shibafu_overlay::wireguard::tunnel::{
    choose_tunnel, device_mtu, tunnel_range, tunnels_needed, KEEPALIVE_SECS,
};
use shibafu_overlay::wireguard::{
    desired_peers, diff, public_of, Backend, DesiredDevice, DeviceSpec, KeyFiles, Keys,
    ObservedDevice, WgDevice, WgError,
};
use tracing::{info, warn};

use super::metrics::{TunnelMetrics, TunnelSample};
use crate::publish::Publisher;

/// Longest a rotating node waits for its peers to accept the next key before switching.
pub const ROTATION_WAIT_MS: u64 = 10_000;
/// Handshake times are republished at most this often when nothing else changed.
const REFRESH_MS: u64 = 60_000;

/// Fixed facts and edges of the owner.
pub struct TunnelConfig {
    /// This node's record as the agent registers it (its WireGuard part is the owner's).
    pub base: Node,
    /// Its underlay MTU.
    pub underlay_mtu: u32,
    /// The device's port.
    pub port: u16,
    /// `--encrypt-all`.
    pub encrypt_all: bool,
    /// The key files.
    pub files: KeyFiles,
    /// The device.
    pub device: Arc<dyn WgDevice>,
    /// Where the node record and tunnel status go.
    pub publish: Arc<dyn Publisher>,
    /// Unix milliseconds.
    pub clock: Clock,
    /// Where each pass's figures go.
    pub metrics: Arc<TunnelMetrics>,
}

/// What a pass leaves for others: the tunnel address while the device is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassResult {
    /// `Some` while the device is configured.
    pub tunnel: Option<Ipv4Addr>,
}

/// The owner; see the module documentation.
pub struct TunnelOwner {
    cfg: TunnelConfig,
    keys: Keys,
    tunnel: Ipv4Addr,
    backend: Option<Backend>,
    fallback: Option<String>,
    error: Option<String>,
    rotation_since: Option<u64>,
    /// The rotation request (its time) this node has acted on, so a stale copy of it in a
    /// later state starts no second rotation.
    served: Option<u64>,
    published_node: Option<NodeWireGuard>,
    published_status: Option<(TunnelStatus, u64)>,
    /// Endpoints last set on the device, by peer key (a peer that roamed since keeps its own).
    applied: BTreeMap<String, SocketAddr>,
    /// Nodes whose records carry a key that is not a WireGuard key (warned once).
    bad_keys: Vec<String>,
    /// A device left by an earlier agent has been looked for.
    swept: bool,
}

impl TunnelOwner {
    /// The owner with the keys on disk (made on first use) and the tunnel address kept there,
    /// else the first candidate for the node's name.
    pub fn load(cfg: TunnelConfig) -> Result<TunnelOwner, WgError> {
        let keys = cfg.files.load_or_create()?;
        let tunnel = choose_tunnel(&cfg.base.name, cfg.files.tunnel(), &[]);
        cfg.files.save_tunnel(tunnel)?;
        let rotation_since = keys.next.as_ref().map(|_| (cfg.clock)());
        Ok(TunnelOwner {
            cfg,
            keys,
            tunnel,
            backend: None,
            fallback: None,
            error: None,
            rotation_since,
            served: None,
            published_node: None,
            published_status: None,
            applied: BTreeMap::new(),
            bad_keys: Vec::new(),
            swept: false,
        })
    }

    /// The node's WireGuard facts as its record carries them now.
    pub fn record(&self) -> NodeWireGuard {
        NodeWireGuard {
            public_key: public_of(&self.keys.current),
            port: self.cfg.port,
            tunnel: self.tunnel,
            next_key: self.keys.next.as_ref().map(public_of),
            encrypt_all: self.cfg.encrypt_all,
        }
    }

    /// The backend carrying the device (none while it is down), why the kernel module was not
    /// used when it was wanted, and the last error.
    pub fn standing(&self) -> (Option<&Backend>, Option<&str>, Option<&str>) {
        (
            self.backend.as_ref(),
            self.fallback.as_deref(),
            self.error.as_deref(),
        )
    }

    /// MTU of the device.
    pub fn mtu(&self) -> u32 {
        device_mtu(self.cfg.underlay_mtu, self.cfg.base.underlay)
    }

    /// One pass over `state`: device, rotation, records.
    pub async fn pass(&mut self, state: &ClusterState) -> PassResult {
        let nodes: Vec<Node> = state.nodes().values().cloned().collect();
        self.keep_tunnel_unique(&nodes);
        let me = self.me();
        let networks: Vec<_> = state.networks().values().cloned().collect();
        if !tunnels_needed(&networks, &nodes, &me) {
            self.down().await;
            // No tunnel to keep up: a rotation needs no peer's help.
            self.start_rotation(state);
            if self.keys.next.is_some() {
                self.switch();
            }
            self.publish_records(state, None).await;
            return PassResult { tunnel: None };
        }
        self.start_rotation(state);
        let (mut up, mut observed) = self.configure(&nodes).await;
        if observed.is_some() && self.ready_to_switch(state) {
            self.switch();
            (up, observed) = self.configure(&nodes).await;
        }
        self.publish_records(state, observed.as_ref()).await;
        // A device that is up keeps carrying traffic even when a change to it failed.
        PassResult {
            tunnel: up.then_some(self.tunnel),
        }
    }

    /// This node's record with its WireGuard part as it is now.
    pub fn me(&self) -> Node {
        Node {
            wg: Some(self.record()),
            ..self.cfg.base.clone()
        }
    }

    /// Another live node holding this node's tunnel address moves this one to the next free.
    fn keep_tunnel_unique(&mut self, nodes: &[Node]) {
        let chosen = choose_tunnel(&self.cfg.base.name, Some(self.tunnel), nodes);
        if chosen != self.tunnel {
            warn!(old = %self.tunnel, new = %chosen, "another node holds this node's tunnel address; moving");
            self.tunnel = chosen;
            if let Err(e) = self.cfg.files.save_tunnel(chosen) {
                warn!(error = %e, "cannot keep the new tunnel address");
            }
        }
    }

    async fn down(&mut self) {
        let held = self.backend.take().is_some();
        // A device an earlier agent left goes too (looked for once).
        let sweep = !std::mem::replace(&mut self.swept, true);
        if held || sweep {
            match self.cfg.device.remove().await {
                Ok(()) if held => {
                    info!("no network is encrypted any more: WireGuard device removed")
                }
                Ok(()) => {}
                Err(e) => warn!(error = %e, "cannot remove the WireGuard device"),
            }
        }
        self.error = None;
    }

    /// Brings the device up and to the plan: whether it is up, and the device as it is then
    /// (`None` when a step failed; retried on the next pass).
    async fn configure(&mut self, nodes: &[Node]) -> (bool, Option<ObservedDevice>) {
        let Ok(address) = Ipv4Net::new(self.tunnel, tunnel_range().prefix_len()) else {
            return (false, None);
        };
        let spec = DeviceSpec {
            mtu: self.mtu(),
            address,
        };
        let (peers, bad) = desired_peers(&self.cfg.base.name, nodes);
        if bad != self.bad_keys {
            if !bad.is_empty() {
                warn!(nodes = ?bad, "node records carry keys that are not WireGuard keys; those nodes get no tunnel");
            }
            self.bad_keys = bad;
        }
        let desired = DesiredDevice {
            public_key: public_of(&self.keys.current),
            port: self.cfg.port,
            peers,
        };
        let mut up = false;
        let result = async {
            let (backend, why) = self.cfg.device.ensure(&spec).await?;
            up = true;
            // Why the kernel module is not used is known when the device is made; later
            // passes find the userspace device and keep the reason.
            if why.is_some() && self.fallback != why {
                info!(
                    reason = why.as_deref().unwrap_or(""),
                    "using userspace WireGuard"
                );
                self.fallback = why;
            } else if backend == Backend::Kernel {
                self.fallback = None;
            }
            self.backend = Some(backend);
            let observed = self.cfg.device.observe().await?;
            let change = diff(&desired, &observed, KEEPALIVE_SECS, &self.applied);
            if change.is_empty() {
                return Ok(observed);
            }
            info!(
                set_key = change.set_key,
                upsert = change.upsert.len(),
                remove = change.remove.len(),
                "configuring WireGuard peers"
            );
            self.cfg
                .device
                .apply(&self.keys.current, &change, KEEPALIVE_SECS)
                .await?;
            for (k, p) in &change.upsert {
                self.applied.insert(k.clone(), p.endpoint);
            }
            self.applied.retain(|k, _| desired.peers.contains_key(k));
            self.cfg.device.observe().await
        }
        .await;
        match result {
            Ok(observed) => {
                if self.error.take().is_some() {
                    info!("WireGuard device configured again");
                }
                (true, Some(observed))
            }
            Err(e) => {
                let msg = e.to_string();
                if self.error.as_deref() != Some(msg.as_str()) {
                    warn!(error = %msg, "WireGuard device not configured; retrying");
                }
                self.error = Some(msg);
                (up, None)
            }
        }
    }

    /// Publishes the node record when its WireGuard part changed, the tunnel status when it
    /// changed (or its handshake times are old), and deletes a finished rotation request.
    async fn publish_records(&mut self, state: &ClusterState, observed: Option<&ObservedDevice>) {
        let record = self.record();
        if self.published_node.as_ref() != Some(&record) {
            match self.put(&self.me()).await {
                Ok(()) => self.published_node = Some(record),
                Err(e) => warn!(error = %e, "cannot publish the node's key"),
            }
        }
        self.clear_request(state).await;
        let status = self.status(state, observed);
        let now = (self.cfg.clock)();
        let secs = now / 1000;
        self.cfg.metrics.sample(TunnelSample {
            backend: status.backend.clone(),
            peers: status
                .peers
                .iter()
                .map(|(n, p)| (n.clone(), p.last_handshake.map(|t| secs.saturating_sub(t))))
                .collect(),
            up: status.peers.values().filter(|p| p.is_up(secs)).count(),
        });
        let stale = match &self.published_status {
            None => true,
            Some((old, at)) => {
                !same_shape(old, &status, now / 1000) || now.saturating_sub(*at) >= REFRESH_MS
            }
        };
        if stale {
            match self.put(&status).await {
                Ok(()) => self.published_status = Some((status, now)),
                Err(e) => warn!(error = %e, "cannot publish the tunnel status"),
            }
        }
    }

    /// Writes `value` at its key, encoded as every stored value is (`model::encode`); a value
    /// that does not encode is an error, never an empty write.
    async fn put<T: Object>(&self, value: &T) -> Result<(), StoreError> {
        let bytes = encode(value).map_err(|e| StoreError::Malformed {
            key: value.key().to_string(),
            reason: e.to_string(),
        })?;
        self.cfg.publish.put(value.key(), bytes).await
    }

    fn status(&self, state: &ClusterState, observed: Option<&ObservedDevice>) -> TunnelStatus {
        let mut peers = BTreeMap::new();
        let mut accepted = BTreeMap::new();
        if let Some(dev) = observed {
            for n in state
                .nodes()
                .values()
                .filter(|n| n.name != self.cfg.base.name)
            {
                let Some(wg) = &n.wg else { continue };
                let seen = dev.peers.get(&wg.public_key);
                peers.insert(
                    n.name.clone(),
                    PeerTunnel {
                        key: key_fingerprint(&wg.public_key),
                        last_handshake: seen.and_then(|p| p.last_handshake),
                    },
                );
                if let Some(next) = wg.next_key.as_ref().filter(|k| dev.peers.contains_key(*k)) {
                    accepted.insert(n.name.clone(), next.clone());
                }
            }
        }
        TunnelStatus {
            schema: SCHEMA_VERSION,
            node: self.cfg.base.name.clone(),
            backend: self
                .backend
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default(),
            mtu: if self.backend.is_some() {
                self.mtu()
            } else {
                0
            },
            error: self.error.clone(),
            peers,
            accepted,
        }
    }
}

/// Do two statuses say the same but for handshake times within the same up/down state?
fn same_shape(a: &TunnelStatus, b: &TunnelStatus, now: u64) -> bool {
    let up = |s: &TunnelStatus| -> Vec<(String, String, bool)> {
        s.peers
            .iter()
            .map(|(n, p)| (n.clone(), p.key.clone(), p.is_up(now)))
            .collect()
    };
    a.backend == b.backend
        && a.mtu == b.mtu
        && a.error == b.error
        && a.accepted == b.accepted
        && up(a) == up(b)
}

#[path = "rotation.rs"]
mod rotation;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
