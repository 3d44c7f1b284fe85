//! The shibafu command line: cluster commands go to the coordinator, container commands to this
//! host's agent. Errors print `error: ...` on stderr and exit with status 1; `run` and `exec`
//! exit with the container command's status.

mod apply;
mod args;
mod attach;
mod cert;
mod config_policy;
mod config_read;
mod config_reader;
mod config_write;
mod context;
mod diagnose;
mod diagnose_fabric;
mod diagnose_steps;
mod dns_trace;
mod exec;
mod health_args;
mod lifecycle;
mod links;
mod logs;
mod network;
mod node;
mod output;
mod policy;
mod ps;
mod routes;
mod run;
mod service;
mod status;
mod topology;
mod yaml;

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};
use tracing::{info_span, Instrument};

use crate::args::{Cli, Command};
use crate::context::Context;
use shibafu_overlay::tls::TlsFiles;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Before anything starts a thread: entering a mount namespace needs a single thread.
    if let Command::Enter(args) = cli.command {
        return exec::enter(args);
    }
    // Dropped last: exports the command's spans (bounded wait) once it is done.
    let telemetry = shibafu_overlay::telemetry::Telemetry::new("shibafu")
        .quiet_by_default()
        .init();
    let span = info_span!("command", otel.name = %command_name(&matches), otel.kind = "client");
    let outcome = span.in_scope(|| run(cli));
    drop(span);
    let outcome = match outcome {
        Ok(Done::Exit(code)) => Ok(code),
        Ok(Done::Replace(cmd)) => {
            // exec() never returns to drop the guard: export the command's spans first.
            drop(telemetry);
            Err(exec::replace(cmd))
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Nothing more can be reported if stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The span name of a command: `shibafu` and its subcommands (`shibafu network create`).
fn command_name(matches: &ArgMatches) -> String {
    let mut name = String::from("shibafu");
    let mut m = matches;
    while let Some((sub, next)) = m.subcommand() {
        name.push(' ');
        name.push_str(sub);
        m = next;
    }
    name
}

/// How a command ends.
enum Done {
    /// With this process exit status.
    Exit(u8),
    /// By replacing this process with the command (`exec`), once the spans are exported.
    Replace(std::process::Command),
}

/// Runs one command; returns how the process ends.
fn run(cli: Cli) -> anyhow::Result<Done> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tls = TlsFiles::from_flags(cli.tls_ca, cli.tls_cert, cli.tls_key)?;
    let ctx = Context::new(cli.coordinator, cli.agent)
        .with_node_agents(cli.node_agents)
        .with_tls(tls);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let done = runtime.block_on(
        async {
            let done = match cli.command {
                Command::Network { cmd } => network::run(cmd, &ctx, &mut out).await,
                Command::Node { cmd } => node::run(cmd, &ctx, &mut out).await,
                Command::Service { cmd } => service::run(cmd, &ctx, &mut out).await,
                Command::Apply(args) => apply::apply(args, &ctx, &mut out).await,
                Command::Export => apply::export(&ctx, &mut out).await,
                Command::Status => status::run(&ctx, &mut out).await,
                Command::Cert { cmd } => cert::run(cmd, &mut out),
                Command::Run(args) => return run::run(args, &ctx, &mut out).await.map(Done::Exit),
                Command::Exec(args) => return exec::prepare(args, &ctx).await.map(Done::Replace),
                Command::Enter(_) => unreachable!("handled before the runtime starts"),
                Command::Ps(args) => ps::run(args, &ctx, &mut out).await,
                Command::Logs(args) => logs::run(args, &ctx, &mut out).await,
                Command::Stop(args) => lifecycle::stop(args, &ctx, &mut out).await,
                Command::Rm(args) => lifecycle::rm(args, &ctx, &mut out).await,
            };
            done.map(|()| Done::Exit(0))
        }
        .instrument(tracing::Span::current()),
    )?;
    out.flush()?;
    Ok(done)
}
