//! `shibafu run`: starts a container on this host through the agent. With `-d` it prints the
//! container's addresses and returns; otherwise it streams the container's output and exits
//! with the container's exit code. Ctrl-C stops the container (Ctrl-C again leaves it running).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::{Agent, RunContainer};

use crate::context::Context;
use crate::health_args::{parse_port, HealthArgs};
use crate::logs::{self, PACING};
use crate::output;

/// Seconds a container stopped by Ctrl-C gets between SIGTERM and SIGKILL.
const INTERRUPT_GRACE_SECS: u64 = 10;

/// Flags of `shibafu run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background: print the container's addresses and return.
    #[arg(short, long)]
    pub detach: bool,
    /// Container name (a DNS label): its hostname and its DNS name on every network.
    #[arg(long)]
    pub name: String,
    /// Network to attach, repeatable: eth0 on the first, eth1 on the second, ...
    #[arg(long = "network", value_name = "NET", required = true)]
    pub networks: Vec<String>,
    /// Fixed IPv4 address on the first network.
    #[arg(long, value_name = "IP")]
    pub ip: Option<Ipv4Addr>,
    /// Extra DNS name in each network's zone (repeatable).
    #[arg(long = "alias", value_name = "ALIAS")]
    pub aliases: Vec<String>,
    /// Service this container is an instance of (SERVICE.ZONE resolves to every instance).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Port of the service, published as SRV (sets the service's port when `run` creates it).
    #[arg(long, value_name = "PORT", requires = "service", value_parser = parse_port)]
    pub port: Option<u16>,
    /// Weight of this instance in a weighted service, 1-1000 [default: 1].
    #[arg(long, value_name = "N", requires = "service")]
    pub weight: Option<u32>,
    /// A health check of this instance, in place of the service's (or changes to it).
    #[command(flatten)]
    pub health: HealthArgs,
    /// Environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Add a capability to the container's set (Docker's default set: CHOWN, DAC_OVERRIDE,
    /// FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE,
    /// SYS_CHROOT, KILL, AUDIT_WRITE); `ALL` for every one. Repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the container's set; `ALL` drops every one (then only --cap-add
    /// ones stay). Repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Root filesystem directory [default: the host's].
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Command and its arguments; everything after the command belongs to it (or use `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Starts the container; returns the exit status for the shell (0 with `-d`).
pub async fn run(args: RunArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<u8> {
    let agent = ctx.agent()?;
    let detach = args.detach;
    let req = request(args)?;
    let info = agent.run(&req).await?;
    if detach {
        out.write_all(output::interface_lines(&info, None).as_bytes())
            .context("cannot write to stdout")?;
        return Ok(0);
    }
    let code = follow_in_foreground(&agent, &info.name, out).await?;
    Ok(exit_status(code))
}

/// Streams the output until the container exits. The first Ctrl-C asks the agent to stop the
/// container and keeps streaming to its end; a second one leaves it running.
async fn follow_in_foreground(
    agent: &Agent,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let follow = logs::follow(|offset| agent.logs(name, offset), out, PACING);
    tokio::pin!(follow);
    tokio::select! {
        done = &mut follow => return done,
        _ = tokio::signal::ctrl_c() => {}
    }
    // Nothing more can be reported if stderr itself is gone.
    let _ = writeln!(
        std::io::stderr(),
        "stopping container {name} (Ctrl-C again to leave it running)"
    );
    let stop_then_follow = async {
        agent.stop(name, INTERRUPT_GRACE_SECS).await?;
        follow.await
    };
    tokio::select! {
        done = stop_then_follow => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!(
            "container {name} left running: see `shibafu ps`, stop it with `shibafu stop {name}`"
        ),
    }
}

/// The agent request for these flags. A relative `--rootfs` is made absolute here: the agent
/// runs in another directory.
pub fn request(args: RunArgs) -> anyhow::Result<RunContainer> {
    if args.service.is_none() && !args.health.spec().is_empty() {
        anyhow::bail!("the --health-* flags check a service instance: give --service too");
    }
    let rootfs = match args.rootfs {
        Some(dir) => {
            let abs = std::path::absolute(&dir)
                .with_context(|| format!("--rootfs {}: cannot make it absolute", dir.display()))?;
            let text = abs.to_str().with_context(|| {
                format!("--rootfs {}: the path is not valid UTF-8", abs.display())
            })?;
            Some(text.to_string())
        }
        None => None,
    };
    Ok(RunContainer {
        name: args.name,
        networks: args.networks,
        ip: args.ip,
        aliases: args.aliases,
        service: args.service,
        port: args.port,
        weight: args.weight,
        health: args.health.spec(),
        rootfs,
        command: args.command,
        env: args.env,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
    })
}

/// The shell exit status for a container exit code: 0-255 as is (the agent reports 128 + N
/// for a container killed by signal N), anything else 255.
pub fn exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

/// Checks a `KEY=VALUE` environment entry (clap value parser of `--env`).
pub fn parse_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() && !s.contains('\0') => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::command;
    use crate::args::Command;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        match command(args)? {
            Command::Run(r) => Ok(r),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn every_flag_and_repeats() {
        let r = parse(&[
            "run",
            "-d",
            "--name",
            "api",
            "--network",
            "backend",
            "--network",
            "frontend",
            "--ip",
            "172.22.0.10",
            "--alias",
            "a1",
            "--alias",
            "a2",
            "--service",
            "web",
            "--port",
            "8080",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--rootfs",
            "/srv/root",
            "sleep",
            "1000",
        ])
        .expect("parse");
        assert!(r.detach);
        assert_eq!(r.name, "api");
        assert_eq!(r.networks, ["backend", "frontend"]);
        assert_eq!(r.ip, Some(Ipv4Addr::new(172, 22, 0, 10)));
        assert_eq!(r.aliases, ["a1", "a2"]);
        assert_eq!((r.service.as_deref(), r.port), (Some("web"), Some(8080)));
        assert_eq!(r.env, ["A=1", "B=x=y"]);
        assert_eq!(r.command, ["sleep", "1000"]);
        let req = request(r).expect("request");
        assert_eq!(
            serde_json::to_value(&req).expect("json"),
            serde_json::json!({
                "name": "api", "networks": ["backend", "frontend"], "ip": "172.22.0.10",
                "aliases": ["a1", "a2"], "service": "web", "port": 8080, "rootfs": "/srv/root",
                "command": ["sleep", "1000"], "env": ["A=1", "B=x=y"]
            })
        );
    }

    #[test]
    fn command_after_double_dash_or_first_word_keeps_its_flags() {
        let r = parse(&[
            "run",
            "--name",
            "t",
            "--network",
            "n",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .expect("--");
        assert_eq!(r.command, ["sh", "-c", "exit 3"]);
        assert!(!r.detach);
        let r = parse(&[
            "run",
            "--name",
            "t",
            "--network",
            "n",
            "ping",
            "-c1",
            "-d",
            "x",
        ])
        .expect("trailing");
        assert_eq!(r.command, ["ping", "-c1", "-d", "x"]);
        assert!(!r.detach, "-d after the command is the command's");
        let r = parse(&[
            "run",
            "--name",
            "t",
            "--network",
            "n",
            "--",
            "--weird",
            "--name",
        ])
        .expect("hyphens after --");
        assert_eq!(r.command, ["--weird", "--name"]);
        let r = parse(&[
            "run",
            "--name",
            "t",
            "--network",
            "n",
            "env",
            "--agent",
            "x",
        ])
        .expect("global flag after the command");
        assert_eq!(r.command, ["env", "--agent", "x"]);
    }

    #[test]
    fn missing_or_bad_flags_are_refused() {
        for args in [
            &["run", "--network", "n", "true"][..],
            &["run", "--name", "t", "true"],
            &["run", "--name", "t", "--network", "n"],
            &["run", "--name", "t", "--network", "n", "--"],
            &[
                "run",
                "--name",
                "t",
                "--network",
                "n",
                "--ip",
                "172.22.0.300",
                "true",
            ],
            &[
                "run",
                "--name",
                "t",
                "--network",
                "n",
                "--ip",
                "fd00::1",
                "true",
            ],
            &[
                "run",
                "--name",
                "t",
                "--network",
                "n",
                "--port",
                "80",
                "true",
            ],
            &[
                "run",
                "--name",
                "t",
                "--network",
                "n",
                "--service",
                "s",
                "--port",
                "x",
                "true",
            ],
            &[
                "run",
                "--name",
                "t",
                "--network",
                "n",
                "-e",
                "NOEQUALS",
                "true",
            ],
            &["run", "--name", "t", "--network", "n", "-e", "=v", "true"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
        let e =
            parse(&["run", "--name", "t", "--network", "n", "-e", "X", "true"]).expect_err("env");
        assert!(e.to_string().contains(r#""X" is not KEY=VALUE"#), "{e}");
    }

    #[test]
    fn relative_rootfs_becomes_absolute() {
        let r = parse(&[
            "run",
            "--name",
            "t",
            "--network",
            "n",
            "--rootfs",
            "img",
            "true",
        ])
        .expect("parse");
        let req = request(r).expect("request");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(req.rootfs, Some(cwd.join("img").display().to_string()));
        let r = parse(&["run", "--name", "t", "--network", "n", "true"]).expect("parse");
        let json = serde_json::to_value(request(r).expect("request")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"name": "t", "networks": ["n"], "command": ["true"]})
        );
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(137), 137);
        assert_eq!(exit_status(255), 255);
        assert_eq!(exit_status(256), 255);
        assert_eq!(exit_status(-1), 255);
    }
}
