//! The tunnel owner's metrics: whether the WireGuard device is up and with what, each peer's
//! time since its last handshake, tunnels up and down, and key rotations done.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use shibafu_overlay::metrics::{Collect, Exposition};

/// What the last pass saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelSample {
    /// The backend carrying the device, empty while it is down.
    pub backend: String,
    /// Each peer by node name, with the seconds since its last handshake (none yet: `None`).
    pub peers: Vec<(String, Option<u64>)>,
    /// How many of them are up.
    pub up: usize,
}

/// The metrics; the owner writes them after each pass.
#[derive(Default)]
pub struct TunnelMetrics {
    latest: Mutex<TunnelSample>,
    rotations: AtomicU64,
}

impl TunnelMetrics {
    /// Takes the sample of a pass.
    pub fn sample(&self, s: TunnelSample) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    /// One key rotation finished on this node.
    pub fn rotated(&self) {
        self.rotations.fetch_add(1, Relaxed);
    }
}

impl Collect for TunnelMetrics {
    fn collect(&self, out: &mut Exposition) {
        let s = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut up = out.gauge(
            "shibafu_wireguard_up",
            "1 while this node's WireGuard device is up, with the backend carrying it.",
            ["backend"],
        );
        let backend = if s.backend.is_empty() {
            "none"
        } else {
            s.backend.as_str()
        };
        up.add([backend], if s.backend.is_empty() { 0.0 } else { 1.0 });
        let mut peers = out.gauge(
            "shibafu_wireguard_peers",
            "Peers of this node's device by state: up (a handshake within 180 s) or down.",
            ["state"],
        );
        peers.add(["up"], s.up as f64);
        peers.add(["down"], s.peers.len().saturating_sub(s.up) as f64);
        let mut age = out.gauge(
            "shibafu_wireguard_handshake_age_seconds",
            "Seconds since the last handshake with each peer (absent before the first).",
            ["peer"],
        );
        for (peer, secs) in &s.peers {
            if let Some(secs) = secs {
                age.add([peer.as_str()], *secs as f64);
            }
        }
        let mut rotations = out.counter(
            "shibafu_wireguard_key_rotations_total",
            "Key rotations this node finished since its agent started.",
            [],
        );
        rotations.add([], self.rotations.load(Relaxed) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_device_peers_and_rotations() {
        let m = TunnelMetrics::default();
        m.sample(TunnelSample {
            backend: "kernel".into(),
            peers: vec![("node2".into(), Some(12)), ("node3".into(), None)],
            up: 1,
        });
        m.rotated();
        let mut out = Exposition::new();
        m.collect(&mut out);
        let text = out.render();
        assert!(
            text.contains("shibafu_wireguard_up{backend=\"kernel\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shibafu_wireguard_peers{state=\"down\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shibafu_wireguard_handshake_age_seconds{peer=\"node2\"} 12"),
            "{text}"
        );
        assert!(!text.contains("peer=\"node3\""), "{text}");
        assert!(
            text.contains("shibafu_wireguard_key_rotations_total 1"),
            "{text}"
        );
    }
}
