//! `shibafu-agent shim --spec FILE`: the container shim, a fresh single-threaded process per
//! container that outlives agent restarts. Exits with the container command's exit code.
//! `shibafu-agent enter --pid PID -- CMD...`: runs a command in a running container with the
//! container's capabilities (command health checks go through it).

use std::path::PathBuf;

use anyhow::Context;
use shibafu_overlay::container::{enter, shim, state::ContainerDir};

/// Flags of `shibafu-agent shim`.
#[derive(clap::Args)]
pub struct ShimArgs {
    /// The container's spec file (spec.json in its state directory).
    #[arg(long)]
    spec: PathBuf,
}

/// Runs the container and exits with its code; never starts threads before the fork.
pub fn run(args: ShimArgs) -> anyhow::Result<()> {
    let dir = args.spec.parent().context("spec file has no directory")?;
    let spec = ContainerDir::new(dir.to_path_buf())
        .read_spec()
        .context("read container spec")?;
    let code = shim::run(&spec).with_context(|| format!("container {}", spec.name))?;
    std::process::exit(code)
}

/// Flags of `shibafu-agent enter`.
#[derive(clap::Args)]
pub struct EnterArgs {
    /// Host pid of the container's PID 1.
    #[arg(long)]
    pid: i32,
    /// The command and its arguments (its environment is this process's).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Runs the command in the container and exits with its code; single-threaded throughout.
pub fn enter(args: EnterArgs) -> anyhow::Result<()> {
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let code = enter::run(args.pid, &args.command, &env)
        .with_context(|| format!("entering the container of pid {}", args.pid))?;
    std::process::exit(code)
}
