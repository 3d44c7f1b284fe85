//! Command-line syntax of `shibafu` (clap derive). The flags of container commands (`run`,
//! `exec`, `ps`, `logs`, `stop`, `rm`) and of `network attach/detach` live with their
//! commands; those talk to the local agent (`--agent`), the rest to the coordinator.

use clap::{Args, Parser, Subcommand, ValueEnum};
use shibafu_overlay::model::Isolation;

use crate::apply::ApplyArgs;
use crate::attach::{AttachArgs, DetachArgs};
use crate::diagnose::DiagnoseArgs;
use crate::dns_trace::DnsTraceArgs;
use crate::exec::ExecArgs;
use crate::lifecycle::{RmArgs, StopArgs};
use crate::logs::LogsArgs;
use crate::policy::PolicyCmd;
use crate::ps::PsArgs;
use crate::routes::RoutesArgs;
use crate::run::RunArgs;
use crate::service::ServiceCmd;
use crate::topology::TopologyArgs;

/// Default coordinator address.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7480";
/// Default unix socket of the local agent's API.
pub const DEFAULT_AGENT: &str = "/run/shibafu/agent.sock";

/// shibafu: multi-host container networks with per-network DNS.
#[derive(Debug, Parser)]
#[command(name = "shibafu", version, about, propagate_version = true)]
pub struct Cli {
    /// Coordinator API addresses, comma-separated, tried in order (cluster commands).
    #[arg(
        long,
        global = true,
        env = "SHIBAFU_COORDINATOR",
        default_value = DEFAULT_COORDINATOR,
        value_name = "URL[,URL...]"
    )]
    pub coordinator: String,
    /// Unix socket of this host's agent API (container commands).
    #[arg(
        long,
        global = true,
        env = "SHIBAFU_AGENT",
        default_value = DEFAULT_AGENT,
        value_name = "PATH"
    )]
    pub agent: String,
    /// Agents of other nodes, for `network routes/diagnose/dns-trace`: NODE=ADDRESS pairs,
    /// comma-separated, each address as --agent takes it (`shibafu-lab exec` sets it).
    #[arg(
        long,
        global = true,
        env = "SHIBAFU_NODE_AGENTS",
        default_value = "",
        hide_default_value = true,
        value_name = "NODE=ADDR[,...]"
    )]
    pub node_agents: String,
    /// The cluster CA (PEM), to reach https:// coordinators (with --tls-cert and --tls-key).
    #[arg(long, global = true, env = "SHIBAFU_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Your certificate (PEM) from `shibafu cert issue --for cli`: admin, or read-only.
    #[arg(long, global = true, env = "SHIBAFU_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, env = "SHIBAFU_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage networks.
    Network {
        /// Network subcommand.
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// Manage services: names balanced over healthy instances.
    Service {
        /// Service subcommand.
        #[command(subcommand)]
        cmd: ServiceCmd,
    },
    /// Inspect cluster nodes.
    Node {
        /// Node subcommand.
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Converge the cluster to a YAML file of networks, links, services and policies.
    Apply(ApplyArgs),
    /// Print the cluster's networks, links, services and policies as a file for `apply`.
    Export,
    /// Check that the coordinator and this host's agent answer, and when certificates expire.
    Status,
    /// Make the cluster CA and certificates for a TLS control plane.
    Cert {
        /// Certificate subcommand.
        #[command(subcommand)]
        cmd: crate::cert::CertCmd,
    },
    /// Start a container on this host and follow its output (-d: in the background).
    Run(RunArgs),
    /// Run a command inside a running container.
    Exec(ExecArgs),
    /// Internal: what `exec` re-executes itself as to enter the container.
    #[command(name = "__enter", hide = true)]
    Enter(crate::exec::EnterArgs),
    /// List the containers on this host.
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stop containers: SIGTERM, then SIGKILL after the grace period.
    Stop(StopArgs),
    /// Remove containers with their endpoints, addresses and namespaces.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `shibafu network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network spanning every node.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Show one network as JSON.
    Inspect {
        /// Network name.
        name: String,
    },
    /// Remove a network.
    #[command(visible_alias = "remove")]
    Rm {
        /// Network name.
        name: String,
        /// Also remove the endpoints still attached to it.
        #[arg(short, long)]
        force: bool,
    },
    /// Attach an existing network namespace to a network on this host.
    Attach(AttachArgs),
    /// Detach a namespace attached with `network attach`.
    Detach(DetachArgs),
    /// Let two networks route to each other (they are isolated by default).
    ConnectNetworks {
        /// One network.
        a: String,
        /// The other network.
        b: String,
    },
    /// Isolate two linked networks again.
    Isolate {
        /// One network.
        a: String,
        /// The other network.
        b: String,
    },
    /// List the linked networks.
    Links(ListArgs),
    /// Show the addresses, routes and neighbours inside a container and the host side of each
    /// interface.
    Routes(RoutesArgs),
    /// Show the nodes, networks, containers, services, links and policies (text, DOT or SVG).
    Topology(TopologyArgs),
    /// Check the path from one container to another step by step, each on the node that sees
    /// it: containers, DNS, interfaces and routes, bridges and VXLAN entries, the underlay,
    /// isolation and policies, and a real probe. Exits 1 at the first step that fails.
    Diagnose(DiagnoseArgs),
    /// Trace one DNS query: which server answered (network, node), the requester's view and
    /// zone, local answer vs forwarder cache vs upstream (which, how fast), records with TTLs.
    DnsTrace(DnsTraceArgs),
    /// Manage network policies: which connections may reach or leave a network's endpoints.
    Policy {
        /// Policy subcommand.
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

/// Flags of `shibafu network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Network name (a DNS label: lowercase letters, digits, '-').
    pub name: String,
    /// IPv4 subnet, such as 172.21.0.0/24; the gateway (and DNS server) is its first address.
    pub subnet: String,
    /// IPv6 subnet, such as fd00:21::/64.
    #[arg(long, value_name = "CIDR")]
    pub subnet6: Option<String>,
    /// DNS zone of the network [default: NAME.local].
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Overlay MTU [default: underlay MTU - 50].
    #[arg(long, value_name = "N")]
    pub mtu: Option<u32>,
    /// No route out of the cluster.
    #[arg(long)]
    pub internal: bool,
    /// Upstream DNS server for names outside the zone (repeatable).
    #[arg(long = "forwarder", value_name = "IP[:PORT]")]
    pub forwarders: Vec<String>,
    /// `strict`: only the network's own endpoints may open connections to its endpoints
    /// (links notwithstanding), unless a policy allows more.
    #[arg(long, value_name = "none|strict", default_value = "none")]
    pub isolation: Isolation,
    /// Carry this network's traffic between nodes inside WireGuard (each node's device is
    /// brought up as needed; the MTU is the underlay's minus 60 (IPv4) or 80 (IPv6) minus 50).
    #[arg(long)]
    pub encrypted: bool,
}

/// Output format of list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
}

/// Flags of list commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `shibafu node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the nodes whose agent is alive, with each one's WireGuard key fingerprint and how
    /// its tunnels stand (seconds since the last handshake with each peer).
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Rotate a node's WireGuard key without dropping traffic: the new key is published, the
    /// peers add it, then the old one is retired. Waits until the node uses the new key.
    RotateKey(RotateKeyArgs),
}

/// Flags of `shibafu node rotate-key`.
#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// The node [default: the node of the local agent].
    pub node: Option<String>,
    /// Return once the rotation is requested instead of waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the rotation to finish, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
}

/// Parsing command lines in unit tests, as `shibafu ARGS...`.
#[cfg(test)]
pub(crate) mod testing {
    use clap::Parser;

    use super::{Cli, Command, NetworkCmd};

    /// The whole command line.
    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shibafu").chain(args.iter().copied()))
    }

    /// The command.
    pub(crate) fn command(args: &[&str]) -> Result<Command, clap::Error> {
        parse(args).map(|c| c.command)
    }

    /// `shibafu network ARGS...`: the network subcommand.
    pub(crate) fn network(args: &[&str]) -> Result<NetworkCmd, clap::Error> {
        let args: Vec<&str> = std::iter::once("network")
            .chain(args.iter().copied())
            .collect();
        match command(&args)? {
            Command::Network { cmd } => Ok(cmd),
            other => panic!("not network: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::parse;
    use super::*;

    #[test]
    fn network_create_with_every_flag() {
        let cli = parse(&[
            "network",
            "create",
            "backend",
            "172.22.0.0/24",
            "--subnet6",
            "fd00:22::/64",
            "--zone",
            "be.local",
            "--mtu",
            "1400",
            "--internal",
            "--forwarder",
            "10.0.0.53",
            "--forwarder",
            "10.0.0.54:5353",
        ])
        .expect("parse");
        let Command::Network {
            cmd: NetworkCmd::Create(c),
        } = cli.command
        else {
            panic!("not network create: {cli:?}");
        };
        assert_eq!(
            (c.name.as_str(), c.subnet.as_str()),
            ("backend", "172.22.0.0/24")
        );
        assert_eq!(c.subnet6.as_deref(), Some("fd00:22::/64"));
        assert_eq!(c.zone.as_deref(), Some("be.local"));
        assert_eq!(c.mtu, Some(1400));
        assert!(c.internal);
        assert_eq!(c.forwarders, ["10.0.0.53", "10.0.0.54:5353"]);
    }

    #[test]
    fn create_needs_name_and_subnet() {
        assert!(parse(&["network", "create", "frontend"]).is_err());
        assert!(parse(&["network", "create", "f", "10.0.0.0/24", "--mtu", "big"]).is_err());
        let c = parse(&["network", "create", "f", "10.0.0.0/24"]).expect("minimal");
        let Command::Network {
            cmd: NetworkCmd::Create(c),
        } = c.command
        else {
            panic!("not create");
        };
        assert!(c.subnet6.is_none() && c.zone.is_none() && !c.internal && c.forwarders.is_empty());
    }

    #[test]
    fn ls_formats_and_aliases() {
        let cli = parse(&["network", "ls"]).expect("ls");
        assert!(matches!(
            cli.command,
            Command::Network {
                cmd: NetworkCmd::Ls(ListArgs {
                    format: Format::Table
                })
            }
        ));
        let cli = parse(&["network", "list", "--format", "json"]).expect("list");
        assert!(matches!(
            cli.command,
            Command::Network {
                cmd: NetworkCmd::Ls(ListArgs {
                    format: Format::Json
                })
            }
        ));
        assert!(parse(&["network", "ls", "--format", "yaml"]).is_err());
        let cli = parse(&["node", "ls", "--format", "json"]).expect("node ls");
        assert!(matches!(
            cli.command,
            Command::Node {
                cmd: NodeCmd::Ls(ListArgs {
                    format: Format::Json
                })
            }
        ));
    }

    #[test]
    fn rm_and_inspect() {
        let cli = parse(&["network", "rm", "backend", "--force"]).expect("rm");
        assert!(
            matches!(cli.command, Command::Network { cmd: NetworkCmd::Rm { ref name, force: true } } if name == "backend")
        );
        let cli = parse(&["network", "rm", "-f", "x"]).expect("rm -f");
        assert!(matches!(
            cli.command,
            Command::Network {
                cmd: NetworkCmd::Rm { force: true, .. }
            }
        ));
        let cli = parse(&["network", "rm", "x"]).expect("rm");
        assert!(matches!(
            cli.command,
            Command::Network {
                cmd: NetworkCmd::Rm { force: false, .. }
            }
        ));
        let cli = parse(&["network", "inspect", "x"]).expect("inspect");
        assert!(
            matches!(cli.command, Command::Network { cmd: NetworkCmd::Inspect { ref name } } if name == "x")
        );
        assert!(parse(&["network", "inspect"]).is_err());
    }

    #[test]
    fn global_addresses_anywhere() {
        let cli =
            parse(&["network", "ls", "--coordinator", "http://10.0.0.1:7480"]).expect("after");
        assert_eq!(cli.coordinator, "http://10.0.0.1:7480");
        let cli = parse(&["--agent", "/tmp/a.sock", "node", "ls"]).expect("before");
        assert_eq!(cli.agent, "/tmp/a.sock");
    }

    #[test]
    fn defaults_without_env() {
        // The variables may be set by whoever runs the tests; only check when they are not.
        if std::env::var_os("SHIBAFU_COORDINATOR").is_none()
            && std::env::var_os("SHIBAFU_AGENT").is_none()
        {
            let cli = parse(&["node", "ls"]).expect("parse");
            assert_eq!(cli.coordinator, DEFAULT_COORDINATOR);
            assert_eq!(cli.agent, DEFAULT_AGENT);
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
