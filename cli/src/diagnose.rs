//! `shibafu network diagnose --from C1 --to C2 [--port P] [--protocol tcp|udp|icmp]`: checks the
//! path from one container to another step by step, each on the node that can see it, and
//! stops at the first step that fails. The checks are pure ([`crate::diagnose_steps`]); this
//! module gathers the facts from the coordinator and the agents of both nodes.

use std::io::Write;
use std::net::IpAddr;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use shibafu_overlay::api::{Agent, ClientError, NodeInfo, ProbeKind, ProbeRequest};
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::policy::{explain, Flow, FlowProto, PolicyView};

use crate::args::Format;
use crate::context::Context;
use crate::diagnose_steps::{self as steps, flow_words, FabricSide, Seen, Step, Whereabouts};
use crate::output;

/// Transport of the diagnosed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    /// TCP (the default with --port).
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo (the default without --port).
    Icmp,
}

/// Flags of `shibafu network diagnose`.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The container the connection starts from.
    #[arg(long, value_name = "CONTAINER")]
    pub from: String,
    /// The container it goes to.
    #[arg(long, value_name = "CONTAINER")]
    pub to: String,
    /// Destination port (tcp and udp).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Transport [default: tcp with --port, else icmp].
    #[arg(long, value_enum)]
    pub protocol: Option<ProtoArg>,
    /// How long each probe waits, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub timeout_ms: u64,
    /// Output format: `table` (text) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The connection the flags describe.
pub fn flow_of(args: &DiagnoseArgs) -> anyhow::Result<Flow> {
    let proto = match (args.protocol, args.port) {
        (Some(ProtoArg::Icmp), _) | (None, None) => FlowProto::Icmp,
        (Some(ProtoArg::Udp), Some(_)) => FlowProto::Udp,
        (Some(ProtoArg::Tcp), Some(_)) | (None, Some(_)) => FlowProto::Tcp,
        (Some(ProtoArg::Tcp), None) => anyhow::bail!("--protocol tcp needs --port"),
        (Some(ProtoArg::Udp), None) => anyhow::bail!("--protocol udp needs --port"),
    };
    Ok(Flow {
        proto,
        port: if proto == FlowProto::Icmp {
            0
        } else {
            args.port.unwrap_or(0)
        },
    })
}

/// What `diagnose` found, as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Source container.
    pub from: String,
    /// Destination container.
    pub to: String,
    /// `tcp/5432`, `udp/53`, `icmp`.
    pub flow: String,
    /// Did every step pass?
    pub ok: bool,
    /// Every step that ran, in order; the last one failed when `ok` is false.
    pub steps: Vec<Step>,
}

impl Report {
    /// Adds a step; false when it failed (and nothing more should run).
    fn push(&mut self, s: Step) -> bool {
        let ok = s.ok;
        self.ok &= ok;
        self.steps.push(s);
        ok
    }
}

/// The text of a report: a header, then STEP NODE RESULT DETAIL.
pub fn render(r: &Report) -> String {
    let mut out = format!("Diagnosing {} -> {} ({})\n", r.from, r.to, r.flow);
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step.to_string(),
                s.node.clone(),
                if s.ok { "ok".into() } else { "FAIL".into() },
                s.detail.clone(),
            ]
        })
        .collect();
    out.push_str(&output::table(&["STEP", "NODE", "RESULT", "DETAIL"], &rows));
    out
}

/// Runs `network diagnose`: prints the report, and fails (exit status 1) when a step failed.
pub async fn run(args: DiagnoseArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let flow = flow_of(&args)?;
    let report = diagnose(&args, flow, ctx).await?;
    let text = match args.format {
        Format::Table => render(&report),
        Format::Json => output::json(&report)?,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    match report.steps.iter().find(|s| !s.ok) {
        None => Ok(()),
        Some(s) => anyhow::bail!(
            "the path {} -> {} is broken at step {}: {}",
            args.from,
            args.to,
            s.step,
            s.detail
        ),
    }
}

/// The cluster as the coordinator reports it.
struct Cluster {
    nodes: Vec<NodeInfo>,
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    links: Vec<shibafu_overlay::model::Link>,
    policies: Vec<shibafu_overlay::model::Policy>,
}

impl Cluster {
    fn endpoints_of(&self, name: &str) -> Vec<&Endpoint> {
        self.endpoints.iter().filter(|e| e.name == name).collect()
    }

    fn network(&self, name: &str) -> anyhow::Result<&Network> {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow::anyhow!("network {name} is not in the cluster"))
    }

    fn underlay(&self, node: &str) -> Option<IpAddr> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.underlay)
    }
}

/// What the agent of `node` says about container `name`.
async fn ask(ctx: &Context, node: &str, name: &str) -> Seen {
    match ctx.agent_of(node).await {
        Err(e) => Seen::Unreachable(format!("{e:#}")),
        Ok(agent) => match agent.get(name).await {
            Ok(info) => Seen::Info(info),
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) => {
                Seen::Unreachable(e.to_string())
            }
            Err(e) => Seen::Error(e.to_string()),
        },
    }
}

/// Where container `name` is and what its node's agent says about it. A container without
/// endpoints (stopped ones lose theirs) is looked for on every live node.
async fn whereabouts(ctx: &Context, name: &str, eps: &[&Endpoint], live: &[String]) -> Whereabouts {
    let mut w = Whereabouts {
        name: name.to_string(),
        node: eps.first().map(|e| e.node.clone()),
        live: false,
        seen: None,
    };
    match w.node.clone() {
        Some(node) => {
            w.live = live.contains(&node);
            if w.live {
                w.seen = Some(ask(ctx, &node, name).await);
            }
        }
        None => {
            for node in live {
                if let Seen::Info(info) = ask(ctx, node, name).await {
                    w.node = Some(node.clone());
                    w.live = true;
                    w.seen = Some(Seen::Info(info));
                    break;
                }
            }
        }
    }
    w
}

/// Gathers the facts step by step and checks each, stopping at the first failure.
async fn diagnose(args: &DiagnoseArgs, flow: Flow, ctx: &Context) -> anyhow::Result<Report> {
    let c = ctx.coordinator()?;
    let cluster = Cluster {
        nodes: c.list_nodes().await?,
        networks: c.list_networks().await?,
        endpoints: c.list_endpoints().await?,
        links: c.list_links().await?,
        policies: c.list_policies().await?,
    };
    let mut report = Report {
        from: args.from.clone(),
        to: args.to.clone(),
        flow: flow_words(flow),
        ok: true,
        steps: Vec::new(),
    };
    let live: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let (from_eps, to_eps) = (
        cluster.endpoints_of(&args.from),
        cluster.endpoints_of(&args.to),
    );
    let w1 = whereabouts(ctx, &args.from, &from_eps, &live).await;
    let w2 = whereabouts(ctx, &args.to, &to_eps, &live).await;
    if !report.push(steps::containers(&w1, &w2, &live)) {
        return Ok(report);
    }
    let Some((e1, e2)) = steps::pick(&from_eps, &to_eps) else {
        let name = if from_eps.is_empty() { &w1 } else { &w2 };
        report.push(steps::unattached(name));
        return Ok(report);
    };
    let (node1, node2) = (e1.node.as_str(), e2.node.as_str());
    let (agent1, agent2) = (ctx.agent_of(node1).await?, ctx.agent_of(node2).await?);
    let (net1, net2) = (cluster.network(&e1.network)?, cluster.network(&e2.network)?);

    let fqdn = format!("{}.{}", e2.name, net2.zone);
    let shares = from_eps.iter().any(|e| e.network == e2.network);
    let answer = if shares {
        let mut req = probe_req(
            ProbeKind::Dns,
            IpAddr::V4(net2.gateway()),
            53,
            args.timeout_ms,
        );
        req.name = Some(fqdn.clone());
        Some(agent1.probe(&args.from, &req).await?)
    } else {
        None
    };
    if !report.push(steps::dns(node1, e1, e2, &fqdn, answer.as_ref())) {
        return Ok(report);
    }

    let inside = agent1.container_net(&args.from).await?;
    if !report.push(steps::interfaces(&inside, e1, IpAddr::V4(e2.ipv4))) {
        return Ok(report);
    }

    if !report.push(fabric(&cluster, (&agent1, &agent2), (e1, e2), (net1, net2)).await?) {
        return Ok(report);
    }

    let to_underlay = cluster
        .underlay(node2)
        .ok_or_else(|| anyhow::anyhow!("node {node2} is not registered"))?;
    let ping = if node1 == node2 {
        None
    } else {
        let req = probe_req(ProbeKind::Icmp, to_underlay, 0, args.timeout_ms);
        Some(agent1.host_probe(&req).await?)
    };
    if !report.push(steps::underlay(node1, node2, to_underlay, ping.as_ref())) {
        return Ok(report);
    }

    let view = PolicyView::new(
        &cluster.networks,
        &cluster.endpoints,
        &cluster.links,
        &cluster.policies,
    );
    let decision = explain(&view, IpAddr::V4(e1.ipv4), IpAddr::V4(e2.ipv4), flow);
    if !report.push(steps::policy(&decision, e1, e2, flow, &cluster.policies)) {
        return Ok(report);
    }

    let kind = match flow.proto {
        FlowProto::Tcp => ProbeKind::Tcp,
        FlowProto::Udp => ProbeKind::Udp,
        FlowProto::Icmp => ProbeKind::Icmp,
    };
    let req = probe_req(kind, IpAddr::V4(e2.ipv4), flow.port, args.timeout_ms);
    let result = agent1.probe(&args.from, &req).await?;
    report.push(steps::probe(node1, e1, e2, flow, &result));
    Ok(report)
}

/// Step `fabric`: reads both nodes' bridges and entries (one read when it is one node).
async fn fabric(
    cluster: &Cluster,
    (agent1, agent2): (&Agent, &Agent),
    (e1, e2): (&Endpoint, &Endpoint),
    (net1, net2): (&Network, &Network),
) -> anyhow::Result<Step> {
    let host1 = agent1.host_net().await?;
    if e1.node == e2.node {
        return Ok(steps::fabric(&[FabricSide {
            host: &host1,
            network: net2,
            remote: e2,
            vtep: None,
        }]));
    }
    let host2 = agent2.host_net().await?;
    Ok(steps::fabric(&[
        FabricSide {
            host: &host1,
            network: net2,
            remote: e2,
            vtep: cluster.underlay(&e2.node),
        },
        FabricSide {
            host: &host2,
            network: net1,
            remote: e1,
            vtep: cluster.underlay(&e1.node),
        },
    ]))
}

fn probe_req(kind: ProbeKind, target: IpAddr, port: u16, timeout_ms: u64) -> ProbeRequest {
    ProbeRequest {
        kind,
        target,
        port,
        timeout_ms,
        name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::network;
    use crate::args::NetworkCmd;

    fn parse(args: &[&str]) -> DiagnoseArgs {
        let mut all = vec!["diagnose", "--from", "web1", "--to", "db1"];
        all.extend_from_slice(args);
        match network(&all).expect("parse") {
            NetworkCmd::Diagnose(a) => a,
            other => panic!("not diagnose: {other:?}"),
        }
    }

    #[test]
    fn the_flow_defaults_to_tcp_with_a_port_and_icmp_without() {
        let f = |a: &[&str]| {
            flow_of(&parse(a))
                .map(flow_words)
                .map_err(|e| e.to_string())
        };
        assert_eq!(f(&[]), Ok("icmp".into()));
        assert_eq!(f(&["--port", "5432"]), Ok("tcp/5432".into()));
        assert_eq!(
            f(&["--port", "53", "--protocol", "udp"]),
            Ok("udp/53".into())
        );
        assert_eq!(
            f(&["--port", "53", "--protocol", "icmp"]),
            Ok("icmp".into())
        );
        assert_eq!(
            f(&["--protocol", "tcp"]),
            Err("--protocol tcp needs --port".into())
        );
        assert!(network(&["diagnose", "--from", "a", "--to", "b", "--timeout-ms", "0"]).is_err());
    }

    #[test]
    fn the_report_is_a_table_with_the_failed_step_last() {
        let r = Report {
            from: "web1".into(),
            to: "db1".into(),
            flow: "tcp/5432".into(),
            ok: false,
            steps: vec![
                Step {
                    step: "containers",
                    node: "node1,node2".into(),
                    ok: true,
                    detail: "web1 running on node1; db1 running on node2".into(),
                },
                Step {
                    step: "policy",
                    node: "cluster".into(),
                    ok: false,
                    detail: "policy database-isolation rule 1 denies web1 -> db1:5432/tcp".into(),
                },
            ],
        };
        assert_eq!(
            render(&r),
            "Diagnosing web1 -> db1 (tcp/5432)
STEP         NODE          RESULT   DETAIL
containers   node1,node2   ok       web1 running on node1; db1 running on node2
policy       cluster       FAIL     policy database-isolation rule 1 denies web1 -> db1:5432/tcp
"
        );
    }
}
