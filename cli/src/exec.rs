//! `shibafu exec NAME CMD...`: runs a command inside a running container. The agent tells the
//! container's PID 1; `nsenter` (util-linux) enters its mount, UTS, IPC, network and PID
//! namespaces and its root through /proc/PID/ns, so this works from any mount namespace. The
//! CLI replaces itself with nsenter: stdio, the terminal and signals pass straight through, and
//! the command's exit status is the CLI's.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// Replaces this process with nsenter running the command in the container; returns only
/// when that cannot be done.
pub async fn run(args: ExecArgs, ctx: &Context) -> anyhow::Result<u8> {
    let nsenter = prepare(args, ctx).await?;
    Err(replace(nsenter))
}

/// Asks the agent for the container and builds the nsenter command that enters it.
pub async fn prepare(args: ExecArgs, ctx: &Context) -> anyhow::Result<Command> {
    let info = ctx.agent()?.get(&args.name).await?;
    let pid = running_pid(&info)?;
    let nsenter =
        find_program("nsenter", std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            anyhow::anyhow!(
                "nsenter not found on PATH: install util-linux (it enters the container)"
            )
        })?;
    let term = std::env::var_os("TERM");
    Ok(nsenter_command(
        &nsenter,
        pid,
        &info.name,
        term.as_deref(),
        &args.env,
        &args.command,
    ))
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

/// `nsenter --target PID --mount --uts --ipc --net --pid --root --wd -- CMD...` with the
/// environment a container's command starts with (PATH, HOSTNAME, HOME, TERM: the caller's
/// terminal type when it has one) plus `env`, later entries winning.
pub fn nsenter_command(
    nsenter: &Path,
    pid: i32,
    name: &str,
    term: Option<&OsStr>,
    env: &[String],
    command: &[String],
) -> Command {
    let mut cmd = Command::new(nsenter);
    cmd.args(["--target", &pid.to_string()])
        .args([
            "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
        ])
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

/// The first executable file named `program` in the directories of `path` (a PATH value).
pub fn find_program(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path.map_or_else(|| OsString::from("/usr/bin:/bin"), OsStr::to_os_string);
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
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
    fn nsenter_line_and_environment() {
        let cmd = nsenter_command(
            Path::new("/usr/bin/nsenter"),
            4242,
            "api",
            Some(OsStr::new("screen")),
            &["A=1".into(), "HOME=/srv".into(), "B=x=y".into()],
            &["ping".into(), "-c1".into(), "postgres".into()],
        );
        assert_eq!(cmd.get_program(), "/usr/bin/nsenter");
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "--target", "4242", "--mount", "--uts", "--ipc", "--net", "--pid", "--root",
                "--wd", "--", "ping", "-c1", "postgres"
            ]
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
        let plain = nsenter_command(Path::new("nsenter"), 1, "x", None, &[], &["sh".into()]);
        assert!(plain
            .get_envs()
            .any(|(k, v)| k == "TERM" && v == Some(OsStr::new("xterm"))));
    }

    #[test]
    fn finds_executables_only() {
        let dir = std::env::temp_dir().join(format!("shibafu-exec-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        std::fs::write(a.join("tool"), "").expect("plain file");
        std::fs::write(b.join("tool"), "#!/bin/sh\n").expect("script");
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = std::env::join_paths([&a, &b]).expect("join");
        assert_eq!(find_program("tool", Some(&path)), Some(b.join("tool")));
        assert_eq!(find_program("missing", Some(&path)), None);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
