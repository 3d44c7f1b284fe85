//! `shibafu network policy ...`: network policies through the coordinator. A policy allows or
//! denies connections to and from the endpoints of one network (or of one service on it).

use std::io::Write;

use anyhow::Context as _;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Subcommand};
use shibafu_overlay::api::{PolicyInfo, PolicySpec};
use shibafu_overlay::model::{Action, Direction, Policy, Rule};

use crate::args::{Format, ListArgs};
use crate::context::Context;
use crate::output;

/// `shibafu network policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create a policy: rules about who may reach (or be reached from) a network's endpoints.
    Create(CreateArgs),
    /// List policies: NAME NETWORK SELECTS RULES.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a policy and what each rule matched, summed over nodes.
    Inspect(InspectArgs),
    /// Remove a policy and its counters.
    #[command(visible_alias = "remove")]
    Rm {
        /// Policy name.
        name: String,
    },
}

/// Flags of `network policy create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Policy name (a DNS label).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The network whose endpoints it selects.
    #[arg(long, value_name = "NET")]
    pub network: String,
    /// Only the instances of this service on the network.
    #[arg(long, value_name = "SVC")]
    pub service: Option<String>,
    /// The rules, in the order given.
    #[command(flatten)]
    pub rules: RuleFlags,
}

/// Flags of `network policy inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Policy name.
    pub name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The rule flags of `policy create`, in command-line order across all four: rule `i` is what
/// the counters' index `i` refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFlags(pub Vec<Rule>);

/// Each rule flag: its name, what it makes, and its help.
const RULE_FLAGS: [(&str, Action, Direction, &str); 4] = [
    (
        "allow-ingress-from",
        Action::Allow,
        Direction::Ingress,
        "Allow connections from PEER to the selected endpoints (repeatable)",
    ),
    (
        "deny-ingress-from",
        Action::Deny,
        Direction::Ingress,
        "Deny connections from PEER to the selected endpoints (repeatable)",
    ),
    (
        "allow-egress-to",
        Action::Allow,
        Direction::Egress,
        "Allow connections from the selected endpoints to PEER (repeatable)",
    ),
    (
        "deny-egress-to",
        Action::Deny,
        Direction::Egress,
        "Deny connections from the selected endpoints to PEER (repeatable)",
    ),
];

impl Args for RuleFlags {
    fn augment_args(cmd: Command) -> Command {
        RULE_FLAGS
            .iter()
            .fold(cmd, |cmd, &(flag, action, direction, help)| {
                cmd.arg(
                    Arg::new(flag)
                        .long(flag)
                        .value_name("PEER[:PORTS][/PROTO]")
                        .action(ArgAction::Append)
                        .value_parser(move |s: &str| Rule::parse(action, direction, s))
                        .help(help),
                )
            })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        RuleFlags::augment_args(cmd)
    }
}

impl FromArgMatches for RuleFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<RuleFlags, clap::Error> {
        let mut placed: Vec<(usize, Rule)> = Vec::new();
        for (flag, ..) in RULE_FLAGS {
            if let (Some(at), Some(rules)) = (m.indices_of(flag), m.get_many::<Rule>(flag)) {
                placed.extend(at.zip(rules.cloned()));
            }
        }
        placed.sort_by_key(|(at, _)| *at);
        Ok(RuleFlags(placed.into_iter().map(|(_, r)| r).collect()))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = RuleFlags::from_arg_matches(m)?;
        Ok(())
    }
}

/// Runs one policy subcommand, writing its output to `out`.
pub async fn run(cmd: PolicyCmd, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = match cmd {
        PolicyCmd::Create(args) => {
            let spec = spec(args)?;
            let p = ctx.coordinator()?.create_policy(&spec).await?;
            format!("{}\n", p.name)
        }
        PolicyCmd::List(args) => {
            let policies = ctx.coordinator()?.list_policies().await?;
            match args.format {
                Format::Table => policies_table(&policies),
                Format::Json => output::json(&policies)?,
            }
        }
        PolicyCmd::Inspect(args) => {
            let info = ctx.coordinator()?.get_policy(&args.name).await?;
            match args.format {
                Format::Table => inspect_text(&info),
                Format::Json => output::json(&info)?,
            }
        }
        PolicyCmd::Rm { name } => {
            let gone = ctx.coordinator()?.remove_policy(&name).await?;
            format!("{}\n", gone.name)
        }
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// The request `create` sends, checked as the coordinator will (names, ports, at least one
/// rule) so that bad input fails before any request.
pub fn spec(args: CreateArgs) -> anyhow::Result<PolicySpec> {
    let spec = PolicySpec {
        name: args.name,
        network: args.network,
        service: args.service,
        rules: args.rules.0,
    };
    spec.to_policy().validate()?;
    Ok(spec)
}

/// What a policy selects: `network` or `service:NAME`.
fn selects(p: &Policy) -> String {
    match &p.service {
        Some(s) => format!("service:{s}"),
        None => "network".into(),
    }
}

/// `network policy list`: NAME NETWORK SELECTS RULES.
pub fn policies_table(policies: &[Policy]) -> String {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.network.clone(),
                selects(p),
                p.rules.len().to_string(),
            ]
        })
        .collect();
    output::table(&["NAME", "NETWORK", "SELECTS", "RULES"], &rows)
}

/// `network policy inspect`: the policy, then one row per rule, RULE ALLOWED DROPPED (`-` where
/// the rule cannot count: an allow rule drops nothing, a deny rule lets nothing through), then
/// the packets dropped by isolation and the nodes that reported.
pub fn inspect_text(info: &PolicyInfo) -> String {
    let p = &info.policy;
    let mut out = output::columns(&[
        vec!["Name:".into(), p.name.clone()],
        vec!["Network:".into(), p.network.clone()],
        vec!["Selects:".into(), selects(p)],
    ]);
    out.push('\n');
    let rows: Vec<Vec<String>> = p
        .rules
        .iter()
        .zip(&info.rules)
        .map(|(rule, c)| {
            let (allowed, dropped) = match rule.action {
                Action::Allow => (c.allowed.to_string(), "-".into()),
                Action::Deny => ("-".into(), c.dropped.to_string()),
            };
            vec![c.rule.clone(), allowed, dropped]
        })
        .collect();
    out.push_str(&output::table(&["RULE", "ALLOWED", "DROPPED"], &rows));
    out.push('\n');
    let nodes = if info.nodes.is_empty() {
        "none yet".to_string()
    } else {
        info.nodes.join(", ")
    };
    out.push_str(&output::columns(&[
        vec![
            "Dropped by isolation:".into(),
            info.isolation_dropped.to_string(),
        ],
        vec!["Nodes reporting:".into(), nodes],
    ]));
    out
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
