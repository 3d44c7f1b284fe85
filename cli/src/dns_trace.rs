//! `shibafu network dns-trace --query NAME [--type A] [--from C]`: traces one query through the
//! DNS engine of a network's server, as container C asks it (its network's server, its view) or,
//! without `--from`, as this node asks the server of the network whose zone holds the name.
//! Shows the server (network, node), the requester's view, the zone or the forwarder's cache or
//! upstream (with its latency), the records with their TTLs and the time taken.

use std::io::Write;
use std::net::IpAddr;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use shibafu_overlay::api::DnsTraceRequest;
use shibafu_overlay::dns::forward::{ForwardPath, UpstreamTry};
use shibafu_overlay::dns::trace::{DnsTrace, TraceRecord, TraceSource};
use shibafu_overlay::model::{Endpoint, Network};

use crate::args::Format;
use crate::context::Context;
use crate::output;
use crate::routes::node_of;

/// Flags of `shibafu network dns-trace`.
#[derive(Debug, Args)]
pub struct DnsTraceArgs {
    /// The name to look up, such as api.backend.local or example.org.
    #[arg(long, value_name = "NAME")]
    pub query: String,
    /// Record type.
    #[arg(long = "type", value_name = "TYPE", default_value = "A")]
    pub qtype: String,
    /// Ask as this container: its network's server, the names it may see.
    #[arg(long, value_name = "CONTAINER")]
    pub from: Option<String>,
    /// Output format: `table` (text) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A trace with where it ran, as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct Traced {
    /// The node whose server answered.
    pub node: String,
    /// The network whose server answered.
    pub network: String,
    /// The server's address (the network's gateway, port 53).
    pub server: String,
    /// The container asking, when `--from` named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What the engine did.
    #[serde(flatten)]
    pub trace: DnsTrace,
}

/// Is `name` in `zone` (both dotted, case-insensitive, trailing dots ignored)?
fn in_zone(name: &str, zone: &str) -> bool {
    let (n, z) = (
        name.trim_end_matches('.').to_ascii_lowercase(),
        zone.trim_end_matches('.').to_ascii_lowercase(),
    );
    n == z || n.ends_with(&format!(".{z}"))
}

/// Of a container's endpoints, the one on the network whose zone holds `query`, else the first.
pub fn pick_endpoint<'a>(
    eps: &[&'a Endpoint],
    networks: &[Network],
    query: &str,
) -> Option<&'a Endpoint> {
    eps.iter()
        .find(|e| {
            networks
                .iter()
                .any(|n| n.name == e.network && in_zone(query, &n.zone))
        })
        .or(eps.first())
        .copied()
}

/// The network whose zone holds `query`, else the first by name.
pub fn pick_network<'a>(networks: &'a [Network], query: &str) -> Option<&'a Network> {
    networks
        .iter()
        .find(|n| in_zone(query, &n.zone))
        .or_else(|| networks.iter().min_by(|a, b| a.name.cmp(&b.name)))
}

/// Runs `network dns-trace`; fails (exit 1) when the query gets no records.
pub async fn run(args: DnsTraceArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let c = ctx.coordinator()?;
    let networks = c.list_networks().await?;
    let (node, network, client) = match &args.from {
        Some(from) => {
            let endpoints = c.list_endpoints().await?;
            let eps: Vec<&Endpoint> = endpoints.iter().filter(|e| &e.name == from).collect();
            let e = pick_endpoint(&eps, &networks, &args.query)
                .ok_or_else(|| anyhow::anyhow!("container {from} is on no network of the cluster (stopped? see `shibafu ps` on its node)"))?;
            let node = node_of(ctx, from).await?;
            (node, e.network.clone(), IpAddr::V4(e.ipv4))
        }
        None => {
            let status: serde_json::Value = ctx.agent()?.client().get("/v1/status").await?;
            let node = status["node"].as_str().unwrap_or_default().to_string();
            let n = pick_network(&networks, &args.query)
                .ok_or_else(|| anyhow::anyhow!("the cluster has no network: create one first"))?;
            (node, n.name.clone(), IpAddr::V4(n.gateway()))
        }
    };
    let gateway = networks
        .iter()
        .find(|n| n.name == network)
        .map(|n| n.gateway().to_string())
        .unwrap_or_default();
    let req = DnsTraceRequest {
        network: network.clone(),
        query: args.query.clone(),
        qtype: args.qtype.clone(),
        client,
    };
    let trace = ctx.agent_of(&node).await?.dns_trace(&req).await?;
    let traced = Traced {
        node,
        network,
        server: format!("{gateway}:53"),
        from: args.from.clone(),
        trace,
    };
    let text = match args.format {
        Format::Table => render(&traced),
        Format::Json => output::json(&traced)?,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    let t = &traced.trace;
    if t.rcode != "NoError" || t.answers.is_empty() {
        anyhow::bail!("{} {}: {}", t.query, t.qtype, verdict(t));
    }
    Ok(())
}

/// Why a query got no records, in words.
fn verdict(t: &DnsTrace) -> String {
    match (t.rcode.as_str(), &t.source) {
        ("NXDomain", TraceSource::Local { zone, .. }) if !t.view.contains(zone) => format!(
            "NXDOMAIN: the name is in zone {zone}, which {} may not see (only its networks' zones)",
            t.client
        ),
        ("NXDomain", TraceSource::Local { zone, .. }) => {
            format!("NXDOMAIN: no such name in zone {zone}")
        }
        ("NXDomain", _) => "NXDOMAIN: the upstream says the name does not exist".into(),
        ("NoError", _) => format!("no {} record (NODATA)", t.qtype),
        (
            "",
            TraceSource::Forwarded {
                path: ForwardPath::Failed { error, .. },
            },
        ) => {
            format!("no answer: {error}")
        }
        (rcode, _) => format!("answered {rcode}"),
    }
}

fn tries_text(tries: &[UpstreamTry]) -> String {
    let each: Vec<String> = tries
        .iter()
        .map(|t| match &t.error {
            None => format!("{} answered in {} us", t.upstream, t.micros),
            Some(e) => format!("{} failed after {} us ({e})", t.upstream, t.micros),
        })
        .collect();
    each.join("; ")
}

/// Where the answer came from, in words.
fn source_text(s: &TraceSource) -> String {
    match s {
        TraceSource::Local { zone, .. } if zone.is_empty() => {
            "the server itself: no zone holds the name and it has no forwarder".into()
        }
        TraceSource::Local { zone, prebuilt } => format!(
            "local answer from zone {zone} ({})",
            if *prebuilt { "prebuilt" } else { "composed" }
        ),
        TraceSource::Forwarded { path } => match path {
            ForwardPath::Cache { age_secs } => {
                format!("forwarder cache (cached {age_secs} s ago)")
            }
            ForwardPath::Upstream { tries } => format!("forwarder: {}", tries_text(tries)),
            ForwardPath::Stale { tries } => format!(
                "forwarder: stale cached answer, every upstream failed: {}",
                tries_text(tries)
            ),
            ForwardPath::Failed { tries, error } if tries.is_empty() => {
                format!("forwarder: no answer ({error})")
            }
            ForwardPath::Failed { tries, error } => {
                format!("forwarder: no answer ({error}): {}", tries_text(tries))
            }
        },
    }
}

fn records(rs: &[TraceRecord]) -> String {
    let rows: Vec<Vec<String>> = rs
        .iter()
        .map(|r| {
            vec![
                format!("  {}", r.name),
                r.ttl.to_string(),
                r.rtype.clone(),
                r.data.clone(),
            ]
        })
        .collect();
    output::table(&["  NAME", "TTL", "TYPE", "DATA"], &rows)
}

/// The text of a trace.
pub fn render(t: &Traced) -> String {
    let tr = &t.trace;
    let asker = match &t.from {
        Some(c) => format!("{c} ({})", tr.client),
        None => format!(
            "node {} (as {}, the gateway: every zone)",
            t.node, tr.client
        ),
    };
    let view = if tr.view.len() == tr.zones.len() {
        format!("every zone ({})", tr.view.join(", "))
    } else {
        format!(
            "{} of {} zones: {}",
            tr.view.len(),
            tr.zones.len(),
            tr.view.join(", ")
        )
    };
    let mut out = output::columns(&[
        vec!["Query:".into(), format!("{} {}", tr.query, tr.qtype)],
        vec!["Asked by:".into(), asker],
        vec![
            "Server:".into(),
            format!("network {} on {} ({})", t.network, t.node, t.server),
        ],
        vec!["View:".into(), view],
        vec!["Source:".into(), source_text(&tr.source)],
        vec![
            "Result:".into(),
            if tr.rcode.is_empty() {
                "no answer".into()
            } else {
                format!("{}, {} answer(s)", tr.rcode, tr.answers.len())
            },
        ],
        vec!["Time:".into(), format!("{} us", tr.micros)],
    ]);
    if !tr.answers.is_empty() {
        out.push_str("Answer:\n");
        out.push_str(&records(&tr.answers));
    }
    if !tr.authority.is_empty() {
        out.push_str("Authority:\n");
        out.push_str(&records(&tr.authority));
    }
    out
}

#[cfg(test)]
#[path = "dns_trace_tests.rs"]
mod tests;
