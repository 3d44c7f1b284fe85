//! `shibafu stop [-t SECS] NAME...` and `shibafu rm [-f] NAME...`: one agent request per
//! container, all at once. Every name that succeeded is printed; every failure is reported,
//! and any failure makes the command fail.

use std::future::Future;
use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::{ClientError, ContainerInfo};
use tokio::task::JoinSet;

use crate::context::Context;

/// Default seconds between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_SECS: u64 = 10;

/// Flags of `shibafu stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = DEFAULT_GRACE_SECS)]
    pub time: u64,
    /// Containers to stop.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Flags of `shibafu rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop running containers first (SIGKILL) instead of refusing.
    #[arg(short, long)]
    pub force: bool,
    /// Containers to remove, with their endpoints, addresses and namespaces.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Stops containers: SIGTERM, then SIGKILL after the grace period.
pub async fn stop(args: StopArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let agent = ctx.agent()?;
    let grace = args.time;
    each(args.names, out, move |name| {
        let agent = agent.clone();
        async move { agent.stop(&name, grace).await }
    })
    .await
}

/// Removes containers (running ones only with `--force`).
pub async fn rm(args: RmArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let agent = ctx.agent()?;
    let force = args.force;
    each(args.names, out, move |name| {
        let agent = agent.clone();
        async move { agent.remove(&name, force).await }
    })
    .await
}

/// Runs `call` for every name concurrently; prints the names that succeeded, in the order
/// given, and fails with every error, one per line.
pub async fn each<F, Fut>(names: Vec<String>, out: &mut dyn Write, call: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<ContainerInfo, ClientError>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let fut = call(name.clone());
        tasks.spawn(async move { (i, fut.await) });
    }
    let mut results: Vec<(usize, Result<ContainerInfo, ClientError>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("a request task failed")?);
    }
    results.sort_by_key(|(i, _)| *i);
    let mut errors = Vec::new();
    for (i, result) in results {
        match result {
            Ok(_) => writeln!(out, "{}", names[i]).context("cannot write to stdout")?,
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(errors.join("\nerror: "))
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::api::ApiError;

    use super::*;
    use crate::args::testing::command as parse;
    use crate::args::Command;

    #[test]
    fn stop_and_rm_parsing() {
        let Command::Stop(s) = parse(&["stop", "api", "web"]).expect("stop") else {
            panic!("not stop");
        };
        assert_eq!(s.time, 10);
        assert_eq!(s.names, ["api", "web"]);
        let Command::Stop(s) = parse(&["stop", "-t", "0", "api"]).expect("stop -t") else {
            panic!("not stop");
        };
        assert_eq!(s.time, 0);
        let Command::Stop(s) = parse(&["stop", "api", "--time", "3"]).expect("--time") else {
            panic!("not stop");
        };
        assert_eq!(s.time, 3);
        assert_eq!(s.names, ["api"]);
        assert!(parse(&["stop"]).is_err());
        assert!(parse(&["stop", "-t", "-1", "api"]).is_err());
        let Command::Rm(r) = parse(&["rm", "-f", "a", "b", "c"]).expect("rm") else {
            panic!("not rm");
        };
        assert!(r.force);
        assert_eq!(r.names, ["a", "b", "c"]);
        let Command::Rm(r) = parse(&["rm", "a"]).expect("rm") else {
            panic!("not rm");
        };
        assert!(!r.force);
        assert!(parse(&["rm", "--force"]).is_err());
    }

    fn info(name: &str) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: "exited".into(),
            pid: None,
            exit_code: Some(0),
            command: vec![],
            netns: String::new(),
            interfaces: vec![],
            cni: None,
        }
    }

    #[tokio::test]
    async fn every_name_is_tried_and_every_error_reported() {
        let names = ["a", "ghost", "b", "busy"].map(String::from).to_vec();
        let mut out = Vec::new();
        let e = each(names, &mut out, |name| async move {
            match name.as_str() {
                "ghost" => Err(ClientError::Api(ApiError::not_found(
                    "no container named \"ghost\"",
                ))),
                "busy" => Err(ClientError::Api(ApiError::invalid(
                    "container busy is running: stop it first, or use rm --force",
                ))),
                _ => Ok(info(&name)),
            }
        })
        .await
        .expect_err("two failed");
        assert_eq!(String::from_utf8(out).expect("utf8"), "a\nb\n");
        assert_eq!(
            e.to_string(),
            "no container named \"ghost\"\nerror: container busy is running: stop it first, or use rm --force"
        );
        let mut out = Vec::new();
        let names = ["x", "y"].map(String::from).to_vec();
        each(names, &mut out, |n| async move { Ok(info(&n)) })
            .await
            .expect("all fine");
        assert_eq!(out, b"x\ny\n");
    }
}
