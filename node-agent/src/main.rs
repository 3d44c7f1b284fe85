//! The per-host shibafu agent: `shibafu-agent run` (the daemon) and `shibafu-agent dns` (the DNS
//! engine on its own, for tests and benchmarks).

mod agent;
mod dns_cmd;

use clap::{Parser, Subcommand};

/// The per-host shibafu agent.
#[derive(Parser)]
#[command(name = "shibafu-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent daemon on this host.
    Run(agent::RunArgs),
    /// Serve DNS on its own: authoritative zones from a records file, optional forwarding.
    Dns(dns_cmd::DnsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => agent::run(args),
        Cmd::Dns(args) => dns_cmd::run(args),
    }
}
