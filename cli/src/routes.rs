//! `shibafu network routes --container NAME`: the addresses, routes and neighbours inside a
//! container and the host side of each interface, read by the agent of the container's node.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::ContainerNet;
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::plan::{LinkKind, ObservedLink};

use crate::args::Format;
use crate::context::Context;
use crate::output;

/// Flags of `shibafu network routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// The container (or attached namespace) to look into.
    #[arg(long, value_name = "NAME")]
    pub container: String,
    /// Output format: `table` (text) or `json` (the agent's answer).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The node running container `name`: from its endpoints in the cluster, else (a stopped
/// container or one on no network) the first live node whose agent knows it.
pub async fn node_of(ctx: &Context, name: &str) -> anyhow::Result<String> {
    let c = ctx.coordinator()?;
    if let Some(node) = located(&c.list_endpoints().await?, name) {
        return Ok(node);
    }
    for node in c.list_nodes().await? {
        let Ok(agent) = ctx.agent_of(&node.name).await else {
            continue;
        };
        if agent.get(name).await.is_ok() {
            return Ok(node.name);
        }
    }
    anyhow::bail!("no container named {name} on any live node (see `shibafu ps` on its node)")
}

/// The node of the endpoints of container `name`, if it has any.
pub fn located(endpoints: &[Endpoint], name: &str) -> Option<String> {
    endpoints
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.node.clone())
}

/// Runs `network routes`; fails (exit 1) when the container's namespace cannot be read.
pub async fn run(args: RoutesArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let node = node_of(ctx, &args.container).await?;
    let net = ctx
        .agent_of(&node)
        .await?
        .container_net(&args.container)
        .await?;
    let text = match args.format {
        Format::Table => render(&net),
        Format::Json => output::json(&net)?,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    match &net.error {
        Some(e) => anyhow::bail!("cannot look inside {}: {e}", args.container),
        None => Ok(()),
    }
}

fn dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// The host end of an inside link: `sfe1a2b3c4d5e6 (bridge sfbr4096, up)`.
fn host_cell(link: &ObservedLink, net: &ContainerNet) -> String {
    let Some(peer) = link.peer_index else {
        return "-".into();
    };
    match net.host_side.iter().find(|h| h.index == peer) {
        Some(h) => format!(
            "{} (bridge {}, {})",
            h.name,
            h.master.as_deref().unwrap_or("none"),
            if h.up { "up" } else { "DOWN" }
        ),
        None if matches!(link.kind, LinkKind::Veth) => format!("missing (host index {peer})"),
        None => "-".into(),
    }
}

/// The text of `network routes`: a header line, then interfaces, routes and neighbours.
pub fn render(net: &ContainerNet) -> String {
    let c = &net.container;
    let mut out = format!(
        "Container {} on {} ({}{})\n",
        c.name,
        net.node,
        output::state_cell(c),
        c.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
    );
    if let Some(e) = &net.error {
        out.push_str(&format!("Cannot look inside: {e}\n"));
        return out;
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = net
        .inside
        .links
        .iter()
        .map(|l| {
            let addrs: Vec<String> = l.addresses.iter().map(ToString::to_string).collect();
            vec![
                l.name.clone(),
                if l.up { "up".into() } else { "DOWN".into() },
                l.mtu.to_string(),
                dash(l.mac.map(|m| m.to_string())),
                if addrs.is_empty() {
                    "-".into()
                } else {
                    addrs.join(",")
                },
                host_cell(l, net),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &["INTERFACE", "STATE", "MTU", "MAC", "ADDRESSES", "HOST SIDE"],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = net
        .inside
        .routes
        .iter()
        .map(|r| {
            vec![
                r.dst.map_or_else(|| "default".into(), |d| d.to_string()),
                dash(r.gateway.map(|g| g.to_string())),
                dash(r.dev.clone()),
            ]
        })
        .collect();
    out.push_str(&output::table(&["ROUTE", "VIA", "DEV"], &rows));
    out.push('\n');
    let rows: Vec<Vec<String>> = net
        .inside
        .neighbours
        .iter()
        .map(|n| {
            vec![
                n.ip.to_string(),
                dash(n.mac.map(|m| m.to_string())),
                n.dev.clone(),
                n.state.clone(),
            ]
        })
        .collect();
    out.push_str(&output::table(&["NEIGHBOUR", "MAC", "DEV", "STATE"], &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerNet {
        serde_json::from_value(serde_json::json!({
            "node": "node1",
            "container": {"name": "web1", "state": "running", "pid": 42, "netns": "/proc/42/ns/net",
                "interfaces": []},
            "inside": {
                "links": [
                    {"name": "lo", "index": 1, "kind": {"Other": ""}, "mtu": 65536, "mac": null,
                     "up": true, "master": null, "port": null, "peer_index": null,
                     "addresses": ["127.0.0.1/8"]},
                    {"name": "eth0", "index": 2, "kind": "Veth", "mtu": 1450,
                     "mac": "02:00:ac:15:00:02", "up": true, "master": null, "port": null,
                     "peer_index": 9, "addresses": ["172.21.0.2/24"]}
                ],
                "routes": [{"gateway": "172.21.0.1", "dev": "eth0"},
                           {"dst": "172.21.0.0/24", "dev": "eth0"}],
                "neighbours": [{"dev": "eth0", "ip": "172.21.0.1", "mac": "02:00:00:00:00:01",
                                "state": "reachable"}]
            },
            "host_side": [{"name": "sfe0123456789ab", "index": 9, "kind": "Veth", "mtu": 1450,
                "mac": null, "up": true, "master": "sfbr4096", "port": null, "peer_index": 2,
                "addresses": []}]
        }))
        .expect("sample")
    }

    #[test]
    fn routes_text_shows_inside_and_the_host_end() {
        assert_eq!(
            render(&sample()),
            "Container web1 on node1 (running, pid 42)

INTERFACE   STATE   MTU     MAC                 ADDRESSES       HOST SIDE
lo          up      65536   -                   127.0.0.1/8     -
eth0        up      1450    02:00:ac:15:00:02   172.21.0.2/24   sfe0123456789ab (bridge sfbr4096, up)

ROUTE           VIA          DEV
default         172.21.0.1   eth0
172.21.0.0/24   -            eth0

NEIGHBOUR    MAC                 DEV    STATE
172.21.0.1   02:00:00:00:00:01   eth0   reachable
"
        );
    }

    #[test]
    fn a_missing_host_end_and_a_stopped_container_are_said() {
        let mut net = sample();
        net.host_side.clear();
        assert!(render(&net).contains("missing (host index 9)"));
        net.container.state = "exited".into();
        net.container.exit_code = Some(0);
        net.error = Some("container is exited, its namespace is not entered".into());
        let text = render(&net);
        assert!(
            text.starts_with("Container web1 on node1 (exited (0)"),
            "{text}"
        );
        assert!(text
            .ends_with("Cannot look inside: container is exited, its namespace is not entered\n"));
    }
}
