//! Request and response bodies of the coordinator API, and the error body every shibafu API
//! (coordinator and agent) answers with.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::apply::Problem;
use crate::model::{key_fingerprint, Isolation, Node, TunnelStatus};

/// Body of `POST /v1/networks`. Addresses are text: the server parses them once and answers a
/// clear message for malformed input, whatever client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    /// Network name, a DNS label.
    pub name: String,
    /// IPv4 subnet in CIDR notation, `172.21.0.0/24`.
    pub subnet: String,
    /// Optional IPv6 subnet in CIDR notation, `fd00:21::/64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// DNS zone; the server defaults it to `<name>.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Overlay MTU; the agents default it to underlay MTU - 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// No route out of the cluster.
    #[serde(default)]
    pub internal: bool,
    /// Upstream DNS servers, `IP` or `IP:PORT` (`[IPv6]:PORT`); port 53 when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<String>,
    /// `strict`: ingress only from the network itself unless a policy allows.
    #[serde(default, skip_serializing_if = "Isolation::is_none")]
    pub isolation: Isolation,
    /// Carry traffic between nodes inside WireGuard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// Answer of `DELETE /v1/networks/{name}`: what was removed with the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedNetwork {
    /// Network name.
    pub name: String,
    /// Endpoints removed (non-zero only with `force`).
    pub endpoints: usize,
    /// IPAM blocks released.
    pub ipam_blocks: usize,
    /// Links to other networks removed.
    pub links: usize,
    /// Policies selecting the network removed, with their counters.
    #[serde(default)]
    pub policies: usize,
}

/// One node as `GET /v1/nodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Underlay address (the VTEP).
    pub underlay: IpAddr,
    /// Agent version.
    pub version: String,
    /// Unix time (seconds) the agent started.
    pub started_at: u64,
    /// Seconds since the agent started, by the coordinator's clock.
    pub age_secs: u64,
    /// Its WireGuard key and how its tunnels stand, when it has a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeTunnel>,
}

/// A node's WireGuard side in `node ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTunnel {
    /// Fingerprint of its key (first 8 base64 characters).
    pub key: String,
    /// Its full public key.
    pub public_key: String,
    /// Its tunnel address.
    pub tunnel: std::net::Ipv4Addr,
    /// Its WireGuard port.
    pub port: u16,
    /// It encrypts every network.
    pub encrypt_all: bool,
    /// A rotation is under way (the fingerprint of the next key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotating_to: Option<String>,
    /// What carries its device, empty while it is down.
    #[serde(default)]
    pub backend: String,
    /// Its device's MTU (0 while it is down).
    #[serde(default)]
    pub mtu: u32,
    /// Its device's configuration error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each peer: fingerprint of the key it has for it, and the last handshake.
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, PeerTunnelInfo>,
}

/// One tunnel as `node ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTunnelInfo {
    /// Fingerprint of the peer key configured.
    pub key: String,
    /// Seconds since the last handshake, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_age_secs: Option<u64>,
    /// Handshake within the last 180 s.
    pub up: bool,
}

impl NodeInfo {
    /// Builds the report of `node` at unix time `now` (seconds), with its tunnel status.
    pub fn from_node(node: &Node, status: Option<&TunnelStatus>, now: u64) -> NodeInfo {
        let wireguard = node.wg.as_ref().map(|w| NodeTunnel {
            key: key_fingerprint(&w.public_key),
            public_key: w.public_key.clone(),
            tunnel: w.tunnel,
            port: w.port,
            encrypt_all: w.encrypt_all,
            rotating_to: w.next_key.as_deref().map(key_fingerprint),
            backend: status.map(|s| s.backend.clone()).unwrap_or_default(),
            mtu: status.map_or(0, |s| s.mtu),
            error: status.and_then(|s| s.error.clone()),
            peers: status
                .map(|s| {
                    s.peers
                        .iter()
                        .map(|(n, p)| {
                            let info = PeerTunnelInfo {
                                key: p.key.clone(),
                                handshake_age_secs: p.last_handshake.map(|t| now.saturating_sub(t)),
                                up: p.is_up(now),
                            };
                            (n.clone(), info)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        NodeInfo {
            name: node.name.clone(),
            underlay: node.underlay,
            version: node.version.clone(),
            started_at: node.started_at,
            age_secs: now.saturating_sub(node.started_at),
            wireguard,
        }
    }
}

/// Answer of the agent's `GET /v1/tunnel`: how its node's encryption stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelReport {
    /// Is the device up?
    pub up: bool,
    /// What carries it (`kernel`, `userspace (boringtun-cli 0.7.1)`), when up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Why the kernel module is not used, when it was wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The last configuration error, if the device is not as it should be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Key fingerprint.
    pub key: String,
    /// Tunnel address.
    pub tunnel: String,
    /// Device MTU.
    pub mtu: u32,
    /// WireGuard port.
    pub port: u16,
    /// A key rotation is under way.
    pub rotating: bool,
}

/// Answer of `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the server and its store answer.
    pub status: String,
    /// Server version.
    pub version: String,
    /// The server's own certificate (name, role, expiry) when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::tls::CertInfo>,
}

/// What went wrong, as a machine-readable word; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed or invalid input (400).
    Invalid,
    /// The client's certificate does not allow the request (403).
    Forbidden,
    /// No such object or route (404).
    NotFound,
    /// An object with that name already exists (409).
    Duplicate,
    /// A subnet overlaps another network's (409).
    Overlap,
    /// The network still has endpoints attached (409).
    HasEndpoints,
    /// A concurrent change won, or a resource (VNIs, addresses) is exhausted (409).
    Conflict,
    /// The CNI attachment (container id, interface) exists already (409).
    Attached,
    /// The cluster store cannot be reached (503).
    Unavailable,
    /// A bug or an unexpected failure on the server (500).
    Internal,
    /// A kind this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The HTTP status code the server answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Duplicate
            | ErrorKind::Overlap
            | ErrorKind::HasEndpoints
            | ErrorKind::Attached
            | ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal | ErrorKind::Unknown => 500,
        }
    }
}

/// The error body of every shibafu API: `{"error": "...", "kind": "..."}`. The message is
/// written for the user and shown as is by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    /// Message for the user: what failed and what to do.
    pub error: String,
    /// Machine-readable kind.
    pub kind: ErrorKind,
    /// Every problem of a request refused for several reasons at once (`POST /v1/apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

impl ApiError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            error: message.into(),
            kind,
            problems: Vec::new(),
        }
    }

    /// A 400 error listing every problem of a request.
    pub fn with_problems(message: impl Into<String>, problems: Vec<Problem>) -> ApiError {
        ApiError {
            problems,
            ..ApiError::invalid(message)
        }
    }

    /// A 400 error.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Invalid, message)
    }

    /// A 404 error.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

/// Path of one network: `/v1/networks/<name>`, the name percent-encoded.
pub fn network_path(name: &str) -> String {
    format!("/v1/networks/{}", encode_segment(name))
}

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape_and_status() {
        let e = ApiError::new(ErrorKind::HasEndpoints, "network \"b\" has endpoints");
        let json = serde_json::to_value(&e).expect("ser");
        assert_eq!(
            json,
            serde_json::json!({"error": "network \"b\" has endpoints", "kind": "has_endpoints"})
        );
        assert_eq!(e.status(), 409);
        assert_eq!(e.to_string(), "network \"b\" has endpoints");
        assert_eq!(ApiError::invalid("x").status(), 400);
        assert_eq!(ApiError::not_found("x").status(), 404);
        assert_eq!(ErrorKind::Unavailable.status(), 503);
        let many = ApiError::with_problems(
            "2 problems",
            vec![
                Problem::new("networks/0/subnet", "bad"),
                Problem::new("", "in use"),
            ],
        );
        let json = serde_json::to_value(&many).expect("ser");
        assert_eq!(json["problems"][0]["path"], "networks/0/subnet");
        assert_eq!(many.status(), 400);
        assert_eq!(serde_json::from_value::<ApiError>(json).expect("de"), many);
    }

    #[test]
    fn unknown_error_kind_still_parses() {
        let e: ApiError =
            serde_json::from_str(r#"{"error":"later","kind":"quota_exceeded"}"#).expect("de");
        assert_eq!(e.kind, ErrorKind::Unknown);
        assert_eq!(e.error, "later");
    }

    #[test]
    fn create_network_defaults_and_unknown_fields() {
        let c: CreateNetwork =
            serde_json::from_str(r#"{"name":"f","subnet":"172.21.0.0/24"}"#).expect("de");
        assert_eq!(c.zone, None);
        assert!(!c.internal && c.forwarders.is_empty() && c.mtu.is_none());
        assert_eq!(
            serde_json::to_string(&c).expect("ser"),
            r#"{"name":"f","subnet":"172.21.0.0/24","internal":false}"#
        );
        let typo = serde_json::from_str::<CreateNetwork>(
            r#"{"name":"f","subnet":"172.21.0.0/24","subnet_6":"fd00::/64"}"#,
        );
        assert!(typo.is_err());
    }

    #[test]
    fn node_info_age() {
        let node = Node {
            schema: 1,
            name: "node1".into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "0.1.0".into(),
            wg: None,
            started_at: 1000,
        };
        assert_eq!(NodeInfo::from_node(&node, None, 1090).age_secs, 90);
        assert_eq!(NodeInfo::from_node(&node, None, 10).age_secs, 0);
        assert!(NodeInfo::from_node(&node, None, 10).wireguard.is_none());
    }

    #[test]
    fn node_info_shows_keys_and_tunnel_ages() {
        use crate::model::{NodeWireGuard, PeerTunnel};
        let node = Node {
            schema: 1,
            name: "node1".into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "0.1.0".into(),
            wg: Some(NodeWireGuard {
                public_key: "ABCDEFGHijklmnop".into(),
                port: 51820,
                tunnel: "100.64.0.7".parse().expect("ip"),
                next_key: Some("NEXTKEY0zzzz".into()),
                encrypt_all: false,
            }),
            started_at: 1000,
        };
        let status = TunnelStatus {
            schema: 1,
            node: "node1".into(),
            backend: "kernel".into(),
            mtu: 1440,
            error: None,
            peers: [
                (
                    "node2".to_string(),
                    PeerTunnel {
                        key: "k2".into(),
                        last_handshake: Some(1900),
                    },
                ),
                (
                    "node3".to_string(),
                    PeerTunnel {
                        key: "k3".into(),
                        last_handshake: None,
                    },
                ),
            ]
            .into(),
            accepted: Default::default(),
        };
        let info = NodeInfo::from_node(&node, Some(&status), 2000);
        let wg = info.wireguard.expect("wireguard");
        assert_eq!(wg.key, "ABCDEFGH");
        assert_eq!(wg.rotating_to.as_deref(), Some("NEXTKEY0"));
        assert_eq!(wg.peers["node2"].handshake_age_secs, Some(100));
        assert!(wg.peers["node2"].up);
        assert!(!wg.peers["node3"].up);
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(network_path("frontend"), "/v1/networks/frontend");
        assert_eq!(network_path("a b/c"), "/v1/networks/a%20b%2Fc");
    }
}
