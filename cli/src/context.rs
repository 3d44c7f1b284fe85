//! The servers a command talks to: the coordinator (cluster state) and this host's agent
//! (containers, attachments). Addresses are parsed when a command first needs them, so a bad
//! `--agent` does not break cluster commands and the other way round.

use std::path::Path;

use shibafu_overlay::api::{Agent, Client, ClientError, Coordinator, Target};
use shibafu_overlay::tls::TlsFiles;

/// Shown when the coordinator cannot be reached.
pub const COORDINATOR_HINT: &str =
    "is shibafu-coordinator running? set --coordinator or SHIBAFU_COORDINATOR";
/// Shown when the local agent cannot be reached.
pub const AGENT_HINT: &str = "is shibafu-agent running on this host? set --agent or SHIBAFU_AGENT";

/// Shown when another node's agent cannot be found.
pub const NODE_AGENT_HINT: &str =
    "agents listen on their own host's unix socket: run the command there, or give --node-agents NODE=ADDRESS (SHIBAFU_NODE_AGENTS)";

/// Server addresses from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    coordinator: String,
    agent: String,
    node_agents: String,
    tls: Option<TlsFiles>,
}

impl Context {
    /// A context from the `--coordinator` URLs (comma-separated) and the `--agent` socket path.
    pub fn new(coordinator: String, agent: String) -> Context {
        Context {
            coordinator,
            agent,
            node_agents: String::new(),
            tls: None,
        }
    }

    /// Adds the `--tls-*` files, for https:// coordinators.
    pub fn with_tls(mut self, tls: Option<TlsFiles>) -> Context {
        self.tls = tls;
        self
    }

    /// The `--tls-*` files, if given.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A client of one coordinator, with the TLS configuration when there are TLS files.
    pub fn coordinator_client(&self, target: Target) -> Result<Client, ClientError> {
        self.secured(Client::new(target, "coordinator", COORDINATOR_HINT))
    }

    /// `client` with the TLS configuration of the `--tls-*` files, if given.
    fn secured(&self, client: Client) -> Result<Client, ClientError> {
        let Some(files) = &self.tls else {
            return Ok(client);
        };
        let config = files
            .client_config()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(client.with_tls(Some(config)))
    }

    /// Adds the `--node-agents` list: `NODE=ADDRESS` pairs, comma-separated.
    pub fn with_node_agents(mut self, list: String) -> Context {
        self.node_agents = list;
        self
    }

    /// The agent of `node`: from `--node-agents` when it names the node, else this host's agent
    /// when it is that node's, else an error saying how to reach it.
    pub async fn agent_of(&self, node: &str) -> anyhow::Result<Agent> {
        for pair in self
            .node_agents
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((name, addr)) = pair.split_once('=') else {
                anyhow::bail!("--node-agents {pair:?}: give NODE=ADDRESS pairs, comma-separated");
            };
            if name.trim() == node {
                let target = addr.trim().parse()?;
                return Ok(Agent::new(
                    target,
                    format!("is shibafu-agent running on {node}?"),
                ));
            }
        }
        let local = self.agent()?;
        let status: serde_json::Value = local
            .client()
            .get("/v1/status")
            .await
            .map_err(|e| anyhow::anyhow!("cannot find the agent of node {node}: {e}"))?;
        if status["node"] == node {
            return Ok(local);
        }
        anyhow::bail!(
            "the agent of node {node} is not this host's (this is {}): {NODE_AGENT_HINT}",
            status["node"].as_str().unwrap_or("?")
        )
    }

    /// The coordinator URLs, in the order they are tried.
    pub fn coordinator_targets(&self) -> Result<Vec<Target>, ClientError> {
        Target::parse_list(&self.coordinator)
    }

    /// A client of the coordinator API: the first coordinator, then the next whenever one
    /// cannot be reached or does not answer in time (an answer, even an error, is final).
    pub fn coordinator(&self) -> Result<Coordinator, ClientError> {
        let mut targets = self.coordinator_targets()?.into_iter();
        let bad = || ClientError::BadAddress {
            given: self.coordinator.clone(),
            reason: "give at least one coordinator URL".into(),
        };
        let first = targets.next().ok_or_else(bad)?;
        let client = self
            .secured(Client::new(first, "coordinator", COORDINATOR_HINT).with_fallbacks(targets))?;
        Ok(Coordinator::from_client(client))
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
    fn coordinators_are_a_list_tried_in_order() {
        let ctx = |c: &str| Context::new(c.into(), "/a.sock".into());
        let one = ctx("http://10.0.0.2:7480").coordinator().expect("one");
        let targets: Vec<String> = one.client().targets().map(ToString::to_string).collect();
        assert_eq!(targets, ["http://10.0.0.2:7480"]);
        let two = ctx("http://10.0.0.2:7480, http://10.0.0.3:7480")
            .coordinator()
            .expect("two");
        let targets: Vec<String> = two.client().targets().map(ToString::to_string).collect();
        assert_eq!(targets, ["http://10.0.0.2:7480", "http://10.0.0.3:7480"]);
        for bad in [
            "",
            "http://10.0.0.2:7480,,http://10.0.0.3:7480",
            "http://a:1,10.0.0.3:7480",
        ] {
            assert!(ctx(bad).coordinator().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_closed_coordinator_fails_over_to_the_next() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live_addr = live.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // Two requests: a list that succeeds, then one answered with an error.
            let answers = [
                ("200 OK", "[]".to_string()),
                (
                    "404 Not Found",
                    r#"{"error":"no network named \"x\"","kind":"not_found"}"#.to_string(),
                ),
            ];
            for (status, body) in answers {
                let (mut s, _) = live.accept().await.expect("accept");
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await.expect("read");
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.expect("write");
            }
        });
        let urls = format!("http://{closed_addr},http://{live_addr}");
        let c = Context::new(urls, "/a.sock".into())
            .coordinator()
            .expect("client");
        assert!(c.list_networks().await.expect("failed over").is_empty());
        // An error answer is the cluster's answer: reported, not retried elsewhere.
        let e = c.get_network("x").await.expect_err("not found");
        assert_eq!(e.to_string(), r#"no network named "x""#);
        server.await.expect("server");

        let both_closed = format!("http://{closed_addr},http://{closed_addr}");
        let c = Context::new(both_closed, "/a.sock".into())
            .coordinator()
            .expect("client");
        let msg = c.list_networks().await.expect_err("none").to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot reach any coordinator: http://{closed_addr}: "
            )),
            "{msg}"
        );
        assert!(msg.ends_with(&format!("({COORDINATOR_HINT})")), "{msg}");
    }

    #[test]
    fn bad_coordinator_is_reported_when_used() {
        let ctx = Context::new("10.0.0.1:7480".into(), "/a.sock".into());
        let e = ctx.coordinator().expect_err("no scheme");
        assert_eq!(
            e.to_string(),
            r#"invalid address "10.0.0.1:7480": use http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO/SOCKET"#
        );
        assert!(ctx.agent().is_ok());
    }
}
