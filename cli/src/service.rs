//! `shibafu service ...`: services through the coordinator. A service balances its name over
//! the healthy instances (containers started with `run --service`) of one network.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use shibafu_overlay::api::{Coordinator, InstanceInfo, ServiceInfo, ServiceSpec};
use shibafu_overlay::model::{AllUnhealthy, HealthState, LbPolicy, Probe, Protocol, Service};

use crate::args::Format;
use crate::context::Context;
use crate::health_args::{parse_port, HealthArgs};
use crate::output;

/// `shibafu service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service on a network.
    Create(SpecArgs),
    /// Change a service (only the flags given).
    Update(SpecArgs),
    /// List services: NAME NETWORK LB PORT INSTANCES HEALTHY.
    #[command(visible_alias = "list")]
    Ls(crate::args::ListArgs),
    /// Show a service and its instances.
    Inspect(WhichArgs),
    /// Remove a service (refused while it has instances).
    #[command(visible_alias = "remove")]
    Rm(WhichArgs),
}

/// Load-balancing policy as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lb {
    /// Each instance in turn.
    RoundRobin,
    /// In proportion to the instances' weights (`run --weight`).
    Weighted,
    /// The instance with the fewest established connections.
    LeastConnections,
}

/// Transport of the service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What the name answers when no instance is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhenNoneHealthy {
    /// No address.
    FailClosed,
    /// Every running instance, the answer marked.
    FailOpen,
}

impl From<Lb> for LbPolicy {
    fn from(lb: Lb) -> LbPolicy {
        match lb {
            Lb::RoundRobin => LbPolicy::RoundRobin,
            Lb::Weighted => LbPolicy::Weighted,
            Lb::LeastConnections => LbPolicy::LeastConnections,
        }
    }
}

impl From<Proto> for Protocol {
    fn from(p: Proto) -> Protocol {
        match p {
            Proto::Tcp => Protocol::Tcp,
            Proto::Udp => Protocol::Udp,
        }
    }
}

impl From<WhenNoneHealthy> for AllUnhealthy {
    fn from(w: WhenNoneHealthy) -> AllUnhealthy {
        match w {
            WhenNoneHealthy::FailClosed => AllUnhealthy::FailClosed,
            WhenNoneHealthy::FailOpen => AllUnhealthy::FailOpen,
        }
    }
}

/// Flags of `service create` and `service update`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Service name (a DNS label): NAME.ZONE answers its instances.
    pub name: String,
    /// Its network (for update: may be omitted when the name is unique).
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Order of the instances in answers [default: round-robin].
    #[arg(long, value_enum)]
    pub lb: Option<Lb>,
    /// Service port (published as SRV).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// Name of the port in SRV [default: its name in /etc/services, else port<PORT>].
    #[arg(long, value_name = "NAME")]
    pub port_name: Option<String>,
    /// Transport of the port [default: tcp].
    #[arg(long, value_enum)]
    pub protocol: Option<Proto>,
    /// What the name answers when no instance is healthy [default: fail-closed].
    #[arg(long, value_enum)]
    pub all_unhealthy: Option<WhenNoneHealthy>,
    /// The health check of its instances.
    #[command(flatten)]
    pub health: HealthArgs,
}

/// Which service: a name, and its network when the name is not unique.
#[derive(Debug, Args)]
pub struct WhichArgs {
    /// Service name.
    pub name: String,
    /// Its network (may be omitted when the name is unique).
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Output format (inspect).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs one service subcommand, writing its output to `out`.
pub async fn run(cmd: ServiceCmd, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let coordinator = ctx.coordinator()?;
    let text = match cmd {
        ServiceCmd::Create(args) => {
            let network = args
                .network
                .clone()
                .ok_or_else(|| anyhow::anyhow!("give the service's network with --network"))?;
            let s = coordinator.create_service(&spec(&args, network)).await?;
            format!("{}\n", s.name)
        }
        ServiceCmd::Update(args) => {
            let network = network_of(&coordinator, &args.name, args.network.as_deref()).await?;
            let s = coordinator.update_service(&spec(&args, network)).await?;
            format!("{}\n", s.name)
        }
        ServiceCmd::Ls(args) => {
            let services = coordinator.list_services().await?;
            match args.format {
                Format::Table => services_table(&services),
                Format::Json => output::json(&services)?,
            }
        }
        ServiceCmd::Inspect(w) => {
            let network = network_of(&coordinator, &w.name, w.network.as_deref()).await?;
            let info = coordinator.get_service(&network, &w.name).await?;
            match w.format {
                Format::Table => inspect_text(&info, now_ms()),
                Format::Json => output::json(&info)?,
            }
        }
        ServiceCmd::Rm(w) => {
            let network = network_of(&coordinator, &w.name, w.network.as_deref()).await?;
            let gone = coordinator.remove_service(&network, &w.name).await?;
            format!("{}\n", gone.service.name)
        }
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// The request a create or update sends.
fn spec(args: &SpecArgs, network: String) -> ServiceSpec {
    ServiceSpec {
        network,
        name: args.name.clone(),
        lb: args.lb.map(LbPolicy::from),
        port: args.port,
        port_name: args.port_name.clone(),
        protocol: args.protocol.map(Protocol::from),
        all_unhealthy: args.all_unhealthy.map(AllUnhealthy::from),
        health: args.health.spec(),
    }
}

/// The network of service `name`: `given`, else the only network that has one of that name.
async fn network_of(
    coordinator: &Coordinator,
    name: &str,
    given: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    let nets: Vec<String> = coordinator
        .list_services()
        .await?
        .into_iter()
        .filter(|s| s.service.name == name)
        .map(|s| s.service.network)
        .collect();
    match nets.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no service named {name:?}; see `shibafu service ls`"),
        many => anyhow::bail!(
            "service {name:?} exists on networks {}: give --network",
            many.join(", ")
        ),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lb_word(lb: LbPolicy) -> &'static str {
    match lb {
        LbPolicy::RoundRobin => "round-robin",
        LbPolicy::Weighted => "weighted",
        LbPolicy::LeastConnections => "least-connections",
    }
}

fn port_cell(s: &Service) -> String {
    match (s.port, s.protocol) {
        (Some(p), Protocol::Tcp) => format!("{p}/tcp"),
        (Some(p), Protocol::Udp) => format!("{p}/udp"),
        (None, _) => "-".into(),
    }
}

/// `service ls`: NAME NETWORK LB PORT INSTANCES HEALTHY.
pub fn services_table(services: &[ServiceInfo]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|i| {
            let s = &i.service;
            vec![
                s.name.clone(),
                s.network.clone(),
                lb_word(s.lb).into(),
                port_cell(s),
                i.instances.len().to_string(),
                i.answered().to_string(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "NETWORK", "LB", "PORT", "INSTANCES", "HEALTHY"],
        &rows,
    )
}

fn check_text(s: &Service) -> String {
    let Some(c) = &s.health else {
        return "none (instances are healthy while they run)".into();
    };
    let what = match &c.probe {
        Probe::Tcp { port } => format!("tcp {port}"),
        Probe::Http { port, path } => format!("http {port}{path}"),
        Probe::Cmd { argv } => format!("cmd {}", argv.join(" ")),
    };
    format!(
        "{what} every {}ms, timeout {}ms, rise {}, fall {}, start period {}ms",
        c.interval_ms, c.timeout_ms, c.rise, c.fall, c.start_period_ms
    )
}

fn health_cell(i: &InstanceInfo) -> String {
    let state = match (i.checked, i.state) {
        (false, _) => "no check",
        (true, None) => "starting",
        (true, Some(HealthState::Starting)) => "starting",
        (true, Some(HealthState::Healthy)) => "healthy",
        (true, Some(HealthState::Unhealthy)) => "unhealthy",
    };
    if i.answered {
        state.into()
    } else {
        format!("{state} (not answered)")
    }
}

/// `service inspect`: the service, then its instances:
/// NAME NODE ADDRESS PORT WEIGHT HEALTH LAST-CHECK CONNECTIONS.
pub fn inspect_text(info: &ServiceInfo, now_ms: u64) -> String {
    let s = &info.service;
    let srv = s
        .srv_label()
        .map(|l| {
            let proto = if s.protocol == Protocol::Udp {
                "udp"
            } else {
                "tcp"
            };
            format!("_{l}._{proto}.{}", s.name)
        })
        .unwrap_or_else(|| "-".into());
    let when = match s.all_unhealthy {
        AllUnhealthy::FailClosed => "fail-closed",
        AllUnhealthy::FailOpen => "fail-open",
    };
    let mut out = output::columns(&[
        vec!["Name:".into(), s.name.clone()],
        vec!["Network:".into(), s.network.clone()],
        vec!["LB:".into(), lb_word(s.lb).into()],
        vec!["Port:".into(), port_cell(s)],
        vec!["SRV:".into(), srv],
        vec!["Health check:".into(), check_text(s)],
        vec!["All unhealthy:".into(), when.into()],
    ]);
    out.push('\n');
    let rows: Vec<Vec<String>> = info
        .instances
        .iter()
        .map(|i| {
            let last = i
                .checked_ms
                .map(|t| format!("{} ago", output::age(now_ms.saturating_sub(t) / 1000)))
                .unwrap_or_else(|| "-".into());
            vec![
                i.name.clone(),
                i.node.clone(),
                i.ipv4.to_string(),
                i.port.map_or("-".into(), |p| p.to_string()),
                i.weight.to_string(),
                health_cell(i),
                last,
                i.connections.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &[
            "NAME",
            "NODE",
            "ADDRESS",
            "PORT",
            "WEIGHT",
            "HEALTH",
            "LAST-CHECK",
            "CONNECTIONS",
        ],
        &rows,
    ));
    for i in info.instances.iter().filter(|i| !i.output.is_empty()) {
        out.push_str(&format!(
            "\n{} last check: {}\n",
            i.name,
            i.output.trim_end()
        ));
    }
    out
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
