//! The per-host shibafu agent: `shibafu-agent run` (the daemon) and `shibafu-agent dns` (the DNS
//! engine on its own, for tests and benchmarks).

mod agent;
mod api;
mod dataplane;
mod dns_actor;
mod dns_cmd;
mod firewall_actor;
mod health;
mod lazy_store;
mod messages;
mod metrics;
mod network_actor;
mod pace;
mod policy_actor;
mod publish;
mod registry;
mod repair;
mod runtime;
mod shim_cmd;
mod store_actor;
#[cfg(test)]
mod testing;
mod tunnel;

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
    /// Internal: run one container from its spec file (started by the agent).
    #[command(hide = true)]
    Shim(shim_cmd::ShimArgs),
    /// Internal: run a command inside a running container, with its capabilities.
    #[command(hide = true)]
    Enter(shim_cmd::EnterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => agent::run(args),
        Cmd::Dns(args) => dns_cmd::run(args),
        Cmd::Shim(args) => shim_cmd::run(args),
        Cmd::Enter(args) => shim_cmd::enter(args),
    }
}
