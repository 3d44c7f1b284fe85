//! The lab spec (SPEC.yaml): nodes, coordinators, networks to create, records of the upstream
//! DNS server.

use serde::Deserialize;

use crate::layout::{validate_node_name, LayoutError, MAX_COORDINATORS, MAX_NODES};

/// Nodes of a lab when neither `--nodes` nor a spec says otherwise.
pub const DEFAULT_NODES: usize = 3;
/// Coordinators of a lab when neither `--coordinators` nor a spec says otherwise.
pub const DEFAULT_COORDINATORS: usize = 1;

/// Errors of spec parsing and validation.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The YAML did not parse into a spec.
    #[error("lab spec: {0}")]
    Yaml(String),
    /// A node name or count is wrong.
    #[error("lab spec: {0}")]
    Layout(#[from] LayoutError),
    /// Two nodes share a name.
    #[error("lab spec: node {0:?} is listed twice")]
    DuplicateNode(String),
    /// `--nodes N` and the spec's list of node names disagree.
    #[error("lab spec names {spec} nodes but --nodes says {flag}: drop one of them")]
    CountMismatch {
        /// Count from the spec.
        spec: usize,
        /// Count from the flag.
        flag: usize,
    },
    /// A network entry is incomplete.
    #[error("lab spec: network {0:?} needs a name and a subnet")]
    Network(String),
}

/// Nodes as a count (`nodes: 3` -> node1..node3) or as a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NodesSpec {
    /// `node1`..`nodeN`.
    Count(usize),
    /// Explicit names.
    Names(Vec<String>),
}

/// A network the lab creates once it is up (through `shibafu network create`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network name.
    pub name: String,
    /// IPv4 subnet, `172.21.0.0/24`.
    pub subnet: String,
    /// Optional IPv6 subnet.
    #[serde(default)]
    pub subnet6: Option<String>,
    /// Optional DNS zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Optional MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// No way out of the cluster.
    #[serde(default)]
    pub internal: bool,
}

impl NetworkSpec {
    /// Arguments of `shibafu network create` for this network.
    pub fn create_args(&self) -> Vec<String> {
        let mut a = vec![
            "network".into(),
            "create".into(),
            self.name.clone(),
            self.subnet.clone(),
        ];
        if let Some(s6) = &self.subnet6 {
            a.extend(["--subnet6".into(), s6.clone()]);
        }
        if let Some(z) = &self.zone {
            a.extend(["--zone".into(), z.clone()]);
        }
        if let Some(m) = self.mtu {
            a.extend(["--mtu".into(), m.to_string()]);
        }
        if self.internal {
            a.push("--internal".into());
        }
        a
    }
}

/// The lab's "external" DNS: zones and records served by the upstream server on the control host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDnsSpec {
    /// Zones the server is authoritative for.
    pub zones: Vec<String>,
    /// Records, one per entry, `NAME [TTL] TYPE DATA`.
    pub records: Vec<String>,
}

impl Default for UpstreamDnsSpec {
    fn default() -> Self {
        UpstreamDnsSpec {
            zones: vec!["example.com".into()],
            records: [
                "example.com. 300 A 198.51.100.1",
                "www.example.com. 300 A 198.51.100.10",
                "www.example.com. 300 AAAA 2001:db8::10",
                "api.example.com. 300 A 198.51.100.20",
                "mail.example.com. 300 A 198.51.100.25",
                "example.com. 300 TXT \"shibafu lab upstream\"",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A whole lab spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// Nodes (default 3).
    #[serde(default)]
    pub nodes: Option<NodesSpec>,
    /// Coordinators (default 1), each on a host of its own.
    #[serde(default)]
    pub coordinators: Option<usize>,
    /// Networks to create after the lab is up.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// The upstream DNS server's zones and records.
    #[serde(default)]
    pub upstream_dns: UpstreamDnsSpec,
}

impl LabSpec {
    /// Parses a YAML spec.
    pub fn parse(yaml: &str) -> Result<LabSpec, SpecError> {
        let spec: LabSpec =
            serde_norway::from_str(yaml).map_err(|e| SpecError::Yaml(e.to_string()))?;
        for n in &spec.networks {
            if n.name.is_empty() || n.subnet.is_empty() {
                return Err(SpecError::Network(n.name.clone()));
            }
        }
        Ok(spec)
    }

    /// The node names of the lab, given an optional `--nodes N`.
    pub fn node_names(&self, flag: Option<usize>) -> Result<Vec<String>, SpecError> {
        let names = match (self.nodes.as_ref(), flag) {
            (Some(NodesSpec::Names(names)), Some(n)) if n != names.len() => {
                return Err(SpecError::CountMismatch {
                    spec: names.len(),
                    flag: n,
                })
            }
            (Some(NodesSpec::Names(names)), _) => names.clone(),
            (_, Some(n)) | (Some(&NodesSpec::Count(n)), None) => numbered(n)?,
            (None, None) => numbered(DEFAULT_NODES)?,
        };
        if names.is_empty() || names.len() > MAX_NODES {
            return Err(LayoutError::NodeCount(names.len()).into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            validate_node_name(n)?;
            if !seen.insert(n.as_str()) {
                return Err(SpecError::DuplicateNode(n.clone()));
            }
        }
        Ok(names)
    }

    /// How many coordinators, given an optional `--coordinators N` (which wins over the spec).
    pub fn coordinator_count(&self, flag: Option<usize>) -> Result<usize, SpecError> {
        let n = flag.or(self.coordinators).unwrap_or(DEFAULT_COORDINATORS);
        if n == 0 || n > MAX_COORDINATORS {
            return Err(LayoutError::CoordinatorCount(n).into());
        }
        Ok(n)
    }

    /// The records file handed to the upstream DNS server.
    pub fn records_file(&self) -> String {
        let mut s = String::from("# shibafu-lab upstream DNS records\n");
        for r in &self.upstream_dns.records {
            s.push_str(r);
            s.push('\n');
        }
        s
    }
}

fn numbered(n: usize) -> Result<Vec<String>, SpecError> {
    if n == 0 || n > MAX_NODES {
        return Err(LayoutError::NodeCount(n).into());
    }
    Ok((1..=n).map(|i| format!("node{i}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_three_numbered_nodes_and_example_com() {
        let s = LabSpec::parse("{}").expect("spec");
        assert_eq!(
            s.node_names(None).expect("names"),
            ["node1", "node2", "node3"]
        );
        assert_eq!(s.upstream_dns.zones, ["example.com"]);
        assert!(s
            .records_file()
            .contains("www.example.com. 300 A 198.51.100.10\n"));
        assert_eq!(s.node_names(Some(2)).expect("names"), ["node1", "node2"]);
    }

    #[test]
    fn parses_names_networks_and_records() {
        let s = LabSpec::parse(
            "nodes: [alpha, beta]\n\
             networks:\n  - name: frontend\n    subnet: 172.21.0.0/24\n    zone: f.local\n    internal: true\n\
             upstream_dns:\n  zones: [corp.test]\n  records: ['db.corp.test A 192.0.2.5']\n",
        )
        .expect("spec");
        assert_eq!(s.node_names(None).expect("names"), ["alpha", "beta"]);
        assert_eq!(
            s.networks[0].create_args(),
            [
                "network",
                "create",
                "frontend",
                "172.21.0.0/24",
                "--zone",
                "f.local",
                "--internal"
            ]
        );
        assert_eq!(s.upstream_dns.zones, ["corp.test"]);
        assert!(matches!(
            s.node_names(Some(3)),
            Err(SpecError::CountMismatch { spec: 2, flag: 3 })
        ));
    }

    #[test]
    fn count_in_spec_and_flag_override() {
        let s = LabSpec::parse("nodes: 5").expect("spec");
        assert_eq!(s.node_names(None).expect("names").len(), 5);
        assert_eq!(s.node_names(Some(1)).expect("names"), ["node1"]);
        assert_eq!(s.coordinator_count(None).expect("default"), 1);
        let s = LabSpec::parse("coordinators: 2").expect("spec");
        assert_eq!(s.coordinator_count(None).expect("spec"), 2);
        assert_eq!(s.coordinator_count(Some(3)).expect("flag"), 3);
        assert!(s.coordinator_count(Some(0)).is_err());
        assert!(s.coordinator_count(Some(9)).is_err());
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(matches!(
            LabSpec::parse("nodez: 3"),
            Err(SpecError::Yaml(_))
        ));
        let dup = LabSpec::parse("nodes: [a, a]").expect("spec");
        assert!(matches!(
            dup.node_names(None),
            Err(SpecError::DuplicateNode(_))
        ));
        let reserved = LabSpec::parse("nodes: [etcd]").expect("spec");
        assert!(matches!(
            reserved.node_names(None),
            Err(SpecError::Layout(_))
        ));
        let none = LabSpec::parse("nodes: 0").expect("spec");
        assert!(matches!(none.node_names(None), Err(SpecError::Layout(_))));
        assert!(matches!(
            LabSpec::parse("networks: [{name: x, subnet: ''}]"),
            Err(SpecError::Network(_))
        ));
    }
}
