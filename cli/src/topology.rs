//! `shibafu network topology [--format text|dot|svg]`: the nodes, networks, containers,
//! services, links and policies of the cluster, as text, as Graphviz DOT, or as an SVG picture
//! drawn by Graphviz's `dot` when it is installed. Rendering is pure; only `svg` runs a program.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use shibafu_overlay::api::NodeInfo;
use shibafu_overlay::model::{
    Action, Direction, Endpoint, Link, Network, Policy, Proto, Rule, Service,
};

use crate::context::Context;
use crate::output;

/// Output format of `network topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyFormat {
    /// Indented text.
    Text,
    /// Graphviz DOT source.
    Dot,
    /// An SVG picture (needs Graphviz's `dot` on PATH).
    Svg,
}

/// Flags of `shibafu network topology`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = TopologyFormat::Text)]
    pub format: TopologyFormat,
}

/// The cluster as the picture shows it.
#[derive(Debug, Default)]
pub struct Topology {
    /// Live nodes.
    pub nodes: Vec<NodeInfo>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Endpoints (container interfaces).
    pub endpoints: Vec<Endpoint>,
    /// Services.
    pub services: Vec<Service>,
    /// Links between networks.
    pub links: Vec<Link>,
    /// Policies.
    pub policies: Vec<Policy>,
}

/// Runs `network topology`.
pub async fn run(args: TopologyArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let c = ctx.coordinator()?;
    let topo = Topology {
        nodes: c.list_nodes().await?,
        networks: c.list_networks().await?,
        endpoints: c.list_endpoints().await?,
        services: c
            .list_services()
            .await?
            .into_iter()
            .map(|s| s.service)
            .collect(),
        links: c.list_links().await?,
        policies: c.list_policies().await?,
    };
    let bytes = match args.format {
        TopologyFormat::Text => text(&topo).into_bytes(),
        TopologyFormat::Dot => dot(&topo).into_bytes(),
        TopologyFormat::Svg => svg(&dot(&topo))?,
    };
    out.write_all(&bytes).context("cannot write to stdout")
}

/// A rule in words: `deny ingress from frontend`, `allow egress to backend port 5432/tcp`.
pub fn rule_words(r: &Rule) -> String {
    let action = match r.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    let dir = match r.direction {
        Direction::Ingress => "ingress from",
        Direction::Egress => "egress to",
    };
    let mut s = format!("{action} {dir} {}", r.peer);
    let proto = match r.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
        Proto::Any => "any",
    };
    if !r.ports.is_empty() {
        let ports: Vec<String> = r.ports.iter().map(ToString::to_string).collect();
        s.push_str(&format!(" port {}/{proto}", ports.join(",")));
    } else if r.proto != Proto::Any {
        s.push_str(&format!(" ({proto})"));
    }
    s
}

/// Endpoints grouped by node, then by container name: one container may be on several networks.
fn containers_by_node(t: &Topology) -> BTreeMap<&str, BTreeMap<&str, Vec<&Endpoint>>> {
    let mut by: BTreeMap<&str, BTreeMap<&str, Vec<&Endpoint>>> = BTreeMap::new();
    for n in &t.nodes {
        by.entry(n.name.as_str()).or_default();
    }
    for e in &t.endpoints {
        by.entry(e.node.as_str())
            .or_default()
            .entry(e.name.as_str())
            .or_default()
            .push(e);
    }
    by
}

/// The text form: one section each for nodes, networks (with their containers), services,
/// links and policies.
pub fn text(t: &Topology) -> String {
    let mut out = String::from("Nodes:\n");
    let by_node = containers_by_node(t);
    let rows: Vec<Vec<String>> = by_node
        .iter()
        .map(|(node, cs)| {
            let underlay = t
                .nodes
                .iter()
                .find(|n| n.name == *node)
                .map_or_else(|| "down".to_string(), |n| n.underlay.to_string());
            let names: Vec<&str> = cs.keys().copied().collect();
            vec![
                format!("  {node}"),
                underlay,
                format!("{} container(s)", names.len()),
            ]
        })
        .collect();
    out.push_str(&output::columns(&rows));
    out.push_str("\nNetworks:\n");
    for n in &t.networks {
        let mut flags = format!("zone {}, vni {}", n.zone, n.vni);
        if n.internal {
            flags.push_str(", internal");
        }
        flags.push_str(&format!(", isolation {}", n.isolation));
        out.push_str(&format!("  {} {} ({flags})\n", n.name, n.subnet));
        let rows: Vec<Vec<String>> = t
            .endpoints
            .iter()
            .filter(|e| e.network == n.name)
            .map(|e| {
                let mut row = vec![
                    format!("    {}", e.name),
                    e.ipv4.to_string(),
                    e.node.clone(),
                ];
                row.extend(e.service.as_ref().map(|s| format!("service {s}")));
                row
            })
            .collect();
        if rows.is_empty() {
            out.push_str("    (no containers)\n");
        }
        out.push_str(&output::columns(&rows));
    }
    out.push_str("\nServices:\n");
    for s in &t.services {
        let instances: Vec<String> = t
            .endpoints
            .iter()
            .filter(|e| e.network == s.network && e.service.as_deref() == Some(&s.name))
            .map(|e| format!("{} ({})", e.name, e.node))
            .collect();
        out.push_str(&format!(
            "  {}.{}: {}\n",
            s.name,
            zone_of(t, &s.network),
            if instances.is_empty() {
                "no instances".to_string()
            } else {
                instances.join(", ")
            }
        ));
    }
    out.push_str("\nLinks:\n");
    for l in &t.links {
        out.push_str(&format!("  {} <-> {}\n", l.a, l.b));
    }
    out.push_str("\nPolicies:\n");
    for p in &t.policies {
        let on = p.service.as_ref().map_or_else(
            || p.network.clone(),
            |s| format!("{} service {s}", p.network),
        );
        out.push_str(&format!("  {} on {on}\n", p.name));
        for (i, r) in p.rules.iter().enumerate() {
            out.push_str(&format!("    rule {}: {}\n", i + 1, rule_words(r)));
        }
    }
    out
}

fn zone_of<'a>(t: &'a Topology, network: &'a str) -> &'a str {
    t.networks
        .iter()
        .find(|n| n.name == network)
        .map_or(network, |n| n.zone.as_str())
}

/// A DOT string literal.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The DOT form: nodes are boxes (clusters) holding their containers; networks are ellipses
/// joined to their containers; services point at their instances; links join networks; each
/// policy is a note on the network it selects.
pub fn dot(t: &Topology) -> String {
    let mut out = String::from(
        "digraph shibafu {\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"shibafu topology\", labelloc=t, nodesep=0.4];\n  node [fontname=\"Helvetica\", fontsize=11, shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n  edge [fontname=\"Helvetica\", fontsize=9, arrowhead=none];\n",
    );
    for (node, containers) in containers_by_node(t) {
        let underlay = t
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map_or_else(|| "down".to_string(), |n| n.underlay.to_string());
        out.push_str(&format!(
            "  subgraph {} {{\n    label={}; style=\"rounded,dashed\"; color=\"#6b7280\";\n",
            q(&format!("cluster_node_{node}")),
            q(&format!("node {node}\n{underlay}"))
        ));
        for (name, eps) in containers {
            let addrs: Vec<String> = eps.iter().map(|e| e.ipv4.to_string()).collect();
            out.push_str(&format!(
                "    {} [label={}, fillcolor=\"#dbeafe\"];\n",
                q(&format!("c:{node}/{name}")),
                q(&format!("{name}\n{}", addrs.join("\n")))
            ));
        }
        out.push_str("  }\n");
    }
    for n in &t.networks {
        out.push_str(&format!(
            "  {} [shape=ellipse, label={}, fillcolor=\"#fde68a\"];\n",
            q(&format!("n:{}", n.name)),
            q(&format!("network {}\n{}\n{}", n.name, n.subnet, n.zone))
        ));
    }
    for e in &t.endpoints {
        out.push_str(&format!(
            "  {} -> {} [color=\"#2563eb\"];\n",
            q(&format!("c:{}/{}", e.node, e.name)),
            q(&format!("n:{}", e.network))
        ));
    }
    for s in &t.services {
        let id = q(&format!("s:{}/{}", s.network, s.name));
        out.push_str(&format!(
            "  {id} [shape=hexagon, label={}, fillcolor=\"#bbf7d0\"];\n",
            q(&format!("service {}.{}", s.name, zone_of(t, &s.network)))
        ));
        for e in t
            .endpoints
            .iter()
            .filter(|e| e.network == s.network && e.service.as_deref() == Some(&s.name))
        {
            out.push_str(&format!(
                "  {id} -> {} [style=dashed, arrowhead=normal, color=\"#16a34a\"];\n",
                q(&format!("c:{}/{}", e.node, e.name))
            ));
        }
    }
    for l in &t.links {
        out.push_str(&format!(
            "  {} -> {} [label=\"link\", penwidth=2, color=\"#92400e\"];\n",
            q(&format!("n:{}", l.a)),
            q(&format!("n:{}", l.b))
        ));
    }
    for p in &t.policies {
        let mut label = format!("policy {}", p.name);
        if let Some(s) = &p.service {
            label.push_str(&format!(" (service {s})"));
        }
        for (i, r) in p.rules.iter().enumerate() {
            label.push_str(&format!("\n{}. {}", i + 1, rule_words(r)));
        }
        let id = q(&format!("p:{}", p.name));
        out.push_str(&format!(
            "  {id} [shape=note, label={}, fillcolor=\"#fecaca\"];\n  {id} -> {} [style=dotted, arrowhead=normal, color=\"#b91c1c\"];\n",
            q(&label),
            q(&format!("n:{}", p.network))
        ));
    }
    out.push_str("}\n");
    out
}

/// Draws `dot_source` as SVG with Graphviz's `dot`.
fn svg(dot_source: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "--format svg needs Graphviz's dot ({e}): install graphviz (deploy/install-deps.sh does), or use --format dot and draw it elsewhere"
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_source.as_bytes())
            .context("writing to dot")?;
    }
    let done = child.wait_with_output().context("waiting for dot")?;
    if !done.status.success() {
        anyhow::bail!(
            "dot -Tsvg failed ({}): {}",
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    Ok(done.stdout)
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
