//! `shibafu network attach|detach`: joins an existing network namespace (made by another
//! runtime, or `ip netns add`) to a network on this host, through the agent, the way a
//! CNI-style caller would; `shibafu run` uses the same path for its own containers.

use std::io::Write;
use std::net::Ipv4Addr;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::Attach;

use crate::context::Context;
use crate::output;

/// Where `ip netns add NAME` puts its namespaces.
const NAMED_NETNS_DIR: &str = "/run/netns";

/// Flags of `shibafu network attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Network to attach to.
    #[arg(value_name = "NET")]
    pub network: String,
    /// The namespace: a file path (/run/netns/x, /var/run/docker/netns/...) or the name of one
    /// made by `ip netns add`.
    #[arg(long, value_name = "PATH")]
    pub netns: String,
    /// Name of the workload: its DNS name on the network.
    #[arg(long)]
    pub name: String,
    /// Fixed IPv4 address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<Ipv4Addr>,
    /// Extra DNS name (repeatable).
    #[arg(long = "alias", value_name = "ALIAS")]
    pub aliases: Vec<String>,
}

/// Flags of `shibafu network detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Network to detach from.
    #[arg(value_name = "NET")]
    pub network: String,
    /// Name the workload was attached with.
    #[arg(long)]
    pub name: String,
}

/// Attaches the namespace; prints its interface on the network.
pub async fn attach(args: AttachArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let agent = ctx.agent()?;
    let req = Attach {
        netns: netns_path(&args.netns)?,
        network: args.network,
        name: args.name,
        ip: args.ip,
        aliases: args.aliases,
    };
    let info = agent.attach(&req).await?;
    out.write_all(output::interface_lines(&info, Some(&req.network)).as_bytes())
        .context("cannot write to stdout")
}

/// Detaches the namespace; prints the interface it had on the network (or the name).
pub async fn detach(args: DetachArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let info = ctx.agent()?.detach(&args.network, &args.name).await?;
    out.write_all(output::interface_lines(&info, Some(&args.network)).as_bytes())
        .context("cannot write to stdout")
}

/// The namespace file the agent should open: a bare name is one made by `ip netns add`
/// (`/run/netns/NAME`), a relative path is taken from the current directory.
pub fn netns_path(given: &str) -> anyhow::Result<String> {
    if given.is_empty() || given == "." || given == ".." {
        anyhow::bail!("--netns {given:?}: give a namespace file such as /run/netns/NAME, or NAME");
    }
    if !given.contains('/') {
        return Ok(format!("{NAMED_NETNS_DIR}/{given}"));
    }
    let abs = std::path::absolute(given)
        .with_context(|| format!("--netns {given}: cannot make it absolute"))?;
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("--netns {}: the path is not valid UTF-8", abs.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::network as parse;
    use crate::args::NetworkCmd;

    #[test]
    fn attach_flags() {
        let NetworkCmd::Attach(a) = parse(&[
            "attach",
            "backend",
            "--netns",
            "/run/netns/x",
            "--name",
            "db",
            "--ip",
            "172.22.0.9",
            "--alias",
            "pg",
            "--alias",
            "postgres",
        ])
        .expect("attach") else {
            panic!("not attach");
        };
        assert_eq!(a.network, "backend");
        assert_eq!((a.netns.as_str(), a.name.as_str()), ("/run/netns/x", "db"));
        assert_eq!(a.ip, Some(Ipv4Addr::new(172, 22, 0, 9)));
        assert_eq!(a.aliases, ["pg", "postgres"]);
        assert!(
            parse(&["attach", "backend", "--name", "db"]).is_err(),
            "no --netns"
        );
        assert!(
            parse(&["attach", "backend", "--netns", "x"]).is_err(),
            "no --name"
        );
        assert!(
            parse(&["attach", "--netns", "x", "--name", "db"]).is_err(),
            "no NET"
        );
        assert!(parse(&["attach", "b", "--netns", "x", "--name", "d", "--ip", "x"]).is_err());
    }

    #[test]
    fn detach_flags() {
        let NetworkCmd::Detach(d) = parse(&["detach", "backend", "--name", "db"]).expect("detach")
        else {
            panic!("not detach");
        };
        assert_eq!((d.network.as_str(), d.name.as_str()), ("backend", "db"));
        assert!(parse(&["detach", "backend"]).is_err());
    }

    #[test]
    fn netns_paths() {
        assert_eq!(netns_path("blue").expect("name"), "/run/netns/blue");
        assert_eq!(netns_path("/proc/1/ns/net").expect("abs"), "/proc/1/ns/net");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            netns_path("./ns/x").expect("rel"),
            cwd.join("ns/x").display().to_string()
        );
        for bad in ["", ".", ".."] {
            assert!(netns_path(bad).is_err(), "{bad:?}");
        }
    }
}
