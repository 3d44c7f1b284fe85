//! The shibafu command line: cluster commands go to the coordinator, container commands to this
//! host's agent. Errors print `error: ...` on stderr and exit with status 1.

mod args;
mod context;
mod network;
mod node;
mod output;
mod status;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SHIBAFU_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing more can be reported if stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ctx = Context::new(cli.coordinator, cli.agent);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    runtime.block_on(async {
        match cli.command {
            Command::Network { cmd } => network::run(cmd, &ctx, &mut out).await,
            Command::Node { cmd } => node::run(cmd, &ctx, &mut out).await,
            Command::Status => status::run(&ctx, &mut out).await,
        }
    })?;
    out.flush()?;
    Ok(())
}
