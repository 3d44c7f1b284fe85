//! `shibafu node ls`: the nodes whose agents are alive, as the coordinator sees them, with
//! their WireGuard keys and tunnels; `shibafu node rotate-key`: a key rotation, waited for.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use shibafu_overlay::api::NodeInfo;

use crate::args::{Format, NodeCmd, RotateKeyArgs};
use crate::context::Context;
use crate::output;

/// How often a rotation's progress is read.
const POLL: Duration = Duration::from_millis(250);

/// Runs one node subcommand, writing its output to `out`.
pub async fn run(cmd: NodeCmd, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let coordinator = ctx.coordinator()?;
    let text = match cmd {
        NodeCmd::Ls(args) => {
            let nodes = coordinator.list_nodes().await?;
            match args.format {
                Format::Table => nodes_table(&nodes),
                Format::Json => output::json(&nodes)?,
            }
        }
        NodeCmd::RotateKey(args) => rotate(args, ctx).await?,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

async fn rotate(args: RotateKeyArgs, ctx: &Context) -> anyhow::Result<String> {
    let coordinator = ctx.coordinator()?;
    let node = match args.node {
        Some(n) => n,
        None => ctx
            .agent()?
            .node_name()
            .await
            .context("no NODE given and the local agent does not answer")?,
    };
    let before = coordinator.rotate_key(&node).await?;
    let old = key_of(&before)?;
    if args.no_wait {
        return Ok(format!("{node}: rotation of key {old} requested\n"));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let nodes = coordinator.list_nodes().await?;
        let now = nodes.iter().find(|n| n.name == node);
        if let Some(wg) = now.and_then(|n| n.wireguard.as_ref()) {
            if wg.key != old && wg.rotating_to.is_none() {
                return Ok(format!("{node}: key rotated {old} -> {}\n", wg.key));
            }
        }
        if now.is_none() {
            bail!("node {node} left the cluster during the rotation");
        }
        if Instant::now() > deadline {
            bail!(
                "node {node} did not finish rotating within {}s; see `shibafu node ls` and the agent's log",
                args.timeout
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn key_of(n: &NodeInfo) -> anyhow::Result<String> {
    match &n.wireguard {
        Some(wg) => Ok(wg.key.clone()),
        None => bail!("node {} has no WireGuard key", n.name),
    }
}

/// `node ls`: NAME UNDERLAY VERSION AGE KEY TUNNELS, sorted by name. KEY is the WireGuard
/// key's fingerprint (`OLD->NEW` while rotating); TUNNELS each peer with `up` or `down` and
/// the time since the last handshake, `off` while no network is encrypted, or the error.
pub fn nodes_table(nodes: &[NodeInfo]) -> String {
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.underlay.to_string(),
                n.version.clone(),
                output::age(n.age_secs),
                key_cell(n),
                tunnels_cell(n),
            ]
        })
        .collect();
    output::table(
        &["NAME", "UNDERLAY", "VERSION", "AGE", "KEY", "TUNNELS"],
        &rows,
    )
}

fn key_cell(n: &NodeInfo) -> String {
    match &n.wireguard {
        None => "-".into(),
        Some(wg) => match &wg.rotating_to {
            Some(next) => format!("{}->{next}", wg.key),
            None => wg.key.clone(),
        },
    }
}

fn tunnels_cell(n: &NodeInfo) -> String {
    let Some(wg) = &n.wireguard else {
        return "-".into();
    };
    if let Some(e) = &wg.error {
        return format!("error: {e}");
    }
    if wg.backend.is_empty() {
        return "off".into();
    }
    if wg.peers.is_empty() {
        return "no peers".into();
    }
    let peers: Vec<String> = wg
        .peers
        .iter()
        .map(|(name, p)| {
            let state = if p.up { "up" } else { "down" };
            match p.handshake_age_secs {
                Some(s) => format!("{name} {state} {}", output::age(s)),
                None => format!("{name} {state}"),
            }
        })
        .collect();
    peers.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_table_with_ages() {
        let node = |name: &str, ip: &str, age_secs| NodeInfo {
            name: name.into(),
            underlay: ip.parse().expect("ip"),
            version: "0.1.0".into(),
            started_at: 0,
            age_secs,
            wireguard: None,
        };
        let mut tunneled = node("node3", "10.99.0.13", 5);
        tunneled.wireguard = Some(shibafu_overlay::api::NodeTunnel {
            key: "AAAAaaaa".into(),
            public_key: "AAAAaaaa...".into(),
            tunnel: "100.64.0.3".parse().expect("ip"),
            port: 51820,
            encrypt_all: false,
            rotating_to: Some("BBBBbbbb".into()),
            backend: "kernel".into(),
            mtu: 1440,
            error: None,
            peers: [
                (
                    "node1".to_string(),
                    shibafu_overlay::api::PeerTunnelInfo {
                        key: "k".into(),
                        handshake_age_secs: Some(12),
                        up: true,
                    },
                ),
                (
                    "node2".to_string(),
                    shibafu_overlay::api::PeerTunnelInfo {
                        key: "k".into(),
                        handshake_age_secs: None,
                        up: false,
                    },
                ),
            ]
            .into(),
        });
        let nodes = [
            node("node2", "10.99.0.12", 7200),
            node("node1", "10.99.0.11", 42),
            tunneled,
        ];
        let expected = "\
NAME    UNDERLAY     VERSION   AGE   KEY                  TUNNELS
node1   10.99.0.11   0.1.0     42s   -                    -
node2   10.99.0.12   0.1.0     2h    -                    -
node3   10.99.0.13   0.1.0     5s    AAAAaaaa->BBBBbbbb   node1 up 12s, node2 down
";
        assert_eq!(nodes_table(&nodes), expected);
    }
}
