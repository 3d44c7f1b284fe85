//! The agent daemon: an actix System wiring the store, network, DNS and runtime actors.

/// Flags of `shibafu-agent run`.
#[derive(clap::Args)]
pub struct RunArgs {}

/// Runs the agent until SIGTERM.
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
