//! `shibafu node ls`: the nodes whose agents are alive, as the coordinator sees them.

use std::io::Write;

use anyhow::Context as _;

use crate::args::{Format, NodeCmd};
use crate::context::Context;
use crate::output;

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
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}
