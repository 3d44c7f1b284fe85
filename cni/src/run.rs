//! The operations: each checks its input, asks the agent, and gives the JSON to print (if any).

use std::path::PathBuf;

use serde_json::{json, Value};
use shibafu_overlay::api::{Agent, ClientError, CniAdd, CniGc, CniTarget, ErrorKind, Target};
use shibafu_overlay::container::netns_file::is_net_ns;

use crate::config::{attachment, NetConf, SUPPORTED};
use crate::env::{CniEnv, Command};
use crate::error::{CniError, CHECK_FAILED, NOT_AVAILABLE, UNKNOWN_CONTAINER};
use crate::result::{add_result, check_prev};

const HINT: &str =
    "is shibafu-agent running on this node? the conflist's \"agent\" names its socket";

/// Runs the operation `env` names on the configuration `stdin`.
pub async fn dispatch(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    let agent = Agent::new(Target::Unix(PathBuf::from(conf.agent())), HINT);
    match env.command {
        Command::Add => add(env, &conf, &agent).await.map(Some),
        Command::Del => del(env, &conf, &agent).await.map(|()| None),
        Command::Check => check(env, &conf, &agent).await.map(|()| None),
        Command::Status => status(&agent).await.map(|()| None),
        Command::Gc => gc(&conf, &agent).await.map(|()| None),
        Command::Version => Ok(Some(version(stdin))),
    }
}

/// VERSION: the versions spoken, for the configuration's version (or the newest).
fn version(stdin: &[u8]) -> Value {
    json!({
        "cniVersion": crate::config::version_of(stdin),
        "supportedVersions": SUPPORTED,
    })
}

async fn add(env: &CniEnv, conf: &NetConf, agent: &Agent) -> Result<Value, CniError> {
    let (id, ifname, netns) = (env.container_id()?, env.ifname()?, env.netns()?);
    let network = conf.network()?;
    if !is_net_ns(std::path::Path::new(netns)) {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            format!("CNI_NETNS {netns}: not a network namespace"),
        ));
    }
    let a = attachment(conf, env, id)?;
    let req = CniAdd {
        container_id: id.to_string(),
        ifname: ifname.to_string(),
        netns: netns.to_string(),
        network: network.to_string(),
        name: a.name.unwrap_or_default(),
        aliases: a.aliases,
        service: a.service,
        port: a.port,
        weight: a.weight,
    };
    let mut att = agent
        .cni_add(&req)
        .await
        .map_err(|e| CniError::from_agent("attach", e))?;
    // The sandbox as the runtime named it (the agent pins a /proc/PID/ns/net elsewhere).
    att.netns = netns.to_string();
    Ok(add_result(
        &conf.cni_version,
        &att,
        conf.prev_result.as_ref(),
    ))
}

async fn del(env: &CniEnv, conf: &NetConf, agent: &Agent) -> Result<(), CniError> {
    let target = target(env, conf)?;
    agent
        .cni_del(&target)
        .await
        .map(|_| ())
        .map_err(|e| CniError::from_agent("detach", e))
}

async fn check(env: &CniEnv, conf: &NetConf, agent: &Agent) -> Result<(), CniError> {
    let target = target(env, conf)?;
    let netns = env.netns()?;
    let mut found = agent.cni_check(&target).await.map_err(|e| match e {
        ClientError::Api(a) if a.kind == ErrorKind::NotFound => {
            CniError::new(UNKNOWN_CONTAINER, format!("check: {}", a.error))
        }
        e => CniError::from_agent("check", e),
    })?;
    found.attachment.netns = netns.to_string();
    let mut problems = found.problems;
    if let Some(prev) = &conf.prev_result {
        if let Err(e) = check_prev(prev, &found.attachment) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            CHECK_FAILED,
            format!(
                "{} of container {} is not as attached",
                target.ifname, target.container_id
            ),
        )
        .details(problems.join("; ")))
    }
}

async fn status(agent: &Agent) -> Result<(), CniError> {
    let s: Value = agent.client().get("/v1/status").await.map_err(|e| {
        CniError::new(NOT_AVAILABLE, "the shibafu agent is not available").details(e.to_string())
    })?;
    if s["etcd_connected"] == true && s["registered"] == true {
        Ok(())
    } else {
        Err(CniError::new(
            NOT_AVAILABLE,
            "the shibafu agent has no live connection to etcd (or is not registered yet)",
        ))
    }
}

async fn gc(conf: &NetConf, agent: &Agent) -> Result<(), CniError> {
    let req = CniGc {
        network: conf.network()?.to_string(),
        valid: conf
            .valid_attachments
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    agent
        .cni_gc(&req)
        .await
        .map(|_| ())
        .map_err(|e| CniError::from_agent("gc", e))
}

fn target(env: &CniEnv, conf: &NetConf) -> Result<CniTarget, CniError> {
    Ok(CniTarget {
        container_id: env.container_id()?.to_string(),
        ifname: env.ifname()?.to_string(),
        network: conf.network()?.to_string(),
    })
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
