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
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use shibafu_overlay::health::Clock;
use shibafu_overlay::model::{
    key_fingerprint, Node, NodeWireGuard, Object, PeerTunnel, TunnelStatus, SCHEMA_VERSION,
};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Key;
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
    published_node: Option<NodeWireGuard>,
    published_status: Option<(TunnelStatus, u64)>,
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
            published_node: None,
            published_status: None,
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
            self.publish_records(state, None).await;
            return PassResult { tunnel: None };
        }
        self.start_rotation(state);
        let mut observed = self.configure(&nodes).await;
        if observed.is_some() && self.ready_to_switch(state) {
            self.switch();
            observed = self.configure(&nodes).await;
        }
        self.publish_records(state, observed.as_ref()).await;
        PassResult {
            tunnel: observed.map(|_| self.tunnel),
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
        if self.backend.take().is_some() {
            match self.cfg.device.remove().await {
                Ok(()) => info!("no network is encrypted any more: WireGuard device removed"),
                Err(e) => warn!(error = %e, "cannot remove the WireGuard device"),
            }
        }
        self.error = None;
    }

    /// Brings the device up and to the plan; the device as it is then, `None` on failure
    /// (retried on the next pass).
    async fn configure(&mut self, nodes: &[Node]) -> Option<ObservedDevice> {
        let spec = DeviceSpec {
            mtu: self.mtu(),
            address: Ipv4Net::new(self.tunnel, tunnel_range().prefix_len()).ok()?,
        };
        let desired = DesiredDevice {
            public_key: public_of(&self.keys.current),
            port: self.cfg.port,
            peers: desired_peers(&self.cfg.base.name, nodes),
        };
        let result = async {
            let (backend, why) = self.cfg.device.ensure(&spec).await?;
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
            let change = diff(&desired, &observed, KEEPALIVE_SECS);
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
            self.cfg.device.observe().await
        }
        .await;
        match result {
            Ok(observed) => {
                if self.error.take().is_some() {
                    info!("WireGuard device configured again");
                }
                Some(observed)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.error.as_deref() != Some(msg.as_str()) {
                    warn!(error = %msg, "WireGuard device not configured; retrying");
                }
                self.error = Some(msg);
                None
            }
        }
    }

    /// Starts a requested rotation: the next key is made and kept on disk.
    fn start_rotation(&mut self, state: &ClusterState) {
        if self.keys.next.is_some() || !state.rotations().contains_key(&self.cfg.base.name) {
            return;
        }
        match self.cfg.files.create_next() {
            Ok(k) => {
                info!(next = %key_fingerprint(&public_of(&k)), "key rotation started");
                self.keys.next = Some(k);
                self.rotation_since = Some((self.cfg.clock)());
            }
            Err(e) => warn!(error = %e, "cannot start the key rotation"),
        }
    }

    /// Has every live peer accepted the next key (or has the wait run out)?
    fn ready_to_switch(&self, state: &ClusterState) -> bool {
        let Some(next) = self.keys.next.as_ref().map(public_of) else {
            return false;
        };
        let published = self
            .published_node
            .as_ref()
            .and_then(|w| w.next_key.as_deref())
            == Some(next.as_str());
        if !published {
            return false;
        }
        let waited = (self.cfg.clock)().saturating_sub(self.rotation_since.unwrap_or(0));
        let pending: Vec<&String> = state
            .nodes()
            .values()
            .filter(|n| n.name != self.cfg.base.name && n.wg.is_some())
            .filter(|n| {
                state
                    .tunnels()
                    .get(&n.name)
                    .and_then(|t| t.accepted.get(&self.cfg.base.name))
                    != Some(&next)
            })
            .map(|n| &n.name)
            .collect();
        if !pending.is_empty() && waited < ROTATION_WAIT_MS {
            return false;
        }
        if !pending.is_empty() {
            warn!(?pending, "switching keys without every peer's acceptance");
        }
        true
    }

    /// The next key becomes the key: on disk first, then on the device and in the record.
    fn switch(&mut self) {
        if let Err(e) = self.cfg.files.promote_next() {
            warn!(error = %e, "cannot switch keys; retrying");
            return;
        }
        if let Some(next) = self.keys.next.take() {
            info!(key = %key_fingerprint(&public_of(&next)), "key rotated");
            self.keys.current = next;
            self.cfg.metrics.rotated();
        }
        self.rotation_since = None;
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
        let rotating = self.keys.next.is_some();
        if !rotating && state.rotations().contains_key(&self.cfg.base.name) {
            let at = Key::Rotation(self.cfg.base.name.clone());
            if let Err(e) = self.cfg.publish.delete(at).await {
                warn!(error = %e, "cannot clear the finished rotation request");
            }
        }
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

    async fn put<T: Object>(&self, value: &T) -> Result<(), shibafu_overlay::store::StoreError> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
