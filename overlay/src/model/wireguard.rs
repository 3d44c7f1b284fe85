//! The encrypted overlay's records: a node's WireGuard facts (in its node record), how its
//! tunnels to each peer stand, and a request to rotate its key.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::telemetry::Trace;

/// A node's WireGuard facts, part of its node record: what peers configure it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeWireGuard {
    /// Public key (base64), the one its device uses now.
    pub public_key: String,
    /// UDP port its device listens on, on the node's underlay address.
    pub port: u16,
    /// Its address inside the tunnels: VXLAN of encrypted networks runs between these.
    pub tunnel: Ipv4Addr,
    /// The key it rotates to, published before use so peers add it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<String>,
    /// Every network's traffic to and from this node goes through the tunnels
    /// (`shibafu-agent run --encrypt-all`).
    #[serde(default)]
    pub encrypt_all: bool,
}

/// `/shibafu/v1/tunnels/<node>`: how one node's tunnels stand, under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Schema version.
    pub schema: u32,
    /// The node.
    pub node: String,
    /// Which implementation carries its tunnels (`kernel`, `userspace (boringtun-cli ...)`),
    /// empty while none is up.
    #[serde(default)]
    pub backend: String,
    /// MTU of its WireGuard device (0 while none is up).
    #[serde(default)]
    pub mtu: u32,
    /// Why its device is not configured as it should be, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each peer by node name.
    #[serde(default)]
    pub peers: BTreeMap<String, PeerTunnel>,
    /// Next keys of peers this node's device already knows, by peer: a rotating peer switches
    /// once every live node lists its next key here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accepted: BTreeMap<String, String>,
}

/// One peer as a node's device sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTunnel {
    /// Fingerprint of the peer key configured.
    pub key: String,
    /// Unix time (seconds) of the last completed handshake, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake: Option<u64>,
}

/// `/shibafu/v1/rotations/<node>`: a request that a node rotate its WireGuard key (written by
/// `shibafu node rotate-key`, deleted by the node once done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Schema version.
    pub schema: u32,
    /// The node whose key rotates.
    pub node: String,
    /// Unix time (milliseconds) of the request.
    pub requested_ms: u64,
    /// Trace context of the request.
    #[serde(default, skip_serializing_if = "Trace::is_none")]
    pub trace: Trace,
}

/// The short form of a public key shown to users: its first 8 base64 characters.
pub fn key_fingerprint(public_key: &str) -> String {
    public_key.chars().take(8).collect()
}

/// Seconds after a handshake within which a tunnel counts as up: WireGuard rejects a session
/// older than 180 s, and a live peer (with keepalives) renews it every 120 s.
pub const HANDSHAKE_FRESH_SECS: u64 = 180;

impl PeerTunnel {
    /// Is the tunnel up at unix time `now` (a handshake within [`HANDSHAKE_FRESH_SECS`])?
    pub fn is_up(&self, now: u64) -> bool {
        self.last_handshake
            .is_some_and(|t| now.saturating_sub(t) <= HANDSHAKE_FRESH_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_short_and_tunnels_go_stale() {
        assert_eq!(
            key_fingerprint("aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28="),
            "aGVsbG8g"
        );
        let p = PeerTunnel {
            key: "k".into(),
            last_handshake: Some(1000),
        };
        assert!(p.is_up(1000 + HANDSHAKE_FRESH_SECS));
        assert!(!p.is_up(1001 + HANDSHAKE_FRESH_SECS));
        let never = PeerTunnel {
            key: "k".into(),
            last_handshake: None,
        };
        assert!(!never.is_up(0));
    }

    #[test]
    fn old_node_records_without_wireguard_still_read() {
        let n: NodeWireGuard =
            serde_json::from_str(r#"{"public_key":"k","port":51820,"tunnel":"100.64.0.9"}"#)
                .expect("json");
        assert!(!n.encrypt_all && n.next_key.is_none());
    }
}
