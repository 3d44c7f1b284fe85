//! The servers a command talks to: the coordinator (cluster state) and this host's agent
//! (containers, attachments). Addresses are parsed when a command first needs them, so a bad
//! `--agent` does not break cluster commands and the other way round.

use std::path::Path;

use shibafu_overlay::api::{Agent, ClientError, Coordinator, Target};

/// Shown when the coordinator cannot be reached.
pub const COORDINATOR_HINT: &str =
    "is shibafu-coordinator running? set --coordinator or SHIBAFU_COORDINATOR";
/// Shown when the local agent cannot be reached.
pub const AGENT_HINT: &str = "is shibafu-agent running on this host? set --agent or SHIBAFU_AGENT";

/// Server addresses from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    coordinator: String,
    agent: String,
}

impl Context {
    /// A context from the `--coordinator` URL and the `--agent` socket path.
    pub fn new(coordinator: String, agent: String) -> Context {
        Context { coordinator, agent }
    }

    /// A client of the coordinator API.
    pub fn coordinator(&self) -> Result<Coordinator, ClientError> {
        let target: Target = self.coordinator.parse()?;
        Ok(Coordinator::new(target, COORDINATOR_HINT))
    }

    /// A client of this host's agent API. `--agent` is a socket path (relative paths are
    /// taken from the current directory), `unix:/path` or `http://host:port`.
    pub fn agent(&self) -> Result<Agent, ClientError> {
        let given = self.agent.as_str();
        let target = if given.contains(':') || given.starts_with('/') {
            given.parse()?
        } else {
            let abs = std::env::current_dir()
                .map(|d| d.join(given))
                .unwrap_or_else(|_| Path::new(given).to_path_buf());
            Target::Unix(abs)
        };
        Ok(Agent::new(target, AGENT_HINT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_addresses() {
        let ctx = |a: &str| Context::new("http://127.0.0.1:7480".into(), a.into());
        let t = |a: &str| ctx(a).agent().expect("agent").client().target().clone();
        assert_eq!(
            t("/run/shibafu/agent.sock"),
            Target::Unix("/run/shibafu/agent.sock".into())
        );
        assert_eq!(t("unix:/tmp/a.sock"), Target::Unix("/tmp/a.sock".into()));
        assert_eq!(
            t("http://127.0.0.1:9000"),
            Target::Http("127.0.0.1:9000".into())
        );
        let rel = t("agent.sock");
        assert_eq!(
            rel,
            Target::Unix(std::env::current_dir().expect("cwd").join("agent.sock"))
        );
    }

    #[test]
    fn bad_coordinator_is_reported_when_used() {
        let ctx = Context::new("10.0.0.1:7480".into(), "/a.sock".into());
        let e = ctx.coordinator().expect_err("no scheme");
        assert_eq!(
            e.to_string(),
            r#"invalid address "10.0.0.1:7480": use http://HOST:PORT or unix:/PATH/TO/SOCKET"#
        );
        assert!(ctx.agent().is_ok());
    }
}
