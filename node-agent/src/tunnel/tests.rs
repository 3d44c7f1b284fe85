//! Tests of the tunnel owner over the fake device and publisher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shibafu_overlay::model::{Rotation, SCHEMA_VERSION};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::telemetry::Trace;
use shibafu_overlay::wireguard::{FakeWg, Key as WgKey};

use super::*;
use crate::testing::{network, state_with, with_object, FakePublisher, TempDir};

struct Rig {
    dir: TempDir,
    device: FakeWg,
    published: Arc<FakePublisher>,
    now: Arc<AtomicU64>,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        Rig {
            dir: TempDir::new(tag),
            device: FakeWg::new(),
            published: Arc::new(FakePublisher::default()),
            now: Arc::new(AtomicU64::new(1_000_000)),
        }
    }

    fn owner(&self) -> TunnelOwner {
        let now = self.now.clone();
        TunnelOwner::load(TunnelConfig {
            base: node("node1", None),
            underlay_mtu: 1500,
            port: 51820,
            encrypt_all: false,
            files: KeyFiles::new(&self.dir.0),
            device: Arc::new(self.device.clone()),
            publish: self.published.clone(),
            clock: Arc::new(move || now.load(Ordering::SeqCst)),
            metrics: Arc::default(),
        })
        .expect("owner")
    }

    fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    fn last_status(&self) -> TunnelStatus {
        let key = Key::Tunnel("node1".into()).to_string();
        serde_json::from_slice(&self.published.value(&key).expect("status")).expect("json")
    }

    fn last_record(&self) -> NodeWireGuard {
        let key = Key::Node("node1".into()).to_string();
        let n: Node =
            serde_json::from_slice(&self.published.value(&key).expect("node")).expect("json");
        n.wg.expect("wg")
    }
}

fn node(name: &str, wg: Option<NodeWireGuard>) -> Node {
    let number: u8 = name.trim_start_matches("node").parse().unwrap_or(9);
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: format!("10.0.0.{number}").parse().expect("ip"),
        version: "test".into(),
        wg,
        started_at: 0,
    }
}

fn peer_wg(key: &str, next: Option<&str>, tunnel: &str) -> NodeWireGuard {
    NodeWireGuard {
        public_key: key.into(),
        port: 51820,
        tunnel: tunnel.parse().expect("ip"),
        next_key: next.map(str::to_string),
        encrypt_all: false,
    }
}

/// `state` with a rotation of node1's key requested.
fn asked(state: &ClusterState) -> Arc<ClusterState> {
    let request = Rotation {
        schema: SCHEMA_VERSION,
        node: "node1".into(),
        requested_ms: 1,
        trace: Trace::NONE,
    };
    with_object(state, &request)
}

fn key() -> String {
    public_of(&WgKey::generate_private())
}

/// A cluster with network `secure` (encrypted when asked) and live peers node2 and node3.
fn cluster(encrypted: bool, peers: &[(&str, NodeWireGuard)]) -> Arc<ClusterState> {
    let mut net = network("secure", "172.30.0.0/24", 4100);
    net.encrypted = encrypted;
    let mut st = state_with(&[net], &[]);
    for (name, wg) in peers {
        st = with_object(&st, &node(name, Some(wg.clone())));
    }
    st
}

#[tokio::test]
async fn no_encrypted_network_means_no_device_but_a_published_key() {
    let rig = Rig::new("tun-off");
    let mut owner = rig.owner();
    let st = cluster(false, &[("node2", peer_wg(&key(), None, "100.64.0.2"))]);
    let done = owner.pass(&st).await;
    assert_eq!(done.tunnel, None);
    assert!(rig.device.spec().is_none());
    assert_eq!(rig.last_record().public_key, owner.record().public_key);
    assert_eq!(rig.last_status().backend, "");
}

#[tokio::test]
async fn an_encrypted_network_brings_the_device_up_with_every_peer() {
    let rig = Rig::new("tun-up");
    let mut owner = rig.owner();
    let (k2, k3) = (key(), key());
    let st = cluster(
        true,
        &[
            ("node2", peer_wg(&k2, None, "100.64.0.2")),
            ("node3", peer_wg(&k3, None, "100.64.0.3")),
        ],
    );
    let done = owner.pass(&st).await;
    assert_eq!(done.tunnel, Some(owner.record().tunnel));
    let spec = rig.device.spec().expect("up");
    assert_eq!(spec.mtu, 1440);
    assert_eq!(spec.address.prefix_len(), 10);
    let dev = rig.device.device();
    assert_eq!(
        dev.public_key.as_deref(),
        Some(owner.record().public_key.as_str())
    );
    assert_eq!(dev.peers.len(), 2);
    assert_eq!(
        dev.peers[&k2].endpoint,
        Some("10.0.0.2:51820".parse().expect("addr"))
    );
    // A second pass over the same state changes nothing.
    owner.pass(&st).await;
    assert_eq!(rig.device.applied().len(), 1);
    // Handshakes show in the status once published again.
    rig.device.handshake(&k2, 1_000);
    rig.advance(61_000);
    owner.pass(&st).await;
    let status = rig.last_status();
    assert_eq!(status.peers["node2"].last_handshake, Some(1_000));
    assert_eq!(status.peers["node3"].last_handshake, None);
    assert!(status.backend.starts_with("userspace"));
    // The network going unencrypted takes the device away.
    let plain = cluster(false, &[("node2", peer_wg(&k2, None, "100.64.0.2"))]);
    assert_eq!(owner.pass(&plain).await.tunnel, None);
    assert_eq!(rig.device.removed(), 1);
}

#[tokio::test]
async fn a_failing_device_is_reported_and_retried() {
    let rig = Rig::new("tun-fail");
    let mut owner = rig.owner();
    let st = cluster(true, &[("node2", peer_wg(&key(), None, "100.64.0.2"))]);
    rig.device.fail(Some("cannot run boringtun-cli"));
    assert_eq!(owner.pass(&st).await.tunnel, None);
    let status = rig.last_status();
    assert!(status.error.expect("error").contains("boringtun-cli"));
    rig.device.fail(None);
    assert!(owner.pass(&st).await.tunnel.is_some());
    assert_eq!(rig.last_status().error, None);
}

#[tokio::test]
async fn a_peers_next_key_is_added_and_accepted_then_takes_over() {
    let rig = Rig::new("tun-peer-rotates");
    let mut owner = rig.owner();
    let (old, new) = (key(), key());
    let st = cluster(true, &[("node2", peer_wg(&old, Some(&new), "100.64.0.2"))]);
    owner.pass(&st).await;
    let dev = rig.device.device();
    assert_eq!(dev.peers[&old].allowed.len(), 1);
    assert!(dev.peers[&new].allowed.is_empty());
    assert_eq!(rig.last_status().accepted["node2"], new);
    // node2 switched: the address moves to the new key, the old entry goes.
    let st = cluster(true, &[("node2", peer_wg(&new, None, "100.64.0.2"))]);
    owner.pass(&st).await;
    let dev = rig.device.device();
    assert_eq!(dev.peers.keys().collect::<Vec<_>>(), [&new]);
    assert_eq!(dev.peers[&new].allowed.len(), 1);
    assert!(rig.last_status().accepted.is_empty());
}

#[tokio::test]
async fn a_requested_rotation_waits_for_the_peers_then_switches_everywhere() {
    let rig = Rig::new("tun-rotate");
    let mut owner = rig.owner();
    let k2 = key();
    let base = cluster(true, &[("node2", peer_wg(&k2, None, "100.64.0.2"))]);
    owner.pass(&base).await;
    let old = owner.record().public_key;
    let asked = asked(&base);
    owner.pass(&asked).await;
    let next = rig.last_record().next_key.expect("next key published");
    assert_eq!(
        rig.last_record().public_key,
        old,
        "not switched before the peers accept"
    );
    assert!(rig.dir.0.join("wireguard/next.key").exists());
    // node2 accepts: the switch happens on the next pass.
    let accepted = with_object(
        &asked,
        &TunnelStatus {
            schema: SCHEMA_VERSION,
            node: "node2".into(),
            backend: "kernel".into(),
            mtu: 1440,
            error: None,
            peers: Default::default(),
            accepted: [("node1".to_string(), next.clone())].into(),
        },
    );
    owner.pass(&accepted).await;
    assert_eq!(rig.last_record().public_key, next);
    assert_eq!(rig.last_record().next_key, None);
    assert_eq!(
        rig.device.device().public_key.as_deref(),
        Some(next.as_str())
    );
    assert!(rig
        .published
        .log()
        .iter()
        .any(|l| l == "delete /shibafu/v1/rotations/node1"));
    // The new key is the one on disk: a restarted agent keeps it.
    assert_eq!(rig.owner().record().public_key, next);
}

#[tokio::test]
async fn a_rotation_no_peer_accepts_switches_after_the_wait() {
    let rig = Rig::new("tun-rotate-wait");
    let mut owner = rig.owner();
    let base = cluster(true, &[("node2", peer_wg(&key(), None, "100.64.0.2"))]);
    let asked = asked(&base);
    owner.pass(&asked).await;
    let next = rig.last_record().next_key.expect("next");
    owner.pass(&asked).await;
    assert_ne!(rig.last_record().public_key, next);
    rig.advance(ROTATION_WAIT_MS);
    owner.pass(&asked).await;
    assert_eq!(rig.last_record().public_key, next);
}

#[tokio::test]
async fn the_tunnel_address_moves_off_another_nodes() {
    let rig = Rig::new("tun-clash");
    let mut owner = rig.owner();
    let mine = owner.record().tunnel;
    // A node whose name sorts after this one's moves itself; one before it wins.
    let st = cluster(true, &[("node2", peer_wg(&key(), None, &mine.to_string()))]);
    owner.pass(&st).await;
    assert_eq!(owner.record().tunnel, mine);
    let st = cluster(true, &[("node0", peer_wg(&key(), None, &mine.to_string()))]);
    owner.pass(&st).await;
    assert_ne!(owner.record().tunnel, mine);
    assert_eq!(rig.last_record().tunnel, owner.record().tunnel);
    assert_eq!(
        KeyFiles::new(&rig.dir.0).tunnel(),
        Some(owner.record().tunnel)
    );
}

#[tokio::test]
async fn a_served_request_seen_again_starts_no_second_rotation() {
    let rig = Rig::new("tun-rotate-once");
    let mut owner = rig.owner();
    let base = cluster(true, &[("node2", peer_wg(&key(), None, "100.64.0.2"))]);
    let asked = asked(&base);
    owner.pass(&asked).await;
    let first = rig.last_record().next_key.expect("next");
    assert!(
        rig.published
            .log()
            .iter()
            .any(|l| l == "delete /shibafu/v1/rotations/node1"),
        "the request is cleared once the next key is published"
    );
    rig.advance(ROTATION_WAIT_MS);
    owner.pass(&asked).await;
    assert_eq!(rig.last_record().public_key, first);
    // A state still holding the (deleted) request starts nothing new.
    owner.pass(&asked).await;
    assert_eq!(rig.last_record().next_key, None);
    assert_eq!(rig.last_record().public_key, first);
}

#[tokio::test]
async fn without_encrypted_networks_a_rotation_switches_at_once() {
    let rig = Rig::new("tun-rotate-off");
    let mut owner = rig.owner();
    let base = cluster(false, &[("node2", peer_wg(&key(), None, "100.64.0.2"))]);
    owner.pass(&base).await;
    let old = owner.record().public_key;
    owner.pass(&asked(&base)).await;
    assert_ne!(rig.last_record().public_key, old);
    assert_eq!(rig.last_record().next_key, None);
    assert!(rig.device.spec().is_none());
}

#[tokio::test]
async fn a_bad_peer_key_leaves_the_other_tunnels_up() {
    let rig = Rig::new("tun-bad-key");
    let mut owner = rig.owner();
    let good = key();
    let st = cluster(
        true,
        &[
            ("node2", peer_wg(&good, None, "100.64.0.2")),
            ("node3", peer_wg("not-a-key", None, "100.64.0.3")),
        ],
    );
    assert!(owner.pass(&st).await.tunnel.is_some());
    let dev = rig.device.device();
    assert_eq!(dev.peers.keys().collect::<Vec<_>>(), [&good]);
    assert_eq!(rig.last_status().error, None);
}
