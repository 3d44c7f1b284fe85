//! `shibafu network create|ls|inspect|rm`: cluster-wide network management via the
//! coordinator.

use std::io::Write;

use anyhow::Context as _;
use shibafu_overlay::api::CreateNetwork;

use crate::args::{CreateArgs, Format, NetworkCmd};
use crate::context::Context;
use crate::output;

/// Runs one network subcommand, writing its output to `out`.
pub async fn run(cmd: NetworkCmd, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let coordinator = ctx.coordinator()?;
    let text = match cmd {
        NetworkCmd::Create(args) => {
            let net = coordinator.create_network(&create_request(args)).await?;
            format!("{}\n", net.name)
        }
        NetworkCmd::Ls(args) => {
            let nets = coordinator.list_networks().await?;
            match args.format {
                Format::Table => output::networks_table(&nets),
                Format::Json => output::json(&nets)?,
            }
        }
        NetworkCmd::Inspect { name } => output::json(&coordinator.get_network(&name).await?)?,
        NetworkCmd::Rm { name, force } => {
            let removed = coordinator.remove_network(&name, force).await?;
            format!("{}\n", removed.name)
        }
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// The API request of `network create`; the coordinator validates every field.
pub fn create_request(args: CreateArgs) -> CreateNetwork {
    CreateNetwork {
        name: args.name,
        subnet: args.subnet,
        subnet6: args.subnet6,
        zone: args.zone,
        mtu: args.mtu,
        internal: args.internal,
        forwarders: args.forwarders,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn request_carries_every_flag() {
        let cli = Cli::try_parse_from([
            "shibafu",
            "network",
            "create",
            "b",
            "172.22.0.0/24",
            "--subnet6",
            "fd00::/64",
            "--zone",
            "z.local",
            "--mtu",
            "1450",
            "--internal",
            "--forwarder",
            "10.0.0.53:53",
        ])
        .expect("parse");
        let Command::Network {
            cmd: NetworkCmd::Create(args),
        } = cli.command
        else {
            panic!("not create");
        };
        let req = create_request(args);
        assert_eq!(
            serde_json::to_value(&req).expect("json"),
            serde_json::json!({
                "name": "b", "subnet": "172.22.0.0/24", "subnet6": "fd00::/64", "zone": "z.local",
                "mtu": 1450, "internal": true, "forwarders": ["10.0.0.53:53"]
            })
        );
    }
}
