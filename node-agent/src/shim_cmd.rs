//! `shibafu-agent shim --spec FILE`: the container shim, a fresh single-threaded process per
//! container that outlives agent restarts. Exits with the container command's exit code.

use std::path::PathBuf;

use anyhow::Context;
use shibafu_overlay::container::{shim, state::ContainerDir};

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
