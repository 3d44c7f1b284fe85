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
                Format::Table => output::nodes_table(&nodes),
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
