//! Typed etcd keys of the v1 schema: formatting and parsing `/shibafu/v1/...` paths.

use std::fmt;

/// Prefix of every key shibafu writes.
pub const ROOT: &str = "/shibafu/v1/";

/// A key of the v1 schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `/shibafu/v1/networks/<net>`
    Network(String),
    /// `/shibafu/v1/nodes/<node>`
    Node(String),
    /// `/shibafu/v1/ipam/<net>/blocks/<cidr with '_' for '/'>`
    IpamBlock {
        /// Network name.
        network: String,
        /// Block CIDR as text, `172.21.0.0/28`.
        cidr: String,
    },
    /// `/shibafu/v1/endpoints/<net>/<id>`
    Endpoint {
        /// Network name.
        network: String,
        /// Endpoint id.
        id: String,
    },
    /// `/shibafu/v1/health/<net>/<id>`
    Health {
        /// Network name.
        network: String,
        /// Endpoint id.
        id: String,
    },
    /// `/shibafu/v1/services/<net>/<name>`
    Service {
        /// Network name.
        network: String,
        /// Service name.
        name: String,
    },
    /// `/shibafu/v1/coordinators/<name>`: a live coordinator, under its lease.
    Coordinator(String),
    /// `/shibafu/v1/policies/<name>`
    Policy(String),
    /// `/shibafu/v1/policy-counters/<policy>/<node>`: one node's counters of a policy's rules,
    /// under that node's lease.
    PolicyCounters {
        /// Policy name.
        policy: String,
        /// Node name.
        node: String,
    },
    /// `/shibafu/v1/problems/<net>/<node>`: why a node does not build a network.
    Problem {
        /// Network name.
        network: String,
        /// Node name.
        node: String,
    },
    /// `/shibafu/v1/links/<a>+<b>`
    Link(String, String),
    /// `/shibafu/v1/tunnels/<node>`: how a node's WireGuard tunnels stand, under its lease.
    Tunnel(String),
    /// `/shibafu/v1/rotations/<node>`: a request that a node rotate its WireGuard key.
    Rotation(String),
    /// `/shibafu/v1/guards/<name>`: bumped by every change of a kind (such as `networks`) so a
    /// transaction can compare its mod revision and lose to a concurrent change.
    Guard(String),
}

impl Key {
    /// Parses a full key; `None` for anything outside the v1 schema.
    pub fn parse(s: &str) -> Option<Key> {
        let rest = s.strip_prefix(ROOT)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let nonempty = |p: &str| !p.is_empty();
        match parts.as_slice() {
            ["networks", n] if nonempty(n) => Some(Key::Network(n.to_string())),
            ["nodes", n] if nonempty(n) => Some(Key::Node(n.to_string())),
            ["ipam", n, "blocks", c] if nonempty(n) && nonempty(c) => Some(Key::IpamBlock {
                network: n.to_string(),
                cidr: c.replace('_', "/"),
            }),
            ["endpoints", n, id] if nonempty(n) && nonempty(id) => Some(Key::Endpoint {
                network: n.to_string(),
                id: id.to_string(),
            }),
            ["health", n, id] if nonempty(n) && nonempty(id) => Some(Key::Health {
                network: n.to_string(),
                id: id.to_string(),
            }),
            ["services", n, s] if nonempty(n) && nonempty(s) => Some(Key::Service {
                network: n.to_string(),
                name: s.to_string(),
            }),
            ["coordinators", n] if nonempty(n) => Some(Key::Coordinator(n.to_string())),
            ["policies", n] if nonempty(n) => Some(Key::Policy(n.to_string())),
            ["policy-counters", p, node] if nonempty(p) && nonempty(node) => {
                Some(Key::PolicyCounters {
                    policy: p.to_string(),
                    node: node.to_string(),
                })
            }
            ["problems", n, node] if nonempty(n) && nonempty(node) => Some(Key::Problem {
                network: n.to_string(),
                node: node.to_string(),
            }),
            ["guards", n] if nonempty(n) => Some(Key::Guard(n.to_string())),
            ["tunnels", n] if nonempty(n) => Some(Key::Tunnel(n.to_string())),
            ["rotations", n] if nonempty(n) => Some(Key::Rotation(n.to_string())),
            ["links", ab] => {
                let (a, b) = ab.split_once('+')?;
                (nonempty(a) && nonempty(b)).then(|| Key::Link(a.to_string(), b.to_string()))
            }
            _ => None,
        }
    }
}

/// A typed key prefix: what to list or watch, without spelling paths by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefix {
    /// Everything shibafu stores (`/shibafu/v1/`).
    All,
    /// Every network.
    Networks,
    /// Every node record.
    Nodes,
    /// Every endpoint.
    Endpoints,
    /// The endpoints of one network.
    EndpointsOf(String),
    /// Every IPAM block (`/shibafu/v1/ipam/`).
    Blocks,
    /// The IPAM blocks of one network.
    BlocksOf(String),
    /// Every service.
    Services,
    /// The services of one network.
    ServicesOf(String),
    /// Every live coordinator.
    Coordinators,
    /// Every network policy.
    Policies,
    /// Every node's counters of one network policy.
    PolicyCountersOf(String),
    /// Every health record.
    Health,
    /// The health records of one network.
    HealthOf(String),
    /// Every link.
    Links,
    /// Every problem report.
    Problems,
    /// The problem reports about one network.
    ProblemsOf(String),
    /// Every node's tunnel status.
    Tunnels,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::All => write!(f, "{ROOT}"),
            Prefix::Networks => write!(f, "{ROOT}networks/"),
            Prefix::Nodes => write!(f, "{ROOT}nodes/"),
            Prefix::Endpoints => write!(f, "{ROOT}endpoints/"),
            Prefix::EndpointsOf(n) => write!(f, "{ROOT}endpoints/{n}/"),
            Prefix::Blocks => write!(f, "{ROOT}ipam/"),
            Prefix::BlocksOf(n) => write!(f, "{ROOT}ipam/{n}/blocks/"),
            Prefix::Services => write!(f, "{ROOT}services/"),
            Prefix::ServicesOf(n) => write!(f, "{ROOT}services/{n}/"),
            Prefix::Coordinators => write!(f, "{ROOT}coordinators/"),
            Prefix::Policies => write!(f, "{ROOT}policies/"),
            Prefix::PolicyCountersOf(p) => write!(f, "{ROOT}policy-counters/{p}/"),
            Prefix::Health => write!(f, "{ROOT}health/"),
            Prefix::HealthOf(n) => write!(f, "{ROOT}health/{n}/"),
            Prefix::Links => write!(f, "{ROOT}links/"),
            Prefix::Problems => write!(f, "{ROOT}problems/"),
            Prefix::ProblemsOf(n) => write!(f, "{ROOT}problems/{n}/"),
            Prefix::Tunnels => write!(f, "{ROOT}tunnels/"),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Network(n) => write!(f, "{ROOT}networks/{n}"),
            Key::Node(n) => write!(f, "{ROOT}nodes/{n}"),
            Key::IpamBlock { network, cidr } => {
                write!(f, "{ROOT}ipam/{network}/blocks/{}", cidr.replace('/', "_"))
            }
            Key::Endpoint { network, id } => write!(f, "{ROOT}endpoints/{network}/{id}"),
            Key::Health { network, id } => write!(f, "{ROOT}health/{network}/{id}"),
            Key::Service { network, name } => write!(f, "{ROOT}services/{network}/{name}"),
            Key::Coordinator(n) => write!(f, "{ROOT}coordinators/{n}"),
            Key::Policy(n) => write!(f, "{ROOT}policies/{n}"),
            Key::PolicyCounters { policy, node } => {
                write!(f, "{ROOT}policy-counters/{policy}/{node}")
            }
            Key::Problem { network, node } => write!(f, "{ROOT}problems/{network}/{node}"),
            Key::Link(a, b) => write!(f, "{ROOT}links/{a}+{b}"),
            Key::Guard(n) => write!(f, "{ROOT}guards/{n}"),
            Key::Tunnel(n) => write!(f, "{ROOT}tunnels/{n}"),
            Key::Rotation(n) => write!(f, "{ROOT}rotations/{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let keys = [
            Key::Network("frontend".into()),
            Key::Node("node1".into()),
            Key::IpamBlock {
                network: "f".into(),
                cidr: "172.21.0.0/28".into(),
            },
            Key::Endpoint {
                network: "f".into(),
                id: "node1-web".into(),
            },
            Key::Health {
                network: "f".into(),
                id: "node1-web".into(),
            },
            Key::Policy("p".into()),
            Key::PolicyCounters {
                policy: "p".into(),
                node: "node1".into(),
            },
            Key::Service {
                network: "f".into(),
                name: "web".into(),
            },
            Key::Coordinator("c1".into()),
            Key::Problem {
                network: "f".into(),
                node: "node1".into(),
            },
            Key::Link("a".into(), "b".into()),
            Key::Guard("networks".into()),
        ];
        for k in keys {
            assert_eq!(Key::parse(&k.to_string()), Some(k));
        }
    }

    #[test]
    fn rejects_foreign_keys() {
        assert_eq!(Key::parse("/other/v1/networks/x"), None);
        assert_eq!(Key::parse("/shibafu/v1/networks/"), None);
        assert_eq!(Key::parse("/shibafu/v1/endpoints/x"), None);
        assert_eq!(Key::parse("/shibafu/v1/links/ab"), None);
    }
}
