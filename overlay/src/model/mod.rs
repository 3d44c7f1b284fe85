//! The cluster state schema stored in etcd (v1): networks, nodes, endpoints, links, IPAM blocks,
//! and the problems nodes report about networks.
//!
//! Every value carries `schema` (the schema version) and knows its own key ([`Object`]); values
//! are read back through [`decode`], which checks the version and that value and key agree.
//! Validation lives here so the coordinator, the agent and the CLI reject the same bad input with
//! the same message.

mod mac;
mod network;
mod object;
mod policy;
mod records;
mod service;
mod wireguard;

pub use mac::{MacAddr, MacParseError};
pub use network::{
    admit, check_mtu, first_host_v4, first_host_v6, overlaps_v4, overlaps_v6, validate_subnet_v4,
    validate_subnet_v6, Conflict, Isolation, Network, MAX_MTU, MIN_MTU, MIN_MTU_V6,
};
pub use object::{decode, encode, DecodeError, Object};
pub use policy::{
    Action, Direction, Peer, Policy, PolicyCounters, PolicyError, PortRange, Proto, Rule,
};
pub use records::{CoordinatorRecord, Endpoint, IpamBlock, Link, NetworkProblem, Node};
pub use service::{
    answered, port_name_in, validate_weight, AllUnhealthy, Answered, Health, HealthCheck,
    HealthSpec, HealthState, LbPolicy, Probe, Protocol, Service, ServiceError, MAX_OUTPUT,
    MAX_WEIGHT, MIN_INTERVAL,
};
pub use wireguard::{
    key_fingerprint, NodeWireGuard, PeerTunnel, Rotation, TunnelStatus, HANDSHAKE_FRESH_SECS,
};

/// Schema version written into every stored value.
pub const SCHEMA_VERSION: u32 = 1;

/// Lowest VNI handed to a network (small VNIs are left to hand-built overlays).
pub const VNI_MIN: u32 = 4096;
/// Highest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Errors of model validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A name that is not a valid DNS label.
    #[error("invalid name {0:?}: use 1-63 lowercase letters, digits or '-', not starting or ending with '-'")]
    InvalidName(String),
    /// A zone that is not a valid DNS name.
    #[error("invalid zone {0:?}: use dot-separated DNS labels")]
    InvalidZone(String),
    /// A subnet whose prefix leaves no room for a gateway and endpoints.
    #[error("subnet {0} is too small: use a prefix of /29 or shorter for IPv4, /125 or shorter for IPv6")]
    SubnetTooSmall(String),
    /// A subnet given with host bits set.
    #[error("subnet {given} has host bits set: did you mean {network}?")]
    HostBitsSet {
        /// The subnet as given.
        given: String,
        /// The network address it probably meant.
        network: String,
    },
    /// An MTU outside what Linux links accept.
    #[error("mtu {0} out of range 576..=9000")]
    InvalidMtu(u32),
    /// An MTU too small for the network's IPv6 subnet.
    #[error(
        "mtu {mtu} is below {min}, the minimum for IPv6 (RFC 8200); raise --mtu or drop --subnet6"
    )]
    MtuTooSmallForIpv6 {
        /// The MTU.
        mtu: u32,
        /// The minimum.
        min: u32,
    },
    /// A VNI outside the range handed to networks.
    #[error("vni {0} out of range 4096..=16777215")]
    InvalidVni(u32),
}

/// Is `s` a valid DNS label usable as a network, node, container or service name?
pub fn is_valid_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Validates a name as a DNS label.
pub fn validate_name(s: &str) -> Result<(), ModelError> {
    if is_valid_label(s) {
        Ok(())
    } else {
        Err(ModelError::InvalidName(s.to_string()))
    }
}

/// Validates a DNS zone such as `backend.local` (no trailing dot, at most 253 bytes).
pub fn validate_zone(z: &str) -> Result<(), ModelError> {
    let ok = !z.is_empty() && z.len() <= 253 && z.split('.').all(is_valid_label);
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidZone(z.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network::new(name, subnet.parse().expect("subnet"), 4096)
    }

    #[test]
    fn labels() {
        assert!(is_valid_label("frontend"));
        assert!(is_valid_label("a-1"));
        assert!(!is_valid_label(""));
        assert!(!is_valid_label("-a"));
        assert!(!is_valid_label("a-"));
        assert!(!is_valid_label("Front"));
        assert!(!is_valid_label("a.b"));
        assert!(!is_valid_label(&"a".repeat(64)));
    }

    #[test]
    fn gateway_and_names() {
        let n = net("frontend", "172.21.0.0/24");
        assert_eq!(n.gateway(), "172.21.0.1".parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(n.bridge_name(), "sfbr1000");
        assert!(n.vxlan_name().len() <= 15);
        assert_eq!(n.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_networks() {
        assert!(matches!(
            net("x", "172.21.0.5/24").validate(),
            Err(ModelError::HostBitsSet { .. })
        ));
        assert!(matches!(
            net("x", "172.21.0.0/30").validate(),
            Err(ModelError::SubnetTooSmall(_))
        ));
        assert!(matches!(
            net("X", "172.21.0.0/24").validate(),
            Err(ModelError::InvalidName(_))
        ));
        let mut n = net("x", "172.21.0.0/24");
        n.zone = "bad..zone".into();
        assert!(matches!(n.validate(), Err(ModelError::InvalidZone(_))));
        n = net("x", "172.21.0.0/24");
        n.mtu = Some(100);
        assert_eq!(n.validate(), Err(ModelError::InvalidMtu(100)));
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let n = net("backend", "172.22.0.0/24");
        let s = serde_json::to_string(&n).expect("ser");
        assert_eq!(serde_json::from_str::<Network>(&s).expect("de"), n);
        let e: Endpoint = serde_json::from_str(
            r#"{"schema":1,"id":"n1-a","network":"b","name":"a","node":"n1","ipv4":"172.22.0.2","mac":"02:00:00:00:00:01"}"#,
        )
        .expect("endpoint");
        assert_eq!(e.weight, 1);
        assert!(e.aliases.is_empty());
    }

    #[test]
    fn admit_keeps_valid_networks_and_the_first_of_two_that_clash() {
        let mut bad = net("bad", "10.9.0.0/24");
        bad.zone = "bad..zone".into();
        let a = Network::new("a", "10.1.0.0/16".parse().expect("net"), 4096);
        let b = Network::new("b", "10.1.2.0/24".parse().expect("net"), 4097);
        let c = Network::new("c", "10.3.0.0/24".parse().expect("net"), 4096);
        let d = Network::new("d", "10.4.0.0/24".parse().expect("net"), 4098);
        let all = [d.clone(), c, b, bad, a.clone()];
        let (ok, refused) = admit(&all);
        assert_eq!(ok, [&a, &d]);
        let reasons: Vec<(&str, bool)> = refused
            .iter()
            .map(|(n, r)| (n.as_str(), r.contains("remove one of the two")))
            .collect();
        assert_eq!(reasons, [("b", true), ("bad", false), ("c", true)]);
        assert!(refused[1].1.contains("zone"));
        assert!(refused[2].1.contains("VNI 4096"));
    }

    #[test]
    fn ipv6_networks_need_an_mtu_of_1280() {
        let mut n = net("x", "172.21.0.0/24");
        n.subnet6 = Some("fd00::/64".parse().expect("net"));
        n.mtu = Some(1200);
        assert_eq!(
            n.validate(),
            Err(ModelError::MtuTooSmallForIpv6 {
                mtu: 1200,
                min: 1280
            })
        );
        n.mtu = Some(1280);
        assert_eq!(n.validate(), Ok(()));
    }

    #[test]
    fn link_is_canonical() {
        assert_eq!(Link::new("b", "a"), Link::new("a", "b"));
    }
}
