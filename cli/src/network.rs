//! `shibafu network ...`: cluster-wide network management via the coordinator; `attach` and
//! `detach` go to this host's agent, links to [`crate::links`].

use std::io::Write;

use anyhow::Context as _;
use serde::Serialize;
use shibafu_overlay::api::{Coordinator, CreateNetwork};
use shibafu_overlay::model::{Endpoint, Network};

use crate::args::{CreateArgs, Format, NetworkCmd};
use crate::context::Context;
use crate::{attach, diagnose, dns_trace, links, output, policy, routes, topology};

/// Runs one network subcommand, writing its output to `out`.
pub async fn run(cmd: NetworkCmd, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = match cmd {
        NetworkCmd::Create(args) => {
            let net = ctx
                .coordinator()?
                .create_network(&create_request(args))
                .await?;
            format!("{}\n", net.name)
        }
        NetworkCmd::Ls(args) => {
            let nets = ctx.coordinator()?.list_networks().await?;
            match args.format {
                Format::Table => output::networks_table(&nets),
                Format::Json => output::json(&nets)?,
            }
        }
        NetworkCmd::Inspect { name } => inspect(&ctx.coordinator()?, &name).await?,
        NetworkCmd::Rm { name, force } => {
            let removed = ctx.coordinator()?.remove_network(&name, force).await?;
            format!("{}\n", removed.name)
        }
        NetworkCmd::Attach(args) => return attach::attach(args, ctx, out).await,
        NetworkCmd::Detach(args) => return attach::detach(args, ctx, out).await,
        NetworkCmd::ConnectNetworks { a, b } => return links::connect(&a, &b, ctx, out).await,
        NetworkCmd::Isolate { a, b } => return links::isolate(&a, &b, ctx, out).await,
        NetworkCmd::Links(args) => return links::list(args.format, ctx, out).await,
        NetworkCmd::Policy { cmd } => return policy::run(cmd, ctx, out).await,
        NetworkCmd::Routes(args) => return routes::run(args, ctx, out).await,
        NetworkCmd::Topology(args) => return topology::run(args, ctx, out).await,
        NetworkCmd::Diagnose(args) => return diagnose::run(args, ctx, out).await,
        NetworkCmd::DnsTrace(args) => return dns_trace::run(args, ctx, out).await,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// What `network inspect` shows: the stored network, the networks linked to it, and the nodes
/// that do not build it with the reason.
#[derive(Debug, Serialize)]
pub struct Inspected<'a> {
    /// The network as stored.
    #[serde(flatten)]
    pub network: &'a Network,
    /// Names of the networks linked to it, sorted.
    pub links: Vec<String>,
    /// Nodes that skip it, and why (empty when every node builds it).
    pub problems: Vec<Problem>,
    /// For an encrypted network: the overlay MTU on each node whose WireGuard device is up
    /// (its device MTU minus the VXLAN overhead, or the network's own if lower).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tunnel_mtu: std::collections::BTreeMap<String, u32>,
    /// The workloads on it, by name: where they are and who attached them.
    pub endpoints: Vec<EndpointRow>,
}

/// One workload of `network inspect`.
#[derive(Debug, Serialize)]
pub struct EndpointRow {
    /// DNS name.
    pub name: String,
    /// Node.
    pub node: String,
    /// IPv4 address.
    pub ipv4: std::net::Ipv4Addr,
    /// IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Service it is an instance of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `cni` for a namespace a runtime attached through CNI, else `shibafu`.
    pub owner: &'static str,
    /// The runtime's container id (CNI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// The rows of `network`'s endpoints among `all`, sorted by name.
pub fn endpoint_rows(all: Vec<Endpoint>, network: &str) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = all
        .into_iter()
        .filter(|e| e.network == network)
        .map(|e| EndpointRow {
            owner: if e.cni.is_some() { "cni" } else { "shibafu" },
            name: e.name,
            node: e.node,
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            service: e.service,
            container_id: e.cni,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The overlay MTU of `network` on each node of `nodes` whose WireGuard device is up.
pub fn tunnel_mtus(
    network: &Network,
    nodes: &[shibafu_overlay::api::NodeInfo],
) -> std::collections::BTreeMap<String, u32> {
    if !network.encrypted {
        return Default::default();
    }
    nodes
        .iter()
        .filter_map(|n| {
            let wg = n.wireguard.as_ref().filter(|w| w.mtu > 0)?;
            let inside = wg
                .mtu
                .saturating_sub(shibafu_overlay::plan::VXLAN_OVERHEAD_V4);
            Some((
                n.name.clone(),
                network.mtu.map_or(inside, |m| m.min(inside)),
            ))
        })
        .collect()
}

/// A node that does not build the network, and why.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The node.
    pub node: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// `network inspect`: the stored network as JSON, plus `links` and `problems`.
async fn inspect(coordinator: &Coordinator, name: &str) -> anyhow::Result<String> {
    let network = coordinator.get_network(name).await?;
    let links = links::peers(&coordinator.list_links().await?, name);
    let problems = coordinator
        .network_problems(name)
        .await?
        .into_iter()
        .map(|p| Problem {
            node: p.node,
            reason: p.reason,
        })
        .collect();
    let tunnel_mtu = if network.encrypted {
        tunnel_mtus(&network, &coordinator.list_nodes().await?)
    } else {
        Default::default()
    };
    let endpoints = endpoint_rows(coordinator.list_endpoints().await?, name);
    Ok(output::json(&Inspected {
        network: &network,
        links,
        problems,
        tunnel_mtu,
        endpoints,
    })?)
}

/// The API request of `network create`; the coordinator validates every field.
pub fn create_request(args: CreateArgs) -> CreateNetwork {
    CreateNetwork {
        name: args.name,
        subnet: args.subnet,
        subnet6: args.subnet6,
        zone: args.zone,
        mtu: args.mtu,
        internal: args.internal,
        forwarders: args.forwarders,
        isolation: args.isolation,
        encrypted: args.encrypted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::network;

    #[test]
    fn encrypted_networks_show_the_mtu_inside_each_nodes_tunnel() {
        use shibafu_overlay::api::{NodeInfo, NodeTunnel};
        let mut net = Network::new("secure", "172.30.0.0/24".parse().expect("net"), 4100);
        let node = |name: &str, mtu: u32| NodeInfo {
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "t".into(),
            started_at: 0,
            age_secs: 0,
            wireguard: Some(NodeTunnel {
                key: "k".into(),
                public_key: "k".into(),
                tunnel: "100.64.0.1".parse().expect("ip"),
                port: 51820,
                encrypt_all: false,
                rotating_to: None,
                backend: "kernel".into(),
                mtu,
                error: None,
                peers: Default::default(),
            }),
        };
        let nodes = [node("node1", 1440), node("node2", 0)];
        assert!(tunnel_mtus(&net, &nodes).is_empty());
        net.encrypted = true;
        let mtus = tunnel_mtus(&net, &nodes);
        assert_eq!(mtus.len(), 1, "a node whose device is down has none");
        assert_eq!(mtus["node1"], 1390);
        net.mtu = Some(1300);
        assert_eq!(tunnel_mtus(&net, &nodes)["node1"], 1300);
    }

    #[test]
    fn inspect_keeps_the_stored_order_and_adds_links() {
        let network: Network = serde_json::from_value(serde_json::json!({
            "schema": 1, "name": "frontend", "subnet": "172.21.0.0/24", "vni": 4096,
            "zone": "frontend.local", "internal": false
        }))
        .expect("network");
        let text = output::json(&Inspected {
            network: &network,
            links: vec!["backend".into()],
            problems: vec![Problem {
                node: "node2".into(),
                reason: "overlay MTU 1250 is below 1280".into(),
            }],
            tunnel_mtu: Default::default(),
            endpoints: endpoint_rows(
                vec![
                    Endpoint {
                        cni: Some("c0ffee".into()),
                        ..Endpoint::new(
                            "frontend",
                            "pod1",
                            "node2",
                            "172.21.0.9".parse().expect("ip"),
                        )
                    },
                    Endpoint::new("backend", "db", "node1", "172.22.0.2".parse().expect("ip")),
                    Endpoint::new(
                        "frontend",
                        "web",
                        "node1",
                        "172.21.0.2".parse().expect("ip"),
                    ),
                ],
                "frontend",
            ),
        })
        .expect("json");
        assert_eq!(
            text,
            r#"{
  "schema": 1,
  "name": "frontend",
  "subnet": "172.21.0.0/24",
  "vni": 4096,
  "zone": "frontend.local",
  "internal": false,
  "links": [
    "backend"
  ],
  "problems": [
    {
      "node": "node2",
      "reason": "overlay MTU 1250 is below 1280"
    }
  ],
  "endpoints": [
    {
      "name": "pod1",
      "node": "node2",
      "ipv4": "172.21.0.9",
      "owner": "cni",
      "container_id": "c0ffee"
    },
    {
      "name": "web",
      "node": "node1",
      "ipv4": "172.21.0.2",
      "owner": "shibafu"
    }
  ]
}
"#
        );
        let back: Network = serde_json::from_str(&text).expect("still a network");
        assert_eq!(back, network);
    }

    #[test]
    fn request_carries_every_flag() {
        let cmd = network(&[
            "create",
            "b",
            "172.22.0.0/24",
            "--subnet6",
            "fd00::/64",
            "--zone",
            "z.local",
            "--mtu",
            "1450",
            "--internal",
            "--forwarder",
            "10.0.0.53:53",
        ])
        .expect("parse");
        let NetworkCmd::Create(args) = cmd else {
            panic!("not create");
        };
        let req = create_request(args);
        assert_eq!(
            serde_json::to_value(&req).expect("json"),
            serde_json::json!({
                "name": "b", "subnet": "172.22.0.0/24", "subnet6": "fd00::/64", "zone": "z.local",
                "mtu": 1450, "internal": true, "forwarders": ["10.0.0.53:53"]
            })
        );
    }
}
