//! `shibafu-agent dns`: the DNS engine standalone, serving a records file.

/// Flags of `shibafu-agent dns`.
#[derive(clap::Args)]
pub struct DnsArgs {}

/// Serves DNS until SIGTERM.
pub fn run(_args: DnsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
