//! A kernel WireGuard device read and configured through wireguard-control's netlink backend.

use std::io;
use std::time::UNIX_EPOCH;

use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use super::plan::{DeviceChange, ObservedDevice, ObservedPeer};

fn name(ifname: &str) -> io::Result<InterfaceName> {
    ifname
        .parse()
        .map_err(|e| io::Error::other(format!("interface name {ifname:?}: {e:?}")))
}

/// Reads device `ifname`.
pub fn get(ifname: &str) -> io::Result<ObservedDevice> {
    let dev = Device::get(&name(ifname)?, Backend::Kernel)?;
    let peers = dev
        .peers
        .iter()
        .map(|p| {
            let c = &p.config;
            let handshake = p
                .stats
                .last_handshake_time
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .filter(|s| *s > 0);
            let peer = ObservedPeer {
                endpoint: c.endpoint,
                allowed: c.allowed_ips.iter().map(|a| (a.address, a.cidr)).collect(),
                keepalive: c.persistent_keepalive_interval.filter(|k| *k > 0),
                last_handshake: handshake,
            };
            (c.public_key.to_base64(), peer)
        })
        .collect();
    Ok(ObservedDevice {
        public_key: dev.public_key.map(|k| k.to_base64()),
        port: dev.listen_port.unwrap_or(0),
        peers,
    })
}

/// Applies `change` to device `ifname` (the kernel changes a peer in place).
pub fn set(ifname: &str, key: &Key, change: &DeviceChange, keepalive: u16) -> io::Result<()> {
    let peer_key = |k: &str| {
        Key::from_base64(k)
            .map_err(|_| io::Error::other(format!("peer key {k:?} is not a WireGuard key")))
    };
    let mut update = DeviceUpdate::new();
    if change.set_key {
        update = update.set_private_key(key.clone());
    }
    if let Some(port) = change.port {
        update = update.set_listen_port(port);
    }
    for k in &change.remove {
        update = update.remove_peer_by_key(&peer_key(k)?);
    }
    for (k, peer) in &change.upsert {
        let mut p = PeerConfigBuilder::new(&peer_key(k)?)
            .set_endpoint(peer.endpoint)
            .set_persistent_keepalive_interval(keepalive)
            .replace_allowed_ips();
        if let Some(t) = peer.tunnel {
            p = p.add_allowed_ip(t.into(), 32);
        }
        update = update.add_peer(p);
    }
    update.apply(&name(ifname)?, Backend::Kernel)
}
