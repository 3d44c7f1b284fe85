//! The WireGuard device a node should have, and what to change to get there (pure).
//!
//! Every other live node with a key is a peer: its current key owns its tunnel address
//! (allowed IPs `tunnel/32`), and while it rotates, its next key is a second peer with the same
//! endpoint and no allowed IPs, so a handshake with the new key is accepted before the switch.
//! When the switch is published the tunnel address moves to the new key and the old one goes,
//! in one change.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use wireguard_control::Key;

use crate::model::Node;

/// One peer entry the device should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// The node it belongs to.
    pub node: String,
    /// Where its device listens (underlay address and port).
    pub endpoint: SocketAddr,
    /// Its tunnel address, routed to it; `None` for a next key not in use yet.
    pub tunnel: Option<Ipv4Addr>,
}

/// The device: private key, port and peers by public key (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDevice {
    /// Public key (base64) of the private key the device should hold.
    pub public_key: String,
    /// Listening port.
    pub port: u16,
    /// Peers by public key.
    pub peers: BTreeMap<String, DesiredPeer>,
}

/// One peer entry as the device has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPeer {
    /// Its endpoint, if known.
    pub endpoint: Option<SocketAddr>,
    /// Its allowed IPs as `(address, prefix)`.
    pub allowed: Vec<(std::net::IpAddr, u8)>,
    /// Its persistent keepalive interval, if set.
    pub keepalive: Option<u16>,
    /// Unix time (seconds) of its last handshake.
    pub last_handshake: Option<u64>,
}

/// The device as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedDevice {
    /// Public key (base64) of the private key it holds, if any.
    pub public_key: Option<String>,
    /// Listening port.
    pub port: u16,
    /// Peers by public key.
    pub peers: BTreeMap<String, ObservedPeer>,
}

/// What to change: each part only when it differs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChange {
    /// Set the private key (the desired one).
    pub set_key: bool,
    /// Set the listening port.
    pub port: Option<u16>,
    /// Peers to add or reconfigure (their allowed IPs replaced).
    pub upsert: Vec<(String, DesiredPeer)>,
    /// Peers to remove, by public key.
    pub remove: Vec<String>,
    /// Peers of `upsert` the device already has (a userspace device takes them out and in).
    pub modified: Vec<String>,
}

impl DeviceChange {
    /// Nothing to do?
    pub fn is_empty(&self) -> bool {
        !self.set_key && self.port.is_none() && self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// The peers of node `me`: every other node in `nodes` with a valid key, and the next key of
/// each one rotating, keys in their canonical base64; and the nodes left out because a key of
/// theirs is not a WireGuard key (one bad record must not stop the others' tunnels).
pub fn desired_peers(me: &str, nodes: &[Node]) -> (BTreeMap<String, DesiredPeer>, Vec<String>) {
    let canonical = |k: &str| Key::from_base64(k).ok().map(|k| k.to_base64());
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for n in nodes.iter().filter(|n| n.name != me) {
        let Some(wg) = &n.wg else { continue };
        let Some(current) = canonical(&wg.public_key) else {
            bad.push(n.name.clone());
            continue;
        };
        let next = match &wg.next_key {
            None => None,
            Some(k) => match canonical(k) {
                Some(k) => Some(k).filter(|k| *k != current),
                None => {
                    bad.push(n.name.clone());
                    continue;
                }
            },
        };
        let endpoint = SocketAddr::new(n.underlay, wg.port);
        if let Some(next) = next {
            let peer = DesiredPeer {
                node: n.name.clone(),
                endpoint,
                tunnel: None,
            };
            out.insert(next, peer);
        }
        let peer = DesiredPeer {
            node: n.name.clone(),
            endpoint,
            tunnel: Some(wg.tunnel),
        };
        out.insert(current, peer);
    }
    (out, bad)
}

/// What turns `observed` into `desired`. A peer whose allowed IPs or keepalive differ is
/// reconfigured, and one whose endpoint differs from both what the device has and what was
/// last set (`applied`: a peer that roamed keeps its new endpoint, as WireGuard means it to);
/// peers the device has and the plan does not are removed.
pub fn diff(
    desired: &DesiredDevice,
    observed: &ObservedDevice,
    keepalive: u16,
    applied: &BTreeMap<String, SocketAddr>,
) -> DeviceChange {
    let mut change = DeviceChange {
        set_key: observed.public_key.as_deref() != Some(desired.public_key.as_str()),
        port: (observed.port != desired.port).then_some(desired.port),
        ..DeviceChange::default()
    };
    for (key, want) in &desired.peers {
        let allowed: Vec<(std::net::IpAddr, u8)> =
            want.tunnel.map(|t| (t.into(), 32)).into_iter().collect();
        let have = observed.peers.get(key);
        let same = have.is_some_and(|have| {
            let endpoint = have.endpoint == Some(want.endpoint)
                || (have.endpoint.is_some() && applied.get(key) == Some(&want.endpoint));
            endpoint && have.allowed == allowed && have.keepalive == Some(keepalive)
        });
        if !same {
            if have.is_some() {
                change.modified.push(key.clone());
            }
            change.upsert.push((key.clone(), want.clone()));
        }
    }
    change.remove = observed
        .peers
        .keys()
        .filter(|k| !desired.peers.contains_key(*k))
        .cloned()
        .collect();
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeWireGuard, SCHEMA_VERSION};

    /// A valid key (base64 of 32 bytes of `i`).
    fn k(i: u8) -> String {
        Key([i; 32]).to_base64()
    }

    fn node(name: &str, ip: &str, key: &str, next: Option<&str>, tunnel: &str) -> Node {
        Node {
            schema: SCHEMA_VERSION,
            name: name.into(),
            underlay: ip.parse().expect("ip"),
            version: "t".into(),
            wg: Some(NodeWireGuard {
                public_key: key.into(),
                port: 51820,
                tunnel: tunnel.parse().expect("ip"),
                next_key: next.map(str::to_string),
                encrypt_all: false,
            }),
            started_at: 0,
        }
    }

    fn observed_of(d: &DesiredDevice) -> ObservedDevice {
        ObservedDevice {
            public_key: Some(d.public_key.clone()),
            port: d.port,
            peers: d
                .peers
                .iter()
                .map(|(k, p)| {
                    let peer = ObservedPeer {
                        endpoint: Some(p.endpoint),
                        allowed: p.tunnel.map(|t| (t.into(), 32)).into_iter().collect(),
                        keepalive: Some(25),
                        last_handshake: Some(5),
                    };
                    (k.clone(), peer)
                })
                .collect(),
        }
    }

    fn device(me: &str, nodes: &[Node]) -> DesiredDevice {
        DesiredDevice {
            public_key: k(1),
            port: 51820,
            peers: desired_peers(me, nodes).0,
        }
    }

    #[test]
    fn every_other_node_with_a_key_is_a_peer_a_rotating_one_twice_and_bad_keys_are_left_out() {
        let mut plain = node("c", "10.0.0.13", &k(3), None, "100.64.0.3");
        plain.wg = None;
        let nodes = [
            node("a", "10.0.0.11", &k(1), None, "100.64.0.1"),
            node("b", "10.0.0.12", &k(2), Some(&k(22)), "100.64.0.2"),
            plain,
            node("d", "10.0.0.14", "not a key", None, "100.64.0.4"),
            node("e", "10.0.0.15", &k(5), Some("bad"), "100.64.0.5"),
        ];
        let (peers, bad) = desired_peers("a", &nodes);
        assert_eq!(peers.keys().collect::<Vec<_>>(), [&k(2), &k(22)]);
        assert_eq!(bad, ["d", "e"]);
        assert_eq!(peers[&k(2)].tunnel, Some("100.64.0.2".parse().expect("ip")));
        assert_eq!(peers[&k(22)].tunnel, None);
        assert_eq!(
            peers[&k(22)].endpoint,
            "10.0.0.12:51820".parse().expect("addr")
        );
    }

    #[test]
    fn a_device_as_planned_needs_nothing_and_a_switch_moves_the_address_in_one_change() {
        let before = [
            node("a", "10.0.0.11", &k(1), None, "100.64.0.1"),
            node("b", "10.0.0.12", &k(2), Some(&k(22)), "100.64.0.2"),
        ];
        let desired = device("a", &before);
        let have = observed_of(&desired);
        let none = BTreeMap::new();
        assert!(diff(&desired, &have, 25, &none).is_empty());
        // b switched: its next key takes the address (a changed peer), the old one goes.
        let after = [
            node("a", "10.0.0.11", &k(1), None, "100.64.0.1"),
            node("b", "10.0.0.12", &k(22), None, "100.64.0.2"),
        ];
        let change = diff(&device("a", &after), &have, 25, &none);
        assert!(!change.set_key && change.port.is_none());
        assert_eq!(change.upsert.len(), 1);
        assert_eq!(change.upsert[0].0, k(22));
        assert_eq!(change.modified, [k(22)]);
        assert_eq!(change.remove, [k(2)]);
    }

    #[test]
    fn a_node_gone_from_the_cluster_loses_its_peers_and_the_others_are_left_alone() {
        let all = [
            node("a", "10.0.0.11", &k(1), None, "100.64.0.1"),
            node("b", "10.0.0.12", &k(2), None, "100.64.0.2"),
            node("c", "10.0.0.13", &k(3), Some(&k(33)), "100.64.0.3"),
        ];
        let have = observed_of(&device("a", &all));
        assert_eq!(have.peers.len(), 3);
        let none = BTreeMap::new();
        // c's lease ended: its record is gone from the cluster state, and both of its keys (it
        // was rotating) leave the device; b's peer is not touched.
        let change = diff(&device("a", &all[..2]), &have, 25, &none);
        assert_eq!(change.remove, [k(3), k(33)]);
        assert!(change.upsert.is_empty() && change.modified.is_empty());
        assert!(!change.set_key && change.port.is_none());
        // The last other node gone: no peer is left.
        let change = diff(&device("a", &all[..1]), &have, 25, &none);
        assert_eq!(change.remove, [k(2), k(3), k(33)]);
        assert!(change.upsert.is_empty());
    }

    #[test]
    fn a_fresh_device_gets_key_port_and_peers_and_a_roamed_peer_keeps_its_endpoint() {
        let nodes = [node("b", "10.0.0.12", &k(2), None, "100.64.0.2")];
        let desired = device("a", &nodes);
        let none = BTreeMap::new();
        let change = diff(&desired, &ObservedDevice::default(), 25, &none);
        assert!(change.set_key);
        assert_eq!(change.port, Some(51820));
        assert_eq!(change.upsert.len(), 1);
        assert!(change.modified.is_empty());
        // A drifted keepalive is put back.
        let mut have = observed_of(&desired);
        have.peers.get_mut(&k(2)).expect("peer").keepalive = None;
        assert_eq!(diff(&desired, &have, 25, &none).upsert.len(), 1);
        // A peer that roamed after its endpoint was set keeps the new one.
        let mut roamed = observed_of(&desired);
        roamed.peers.get_mut(&k(2)).expect("peer").endpoint =
            Some("192.0.2.9:4000".parse().expect("addr"));
        assert_eq!(diff(&desired, &roamed, 25, &none).upsert.len(), 1);
        let applied = BTreeMap::from([(k(2), "10.0.0.12:51820".parse().expect("addr"))]);
        assert!(diff(&desired, &roamed, 25, &applied).is_empty());
    }
}
