//! `shibafu exec NAME CMD...`: runs a command inside a running container. The agent tells the
//! container's PID 1; the CLI exports its spans, then replaces itself with a fresh,
//! single-threaded copy of itself (`shibafu __enter --pid PID -- CMD...`) that enters the
//! container's mount, UTS, IPC, network and PID namespaces and its root through /proc/PID (so
//! this works from any mount namespace), takes the container's capability set, and runs the
//! command: stdio and the terminal pass straight through, and the command's exit status is the
//! CLI's.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use clap::Args;
use shibafu_overlay::api::ContainerInfo;

use crate::context::Context;
use crate::run::parse_env;

/// PATH of a container's command, as the agent's shim sets it.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Flags of `shibafu exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Container name.
    pub name: String,
    /// Command and its arguments; everything after the command belongs to it (or use `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Flags of the hidden `shibafu __enter`.
#[derive(Debug, Args)]
pub struct EnterArgs {
    /// Host pid of the container's PID 1.
    #[arg(long)]
    pub pid: i32,
    /// The command and its arguments (its environment is this process's).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Asks the agent for the container and builds the command that enters it: the entering copy
/// of this binary, which `main` runs with [`replace`] once the command's spans are exported.
pub async fn prepare(args: ExecArgs, ctx: &Context) -> anyhow::Result<Command> {
    let info = ctx.agent()?.get(&args.name).await?;
    let pid = running_pid(&info)?;
    let term = std::env::var_os("TERM");
    let program = entering_program(pid)?;
    Ok(enter_command(
        Path::new(&program),
        pid,
        &info.name,
        term.as_deref(),
        &args.env,
        &args.command,
    ))
}

/// What to re-execute as `__enter`: this binary, or for a container with a root filesystem of
/// its own a sealed in-memory copy of it (its files could otherwise reach the binary on disk;
/// see `container::sealed`). The copy's descriptor stays open until the exec.
fn entering_program(pid: i32) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use shibafu_overlay::container::sealed;
    use std::os::fd::IntoRawFd;
    if sealed::shares_root(pid).with_context(|| format!("reading the root of pid {pid}"))? {
        return Ok("/proc/self/exe".into());
    }
    let copy = sealed::copy_of_self().context("copying this binary to run sealed")?;
    Ok(format!("/proc/self/fd/{}", copy.into_raw_fd()))
}

/// `shibafu __enter`: runs the command in the container and exits with its status (0-255).
pub fn enter(args: EnterArgs) -> std::process::ExitCode {
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    match shibafu_overlay::container::enter::run(args.pid, &args.command, &env) {
        Ok(code) => std::process::ExitCode::from(crate::run::exit_status(code)),
        Err(e) => {
            eprintln!("error: entering the container: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Replaces this process with `cmd`; returns only if that fails.
pub fn replace(mut cmd: Command) -> anyhow::Error {
    let e = cmd.exec();
    anyhow::Error::new(e).context(format!(
        "cannot run {}",
        cmd.get_program().to_string_lossy()
    ))
}

/// The host pid of a running container's PID 1, or why there is none.
pub fn running_pid(info: &ContainerInfo) -> anyhow::Result<i32> {
    let name = &info.name;
    match (info.state.as_str(), info.pid) {
        ("running", Some(pid)) if pid > 0 => Ok(pid),
        ("exited", _) => {
            let how = info
                .exit_code
                .map_or_else(|| "exited".to_string(), |c| format!("exited {c}"));
            anyhow::bail!(
                "container {name} is not running ({how}); start a new one with shibafu run"
            )
        }
        ("attached", _) => anyhow::bail!(
            "{name} is a network namespace attached with `shibafu network attach`, not a container: enter it with nsenter --net={}",
            info.netns
        ),
        (state, _) => anyhow::bail!(
            "container {name} is not running ({state}); wait for it to start, see shibafu ps"
        ),
    }
}

/// `SELF __enter --pid PID -- CMD...` with the environment a container's command starts with
/// (PATH, HOSTNAME, HOME, TERM: the caller's terminal type when it has one) plus `env`, later
/// entries winning.
pub fn enter_command(
    program: &Path,
    pid: i32,
    name: &str,
    term: Option<&OsStr>,
    env: &[String],
    command: &[String],
) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["__enter", "--pid", &pid.to_string(), "--"])
        .args(command)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("HOSTNAME", name)
        .env("HOME", "/root")
        .env("TERM", term.unwrap_or(OsStr::new("xterm")));
    for entry in env {
        if let Some((key, value)) = entry.split_once('=') {
            cmd.env(key, value);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::command;
    use crate::args::Command as Cmd;

    fn parse(args: &[&str]) -> Result<ExecArgs, clap::Error> {
        match command(args)? {
            Cmd::Exec(e) => Ok(e),
            other => panic!("not exec: {other:?}"),
        }
    }

    fn info(state: &str, pid: Option<i32>, exit_code: Option<i32>) -> ContainerInfo {
        ContainerInfo {
            name: "api".into(),
            state: state.into(),
            pid,
            exit_code,
            command: vec!["sleep".into()],
            netns: "/run/netns/api".into(),
            interfaces: vec![],
            cni: None,
        }
    }

    #[test]
    fn parsing_keeps_the_commands_flags() {
        let e = parse(&["exec", "api", "ping", "-c1", "postgres"]).expect("parse");
        assert_eq!(e.name, "api");
        assert_eq!(e.command, ["ping", "-c1", "postgres"]);
        let e = parse(&[
            "exec", "-e", "A=1", "--env", "B=2", "api", "--", "sh", "-c", "echo $A",
        ])
        .expect("--");
        assert_eq!(e.env, ["A=1", "B=2"]);
        assert_eq!(e.command, ["sh", "-c", "echo $A"]);
        let e = parse(&["exec", "api", "nslookup", "-e", "x"]).expect("-e after CMD");
        assert!(e.env.is_empty());
        assert_eq!(e.command, ["nslookup", "-e", "x"]);
        assert!(parse(&["exec", "api"]).is_err());
        assert!(parse(&["exec"]).is_err());
        assert!(parse(&["exec", "-e", "NOVALUE", "api", "true"]).is_err());
    }

    #[test]
    fn pid_only_while_running() {
        assert_eq!(
            running_pid(&info("running", Some(4242), None)).expect("pid"),
            4242
        );
        let e = running_pid(&info("exited", None, Some(3))).expect_err("exited");
        assert_eq!(
            e.to_string(),
            "container api is not running (exited 3); start a new one with shibafu run"
        );
        let e = running_pid(&info("attached", None, None)).expect_err("attached");
        assert!(
            e.to_string().contains("nsenter --net=/run/netns/api"),
            "{e}"
        );
        let e = running_pid(&info("created", None, None)).expect_err("created");
        assert!(
            e.to_string()
                .starts_with("container api is not running (created)"),
            "{e}"
        );
        assert!(running_pid(&info("running", None, None)).is_err());
    }

    #[test]
    fn enter_line_and_environment() {
        let cmd = enter_command(
            Path::new("/proc/self/exe"),
            4242,
            "api",
            Some(OsStr::new("screen")),
            &["A=1".into(), "HOME=/srv".into(), "B=x=y".into()],
            &["ping".into(), "-c1".into(), "postgres".into()],
        );
        assert_eq!(cmd.get_program(), "/proc/self/exe");
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(
            args,
            ["__enter", "--pid", "4242", "--", "ping", "-c1", "postgres"]
        );
        let mut env: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect();
        env.sort();
        let want = [
            ("A", "1"),
            ("B", "x=y"),
            ("HOME", "/srv"),
            ("HOSTNAME", "api"),
            ("PATH", BASE_PATH),
            ("TERM", "screen"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env, want);
        let plain = enter_command(Path::new("shibafu"), 1, "x", None, &[], &["sh".into()]);
        assert!(plain
            .get_envs()
            .any(|(k, v)| k == "TERM" && v == Some(OsStr::new("xterm"))));
    }
}
