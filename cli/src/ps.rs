//! `shibafu ps`: the containers and attached namespaces on this host, as the agent reports
//! them. Exited containers only with `--all`.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::ContainerInfo;

use crate::args::Format;
use crate::context::Context;
use crate::output;

/// Flags of `shibafu ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also list exited containers.
    #[arg(short, long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Lists the containers of this host.
pub async fn run(args: PsArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let list = visible(ctx.agent()?.list().await?, args.all);
    let text = match args.format {
        Format::Table => output::containers_table(&list),
        Format::Json => output::json(&list)?,
    };
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// The containers `ps` shows, sorted by name: all with `all`, else all but the exited ones.
pub fn visible(mut list: Vec<ContainerInfo>, all: bool) -> Vec<ContainerInfo> {
    list.retain(|c| all || c.state != "exited");
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    fn info(name: &str, state: &str) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: state.into(),
            pid: None,
            exit_code: (state == "exited").then_some(0),
            command: vec![],
            netns: String::new(),
            interfaces: vec![],
            cni: None,
        }
    }

    fn names(list: &[ContainerInfo]) -> Vec<&str> {
        list.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn exited_only_with_all() {
        let list = vec![
            info("web", "running"),
            info("job", "exited"),
            info("cni", "attached"),
            info("new", "created"),
        ];
        assert_eq!(names(&visible(list.clone(), false)), ["cni", "new", "web"]);
        assert_eq!(names(&visible(list, true)), ["cni", "job", "new", "web"]);
    }

    #[test]
    fn parsing() {
        let cli = parse(&["ps"]).expect("ps");
        assert!(matches!(
            cli.command,
            Command::Ps(PsArgs {
                all: false,
                format: Format::Table
            })
        ));
        let cli = parse(&["ps", "-a", "--format", "json"]).expect("ps -a");
        assert!(matches!(
            cli.command,
            Command::Ps(PsArgs {
                all: true,
                format: Format::Json
            })
        ));
        let cli = parse(&["ps", "--all"]).expect("ps --all");
        assert!(matches!(cli.command, Command::Ps(PsArgs { all: true, .. })));
        assert!(parse(&["ps", "extra"]).is_err());
        assert!(parse(&["ps", "--format", "yaml"]).is_err());
    }
}
